//! End-to-end tests of the Kubernetes path: the test plays kubelet over containerd's CRI
//! socket (see `wasmpod_e2e::cri`), with pods whose RuntimeClass handler is wasmpod.

use std::path::Path;
use std::process::Command;
use std::sync::Once;
use std::time::{Duration, Instant};

use k8s_cri::v1::ContainerState;
use wasmpod_e2e::cri::{self, ContainerSpec, Cri, Pod, PodSpec};
use wasmpod_e2e::ctr;
use wasmpod_e2e::fixtures::{self, wat, PyWorld};
use wasmpod_e2e::http;
use wasmpod_e2e::leaks;
use wasmpod_e2e::registry;
use wasmpod_oci::image::{ImageBuilder, ImageShape};

const PROBE: &str = "docker.io/wasmpod/probe:cri";
const BUSYBOX: &str = "docker.io/wasmpod/busybox:cri";
const TRAP: &str = "docker.io/wasmpod/trap:cri";
const PROXY: &str = "docker.io/wasmpod/py-proxy:cri";
const C_PROXY: &str = "docker.io/wasmpod/c-proxy:cri";

/// Imports the C `wasi:http` component (test/fixtures/proxy.c) as [`C_PROXY`].
fn import_c_proxy() {
    cri::import_k8s(
        &ImageBuilder::new(C_PROXY).entrypoint(["/proxy.wasm"]).file(
            "/proxy.wasm",
            fixtures::c_proxy_component(),
            0o755,
        ),
        C_PROXY,
    );
}

fn setup() -> Cri {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        cri::ensure_pause_image();
        cri::import_k8s(
            &ImageBuilder::new(PROBE)
                .entrypoint(["/probe.wasm"])
                .file("/probe.wasm", fixtures::probe(), 0o755)
                .file("/other.wasm", wat(fixtures::HELLO_WAT), 0o755),
            PROBE,
        );
        cri::import_k8s(
            &ImageBuilder::new(TRAP)
                .entrypoint(["/trap.wasm"])
                .file("/trap.wasm", wat(fixtures::TRAP_WAT), 0o755)
                .file("/spin.wasm", wat(fixtures::SPIN_WAT), 0o755),
            TRAP,
        );
        let busybox = std::fs::read("/bin/busybox").expect("busybox-static (make setup)");
        cri::import_k8s(
            &ImageBuilder::new(BUSYBOX)
                .platform("linux", "amd64")
                .entrypoint(["/bin/busybox"])
                .file("/bin/busybox", busybox, 0o755)
                .file(
                    "/www/index.html",
                    b"hello from the sidecar\n".to_vec(),
                    0o644,
                ),
            BUSYBOX,
        );
    });
    Cri::connect()
}

fn probe(name: &str, args: &[&str]) -> ContainerSpec {
    ContainerSpec {
        name: name.into(),
        image: PROBE.into(),
        args: args.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn httpd(name: &str, port: u16) -> ContainerSpec {
    ContainerSpec {
        name: name.into(),
        image: BUSYBOX.into(),
        command: vec!["/bin/busybox".into()],
        args: ["httpd", "-f", "-h", "/www", "-p"]
            .iter()
            .map(|s| s.to_string())
            .chain([format!("127.0.0.1:{port}")])
            .collect(),
        ..Default::default()
    }
}

fn run(cri: &mut Cri, pod: &Pod, spec: &ContainerSpec) -> String {
    let id = cri.create_container(pod, spec).expect("create container");
    cri.start_container(&id).expect("start container");
    id
}

fn wait_running(cri: &mut Cri, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if cri
            .container_status(id)
            .map(|s| s.state == ContainerState::ContainerRunning as i32)
            .unwrap_or(false)
        {
            std::thread::sleep(Duration::from_millis(200));
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{id} never ran");
}

/// Polls `done` every 50 ms until it holds or `timeout` passes.
fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn teardown(cri: &mut Cri, pod: &Pod, containers: &[&str]) {
    for c in containers {
        let _ = cri.stop_container(c, 10);
        cri.remove_container(c).expect("remove container");
    }
    cri.remove_pod(pod).expect("remove pod");
}

/// (a) A Wasm container prints, exits 3: log file, exit code, status.
#[test]
fn a_wasm_container_logs_and_exit_code() {
    let mut cri = setup();
    for handler in ["wasmpod", "spin", "wasmtime"] {
        let pod = cri.run_pod(handler, &PodSpec::default()).expect("run pod");
        let id = run(&mut cri, &pod, &probe("app", &["exit", "3"]));
        let status = cri.wait_exited(&id, Duration::from_secs(20));
        assert_eq!(
            status.state,
            ContainerState::ContainerExited as i32,
            "{handler}: {status:?}"
        );
        assert_eq!(status.exit_code, 3, "{handler}: {status:?}");
        assert_eq!(status.reason, "Error", "{status:?}");
        let lines = cri::log_lines(&pod.log_dir.join("app.log"));
        assert_eq!(
            lines,
            vec![("stdout".to_string(), "exiting with 3".to_string())],
            "{handler}"
        );
        teardown(&mut cri, &pod, &[&id]);
    }
}

/// A trap's message lands in the container log on stderr; exit code 134.
#[test]
fn a_trap_is_reported_in_the_log() {
    let mut cri = setup();
    let pod = cri.run_pod("wasmpod", &PodSpec::default()).unwrap();
    let id = run(
        &mut cri,
        &pod,
        &ContainerSpec {
            name: "trap".into(),
            image: TRAP.into(),
            ..Default::default()
        },
    );
    let status = cri.wait_exited(&id, Duration::from_secs(20));
    assert_eq!(status.exit_code, 134);
    let lines = cri::log_lines(&pod.log_dir.join("trap.log"));
    assert!(
        lines
            .iter()
            .any(|(s, t)| s == "stderr" && t.contains("trapped") && t.contains("unreachable")),
        "{lines:?}"
    );
    teardown(&mut cri, &pod, &[&id]);
}

/// A pod's `wasmpod.dev/` annotations reach its Wasm containers (the handler passes them,
/// as the node installer configures it): a spinning command under
/// `wasmpod.dev/cpu-time-limit` exits 152 with the reason in its log; a pod whose annotation
/// is unknown fails to start, naming it.
#[test]
fn a_pods_annotations_set_its_knobs() {
    let mut cri = setup();
    let annotated = |key: &str, value: &str| PodSpec {
        annotations: vec![(key.to_string(), value.to_string())],
        ..Default::default()
    };
    let pod = cri
        .run_pod("wasmpod", &annotated("wasmpod.dev/cpu-time-limit", "1"))
        .unwrap();
    let id = run(
        &mut cri,
        &pod,
        &ContainerSpec {
            name: "spin".into(),
            image: TRAP.into(),
            command: vec!["/spin.wasm".into()],
            ..Default::default()
        },
    );
    let status = cri.wait_exited(&id, Duration::from_secs(30));
    assert_eq!(status.exit_code, 152, "{status:?}");
    let lines = cri::log_lines(&pod.log_dir.join("spin.log"));
    assert!(
        lines
            .iter()
            .any(|(s, t)| s == "stderr" && t.contains("CPU time limit of 1 s")),
        "{lines:?}"
    );
    teardown(&mut cri, &pod, &[&id]);
    let err = cri
        .run_pod("wasmpod", &annotated("wasmpod.dev/cpu-limit", "1"))
        .unwrap_err();
    assert!(
        err.message()
            .contains("annotation wasmpod.dev/cpu-limit: not one wasmpod reads"),
        "{err:?}"
    );
}

/// (b) A Wasm container with a native busybox httpd sidecar, reached on 127.0.0.1 inside the
/// pod's network namespace; (d) ExecSync into both; (e) stats; (f) a quick stop;
/// (h) one shim for the whole pod, none after it is removed.
#[test]
fn b_d_e_f_h_a_pod_with_a_wasm_container_and_a_native_sidecar() {
    let mut cri = setup();
    let address = ctr::address();
    let pod = cri.run_pod("wasmpod", &PodSpec::default()).unwrap();
    let app = run(&mut cri, &pod, &probe("app", &["sleep", "300"]));
    let web = run(&mut cri, &pod, &httpd("web", 8080));
    wait_running(&mut cri, &app);
    wait_running(&mut cri, &web);

    // (b) the sidecar answers on the pod's loopback.
    let netns = cri.pod_netns(&pod).expect("pod netns path");
    let out = Command::new("nsenter")
        .arg(format!("--net={netns}"))
        .args([
            "/bin/busybox",
            "wget",
            "-q",
            "-O",
            "-",
            "http://127.0.0.1:8080/index.html",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello from the sidecar\n",
        "{out:?}"
    );

    // (d) ExecSync: a second Wasm file in the Wasm container, a shell in the sidecar.
    let (code, stdout, _) = cri.exec_sync(&app, &["/other.wasm"], 10).unwrap();
    assert_eq!((code, stdout.as_str()), (0, "hello from wasmpod\n"));
    let (code, stdout, _) = cri
        .exec_sync(&app, &["/probe.wasm", "exit", "7"], 10)
        .unwrap();
    assert_eq!((code, stdout.as_str()), (7, "exiting with 7\n"));
    let (code, stdout, _) = cri
        .exec_sync(
            &web,
            &["/bin/busybox", "sh", "-c", "echo from sidecar; exit 2"],
            10,
        )
        .unwrap();
    assert_eq!((code, stdout.as_str()), (2, "from sidecar\n"));
    assert!(cri.exec_sync(&app, &["/no-such.wasm"], 10).is_err());

    // (e) stats of the running Wasm container.
    let stats = cri.container_stats(&app).unwrap();
    let memory = stats
        .memory
        .and_then(|m| m.working_set_bytes)
        .map(|v| v.value)
        .unwrap_or(0);
    let cpu = stats
        .cpu
        .and_then(|c| c.usage_core_nano_seconds)
        .map(|v| v.value)
        .unwrap_or(0);
    assert!(memory > 0 && cpu > 0, "memory {memory}, cpu {cpu}");

    // (h) one shim serves the pod (pause, Wasm app and native sidecar).
    assert!(
        leaks::shim_pid(&address, &pod.id).is_some(),
        "the pod's shim"
    );
    assert_eq!(
        leaks::shim_pid(&address, &app),
        None,
        "no shim of its own for the app"
    );
    assert_eq!(
        leaks::shim_pid(&address, &web),
        None,
        "no shim of its own for the sidecar"
    );

    // (f) StopContainer of a sleeping guest returns at once with 143.
    let start = Instant::now();
    cri.stop_container(&app, 30).unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "stop took {:?}",
        start.elapsed()
    );
    let status = cri.container_status(&app).unwrap();
    assert_eq!(status.exit_code, 143, "{status:?}");

    teardown(&mut cri, &pod, &[&app, &web]);
    wait_until(Duration::from_secs(10), || {
        leaks::shim_pid(&address, &pod.id).is_none()
    });
    assert_eq!(
        leaks::shim_pid(&address, &pod.id),
        None,
        "the pod's shim exits with the pod"
    );
}

/// (c) A hostNetwork pod: the sidecar listens on the node's loopback.
#[test]
fn c_a_host_network_pod() {
    let mut cri = setup();
    let pod = cri
        .run_pod(
            "wasmpod",
            &PodSpec {
                host_network: true,
                ..Default::default()
            },
        )
        .unwrap();
    let app = run(&mut cri, &pod, &probe("app", &["args", "host"]));
    let status = cri.wait_exited(&app, Duration::from_secs(20));
    assert_eq!(status.exit_code, 0);
    let port = 18000 + (std::process::id() % 1000) as u16;
    let web = run(&mut cri, &pod, &httpd("web", port));
    wait_running(&mut cri, &web);
    let out = Command::new("/bin/busybox")
        .args([
            "wget",
            "-q",
            "-O",
            "-",
            &format!("http://127.0.0.1:{port}/index.html"),
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello from the sidecar\n",
        "{out:?}"
    );
    teardown(&mut cri, &pod, &[&app, &web]);
}

/// (g) A memory limit lands in the container's cgroup, and an update of it too.
#[test]
fn g_a_memory_limit_lands_in_the_cgroup() {
    let mut cri = setup();
    let pod = cri.run_pod("wasmpod", &PodSpec::default()).unwrap();
    let mut spec = probe("app", &["sleep", "300"]);
    spec.memory_limit = 64 << 20;
    let app = run(&mut cri, &pod, &spec);
    wait_running(&mut cri, &app);
    let file = Path::new("/sys/fs/cgroup/memory")
        .join(pod.cgroup_parent.trim_start_matches('/'))
        .join(&app)
        .join("memory.limit_in_bytes");
    let limit =
        std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    assert_eq!(limit.trim(), (64u64 << 20).to_string());
    // UpdateContainerResources reaches the cgroup too.
    cri.update_memory(&app, 96 << 20).expect("update resources");
    let limit = std::fs::read_to_string(&file).unwrap();
    assert_eq!(limit.trim(), (96u64 << 20).to_string());
    teardown(&mut cri, &pod, &[&app]);
}

/// What pods could leave on the node: mounts under containerd's state directory, shim
/// processes, pod cgroups and shim sockets.
fn leak_counts() -> (usize, usize, usize, usize) {
    let address = ctr::address();
    let state = Path::new(&address).parent().unwrap().display().to_string();
    (
        leaks::mounts_containing(&state),
        leaks::shim_processes(&address),
        leaks::cgroup_dirs("memory", cri::CGROUP_PARENT_ROOT.trim_start_matches('/')),
        leaks::shim_sockets(),
    )
}

/// The leak counts once the shims of earlier tests, which exit asynchronously after their
/// pods are removed, are gone.
fn leak_baseline() -> (usize, usize, usize, usize) {
    wait_until(Duration::from_secs(15), || {
        leaks::shim_processes(&ctr::address()) == 0
    });
    leak_counts()
}

/// (i) 20 pods created, run and removed concurrently; nothing leaks.
#[test]
fn i_twenty_concurrent_pods_leak_nothing() {
    let _ = setup();
    let before = leak_baseline();
    let workers: Vec<_> = (0..20)
        .map(|n| {
            std::thread::spawn(move || {
                let mut cri = Cri::connect();
                let pod = cri
                    .run_pod("wasmpod", &PodSpec::default())
                    .expect("run pod");
                let app = run(&mut cri, &pod, &probe("app", &["args", &n.to_string()]));
                let status = cri.wait_exited(&app, Duration::from_secs(60));
                assert_eq!(status.exit_code, 0, "{status:?}");
                let lines = cri::log_lines(&pod.log_dir.join("app.log"));
                assert!(
                    lines.iter().any(|(_, t)| t == &format!("arg[2]={n}")),
                    "{lines:?}"
                );
                teardown(&mut cri, &pod, &[&app]);
            })
        })
        .collect();
    for w in workers {
        w.join().expect("pod worker");
    }
    wait_until(Duration::from_secs(15), || leak_counts() == before);
    assert_eq!(
        leak_counts(),
        before,
        "(mounts, shims, pod cgroups) before vs after"
    );
}

/// The handler's runtime options reach the shim: with `SystemdCgroup = true` the shim
/// expects systemd cgroup paths, and says so when the pod uses cgroupfs ones.
#[test]
fn runtime_options_reach_the_shim() {
    let mut cri = setup();
    let err = cri
        .run_pod("wasmpod-systemd", &PodSpec::default())
        .expect_err("cgroupfs pod under SystemdCgroup");
    assert!(err.message().contains("SystemdCgroup is on"), "{err:?}");
}

/// (j) Two `wasi:http` proxy components in one pod: a componentize-py one on the default
/// `0.0.0.0:8080` and a C one on `0.0.0.0:8081` (set through the container's environment),
/// reached from inside the pod's network namespace; WASI in the handler; a trap is a 500 and
/// a line in the container log; StopContainer while slow requests are in flight lets them
/// finish, then the containers exit 143.
#[test]
fn j_http_proxy_components_in_a_pod() {
    let mut cri = setup();
    static IMPORT: Once = Once::new();
    IMPORT.call_once(|| {
        cri::import_k8s(
            &ImageBuilder::new(PROXY)
                .entrypoint(["/proxy.wasm"])
                .file(
                    "/proxy.wasm",
                    fixtures::py_component("proxy", PyWorld::HttpProxy),
                    0o755,
                )
                .file("/data/in.txt", b"data in the image\n".to_vec(), 0o644),
            PROXY,
        );
        import_c_proxy();
    });
    let pod = cri.run_pod("wasmpod", &PodSpec::default()).unwrap();
    let py = run(
        &mut cri,
        &pod,
        &ContainerSpec {
            name: "py".into(),
            image: PROXY.into(),
            env: vec![("FROM_POD".into(), "pod env".into())],
            // Compiling the Python component takes about 370 MiB at its first start, and a
            // compile is charged to the container.
            memory_limit: 512 << 20,
            ..Default::default()
        },
    );
    let c = run(
        &mut cri,
        &pod,
        &ContainerSpec {
            name: "c".into(),
            image: C_PROXY.into(),
            env: vec![(
                "WASMTIME_HTTP_PROXY_SOCKET_ADDR".into(),
                "0.0.0.0:8081".into(),
            )],
            ..Default::default()
        },
    );
    wait_running(&mut cri, &py);
    wait_running(&mut cri, &c);
    let netns = cri.pod_netns(&pod).expect("pod netns path");
    let get =
        |port: u16, path: &'static str| get_in_pod(&netns, port, path, Duration::from_secs(120));
    for (port, text) in [
        (8080, "hello from a python component\n"),
        (8081, "hello from a C component\n"),
    ] {
        let hello = get(port, "/hello");
        assert_eq!((hello.status, hello.body.as_str()), (200, text));
        assert_eq!(get(port, "/trap").status, 500);
        assert_eq!(get(port, "/hello").status, 200, "serving after a trap");
    }
    assert_eq!(get(8080, "/env?FROM_POD").body, "pod env");
    assert_eq!(get(8080, "/file?/data/in.txt").body, "data in the image\n");

    let slow: Vec<_> = [8080u16, 8081]
        .into_iter()
        .map(|port| {
            let netns = netns.clone();
            let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
            std::thread::spawn(move || {
                http::in_netns(&netns, move || http::get(addr, "/slow?3000"))
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(700));
    cri.stop_container(&py, 30).unwrap();
    cri.stop_container(&c, 30).unwrap();
    for reply in slow {
        let reply = reply.join().unwrap().expect("the slow request completes");
        assert_eq!((reply.status, reply.body.as_str()), (200, "slow done\n"));
    }
    for (id, name) in [(&py, "py"), (&c, "c")] {
        let status = cri.container_status(id).unwrap();
        assert_eq!(status.exit_code, 143, "{name}: {status:?}");
        let lines = cri::log_lines(&pod.log_dir.join(format!("{name}.log")));
        assert!(
            lines.iter().any(|(s, t)| s == "stderr"
                && t.contains("wasmpod: the HTTP handler failed: the guest trapped")),
            "{name}: {lines:?}"
        );
    }
    teardown(&mut cri, &pod, &[&py, &c]);
}

/// (k) Wasm carried as image layers, through CRI: a standard OCI image with a Wasm layer
/// (entrypoint from the image) and a CNCF Wasm artifact (no entrypoint: the pod spec names
/// the command). The shim reads the layer from containerd's content store. Needs containerd
/// >= 1.7.7 to import them.
#[test]
fn k_wasm_layer_images_and_cncf_artifacts() {
    if !ctr::imports_wasm_layers() {
        return;
    }
    let mut cri = setup();
    const LAYERED: &str = "docker.io/wasmpod/probe-layer:cri";
    const ARTIFACT: &str = "docker.io/wasmpod/probe-artifact:cri";
    cri::import_k8s(
        &ImageBuilder::new(LAYERED)
            .shape(ImageShape::WasmLayer)
            .entrypoint(["/probe.wasm"])
            .file("/data/in.txt", b"data in the image\n".to_vec(), 0o644)
            .wasm_layer(fixtures::probe()),
        LAYERED,
    );
    cri::import_k8s(
        &ImageBuilder::new(ARTIFACT)
            .shape(ImageShape::WasmArtifact)
            .wasm_layer(fixtures::probe_component()),
        ARTIFACT,
    );
    let pod = cri.run_pod("wasmpod", &PodSpec::default()).unwrap();
    let layered = run(
        &mut cri,
        &pod,
        &ContainerSpec {
            name: "layered".into(),
            image: LAYERED.into(),
            args: vec!["cat".into(), "/data/in.txt".into()],
            ..Default::default()
        },
    );
    let artifact = run(
        &mut cri,
        &pod,
        &ContainerSpec {
            name: "artifact".into(),
            image: ARTIFACT.into(),
            command: vec!["/probe.wasm".into()],
            args: vec!["env".into(), "FROM_POD".into()],
            env: vec![("FROM_POD".into(), "yes".into())],
            ..Default::default()
        },
    );
    for (id, name, line) in [
        (&layered, "layered", "data in the image"),
        (&artifact, "artifact", "FROM_POD=yes"),
    ] {
        let status = cri.wait_exited(id, Duration::from_secs(60));
        let lines = cri::log_lines(&pod.log_dir.join(format!("{name}.log")));
        assert_eq!(status.exit_code, 0, "{name}: {status:?} {lines:?}");
        assert!(
            lines.iter().any(|(s, t)| s == "stdout" && t == line),
            "{name}: {lines:?}"
        );
    }
    teardown(&mut cri, &pod, &[&layered, &artifact]);
}

/// (l) Two pods start the same new 18 MB component (componentize-py) at the same time: the
/// node compiles it once (read from the cache's compile log and entries, not from timing),
/// and both run it.
#[test]
fn l_two_pods_share_one_compile_of_a_new_component() {
    let _ = setup();
    let stamp = ctr::unique_id("compile");
    let wasm = fixtures::with_custom_section(
        &fixtures::py_component("command", PyWorld::Command),
        "wasmpod-test",
        stamp.as_bytes(),
    );
    let key = fixtures::cache_key_prefix(&wasm);
    let image = format!("docker.io/wasmpod/py-command:{stamp}");
    cri::import_k8s(
        &ImageBuilder::new(image.as_str())
            .entrypoint(["/app.wasm"])
            .file("/app.wasm", wasm, 0o755),
        &image,
    );
    let pods: Vec<_> = (0..2)
        .map(|n| {
            let image = image.clone();
            std::thread::spawn(move || {
                let mut cri = Cri::connect();
                let pod = cri
                    .run_pod("wasmpod", &PodSpec::default())
                    .expect("run pod");
                let spec = ContainerSpec {
                    name: "app".into(),
                    image,
                    args: vec!["args".into(), format!("pod{n}")],
                    ..Default::default()
                };
                let app = run(&mut cri, &pod, &spec);
                let status = cri.wait_exited(&app, Duration::from_secs(120));
                let lines = cri::log_lines(&pod.log_dir.join("app.log"));
                teardown(&mut cri, &pod, &[&app]);
                (status.exit_code, lines, n)
            })
        })
        .collect();
    for pod in pods {
        let (code, lines, n) = pod.join().expect("pod");
        assert_eq!(code, 0, "{lines:?}");
        assert!(
            lines.iter().any(|(_, t)| t == &format!("arg[2]=pod{n}")),
            "{lines:?}"
        );
    }
    assert_eq!(fixtures::compiles_of(&key), 1, "one compile for both pods");
    let entries = std::fs::read_dir(fixtures::cache_dir())
        .unwrap()
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with(&key) && name.ends_with(".cwasm")
        })
        .count();
    assert_eq!(entries, 1, "one cache entry for the component");
}

/// (m) Images pushed to a registry with `skopeo copy oci-archive:` and pulled with PullImage,
/// the way a node gets them: a rootfs image on every containerd; on 1.7.7 and later also a
/// Wasm-layer image and a CNCF Wasm artifact. All three run in one pod.
#[test]
fn m_images_pulled_from_a_registry() {
    let Some(registry) = registry::available() else {
        return;
    };
    let mut cri = setup();
    let tag = ctr::unique_id("pull");
    let rootfs = format!("{registry}/e2e/probe-rootfs:{tag}");
    registry::push(
        &ImageBuilder::new(rootfs.as_str())
            .entrypoint(["/probe.wasm"])
            .file("/probe.wasm", fixtures::probe(), 0o755),
        &rootfs,
    );
    let mut containers = vec![("rootfs", rootfs, Vec::new())];
    if ctr::server_version() >= (1, 7, 7) {
        let layered = format!("{registry}/e2e/probe-layer:{tag}");
        registry::push(
            &ImageBuilder::new(layered.as_str())
                .shape(ImageShape::WasmLayer)
                .entrypoint(["/probe.wasm"])
                .wasm_layer(fixtures::probe()),
            &layered,
        );
        let artifact = format!("{registry}/e2e/probe-artifact:{tag}");
        registry::push(
            &ImageBuilder::new(artifact.as_str())
                .shape(ImageShape::WasmArtifact)
                .wasm_layer(fixtures::probe_component()),
            &artifact,
        );
        containers.push(("layered", layered, Vec::new()));
        containers.push(("artifact", artifact, vec!["/probe.wasm".to_string()]));
    } else {
        eprintln!(
            "containerd {:?}: only the rootfs image (Wasm layers need >= 1.7.7)",
            ctr::server_version()
        );
    }
    for (_, image, _) in &containers {
        assert!(!cri.image_present(image));
        let image_ref = cri.pull_image(image).expect("PullImage");
        assert!(image_ref.starts_with("sha256:"), "{image}: {image_ref}");
    }
    let pod = cri.run_pod("wasmpod", &PodSpec::default()).unwrap();
    let ids: Vec<String> = containers
        .iter()
        .map(|(name, image, command)| {
            run(
                &mut cri,
                &pod,
                &ContainerSpec {
                    name: name.to_string(),
                    image: image.clone(),
                    command: command.clone(),
                    args: vec!["args".into(), "pulled".into()],
                    ..Default::default()
                },
            )
        })
        .collect();
    for ((name, _, _), id) in containers.iter().zip(&ids) {
        let status = cri.wait_exited(id, Duration::from_secs(60));
        let lines = cri::log_lines(&pod.log_dir.join(format!("{name}.log")));
        assert_eq!(status.exit_code, 0, "{name}: {status:?} {lines:?}");
        assert!(
            lines
                .iter()
                .any(|(s, t)| s == "stdout" && t == "arg[2]=pulled"),
            "{name}: {lines:?}"
        );
    }
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    teardown(&mut cri, &pod, &ids);
}

/// An image of real Debian programs from this host (dynamically linked, with the libraries
/// `ldd` names at the same paths), `/bin/sh` being dash, and `/entry.sh` as the entrypoint.
fn debian_image(name: &str, entry: &str) -> ImageBuilder {
    let programs = ["/bin/dash", "/usr/bin/id", "/bin/sleep"];
    let mut files: Vec<(String, String)> = programs
        .iter()
        .map(|p| (p.to_string(), p.to_string()))
        .collect();
    files.push(("/bin/dash".into(), "/bin/sh".into()));
    files.push(("/etc/os-release".into(), "/etc/os-release".into()));
    for program in programs {
        let out = Command::new("ldd").arg(program).output().expect("run ldd");
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux... (0x...)"
            let path = match line.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next(),
                None => line.split_whitespace().next(),
            };
            if let Some(path) = path.filter(|p| p.starts_with('/')) {
                files.push((path.to_string(), path.to_string()));
            }
        }
    }
    files.sort();
    files.dedup();
    let mut image = ImageBuilder::new(name)
        .platform("linux", "amd64")
        .entrypoint(["/entry.sh"])
        .file("/entry.sh", entry.as_bytes().to_vec(), 0o755);
    for (from, to) in files {
        let bytes = std::fs::read(&from).unwrap_or_else(|e| panic!("read {from}: {e}"));
        image = image.file(&to, bytes, 0o755);
    }
    image
}

/// `Name:\tvalue` lines of `/proc/PID/status`.
/// A field of one `status` file under `/proc`.
fn status_field(path: &str, key: &str) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{key}:"))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default()
}

/// (n) A pod under Kubernetes' "restricted" security context (uid 1000, read-only rootfs, no
/// new privileges, no capabilities, the runtime's default seccomp profile): a Wasm command,
/// a wasi:http component on the pooling allocator, and a sidecar made of real, dynamically
/// linked Debian programs started through a `#!` script. All run confined as asked, the
/// sidecar answers ExecSync, and an exec probe runs a Wasm file in the Wasm container.
#[test]
fn n_restricted_pod_with_a_debian_program_sidecar() {
    const DEBIAN: &str = "docker.io/wasmpod/debian-programs:cri";
    let mut cri = setup();
    cri::import_k8s(
        &debian_image(
            DEBIAN,
            "#!/bin/sh\n\
             echo \"sidecar uid=$(id -u) gid=$(id -g)\"\n\
             if (: >/written) 2>/dev/null; then echo 'rootfs writable'; else echo 'rootfs read-only'; fi\n\
             while read -r key value; do\n\
               case $key in CapEff:|NoNewPrivs:|Seccomp:) echo \"$key $value\";; esac\n\
             done </proc/self/status\n\
             exec sleep 300\n",
        ),
        DEBIAN,
    );
    import_c_proxy();
    let pod = cri.run_pod("wasmpod", &PodSpec::default()).unwrap();
    let restricted = |spec: ContainerSpec| ContainerSpec {
        restricted: true,
        ..spec
    };
    let app = run(&mut cri, &pod, &restricted(probe("app", &["sleep", "300"])));
    let web = run(
        &mut cri,
        &pod,
        &restricted(ContainerSpec {
            name: "web".into(),
            image: C_PROXY.into(),
            ..Default::default()
        }),
    );
    let side = run(
        &mut cri,
        &pod,
        &restricted(ContainerSpec {
            name: "side".into(),
            image: DEBIAN.into(),
            ..Default::default()
        }),
    );
    for id in [&app, &web, &side] {
        wait_running(&mut cri, id);
    }

    // The sidecar saw itself confined.
    let log = pod.log_dir.join("side.log");
    wait_until(Duration::from_secs(20), || {
        cri::log_lines(&log)
            .iter()
            .any(|(_, t)| t.starts_with("Seccomp"))
    });
    let lines: Vec<String> = cri::log_lines(&log).into_iter().map(|(_, t)| t).collect();
    for expected in [
        "sidecar uid=1000 gid=1000",
        "rootfs read-only",
        "CapEff: 0000000000000000",
        "NoNewPrivs: 1",
        "Seccomp: 2",
    ] {
        assert!(lines.iter().any(|l| l == expected), "{expected}: {lines:?}");
    }
    let (code, stdout, stderr) = cri.exec_sync(&side, &["/usr/bin/id", "-u"], 10).unwrap();
    assert_eq!((code, stdout.as_str()), (0, "1000\n"), "{stderr}");

    // The Wasm processes are confined the same way, and still work.
    for id in [&app, &web] {
        let pids = cri::pod_processes(&pod, id);
        assert!(!pids.is_empty(), "no processes found for {id}");
        for pid in pids {
            // Every thread: capabilities, no_new_privs and seccomp are per thread, and a
            // thread started before they were applied would keep the shim's.
            let threads: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
                .map(|d| {
                    d.filter_map(Result::ok)
                        .map(|t| format!("{}/status", t.path().display()))
                        .collect()
                })
                .unwrap_or_default();
            assert!(!threads.is_empty(), "no threads of {pid}");
            for status in threads {
                let field = |key| status_field(&status, key);
                assert_eq!(field("Uid").split_whitespace().next(), Some("1000"));
                assert_eq!(field("CapEff"), "0000000000000000", "{status}");
                assert_eq!(field("CapPrm"), "0000000000000000", "{status}");
                assert_eq!(field("NoNewPrivs"), "1", "{status}");
                assert_eq!(field("Seccomp"), "2", "{status}");
            }
        }
    }
    let (code, stdout, _) = cri
        .exec_sync(&app, &["/probe.wasm", "args", "probe"], 10)
        .unwrap();
    assert_eq!(
        (code, stdout.as_str()),
        (0, "arg[0]=/probe.wasm\narg[1]=args\narg[2]=probe\n")
    );
    let (code, _, stderr) = cri
        .exec_sync(&app, &["/probe.wasm", "write", "/written", "x"], 10)
        .unwrap();
    assert_ne!(code, 0, "wrote to a read-only rootfs: {stderr}");
    let netns = cri.pod_netns(&pod).expect("pod netns path");
    let reply = get_in_pod(&netns, 8080, "/hello", Duration::from_secs(60));
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, "hello from a C component\n")
    );
    teardown(&mut cri, &pod, &[&app, &web, &side]);
}

/// (o) Things killed mid-way, as on a real node: a Wasm guest SIGKILLed from outside (137,
/// the pod lives on), then the pod's shim SIGKILLed under a running native sidecar and the
/// pause container. containerd's cleanup through the shim's `delete` command ends them all;
/// the pod is removed as kubelet would, nothing is left (processes, mounts, shims, pod
/// cgroups), and the next pod runs.
#[test]
fn o_a_killed_guest_and_a_killed_shim_leak_nothing() {
    let mut cri = setup();
    let address = ctr::address();
    let before = leak_baseline();

    let pod = cri.run_pod("wasmpod", &PodSpec::default()).unwrap();
    let app = run(&mut cri, &pod, &probe("app", &["sleep", "300"]));
    let other = run(&mut cri, &pod, &probe("other", &["sleep", "300"]));
    let web = run(&mut cri, &pod, &httpd("web", 8080));
    for id in [&app, &other, &web] {
        wait_running(&mut cri, id);
    }

    // A guest killed from outside: its container exits 137, the rest of the pod runs on.
    for pid in cri::pod_processes(&pod, &app) {
        // SAFETY: kill(2) has no memory effects.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let status = cri.wait_exited(&app, Duration::from_secs(20));
    assert_eq!(status.exit_code, 137, "{status:?}");
    let (code, _, _) = cri
        .exec_sync(&other, &["/probe.wasm", "args"], 10)
        .expect("the pod serves on after one guest was killed");
    assert_eq!(code, 0);

    // The shim killed under running containers.
    let shim = leaks::shim_pid(&address, &pod.id).expect("the pod's shim");
    // SAFETY: kill(2) has no memory effects.
    assert_eq!(unsafe { libc::kill(shim, libc::SIGKILL) }, 0);
    for id in [&other, &web] {
        let status = cri.wait_exited(id, Duration::from_secs(30));
        assert_ne!(status.exit_code, 0, "{id}: {status:?}");
    }
    wait_until(Duration::from_secs(15), || {
        cri::pod_processes(&pod, "").is_empty()
    });
    assert_eq!(
        cri::pod_processes(&pod, ""),
        Vec::<i32>::new(),
        "processes outlived their shim"
    );
    teardown(&mut cri, &pod, &[&app, &other, &web]);
    wait_until(Duration::from_secs(15), || leak_counts() == before);
    assert_eq!(
        leak_counts(),
        before,
        "(mounts, shims, pod cgroups) before vs after"
    );

    // The node is fine: the next pod runs.
    let next = cri.run_pod("wasmpod", &PodSpec::default()).unwrap();
    let id = run(&mut cri, &next, &probe("app", &["exit", "5"]));
    assert_eq!(cri.wait_exited(&id, Duration::from_secs(20)).exit_code, 5);
    teardown(&mut cri, &next, &[&id]);
}

const SPIN_PY: &str = "docker.io/wasmpod/spin-py:cri";

/// (p) A Spin app in a pod with the `spin` handler, as a `runtimeClassName: wasmtime-spin`
/// pod runs it: `command: ["/"]`, the default listen address `0.0.0.0:80` in the pod's
/// network namespace, `/.well-known/spin/health` as a readiness probe would ask it, a
/// key-value counter, and outbound HTTP to a native busybox sidecar of the same pod (allowed
/// by `allowed_outbound_hosts` through a variable from the pod's env). The app's log lines
/// reach the container's CRI log.
#[test]
fn p_a_spin_app_in_a_pod_with_a_native_sidecar() {
    let mut cri = setup();
    static IMPORT: Once = Once::new();
    IMPORT.call_once(|| {
        cri::import_k8s(
            &fixtures::spin_py_image(SPIN_PY, fixtures::SPIN_PY_MANIFEST),
            SPIN_PY,
        )
    });
    let pod = cri.run_pod("spin", &PodSpec::default()).unwrap();
    let web = run(&mut cri, &pod, &httpd("web", 8082));
    let app = run(
        &mut cri,
        &pod,
        &ContainerSpec {
            name: "spin".into(),
            image: SPIN_PY.into(),
            command: vec!["/".into()],
            env: vec![
                ("SPIN_VARIABLE_TOKEN".into(), "from-the-pod".into()),
                ("SPIN_VARIABLE_PORT".into(), "8082".into()),
            ],
            ..Default::default()
        },
    );
    wait_running(&mut cri, &web);
    wait_running(&mut cri, &app);
    let netns = cri.pod_netns(&pod).expect("pod netns path");
    let get = |path: &'static str| get_in_pod(&netns, 80, path, Duration::from_secs(120));
    let health = get("/.well-known/spin/health");
    assert_eq!((health.status, health.body.as_str()), (200, "OK"));
    assert_eq!(get("/").body, "hello from a Spin Python app\n");
    assert_eq!(get("/count").body, "count=1\n");
    assert_eq!(get("/count").body, "count=2\n");
    assert_eq!(get("/var/token").body, "token=from-the-pod\n");
    let sidecar = get("/fetch?http://127.0.0.1:8082/index.html");
    assert_eq!(
        (sidecar.status, sidecar.body.as_str()),
        (200, "fetched 200: hello from the sidecar\n")
    );
    assert_eq!(get("/trap").status, 500);
    // The guest's traceback is in the container's log.
    let log = pod.log_dir.join("spin.log");
    wait_until(Duration::from_secs(10), || {
        cri::log_lines(&log)
            .iter()
            .any(|(_, line)| line.contains("asked to fail"))
    });
    assert!(
        cri::log_lines(&log)
            .iter()
            .any(|(stream, line)| stream == "stderr" && line.contains("asked to fail")),
        "{:?}",
        cri::log_lines(&log)
    );
    // Stopped as kubelet stops it: SIGTERM, drained, 143.
    cri.stop_container(&app, 10).expect("stop the Spin app");
    let status = cri.wait_exited(&app, Duration::from_secs(20));
    assert_eq!(status.exit_code, 143, "{status:?}");
    teardown(&mut cri, &pod, &[&app, &web]);
}

/// (q) A lone Wasm package (a CNCF Wasm artifact, as `wkg oci push` writes one) under the
/// `spin` handler is a one-component Spin app on route `/...`, as the Spin shim runs it:
/// served on port 80 with the `spin-*` routing (a 404 under `/.well-known/spin/`), while the
/// same artifact under another handler stays a plain `wasi:http` component on 8080.
#[test]
fn q_a_wasm_package_under_the_spin_handler_is_a_spin_app() {
    if !ctr::imports_wasm_layers() {
        return;
    }
    let mut cri = setup();
    const PACKAGE: &str = "docker.io/wasmpod/c-proxy-package:cri";
    cri::import_k8s(
        &ImageBuilder::new(PACKAGE)
            .shape(ImageShape::WasmArtifact)
            .wasm_layer(fixtures::c_proxy_component()),
        PACKAGE,
    );
    let pod = cri.run_pod("spin", &PodSpec::default()).unwrap();
    let app = run(
        &mut cri,
        &pod,
        &ContainerSpec {
            name: "package".into(),
            image: PACKAGE.into(),
            command: vec!["/".into()],
            ..Default::default()
        },
    );
    wait_running(&mut cri, &app);
    let netns = cri.pod_netns(&pod).expect("pod netns path");
    let replies = http::in_netns(&netns, move || {
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], 80).into();
        let deadline = Instant::now() + Duration::from_secs(120);
        let health = loop {
            match http::get(addr, "/.well-known/spin/health") {
                Ok(reply) => break reply,
                Err(e) if Instant::now() > deadline => panic!("GET {addr}: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        };
        (
            health,
            http::get(addr, "/hello"),
            http::get(addr, "/.well-known/spin/x"),
        )
    });
    assert_eq!((replies.0.status, replies.0.body.as_str()), (200, "OK"));
    let hello = replies.1.expect("GET /hello");
    assert_eq!(
        (hello.status, hello.body.as_str()),
        (200, "hello from a C component\n")
    );
    assert_eq!(replies.2.expect("GET reserved").status, 404);
    teardown(&mut cri, &pod, &[&app]);
}

/// `GET path` on `127.0.0.1:port` inside the pod network namespace `netns`, retried until the
/// server answers (or `timeout` passes).
fn get_in_pod(netns: &str, port: u16, path: &'static str, timeout: Duration) -> http::Reply {
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    http::in_netns(netns, move || {
        let deadline = Instant::now() + timeout;
        loop {
            match http::get(addr, path) {
                Ok(reply) => return reply,
                Err(e) if Instant::now() > deadline => panic!("GET {addr}{path}: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    })
}

/// (r) A Spin app that cannot start (a required variable nobody sets) fails StartContainer
/// with its reason, which kubelet puts in the container's status, and the pod serves on.
#[test]
fn r_a_bad_spin_app_fails_start_with_its_reason() {
    let mut cri = setup();
    static IMPORT: Once = Once::new();
    IMPORT.call_once(|| {
        cri::import_k8s(
            &fixtures::spin_py_image(SPIN_PY, fixtures::SPIN_PY_MANIFEST),
            SPIN_PY,
        )
    });
    let pod = cri.run_pod("spin", &PodSpec::default()).unwrap();
    let spec = ContainerSpec {
        name: "spin".into(),
        image: SPIN_PY.into(),
        command: vec!["/".into()],
        ..Default::default()
    };
    let id = cri.create_container(&pod, &spec).expect("create container");
    let err = cri
        .start_container(&id)
        .expect_err("a required variable is missing");
    assert!(
        err.message().contains("token") && err.message().contains("SPIN_VARIABLE_TOKEN"),
        "{err:?}"
    );
    // The same pod runs the app once the variable is set.
    let ok = run(
        &mut cri,
        &pod,
        &ContainerSpec {
            name: "spin-ok".into(),
            env: vec![("SPIN_VARIABLE_TOKEN".into(), "t".into())],
            ..spec
        },
    );
    wait_running(&mut cri, &ok);
    let netns = cri.pod_netns(&pod).expect("pod netns path");
    let reply = get_in_pod(
        &netns,
        80,
        "/.well-known/spin/health",
        Duration::from_secs(120),
    );
    assert_eq!(reply.status, 200);
    teardown(&mut cri, &pod, &[&id, &ok]);
}
