//! The shim's side of the container helper: a fresh, single-threaded copy of this binary
//! (`<exe> __wasmpod-container`) that does every libcontainer operation. libcontainer forks and
//! changes process-wide state (the working directory), which must never happen inside the
//! multi-threaded shim. A request goes in as JSON on stdin; the answer comes back as JSON on
//! stdout.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::reaper::Reaper;
use crate::zygote::Zygote;

/// The first argument that puts the binary in helper mode.
pub const HELPER_ARG: &str = "__wasmpod-container";
/// The first argument that puts the binary in compile mode (see `compile_cmd`).
pub const COMPILE_ARG: &str = "__wasmpod-compile";

/// What the workload is, as decided by the shim before the container is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Payload {
    /// A Wasm module or component, run by wasmpod's runtime inside the container.
    Wasm(wasmpod_oci::WasmKind),
    /// A native program, executed as any container's would be.
    Native,
}

/// Where the helper gets a Wasm payload's compiled code from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WasmSource {
    /// The Wasm file, as the host sees it (in the mounted rootfs).
    pub host_path: PathBuf,
    /// The compile cache's directory.
    pub cache_dir: PathBuf,
    /// The compile cache's size bound.
    pub cache_max_bytes: u64,
}

/// The program a new container process runs, and its stdio.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Program {
    /// The program as the container sees it.
    pub entrypoint: PathBuf,
    /// What the program is.
    pub payload: Payload,
    /// For a Wasm payload: its file and the compile cache.
    pub wasm: Option<WasmSource>,
    /// containerd's stdin FIFO (empty: none).
    pub stdin: String,
    /// containerd's stdout FIFO or file.
    pub stdout: String,
    /// containerd's stderr FIFO or file.
    pub stderr: String,
    /// The shim's console socket, when the process has a terminal.
    pub console_socket: Option<PathBuf>,
}

/// One libcontainer operation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum HelperRequest {
    /// Create the container (namespaces, cgroup, rootfs) and leave its init waiting for start.
    Create {
        /// libcontainer's state directory.
        root: PathBuf,
        /// The container id.
        id: String,
        /// The bundle (with `config.json`; the rootfs already mounted).
        bundle: PathBuf,
        /// The init's program.
        program: Program,
        /// Use the systemd cgroup driver.
        #[serde(default)]
        systemd_cgroup: bool,
    },
    /// Run another process in a running container (`ctr task exec`, `kubectl exec`).
    Exec {
        /// libcontainer's state directory.
        root: PathBuf,
        /// The container id.
        id: String,
        /// A file holding the OCI `Process` to run.
        process: PathBuf,
        /// The process's program.
        program: Program,
    },
    /// Let a created container's init run its payload.
    Start {
        /// libcontainer's state directory.
        root: PathBuf,
        /// The container id.
        id: String,
    },
    /// Remove a container: kill what is left, remove its cgroup and state.
    Delete {
        /// libcontainer's state directory.
        root: PathBuf,
        /// The container id.
        id: String,
    },
}

impl HelperRequest {
    /// The operation's name, for logs.
    pub fn op(&self) -> &'static str {
        match self {
            HelperRequest::Create { .. } => "create",
            HelperRequest::Exec { .. } => "exec",
            HelperRequest::Start { .. } => "start",
            HelperRequest::Delete { .. } => "delete",
        }
    }
}

/// The helper's answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum HelperResponse {
    /// Done; `pid` is the container init's pid (host pid namespace) after Create.
    Ok {
        /// The init pid, for Create.
        pid: Option<i32>,
    },
    /// Failed, with a message meant for the user.
    Error {
        /// What went wrong.
        message: String,
    },
}

/// How the shim waits for the helper process.
#[derive(Clone)]
pub enum ChildWait {
    /// Through the shim's reaper (the serving shim, which reaps all children).
    Reaper(Arc<Reaper>),
    /// With a plain `wait` (the short-lived `delete` action, which has no reaper).
    Direct,
}

/// Runs helper requests.
#[derive(Clone)]
pub struct HelperRunner {
    exe: PathBuf,
    wait: ChildWait,
    zygote: Option<Arc<Zygote>>,
}

/// What a helper printed, and how it ended when that is known.
struct HelperOutput {
    response: Vec<u8>,
    diagnostics: String,
    status: Option<i32>,
}

impl HelperRunner {
    /// A runner that executes this binary (through `/proc/self/exe`, so an upgrade of the
    /// file on disk does not mix versions within one shim).
    pub fn new(wait: ChildWait) -> HelperRunner {
        HelperRunner {
            exe: PathBuf::from("/proc/self/exe"),
            wait,
            zygote: None,
        }
    }

    /// Sends requests to `zygote` first (an exec'd helper when it cannot take them).
    pub fn with_zygote(mut self, zygote: Option<Arc<Zygote>>) -> HelperRunner {
        self.zygote = zygote;
        self
    }

    /// Runs one request to completion.
    pub async fn run(&self, request: &HelperRequest) -> Result<Option<i32>, String> {
        let started = std::time::Instant::now();
        let result = self.run_inner(request).await;
        log::debug!("container helper {}: {:?}", request.op(), started.elapsed());
        result
    }

    async fn run_inner(&self, request: &HelperRequest) -> Result<Option<i32>, String> {
        let input = serde_json::to_vec(request).map_err(|e| format!("encode request: {e}"))?;
        let output = match &self.zygote {
            Some(zygote) => match run_in_zygote(zygote, &input).await {
                Ok(output) => output,
                Err(e) => {
                    log::warn!("{e}; running an exec'd helper instead");
                    self.run_exec(input).await?
                }
            },
            None => self.run_exec(input).await?,
        };
        for line in output.diagnostics.lines().filter(|l| !l.trim().is_empty()) {
            log::debug!("container helper: {line}");
        }
        let status = output
            .status
            .map(|s| format!("status {s}"))
            .unwrap_or_else(|| "no response".into());
        match serde_json::from_slice::<HelperResponse>(&output.response) {
            Ok(HelperResponse::Ok { pid }) => Ok(pid),
            Ok(HelperResponse::Error { message }) => Err(message),
            Err(_) => Err(format!(
                "the container helper failed ({status}): {}",
                last_line(&output.diagnostics)
            )),
        }
    }

    /// Runs the request in a freshly exec'd helper.
    async fn run_exec(&self, input: Vec<u8>) -> Result<HelperOutput, String> {
        // The container's init is a fork of the helper: name it for `ps` on the node.
        let mut child = self_command(&self.exe, "wasmpod-init", HELPER_ARG)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start the container helper: {e}"))?;
        let pid = child.id() as i32;
        let exited = match &self.wait {
            ChildWait::Reaper(r) => Some(r.watch(pid)),
            ChildWait::Direct => None,
        };
        let mut stdin = child.stdin.take();
        let mut stdout = child.stdout.take();
        let mut stderr = child.stderr.take();
        let io = tokio::task::spawn_blocking(move || {
            if let Some(mut s) = stdin.take() {
                let _ = s.write_all(&input);
            }
            match (stdout.take(), stderr.take()) {
                (Some(out), Some(err)) => read_to_end_both(out, err),
                _ => (Vec::new(), String::new()),
            }
        });
        let (out, err) = io.await.map_err(|e| format!("helper I/O: {e}"))?;
        let status = match exited {
            Some(rx) => rx.await.unwrap_or(-1),
            None => tokio::task::spawn_blocking(move || child.wait())
                .await
                .ok()
                .and_then(|r| r.ok())
                .and_then(|s| s.code())
                .unwrap_or(-1),
        };
        Ok(HelperOutput {
            response: out,
            diagnostics: err,
            status: Some(status),
        })
    }
}

/// Runs the request in a worker of the zygote: sends it with the write ends of two pipes and
/// reads both to their end (the worker and the processes it forks close them).
async fn run_in_zygote(zygote: &Zygote, input: &[u8]) -> Result<HelperOutput, String> {
    let pipe =
        || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"));
    let (response_r, response_w) = pipe()?;
    let (diagnostics_r, diagnostics_w) = pipe()?;
    zygote.send(input, &response_w, &diagnostics_w)?;
    drop(response_w);
    drop(diagnostics_w);
    tokio::task::spawn_blocking(move || {
        let (response, diagnostics) = read_to_end_both(
            std::fs::File::from(response_r),
            std::fs::File::from(diagnostics_r),
        );
        HelperOutput {
            response,
            diagnostics,
            status: None,
        }
    })
    .await
    .map_err(|e| format!("helper I/O: {e}"))
}

/// Reads a helper's response and diagnostics to their ends at once (the diagnostics on a
/// thread of their own, so that neither pipe fills while the other is read).
fn read_to_end_both(
    mut response: impl Read,
    mut diagnostics: impl Read + Send + 'static,
) -> (Vec<u8>, String) {
    let err_reader = std::thread::spawn(move || {
        let mut buf = String::new();
        let _ = diagnostics.read_to_string(&mut buf);
        buf
    });
    let mut out = Vec::new();
    let _ = response.read_to_end(&mut out);
    (out, err_reader.join().unwrap_or_default())
}

/// This binary (`exe`, normally `/proc/self/exe`) in one of its internal modes, shown as
/// `name` in `ps`.
pub fn self_command(exe: &std::path::Path, name: &str, mode: &str) -> Command {
    let mut command = Command::new(exe);
    std::os::unix::process::CommandExt::arg0(&mut command, name);
    command.arg(mode);
    command
}

fn last_line(s: &str) -> &str {
    s.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no output")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_roundtrip() {
        let req = HelperRequest::Create {
            root: "/run/x".into(),
            id: "c".into(),
            bundle: "/b".into(),
            program: Program {
                entrypoint: "/hello.wasm".into(),
                payload: Payload::Wasm(wasmpod_oci::WasmKind::CoreModule),
                wasm: None,
                stdin: String::new(),
                stdout: "/o".into(),
                stderr: "/e".into(),
                console_socket: None,
            },
            systemd_cgroup: false,
        };
        let s = serde_json::to_string(&req).unwrap();
        assert!(s.contains(r#""op":"create""#), "{s}");
        let back: HelperRequest = serde_json::from_str(&s).unwrap();
        assert!(matches!(back, HelperRequest::Create { .. }));
        let resp = HelperResponse::Error {
            message: "no".into(),
        };
        let s = serde_json::to_string(&resp).unwrap();
        assert_eq!(serde_json::from_str::<HelperResponse>(&s).unwrap(), resp);
    }
}
