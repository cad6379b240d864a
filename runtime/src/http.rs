//! Serving a `wasi:http/incoming-handler` component: an HTTP/1.1 server on
//! `WASMTIME_HTTP_PROXY_SOCKET_ADDR` (default `0.0.0.0:8080`) in the container's network
//! namespace, a fresh instance of the pre-linked component for every request, and a graceful
//! stop: on SIGTERM/SIGINT the listener closes, requests in flight finish, then the process
//! exits with `128 + signal`.
//!
//! A request whose handler traps, or that never sets a response, gets a 500 and one line on
//! the container's stderr; the server keeps serving.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use wasmtime::Store;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::WasiHttpView;

use crate::engine::CONCURRENT_REQUESTS;
use crate::limits::GuestLimits;
use crate::run::{never_interrupt, ComponentState};
use crate::signals::TerminationWatch;
use crate::{GuestOutcome, GuestSetup, RuntimeError};

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

/// Everything a request needs, shared by all of them.
struct Service {
    pre: ProxyPre<ComponentState>,
    setup: GuestSetup,
    /// Bounds the instances alive at once to the pooling allocator's slots.
    slots: Semaphore,
}

/// Serves HTTP until a stop signal, then drains. Returns the outcome the container exits with.
pub async fn serve(
    pre: ProxyPre<ComponentState>,
    setup: GuestSetup,
    watch: &TerminationWatch,
) -> Result<GuestOutcome, RuntimeError> {
    let addr = listen_addr(&setup.env)?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| RuntimeError::Serve(format!("cannot listen on {addr}: {e}")))?;
    watch.attach_server();
    // A request needs a WASI context; fail now, not on every request, if it cannot be built.
    setup.builder()?;
    log::info!("serving HTTP on {addr}");
    let service = Arc::new(Service {
        pre,
        setup,
        slots: Semaphore::new(CONCURRENT_REQUESTS as usize),
    });
    let graceful = GracefulShutdown::new();
    let signal = loop {
        let (stream, _) = tokio::select! {
            sig = watch.stopped() => break sig,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                // Out of descriptors and the like: wait a moment rather than spin.
                Err(e) => {
                    eprintln!("wasmpod: accepting a connection failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let service = service.clone();
        let conn = http1::Builder::new().keep_alive(true).serve_connection(
            TokioIo::new(stream),
            service_fn(move |req| {
                let service = service.clone();
                async move { Ok::<_, Infallible>(service.handle(req).await) }
            }),
        );
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            // A client that goes away mid-request is not the server's problem.
            let _ = conn.await;
        });
    };
    drop(listener);
    // Idle keep-alive connections close now; busy ones after their response.
    graceful.shutdown().await;
    Ok(GuestOutcome::Terminated(signal))
}

impl Service {
    async fn handle(&self, req: Request<Incoming>) -> Response<HyperOutgoingBody> {
        let Ok(_slot) = self.slots.acquire().await else {
            return failure(StatusCode::SERVICE_UNAVAILABLE, "the server is stopping");
        };
        match self.run_handler(req).await {
            Ok(response) => response,
            Err(reason) => {
                eprintln!("wasmpod: the HTTP handler failed: {reason}");
                failure(StatusCode::INTERNAL_SERVER_ERROR, "the handler failed")
            }
        }
    }

    /// Instantiates the component for one request and returns the response it sets. The
    /// instance keeps running after that, to stream the body, in its own task.
    async fn run_handler(
        &self,
        req: Request<Incoming>,
    ) -> Result<Response<HyperOutgoingBody>, String> {
        let wasi = self.setup.builder().map_err(|e| e.to_string())?;
        let state = ComponentState::new(wasi, GuestLimits::for_container(self.setup.memory_limit));
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|s| s.limits_mut());
        never_interrupt(&mut store);
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let (req, out) = {
            let mut http = store.data_mut().http();
            let req = http
                .new_incoming_request(Scheme::Http, req)
                .map_err(|e| format!("{e:#}"))?;
            let out = http
                .new_response_outparam(sender)
                .map_err(|e| format!("{e:#}"))?;
            (req, out)
        };
        let pre = self.pre.clone();
        let task = tokio::spawn(async move {
            let proxy = pre.instantiate_async(&mut store).await?;
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, req, out)
                .await
        });
        match receiver.await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(code)) => Err(format!("the handler answered with an error: {code:?}")),
            // The handler returned or failed without setting a response.
            Err(_) => Err(match task.await {
                Ok(Ok(())) => "the handler returned without setting a response".to_string(),
                Ok(Err(e)) => match GuestOutcome::from_error(&e, None) {
                    GuestOutcome::Trapped(reason) => format!("the guest trapped: {reason}"),
                    other => format!("{other:?}"),
                },
                Err(e) => format!("the handler task failed: {e}"),
            }),
        }
    }
}

/// A short plain-text response made by the server itself.
fn failure(status: StatusCode, text: &'static str) -> Response<HyperOutgoingBody> {
    let body = Full::new(Bytes::from_static(text.as_bytes()))
        .map_err(|never: Infallible| -> wasmtime_wasi_http::Error { match never {} })
        .boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
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
