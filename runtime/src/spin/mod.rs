//! wasmpod's Spin host: a Spin app ([`wasmpod_oci::spin::SpinApp`]) is one more workload
//! kind, run by [`SpinTriggers`]: its HTTP, Redis ([`redis_trigger`]), MQTT
//! ([`mqtt_trigger`]), cron ([`cron`]) and command triggers together.
//!
//! - at link time (in the container helper, before the container exists): each component is
//!   compiled (core modules componentized first, [`componentize`]) through the node's compile
//!   cache, linked against WASI, `wasi:http`, the Spin interfaces wasmpod serves ([`host`],
//!   [`redis`], [`sqlite`], [`rdbms`], [`mqtt`], [`llm`]),
//!   and traps for every other import (so whole-platform components instantiate; calling one
//!   fails the request with its name), and checked to export what its triggers call (a
//!   `wasi:http` handler, `handle-cron-event`, `wasi:cli/run`); the routes are built
//!   ([`router`]) and the cron expressions read;
//! - at create time, in the container's init ([`SpinHttp::check`]): the runtime config
//!   ([`runtime_config`]) is read, variables resolved ([`variables`]), each component's
//!   key-value labels and allowed hosts ([`outbound`]) checked, so a bad app fails Create;
//! - at start: serve HTTP on `SPIN_HTTP_LISTEN_ADDR` (default `0.0.0.0:80`) ([`http`]) and
//!   run the cron triggers on their schedules, until a stop signal (then drain); a command
//!   trigger runs once and its end ends the container, with its exit code.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use wasmpod_oci::settings::HttpSettings;
use wasmpod_oci::spin::app::{HttpRoute, HttpTarget, MqttTrigger};
use wasmpod_oci::spin::SpinApp;
use wasmtime::component::{Component, InstancePre, Linker};
use wasmtime::Engine;
use wasmtime_wasi::p2::bindings::CommandPre;

use crate::http::proxy::{HttpExport, Instances};
use crate::http::{limits::HttpLimits, serve_handler, server_runtime};
use crate::signals::TerminationWatch;
use crate::telemetry::{SpanKind, Telemetry, Tracer};
use crate::trigger::Trigger;
use crate::{GuestOutcome, GuestSetup, RuntimeError};

pub mod async_host;
pub mod chain;
pub mod componentize;
pub mod cron;
pub mod db;
pub mod host;
pub mod http;
pub mod kv;
pub mod llm;
pub mod mqtt;
pub mod mqtt_trigger;
pub mod mysql;
pub mod outbound;
pub mod pg_types;
pub mod postgres;
pub mod rdbms;
pub mod reconnect;
pub mod redis;
pub mod redis_trigger;
pub mod router;
pub mod runtime_config;
pub mod sqlite;
pub mod state;
pub mod stub;
pub mod tls;
pub mod variables;

use self::chain::{Dispatch, ServiceChain};
use self::cron::CronJob;
use self::http::{ServedComponent, SpinHandler, Target};
use self::kv::KvStores;
use self::mqtt_trigger::{MqttJob, Session, Subscribed};
use self::outbound::AllowedHosts;
use self::redis_trigger::{RedisJob, Subscription};
use self::router::Router;
use self::runtime_config::{RuntimeConfig, RUNTIME_CONFIG_PATH};
use self::sqlite::SqliteDatabases;
use self::state::{ComponentEnv, ComponentHost, SpinState};
use self::variables::AppValues;
use crate::limits::GuestLimits;

/// The environment variable naming the address to listen on.
pub const LISTEN_ADDR_ENV: &str = "SPIN_HTTP_LISTEN_ADDR";

/// Where a Spin app listens when [`LISTEN_ADDR_ENV`] is not set (the Spin shim's default).
pub const DEFAULT_LISTEN_ADDR: &str = "0.0.0.0:80";

/// A Spin app, linked: what each of its triggers calls.
pub struct SpinTriggers {
    app: SpinApp,
    /// Per component (in `app.components` order): its HTTP export, if an HTTP trigger
    /// routes to it.
    http: Vec<Option<HttpExport<SpinState>>>,
    router: Router<Target>,
    cron: Vec<(usize, CronJob)>,
    /// The command trigger: its id, its component's index, its `wasi:cli/run`.
    command: Option<(String, usize, CommandPre<SpinState>)>,
    /// The Redis triggers, with their components' indexes (in `app.redis_triggers` order).
    redis: Vec<(usize, Arc<RedisJob>)>,
    /// The MQTT triggers, with their components' indexes (in `app.mqtt_triggers` order).
    mqtt: Vec<(usize, Arc<MqttJob>)>,
    /// What [`SpinTriggers::check`] found.
    started: Option<Started>,
}

/// What the app's components share, and its Redis triggers' servers, once its runtime
/// config and variables are read.
#[derive(Clone)]
struct Started {
    /// Per component: what its instances share.
    hosts: Vec<Arc<ComponentHost>>,
    /// Per Redis trigger: its server's address, templates expanded.
    redis_addresses: Vec<String>,
    /// The MQTT triggers, topics and brokers expanded.
    mqtt_triggers: Vec<MqttTrigger>,
    /// The components' way to the HTTP server, for service chaining.
    chain: Arc<ServiceChain>,
    /// The HTTP limits from the environment; their `instance_memory` (bytes one instance of
    /// any trigger may use, below the container's own cap) falls back to the runtime
    /// config's `max_instance_memory`.
    limits: HttpLimits,
}

fn app_error(app: &SpinApp, reason: impl Into<String>) -> RuntimeError {
    RuntimeError::SpinApp {
        app: app.name.clone(),
        reason: reason.into(),
    }
}

impl SpinTriggers {
    /// Links `app`, whose compiled components are `components` (in `app.components` order).
    pub fn link(
        engine: &Engine,
        app: SpinApp,
        components: Vec<Component>,
    ) -> Result<SpinTriggers, RuntimeError> {
        if app.http_triggers.is_empty()
            && app.cron_triggers.is_empty()
            && app.command_triggers.is_empty()
            && app.redis_triggers.is_empty()
            && app.mqtt_triggers.is_empty()
        {
            return Err(app_error(
                &app,
                "it has no [[trigger.http]], [[trigger.redis]], [[trigger.mqtt]], \
                 [[trigger.cron]] or [[trigger.command]]: nothing to run",
            ));
        }
        let index = |id: &str| app.components.iter().position(|c| c.id == id);
        let mut http = Vec::new();
        let mut pres: Vec<InstancePre<SpinState>> = Vec::new();
        for (spec, component) in app.components.iter().zip(components) {
            let fail = |reason: String| app_error(&app, format!("component {}: {reason}", spec.id));
            let pre = link_component(engine, &component).map_err(fail)?;
            let routed = app
                .http_triggers
                .iter()
                .any(|t| matches!(&t.target, HttpTarget::Component(id) if id == &spec.id));
            http.push(if routed {
                Some(http_export(engine, &component, pre.clone()).map_err(fail)?)
            } else {
                None
            });
            pres.push(pre);
        }
        // The index of the component a (non-HTTP) trigger runs.
        let component_of = |trigger: &str, component: &str| {
            index(component).ok_or_else(|| {
                app_error(&app, format!("trigger {trigger}: no component {component}"))
            })
        };
        let trigger_error = |trigger: &str, component: &str, e: String| {
            app_error(
                &app,
                format!("trigger {trigger} (component {component}): {e}"),
            )
        };
        let mut cron = Vec::new();
        for t in &app.cron_triggers {
            let i = component_of(&t.id, &t.component)?;
            let job = CronJob::link(&t.id, &t.component, &t.cron_expression, pres[i].clone())
                .map_err(|e| trigger_error(&t.id, &t.component, e))?;
            cron.push((i, job));
        }
        let mut redis = Vec::new();
        for t in &app.redis_triggers {
            let i = component_of(&t.id, &t.component)?;
            let job = RedisJob::link(t, pres[i].clone())
                .map_err(|e| trigger_error(&t.id, &t.component, e))?;
            redis.push((i, Arc::new(job)));
        }
        let mut mqtt = Vec::new();
        for t in &app.mqtt_triggers {
            let i = component_of(&t.id, &t.component)?;
            let job = MqttJob::link(engine, t, pres[i].clone())
                .map_err(|e| trigger_error(&t.id, &t.component, e))?;
            mqtt.push((i, Arc::new(job)));
        }
        let command = match app.command_triggers.first() {
            None => None,
            Some(t) => {
                let i = component_of(&t.id, &t.component)?;
                let pre = CommandPre::new(pres[i].clone()).map_err(|e| {
                    let reason = format!(
                        "it does not export wasi:cli/run@0.2.x, so it cannot run a command \
                         trigger: {e:#}"
                    );
                    trigger_error(&t.id, &t.component, reason)
                })?;
                Some((t.id.clone(), i, pre))
            }
        };
        let routes = app.http_triggers.iter().filter_map(|t| {
            let HttpRoute::Path(route) = &t.route else {
                return None;
            };
            let target = match &t.target {
                HttpTarget::Component(id) => Target::Component(index(id)?),
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
        Ok(SpinTriggers {
            app,
            http,
            router,
            cron,
            command,
            redis,
            mqtt,
            started: None,
        })
    }

    /// Reads the runtime config at `config_path` and resolves what the components share,
    /// from the container's environment `env`.
    fn start(
        &self,
        config_path: &Path,
        env: &[(String, String)],
        http: &HttpSettings,
    ) -> Result<Started, RuntimeError> {
        let app = &self.app;
        let config = RuntimeConfig::load(config_path).map_err(|e| app_error(app, e))?;
        let values = AppValues::resolve(&app.variables, &config.providers, env)
            .map_err(|e| app_error(app, e))?;
        let kv = Arc::new(KvStores::new(config.kv_stores));
        let sqlite = Arc::new(SqliteDatabases::new(config.sqlite_databases));
        let chain = chain::unconnected();
        let client_tls = config.client_tls;
        let max_instance_memory = config.max_instance_memory;
        let mut hosts = Vec::new();
        for c in &app.components {
            let kv_label = unknown_label(&c.key_value_stores, |l| kv.contains(l));
            let db_label = unknown_label(&c.sqlite_databases, |l| sqlite.contains(l));
            let unknown = (kv_label.map(|l| ("key_value_stores", "stores", l)))
                .or(db_label.map(|l| ("sqlite_databases", "databases", l)));
            if let Some((field, what, label)) = unknown {
                return Err(app_error(
                    app,
                    format!(
                        "component {} {field}: unknown {field} label {label:?} (only \
                         \"default\" and the {what} in {} are defined)",
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
            let tls = tls::ComponentTls::load(&c.id, &client_tls)
                .map_err(|e| app_error(app, format!("{}: {e}", config_path.display())))?;
            hosts.push(Arc::new(ComponentHost {
                id: c.id.clone(),
                kv: kv.clone(),
                kv_labels: c.key_value_stores.clone(),
                sqlite: sqlite.clone(),
                sqlite_labels: c.sqlite_databases.clone(),
                config,
                outbound: Arc::new(hosts_allowed),
                chain: chain.clone(),
                tls,
            }));
        }
        let redis_addresses = app
            .redis_triggers
            .iter()
            .map(|t| {
                values
                    .expand(&t.address)
                    .map_err(|e| app_error(app, format!("trigger {} address: {e}", t.id)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut mqtt_triggers = Vec::new();
        for t in &app.mqtt_triggers {
            let expand = |what: &str, text: &str| {
                values
                    .expand(text)
                    .map_err(|e| app_error(app, format!("trigger {} {what}: {e}", t.id)))
            };
            let mut t = t.clone();
            t.topic = expand("topic", &t.topic)?;
            t.broker.address = expand("address", &t.broker.address)?;
            t.broker.username = expand("username", &t.broker.username)?;
            t.broker.password = expand("password", &t.broker.password)?;
            mqtt_triggers.push(t);
        }
        let mut limits = HttpLimits::resolve(http, env)?;
        limits.instance_memory = limits.instance_memory.or(max_instance_memory);
        Ok(Started {
            hosts,
            redis_addresses,
            mqtt_triggers,
            chain,
            limits,
        })
    }
}

/// The first of `listed` that is not `defined`.
fn unknown_label(listed: &[String], defined: impl Fn(&str) -> bool) -> Option<&str> {
    listed.iter().map(String::as_str).find(|l| !defined(l))
}

/// Links one component against WASI, `wasi:http`, wasmpod's Spin interfaces and stubs for
/// the rest; the reason says what is wrong.
fn link_component(
    engine: &Engine,
    component: &Component,
) -> Result<InstancePre<SpinState>, String> {
    let mut linker: Linker<SpinState> = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)
        .and_then(|()| wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker))
        .and_then(|()| wasmtime_wasi::p3::add_to_linker(&mut linker))
        .and_then(|()| wasmtime_wasi_http::p3::add_to_linker(&mut linker))
        .and_then(|()| host::add_to_linker(&mut linker))
        .and_then(|()| async_host::add_to_linker(&mut linker))
        .and_then(|()| redis::add_to_linker(&mut linker))
        .and_then(|()| sqlite::add_to_linker(&mut linker))
        .and_then(|()| rdbms::add_to_linker(&mut linker))
        .and_then(|()| mqtt::add_to_linker(&mut linker))
        .and_then(|()| llm::add_to_linker(&mut linker))
        .and_then(|()| stub::add_missing(&mut linker, engine, component))
        .map_err(|e| format!("{e:#}"))?;
    linker
        .instantiate_pre(component)
        .map_err(|e| format!("cannot link it: {e:#}"))
}

/// The component's `wasi:http` handler (WASIp2's `incoming-handler@0.2.x` or WASIp3's
/// `handler@0.3.x`), for an HTTP trigger; the reason says what it exports instead.
fn http_export(
    engine: &Engine,
    component: &Component,
    pre: InstancePre<SpinState>,
) -> Result<HttpExport<SpinState>, String> {
    let exports: Vec<String> = component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    // The candidate wasmpod serves was renamed to the release before compiling.
    let p3_rc = exports
        .iter()
        .find(|e| e.starts_with("wasi:http/handler@0.3.0-rc-"));
    if let Some(export) = p3_rc {
        return Err(format!(
            "it exports {export}, a WASIp3 release candidate wasmpod does not serve (it serves \
             wasi:http/handler@0.3.x and @0.3.0{}): rebuild it with a current Spin SDK",
            crate::wasip3_rc::RC_SUFFIX
        ));
    }
    let serves = exports.iter().any(|e| {
        crate::world::is_http_handler(e) && !e.starts_with("wasi:http/incoming-handler@0.2.0-rc-")
    });
    if !serves {
        let found = exports.join(", ");
        return Err(
            if exports
                .iter()
                .any(|e| e.starts_with("wasi:http/incoming-handler"))
            {
                format!(
                    "it exports a pre-release wasi:http ({found}); wasmpod serves \
                 wasi:http/incoming-handler@0.2.x and wasi:http/handler@0.3.x: rebuild it with a \
                 current Spin SDK"
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
                    "it does not export wasi:http/incoming-handler@0.2.x or \
                 wasi:http/handler@0.3.x, so it cannot answer an HTTP trigger (it exports: {found})"
                )
            },
        );
    }
    HttpExport::new(pre).map_err(|e| format!("cannot serve it: {e}"))
}

impl Trigger for SpinTriggers {
    fn check(&mut self, setup: &GuestSetup) -> Result<(), RuntimeError> {
        self.started = Some(self.start(
            Path::new(RUNTIME_CONFIG_PATH),
            &setup.env,
            &setup.settings.http,
        )?);
        Ok(())
    }

    fn run(
        self: Box<Self>,
        engine: &Engine,
        setup: &GuestSetup,
        watch: &TerminationWatch,
    ) -> Result<GuestOutcome, RuntimeError> {
        let this = *self;
        let Started {
            hosts,
            redis_addresses,
            mqtt_triggers,
            chain,
            limits,
        } = match this.started.clone() {
            Some(started) => started,
            None => this.start(
                Path::new(RUNTIME_CONFIG_PATH),
                &setup.env,
                &setup.settings.http,
            )?,
        };
        let rt = server_runtime()?;
        // The exporter is a task of the app's runtime.
        let telemetry = {
            let _runtime = rt.enter();
            Telemetry::start(&setup.env)
        };
        let tracer = telemetry.tracer();
        let envs: Vec<ComponentEnv> = this
            .app
            .components
            .iter()
            .zip(hosts)
            .map(|(c, host)| ComponentEnv {
                host,
                env: c.environment.clone(),
                files: c.files.clone(),
                tracer: tracer.clone(),
            })
            .collect();
        let serves_http = !this.app.http_triggers.is_empty();
        let guest_limits = GuestLimits::for_container(setup.memory_limit)
            .with_instance_cap(limits.instance_memory);
        let mut http = this.http.into_iter();
        let components: Vec<ServedComponent> = envs
            .iter()
            .map(|env| ServedComponent {
                pre: http.next().flatten(),
                env: env.clone(),
            })
            .collect();
        let app = this.app;
        let router = this.router;
        rt.block_on(async move {
            if !serves_http {
                // No server to drain: a stop signal interrupts the running instances.
                watch.attach(engine);
            }
            let mut jobs = Vec::new();
            for (i, job) in this.cron {
                let env = envs[i].clone();
                jobs.push(tokio::spawn(job.run(
                    engine.clone(),
                    watch.clone(),
                    env,
                    guest_limits.clone(),
                )));
            }
            // One subscription per Redis server, for all its triggers.
            let mut subscriptions: Vec<Subscription> = Vec::new();
            for ((i, job), address) in this.redis.into_iter().zip(redis_addresses) {
                let env = envs[i].clone();
                match subscriptions.iter_mut().find(|s| s.address == address) {
                    Some(s) => s.jobs.push((job, env)),
                    None => subscriptions.push(Subscription {
                        address,
                        jobs: vec![(job, env)],
                    }),
                }
            }
            for subscription in subscriptions {
                jobs.push(tokio::spawn(subscription.run(
                    engine.clone(),
                    watch.clone(),
                    guest_limits.clone(),
                )));
            }
            // One session per MQTT broker, for all its triggers.
            let mut sessions: Vec<Session> = Vec::new();
            for ((i, job), t) in this.mqtt.into_iter().zip(mqtt_triggers) {
                let subscribed = Subscribed {
                    topic: t.topic,
                    qos: t.qos,
                    job,
                    env: envs[i].clone(),
                };
                match sessions.iter_mut().find(|s| s.broker == t.broker) {
                    Some(s) => s.triggers.push(subscribed),
                    None => sessions.push(Session {
                        broker: t.broker,
                        triggers: vec![subscribed],
                    }),
                }
            }
            for session in sessions {
                jobs.push(tokio::spawn(session.run(
                    engine.clone(),
                    watch.clone(),
                    guest_limits.clone(),
                )));
            }
            let http = async {
                if serves_http {
                    let served = ServedApp {
                        router,
                        components,
                        chain,
                        tracer,
                        limits,
                    };
                    serve_http(&app, served, engine, setup, watch).await
                } else {
                    std::future::pending().await
                }
            };
            let command = async {
                match this.command {
                    Some((id, i, pre)) => {
                        run_command(
                            &id,
                            &envs[i],
                            pre,
                            engine,
                            guest_limits.clone(),
                            setup,
                            watch,
                        )
                        .await
                    }
                    None => std::future::pending().await,
                }
            };
            let stopped = async {
                if serves_http {
                    std::future::pending().await
                } else {
                    Ok(GuestOutcome::Terminated(watch.stopped().await))
                }
            };
            let outcome = tokio::select! {
                outcome = http => outcome,
                outcome = command => outcome,
                outcome = stopped => outcome,
            };
            for job in jobs {
                job.abort();
            }
            telemetry.shutdown().await;
            outcome
        })
    }
}

/// What the HTTP server of an app is made of.
struct ServedApp {
    router: Router<Target>,
    components: Vec<ServedComponent>,
    /// Connected to the server once it is made.
    chain: Arc<ServiceChain>,
    tracer: Tracer,
    /// The server's limits.
    limits: HttpLimits,
}

/// Serves the HTTP triggers until a stop signal, then drains.
async fn serve_http(
    app: &SpinApp,
    served: ServedApp,
    engine: &Engine,
    setup: &GuestSetup,
    watch: &TerminationWatch,
) -> Result<GuestOutcome, RuntimeError> {
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
    let limits = served.limits;
    let info = serde_json::json!({
        "name": app.name,
        "version": app.version,
    });
    let per_instance = app
        .components
        .iter()
        .map(|c| c.files.len() as u64 + 1)
        .max()
        .unwrap_or(1);
    let memory_limit = setup.memory_limit;
    serve_handler(
        engine,
        addr,
        limits,
        per_instance,
        watch,
        |limits, instances| {
            let handler = Arc::new(SpinHandler {
                info: Bytes::from(info.to_string()),
                router: served.router,
                components: served.components,
                instances: Instances::new(limits, instances),
                memory_limit,
                tracer: served.tracer,
            });
            let dispatch: Arc<dyn Dispatch> = handler.clone();
            served.chain.connect(Arc::downgrade(&dispatch));
            handler
        },
    )
    .await
}

/// Runs the command trigger's component once: `wasi:cli/run` with the container's stdin,
/// `argv` = the component id and the container's arguments after the first; its exit code
/// is the outcome.
async fn run_command(
    trigger: &str,
    env: &ComponentEnv,
    pre: CommandPre<SpinState>,
    engine: &Engine,
    limits: GuestLimits,
    setup: &GuestSetup,
    watch: &TerminationWatch,
) -> Result<GuestOutcome, RuntimeError> {
    let mut wasi = env
        .wasi()
        .map_err(|e| RuntimeError::Wasi(format!("command trigger {trigger}: {e}")))?;
    let mut argv = vec![env.host.id.clone()];
    argv.extend(setup.args.iter().skip(1).cloned());
    wasi.inherit_stdin().args(&argv);
    let state = SpinState::new(wasi, limits, env.host.clone());
    let mut store = state.into_store(engine, watch);
    let span = env.span(format!("command {trigger}"), SpanKind::Internal, trigger);
    let run = async {
        let command = pre.instantiate_async(&mut store).await?;
        command.wasi_cli_run().call_run(&mut store).await
    };
    let outcome = match run.await {
        Ok(Ok(())) => GuestOutcome::Exited(0),
        Ok(Err(())) => GuestOutcome::Exited(1),
        Err(e) => GuestOutcome::from_error(&e, watch.signal()),
    };
    if let Some(mut span) = span {
        if outcome != GuestOutcome::Exited(0) {
            span.fail(format!("{outcome:?}"));
        }
        span.finish();
    }
    Ok(outcome)
}
