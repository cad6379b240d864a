//! The store state of one Spin component instance (one request), and what every instance of
//! the component shares ([`ComponentHost`]): its key-value and SQLite access, its resolved variables,
//! and the hosts it may reach. Outbound HTTP is checked against those hosts here
//! ([`OutboundHooks`]); a denied request fails as Spin fails it (the send succeeds; the
//! guest reads `HttpRequestDenied` from the response). An allowed request to
//! `<component>.spin.internal` goes to that component ([`super::chain`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmpod_oci::spin::app::FileMount;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use super::chain::{self, ServiceChain};
use super::kv::KvStores;
use super::outbound::{default_port, AllowedHosts};
use super::sqlite::SqliteDatabases;
use crate::limits::GuestLimits;
use crate::state::Limited;
use crate::telemetry::{ActiveSpan, SpanContext, SpanKind, Tracer};

/// What every instance of one component shares.
#[derive(Debug)]
pub struct ComponentHost {
    /// The component id.
    pub id: String,
    /// The app's key-value stores.
    pub kv: Arc<KvStores>,
    /// The labels this component may open (`key_value_stores`).
    pub kv_labels: Vec<String>,
    /// The app's SQLite databases.
    pub sqlite: Arc<SqliteDatabases>,
    /// The labels this component may open (`sqlite_databases`).
    pub sqlite_labels: Vec<String>,
    /// The component's variables, expanded.
    pub config: BTreeMap<String, String>,
    /// `allowed_outbound_hosts`, expanded and parsed.
    pub outbound: Arc<AllowedHosts>,
    /// The way to the app's other components (`http://<id>.spin.internal`).
    pub chain: Arc<ServiceChain>,
    /// The TLS configurations of its connections (`[[client_tls]]`).
    pub tls: super::tls::ComponentTls,
}

impl ComponentHost {
    /// Whether the component may reach `scheme://host:port` (its `allowed_outbound_hosts`);
    /// a denial is a line in the log.
    pub fn may_reach(&self, scheme: &str, host: &str, port: u16) -> bool {
        let allowed = self.outbound.allows(scheme, host, port);
        if !allowed {
            self.log_denied(scheme, host, port);
        }
        allowed
    }

    /// Says in the log that the component may not reach `scheme://host:port`.
    pub fn log_denied(&self, scheme: &str, host: &str, port: u16) {
        eprintln!(
            "wasmpod: component {} may not reach {scheme}://{host}:{port}: it is not in the \
             component's allowed_outbound_hosts",
            self.id
        );
    }
}

/// What every instance of one component starts with besides its code: what the instances
/// share, the component's `environment`, and its `files` (read-only).
#[derive(Clone)]
pub struct ComponentEnv {
    /// What the instances share.
    pub host: Arc<ComponentHost>,
    /// The component's `environment`.
    pub env: Vec<(String, String)>,
    /// The component's `files`.
    pub files: Vec<FileMount>,
    /// Records a span per trigger run.
    pub tracer: Tracer,
}

impl ComponentEnv {
    /// The WASI context of an instance: stdout and stderr to the container's, the
    /// component's environment and directories, sockets limited to its allowed hosts.
    pub fn wasi(&self) -> Result<WasiCtxBuilder, String> {
        let mut wasi = WasiCtxBuilder::new();
        wasi.inherit_stdout().inherit_stderr().envs(&self.env);
        for f in &self.files {
            wasi.preopened_dir(&f.source, &f.destination, FsPerms::ReadOnly)
                .map_err(|e| format!("preopen {}: {e:#}", f.source.display()))?;
        }
        let allowed = self.host.outbound.clone();
        if !allowed.is_empty() {
            wasi.socket_addr_check(move |addr, _| {
                let ok = allowed.allows_socket(addr);
                Box::pin(async move { ok })
            });
            wasi.allow_ip_name_lookup(true);
        }
        Ok(wasi)
    }

    /// A span for one run of trigger `trigger` on this component (`None` when spans are not
    /// exported).
    pub fn span(&self, name: String, kind: SpanKind, trigger: &str) -> Option<ActiveSpan> {
        let mut span = self.tracer.start(name, kind, None)?;
        span.set("spin.trigger_id", trigger);
        span.set("spin.component_id", self.host.id.as_str());
        Some(span)
    }

    /// The span of one message for `trigger` on `destination` (a channel or topic) of
    /// `system` (`redis`, `mqtt`).
    pub fn message_span(
        &self,
        trigger: &str,
        system: &'static str,
        destination: &str,
    ) -> Option<ActiveSpan> {
        let mut span = self.span(
            format!("process {destination}"),
            SpanKind::Consumer,
            trigger,
        )?;
        span.set("messaging.system", system);
        span.set("messaging.destination.name", destination);
        Some(span)
    }

    /// The state of one instance under `limits`.
    pub fn state(&self, limits: GuestLimits) -> Result<SpinState, String> {
        Ok(SpinState::new(self.wasi()?, limits, self.host.clone()))
    }
}

/// The store state of one instance.
pub struct SpinState {
    ctx: WasiCtx,
    http: WasiHttpCtx,
    pub(super) table: ResourceTable,
    limits: GuestLimits,
    hooks: OutboundHooks,
    pub(super) host: Arc<ComponentHost>,
}

impl SpinState {
    /// State for one instance of `host`'s component with WASI from `wasi`.
    pub fn new(mut wasi: WasiCtxBuilder, limits: GuestLimits, host: Arc<ComponentHost>) -> Self {
        SpinState {
            ctx: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            limits,
            hooks: OutboundHooks {
                host: host.clone(),
                trace: None,
            },
            host,
        }
    }
}

impl SpinState {
    /// This state, for an instance that runs inside the span `trace`.
    pub fn in_span(mut self, trace: Option<SpanContext>) -> Self {
        self.hooks.trace = trace;
        self
    }

    /// A store for one trigger-run instance (a cron tick, a Redis message, the command):
    /// limited as the container is, and ended by a stop signal.
    pub fn into_store(
        self,
        engine: &wasmtime::Engine,
        watch: &crate::signals::TerminationWatch,
    ) -> wasmtime::Store<SpinState> {
        let mut store = wasmtime::Store::new(engine, self);
        store.limiter(|s| s.limits_mut());
        crate::run::interrupt_on_stop(&mut store, watch);
        store
    }
}

/// Why a trigger-run instance failed, in one line for the log.
pub fn describe_failure(e: &wasmtime::Error, watch: &crate::signals::TerminationWatch) -> String {
    match crate::GuestOutcome::from_error(e, watch.signal()) {
        crate::GuestOutcome::Trapped(reason) => format!("the guest trapped: {reason}"),
        other => format!("{other:?}"),
    }
}

impl WasiView for SpinState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for SpinState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

impl Limited for SpinState {
    fn limits_mut(&mut self) -> &mut GuestLimits {
        &mut self.limits
    }
}

/// Checks each outgoing request against the component's allowed hosts, sends those to
/// `*.spin.internal` to the app's own components and self-requests to its routes, and HTTPS to a host the component's
/// `[[client_tls]]` names over that TLS configuration.
pub struct OutboundHooks {
    host: Arc<ComponentHost>,
    /// The span the instance runs in: its requests carry it as their `traceparent`.
    trace: Option<SpanContext>,
}

type BoxedIo = Box<dyn std::future::Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>;

/// What sending an outgoing request gives: the response, and its connection's I/O.
type Sent = Box<
    dyn std::future::Future<
            Output = Result<
                (hyper::http::Response<wasmtime_wasi_http::WasiBody>, BoxedIo),
                wasmtime_wasi_http::Error,
            >,
        > + Send,
>;

impl OutboundHooks {
    /// A self-request (a relative URL, or `self.alt`): to the app's own routes, if the
    /// component may (`http://self` or `https://self` in its `allowed_outbound_hosts`).
    fn send_self(&self, mut request: hyper::http::Request<wasmtime_wasi_http::WasiBody>) -> Sent {
        let outbound = &self.host.outbound;
        if !(outbound.allows("http", "self", 80) || outbound.allows("https", "self", 443)) {
            eprintln!(
                "wasmpod: component {} may not send requests to its own app ({}): add \
                 \"http://self\" to the component's allowed_outbound_hosts",
                self.host.id,
                request.uri().path()
            );
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        self.carry_trace(&mut request);
        let send = self.host.chain.send_self(request);
        Box::new(async move { Ok((send.await?, Box::new(async { Ok(()) }) as BoxedIo)) })
    }

    /// Adds the instance's span to `request` as its `traceparent`, unless it has one.
    fn carry_trace(&self, request: &mut hyper::http::Request<wasmtime_wasi_http::WasiBody>) {
        if let Some(trace) = self.trace {
            if !request.headers().contains_key("traceparent") {
                if let Ok(value) = hyper::header::HeaderValue::from_str(&trace.traceparent()) {
                    request.headers_mut().insert("traceparent", value);
                }
            }
        }
    }
}

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        request: hyper::http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: BoxedIo,
    ) -> Sent {
        let uri = request.uri();
        let scheme = uri.scheme_str().unwrap_or("http").to_ascii_lowercase();
        let host = uri.host().unwrap_or("").to_string();
        if chain::is_self(&host) {
            return self.send_self(request);
        }
        let port = uri
            .port_u16()
            .or_else(|| default_port(&scheme))
            .unwrap_or(0);
        if !self.host.may_reach(&scheme, &host, port) {
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        _ = fut;
        let mut request = request;
        self.carry_trace(&mut request);
        if let Some(target) = chain::target(&host) {
            let send = self.host.chain.send(target, request);
            return Box::new(async move {
                let response = send.await?;
                Ok((response, Box::new(async { Ok(()) }) as BoxedIo))
            });
        }
        if scheme == "https" {
            if let Some(config) = self.host.tls.configured(&host) {
                return Box::new(crate::http::tls_client::send(request, options, config));
            }
        }
        Box::new(async move {
            use http_body_util::BodyExt;
            let (res, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((res.map(BodyExt::boxed_unsync), Box::new(io) as BoxedIo))
        })
    }
}
