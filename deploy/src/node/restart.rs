//! Restarting the node's containerd so that it reads the new config: the distribution's
//! systemd unit, restarted in the host's namespaces, then a wait until its CRI plugin
//! answers with wasmpod's handlers. containerd ignores SIGHUP, so there is no signal path.

use std::time::Duration;

use super::cri;
use super::detect::Distribution;
use super::error::NodeError;
use super::host::{Host, HostCommand};

/// How long containerd gets to come back.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// The unit of `dist` that is active on the host.
pub fn active_unit(host: &Host, dist: Distribution) -> Result<(String, String), NodeError> {
    if !host.exists("/run/systemd/system") {
        return Err(NodeError::Restart(format!(
            "this node does not run systemd, so wasmpod cannot restart {}'s containerd: \
             restart it yourself (containerd ignores SIGHUP), and run the installer with \
             --no-restart",
            dist.name()
        )));
    }
    let systemctl = host
        .find_program(&["/usr/bin/systemctl", "/bin/systemctl"])
        .ok_or_else(|| NodeError::Restart("systemctl not found on the host".into()))?;
    for unit in dist.units() {
        let out = host.run(
            &HostCommand::new(&systemctl)
                .arg("is-active")
                .arg("--quiet")
                .arg(unit),
        )?;
        if out.success {
            return Ok((systemctl, unit.to_string()));
        }
    }
    Err(NodeError::Restart(format!(
        "none of {} is active on this node; restart containerd yourself and run the installer \
         with --no-restart",
        dist.units().join(", ")
    )))
}

/// Restarts the containerd of `dist` and waits until it serves `handlers`.
pub fn restart(host: &Host, dist: Distribution, handlers: &[String]) -> Result<String, NodeError> {
    let (systemctl, unit) = active_unit(host, dist)?;
    let out = host.run(&HostCommand::new(&systemctl).arg("restart").arg(&unit))?;
    if !out.success {
        return Err(NodeError::Restart(format!(
            "systemctl restart {unit} failed: {}",
            out.stderr.trim()
        )));
    }
    cri::wait_for(&host.path(dist.socket()), handlers, READY_TIMEOUT)?;
    Ok(unit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::host::fake::FakeCommands;

    #[test]
    fn finds_the_active_unit_of_the_distribution() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("run/systemd/system")).unwrap();
        std::fs::create_dir_all(dir.path().join("usr/bin")).unwrap();
        let systemctl = dir.path().join("usr/bin/systemctl");
        std::fs::write(&systemctl, "").unwrap();
        std::fs::set_permissions(
            &systemctl,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let fake = FakeCommands::default();
        fake.answer(
            "/usr/bin/systemctl is-active --quiet k3s.service",
            false,
            "",
        );
        fake.answer(
            "/usr/bin/systemctl is-active --quiet k3s-agent.service",
            true,
            "",
        );
        let host = Host::with_commands(dir.path(), Box::new(fake.clone()));
        assert_eq!(
            active_unit(&host, Distribution::K3s).unwrap().1,
            "k3s-agent.service"
        );
        let err = active_unit(&host, Distribution::K0s)
            .unwrap_err()
            .to_string();
        assert!(err.contains("k0sworker.service"), "{err}");
    }

    #[test]
    fn refuses_a_node_without_systemd() {
        let dir = tempfile::tempdir().unwrap();
        let host = Host::with_commands(dir.path(), Box::new(FakeCommands::default()));
        let err = active_unit(&host, Distribution::Containerd)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--no-restart") && err.contains("SIGHUP"),
            "{err}"
        );
    }
}
