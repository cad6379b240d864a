//! `install`, `uninstall` and `status` on one node: the shim under `/opt/wasmpod/bin` with its
//! runtime names linked onto the host's PATH, wasmpod's handlers in the containerd config the
//! distribution reads (checked by that containerd before it replaces the original), the
//! lock that makes a second install a no-op, and the restart.

use super::config::{self, Applied, Handler, Schema, ShimOptions};
use super::cri;
use super::detect::{kubelet_uses_systemd, ConfigTarget, ContainerdVersion, Distribution};
use super::error::NodeError;
use super::host::{sha256_hex, Host, HostCommand};
use super::lock::{ConfigRecord, Lock};
use super::restart;
use super::template;

pub const BIN_DIR: &str = "/opt/wasmpod/bin";
/// The directory of runtime-name links containerd finds shims in (containerd#11480: a
/// `BinaryName` alone is not enough; containerd looks up `containerd-shim-NAME-vN` on PATH).
pub const PATH_DIR: &str = "/usr/local/bin";
pub const SHIM_NAME: &str = "containerd-shim-wasmpod-v1";
/// The compatibility names, links to the same binary.
pub const ALIASES: [&str; 2] = ["containerd-shim-spin-v2", "containerd-shim-wasmtime-v1"];
/// The handler options as a file, for containerd 1.6 (which passes only `ConfigPath`).
pub const OPTIONS_FILE: &str = "/opt/wasmpod/etc/runtime-options.toml";
const BACKUP_DIR: &str = "/opt/wasmpod/backup";
const ETC_DIR: &str = "/opt/wasmpod/etc";

/// The shims a handler can start, by the name `--handlers` uses.
pub const RUNTIMES: [(&str, &str); 3] = [
    ("wasmpod", "io.containerd.wasmpod.v1"),
    ("spin", "io.containerd.spin.v2"),
    ("wasmtime", "io.containerd.wasmtime.v1"),
];

/// The kubelet's cgroup driver, as the operator chose it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupDriver {
    /// Read it from the node: the kubelet's config, else the runc handler's option.
    Auto,
    Systemd,
    Cgroupfs,
}

/// What `install` is asked to do.
#[derive(Debug, Clone)]
pub struct InstallRequest {
    /// The shim binary's bytes.
    pub shim: Vec<u8>,
    pub handlers: Vec<Handler>,
    pub cgroup_driver: CgroupDriver,
    pub cache_dir: Option<String>,
    pub cache_max_bytes: Option<u64>,
    pub distribution: Option<Distribution>,
    /// The host's containerd binary (a host path), when not where the distribution keeps it.
    pub containerd: Option<String>,
    pub restart: bool,
}

/// What `install` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Everything was already as asked: nothing written, nothing restarted.
    Unchanged,
    Installed {
        restarted: Option<String>,
    },
}

/// The node as the installer found it.
struct Node {
    distribution: Distribution,
    containerd: Option<(String, ContainerdVersion)>,
}

impl Node {
    /// The node's distribution, and its containerd binary and version (asked by running
    /// it on the host).
    fn inspect(
        host: &Host,
        distribution: Option<Distribution>,
        containerd: Option<&str>,
    ) -> Result<Node, NodeError> {
        let distribution = match distribution {
            Some(d) => d,
            None => Distribution::detect(host)?,
        };
        let program = match containerd {
            Some(p) => Some(p.to_string()),
            None => host.find_program(distribution.containerd_binaries()),
        };
        let containerd = match program {
            Some(p) => {
                let v = ContainerdVersion::of(host, &p)?;
                Some((p, v))
            }
            None => None,
        };
        Ok(Node {
            distribution,
            containerd,
        })
    }

    fn major(&self) -> Option<u64> {
        self.containerd.as_ref().map(|(_, v)| v.major)
    }

    fn describe(&self) -> String {
        match &self.containerd {
            Some((p, v)) => format!(
                "{} node, containerd {} ({p})",
                self.distribution.name(),
                v.text
            ),
            None => format!(
                "{} node, containerd binary not found (the edit is not checked by it)",
                self.distribution.name()
            ),
        }
    }
}

/// The config change planned for a node.
struct Plan {
    path: String,
    before: Option<String>,
    after: String,
    schema: Schema,
    /// The text containerd will load, to check (the template's rendering, for k3s/rke2).
    to_check: String,
}

/// The default handlers: one per runtime, named after it.
pub fn default_handlers() -> Vec<Handler> {
    RUNTIMES
        .iter()
        .map(|(name, runtime_type)| Handler {
            name: name.to_string(),
            runtime_type: runtime_type.to_string(),
        })
        .collect()
}

pub fn install(
    host: &Host,
    req: &InstallRequest,
    log: &mut dyn FnMut(&str),
) -> Result<Outcome, NodeError> {
    let node = Node::inspect(host, req.distribution, req.containerd.as_deref())?;
    log(&node.describe());
    let lock = Lock::read(host)?;
    if let Some(l) = &lock {
        if l.distribution != node.distribution.name() {
            return Err(NodeError::Detect(format!(
                "wasmpod was installed here as a {} node and this is a {} node now; uninstall first",
                l.distribution,
                node.distribution.name()
            )));
        }
    }
    let systemd = systemd_cgroup(host, &node, req.cgroup_driver, log)?;
    let inline = node
        .containerd
        .as_ref()
        .map(|(_, v)| v.passes_options_inline())
        .unwrap_or(false);
    let mut options = ShimOptions {
        systemd_cgroup: systemd,
        cache_dir: req.cache_dir.clone(),
        cache_max_bytes: req.cache_max_bytes,
        config_path: None,
    };
    // containerd 1.6 (or one whose version is unknown) passes only a file's path; name the
    // file when the options say something the shim's defaults do not.
    if !inline && options != ShimOptions::default() {
        options.config_path = Some(OPTIONS_FILE.to_string());
    }
    let owned: Vec<String> = lock
        .as_ref()
        .map(|l| l.handlers.clone())
        .unwrap_or_default();
    let plan = plan(host, &node, &req.handlers, &options, &owned)?;
    let names: Vec<String> = req.handlers.iter().map(|h| h.name.clone()).collect();

    let shim_sha = sha256_hex(&req.shim);
    let shim_path = format!("{BIN_DIR}/{SHIM_NAME}");
    let links = wanted_links();
    let links_ok = links
        .iter()
        .all(|(link, target)| host.read_link(link).as_deref() == Some(target.as_str()));
    let options_text = options.file_text();
    let config_changed = plan.before.as_deref() != Some(plan.after.as_str());
    let unchanged = !config_changed
        && host.sha256(&shim_path)?.as_deref() == Some(shim_sha.as_str())
        && links_ok
        && host.read_optional(OPTIONS_FILE)?.as_deref() == Some(options_text.as_str())
        && lock.as_ref().map(|l| (&l.shim_sha256, &l.handlers)) == Some((&shim_sha, &names));
    if unchanged {
        log("already installed as asked: nothing changed");
        return Ok(Outcome::Unchanged);
    }

    check_links_are_free(host, &links)?;
    let mut created_dirs = lock
        .as_ref()
        .map(|l| l.created_dirs.clone())
        .unwrap_or_default();
    let config_dir = parent_dir(&plan.path);
    for dir in [BIN_DIR, ETC_DIR, BACKUP_DIR, PATH_DIR, config_dir] {
        for missing in missing_dirs(host, dir) {
            if !created_dirs.contains(&missing) {
                created_dirs.push(missing);
            }
        }
    }
    if let Some((program, version)) = &node.containerd {
        validate(host, program, version, &plan, &req.handlers)?;
        log(&format!(
            "containerd {} accepts the new config",
            version.text
        ));
    }

    // The binary first, so that no handler ever names a missing shim.
    host.write_atomic(&shim_path, &req.shim, 0o755)?;
    for (link, target) in &links {
        host.symlink(target, link)?;
    }
    host.write_atomic(OPTIONS_FILE, options_text.as_bytes(), 0o644)?;
    let record = record_config(host, lock.as_ref(), &plan)?;
    if config_changed {
        host.write_atomic(&plan.path, plan.after.as_bytes(), 0o644)?;
        log(&format!(
            "{} now has the handlers {} ({})",
            plan.path,
            names.join(", "),
            plan.schema.handler_path("NAME")
        ));
    }
    Lock {
        version: env!("CARGO_PKG_VERSION").to_string(),
        distribution: node.distribution.name().to_string(),
        shim_sha256: shim_sha,
        handlers: names.clone(),
        links: links.iter().map(|(l, _)| l.clone()).collect(),
        created_dirs,
        config: record,
    }
    .write(host)?;
    log(&format!("installed {shim_path} ({} bytes)", req.shim.len()));

    let restarted = if config_changed && req.restart {
        let unit = restart::restart(host, node.distribution, &names)?;
        log(&format!("restarted {unit}; containerd serves the handlers"));
        Some(unit)
    } else {
        if config_changed {
            log("not restarting containerd (--no-restart): restart it to load the handlers");
        }
        None
    };
    Ok(Outcome::Installed { restarted })
}

/// Removes what `install` added and puts the config back.
pub fn uninstall(
    host: &Host,
    restart_containerd: bool,
    log: &mut dyn FnMut(&str),
) -> Result<(), NodeError> {
    let Some(lock) = Lock::read(host)? else {
        log("wasmpod is not installed on this node (no lock file): nothing to do");
        return Ok(());
    };
    let distribution = Distribution::parse(&lock.distribution)?;
    let rec = &lock.config;
    let current = host.read_optional(&rec.path)?;
    let untouched =
        current.as_deref().map(|c| sha256_hex(c.as_bytes())) == Some(rec.written_sha256.clone());
    let mut config_changed = true;
    if untouched {
        match (&rec.backup, rec.created) {
            (_, true) => host.remove_file(&rec.path)?,
            (Some(backup), false) => {
                let original =
                    std::fs::read(host.path(backup)).map_err(NodeError::io(host.path(backup)))?;
                host.write_atomic(&rec.path, &original, 0o644)?;
            }
            (None, false) => config_changed = false,
        }
        log(&format!(
            "{} restored as it was before the install",
            rec.path
        ));
    } else if let Some(text) = current {
        // Edited since: take out only our tables, keep the rest as it is now.
        let schema = schema_of_number(rec.schema)?;
        let after = if template::has_block(&text) {
            template::without_block(&text)
        } else {
            config::remove(&text, schema, &lock.handlers)?
        };
        config_changed = after != text;
        if config_changed {
            host.write_atomic(&rec.path, after.as_bytes(), 0o644)?;
        }
        log(&format!(
            "{} changed after the install: removed only wasmpod's handlers from it",
            rec.path
        ));
    } else {
        config_changed = false;
    }
    for link in &lock.links {
        if is_our_link(host, link) {
            host.remove_file(link)?;
        }
    }
    host.remove_file(&format!("{BIN_DIR}/{SHIM_NAME}"))?;
    host.remove_file(OPTIONS_FILE)?;
    if let Some(backup) = &rec.backup {
        host.remove_file(backup)?;
    }
    host.remove_file(super::lock::LOCK_PATH)?;
    for dir in lock.created_dirs.iter().rev() {
        host.remove_dir_if_empty(dir);
    }
    log("removed the shim, its links and the lock");
    if config_changed && restart_containerd {
        let (systemctl, unit) = restart::active_unit(host, distribution)?;
        let out = host.run(&HostCommand::new(&systemctl).arg("restart").arg(&unit))?;
        if !out.success {
            return Err(NodeError::Restart(format!(
                "systemctl restart {unit} failed: {}",
                out.stderr.trim()
            )));
        }
        log(&format!("restarted {unit}"));
    }
    Ok(())
}

/// What `status` found: its report, and whether the node serves wasmpod's handlers.
pub struct Status {
    pub lines: Vec<String>,
    pub ready: bool,
}

/// What is installed, and what containerd sees. It runs no host command, so that the
/// DaemonSet's unprivileged main container can run it as its readiness probe.
pub fn status(host: &Host) -> Result<Status, NodeError> {
    let mut lines = Vec::new();
    let mut ready = false;
    let lock = Lock::read(host)?;
    let distribution = match &lock {
        Some(l) => Distribution::parse(&l.distribution)?,
        None => Distribution::detect(host)?,
    };
    lines.push(format!("{} node", distribution.name()));
    let Some(lock) = lock else {
        lines.push("wasmpod: not installed (no lock file)".into());
        return Ok(Status { lines, ready });
    };
    let shim = format!("{BIN_DIR}/{SHIM_NAME}");
    let sha = host.sha256(&shim)?;
    lines.push(format!(
        "wasmpod {}: shim {shim} {}",
        lock.version,
        match sha {
            Some(s) if s == lock.shim_sha256 => "present, as installed".to_string(),
            Some(_) => "present, but not the binary installed (changed since)".to_string(),
            None => "MISSING".to_string(),
        }
    ));
    let text = host.read_optional(&lock.config.path)?.unwrap_or_default();
    let in_file = if template::has_block(&text) {
        lock.handlers.clone()
    } else {
        config::handlers_in(&text, schema_of_number(lock.config.schema)?)?
            .into_iter()
            .map(|(n, _)| n)
            .filter(|n| lock.handlers.contains(n))
            .collect()
    };
    lines.push(format!(
        "config {}: handlers {}",
        lock.config.path,
        if in_file.is_empty() {
            "NONE".to_string()
        } else {
            in_file.join(", ")
        }
    ));
    let socket = host.path(distribution.socket());
    lines.push(match cri::handlers(&socket) {
        Ok(seen) => {
            let missing: Vec<&String> = lock
                .handlers
                .iter()
                .filter(|h| !seen.iter().any(|(s, _)| s == *h))
                .collect();
            if missing.is_empty() {
                ready = true;
                format!(
                    "containerd serves the handlers {}",
                    lock.handlers.join(", ")
                )
            } else {
                format!("containerd does not serve {missing:?} yet: restart it to load the config")
            }
        }
        Err(e) => format!("containerd not reachable: {e}"),
    });
    Ok(Status { lines, ready })
}

/// The symlinks an install makes: host path of the link, and its target. Targets are
/// relative, so they resolve the same from the host and from under a host root.
fn wanted_links() -> Vec<(String, String)> {
    let mut links: Vec<(String, String)> = ALIASES
        .iter()
        .map(|a| (format!("{BIN_DIR}/{a}"), SHIM_NAME.to_string()))
        .collect();
    let up = "../".repeat(PATH_DIR.matches('/').count());
    let bin = BIN_DIR.trim_start_matches('/');
    for name in std::iter::once(SHIM_NAME).chain(ALIASES) {
        links.push((format!("{PATH_DIR}/{name}"), format!("{up}{bin}/{name}")));
    }
    links
}

/// Whether the symlink `link` is one an install made.
fn is_our_link(host: &Host, link: &str) -> bool {
    wanted_links()
        .iter()
        .any(|(l, target)| l == link && host.read_link(link).as_deref() == Some(target.as_str()))
}

/// A file of another install on one of our link paths is never replaced.
fn check_links_are_free(host: &Host, links: &[(String, String)]) -> Result<(), NodeError> {
    for (link, _) in links {
        if std::fs::symlink_metadata(host.path(link)).is_err() || is_our_link(host, link) {
            continue;
        }
        return Err(NodeError::Conflict(format!(
            "{link} exists and is not wasmpod's: another shim is installed under that name; \
             remove it first"
        )));
    }
    Ok(())
}

fn systemd_cgroup(
    host: &Host,
    node: &Node,
    driver: CgroupDriver,
    log: &mut dyn FnMut(&str),
) -> Result<bool, NodeError> {
    match driver {
        CgroupDriver::Systemd => return Ok(true),
        CgroupDriver::Cgroupfs => return Ok(false),
        CgroupDriver::Auto => {}
    }
    for file in node.distribution.kubelet_configs() {
        if let Some(text) = host.read_optional(file)? {
            if let Some(systemd) = kubelet_uses_systemd(&text) {
                log(&format!(
                    "SystemdCgroup = {systemd} (the kubelet's cgroup driver in {file})"
                ));
                return Ok(systemd);
            }
        }
    }
    // The runc handler has to match the kubelet too: follow it.
    let file = match node.distribution.config_target() {
        ConfigTarget::File { path } => path,
        ConfigTarget::Template { rendered, .. } => rendered,
        ConfigTarget::DropIn { main, .. } => main,
    };
    if let Some(text) = host.read_optional(&file)? {
        if let Ok(schema) = Schema::of(&text, node.major()) {
            if let Some(systemd) = config::runc_systemd_cgroup(&text, schema) {
                log(&format!(
                    "SystemdCgroup = {systemd} (as the runc handler in {file})"
                ));
                return Ok(systemd);
            }
        }
    }
    log("SystemdCgroup = false (no kubelet config or runc option says otherwise: cgroupfs, the kubelet's default)");
    Ok(false)
}

fn plan(
    host: &Host,
    node: &Node,
    handlers: &[Handler],
    options: &ShimOptions,
    owned: &[String],
) -> Result<Plan, NodeError> {
    let major = node.major();
    match node.distribution.config_target() {
        ConfigTarget::File { path } => {
            let before = host.read_optional(&path)?;
            let text = before.clone().unwrap_or_default();
            let schema = Schema::of(&text, major).map_err(|e| in_file(&path, e))?;
            let Applied { text: after, .. } =
                config::apply(&text, schema, handlers, options, owned)
                    .map_err(|e| in_file(&path, e))?;
            Ok(Plan {
                path,
                before,
                to_check: after.clone(),
                after,
                schema,
            })
        }
        ConfigTarget::DropIn { path, main } => {
            let main_text = host.read_optional(&main)?.unwrap_or_default();
            let schema = match Schema::of(&main_text, major).map_err(|e| in_file(&main, e))? {
                Schema::V1 => Schema::V2,
                s => s,
            };
            let before = host.read_optional(&path)?;
            if before.is_some() && owned.is_empty() {
                return Err(NodeError::Conflict(format!(
                    "{path} exists and wasmpod did not write it; remove it first"
                )));
            }
            let Applied { text: after, .. } = config::apply("", schema, handlers, options, &[])?;
            Ok(Plan {
                path,
                before,
                to_check: after.clone(),
                after,
                schema,
            })
        }
        ConfigTarget::Template {
            dir,
            rendered,
            templates,
        } => {
            let rendered_text = host.read_optional(&rendered)?.ok_or_else(|| {
                NodeError::Detect(format!(
                    "{rendered} is missing: start {} once so that it writes its containerd \
                     config, then install",
                    node.distribution.name()
                ))
            })?;
            // The template in use is the first that exists; a new one follows the schema
            // of what the distribution renders now.
            let existing = templates
                .iter()
                .map(|t| format!("{dir}/{t}"))
                .find(|p| host.exists(p));
            let rendered_schema =
                Schema::of(&rendered_text, major).map_err(|e| in_file(&rendered, e))?;
            let path = existing.clone().unwrap_or_else(|| {
                format!(
                    "{dir}/{}",
                    if rendered_schema == Schema::V3 {
                        templates[0]
                    } else {
                        templates[1]
                    }
                )
            });
            let schema = if path.ends_with(templates[0]) {
                Schema::V3
            } else {
                Schema::V2
            };
            let before = match &existing {
                Some(p) => host.read_optional(p)?,
                None => None,
            };
            let base = before.clone().unwrap_or_else(|| template::BASE.to_string());
            let tables = config::tables_text(schema, handlers, options);
            let after = template::with_block(&base, &tables);
            // What containerd will load: today's rendering, with our tables in it (a table
            // that the rendering already has, not from us, is a conflict here too).
            let Applied { text: to_check, .. } =
                config::apply(&rendered_text, schema, handlers, options, owned)
                    .map_err(|e| in_file(&rendered, e))?;
            Ok(Plan {
                path,
                before,
                after,
                schema,
                to_check,
            })
        }
    }
}

fn in_file(path: &str, e: NodeError) -> NodeError {
    match e {
        NodeError::Config(m) => NodeError::Config(format!("{path}: {m}")),
        NodeError::Conflict(m) => NodeError::Conflict(format!("{path}: {m}")),
        other => other,
    }
}

/// Runs `containerd --config NEW config dump` on the host and checks that the handlers come
/// out with their runtime types.
fn validate(
    host: &Host,
    program: &str,
    version: &ContainerdVersion,
    plan: &Plan,
    handlers: &[Handler],
) -> Result<(), NodeError> {
    let check = format!("{}/.wasmpod-check.toml", parent_dir(&plan.path));
    host.write_atomic(&check, plan.to_check.as_bytes(), 0o600)?;
    let out = host.run(
        &HostCommand::new(program)
            .arg("--config")
            .path(&check)
            .arg("config")
            .arg("dump"),
    );
    host.remove_file(&check)?;
    let out = out?;
    if !out.success {
        return Err(NodeError::Rejected(out.stderr.trim().to_string()));
    }
    // `config dump` prints containerd's own schema: 2 on 1.x, 3 on 2.x.
    let dumped = Schema::for_new_file(version.major);
    let seen = config::handlers_in(&out.stdout, dumped)
        .map_err(|e| NodeError::Rejected(format!("its config dump: {e}")))?;
    for h in handlers {
        if !seen
            .iter()
            .any(|(n, t)| n == &h.name && t == &h.runtime_type)
        {
            return Err(NodeError::Rejected(format!(
                "containerd {} loads the file without the handler {:?} (at {}): it would be \
                 silently ignored",
                version.text,
                h.name,
                plan.schema.handler_path(&h.name)
            )));
        }
    }
    Ok(())
}

/// The lock's record of the config: kept from the first install (the original stays the
/// original), with the new sha.
fn record_config(host: &Host, lock: Option<&Lock>, plan: &Plan) -> Result<ConfigRecord, NodeError> {
    let written_sha256 = sha256_hex(plan.after.as_bytes());
    if let Some(l) = lock.filter(|l| l.config.path == plan.path) {
        return Ok(ConfigRecord {
            written_sha256,
            ..l.config.clone()
        });
    }
    let backup = match &plan.before {
        Some(text) => {
            let name = plan.path.trim_start_matches('/').replace('/', "_");
            let backup = format!("{BACKUP_DIR}/{name}");
            host.write_atomic(&backup, text.as_bytes(), 0o600)?;
            Some(backup)
        }
        None => None,
    };
    Ok(ConfigRecord {
        path: plan.path.clone(),
        created: plan.before.is_none(),
        backup,
        written_sha256,
        schema: plan.schema.number(),
    })
}

/// The directory of a host path.
fn parent_dir(path: &str) -> &str {
    path.rsplit_once('/')
        .map(|(d, _)| d)
        .filter(|d| !d.is_empty())
        .unwrap_or("/")
}

/// `dir` and its ancestors that do not exist on the host, outermost first.
fn missing_dirs(host: &Host, dir: &str) -> Vec<String> {
    let mut missing = Vec::new();
    let mut d = dir.to_string();
    while d != "/" && !host.exists(&d) {
        missing.push(d.clone());
        d = parent_dir(&d).to_string();
    }
    missing.reverse();
    missing
}

fn schema_of_number(n: i64) -> Result<Schema, NodeError> {
    match n {
        1 => Ok(Schema::V1),
        2 => Ok(Schema::V2),
        3 => Ok(Schema::V3),
        _ => Err(NodeError::Config(format!("the lock names schema {n}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::host::fake::FakeCommands;

    const V2: &str =
        "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"pause:3.9\"\n";
    const K3S_RENDERED: &str = "# File generated by k3s. DO NOT EDIT.\nversion = 3\n[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]\n  SystemdCgroup = true\n";

    fn tree(files: &[(&str, &str)]) -> (tempfile::TempDir, Host) {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let p = dir.path().join(path.trim_start_matches('/'));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        let host = Host::with_commands(dir.path(), Box::new(FakeCommands::default()));
        (dir, host)
    }

    fn request() -> InstallRequest {
        InstallRequest {
            shim: b"\x7fELF the shim".to_vec(),
            handlers: default_handlers(),
            cgroup_driver: CgroupDriver::Auto,
            cache_dir: None,
            cache_max_bytes: None,
            distribution: None,
            containerd: None,
            restart: false,
        }
    }

    fn read(host: &Host, p: &str) -> String {
        std::fs::read_to_string(host.path(p)).unwrap()
    }

    /// Every file under the tree, with its bytes (symlinks as their targets).
    fn snapshot(host: &Host) -> Vec<(String, String)> {
        fn walk(root: &std::path::Path, dir: &std::path::Path, out: &mut Vec<(String, String)>) {
            let mut entries: Vec<_> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap())
                .collect();
            entries.sort_by_key(|e| e.path());
            for e in entries {
                let p = e.path();
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                let meta = std::fs::symlink_metadata(&p).unwrap();
                if meta.is_dir() {
                    out.push((rel, "<dir>".into()));
                    walk(root, &p, out);
                } else if meta.file_type().is_symlink() {
                    out.push((
                        rel,
                        format!("-> {}", std::fs::read_link(&p).unwrap().display()),
                    ));
                } else {
                    out.push((
                        rel,
                        String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into(),
                    ));
                }
            }
        }
        let mut out = Vec::new();
        walk(&host.path("/"), &host.path("/"), &mut out);
        out
    }

    #[test]
    fn installs_once_then_changes_nothing_then_uninstalls_to_the_original_tree() {
        let (_d, host) = tree(&[
            ("/etc/containerd/config.toml", V2),
            (
                "/var/lib/kubelet/config.yaml",
                "kind: KubeletConfiguration\ncgroupDriver: systemd\n",
            ),
        ]);
        let before = snapshot(&host);
        let mut log = Vec::new();
        let out = install(&host, &request(), &mut |l| log.push(l.to_string())).unwrap();
        assert_eq!(out, Outcome::Installed { restarted: None });
        let config = read(&host, "/etc/containerd/config.toml");
        assert!(config.starts_with(V2), "{config}");
        assert_eq!(
            config.matches("SystemdCgroup = true").count(),
            3,
            "{config}"
        );
        // containerd's version is unknown here, so the options file is named too.
        assert!(config.contains("ConfigPath = \"/opt/wasmpod/etc/runtime-options.toml\""));
        assert_eq!(read(&host, OPTIONS_FILE), "SystemdCgroup = true\n");
        assert_eq!(
            read(&host, "/opt/wasmpod/bin/containerd-shim-wasmpod-v1"),
            "\x7fELF the shim"
        );
        assert_eq!(
            host.read_link("/usr/local/bin/containerd-shim-spin-v2")
                .as_deref(),
            Some("../../../opt/wasmpod/bin/containerd-shim-spin-v2")
        );
        assert_eq!(
            host.read_link("/opt/wasmpod/bin/containerd-shim-spin-v2")
                .as_deref(),
            Some("containerd-shim-wasmpod-v1")
        );
        // The links resolve inside the tree.
        assert_eq!(
            std::fs::read(host.path("/usr/local/bin/containerd-shim-spin-v2")).unwrap(),
            b"\x7fELF the shim"
        );
        assert!(
            log.iter().any(|l| l.contains("kubelet's cgroup driver")),
            "{log:?}"
        );
        let installed = snapshot(&host);

        let again = install(&host, &request(), &mut |_| {}).unwrap();
        assert_eq!(again, Outcome::Unchanged);
        assert_eq!(snapshot(&host), installed);

        uninstall(&host, false, &mut |_| {}).unwrap();
        assert_eq!(snapshot(&host), before);
    }

    #[test]
    fn a_new_shim_replaces_the_binary_and_keeps_the_config() {
        let (_d, host) = tree(&[("/etc/containerd/config.toml", V2)]);
        install(&host, &request(), &mut |_| {}).unwrap();
        let config = read(&host, "/etc/containerd/config.toml");
        let newer = InstallRequest {
            shim: b"\x7fELF a newer shim".to_vec(),
            ..request()
        };
        assert_eq!(
            install(&host, &newer, &mut |_| {}).unwrap(),
            Outcome::Installed { restarted: None }
        );
        assert_eq!(read(&host, "/etc/containerd/config.toml"), config);
        assert_eq!(
            read(&host, "/opt/wasmpod/bin/containerd-shim-wasmpod-v1"),
            "\x7fELF a newer shim"
        );
        uninstall(&host, false, &mut |_| {}).unwrap();
        assert_eq!(read(&host, "/etc/containerd/config.toml"), V2);
    }

    #[test]
    fn a_node_without_a_config_gets_one_and_loses_it_again() {
        let (_d, host) = tree(&[]);
        let before = snapshot(&host);
        install(&host, &request(), &mut |_| {}).unwrap();
        let config = read(&host, "/etc/containerd/config.toml");
        assert!(config.starts_with("version = 2\n"), "{config}");
        uninstall(&host, false, &mut |_| {}).unwrap();
        assert_eq!(snapshot(&host), before);
    }

    #[test]
    fn a_config_edited_after_install_keeps_the_edit_on_uninstall() {
        let (_d, host) = tree(&[("/etc/containerd/config.toml", V2)]);
        install(&host, &request(), &mut |_| {}).unwrap();
        let edited = format!(
            "{}[debug]\n  level = \"debug\"\n",
            read(&host, "/etc/containerd/config.toml")
        );
        std::fs::write(host.path("/etc/containerd/config.toml"), &edited).unwrap();
        uninstall(&host, false, &mut |_| {}).unwrap();
        let after = read(&host, "/etc/containerd/config.toml");
        assert!(!after.contains("wasmpod"), "{after}");
        assert!(
            after.starts_with(V2) && after.contains("level = \"debug\""),
            "{after}"
        );
    }

    #[test]
    fn k3s_gets_a_template_from_its_base_and_uninstall_removes_it() {
        let (_d, host) = tree(&[(
            "/var/lib/rancher/k3s/agent/etc/containerd/config.toml",
            K3S_RENDERED,
        )]);
        let before = snapshot(&host);
        install(&host, &request(), &mut |_| {}).unwrap();
        let tmpl = read(
            &host,
            "/var/lib/rancher/k3s/agent/etc/containerd/config-v3.toml.tmpl",
        );
        assert!(tmpl.starts_with(template::BASE), "{tmpl}");
        assert!(
            tmpl.contains("[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.spin]")
        );
        // The runc handler's driver is followed.
        assert!(tmpl.contains("SystemdCgroup = true"), "{tmpl}");
        // The rendered file is k3s's: never touched.
        assert_eq!(
            read(
                &host,
                "/var/lib/rancher/k3s/agent/etc/containerd/config.toml"
            ),
            K3S_RENDERED
        );
        assert_eq!(
            install(&host, &request(), &mut |_| {}).unwrap(),
            Outcome::Unchanged
        );
        uninstall(&host, false, &mut |_| {}).unwrap();
        assert_eq!(snapshot(&host), before);
    }

    #[test]
    fn k3s_with_a_users_template_keeps_it_and_adds_the_block() {
        let user = "{{ template \"base\" . }}\n[plugins.'io.containerd.cri.v1.images'.registry]\n  config_path = \"/etc/certs.d\"\n";
        let (_d, host) = tree(&[
            (
                "/var/lib/rancher/k3s/agent/etc/containerd/config.toml",
                K3S_RENDERED,
            ),
            (
                "/var/lib/rancher/k3s/agent/etc/containerd/config-v3.toml.tmpl",
                user,
            ),
        ]);
        install(&host, &request(), &mut |_| {}).unwrap();
        let tmpl = read(
            &host,
            "/var/lib/rancher/k3s/agent/etc/containerd/config-v3.toml.tmpl",
        );
        assert!(tmpl.starts_with(user) && template::has_block(&tmpl));
        uninstall(&host, false, &mut |_| {}).unwrap();
        assert_eq!(
            read(
                &host,
                "/var/lib/rancher/k3s/agent/etc/containerd/config-v3.toml.tmpl"
            ),
            user
        );
    }

    #[test]
    fn k3s_that_registered_a_spin_shim_itself_is_a_conflict() {
        let rendered = format!(
            "{K3S_RENDERED}[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.spin]\n  runtime_type = \"io.containerd.spin.v2\"\n"
        );
        let (_d, host) = tree(&[(
            "/var/lib/rancher/k3s/agent/etc/containerd/config.toml",
            &rendered,
        )]);
        let before = snapshot(&host);
        let err = install(&host, &request(), &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"spin\" is already configured"), "{err}");
        assert_eq!(snapshot(&host), before);
    }

    #[test]
    fn k0s_gets_a_drop_in_of_its_own() {
        let (_d, host) = tree(&[(
            "/etc/k0s/containerd.toml",
            "version = 2\n# k0s_managed=true\n",
        )]);
        install(&host, &request(), &mut |_| {}).unwrap();
        let dropin = read(&host, "/etc/k0s/containerd.d/wasmpod.toml");
        assert!(dropin.starts_with("version = 2\n"), "{dropin}");
        assert!(dropin.contains("runtimes.wasmtime]"));
        uninstall(&host, false, &mut |_| {}).unwrap();
        assert!(!host.exists("/etc/k0s/containerd.d/wasmpod.toml"));
    }

    #[test]
    fn another_shim_on_our_link_path_is_refused_before_anything_is_written() {
        let (_d, host) = tree(&[
            ("/etc/containerd/config.toml", V2),
            (
                "/usr/local/bin/containerd-shim-spin-v2",
                "someone else's shim",
            ),
        ]);
        let before = snapshot(&host);
        let err = install(&host, &request(), &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/usr/local/bin/containerd-shim-spin-v2"),
            "{err}"
        );
        assert_eq!(snapshot(&host), before);
    }

    #[test]
    fn an_ambiguous_node_is_refused_unless_told() {
        let (_d, host) = tree(&[
            (
                "/var/lib/rancher/k3s/agent/etc/containerd/config.toml",
                K3S_RENDERED,
            ),
            (
                "/var/lib/rancher/rke2/agent/etc/containerd/config.toml",
                K3S_RENDERED,
            ),
        ]);
        let err = install(&host, &request(), &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(err.contains("k3s") && err.contains("rke2"), "{err}");
        let told = InstallRequest {
            distribution: Some(Distribution::Rke2),
            ..request()
        };
        install(&host, &told, &mut |_| {}).unwrap();
        assert!(host.exists("/var/lib/rancher/rke2/agent/etc/containerd/config-v3.toml.tmpl"));
    }
}
