//! Which Kubernetes distribution runs the node's containerd, and so which file the installer
//! edits, which containerd binary checks it, which unit restarts it and where it listens. A
//! node that looks like two distributions is refused, never guessed.

use super::error::NodeError;
use super::host::{Host, HostCommand};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Distribution {
    K3s,
    Rke2,
    Microk8s,
    K0s,
    /// containerd configured in `/etc/containerd/config.toml` (kubeadm, kind, EKS, AKS, ...).
    Containerd,
}

/// How the distribution wants its containerd config changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigTarget {
    /// A TOML file edited in place.
    File { path: String },
    /// A Go template the distribution renders into `rendered` at every start (k3s, rke2).
    /// `templates` are the file names it looks for, in its order.
    Template {
        dir: String,
        rendered: String,
        templates: [&'static str; 2],
    },
    /// A drop-in file of our own in a directory the distribution merges (k0s); `main` is the
    /// distribution's own file, read for its schema.
    DropIn { path: String, main: String },
}

impl Distribution {
    pub const ALL: [Distribution; 5] = [
        Distribution::K3s,
        Distribution::Rke2,
        Distribution::Microk8s,
        Distribution::K0s,
        Distribution::Containerd,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Distribution::K3s => "k3s",
            Distribution::Rke2 => "rke2",
            Distribution::Microk8s => "microk8s",
            Distribution::K0s => "k0s",
            Distribution::Containerd => "containerd",
        }
    }

    pub fn parse(name: &str) -> Result<Distribution, NodeError> {
        Distribution::ALL
            .into_iter()
            .find(|d| d.name() == name)
            .ok_or_else(|| {
                NodeError::Detect(format!(
                    "unknown distribution {name:?} (k3s, rke2, microk8s, k0s or containerd)"
                ))
            })
    }

    /// The file whose presence marks the distribution (none for plain containerd).
    fn probe(self) -> Option<&'static str> {
        match self {
            Distribution::K3s => Some("/var/lib/rancher/k3s/agent/etc/containerd/config.toml"),
            Distribution::Rke2 => Some("/var/lib/rancher/rke2/agent/etc/containerd/config.toml"),
            Distribution::Microk8s => {
                Some("/var/snap/microk8s/current/args/containerd-template.toml")
            }
            Distribution::K0s => Some("/etc/k0s/containerd.toml"),
            Distribution::Containerd => None,
        }
    }

    /// The distribution of the node at `host`: the one whose marker file exists, else plain
    /// containerd. More than one marker is an error naming them.
    pub fn detect(host: &Host) -> Result<Distribution, NodeError> {
        let found: Vec<(Distribution, &str)> = Distribution::ALL
            .into_iter()
            .filter_map(|d| d.probe().map(|p| (d, p)))
            .filter(|(_, p)| host.exists(p))
            .collect();
        match found.as_slice() {
            [] => Ok(Distribution::Containerd),
            [(d, _)] => Ok(*d),
            many => Err(NodeError::Detect(format!(
                "this node looks like more than one distribution ({}); say which with \
                 --distribution",
                many.iter()
                    .map(|(d, p)| format!("{} ({p})", d.name()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    pub fn config_target(self) -> ConfigTarget {
        let agent = |d: &str| format!("/var/lib/rancher/{d}/agent/etc/containerd");
        match self {
            Distribution::K3s | Distribution::Rke2 => {
                let dir = agent(self.name());
                ConfigTarget::Template {
                    rendered: format!("{dir}/config.toml"),
                    dir,
                    templates: ["config-v3.toml.tmpl", "config.toml.tmpl"],
                }
            }
            Distribution::Microk8s => ConfigTarget::File {
                path: "/var/snap/microk8s/current/args/containerd-template.toml".into(),
            },
            Distribution::K0s => ConfigTarget::DropIn {
                path: "/etc/k0s/containerd.d/wasmpod.toml".into(),
                main: "/etc/k0s/containerd.toml".into(),
            },
            Distribution::Containerd => ConfigTarget::File {
                path: "/etc/containerd/config.toml".into(),
            },
        }
    }

    /// Where the distribution keeps its containerd binary, in the order to look.
    pub fn containerd_binaries(self) -> &'static [&'static str] {
        match self {
            Distribution::K3s => &["/var/lib/rancher/k3s/data/current/bin/containerd"],
            Distribution::Rke2 => &["/var/lib/rancher/rke2/bin/containerd"],
            Distribution::Microk8s => &["/snap/microk8s/current/bin/containerd"],
            Distribution::K0s => &["/var/lib/k0s/bin/containerd"],
            Distribution::Containerd => &[
                "/usr/local/bin/containerd",
                "/usr/bin/containerd",
                "/usr/local/sbin/containerd",
                "/usr/sbin/containerd",
            ],
        }
    }

    /// containerd's socket, to wait on after a restart.
    pub fn socket(self) -> &'static str {
        match self {
            Distribution::K3s | Distribution::Rke2 => "/run/k3s/containerd/containerd.sock",
            Distribution::Microk8s => "/var/snap/microk8s/common/run/containerd.sock",
            Distribution::K0s => "/run/k0s/containerd.sock",
            Distribution::Containerd => "/run/containerd/containerd.sock",
        }
    }

    /// The systemd units that run containerd here, any one of which is active.
    pub fn units(self) -> &'static [&'static str] {
        match self {
            Distribution::K3s => &["k3s.service", "k3s-agent.service"],
            Distribution::Rke2 => &["rke2-server.service", "rke2-agent.service"],
            Distribution::Microk8s => &["snap.microk8s.daemon-containerd.service"],
            Distribution::K0s => &["k0sworker.service", "k0scontroller.service"],
            Distribution::Containerd => &["containerd.service"],
        }
    }

    /// Where the kubelet's cgroup driver can be read on this distribution.
    pub fn kubelet_configs(self) -> &'static [&'static str] {
        match self {
            Distribution::K0s => &["/var/lib/k0s/kubelet-config.yaml"],
            Distribution::Microk8s => &["/var/snap/microk8s/current/args/kubelet"],
            _ => &["/var/lib/kubelet/config.yaml"],
        }
    }
}

/// A containerd's version, as `containerd --version` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerdVersion {
    pub major: u64,
    pub minor: u64,
    pub text: String,
}

impl ContainerdVersion {
    /// Reads `containerd github.com/containerd/containerd/v2 v2.1.9 <commit>` (Debian prints
    /// `2.1.9+ds1-5` or `1.6.20~ds1`; k3s `v1.7.23-k3s2`).
    pub fn parse(output: &str) -> Option<ContainerdVersion> {
        let word = output.split_whitespace().nth(2)?;
        let text = word.trim_start_matches('v').to_string();
        let mut parts = text.split(|c: char| !c.is_ascii_digit());
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some(ContainerdVersion { major, minor, text })
    }

    /// Asks the host's containerd binary at `program`.
    pub fn of(host: &Host, program: &str) -> Result<ContainerdVersion, NodeError> {
        let out = host.run(&HostCommand::new(program).arg("--version"))?;
        if !out.success {
            return Err(NodeError::Command(format!(
                "{program} --version failed: {}",
                out.stderr.trim()
            )));
        }
        ContainerdVersion::parse(&out.stdout).ok_or_else(|| {
            NodeError::Command(format!(
                "cannot read containerd's version from {:?}",
                out.stdout.trim()
            ))
        })
    }

    /// containerd 1.6 passes a handler's options only as a file path (`ConfigPath`).
    pub fn passes_options_inline(&self) -> bool {
        (self.major, self.minor) >= (1, 7)
    }
}

/// The kubelet's cgroup driver, from its config file: `cgroupDriver: systemd` in a
/// KubeletConfiguration (YAML), or `--cgroup-driver=systemd` in an arguments file (microk8s).
pub fn kubelet_uses_systemd(text: &str) -> Option<bool> {
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("--cgroup-driver") {
            let v = rest
                .trim_start_matches(['=', ' '])
                .trim_matches(['"', '\'']);
            return Some(v == "systemd");
        }
    }
    #[derive(serde::Deserialize)]
    struct Kubelet {
        #[serde(rename = "cgroupDriver")]
        cgroup_driver: Option<String>,
    }
    let k: Kubelet = serde_saphyr::from_str(text).ok()?;
    k.cgroup_driver.map(|d| d == "systemd")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::host::fake::FakeCommands;

    fn tree(files: &[&str]) -> (tempfile::TempDir, Host) {
        let dir = tempfile::tempdir().unwrap();
        for f in files {
            let p = dir.path().join(f.trim_start_matches('/'));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "").unwrap();
        }
        let host = Host::with_commands(dir.path(), Box::new(FakeCommands::default()));
        (dir, host)
    }

    #[test]
    fn detects_one_distribution_and_refuses_two() {
        let (_d, host) = tree(&[]);
        assert_eq!(
            Distribution::detect(&host).unwrap(),
            Distribution::Containerd
        );
        let (_d, host) = tree(&["/var/lib/rancher/k3s/agent/etc/containerd/config.toml"]);
        assert_eq!(Distribution::detect(&host).unwrap(), Distribution::K3s);
        let (_d, host) = tree(&["/etc/k0s/containerd.toml"]);
        assert_eq!(Distribution::detect(&host).unwrap(), Distribution::K0s);
        let (_d, host) = tree(&[
            "/var/lib/rancher/k3s/agent/etc/containerd/config.toml",
            "/var/snap/microk8s/current/args/containerd-template.toml",
        ]);
        let err = Distribution::detect(&host).unwrap_err().to_string();
        assert!(err.contains("k3s") && err.contains("microk8s"), "{err}");
        assert!(err.contains("--distribution"), "{err}");
    }

    #[test]
    fn parses_containerd_versions() {
        let v = ContainerdVersion::parse(
            "containerd github.com/containerd/containerd/v2 2.1.9+unknown \n",
        )
        .unwrap();
        assert_eq!((v.major, v.minor), (2, 1));
        assert!(v.passes_options_inline());
        let v = ContainerdVersion::parse(
            "containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+b1",
        )
        .unwrap();
        assert_eq!((v.major, v.minor), (1, 6));
        assert!(!v.passes_options_inline());
        let v = ContainerdVersion::parse("containerd github.com/k3s-io/containerd v1.7.23-k3s2 x")
            .unwrap();
        assert_eq!((v.major, v.minor), (1, 7));
        assert!(ContainerdVersion::parse("garbage").is_none());
    }

    #[test]
    fn reads_the_kubelet_cgroup_driver() {
        let yaml = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: systemd\n";
        assert_eq!(kubelet_uses_systemd(yaml), Some(true));
        assert_eq!(
            kubelet_uses_systemd("cgroupDriver: cgroupfs\n"),
            Some(false)
        );
        assert_eq!(kubelet_uses_systemd("kind: KubeletConfiguration\n"), None);
        assert_eq!(
            kubelet_uses_systemd("--kubeconfig=/x\n--cgroup-driver=systemd\n"),
            Some(true)
        );
    }
}
