//! Wasm fixtures, made offline: WAT modules through the `wat` crate, the C probe
//! (`test/fixtures/probe.c`) through clang for wasm32-wasi, the probe as a `wasi:cli/command`
//! component (Wasmtime's command adapter), and Python components through componentize-py
//! (`test/fixtures/py/*.py`, with the WASI WIT files of the `wasmtime-wasi-http` crate).

use std::path::{Path, PathBuf};
use std::process::Command;

use std::sync::OnceLock;
use wasmpod_oci::image::ImageBuilder;

/// Prints `hello from wasmpod` and returns from `_start` (exit 0).
pub const HELLO_WAT: &str = r#"
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hello from wasmpod\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 19))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
"#;

/// Calls `proc_exit(42)`.
pub const EXIT42_WAT: &str = r#"
(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (call $exit (i32.const 42))))
"#;

/// Executes `unreachable`.
pub const TRAP_WAT: &str = r#"
(module
  (memory (export "memory") 1)
  (func (export "_start") unreachable))
"#;

/// Spins forever in Wasm code (no host calls).
pub const SPIN_WAT: &str = r#"
(module
  (memory (export "memory") 1)
  (func (export "_start") (loop $l (br $l))))
"#;

/// Reads a shared memory with an atomic load: needs the threads proposal.
pub const SHARED_MEMORY_WAT: &str = r#"
(module
  (memory (export "memory") 1 1 shared)
  (func (export "_start") (drop (i32.atomic.load (i32.const 0)))))
"#;

/// Grows its memory 1 MiB at a time and touches every page, until something stops it.
pub const MEMORY_BOMB_WAT: &str = r#"
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (local $p i32)
    (loop $grow
      (if (i32.eq (memory.grow (i32.const 16)) (i32.const -1)) (then unreachable))
      (local.set $p (i32.mul (i32.sub (memory.size) (i32.const 16)) (i32.const 65536)))
      (block $done
        (loop $touch
          (br_if $done (i32.ge_u (local.get $p) (i32.mul (memory.size) (i32.const 65536))))
          (i32.store8 (local.get $p) (i32.const 1))
          (local.set $p (i32.add (local.get $p) (i32.const 4096)))
          (br $touch)))
      (br $grow))))
"#;

/// A `wasi:cli/run` component that instantiates one core module four times; each instance
/// has a 30 MiB memory whose every page its start function touches: 120 MiB in all, though
/// each memory alone fits a 64 MiB container.
pub const MANY_MEMORIES_COMPONENT_WAT: &str = r#"
(component
  (core module $m
    (memory 480)
    (func $touch (local $p i32)
      (loop $l
        (i32.store8 (local.get $p) (i32.const 1))
        (local.set $p (i32.add (local.get $p) (i32.const 4096)))
        (br_if $l (i32.lt_u (local.get $p) (i32.const 31457280)))))
    (start $touch)
    (func (export "run") (result i32) (i32.const 0)))
  (core instance $a (instantiate $m))
  (core instance $b (instantiate $m))
  (core instance $c (instantiate $m))
  (core instance $d (instantiate $m))
  (func $run (result (result)) (canon lift (core func $a "run")))
  (instance $cli (export "run" (func $run)))
  (export "wasi:cli/run@0.2.0" (instance $cli)))
"#;

/// Imports a function no host provides.
pub const BAD_IMPORT_WAT: &str = r#"
(module
  (import "wasi_snapshot_preview1" "no_such_function" (func))
  (memory (export "memory") 1)
  (func (export "_start")))
"#;

/// Compiles WAT text to Wasm bytes.
pub fn wat(text: &str) -> Vec<u8> {
    wat::parse_str(text).expect("fixture WAT is valid")
}

/// Where built fixtures go: `$WASMPOD_FIXTURES`, else `target/fixtures`.
pub fn dir() -> PathBuf {
    let dir = std::env::var_os("WASMPOD_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fixtures"));
    std::fs::create_dir_all(&dir).expect("create fixtures dir");
    dir
}

/// The clang able to target wasm32-wasi (`$WASMPOD_CLANG`, else `clang-19`).
pub fn clang() -> String {
    std::env::var("WASMPOD_CLANG").unwrap_or_else(|_| "clang-19".into())
}

/// Compiles a C source from `test/fixtures` to a WASI preview1 module, once per process.
pub fn c_module(name: &str) -> PathBuf {
    static BUILT: OnceLock<std::sync::Mutex<std::collections::HashSet<String>>> = OnceLock::new();
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(format!("{name}.c"));
    let out = dir().join(format!("{name}.wasm"));
    let built = BUILT.get_or_init(Default::default);
    let mut built = built.lock().unwrap();
    if !built.contains(name) {
        let status = Command::new(clang())
            .args(["--target=wasm32-wasi", "--sysroot=/usr", "-O2"])
            .arg(&src)
            .arg("-o")
            .arg(&out)
            .status()
            .unwrap_or_else(|e| panic!("run {} (install it with `make setup`): {e}", clang()));
        assert!(status.success(), "clang failed on {}", src.display());
        built.insert(name.to_string());
    }
    out
}

/// The probe (`test/fixtures/probe.c`) as Wasm bytes.
pub fn probe() -> Vec<u8> {
    std::fs::read(c_module("probe")).expect("read probe.wasm")
}

/// A module whose `_start` is `depth` nested blocks: a few hundred kilobytes whose compile
/// takes time that grows with the square of `depth` (half a minute for 100 000).
pub fn nesting_bomb(depth: usize) -> Vec<u8> {
    let mut text = String::from("(module (memory (export \"memory\") 1) (func (export \"_start\")");
    text.push_str(&"(block ".repeat(depth));
    text.push_str(&")".repeat(depth));
    text.push_str("))");
    wat(&text)
}

/// A module with `functions` functions (megabytes of code for a few thousand), unique to
/// `seed`: for exercising the compile cache with compiles that take a while.
pub fn big_module(functions: usize, seed: u64) -> Vec<u8> {
    let mut text = String::from("(module (memory (export \"memory\") 1)\n");
    for i in 0..functions {
        text.push_str(&format!(
            "(func $f{i} (param i64) (result i64) (i64.add (i64.mul (local.get 0) (i64.const {})) (i64.const {i})))\n",
            seed.wrapping_add(i as u64) | 1
        ));
    }
    text.push_str("(func (export \"_start\") (drop (call $f0 (i64.const 1)))))");
    wat(&text)
}

/// `wasm` (a module or a component) with a custom section appended: the same program under
/// a new digest, so the compile cache has never seen it.
pub fn with_custom_section(wasm: &[u8], name: &str, data: &[u8]) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let mut payload = Vec::new();
    leb(name.len(), &mut payload);
    payload.extend_from_slice(name.as_bytes());
    payload.extend_from_slice(data);
    let mut out = wasm.to_vec();
    out.push(0);
    leb(payload.len(), &mut out);
    out.extend_from_slice(&payload);
    out
}

/// The compile cache's key prefix for `wasm` (its SHA-256, as the cache names entries).
pub fn cache_key_prefix(wasm: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(wasm))[..40].to_string()
}

/// The compile cache the shim under test uses.
pub fn cache_dir() -> PathBuf {
    PathBuf::from(
        std::env::var("WASMPOD_CACHE_DIR").expect("WASMPOD_CACHE_DIR (set by test/e2e.sh)"),
    )
}

/// How many times the cache compiled entries whose key starts with `prefix`.
pub fn compiles_of(prefix: &str) -> usize {
    std::fs::read_to_string(cache_dir().join("compiles.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with(prefix))
        .count()
}

/// The probe wrapped into a `wasi:cli/command` component with Wasmtime's preview1 command
/// adapter (a component reports any non-zero exit status as 1).
pub fn probe_component() -> Vec<u8> {
    use wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER;
    wit_component::ComponentEncoder::default()
        .module(&probe())
        .and_then(|e| {
            e.adapter(
                "wasi_snapshot_preview1",
                WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER,
            )
        })
        .and_then(|e| e.validate(true).encode())
        .expect("wrap the probe into a component")
}

/// `test/fixtures/proxy.c` as a `wasi:http` proxy component: [`c_proxy_core_module`] wrapped
/// with Wasmtime's preview1 proxy adapter.
pub fn c_proxy_component() -> Vec<u8> {
    use wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_PROXY_ADAPTER;
    wit_component::ComponentEncoder::default()
        .module(&c_proxy_core_module())
        .and_then(|e| {
            e.adapter(
                "wasi_snapshot_preview1",
                WASI_SNAPSHOT_PREVIEW1_PROXY_ADAPTER,
            )
        })
        .and_then(|e| e.validate(true).encode())
        .expect("wrap the proxy into a component")
}

/// `test/fixtures/proxy.c` as a core module exporting `wasi:http/incoming-handler` (with its
/// component type embedded), as SDKs for `wasm32-wasip1` build them. Built once per source.
pub fn c_proxy_core_module() -> Vec<u8> {
    c_reactor_module(
        "proxy.c",
        &wasi_wit_dir(),
        "wasi:http/proxy@0.2.12",
        "proxy",
    )
}

/// `test/fixtures/spin-cron.c` as a core module of the Spin cron trigger's world
/// (`fermyon:spin-cron/spin-cron@2.0.0`, the WIT in `runtime/wit/spin-cron`), which the shim
/// componentizes. Built once per source.
pub fn spin_cron_core_module() -> Vec<u8> {
    let wit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../runtime/wit/spin-cron");
    c_reactor_module("spin-cron.c", &wit, "spin-cron", "spin_cron")
}

/// The C bindings of `world` of the WIT package at `wit`, as `wit-bindgen c` writes them
/// (`<world>.c`, `<world>.h`, `<world>_component_type.o`), from wit-bindgen's C generator.
fn c_bindings(wit: &Path, world: &str) -> wit_bindgen_core::Files {
    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve
        .push_path(wit)
        .unwrap_or_else(|e| panic!("read the WIT at {}: {e:#}", wit.display()));
    let world = resolve
        .select_world(&[package], Some(world))
        .unwrap_or_else(|e| panic!("world {world}: {e:#}"));
    let mut files = wit_bindgen_core::Files::default();
    wit_bindgen_c::Opts::default()
        .build()
        .generate(&mut resolve, world, &mut files)
        .expect("generate the C bindings");
    files
}

/// A C fixture built against `world` of the WIT at `wit`: bindings from wit-bindgen's C
/// generator (its files are named `stem.*`), clang for wasm32-wasi as a reactor. Built once
/// per source and world.
fn c_reactor_module(source: &str, wit: &Path, world: &str, stem: &str) -> Vec<u8> {
    static LOCK: OnceLock<std::sync::Mutex<()>> = OnceLock::new();
    let _guard = LOCK.get_or_init(Default::default).lock().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(source);
    let mut hashed = std::fs::read(&src).expect("fixture source");
    hashed.extend_from_slice(world.as_bytes());
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&hashed));
    let out = dir().join(format!("{stem}-core-{}.wasm", &digest[..16]));
    if let Ok(bytes) = std::fs::read(&out) {
        return bytes;
    }
    let gen = tempfile::tempdir().expect("tempdir");
    for (name, bytes) in c_bindings(wit, world).iter() {
        std::fs::write(gen.path().join(name), bytes).expect("write the bindings");
    }
    let core = gen.path().join(format!("{stem}.core.wasm"));
    let status = Command::new(clang())
        .args([
            "--target=wasm32-wasi",
            "--sysroot=/usr",
            "-O2",
            "-mexec-model=reactor",
            "-I",
        ])
        .arg(gen.path())
        .arg(&src)
        .arg(gen.path().join(format!("{stem}.c")))
        .arg(gen.path().join(format!("{stem}_component_type.o")))
        .arg("-o")
        .arg(&core)
        .status()
        .unwrap_or_else(|e| panic!("run {} (install it with `make setup`): {e}", clang()));
    assert!(status.success(), "clang failed on {source}");
    let bytes = std::fs::read(&core).expect("read the core module");
    std::fs::write(&out, &bytes).expect("keep the built module");
    bytes
}

/// `test/fixtures/spin-py/app.py` built with the Python Spin SDK: spin-sdk 3.4.1 and
/// componentize-py 0.17.2 (installed by `make setup-test` under `.work/spin-pytools`, or
/// `$WASMPOD_SPIN_PYTOOLS`) for the SDK's `spin-http` world, which imports the whole Spin
/// platform. Built once per source.
pub fn spin_py_component() -> Vec<u8> {
    componentize_spin_py("spin-py", "spin-all")
}

/// `test/fixtures/spin-py-mqtt/app.py`, a handler for the MQTT trigger: the Python Spin SDK's
/// platform world plus the MQTT trigger plugin's `handle-message` export (the WIT in
/// `spin-py-mqtt/wit`, added to a copy of the SDK's).
pub fn spin_py_mqtt_component() -> Vec<u8> {
    componentize_spin_py("spin-py-mqtt", "spin-mqtt-app")
}

/// Builds `fixtures/<name>/app.py` for `world` of the Python Spin SDK's WIT, with the WIT
/// files in `fixtures/<name>/wit` (if any) added to the SDK's package: `*-trigger.wit`
/// files as dependencies, the others in the SDK's own package. Built once per source.
fn componentize_spin_py(name: &str, world: &str) -> Vec<u8> {
    static LOCK: OnceLock<std::sync::Mutex<()>> = OnceLock::new();
    let _guard = LOCK.get_or_init(Default::default).lock().unwrap();
    let src_dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name);
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    sha2::Digest::update(
        &mut hasher,
        std::fs::read(src_dir.join("app.py")).expect("fixture source"),
    );
    let mut extra_wit: Vec<PathBuf> = std::fs::read_dir(src_dir.join("wit"))
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    extra_wit.sort();
    for f in &extra_wit {
        sha2::Digest::update(&mut hasher, std::fs::read(f).expect("fixture WIT"));
    }
    let digest = hex::encode(sha2::Digest::finalize(hasher));
    let out = dir().join(format!("{name}-{}.wasm", &digest[..16]));
    if let Ok(bytes) = std::fs::read(&out) {
        return bytes;
    }
    let tools = std::env::var_os("WASMPOD_SPIN_PYTOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.work/spin-pytools"));
    let sdk_wit = tools.join("spin_sdk/wit");
    let wit_copy = tempfile::tempdir().expect("a WIT directory");
    let wit = if extra_wit.is_empty() {
        sdk_wit
    } else {
        let status = Command::new("cp")
            .arg("-r")
            .arg(&sdk_wit)
            .arg(wit_copy.path().join("wit"))
            .status()
            .expect("run cp");
        assert!(status.success(), "copy the SDK's WIT");
        let wit = wit_copy.path().join("wit");
        for f in &extra_wit {
            let file_name = f.file_name().expect("a file name");
            let dest = if file_name.to_string_lossy().ends_with("-trigger.wit") {
                let dep = wit.join("deps").join(file_name).with_extension("");
                std::fs::create_dir_all(&dep).expect("a WIT dependency directory");
                dep.join(file_name)
            } else {
                wit.join(file_name)
            };
            std::fs::copy(f, dest).expect("add the fixture's WIT");
        }
        wit
    };
    let partial = out.with_extension("partial");
    let status = Command::new(tools.join("bin/componentize-py"))
        .env("PYTHONPATH", &tools)
        .current_dir(&src_dir)
        .arg("-d")
        .arg(&wit)
        .args(["-w", world, "componentize", "app", "-p", "."])
        // The SDK's Python package, for apps that use it; an app of a world of its own uses
        // only the bindings made for that world (the package would bring its own world).
        .args(if extra_wit.is_empty() {
            vec!["-p".into(), tools.clone()]
        } else {
            vec![]
        })
        .arg("-o")
        .arg(&partial)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap_or_else(|e| {
            panic!(
                "run componentize-py from {} (install it with `make setup-test`): {e}",
                tools.display()
            )
        });
    assert!(status.success(), "componentize-py failed on {name}");
    std::fs::rename(&partial, &out).expect("keep the built component");
    std::fs::read(&out).expect("read the built component")
}

/// A release of the Python Spin SDK for Spin 4 (WASIp3): its async handler is built by
/// componentize-py 0.25.1 (`.work/pytools`), with the SDK installed by `make setup-test`
/// under `.work/spin-py4` or `.work/spin-py5`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpinPySdk {
    /// spin-sdk 4.0.0: exports `wasi:http/handler@0.3.0-rc-2026-03-15`.
    V4,
    /// spin-sdk 5.0.0: exports `wasi:http/handler@0.3.0`.
    V5,
}

impl SpinPySdk {
    fn install_dir(self) -> &'static str {
        match self {
            SpinPySdk::V4 => "spin-py4",
            SpinPySdk::V5 => "spin-py5",
        }
    }

    /// The SDK's world for `trigger`.
    fn world(self, trigger: SpinPyTrigger) -> String {
        let version = match self {
            SpinPySdk::V4 => "4.0.0",
            SpinPySdk::V5 => "4.1.0",
        };
        let name = match trigger {
            SpinPyTrigger::Http => "http-trigger",
            SpinPyTrigger::Redis => "redis-trigger",
        };
        format!("spin:up/{name}@{version}")
    }
}

/// The trigger a Spin 4 Python fixture is for, and so its module in `test/fixtures/spin-py-p3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpinPyTrigger {
    /// `app.py`: exports `wasi:http/handler`.
    Http,
    /// `redis_app.py`: exports `spin:redis/inbound-redis@3.0.0`.
    Redis,
}

impl SpinPyTrigger {
    fn module(self) -> &'static str {
        match self {
            SpinPyTrigger::Http => "app",
            SpinPyTrigger::Redis => "redis_app",
        }
    }
}

/// A module of `test/fixtures/spin-py-p3` (the one for `trigger`) built with the Python Spin
/// SDK `sdk`. Built once per source, trigger and SDK.
pub fn spin_py_p3_component(sdk: SpinPySdk, trigger: SpinPyTrigger) -> Vec<u8> {
    static LOCK: OnceLock<std::sync::Mutex<()>> = OnceLock::new();
    let _guard = LOCK.get_or_init(Default::default).lock().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src_dir = root.join("fixtures/spin-py-p3");
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    sha2::Digest::update(
        &mut hasher,
        std::fs::read(src_dir.join(format!("{}.py", trigger.module()))).expect("fixture source"),
    );
    let world = sdk.world(trigger);
    sha2::Digest::update(&mut hasher, world.as_bytes());
    let digest = hex::encode(sha2::Digest::finalize(hasher));
    let out = dir().join(format!("{}-{}.wasm", sdk.install_dir(), &digest[..16]));
    if let Ok(bytes) = std::fs::read(&out) {
        return bytes;
    }
    let pytools = root.join("../.work/pytools");
    let sdk_dir = root.join("../.work").join(sdk.install_dir());
    let partial = out.with_extension("partial");
    let python_path = std::env::join_paths([&pytools, &sdk_dir]).expect("a PYTHONPATH");
    let status = Command::new(pytools.join("bin/componentize-py"))
        .env("PYTHONPATH", python_path)
        .current_dir(&src_dir)
        // The SDK's own componentize-py.toml names its WIT.
        .args(["-w", &world, "componentize", trigger.module(), "-p", "."])
        .arg("-p")
        .arg(&sdk_dir)
        .arg("-o")
        .arg(&partial)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("run componentize-py (install it with `make setup-test`): {e}"));
    assert!(
        status.success(),
        "componentize-py failed on spin-py-p3 with {}",
        sdk_dir.display()
    );
    std::fs::rename(&partial, &out).expect("keep the built component");
    std::fs::read(&out).expect("read the built component")
}

/// `test/fixtures/spin-rust` built with Spin's Rust SDK (spin-sdk 5, `wasm32-wasip1`, as the
/// Spin templates build it): a core module that imports `fermyon:spin/key-value`, which the
/// host componentizes. Built with the toolchain `make setup` installs under `.work/rust-wasm`
/// (or `$WASMPOD_RUST_WASM`, a directory holding its `env` script), once per source.
pub fn spin_rust_module() -> Vec<u8> {
    spin_rust_build(true)
}

/// [`spin_rust_module`] without its key-value counter: a hello that imports only WASI.
pub fn spin_rust_hello_module() -> Vec<u8> {
    spin_rust_build(false)
}

/// The Spin Rust app as a component, componentized as wasmpod does it (the preview1 reactor
/// adapter), for serving the same component elsewhere.
pub fn componentized(module: &[u8]) -> Vec<u8> {
    use wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER;
    wit_component::ComponentEncoder::default()
        .validate(true)
        .module(module)
        .and_then(|e| {
            e.adapter(
                "wasi_snapshot_preview1",
                WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
            )
        })
        .and_then(|mut e| e.encode())
        .expect("componentize the module")
}

fn spin_rust_build(kv: bool) -> Vec<u8> {
    let variant = if kv { "kv" } else { "hello" };
    rust_wasm_build("spin-rust", "spin_rust_hello", variant, !kv)
}

/// A release of Spin's Rust SDK for Spin 4 (an async handler and async Spin calls).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpinRustSdk {
    /// spin-sdk 6 (`test/fixtures/spin-rust6`).
    V6,
    /// spin-sdk 7 (`test/fixtures/spin-rust7`, the same source).
    V7,
}

/// The Spin 4 Rust app built with `sdk` for `wasm32-wasip1`, as [`spin_rust_module`] is
/// built: a core module the host componentizes.
pub fn spin_rust_p3_module(sdk: SpinRustSdk) -> Vec<u8> {
    match sdk {
        SpinRustSdk::V6 => rust_wasm_build("spin-rust6", "spin_rust6_hello", "hello", false),
        SpinRustSdk::V7 => rust_wasm_build("spin-rust7", "spin_rust7_hello", "hello", false),
    }
}

/// The `wasm32-wasip1` build of the crate `test/fixtures/<fixture>` (its library `lib`),
/// without its default features if `no_default_features`; `variant` names that build.
/// Built with the toolchain `make setup` installs under `.work/rust-wasm` (or
/// `$WASMPOD_RUST_WASM`, a directory holding its `env` script), once per source.
fn rust_wasm_build(fixture: &str, lib: &str, variant: &str, no_default_features: bool) -> Vec<u8> {
    static LOCK: OnceLock<std::sync::Mutex<()>> = OnceLock::new();
    let _guard = LOCK.get_or_init(Default::default).lock().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(fixture);
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    for file in ["Cargo.toml", "Cargo.lock", "src/lib.rs"] {
        let bytes = std::fs::read(src.join(file)).expect("fixture source");
        sha2::Digest::update(&mut hasher, &bytes);
    }
    let digest = hex::encode(sha2::Digest::finalize(hasher));
    let out = dir().join(format!("{fixture}-{variant}-{}.wasm", &digest[..16]));
    if let Ok(bytes) = std::fs::read(&out) {
        return bytes;
    }
    let toolchain = std::env::var_os("WASMPOD_RUST_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.work/rust-wasm"));
    let target_dir = toolchain.join("target");
    let mut cargo = Command::new(toolchain.join("env"));
    cargo.args(["cargo", "build", "--quiet", "--release", "--locked"]);
    if no_default_features {
        cargo.arg("--no-default-features");
    }
    let status = cargo
        .args(["--target", "wasm32-wasip1", "-Zbuild-std=std,panic_abort"])
        .arg("--manifest-path")
        .arg(src.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .env("CARGO_HOME", toolchain.join("cargo-home"))
        .status()
        .unwrap_or_else(|e| {
            panic!(
                "run {}/env (install it with `make setup`): {e}",
                toolchain.display()
            )
        });
    assert!(status.success(), "cargo failed on {fixture}");
    let built = target_dir.join(format!("wasm32-wasip1/release/{lib}.wasm"));
    let bytes = std::fs::read(&built).expect("read the built module");
    std::fs::write(&out, &bytes).expect("keep the built module");
    bytes
}

/// `test/fixtures/spin-js` built with Spin's JS build tools (`j2w`, componentize-js), which
/// `make setup-test` installs under `.work/spin-js` (or `$WASMPOD_SPIN_JS`): a component that
/// imports `fermyon:spin/key-value`. Built once per source.
pub fn spin_js_component() -> Vec<u8> {
    static LOCK: OnceLock<std::sync::Mutex<()>> = OnceLock::new();
    let _guard = LOCK.get_or_init(Default::default).lock().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/spin-js");
    let files = [
        "package.json",
        "package-lock.json",
        "index.js",
        "wit/kv.wit",
    ];
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    for file in files {
        sha2::Digest::update(
            &mut hasher,
            std::fs::read(src.join(file)).expect("fixture source"),
        );
    }
    let digest = hex::encode(sha2::Digest::finalize(hasher));
    let out = dir().join(format!("spin-js-{}.wasm", &digest[..16]));
    if let Ok(bytes) = std::fs::read(&out) {
        return bytes;
    }
    let work = std::env::var_os("WASMPOD_SPIN_JS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.work/spin-js"));
    std::fs::create_dir_all(work.join("wit")).expect("create the JS build directory");
    for file in files {
        std::fs::copy(src.join(file), work.join(file)).expect("copy the JS sources");
    }
    let built = work.join("app.wasm");
    let status = Command::new(work.join("node_modules/.bin/j2w"))
        .current_dir(&work)
        .args(["-i", "index.js", "-o"])
        .arg(&built)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap_or_else(|e| {
            panic!(
                "run j2w from {} (install it with `make setup-test`): {e}",
                work.display()
            )
        });
    assert!(status.success(), "j2w failed on the Spin JS app");
    let bytes = std::fs::read(&built).expect("read the built component");
    std::fs::write(&out, &bytes).expect("keep the built component");
    bytes
}

/// The Spin Rust hello as an image (`/spin.toml` in the rootfs), the default store allowed.
pub fn spin_rust_image(name: &str) -> ImageBuilder {
    spin_image(
        name,
        "spin_manifest_version = 2\n[application]\nname = \"rust-hello\"\nversion = \"0.1.0\"\n\
         [[trigger.http]]\nroute = \"/...\"\ncomponent = \"hello\"\n\
         [component.hello]\nsource = \"target/wasm32-wasip1/release/spin_rust_hello.wasm\"\n\
         key_value_stores = [\"default\"]\n",
        &[(
            "/target/wasm32-wasip1/release/spin_rust_hello.wasm",
            spin_rust_module(),
        )],
    )
}

/// The manifest of the Python Spin test app ([`spin_py_component`]): one wildcard route, a
/// static response, variables (one required, one templated, one naming the port outbound
/// requests may reach), the default key-value store and SQLite database, a `files`
/// directory.
pub const SPIN_PY_MANIFEST: &str = r#"
spin_manifest_version = 2

[application]
name = "spin-py"
version = "0.1.0"

[variables]
greeting = { default = "hi" }
token = { required = true, secret = true }
port = { default = "1" }

[[trigger.http]]
route = "/..."
component = "py"

[[trigger.http]]
route = "/static-route"
static_response = { status_code = 201, headers = { x-static = "yes" }, body = "static body" }

[component.py]
source = "app.wasm"
key_value_stores = ["default"]
sqlite_databases = ["default"]
files = ["static"]
environment = { GUEST_ONLY = "visible" }
allowed_outbound_hosts = ["http://127.0.0.1:{{ port }}"]
variables = { greeting = "{{ greeting }} there", token = "{{ token }}" }
"#;

/// A Spin image of the `FROM scratch` + `COPY` shape: `manifest` at `/spin.toml` and
/// `files` (path, bytes), platform `wasi/wasm`, no entrypoint (Spin images run with `/`).
pub fn spin_image(name: &str, manifest: &str, files: &[(&str, Vec<u8>)]) -> ImageBuilder {
    let mut image = ImageBuilder::new(name).platform("wasi", "wasm").file(
        "/spin.toml",
        manifest.as_bytes().to_vec(),
        0o644,
    );
    for (path, bytes) in files {
        image = image.file(path, bytes.clone(), 0o644);
    }
    image
}

/// The Python Spin app with `manifest`, its Wasm at `/app.wasm` and `/static/hello.txt`.
pub fn spin_py_image(name: &str, manifest: &str) -> ImageBuilder {
    spin_image(
        name,
        manifest,
        &[
            ("/app.wasm", spin_py_component()),
            ("/static/hello.txt", b"a file in the image\n".to_vec()),
        ],
    )
}

/// The WIT world a componentize-py fixture targets.
#[derive(Debug, Clone, Copy)]
pub enum PyWorld {
    /// `wasi:cli/command`: exports `wasi:cli/run`.
    Command,
    /// `wasi:http/proxy`: exports `wasi:http/incoming-handler`.
    HttpProxy,
    /// `wasi:http/service@0.3.0` (WASIp3): exports `wasi:http/handler`.
    HttpService,
}

/// `test/fixtures/py/NAME.py` built into a component for `world` with componentize-py
/// (installed by `make setup` under `.work/pytools`, or `$WASMPOD_COMPONENTIZE_PY`). Built once
/// per source; the output is kept in the fixtures directory.
pub fn py_component(name: &str, world: PyWorld) -> Vec<u8> {
    static LOCK: OnceLock<std::sync::Mutex<()>> = OnceLock::new();
    let _guard = LOCK.get_or_init(Default::default).lock().unwrap();
    let src_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/py");
    let source = std::fs::read(src_dir.join(format!("{name}.py"))).expect("fixture source");
    let (world, wit) = match world {
        PyWorld::Command => ("wasi:cli/command@0.2.12", wasi_wit_dir()),
        PyWorld::HttpProxy => ("wasi:http/proxy@0.2.12", wasi_wit_dir()),
        PyWorld::HttpService => ("wasi:http/service@0.3.0", wasi_p3_wit_dir()),
    };
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    sha2::Digest::update(&mut hasher, &source);
    sha2::Digest::update(&mut hasher, world.as_bytes());
    let digest = hex::encode(sha2::Digest::finalize(hasher));
    let out = dir().join(format!("py-{name}-{}.wasm", &digest[..16]));
    if let Ok(bytes) = std::fs::read(&out) {
        return bytes;
    }
    let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.work/pytools");
    let program = std::env::var_os("WASMPOD_COMPONENTIZE_PY")
        .map(PathBuf::from)
        .unwrap_or_else(|| tools.join("bin/componentize-py"));
    let partial = out.with_extension("partial");
    let status = Command::new(&program)
        .env("PYTHONPATH", &tools)
        .current_dir(&src_dir)
        .arg("-d")
        .arg(wit)
        .args(["-w", world])
        .args(["componentize", name, "-o"])
        .arg(&partial)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap_or_else(|e| {
            panic!(
                "run {} (install it with `make setup`): {e}",
                program.display()
            )
        });
    assert!(status.success(), "componentize-py failed on {name}.py");
    std::fs::rename(&partial, &out).expect("keep the built component");
    std::fs::read(&out).expect("read the built component")
}

/// The `wit/` directory of the `wasmtime-wasi-http` crate this workspace builds with: the
/// WASI 0.2 WIT files (`wasi:cli`, `wasi:http`, ...) at the version wasmpod provides.
///
/// Found where cargo unpacked the crate to build it (the version from `Cargo.lock`), so it
/// needs no network and no other platform's crates (`cargo metadata` resolves every
/// platform's, which a build never downloads). `WASMPOD_WASI_WIT` overrides it.
pub fn wasi_wit_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("WASMPOD_WASI_WIT") {
        return PathBuf::from(dir);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).expect("read Cargo.lock");
    let version =
        locked_version(&lock, "wasmtime-wasi-http").expect("wasmtime-wasi-http is in Cargo.lock");
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .expect("CARGO_HOME or HOME is set");
    let sources = home.join("registry/src");
    let crate_dir = format!("wasmtime-wasi-http-{version}");
    std::fs::read_dir(&sources)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|registry| registry.path().join(&crate_dir).join("wit"))
        .find(|wit| wit.join("deps").is_dir())
        .unwrap_or_else(|| {
            panic!(
                "no {crate_dir}/wit under {} (build the workspace first: `make build`)",
                sources.display()
            )
        })
}

/// The WASI 0.3 (WASIp3) WIT files of the same crate, at the version wasmpod provides.
pub fn wasi_p3_wit_dir() -> PathBuf {
    wasi_wit_dir().join("../src/p3/wit")
}

/// The version of `package` that `lock` (a `Cargo.lock`) pins.
fn locked_version(lock: &str, package: &str) -> Option<String> {
    let name = format!("name = \"{package}\"");
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == name {
            let version = lines.next()?.trim().strip_prefix("version = \"")?;
            return Some(version.trim_end_matches('"').to_string());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_locked_version() {
        let lock = "[[package]]\nname = \"a\"\nversion = \"1.0.0\"\n\n[[package]]\nname = \"wasmtime-wasi-http\"\nversion = \"48.0.8\"\nsource = \"registry\"\n";
        assert_eq!(
            locked_version(lock, "wasmtime-wasi-http").as_deref(),
            Some("48.0.8")
        );
        assert_eq!(locked_version(lock, "nope"), None);
    }
}
