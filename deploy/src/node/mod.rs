//! `wasmpod node install | uninstall | status`: putting the shim on a Kubernetes node, run by
//! the DaemonSet in `deploy/` in a privileged pod with the host's `/` at `--host-root`.
//!
//! ```text
//! wasmpod node install --host-root DIR [--shim PATH] [--handlers LIST] [--no-restart]
//!     [--systemd-cgroup auto|true|false] [--cache-dir DIR] [--cache-max-bytes N]
//!     [--distribution k3s|rke2|microk8s|k0s|containerd] [--containerd HOSTPATH]
//!     [--node NAME]
//! wasmpod node uninstall --host-root DIR [--no-restart] [--node NAME]
//! wasmpod node status --host-root DIR [--ready]
//! wasmpod node sleep                   (the DaemonSet's main container: waits for SIGTERM)
//! wasmpod node image -o OUT.tar -t NAME [--shim PATH]   (the installer image)
//! ```

pub mod config;
pub mod cri;
pub mod detect;
pub mod error;
pub mod host;
pub mod install;
pub mod label;
pub mod lock;
pub mod restart;
pub mod template;

use std::path::PathBuf;

use config::Handler;
use detect::Distribution;
use error::NodeError;
use host::Host;
use install::{CgroupDriver, InstallRequest, Outcome};
use label::Cluster;

pub const USAGE: &str = "usage: wasmpod node install --host-root DIR [--shim PATH] \
[--handlers wasmpod,spin,wasmtime] [--no-restart] [--systemd-cgroup auto|true|false] \
[--cache-dir DIR] [--cache-max-bytes N] [--distribution k3s|rke2|microk8s|k0s|containerd] \
[--containerd HOSTPATH] [--node NAME]
       wasmpod node uninstall --host-root DIR [--no-restart] [--node NAME]
       wasmpod node status --host-root DIR [--ready]
       wasmpod node sleep
       wasmpod node image -o OUT.tar -t NAME [--shim PATH]";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    Install,
    Uninstall,
    Status,
}

/// `status --ready` exits 1 unless containerd serves the handlers (a readiness probe).
const NOT_READY: &str = "not ready";

#[derive(Debug)]
struct Args {
    command: Command,
    host_root: PathBuf,
    shim: Option<PathBuf>,
    handlers: Vec<Handler>,
    restart: bool,
    cgroup_driver: CgroupDriver,
    cache_dir: Option<String>,
    cache_max_bytes: Option<u64>,
    distribution: Option<Distribution>,
    containerd: Option<String>,
    node: Option<String>,
    ready: bool,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let command = match args.first().map(String::as_str) {
        Some("install") => Command::Install,
        Some("uninstall") => Command::Uninstall,
        Some("status") => Command::Status,
        _ => return Err(USAGE.into()),
    };
    let mut out = Args {
        command,
        host_root: PathBuf::new(),
        shim: None,
        handlers: install::default_handlers(),
        restart: true,
        cgroup_driver: CgroupDriver::Auto,
        cache_dir: None,
        cache_max_bytes: None,
        distribution: None,
        containerd: None,
        node: std::env::var("NODE_NAME").ok().filter(|n| !n.is_empty()),
        ready: false,
    };
    let mut host_root = None;
    let mut it = args[1..].iter();
    while let Some(arg) = it.next() {
        let mut value = || value_of(&mut it, arg);
        match arg.as_str() {
            "--host-root" => host_root = Some(PathBuf::from(value()?)),
            "--shim" => out.shim = Some(value()?.into()),
            "--handlers" => out.handlers = parse_handlers(&value()?)?,
            "--no-restart" => out.restart = false,
            "--systemd-cgroup" => {
                out.cgroup_driver = match value()?.as_str() {
                    "auto" => CgroupDriver::Auto,
                    "true" => CgroupDriver::Systemd,
                    "false" => CgroupDriver::Cgroupfs,
                    other => {
                        return Err(format!(
                            "--systemd-cgroup takes auto, true or false, not {other}"
                        ))
                    }
                }
            }
            "--cache-dir" => {
                let d = value()?;
                if !d.starts_with('/') {
                    return Err(format!("--cache-dir must be absolute: {d}"));
                }
                out.cache_dir = Some(d);
            }
            "--cache-max-bytes" => {
                let v = value()?;
                out.cache_max_bytes = Some(
                    v.parse::<u64>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| format!("--cache-max-bytes takes a byte count, not {v}"))?,
                );
            }
            "--distribution" => {
                out.distribution = Some(Distribution::parse(&value()?).map_err(|e| e.to_string())?)
            }
            "--containerd" => {
                let p = value()?;
                if !p.starts_with('/') {
                    return Err(format!("--containerd takes the binary's host path: {p}"));
                }
                out.containerd = Some(p);
            }
            "--node" => out.node = Some(value()?),
            "--ready" if command == Command::Status => out.ready = true,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown option {other}\n{USAGE}")),
        }
    }
    out.host_root = host_root.ok_or("--host-root is required (the host's / as mounted here)")?;
    Ok(out)
}

/// The value after the option `arg`.
fn value_of(it: &mut std::slice::Iter<'_, String>, arg: &str) -> Result<String, String> {
    it.next()
        .cloned()
        .ok_or_else(|| format!("{arg} needs a value"))
}

/// `--handlers a,b=spin`: a handler per item, named as given; `NAME=RUNTIME` picks the shim
/// (wasmpod, spin or wasmtime), a bare name is the runtime of that name.
fn parse_handlers(list: &str) -> Result<Vec<Handler>, String> {
    let mut handlers: Vec<Handler> = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, runtime) = item.split_once('=').unwrap_or((item, item));
        let runtime_type = install::RUNTIMES
            .iter()
            .find(|(r, _)| *r == runtime)
            .map(|(_, t)| t.to_string())
            .ok_or_else(|| {
                format!("--handlers: unknown runtime {runtime:?} (wasmpod, spin or wasmtime)")
            })?;
        if !is_dns_label(name) {
            return Err(format!(
                "--handlers: {name:?} cannot be a RuntimeClass handler (lowercase letters, \
                 digits and '-', at most 63)"
            ));
        }
        if handlers.iter().any(|h| h.name == name) {
            return Err(format!("--handlers: {name:?} given twice"));
        }
        handlers.push(Handler {
            name: name.to_string(),
            runtime_type,
        });
    }
    if handlers.is_empty() {
        return Err("--handlers: give at least one".into());
    }
    Ok(handlers)
}

/// A RuntimeClass `handler`: an RFC 1123 DNS label.
fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// The shim to install: `--shim`, else the one shipped beside this binary.
fn shim_path(given: Option<PathBuf>) -> Result<PathBuf, String> {
    if let Some(p) = given {
        return Ok(p);
    }
    let me = std::env::current_exe().map_err(|e| format!("where am I: {e}"))?;
    let beside = me
        .parent()
        .map(|d| d.join(install::SHIM_NAME))
        .ok_or("where am I")?;
    if beside.is_file() {
        Ok(beside)
    } else {
        Err(format!(
            "no shim beside {} ({} missing): give --shim PATH",
            me.display(),
            beside.display()
        ))
    }
}

/// Runs `wasmpod node ARGS`.
pub fn main(args: &[String]) -> Result<(), String> {
    match args.first().map(String::as_str) {
        Some("sleep") => return sleep_until_stopped(),
        Some("image") => return image(&args[1..]),
        _ => {}
    }
    let args = parse(args)?;
    run(args).map_err(|e| e.to_string())
}

/// Waits for SIGTERM or SIGINT (the DaemonSet's main container, PID 1 in its pod, which has
/// nothing to do once the init container installed).
fn sleep_until_stopped() -> Result<(), String> {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.thread_block()
        .map_err(|e| format!("block signals: {e}"))?;
    let signal = set.wait().map_err(|e| format!("wait for a signal: {e}"))?;
    println!("wasmpod node: {signal}: stopping (uninstall is `wasmpod node uninstall`)");
    Ok(())
}

/// `wasmpod node image -o OUT.tar -t NAME [--shim PATH]`.
fn image(args: &[String]) -> Result<(), String> {
    let (mut output, mut tag, mut shim) = (None, None, None);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || value_of(&mut it, arg);
        match arg.as_str() {
            "-o" | "--output" => output = Some(PathBuf::from(value()?)),
            "-t" | "--tag" => tag = Some(value()?),
            "--shim" => shim = Some(PathBuf::from(value()?)),
            other => return Err(format!("unknown option {other}\n{USAGE}")),
        }
    }
    let output = output.ok_or("--output is required")?;
    let name = wasmpod_oci::reference::ImageName::parse(&tag.ok_or("--tag is required")?)
        .map_err(|e| e.to_string())?;
    let me = std::env::current_exe().map_err(|e| format!("where am I: {e}"))?;
    let shim = shim_path(shim)?;
    let image = crate::installer_image::build(&name, &me, &shim)?;
    image.write_tar(&output).map_err(|e| e.to_string())?;
    println!("wrote {} ({name})", output.display());
    Ok(())
}

fn run(args: Args) -> Result<(), NodeError> {
    let host = Host::open(&args.host_root)?;
    let mut log = |line: &str| println!("wasmpod node: {line}");
    match args.command {
        Command::Install => {
            let shim = shim_path(args.shim).map_err(NodeError::Command)?;
            let bytes = std::fs::read(&shim).map_err(NodeError::io(&shim))?;
            let req = InstallRequest {
                shim: bytes,
                handlers: args.handlers,
                cgroup_driver: args.cgroup_driver,
                cache_dir: args.cache_dir,
                cache_max_bytes: args.cache_max_bytes,
                distribution: args.distribution,
                containerd: args.containerd,
                restart: args.restart,
            };
            let outcome = install::install(&host, &req, &mut log)?;
            // The label says the node serves the handlers: only after a restart (or when
            // nothing needed one), never when the operator still has to restart.
            let serving = match outcome {
                Outcome::Unchanged => true,
                Outcome::Installed { restarted } => restarted.is_some(),
            };
            if serving {
                label(
                    args.node.as_deref(),
                    Some(env!("CARGO_PKG_VERSION")),
                    &mut log,
                )?;
            }
        }
        Command::Uninstall => {
            label(args.node.as_deref(), None, &mut log)?;
            install::uninstall(&host, args.restart, &mut log)?;
        }
        Command::Status => {
            let status = install::status(&host)?;
            for line in &status.lines {
                println!("{line}");
            }
            if args.ready && !status.ready {
                return Err(NodeError::Command(NOT_READY.into()));
            }
        }
    }
    Ok(())
}

fn label(
    node: Option<&str>,
    value: Option<&str>,
    log: &mut dyn FnMut(&str),
) -> Result<(), NodeError> {
    match Cluster::from_env()? {
        Cluster::Outside => {
            log("not in a Kubernetes pod: the node label is not set");
            Ok(())
        }
        Cluster::InCluster(server) => {
            let node = node.ok_or_else(|| {
                NodeError::Label(
                    "no node name: set NODE_NAME from spec.nodeName, or give --node".into(),
                )
            })?;
            label::set(&server, node, value)?;
            match value {
                Some(v) => log(&format!("labelled node {node} {}={v}", label::LABEL)),
                None => log(&format!("removed {} from node {node}", label::LABEL)),
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn parses_install_options() {
        let a = parse(&args(&[
            "install",
            "--host-root",
            "/host",
            "--handlers",
            "wasmpod,spin-v2=spin",
            "--no-restart",
            "--systemd-cgroup",
            "true",
            "--cache-max-bytes",
            "1024",
        ]))
        .unwrap();
        assert_eq!(a.command, Command::Install);
        assert!(!a.restart);
        assert_eq!(a.cgroup_driver, CgroupDriver::Systemd);
        assert_eq!(
            a.handlers,
            vec![
                Handler {
                    name: "wasmpod".into(),
                    runtime_type: "io.containerd.wasmpod.v1".into()
                },
                Handler {
                    name: "spin-v2".into(),
                    runtime_type: "io.containerd.spin.v2".into()
                }
            ]
        );
    }

    #[test]
    fn refuses_bad_options() {
        for bad in [
            &["install"][..],
            &["install", "--host-root"],
            &["install", "--host-root", "/h", "--handlers", "Spin"],
            &["install", "--host-root", "/h", "--handlers", "x=crun"],
            &["install", "--host-root", "/h", "--handlers", "a,a"],
            &["install", "--host-root", "/h", "--systemd-cgroup", "yes"],
            &["install", "--host-root", "/h", "--cache-dir", "rel"],
            &["install", "--host-root", "/h", "--containerd", "containerd"],
            &["install", "--host-root", "/h", "--distribution", "kind"],
            &["install", "--host-root", "/h", "--bogus"],
            &["reinstall", "--host-root", "/h"],
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad:?}");
        }
    }
}
