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
//!
//! Read-only parts of the container (a read-only rootfs, mounts marked `ro`) are preopened
//! read-only: each directory mount under its own name, which wins over `/` by the same
//! longest-match rule, with the access of the mount it is in.

use std::path::{Path, PathBuf};

use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use wasmpod_oci::filesystem::{within, GuestFilesystem};
use wasmpod_oci::settings::Settings;

use crate::RuntimeError;

/// A directory opened for the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preopen {
    /// Its path in this process.
    pub host: PathBuf,
    /// The name the guest sees.
    pub guest: String,
    /// Whether the guest may only read it.
    pub read_only: bool,
}

/// What the guest sees. Everything else is denied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestSetup {
    /// `argv`, `args[0]` included.
    pub args: Vec<String>,
    /// Environment variables.
    pub env: Vec<(String, String)>,
    /// The working directory (absolute, in the container).
    pub cwd: String,
    /// Directories opened for the guest, in order.
    pub preopens: Vec<Preopen>,
    /// Whether the guest may use the network of its (container's) network namespace.
    pub network: bool,
    /// The container's memory limit in bytes, if any (see [`crate::limits`]).
    pub memory_limit: Option<u64>,
    /// The workload's knobs (HTTP limits, CPU time limit).
    pub settings: Settings,
}

impl GuestSetup {
    /// The usual container setup: `/` preopened as `/`, and the working directory as `.`
    /// (see the module comment).
    pub fn for_container(args: Vec<String>, env: Vec<(String, String)>, cwd: String) -> Self {
        GuestSetup::in_container(args, env, cwd, &GuestFilesystem::default())
    }

    /// The setup of a container process running `workload`: its arguments, environment,
    /// working directory and memory limit, with the container's `/` preopened (read-only
    /// where its filesystem is).
    pub fn for_workload(workload: &wasmpod_oci::Workload) -> Self {
        let mut setup = GuestSetup::in_container(
            workload.args.clone(),
            workload.env.clone(),
            workload.cwd.clone(),
            &workload.filesystem,
        );
        setup.memory_limit = workload.memory_limit;
        setup.settings = workload.settings.clone();
        setup
    }

    fn in_container(
        args: Vec<String>,
        env: Vec<(String, String)>,
        cwd: String,
        fs: &GuestFilesystem,
    ) -> Self {
        let preopens = container_preopens(Path::new("/"), &cwd, fs);
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
            settings: Settings::default(),
        }
    }

    /// A WASI builder for this setup with the process's stdio inherited.
    pub fn builder(&self) -> Result<WasiCtxBuilder, RuntimeError> {
        let mut b = WasiCtxBuilder::new();
        b.inherit_stdio().args(&self.args).envs(&self.env);
        if !self.cwd.is_empty() {
            b.initial_cwd(&self.cwd);
        }
        for p in &self.preopens {
            let perms = if p.read_only {
                FsPerms::ReadOnly
            } else {
                FsPerms::ReadWrite
            };
            b.preopened_dir(&p.host, &p.guest, perms)
                .map_err(|e| RuntimeError::Wasi(format!("preopen {}: {e:#}", p.host.display())))?;
        }
        if self.network {
            b.inherit_network().allow_ip_name_lookup(true);
        }
        Ok(b)
    }
}

/// The preopens for a container whose `/` is at `root` (in this process), whose working
/// directory is `cwd` and whose filesystem is `fs`, in the order they must be opened.
fn container_preopens(root: &Path, cwd: &str, fs: &GuestFilesystem) -> Vec<Preopen> {
    let at = |guest: &str| Preopen {
        host: root.join(guest.trim_start_matches('/')),
        guest: guest.to_string(),
        read_only: fs.read_only(guest),
    };
    let mut preopens = vec![at("/")];
    let cwd = cwd.trim_end_matches('/');
    if !cwd.is_empty() {
        let mut top: Vec<String> = std::fs::read_dir(root)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| is_dir(&e.path()))
            .filter_map(|e| e.file_name().to_str().map(|n| format!("/{n}")))
            .collect();
        top.sort();
        preopens.extend(top.iter().map(|name| at(name)));
    }
    // Directory mounts whose access differs from what the preopens so far give them.
    for mount in &fs.mounts {
        let covered = preopens
            .iter()
            .filter(|p| within(&mount.path, &p.guest))
            .max_by_key(|p| p.guest.len())
            .is_some_and(|p| p.read_only == fs.read_only(&mount.path));
        if !covered && is_dir(&root.join(mount.path.trim_start_matches('/'))) {
            preopens.retain(|p| p.guest != mount.path);
            preopens.push(at(&mount.path));
        }
    }
    if !cwd.is_empty() {
        preopens.push(Preopen {
            guest: ".".to_string(),
            ..at(cwd)
        });
    }
    preopens
}

fn is_dir(path: &Path) -> bool {
    std::fs::metadata(path).map(|m| m.is_dir()).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmpod_oci::filesystem::GuestMount;

    fn names(p: &[Preopen]) -> Vec<(&str, bool)> {
        p.iter().map(|p| (p.guest.as_str(), p.read_only)).collect()
    }

    #[test]
    fn container_setup() {
        let root = tempfile::tempdir().unwrap();
        for dir in ["work", "etc"] {
            std::fs::create_dir(root.path().join(dir)).unwrap();
        }
        std::fs::write(root.path().join("file"), "").unwrap();
        let writable = GuestFilesystem::default();
        let p = container_preopens(root.path(), "/work", &writable);
        assert_eq!(
            names(&p),
            [
                ("/", false),
                ("/etc", false),
                ("/work", false),
                (".", false)
            ]
        );
        assert_eq!(p[3].host, root.path().join("work"));
        let at_root = container_preopens(root.path(), "/", &writable);
        assert_eq!(names(&at_root), [("/", false)]);
        assert_eq!(at_root[0].host, root.path());

        let s = GuestSetup::for_container(
            vec!["a".into()],
            vec![("K".into(), "v".into())],
            "/work".into(),
        );
        assert_eq!(s.preopens[0].host, PathBuf::from("/"));
        assert_eq!(s.preopens.last().unwrap().guest, ".");
        assert!(s.env.contains(&("PWD".into(), "/work".into())));
        let root = GuestSetup::for_container(vec![], vec![("PWD".into(), "/x".into())], "/".into());
        assert_eq!(root.preopens.len(), 1);
        assert_eq!(root.env, vec![("PWD".to_string(), "/x".to_string())]);
    }

    #[test]
    fn read_only_mounts_and_roots_are_preopened_read_only() {
        let root = tempfile::tempdir().unwrap();
        for dir in ["data", "data/scratch", "tmp", "work"] {
            std::fs::create_dir_all(root.path().join(dir)).unwrap();
        }
        std::fs::write(root.path().join("hosts"), "").unwrap();
        let mount = |path: &str, read_only| GuestMount {
            path: path.into(),
            read_only,
        };
        let fs = GuestFilesystem {
            read_only_root: false,
            mounts: vec![
                mount("/data", true),
                mount("/data/scratch", false),
                mount("/hosts", true),
                mount("/tmp", false),
            ],
        };
        // `/` as the cwd: only `/` and the mounts whose access differs from their parent's.
        assert_eq!(
            names(&container_preopens(root.path(), "/", &fs)),
            [("/", false), ("/data", true), ("/data/scratch", false)]
        );
        // A read-only root: everything read-only but the writable mounts; the cwd with it.
        let fs = GuestFilesystem {
            read_only_root: true,
            ..fs
        };
        assert_eq!(
            names(&container_preopens(root.path(), "/work", &fs)),
            [
                ("/", true),
                ("/data", true),
                ("/tmp", false),
                ("/work", true),
                ("/data/scratch", false),
                (".", true)
            ]
        );
    }
}
