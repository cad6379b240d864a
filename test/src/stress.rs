//! The stress loop behind `make stress` and its short e2e version: container lifecycles, many
//! at once, through a real containerd, each checked for what it printed and how it ended,
//! and the node counted before and after (see [`crate::leaks::NodeSnapshot`]).
//!
//! A cycle is one whole life of one workload: a Wasm hello, a `wasi:http` component, a
//! `wasi:http` service that is started, answers, and is stopped with SIGTERM, a native
//! container under wasmpod (all four with `ctr run --rm`), a CRI pod with a Wasm container
//! (RunPodSandbox to RemovePodSandbox), and a Wasm container created, run and removed in a
//! long-lived "anchor" pod, whose shim serves every such container and is the one the soak
//! watches. runc running busybox `echo` is the baseline loop.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_cri::v1::ContainerState;

use crate::cri::{self, ContainerSpec, Cri, Pod, PodSpec};
use crate::ctr::{self, Ran};
use crate::leaks::{self, NodeSnapshot};
use crate::{fixtures, http};

const HELLO: &str = "docker.io/wasmpod/hello:stress";
const COMPONENT: &str = "docker.io/wasmpod/component:stress";
const SERVICE: &str = "docker.io/wasmpod/http-service:stress";
const NATIVE: &str = "docker.io/wasmpod/busybox:stress";

/// How long one `ctr` call may take before the cycle counts as failed (and it is killed).
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// One kind of cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// `ctr run --rm` of a core module printing a line.
    WasmHello,
    /// `ctr run --rm` of a `wasi:cli` component printing its arguments.
    Component,
    /// A `wasi:http` service: started with `ctr run --rm`, one request answered, SIGTERM, 143.
    HttpService,
    /// `ctr run --rm` of busybox `echo` under wasmpod (a native container).
    Native,
    /// A CRI pod with one Wasm container, created and removed the way kubelet does.
    CriPod,
    /// A Wasm container created, run and removed in the anchor pod.
    AnchorContainer,
    /// The baseline: `ctr run --rm` of busybox `echo` under runc.
    RuncEcho,
}

impl Workload {
    /// Every wasmpod workload, in the order cycles take them.
    pub const MIX: [Workload; 6] = [
        Workload::WasmHello,
        Workload::Component,
        Workload::HttpService,
        Workload::Native,
        Workload::CriPod,
        Workload::AnchorContainer,
    ];

    fn name(self) -> &'static str {
        match self {
            Workload::WasmHello => "wasm hello (ctr)",
            Workload::Component => "component (ctr)",
            Workload::HttpService => "wasi:http service (ctr)",
            Workload::Native => "native busybox (ctr)",
            Workload::CriPod => "CRI pod",
            Workload::AnchorContainer => "container in the anchor pod (CRI)",
            Workload::RuncEcho => "runc busybox (ctr)",
        }
    }

    fn uses_cri(self) -> bool {
        matches!(self, Workload::CriPod | Workload::AnchorContainer)
    }
}

/// Builds the stress images and imports them into the ctr namespace and CRI's.
pub fn import_images() {
    let busybox = std::fs::read("/bin/busybox").expect("busybox-static (make setup)");
    let images = [
        (
            HELLO,
            ctr::wasm_image(HELLO, &fixtures::wat(fixtures::HELLO_WAT)),
        ),
        (
            COMPONENT,
            ctr::wasm_image(COMPONENT, &fixtures::probe_component()),
        ),
        (
            SERVICE,
            ctr::wasm_image(SERVICE, &fixtures::c_proxy_component()),
        ),
        (
            NATIVE,
            wasmpod_oci::image::ImageBuilder::new(NATIVE)
                .platform("linux", "amd64")
                .entrypoint(["/bin/busybox"])
                .file("/bin/busybox", busybox, 0o755),
        ),
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, image) in &images {
        ctr::import(image, name, dir.path());
        cri::import_k8s(image, name);
    }
    cri::ensure_pause_image();
}

/// A pod that lives through the whole run; its shim serves the anchor containers.
pub struct Anchor {
    /// The pod.
    pub pod: Pod,
    /// Its shim's pid.
    pub shim: i32,
}

impl Anchor {
    /// Runs the anchor pod under the `wasmpod` handler.
    pub fn start(cri: &mut Cri) -> Anchor {
        let pod = cri
            .run_pod("wasmpod", &PodSpec::default())
            .expect("RunPodSandbox (anchor)");
        let shim = leaks::shim_pid(&ctr::address(), &pod.id).expect("the anchor pod's shim");
        Anchor { pod, shim }
    }

    /// Removes the anchor pod.
    pub fn stop(self, cri: &mut Cri) {
        cri.remove_pod(&self.pod)
            .expect("RemovePodSandbox (anchor)");
    }
}

/// What one loop did.
#[derive(Debug)]
pub struct LoopReport {
    /// Cycles run.
    pub cycles: usize,
    /// Wall time of the whole loop.
    pub elapsed: Duration,
    /// Each failed cycle: its number, workload and what went wrong.
    pub failures: Vec<String>,
    /// Per workload: how many cycles and their median duration.
    pub per_workload: Vec<(Workload, usize, Duration)>,
}

impl LoopReport {
    /// Cycles per second.
    pub fn tasks_per_sec(&self) -> f64 {
        self.cycles as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl std::fmt::Display for LoopReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} cycles in {:.1} s: {:.2} tasks/s, {} failed",
            self.cycles,
            self.elapsed.as_secs_f64(),
            self.tasks_per_sec(),
            self.failures.len()
        )?;
        for (workload, n, median) in &self.per_workload {
            writeln!(
                f,
                "  {:<36} {n:>5} cycles, median {:.0} ms",
                workload.name(),
                median.as_secs_f64() * 1000.0
            )?;
        }
        for failure in self.failures.iter().take(20) {
            writeln!(f, "  FAILED {failure}")?;
        }
        if self.failures.len() > 20 {
            writeln!(f, "  ... and {} more", self.failures.len() - 20)?;
        }
        Ok(())
    }
}

/// Runs `cycles` cycles on `parallel` threads, cycle `n` running `mix[n % mix.len()]`, or,
/// with `until`, as many as fit before that instant (then `cycles` is ignored).
pub fn run_loop(
    mix: &[Workload],
    cycles: usize,
    parallel: usize,
    until: Option<Instant>,
    anchor: Option<&Pod>,
) -> LoopReport {
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let times = Mutex::new(Vec::new());
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..parallel.max(1) {
            scope.spawn(|| {
                let mut cri: Option<Cri> = None;
                loop {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    let more = match until {
                        Some(deadline) => Instant::now() < deadline,
                        None => n < cycles,
                    };
                    if !more {
                        return;
                    }
                    let workload = mix[n % mix.len()];
                    if workload.uses_cri() && cri.is_none() {
                        cri = Some(Cri::connect());
                    }
                    let t0 = Instant::now();
                    let result = cycle(workload, n, cri.as_mut(), anchor);
                    let took = t0.elapsed();
                    times.lock().expect("times").push((workload, took));
                    if let Err(e) = result {
                        failures
                            .lock()
                            .expect("failures")
                            .push(format!("cycle {n} ({}): {e}", workload.name()));
                    }
                }
            });
        }
    });
    let elapsed = started.elapsed();
    let times = times.into_inner().expect("times");
    let mut per_workload = Vec::new();
    for workload in mix.iter().copied() {
        if per_workload.iter().any(|(w, _, _)| *w == workload) {
            continue;
        }
        let mut of: Vec<Duration> = times
            .iter()
            .filter(|(w, _)| *w == workload)
            .map(|(_, d)| *d)
            .collect();
        of.sort();
        let median = of.get(of.len() / 2).copied().unwrap_or_default();
        per_workload.push((workload, of.len(), median));
    }
    LoopReport {
        cycles: times.len(),
        elapsed,
        failures: failures.into_inner().expect("failures"),
        per_workload,
    }
}

/// One cycle of `workload`; `n` makes its names unique.
fn cycle(
    workload: Workload,
    n: usize,
    cri: Option<&mut Cri>,
    anchor: Option<&Pod>,
) -> Result<(), String> {
    match workload {
        Workload::WasmHello => {
            let ran = ctr_run(ctr::WASMPOD, &[], HELLO, &[])?;
            expect_output(&ran, 0, "hello from wasmpod\n")
        }
        Workload::Component => {
            let ran = ctr_run(
                ctr::WASMPOD,
                &[],
                COMPONENT,
                &["/app.wasm", "args", "stress"],
            )?;
            expect_output(&ran, 0, "arg[0]=/app.wasm\narg[1]=args\narg[2]=stress\n")
        }
        Workload::Native => {
            let ran = ctr_run(
                ctr::WASMPOD,
                &[],
                NATIVE,
                &["/bin/busybox", "echo", "native"],
            )?;
            expect_output(&ran, 0, "native\n")
        }
        Workload::RuncEcho => {
            let ran = ctr_run(
                "io.containerd.runc.v2",
                &[],
                NATIVE,
                &["/bin/busybox", "echo", "runc"],
            )?;
            expect_output(&ran, 0, "runc\n")
        }
        Workload::HttpService => http_service(n),
        Workload::CriPod => {
            let cri = cri.ok_or("no CRI client")?;
            let pod = cri
                .run_pod("wasmpod", &PodSpec::default())
                .map_err(|e| format!("RunPodSandbox: {}", e.message()))?;
            let ran = cri_container(cri, &pod, &format!("app{n}"));
            let removed = cri
                .remove_pod(&pod)
                .map_err(|e| format!("RemovePodSandbox: {}", e.message()));
            ran.and(removed)
        }
        Workload::AnchorContainer => {
            let cri = cri.ok_or("no CRI client")?;
            let pod = anchor.ok_or("no anchor pod")?;
            cri_container(cri, pod, &format!("c{n}"))
        }
    }
}

/// `ctr run --rm --runtime RUNTIME EXTRA... IMAGE ID ARGS...`, killed after [`CALL_TIMEOUT`].
fn ctr_run(runtime: &str, extra: &[&str], image: &str, args: &[&str]) -> Result<Ran, String> {
    let id = ctr::unique_id("stress");
    let mut all = vec!["run", "--rm", "--runtime", runtime];
    all.extend_from_slice(extra);
    all.extend_from_slice(&[image, &id]);
    all.extend_from_slice(args);
    ctr_with_timeout(&all)
}

fn ctr_with_timeout(args: &[&str]) -> Result<Ran, String> {
    let mut c = std::process::Command::new("timeout");
    c.args(["--kill-after=5", &CALL_TIMEOUT.as_secs().to_string(), "ctr"])
        .args([
            "--address",
            &ctr::address(),
            "--namespace",
            &ctr::namespace(),
        ])
        .args(args)
        .stdin(std::process::Stdio::null());
    let ran: Ran = c
        .output()
        .map_err(|e| format!("run ctr {}: {e}", args.join(" ")))?
        .into();
    if ran.code == 124 || ran.code == 137 {
        return Err(format!("ctr {} timed out: {ran:?}", args.join(" ")));
    }
    Ok(ran)
}

fn expect_output(ran: &Ran, code: i32, stdout: &str) -> Result<(), String> {
    if ran.code == code && ran.stdout == stdout {
        Ok(())
    } else {
        Err(format!(
            "wanted exit {code} printing {stdout:?}, got {ran:?}"
        ))
    }
}

/// The service's port in cycle `n`: one per cycle from a range below the kernel's ephemeral
/// ports, so that no two services running at once (or a client's socket) share one.
fn service_port(n: usize) -> u16 {
    21000 + (n % 8000) as u16
}

/// Starts the `wasi:http` service, waits for a 200, stops it with SIGTERM: it must exit 143.
fn http_service(n: usize) -> Result<(), String> {
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], service_port(n)).into();
    let id = ctr::unique_id("stress-http");
    let listen = format!("WASMTIME_HTTP_PROXY_SOCKET_ADDR={addr}");
    let mut child = ctr::spawn(
        ctr::WASMPOD,
        &id,
        &["--net-host", "--env", &listen],
        SERVICE,
        &[],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let served = loop {
        match http::get(addr, "/hello") {
            Ok(reply) if reply.status == 200 => break Ok(()),
            Ok(reply) => break Err(format!("GET /hello: {reply:?}")),
            Err(_) if Instant::now() < deadline => {
                if let Ok(Some(status)) = child.try_wait() {
                    break Err(format!("ctr run ended before serving: {status}"));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => break Err(format!("{addr} never served: {e}")),
        }
    };
    let killed = ctr_with_timeout(&["tasks", "kill", "--signal", "SIGTERM", &id]);
    let (ran, _) = ctr::finish(child);
    served?;
    if ran.code != 143 {
        return Err(format!(
            "wanted exit 143 after SIGTERM, got {ran:?} (ctr tasks kill: {killed:?})"
        ));
    }
    Ok(())
}

/// Creates, starts, waits for and removes a hello container in `pod`: it must exit 0.
fn cri_container(cri: &mut Cri, pod: &Pod, name: &str) -> Result<(), String> {
    let spec = ContainerSpec {
        name: name.to_string(),
        image: HELLO.into(),
        ..Default::default()
    };
    let id = cri
        .create_container(pod, &spec)
        .map_err(|e| format!("CreateContainer: {}", e.message()))?;
    let ran = cri
        .start_container(&id)
        .map_err(|e| format!("StartContainer: {}", e.message()))
        .and_then(|()| wait_exited(cri, &id));
    let removed = cri
        .remove_container(&id)
        .map_err(|e| format!("RemoveContainer: {}", e.message()));
    let _ = std::fs::remove_file(pod.log_dir.join(format!("{name}.log")));
    ran.and(removed)
}

fn wait_exited(cri: &mut Cri, id: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = cri
            .container_status(id)
            .map_err(|e| format!("ContainerStatus: {}", e.message()))?;
        if status.state == ContainerState::ContainerExited as i32 {
            return match status.exit_code {
                0 => Ok(()),
                code => Err(format!(
                    "exited {code}: {} {}",
                    status.reason, status.message
                )),
            };
        }
        if Instant::now() > deadline {
            return Err(format!("still {:?} after 60 s", status.state));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The node now, as the stress run counts it, watching `shim`.
pub fn snapshot(shim: Option<i32>) -> NodeSnapshot {
    NodeSnapshot::take(
        &ctr::state_dir(),
        &ctr::namespace(),
        cri::CGROUP_PARENT_ROOT,
        &fixtures::cache_dir(),
        shim,
    )
}

/// The node once the shims on their way out have gone (the one serving the anchor pod,
/// `shim`, stays).
pub fn quiet_snapshot(shim: Option<i32>) -> NodeSnapshot {
    ctr::wait_for_quiet_except(&ctr::address(), shim.map_or(0, |_| 1));
    snapshot(shim)
}

/// Waits (up to 30 s) until nothing counts more than `before`: shims and the cleanup after
/// a Delete finish asynchronously. Returns the last snapshot and what is still above.
pub fn settle(before: &NodeSnapshot, shim: Option<i32>) -> (NodeSnapshot, Vec<String>) {
    ctr::wait_for_quiet_except(&ctr::address(), shim.map_or(0, |_| 1));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = snapshot(shim);
        let grown = now.grown_since(before);
        if grown.is_empty() || Instant::now() > deadline {
            return (now, grown);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// One sample of the soak: seconds since it began, the watched shim's RSS (KiB) and fds.
pub type Sample = (f64, u64, usize);

/// Whether samples show growth: after the first quarter (warm-up: pools and caches fill),
/// a last-quarter lowest fd count above the second quarter's lowest, or a last-quarter mean
/// RSS more than max(1 MiB, 5%) above the second quarter's mean. `None` when flat. The fd
/// count is judged by its lows: a sample taken while containers come and go counts their
/// descriptors too, and a leaked descriptor raises every sample after it, the lows included.
pub fn growth(samples: &[Sample]) -> Option<String> {
    if samples.len() < 8 {
        return Some(format!("only {} samples: too few to judge", samples.len()));
    }
    let q = samples.len() / 4;
    let second = &samples[q..2 * q];
    let last = &samples[samples.len() - q..];
    let mean = |s: &[Sample]| s.iter().map(|x| x.1 as f64).sum::<f64>() / s.len() as f64;
    let (second_rss, last_rss) = (mean(second), mean(last));
    let fd_floor = second.iter().map(|x| x.2).min().unwrap_or(0);
    let fd_last = last.iter().map(|x| x.2).min().unwrap_or(0);
    let mut grown = Vec::new();
    if last_rss > second_rss + (second_rss * 0.05).max(1024.0) {
        grown.push(format!(
            "shim RSS grew from a mean of {second_rss:.0} KiB to {last_rss:.0} KiB"
        ));
    }
    if fd_last > fd_floor {
        grown.push(format!(
            "shim fds grew from at least {fd_floor} to at least {fd_last}"
        ));
    }
    (!grown.is_empty()).then(|| grown.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(rss: impl Fn(usize) -> u64, fds: impl Fn(usize) -> usize) -> Vec<Sample> {
        (0..40).map(|i| (i as f64 * 10.0, rss(i), fds(i))).collect()
    }

    #[test]
    fn flat_samples_after_a_warm_up_are_no_growth() {
        let s = samples(
            |i| {
                if i < 10 {
                    20_000 + i as u64 * 500
                } else {
                    25_000 + (i % 3) as u64 * 300
                }
            },
            |i| 30 + i % 2,
        );
        assert_eq!(growth(&s), None);
        // The soak's anchor pod: containers come and go, the count swings by 5 and comes back.
        let s = samples(|_| 16_700, |i| if i % 3 == 0 { 18 } else { 23 });
        assert_eq!(growth(&s), None);
    }

    #[test]
    fn steady_rss_growth_and_a_climbing_fd_count_are_growth() {
        let rss = growth(&samples(|i| 20_000 + i as u64 * 200, |_| 30)).expect("rss growth");
        assert!(rss.contains("RSS"), "{rss}");
        let fds = growth(&samples(|_| 20_000, |i| 30 + i)).expect("fd growth");
        // One descriptor leaked mid-way, under the coming and going of containers.
        let leak = growth(&samples(
            |_| 20_000,
            |i| 18 + (i % 4) * 2 + usize::from(i > 25),
        ))
        .expect("a leaked fd");
        assert!(leak.contains("fds"), "{leak}");
        assert!(fds.contains("fds"), "{fds}");
    }

    #[test]
    fn too_few_samples_cannot_pass() {
        assert!(growth(&samples(|_| 1, |_| 1)[..5]).is_some());
    }
}
