//! [`WorkloadSpec`]: what to run and how, read from an OCI runtime spec. It is the only view of
//! `config.json` the rest of wasmpod uses.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

use crate::OciError;

/// Annotation CRI sets to the pod sandbox's id on every container of the pod.
pub const ANNOTATION_SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";
/// Annotation CRI sets to `sandbox` or `container`.
pub const ANNOTATION_CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";

/// What to run in a container and how.
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
    /// `root.readonly`.
    pub rootfs_readonly: bool,
    /// `process.terminal`.
    pub terminal: bool,
    /// `linux.cgroupsPath`, if set.
    pub cgroups_path: Option<String>,
    /// `linux.resources.memory.limit` in bytes, if set and positive.
    pub memory_limit: Option<u64>,
    /// The spec's annotations.
    pub annotations: HashMap<String, String>,
    /// Whether the spec has `poststart` hooks (which only libcontainer's start runs).
    pub has_poststart_hooks: bool,
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
        let env = process
            .env()
            .as_ref()
            .map(|vars| vars.iter().map(|kv| split_env(kv)).collect())
            .unwrap_or_default();
        let cwd = process.cwd().to_string_lossy().into_owned();
        let cwd = if cwd.starts_with('/') {
            cwd
        } else {
            "/".to_string()
        };
        let (rootfs, rootfs_readonly) = match spec.root() {
            Some(root) => {
                let p = root.path();
                let p = if p.is_absolute() {
                    p.clone()
                } else {
                    bundle.join(p)
                };
                (p, root.readonly().unwrap_or(false))
            }
            None => (bundle.join("rootfs"), false),
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
            rootfs_readonly,
            terminal: process.terminal().unwrap_or(false),
            cgroups_path,
            memory_limit,
            annotations: spec.annotations().clone().unwrap_or_default(),
            has_poststart_hooks: spec
                .hooks()
                .as_ref()
                .and_then(|h| h.poststart().as_ref())
                .map(|v| !v.is_empty())
                .unwrap_or(false),
        })
    }

    /// The value of `name` in the environment, if set.
    pub fn env_var(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The pod this container belongs to under CRI, if any.
    pub fn sandbox_id(&self) -> Option<&str> {
        self.annotations
            .get(ANNOTATION_SANDBOX_ID)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
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
        assert_eq!(w.env_var("A"), Some("b=c"));
        assert_eq!(w.env_var("EMPTY"), Some(""));
        assert_eq!(w.env_var("PATH"), Some("/bin"));
        assert_eq!(w.cwd, "/work");
        assert_eq!(w.rootfs, PathBuf::from("/b/rootfs"));
        assert!(w.rootfs_readonly);
        assert_eq!(w.cgroups_path.as_deref(), Some("/default/c1"));
        assert_eq!(w.memory_limit, Some(64 << 20));
        assert_eq!(w.sandbox_id(), Some("pod1"));
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
