//! Which of the container's directories a Wasm guest may write: the spec's `root.readonly`
//! and the mounts it marks `ro`. The kernel refuses such writes anyway; the runtime also
//! preopens these directories read-only at the WASI level, so that the guest is told so by
//! WASI and never holds a writable handle on them.

use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

/// What a guest may write of its container's filesystem.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestFilesystem {
    /// `root.readonly`.
    pub read_only_root: bool,
    /// The spec's mounts, outside `/proc`, `/sys` and `/dev`, in the spec's order.
    pub mounts: Vec<GuestMount>,
}

/// One mount the guest may see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestMount {
    /// Its destination in the container (absolute, no trailing `/`).
    pub path: String,
    /// Whether its options say `ro`.
    pub read_only: bool,
}

/// Mount points that are the kernel's, not the guest's data.
const SYSTEM_TREES: [&str; 3] = ["/proc", "/sys", "/dev"];

impl GuestFilesystem {
    /// The view of `spec`.
    pub fn of_spec(spec: &Spec) -> GuestFilesystem {
        let read_only_root = spec
            .root()
            .as_ref()
            .and_then(|r| r.readonly())
            .unwrap_or(false);
        let mounts = spec
            .mounts()
            .iter()
            .flatten()
            .filter_map(|m| {
                let path = normalize(&m.destination().to_string_lossy())?;
                if SYSTEM_TREES.iter().any(|t| within(&path, t)) {
                    return None;
                }
                let read_only = m.options().iter().flatten().any(|o| o == "ro");
                Some(GuestMount { path, read_only })
            })
            .collect();
        GuestFilesystem {
            read_only_root,
            mounts,
        }
    }

    /// Whether `path` (absolute, in the container) is read-only: as the last mount over the
    /// longest prefix of it says, or as the root does.
    pub fn read_only(&self, path: &str) -> bool {
        let Some(path) = normalize(path) else {
            return self.read_only_root;
        };
        self.mounts
            .iter()
            .filter(|m| within(&path, &m.path))
            .max_by_key(|m| m.path.len())
            .map_or(self.read_only_root, |m| m.read_only)
    }
}

/// `path` made absolute-looking without a trailing `/` (`/` stays `/`); none if relative.
fn normalize(path: &str) -> Option<String> {
    if !path.starts_with('/') {
        return None;
    }
    let trimmed = path.trim_end_matches('/');
    Some(if trimmed.is_empty() {
        "/".into()
    } else {
        trimmed.into()
    })
}

/// Whether `path` is `tree` or under it (both absolute, without a trailing `/`).
pub fn within(path: &str, tree: &str) -> bool {
    tree == "/"
        || path == tree
        || path
            .strip_prefix(tree)
            .is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Spec {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn read_only_mounts_and_root() {
        let s = spec(
            r#"{"ociVersion":"1.0.2","root":{"path":"rootfs","readonly":true},
                "mounts":[
                  {"destination":"/proc","type":"proc","source":"proc"},
                  {"destination":"/dev/shm","type":"tmpfs","source":"shm"},
                  {"destination":"/data/","type":"bind","source":"/x","options":["rbind","ro"]},
                  {"destination":"/data/scratch","type":"tmpfs","source":"t","options":["rw"]},
                  {"destination":"/tmp","type":"tmpfs","source":"t"}]}"#,
        );
        let fs = GuestFilesystem::of_spec(&s);
        let paths: Vec<&str> = fs.mounts.iter().map(|m| m.path.as_str()).collect();
        assert_eq!(paths, ["/data", "/data/scratch", "/tmp"]);
        assert!(fs.read_only("/"));
        assert!(fs.read_only("/etc"));
        assert!(fs.read_only("/data/x"));
        assert!(!fs.read_only("/data/scratch/y"));
        assert!(fs.read_only("/datastore"), "not under /data: the root's");
        assert!(!fs.read_only("/tmp"));
    }

    #[test]
    fn a_writable_root_by_default() {
        let fs = GuestFilesystem::of_spec(&spec(r#"{"ociVersion":"1.0.2"}"#));
        assert_eq!(fs, GuestFilesystem::default());
        assert!(!fs.read_only("/anything"));
        assert!(!fs.read_only("relative"));
    }
}
