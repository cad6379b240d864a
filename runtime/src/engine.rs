//! The one place where the Wasmtime [`Engine`] is configured. Every compile and every run uses
//! [`new_engine`] or [`new_server_engine`]; both share [`engine_config`], so compiled code
//! (and the compile-cache key) is the same whichever runs it. The Wasm proposals a workload
//! turns on or off (`wasmpod.dev/wasm-features`) change the engine, and so the cache key:
//! Wasmtime's compatibility hash, which the key holds, covers the enabled features.

use wasmpod_oci::settings::{WasmFeatures, WasmProposal};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig};

use crate::RuntimeError;

/// The Wasmtime configuration wasmpod runs guests with.
///
/// - async support: a guest blocked in a host call (`poll_oneoff`, a read) can be abandoned
///   when the container is told to stop;
/// - epoch interruption: a guest spinning in Wasm code is interrupted when the container is
///   told to stop (the epoch only moves on a signal, so it costs nothing otherwise);
/// - the Wasm proposals Wasmtime enables by default stay on (exception handling included),
///   except those `features` turns off; those it turns on are added.
pub fn engine_config(features: &WasmFeatures) -> Config {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.cranelift_opt_level(OptLevel::Speed);
    config.wasm_component_model(true);
    for (proposal, on) in &features.0 {
        choose(&mut config, *proposal, *on);
    }
    config
}

/// Turns `proposal` on or off. Threads turned on explicitly also allow shared memories to
/// be made, which Wasmtime refuses by default (its threads support is tier 2: validated by
/// default, but a module that instantiates a shared memory needs the operator's opt-in).
fn choose(config: &mut Config, proposal: WasmProposal, on: bool) {
    match proposal {
        WasmProposal::Threads => config.wasm_threads(on).shared_memory(on),
        WasmProposal::Simd => config.wasm_simd(on),
        WasmProposal::RelaxedSimd => config.wasm_relaxed_simd(on),
        WasmProposal::Memory64 => config.wasm_memory64(on),
        WasmProposal::MultiMemory => config.wasm_multi_memory(on),
        WasmProposal::TailCall => config.wasm_tail_call(on),
        WasmProposal::Gc => config.wasm_gc(on),
        WasmProposal::Exceptions => config.wasm_exceptions(on),
        WasmProposal::FunctionReferences => config.wasm_function_references(on),
        WasmProposal::ExtendedConst => config.wasm_extended_const(on),
        WasmProposal::CustomPageSizes => config.wasm_custom_page_sizes(on),
        WasmProposal::WideArithmetic => config.wasm_wide_arithmetic(on),
    };
}

/// Builds the engine from [`engine_config`], for a guest that is instantiated once.
pub fn new_engine(features: &WasmFeatures) -> Result<Engine, RuntimeError> {
    build(&engine_config(features), features)
}

/// Builds the engine for an HTTP service, which instantiates the guest once per request:
/// [`engine_config`] plus the pooling allocator, so an instance's memories, tables and
/// stacks come from slots reserved up front and are reset, not mapped, per request.
pub fn new_server_engine(features: &WasmFeatures) -> Result<Engine, RuntimeError> {
    let mut config = engine_config(features);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling()));
    build(&config, features)
}

/// The engine `config` makes; when it cannot be made with the proposals chosen (one that
/// needs another turned off), the error says so.
fn build(config: &Config, features: &WasmFeatures) -> Result<Engine, RuntimeError> {
    Engine::new(config).map_err(|e| {
        if features.is_default() {
            RuntimeError::Engine(format!("{e:#}"))
        } else {
            let chosen: Vec<String> = features
                .0
                .iter()
                .map(|(p, on)| format!("{}{}", if *on { "" } else { "-" }, p.name()))
                .collect();
            RuntimeError::Engine(format!(
                "the Wasm features chosen ({}, by wasmpod.dev/wasm-features or the WasmFeatures \
                 runtime option) do not go together: {e:#}",
                chosen.join(",")
            ))
        }
    })
}

/// Slots for up to [`CONCURRENT_REQUESTS`] instances at once. Tools that build components
/// from interpreters link a dozen core modules and large function tables into one
/// component, so the per-request counts are generous; unused slots are only address space.
fn pooling() -> PoolingAllocationConfig {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(CONCURRENT_REQUESTS)
        .total_core_instances(CONCURRENT_REQUESTS * 32)
        .total_memories(CONCURRENT_REQUESTS * 4)
        .total_tables(CONCURRENT_REQUESTS * 8)
        .total_stacks(CONCURRENT_REQUESTS)
        .max_memories_per_module(1)
        .max_tables_per_module(8)
        .table_elements(200_000)
        .linear_memory_keep_resident(keep_resident())
        .table_keep_resident(keep_resident());
    pool
}

/// Bytes at the start of each memory and table slot that stay mapped between requests: a
/// request's writes there are undone by copying the original bytes back instead of unmapping
/// the pages, so the next request does not take a copy-on-write fault (and, in a threaded
/// server, a TLB shootdown on every core) for each page it touches again. Interpreters such as
/// componentize-py's CPython dirty megabytes per request; keeping 32 MiB resident tripled
/// their requests/s here.
///
/// Linux 6.7 and later tell Wasmtime which pages were written (`PAGEMAP_SCAN`), so only those
/// are restored; before that the whole region is, per request, so it stays at 1 MiB there.
fn keep_resident() -> usize {
    if kernel_at_least(6, 7) {
        32 << 20
    } else {
        1 << 20
    }
}

/// Whether the running kernel's release is at least `major.minor`.
fn kernel_at_least(major: u32, minor: u32) -> bool {
    // SAFETY: uname fills a zeroed, correctly sized struct.
    let release = unsafe {
        let mut uts: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut uts) != 0 {
            return false;
        }
        std::ffi::CStr::from_ptr(uts.release.as_ptr())
            .to_string_lossy()
            .into_owned()
    };
    release_at_least(&release, major, minor)
}

fn release_at_least(release: &str, major: u32, minor: u32) -> bool {
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    found >= (major, minor)
}

/// How many requests one HTTP service can handle at the same time; more wait for a slot.
pub const CONCURRENT_REQUESTS: u32 = 128;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::{Hash, Hasher};

    fn compat_hash(engine: &Engine) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        h.finish()
    }

    #[test]
    fn kernel_releases() {
        assert!(release_at_least("6.18.44-fc-v669", 6, 7));
        assert!(release_at_least("6.7.0", 6, 7));
        assert!(!release_at_least("6.1.0-28-amd64", 6, 7));
        assert!(!release_at_least("5.19.2", 6, 7));
        assert!(!release_at_least("", 6, 7));
    }

    /// Code compiled once (by the compile helper, with [`new_engine`]) must load into the
    /// server engine too, or every HTTP service would be compiled twice.
    #[test]
    fn both_engines_share_compiled_code() {
        let plain = new_engine(&WasmFeatures::default()).unwrap();
        let server = new_server_engine(&WasmFeatures::default()).unwrap();
        assert_eq!(compat_hash(&plain), compat_hash(&server));
        let module =
            wasmtime::Module::new(&plain, "(module (memory 1) (func (export \"f\")))").unwrap();
        let bytes = module.serialize().unwrap();
        // SAFETY: the bytes were produced just above by a compatible engine.
        assert!(unsafe { wasmtime::Module::deserialize(&server, &bytes) }.is_ok());
    }

    /// A proposal turned off makes a module that uses it fail to compile, and a different
    /// engine (so a different cache key); one that needs another off fails by name.
    #[test]
    fn features_change_what_compiles() {
        let shared = "(module (memory 1 1 shared) (func (export \"_start\")))";
        let default = new_engine(&WasmFeatures::default()).unwrap();
        assert!(wasmtime::Module::new(&default, shared).is_ok());
        let no_threads = new_engine(&WasmFeatures::parse("-threads").unwrap()).unwrap();
        let err = wasmtime::Module::new(&no_threads, shared).unwrap_err();
        assert!(format!("{err:#}").contains("threads"), "{err:#}");
        assert_ne!(compat_hash(&default), compat_hash(&no_threads));
        let bad = new_engine(&WasmFeatures::parse("-simd").unwrap()).unwrap_err();
        assert!(bad.to_string().contains("-simd"), "{bad}");
        assert!(new_engine(&WasmFeatures::parse("-simd,-relaxed-simd").unwrap()).is_ok());
    }
}
