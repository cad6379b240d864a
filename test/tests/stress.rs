//! The short version of `make stress` that `make test` runs: every workload of the stress mix
//! several times at once through the containerd under test, no cycle failing and nothing
//! left behind (mounts, cgroups, processes, containerd's and the anchor shim's fds,
//! `/run/wasmpod` entries, cache growth).

use wasmpod_e2e::cri::Cri;
use wasmpod_e2e::stress::{self, Anchor, Workload};

#[test]
fn the_stress_mix_leaves_nothing_behind() {
    stress::import_images();
    let mut cri = Cri::connect();
    let anchor = Anchor::start(&mut cri);
    // A warm-up round: the compile cache fills, the first shims start.
    let warm = stress::run_loop(
        &Workload::MIX,
        Workload::MIX.len(),
        1,
        None,
        Some(&anchor.pod),
    );
    assert!(warm.failures.is_empty(), "warm-up: {warm}");
    let before = stress::quiet_snapshot(Some(anchor.shim));

    let report = stress::run_loop(
        &Workload::MIX,
        6 * Workload::MIX.len(),
        4,
        None,
        Some(&anchor.pod),
    );
    println!("{report}");
    assert_eq!(report.cycles, 6 * Workload::MIX.len());
    assert!(report.failures.is_empty(), "{report}");
    let (after, grown) = stress::settle(&before, Some(anchor.shim));
    assert!(
        grown.is_empty(),
        "leaked: {grown:?}\nbefore: {before}\nafter:  {after}"
    );
    anchor.stop(&mut cri);
}

/// The counts the stress run judges by see a leftover of each kind: a mount under
/// `/run/wasmpod`, a cgroup directory in the ctr namespace's tree with a process in it.
#[test]
fn the_node_count_sees_a_leftover_mount_cgroup_and_process() {
    let before = stress::snapshot(None);
    let run_dir = std::path::Path::new("/run/wasmpod/stress-leak-probe");
    std::fs::create_dir_all(run_dir).expect("mkdir under /run/wasmpod");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(run_dir)
        .status()
        .expect("mount");
    assert!(mounted.success());
    let hierarchy = if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        std::path::PathBuf::from("/sys/fs/cgroup")
    } else {
        std::path::PathBuf::from("/sys/fs/cgroup/pids")
    };
    let cgroup = hierarchy
        .join(wasmpod_e2e::ctr::namespace())
        .join("stress-leak-probe");
    std::fs::create_dir_all(&cgroup).expect("mkdir cgroup");
    let mut sleeper = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .expect("sleep");
    std::fs::write(cgroup.join("cgroup.procs"), sleeper.id().to_string()).expect("move sleep");

    let after = stress::snapshot(None);
    let grown = after.grown_since(&before);

    let _ = sleeper.kill();
    let _ = sleeper.wait();
    let _ = std::process::Command::new("umount").arg(run_dir).status();
    let _ = std::fs::remove_dir(run_dir);
    let _ = std::fs::remove_dir(&cgroup);
    let _ = std::fs::remove_dir(cgroup.parent().expect("namespace dir"));
    for what in ["mounts", "cgroup dirs", "processes", "/run/wasmpod entries"] {
        assert!(
            grown.iter().any(|g| g.starts_with(what)),
            "{what} not counted: {grown:?}\nbefore: {before}\nafter:  {after}"
        );
    }
}
