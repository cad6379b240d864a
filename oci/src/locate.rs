//! Locating a container's workload: from the parsed `config.json` ([`WorkloadSpec`]) and the
//! rootfs (or, when `args[0]` is not a file there, a Wasm layer of the image that the caller
//! fetched), the one [`Workload`] value the container helper and the container's init are
//! given. Nothing after this step reads `config.json` for what to run.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::classify::{EntrypointKind, NativeKind, WasmKind};
use crate::filesystem::GuestFilesystem;
use crate::resolve::{host_path, resolve_entrypoint, resolve_in_root};
use crate::settings::Settings;
use crate::spin::{rootfs as spin_rootfs, SpinApp};
use crate::workload::{env_and_cwd, Confinement, WorkloadSpec};
use crate::OciError;

/// What a container process runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Program {
    /// A native program, `execve`d like any container's.
    Native {
        /// The program as the container sees it.
        path: PathBuf,
        /// The same file as the host sees it (in the mounted rootfs).
        host_path: PathBuf,
    },
    /// Wasm, run by wasmpod's runtime inside the container.
    Wasm {
        /// Core module or component.
        kind: WasmKind,
        /// `args[0]` as the container sees it (a file in the rootfs, or the layer's name).
        path: PathBuf,
        /// The Wasm bytes as the host sees them (in the mounted rootfs, or the node's copy
        /// of an image layer).
        host_path: PathBuf,
    },
    /// A Spin application, served by wasmpod's Spin host.
    Spin(Box<SpinApp>),
}

impl Program {
    /// Whether wasmpod's runtime runs it (a Wasm program or a Spin app), rather than
    /// `execve`.
    pub fn is_wasm(&self) -> bool {
        !matches!(self, Program::Native { .. })
    }

    /// The Wasm kind, for a Wasm program.
    pub fn wasm_kind(&self) -> Option<WasmKind> {
        match self {
            Program::Wasm { kind, .. } => Some(*kind),
            Program::Native { .. } | Program::Spin(_) => None,
        }
    }
}

/// Everything one container process runs with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workload {
    /// What runs.
    pub program: Program,
    /// `argv`, `args[0]` included.
    pub args: Vec<String>,
    /// The environment, in order (a later name wins).
    pub env: Vec<(String, String)>,
    /// The working directory (absolute).
    pub cwd: String,
    /// The container's memory limit in bytes, if any.
    pub memory_limit: Option<u64>,
    /// What of the container's filesystem is read-only.
    #[serde(default)]
    pub filesystem: GuestFilesystem,
    /// What the init must apply itself, beyond what libcontainer applies.
    pub confinement: Confinement,
    /// The knobs it runs with (annotations over the handler's options).
    #[serde(default)]
    pub settings: Settings,
}

/// Where [`locate`] looked.
#[derive(Debug)]
pub enum Located {
    /// `args[0]` is a runnable file in the rootfs.
    Found(Workload),
    /// `args[0]` is not a file in the rootfs (missing, or a directory): the image may carry
    /// the program as a Wasm layer.
    NotInRootfs(NotInRootfs),
}

/// A workload whose program is not in the rootfs.
#[derive(Debug)]
pub struct NotInRootfs {
    args: Vec<String>,
    env: Vec<(String, String)>,
    cwd: String,
    memory_limit: Option<u64>,
    filesystem: GuestFilesystem,
    confinement: Confinement,
    settings: Settings,
    error: OciError,
}

impl NotInRootfs {
    /// The workload, run from a Wasm image layer at `host_path`.
    pub fn in_layer(self, host_path: PathBuf) -> Result<Workload, OciError> {
        let kind = match EntrypointKind::of_file(&host_path)? {
            EntrypointKind::Wasm(kind) => kind,
            other => {
                return Err(OciError::NotRunnable {
                    path: self.args[0].clone(),
                    what: other.describe(),
                })
            }
        };
        Ok(Workload {
            program: Program::Wasm {
                kind,
                path: PathBuf::from(&self.args[0]),
                host_path,
            },
            args: self.args,
            env: self.env,
            cwd: self.cwd,
            memory_limit: self.memory_limit,
            filesystem: self.filesystem,
            confinement: self.confinement,
            settings: self.settings,
        })
    }

    /// The workload, a Spin app read from the image's layers (`SPIN_COMPONENTS_TO_RETAIN`
    /// applied).
    pub fn spin_app(self, mut app: SpinApp) -> Result<Workload, OciError> {
        retain_components(&mut app, &self.env)?;
        Ok(Workload {
            program: Program::Spin(Box::new(app)),
            args: self.args,
            env: self.env,
            cwd: self.cwd,
            memory_limit: self.memory_limit,
            filesystem: self.filesystem,
            confinement: self.confinement,
            settings: self.settings,
        })
    }

    /// Why the rootfs did not have it.
    pub fn into_error(self) -> OciError {
        self.error
    }
}

/// The environment variable that keeps only some of a Spin app's components.
pub const SPIN_COMPONENTS_TO_RETAIN: &str = "SPIN_COMPONENTS_TO_RETAIN";

/// Locates the workload of a container whose spec is `spec`, in its rootfs: `args[0]` when
/// it is a file there; otherwise the Spin app of a rootfs holding `/spin.toml` (whatever
/// `args[0]` says, `/` by convention).
pub fn locate(spec: &WorkloadSpec) -> Result<Located, OciError> {
    let found = program_in(&spec.rootfs, &spec.args[0], &spec.cwd, &spec.env);
    let program = match found {
        Ok(program) => program,
        Err(OciError::EntrypointNotFound(_) | OciError::EntrypointNotAFile(_))
            if spin_rootfs::has_manifest(&spec.rootfs) =>
        {
            Program::Spin(Box::new(spin_app(spec)?))
        }
        // Not a file in the rootfs (missing, or a directory such as the `/` that Wasm-layer
        // images name by convention): the caller may find it in the image's layers.
        Err(error @ (OciError::EntrypointNotFound(_) | OciError::EntrypointNotAFile(_))) => {
            return Ok(Located::NotInRootfs(NotInRootfs {
                args: spec.args.clone(),
                env: spec.env.clone(),
                cwd: spec.cwd.clone(),
                memory_limit: spec.memory_limit,
                filesystem: spec.filesystem.clone(),
                confinement: spec.confinement.clone(),
                settings: spec.settings.clone(),
                error,
            }))
        }
        Err(e) => return Err(e),
    };
    Ok(Located::Found(Workload {
        program,
        args: spec.args.clone(),
        env: spec.env.clone(),
        cwd: spec.cwd.clone(),
        memory_limit: spec.memory_limit,
        filesystem: spec.filesystem.clone(),
        confinement: spec.confinement.clone(),
        settings: spec.settings.clone(),
    }))
}

/// The Spin app in `spec`'s rootfs, with only the components `SPIN_COMPONENTS_TO_RETAIN`
/// names (when set).
fn spin_app(spec: &WorkloadSpec) -> Result<SpinApp, OciError> {
    let mut app = spin_rootfs::load(&spec.rootfs)?;
    retain_components(&mut app, &spec.env)?;
    Ok(app)
}

/// Applies `SPIN_COMPONENTS_TO_RETAIN` from `env` to `app`.
pub fn retain_components(app: &mut SpinApp, env: &[(String, String)]) -> Result<(), OciError> {
    let Some((_, keep)) = env
        .iter()
        .rev()
        .find(|(k, _)| k == SPIN_COMPONENTS_TO_RETAIN)
    else {
        return Ok(());
    };
    let keep: Vec<String> = keep
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if keep.is_empty() {
        return Ok(());
    }
    app.retain_components(&keep)
        .map_err(|reason| OciError::SpinApp {
            file: app.origin.clone(),
            reason,
        })
}

/// Locates an exec'd process (`process`, the OCI `Process` of `ctr task exec` or a CRI
/// ExecSync) in a running container whose rootfs is `rootfs`, whose memory limit is
/// `memory_limit`, whose filesystem is `filesystem` and whose knobs are `settings`.
pub fn locate_exec(
    process: &oci_spec::runtime::Process,
    rootfs: &Path,
    memory_limit: Option<u64>,
    filesystem: &GuestFilesystem,
    settings: &Settings,
) -> Result<Workload, OciError> {
    let args = process.args().clone().unwrap_or_default();
    let arg0 = args
        .first()
        .filter(|a| !a.is_empty())
        .ok_or(OciError::NoArgs)?;
    let (env, cwd) = env_and_cwd(process)?;
    let program = program_in(rootfs, arg0, &cwd, &env)?;
    Ok(Workload {
        program,
        args,
        env,
        cwd,
        memory_limit,
        filesystem: filesystem.clone(),
        confinement: Confinement::of_process(process),
        settings: settings.clone(),
    })
}

/// Finds `arg0` in `rootfs` and says what it is.
fn program_in(
    rootfs: &Path,
    arg0: &str,
    cwd: &str,
    env: &[(String, String)],
) -> Result<Program, OciError> {
    let path_env = env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str());
    let entry = resolve_entrypoint(rootfs, arg0, cwd, path_env)?;
    match EntrypointKind::of_file(&entry.on_host)? {
        EntrypointKind::Wasm(kind) => Ok(Program::Wasm {
            kind,
            path: entry.in_container,
            host_path: entry.on_host,
        }),
        EntrypointKind::Native(kind) => {
            match kind {
                NativeKind::Script => {
                    check_interpreter(rootfs, &entry.in_container, &entry.on_host)?
                }
                NativeKind::Elf => check_machine(&entry.in_container, &entry.on_host)?,
            }
            Ok(Program::Native {
                path: entry.in_container,
                host_path: entry.on_host,
            })
        }
        other @ (EntrypointKind::Unknown | EntrypointKind::UnknownWasmVersion) => {
            Err(OciError::NotRunnable {
                path: entry.in_container.display().to_string(),
                what: other.describe(),
            })
        }
    }
}

/// A native program must be built for this node's machine: the kernel's `execve` would fail
/// with a bare "exec format error" in the container's init otherwise.
fn check_machine(program: &Path, on_host: &Path) -> Result<(), OciError> {
    let (Some(machine), Some(host)) = (
        crate::classify::elf_machine(on_host),
        crate::classify::host_machine(),
    ) else {
        return Ok(());
    };
    // The 32-bit sibling runs in compat mode; a binfmt_misc handler (qemu-user) may run
    // anything else: then the kernel decides.
    let compat = matches!((host, machine), (62, 3) | (183, 40));
    if machine == host || compat || foreign_binaries_handled() {
        return Ok(());
    }
    Err(OciError::ForeignMachine {
        program: program.display().to_string(),
        machine: crate::classify::machine_name(machine),
        host: crate::classify::machine_name(host),
    })
}

/// Whether the node has binfmt_misc handlers registered (as qemu-user installs), which may
/// run programs built for other machines.
fn foreign_binaries_handled() -> bool {
    std::fs::read_dir("/proc/sys/fs/binfmt_misc")
        .map(|entries| {
            entries
                .flatten()
                .any(|e| !matches!(e.file_name().to_str(), Some("register" | "status")))
        })
        .unwrap_or(false)
}

/// The interpreter a `#!` script names (an absolute path) must be a file in the container:
/// the kernel's `execve` would fail with a bare "No such file or directory" otherwise.
fn check_interpreter(rootfs: &Path, script: &Path, on_host: &Path) -> Result<(), OciError> {
    let mut head = [0u8; 256];
    let n = std::fs::File::open(on_host)
        .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
        .map_err(OciError::io("read", on_host))?;
    let line = head[..n].strip_prefix(b"#!").unwrap_or(&head[..n]);
    let line = line.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let Some(interpreter) = line
        .split_whitespace()
        .next()
        .filter(|i| i.starts_with('/'))
    else {
        return Ok(());
    };
    let found = resolve_in_root(rootfs, Path::new(interpreter))
        .map(|p| host_path(rootfs, &p))
        .is_ok_and(|p| p.is_file());
    if found {
        Ok(())
    } else {
        Err(OciError::MissingInterpreter {
            script: script.display().to_string(),
            interpreter: interpreter.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_in(rootfs: &Path, args: &[&str]) -> WorkloadSpec {
        let config = serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {
                "args": args,
                "cwd": "/work",
                "env": ["PATH=/bin", "K=v"],
                "capabilities": {"bounding": []},
                "user": {"uid": 0, "gid": 0}
            },
            "root": {"path": rootfs},
            "linux": {"resources": {"memory": {"limit": 67108864}}}
        });
        let spec: oci_spec::runtime::Spec = serde_json::from_value(config).unwrap();
        WorkloadSpec::from_spec(&spec, rootfs).unwrap()
    }

    fn rootfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("bin")).unwrap();
        std::fs::create_dir_all(dir.path().join("work")).unwrap();
        std::fs::write(dir.path().join("app.wasm"), b"\0asm\x0d\0\x01\0").unwrap();
        std::fs::write(dir.path().join("bin/sh"), b"\x7fELF\x02\x01\x01\0").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"plain text").unwrap();
        dir
    }

    #[test]
    fn a_wasm_file_in_the_rootfs_is_one_workload() {
        let root = rootfs();
        let Located::Found(w) = locate(&spec_in(root.path(), &["/app.wasm", "x"])).unwrap() else {
            panic!("not found");
        };
        assert_eq!(
            w.program,
            Program::Wasm {
                kind: WasmKind::Component,
                path: "/app.wasm".into(),
                host_path: root.path().join("app.wasm"),
            }
        );
        assert_eq!(w.args, ["/app.wasm", "x"]);
        assert_eq!(w.cwd, "/work");
        assert_eq!(w.memory_limit, Some(64 << 20));
        assert!(w.env.contains(&("K".into(), "v".into())));
        // Omitted capability sets are for the init to clear.
        assert_eq!(w.confinement.omitted_capability_sets.len(), 4);
        // It crosses process boundaries as JSON, unchanged.
        let json = serde_json::to_string(&w).unwrap();
        assert_eq!(serde_json::from_str::<Workload>(&json).unwrap(), w);
    }

    #[test]
    fn native_programs_are_found_on_path() {
        let root = rootfs();
        let Located::Found(w) = locate(&spec_in(root.path(), &["sh", "-c", "true"])).unwrap()
        else {
            panic!("not found");
        };
        assert_eq!(
            w.program,
            Program::Native {
                path: "/bin/sh".into(),
                host_path: root.path().join("bin/sh"),
            }
        );
        assert_eq!(w.program.wasm_kind(), None);
    }

    #[test]
    fn a_script_needs_its_interpreter_in_the_container() {
        let root = rootfs();
        std::fs::write(root.path().join("ok.sh"), b"#! /bin/sh -e\necho hi\n").unwrap();
        std::fs::write(root.path().join("bad.sh"), b"#!/usr/bin/nope\n").unwrap();
        std::fs::write(root.path().join("env.sh"), b"#!env\n").unwrap();
        assert!(matches!(
            locate(&spec_in(root.path(), &["/ok.sh"])),
            Ok(Located::Found(_))
        ));
        let err = locate(&spec_in(root.path(), &["/bad.sh"])).err().unwrap();
        assert_eq!(
            err.to_string(),
            "entrypoint /bad.sh is a script for /usr/bin/nope, which is not in the container"
        );
        // A relative interpreter is left to the kernel.
        assert!(locate(&spec_in(root.path(), &["/env.sh"])).is_ok());
    }

    #[test]
    fn a_file_that_is_neither_is_refused_by_name() {
        let root = rootfs();
        let err = locate(&spec_in(root.path(), &["/notes.txt"])).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("/notes.txt") && text.contains("neither Wasm"),
            "{text}"
        );
    }

    #[test]
    fn a_missing_program_may_come_from_a_layer() {
        let root = rootfs();
        let Located::NotInRootfs(missing) = locate(&spec_in(root.path(), &["/"])).unwrap() else {
            panic!("found");
        };
        let layer = root.path().join("layer.wasm");
        std::fs::write(&layer, b"\0asm\x01\0\0\0").unwrap();
        let w = missing.in_layer(layer.clone()).unwrap();
        assert_eq!(w.program.wasm_kind(), Some(WasmKind::CoreModule));
        assert_eq!(w.args, ["/"]);
        let Located::NotInRootfs(missing) = locate(&spec_in(root.path(), &["/gone.wasm"])).unwrap()
        else {
            panic!("found");
        };
        assert!(missing.into_error().to_string().contains("/gone.wasm"));
    }

    #[test]
    fn execs_share_the_container_limits() {
        let root = rootfs();
        let container = spec_in(root.path(), &["/app.wasm"]);
        let process: oci_spec::runtime::Process = serde_json::from_value(serde_json::json!({
            "args": ["/app.wasm", "probe"], "cwd": "/", "env": ["A=1"],
            "user": {"uid": 0, "gid": 0}
        }))
        .unwrap();
        let w = locate_exec(
            &process,
            root.path(),
            container.memory_limit,
            &container.filesystem,
            &container.settings,
        )
        .unwrap();
        assert_eq!(w.args, ["/app.wasm", "probe"]);
        assert_eq!(w.memory_limit, Some(64 << 20));
        assert_eq!(w.env, [("A".to_string(), "1".to_string())]);
        let empty: oci_spec::runtime::Process = serde_json::from_value(
            serde_json::json!({"args": [], "cwd": "/", "user": {"uid": 0, "gid": 0}}),
        )
        .unwrap();
        assert!(matches!(
            locate_exec(
                &empty,
                root.path(),
                None,
                &Default::default(),
                &Default::default()
            ),
            Err(OciError::NoArgs)
        ));
    }
}
