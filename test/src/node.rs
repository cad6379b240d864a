//! Node trees for the installer's tests: a directory that stands for a node's `/`, holding
//! real containerd configs (written by the containerd under test) and that containerd's
//! binary where the distribution keeps it, and `wasmpod node` run against it.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::Digest;

use crate::ctr::{wasmpod_tool, Ran};

/// The containerd binary under test (`$CONTAINERD`, else the one on PATH).
pub fn containerd() -> PathBuf {
    let name = std::env::var("CONTAINERD").unwrap_or_else(|_| "containerd".into());
    if name.contains('/') {
        return PathBuf::from(name);
    }
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|d| Path::new(d).join(&name))
        .find(|p| p.is_file())
        .expect("containerd on PATH")
}

/// The (major, minor) of the containerd binary under test.
pub fn containerd_version() -> (u32, u32) {
    let out = Command::new(containerd())
        .arg("--version")
        .output()
        .expect("containerd --version");
    let text = String::from_utf8_lossy(&out.stdout);
    let word = text
        .split_whitespace()
        .nth(2)
        .expect("containerd --version prints a version");
    let mut parts = word
        .trim_start_matches('v')
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// `containerd config default` of `binary`.
pub fn default_config(binary: &Path) -> String {
    let out = Command::new(binary)
        .args(["config", "default"])
        .output()
        .expect("containerd config default");
    assert!(out.status.success(), "config default failed");
    String::from_utf8(out.stdout).expect("UTF-8 config")
}

/// The handlers `binary` loads from the config file `config`, by `config dump` (whose
/// output uses the binary's own schema), with each one's runtime type.
pub fn dumped_handlers(binary: &Path, config: &Path) -> Result<Vec<(String, String)>, String> {
    let out = Command::new(binary)
        .arg("--config")
        .arg(config)
        .args(["config", "dump"])
        .output()
        .expect("containerd config dump");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    // Table headers `[plugins."<cri>".containerd.runtimes.NAME]` and their runtime_type.
    let mut handlers = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            current = line
                .trim_matches(['[', ']'])
                .split_once(".containerd.runtimes.")
                .map(|(_, name)| name.trim_matches(['"', '\'']).to_string())
                .filter(|name| !name.contains('.'));
        } else if let (Some(name), Some(value)) = (&current, line.strip_prefix("runtime_type = ")) {
            handlers.push((name.clone(), value.trim_matches(['"', '\'']).to_string()));
        }
    }
    Ok(handlers)
}

/// A directory standing for a node's `/`.
pub struct Tree {
    dir: tempfile::TempDir,
}

impl Default for Tree {
    fn default() -> Self {
        Tree::new()
    }
}

impl Tree {
    pub fn new() -> Tree {
        Tree {
            dir: tempfile::Builder::new()
                .prefix("node-")
                .tempdir()
                .expect("tempdir"),
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Where the node's path `p` is.
    pub fn path(&self, p: &str) -> PathBuf {
        self.root().join(p.trim_start_matches('/'))
    }

    pub fn write(&self, p: &str, text: &str) {
        let path = self.path(p);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    pub fn read(&self, p: &str) -> String {
        std::fs::read_to_string(self.path(p)).unwrap_or_else(|e| panic!("read {p}: {e}"))
    }

    /// Puts the containerd under test at `p` (a copy, so that it also runs where only the
    /// tree is mounted).
    pub fn containerd_at(&self, p: &str) {
        let path = self.path(p);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        std::fs::copy(containerd(), &path).expect("copy containerd");
    }

    /// Every path in the tree with its type, link target and content digest, sorted: equal
    /// snapshots mean the same tree, byte for byte.
    pub fn snapshot(&self) -> String {
        let out = Command::new("find")
            .arg(self.root())
            .args(["-mindepth", "1", "-printf", "%P %y %m %l\\n"])
            .output()
            .expect("find");
        let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                let rel = l.split(' ').next().unwrap_or_default();
                let path = self.root().join(rel);
                match std::fs::symlink_metadata(&path) {
                    Ok(m) if m.is_file() => {
                        let bytes = std::fs::read(&path).expect("read");
                        format!("{l} {}", hex::encode(sha2::Sha256::digest(&bytes)))
                    }
                    _ => l.to_string(),
                }
            })
            .collect();
        lines.sort();
        lines.join("\n")
    }

    /// `wasmpod node ARGS --host-root TREE` with the built shim.
    pub fn node(&self, args: &[&str]) -> Ran {
        let mut c = Command::new(wasmpod_tool());
        c.arg("node").args(args).arg("--host-root").arg(self.root());
        if args.first() == Some(&"install") {
            c.arg("--shim").arg(shim());
        }
        c.env_remove("KUBERNETES_SERVICE_HOST")
            .output()
            .expect("run wasmpod node")
            .into()
    }
}

/// The shim built next to the tests.
pub fn shim() -> PathBuf {
    wasmpod_tool().with_file_name("containerd-shim-wasmpod-v1")
}
