//! The guest's WASI view of its container: arguments, environment, working directory, the
//! container's `/` preopened as `/`, and the container's stdio.

use std::path::PathBuf;

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
    /// The usual container setup: `/` preopened as `/`, and the working directory also as `.`
    /// so that relative paths resolve against it.
    pub fn for_container(args: Vec<String>, env: Vec<(String, String)>, cwd: String) -> Self {
        let mut preopens = vec![(PathBuf::from("/"), "/".to_string())];
        if cwd != "/" && !cwd.is_empty() {
            preopens.push((PathBuf::from(&cwd), ".".to_string()));
        }
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

    /// A WASI builder for this setup with the process's stdio inherited.
    pub fn builder(&self) -> Result<WasiCtxBuilder, RuntimeError> {
        let mut b = WasiCtxBuilder::new();
        b.inherit_stdio().args(&self.args).envs(&self.env);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_setup() {
        let s = GuestSetup::for_container(
            vec!["a".into()],
            vec![("K".into(), "v".into())],
            "/work".into(),
        );
        assert_eq!(s.preopens[0], (PathBuf::from("/"), "/".to_string()));
        assert_eq!(s.preopens[1], (PathBuf::from("/work"), ".".to_string()));
        assert!(s.env.contains(&("PWD".into(), "/work".into())));
        let root = GuestSetup::for_container(vec![], vec![("PWD".into(), "/x".into())], "/".into());
        assert_eq!(root.preopens.len(), 1);
        assert_eq!(root.env, vec![("PWD".to_string(), "/x".to_string())]);
    }
}
