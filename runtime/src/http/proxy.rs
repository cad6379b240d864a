//! The request handler for a `wasi:http` component ([`HttpExport`]: the WASIp2
//! `incoming-handler` or the WASIp3 `handler`): a fresh instance of the pre-linked component
//! per request, on the pooling allocator. An instance holds its pool
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
use wasmtime_wasi_http::p3::bindings::ServicePre;
use wasmtime_wasi_http::WasiHttpView;

use super::limits::{HttpLimits, REQUEST_TIMEOUT_ENV};
use super::server::Handler;
use crate::engine::CONCURRENT_REQUESTS;
use crate::limits::GuestLimits;
use crate::state::{ComponentState, Limited};
use crate::{GuestOutcome, GuestSetup};
use wasmpod_oci::settings::Knob;

/// Epoch ticks (see [`super::ticker::TICK`]) an instance runs Wasm code before it is
/// checked against its deadline and yields: 100 ms.
const SLICE_TICKS: u64 = 10;

const LATE: &str = "the request ran past its limit";

/// The message for a request stopped at its deadline.
fn late(timeout: std::time::Duration) -> String {
    format!(
        "{LATE} of {timeout:?} ({REQUEST_TIMEOUT_ENV} or {}) and was stopped",
        Knob::HttpRequestTimeout.annotation()
    )
}

/// The HTTP handler a component exports, pre-linked.
pub enum HttpExport<T: 'static> {
    /// `wasi:http/incoming-handler@0.2.x` (WASIp2): the response goes through an outparam.
    IncomingHandler(ProxyPre<T>),
    /// `wasi:http/handler@0.3.x` (WASIp3): an async function returning the response, whose
    /// body the guest may keep writing after it returns.
    Handler(ServicePre<T>),
}

impl<T: 'static> Clone for HttpExport<T> {
    fn clone(&self) -> Self {
        match self {
            HttpExport::IncomingHandler(pre) => HttpExport::IncomingHandler(pre.clone()),
            HttpExport::Handler(pre) => HttpExport::Handler(pre.clone()),
        }
    }
}

impl<T: 'static> HttpExport<T> {
    /// The handler of `pre`'s component: WASIp3's if it exports `wasi:http/handler@0.3.x`,
    /// else WASIp2's. The reason says what is missing.
    pub fn new(pre: wasmtime::component::InstancePre<T>) -> Result<Self, String> {
        let engine = pre.engine().clone();
        let p3 = pre
            .component()
            .component_type()
            .exports(&engine)
            .any(|(name, _)| name.starts_with(crate::world::HANDLER));
        if p3 {
            ServicePre::new(pre)
                .map(HttpExport::Handler)
                .map_err(|e| format!("{e:#}"))
        } else {
            ProxyPre::new(pre)
                .map(HttpExport::IncomingHandler)
                .map_err(|e| format!("{e:#}"))
        }
    }

    /// The engine the component was compiled for.
    pub fn engine(&self) -> &wasmtime::Engine {
        match self {
            HttpExport::IncomingHandler(pre) => pre.engine(),
            HttpExport::Handler(pre) => pre.engine(),
        }
    }
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
        pre: &HttpExport<T>,
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
        pre: &HttpExport<T>,
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
        let (run, answer) = match pre {
            HttpExport::IncomingHandler(pre) => {
                incoming_handler(pre.clone(), &mut store, req).map_err(|e| format!("{e:#}"))?
            }
            HttpExport::Handler(pre) => handler(pre.clone(), req),
        };
        let task = tokio::spawn(async move {
            // Dropped in reverse order: the store (and its pool slot) before the permit.
            let _slot = slot;
            let mut store = store;
            match tokio::time::timeout(timeout, run(&mut store)).await {
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
        match answer.await {
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
            Ok(Err(code)) => Err(format!("the handler answered with an error: {code}")),
            // The handler returned or failed without setting a response.
            Err(_) => Err(match task.await {
                Ok(Ok(())) => "the handler returned without setting a response".to_string(),
                Ok(Err(reason)) => reason,
                Err(e) => format!("the handler task failed: {e}"),
            }),
        }
    }
}

/// The response an instance answers with, or the error code it answered with instead (as
/// text); `Err` if it ended without answering.
type Answer = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = Result<
                    Result<Response<HyperOutgoingBody>, String>,
                    tokio::sync::oneshot::error::RecvError,
                >,
            > + Send,
    >,
>;

/// What reports a WASIp3 request body's end (or failure) to the guest.
type RequestIo = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
>;

/// What runs one instance to its end, in the store it is given.
type InstanceRun<T> = Box<
    dyn for<'a> FnOnce(
            &'a mut Store<T>,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = wasmtime::Result<()>> + Send + 'a>,
        > + Send,
>;

/// A WASIp2 instance: the request and the response outparam go into `store`'s table now;
/// the run instantiates `pre` and calls `handle`, which sets the response in the outparam.
fn incoming_handler<T, B>(
    pre: ProxyPre<T>,
    store: &mut Store<T>,
    req: Request<B>,
) -> wasmtime::Result<(InstanceRun<T>, Answer)>
where
    T: WasiHttpView + Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    let (sender, answered) = tokio::sync::oneshot::channel();
    let (req, out) = {
        let mut http = store.data_mut().http();
        let req = http.new_incoming_request(Scheme::Http, req)?;
        let out = http.new_response_outparam(sender)?;
        (req, out)
    };
    let answer: Answer = Box::pin(async move {
        let answer = answered.await?;
        Ok(answer.map_err(|code| format!("{code:?}")))
    });
    let run: InstanceRun<T> = Box::new(move |store: &mut Store<T>| {
        Box::pin(async move {
            let proxy = pre.instantiate_async(&mut *store).await?;
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut *store, req, out)
                .await
        })
    });
    Ok((run, answer))
}

/// A WASIp3 instance: the run instantiates `pre`, calls `handle` with the request, sends
/// back the response it returns, and keeps the instance's tasks running until
/// they end (the guest writes the body after it has returned the response).
fn handler<T, B>(pre: ServicePre<T>, req: Request<B>) -> (InstanceRun<T>, Answer)
where
    T: WasiHttpView + Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    let (sender, answered) = tokio::sync::oneshot::channel();
    let run: InstanceRun<T> = Box::new(move |store: &mut Store<T>| {
        Box::pin(async move {
            let service = pre.instantiate_async(&mut *store).await?;
            store
                .run_concurrent(async move |accessor| -> wasmtime::Result<()> {
                    let (request, io) = accessor.with(|mut s| {
                        let (request, io) =
                            wasmtime_wasi_http::p3::Request::from_http(s.get().http().hooks, req);
                        let io: RequestIo = Box::pin(io);
                        (request, io)
                    });
                    let response = match service.handle(accessor, request).await? {
                        Ok(response) => response,
                        Err(code) => {
                            _ = sender.send(Err(format!("{code:?}")));
                            return Ok(());
                        }
                    };
                    let response = accessor.with(|mut s| response.into_http(&mut s, io))?;
                    _ = sender.send(Ok(response));
                    std::future::poll_fn(|cx| accessor.poll_no_interesting_tasks(cx)).await;
                    Ok(())
                })
                .await?
        })
    });
    (run, Box::pin(answered))
}

/// Serves requests with instances of one `wasi:http` proxy component.
pub struct ProxyHandler {
    pre: HttpExport<ComponentState>,
    setup: GuestSetup,
    instances: Instances,
}

impl ProxyHandler {
    /// A handler for `pre`, whose instances see `setup` and run under `limits`, at most
    /// `instances` at once (never more than the pool's slots).
    pub fn new(
        pre: HttpExport<ComponentState>,
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
