//! Serving a Spin app's HTTP triggers: route each request ([`super::router`]), answer the
//! runtime's own `/.well-known/spin/` routes and static responses, and run the routed
//! component's `wasi:http` handler (WASIp2 or WASIp3) in a fresh instance with the `spin-*`
//! headers added. Answers the server makes itself (404, 500, 503) have empty bodies, as Spin's do.
//! The same server answers the components' chained requests ([`super::chain`]). Each
//! request from outside is a span ([`crate::telemetry`]).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use hyper::body::{Body, Incoming};
use hyper::header::{HeaderName, HeaderValue, HOST};
use hyper::{Request, Response, StatusCode};
use wasmpod_oci::spin::app::StaticResponse;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::WasiBody;

use super::chain::{Chained, Dispatch};
use super::router::{RouteMatch, Router, WELL_KNOWN_PREFIX};
use super::state::{ComponentEnv, SpinState};
use crate::http::proxy::{full_response, Failure, HttpExport, Instances};
use crate::http::server::Handler;
use crate::telemetry::{SpanContext, SpanKind, Tracer};

/// The headers Spin sets on every routed request; a client's own are replaced.
const RESERVED: [&str; 7] = [
    "spin-full-url",
    "spin-path-info",
    "spin-matched-route",
    "spin-base-path",
    "spin-raw-component-route",
    "spin-component-route",
    "spin-client-addr",
];

/// The client address of a chained request, as Spin gives it.
const CHAINED_CLIENT: &str = "0.0.0.0:0";

/// The client address of a self-request (it comes from the app itself).
const SELF_CLIENT: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

/// What answers a route.
#[derive(Debug, Clone)]
pub enum Target {
    /// The component at this index.
    Component(usize),
    /// A fixed response.
    Static(StaticResponse),
}

/// One component, as the server sees it.
pub struct ServedComponent {
    /// Its HTTP export, when an HTTP trigger routes to it.
    pub pre: Option<HttpExport<SpinState>>,
    /// What its instances start with.
    pub env: ComponentEnv,
}

/// Serves one Spin app.
pub struct SpinHandler {
    /// `/.well-known/spin/info`.
    pub info: Bytes,
    /// The app's routes.
    pub router: Router<Target>,
    /// The components, by index.
    pub components: Vec<ServedComponent>,
    /// The instances' slots and limits.
    pub instances: Instances,
    /// The container's memory limit.
    pub memory_limit: Option<u64>,
    /// Records a span per request.
    pub tracer: Tracer,
}

impl Handler for SpinHandler {
    async fn handle(
        &self,
        req: Request<Incoming>,
        client: SocketAddr,
    ) -> Response<HyperOutgoingBody> {
        let parent = req
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(SpanContext::from_traceparent);
        let method = req.method().to_string();
        let Some(mut span) = self.tracer.start(method.clone(), SpanKind::Server, parent) else {
            return self.answer(req, client, None).await.0;
        };
        span.set("http.request.method", method.as_str());
        span.set("url.path", req.uri().path());
        if let Some(query) = req.uri().query() {
            span.set("url.query", query);
        }
        span.set("url.scheme", "http");
        span.set("network.protocol.name", "http");
        span.set("client.address", client.ip().to_string());
        span.set("client.port", i64::from(client.port()));
        let (response, answered_by) = self.answer(req, client, Some(span.context())).await;
        if let Some((route, component)) = answered_by {
            span.rename(format!("{method} {route}"));
            span.set("http.route", route);
            if let Some(component) = component {
                span.set("spin.component_id", component);
            }
        }
        let status = response.status();
        span.set("http.response.status_code", i64::from(status.as_u16()));
        if status.is_server_error() {
            span.fail(status.to_string());
        }
        span.finish();
        response
    }
}

/// The route that answered a request, and the component behind it (none for a static
/// response).
type AnsweredBy = Option<(String, Option<String>)>;

impl SpinHandler {
    /// Answers a request from outside: the runtime's own routes, static responses, or the
    /// routed component (run inside the span `trace`).
    async fn answer<B>(
        &self,
        req: Request<B>,
        client: SocketAddr,
        trace: Option<SpanContext>,
    ) -> (Response<HyperOutgoingBody>, AnsweredBy)
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let path = req.uri().path().to_string();
        if let Some(own) = path.strip_prefix(WELL_KNOWN_PREFIX) {
            let response = match own {
                "health" => full_response(StatusCode::OK, Bytes::from_static(b"OK")),
                "info" => {
                    let mut r = full_response(StatusCode::OK, self.info.clone());
                    r.headers_mut().insert(
                        hyper::header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    );
                    r
                }
                _ => empty(StatusCode::NOT_FOUND),
            };
            return (response, None);
        }
        let Some(matched) = self.router.route(&path) else {
            return (empty(StatusCode::NOT_FOUND), None);
        };
        let route = matched.based_route.to_string();
        let index = match matched.target {
            Target::Static(s) => return (static_response(s), Some((route, None))),
            Target::Component(i) => *i,
        };
        let component = self.components.get(index).map(|c| c.env.host.id.clone());
        let answered_by = Some((route, component));
        let host = req
            .headers()
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
            .or_else(|| req.uri().authority().map(|a| a.to_string()));
        let Some(host) = host else {
            return (empty(StatusCode::BAD_REQUEST), answered_by);
        };
        let path_and_query = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| path.clone());
        let full_url = format!("http://{host}{path_and_query}");
        let headers = matched.spin_headers(&full_url, &client.to_string());
        (self.run(index, req, headers, trace).await, answered_by)
    }
}

impl Dispatch for SpinHandler {
    /// A chained request: routed to `component` whatever its path (Spin's synthetic route
    /// `/...`), from the client address `0.0.0.0:0`, without its `*.spin.internal` `Host`.
    fn dispatch(self: Arc<Self>, component: &str, mut req: Request<WasiBody>) -> Chained {
        let Some(index) = self
            .components
            .iter()
            .position(|c| c.env.host.id == component && c.pre.is_some())
        else {
            eprintln!(
                "wasmpod: a request to {component}.spin.internal found no component {component} \
                 with an HTTP trigger"
            );
            return Box::pin(async { Err(wasmtime_wasi_http::Error::DestinationNotFound) });
        };
        let target = Target::Component(index);
        let matched = RouteMatch::synthetic(&target, req.uri().path());
        let headers = matched.spin_headers(&req.uri().to_string(), CHAINED_CLIENT);
        let internal_host = req
            .headers()
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .is_some_and(|h| super::chain::target(h).is_some());
        if internal_host {
            req.headers_mut().remove(HOST);
        }
        // The caller's span goes on with the chained request.
        let trace = req
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(SpanContext::from_traceparent);
        Box::pin(async move { Ok(self.run(index, req, headers, trace).await) })
    }

    /// A self-request: routed by its path as a request from outside is (private routes
    /// are not reachable), from `127.0.0.1:0`, with `Host: self.alt` unless it names one.
    fn dispatch_self(self: Arc<Self>, mut req: Request<WasiBody>) -> Chained {
        let path_and_query = req.uri().path_and_query().map_or("/", |p| p.as_str());
        match path_and_query.parse() {
            Ok(uri) => *req.uri_mut() = uri,
            Err(_) => {
                return Box::pin(async { Err(wasmtime_wasi_http::Error::HttpRequestUriInvalid) })
            }
        }
        if !req.headers().contains_key(HOST) {
            req.headers_mut()
                .insert(HOST, HeaderValue::from_static(super::chain::SELF_HOST));
        }
        let trace = req
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(SpanContext::from_traceparent);
        Box::pin(async move { Ok(self.answer(req, SELF_CLIENT, trace).await.0) })
    }
}

impl SpinHandler {
    /// Runs component `index` on `req` with Spin's `headers` (a client's own `spin-*`
    /// headers are dropped first), inside the span `trace`: the instance's outbound requests
    /// carry it as their `traceparent`.
    async fn run<B>(
        &self,
        index: usize,
        mut req: Request<B>,
        headers: Vec<(String, String)>,
        trace: Option<SpanContext>,
    ) -> Response<HyperOutgoingBody>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let forged: Vec<HeaderName> = req
            .headers()
            .keys()
            .filter(|k| {
                RESERVED.contains(&k.as_str()) || k.as_str().starts_with("spin-path-match-")
            })
            .cloned()
            .collect();
        for name in forged {
            req.headers_mut().remove(name);
        }
        for (name, value) in headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(&value),
            ) {
                req.headers_mut().insert(name, value);
            }
        }
        let path = req.uri().path().to_string();
        let Some((component, pre)) = self
            .components
            .get(index)
            .and_then(|c| Some((c, c.pre.as_ref()?)))
        else {
            return empty(StatusCode::INTERNAL_SERVER_ERROR);
        };
        let limits = self.instances.guest_limits(self.memory_limit);
        match self
            .instances
            .respond(pre, req, || {
                component.env.state(limits).map(|s| s.in_span(trace))
            })
            .await
        {
            Ok(response) => response,
            Err(Failure::Stopping) => empty(StatusCode::SERVICE_UNAVAILABLE),
            Err(Failure::Failed(reason)) => {
                eprintln!(
                    "wasmpod: component {} failed to handle {path}: {}",
                    component.env.host.id,
                    explain(&reason)
                );
                empty(StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    }
}

/// A failure reason, with a call to a Spin interface wasmpod does not provide put plainly.
fn explain(reason: &str) -> String {
    match super::stub::not_provided_in(reason) {
        Some(import) => {
            format!("it called {import}, which wasmpod does not provide yet ({reason})")
        }
        None => reason.to_string(),
    }
}

/// A response with no body (`Content-Length: 0`).
fn empty(status: StatusCode) -> Response<HyperOutgoingBody> {
    full_response(status, Bytes::new())
}

fn static_response(s: &StaticResponse) -> Response<HyperOutgoingBody> {
    let status = StatusCode::from_u16(s.status_code).unwrap_or(StatusCode::OK);
    let body = s.body.clone().map(Bytes::from).unwrap_or_default();
    let mut response = full_response(status, body);
    for (k, v) in &s.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_imports_are_named() {
        let reason = format!(
            "the guest trapped: {}",
            super::super::stub::not_provided("fermyon:spin/llm@2.0.0#infer")
        );
        let text = explain(&reason);
        assert!(
            text.starts_with(
                "it called fermyon:spin/llm@2.0.0#infer, which wasmpod does not provide"
            ),
            "{text}"
        );
        assert_eq!(explain("boom"), "boom");
    }
}
