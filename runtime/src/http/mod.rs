//! Serving HTTP from the container: the listen address, the server scaffold ([`server`]:
//! listener, connection cap, drain), the limits it runs under ([`limits`]), the epoch ticker
//! that enforces them in Wasm code ([`ticker`]), and the request handler of a `wasi:http`
//! component, WASIp2 or WASIp3 ([`proxy`]).
//!
//! A `wasi:http` proxy listens on `WASMTIME_HTTP_PROXY_SOCKET_ADDR` (default `0.0.0.0:8080`)
//! in the container's network namespace; on SIGTERM/SIGINT the listener closes, requests in
//! flight finish, then the process exits with `128 + signal`.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use wasmtime::Engine;

use crate::engine::CONCURRENT_REQUESTS;
use crate::signals::TerminationWatch;
use crate::state::ComponentState;
use crate::trigger::Trigger;
use crate::{GuestOutcome, GuestSetup, RuntimeError};

pub mod limits;
pub mod proxy;
pub mod server;
pub mod ticker;
pub mod tls_client;

/// The environment variable naming the address to listen on (the name `wasmtime serve` uses).
pub const ADDR_ENV: &str = "WASMTIME_HTTP_PROXY_SOCKET_ADDR";

/// Where the server listens when [`ADDR_ENV`] is not set.
pub const DEFAULT_ADDR: &str = "0.0.0.0:8080";

/// The listen address from the guest's environment.
pub fn listen_addr(env: &[(String, String)]) -> Result<SocketAddr, RuntimeError> {
    let value = env
        .iter()
        .rev()
        .find(|(k, _)| k == ADDR_ENV)
        .map(|(_, v)| v.as_str())
        .unwrap_or(DEFAULT_ADDR);
    value
        .parse()
        .map_err(|e| RuntimeError::Serve(format!("{ADDR_ENV}={value:?} is not an address: {e}")))
}

/// Raises the soft limit on open files to the hard limit (as servers commonly do) and
/// returns the soft limit in force.
fn raise_open_files_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    limit.rlim_cur
}

/// The runtime a server runs on: requests are served on every CPU the container may use.
pub fn server_runtime() -> Result<tokio::runtime::Runtime, RuntimeError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| RuntimeError::Wasi(format!("cannot start the I/O runtime: {e}")))
}

/// A `wasi:http` proxy component, served until a stop signal.
pub struct HttpProxy(pub proxy::HttpExport<ComponentState>);

impl Trigger for HttpProxy {
    fn run(
        self: Box<Self>,
        _engine: &Engine,
        setup: &GuestSetup,
        watch: &TerminationWatch,
    ) -> Result<GuestOutcome, RuntimeError> {
        server_runtime()?.block_on(serve(self.0, setup.clone(), watch))
    }
}

/// Serves a `wasi:http` proxy component until a stop signal, then drains. Returns the
/// outcome the container exits with.
pub async fn serve(
    pre: proxy::HttpExport<ComponentState>,
    setup: GuestSetup,
    watch: &TerminationWatch,
) -> Result<GuestOutcome, RuntimeError> {
    let addr = listen_addr(&setup.env)?;
    let limits = limits::HttpLimits::resolve(&setup.settings.http, &setup.env)?;
    // A request needs a WASI context; fail now, not on every request, if it cannot be built.
    setup.builder()?;
    let engine = pre.engine().clone();
    let per_instance = setup.preopens.len() as u64 + 1;
    serve_handler(
        &engine,
        addr,
        limits,
        per_instance,
        watch,
        |limits, instances| Arc::new(proxy::ProxyHandler::new(pre, setup, limits, instances)),
    )
    .await
}

/// Serves the handler `make` builds (given the limits and how many instances may run at
/// once; it may keep a reference of its own) on `addr` until a stop signal, then drains.
/// `per_instance` is how many files one instance opens. Returns the outcome the container
/// exits with.
pub async fn serve_handler<H: server::Handler>(
    engine: &Engine,
    addr: SocketAddr,
    limits: limits::HttpLimits,
    per_instance: u64,
    watch: &TerminationWatch,
    make: impl FnOnce(limits::HttpLimits, usize) -> Arc<H>,
) -> Result<GuestOutcome, RuntimeError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| RuntimeError::Serve(format!("cannot listen on {addr}: {e}")))?;
    watch.attach_server();
    let _ticker = ticker::EpochTicker::start(engine)
        .map_err(|e| RuntimeError::Serve(format!("cannot start the epoch ticker: {e}")))?;
    // Every instance opens the guest's preopened directories: size the instances and the
    // connections to the descriptors the container may open, so that a busy service makes
    // requests wait instead of failing them with "too many open files".
    let open_files = raise_open_files_limit();
    let budget = limits::FdBudget::new(
        open_files,
        per_instance,
        CONCURRENT_REQUESTS as usize,
        &limits,
    );
    if budget.instances < CONCURRENT_REQUESTS as usize
        || budget.connections < limits.max_connections
    {
        eprintln!(
            "wasmpod: the container may open {open_files} files (RLIMIT_NOFILE): serving {} \
             requests and {} connections at once",
            budget.instances, budget.connections
        );
    }
    let limits = limits::HttpLimits {
        max_connections: budget.connections,
        ..limits
    };
    log::info!("serving HTTP on {addr}");
    let handler = make(limits.clone(), budget.instances);
    let signal = server::serve(listener, handler, &limits, watch).await;
    Ok(GuestOutcome::Terminated(signal))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_address_from_the_environment() {
        assert_eq!(listen_addr(&[]).unwrap(), DEFAULT_ADDR.parse().unwrap());
        let env = vec![(ADDR_ENV.to_string(), "127.0.0.1:3000".to_string())];
        assert_eq!(listen_addr(&env).unwrap().port(), 3000);
        let bad = vec![(ADDR_ENV.to_string(), "nowhere".to_string())];
        let err = listen_addr(&bad).unwrap_err().to_string();
        assert!(err.contains("nowhere"), "{err}");
    }
}
