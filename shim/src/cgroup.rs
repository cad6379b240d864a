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

fn manager(cgroups_path: Option<&str>) -> Result<libcgroups::common::AnyCgroupManager, String> {
    let path = cgroups_path.ok_or("the container has no cgroup path")?;
    create_cgroup_manager(CgroupConfig {
        cgroup_path: PathBuf::from(path),
        systemd_cgroup: false,
        container_name: String::new(),
    })
    .map_err(|e| e.to_string())
}

/// Freezes (`true`) or thaws the container's cgroup.
pub fn freeze(cgroups_path: Option<&str>, frozen: bool) -> Result<(), String> {
    let state = if frozen {
        FreezerState::Frozen
    } else {
        FreezerState::Thawed
    };
    manager(cgroups_path)?
        .freeze(state)
        .map_err(|e| e.to_string())
}

/// Applies new resource limits (an OCI `LinuxResources` as JSON) to the container's cgroup.
pub fn update(cgroups_path: Option<&str>, resources_json: &[u8]) -> Result<(), String> {
    let resources: LinuxResources = serde_json::from_slice(resources_json)
        .map_err(|e| format!("resources are not OCI LinuxResources JSON: {e}"))?;
    manager(cgroups_path)?
        .apply(&ControllerOpt {
            resources: &resources,
            freezer_state: None,
            oom_score_adj: None,
            disable_oom_killer: false,
        })
        .map_err(|e| e.to_string())
}

/// The pids in the container's cgroup.
pub fn pids(cgroups_path: Option<&str>) -> Result<Vec<i32>, String> {
    let m = manager(cgroups_path)?;
    m.get_all_pids()
        .map(|v| v.into_iter().map(|p| p.as_raw()).collect())
        .map_err(|e| e.to_string())
}

/// The container's metrics, packed as containerd expects them for this node's cgroup version.
pub fn metrics(cgroups_path: Option<&str>) -> Result<Any, String> {
    let m = manager(cgroups_path)?;
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
    fn no_cgroup_path_is_an_error() {
        assert!(pids(None).is_err());
    }
}
