//! [`WorkloadSpec`]: a container's `config.json`, parsed once at Create into what wasmpod
//! uses of it. The `locate` module turns it into the `Workload` that runs.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{Process, Spec};
use serde::{Deserialize, Serialize};

use crate::filesystem::GuestFilesystem;
use crate::settings::Settings;
use crate::OciError;

/// Annotation CRI sets to the pod sandbox's id on every container of the pod.
pub const ANNOTATION_SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";
/// Annotation CRI sets to `sandbox` or `container`.
pub const ANNOTATION_CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";

/// What wasmpod uses of a container's runtime spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadSpec {
    /// `process.args`; never empty.
    pub args: Vec<String>,
    /// `process.env`, split at the first `=`; entries without `=` are kept with an empty value.
    pub env: Vec<(String, String)>,
    /// `process.cwd` (absolute; `/` when unset).
    pub cwd: String,
    /// The rootfs as seen from the host (`root.path`, relative to the bundle when not absolute).
    pub rootfs: PathBuf,
    /// `process.terminal`.
    pub terminal: bool,
    /// `linux.cgroupsPath`, if set.
    pub cgroups_path: Option<String>,
    /// `linux.resources.memory.limit` in bytes, if set and positive.
    pub memory_limit: Option<u64>,
    /// What of the filesystem is read-only.
    pub filesystem: GuestFilesystem,
    /// Whether the spec has `poststart` hooks (which only libcontainer's start runs).
    pub has_poststart_hooks: bool,
    /// What the container's init applies itself.
    pub confinement: Confinement,
    /// The `wasmpod.dev/` annotations' settings (the shim puts them over the handler's).
    pub settings: Settings,
}

/// A capability set of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CapabilitySet {
    /// Ambient.
    Ambient,
    /// Inheritable.
    Inheritable,
    /// Effective.
    Effective,
    /// Permitted.
    Permitted,
}

/// Confinement a Wasm guest's init applies itself, because libcontainer applies it at an
/// `execve` that a Wasm guest never makes, or not at all.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confinement {
    /// Capability sets the spec leaves out, which mean "empty" (as runc reads them), in the
    /// order they must be cleared (effective before permitted).
    pub omitted_capability_sets: Vec<CapabilitySet>,
    /// `process.apparmorProfile`, if set.
    pub apparmor_profile: Option<String>,
}

impl Confinement {
    /// The confinement `process` asks for.
    pub fn of_process(process: &Process) -> Confinement {
        let omitted_capability_sets = match process.capabilities() {
            None => Vec::new(),
            Some(caps) => [
                (CapabilitySet::Ambient, caps.ambient().is_none()),
                (CapabilitySet::Inheritable, caps.inheritable().is_none()),
                (CapabilitySet::Effective, caps.effective().is_none()),
                (CapabilitySet::Permitted, caps.permitted().is_none()),
            ]
            .into_iter()
            .filter(|(_, omitted)| *omitted)
            .map(|(set, _)| set)
            .collect(),
        };
        Confinement {
            omitted_capability_sets,
            apparmor_profile: process.apparmor_profile().clone().filter(|p| !p.is_empty()),
        }
    }
}

impl WorkloadSpec {
    /// Reads `<bundle>/config.json`.
    pub fn from_bundle(bundle: &Path) -> Result<WorkloadSpec, OciError> {
        let spec = load_spec(bundle)?;
        WorkloadSpec::from_spec(&spec, bundle)
    }

    /// Builds the workload view of `spec`; `bundle` anchors a relative `root.path`.
    pub fn from_spec(spec: &Spec, bundle: &Path) -> Result<WorkloadSpec, OciError> {
        let process = spec.process().as_ref().ok_or(OciError::NoArgs)?;
        let args = process.args().clone().unwrap_or_default();
        if args.is_empty() || args[0].is_empty() {
            return Err(OciError::NoArgs);
        }
        let (env, cwd) = env_and_cwd(process)?;
        let rootfs = match spec.root() {
            Some(root) if root.path().is_absolute() => root.path().clone(),
            Some(root) => bundle.join(root.path()),
            None => bundle.join("rootfs"),
        };
        let linux = spec.linux().as_ref();
        let cgroups_path = linux
            .and_then(|l| l.cgroups_path().as_ref())
            .map(|p| p.to_string_lossy().into_owned());
        let memory_limit = linux
            .and_then(|l| l.resources().as_ref())
            .and_then(|r| r.memory().as_ref())
            .and_then(|m| m.limit())
            .filter(|l| *l > 0)
            .map(|l| l as u64);
        Ok(WorkloadSpec {
            args,
            env,
            cwd,
            rootfs,
            terminal: process.terminal().unwrap_or(false),
            cgroups_path,
            memory_limit,
            filesystem: GuestFilesystem::of_spec(spec),
            confinement: Confinement::of_process(process),
            settings: Settings::from_annotations(spec.annotations().iter().flatten())?,
            has_poststart_hooks: spec
                .hooks()
                .as_ref()
                .and_then(|h| h.poststart().as_ref())
                .map(|v| !v.is_empty())
                .unwrap_or(false),
        })
    }
}

/// Reads and parses `<bundle>/config.json`.
pub fn load_spec(bundle: &Path) -> Result<Spec, OciError> {
    let path = bundle.join("config.json");
    Spec::load(&path).map_err(|e| OciError::Spec {
        path,
        reason: e.to_string(),
    })
}

/// A process's environment (split at the first `=`) and working directory (`/` when unset;
/// a relative one is an error, as runc makes it).
pub(crate) fn env_and_cwd(process: &Process) -> Result<(Vec<(String, String)>, String), OciError> {
    let env = process
        .env()
        .as_ref()
        .map(|vars| vars.iter().map(|kv| split_env(kv)).collect())
        .unwrap_or_default();
    let cwd = process.cwd().to_string_lossy().into_owned();
    let cwd = if cwd.is_empty() {
        "/".to_string()
    } else if cwd.starts_with('/') {
        cwd
    } else {
        return Err(OciError::Cwd {
            cwd,
            reason: "not an absolute path (a container's working directory starts with /)".into(),
        });
    };
    Ok((env, cwd))
}

fn split_env(kv: &str) -> (String, String) {
    match kv.split_once('=') {
        Some((k, v)) => (k.to_string(), v.to_string()),
        None => (kv.to_string(), String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{
        LinuxBuilder, LinuxMemoryBuilder, LinuxResourcesBuilder, ProcessBuilder, RootBuilder,
        SpecBuilder,
    };
    use std::collections::HashMap;

    fn spec(args: &[&str]) -> Spec {
        SpecBuilder::default()
            .process(
                ProcessBuilder::default()
                    .args(args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                    .env(vec![
                        "PATH=/bin".to_string(),
                        "A=b=c".into(),
                        "EMPTY".into(),
                    ])
                    .cwd("/work")
                    .build()
                    .unwrap(),
            )
            .root(
                RootBuilder::default()
                    .path("rootfs")
                    .readonly(true)
                    .build()
                    .unwrap(),
            )
            .linux(
                LinuxBuilder::default()
                    .cgroups_path("/default/c1")
                    .resources(
                        LinuxResourcesBuilder::default()
                            .memory(
                                LinuxMemoryBuilder::default()
                                    .limit(64 << 20)
                                    .build()
                                    .unwrap(),
                            )
                            .build()
                            .unwrap(),
                    )
                    .build()
                    .unwrap(),
            )
            .annotations(HashMap::from([(
                ANNOTATION_SANDBOX_ID.to_string(),
                "pod1".to_string(),
            )]))
            .build()
            .unwrap()
    }

    #[test]
    fn maps_the_spec() {
        let w = WorkloadSpec::from_spec(&spec(&["/app.wasm", "x"]), Path::new("/b")).unwrap();
        assert_eq!(w.args, vec!["/app.wasm", "x"]);
        assert_eq!(
            w.env,
            [("PATH", "/bin"), ("A", "b=c"), ("EMPTY", "")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
        );
        assert_eq!(w.cwd, "/work");
        assert_eq!(w.rootfs, PathBuf::from("/b/rootfs"));
        assert_eq!(w.cgroups_path.as_deref(), Some("/default/c1"));
        assert_eq!(w.memory_limit, Some(64 << 20));
        assert_eq!(w.confinement, Confinement::default());
    }

    #[test]
    fn empty_args_is_an_error() {
        assert!(matches!(
            WorkloadSpec::from_spec(&spec(&[]), Path::new("/b")),
            Err(OciError::NoArgs)
        ));
    }

    #[test]
    fn bad_config_json_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), b"{not json").unwrap();
        let err = WorkloadSpec::from_bundle(dir.path()).unwrap_err();
        assert!(err.to_string().contains("config.json"), "{err}");
    }
}
