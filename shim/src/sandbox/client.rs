//! The shim's one client for container operations: a request goes to a worker of the
//! zygote when there is one, else to a freshly exec'd, single-threaded copy of this binary
//! (`<exe> __wasmpod-container`, request as JSON on stdin, answer as JSON on stdout).
//! libcontainer forks and changes process-wide state (the working directory), which must
//! never happen inside the multi-threaded shim.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::protocol::{HelperRequest, HelperResponse, HELPER_ARG, WARNING_PREFIX};
use super::zygote::Zygote;
use crate::reaper::Reaper;

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
        self.run_unless_given_up(request, &CancellationToken::new())
            .await
    }

    /// Runs one request; once `give_up` is cancelled, a zygote worker still compiling for it
    /// stops (an exec'd helper runs to its end). Either way the answer is awaited: a container
    /// the helper made before it noticed is in the answer, for the caller to remove.
    pub async fn run_unless_given_up(
        &self,
        request: &HelperRequest,
        give_up: &CancellationToken,
    ) -> Result<Option<i32>, String> {
        let started = std::time::Instant::now();
        let result = self.run_inner(request, give_up).await;
        log::debug!("container helper {}: {:?}", request.op(), started.elapsed());
        result
    }

    async fn run_inner(
        &self,
        request: &HelperRequest,
        give_up: &CancellationToken,
    ) -> Result<Option<i32>, String> {
        let input = serde_json::to_vec(request).map_err(|e| format!("encode request: {e}"))?;
        let output = match &self.zygote {
            Some(zygote) => match run_in_zygote(zygote, &input, give_up).await {
                Ok(output) => output,
                Err(e) => {
                    log::warn!("{e}; running an exec'd helper instead");
                    self.run_exec(input).await?
                }
            },
            None => self.run_exec(input).await?,
        };
        for line in output.diagnostics.lines().filter(|l| !l.trim().is_empty()) {
            match line.strip_prefix(WARNING_PREFIX) {
                Some(warning) => log::warn!("container helper: {warning}"),
                None => log::debug!("container helper: {line}"),
            }
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
/// reads both to their end (the worker and the processes it forks close them). The write end
/// of the requester pipe is held until the answer is read, or closed when `give_up` is
/// cancelled.
async fn run_in_zygote(
    zygote: &Zygote,
    input: &[u8],
    give_up: &CancellationToken,
) -> Result<HelperOutput, String> {
    let pipe =
        || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"));
    let (response_r, response_w) = pipe()?;
    let (diagnostics_r, diagnostics_w) = pipe()?;
    let (requester_r, requester_w) = pipe()?;
    zygote.send(input, &response_w, &diagnostics_w, &requester_r)?;
    drop(response_w);
    drop(diagnostics_w);
    drop(requester_r);
    let mut answer = tokio::task::spawn_blocking(move || {
        let (response, diagnostics) = read_to_end_both(
            std::fs::File::from(response_r),
            std::fs::File::from(diagnostics_r),
        );
        HelperOutput {
            response,
            diagnostics,
            status: None,
        }
    });
    let answer = tokio::select! {
        answer = &mut answer => answer,
        () = give_up.cancelled() => {
            drop(requester_w);
            answer.await
        }
    };
    answer.map_err(|e| format!("helper I/O: {e}"))
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
