//! End-to-end tests through dockerd 26 (the containerd image store on the tests' private
//! containerd 1.7): `docker load` of images written by `wasmpod image build`, `docker run`
//! through the three runtime names, a detached HTTP component with `exec`, `stop` and `kill`,
//! compose mixing a Wasm service with a native one, and the one shape Docker cannot run.
//! They skip with a message when no dockerd was started (the containerd 1.6 suite).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wasmpod_e2e::ctr::{self, unique_id, Ran, RUNTIMES};
use wasmpod_e2e::docker::{self, compose, run_docker, run_wasm_command};
use wasmpod_e2e::fixtures::{self, wat};
use wasmpod_e2e::{http, leaks};
use wasmpod_oci::image::{ImageBuilder, ImageShape};

fn assert_ok(ran: &Ran) {
    assert_eq!(ran.code, 0, "{ran:?}");
}

/// `docker run --rm` of `image` with wasmpod under `runtime`, `options` before the image and
/// `args` after it.
fn run_wasm(runtime: &str, options: &[&str], image: &str, args: &[&str]) -> Ran {
    let mut rm = vec!["--rm"];
    rm.extend_from_slice(options);
    run_wasm_command(runtime, &rm, image, args)
        .stdin(Stdio::null())
        .output()
        .expect("run docker")
        .into()
}

/// Live wasmpod shims of the containerd under test (dockerd's included).
fn shims() -> usize {
    leaks::shim_processes(&ctr::address())
}

/// Waits for shims that are exiting after their last task, then counts them.
fn settled_shims() -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    while shims() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    shims()
}

/// Container cgroups Docker made (cgroupfs driver: `/docker/<id>`).
fn docker_cgroups() -> usize {
    leaks::cgroup_dirs("memory", "docker") + leaks::cgroup_dirs("pids", "docker")
}

/// Writes `image` to a tarball in `dir` and loads it with `docker load`.
fn load(image: &ImageBuilder, dir: &Path, file: &str) -> String {
    let tar = dir.join(file);
    image.write_tar(&tar).expect("write image tar");
    docker::load(&tar)
}

/// Polls `GET path` on `addr` until it answers (a first start compiles the Wasm: a large
/// component takes a while in a debug build).
fn wait_for_http(addr: SocketAddr, path: &str) -> http::Reply {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match http::get(addr, path) {
            Ok(reply) => return reply,
            Err(e) if Instant::now() > deadline => panic!("{addr} never answered: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// An image written by the `wasmpod image build` command, named the short way people type
/// (`e2e/probe:docker`, which must become `docker.io/e2e/probe:docker` for `docker load`),
/// runs through all three runtime names: arguments, environment from the image and from
/// `-e`, a file of the image, stdin, a write to a bind mount, exit codes and a trap.
#[test]
fn docker_loads_and_runs_a_built_image_through_all_three_runtime_names() {
    if docker::available().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let wasm = dir.path().join("probe.wasm");
    std::fs::write(&wasm, fixtures::probe()).unwrap();
    let data = dir.path().join("greeting.txt");
    std::fs::write(&data, "built by wasmpod\n").unwrap();
    let tar = dir.path().join("probe.tar");
    let out = Command::new(ctr::wasmpod_tool())
        .args(["image", "build", "-o", tar.to_str().unwrap()])
        .args(["-t", "e2e/probe:docker", "--path", "/bin/probe.wasm"])
        .args(["--file", &format!("{}:/etc/greeting.txt", data.display())])
        .args(["--env", "FROM_BUILD=1"])
        .arg(&wasm)
        .output()
        .expect("run wasmpod image build");
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("docker.io/e2e/probe:docker"));
    assert!(docker::load(&tar).contains("e2e/probe:docker"));
    let image = "e2e/probe:docker";

    for runtime in RUNTIMES {
        let ran = run_wasm(runtime, &[], image, &["args", "one", "two words"]);
        assert_ok(&ran);
        assert_eq!(
            ran.stdout, "arg[0]=/bin/probe.wasm\narg[1]=args\narg[2]=one\narg[3]=two words\n",
            "{runtime}"
        );
    }
    let ran = run_wasm(RUNTIMES[1], &[], image, &["cat", "/etc/greeting.txt"]);
    assert_eq!((ran.code, ran.stdout.as_str()), (0, "built by wasmpod\n"));
    let ran = run_wasm(RUNTIMES[1], &[], image, &["env", "FROM_BUILD"]);
    assert_eq!(ran.stdout, "FROM_BUILD=1\n");
    let ran = run_wasm(RUNTIMES[1], &["-e", "FOO=bar"], image, &["env", "FOO"]);
    assert_eq!(ran.stdout, "FOO=bar\n");
    let ran = run_wasm(RUNTIMES[1], &[], image, &["exit", "42"]);
    assert_eq!(ran.code, 42, "{ran:?}");

    let mount = format!("{}:/mnt", dir.path().display());
    let ran = run_wasm(
        RUNTIMES[2],
        &["-v", &mount],
        image,
        &["write", "/mnt/out.txt", "hi"],
    );
    assert_ok(&ran);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out.txt")).unwrap(),
        "hi"
    );

    let mut child = run_wasm_command(RUNTIMES[0], &["--rm", "-i"], image, &["stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"through docker -i\n").unwrap();
    drop(child.stdin.take());
    let ran: Ran = child.wait_with_output().unwrap().into();
    assert_ok(&ran);
    assert!(ran.stdout.contains("through docker -i"), "{ran:?}");

    let trap = ImageBuilder::new("e2e/trap:docker")
        .entrypoint(["/trap.wasm"])
        .file("/trap.wasm", wat(fixtures::TRAP_WAT), 0o755);
    load(&trap, dir.path(), "trap.tar");
    let ran = run_wasm(RUNTIMES[0], &[], "e2e/trap:docker", &[]);
    assert_eq!(ran.code, 134, "{ran:?}");
    assert!(
        ran.stderr.contains("wasmpod: the Wasm guest trapped"),
        "{ran:?}"
    );
    assert_eq!(settled_shims(), 0, "a shim outlived its docker run --rm");
}

/// A `wasi:http` component run detached: it answers on its container's address, `docker
/// exec` runs another Wasm file in it, `docker top`/`stats`/`logs` see it, `docker stop` lets
/// a slow request finish and ends it with 143, and after `docker start` a `docker kill` ends
/// it with 137. Nothing is left once it is removed.
#[test]
fn a_detached_http_component_serves_execs_and_stops_under_docker() {
    if docker::available().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cgroups_before = docker_cgroups();
    let image = ImageBuilder::new("e2e/c-proxy:docker")
        .entrypoint(["/proxy.wasm"])
        .file("/proxy.wasm", fixtures::c_proxy_component(), 0o755)
        .file("/bin/probe.wasm", fixtures::probe(), 0o755);
    load(&image, dir.path(), "c-proxy.tar");
    let name = unique_id("web");
    let detached = run_wasm_command(
        RUNTIMES[1],
        &["-d", "--name", &name],
        "e2e/c-proxy:docker",
        &[],
    )
    .stdin(Stdio::null())
    .output()
    .expect("run docker");
    assert_ok(&detached.into());

    let ip = docker::ip_of(&name);
    let addr: SocketAddr = format!("{ip}:8080").parse().expect("container address");
    let reply = wait_for_http(addr, "/hello");
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, "hello from a C component\n")
    );
    assert_eq!(http::get(addr, "/trap").unwrap().status, 500);
    assert_eq!(http::get(addr, "/hello").unwrap().status, 200);

    let ran = run_docker(&["exec", &name, "/bin/probe.wasm", "args", "exec'd"]);
    assert_eq!(
        (ran.code, ran.stdout.as_str()),
        (0, "arg[0]=/bin/probe.wasm\narg[1]=args\narg[2]=exec'd\n"),
        "{ran:?}"
    );
    let ran = run_docker(&["top", &name]);
    assert_ok(&ran);
    assert!(ran.stdout.lines().count() >= 2, "{ran:?}");
    let ran = run_docker(&["stats", "--no-stream", "--format", "{{.MemUsage}}", &name]);
    assert_ok(&ran);
    assert!(!ran.stdout.starts_with("0B"), "{ran:?}");
    let logs = run_docker(&["logs", &name]);
    assert!(
        logs.stderr.contains("wasmpod: the HTTP handler failed"),
        "{logs:?}"
    );

    let slow = std::thread::spawn(move || http::get(addr, "/slow?2000"));
    std::thread::sleep(Duration::from_millis(300));
    let stop = run_docker(&["stop", "-t", "20", &name]);
    assert_ok(&stop);
    let reply = slow.join().unwrap().expect("the slow request completes");
    assert_eq!((reply.status, reply.body.as_str()), (200, "slow done\n"));
    let code = run_docker(&["inspect", "-f", "{{.State.ExitCode}}", &name]);
    assert_eq!(code.stdout.trim(), "143", "{code:?}");

    assert_ok(&run_docker(&["start", &name]));
    let addr: SocketAddr = format!("{}:8080", docker::ip_of(&name)).parse().unwrap();
    assert_eq!(wait_for_http(addr, "/hello").status, 200);
    assert_ok(&run_docker(&["kill", &name]));
    let code = run_docker(&["wait", &name]);
    assert_eq!(code.stdout.trim(), "137", "{code:?}");
    assert_ok(&run_docker(&["rm", &name]));
    assert_eq!(settled_shims(), 0, "a shim outlived its container");
    assert_eq!(docker_cgroups(), cgroups_before, "cgroups left behind");
}

/// compose v2 with a Wasm service (`runtime:` + `platform: wasi/wasm`) next to a native
/// busybox service that reaches it by its service name on the project network.
#[test]
fn compose_runs_a_wasm_service_next_to_a_native_one() {
    if docker::available().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let web = ImageBuilder::new("e2e/compose-web:docker")
        .entrypoint(["/proxy.wasm"])
        .file("/proxy.wasm", fixtures::c_proxy_component(), 0o755);
    load(&web, dir.path(), "web.tar");
    load_busybox_client(dir.path());
    let file = dir.path().join("compose.yaml");
    std::fs::write(
        &file,
        r#"name: wasmpod-e2e
services:
  web:
    image: e2e/compose-web:docker
    runtime: io.containerd.wasmtime.v1
    platform: wasi/wasm
    pull_policy: never
  client:
    image: e2e/busybox:docker
    platform: linux/amd64
    pull_policy: never
    depends_on: [web]
    command: ["wget", "-q", "-O-", "http://web:8080/hello"]
"#,
    )
    .unwrap();
    compose_round_trip(
        &file,
        "web",
        "wasmpod-e2e-web-1",
        "hello from a C component\n",
    );
}

/// A Wasm-layer image under Docker. dockerd 26 gives containerd no image for its containers,
/// so the layer cannot be found there: `docker run` says so and how to build an image that
/// works, and nothing leaks. dockerd 28 names the image in the container record, so the
/// shim finds the layer in the content store and the module runs.
#[test]
fn a_wasm_layer_image_under_docker_runs_or_fails_with_a_clear_message() {
    if docker::available().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let image = ImageBuilder::new("e2e/probe-layer:docker")
        .shape(ImageShape::WasmLayer)
        .entrypoint(["/app.wasm"])
        .wasm_layer(fixtures::probe());
    load(&image, dir.path(), "layer.tar");
    let mounts_before = leaks::mounts_containing("/rootfs");
    let ran = run_wasm(RUNTIMES[0], &[], "e2e/probe-layer:docker", &["args"]);
    if docker::server_major() >= 28 {
        assert_eq!(ran.code, 0, "{ran:?}");
        assert_eq!(ran.stdout, "arg[0]=/app.wasm\narg[1]=args\n", "{ran:?}");
    } else {
        assert_eq!(ran.code, 125, "{ran:?}");
        assert!(
            ran.stderr.contains("not found in the container's rootfs")
                && ran.stderr.contains("names no image")
                && ran.stderr.contains("--shape rootfs"),
            "{ran:?}"
        );
    }
    assert_eq!(settled_shims(), 0, "the container's shim is still running");
    assert_eq!(leaks::mounts_containing("/rootfs"), mounts_before);
    // The shim that refused it did not stop Docker from running the next one.
    let ok = ImageBuilder::new("e2e/hello:docker")
        .entrypoint(["/hello.wasm"])
        .file("/hello.wasm", wat(fixtures::HELLO_WAT), 0o755);
    load(&ok, dir.path(), "hello.tar");
    let ran = run_wasm(RUNTIMES[0], &[], "e2e/hello:docker", &[]);
    assert_eq!((ran.code, ran.stdout.as_str()), (0, "hello from wasmpod\n"));
}

/// The Spin shim's Docker example: `docker run --runtime=io.containerd.spin.v2
/// --platform=wasi/wasm -p HOST:80 IMAGE /` of a Spin app image (`/spin.toml` in the
/// image): it answers on the published port, counts in its key-value store, and `docker
/// stop` ends it with 143.
#[test]
fn docker_runs_a_spin_app_with_a_published_port() {
    if docker::available().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let image = fixtures::spin_py_image("e2e/spin-py:docker", fixtures::SPIN_PY_MANIFEST);
    load(&image, dir.path(), "spin-py.tar");
    let name = unique_id("spin");
    let port = ctr::free_port();
    let publish = format!("127.0.0.1:{port}:80");
    let ran = docker::docker()
        .args([
            "run",
            "-d",
            "--name",
            &name,
            "--runtime=io.containerd.spin.v2",
        ])
        .args(["--platform=wasi/wasm", "-p", &publish])
        .args([
            "-e",
            "SPIN_VARIABLE_TOKEN=from-docker",
            "e2e/spin-py:docker",
            "/",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run docker");
    assert_ok(&ran.into());
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let reply = wait_for_http(addr, "/.well-known/spin/health");
    assert_eq!((reply.status, reply.body.as_str()), (200, "OK"));
    assert_eq!(http::get(addr, "/count").unwrap().body, "count=1\n");
    assert_eq!(http::get(addr, "/count").unwrap().body, "count=2\n");
    assert_eq!(
        http::get(addr, "/var/token").unwrap().body,
        "token=from-docker\n"
    );
    assert_ok(&run_docker(&["stop", "-t", "20", &name]));
    let code = run_docker(&["inspect", "-f", "{{.State.ExitCode}}", &name]);
    assert_eq!(code.stdout.trim(), "143", "{code:?}");
    assert_ok(&run_docker(&["rm", &name]));
    assert_eq!(settled_shims(), 0, "a shim outlived its container");
}

/// compose with a Spin service (`runtime: io.containerd.spin.v2`, `platform: wasi/wasm`,
/// `command: ["/"]`) reached by its service name from a native busybox service.
#[test]
fn compose_runs_a_spin_service_next_to_a_native_one() {
    if docker::available().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let image = fixtures::spin_py_image("e2e/spin-py:docker", fixtures::SPIN_PY_MANIFEST);
    load(&image, dir.path(), "spin-py.tar");
    load_busybox_client(dir.path());
    let file = dir.path().join("compose.yaml");
    std::fs::write(
        &file,
        r#"name: wasmpod-e2e-spin
services:
  app:
    image: e2e/spin-py:docker
    runtime: io.containerd.spin.v2
    platform: wasi/wasm
    pull_policy: never
    command: ["/"]
    environment:
      SPIN_VARIABLE_TOKEN: from-compose
  client:
    image: e2e/busybox:docker
    platform: linux/amd64
    pull_policy: never
    depends_on: [app]
    command: ["wget", "-q", "-O-", "http://app/var/token"]
"#,
    )
    .unwrap();
    compose_round_trip(
        &file,
        "app",
        "wasmpod-e2e-spin-app-1",
        "token=from-compose\n",
    );
}

/// The seed scenario of every Spin tutorial, in one compose project: a Spin app (`web`) next
/// to `postgres` and `redis` services (native images made from Debian's binaries by
/// wasmpod's image builder) and a second Spin app (`listener`) with a Redis trigger. Each
/// request to `web` writes a row, reads it back and publishes on a channel, reaching the
/// services by their names on the project network; `listener` receives every message. A
/// stop ends both Spin apps with 143 and `down` leaves no shim behind.
#[test]
fn compose_runs_the_spin_seed_scenario_with_postgres_and_redis_services() {
    if docker::available().is_none() {
        return;
    }
    let Some(cluster) = wasmpod_e2e::postgres::Cluster::init() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let web = r#"spin_manifest_version = 2
[application]
name = "seed-web"
[variables]
pg_address = { default = "postgres://postgres@postgres:5432/postgres" }
redis_address = { default = "redis://redis:6379" }
[[trigger.http]]
route = "/..."
component = "web"
[component.web]
source = "app.wasm"
allowed_outbound_hosts = ["postgres://postgres:5432", "redis://redis:6379"]
variables = { pg_address = "{{ pg_address }}", redis_address = "{{ redis_address }}" }
"#;
    let listener = r#"spin_manifest_version = 2
[application]
name = "seed-listener"
[application.trigger.redis]
address = "redis://redis:6379"
[[trigger.redis]]
channel = "visits"
component = "listener"
[component.listener]
source = "app.wasm"
allowed_outbound_hosts = ["redis://redis:6379"]
variables = { redis_address = "redis://redis:6379" }
"#;
    load(
        &fixtures::spin_py_image("e2e/spin-seed-web:docker", web),
        dir.path(),
        "web.tar",
    );
    load(
        &fixtures::spin_py_image("e2e/spin-seed-listener:docker", listener),
        dir.path(),
        "listener.tar",
    );
    load(
        &wasmpod_e2e::native_images::redis("e2e/redis:docker"),
        dir.path(),
        "redis.tar",
    );
    load(
        &wasmpod_e2e::native_images::postgres(
            "e2e/postgres:docker",
            &cluster.bin,
            cluster.uid,
            cluster.gid,
        ),
        dir.path(),
        "postgres.tar",
    );
    load_busybox_client(dir.path());
    let file = dir.path().join("compose.yaml");
    std::fs::write(
        &file,
        format!(
            r#"name: wasmpod-e2e-seed
services:
  postgres:
    image: e2e/postgres:docker
    platform: linux/amd64
    pull_policy: never
    user: "{uid}:{gid}"
    volumes: ["{data}:/data"]
  redis:
    image: e2e/redis:docker
    platform: linux/amd64
    pull_policy: never
  web:
    image: e2e/spin-seed-web:docker
    runtime: io.containerd.spin.v2
    platform: wasi/wasm
    pull_policy: never
    command: ["/"]
    depends_on: [postgres, redis]
  listener:
    image: e2e/spin-seed-listener:docker
    runtime: io.containerd.spin.v2
    platform: wasi/wasm
    pull_policy: never
    command: ["/"]
    depends_on: [redis]
  client:
    image: e2e/busybox:docker
    platform: linux/amd64
    pull_policy: never
    command: ["wget", "-q", "-O-", "http://web/visit?alice"]
"#,
            uid = cluster.uid,
            gid = cluster.gid,
            data = cluster.data.display(),
        ),
    )
    .unwrap();
    let redis_cli = |args: &[&str]| -> String {
        let mut all = vec!["exec", "wasmpod-e2e-seed-redis-1", "/usr/bin/redis-cli"];
        all.extend_from_slice(args);
        run_docker(&all).stdout.trim().to_string()
    };
    let wait_for = |what: &str, args: &[&str], want: &str| {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let got = redis_cli(args);
            if got == want {
                return;
            }
            if Instant::now() > deadline {
                let logs = compose(&file, &["logs", "--no-color"]);
                panic!("{what}: redis-cli {args:?} says {got:?}, not {want:?}; {logs:?}");
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    };
    /// Takes the project down however the test ends, so that a failure leaves no service
    /// running for the next test.
    struct Down<'a>(&'a Path);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            let _ = compose(self.0, &["down", "--timeout", "5"]);
        }
    }
    let _down = Down(&file);
    assert_ok(&compose(
        &file,
        &["up", "-d", "postgres", "redis", "web", "listener"],
    ));
    wait_for(
        "the listener subscribes",
        &["PUBSUB", "NUMSUB", "visits"],
        "visits\n1",
    );
    // The web app may still be compiling, postgres still starting: retry, as a probe would.
    let visit = || {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let ran = compose(&file, &["run", "--rm", "client"]);
            if ran.code == 0 || Instant::now() > deadline {
                return ran;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    };
    let first = visit();
    assert_eq!(
        (first.code, first.stdout.as_str()),
        (0, "alice visit 1\n"),
        "{first:?} {:?}",
        compose(&file, &["logs", "--no-color"])
    );
    wait_for(
        "the listener gets the first visit",
        &["GET", "last-message"],
        "alice visit 1",
    );
    let second = visit();
    assert_eq!(
        (second.code, second.stdout.as_str()),
        (0, "alice visit 2\n")
    );
    wait_for(
        "the listener gets the second visit",
        &["GET", "last-message"],
        "alice visit 2",
    );
    assert_eq!(redis_cli(&["GET", "received"]), "2");
    assert_ok(&compose(&file, &["stop"]));
    for app in ["web", "listener"] {
        let container = format!("wasmpod-e2e-seed-{app}-1");
        let code = run_docker(&["inspect", "-f", "{{.State.ExitCode}}", &container]);
        assert_eq!(code.stdout.trim(), "143", "{app}: {code:?}");
    }
    assert_ok(&compose(&file, &["down"]));
    assert_eq!(settled_shims(), 0, "a shim outlived compose down");
}

/// Loads the host's static busybox as `e2e/busybox:docker` (linux/amd64), the native client
/// of the compose tests.
fn load_busybox_client(dir: &Path) {
    let busybox = std::fs::read("/bin/busybox").expect("busybox-static (make setup)");
    let client = ImageBuilder::new("e2e/busybox:docker")
        .platform("linux", "amd64")
        .entrypoint(["/bin/busybox"])
        .file("/bin/busybox", busybox, 0o755);
    load(&client, dir, "busybox.tar");
}

/// Brings up `service` of the compose project in `file`, runs its `client` service until it
/// succeeds (the Wasm service may take a moment to listen; a probe would retry too) and
/// checks what it printed, then stops the project (the Wasm service's container, named
/// `container`, exits 143) and takes it down, leaving no shim behind.
fn compose_round_trip(file: &Path, service: &str, container: &str, expected: &str) {
    assert_ok(&compose(file, &["up", "-d", service]));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut ran = compose(file, &["run", "--rm", "client"]);
    while ran.code != 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
        ran = compose(file, &["run", "--rm", "client"]);
    }
    assert_eq!((ran.code, ran.stdout.as_str()), (0, expected), "{ran:?}");
    assert_ok(&compose(file, &["stop"]));
    let code = run_docker(&["inspect", "-f", "{{.State.ExitCode}}", container]);
    assert_eq!(code.stdout.trim(), "143", "{code:?}");
    assert_ok(&compose(file, &["down"]));
    assert_eq!(settled_shims(), 0, "a shim outlived compose down");
}
