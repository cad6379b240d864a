//! The wire protocol between the shim and its container helpers (zygote workers or exec'd
//! helpers): one JSON [`HelperRequest`] in, one JSON [`HelperResponse`] out. A leaf: it
//! names the types, and nothing here runs anything.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use wasmpod_oci::Workload;

/// The first argument that puts the binary in helper mode.
pub const HELPER_ARG: &str = "__wasmpod-container";
/// The start of a helper's diagnostics line that the shim logs as a warning (the others it
/// logs at debug level).
pub const WARNING_PREFIX: &str = "warning: ";
/// The first argument that puts the binary in compile mode (see `compile_cmd`).
pub const COMPILE_ARG: &str = "__wasmpod-compile";

/// The node's compile cache, where the helper gets a Wasm program's compiled code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheConfig {
    /// The cache's directory.
    pub dir: PathBuf,
    /// The cache's size bound.
    pub max_bytes: u64,
    /// How long compiling one Wasm file may take, in seconds.
    #[serde(default = "default_compile_timeout_secs")]
    pub compile_timeout_secs: u64,
    /// Whether compiles run in the container's cgroup (else in the shim's).
    #[serde(default = "in_container")]
    pub compile_in_container: bool,
}

fn in_container() -> bool {
    true
}

/// How long a compile may take when the runtime options do not say.
pub const DEFAULT_COMPILE_TIMEOUT_SECS: u64 = 120;

fn default_compile_timeout_secs() -> u64 {
    DEFAULT_COMPILE_TIMEOUT_SECS
}

impl CacheConfig {
    /// How long compiling one Wasm file may take.
    pub fn compile_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.compile_timeout_secs)
    }
}

/// A new container process: the workload it runs (located by the shim, see
/// `wasmpod_oci::locate`), and its stdio.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Launch {
    /// What the process runs, and with what.
    pub workload: Workload,
    /// Where compiled Wasm comes from.
    pub cache: CacheConfig,
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
        /// The init.
        launch: Launch,
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
        /// The process.
        launch: Launch,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_roundtrip() {
        let req = HelperRequest::Create {
            root: "/run/x".into(),
            id: "c".into(),
            bundle: "/b".into(),
            launch: Launch {
                workload: Workload {
                    program: wasmpod_oci::Program::Wasm {
                        kind: wasmpod_oci::WasmKind::CoreModule,
                        path: "/hello.wasm".into(),
                        host_path: "/b/rootfs/hello.wasm".into(),
                    },
                    args: vec!["/hello.wasm".into()],
                    env: vec![("K".into(), "v".into())],
                    cwd: "/".into(),
                    memory_limit: Some(1 << 26),
                    filesystem: Default::default(),
                    confinement: Default::default(),
                    settings: {
                        let mut s = wasmpod_oci::settings::Settings::default();
                        s.set(wasmpod_oci::settings::Knob::WasmFeatures, "-threads")
                            .unwrap();
                        s
                    },
                },
                cache: CacheConfig {
                    dir: "/var/lib/wasmpod/cache".into(),
                    max_bytes: 1 << 30,
                    compile_timeout_secs: DEFAULT_COMPILE_TIMEOUT_SECS,
                    compile_in_container: true,
                },
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
        let HelperRequest::Create { launch, .. } = back else {
            panic!("not a create: {s}");
        };
        assert_eq!(launch.workload.memory_limit, Some(1 << 26));
        let resp = HelperResponse::Error {
            message: "no".into(),
        };
        let s = serde_json::to_string(&resp).unwrap();
        assert_eq!(serde_json::from_str::<HelperResponse>(&s).unwrap(), resp);
    }
}
