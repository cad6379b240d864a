//! End-to-end tests through a real containerd and `ctr`: images written by the `oci` crate,
//! Wasm fixtures built from our sources, the shim built by `make build`.
//! Run them with `make e2e` (which starts the private containerd); they run one at a time.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use wasmpod_e2e::ctr::{
    self, finish, free_port, import, leak_counts, run_ctr, run_image, spawn, unique_id, wasm_image,
    Ran, RUNTIMES, WASMPOD,
};
use wasmpod_e2e::fixtures::{self, wat, PyWorld};
use wasmpod_e2e::http;
use wasmpod_e2e::leaks;
use wasmpod_oci::image::{ImageBuilder, ImageShape};

/// A generous bound for "promptly": far below the guests' own sleep (300 s).
const PROMPT: Duration = Duration::from_secs(10);

fn image_of(name: &str, wasm: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    import(&wasm_image(name, wasm), name, dir.path())
}

fn probe_image() -> String {
    let dir = tempfile::tempdir().unwrap();
    let image = ImageBuilder::new("docker.io/wasmpod/probe:e2e")
        .entrypoint(["/app.wasm"])
        .env("IMAGE_VAR=from-image")
        .file("/app.wasm", fixtures::probe(), 0o755)
        .file("/data/in.txt", b"data in the image\n".to_vec(), 0o644)
        .file("/work/rel.txt", b"relative to cwd\n".to_vec(), 0o644);
    import(&image, "docker.io/wasmpod/probe:e2e", dir.path())
}

fn assert_ok(ran: &Ran) {
    assert_eq!(ran.code, 0, "{ran:?}");
}

/// The host's static busybox as a linux/amd64 image, imported.
fn busybox_image() -> String {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read("/bin/busybox").expect("busybox-static is installed by make setup");
    let image = ImageBuilder::new("docker.io/wasmpod/busybox:e2e")
        .platform("linux", "amd64")
        .entrypoint(["/bin/busybox"])
        .file("/bin/busybox", bytes, 0o755);
    import(&image, "docker.io/wasmpod/busybox:e2e", dir.path())
}

/// `ctr run --rm --runtime wasmpod EXTRA... IMAGE ID ARGS...` to completion.
fn run_with(extra: &[&str], image: &str, args: &[&str]) -> Ran {
    ctr::run_as(&unique_id("run"), extra, image, args)
}

/// `ctr tasks exec --exec-id EXEC ID ARGS...` to completion.
fn exec_in(id: &str, exec_id: &str, args: &[&str]) -> Ran {
    let mut all = vec!["tasks", "exec", "--exec-id", exec_id, id];
    all.extend_from_slice(args);
    run_ctr(&all)
}

/// `ctr run --rm --runtime wasmpod` in the background, so the test can signal the task.
fn spawn_run(id: &str, extra: &[&str], image: &str, args: &[&str]) -> Child {
    spawn(WASMPOD, id, extra, image, args)
}

fn task_status(id: &str) -> Option<String> {
    let ran = run_ctr(&["tasks", "ls"]);
    ran.stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(id))
        .and_then(|l| l.split_whitespace().nth(2).map(str::to_string))
}

fn wait_running(id: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if task_status(id).as_deref() == Some("RUNNING") {
            // Give the guest a moment to reach its blocking call.
            std::thread::sleep(Duration::from_millis(200));
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("task {id} never reached RUNNING");
}

#[test]
fn hello_world_through_all_three_runtime_names() {
    let image = image_of("docker.io/wasmpod/hello:e2e", &wat(fixtures::HELLO_WAT));
    for runtime in RUNTIMES {
        let ran = run_image(runtime, &image, &[]);
        assert_ok(&ran);
        assert_eq!(ran.stdout, "hello from wasmpod\n", "{runtime}: {ran:?}");
    }
}

/// Older toolchains import WASI as `wasi_unstable` (preview 0); such a module runs too.
#[test]
fn a_wasi_unstable_module_runs() {
    let old = fixtures::HELLO_WAT.replace("wasi_snapshot_preview1", "wasi_unstable");
    let image = image_of("docker.io/wasmpod/hello-unstable:e2e", &wat(&old));
    let ran = run_image(WASMPOD, &image, &[]);
    assert_ok(&ran);
    assert_eq!(ran.stdout, "hello from wasmpod\n", "{ran:?}");
}

#[test]
fn ctr_run_with_a_rootfs_directory() {
    let rootfs = tempfile::tempdir().unwrap();
    std::fs::write(rootfs.path().join("hello.wasm"), wat(fixtures::HELLO_WAT)).unwrap();
    let id = unique_id("rootfs");
    let ran = run_ctr(&[
        "run",
        "--rm",
        "--runtime",
        "io.containerd.spin.v2",
        "--rootfs",
        rootfs.path().to_str().unwrap(),
        &id,
        "/hello.wasm",
    ]);
    assert_ok(&ran);
    assert_eq!(ran.stdout, "hello from wasmpod\n");
}

#[test]
fn args_env_and_cwd_reach_the_guest() {
    let image = probe_image();
    let ran = run_image(WASMPOD, &image, &["/app.wasm", "args", "one", "two words"]);
    assert_ok(&ran);
    assert_eq!(
        ran.stdout,
        "arg[0]=/app.wasm\narg[1]=args\narg[2]=one\narg[3]=two words\n"
    );

    let ran = run_with(&["--env", "FROM_CTR=yes"], &image, &["/app.wasm", "env"]);
    assert_ok(&ran);
    assert!(ran.stdout.contains("FROM_CTR=yes\n"), "{ran:?}");
    assert!(ran.stdout.contains("IMAGE_VAR=from-image\n"), "{ran:?}");

    let ran = run_with(
        &["--cwd", "/work"],
        &image,
        &["/app.wasm", "cat", "rel.txt"],
    );
    assert_ok(&ran);
    assert_eq!(ran.stdout, "relative to cwd\n");
    // Absolute paths still resolve from `/` when the working directory is not `/`.
    for (path, text) in [
        ("/work/rel.txt", "relative to cwd\n"),
        ("/data/in.txt", "data in the image\n"),
    ] {
        let ran = run_with(&["--cwd", "/work"], &image, &["/app.wasm", "cat", path]);
        assert_eq!(
            (ran.code, ran.stdout.as_str()),
            (0, text),
            "{path}: {ran:?}"
        );
    }
}

#[test]
fn files_in_the_rootfs_and_in_a_bind_mount() {
    let image = probe_image();
    let ran = run_image(WASMPOD, &image, &["/app.wasm", "cat", "/data/in.txt"]);
    assert_ok(&ran);
    assert_eq!(ran.stdout, "data in the image\n");

    // Writes to the container's own (writable) rootfs work.
    let ran = run_image(
        WASMPOD,
        &image,
        &["/app.wasm", "write", "/data/new.txt", "x"],
    );
    assert_ok(&ran);

    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("from-host.txt"), "host file\n").unwrap();
    let mount = format!(
        "type=bind,src={},dst=/mnt,options=rbind:rw",
        host.path().display()
    );
    let ran = run_with(
        &["--mount", &mount],
        &image,
        &["/app.wasm", "cat", "/mnt/from-host.txt"],
    );
    assert_ok(&ran);
    assert_eq!(ran.stdout, "host file\n");
    let ran = run_with(
        &["--mount", &mount],
        &image,
        &[
            "/app.wasm",
            "write",
            "/mnt/from-guest.txt",
            "written by wasm",
        ],
    );
    assert_ok(&ran);
    assert_eq!(
        std::fs::read_to_string(host.path().join("from-guest.txt")).unwrap(),
        "written by wasm"
    );
}

#[test]
fn stdin_reaches_the_guest() {
    let image = probe_image();
    let id = unique_id("stdin");
    let mut child = ctr::ctr()
        .args([
            "run",
            "--rm",
            "--runtime",
            WASMPOD,
            &image,
            &id,
            "/app.wasm",
            "stdin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"piped through ctr\n").unwrap();
    }
    let (ran, _) = finish(child);
    assert_ok(&ran);
    assert_eq!(ran.stdout, "piped through ctr\n");
}

#[test]
fn exit_codes_and_traps() {
    let exit42 = image_of("docker.io/wasmpod/exit42:e2e", &wat(fixtures::EXIT42_WAT));
    assert_eq!(run_image(WASMPOD, &exit42, &[]).code, 42);

    let probe = probe_image();
    assert_eq!(
        run_image(WASMPOD, &probe, &["/app.wasm", "exit", "3"]).code,
        3
    );

    let trap = image_of("docker.io/wasmpod/trap:e2e", &wat(fixtures::TRAP_WAT));
    let ran = run_image(WASMPOD, &trap, &[]);
    assert_eq!(ran.code, 134, "{ran:?}");
    let line = ran
        .stderr
        .lines()
        .find(|l| l.contains("wasmpod: the Wasm guest trapped"))
        .unwrap_or_else(|| panic!("{ran:?}"));
    assert!(line.contains("unreachable"), "{line}");
}

fn stop_with(signal: &str, image: &str, args: &[&str], expected: i32) {
    let id = unique_id("sig");
    let child = spawn_run(&id, &[], image, args);
    wait_running(&id);
    let start = Instant::now();
    let ran = run_ctr(&["tasks", "kill", "--signal", signal, &id]);
    assert_ok(&ran);
    let (ran, _) = finish(child);
    let took = start.elapsed();
    assert_eq!(ran.code, expected, "{signal}: {ran:?}");
    assert!(took < PROMPT, "{signal} took {took:?}");
}

#[test]
fn sigterm_sigint_and_sigkill_stop_a_sleeping_guest() {
    let image = probe_image();
    stop_with("SIGTERM", &image, &["/app.wasm", "sleep", "300"], 143);
    stop_with("SIGINT", &image, &["/app.wasm", "sleep", "300"], 130);
    stop_with("SIGKILL", &image, &["/app.wasm", "sleep", "300"], 137);
}

#[test]
fn sigterm_interrupts_a_guest_spinning_in_wasm_code() {
    let image = image_of("docker.io/wasmpod/spin:e2e", &wat(fixtures::SPIN_WAT));
    stop_with("SIGTERM", &image, &[], 143);
}

#[test]
fn the_guest_runs_in_the_container_cgroup_and_is_visible_to_ps_and_metrics() {
    let image = probe_image();
    let id = unique_id("cg");
    let child = spawn_run(&id, &[], &image, &["/app.wasm", "sleep", "300"]);
    wait_running(&id);
    let ps = run_ctr(&["tasks", "ps", &id]);
    assert_ok(&ps);
    let pid: i32 = ps
        .stdout
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{ps:?}"));
    let procs_file = Path::new("/sys/fs/cgroup/memory")
        .join(ctr::namespace())
        .join(&id)
        .join("cgroup.procs");
    let procs = std::fs::read_to_string(&procs_file)
        .unwrap_or_else(|e| panic!("{}: {e}", procs_file.display()));
    assert!(
        procs.lines().any(|l| l.trim() == pid.to_string()),
        "pid {pid} not in {procs:?}"
    );
    // The guest is in the container's pid namespace, as its pid 1.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    assert!(nspid.trim_end().ends_with("\t1"), "{nspid}");
    let metrics = run_ctr(&["tasks", "metrics", &id]);
    assert_ok(&metrics);
    let usage: u64 = metrics
        .stdout
        .lines()
        .find(|l| l.starts_with("memory.usage_in_bytes"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{metrics:?}"));
    assert!(usage > 0, "{metrics:?}");
    assert_ok(&run_ctr(&["tasks", "kill", "--signal", "SIGKILL", &id]));
    let (ran, _) = finish(child);
    assert_eq!(ran.code, 137);
    assert!(!procs_file.exists(), "cgroup of {id} left behind");
}

fn expect_create_error(image: &str, args: &[&str], needle: &str) {
    let ran = run_image(WASMPOD, image, args);
    assert_ne!(ran.code, 0, "{ran:?}");
    assert!(
        ran.stderr.contains(needle),
        "expected {needle:?} in {:?}",
        ran.stderr
    );
}

#[test]
fn bad_input_fails_with_a_clear_message_and_leaks_nothing() {
    let address = ctr::address();
    let before = leak_counts();

    let probe = probe_image();
    expect_create_error(&probe, &["/missing.wasm"], "\"/missing.wasm\" not found");
    expect_create_error(
        &probe,
        &["/data/in.txt"],
        "neither Wasm nor a native executable",
    );
    let hello = wat(fixtures::HELLO_WAT);
    let truncated = image_of("docker.io/wasmpod/truncated:e2e", &hello[..hello.len() - 5]);
    expect_create_error(&truncated, &[], "invalid Wasm module");
    let bad_import = image_of(
        "docker.io/wasmpod/badimport:e2e",
        &wat(fixtures::BAD_IMPORT_WAT),
    );
    expect_create_error(&bad_import, &[], "no_such_function");
    // An image without entrypoint or command gives the container no args.
    let dir = tempfile::tempdir().unwrap();
    let noargs = import(
        &ImageBuilder::new("docker.io/wasmpod/noargs:e2e").file("/app.wasm", hello.clone(), 0o755),
        "docker.io/wasmpod/noargs:e2e",
        dir.path(),
    );
    expect_create_error(&noargs, &[], "process.args is empty");
    // A native script whose interpreter the image lacks is named at Create.
    let dir = tempfile::tempdir().unwrap();
    let script = import(
        &ImageBuilder::new("docker.io/wasmpod/noshell:e2e")
            .platform("linux", "amd64")
            .file("/run.sh", b"#!/bin/nope\necho hi\n".to_vec(), 0o755),
        "docker.io/wasmpod/noshell:e2e",
        dir.path(),
    );
    expect_create_error(
        &script,
        &["/run.sh"],
        "entrypoint /run.sh is a script for /bin/nope, which is not in the container",
    );

    // A shim serving a pod keeps serving it after a bad container.
    let group = format!("io.kubernetes.cri.sandbox-id={}", unique_id("grp"));
    let sleeper = unique_id("sleeper");
    let child = spawn_run(
        &sleeper,
        &["--annotation", &group],
        &probe,
        &["/app.wasm", "sleep", "300"],
    );
    wait_running(&sleeper);
    let shims = leaks::shim_processes(&address);
    let bad = unique_id("bad");
    let ran = run_ctr(&[
        "run",
        "--rm",
        "--runtime",
        WASMPOD,
        "--annotation",
        &group,
        &truncated,
        &bad,
    ]);
    assert_ne!(ran.code, 0);
    // A second container of the pod, counted while both run: with grouping broken it
    // would have a shim of its own.
    let good = unique_id("good");
    let second = spawn_run(
        &good,
        &["--annotation", &group],
        &probe,
        &["/app.wasm", "sleep", "300"],
    );
    wait_running(&good);
    assert_eq!(
        leaks::shim_processes(&address),
        shims,
        "the pod's running containers share one shim"
    );
    assert_eq!(task_status(&sleeper).as_deref(), Some("RUNNING"));
    for (id, child) in [(&good, second), (&sleeper, child)] {
        assert_ok(&run_ctr(&["tasks", "kill", id]));
        let (ran, _) = finish(child);
        assert_eq!(ran.code, 143);
    }

    let after = leak_counts();
    assert_eq!(
        before, after,
        "(mounts, cgroup dirs, shims, shim sockets) before vs after"
    );
}

#[test]
fn native_programs_run_as_ordinary_containers() {
    let image = busybox_image();
    let ran = run_image(WASMPOD, &image, &["/bin/busybox", "echo", "native hello"]);
    assert_ok(&ran);
    assert_eq!(ran.stdout, "native hello\n");
    assert_eq!(
        run_image(WASMPOD, &image, &["/bin/busybox", "sh", "-c", "exit 5"]).code,
        5
    );
}

#[test]
fn events_arrive_in_order() {
    let image = image_of("docker.io/wasmpod/hello:e2e", &wat(fixtures::HELLO_WAT));
    let mut events = ctr::ctr()
        .args(["events"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let id = unique_id("events");
    let ran = run_ctr(&["run", "--rm", "--runtime", WASMPOD, &image, &id]);
    assert_ok(&ran);
    std::thread::sleep(Duration::from_millis(500));
    let _ = events.kill();
    let out = events.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let topics: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(&id))
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("/tasks/")))
        .collect();
    assert_eq!(
        topics,
        [
            "/tasks/create",
            "/tasks/start",
            "/tasks/exit",
            "/tasks/delete"
        ],
        "{text}"
    );
}

#[test]
fn fifty_sequential_runs_leak_nothing() {
    let image = image_of("docker.io/wasmpod/hello:e2e", &wat(fixtures::HELLO_WAT));
    let before = leak_counts();
    for _ in 0..50 {
        let ran = run_image(WASMPOD, &image, &[]);
        assert_ok(&ran);
    }
    let after = leak_counts();
    assert_eq!(
        before, after,
        "(mounts, cgroup dirs, shims, shim sockets) before vs after 50 runs"
    );
}

#[test]
fn a_killed_shim_is_cleaned_up_by_the_delete_action() {
    let address = ctr::address();
    let image = probe_image();
    let id = unique_id("orphan");
    let ran = run_ctr(&[
        "run",
        "-d",
        "--runtime",
        WASMPOD,
        &image,
        &id,
        "/app.wasm",
        "sleep",
        "300",
    ]);
    assert_ok(&ran);
    wait_running(&id);
    let cgroup = Path::new("/sys/fs/cgroup/memory")
        .join(ctr::namespace())
        .join(&id);
    assert!(cgroup.exists());
    let shim = leaks::shim_pid(&address, &id).expect("the task's shim");
    // SAFETY: sending a signal to a pid we just looked up.
    unsafe { libc::kill(shim, libc::SIGKILL) };
    // containerd notices, runs `containerd-shim-wasmpod-v1 delete`, and publishes the exit.
    let deadline = Instant::now() + Duration::from_secs(15);
    while task_status(&id).is_some() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(task_status(&id), None, "the task is gone");
    let deadline = Instant::now() + Duration::from_secs(5);
    while cgroup.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!cgroup.exists(), "cgroup {} left behind", cgroup.display());
    assert_ok(&run_ctr(&["containers", "rm", &id]));
    assert_eq!(
        leaks::mounts_containing(&format!("{}/state", ctr::state_dir())),
        0
    );
}

/// The shim runs container operations in workers of its zygote; if the zygote is killed, the
/// shim runs them in exec'd helpers instead, and the container keeps being served.
#[test]
fn a_killed_zygote_does_not_stop_the_shim() {
    let image = probe_image();
    let id = unique_id("zygote");
    let child = spawn_run(&id, &[], &image, &["/app.wasm", "sleep", "300"]);
    wait_running(&id);
    let shim = leaks::shim_pid(&ctr::address(), &id).expect("the task's shim");
    let zygotes: Vec<i32> = leaks::children_of(shim)
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .unwrap_or_default()
                .trim()
                == "wasmpod-zygote"
        })
        .collect();
    assert_eq!(zygotes.len(), 1, "the shim has one zygote: {zygotes:?}");
    // SAFETY: kill(2) has no memory effects.
    assert_eq!(unsafe { libc::kill(zygotes[0], libc::SIGKILL) }, 0);
    let ran = exec_in(&id, "after", &["/app.wasm", "args", "still served"]);
    assert_ok(&ran);
    assert_eq!(
        ran.stdout,
        "arg[0]=/app.wasm\narg[1]=args\narg[2]=still served\n"
    );
    assert_ok(&run_ctr(&["tasks", "kill", &id]));
    assert_eq!(finish(child).0.code, 143);
}

#[test]
fn exec_into_wasm_and_native_containers() {
    let image = probe_image();
    let id = unique_id("exec");
    let child = spawn_run(&id, &[], &image, &["/app.wasm", "sleep", "300"]);
    wait_running(&id);
    // A second Wasm process in the running Wasm container, in its namespaces and cgroup.
    let ran = exec_in(&id, "e1", &["/app.wasm", "args", "exec'd"]);
    assert_ok(&ran);
    assert_eq!(ran.stdout, "arg[0]=/app.wasm\narg[1]=args\narg[2]=exec'd\n");
    let ran = exec_in(&id, "e2", &["/app.wasm", "exit", "9"]);
    assert_eq!(ran.code, 9, "{ran:?}");
    let ran = exec_in(&id, "e3", &["/app.wasm", "cat", "/data/in.txt"]);
    assert_eq!(ran.stdout, "data in the image\n");
    let ran = exec_in(&id, "e4", &["/missing.wasm"]);
    assert_ne!(ran.code, 0);
    assert!(ran.stderr.contains("not found"), "{ran:?}");
    // A long-running exec shows in ps and stops on SIGTERM, like the init.
    let mut long = ctr::ctr()
        .args([
            "tasks",
            "exec",
            "--exec-id",
            "e5",
            &id,
            "/app.wasm",
            "sleep",
            "300",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ps = run_ctr(&["tasks", "ps", &id]);
        if ps.stdout.lines().count() >= 3 {
            break;
        }
        assert!(Instant::now() < deadline, "exec never showed in ps: {ps:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_ok(&run_ctr(&["tasks", "kill", "--exec-id", "e5", &id]));
    let status = long.wait().unwrap();
    assert_eq!(status.code(), Some(143));
    assert_ok(&run_ctr(&["tasks", "kill", &id]));
    assert_eq!(finish(child).0.code, 143);

    // Native: a shell in a busybox container.
    let busybox = busybox_image();
    let id = unique_id("nexec");
    let child = spawn_run(&id, &[], &busybox, &["/bin/busybox", "sleep", "300"]);
    wait_running(&id);
    let ran = exec_in(&id, "n1", &["/bin/busybox", "sh", "-c", "echo $$; exit 4"]);
    assert_eq!(ran.code, 4, "{ran:?}");
    assert_ne!(
        ran.stdout.trim(),
        "1",
        "the exec is not the container's init"
    );
    assert_ok(&run_ctr(&["tasks", "kill", "--signal", "SIGKILL", &id]));
    assert_eq!(finish(child).0.code, 137);
}

#[test]
fn pause_and_resume_freeze_the_guest() {
    let image = probe_image();
    let id = unique_id("pause");
    let child = spawn_run(&id, &[], &image, &["/app.wasm", "sleep", "300"]);
    wait_running(&id);
    assert_ok(&run_ctr(&["tasks", "pause", &id]));
    assert_eq!(task_status(&id).as_deref(), Some("PAUSED"));
    let freezer = Path::new("/sys/fs/cgroup/freezer")
        .join(ctr::namespace())
        .join(&id)
        .join("freezer.state");
    assert_eq!(std::fs::read_to_string(&freezer).unwrap().trim(), "FROZEN");
    let ran = run_ctr(&["tasks", "pause", &id]);
    assert_ne!(ran.code, 0, "pausing twice is refused: {ran:?}");
    assert_ok(&run_ctr(&["tasks", "resume", &id]));
    assert_eq!(task_status(&id).as_deref(), Some("RUNNING"));
    assert_eq!(std::fs::read_to_string(&freezer).unwrap().trim(), "THAWED");
    assert_ok(&run_ctr(&["tasks", "kill", &id]));
    assert_eq!(finish(child).0.code, 143);
}

/// `ctr run -t` gives a native container a real terminal; a Wasm one gets a clear refusal.
#[test]
fn terminals_for_native_containers() {
    let busybox = busybox_image();
    let ctr_cmd = format!(
        "ctr --address {} --namespace {}",
        ctr::address(),
        ctr::namespace()
    );
    // `script` gives ctr the terminal it wants on its own stdin.
    let in_a_pty = |command: String| -> Ran {
        Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .stdin(Stdio::null())
            .output()
            .expect("run script")
            .into()
    };
    let id = unique_id("tty");
    let ran = in_a_pty(format!(
        "{ctr_cmd} run -t --rm --runtime {WASMPOD} {busybox} {id} /bin/busybox sh -c 'tty; echo in a tty; exit 3'"
    ));
    assert_eq!(ran.code, 3, "{ran:?}");
    assert!(ran.stdout.contains("/dev/pts/"), "{ran:?}");
    assert!(ran.stdout.contains("in a tty"), "{ran:?}");

    let probe = probe_image();
    let id = unique_id("wtty");
    let ran = in_a_pty(format!(
        "{ctr_cmd} run -t --rm --runtime {WASMPOD} {probe} {id} /app.wasm args"
    ));
    assert_ne!(ran.code, 0);
    assert!(
        ran.stdout
            .contains("terminal (tty) is not supported for Wasm"),
        "{ran:?}"
    );
}

/// A Wasm guest cannot grow its memory past its container's limit: the growth fails inside
/// the guest, with a line saying why, long before the cgroup would OOM-kill the process.
#[test]
fn a_memory_bomb_fails_inside_the_guest() {
    let image = image_of(
        "docker.io/wasmpod/bomb:e2e",
        &wat(fixtures::MEMORY_BOMB_WAT),
    );
    let ran = run_with(&["--memory-limit", "67108864"], &image, &[]);
    assert_eq!(
        ran.code, 134,
        "the bomb traps when memory.grow fails: {ran:?}"
    );
    assert!(ran.stderr.contains("past its limit of 48 MiB"), "{ran:?}");
}

/// A component's memories count together: four core instances of 30 MiB each do not fit a
/// 64 MiB container, so instantiation fails with the reason and 134, not an OOM kill (137).
#[test]
fn a_component_instantiating_past_its_limit_fails_with_the_reason() {
    let image = image_of(
        "docker.io/wasmpod/many-memories:e2e",
        &wat(fixtures::MANY_MEMORIES_COMPONENT_WAT),
    );
    let ran = run_with(&["--memory-limit", "67108864"], &image, &[]);
    assert_eq!(ran.code, 134, "{ran:?}");
    assert!(
        ran.stderr
            .contains("60 MiB in all with the guest's other memories and tables"),
        "{ran:?}"
    );
    assert!(
        ran.stderr.contains("wasmpod: the Wasm guest trapped"),
        "{ran:?}"
    );
    let ran = run_with(&["--memory-limit", "268435456"], &image, &[]);
    assert_eq!(ran.code, 0, "the same component fits 256 MiB: {ran:?}");
}

/// A `wasmpod.dev/` annotation wasmpod does not read, or one with a bad value, fails Create
/// with a message naming it; the shim goes on serving.
#[test]
fn unknown_or_bad_wasmpod_annotations_fail_create_naming_them() {
    let image = image_of("docker.io/wasmpod/hello:e2e", &wat(fixtures::HELLO_WAT));
    for (annotation, says) in [
        (
            "wasmpod.dev/wasm-feature=threads",
            "annotation wasmpod.dev/wasm-feature: not one wasmpod reads",
        ),
        (
            "wasmpod.dev/cpu-time-limit=soon",
            "annotation wasmpod.dev/cpu-time-limit: \"soon\": whole seconds above 0",
        ),
        (
            "wasmpod.dev/wasm-features=threads,warp-drive",
            "\"warp-drive\" is not a Wasm proposal",
        ),
    ] {
        let ran = run_with(&["--annotation", annotation], &image, &[]);
        assert_ne!(ran.code, 0, "{annotation}: {ran:?}");
        assert!(ran.stderr.contains(says), "{annotation}: {ran:?}");
    }
    // Annotations that are not wasmpod's are not its business.
    let ran = run_with(&["--annotation", "example.com/anything=x"], &image, &[]);
    assert_eq!(
        (ran.code, ran.stdout.as_str()),
        (0, "hello from wasmpod\n"),
        "{ran:?}"
    );
}

/// Wasm proposals are chosen per workload (`wasmpod.dev/wasm-features`) and per handler (the
/// `WasmFeatures` runtime option), the annotation winning. A module making a shared memory
/// fails by default (Wasmtime validates threads but makes no shared memory unless asked),
/// naming the annotation that allows it; runs with threads turned on; fails Create naming
/// the proposal when the handler turns threads off; and runs when its annotation turns them
/// back on over the handler's choice.
#[test]
fn wasm_features_are_chosen_per_workload_and_per_handler() {
    let image = image_of(
        "docker.io/wasmpod/shared-memory:e2e",
        &wat(fixtures::SHARED_MEMORY_WAT),
    );
    let ran = run_with(&[], &image, &[]);
    assert_eq!(ran.code, 134, "{ran:?}");
    assert!(
        ran.stderr.contains("wasmpod.dev/wasm-features=threads"),
        "{ran:?}"
    );
    let on = ["--annotation", "wasmpod.dev/wasm-features=threads"];
    let ran = run_with(&on, &image, &[]);
    assert_eq!(ran.code, 0, "{ran:?}");
    let options = tempfile::tempdir().expect("tempdir");
    let config = options.path().join("wasmpod.toml");
    std::fs::write(&config, "WasmFeatures = [\"-threads\"]\n").expect("write options");
    let handler = format!("--runtime-config-path={}", config.display());
    let ran = run_with(&[&handler], &image, &[]);
    assert_ne!(ran.code, 0, "{ran:?}");
    assert!(ran.stderr.contains("threads must be enabled"), "{ran:?}");
    let ran = run_with(&[&handler, on[0], on[1]], &image, &[]);
    assert_eq!(ran.code, 0, "the annotation wins: {ran:?}");
}

/// A command spinning in Wasm code past its CPU time limit is stopped: 152 (SIGXCPU's
/// status, as the kernel's own limit reports it) and a line naming the limit.
#[test]
fn a_command_past_its_cpu_time_limit_is_stopped_naming_the_limit() {
    let image = image_of("docker.io/wasmpod/spin:e2e", &wat(fixtures::SPIN_WAT));
    let start = Instant::now();
    let ran = run_with(
        &["--annotation", "wasmpod.dev/cpu-time-limit=1"],
        &image,
        &[],
    );
    let took = start.elapsed();
    assert_eq!(ran.code, 152, "{ran:?}");
    assert!(
        ran.stderr
            .contains("used up its CPU time limit of 1 s (wasmpod.dev/cpu-time-limit"),
        "{ran:?}"
    );
    assert!(took < Duration::from_secs(20), "stopped after {took:?}");
}

/// Mounts marked `ro` and a read-only rootfs are read-only at the WASI level too: WASI refuses
/// the write ("Operation not permitted") before the kernel would ("Read-only file system"); a
/// writable mount inside a read-only rootfs stays writable.
#[test]
fn read_only_mounts_and_rootfs_are_preopened_read_only() {
    let probe = probe_image();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("in.txt"), "from the node\n").expect("write");
    let bind = |access: &str| {
        format!(
            "type=bind,src={},dst=/mnt/vol,options=rbind:{access}",
            dir.path().display()
        )
    };
    let ro = bind("ro");
    let ran = run_with(
        &["--mount", &ro],
        &probe,
        &["/app.wasm", "cat", "/mnt/vol/in.txt"],
    );
    assert_eq!(
        (ran.code, ran.stdout.as_str()),
        (0, "from the node\n"),
        "{ran:?}"
    );
    // The probe's write, refused by WASI.
    let refused = |extra: &[&str], path: &str| {
        let ran = run_with(extra, &probe, &["/app.wasm", "write", path, "x"]);
        assert_eq!(ran.code, 1, "{extra:?}: {ran:?}");
        assert!(
            ran.stderr
                .contains(&format!("open {path}: Operation not permitted")),
            "{extra:?}: {ran:?}"
        );
    };
    refused(&["--mount", &ro], "/mnt/vol/new.txt");
    assert!(!dir.path().join("new.txt").exists());

    let rw = bind("rw");
    for extra in [
        vec!["--mount", rw.as_str()],
        vec!["--read-only", "--mount", rw.as_str()],
    ] {
        let ran = run_with(
            &extra,
            &probe,
            &["/app.wasm", "write", "/mnt/vol/new.txt", "x"],
        );
        assert_eq!(ran.code, 0, "{extra:?}: {ran:?}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("new.txt"))
                .ok()
                .as_deref(),
            Some("x")
        );
        std::fs::remove_file(dir.path().join("new.txt")).expect("remove");
    }
    refused(&["--read-only"], "/data/new.txt");
}

/// A working directory the image lacks is made, as runc makes it; one that a file is in the
/// way of fails Create saying so.
#[test]
fn a_missing_working_directory_is_made() {
    let busybox = busybox_image();
    let ran = run_with(
        &["--cwd", "/not/there/yet"],
        &busybox,
        &["/bin/busybox", "pwd"],
    );
    assert_eq!(
        (ran.code, ran.stdout.trim()),
        (0, "/not/there/yet"),
        "{ran:?}"
    );
    let ran = run_with(
        &["--cwd", "/bin/busybox/x"],
        &busybox,
        &["/bin/busybox", "pwd"],
    );
    assert_ne!(ran.code, 0, "{ran:?}");
    assert!(
        ran.stderr
            .contains("working directory \"/bin/busybox/x\": /bin/busybox is not a directory"),
        "{ran:?}"
    );
}

/// A native process that outgrows its container's memory limit is OOM-killed by the cgroup:
/// 137, and containerd hears a TaskOOM event.
#[test]
fn an_oom_kill_is_reported() {
    let image = busybox_image();
    let mut events = ctr::ctr()
        .args(["events"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let id = unique_id("oom");
    let hog = "x=0123456789abcdef; while :; do x=\"$x$x\"; done";
    let ran = run_ctr(&[
        "run",
        "--rm",
        "--runtime",
        WASMPOD,
        "--memory-limit",
        "33554432",
        &image,
        &id,
        "/bin/busybox",
        "sh",
        "-c",
        hog,
    ]);
    assert_eq!(ran.code, 137, "{ran:?}");
    std::thread::sleep(Duration::from_millis(500));
    let _ = events.kill();
    let out = events.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.contains("/tasks/oom") && l.contains(&id)),
        "{text}"
    );
}

/// Four containers start the same new module at once: one compile, four runs; the next
/// start maps the cached code.
#[test]
fn the_compile_cache_compiles_once_under_concurrent_starts() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let wasm = fixtures::big_module(4000, seed);
    let key = fixtures::cache_key_prefix(&wasm);
    let image = image_of("docker.io/wasmpod/big:e2e", &wasm);
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let image = image.clone();
            std::thread::spawn(move || run_image(WASMPOD, &image, &[]))
        })
        .collect();
    for r in runs {
        let ran = r.join().unwrap();
        assert_ok(&ran);
    }
    assert_eq!(
        fixtures::compiles_of(&key),
        1,
        "one compile for four concurrent starts"
    );
    assert_ok(&run_image(WASMPOD, &image, &[]));
    assert_eq!(fixtures::compiles_of(&key), 1, "later starts use the cache");
}

/// A corrupted cache entry is noticed and compiled again; a precompiled `.cwasm` shipped as
/// an entrypoint is refused.
#[test]
fn a_corrupt_cache_entry_is_rebuilt_and_cwasm_is_refused() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let wasm = fixtures::big_module(50, seed);
    let key = fixtures::cache_key_prefix(&wasm);
    let image = image_of("docker.io/wasmpod/corrupt:e2e", &wasm);
    assert_ok(&run_image(WASMPOD, &image, &[]));
    let entry = std::fs::read_dir(fixtures::cache_dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with(&key) && name.ends_with(".cwasm")
        })
        .expect("the cache entry");
    let cwasm = std::fs::read(&entry).unwrap();
    let mut bytes = cwasm.clone();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&entry, &bytes).unwrap();
    assert_ok(&run_image(WASMPOD, &image, &[]));
    assert_eq!(
        fixtures::compiles_of(&key),
        2,
        "the corrupt entry was compiled again"
    );
    assert_ne!(std::fs::read(&entry).unwrap(), bytes);

    let precompiled = image_of("docker.io/wasmpod/cwasm:e2e", &cwasm);
    let ran = run_image(WASMPOD, &precompiled, &[]);
    assert_ne!(ran.code, 0);
    assert!(ran.stderr.contains("precompiled Wasm (.cwasm)"), "{ran:?}");
}

/// `wasmpod image build` writes an image that containerd imports and wasmpod runs.
#[test]
fn wasmpod_image_build_output_runs() {
    let tool = ctr::wasmpod_tool();
    let dir = tempfile::tempdir().unwrap();
    let wasm = dir.path().join("probe.wasm");
    std::fs::write(&wasm, fixtures::probe()).unwrap();
    let data = dir.path().join("greeting.txt");
    std::fs::write(&data, "built by wasmpod\n").unwrap();
    let tar = dir.path().join("image.tar");
    let name = "docker.io/wasmpod/built:e2e";
    let out = Command::new(&tool)
        .args([
            "image",
            "build",
            "-o",
            tar.to_str().unwrap(),
            "-t",
            name,
            "--path",
            "/bin/probe.wasm",
        ])
        .args([
            "--file",
            &format!("{}:/etc/greeting.txt", data.display()),
            "--env",
            "FROM_BUILD=1",
        ])
        .arg(&wasm)
        .output()
        .expect("run wasmpod image build");
    assert!(out.status.success(), "{out:?}");
    assert_ok(&run_ctr(&[
        "images",
        "import",
        "--all-platforms",
        tar.to_str().unwrap(),
    ]));
    let ran = run_image(
        WASMPOD,
        name,
        &["/bin/probe.wasm", "cat", "/etc/greeting.txt"],
    );
    assert_ok(&ran);
    assert_eq!(ran.stdout, "built by wasmpod\n");
    let ran = run_image(WASMPOD, name, &["/bin/probe.wasm", "env", "FROM_BUILD"]);
    assert_eq!(ran.stdout, "FROM_BUILD=1\n");
    let bad = Command::new(&tool)
        .args(["image", "build", "-o", "x.tar", "-t", "n:1"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not Wasm"));
}

/// An image with `wasm` as `/app.wasm` (the entrypoint), a data file, `/work` as the working
/// directory and an environment variable.
fn component_image(name: &str, wasm: Vec<u8>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let image = ImageBuilder::new(name)
        .entrypoint(["/app.wasm"])
        .env("IMAGE_VAR=from-image")
        .working_dir("/work")
        .file("/app.wasm", wasm, 0o755)
        .file("/data/in.txt", b"data in the image\n".to_vec(), 0o644)
        .file("/work/rel.txt", b"relative to cwd\n".to_vec(), 0o644);
    import(&image, name, dir.path())
}

/// What a command component must do in a container: the probe's commands (the Python
/// fixture answers them the same way) for arguments, environment, files in the image (by
/// absolute and relative path, with `/work` as the working directory), a write to a bind
/// mount, and exit codes.
fn check_command_component(image: &str) {
    let ran = run_image(WASMPOD, image, &["/app.wasm", "args", "one", "two words"]);
    assert_eq!(
        (ran.code, ran.stdout.as_str()),
        (
            0,
            "arg[0]=/app.wasm\narg[1]=args\narg[2]=one\narg[3]=two words\n"
        ),
        "{ran:?}"
    );
    for (extra, name, line) in [
        (&[][..], "IMAGE_VAR", "IMAGE_VAR=from-image\n"),
        (&["--env", "FROM_CTR=yes"][..], "FROM_CTR", "FROM_CTR=yes\n"),
    ] {
        let ran = run_with(extra, image, &["/app.wasm", "env", name]);
        assert_eq!((ran.code, ran.stdout.as_str()), (0, line), "{ran:?}");
    }
    for (path, text) in [
        ("/data/in.txt", "data in the image\n"),
        ("rel.txt", "relative to cwd\n"),
        ("/work/rel.txt", "relative to cwd\n"),
    ] {
        let ran = run_image(WASMPOD, image, &["/app.wasm", "cat", path]);
        assert_eq!(
            (ran.code, ran.stdout.as_str()),
            (0, text),
            "{path}: {ran:?}"
        );
    }
    let host = tempfile::tempdir().unwrap();
    let mount = format!(
        "type=bind,src={},dst=/mnt,options=rbind:rw",
        host.path().display()
    );
    let ran = run_with(
        &["--mount", &mount],
        image,
        &["/app.wasm", "write", "/mnt/out.txt", "from a component"],
    );
    assert_ok(&ran);
    assert_eq!(
        std::fs::read_to_string(host.path().join("out.txt")).unwrap(),
        "from a component"
    );
    // A component can only say "failed": any non-zero status becomes 1.
    assert_eq!(
        run_image(WASMPOD, image, &["/app.wasm", "exit", "0"]).code,
        0
    );
    assert_eq!(
        run_image(WASMPOD, image, &["/app.wasm", "exit", "3"]).code,
        1
    );
}

/// A C program as a `wasi:cli/command` component (the probe through the command adapter).
#[test]
fn a_c_command_component_runs() {
    check_command_component(&component_image(
        "docker.io/wasmpod/probe-component:e2e",
        fixtures::probe_component(),
    ));
}

/// A componentize-py `wasi:cli/command` component: an 18 MB component with CPython inside,
/// which also exports an interface of its own (tolerated).
#[test]
fn a_python_command_component_runs() {
    let image = component_image(
        "docker.io/wasmpod/py-command:e2e",
        fixtures::py_component("command", PyWorld::Command),
    );
    check_command_component(&image);
    // An uncaught exception: Python's traceback, then a trap.
    let ran = run_image(WASMPOD, &image, &["/app.wasm", "cat", "/no/such/file"]);
    assert_eq!(ran.code, 134, "{ran:?}");
    assert!(ran.stderr.contains("FileNotFoundError"), "{ran:?}");
    assert!(
        ran.stderr.contains("wasmpod: the Wasm guest trapped"),
        "{ran:?}"
    );
}

/// A port nobody listens on now.
/// Polls `GET path` on `addr` until the server answers.
fn wait_serving(addr: std::net::SocketAddr) -> http::Reply {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match http::get(addr, "/hello") {
            Ok(reply) => return reply,
            Err(e) if Instant::now() > deadline => panic!("{addr} never served: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// `clients` threads at once each `GET /hello` five times from `addr`: every one is a 200.
fn all_hellos_answer(addr: std::net::SocketAddr, clients: usize) {
    let clients: Vec<_> = (0..clients)
        .map(|_| {
            std::thread::spawn(move || {
                (0..5)
                    .map(|_| http::get(addr, "/hello").map(|r| r.status).unwrap_or(0))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for c in clients {
        assert_eq!(c.join().unwrap(), vec![200; 5]);
    }
}

/// Runs the proxy component `image` as a task named after `name`, listening on a free
/// loopback port of the host network; returns the task id, the address, the `ctr run` child
/// and the answer to its first `GET /hello`.
fn serve_proxy(image: &str, name: &str) -> (String, std::net::SocketAddr, Child, http::Reply) {
    let port = free_port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let listen = format!("WASMTIME_HTTP_PROXY_SOCKET_ADDR={addr}");
    let id = unique_id(name);
    let child = spawn_run(&id, &["--net-host", "--env", &listen], image, &[]);
    let hello = wait_serving(addr);
    (id, addr, child, hello)
}

/// A `wasi:http` proxy component (componentize-py) served on the address from
/// `WASMTIME_HTTP_PROXY_SOCKET_ADDR`: WASI (env, files) inside the handler, a 500 for a
/// trapping request while the server keeps serving, concurrent requests, and a graceful stop:
/// SIGTERM while a slow request is in flight lets it finish, then the task exits 143.
#[test]
fn an_http_proxy_component_serves_and_drains_on_sigterm() {
    let image = component_image(
        "docker.io/wasmpod/py-proxy:e2e",
        fixtures::py_component("proxy", PyWorld::HttpProxy),
    );
    let (id, addr, child, hello) = serve_proxy(&image, "proxy");
    assert_eq!(
        (hello.status, hello.body.as_str()),
        (200, "hello from a python component\n")
    );

    let env = http::get(addr, "/env?IMAGE_VAR").unwrap();
    assert_eq!((env.status, env.body.as_str()), (200, "from-image"));
    let file = http::get(addr, "/file?/data/in.txt").unwrap();
    assert_eq!(
        (file.status, file.body.as_str()),
        (200, "data in the image\n")
    );
    let echo = http::request(addr, "POST", "/echo", b"posted body").unwrap();
    assert_eq!((echo.status, echo.body.as_str()), (200, "posted body"));
    assert_eq!(http::get(addr, "/nowhere").unwrap().status, 404);
    let trap = http::get(addr, "/trap").unwrap();
    assert_eq!(trap.status, 500, "{trap:?}");
    assert_eq!(
        http::get(addr, "/hello").unwrap().status,
        200,
        "serving after a trap"
    );

    all_hellos_answer(addr, 8);

    let slow = std::thread::spawn(move || http::get(addr, "/slow?3000"));
    std::thread::sleep(Duration::from_millis(700));
    let stopped = Instant::now();
    assert_ok(&run_ctr(&["tasks", "kill", &id]));
    // The listener closes at once...
    let deadline = Instant::now() + PROMPT;
    while http::get(addr, "/hello").is_ok() {
        assert!(Instant::now() < deadline, "still accepting after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    // ...the request in flight completes...
    let slow = slow.join().unwrap().expect("the slow request completes");
    assert_eq!((slow.status, slow.body.as_str()), (200, "slow done\n"));
    // ...and then the task exits 143.
    let (ran, _) = finish(child);
    assert_eq!(ran.code, 143, "{ran:?}");
    assert!(
        stopped.elapsed() < PROMPT,
        "drained in {:?}",
        stopped.elapsed()
    );
    assert!(
        ran.stderr
            .contains("wasmpod: the HTTP handler failed: the guest trapped"),
        "{ran:?}"
    );
    // A listen address that is not one: the container says so and exits 1.
    let bad = run_with(
        &["--env", "WASMTIME_HTTP_PROXY_SOCKET_ADDR=nowhere:port"],
        &image,
        &[],
    );
    assert_eq!(bad.code, 1, "{bad:?}");
    assert!(
        bad.stderr
            .contains("WASMTIME_HTTP_PROXY_SOCKET_ADDR=\"nowhere:port\" is not an address"),
        "{bad:?}"
    );
    assert!(
        ran.stderr.contains("asked to fail"),
        "the guest's own traceback: {ran:?}"
    );
}

/// A WASIp3 component (`wasi:http/handler@0.3.0`, componentize-py's async handler) served
/// like a WASIp2 one: it reads the request body and writes its answer as a stream after the
/// handler has returned; concurrent requests; SIGTERM exits 143.
#[test]
fn a_wasip3_http_component_serves() {
    let image = component_image(
        "docker.io/wasmpod/py-p3-proxy:e2e",
        fixtures::py_component("p3_proxy", PyWorld::HttpService),
    );
    let (id, addr, child, hello) = serve_proxy(&image, "p3-proxy");
    assert_eq!(
        (hello.status, hello.body.as_str()),
        (200, "p3 Method_Get /hello \n")
    );
    let echo = http::request(addr, "POST", "/echo?x=1", b"posted body").unwrap();
    assert_eq!(
        (echo.status, echo.body.as_str()),
        (200, "p3 Method_Post /echo?x=1 posted body\n")
    );
    all_hellos_answer(addr, 4);
    assert_ok(&run_ctr(&["tasks", "kill", &id]));
    let (ran, _) = finish(child);
    assert_eq!(ran.code, 143, "{ran:?}");
}

/// Starts the C `wasi:http` component on a free loopback port of the host network, with
/// `extra` ctr flags; returns the image, the task id, the address and the `ctr run` child,
/// once it serves.
fn serve_c_proxy(name: &str, extra: &[&str]) -> (String, String, std::net::SocketAddr, Child) {
    let image = component_image(
        "docker.io/wasmpod/c-proxy:e2e",
        fixtures::c_proxy_component(),
    );
    let port = free_port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let listen = format!("WASMTIME_HTTP_PROXY_SOCKET_ADDR={addr}");
    let id = unique_id(name);
    let mut flags = vec!["--net-host", "--env", &listen];
    flags.extend_from_slice(extra);
    let child = spawn_run(&id, &flags, &image, &[]);
    wait_serving(addr);
    (image, id, addr, child)
}

/// The limits of an HTTP service hold: a request spinning in Wasm code is stopped at its
/// deadline with a 500 and a line in the log while other requests are served, and a stop
/// signal waits for requests in flight only as long as the drain limit, then exits 143.
#[test]
fn an_http_service_stops_a_runaway_request_and_bounds_its_drain() {
    let (image, id, addr, child) = serve_c_proxy(
        "limits",
        &[
            "--env",
            "WASMPOD_HTTP_REQUEST_TIMEOUT=3",
            "--env",
            "WASMPOD_HTTP_DRAIN_TIMEOUT=1",
        ],
    );
    let spinning = std::thread::spawn(move || http::get(addr, "/spin"));
    std::thread::sleep(Duration::from_millis(300));
    // Served while another request spins.
    for _ in 0..5 {
        assert_eq!(http::get(addr, "/hello").unwrap().status, 200);
    }
    let stopped = spinning
        .join()
        .unwrap()
        .expect("the spinning request is answered");
    assert_eq!(stopped.status, 500, "{stopped:?}");
    assert_eq!(http::get(addr, "/hello").unwrap().status, 200);

    // A request that outlives the drain limit does not hold the stop up.
    let slow = std::thread::spawn(move || http::get(addr, "/slow?60000"));
    std::thread::sleep(Duration::from_millis(300));
    let killed = Instant::now();
    assert_ok(&run_ctr(&["tasks", "kill", &id]));
    let (ran, _) = finish(child);
    let took = killed.elapsed();
    assert_eq!(ran.code, 143, "{ran:?}");
    assert!(took < Duration::from_secs(20), "stopped after {took:?}");
    assert!(
        slow.join().unwrap().is_err(),
        "the slow request was cut off"
    );
    assert!(
        ran.stderr
            .contains("ran past its limit of 3s (WASMPOD_HTTP_REQUEST_TIMEOUT or"),
        "{ran:?}"
    );
    assert!(
        ran.stderr.contains(
            "(WASMPOD_HTTP_DRAIN_TIMEOUT or wasmpod.dev/http-drain-timeout); stopping anyway"
        ),
        "{ran:?}"
    );
    let bad = run_with(&["--env", "WASMPOD_HTTP_MAX_CONNECTIONS=none"], &image, &[]);
    assert_eq!(bad.code, 1, "{bad:?}");
    assert!(
        bad.stderr.contains("WASMPOD_HTTP_MAX_CONNECTIONS=\"none\""),
        "{bad:?}"
    );
}

/// The HTTP limits can be annotations too: `wasmpod.dev/http-request-timeout` stops a
/// spinning request with a 500 at its deadline, and the log names both ways to set it.
#[test]
fn an_http_request_timeout_set_by_annotation_holds() {
    let (_, id, addr, child) = serve_c_proxy(
        "limits-annotation",
        &["--annotation", "wasmpod.dev/http-request-timeout=2"],
    );
    let stopped = http::get(addr, "/spin").expect("the spinning request is answered");
    assert_eq!(stopped.status, 500, "{stopped:?}");
    assert_eq!(http::get(addr, "/hello").unwrap().status, 200);
    assert_ok(&run_ctr(&["tasks", "kill", &id]));
    let (ran, _) = finish(child);
    assert_eq!(ran.code, 143, "{ran:?}");
    assert!(
        ran.stderr.contains(
            "ran past its limit of 2s (WASMPOD_HTTP_REQUEST_TIMEOUT or \
             wasmpod.dev/http-request-timeout)"
        ),
        "{ran:?}"
    );
}

/// More requests than the pool has instance slots (128), each answering at once and then
/// streaming its body for a while: an instance keeps its slot until the body is done, so the
/// requests past 128 wait for a slot, and every one gets its whole body (none a 500 from an
/// exhausted pool).
#[test]
fn requests_beyond_the_pool_wait_for_a_slot_while_bodies_stream() {
    // Working directory `/`: one preopen an instance, so ctr's 1024 open files hold all
    // 128 of the pool's instances (with `/work`, the service would size itself below it).
    let (_, id, addr, child) = serve_c_proxy("slots", &["--cwd", "/"]);
    let clients: Vec<_> = (0..160)
        .map(|_| std::thread::spawn(move || http::get(addr, "/stream?1500")))
        .collect();
    let replies: Vec<_> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    assert_ok(&run_ctr(&["tasks", "kill", &id]));
    let (ran, _) = finish(child);
    for reply in &replies {
        let reply = reply.as_ref().expect("every request is answered");
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (200, "part one\npart two\n"),
            "{reply:?}; the service's stderr: {}",
            ran.stderr
        );
    }
    assert_eq!(ran.code, 143, "{ran:?}");
    assert!(!ran.stderr.contains("handler failed"), "{ran:?}");
    assert!(
        ran.stderr.contains("serving 128 requests"),
        "the whole pool was in use: {ran:?}"
    );
}

/// A Wasm-layer image (standard OCI config, `architecture: wasm`, the component as a layer of
/// its own next to a tar layer of data files): the shim reads the Wasm from containerd's
/// content store. A layer holding precompiled code is refused. Needs containerd >= 1.7.7.
#[test]
fn a_wasm_layer_image_runs_from_the_content_store() {
    if !ctr::imports_wasm_layers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let name = "docker.io/wasmpod/probe-layer:e2e";
    let image = import(
        &ImageBuilder::new(name)
            .shape(ImageShape::WasmLayer)
            .entrypoint(["/app.wasm"])
            .file("/data/in.txt", b"data in the image\n".to_vec(), 0o644)
            .wasm_layer(fixtures::probe_component()),
        name,
        dir.path(),
    );
    let ran = run_image(WASMPOD, &image, &["/app.wasm", "args", "x"]);
    assert_eq!(
        (ran.code, ran.stdout.as_str()),
        (0, "arg[0]=/app.wasm\narg[1]=args\narg[2]=x\n"),
        "{ran:?}"
    );
    let ran = run_image(WASMPOD, &image, &["/app.wasm", "cat", "/data/in.txt"]);
    assert_eq!(
        (ran.code, ran.stdout.as_str()),
        (0, "data in the image\n"),
        "{ran:?}"
    );
    // A name that is neither in the rootfs nor a Wasm layer's entrypoint still runs the
    // layer: the image has exactly one Wasm layer, and args[0] is only the guest's argv[0].
    let ran = run_image(WASMPOD, &image, &["/other-name.wasm", "args"]);
    assert_eq!(ran.code, 0, "{ran:?}");

    // Precompiled code in a Wasm layer is never loaded.
    let cwasm_name = "docker.io/wasmpod/cwasm-layer:e2e";
    let engine_output = std::fs::read_dir(fixtures::cache_dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .expect("a compiled entry in the cache");
    let cwasm = import(
        &ImageBuilder::new(cwasm_name)
            .shape(ImageShape::WasmLayer)
            .entrypoint(["/app.wasm"])
            .wasm_layer(std::fs::read(engine_output).unwrap()),
        cwasm_name,
        dir.path(),
    );
    let ran = run_image(WASMPOD, &cwasm, &[]);
    assert_ne!(ran.code, 0);
    assert!(ran.stderr.contains("precompiled Wasm (.cwasm)"), "{ran:?}");
}

/// One bad input of the table in docs/behaviour.md ("Errors at create time"): the files of
/// an image (its entrypoint `/app.wasm` unless `args` say otherwise), `ctr run` flags, and
/// what the failing `ctr run` must print.
struct BadInput {
    what: &'static str,
    name: String,
    image: ImageBuilder,
    flags: Vec<String>,
    args: Vec<&'static str>,
    says: &'static str,
}

fn bad(what: &'static str, files: &[(&str, Vec<u8>)], says: &'static str) -> BadInput {
    let name = format!(
        "docker.io/wasmpod/bad-{}:e2e",
        what.replace(|c: char| !c.is_ascii_alphanumeric(), "-")
            .to_lowercase()
    );
    let mut image = ImageBuilder::new(name.clone())
        .platform("linux", "amd64")
        .entrypoint(["/app.wasm"]);
    for (path, bytes) in files {
        image = image.file(path, bytes.clone(), 0o755);
    }
    BadInput {
        what,
        name,
        image,
        flags: Vec::new(),
        args: Vec::new(),
        says,
    }
}

impl BadInput {
    fn with_image(mut self, edit: impl FnOnce(ImageBuilder) -> ImageBuilder) -> Self {
        self.image = edit(self.image);
        self
    }
    fn flags(mut self, flags: &[&str]) -> Self {
        self.flags = flags.iter().map(|f| f.to_string()).collect();
        self
    }
    fn args(mut self, args: &[&'static str]) -> Self {
        self.args = args.to_vec();
        self
    }
}

/// Bytes no program is made of (a fixed xorshift stream).
fn random_bytes(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// An ELF header for `machine` (62 is x86-64, 183 is aarch64) and nothing runnable behind it.
fn elf_header(machine: u16) -> Vec<u8> {
    let mut h = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0];
    h.resize(16, 0);
    h.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    h.extend_from_slice(&machine.to_le_bytes());
    h.extend_from_slice(&1u32.to_le_bytes());
    h.resize(64, 0);
    h
}

#[test]
fn each_bad_input_of_the_table_fails_create_with_its_message() {
    let before = leak_counts();
    let hello = wat(fixtures::HELLO_WAT);
    let options = tempfile::tempdir().unwrap();
    let option_file = |name: &str, text: &str| {
        let path = options.path().join(name);
        std::fs::write(&path, text).unwrap();
        format!("--runtime-config-path={}", path.display())
    };
    let not_toml = option_file("not-toml.toml", "SystemdCgroup = = true\n");
    let misspelt = option_file("misspelt.toml", "SystemdCgrup = true\n");
    let relative_cache = option_file("relative.toml", "CacheDir = \"cache\"\n");
    let wrong_kind = option_file("kind.toml", "CacheMaxBytes = \"lots\"\n");
    let missing_file = format!(
        "--runtime-config-path={}",
        options.path().join("absent.toml").display()
    );
    let mut corrupt_section = b"\0asm\x01\0\0\0".to_vec();
    corrupt_section.extend_from_slice(&[1, 0x7f, 0x60]); // a type section longer than the file
    let mut bad_component = b"\0asm\x0d\0\x01\0".to_vec();
    bad_component.extend_from_slice(&[0x2a, 0x05, 1, 2]); // an unknown section id
    let cases = vec![
        bad(
            "an empty file",
            &[("/app.wasm", Vec::new())],
            "is neither Wasm nor a native executable",
        ),
        bad(
            "random bytes",
            &[("/app.wasm", random_bytes(4096))],
            "is neither Wasm nor a native executable",
        ),
        bad(
            "a wrong magic number",
            &[("/app.wasm", b"\0asn\x01\0\0\0".to_vec())],
            "is neither Wasm nor a native executable",
        ),
        bad(
            "an unknown Wasm version",
            &[("/app.wasm", b"\0asm\x02\0\0\0".to_vec())],
            "is Wasm of a version wasmpod does not know",
        ),
        bad(
            "a section running past the end",
            &[("/app.wasm", corrupt_section)],
            "invalid Wasm module",
        ),
        bad(
            "a component with an unknown section",
            &[("/app.wasm", bad_component)],
            "invalid Wasm component",
        ),
        bad(
            "a component that exports nothing",
            &[("/app.wasm", wat("(component)"))],
            "does not export wasi:cli/run",
        ),
        bad(
            "a module importing a memory",
            &[(
                "/app.wasm",
                wat(r#"(module (import "env" "memory" (memory 1)) (func (export "_start")))"#),
            )],
            "cannot link the Wasm module: unknown import: `env::memory`",
        ),
        bad(
            "a `_start` that takes parameters",
            &[(
                "/app.wasm",
                wat(r#"(module (func (export "_start") (param i32)))"#),
            )],
            "a WASI command's `_start` takes no parameters",
        ),
        bad("a symlink loop", &[], "too many levels of symbolic links").with_image(|i| {
            i.symlink("/app.wasm", "/loop.wasm")
                .symlink("/loop.wasm", "/app.wasm")
        }),
        bad(
            "a symlink out of the rootfs",
            &[],
            "not found in the container's rootfs",
        )
        .with_image(|i| i.symlink("/app.wasm", "../../../../../../usr/bin/ctr")),
        bad(
            "a dangling symlink",
            &[],
            "not found in the container's rootfs",
        )
        .with_image(|i| i.symlink("/app.wasm", "/nowhere.wasm")),
        bad(
            "a directory as entrypoint",
            &[("/data/in.txt", b"x".to_vec())],
            "is not a regular file",
        )
        .args(&["/data"]),
        bad(
            "a relative entrypoint not on PATH",
            &[("/app.wasm", hello.clone())],
            "not found",
        )
        .args(&["nope.wasm"]),
        bad(
            "a native program for another architecture",
            &[("/app", elf_header(183))],
            "is a native program for aarch64, and this node is x86_64",
        )
        .args(&["/app"]),
        bad(
            "a relative working directory",
            &[("/app.wasm", hello.clone())],
            "working directory \"relative/dir\": not an absolute path",
        )
        .flags(&["--cwd", "relative/dir"]),
        bad(
            "runtime options that are not TOML",
            &[("/app.wasm", hello.clone())],
            "runtime options are not TOML: TOML parse error at line 1",
        )
        .flags(&[&not_toml]),
        bad(
            "a runtime option wasmpod does not read",
            &[("/app.wasm", hello.clone())],
            "\"SystemdCgrup\" is not one wasmpod reads",
        )
        .flags(&[&misspelt]),
        bad(
            "a relative CacheDir",
            &[("/app.wasm", hello.clone())],
            "CacheDir must be an absolute path",
        )
        .flags(&[&relative_cache]),
        bad(
            "a CacheMaxBytes that is not a number",
            &[("/app.wasm", hello.clone())],
            "CacheMaxBytes must be a positive number",
        )
        .flags(&[&wrong_kind]),
        bad(
            "a runtime options file that does not exist",
            &[("/app.wasm", hello.clone())],
            "absent.toml",
        )
        .flags(&[&missing_file]),
    ];
    let mut cases = cases;
    // containerd 1.6 cannot import images with Wasm layers.
    if ctr::imports_wasm_layers() {
        let two = bad(
            "an image with two Wasm layers",
            &[],
            "has 2 Wasm layers; wasmpod runs images with one",
        )
        .with_image(|i| {
            i.platform("wasi", "wasm")
                .shape(ImageShape::WasmLayer)
                .wasm_layer(hello.clone())
                .wasm_layer(wat(fixtures::EXIT42_WAT))
        });
        cases.push(two);
    }
    let mut wrong = Vec::new();
    for case in cases {
        let dir = tempfile::tempdir().unwrap();
        let image = import(&case.image, &case.name, dir.path());
        let flags: Vec<&str> = case.flags.iter().map(String::as_str).collect();
        let ran = run_with(&flags, &image, &case.args);
        if ran.code == 0 || !ran.stderr.contains(case.says) {
            wrong.push(format!(
                "{}: wanted {:?}, got exit {} {:?}",
                case.what,
                case.says,
                ran.code,
                ran.stderr.trim()
            ));
        } else {
            println!("{} | {}", case.what, ran.stderr.trim());
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert_eq!(
        leak_counts(),
        before,
        "(mounts, cgroup dirs, shims, shim sockets)"
    );
}
