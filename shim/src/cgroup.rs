//! Reading a container's cgroup for Pids and Stats, on cgroup v1 and v2, and converting
//! libcgroups' statistics into containerd's metrics messages
//! (`io.containerd.cgroups.v1.Metrics` / `io.containerd.cgroups.v2.Metrics`).

use std::path::PathBuf;

use containerd_shim::protos::cgroups::metrics as v1;
use containerd_shim::protos::cgroups_v2::metrics as v2;
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::Message;
use libcgroups::common::{
    create_cgroup_manager, get_cgroup_setup, CgroupConfig, CgroupManager, CgroupSetup,
    ControllerOpt, FreezerState,
};
use libcgroups::stats::Stats;
use libcontainer::oci_spec::runtime::LinuxResources;

/// The type URL containerd expects for cgroup v1 metrics.
pub const V1_METRICS_TYPE: &str = "io.containerd.cgroups.v1.Metrics";
/// The type URL containerd expects for cgroup v2 metrics.
pub const V2_METRICS_TYPE: &str = "io.containerd.cgroups.v2.Metrics";

/// How the container's cgroup is named and managed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupDriver {
    /// Paths under the cgroup filesystem (`/default/c1`, `/kubepods/pod1/c1`).
    Cgroupfs,
    /// systemd units (`slice:prefix:name`), as kubelet uses with `cgroupDriver: systemd`.
    Systemd,
}

/// A container's cgroup: its `linux.cgroupsPath` and the driver that names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerCgroup {
    /// `linux.cgroupsPath` as the spec gives it.
    pub path: String,
    /// The driver.
    pub driver: CgroupDriver,
}

impl ContainerCgroup {
    /// Checks that `path` has the form the driver expects.
    pub fn new(path: &str, driver: CgroupDriver) -> Result<ContainerCgroup, String> {
        let systemd_form = parse_systemd(path).is_some();
        match driver {
            CgroupDriver::Systemd if !systemd_form => Err(format!(
                "SystemdCgroup is on, but cgroupsPath {path:?} is not of the form slice:prefix:name"
            )),
            CgroupDriver::Cgroupfs if systemd_form => Err(format!(
                "cgroupsPath {path:?} is a systemd path: set SystemdCgroup = true in the runtime options"
            )),
            _ => Ok(ContainerCgroup {
                path: path.to_string(),
                driver,
            }),
        }
    }

    /// The cgroup's directory relative to a controller's mount (or the v2 root).
    pub fn fs_path(&self) -> String {
        match self.driver {
            CgroupDriver::Cgroupfs => format!("/{}", self.path.trim_start_matches('/')),
            CgroupDriver::Systemd => systemd_fs_path(&self.path).unwrap_or_default(),
        }
    }

    pub(crate) fn manager(&self) -> Result<libcgroups::common::AnyCgroupManager, String> {
        create_cgroup_manager(CgroupConfig {
            cgroup_path: PathBuf::from(&self.path),
            systemd_cgroup: self.driver == CgroupDriver::Systemd,
            container_name: String::new(),
        })
        .map_err(|e| e.to_string())
    }
}

/// `slice:prefix:name` split in three, if `path` has that form.
pub fn parse_systemd(path: &str) -> Option<(&str, &str, &str)> {
    let mut parts = path.split(':');
    let (slice, prefix, name) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || name.is_empty() || slice.contains('/') {
        return None;
    }
    if !slice.is_empty() && !slice.ends_with(".slice") {
        return None;
    }
    Some((slice, prefix, name))
}

/// Where systemd puts the unit for `slice:prefix:name`: the slice's nested directories
/// (`a-b.slice` lives in `a.slice/a-b.slice`) and `prefix-name.scope`.
pub fn systemd_fs_path(path: &str) -> Option<String> {
    let (slice, prefix, name) = parse_systemd(path)?;
    let slice = if slice.is_empty() {
        "system.slice"
    } else {
        slice
    };
    let stem = slice.strip_suffix(".slice")?;
    let mut out = String::new();
    if stem != "-" {
        let mut acc = String::new();
        for part in stem.split('-') {
            if !acc.is_empty() {
                acc.push('-');
            }
            acc.push_str(part);
            out.push('/');
            out.push_str(&acc);
            out.push_str(".slice");
        }
    }
    let unit = if prefix.is_empty() {
        format!("{name}.scope")
    } else {
        format!("{prefix}-{name}.scope")
    };
    Some(format!("{out}/{unit}"))
}

/// Freezes (`true`) or thaws the container's cgroup.
pub fn freeze(cgroup: &ContainerCgroup, frozen: bool) -> Result<(), String> {
    let state = if frozen {
        FreezerState::Frozen
    } else {
        FreezerState::Thawed
    };
    cgroup.manager()?.freeze(state).map_err(|e| e.to_string())
}

/// Applies new resource limits (an OCI `LinuxResources` as JSON) to the container's cgroup.
pub fn update(cgroup: &ContainerCgroup, resources_json: &[u8]) -> Result<(), String> {
    let resources: LinuxResources = serde_json::from_slice(resources_json)
        .map_err(|e| format!("resources are not OCI LinuxResources JSON: {e}"))?;
    cgroup
        .manager()?
        .apply(&ControllerOpt {
            resources: &resources,
            freezer_state: None,
            oom_score_adj: None,
            disable_oom_killer: false,
        })
        .map_err(|e| e.to_string())
}

/// The pids in the container's cgroup.
pub fn pids(cgroup: &ContainerCgroup) -> Result<Vec<i32>, String> {
    let m = cgroup.manager()?;
    m.get_all_pids()
        .map(|v| v.into_iter().map(|p| p.as_raw()).collect())
        .map_err(|e| e.to_string())
}

/// The container's metrics, packed as containerd expects them for this node's cgroup version.
pub fn metrics(cgroup: &ContainerCgroup) -> Result<Any, String> {
    let m = cgroup.manager()?;
    let stats = m.stats().map_err(|e| e.to_string())?;
    let unified = matches!(
        get_cgroup_setup().map_err(|e| e.to_string())?,
        CgroupSetup::Unified
    );
    let (type_url, value) = if unified {
        (V2_METRICS_TYPE, to_v2(&stats).write_to_bytes())
    } else {
        (V1_METRICS_TYPE, to_v1(&stats).write_to_bytes())
    };
    let mut any = Any::new();
    any.type_url = type_url.to_string();
    any.value = value.map_err(|e| e.to_string())?;
    Ok(any)
}

/// libcgroups statistics as containerd's cgroup v1 metrics.
pub fn to_v1(s: &Stats) -> v1::Metrics {
    let mut m = v1::Metrics::new();
    let mut pids = v1::PidsStat::new();
    pids.current = s.pids.current;
    pids.limit = s.pids.limit;
    m.pids = Some(pids).into();

    let mut usage = v1::CPUUsage::new();
    usage.total = s.cpu.usage.usage_total;
    usage.user = s.cpu.usage.usage_user;
    usage.kernel = s.cpu.usage.usage_kernel;
    usage.per_cpu = s.cpu.usage.per_core_usage_total.clone();
    let mut throttling = v1::Throttle::new();
    throttling.periods = s.cpu.throttling.periods;
    throttling.throttled_periods = s.cpu.throttling.throttled_periods;
    throttling.throttled_time = s.cpu.throttling.throttled_time;
    let mut cpu = v1::CPUStat::new();
    cpu.usage = Some(usage).into();
    cpu.throttling = Some(throttling).into();
    m.cpu = Some(cpu).into();

    let entry = |d: &libcgroups::stats::MemoryData| {
        let mut e = v1::MemoryEntry::new();
        e.usage = d.usage;
        e.max = d.max_usage;
        e.failcnt = d.fail_count;
        e.limit = d.limit;
        e
    };
    let stat = |k: &str| s.memory.stats.get(k).copied().unwrap_or(0);
    let mut mem = v1::MemoryStat::new();
    mem.usage = Some(entry(&s.memory.memory)).into();
    mem.swap = Some(entry(&s.memory.memswap)).into();
    mem.kernel = Some(entry(&s.memory.kernel)).into();
    mem.kernel_tcp = Some(entry(&s.memory.kernel_tcp)).into();
    mem.cache = s.memory.cache;
    mem.rss = stat("rss");
    mem.rss_huge = stat("rss_huge");
    mem.mapped_file = stat("mapped_file");
    mem.pg_fault = stat("pgfault");
    mem.pg_maj_fault = stat("pgmajfault");
    mem.active_anon = stat("active_anon");
    mem.inactive_anon = stat("inactive_anon");
    mem.active_file = stat("active_file");
    mem.inactive_file = stat("inactive_file");
    mem.unevictable = stat("unevictable");
    mem.total_cache = stat("total_cache");
    mem.total_rss = stat("total_rss");
    m.memory = Some(mem).into();
    m
}

/// libcgroups statistics as containerd's cgroup v2 metrics.
pub fn to_v2(s: &Stats) -> v2::Metrics {
    let mut m = v2::Metrics::new();
    let mut pids = v2::PidsStat::new();
    pids.current = s.pids.current;
    pids.limit = s.pids.limit;
    m.pids = Some(pids).into();
    let mut cpu = v2::CPUStat::new();
    // cgroup v2 reports CPU time in microseconds; libcgroups gives nanoseconds.
    cpu.usage_usec = s.cpu.usage.usage_total / 1000;
    cpu.user_usec = s.cpu.usage.usage_user / 1000;
    cpu.system_usec = s.cpu.usage.usage_kernel / 1000;
    cpu.nr_periods = s.cpu.throttling.periods;
    cpu.nr_throttled = s.cpu.throttling.throttled_periods;
    cpu.throttled_usec = s.cpu.throttling.throttled_time / 1000;
    m.cpu = Some(cpu).into();
    let stat = |k: &str| s.memory.stats.get(k).copied().unwrap_or(0);
    let mut mem = v2::MemoryStat::new();
    mem.usage = s.memory.memory.usage;
    mem.usage_limit = s.memory.memory.limit;
    mem.swap_usage = s.memory.memswap.usage;
    mem.swap_limit = s.memory.memswap.limit;
    mem.anon = stat("anon");
    mem.file = stat("file");
    mem.kernel_stack = stat("kernel_stack");
    mem.slab = stat("slab");
    mem.sock = stat("sock");
    mem.file_mapped = stat("file_mapped");
    mem.pgfault = stat("pgfault");
    mem.pgmajfault = stat("pgmajfault");
    m.memory = Some(mem).into();
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats() -> Stats {
        let mut s = Stats::default();
        s.pids.current = 3;
        s.pids.limit = 100;
        s.cpu.usage.usage_total = 5_000_000;
        s.cpu.usage.usage_user = 3_000_000;
        s.memory.memory.usage = 4096;
        s.memory.memory.limit = 64 << 20;
        s.memory.stats.insert("rss".into(), 2048);
        s.memory.stats.insert("anon".into(), 1024);
        s
    }

    #[test]
    fn v1_conversion() {
        let m = to_v1(&stats());
        assert_eq!(m.pids.current, 3);
        assert_eq!(m.cpu.usage.total, 5_000_000);
        assert_eq!(m.memory.usage.usage, 4096);
        assert_eq!(m.memory.usage.limit, 64 << 20);
        assert_eq!(m.memory.rss, 2048);
    }

    #[test]
    fn v2_conversion() {
        let m = to_v2(&stats());
        assert_eq!(m.pids.limit, 100);
        assert_eq!(m.cpu.usage_usec, 5_000);
        assert_eq!(m.cpu.user_usec, 3_000);
        assert_eq!(m.memory.usage_limit, 64 << 20);
        assert_eq!(m.memory.anon, 1024);
    }

    #[test]
    fn driver_and_path_must_agree() {
        assert!(ContainerCgroup::new("/default/c1", CgroupDriver::Cgroupfs).is_ok());
        assert!(ContainerCgroup::new("/default/c1", CgroupDriver::Systemd).is_err());
        let s =
            ContainerCgroup::new("system.slice:cri-containerd:abc", CgroupDriver::Systemd).unwrap();
        assert_eq!(s.fs_path(), "/system.slice/cri-containerd-abc.scope");
        let err = ContainerCgroup::new("system.slice:cri-containerd:abc", CgroupDriver::Cgroupfs)
            .unwrap_err();
        assert!(err.contains("SystemdCgroup = true"), "{err}");
        assert_eq!(
            ContainerCgroup::new("kubepods/pod1/c1", CgroupDriver::Cgroupfs)
                .unwrap()
                .fs_path(),
            "/kubepods/pod1/c1"
        );
    }

    #[test]
    fn systemd_paths() {
        assert_eq!(parse_systemd("a.slice:p:n"), Some(("a.slice", "p", "n")));
        assert_eq!(parse_systemd(":p:n"), Some(("", "p", "n")));
        assert_eq!(parse_systemd("a:p:n"), None);
        assert_eq!(parse_systemd("a.slice:p"), None);
        assert_eq!(parse_systemd("a.slice:p:"), None);
        assert_eq!(parse_systemd("/x/a.slice:p:n"), None);
        assert_eq!(
            systemd_fs_path("kubepods-besteffort-pod1234.slice:cri-containerd:c1").as_deref(),
            Some("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1234.slice/cri-containerd-c1.scope")
        );
        assert_eq!(
            systemd_fs_path(":cri:c1").as_deref(),
            Some("/system.slice/cri-c1.scope")
        );
        assert_eq!(systemd_fs_path("-.slice::c1").as_deref(), Some("/c1.scope"));
    }
}
