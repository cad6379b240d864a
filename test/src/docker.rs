//! A thin client for the private dockerd that `test/lib/dockerd.sh` starts on the tests'
//! containerd (its socket in `WASMPOD_DOCKER_HOST`, its CLI in `WASMPOD_DOCKER_CLI`).
//! `make e2e-containerd-1.7` starts dockerd 26 and `make e2e-containerd-2.1` dockerd 28;
//! without one the Docker tests skip with a message.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::ctr::Ran;

/// The Docker socket and CLI under test, or `None` (with a message saying why the test
/// skips) when no dockerd was started.
pub fn available() -> Option<(String, String)> {
    match (
        std::env::var("WASMPOD_DOCKER_HOST"),
        std::env::var("WASMPOD_DOCKER_CLI"),
    ) {
        (Ok(host), Ok(cli)) => Some((host, cli)),
        _ => {
            let reason = "no dockerd under test (`make e2e-containerd-1.7` and \
                          `make e2e-containerd-2.1` start dockerd 26 and 28; bookworm's \
                          dockerd 20.10 cannot run a shim by name)"
                .to_string();
            // e2e.sh says when it starts no dockerd on purpose.
            let by_design = std::env::var("WASMPOD_E2E_DOCKER").as_deref() == Ok("off");
            crate::skip::skip(if by_design {
                crate::skip::Skip::NotApplicable(reason)
            } else {
                crate::skip::Skip::Missing(reason)
            });
            None
        }
    }
}

/// The major version of the dockerd under test.
pub fn server_major() -> u32 {
    let out = docker()
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .expect("docker version");
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("cannot read dockerd's version from {text:?}"))
}

/// A `docker` command against the private dockerd.
pub fn docker() -> Command {
    let (host, cli) = available().expect("no dockerd under test");
    let mut c = Command::new(cli);
    c.env("DOCKER_HOST", host).env(
        "DOCKER_CONFIG",
        std::env::temp_dir().join("wasmpod-e2e-docker"),
    );
    c
}

/// `docker compose` (the compose v2 plugin, run standalone) against the private dockerd.
pub fn compose(file: &Path, args: &[&str]) -> Ran {
    let (host, cli) = available().expect("no dockerd under test");
    let plugin = Path::new(&cli)
        .parent()
        .and_then(Path::parent)
        .map(|usr| usr.join("libexec/docker/cli-plugins/docker-compose"))
        .expect("docker CLI path");
    Command::new(plugin)
        .env("DOCKER_HOST", host)
        .args(["-f", file.to_str().expect("utf-8 path")])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run docker-compose")
        .into()
}

/// Runs `docker ARGS...` to completion with no stdin.
pub fn run_docker(args: &[&str]) -> Ran {
    docker()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run docker")
        .into()
}

/// `docker load -i TAR`, asserting it worked; returns what it printed.
pub fn load(tar: &Path) -> String {
    let ran = run_docker(&["load", "-i", tar.to_str().expect("utf-8 path")]);
    assert_eq!(ran.code, 0, "docker load {}: {ran:?}", tar.display());
    ran.stdout
}

/// `docker run OPTIONS IMAGE ARGS` of a Wasm image with wasmpod under `runtime`: the Wasm
/// platform, and no pulling (no registry can be reached).
pub fn run_wasm_command(runtime: &str, options: &[&str], image: &str, args: &[&str]) -> Command {
    let mut c = docker();
    c.args([
        "run",
        "--runtime",
        runtime,
        "--platform",
        "wasi/wasm",
        "--pull",
        "never",
    ])
    .args(options)
    .arg(image)
    .args(args);
    c
}

/// The IP address of container `name` on its first network.
pub fn ip_of(name: &str) -> String {
    let ran = run_docker(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
        name,
    ]);
    ran.stdout
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}
