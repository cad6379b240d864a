//! wasmpod's Spin host: a Spin app ([`wasmpod_oci::spin::SpinApp`]) is one more workload
//! kind, run by the [`SpinHttp`] trigger.
//!
//! - at link time (in the container helper, before the container exists): each component is
//!   compiled (core modules componentized first, [`componentize`]) through the node's compile
//!   cache, linked against WASI, `wasi:http`, the Spin interfaces wasmpod serves ([`host`]),
//!   and traps for every other import (so whole-platform components instantiate; calling one
//!   fails the request with its name), and checked to export a `wasi:http` handler; the
//!   routes are built ([`router`]);
//! - at create time, in the container's init ([`SpinHttp::check`]): the runtime config
//!   ([`runtime_config`]) is read, variables resolved ([`variables`]), each component's
//!   key-value labels and allowed hosts ([`outbound`]) checked, so a bad app fails Create;
//! - at start: serve HTTP on `SPIN_HTTP_LISTEN_ADDR` (default `0.0.0.0:80`) ([`http`]),
//!   until a stop signal, then drain.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use wasmpod_oci::spin::app::{HttpRoute, HttpTarget};
use wasmpod_oci::spin::SpinApp;
use wasmtime::component::{Component, Linker};
use wasmtime::Engine;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::http::proxy::Instances;
use crate::http::{limits::HttpLimits, serve_handler, server_runtime};
use crate::signals::TerminationWatch;
use crate::trigger::Trigger;
use crate::{GuestOutcome, GuestSetup, RuntimeError};

pub mod componentize;
pub mod host;
pub mod http;
pub mod kv;
pub mod outbound;
pub mod router;
pub mod runtime_config;
pub mod state;
pub mod stub;
pub mod variables;

use self::http::{ServedComponent, SpinHandler, Target};
use self::kv::KvStores;
use self::outbound::AllowedHosts;
use self::router::Router;
use self::runtime_config::{RuntimeConfig, RUNTIME_CONFIG_PATH};
use self::state::{ComponentHost, SpinState};
use self::variables::AppValues;

/// The environment variable naming the address to listen on.
pub const LISTEN_ADDR_ENV: &str = "SPIN_HTTP_LISTEN_ADDR";

/// Where a Spin app listens when [`LISTEN_ADDR_ENV`] is not set (the Spin shim's default).
pub const DEFAULT_LISTEN_ADDR: &str = "0.0.0.0:80";

/// The export a component must have to serve HTTP (any 0.2.x version).
const INCOMING_HANDLER: &str = "wasi:http/incoming-handler@0.2.";

/// A Spin app with HTTP triggers, linked.
pub struct SpinHttp {
    app: SpinApp,
    /// One per `app.components`, in order.
    linked: Vec<ProxyPre<SpinState>>,
    router: Router<Target>,
    /// What [`SpinHttp::check`] found (what each component's instances share).
    hosts: Option<Vec<Arc<ComponentHost>>>,
}

fn app_error(app: &SpinApp, reason: impl Into<String>) -> RuntimeError {
    RuntimeError::SpinApp {
        app: app.name.clone(),
        reason: reason.into(),
    }
}

impl SpinHttp {
    /// Links `app`, whose compiled components are `components` (in `app.components` order).
    pub fn link(
        engine: &Engine,
        app: SpinApp,
        components: Vec<Component>,
    ) -> Result<SpinHttp, RuntimeError> {
        let mut linked = Vec::new();
        for (spec, component) in app.components.iter().zip(components) {
            let pre = link_component(engine, &component)
                .map_err(|reason| app_error(&app, format!("component {}: {reason}", spec.id)))?;
            linked.push(pre);
        }
        let routes = app.http_triggers.iter().filter_map(|t| {
            let HttpRoute::Path(route) = &t.route else {
                return None;
            };
            let target = match &t.target {
                HttpTarget::Component(id) => {
                    Target::Component(app.components.iter().position(|c| &c.id == id)?)
                }
                HttpTarget::StaticResponse(s) => Target::Static(s.clone()),
            };
            Some((t.id.clone(), route.clone(), target))
        });
        let (router, duplicates) = Router::build(routes).map_err(|e| app_error(&app, e))?;
        for d in duplicates {
            eprintln!(
                "wasmpod: Spin app {}: trigger {} and trigger {} both have route {}; {} \
                 answers it (the last one wins)",
                app.name, d.replaced, d.effective, d.route, d.effective
            );
        }
        for route in router.reserved_routes() {
            eprintln!(
                "wasmpod: Spin app {}: route {route} is under {} and is never reached",
                app.name,
                router::WELL_KNOWN_PREFIX
            );
        }
        if app.http_triggers.is_empty() {
            return Err(app_error(
                &app,
                "it has no [[trigger.http]]: nothing to serve",
            ));
        }
        Ok(SpinHttp {
            app,
            linked,
            router,
            hosts: None,
        })
    }

    /// Reads the runtime config at `config_path` and resolves what the components share,
    /// from the container's environment `env`.
    fn start(
        &self,
        config_path: &Path,
        env: &[(String, String)],
    ) -> Result<Vec<Arc<ComponentHost>>, RuntimeError> {
        let app = &self.app;
        let config = RuntimeConfig::load(config_path).map_err(|e| app_error(app, e))?;
        let values = AppValues::resolve(&app.variables, &config.providers, env)
            .map_err(|e| app_error(app, e))?;
        let kv = Arc::new(KvStores::new(config.kv_stores));
        let mut hosts = Vec::new();
        for c in &app.components {
            if let Some(label) = c.key_value_stores.iter().find(|l| !kv.contains(l)) {
                return Err(app_error(
                    app,
                    format!(
                        "component {} key_value_stores: unknown key_value_stores label \
                         {label:?} (only \"default\" and the stores in {} are defined)",
                        c.id,
                        config_path.display()
                    ),
                ));
            }
            let config = values
                .component_config(&c.id, &c.variables)
                .map_err(|e| app_error(app, e))?;
            let hosts_allowed = c
                .allowed_outbound_hosts
                .iter()
                .map(|h| values.expand(h))
                .collect::<Result<Vec<_>, _>>()
                .and_then(|list| AllowedHosts::parse(&list))
                .map_err(|e| app_error(app, format!("component {}: {e}", c.id)))?;
            hosts.push(Arc::new(ComponentHost {
                id: c.id.clone(),
                kv: kv.clone(),
                kv_labels: c.key_value_stores.clone(),
                config,
                outbound: Arc::new(hosts_allowed),
            }));
        }
        Ok(hosts)
    }
}

/// Links one component; the reason says what is wrong.
fn link_component(engine: &Engine, component: &Component) -> Result<ProxyPre<SpinState>, String> {
    let exports: Vec<String> = component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    let serves = exports
        .iter()
        .any(|e| e.starts_with(INCOMING_HANDLER) && !e.contains("-rc-"));
    if !serves {
        let found = exports.join(", ");
        return Err(
            if exports
                .iter()
                .any(|e| e.starts_with("wasi:http/incoming-handler"))
            {
                format!(
                    "it exports a pre-release wasi:http ({found}); wasmpod serves \
                 wasi:http/incoming-handler@0.2.x: rebuild it with a current Spin SDK"
                )
            } else if exports
                .iter()
                .any(|e| e.starts_with("fermyon:spin/inbound-http"))
            {
                "it uses the Spin 1 HTTP interface (fermyon:spin/inbound-http), which wasmpod does \
             not serve yet: rebuild it with a Spin 2 or later SDK"
                    .to_string()
            } else {
                format!(
                    "it does not export wasi:http/incoming-handler@0.2.x, so it cannot answer an \
                 HTTP trigger (it exports: {found})"
                )
            },
        );
    }
    let mut linker: Linker<SpinState> = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)
        .and_then(|()| wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker))
        .and_then(|()| host::add_to_linker(&mut linker))
        .and_then(|()| stub::add_missing(&mut linker, engine, component))
        .map_err(|e| format!("{e:#}"))?;
    let pre = linker
        .instantiate_pre(component)
        .map_err(|e| format!("cannot link it: {e:#}"))?;
    ProxyPre::new(pre).map_err(|e| format!("cannot serve it: {e:#}"))
}

impl Trigger for SpinHttp {
    fn check(&mut self, setup: &GuestSetup) -> Result<(), RuntimeError> {
        self.hosts = Some(self.start(Path::new(RUNTIME_CONFIG_PATH), &setup.env)?);
        Ok(())
    }

    fn run(
        self: Box<Self>,
        engine: &Engine,
        setup: &GuestSetup,
        watch: &TerminationWatch,
    ) -> Result<GuestOutcome, RuntimeError> {
        let this = *self;
        let hosts = match this.hosts.clone() {
            Some(hosts) => hosts,
            None => this.start(Path::new(RUNTIME_CONFIG_PATH), &setup.env)?,
        };
        let value = setup
            .env
            .iter()
            .rev()
            .find(|(k, _)| k == LISTEN_ADDR_ENV)
            .map(|(_, v)| v.as_str())
            .unwrap_or(DEFAULT_LISTEN_ADDR);
        let addr = value.parse().map_err(|e| {
            RuntimeError::Serve(format!(
                "{LISTEN_ADDR_ENV}={value:?} is not an address: {e}"
            ))
        })?;
        let limits = HttpLimits::from_env(&setup.env)?;
        let info = serde_json::json!({
            "name": this.app.name,
            "version": this.app.version,
        });
        let per_instance = this
            .app
            .components
            .iter()
            .map(|c| c.files.len() as u64 + 1)
            .max()
            .unwrap_or(1);
        let components: Vec<ServedComponent> = this
            .app
            .components
            .iter()
            .zip(this.linked)
            .zip(hosts)
            .map(|((c, pre), host)| ServedComponent {
                pre,
                host,
                env: c.environment.clone(),
                files: c.files.clone(),
            })
            .collect();
        let memory_limit = setup.memory_limit;
        let router = this.router;
        server_runtime()?.block_on(serve_handler(
            engine,
            addr,
            limits,
            per_instance,
            watch,
            |limits, instances| SpinHandler {
                info: Bytes::from(info.to_string()),
                router,
                components,
                instances: Instances::new(limits, instances),
                memory_limit,
            },
        ))
    }
}
