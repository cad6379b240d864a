//! A thin client for the private containerd: runs `ctr` against its socket and imports images.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use wasmpod_oci::image::ImageBuilder;

/// The three runtime names wasmpod answers to.
pub const RUNTIMES: [&str; 3] = [
    "io.containerd.wasmpod.v1",
    "io.containerd.spin.v2",
    "io.containerd.wasmtime.v1",
];

/// The runtime name the tests use by default.
pub const WASMPOD: &str = RUNTIMES[0];

/// The containerd socket under test.
pub fn address() -> String {
    std::env::var("WASMPOD_CONTAINERD_ADDRESS")
        .expect("WASMPOD_CONTAINERD_ADDRESS is not set: run the e2e tests with `make e2e`")
}

/// The containerd namespace the tests use.
pub fn namespace() -> String {
    std::env::var("WASMPOD_NAMESPACE").unwrap_or_else(|_| "wasmpod-e2e".into())
}

/// A `ctr` command against the private containerd, in the test namespace.
pub fn ctr() -> Command {
    let mut c = Command::new("ctr");
    c.args(["--address", &address(), "--namespace", &namespace()]);
    c
}

/// What a finished command printed and how it ended.
#[derive(Debug)]
pub struct Ran {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl From<Output> for Ran {
    fn from(o: Output) -> Ran {
        Ran {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Runs `ctr ARGS...` to completion with no stdin.
pub fn run_ctr(args: &[&str]) -> Ran {
    ctr()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run ctr")
        .into()
}

/// A fresh container id with `prefix`.
pub fn unique_id(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// Writes `image` as a tarball and imports it; returns the image name.
pub fn import(image: &ImageBuilder, name: &str, dir: &Path) -> String {
    let tar = dir.join(format!("{}.tar", name.replace(['/', ':'], "_")));
    image.write_tar(&tar).expect("write image tar");
    let ran = run_ctr(&["images", "import", "--all-platforms", tar.to_str().unwrap()]);
    assert_eq!(ran.code, 0, "import {name}: {ran:?}");
    name.to_string()
}

/// An image holding `wasm` at `/app.wasm` with that as its entrypoint.
pub fn wasm_image(name: &str, wasm: &[u8]) -> ImageBuilder {
    ImageBuilder::new(name)
        .entrypoint(["/app.wasm"])
        .file("/app.wasm", wasm.to_vec(), 0o755)
}

/// `ctr run --rm --runtime wasmpod EXTRA... IMAGE ID ARGS...` to completion.
pub fn run_as(id: &str, extra: &[&str], image: &str, args: &[&str]) -> Ran {
    let mut all = vec!["run", "--rm", "--runtime", WASMPOD];
    all.extend_from_slice(extra);
    all.extend_from_slice(&[image, id]);
    all.extend_from_slice(args);
    run_ctr(&all)
}

/// `ctr run --rm --runtime RUNTIME IMAGE ID ARGS...`.
pub fn run_image(runtime: &str, image: &str, args: &[&str]) -> Ran {
    let id = unique_id("run");
    let mut all = vec!["run", "--rm", "--runtime", runtime, image, &id];
    all.extend_from_slice(args);
    run_ctr(&all)
}

/// The `wasmpod` command built next to the test binaries (`target/<profile>/wasmpod`).
pub fn wasmpod_tool() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.parent()
        .and_then(Path::parent)
        .map(|profile_dir| profile_dir.join("wasmpod"))
        .expect("target/<profile>/deps/<test>")
}

/// The version of the containerd under test, as (major, minor, patch).
pub fn server_version() -> (u32, u32, u32) {
    let out = run_ctr(&["version"]);
    let server = out.stdout.split("Server:").nth(1).unwrap_or_default();
    let version = server
        .lines()
        .find_map(|l| l.trim().strip_prefix("Version:"))
        .map(|v| v.trim().trim_start_matches('v').to_string())
        .unwrap_or_default();
    let mut parts = version
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse().unwrap_or(0));
    (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    )
}

/// Whether the containerd under test imports images with Wasm layers (1.7.7 and later).
pub fn imports_wasm_layers() -> bool {
    let supported = server_version() >= (1, 7, 7);
    if !supported {
        crate::skip::skip(crate::skip::Skip::NotApplicable(format!(
            "containerd {:?} cannot import images with Wasm layers (needs >= 1.7.7; \
             `make e2e-containerd-2.1` runs this, `make e2e-containerd-1.7` too for its suites)",
            server_version()
        )));
    }
    supported
}

/// The directory of the containerd under test: its snapshots and rootfs mounts are below it.
pub fn state_dir() -> String {
    let address = address();
    let dir = Path::new(&address).parent().unwrap_or(Path::new("/"));
    dir.display().to_string()
}

/// What containers could leave behind, counted once every shim that is on its way out
/// (they exit asynchronously after their last Delete) has gone: (mounts under the state
/// dir, cgroup dirs of the test namespace, shim processes of this containerd, shim sockets).
pub fn leak_counts() -> (usize, usize, usize, usize) {
    wait_for_quiet(&address());
    (
        crate::leaks::mounts_containing(&state_dir()),
        crate::leaks::cgroup_dirs("memory", &namespace()),
        crate::leaks::shim_processes(&address()),
        crate::leaks::shim_sockets(),
    )
}

/// Shims exit asynchronously after their last Delete; wait for that.
pub fn wait_for_quiet(address: &str) {
    wait_for_quiet_except(address, 0);
}

/// [`wait_for_quiet`] while `keep` shims are meant to stay (they serve a pod that lives on).
pub fn wait_for_quiet_except(address: &str, keep: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while crate::leaks::shim_processes(address) > keep && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `ctr run --rm --runtime RUNTIME EXTRA... IMAGE ID ARGS...` in the background, so the
/// test can talk to or signal the task.
pub fn spawn(runtime: &str, id: &str, extra: &[&str], image: &str, args: &[&str]) -> Child {
    let mut c = ctr();
    c.args(["run", "--rm", "--runtime", runtime])
        .args(extra)
        .arg(image)
        .arg(id)
        .args(args);
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ctr run")
}

/// Waits for a [`spawn`]ed run to end; returns what it printed and how long that took.
pub fn finish(child: Child) -> (Ran, Duration) {
    let start = Instant::now();
    let out = child.wait_with_output().expect("wait for ctr run");
    (out.into(), start.elapsed())
}

/// A TCP port free on loopback now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on loopback")
}
