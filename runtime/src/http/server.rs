//! The HTTP server scaffold, the same for every kind of handler: accept connections on a
//! listener (at most [`HttpLimits::max_connections`] open at once; more wait in the kernel's
//! backlog), serve HTTP/1.1 on each with keep-alive, and on a stop signal close the listener,
//! let the requests in flight finish (at most [`HttpLimits::drain_timeout`]), then report
//! the signal. What a request does is the [`Handler`]'s business.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::limits::{HttpLimits, DRAIN_TIMEOUT_ENV};
use crate::signals::TerminationWatch;
use wasmpod_oci::settings::Knob;

/// Answers one request. Failures are the handler's to turn into a response.
pub trait Handler: Send + Sync + 'static {
    /// The response to `req`, which came from `client`.
    fn handle(
        &self,
        req: Request<Incoming>,
        client: SocketAddr,
    ) -> impl Future<Output = Response<HyperOutgoingBody>> + Send;
}

/// Serves `handler` on `listener` until a stop signal; returns the signal once drained.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    limits: &HttpLimits,
    watch: &TerminationWatch,
) -> i32 {
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let signal = loop {
        let permit = tokio::select! {
            sig = watch.stopped() => break sig,
            permit = connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break watch.stopped().await,
            },
        };
        let (stream, client) = tokio::select! {
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
        let handler = handler.clone();
        let conn = http1::Builder::new().keep_alive(true).serve_connection(
            TokioIo::new(stream),
            service_fn(move |req| {
                let handler = handler.clone();
                async move { Ok::<_, Infallible>(handler.handle(req, client).await) }
            }),
        );
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            // A client that goes away mid-request is not the server's problem.
            let _ = conn.await;
            drop(permit);
        });
    };
    drop(listener);
    // Idle keep-alive connections close now; busy ones after their response.
    if tokio::time::timeout(limits.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        eprintln!(
            "wasmpod: requests were still running {:?} after the stop signal \
             ({DRAIN_TIMEOUT_ENV} or {}); stopping anyway",
            limits.drain_timeout,
            Knob::HttpDrainTimeout.annotation()
        );
    }
    signal
}
