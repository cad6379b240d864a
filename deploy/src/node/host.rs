//! The node as the installer sees it: its files under the host root (`--host-root`, the host's
//! `/` mounted into the installer's pod), and its commands. Commands run in the host's own
//! namespaces (entered through the host root's `/proc/1/ns`, as `nsenter` would) so that
//! `systemctl` and containerd see the host; a host root that is only a directory (no `/proc`
//! inside: a test's tree) runs them here, with host paths mapped into the tree.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::error::NodeError;

/// The PATH host commands get (the host's usual one, whatever the installer image has).
const HOST_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A command for the host: the program is a host path, and so is every `Arg::Path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostCommand {
    pub program: String,
    pub args: Vec<Arg>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    Plain(String),
    Path(String),
}

impl HostCommand {
    pub fn new(program: &str) -> HostCommand {
        HostCommand {
            program: program.to_string(),
            args: Vec::new(),
        }
    }

    pub fn arg(mut self, a: &str) -> HostCommand {
        self.args.push(Arg::Plain(a.to_string()));
        self
    }

    pub fn path(mut self, p: &str) -> HostCommand {
        self.args.push(Arg::Path(p.to_string()));
        self
    }

    /// As an operator would type it on the host.
    pub fn display(&self) -> String {
        let mut s = self.program.clone();
        for a in &self.args {
            s.push(' ');
            s.push_str(match a {
                Arg::Plain(p) | Arg::Path(p) => p,
            });
        }
        s
    }
}

/// What a host command printed, and whether it succeeded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandOutput {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs commands on the host; a fake in the tests.
pub trait HostCommands {
    fn run(&self, cmd: &HostCommand) -> Result<CommandOutput, NodeError>;
}

/// The host: where its files are, and how its commands run.
pub struct Host {
    root: PathBuf,
    commands: Box<dyn HostCommands>,
}

impl Host {
    /// The host whose `/` is at `root`, its commands run the way the root allows.
    pub fn open(root: &Path) -> Result<Host, NodeError> {
        let root = root
            .canonicalize()
            .map_err(NodeError::io(root.to_path_buf()))?;
        let ns = root.join("proc/1/ns");
        let commands: Box<dyn HostCommands> = if ns.join("mnt").exists() {
            Box::new(InHostNamespaces { ns })
        } else {
            Box::new(InTree { root: root.clone() })
        };
        Ok(Host { root, commands })
    }

    /// A host with given commands (the tests' fakes).
    pub fn with_commands(root: &Path, commands: Box<dyn HostCommands>) -> Host {
        Host {
            root: root.to_path_buf(),
            commands,
        }
    }

    /// Where the host path `host_path` is, from here.
    pub fn path(&self, host_path: &str) -> PathBuf {
        self.root.join(host_path.trim_start_matches('/'))
    }

    pub fn exists(&self, host_path: &str) -> bool {
        self.path(host_path).exists()
    }

    /// The first of `candidates` (host paths) that is an executable file.
    pub fn find_program(&self, candidates: &[&str]) -> Option<String> {
        candidates
            .iter()
            .find(|c| {
                std::fs::metadata(self.path(c))
                    .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                    .unwrap_or(false)
            })
            .map(|c| c.to_string())
    }

    pub fn run(&self, cmd: &HostCommand) -> Result<CommandOutput, NodeError> {
        self.commands.run(cmd)
    }

    /// The file's text, or `None` when there is no such file.
    pub fn read_optional(&self, host_path: &str) -> Result<Option<String>, NodeError> {
        let path = self.path(host_path);
        match std::fs::read(&path) {
            Ok(bytes) => String::from_utf8(bytes)
                .map(Some)
                .map_err(|_| NodeError::Config(format!("{host_path} is not UTF-8 text"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(NodeError::io(path)(e)),
        }
    }

    /// Replaces the file atomically (a temporary file beside it, synced, renamed over it),
    /// keeping the old file's mode, so neither containerd nor a running shim ever sees a
    /// partial file.
    pub fn write_atomic(&self, host_path: &str, bytes: &[u8], mode: u32) -> Result<(), NodeError> {
        let path = self.path(host_path);
        let dir = path
            .parent()
            .ok_or_else(|| NodeError::Config(format!("{host_path} has no directory")))?;
        std::fs::create_dir_all(dir).map_err(NodeError::io(dir))?;
        let mode = std::fs::metadata(&path)
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or(mode);
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let tmp = dir.join(format!(".{name}.wasmpod-{}", std::process::id()));
        let result = (|| {
            let mut f = File::create(&tmp)?;
            f.write_all(bytes)?;
            f.set_permissions(std::fs::Permissions::from_mode(mode))?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            File::open(dir)?.sync_all()
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map_err(NodeError::io(path))
    }

    pub fn remove_file(&self, host_path: &str) -> Result<(), NodeError> {
        let path = self.path(host_path);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(NodeError::io(path)(e)),
        }
    }

    /// Removes the directory if it is empty (and says nothing if it is not).
    pub fn remove_dir_if_empty(&self, host_path: &str) {
        let _ = std::fs::remove_dir(self.path(host_path));
    }

    /// Makes `link` (a host path) a symlink to `target` (a host path, as the host resolves
    /// it), replacing an older symlink of ours.
    pub fn symlink(&self, target: &str, link: &str) -> Result<(), NodeError> {
        let path = self.path(link);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(NodeError::io(dir))?;
        }
        let tmp = path.with_file_name(format!(
            ".{}.wasmpod-{}",
            path.file_name().unwrap_or_default().to_string_lossy(),
            std::process::id()
        ));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(target, &tmp).map_err(NodeError::io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(NodeError::io(path))
    }

    /// Where the symlink `link` points, if it is one.
    pub fn read_link(&self, link: &str) -> Option<String> {
        std::fs::read_link(self.path(link))
            .ok()
            .map(|p| p.to_string_lossy().into_owned())
    }

    /// The sha256 of the host file, if there is one.
    pub fn sha256(&self, host_path: &str) -> Result<Option<String>, NodeError> {
        let path = self.path(host_path);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(sha256_hex(&bytes))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(NodeError::io(path)(e)),
        }
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Commands in the host's namespaces: the child joins PID 1's mount, UTS, IPC, network and
/// cgroup namespaces before it executes, so its `/` is the host's.
struct InHostNamespaces {
    ns: PathBuf,
}

impl HostCommands for InHostNamespaces {
    fn run(&self, cmd: &HostCommand) -> Result<CommandOutput, NodeError> {
        let mut files = Vec::new();
        for kind in ["cgroup", "ipc", "uts", "net", "mnt"] {
            let path = self.ns.join(kind);
            match File::open(&path) {
                Ok(f) => files.push(f),
                // Kernels without cgroup namespaces: join the others.
                Err(_) if kind == "cgroup" => {}
                Err(e) => return Err(NodeError::io(path)(e)),
            }
        }
        let fds: Vec<i32> = files.iter().map(|f| f.as_raw_fd()).collect();
        let mut command = Command::new(&cmd.program);
        command.env_clear().env("PATH", HOST_PATH);
        for a in &cmd.args {
            match a {
                Arg::Plain(s) | Arg::Path(s) => command.arg(s),
            };
        }
        // SAFETY: only async-signal-safe calls (setns) between fork and exec.
        unsafe {
            command.pre_exec(move || {
                for fd in &fds {
                    if libc::setns(*fd, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        output(command, cmd)
    }
}

/// Commands in this process's namespaces, for a host root that is a plain directory: the
/// program and the path arguments are looked up inside the tree.
struct InTree {
    root: PathBuf,
}

impl HostCommands for InTree {
    fn run(&self, cmd: &HostCommand) -> Result<CommandOutput, NodeError> {
        let inside = |p: &str| self.root.join(p.trim_start_matches('/'));
        let mut command = Command::new(inside(&cmd.program));
        for a in &cmd.args {
            match a {
                Arg::Plain(s) => command.arg(s),
                Arg::Path(p) => command.arg(inside(p)),
            };
        }
        output(command, cmd)
    }
}

fn output(mut command: Command, cmd: &HostCommand) -> Result<CommandOutput, NodeError> {
    let out = command
        .output()
        .map_err(|e| NodeError::Command(format!("{}: {e}", cmd.display())))?;
    Ok(CommandOutput {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Host commands for unit tests: answers by program name, and a record of what ran.
#[cfg(test)]
pub mod fake {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::rc::Rc;

    use super::*;

    #[derive(Clone, Default)]
    pub struct FakeCommands {
        pub ran: Rc<RefCell<Vec<String>>>,
        pub answers: Rc<RefCell<HashMap<String, CommandOutput>>>,
    }

    impl FakeCommands {
        /// Answers commands whose display starts with `prefix`.
        pub fn answer(&self, prefix: &str, success: bool, stdout: &str) {
            self.answers.borrow_mut().insert(
                prefix.to_string(),
                CommandOutput {
                    success,
                    stdout: stdout.to_string(),
                    stderr: if success {
                        String::new()
                    } else {
                        stdout.to_string()
                    },
                },
            );
        }
    }

    impl HostCommands for FakeCommands {
        fn run(&self, cmd: &HostCommand) -> Result<CommandOutput, NodeError> {
            let line = cmd.display();
            self.ran.borrow_mut().push(line.clone());
            let answers = self.answers.borrow();
            let best = answers
                .iter()
                .filter(|(p, _)| line.starts_with(p.as_str()))
                .max_by_key(|(p, _)| p.len());
            match best {
                Some((_, out)) => Ok(out.clone()),
                None => Err(NodeError::Command(format!("{line}: not found"))),
            }
        }
    }
}
