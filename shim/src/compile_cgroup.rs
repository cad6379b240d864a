//! The cgroup a compile runs in: the container's own, with the container's resources, so
//! that compiling a guest's Wasm is charged to its pod's memory and CPU limits instead of the
//! shim's. A Create that joins its compile to a cgroup nobody had made yet removes that
//! cgroup again when the Create fails before libcontainer takes it over; a cgroup that was
//! there before (shared through `linux.cgroupsPath`, or an exec'd process's running container)
//! is never removed.
//!
//! Only the cgroupfs driver: with the systemd driver the container's cgroup is a scope that
//! systemd makes when libcontainer asks, so the compile stays in the shim's cgroup there.

use std::cell::Cell;
use std::path::PathBuf;

use libcgroups::common::{get_cgroup_setup, CgroupManager, CgroupSetup, ControllerOpt};
use libcontainer::oci_spec::runtime::LinuxResources;

use crate::cgroup::{CgroupDriver, ContainerCgroup};

/// What a compile cgroup is made of: the OS effects, behind a trait so that the bookkeeping
/// is tested without root.
pub trait CgroupControl {
    /// Whether the cgroup's directory exists.
    fn exists(&self) -> bool;
    /// Moves `pid` into the cgroup, making its directories.
    fn add(&self, pid: i32) -> Result<(), String>;
    /// Applies `resources`.
    fn apply(&self, resources: &LinuxResources) -> Result<(), String>;
    /// Removes the cgroup.
    fn remove(&self) -> Result<(), String>;
}

/// A container's cgroup on the cgroup filesystem.
pub struct CgroupFs(ContainerCgroup);

impl CgroupFs {
    fn dir(&self) -> Option<PathBuf> {
        let relative = self.0.fs_path();
        let relative = relative.trim_start_matches('/');
        match get_cgroup_setup().ok()? {
            CgroupSetup::Unified => Some(PathBuf::from("/sys/fs/cgroup").join(relative)),
            CgroupSetup::Legacy | CgroupSetup::Hybrid => {
                let devices = libcgroups::v1::util::get_subsystem_mount_point(
                    &libcgroups::v1::ControllerType::Devices,
                )
                .ok()?;
                Some(devices.join(relative))
            }
        }
    }
}

impl CgroupControl for CgroupFs {
    fn exists(&self) -> bool {
        // Unknown counts as there: such a cgroup is then never removed.
        self.dir().is_none_or(|d| d.exists())
    }

    fn add(&self, pid: i32) -> Result<(), String> {
        self.0
            .manager()?
            .add_task(nix::unistd::Pid::from_raw(pid))
            .map_err(|e| e.to_string())
    }

    fn apply(&self, resources: &LinuxResources) -> Result<(), String> {
        self.0
            .manager()?
            .apply(&ControllerOpt {
                resources,
                freezer_state: None,
                oom_score_adj: None,
                disable_oom_killer: false,
            })
            .map_err(|e| e.to_string())
    }

    fn remove(&self) -> Result<(), String> {
        self.0.manager()?.remove().map_err(|e| e.to_string())
    }
}

/// Where a container's compiles run.
pub struct CompileCgroup<C: CgroupControl = CgroupFs> {
    control: C,
    /// The container's resources, applied on join (a Create); none for an Exec, whose
    /// container's cgroup already has them.
    resources: Option<LinuxResources>,
    /// The memory limit, for the message when a compile is killed.
    memory_limit: Option<u64>,
    /// Whether a join made the cgroup.
    made: Cell<bool>,
}

impl CompileCgroup<CgroupFs> {
    /// The cgroup of a container about to be created from a spec with `cgroups_path` and
    /// `resources`; none with the systemd driver or without a cgroups path.
    pub fn for_create(
        cgroups_path: Option<&str>,
        systemd: bool,
        resources: Option<LinuxResources>,
    ) -> Option<CompileCgroup> {
        let path = cgroups_path.filter(|p| !p.is_empty() && !systemd)?;
        let cgroup = ContainerCgroup::new(path, CgroupDriver::Cgroupfs).ok()?;
        Some(CompileCgroup::new(CgroupFs(cgroup), resources))
    }

    /// The cgroup of a running container, for a compile of an exec'd process.
    pub fn for_exec(cgroups_path: &str, systemd: bool) -> Option<CompileCgroup> {
        CompileCgroup::for_create(Some(cgroups_path), systemd, None)
    }
}

impl<C: CgroupControl> CompileCgroup<C> {
    /// A compile cgroup over `control`.
    pub fn new(control: C, resources: Option<LinuxResources>) -> CompileCgroup<C> {
        let memory_limit = resources
            .as_ref()
            .and_then(|r| r.memory().as_ref())
            .and_then(|m| m.limit())
            .and_then(|l| u64::try_from(l).ok())
            .filter(|l| *l > 0);
        CompileCgroup {
            control,
            resources,
            memory_limit,
            made: Cell::new(false),
        }
    }

    /// Moves the compile process `pid` into the cgroup, with the container's resources.
    pub fn join(&self, pid: i32) -> Result<(), String> {
        // Counted as made before the move, which may make some of its directories and fail.
        if !self.control.exists() {
            self.made.set(true);
        }
        self.control.add(pid)?;
        if let Some(resources) = &self.resources {
            self.control.apply(resources)?;
        }
        Ok(())
    }

    /// Removes the cgroup if a join made it (after a failed Create).
    pub fn remove_if_made(&self) {
        if self.made.replace(false) {
            if let Err(e) = self.control.remove() {
                eprintln!("remove the compile's cgroup: {e}");
            }
        }
    }

    /// The container's memory limit in bytes, if it has one.
    pub fn memory_limit(&self) -> Option<u64> {
        self.memory_limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libcontainer::oci_spec::runtime::{LinuxMemoryBuilder, LinuxResourcesBuilder};
    use std::cell::RefCell;

    #[derive(Default)]
    struct Fake {
        exists: Cell<bool>,
        log: RefCell<Vec<String>>,
    }

    impl CgroupControl for &Fake {
        fn exists(&self) -> bool {
            self.exists.get()
        }
        fn add(&self, pid: i32) -> Result<(), String> {
            self.exists.set(true);
            self.log.borrow_mut().push(format!("add {pid}"));
            Ok(())
        }
        fn apply(&self, _: &LinuxResources) -> Result<(), String> {
            self.log.borrow_mut().push("apply".into());
            Ok(())
        }
        fn remove(&self) -> Result<(), String> {
            self.exists.set(false);
            self.log.borrow_mut().push("remove".into());
            Ok(())
        }
    }

    fn resources(limit: i64) -> LinuxResources {
        LinuxResourcesBuilder::default()
            .memory(LinuxMemoryBuilder::default().limit(limit).build().unwrap())
            .build()
            .unwrap()
    }

    #[test]
    fn a_cgroup_the_compile_made_is_removed_after_a_failed_create() {
        let fake = Fake::default();
        let cgroup = CompileCgroup::new(&fake, Some(resources(64 << 20)));
        assert_eq!(cgroup.memory_limit(), Some(64 << 20));
        cgroup.join(7).unwrap();
        cgroup.remove_if_made();
        cgroup.remove_if_made();
        assert_eq!(*fake.log.borrow(), ["add 7", "apply", "remove"]);
    }

    #[test]
    fn a_cgroup_that_was_there_is_kept() {
        let fake = Fake::default();
        fake.exists.set(true);
        let cgroup = CompileCgroup::new(&fake, None);
        assert_eq!(cgroup.memory_limit(), None);
        cgroup.join(7).unwrap();
        cgroup.remove_if_made();
        assert_eq!(
            *fake.log.borrow(),
            ["add 7"],
            "joined, no resources, not removed"
        );
    }

    #[test]
    fn no_compile_cgroup_with_systemd_or_without_a_path() {
        assert!(CompileCgroup::for_create(Some("slice:p:n"), true, None).is_none());
        assert!(CompileCgroup::for_create(None, false, None).is_none());
        assert!(CompileCgroup::for_create(Some("/default/c1"), false, None).is_some());
    }
}
