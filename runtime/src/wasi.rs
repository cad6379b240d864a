//! The guest's WASI view of its container: arguments, environment, working directory, the
//! container's `/` preopened as `/`, and the container's stdio.
//!
//! The working directory needs care. WASI libcs (wasi-libc, and so C, C++, Rust and the
//! Python of componentize-py) start with a working directory of `/`, resolve a relative path
//! to an absolute one from there, and then pick the preopen with the longest matching name,
//! where `/` and `.` both count as the empty name and the one opened last wins a tie. So
//! when the container's working directory is not `/`:
//! - it is preopened last, as `.`: relative paths (and `./x`) resolve inside it;
//! - every directory at the top of the container's `/` is preopened under its own absolute
//!   name (`/etc`, `/data`, ...), so absolute paths beat the `.` with a longer match and
//!   resolve from `/` as they should;
//! - `/` itself stays preopened as `/`, for guests that match names the other way round.
//!
//! The working directory is also given as `PWD` (Go reads it) and as `wasi:cli`'s
//! `initial-cwd`.

use std::path::{Path, PathBuf};

use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use crate::RuntimeError;

/// What the guest sees. Everything else is denied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestSetup {
    /// `argv`, `args[0]` included.
    pub args: Vec<String>,
    /// Environment variables.
    pub env: Vec<(String, String)>,
    /// The working directory (absolute, in the container).
    pub cwd: String,
    /// Directories opened for the guest: (path in this process, name the guest sees).
    pub preopens: Vec<(PathBuf, String)>,
    /// Whether the guest may use the network of its (container's) network namespace.
    pub network: bool,
    /// The container's memory limit in bytes, if any (see [`crate::limits`]).
    pub memory_limit: Option<u64>,
}

impl GuestSetup {
    /// The usual container setup: `/` preopened as `/`, and the working directory as `.`
    /// (see the module comment).
    pub fn for_container(args: Vec<String>, env: Vec<(String, String)>, cwd: String) -> Self {
        let preopens = container_preopens(Path::new("/"), &cwd);
        let mut env = env;
        if !env.iter().any(|(k, _)| k == "PWD") {
            env.push(("PWD".into(), cwd.clone()));
        }
        GuestSetup {
            args,
            env,
            cwd,
            preopens,
            network: true,
            memory_limit: None,
        }
    }

    /// The setup of a container process running `workload`: its arguments, environment,
    /// working directory and memory limit, with the container's `/` preopened.
    pub fn for_workload(workload: &wasmpod_oci::Workload) -> Self {
        let mut setup = GuestSetup::for_container(
            workload.args.clone(),
            workload.env.clone(),
            workload.cwd.clone(),
        );
        setup.memory_limit = workload.memory_limit;
        setup
    }

    /// A WASI builder for this setup with the process's stdio inherited.
    pub fn builder(&self) -> Result<WasiCtxBuilder, RuntimeError> {
        let mut b = WasiCtxBuilder::new();
        b.inherit_stdio().args(&self.args).envs(&self.env);
        if !self.cwd.is_empty() {
            b.initial_cwd(&self.cwd);
        }
        for (host, guest) in &self.preopens {
            b.preopened_dir(host, guest, FsPerms::ReadWrite)
                .map_err(|e| RuntimeError::Wasi(format!("preopen {}: {e:#}", host.display())))?;
        }
        if self.network {
            b.inherit_network().allow_ip_name_lookup(true);
        }
        Ok(b)
    }
}

/// The preopens for a container whose `/` is at `root` (in this process) and whose working
/// directory is `cwd`, in the order they must be opened.
fn container_preopens(root: &Path, cwd: &str) -> Vec<(PathBuf, String)> {
    let mut preopens = vec![(root.to_path_buf(), "/".to_string())];
    let cwd = cwd.trim_end_matches('/');
    if cwd.is_empty() {
        return preopens;
    }
    let mut top: Vec<String> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            std::fs::metadata(e.path())
                .map(|m| m.is_dir())
                .unwrap_or(false)
        })
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .collect();
    top.sort();
    for name in top {
        preopens.push((root.join(&name), format!("/{name}")));
    }
    preopens.push((root.join(cwd.trim_start_matches('/')), ".".to_string()));
    preopens
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_setup() {
        let root = tempfile::tempdir().unwrap();
        for dir in ["work", "etc"] {
            std::fs::create_dir(root.path().join(dir)).unwrap();
        }
        std::fs::write(root.path().join("file"), "").unwrap();
        let p = container_preopens(root.path(), "/work");
        let names: Vec<&str> = p.iter().map(|(_, n)| n.as_str()).collect();
        assert_eq!(names, ["/", "/etc", "/work", "."]);
        assert_eq!(p[3].0, root.path().join("work"));
        let at_root = container_preopens(root.path(), "/");
        assert_eq!(at_root, vec![(root.path().to_path_buf(), "/".to_string())]);

        let s = GuestSetup::for_container(
            vec!["a".into()],
            vec![("K".into(), "v".into())],
            "/work".into(),
        );
        assert_eq!(s.preopens[0], (PathBuf::from("/"), "/".to_string()));
        assert_eq!(s.preopens.last().unwrap().1, ".");
        assert!(s.env.contains(&("PWD".into(), "/work".into())));
        let root = GuestSetup::for_container(vec![], vec![("PWD".into(), "/x".into())], "/".into());
        assert_eq!(root.preopens.len(), 1);
        assert_eq!(root.env, vec![("PWD".to_string(), "/x".to_string())]);
    }
}
