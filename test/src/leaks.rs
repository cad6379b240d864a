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
