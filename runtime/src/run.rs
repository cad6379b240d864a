//! Compiling a workload ([`Prepared::compile`]), linking it into the [`Trigger`] that runs it
//! (a command module or component runs once; a `wasi:http` proxy is served, see [`http`]),
//! and running it to a [`GuestOutcome`] ([`Prepared::run`]).

use std::path::Path;

use wasmpod_oci::settings::WasmFeatures;
use wasmpod_oci::WasmKind;
use wasmtime::component::{Component, Linker as ComponentLinker};
use wasmtime::{Engine, InstancePre, Linker, Module, Store, UpdateDeadline};
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::WasiCtxBuilder;

use wasmpod_oci::spin::app::SpinComponent;
use wasmpod_oci::spin::SpinApp;

use crate::cache::{CacheKey, CompileCache, Compiled};
use crate::limits::GuestLimits;
use crate::signals::TerminationWatch;
use crate::spin::componentize::componentize;
use crate::spin::SpinTriggers;
use crate::state::{ComponentState, Limited, ModuleState};
use crate::trigger::Trigger;
use crate::world::ComponentWorld;
use crate::{engine, http, GuestOutcome, GuestSetup, RuntimeError};

/// A compiled workload whose imports are known to be satisfiable.
pub struct Prepared {
    engine: Engine,
    trigger: Box<dyn Trigger>,
}

impl Prepared {
    /// Reads and compiles `path`, with the proposals `features` chooses.
    pub fn from_file(
        path: &Path,
        kind: WasmKind,
        features: &WasmFeatures,
    ) -> Result<Prepared, RuntimeError> {
        let bytes = std::fs::read(path).map_err(|source| RuntimeError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Prepared::compile(&bytes, kind, features)
    }

    /// Compiles `bytes` as `kind` (without a cache, with the proposals `features` chooses)
    /// and links it against WASI.
    pub fn compile(
        bytes: &[u8],
        kind: WasmKind,
        features: &WasmFeatures,
    ) -> Result<Prepared, RuntimeError> {
        let world = world_of(bytes, kind);
        let engine = engine_for(world, features)?;
        let compiled = match kind {
            WasmKind::CoreModule => Module::new(&engine, bytes).map(Compiled::Module),
            WasmKind::Component => {
                let bytes = crate::wasip3_rc::served(std::borrow::Cow::Borrowed(bytes))?;
                Component::new(&engine, &bytes).map(Compiled::Component)
            }
        }
        .map_err(|e| RuntimeError::Compile {
            what: what(kind),
            reason: format!("{e:#}"),
        })?;
        Prepared::link(engine, compiled, world)
    }

    /// Loads `bytes` from `cache` (compiled with the proposals `features` chooses),
    /// compiling them first with `compile_elsewhere` when the cache has no entry (it must
    /// leave one, or fail), then links against WASI.
    pub fn from_cache(
        cache: &CompileCache,
        bytes: &[u8],
        kind: WasmKind,
        features: &WasmFeatures,
        compile_elsewhere: impl FnOnce() -> Result<(), RuntimeError>,
    ) -> Result<Prepared, RuntimeError> {
        let world = world_of(bytes, kind);
        let engine = engine_for(world, features)?;
        let key = CompileCache::key(&engine, bytes, kind);
        let compiled = match cache.load(&engine, &key, kind) {
            Some(c) => c,
            None => {
                compile_elsewhere()?;
                cache.load(&engine, &key, kind).ok_or_else(|| {
                    RuntimeError::Cache(format!(
                        "no usable entry for {} after compiling",
                        key.as_str()
                    ))
                })?
            }
        };
        Prepared::link(engine, compiled, world)
    }

    /// Loads every component of the Spin app `app` from `cache` (compiling one first with
    /// `compile_elsewhere` when the cache has no entry for it: it must leave one, or fail),
    /// and links the app.
    pub fn spin(
        app: SpinApp,
        cache: &CompileCache,
        features: &WasmFeatures,
        compile_elsewhere: impl Fn(&SpinComponent) -> Result<(), RuntimeError>,
    ) -> Result<Prepared, RuntimeError> {
        let engine = engine::new_server_engine(features)?;
        let mut components = Vec::new();
        for c in &app.components {
            let bytes = std::fs::read(&c.host_path).map_err(|source| RuntimeError::Read {
                path: c.host_path.display().to_string(),
                source,
            })?;
            let key = spin_component_key(&engine, &bytes, c.kind);
            let loaded = match cache.load(&engine, &key, WasmKind::Component) {
                Some(loaded) => loaded,
                None => {
                    compile_elsewhere(c)?;
                    cache
                        .load(&engine, &key, WasmKind::Component)
                        .ok_or_else(|| {
                            RuntimeError::Cache(format!(
                                "no usable entry for {} after compiling",
                                key.as_str()
                            ))
                        })?
                }
            };
            match loaded {
                Compiled::Component(component) => components.push(component),
                Compiled::Module(_) => {
                    return Err(RuntimeError::Cache(format!(
                        "{} holds a module, not a component",
                        key.as_str()
                    )))
                }
            }
        }
        let trigger = SpinTriggers::link(&engine, app, components)?;
        Ok(Prepared {
            engine,
            trigger: Box::new(trigger),
        })
    }

    /// Checks what the workload needs of its container, in the container's init at create
    /// time (see [`Trigger::check`]).
    pub fn check(&mut self, setup: &GuestSetup) -> Result<(), RuntimeError> {
        self.trigger.check(setup)
    }

    /// Links a compiled module or component against WASI (and `wasi:http`, for components);
    /// a component as `world` says.
    pub fn link(
        engine: Engine,
        compiled: Compiled,
        world: ComponentWorld,
    ) -> Result<Prepared, RuntimeError> {
        let trigger = match compiled {
            Compiled::Module(module) => {
                let what = "module";
                let mut linker: Linker<ModuleState> = Linker::new(&engine);
                // `wasi_unstable` too: older toolchains still emit it, and it is served by
                // the same context.
                wasmtime_wasi::p1::add_to_linker_async(&mut linker, |s| &mut s.wasi)
                    .and_then(|()| {
                        wasmtime_wasi::p0::add_to_linker_async(&mut linker, |s| &mut s.wasi)
                    })
                    .map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;
                let pre = linker
                    .instantiate_pre(&module)
                    .map_err(|e| RuntimeError::Link {
                        what,
                        reason: format!("{e:#}"),
                    })?;
                match module.get_export("_start") {
                    Some(wasmtime::ExternType::Func(f))
                        if f.params().len() == 0 && f.results().len() == 0 => {}
                    Some(wasmtime::ExternType::Func(f)) => {
                        return Err(RuntimeError::BadStart(f.to_string()))
                    }
                    _ => return Err(RuntimeError::NoStart),
                }
                Box::new(CommandModule(pre)) as Box<dyn Trigger>
            }
            Compiled::Component(component) => {
                let what = "component";
                let mut linker: ComponentLinker<ComponentState> = ComponentLinker::new(&engine);
                wasmtime_wasi::p2::add_to_linker_async(&mut linker)
                    .and_then(|()| {
                        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
                    })
                    .and_then(|()| wasmtime_wasi::p3::add_to_linker(&mut linker))
                    .and_then(|()| wasmtime_wasi_http::p3::add_to_linker(&mut linker))
                    .map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;
                let pre = linker
                    .instantiate_pre(&component)
                    .map_err(|e| RuntimeError::Link {
                        what,
                        reason: format!("{e:#}"),
                    })?;
                match world {
                    ComponentWorld::Command => Box::new(CommandComponent(
                        CommandPre::new(pre)
                            .map_err(|e| RuntimeError::NotACommand(format!("{e:#}")))?,
                    )) as Box<dyn Trigger>,
                    ComponentWorld::HttpProxy => Box::new(http::HttpProxy(
                        http::proxy::HttpExport::new(pre).map_err(RuntimeError::NotAProxy)?,
                    )),
                }
            }
        };
        Ok(Prepared { engine, trigger })
    }

    /// Runs the workload's trigger: a command to completion (or until `watch` sees a stop
    /// signal), a server until it is told to stop.
    pub fn run(
        self,
        setup: &GuestSetup,
        watch: &TerminationWatch,
    ) -> Result<GuestOutcome, RuntimeError> {
        self.trigger.run(&self.engine, setup, watch)
    }
}

/// The cache key of a Spin component whose Wasm is `bytes` (of `kind`): a core module is
/// componentized first, so its key says so.
pub fn spin_component_key(engine: &Engine, bytes: &[u8], kind: WasmKind) -> CacheKey {
    match kind {
        WasmKind::CoreModule => CompileCache::componentized_key(engine, bytes),
        WasmKind::Component => CompileCache::key(engine, bytes, WasmKind::Component),
    }
}

/// Compiles a Spin component (componentizing a core module first) into `cache`.
pub fn compile_spin_component(
    cache: &CompileCache,
    engine: &Engine,
    bytes: &[u8],
    kind: WasmKind,
) -> Result<(), RuntimeError> {
    let key = spin_component_key(engine, bytes, kind);
    cache.compile_from(engine, WasmKind::Component, &key, || match kind {
        WasmKind::CoreModule => componentize(bytes).map(std::borrow::Cow::Owned),
        WasmKind::Component => Ok(std::borrow::Cow::Borrowed(bytes)),
    })
}

/// A WASI preview1 command module, linked and ready to instantiate.
struct CommandModule(InstancePre<ModuleState>);

impl Trigger for CommandModule {
    fn run(
        self: Box<Self>,
        engine: &Engine,
        setup: &GuestSetup,
        watch: &TerminationWatch,
    ) -> Result<GuestOutcome, RuntimeError> {
        let pre = self.0;
        run_once(engine, setup, watch, |mut wasi, limits| async move {
            let state = ModuleState {
                wasi: wasi.build_p1(),
                limits,
            };
            let mut store = command_store(engine, state, watch);
            let instance = pre.instantiate_async(&mut store).await?;
            let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
            start.call_async(&mut store, ()).await?;
            Ok(0)
        })
    }
}

/// A `wasi:cli/command` component, linked and ready to instantiate.
struct CommandComponent(CommandPre<ComponentState>);

impl Trigger for CommandComponent {
    fn run(
        self: Box<Self>,
        engine: &Engine,
        setup: &GuestSetup,
        watch: &TerminationWatch,
    ) -> Result<GuestOutcome, RuntimeError> {
        let pre = self.0;
        run_once(engine, setup, watch, |wasi, limits| async move {
            let state = ComponentState::new(wasi, limits);
            let mut store = command_store(engine, state, watch);
            let command = pre.instantiate_async(&mut store).await?;
            let result = command.wasi_cli_run().call_run(&mut store).await?;
            Ok(if result.is_ok() { 0 } else { 1 })
        })
    }
}

/// A store for a command's one instance: limited by the container, stopped by a signal.
fn command_store<T: Limited + 'static>(
    engine: &Engine,
    state: T,
    watch: &TerminationWatch,
) -> Store<T> {
    let mut store = Store::new(engine, state);
    store.limiter(|s| s.limits_mut());
    interrupt_on_stop(&mut store, watch);
    store
}

/// Runs a guest once on a current-thread runtime: `guest` gets the WASI builder and the
/// container's limits, and its exit code (or error) becomes the outcome; a stop signal, or
/// the end of its CPU time limit, abandons it.
fn run_once<'a, F, Fut>(
    engine: &'a Engine,
    setup: &GuestSetup,
    watch: &'a TerminationWatch,
    guest: F,
) -> Result<GuestOutcome, RuntimeError>
where
    F: FnOnce(WasiCtxBuilder, GuestLimits) -> Fut,
    Fut: std::future::Future<Output = wasmtime::Result<i32>> + 'a,
{
    let wasi = setup.builder()?;
    let limits = GuestLimits::for_container(setup.memory_limit);
    watch.attach(engine);
    let cpu_limit = setup.settings.cpu_time_limit_secs;
    if let Some(secs) = cpu_limit {
        crate::cpu_limit::limit_cpu_time(secs)?;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| RuntimeError::Wasi(format!("cannot start the I/O runtime: {e}")))?;
    let guest = guest(wasi, limits);
    let outcome = rt.block_on(async {
        tokio::select! {
            result = guest => match result {
                Ok(code) => GuestOutcome::Exited(code),
                Err(err) => GuestOutcome::from_error(&err, watch.signal()),
            },
            sig = watch.stopped() => GuestOutcome::Terminated(sig),
        }
    });
    Ok(match (outcome, cpu_limit) {
        (GuestOutcome::Terminated(libc::SIGXCPU), Some(secs)) => GuestOutcome::OutOfCpuTime(secs),
        (outcome, _) => outcome,
    })
}

/// How a workload of `kind` made of `bytes` is run.
fn world_of(bytes: &[u8], kind: WasmKind) -> ComponentWorld {
    match kind {
        WasmKind::CoreModule => ComponentWorld::Command,
        WasmKind::Component => ComponentWorld::of(bytes),
    }
}

/// The engine for a workload: HTTP services instantiate per request and get the pooling
/// allocator.
fn engine_for(world: ComponentWorld, features: &WasmFeatures) -> Result<Engine, RuntimeError> {
    match world {
        ComponentWorld::Command => engine::new_engine(features),
        ComponentWorld::HttpProxy => engine::new_server_engine(features),
    }
}

fn what(kind: WasmKind) -> &'static str {
    match kind {
        WasmKind::CoreModule => "module",
        WasmKind::Component => "component",
    }
}

/// The epoch only moves when a stop signal arrives; the callback then ends the guest.
pub(crate) fn interrupt_on_stop<T>(store: &mut Store<T>, watch: &TerminationWatch) {
    let watch = watch.clone();
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| match watch.signal() {
        Some(sig) => Err(wasmtime::Error::msg(format!("stopped by signal {sig}"))),
        None => Ok(UpdateDeadline::Continue(1)),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(wat: &str) -> Vec<u8> {
        wat::parse_str(wat).unwrap()
    }

    #[test]
    fn rejects_truncated_modules() {
        let bytes = module(r#"(module (func (export "_start")))"#);
        let err = Prepared::compile(
            &bytes[..bytes.len() - 3],
            WasmKind::CoreModule,
            &WasmFeatures::default(),
        )
        .err()
        .unwrap();
        assert!(matches!(err, RuntimeError::Compile { .. }), "{err}");
    }

    #[test]
    fn rejects_unknown_imports() {
        let bytes = module(r#"(module (import "env" "nope" (func)) (func (export "_start")))"#);
        let err = Prepared::compile(&bytes, WasmKind::CoreModule, &WasmFeatures::default())
            .err()
            .unwrap();
        assert!(matches!(err, RuntimeError::Link { .. }), "{err}");
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[test]
    fn links_wasi_unstable_next_to_preview1() {
        let bytes = module(
            r#"(module
                (import "wasi_unstable" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
                (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
                (memory (export "memory") 1)
                (func (export "_start")))"#,
        );
        assert!(Prepared::compile(&bytes, WasmKind::CoreModule, &WasmFeatures::default()).is_ok());
    }

    #[test]
    fn requires_start() {
        let bytes = module(r#"(module (func (export "main")))"#);
        let err = Prepared::compile(&bytes, WasmKind::CoreModule, &WasmFeatures::default())
            .err()
            .unwrap();
        assert!(matches!(err, RuntimeError::NoStart), "{err}");
    }

    #[test]
    fn loads_through_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CompileCache::open(dir.path(), crate::cache::DEFAULT_MAX_BYTES).unwrap();
        let bytes = module(r#"(module (func (export "_start")))"#);
        let engine = engine::new_engine(&WasmFeatures::default()).unwrap();
        let key = CompileCache::key(&engine, &bytes, WasmKind::CoreModule);
        let compile = || cache.compile(&engine, &bytes, WasmKind::CoreModule, &key);
        assert!(Prepared::from_cache(
            &cache,
            &bytes,
            WasmKind::CoreModule,
            &WasmFeatures::default(),
            compile
        )
        .is_ok());
        // Second time: from the cache, nothing compiled.
        let never = || -> Result<(), RuntimeError> { panic!("compiled twice") };
        assert!(Prepared::from_cache(
            &cache,
            &bytes,
            WasmKind::CoreModule,
            &WasmFeatures::default(),
            never
        )
        .is_ok());
        // A compile that leaves nothing behind is an error, not a hang or a panic.
        let other = module(r#"(module (func (export "_start") nop))"#);
        let nothing = || Ok(());
        assert!(Prepared::from_cache(
            &cache,
            &other,
            WasmKind::CoreModule,
            &WasmFeatures::default(),
            nothing
        )
        .is_err());
    }

    #[test]
    fn module_is_not_a_component() {
        let bytes = module(r#"(module (func (export "_start")))"#);
        assert!(Prepared::compile(&bytes, WasmKind::Component, &WasmFeatures::default()).is_err());
    }
}
