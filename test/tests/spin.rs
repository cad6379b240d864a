//! End-to-end tests of Spin apps through a real containerd and `ctr`, with the runtime name
//! the Spin shim answers to (`io.containerd.spin.v2`): apps built from our sources with the
//! Python Spin SDK (a component importing the whole Spin platform) and a C core module (which
//! the shim componentizes), in images holding `/spin.toml` (`FROM scratch` + `COPY` shape).
//! Run them with `make e2e`; they run one at a time.

use std::net::SocketAddr;
use std::process::Child;
use std::time::{Duration, Instant};

use wasmpod_e2e::ctr::{self, finish, free_port, import, leak_counts, run_ctr, spawn, unique_id};
use wasmpod_e2e::{fixtures, http, otlp};

/// The runtime name of the Spin shim.
const SPIN: &str = "io.containerd.spin.v2";

const PY_MANIFEST: &str = fixtures::SPIN_PY_MANIFEST;

fn spin_image(name: &str, manifest: &str, files: &[(&str, Vec<u8>)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    import(
        &fixtures::spin_image(name, manifest, files),
        name,
        dir.path(),
    )
}

fn py_image(name: &str, manifest: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    import(&fixtures::spin_py_image(name, manifest), name, dir.path())
}

/// Runs `image` with `SPIN_HTTP_LISTEN_ADDR` on a free loopback port (plus `extra` flags)
/// and waits for its health endpoint.
fn serve(image: &str, id: &str, extra: &[&str]) -> (SocketAddr, Child) {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let listen = format!("SPIN_HTTP_LISTEN_ADDR={addr}");
    let mut flags = vec!["--net-host", "--env", &listen];
    flags.extend_from_slice(extra);
    let mut child = spawn(SPIN, id, &flags, image, &["/"]);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(reply) = http::get(addr, "/.well-known/spin/health") {
            assert_eq!((reply.status, reply.body.as_str()), (200, "OK"));
            return (addr, child);
        }
        if let Ok(Some(_)) = child.try_wait() {
            let (ran, _) = finish(child);
            panic!("{id} ended before serving: {ran:?}");
        }
        assert!(Instant::now() < deadline, "{id} never served on {addr}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sends SIGTERM and waits for the run to end with 143.
fn stop(id: &str, child: Child) -> ctr::Ran {
    assert_eq!(
        run_ctr(&["tasks", "kill", "--signal", "SIGTERM", id]).code,
        0
    );
    let (ran, _) = finish(child);
    assert_eq!(ran.code, 143, "{ran:?}");
    ran
}

/// An upstream HTTP server on a free loopback port that answers one request with
/// `upstream\n`; its port, and the thread to join once the request has been made (it gives
/// the request's head, lower-cased).
fn upstream_once() -> (u16, std::thread::JoinHandle<String>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let Ok((mut s, _)) = listener.accept() else {
            return String::new();
        };
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).unwrap_or(0);
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nupstream\n");
        String::from_utf8_lossy(&buf[..n]).to_lowercase()
    });
    (port, server)
}

/// The app at `addr` fetches (`/fetch?URL`) from the [`upstream_once`] server it is allowed
/// to reach, and is refused (a 502 from the app) the port it is not.
fn outbound_is_gated(
    addr: SocketAddr,
    (allowed_port, server): (u16, std::thread::JoinHandle<String>),
    denied_port: u16,
) {
    let fetched = get(addr, &format!("/fetch?http://127.0.0.1:{allowed_port}/"));
    assert_eq!(fetched, (200, "fetched 200: upstream\n".into()));
    server.join().unwrap();
    let denied = get(addr, &format!("/fetch?http://127.0.0.1:{denied_port}/"));
    assert_eq!(denied.0, 502, "{denied:?}");
}

/// The app's log names the port [`outbound_is_gated`] denied and why.
fn denial_is_logged(ran: &ctr::Ran, denied_port: u16) {
    assert!(
        ran.stderr.contains(&format!("127.0.0.1:{denied_port}"))
            && ran.stderr.contains("allowed_outbound_hosts"),
        "the denial is not in the log: {}",
        ran.stderr
    );
}

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let reply = http::get(addr, path).unwrap_or_else(|e| panic!("GET {path}: {e}"));
    (reply.status, reply.body)
}

/// One Python Spin app, through every part of the platform it touches: routing and the
/// runtime's own routes, the `spin-*` headers, key-value, variables from defaults, from
/// `SPIN_VARIABLE_*` and from a bare name, files, the guest's own environment, outbound
/// HTTP allowed and denied, and a graceful stop.
#[test]
fn a_python_spin_app_serves_routes_key_value_variables_and_outbound_http() {
    let image = py_image("docker.io/wasmpod/spin-py:e2e", PY_MANIFEST);
    let (allowed_port, server) = upstream_once();
    let denied_port = free_port();
    let id = unique_id("spin-py");
    let port_var = format!("SPIN_VARIABLE_PORT={allowed_port}");
    let (addr, child) = serve(
        &image,
        &id,
        &[
            "--env",
            "TOKEN=from-bare-name",
            "--env",
            &port_var,
            "--env",
            "CONTAINER_ONLY=hidden",
        ],
    );

    assert_eq!(
        get(addr, "/"),
        (200, "hello from a Spin Python app\n".into())
    );
    let info = get(addr, "/.well-known/spin/info");
    assert_eq!(info.0, 200);
    assert!(info.1.contains("\"name\":\"spin-py\""), "{info:?}");
    assert_eq!(get(addr, "/.well-known/spin/other"), (404, String::new()));
    assert_eq!(get(addr, "/static-route"), (201, "static body".into()));
    assert_eq!(get(addr, "/count").1, "count=1\n");
    assert_eq!(get(addr, "/count").1, "count=2\n");
    assert_eq!(get(addr, "/store/default").0, 200);
    assert_eq!(
        get(addr, "/store/other"),
        (403, "other: Error_AccessDenied\n".into())
    );
    assert_eq!(get(addr, "/var/greeting").1, "greeting=hi there\n");
    assert_eq!(get(addr, "/var/token").1, "token=from-bare-name\n");
    assert_eq!(get(addr, "/var/nope").0, 404);
    assert_eq!(get(addr, "/file").1, "a file in the image\n");
    // The guest's environment is the component's `environment`, nothing of the container's.
    assert_eq!(get(addr, "/env").1, "GUEST_ONLY=visible\n");
    outbound_is_gated(addr, (allowed_port, server), denied_port);
    // A failing handler is a 500; the app serves on.
    assert_eq!(get(addr, "/trap").0, 500);
    assert_eq!(get(addr, "/").0, 200);
    // SQLite 2.0 and 3.0 on the default database (in the container's /.spin); a label the
    // component does not list is access-denied.
    assert_eq!(
        get(addr, "/sqlite/default"),
        (
            200,
            "columns=['n', 'note', 'w', 'b', 'NULL'] \
             rows=[['Integer:1', 'Text:hit', 'Real:0.5', \"Blob:b'ab'\", 'Null:None']]\n"
                .into()
        )
    );
    assert!(get(addr, "/sqlite/default").1.contains("['Integer:2'"));
    assert_eq!(
        get(addr, "/sqlite/orders"),
        (403, "orders: Error_AccessDenied \n".into())
    );
    assert_eq!(get(addr, "/sqlite3"), (200, "rowid=2 changes=2\n".into()));
    assert_eq!(get(addr, "/sqlite3"), (200, "rowid=4 changes=2\n".into()));
    // No LLM runs here: Spin's model-not-supported, which the app handles.
    assert_eq!(
        get(addr, "/llm"),
        (501, "llm: Error_ModelNotSupported\n".into())
    );

    let ran = stop(&id, child);
    denial_is_logged(&ran, denied_port);
    assert!(
        ran.stderr
            .contains("model \"llama2-chat\": wasmpod runs no LLM models"),
        "{}",
        ran.stderr
    );
}

const P3_MANIFEST: &str = r#"
spin_manifest_version = 2

[application]
name = "spin-py-p3"

[variables]
greeting = { default = "hi" }
port = { default = "1" }
redis_port = { default = "6379" }

[[trigger.http]]
route = "/..."
component = "py"

[component.py]
source = "app.wasm"
key_value_stores = ["default"]
sqlite_databases = ["default"]
allowed_outbound_hosts = ["http://127.0.0.1:{{ port }}", "redis://127.0.0.1:{{ redis_port }}", "http://self"]
variables = { greeting = "{{ greeting }} from Spin 4" }
"#;

/// A Spin 4 app, built with the Python Spin SDK `sdk`: a WASIp3 handler (`async`) that
/// calls the async key-value, variables, SQLite 3.1 and Redis 3.0 interfaces, reads a request body, streams a large
/// response, sends an allowed and a denied outbound request, and fails one request without
/// stopping the app.
fn a_spin4_python_app_serves(sdk: fixtures::SpinPySdk, name: &str) {
    let image = spin_image(
        &format!("docker.io/wasmpod/{name}:e2e"),
        P3_MANIFEST,
        &[(
            "/app.wasm",
            fixtures::spin_py_p3_component(sdk, fixtures::SpinPyTrigger::Http),
        )],
    );
    let (allowed_port, server) = upstream_once();
    let denied_port = free_port();
    let id = unique_id(name);
    let port_var = format!("SPIN_VARIABLE_PORT={allowed_port}");
    let redis = wasmpod_e2e::redis::Redis::start();
    let redis_var = format!(
        "SPIN_VARIABLE_REDIS_PORT={}",
        redis.as_ref().map_or(6379, |r| r.port)
    );
    let (addr, child) = serve(&image, &id, &["--env", &port_var, "--env", &redis_var]);

    assert_eq!(
        get(addr, "/hello"),
        (200, "hello from a Spin 4 Python app: GET /hello\n".into())
    );
    assert_eq!(get(addr, "/count").1, "count=1 exists=True\n");
    assert_eq!(get(addr, "/count").1, "count=2 exists=True\n");
    assert_eq!(
        get(addr, "/store/other"),
        (403, "Error_AccessDenied\n".into())
    );
    assert_eq!(get(addr, "/var/greeting").1, "greeting=hi from Spin 4\n");
    // Redis 3.0's async functions, against a real redis-server (where Debian's is installed).
    if let Some(redis) = &redis {
        assert_eq!(
            get(addr, &format!("/redis?redis://127.0.0.1:{}", redis.port)),
            (200, "got=p3 value n=1 members=['a', 'b']\n".into())
        );
        assert_eq!(redis.cli(&["GET", "p3-counter"]), "1");
    }
    // SQLite 3.1's async functions, rows streamed.
    assert_eq!(
        get(addr, "/sqlite?first"),
        (
            200,
            "rowid=1 columns=['n', 'last'] row=['Value_Integer:1', 'Value_Text:first']\n".into()
        )
    );
    assert!(get(addr, "/sqlite?second").1.starts_with("rowid=2 "));
    assert_eq!(
        get(addr, "/var/nope"),
        (404, "nope: Error_Undefined\n".into())
    );
    assert_eq!(
        get(addr, "/headers"),
        (200, "path-info=/headers route=/...\n".into())
    );
    let echoed = http::request(addr, "POST", "/echo", b"a body").unwrap();
    assert_eq!(
        (echoed.status, echoed.body.as_str()),
        (200, "POST 6 a body\n")
    );
    let big = get(addr, "/big");
    assert_eq!((big.0, big.1.len()), (200, 1 << 20));
    assert!(big.1.bytes().all(|b| b == b'x'));
    outbound_is_gated(addr, (allowed_port, server), denied_port);
    // A self-request (WASIp3's client), by route.
    assert_eq!(
        get(addr, "/fetch?/headers"),
        (200, "fetched 200: path-info=/headers route=/...\n".into())
    );
    assert_eq!(get(addr, "/trap").0, 500);
    assert_eq!(get(addr, "/hello").0, 200);

    let ran = stop(&id, child);
    denial_is_logged(&ran, denied_port);
}

/// Python `spin-sdk` 5.0.0: `wasi:http/handler@0.3.0`.
#[test]
fn a_spin4_python_sdk5_app_serves_through_wasip3() {
    a_spin4_python_app_serves(fixtures::SpinPySdk::V5, "spin-py5");
}

/// Python `spin-sdk` 4.0.0: `wasi:http/handler@0.3.0-rc-2026-03-15`, served as `0.3.0`.
#[test]
fn a_spin4_python_sdk4_app_on_the_release_candidate_serves_through_wasip3() {
    a_spin4_python_app_serves(fixtures::SpinPySdk::V4, "spin-py4");
}

const P3_SERVICES_MANIFEST: &str = r#"
spin_manifest_version = 2

[application]
name = "spin-py5-services"

[application.trigger.redis]
address = "redis://127.0.0.1:{{ redis_port }}"

[variables]
redis_port = { default = "6379" }
pg_port = { default = "1" }
pg_tls_port = { default = "1" }
pg_ca_root = { default = "" }
mysql_port = { default = "1" }

[[trigger.http]]
route = "/..."
component = "py"

[[trigger.redis]]
channel = "p3-in"
component = "listener"

[component.py]
source = "app.wasm"
allowed_outbound_hosts = ["postgres://127.0.0.1:{{ pg_port }}", "postgres://127.0.0.1:{{ pg_tls_port }}", "mysql://127.0.0.1:{{ mysql_port }}", "mqtt://127.0.0.1:*"]
variables = { pg_ca_root = "{{ pg_ca_root }}" }

[component.listener]
source = "redis_app.wasm"
allowed_outbound_hosts = ["redis://127.0.0.1:{{ redis_port }}"]
variables = { redis_address = "redis://127.0.0.1:{{ redis_port }}" }
"#;

/// What the Spin 4 app's `/pg` says against a fresh server.
const PG_STEPS: &str = "inserted 2\n\
    note:Str day:Date\n\
    [[DbValue_Str(value='async'), DbValue_Date(value=(2026, 12, 2))], \
     [DbValue_Str(value='again'), DbValue_DbNull()]]\n\
    error ERROR 42703 column \"nope\" does not exist\n\
    builder [[DbValue_Int32(value=2)]]\n\
    ca root Error_BadParameter\n";

/// A Spin 4 app (Python `spin-sdk` 5.0.0) with the rest of Spin 4's async interfaces, each
/// against a real server: Postgres 4.2 (async functions, rows streamed, the connection
/// builder, TLS trusted through `set-ca-root`), MySQL 3.0 and MQTT 3.0; and a
/// Redis-triggered component exporting `spin:redis/inbound-redis@3.0.0`, which stores each
/// message through Redis 3.0 and goes on after a message it fails on.
#[test]
fn a_spin4_app_talks_to_postgres_mysql_and_mqtt_and_runs_a_redis_trigger() {
    use fixtures::{SpinPySdk, SpinPyTrigger};
    let Some(redis) = wasmpod_e2e::redis::Redis::start() else {
        return;
    };
    let image = spin_image(
        "docker.io/wasmpod/spin-py5-services:e2e",
        P3_SERVICES_MANIFEST,
        &[
            (
                "/app.wasm",
                fixtures::spin_py_p3_component(SpinPySdk::V5, SpinPyTrigger::Http),
            ),
            (
                "/redis_app.wasm",
                fixtures::spin_py_p3_component(SpinPySdk::V5, SpinPyTrigger::Redis),
            ),
        ],
    );
    let pg = wasmpod_e2e::postgres::Postgres::start();
    let ca = wasmpod_e2e::tls::TestCa::new();
    let pg_tls = wasmpod_e2e::postgres::Postgres::start_tls(&ca);
    let db = wasmpod_e2e::mysql::Mariadb::start();
    let broker = wasmpod_e2e::mqtt::Mosquitto::start();
    let id = unique_id("spin-py5-services");
    let vars = [
        format!("SPIN_VARIABLE_REDIS_PORT={}", redis.port),
        format!(
            "SPIN_VARIABLE_PG_PORT={}",
            pg.as_ref().map_or(1, |p| p.port)
        ),
        format!(
            "SPIN_VARIABLE_PG_TLS_PORT={}",
            pg_tls.as_ref().map_or(1, |p| p.port)
        ),
        format!("SPIN_VARIABLE_PG_CA_ROOT={}", ca.pem()),
        format!(
            "SPIN_VARIABLE_MYSQL_PORT={}",
            db.as_ref().map_or(1, |d| d.port)
        ),
    ];
    let env: Vec<&str> = vars.iter().flat_map(|v| ["--env", v.as_str()]).collect();
    let (addr, child) = serve(&image, &id, &env);
    let fail = |what: &str, got: &(u16, String), child| -> ! {
        let ran = stop(&id, child);
        panic!("{what}: {got:?}; the app's log: {}", ran.stderr)
    };

    if let Some(pg) = &pg {
        let got = get(addr, &format!("/pg?{}", pg.url()));
        if got != (200, PG_STEPS.to_string()) {
            fail("GET /pg", &got, child);
        }
        assert_eq!(
            pg.psql("SELECT string_agg(note, ',' ORDER BY id) FROM notes"),
            Ok("async,again".into())
        );
    }
    if let Some(pg) = &pg_tls {
        let got = get(addr, &format!("/pg-tls?{}?sslmode=require", pg.url()));
        let expected = "unknown CA Error_ConnectionFailed: True\n\
            async build [[DbValue_Boolean(value=True)]]\n\
            build [[DbValue_Boolean(value=True)]]\n";
        if got != (200, expected.to_string()) {
            fail("GET /pg-tls", &got, child);
        }
    }
    if let Some(db) = &db {
        let got = get(addr, &format!("/mysql?{}", db.url()));
        let expected = "note:STR n:UINT8\n\
            [[DbValue_Str(value='async'), DbValue_Uint8(value=7)]]\n\
            error Error_QueryFailed\n\
            tls ['']\n";
        if got != (200, expected.to_string()) {
            fail("GET /mysql", &got, child);
        }
    }
    if let Some(broker) = &broker {
        let sub = broker.subscribe("events");
        let got = get(addr, &format!("/mqtt?mqtt://127.0.0.1:{}", broker.port));
        if got != (200, "published 3\n".to_string()) {
            fail("GET /mqtt", &got, child);
        }
        let messages: Vec<Option<String>> = (0..3).map(|_| sub.next_message()).collect();
        assert_eq!(
            messages,
            ["events p3 qos 0", "events p3 qos 1", "events p3 qos 2"].map(|m| Some(m.to_string()))
        );
    }

    // The Redis trigger (Spin 4's async export).
    redis.wait_subscribers("p3-in", 1);
    assert_eq!(redis.cli(&["PUBLISH", "p3-in", "fail"]), "1");
    assert_eq!(redis.cli(&["PUBLISH", "p3-in", "hello p3"]), "1");
    redis.wait_value("p3-received", "hello p3");
    let ran = stop(&id, child);
    assert!(
        ran.stderr
            .contains("component listener failed on a message on p3-in")
            && ran.stderr.contains("this message fails"),
        "{ran:?}"
    );
}

const CLIENT_TLS_MANIFEST: &str = r#"
spin_manifest_version = 2

[application]
name = "spin-client-tls"

[[trigger.http]]
route = "/..."
component = "py"

[[trigger.http]]
route = "/untrusted/..."
component = "untrusted"

[component.py]
source = "app.wasm"
allowed_outbound_hosts = ["https://127.0.0.1:*", "postgres://127.0.0.1:*", "mqtts://127.0.0.1:*", "rediss://127.0.0.1:*", "mysql://127.0.0.1:*"]

[component.untrusted]
source = "app.wasm"
allowed_outbound_hosts = ["https://127.0.0.1:*"]
"#;

const CLIENT_TLS_CONFIG: &str = r#"
[[client_tls]]
component_ids = ["py"]
hosts = ["127.0.0.1"]
ca_roots_file = "tls/ca.crt"
client_cert_file = "tls/client.crt"
client_private_key_file = "tls/client.key"
"#;

/// The runtime config's `[[client_tls]]`: component `py` trusts a private CA and presents a
/// client certificate for 127.0.0.1, over HTTPS (a server that demands the certificate),
/// Postgres (`sslmode=require`), MQTT (`mqtts://`), Redis (`rediss://`) and MySQL
/// (`require_ssl=true`); component `untrusted`, which no table
/// names, trusts only the web PKI and is refused by the same HTTPS server.
#[test]
fn client_tls_trusts_a_private_ca_and_presents_a_client_certificate() {
    use fixtures::{SpinPySdk, SpinPyTrigger};
    let ca = wasmpod_e2e::tls::TestCa::new();
    let client = ca.client("client");
    let read = |p: &std::path::Path| std::fs::read(p).expect("read a test certificate");
    let image = spin_image(
        "docker.io/wasmpod/spin-client-tls:e2e",
        CLIENT_TLS_MANIFEST,
        &[
            (
                "/app.wasm",
                fixtures::spin_py_p3_component(SpinPySdk::V5, SpinPyTrigger::Http),
            ),
            (
                "/runtime-config.toml",
                CLIENT_TLS_CONFIG.as_bytes().to_vec(),
            ),
            ("/tls/ca.crt", read(&ca.cert_file())),
            ("/tls/client.crt", read(&client.cert)),
            ("/tls/client.key", read(&client.key)),
        ],
    );
    let https = wasmpod_e2e::tls::HttpsServer::start(&ca);
    let pg = wasmpod_e2e::postgres::Postgres::start_tls(&ca);
    let broker = wasmpod_e2e::mqtt::Mosquitto::start_tls(&ca);
    let redis = wasmpod_e2e::redis::Redis::start_tls(&ca);
    let db = wasmpod_e2e::mysql::Mariadb::start_tls(&ca);
    let id = unique_id("spin-client-tls");
    let (addr, child) = serve(&image, &id, &[]);
    let fail = |what: &str, got: &(u16, String), child| -> ! {
        let ran = stop(&id, child);
        panic!("{what}: {got:?}; the app's log: {}", ran.stderr)
    };

    let url = format!("https://127.0.0.1:{}/", https.port);
    let trusted = get(addr, &format!("/fetch?{url}"));
    if !(trusted.0 == 200
        && trusted.1.starts_with("fetched 200: ")
        && trusted.1.contains("s_server"))
    {
        fail("GET /fetch (trusted)", &trusted, child);
    }
    let untrusted = get(addr, &format!("/untrusted/fetch?{url}"));
    if untrusted.0 != 502 {
        fail("GET /untrusted/fetch", &untrusted, child);
    }
    if let Some(pg) = &pg {
        let got = get(addr, &format!("/pg?{}?sslmode=require", pg.url()));
        if got != (200, PG_STEPS.to_string()) {
            fail("GET /pg over TLS", &got, child);
        }
        assert_eq!(
            pg.psql("SELECT count(*) FROM pg_stat_ssl WHERE ssl"),
            Ok("1".into()),
            "only psql's own session is left, and it is over TLS"
        );
    }
    if let Some(broker) = &broker {
        let sub = broker.subscribe("events");
        let tls_port = broker.tls_port.expect("a TLS listener");
        let got = get(addr, &format!("/mqtt?mqtts://127.0.0.1:{tls_port}"));
        if got != (200, "published 3\n".to_string()) {
            fail("GET /mqtt over TLS", &got, child);
        }
        assert_eq!(sub.next_message().as_deref(), Some("events p3 qos 0"));
    }
    if let Some(tls_port) = redis.as_ref().and_then(|r| r.tls_port()) {
        let got = get(addr, &format!("/redis?rediss://127.0.0.1:{tls_port}"));
        if got != (200, "got=p3 value n=1 members=['a', 'b']\n".to_string()) {
            fail("GET /redis over TLS", &got, child);
        }
    }
    if let Some(db) = &db {
        let got = get(addr, &format!("/mysql?{}?require_ssl=true", db.url()));
        let tls = got.1.lines().last().unwrap_or_default();
        if got.0 != 200
            || !got.1.starts_with("note:STR n:UINT8\n")
            || !tls.starts_with("tls ['TLSv1")
        {
            fail("GET /mysql over TLS", &got, child);
        }
    }
    stop(&id, child);
}

/// `OTEL_EXPORTER_OTLP_ENDPOINT` set: each request is a server span sent to an OTLP
/// receiver (ours, on loopback) in protobuf, named after its route, a child of the request's
/// `traceparent`, failed when the answer is a 5xx; the last spans are flushed on SIGTERM.
/// `OTEL_EXPORTER_OTLP_PROTOCOL=grpc` sends them over OTLP/gRPC instead.
/// `OTEL_SDK_DISABLED=true` sends nothing; a bad endpoint is said in the log, and the app
/// serves on.
#[test]
fn requests_are_spans_exported_over_otlp() {
    let image = py_image("docker.io/wasmpod/spin-py:e2e", PY_MANIFEST);
    let receiver = otlp::Receiver::start();
    let endpoint = format!("OTEL_EXPORTER_OTLP_ENDPOINT={}", receiver.endpoint());
    let (upstream_port, upstream) = upstream_once();
    let upstream_var = format!("SPIN_VARIABLE_PORT={upstream_port}");
    // The app with `TOKEN` (it needs one), the upstream it may fetch from, and `envs` (which
    // win over those).
    let serve_with_all = |name: &str, envs: &[&str]| {
        let id = unique_id(name);
        let mut flags = vec![
            "--env",
            "TOKEN=t",
            "--env",
            &endpoint,
            "--env",
            &upstream_var,
        ];
        for env in envs {
            flags.extend(["--env", env]);
        }
        let (addr, child) = serve(&image, &id, &flags);
        (id, addr, child)
    };
    let serve_with = |name: &str, env: &str| serve_with_all(name, &[env]);
    let (id, addr, child) = serve_with("spin-otel", "OTEL_SERVICE_NAME=shop");
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    let traced = http::request_with_headers(
        addr,
        "GET",
        "/count?x=1",
        &format!("traceparent: 00-{trace}-{parent}-01\r\n"),
        b"",
    )
    .unwrap();
    assert_eq!(traced.status, 200);
    // A request's outbound requests carry its span as their parent.
    let fetched = http::request_with_headers(
        addr,
        "GET",
        &format!("/fetch?http://127.0.0.1:{upstream_port}/"),
        &format!("traceparent: 00-{trace}-{parent}-01\r\n"),
        b"",
    )
    .unwrap();
    assert_eq!(fetched.status, 200, "{fetched:?}");
    let upstream_head = upstream.join().unwrap();
    assert_eq!(get(addr, "/static-route").0, 201);
    assert_eq!(get(addr, "/trap").0, 500);
    stop(&id, child);
    let spans = receiver.wait_for(Duration::from_secs(10), |s| s.len() >= 4);
    let named = |name: &str, path: &str| {
        spans
            .iter()
            .find(|s| {
                s.name == name && s.attributes.get("url.path").map(String::as_str) == Some(path)
            })
            .unwrap_or_else(|| panic!("no span {name} for {path} in {spans:#?}"))
    };
    let count = named("GET /...", "/count");
    assert_eq!(
        (count.trace_id.as_str(), count.parent_span_id.as_str()),
        (trace, parent)
    );
    assert_eq!(count.kind, 2, "a server span");
    assert_eq!(count.service_name, "shop");
    assert_eq!(count.status_code, 0);
    for (key, value) in [
        ("http.request.method", "GET"),
        ("http.route", "/..."),
        ("http.response.status_code", "200"),
        ("url.query", "x=1"),
        ("spin.component_id", "py"),
        ("client.address", "127.0.0.1"),
    ] {
        assert_eq!(
            count.attributes.get(key).map(String::as_str),
            Some(value),
            "{key}: {count:#?}"
        );
    }
    let fetch = named("GET /...", "/fetch");
    assert!(
        upstream_head.contains(&format!("traceparent: 00-{trace}-{}-01", fetch.span_id)),
        "the upstream request's parent is the fetch span {}: {upstream_head}",
        fetch.span_id
    );
    let fixed = named("GET /static-route", "/static-route");
    assert_eq!(fixed.parent_span_id, "", "a root span");
    assert_ne!(fixed.trace_id, trace);
    assert_eq!(fixed.attributes["http.response.status_code"], "201");
    let trap = named("GET /...", "/trap");
    assert_eq!(trap.status_code, 2, "a failed request is an error span");

    // Disabled: nothing is sent.
    let before = receiver.spans().len();
    let (id, addr, child) = serve_with("spin-otel-off", "OTEL_SDK_DISABLED=true");
    assert_eq!(get(addr, "/").0, 200);
    stop(&id, child);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        receiver.spans().len(),
        before,
        "spans sent with OTEL_SDK_DISABLED=true"
    );

    // OTLP/gRPC (the later endpoint wins): the same spans, to a gRPC receiver.
    let grpc = otlp::Receiver::start_grpc();
    let grpc_endpoint = format!("OTEL_EXPORTER_OTLP_ENDPOINT={}", grpc.endpoint());
    let (id, addr, child) = serve_with_all(
        "spin-otel-grpc",
        &[&grpc_endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL=grpc"],
    );
    assert_eq!(get(addr, "/count").0, 200);
    let ran = stop(&id, child);
    let spans = grpc.wait_for(Duration::from_secs(10), |s| !s.is_empty());
    assert!(
        spans.iter().any(|s| s.name == "GET /..."
            && s.attributes.get("url.path").map(String::as_str) == Some("/count")),
        "no span over gRPC: {spans:#?}; the app's log: {}",
        ran.stderr
    );

    // A bad endpoint: telemetry is off, said in the log, and the app serves.
    // (the later value wins)
    let (id, addr, child) = serve_with(
        "spin-otel-bad",
        "OTEL_EXPORTER_OTLP_ENDPOINT=collector:4318",
    );
    assert_eq!(get(addr, "/").0, 200);
    let ran = stop(&id, child);
    assert!(
        ran.stderr
            .contains("telemetry is off: OTEL_EXPORTER_OTLP_ENDPOINT=\"collector:4318\""),
        "{}",
        ran.stderr
    );
}

/// A multi-component app: every `spin-*` header for a set of routes and requests (SPIN.md's
/// table), a client's forged reserved header replaced, the client's own headers kept; an
/// exact route, a wildcard, a `:name` capture, a static response and a second component (a
/// core module) on a longer prefix.
#[test]
fn spin_headers_follow_the_route_that_matched() {
    let manifest = PY_MANIFEST.replace(
        "[[trigger.http]]\nroute = \"/...\"\ncomponent = \"py\"",
        "[[trigger.http]]\nroute = \"/...\"\ncomponent = \"py\"\n\n\
         [[trigger.http]]\nid = \"users\"\nroute = \"/users/:user_id/...\"\ncomponent = \"py\"\n\n\
         [[trigger.http]]\nid = \"exact\"\nroute = \"/exact/headers\"\ncomponent = \"py\"\n\n\
         [[trigger.http]]\nroute = \"/c/...\"\ncomponent = \"c\"\n\n\
         [component.c]\nsource = \"c.wasm\"\n",
    );
    let dir = tempfile::tempdir().unwrap();
    let name = "docker.io/wasmpod/spin-py-routes:e2e";
    let image = import(
        &fixtures::spin_py_image(name, &manifest).file(
            "/c.wasm",
            fixtures::c_proxy_core_module(),
            0o644,
        ),
        name,
        dir.path(),
    );
    let id = unique_id("spin-headers");
    let (addr, child) = serve(&image, &id, &["--env", "SPIN_VARIABLE_TOKEN=t"]);
    let headers = |path: &str, extra: &str| -> Vec<String> {
        let reply = http::request_with_headers(addr, "GET", path, extra, b"").unwrap();
        assert_eq!(reply.status, 200, "{reply:?}");
        reply
            .body
            .lines()
            .filter(|l| l.starts_with("spin-") || l.starts_with("x-client"))
            .map(str::to_string)
            .collect()
    };
    let client = |lines: &[String]| {
        lines
            .iter()
            .find(|l| l.starts_with("spin-client-addr: 127.0.0.1:"))
            .cloned()
            .expect("spin-client-addr")
    };
    let got = headers(
        "/users/42/headers?a=1",
        "spin-path-info: forged\r\nx-client: kept\r\n",
    );
    let want = [
        "spin-base-path: /".to_string(),
        client(&got),
        "spin-component-route: /users/:user_id".to_string(),
        format!("spin-full-url: http://{addr}/users/42/headers?a=1"),
        "spin-matched-route: /users/:user_id/...".to_string(),
        "spin-path-info: /headers".to_string(),
        "spin-path-match-user-id: 42".to_string(),
        "spin-raw-component-route: /users/:user_id/...".to_string(),
        "x-client: kept".to_string(),
    ];
    assert_eq!(got, want);
    let exact = headers("/exact/headers", "");
    assert!(
        exact.contains(&"spin-path-info: ".to_string())
            || exact.iter().any(|l| l == "spin-path-info:"),
        "{exact:?}"
    );
    assert!(
        exact.contains(&"spin-matched-route: /exact/headers".to_string()),
        "{exact:?}"
    );
    assert!(
        exact.contains(&"spin-component-route: /exact/headers".to_string()),
        "{exact:?}"
    );
    let wild = headers("/other/headers", "");
    assert!(
        wild.contains(&"spin-path-info: /other/headers".to_string()),
        "{wild:?}"
    );
    assert!(
        wild.contains(&"spin-matched-route: /...".to_string()),
        "{wild:?}"
    );
    stop(&id, child);
}

/// Service chaining: the front component reaches `back` (a private route) through
/// `http://back.spin.internal`, in-process, with Spin's synthetic route and client address;
/// a component it may not reach, and an allowed name no component has, fail its request
/// (its guest sees an error) with a line in the log, and the app serves on.
#[test]
fn components_chain_through_spin_internal_hosts() {
    let manifest = PY_MANIFEST
        .replace(
            "allowed_outbound_hosts = [\"http://127.0.0.1:{{ port }}\"]",
            "allowed_outbound_hosts = [\"http://back.spin.internal\", \"http://ghost.spin.internal\", \"http://self\"]",
        )
        .replace(
            "[[trigger.http]]\nroute = \"/static-route\"",
            "[[trigger.http]]\nroute = { private = true }\ncomponent = \"back\"\n\n\
             [[trigger.http]]\nroute = \"/other/...\"\ncomponent = \"other\"\n\n\
             [component.back]\nsource = \"app.wasm\"\n\n\
             [component.other]\nsource = \"app.wasm\"\n\n\
             [[trigger.http]]\nroute = \"/static-route\"",
        );
    let name = "docker.io/wasmpod/spin-py-chain:e2e";
    let image = py_image(name, &manifest);
    let id = unique_id("spin-chain");
    let (addr, child) = serve(&image, &id, &["--env", "SPIN_VARIABLE_TOKEN=t"]);

    let (status, body) = get(addr, "/fetch?http://back.spin.internal/headers?q=1");
    assert_eq!(status, 200, "{body}");
    for line in [
        "spin-client-addr: 0.0.0.0:0",
        "spin-full-url: http://back.spin.internal/headers?q=1",
        "spin-matched-route: /...",
        "spin-path-info: /headers",
    ] {
        assert!(body.lines().any(|l| l == line), "no {line:?} in {body}");
    }
    // `other` is served on its route, but front may not reach it; `ghost` is allowed but
    // no component has that name.
    assert_eq!(get(addr, "/other/headers").0, 200);
    assert_eq!(
        get(addr, "/fetch?http://other.spin.internal/headers").0,
        502
    );
    assert_eq!(get(addr, "/fetch?http://ghost.spin.internal/").0, 502);
    assert_eq!(get(addr, "/").0, 200);

    // Self-requests, by route: to `self.alt`, and to a relative URL.
    for (url, route, info) in [
        (
            "http://self.alt/other/headers?q=2",
            "/other/...",
            "/headers",
        ),
        ("/headers", "/...", "/headers"),
    ] {
        let (status, body) = get(addr, &format!("/fetch?{url}"));
        assert_eq!(status, 200, "{url}: {body}");
        for line in [
            "spin-client-addr: 127.0.0.1:0".to_string(),
            format!("spin-matched-route: {route}"),
            format!("spin-path-info: {info}"),
        ] {
            assert!(
                body.lines().any(|l| l == line),
                "{url}: no {line:?} in {body}"
            );
        }
    }
    // `other` may not send requests to its own app.
    assert_eq!(get(addr, "/other/fetch?http://self.alt/headers").0, 502);

    let ran = stop(&id, child);
    for needle in [
        "component py may not reach http://other.spin.internal:80",
        "no component ghost with an HTTP trigger",
        "component other may not send requests to its own app (/headers)",
    ] {
        assert!(
            ran.stderr.contains(needle),
            "no {needle:?} in {}",
            ran.stderr
        );
    }
}

/// A core module built for `wasm32-wasip1` (as Spin's Rust and Go templates build them) is
/// componentized at load and compiled once into the node's cache; a second start maps it.
#[test]
fn a_core_module_app_is_componentized_once_and_served() {
    let module = fixtures::c_proxy_core_module();
    let manifest = r#"
spin_manifest_version = 2
[application]
name = "c-core"
[[trigger.http]]
route = "/..."
component = "c"
[component.c]
source = "target/wasm32-wasip1/release/c.wasm"
"#;
    let image = spin_image(
        "docker.io/wasmpod/spin-c-core:e2e",
        manifest,
        &[("/target/wasm32-wasip1/release/c.wasm", module.clone())],
    );
    let prefix = fixtures::cache_key_prefix(&module);
    for round in 0..2 {
        let id = unique_id("spin-core");
        let (addr, child) = serve(&image, &id, &[]);
        assert_eq!(get(addr, "/hello").0, 200, "round {round}");
        stop(&id, child);
        assert_eq!(fixtures::compiles_of(&prefix), 1, "round {round}");
    }
}

/// With `/.spin` a volume, the default store outlives the container: a second container of
/// the same app counts on, and the database is Spin's file.
#[test]
fn key_value_persists_across_restarts_when_state_is_a_volume() {
    let image = py_image("docker.io/wasmpod/spin-py:e2e", PY_MANIFEST);
    let state = tempfile::tempdir().unwrap();
    let mount = format!(
        "type=bind,src={},dst=/.spin,options=rbind:rw",
        state.path().display()
    );
    for expected in [["count=1\n", "count=2\n"], ["count=3\n", "count=4\n"]] {
        let id = unique_id("spin-kv");
        let (addr, child) = serve(
            &image,
            &id,
            &["--mount", &mount, "--env", "SPIN_VARIABLE_TOKEN=t"],
        );
        assert_eq!(get(addr, "/count").1, expected[0]);
        assert_eq!(get(addr, "/count").1, expected[1]);
        stop(&id, child);
    }
    assert!(state.path().join("sqlite_key_value.db").is_file());
}

fn expect_spin_create_error(image: &str, extra: &[&str], needles: &[&str]) {
    let id = unique_id("spin-bad");
    let mut args = vec!["run", "--rm", "--net-host", "--runtime", SPIN];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[image, &id, "/"]);
    let ran = run_ctr(&args);
    assert_ne!(ran.code, 0, "{ran:?}");
    for needle in needles {
        assert!(
            ran.stderr.contains(needle),
            "expected {needle:?} in {:?}",
            ran.stderr
        );
    }
}

/// Apps that cannot run fail Create with the file, the field and the reason, leave nothing
/// behind, and the shim serves the next container.
#[test]
fn bad_spin_apps_fail_with_their_reason_and_leak_nothing() {
    let before = leak_counts();
    let wasm = fixtures::spin_py_component();
    let with = |name: &str, manifest: &str| {
        spin_image(
            &format!("docker.io/wasmpod/spin-bad-{name}:e2e"),
            manifest,
            &[("/app.wasm", wasm.clone())],
        )
    };
    let ok = PY_MANIFEST.replace("files = [\"static\"]\n", "");
    let cases: Vec<(String, Vec<&str>, Vec<&str>)> = vec![
        (
            with(
                "field",
                &ok.replace("version = \"0.1.0\"", "versoin = \"0.1.0\""),
            ),
            vec![],
            vec!["/spin.toml", "versoin"],
        ),
        (
            with(
                "missing",
                &ok.replace("source = \"app.wasm\"", "source = \"gone.wasm\""),
            ),
            vec![],
            vec!["/spin.toml", "gone.wasm"],
        ),
        (
            with(
                "label",
                &ok.replace("[\"default\"]", "[\"default\", \"cache\"]"),
            ),
            vec!["--env", "SPIN_VARIABLE_TOKEN=t"],
            vec!["unknown key_value_stores label", "cache"],
        ),
        (
            with(
                "database",
                &ok.replace(
                    "sqlite_databases = [\"default\"]",
                    "sqlite_databases = [\"default\", \"orders\"]",
                ),
            ),
            vec!["--env", "SPIN_VARIABLE_TOKEN=t"],
            vec!["unknown sqlite_databases label", "orders"],
        ),
        (
            with("required", &ok),
            vec![],
            vec!["token", "SPIN_VARIABLE_TOKEN"],
        ),
        (
            with(
                "route",
                &ok.replace("route = \"/...\"", "route = \"/a/.../b\""),
            ),
            vec!["--env", "SPIN_VARIABLE_TOKEN=t"],
            vec!["/a/.../b"],
        ),
        (
            with(
                "trigger",
                &format!("{ok}\n[[trigger.sqs]]\nqueue_url = \"c\"\ncomponent = \"py\"\n"),
            ),
            vec![],
            vec!["sqs", "not supported"],
        ),
    ];
    for (image, extra, needles) in &cases {
        expect_spin_create_error(image, extra, needles);
    }
    assert_eq!(
        leak_counts(),
        before,
        "a bad Spin app left something behind"
    );
    // A good app still runs.
    let image = py_image("docker.io/wasmpod/spin-py:e2e", PY_MANIFEST);
    let id = unique_id("spin-after");
    let (addr, child) = serve(&image, &id, &["--env", "SPIN_VARIABLE_TOKEN=t"]);
    assert_eq!(get(addr, "/").0, 200);
    stop(&id, child);
}

/// Writes the Python test app as a directory on disk: `spin.toml`, `app.wasm`, and a
/// `static` directory with a small file (inlined in a lock) and a large one (a data layer).
fn py_app_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("static/big")).unwrap();
    std::fs::write(dir.path().join("spin.toml"), PY_MANIFEST).unwrap();
    std::fs::write(dir.path().join("app.wasm"), fixtures::spin_py_component()).unwrap();
    std::fs::write(dir.path().join("static/hello.txt"), "a file in the image\n").unwrap();
    std::fs::write(dir.path().join("static/big/data.txt"), "x".repeat(4096)).unwrap();
    dir
}

/// `wasmpod image build --spin` of one app in both shapes: `/spin.toml` in the rootfs, and
/// the layers `spin registry push` writes, read from containerd's content store (components
/// and files by digest, the lock last). Both serve the same app; the registry image's files
/// are where Spin puts them. A lock naming a layer the image lacks fails Create by name.
#[test]
fn both_image_shapes_of_one_app_serve_the_same() {
    if !ctr::imports_wasm_layers() {
        return;
    }
    let app = py_app_dir();
    let out = tempfile::tempdir().unwrap();
    for (shape, name) in [
        ("rootfs", "docker.io/wasmpod/spin-built:rootfs"),
        ("spin-registry", "docker.io/wasmpod/spin-built:registry"),
    ] {
        let tar = out.path().join(format!("{shape}.tar"));
        let built = std::process::Command::new(ctr::wasmpod_tool())
            .args(["image", "build", "--spin"])
            .arg(app.path().join("spin.toml"))
            .args(["--shape", shape, "-t", name, "-o"])
            .arg(&tar)
            .output()
            .expect("run wasmpod image build");
        assert!(built.status.success(), "{built:?}");
        assert_eq!(
            run_ctr(&["images", "import", "--all-platforms", tar.to_str().unwrap()]).code,
            0
        );
        let id = unique_id("spin-shape");
        let (addr, child) = serve(name, &id, &["--env", "SPIN_VARIABLE_TOKEN=t"]);
        assert_eq!(
            get(addr, "/"),
            (200, "hello from a Spin Python app\n".into()),
            "{shape}"
        );
        assert_eq!(get(addr, "/file").1, "a file in the image\n", "{shape}");
        assert_eq!(get(addr, "/count").1, "count=1\n", "{shape}");
        assert_eq!(get(addr, "/static-route").0, 201, "{shape}");
        stop(&id, child);
    }

    // A lock that names a layer the image does not have.
    let wasm = fixtures::spin_py_component();
    let lock = format!(
        r#"{{"spin_lock_version":0,"metadata":{{"name":"broken"}},
            "triggers":[{{"id":"t","trigger_type":"http","trigger_config":{{"route":"/...","component":"c"}}}}],
            "components":[{{"id":"c","source":{{"content_type":"application/wasm","digest":"sha256:{}"}}}}]}}"#,
        "0".repeat(64)
    );
    let name = "docker.io/wasmpod/spin-broken-lock:e2e";
    import(
        &wasmpod_oci::image::ImageBuilder::new(name)
            .shape(wasmpod_oci::image::ImageShape::SpinRegistry)
            .platform("wasip1", "wasm")
            .typed_layer(wasmpod_oci::artifact::WASM_CONTENT_LAYER, wasm)
            .typed_layer(wasmpod_oci::spin::lock::LOCKED_APP_LAYER, lock.into_bytes()),
        name,
        out.path(),
    );
    let before = leak_counts();
    expect_spin_create_error(name, &[], &["broken-lock", "not a layer of the image"]);
    assert_eq!(leak_counts(), before);
}

/// The Spin Rust hello (Spin's Rust SDK, `wasm32-wasip1`, as the templates build it): a core
/// module componentized at load, answering hello and counting in the default store.
#[test]
fn the_spin_rust_sdk_hello_and_key_value_counter() {
    let dir = tempfile::tempdir().unwrap();
    let name = "docker.io/wasmpod/spin-rust:e2e";
    let image = import(&fixtures::spin_rust_image(name), name, dir.path());
    let id = unique_id("spin-rust");
    let (addr, child) = serve(&image, &id, &[]);
    assert_eq!(get(addr, "/"), (200, "hello from a Spin Rust app\n".into()));
    assert_eq!(get(addr, "/count"), (200, "count=1\n".into()));
    assert_eq!(get(addr, "/count"), (200, "count=2\n".into()));
    let info = get(addr, "/.well-known/spin/info");
    assert!(info.1.contains("\"name\":\"rust-hello\""), "{info:?}");
    stop(&id, child);
}

const RUST_P3_MANIFEST: &str = r#"
spin_manifest_version = 2

[application]
name = "rust6-hello"

[variables]
greeting = { default = "hi" }

[[trigger.http]]
route = "/..."
component = "rust"

[component.rust]
source = "app.wasm"
key_value_stores = ["default"]
variables = { greeting = "{{ greeting }} from Rust" }
"#;

/// A Spin 4 app built with Spin's Rust SDK `sdk` (`wasm32-wasip1`, componentized at load):
/// its async handler answers through WASIp3, counts with the async key-value interface,
/// reads a variable, and gets `access-denied` for a store it does not list.
fn a_spin4_rust_app_serves(sdk: fixtures::SpinRustSdk, name: &str) {
    let image = spin_image(
        &format!("docker.io/wasmpod/{name}:e2e"),
        RUST_P3_MANIFEST,
        &[("/app.wasm", fixtures::spin_rust_p3_module(sdk))],
    );
    let id = unique_id(name);
    let (addr, child) = serve(&image, &id, &["--env", "SPIN_VARIABLE_GREETING=hello"]);
    let hello = get(addr, "/hi");
    if hello != (200, "hello from a Spin 4 Rust app: /hi\n".to_string()) {
        let ran = stop(&id, child);
        panic!("GET /hi: {hello:?}; the app's log: {}", ran.stderr);
    }
    assert_eq!(get(addr, "/count"), (200, "count=1\n".into()));
    assert_eq!(get(addr, "/count"), (200, "count=2\n".into()));
    assert_eq!(
        get(addr, "/var"),
        (200, "greeting=hello from Rust\n".into())
    );
    let denied = get(addr, "/denied");
    assert!(
        denied.0 == 200 && denied.1.starts_with("denied: "),
        "{denied:?}"
    );
    stop(&id, child);
}

/// Spin's Rust SDK 6.
#[test]
fn a_spin4_rust_sdk6_app_serves_through_wasip3() {
    a_spin4_rust_app_serves(fixtures::SpinRustSdk::V6, "spin-rust6");
}

/// Spin's Rust SDK 7.
#[test]
fn a_spin4_rust_sdk7_app_serves_through_wasip3() {
    a_spin4_rust_app_serves(fixtures::SpinRustSdk::V7, "spin-rust7");
}

/// A Spin app built with Spin's JS build tools (componentize-js): hello and a counter in the
/// default store, through `fermyon:spin/key-value`.
#[test]
fn a_spin_js_sdk_app_says_hello_and_counts() {
    let manifest = "spin_manifest_version = 2\n[application]\nname = \"js-hello\"\n\
                    [[trigger.http]]\nroute = \"/...\"\ncomponent = \"js\"\n\
                    [component.js]\nsource = \"app.wasm\"\nkey_value_stores = [\"default\"]\n";
    let image = spin_image(
        "docker.io/wasmpod/spin-js:e2e",
        manifest,
        &[("/app.wasm", fixtures::spin_js_component())],
    );
    let id = unique_id("spin-js");
    let (addr, child) = serve(&image, &id, &[]);
    assert_eq!(get(addr, "/"), (200, "hello from a Spin JS app\n".into()));
    assert_eq!(get(addr, "/count"), (200, "count=1\n".into()));
    assert_eq!(get(addr, "/count"), (200, "count=2\n".into()));
    stop(&id, child);
}

/// The runtime config's `max_instance_memory`: 8 MiB is too little for the Python
/// interpreter, so each request's instance fails to start (500, and the log says which limit
/// refused the growth) while the app serves on; `SPIN_MAX_INSTANCE_MEMORY` in the
/// container's environment wins over the file.
#[test]
fn max_instance_memory_caps_each_instance() {
    let image = py_image("docker.io/wasmpod/spin-py-memory:e2e", PY_MANIFEST);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("runtime-config.toml");
    std::fs::write(&config, "max_instance_memory = 8388608\n").unwrap();
    let mount = format!(
        "type=bind,src={},dst=/runtime-config.toml,options=rbind:ro",
        config.display()
    );
    let id = unique_id("spin-memory");
    let (addr, child) = serve(
        &image,
        &id,
        &["--mount", &mount, "--env", "SPIN_VARIABLE_TOKEN=t"],
    );
    assert_eq!(get(addr, "/hello").0, 500);
    assert_eq!(get(addr, "/.well-known/spin/health").0, 200);
    let ran = stop(&id, child);
    assert!(
        ran.stderr.contains("past its limit of 8 MiB")
            && ran.stderr.contains("the per-instance memory limit"),
        "{ran:?}"
    );

    let id = unique_id("spin-memory-env");
    let (addr, child) = serve(
        &image,
        &id,
        &[
            "--mount",
            &mount,
            "--env",
            "SPIN_VARIABLE_TOKEN=t",
            "--env",
            "SPIN_MAX_INSTANCE_MEMORY=1Gi",
        ],
    );
    assert_eq!(get(addr, "/hello").0, 200);
    stop(&id, child);
}

/// `/runtime-config.toml` (here a bind mount, as a Kubernetes secret with `subPath` is): a
/// `static` variables provider that beats the container's environment, and a second
/// key-value store and a second SQLite database the component may open because it lists
/// them. A runtime config with an unknown field fails Create naming the file and the field.
#[test]
fn a_runtime_config_provides_variables_and_stores() {
    let manifest = PY_MANIFEST.replace("[\"default\"]", "[\"default\", \"cache\"]");
    let image = py_image("docker.io/wasmpod/spin-py-config:e2e", &manifest);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("runtime-config.toml");
    std::fs::write(
        &config,
        "[[variables_provider]]\ntype = \"static\"\nvalues = { token = \"from-runtime-config\" }\n\n\
         [key_value_store.cache]\ntype = \"spin\"\npath = \"/tmp/cache.db\"\n\n\
         [sqlite_database.cache]\ntype = \"spin\"\npath = \"/tmp/cache-sql.db\"\n",
    )
    .unwrap();
    let mount = format!(
        "type=bind,src={},dst=/runtime-config.toml,options=rbind:ro",
        config.display()
    );
    let id = unique_id("spin-config");
    let (addr, child) = serve(
        &image,
        &id,
        &["--mount", &mount, "--env", "SPIN_VARIABLE_TOKEN=from-env"],
    );
    assert_eq!(get(addr, "/var/token").1, "token=from-runtime-config\n");
    assert_eq!(
        get(addr, "/store/cache"),
        (200, "opened cache: []\n".into())
    );
    // A SQLite database of the runtime config, under its label.
    let (status, body) = get(addr, "/sqlite/cache");
    assert!(
        status == 200 && body.contains("['Integer:1'"),
        "{status} {body}"
    );
    stop(&id, child);

    std::fs::write(
        &config,
        "[key_value_store.cache]\ntype = \"spin\"\npaht = \"x\"\n",
    )
    .unwrap();
    expect_spin_create_error(
        &image,
        &["--mount", &mount, "--env", "SPIN_VARIABLE_TOKEN=t"],
        &["/runtime-config.toml", "paht"],
    );
}

const CRON_MANIFEST: &str = r#"
spin_manifest_version = 2
[application]
name = "ticks"

[[trigger.cron]]
component = "tick"
cron_expression = "* * * * * *"

[[trigger.cron]]
component = "slow"
cron_expression = "* * * * * *"

[component.tick]
source = "cron.wasm"
environment = { NAME = "tick" }

[component.slow]
source = "cron.wasm"
environment = { NAME = "slow", RUN_MS = "2500" }
"#;

/// A run's lines: (name, tick, "start" or "end", milliseconds).
fn cron_lines(stdout: &str) -> Vec<(String, u64, String, i64)> {
    stdout
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f.as_slice() {
                [name, "tick", tick, what, ms] => Some((
                    name.to_string(),
                    tick.parse().ok()?,
                    what.to_string(),
                    ms.parse().ok()?,
                )),
                _ => None,
            }
        })
        .collect()
}

/// `[[trigger.cron]]` (no Spin shim has one): a C core module of the Spin cron trigger's
/// world fires every second, one run at a time per trigger (a run that takes 2.5 s skips
/// the ticks that come meanwhile, with a log line), and SIGTERM stops the app with 143.
#[test]
fn a_cron_app_fires_on_schedule_one_run_at_a_time_and_stops_on_sigterm() {
    let name = "docker.io/wasmpod/spin-cron:e2e";
    let image = spin_image(
        name,
        CRON_MANIFEST,
        &[("/cron.wasm", fixtures::spin_cron_core_module())],
    );
    let id = unique_id("spin-cron");
    // Each run is a span, too.
    let receiver = otlp::Receiver::start();
    let endpoint = format!("OTEL_EXPORTER_OTLP_ENDPOINT={}", receiver.endpoint());
    let child = spawn(
        SPIN,
        &id,
        &["--net-host", "--env", &endpoint],
        &image,
        &["/"],
    );
    // Let it tick for six seconds, then stop it.
    std::thread::sleep(Duration::from_secs(6));
    let ran = stop(&id, child);
    let lines = cron_lines(&ran.stdout);
    let ticks: Vec<u64> = lines
        .iter()
        .filter(|(n, _, what, _)| n == "tick" && what == "end")
        .map(|(_, t, _, _)| *t)
        .collect();
    // At least N runs in N+1 seconds (start-up takes under a second), one per tick.
    assert!(ticks.len() >= 4, "{ran:?}");
    assert!(ticks.windows(2).all(|w| w[1] == w[0] + 1), "{ticks:?}");
    let tick_spans = |spans: &[otlp::ReceivedSpan]| {
        spans
            .iter()
            .filter(|s| s.attributes.get("spin.component_id").map(String::as_str) == Some("tick"))
            .cloned()
            .collect::<Vec<_>>()
    };
    let spans = tick_spans(&receiver.wait_for(Duration::from_secs(10), |s| {
        tick_spans(s).len() >= ticks.len()
    }));
    assert_eq!(spans.len(), ticks.len(), "one span per run: {spans:#?}");
    assert!(
        spans
            .iter()
            .all(|s| s.kind == 1 && s.name.starts_with("cron ") && s.status_code == 0),
        "{spans:#?}"
    );
    // The slow trigger: each run starts after the previous one ended.
    let slow: Vec<&(String, u64, String, i64)> =
        lines.iter().filter(|(n, ..)| n == "slow").collect();
    assert!(slow.len() >= 2, "{ran:?}");
    for pair in slow.windows(2) {
        if pair[0].2 == "end" {
            assert_eq!(pair[1].2, "start", "{slow:?}");
            assert!(pair[1].3 >= pair[0].3, "{slow:?}");
        } else {
            assert_eq!(pair[1].2, "end", "runs overlap: {slow:?}");
            assert_eq!(pair[0].1, pair[1].1, "{slow:?}");
        }
    }
    assert!(
        ran.stderr
            .contains("cron trigger slow-cron-trigger: the run due at")
            && ran
                .stderr
                .contains("is skipped: the previous run is still going"),
        "{ran:?}"
    );
    assert_eq!(leak_counts().2, 0, "a shim is left");
}

/// A failing run is logged with the component's error and the schedule goes on; a bad
/// `cron_expression` and a component without the cron export fail Create with the reason.
#[test]
fn cron_errors_are_reported() {
    let before = leak_counts();
    let failing = CRON_MANIFEST.replace(
        "environment = { NAME = \"tick\" }",
        "environment = { NAME = \"tick\", FAIL = \"no database today\" }",
    );
    let image = spin_image(
        "docker.io/wasmpod/spin-cron-fail:e2e",
        &failing,
        &[("/cron.wasm", fixtures::spin_cron_core_module())],
    );
    let id = unique_id("spin-cron-fail");
    let child = spawn(SPIN, &id, &[], &image, &["/"]);
    std::thread::sleep(Duration::from_secs(3));
    let ran = stop(&id, child);
    assert!(
        ran.stderr.matches("cron trigger tick-cron-trigger: component tick failed: it returned an error: no database today").count() >= 2,
        "{ran:?}"
    );

    let bad = CRON_MANIFEST.replacen("\"* * * * * *\"", "\"every second\"", 1);
    let image = spin_image(
        "docker.io/wasmpod/spin-cron-bad:e2e",
        &bad,
        &[("/cron.wasm", fixtures::spin_cron_core_module())],
    );
    expect_spin_create_error(
        &image,
        &[],
        &["tick-cron-trigger", "\"every second\"", "has 2 fields"],
    );
    let image = spin_image(
        "docker.io/wasmpod/spin-cron-noexport:e2e",
        CRON_MANIFEST,
        &[("/cron.wasm", fixtures::probe_component())],
    );
    expect_spin_create_error(
        &image,
        &[],
        &["component tick", "does not export `handle-cron-event`"],
    );
    assert_eq!(leak_counts(), before);
}

/// `[[trigger.command]]`: the component's `wasi:cli/run` runs once with the container's
/// arguments (after the first) and stdin; its exit status is the container's (a WASI 0.2
/// component exits with success or failure: `exit(7)` through the preview1 adapter is 1).
#[test]
fn a_command_app_gets_its_arguments_and_passes_its_exit_code() {
    let before = leak_counts();
    let manifest = r#"
spin_manifest_version = 2
[application]
name = "tool"
[[trigger.command]]
component = "probe"
[component.probe]
source = "probe.wasm"
environment = { FROM_MANIFEST = "yes" }
"#;
    let image = spin_image(
        "docker.io/wasmpod/spin-command:e2e",
        manifest,
        &[("/probe.wasm", fixtures::probe_component())],
    );
    let ran = run_ctr(&[
        "run",
        "--rm",
        "--runtime",
        SPIN,
        &image,
        &unique_id("spin-cmd"),
        "/",
        "args",
        "two",
    ]);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_eq!(
        ran.stdout, "arg[0]=probe\narg[1]=args\narg[2]=two\n",
        "{ran:?}"
    );
    let ran = run_ctr(&[
        "run",
        "--rm",
        "--runtime",
        SPIN,
        &image,
        &unique_id("spin-cmd"),
        "/",
        "env",
    ]);
    assert!(ran.stdout.contains("FROM_MANIFEST=yes"), "{ran:?}");
    let ran = run_ctr(&[
        "run",
        "--rm",
        "--runtime",
        SPIN,
        &image,
        &unique_id("spin-cmd"),
        "/",
        "exit",
        "7",
    ]);
    assert_eq!(
        (ran.code, ran.stdout.as_str()),
        (1, "exiting with 7\n"),
        "{ran:?}"
    );
    assert_eq!(leak_counts(), before);
}

/// The Python app's manifest with a `redis_port` variable, Redis on that port allowed, the
/// component's `redis_address` variable pointing there, and `triggers` appended.
fn redis_manifest(triggers: &str) -> String {
    let manifest = PY_MANIFEST
        .replace(
            "port = { default = \"1\" }",
            "port = { default = \"1\" }\nredis_port = { default = \"6379\" }",
        )
        .replace(
            "allowed_outbound_hosts = [\"http://127.0.0.1:{{ port }}\"]",
            "allowed_outbound_hosts = [\"http://127.0.0.1:{{ port }}\", \"redis://127.0.0.1:{{ redis_port }}\"]",
        )
        .replace(
            "token = \"{{ token }}\" }",
            "token = \"{{ token }}\", redis_address = \"redis://127.0.0.1:{{ redis_port }}\" }",
        );
    format!("{manifest}{triggers}")
}

/// Outbound Redis (`fermyon:spin/redis@2.0.0`) from the Python SDK app against a real
/// `redis-server`: set, incr, sadd, smembers, publish, execute, get, del, each as Redis
/// answers them; an address not in `allowed_outbound_hosts` is `invalid-address`.
#[test]
fn a_spin_app_talks_to_a_real_redis() {
    let Some(redis) = wasmpod_e2e::redis::Redis::start() else {
        return;
    };
    let manifest = redis_manifest("");
    assert!(manifest.contains("redis_address"), "{manifest}");
    let image = py_image("docker.io/wasmpod/spin-py-redis:e2e", &manifest);
    let id = unique_id("spin-redis");
    let port_var = format!("SPIN_VARIABLE_REDIS_PORT={}", redis.port);
    let (addr, child) = serve(
        &image,
        &id,
        &["--env", "SPIN_VARIABLE_TOKEN=t", "--env", &port_var],
    );
    let first = get(addr, "/redis");
    if first.0 != 200 {
        let ran = stop(&id, child);
        panic!("GET /redis: {first:?}; the app's log: {}", ran.stderr);
    }
    assert_eq!(
        first,
        (
            200,
            "hits=1 greeting=hello! colors=['blue', 'red'] append=6 missing=None deleted=1\n"
                .into()
        )
    );
    assert_eq!(get(addr, "/redis").1.split(' ').next(), Some("hits=2"));
    assert_eq!(redis.cli(&["GET", "hits"]), "2");
    assert_eq!(redis.cli(&["GET", "greeting"]), "hello!");
    // Not in allowed_outbound_hosts: refused before any connection is made.
    assert_eq!(
        get(addr, "/redis?redis://127.0.0.1:1"),
        (502, "redis: Error_InvalidAddress\n".into())
    );
    let ran = stop(&id, child);
    assert!(
        ran.stderr
            .contains("component py may not reach redis://127.0.0.1:1"),
        "{ran:?}"
    );
}

/// `[[trigger.redis]]` next to the HTTP trigger in one app, against a real `redis-server`:
/// what the HTTP handler publishes reaches the Redis handler (which writes it back to Redis),
/// as does a `redis-cli PUBLISH`; a failing handler is logged and the next message still
/// runs; when the server goes away the trigger reconnects by itself.
#[test]
fn a_redis_trigger_receives_what_the_http_trigger_publishes() {
    let Some(mut redis) = wasmpod_e2e::redis::Redis::start() else {
        return;
    };
    let manifest = redis_manifest(
        "\n[[trigger.redis]]\nchannel = \"events\"\ncomponent = \"py\"\n",
    )
    .replace(
        "version = \"0.1.0\"\n",
        "version = \"0.1.0\"\n\n[application.trigger.redis]\naddress = \"redis://127.0.0.1:{{ redis_port }}\"\n",
    );
    assert!(
        manifest.contains("[application.trigger.redis]"),
        "{manifest}"
    );
    let image = py_image("docker.io/wasmpod/spin-py-redis-trigger:e2e", &manifest);
    let id = unique_id("spin-redis-trigger");
    let port_var = format!("SPIN_VARIABLE_REDIS_PORT={}", redis.port);
    // Each message is a span, too.
    let receiver = otlp::Receiver::start();
    let endpoint = format!("OTEL_EXPORTER_OTLP_ENDPOINT={}", receiver.endpoint());
    let (addr, child) = serve(
        &image,
        &id,
        &[
            "--env",
            "SPIN_VARIABLE_TOKEN=t",
            "--env",
            &port_var,
            "--env",
            &endpoint,
        ],
    );
    redis.wait_subscribers("events", 1);
    assert_eq!(get(addr, "/redis").0, 200);
    redis.wait_value("last-message", "hit 1");
    assert_eq!(redis.cli(&["PUBLISH", "events", "fail"]), "1");
    assert_eq!(redis.cli(&["PUBLISH", "events", "from redis-cli"]), "1");
    redis.wait_value("last-message", "from redis-cli");
    assert_eq!(redis.cli(&["GET", "received"]), "2");
    // The server goes away and comes back (empty): the trigger subscribes again.
    redis.restart();
    redis.wait_subscribers("events", 1);
    assert_eq!(redis.cli(&["PUBLISH", "events", "after the restart"]), "1");
    redis.wait_value("last-message", "after the restart");
    let ran = stop(&id, child);
    let messages = |spans: &[otlp::ReceivedSpan]| {
        spans
            .iter()
            .filter(|s| s.name == "process events")
            .cloned()
            .collect::<Vec<_>>()
    };
    let spans = messages(&receiver.wait_for(Duration::from_secs(10), |s| messages(s).len() >= 4));
    assert_eq!(spans.len(), 4, "one span per message: {spans:#?}");
    assert!(
        spans.iter().all(|s| s.kind == 5
            && s.attributes.get("messaging.system").map(String::as_str) == Some("redis")),
        "{spans:#?}"
    );
    assert_eq!(
        spans.iter().filter(|s| s.status_code == 2).count(),
        1,
        "the failed message: {spans:#?}"
    );
    assert!(
        ran.stderr
            .contains("redis trigger py-redis-trigger: component py failed on a message on events")
            && ran.stderr.contains("asked to fail"),
        "{ran:?}"
    );
    assert!(
        ran.stderr
            .contains(&format!("redis redis://127.0.0.1:{}", redis.port))
            && ran.stderr.contains("trying again in"),
        "{ran:?}"
    );
}

/// Outbound Postgres, 2.0, 3.0 and 4.0, from the Python SDK app against a real PostgreSQL:
/// rows written and read back through each version with the types it has (dates in 3.0;
/// uuid, jsonb, numeric, text[] and interval in 4.0; a type no version has is
/// `unsupported` with its bytes), the server's errors (4.0 with their SQLSTATE), and an
/// address not in `allowed_outbound_hosts` refused before any connection.
#[test]
fn a_spin_app_talks_to_a_real_postgres() {
    let Some(pg) = wasmpod_e2e::postgres::Postgres::start() else {
        return;
    };
    let manifest = PY_MANIFEST.replace(
        "allowed_outbound_hosts = [\"http://127.0.0.1:{{ port }}\"]",
        &format!(
            "allowed_outbound_hosts = [\"http://127.0.0.1:{{{{ port }}}}\", \"postgres://127.0.0.1:{}\"]",
            pg.port
        ),
    );
    assert!(manifest.contains("postgres://"), "{manifest}");
    let image = py_image("docker.io/wasmpod/spin-py-pg:e2e", &manifest);
    let id = unique_id("spin-pg");
    let (addr, child) = serve(&image, &id, &["--env", "SPIN_VARIABLE_TOKEN=t"]);
    let (status, body) = get(addr, &format!("/pg?{}", pg.url()));
    let lines: Vec<&str> = body.lines().collect();
    let expected = [
        "v2 inserted 1",
        "v2 name:STR age:INT32 none:STR = [DbValue_Str(value='rex'), DbValue_Int32(value=3), DbValue_DbNull()]",
        "v2 error Error_QueryFailed: ERROR: syntax error at or near \"SELEC\"",
        "v3 [DbValue_Date(value=(2020, 2, 29)), DbValue_Datetime(value=(2026, 12, 1, 18, 30, 5, 0))]",
        "v4 Uuid Jsonb Decimal ArrayStr Interval Other",
        "v4 [DbValue_Uuid(value='6f1c2b1e-0000-4000-8000-000000000001'), DbValue_Jsonb(value=b'{\"legs\":4}'), \
         DbValue_Decimal(value='-12.340'), DbValue_ArrayStr(value=['a', None]), \
         DbValue_Interval(value=Interval(micros=1500000, days=2, months=1)), \
         DbValue_Unsupported(value=b'\\x02 \\x00\\x04\\n\\x00\\x00\\x01')]",
        "v4 error ERROR 42703 column \"nope\" does not exist",
    ];
    if status != 200 || lines != expected {
        let ran = stop(&id, child);
        panic!(
            "GET /pg: {status} {body}\nexpected: {expected:#?}\nthe app's log: {}",
            ran.stderr
        );
    }
    assert_eq!(
        pg.psql("SELECT name || ':' || coalesce(age::text, '') FROM pets ORDER BY id"),
        Ok("rex:3\ntom:\nkit:".into())
    );
    let (_, denied) = get(addr, "/pg?postgres://postgres@127.0.0.1:1/postgres");
    assert_eq!(
        denied,
        "failed Error_ConnectionFailed: address postgres://postgres@127.0.0.1:1/postgres is not permitted\n"
    );
    let ran = stop(&id, child);
    assert!(
        ran.stderr
            .contains("component py may not reach postgres://127.0.0.1:1"),
        "{ran:?}"
    );
}

/// Outbound MQTT (`fermyon:spin/mqtt@2.0.0`) from the Python SDK app to a real mosquitto:
/// one message at each QoS, each received by a subscriber in order; a broker not in
/// `allowed_outbound_hosts` is refused as Spin refuses it, one that is not there fails
/// `open` with the reason.
#[test]
fn a_spin_app_publishes_to_a_real_mqtt_broker() {
    let Some(broker) = wasmpod_e2e::mqtt::Mosquitto::start() else {
        return;
    };
    let manifest = PY_MANIFEST.replace(
        "allowed_outbound_hosts = [\"http://127.0.0.1:{{ port }}\"]",
        "allowed_outbound_hosts = [\"http://127.0.0.1:{{ port }}\", \"mqtt://127.0.0.1:*\"]",
    );
    assert!(manifest.contains("mqtt://"), "{manifest}");
    let image = py_image("docker.io/wasmpod/spin-py-mqtt:e2e", &manifest);
    let id = unique_id("spin-mqtt");
    let (addr, child) = serve(&image, &id, &["--env", "SPIN_VARIABLE_TOKEN=t"]);
    let sub = broker.subscribe("events");
    let url = format!("mqtt://127.0.0.1:{}?client_id=spin-e2e", broker.port);
    let reply = get(addr, &format!("/mqtt?{url}"));
    if reply.0 != 200 {
        let ran = stop(&id, child);
        panic!("GET /mqtt: {reply:?}; the app's log: {}", ran.stderr);
    }
    assert_eq!(reply.1, "published 3\n");
    let got: Vec<Option<String>> = (0..3).map(|_| sub.next_message()).collect();
    assert_eq!(
        got,
        ["events qos 0", "events qos 1", "events qos 2"].map(|m| Some(m.to_string()))
    );
    // Nothing listens on this port: open fails with the reason.
    let gone = get(addr, &format!("/mqtt?mqtt://127.0.0.1:{}", free_port()));
    assert!(
        gone.0 == 502 && gone.1.starts_with("mqtt: Error_ConnectionFailed"),
        "{gone:?}"
    );
    let denied = get(addr, "/mqtt?mqtt://10.0.0.1:1883");
    assert_eq!(
        denied,
        (
            502,
            "mqtt: Error_ConnectionFailed address mqtt://10.0.0.1:1883 is not permitted\n".into()
        )
    );
    let ran = stop(&id, child);
    assert!(
        ran.stderr
            .contains("component py may not reach mqtt://10.0.0.1:1883"),
        "{ran:?}"
    );
}

/// `[[trigger.mqtt]]` (the Spin MQTT trigger plugin's manifest and export) against a real
/// mosquitto: a Python component's `handle-message` gets each message on a wildcard topic
/// with the topic it came on (it publishes both back, so outbound MQTT is in the loop), a
/// failing handler is logged and the next message still runs, the trigger reconnects when
/// the broker restarts, and SIGTERM ends the app.
#[test]
fn an_mqtt_trigger_receives_messages_from_a_real_broker() {
    let Some(mut broker) = wasmpod_e2e::mqtt::Mosquitto::start() else {
        return;
    };
    let manifest = r#"
spin_manifest_version = 2

[application]
name = "spin-mqtt"
version = "0.1.0"

[application.trigger.mqtt]
address = "mqtt://127.0.0.1:{{ broker_port }}"
username = ""
password = ""
keep_alive_interval = "30"

[variables]
broker_port = { required = true }

[[trigger.mqtt]]
component = "echo"
topic = "sensors/+"
qos = "1"

[component.echo]
source = "app.wasm"
allowed_outbound_hosts = ["mqtt://127.0.0.1:{{ broker_port }}"]
variables = { broker = "mqtt://127.0.0.1:{{ broker_port }}" }
"#;
    let image = spin_image(
        "docker.io/wasmpod/spin-py-mqtt-trigger:e2e",
        manifest,
        &[("/app.wasm", fixtures::spin_py_mqtt_component())],
    );
    let echo = broker.subscribe("echo");
    // Retained: the trigger gets it when it subscribes, whenever that is.
    broker.publish("sensors/a", "first", true);
    let id = unique_id("spin-mqtt-trigger");
    let port_var = format!("SPIN_VARIABLE_BROKER_PORT={}", broker.port);
    let child = spawn(
        SPIN,
        &id,
        &["--net-host", "--env", &port_var],
        &image,
        &["/"],
    );
    // The first run compiles the component: it may take a while to start.
    let first = echo.next_message_within(Duration::from_secs(120));
    if first.is_none() {
        let ran = stop(&id, child);
        panic!(
            "no echo of the first message; the app's log: {}",
            ran.stderr
        );
    }
    assert_eq!(first.as_deref(), Some("echo sensors/a first"));
    broker.publish("sensors/b", "fail", false);
    broker.publish("sensors/b", "second", false);
    assert_eq!(
        echo.next_message().as_deref(),
        Some("echo sensors/b second")
    );
    // The broker goes away and comes back, empty: the trigger subscribes again.
    drop(echo);
    broker.restart();
    let echo = broker.subscribe("echo");
    broker.publish("sensors/c", "after the restart", true);
    assert_eq!(
        echo.next_message_within(Duration::from_secs(60)).as_deref(),
        Some("echo sensors/c after the restart")
    );
    let ran = stop(&id, child);
    assert!(
        ran.stderr.contains(
            "mqtt trigger echo-mqtt-trigger: component echo failed on a message on sensors/b"
        ) && ran.stderr.contains("asked to fail"),
        "{ran:?}"
    );
    assert!(
        ran.stderr
            .contains(&format!("mqtt mqtt://127.0.0.1:{}", broker.port))
            && ran.stderr.contains("trying again in"),
        "{ran:?}"
    );
}

/// Outbound MySQL (`fermyon:spin/mysql@2.0.0`) from the Python SDK app against a real MariaDB:
/// a row written with unsigned, 64-bit, float, binary and decimal parameters and read back
/// with each column's type (a DATE, which 2.0 has no case for, `unsupported`), the server's
/// error, and an address not in `allowed_outbound_hosts` refused before any connection.
#[test]
fn a_spin_app_talks_to_a_real_mysql() {
    let Some(db) = wasmpod_e2e::mysql::Mariadb::start() else {
        return;
    };
    let manifest = PY_MANIFEST.replace(
        "allowed_outbound_hosts = [\"http://127.0.0.1:{{ port }}\"]",
        &format!(
            "allowed_outbound_hosts = [\"http://127.0.0.1:{{{{ port }}}}\", \"mysql://127.0.0.1:{}\"]",
            db.port
        ),
    );
    assert!(manifest.contains("mysql://"), "{manifest}");
    let image = py_image("docker.io/wasmpod/spin-py-mysql:e2e", &manifest);
    let id = unique_id("spin-mysql");
    let (addr, child) = serve(&image, &id, &["--env", "SPIN_VARIABLE_TOKEN=t"]);
    let (status, body) = get(addr, &format!("/mysql?{}", db.url()));
    let lines: Vec<&str> = body.lines().collect();
    let expected = [
        "name:STR age:UINT8 big:INT64 w:FLOATING64 photo:BINARY price:STR born:OTHER none:OTHER",
        "[DbValue_Str(value='rex'), DbValue_Uint8(value=3), DbValue_Int64(value=-9000000000), \
         DbValue_Floating64(value=4.5), DbValue_Binary(value=b'\\x00\\x01'), DbValue_Str(value='12.30'), \
         DbValue_DbNull(), DbValue_DbNull()]",
        "error Error_QueryFailed: Server error: `ERROR 1054 (42S22): Unknown column 'nope' in 'SELECT''",
    ];
    if status != 200 || lines != expected {
        let ran = stop(&id, child);
        panic!(
            "GET /mysql: {status} {body}\nexpected: {expected:#?}\nthe app's log: {}",
            ran.stderr
        );
    }
    assert_eq!(
        db.sql("SELECT CONCAT(name, ':', age, ':', HEX(photo)) FROM app.pets"),
        Ok("rex:3:0001".into())
    );
    let (_, denied) = get(addr, "/mysql?mysql://root@127.0.0.1:1/app");
    assert_eq!(
        denied,
        "failed Error_ConnectionFailed: address mysql://root@127.0.0.1:1/app is not permitted\n"
    );
    let ran = stop(&id, child);
    assert!(
        ran.stderr
            .contains("component py may not reach mysql://127.0.0.1:1"),
        "{ran:?}"
    );
}
