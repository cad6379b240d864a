//! The request handler for a `wasi:http/incoming-handler` component: a fresh instance of the
//! pre-linked component per request, on the pooling allocator. An instance holds its pool
//! slot for its whole life (until the guest has finished streaming the body), runs under the
//! request deadline and the per-instance memory cap, and yields its worker thread at every
//! epoch tick, so one busy request cannot starve the others.
//!
//! A request whose handler traps, runs out of time, or never sets a response gets a 500 and
//! one line on the container's stderr; the server keeps serving.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Body;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::WasiHttpView;

use super::limits::{HttpLimits, REQUEST_TIMEOUT_ENV};
use super::server::Handler;
use crate::engine::CONCURRENT_REQUESTS;
use crate::limits::GuestLimits;
use crate::state::{ComponentState, Limited};
use crate::{GuestOutcome, GuestSetup};

/// Epoch ticks (see [`super::ticker::TICK`]) an instance runs Wasm code before it is
/// checked against its deadline and yields: 100 ms.
const SLICE_TICKS: u64 = 10;

const LATE: &str = "the request ran past its limit";

/// The message for a request stopped at its deadline.
fn late(timeout: std::time::Duration) -> String {
    format!("{LATE} of {timeout:?} ({REQUEST_TIMEOUT_ENV}) and was stopped")
}

/// Runs one instance per request, for any handler component: at most as many alive at
/// once as the pool has slots (shared by every component of an app), each under the request
/// deadline.
pub struct Instances {
    limits: HttpLimits,
    /// Bounds the instances alive at once to the pooling allocator's slots.
    slots: Arc<Semaphore>,
}

/// Why a request got no response from its instance.
#[derive(Debug)]
pub enum Failure {
    /// The server is stopping.
    Stopping,
    /// The instance failed (the reason is for the log).
    Failed(String),
}

impl Instances {
    /// Instances that run under `limits`, at most `instances` at once (never more than the
    /// pool's slots).
    pub fn new(limits: HttpLimits, instances: usize) -> Self {
        Instances {
            limits,
            slots: Arc::new(Semaphore::new(
                instances.clamp(1, CONCURRENT_REQUESTS as usize),
            )),
        }
    }

    /// The limits of one instance in a container limited to `memory_limit`.
    pub fn guest_limits(&self, memory_limit: Option<u64>) -> GuestLimits {
        GuestLimits::for_container(memory_limit).with_instance_cap(self.limits.instance_memory)
    }

    /// Waits for a slot, instantiates `pre` with the state `state` builds, and returns the
    /// response it sets. The instance keeps running after that, to stream the body, in its
    /// own task, which holds the slot until it ends.
    pub async fn respond<T, B>(
        &self,
        pre: &ProxyPre<T>,
        req: Request<B>,
        state: impl FnOnce() -> Result<T, String>,
    ) -> Result<Response<HyperOutgoingBody>, Failure>
    where
        T: WasiHttpView + Limited + Send + 'static,
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let Ok(slot) = self.slots.clone().acquire_owned().await else {
            return Err(Failure::Stopping);
        };
        self.run_instance(pre, req, state()?, slot)
            .await
            .map_err(Failure::Failed)
    }

    async fn run_instance<T, B>(
        &self,
        pre: &ProxyPre<T>,
        req: Request<B>,
        state: T,
        slot: OwnedSemaphorePermit,
    ) -> Result<Response<HyperOutgoingBody>, String>
    where
        T: WasiHttpView + Limited + Send + 'static,
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let mut store = Store::new(pre.engine(), state);
        store.limiter(|s| s.limits_mut());
        // The ticker moves the epoch. An instance still running Wasm code after a slice
        // (short requests never get that far) is checked against its deadline and, if it
        // has time left, gives its worker thread to other requests; yielding every tick
        // instead cost short requests a tenfold p99 (`make bench`).
        let timeout = self.limits.request_timeout;
        let deadline = std::time::Instant::now() + timeout;
        store.set_epoch_deadline(SLICE_TICKS);
        store.epoch_deadline_callback(move |_| {
            if std::time::Instant::now() >= deadline {
                return Err(wasmtime::Error::msg(late(timeout)));
            }
            Ok(UpdateDeadline::Yield(SLICE_TICKS))
        });
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
        let pre = pre.clone();
        let task = tokio::spawn(async move {
            // Dropped in reverse order: the store (and its pool slot) before the permit.
            let _slot = slot;
            let mut store = store;
            let run = async {
                let proxy = pre.instantiate_async(&mut store).await?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, req, out)
                    .await
            };
            match tokio::time::timeout(timeout, run).await {
                Ok(Ok(())) => Ok(()),
                // Spinning in Wasm code past its deadline.
                Ok(Err(e)) if e.chain().any(|c| c.to_string().starts_with(LATE)) => {
                    Err(late(timeout))
                }
                Ok(Err(e)) => Err(match GuestOutcome::from_error(&e, None) {
                    GuestOutcome::Trapped(reason) => format!("the guest trapped: {reason}"),
                    other => format!("{other:?}"),
                }),
                // Blocked in a host call past its deadline.
                Err(_) => Err(late(timeout)),
            }
        });
        match receiver.await {
            Ok(Ok(response)) => {
                // The response is on its way; a failure while streaming its body still
                // deserves a line in the log.
                tokio::spawn(async move {
                    if let Ok(Err(reason)) = task.await {
                        eprintln!("wasmpod: the HTTP handler failed: {reason}");
                    }
                });
                Ok(response)
            }
            Ok(Err(code)) => Err(format!("the handler answered with an error: {code:?}")),
            // The handler returned or failed without setting a response.
            Err(_) => Err(match task.await {
                Ok(Ok(())) => "the handler returned without setting a response".to_string(),
                Ok(Err(reason)) => reason,
                Err(e) => format!("the handler task failed: {e}"),
            }),
        }
    }
}

/// Serves requests with instances of one `wasi:http` proxy component.
pub struct ProxyHandler {
    pre: ProxyPre<ComponentState>,
    setup: GuestSetup,
    instances: Instances,
}

impl ProxyHandler {
    /// A handler for `pre`, whose instances see `setup` and run under `limits`, at most
    /// `instances` at once (never more than the pool's slots).
    pub fn new(
        pre: ProxyPre<ComponentState>,
        setup: GuestSetup,
        limits: HttpLimits,
        instances: usize,
    ) -> Self {
        ProxyHandler {
            pre,
            setup,
            instances: Instances::new(limits, instances),
        }
    }
}

impl Handler for ProxyHandler {
    async fn handle(
        &self,
        req: Request<Incoming>,
        _client: SocketAddr,
    ) -> Response<HyperOutgoingBody> {
        let state = || {
            let wasi = self.setup.builder().map_err(|e| e.to_string())?;
            let limits = self.instances.guest_limits(self.setup.memory_limit);
            Ok(ComponentState::new(wasi, limits))
        };
        match self.instances.respond(&self.pre, req, state).await {
            Ok(response) => response,
            Err(Failure::Stopping) => {
                failure(StatusCode::SERVICE_UNAVAILABLE, "the server is stopping")
            }
            Err(Failure::Failed(reason)) => {
                eprintln!("wasmpod: the HTTP handler failed: {reason}");
                failure(StatusCode::INTERNAL_SERVER_ERROR, "the handler failed")
            }
        }
    }
}

impl From<String> for Failure {
    fn from(reason: String) -> Failure {
        Failure::Failed(reason)
    }
}

/// A short plain-text response made by the server itself.
fn failure(status: StatusCode, text: &'static str) -> Response<HyperOutgoingBody> {
    full_response(status, Bytes::from_static(text.as_bytes()))
}

/// A response made by the server itself, with `body` (`Content-Length` set, never chunked).
pub fn full_response(status: StatusCode, body: Bytes) -> Response<HyperOutgoingBody> {
    let body = Full::new(body)
        .map_err(|never: Infallible| -> wasmtime_wasi_http::Error { match never {} })
        .boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
}
