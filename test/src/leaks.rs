//! Counting what a container could leave behind on the node: mounts, cgroup directories,
//! shim processes and shim sockets.

use std::path::Path;

/// Mount points whose path contains `needle`.
pub fn mounts_containing(needle: &str) -> usize {
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .nth(1)
                .map(|m| m.contains(needle))
                .unwrap_or(false)
        })
        .count()
}

/// Sub-directories for `namespace` in cgroup v1 `controller`'s hierarchy and in the unified
/// (v2) hierarchy: `/sys/fs/cgroup` on a v2 host, `/sys/fs/cgroup/unified` on a hybrid one.
/// Both are counted, so a leak under either driver shows.
pub fn cgroup_dirs(controller: &str, namespace: &str) -> usize {
    let root = Path::new("/sys/fs/cgroup");
    if root.join("cgroup.controllers").exists() {
        return subdirs(&root.join(namespace));
    }
    subdirs(&root.join(controller).join(namespace)) + subdirs(&root.join("unified").join(namespace))
}

fn subdirs(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.path().is_dir())
                .count()
        })
        .unwrap_or(0)
}

/// The first process (pid) for which `matches(pid, args)` holds.
pub fn processes_matching(matches: &dyn Fn(i32, &[String]) -> bool) -> Option<i32> {
    processes().find_map(|(pid, args)| matches(pid, &args).then_some(pid))
}

/// Every process's pid and command line.
fn processes() -> impl Iterator<Item = (i32, Vec<String>)> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_string_lossy().parse::<i32>().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let args = cmdline
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            Some((pid, args))
        })
}

/// Live wasmpod shim processes (any of the three names) serving `address`.
pub fn shim_processes(address: &str) -> usize {
    let mut n = 0;
    for (_, args) in processes() {
        let is_shim = args
            .first()
            .map(|a| {
                a.contains("containerd-shim-wasmpod")
                    || a.contains("containerd-shim-spin")
                    || a.contains("containerd-shim-wasmtime")
            })
            .unwrap_or(false);
        if is_shim && args.iter().any(|a| a == address) {
            n += 1;
        }
    }
    n
}

/// Unix sockets in containerd's shim socket directory.
pub fn shim_sockets() -> usize {
    std::fs::read_dir("/run/containerd/s")
        .map(|rd| rd.filter_map(Result::ok).count())
        .unwrap_or(0)
}

/// The pids of the processes whose parent is `pid`.
pub fn children_of(pid: i32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let child = entry.file_name().to_string_lossy().parse::<i32>().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // "pid (comm) state ppid ...": the command name may hold spaces.
            let ppid: i32 = stat
                .get(stat.rfind(')')? + 2..)?
                .split(' ')
                .nth(1)?
                .parse()
                .ok()?;
            (ppid == pid).then_some(child)
        })
        .collect()
}

/// The pid of the shim started for task `id` of the containerd at `address`.
pub fn shim_pid(address: &str, id: &str) -> Option<i32> {
    processes().find_map(|(pid, args)| {
        let has = |flag: &str, value: &str| args.windows(2).any(|w| w[0] == flag && w[1] == value);
        let is_shim = args
            .first()
            .map(|a| a.contains("containerd-shim-"))
            .unwrap_or(false);
        (is_shim && has("-address", address) && has("-id", id)).then_some(pid)
    })
}

/// What the node holds that a container's life could leave behind, counted in one pass for a
/// before/after comparison (`make stress`): a count that grew is a leak. The shim's resident
/// memory is reported next to them; memory is judged over time by the soak, not by one pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NodeSnapshot {
    /// Mount points under containerd's state directory (rootfs, netns) or under `/run/wasmpod`.
    pub mounts: usize,
    /// Cgroup directories, every v1 controller and the unified hierarchy, below the ctr
    /// namespace's directory and below the CRI pods' parent.
    pub cgroup_dirs: usize,
    /// Shim processes of any of the three names, zygotes, their workers and compiles, and
    /// every process in those cgroups (container inits and what they run).
    pub processes: usize,
    /// containerd's open file descriptors (but its long-lived clients' connections, see
    /// [`containerd_fd_count`]).
    pub containerd_fds: usize,
    /// The watched shim's open file descriptors (0 without one).
    pub shim_fds: usize,
    /// The watched shim's resident memory in KiB (0 without one).
    pub shim_rss_kb: u64,
    /// Files and directories under `/run/wasmpod` (the shims' state).
    pub run_wasmpod_entries: usize,
    /// Bytes in the compile cache directory.
    pub cache_bytes: u64,
}

impl NodeSnapshot {
    /// Counts now, for the containerd whose state directory is `state_dir` (its socket's
    /// directory), the ctr namespace `namespace`, CRI pods under `pod_cgroup_root`, the
    /// compile cache at `cache_dir`, and the shim `shim` (a long-lived one whose fds and
    /// memory are watched).
    pub fn take(
        state_dir: &str,
        namespace: &str,
        pod_cgroup_root: &str,
        cache_dir: &Path,
        shim: Option<i32>,
    ) -> NodeSnapshot {
        let cgroup_roots = cgroup_hierarchies()
            .into_iter()
            .flat_map(|h| {
                [
                    h.join(namespace),
                    h.join(pod_cgroup_root.trim_start_matches('/')),
                ]
            })
            .collect::<Vec<_>>();
        let mut dirs = Vec::new();
        for root in &cgroup_roots {
            walk_dirs(root, &mut dirs);
        }
        let mut pids: std::collections::BTreeSet<i32> = processes()
            .filter(|(pid, args)| is_shim_or_zygote(*pid, args))
            .map(|(pid, _)| pid)
            .collect();
        for dir in &dirs {
            let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            pids.extend(procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        }
        let config = format!("{state_dir}/config.toml");
        let containerd = processes()
            .find(|(_, args)| args.contains(&config))
            .map(|(pid, _)| pid);
        NodeSnapshot {
            mounts: mounts_containing(state_dir) + mounts_containing("/run/wasmpod"),
            cgroup_dirs: dirs.len() - cgroup_roots.iter().filter(|r| r.is_dir()).count(),
            processes: pids.len(),
            containerd_fds: containerd.map(containerd_fd_count).unwrap_or(0),
            shim_fds: shim.map(fd_count).unwrap_or(0),
            shim_rss_kb: shim.map(rss_kb).unwrap_or(0),
            run_wasmpod_entries: tree_entries(Path::new("/run/wasmpod")),
            cache_bytes: tree_bytes(cache_dir),
        }
    }

    /// The counts that are higher than in `before`, each as "what: before -> now".
    pub fn grown_since(&self, before: &NodeSnapshot) -> Vec<String> {
        let rows = [
            ("mounts", before.mounts as u64, self.mounts as u64),
            (
                "cgroup dirs",
                before.cgroup_dirs as u64,
                self.cgroup_dirs as u64,
            ),
            ("processes", before.processes as u64, self.processes as u64),
            (
                "containerd fds",
                before.containerd_fds as u64,
                self.containerd_fds as u64,
            ),
            ("shim fds", before.shim_fds as u64, self.shim_fds as u64),
            (
                "/run/wasmpod entries",
                before.run_wasmpod_entries as u64,
                self.run_wasmpod_entries as u64,
            ),
            ("cache bytes", before.cache_bytes, self.cache_bytes),
        ];
        rows.into_iter()
            .filter(|(_, was, now)| now > was)
            .map(|(what, was, now)| format!("{what}: {was} -> {now}"))
            .collect()
    }
}

impl std::fmt::Display for NodeSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "mounts {} | cgroup dirs {} | processes {} | containerd fds {} | shim fds {} | \
             shim RSS {} KiB | /run/wasmpod entries {} | cache {} bytes",
            self.mounts,
            self.cgroup_dirs,
            self.processes,
            self.containerd_fds,
            self.shim_fds,
            self.shim_rss_kb,
            self.run_wasmpod_entries,
            self.cache_bytes
        )
    }
}

/// The cgroup hierarchies mounted here: each v1 controller's and the unified one (on a v2
/// host, `/sys/fs/cgroup` itself).
fn cgroup_hierarchies() -> Vec<std::path::PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    if root.join("cgroup.controllers").exists() {
        return vec![root.to_path_buf()];
    }
    std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        // Co-mounted controllers appear twice (`cpu` -> `cpu,cpuacct`): count the real one.
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect()
}

/// `dir` and every directory below it, if it exists.
fn walk_dirs(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    if !dir.is_dir() {
        return;
    }
    out.push(dir.to_path_buf());
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            walk_dirs(&entry.path(), out);
        }
    }
}

/// Whether process `pid` with `args` is a wasmpod shim (any name), a shim's zygote, one of
/// its workers or exec'd helpers (`__wasmpod-container`), or a compile (`__wasmpod-compile`).
fn is_shim_or_zygote(pid: i32, args: &[String]) -> bool {
    let named = args.first().is_some_and(|a| {
        a.contains("containerd-shim-wasmpod")
            || a.contains("containerd-shim-spin")
            || a.contains("containerd-shim-wasmtime")
    });
    let helper = args
        .iter()
        .any(|a| a == "__wasmpod-container" || a == "__wasmpod-compile");
    named
        || helper
        || std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .is_ok_and(|c| c.trim() == "wasmpod-zygote")
}

/// One row of `ss -xpan`.
pub struct UnixSocket {
    /// `ESTAB`, `LISTEN`, ...
    pub state: String,
    /// The bound path, or `*`.
    pub path: String,
    /// The socket's inode (as in `socket:[inode]`).
    pub inode: String,
    /// The peer's inode.
    pub peer: String,
    /// The processes holding it, as `ss` shows them.
    pub users: String,
}

/// The node's unix sockets, from `ss` (empty where iproute2 is missing).
pub fn unix_sockets() -> Vec<UnixSocket> {
    let Ok(out) = std::process::Command::new("ss").arg("-xpan").output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .filter_map(|line| {
            // Netid State Recv-Q Send-Q Local Inode Peer PeerInode [Process]
            let cols: Vec<&str> = line.split_whitespace().collect();
            Some(UnixSocket {
                state: cols.get(1)?.to_string(),
                path: cols.get(4)?.to_string(),
                inode: cols.get(5)?.to_string(),
                peer: cols.get(7)?.to_string(),
                users: cols.get(8).unwrap_or(&"").to_string(),
            })
        })
        .collect()
}

/// containerd's descriptors, but for the connections its long-lived clients hold (dockerd
/// reconnects after a containerd restart with as many connections as it likes): what is
/// left is what containerd itself keeps open (files, FIFOs, its shims' sockets, listeners).
pub fn containerd_fd_count(pid: i32) -> usize {
    let sockets = unix_sockets();
    let clients: std::collections::HashSet<&str> = sockets
        .iter()
        .filter(|s| s.users.contains("((\"dockerd\""))
        .map(|s| s.inode.as_str())
        .collect();
    let held_by_clients = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| std::fs::read_link(entry.path()).ok())
        .filter_map(|target| socket_behind(&target.to_string_lossy(), &sockets))
        .filter(|s| clients.contains(s.peer.as_str()))
        .count();
    fd_count(pid) - held_by_clients
}

/// The unix socket an fd's link target (`socket:[inode]`) names, if `sockets` lists it.
pub fn socket_behind<'a>(target: &str, sockets: &'a [UnixSocket]) -> Option<&'a UnixSocket> {
    let inode = target.strip_prefix("socket:[")?.strip_suffix(']')?;
    sockets.iter().find(|s| s.inode == inode)
}

/// How many descriptors process `pid` has open.
pub fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|rd| rd.count())
        .unwrap_or(0)
}

/// Process `pid`'s resident memory (VmRSS) in KiB.
pub fn rss_kb(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Entries (files, directories, sockets) below `dir`, not counting `dir`.
fn tree_entries(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            1 + if e.file_type().is_ok_and(|t| t.is_dir()) {
                tree_entries(&e.path())
            } else {
                0
            }
        })
        .sum()
}

/// Bytes in the regular files below `dir`.
fn tree_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => tree_bytes(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}
