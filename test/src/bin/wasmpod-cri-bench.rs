//! `wasmpod-cri-bench ROUNDS PODS`: the per-pod benchmark over CRI, wasmpod against runc in
//! the same run, on the private containerd in `WASMPOD_CONTAINERD_ADDRESS` (started with
//! the CRI plugin by `test/lib/containerd.sh`).
//!
//! - cold start: RunPodSandbox, CreateContainer and StartContainer of a one-container pod
//!   until CRI reports the container running, ROUNDS times per runtime, interleaved (the
//!   first pod of each is a warm-up: page cache, compile cache);
//! - memory: PODS sleeping pods per runtime running side by side, then the PSS of every
//!   process of a pod (its shim and the shim's children, the pause container and the app
//!   container), per pod.
//!
//! - a second container: PODS Wasm pods with two app containers each, PSS per pod.
//! - HTTP pods: a Spin hello app (a C core module, componentized once) under the `spin`
//!   handler against busybox httpd under runc: cold start from RunPodSandbox to the first
//!   200 answered on port 80 in the pod's network namespace, and PSS per pod with PODS of
//!   each serving.
//!
//! It prints `cold_ms WASMPOD RUNC`, `pss_kb WASMPOD RUNC`, `pss_two_kb WASMPOD`,
//! `http_cold_ms SPIN RUNC` and `http_pss_kb SPIN RUNC` lines (medians) for bench.sh.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use k8s_cri::v1::ContainerState;
use wasmpod_e2e::cri::{self, ContainerSpec, Cri, Pod, PodSpec};
use wasmpod_e2e::{ctr, fixtures, http, leaks};
use wasmpod_oci::image::ImageBuilder;

const WASM_IMAGE: &str = "docker.io/wasmpod/probe:cri-bench";
const NATIVE_IMAGE: &str = "docker.io/wasmpod/busybox:cri-bench";
const SPIN_IMAGE: &str = "docker.io/wasmpod/spin-hello:cri-bench";

/// The Spin hello app: one wildcard route to a C core module.
const SPIN_MANIFEST: &str = r#"
spin_manifest_version = 2
[application]
name = "hello"
[[trigger.http]]
route = "/..."
component = "hello"
[component.hello]
source = "hello.wasm"
"#;

/// One side of the comparison: a CRI handler and the container it runs.
struct Side {
    handler: &'static str,
    image: &'static str,
    command: [&'static str; 3],
}

const WASMPOD: Side = Side {
    handler: "wasmpod",
    image: WASM_IMAGE,
    command: ["/probe.wasm", "sleep", "3600"],
};
const RUNC: Side = Side {
    handler: "runc",
    image: NATIVE_IMAGE,
    command: ["/bin/busybox", "sleep", "3600"],
};
const SPIN: Side = Side {
    handler: "spin",
    image: SPIN_IMAGE,
    command: ["/", "", ""],
};
const RUNC_HTTPD: Side = Side {
    handler: "runc",
    image: NATIVE_IMAGE,
    command: ["/bin/busybox", "httpd", "-f"],
};

fn main() -> ExitCode {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let [rounds, pods] = args[..] else {
        eprintln!("usage: wasmpod-cri-bench ROUNDS PODS");
        return ExitCode::from(2);
    };
    cri::ensure_pause_image();
    cri::import_k8s(
        &ImageBuilder::new(WASM_IMAGE)
            .entrypoint(["/probe.wasm"])
            .file("/probe.wasm", fixtures::probe(), 0o755),
        WASM_IMAGE,
    );
    let busybox = std::fs::read("/bin/busybox").expect("busybox-static (make setup)");
    cri::import_k8s(
        &ImageBuilder::new(NATIVE_IMAGE)
            .platform("linux", "amd64")
            .entrypoint(["/bin/busybox"])
            .file("/bin/busybox", busybox, 0o755)
            .file("/hello", b"hello\n".to_vec(), 0o644),
        NATIVE_IMAGE,
    );
    cri::import_k8s(
        &fixtures::spin_image(
            SPIN_IMAGE,
            SPIN_MANIFEST,
            &[("/hello.wasm", fixtures::c_proxy_core_module())],
        ),
        SPIN_IMAGE,
    );
    let mut cri = Cri::connect();

    // Cold starts, interleaved; every pod is removed before the next starts.
    let [wasm, native] = cold_starts(&mut cri, [&WASMPOD, &RUNC], rounds, |_, _, _| {});
    println!("cold_ms {wasm:.1} {native:.1}");

    // Memory: PODS of each side running at once.
    let running: Vec<Vec<(Pod, Vec<String>)>> = [&WASMPOD, &RUNC]
        .into_iter()
        .map(|side| (0..pods).map(|_| start_pod(&mut cri, side, 1)).collect())
        .collect();
    print_pss_and_remove(&mut cri, "pss_kb", &running);

    // The same number of Wasm pods with two containers each: what a second container costs.
    let two: Vec<(Pod, Vec<String>)> = (0..pods)
        .map(|_| start_pod(&mut cri, &WASMPOD, 2))
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let mut pss_two: Vec<f64> = two.iter().map(|(pod, _)| pod_pss_kb(pod) as f64).collect();
    println!("pss_two_kb {:.0}", median(&mut pss_two));
    for (pod, ids) in &two {
        remove_pod(&mut cri, pod, ids);
    }

    // HTTP pods: cold start to the first answer, then memory with PODS of each serving.
    let paths = ["/hello", "/hello"];
    let [spin, httpd] = cold_starts(&mut cri, [&SPIN, &RUNC_HTTPD], rounds, |cri, pod, n| {
        first_answer(cri, pod, paths[n])
    });
    println!("http_cold_ms {spin:.1} {httpd:.1}");
    let running: Vec<Vec<(Pod, Vec<String>)>> = [&SPIN, &RUNC_HTTPD]
        .into_iter()
        .enumerate()
        .map(|(n, side)| {
            (0..pods)
                .map(|_| {
                    let (pod, ids) = start_pod(&mut cri, side, 1);
                    first_answer(&mut cri, &pod, paths[n]);
                    (pod, ids)
                })
                .collect()
        })
        .collect();
    print_pss_and_remove(&mut cri, "http_pss_kb", &running);
    ExitCode::SUCCESS
}

/// Prints `label WASMPOD NATIVE`: the median PSS per pod of the two sides' `running` pods
/// (measured together, so shared pages are shared the way they are on a busy node), then
/// removes them.
fn print_pss_and_remove(cri: &mut Cri, label: &str, running: &[Vec<(Pod, Vec<String>)>]) {
    std::thread::sleep(Duration::from_secs(2));
    let mut pss: Vec<Vec<f64>> = running
        .iter()
        .map(|pods| pods.iter().map(|(pod, _)| pod_pss_kb(pod) as f64).collect())
        .collect();
    println!(
        "{label} {:.0} {:.0}",
        median(&mut pss[0]),
        median(&mut pss[1])
    );
    for (pod, ids) in running.iter().flatten() {
        remove_pod(cri, pod, ids);
    }
}

/// Median milliseconds from RunPodSandbox until each side's pod is running and `ready` has
/// returned (given the side's index), over `rounds` interleaved rounds after a warm-up one;
/// every pod is removed before the next starts.
fn cold_starts(
    cri: &mut Cri,
    sides: [&Side; 2],
    rounds: usize,
    ready: impl Fn(&mut Cri, &Pod, usize),
) -> [f64; 2] {
    let mut times = [Vec::new(), Vec::new()];
    for round in 0..=rounds {
        for (n, side) in sides.into_iter().enumerate() {
            let started = Instant::now();
            let (pod, ids) = start_pod(cri, side, 1);
            ready(cri, &pod, n);
            let elapsed = started.elapsed();
            remove_pod(cri, &pod, &ids);
            if round > 0 {
                times[n].push(elapsed.as_secs_f64() * 1000.0);
            }
        }
    }
    [median(&mut times[0]), median(&mut times[1])]
}

/// Polls `GET path` on port 80 inside the pod's network namespace until it answers 200.
fn first_answer(cri: &mut Cri, pod: &Pod, path: &'static str) {
    let netns = cri.pod_netns(pod).expect("the pod's network namespace");
    http::in_netns(&netns, move || {
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], 80).into();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if http::get(addr, path).is_ok_and(|r| r.status == 200) {
                return;
            }
            assert!(Instant::now() < deadline, "{addr}{path} never answered 200");
            std::thread::sleep(Duration::from_millis(1));
        }
    });
}

/// Runs a pod of `side` with `containers` app containers and waits until CRI reports them
/// all running.
fn start_pod(cri: &mut Cri, side: &Side, containers: usize) -> (Pod, Vec<String>) {
    let pod = cri
        .run_pod(side.handler, &PodSpec::default())
        .expect("RunPodSandbox");
    let ids: Vec<String> = (0..containers)
        .map(|n| {
            let spec = ContainerSpec {
                name: format!("app{n}"),
                image: side.image.into(),
                command: side
                    .command
                    .iter()
                    .filter(|s| !s.is_empty())
                    .map(|s| s.to_string())
                    .collect(),
                ..Default::default()
            };
            let id = cri.create_container(&pod, &spec).expect("CreateContainer");
            cri.start_container(&id).expect("StartContainer");
            id
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    for id in &ids {
        while cri
            .container_status(id)
            .map(|s| s.state != ContainerState::ContainerRunning as i32)
            .unwrap_or(true)
        {
            assert!(Instant::now() < deadline, "{id} never ran");
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    (pod, ids)
}

fn remove_pod(cri: &mut Cri, pod: &Pod, ids: &[String]) {
    for id in ids {
        let _ = cri.stop_container(id, 0);
        let _ = cri.remove_container(id);
    }
    cri.remove_pod(pod).expect("RemovePodSandbox");
}

/// PSS of the pod's shim, its children (wasmpod's zygote), and every process in the pod's
/// cgroups.
fn pod_pss_kb(pod: &Pod) -> u64 {
    let mut pids: Vec<i32> = leaks::shim_pid(&ctr::address(), &pod.id)
        .into_iter()
        .collect();
    if let Some(&shim) = pids.first() {
        pids.extend(leaks::children_of(shim));
    }
    pids.extend(cri::pod_processes(pod, ""));
    pids.sort_unstable();
    pids.dedup();
    pids.iter().map(|pid| pss_kb(*pid)).sum()
}

fn pss_kb(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}
