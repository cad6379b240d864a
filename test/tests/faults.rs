//! Faults under running workloads, each on the containerd under test (1.6, 1.7 and 2.1 in
//! `make test`): containerd restarted under a serving shim and while a task's exit waits to be
//! forwarded, and during a Create (by `ctr`, and in a pod's StartContainer); the shim SIGKILLed during Create and during Delete; the
//! zygote killed while a Create is in flight; a compile cache that cannot be written; a guest
//! flooding stdout; a guest filling a tmpfs past its memory limit. Each ends with the node
//! counted as before (no mount, cgroup, process, fd or `/run/wasmpod` entry left behind).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use k8s_cri::v1::ContainerState;
use wasmpod_e2e::cri::{ContainerSpec, Cri, PodSpec};
use wasmpod_e2e::ctr::{self, run_ctr, unique_id, Ran, WASMPOD};
use wasmpod_e2e::faults::{self, restart_containerd};
use wasmpod_e2e::leaks::{self, NodeSnapshot};
use wasmpod_e2e::{cri, fixtures, http, stress};

fn import(name: &str, wasm: &[u8]) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    ctr::import(&ctr::wasm_image(name, wasm), name, dir.path())
}

/// A module no cache has seen that takes a while to compile (a few seconds in a debug build).
fn slow_module() -> Vec<u8> {
    fixtures::big_module(20_000, fresh_seed())
}

/// A seed no earlier run used, so that the module is compiled, not found in the cache.
fn fresh_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64
}

fn wait_serving(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match http::get(addr, "/hello") {
            Ok(reply) if reply.status == 200 => return,
            other => assert!(Instant::now() < deadline, "{addr} not serving: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The status column of `ctr tasks ls` for `id` (`RUNNING`, `STOPPED`, ...), if listed.
fn task_status(id: &str) -> Option<(i32, String)> {
    let ran = run_ctr(&["tasks", "ls"]);
    ran.stdout.lines().find_map(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        (cols.first() == Some(&id)).then(|| {
            (
                cols.get(1).and_then(|p| p.parse().ok()).unwrap_or(0),
                cols.get(2).unwrap_or(&"").to_string(),
            )
        })
    })
}

fn assert_no_leak(before: &NodeSnapshot) {
    // Every fault test compiles modules of its own: the cache grows by design.
    let before = NodeSnapshot {
        cache_bytes: u64::MAX,
        ..*before
    };
    let (after, grown) = stress::settle(&before, None);
    assert!(
        grown.is_empty(),
        "leaked: {grown:?}\nbefore: {before}\nafter:  {after}\ncontainerd's fds: {:?}",
        faults::containerd_fds()
    );
}

fn remove(id: &str) {
    run_ctr(&["tasks", "delete", "--force", id]);
    run_ctr(&["containers", "delete", id]);
}

/// A hello runs (the node still works after a fault).
fn assert_hello_runs() {
    let image = import(
        "docker.io/wasmpod/fault-hello:e2e",
        &fixtures::wat(fixtures::HELLO_WAT),
    );
    let ran = ctr::run_image(WASMPOD, &image, &[]);
    assert_eq!(
        (ran.code, ran.stdout.as_str()),
        (0, "hello from wasmpod\n"),
        "{ran:?}"
    );
}

/// containerd stopped and started again under a serving `wasi:http` service: the service
/// answers while containerd is down, containerd finds the task running when it is back, and a
/// task that exits while containerd is down has its exit forwarded once it is back: once.
#[test]
fn containerd_restarted_under_a_serving_shim_loses_and_repeats_no_event() {
    let before = stress::quiet_snapshot(None);
    let image = import(
        "docker.io/wasmpod/fault-http:e2e",
        &fixtures::c_proxy_component(),
    );
    let addr: SocketAddr = ([127, 0, 0, 1], ctr::free_port()).into();
    let id = unique_id("fault-http");
    let listen = format!("WASMTIME_HTTP_PROXY_SOCKET_ADDR={addr}");
    let ran = run_ctr(&[
        "run",
        "-d",
        "--runtime",
        WASMPOD,
        "--net-host",
        "--env",
        &listen,
        &image,
        &id,
    ]);
    assert_eq!(ran.code, 0, "{ran:?}");
    wait_serving(addr);
    let (pid, status) = task_status(&id).expect("the task is listed");
    assert_eq!(status, "RUNNING");

    let offset = faults::containerd_log_offset();
    restart_containerd(Duration::from_secs(2), || wait_serving(addr));
    assert_eq!(
        task_status(&id).map(|(_, s)| s),
        Some("RUNNING".into()),
        "after the restart"
    );
    wait_serving(addr);

    // Down for longer than a quick retry loop would wait: the exit must still arrive.
    restart_containerd(Duration::from_secs(4), || {
        faults::signal(pid, libc::SIGTERM);
        assert!(
            faults::exits_within(pid, Duration::from_secs(10)),
            "the guest ignored SIGTERM"
        );
    });
    // containerd 1.6 logs each event it is forwarded: there the exit must arrive, once.
    let counted = faults::logs_forwarded_events();
    let deadline = Instant::now() + Duration::from_secs(20);
    while counted && faults::forwarded_since(offset, "/tasks/exit") == 0 {
        assert!(
            Instant::now() < deadline,
            "no /tasks/exit forwarded after containerd came back"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    match task_status(&id).map(|(_, s)| s) {
        Some(status) => {
            assert_eq!(status, "STOPPED");
            let deleted = run_ctr(&["tasks", "delete", &id]);
            assert_eq!(deleted.code, 0, "{deleted:?}");
            assert!(
                deleted.stdout.contains("143") || deleted.stderr.contains("143"),
                "exit status: {deleted:?}"
            );
        }
        // containerd 2.x, reloading a shim whose task has no live process, deletes it
        // ("cleaning leaked shim process"): the task is gone and so is its shim.
        None => {
            assert!(!counted, "containerd 1.6 lost the task");
            let deadline = Instant::now() + Duration::from_secs(10);
            while leaks::shim_pid(&ctr::address(), &id).is_some() {
                assert!(
                    Instant::now() < deadline,
                    "the task is gone but its shim is not"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    run_ctr(&["containers", "delete", &id]);
    std::thread::sleep(Duration::from_secs(1));
    let counts: &[(&str, usize)] = if counted {
        &[
            ("/tasks/exit", 1),
            ("/tasks/delete", 1),
            ("/tasks/create", 0),
        ]
    } else {
        &[]
    };
    for &(topic, times) in counts {
        assert_eq!(
            faults::forwarded_since(offset, topic),
            times,
            "{topic} forwarded since the first restart"
        );
    }
    assert_no_leak(&before);
}

/// containerd stopped while a Create compiles a new module: the client's call fails, the
/// shim carries on, and once containerd is back the task is in a state it can report and
/// remove, the container starts again, and
/// nothing is left.
#[test]
fn containerd_restarted_during_create_leaves_a_task_it_can_remove() {
    let before = stress::quiet_snapshot(None);
    let image = import("docker.io/wasmpod/fault-slow:e2e", &slow_module());
    let id = unique_id("fault-cd-create");
    let made = run_ctr(&["containers", "create", "--runtime", WASMPOD, &image, &id]);
    assert_eq!(made.code, 0, "{made:?}");
    let start = ctr::ctr()
        .args(["tasks", "start", "--null-io", &id])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ctr tasks start");
    let compile =
        faults::wait_for_process(Duration::from_secs(60), |_, args| faults::is_compile(args))
            .expect("a compile while Create runs");
    restart_containerd(Duration::from_secs(2), || {});
    let interrupted: Ran = start.wait_with_output().expect("ctr tasks start").into();
    // containerd deletes the task whose Create it gave up: the compile stops.
    assert!(
        faults::exits_within(compile, Duration::from_secs(10)),
        "the compile ran on for 10 s after containerd gave its Create up"
    );
    if let Some((_, status)) = task_status(&id) {
        assert!(
            ["CREATED", "RUNNING", "STOPPED"].contains(&status.as_str()),
            "task {id} is {status} after the restart (ctr said {interrupted:?})"
        );
        let deleted = run_ctr(&["tasks", "delete", "--force", &id]);
        assert_eq!(deleted.code, 0, "{deleted:?}");
    }
    // A task containerd does not list may still have its bundle, which the reloaded
    // containerd removes in the background (its "cleaning leaked shim process"): the id is
    // reused once that is done.
    let bundle = std::path::Path::new(&ctr::state_dir())
        .join("state/io.containerd.runtime.v2.task")
        .join(ctr::namespace())
        .join(&id);
    let deadline = Instant::now() + Duration::from_secs(20);
    while bundle.exists() {
        assert!(
            Instant::now() < deadline,
            "containerd left the bundle {}",
            bundle.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let again = run_ctr(&["tasks", "start", "--null-io", &id]);
    assert_eq!(again.code, 0, "start after the restart: {again:?}");
    remove(&id);
    assert_no_leak(&before);
}

/// The shim SIGKILLed while a Create compiles: `ctr run` fails, the compile stops with it (the
/// worker sees the shim's end of the requester pipe close), containerd's cleanup (`shim
/// delete`) leaves nothing, and the next container runs.
#[test]
fn the_shim_killed_during_create_leaves_nothing() {
    let before = stress::quiet_snapshot(None);
    let image = import("docker.io/wasmpod/fault-slow:e2e", &slow_module());
    let id = unique_id("fault-create");
    let child = ctr::spawn(WASMPOD, &id, &[], &image, &[]);
    let compile =
        faults::wait_for_process(Duration::from_secs(60), |_, args| faults::is_compile(args))
            .expect("a compile while Create runs");
    let shim = leaks::shim_pid(&ctr::address(), &id).expect("the container's shim");
    faults::signal(shim, libc::SIGKILL);
    let (ran, _) = ctr::finish(child);
    assert_ne!(ran.code, 0, "{ran:?}");
    assert!(
        faults::exits_within(compile, Duration::from_secs(2)),
        "the compile outlived its shim by 2 s"
    );
    remove(&id);
    assert_no_leak(&before);
    assert_hello_runs();
}

/// The shim SIGKILLed at moments during and around a Delete: containerd's cleanup leaves
/// nothing whichever side of the kill the Delete was on.
#[test]
fn the_shim_killed_during_delete_leaves_nothing() {
    let image = import(
        "docker.io/wasmpod/fault-hello:e2e",
        &fixtures::wat(fixtures::HELLO_WAT),
    );
    let before = stress::quiet_snapshot(None);
    for delay_ms in [0u64, 1, 3, 10] {
        let id = unique_id("fault-delete");
        let ran = run_ctr(&["run", "-d", "--null-io", "--runtime", WASMPOD, &image, &id]);
        assert_eq!(ran.code, 0, "{ran:?}");
        let shim = leaks::shim_pid(&ctr::address(), &id).expect("the container's shim");
        let deadline = Instant::now() + Duration::from_secs(30);
        while task_status(&id).map(|(_, s)| s) != Some("STOPPED".into()) {
            assert!(Instant::now() < deadline, "{id} never stopped");
            std::thread::sleep(Duration::from_millis(10));
        }
        let delete = ctr::ctr()
            .args(["tasks", "delete", &id])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("ctr tasks delete");
        std::thread::sleep(Duration::from_millis(delay_ms));
        faults::signal(shim, libc::SIGKILL);
        let _ = delete.wait_with_output();
        remove(&id);
        assert!(
            task_status(&id).is_none(),
            "the task is still listed (kill after {delay_ms} ms)"
        );
        assert_no_leak(&before);
    }
    assert_hello_runs();
}

/// The zygote killed while a Create it forked a worker for compiles: that Create still
/// completes or fails with a message, and the pod's shim runs its next container without the
/// zygote (an exec'd helper).
#[test]
fn the_zygote_killed_mid_create_costs_the_pod_nothing() {
    let (mut cri, pod, shim, before) = slow_pod();
    let zygote = faults::zygote_of(shim).expect("the shim's zygote");
    // CRI's CreateContainer only records the container: the shim's Create (and the
    // compile) runs in StartContainer.
    let slow_id = cri
        .create_container(&pod, &container("slow", SLOW))
        .expect("CreateContainer (slow)");
    let (started, killed) = std::thread::scope(|scope| {
        let killer = scope.spawn(|| {
            let compile = faults::wait_for_process(Duration::from_secs(60), |_, args| {
                faults::is_compile(args)
            });
            faults::signal(zygote, libc::SIGKILL);
            compile.is_some()
        });
        let started = cri.start_container(&slow_id);
        (started, killer.join().expect("killer"))
    });
    assert!(killed, "no compile seen while the Create ran");
    assert!(
        !std::path::Path::new(&format!("/proc/{zygote}")).exists()
            || std::fs::read_to_string(format!("/proc/{zygote}/stat"))
                .unwrap_or_default()
                .contains(") Z"),
        "the zygote is still alive"
    );
    match started {
        Ok(()) => wait_exited(&mut cri, &slow_id),
        Err(e) => assert!(!e.message().is_empty(), "an empty error"),
    }
    cri.remove_container(&slow_id)
        .expect("RemoveContainer (slow)");
    // The same shim serves the next container, without a zygote.
    hello_then_no_pod(cri, &pod, shim, &before);
}

const SLOW: &str = "docker.io/wasmpod/fault-slow:e2e";
const HELLO: &str = "docker.io/wasmpod/fault-hello:e2e";

/// A CRI pod run by wasmpod, with a slow-compiling image and a hello imported for it: the
/// CRI client, the pod, its shim's pid, and the node counted before the pod.
fn slow_pod() -> (Cri, cri::Pod, i32, NodeSnapshot) {
    cri::import_k8s(&ctr::wasm_image(SLOW, &slow_module()), SLOW);
    cri::import_k8s(
        &ctr::wasm_image(HELLO, &fixtures::wat(fixtures::HELLO_WAT)),
        HELLO,
    );
    cri::ensure_pause_image();
    let before = stress::quiet_snapshot(None);
    let mut cri = Cri::connect();
    let pod = cri
        .run_pod("wasmpod", &PodSpec::default())
        .expect("RunPodSandbox");
    let shim = leaks::shim_pid(&ctr::address(), &pod.id).expect("the pod's shim");
    (cri, pod, shim, before)
}

fn container(name: &str, image: &str) -> ContainerSpec {
    ContainerSpec {
        name: name.into(),
        image: image.into(),
        ..Default::default()
    }
}

/// The pod's shim (still `shim`) runs a hello to its end; then the pod is removed and the
/// node counted as `before`.
fn hello_then_no_pod(mut cri: Cri, pod: &cri::Pod, shim: i32, before: &NodeSnapshot) {
    let id = cri
        .create_container(pod, &container("hello", HELLO))
        .expect("CreateContainer (hello)");
    cri.start_container(&id).expect("StartContainer");
    wait_exited(&mut cri, &id);
    cri.remove_container(&id).expect("RemoveContainer");
    assert_eq!(
        leaks::shim_pid(&ctr::address(), &pod.id),
        Some(shim),
        "the pod's shim survived"
    );
    cri.remove_pod(pod).expect("RemovePodSandbox");
    // The CRI connection is containerd's fd, not a leak.
    drop(cri);
    assert_no_leak(before);
}

fn wait_exited(cri: &mut Cri, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = cri.container_status(id).expect("ContainerStatus");
        if status.state == ContainerState::ContainerExited as i32 {
            assert_eq!(status.exit_code, 0, "{} {}", status.reason, status.message);
            return;
        }
        assert!(Instant::now() < deadline, "{id} still {:?}", status.state);
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A compile cache that cannot be written (read-only, full, or a file where its directory
/// should be) costs a warning in the shim's log, not the container: the Wasm is compiled for
/// that container alone, and the scratch files it used are gone afterwards.
#[test]
fn an_unusable_compile_cache_costs_a_warning_not_the_container() {
    let before = stress::quiet_snapshot(None);
    let options = tempfile::tempdir().expect("tempdir");
    let read_only = faults::Tmpfs::new("1m");
    std::fs::create_dir(read_only.path().join("cache")).expect("mkdir");
    read_only.read_only();
    let full = faults::Tmpfs::new("16k");
    let not_a_dir = options.path().join("cache-file");
    std::fs::write(&not_a_dir, b"in the way").expect("write");
    let image = import(
        "docker.io/wasmpod/fault-cache:e2e",
        &fixtures::big_module(500, 7),
    );
    for (what, dir) in [
        ("read-only", read_only.path().join("cache")),
        ("full", full.path().to_path_buf()),
        ("a file", not_a_dir.clone()),
    ] {
        let config = options
            .path()
            .join(format!("{}.toml", what.replace(' ', "-")));
        std::fs::write(
            &config,
            format!("CacheDir = {:?}\n", dir.display().to_string()),
        )
        .expect("write options");
        let offset = faults::containerd_log_offset();
        let id = unique_id("fault-cache");
        let options = format!("--runtime-config-path={}", config.display());
        let ran = ctr::run_as(&id, &[&options], &image, &[]);
        assert_eq!(ran.code, 0, "a {what} cache: {ran:?}");
        let log = faults::containerd_log_since(offset);
        assert!(
            log.contains(&format!(
                "the compile cache {} cannot be used",
                dir.display()
            )) && log.contains("compiled for this container only"),
            "a {what} cache: no warning in the shim's log"
        );
    }
    let scratch: Vec<_> = std::fs::read_dir("/run/wasmpod")
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        !scratch
            .iter()
            .any(|n| n.to_string_lossy().starts_with("scratch-cache-")),
        "{scratch:?}"
    );
    drop((read_only, full));
    assert_no_leak(&before);
}

fn probe_image() -> String {
    import("docker.io/wasmpod/fault-probe:e2e", &fixtures::probe())
}

/// A guest writing 256 MiB to stdout as fast as it can: containerd's reader (ctr here) takes
/// it, the pod's shim (which holds none of the stream) keeps answering, and its memory does
/// not grow with the stream.
#[test]
fn a_guest_flooding_stdout_neither_blocks_nor_grows_its_shim() {
    let image = probe_image();
    let group = format!("io.kubernetes.cri.sandbox-id={}", unique_id("flood-pod"));
    let sleeper = unique_id("flood-anchor");
    let anchor = ctr::spawn(
        WASMPOD,
        &sleeper,
        &["--annotation", &group],
        &image,
        &["/app.wasm", "sleep", "300"],
    );
    let shim = {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(pid) = leaks::shim_pid(&ctr::address(), &sleeper) {
                if task_status(&sleeper).is_some_and(|(_, s)| s == "RUNNING") {
                    break pid;
                }
            }
            assert!(Instant::now() < deadline, "{sleeper} never ran");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let rss_before = leaks::rss_kb(shim);
    let id = unique_id("flood");
    let mut flood = ctr::ctr()
        .args(["run", "--rm", "--runtime", WASMPOD, "--annotation", &group])
        .args([image.as_str(), id.as_str(), "/app.wasm", "flood", "256"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ctr run");
    let mut rss_max = rss_before;
    let mut answered = 0;
    let status = loop {
        if let Some(status) = flood.try_wait().expect("wait") {
            break status;
        }
        rss_max = rss_max.max(leaks::rss_kb(shim));
        // The shim serves the pod's other task while the stream runs.
        if task_status(&sleeper).is_some_and(|(_, s)| s == "RUNNING") {
            answered += 1;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    if let Some(mut e) = flood.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
    }
    assert!(
        status.success() && stderr.contains("flooded 256 MiB"),
        "{status:?} {stderr}"
    );
    assert!(answered > 0, "the shim never answered during the flood");
    assert!(
        rss_max < rss_before + 4096,
        "the shim's RSS went from {rss_before} KiB to {rss_max} KiB during the flood"
    );
    run_ctr(&["tasks", "kill", "--signal", "SIGKILL", &sleeper]);
    let (ran, _) = ctr::finish(anchor);
    assert_eq!(ran.code, 137, "{ran:?}");
}

/// A guest writing 1 GiB into a tmpfs under a 64 MiB memory limit: the tmpfs pages are the
/// container's, so the container's cgroup OOM-kills the guest (exit 137, an OOM event), and
/// nothing of it is left on the node.
#[test]
fn a_guest_filling_a_tmpfs_past_its_memory_limit_is_oom_killed_alone() {
    let image = probe_image();
    let before = stress::quiet_snapshot(None);
    let id = unique_id("fill");
    let ran = run_ctr(&[
        "run",
        "--rm",
        "--runtime",
        WASMPOD,
        "--memory-limit",
        "67108864",
        "--mount",
        "type=tmpfs,src=tmpfs,dst=/scratch,options=rw",
        &image,
        &id,
        "/app.wasm",
        "fill",
        "/scratch/big",
        "1024",
    ]);
    assert_eq!(ran.code, 137, "{ran:?}");
    assert!(!ran.stdout.contains("filled 1024 MiB"), "{ran:?}");
    assert_no_leak(&before);
    assert_hello_runs();
}

/// containerd restarted during a pod's StartContainer (where the CRI plugin creates the
/// task, and the shim compiles): the call fails, the compile stops, the pod's shim keeps its
/// pause container, and the pod runs its next container.
#[test]
fn containerd_restarted_during_a_pods_start_container_keeps_the_pod() {
    let (mut cri, pod, shim, before) = slow_pod();
    let slow_id = cri
        .create_container(&pod, &container("slow", SLOW))
        .expect("CreateContainer (slow)");
    let (started, compile) = std::thread::scope(|scope| {
        let restarter = scope.spawn(|| {
            let compile = faults::wait_for_process(Duration::from_secs(60), |_, args| {
                faults::is_compile(args)
            });
            if compile.is_some() {
                restart_containerd(Duration::from_secs(2), || {});
            }
            compile
        });
        let started = cri.start_container(&slow_id);
        (started, restarter.join().expect("restarter"))
    });
    let compile = compile.expect("no compile seen while StartContainer ran");
    assert!(
        faults::exits_within(compile, Duration::from_secs(10)),
        "the compile ran on for 10 s after containerd gave its Create up"
    );
    // The call either failed with containerd, or finished just before it went.
    if let Err(e) = &started {
        assert!(!e.message().is_empty(), "an empty error");
    }
    drop(cri);
    let mut cri = Cri::connect();
    assert_eq!(
        leaks::shim_pid(&ctr::address(), &pod.id),
        Some(shim),
        "the pod's shim (and its pause container) survived"
    );
    // The CRI plugin answers once it has recovered its state.
    let deadline = Instant::now() + Duration::from_secs(30);
    while cri
        .container_status(&slow_id)
        .is_err_and(|e| e.message().contains("not initialized"))
    {
        assert!(Instant::now() < deadline, "the CRI plugin never came back");
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = cri.stop_container(&slow_id, 5);
    cri.remove_container(&slow_id)
        .expect("RemoveContainer (slow)");
    hello_then_no_pod(cri, &pod, shim, &before);
}

/// A compile is charged to the container's cgroup: a module whose compile needs more memory
/// than the container's limit fails Create saying so (the compiler is OOM-killed alone; the
/// shim and the pod's other tasks do not notice), the cgroup made for it is gone, and the
/// same module runs with room.
#[test]
fn a_compile_past_the_containers_memory_limit_fails_create_saying_so() {
    let before = stress::quiet_snapshot(None);
    let image = import(
        "docker.io/wasmpod/fault-huge:e2e",
        &fixtures::big_module(60_000, fresh_seed()),
    );
    let id = unique_id("fault-huge");
    let ran = ctr::run_as(&id, &["--memory-limit", "33554432"], &image, &[]);
    assert_ne!(ran.code, 0, "{ran:?}");
    assert!(
        ran.stderr.contains("the compiler was killed")
            && ran.stderr.contains("memory limit of 32 MiB"),
        "{ran:?}"
    );
    remove(&id);
    let roomy = ["--memory-limit", "2147483648"];
    let ran = ctr::run_as(&unique_id("fault-huge"), &roomy, &image, &[]);
    assert_eq!(ran.code, 0, "with room: {ran:?}");
    assert_no_leak(&before);
}

/// A module that takes too long to compile (a nesting bomb) fails Create once the compile
/// time limit passes, naming the limit, and leaves nothing running.
#[test]
fn a_compile_past_its_time_limit_fails_create_naming_the_limit() {
    let before = stress::quiet_snapshot(None);
    let options = tempfile::tempdir().expect("tempdir");
    let config = options.path().join("wasmpod.toml");
    std::fs::write(&config, "CompileTimeoutSeconds = 2\n").expect("write options");
    let image = import(
        "docker.io/wasmpod/fault-nesting:e2e",
        &fixtures::nesting_bomb(100_000 + (fresh_seed() % 1000) as usize),
    );
    let id = unique_id("fault-nesting");
    let start = Instant::now();
    let options = format!("--runtime-config-path={}", config.display());
    let ran = ctr::run_as(&id, &[&options], &image, &[]);
    let took = start.elapsed();
    assert_ne!(ran.code, 0, "{ran:?}");
    assert!(
        ran.stderr
            .contains("took longer than 2 s, the compile time limit"),
        "{ran:?}"
    );
    assert!(took < Duration::from_secs(20), "failed only after {took:?}");
    remove(&id);
    assert_no_leak(&before);
}

/// How long a shim nobody gives a task to lives (`NO_TASK_AFTER_START` in the shim).
const NO_TASK_AFTER_START: Duration = Duration::from_secs(30);

/// containerd's task directory (where each container's bundle is made) full, or nearly so:
/// each Create either runs or fails with the disk's error reaching `ctr`, and a failed one
/// leaves no bundle, mount, process or cgroup behind.
#[test]
fn a_full_bundle_directory_fails_create_with_its_error_and_leaves_nothing() {
    let before = stress::quiet_snapshot(None);
    let ns = format!("fault-full-{}", std::process::id());
    let in_ns = |args: &[&str]| -> Ran {
        std::process::Command::new("ctr")
            .args(["--address", &ctr::address(), "--namespace", &ns])
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run ctr")
            .into()
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let tar = dir.path().join("hello.tar");
    let image = "docker.io/wasmpod/fault-full:e2e";
    ctr::wasm_image(image, &fixtures::wat(fixtures::HELLO_WAT))
        .write_tar(&tar)
        .expect("write tar");
    let ran = in_ns(&[
        "images",
        "import",
        "--all-platforms",
        tar.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(ran.code, 0, "{ran:?}");
    let tasks = std::path::Path::new(&ctr::state_dir())
        .join("state/io.containerd.runtime.v2.task")
        .join(&ns);
    let full = faults::Tmpfs::at(&tasks, "256k");
    let (mut ran_ok, mut failed) = (0, 0);
    for room in [0u64, 2, 6, 10, 16, 64, 200] {
        full.fill_leaving(room << 10);
        let id = unique_id("fault-full");
        let ran = in_ns(&["run", "--rm", "--runtime", WASMPOD, image, &id]);
        if ran.code == 0 {
            assert_eq!(
                ran.stdout, "hello from wasmpod\n",
                "{room} KiB free: {ran:?}"
            );
            ran_ok += 1;
        } else {
            assert!(
                ran.stderr
                    .to_lowercase()
                    .contains("no space left on device"),
                "{room} KiB free: {ran:?}"
            );
            failed += 1;
        }
        in_ns(&["tasks", "delete", "--force", &id]);
        in_ns(&["containers", "delete", &id]);
        let left: Vec<_> = std::fs::read_dir(&tasks)
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(
            left.iter().all(|n| n == ".filler"),
            "{room} KiB free: left in the task directory: {left:?}"
        );
    }
    assert!(failed > 0 && ran_ok > 0, "ran {ran_ok}, failed {failed}");
    // A shim that containerd started and then dropped (it could not write the bundle's
    // `shim-binary-path` after the shim's `start`) exits once no task has come for it.
    let pattern = format!("-namespace {ns} ");
    let deadline = Instant::now() + NO_TASK_AFTER_START + Duration::from_secs(15);
    while std::process::Command::new("pgrep")
        .args(["-f", "--", &pattern])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        assert!(
            Instant::now() < deadline,
            "a shim for {ns} is still running"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(full);
    in_ns(&["images", "rm", image]);
    in_ns(&["namespaces", "remove", &ns]);
    let _ = std::fs::remove_dir(&tasks);
    // The shims' (empty) state directory of the namespace, which outlives its containers.
    for entry in std::fs::read_dir("/run/wasmpod")
        .into_iter()
        .flatten()
        .flatten()
    {
        let _ = std::fs::remove_dir(entry.path().join(&ns));
    }
    assert_no_leak(&before);
    assert_hello_runs();
}
