//! Playing kubelet over containerd's CRI socket: the same calls, in the same order, with the
//! same shape of requests (namespace options copied into each container's security context,
//! log directory plus relative log path, a pod cgroup parent that the test removes afterwards).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;
use tonic::transport::Channel;

use crate::ctr;
use crate::fixtures;

/// The containerd namespace CRI uses.
pub const K8S_NAMESPACE: &str = "k8s.io";
/// The pause image the CRI config names (`sandbox_image`).
pub const PAUSE_IMAGE: &str = "docker.io/wasmpod/pause:e2e";
/// The parent of every test pod's cgroup (cgroupfs driver).
pub const CGROUP_PARENT_ROOT: &str = "/wasmpod-e2e";

/// A blocking CRI client.
pub struct Cri {
    rt: tokio::runtime::Runtime,
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
}

/// A pod the test created.
#[derive(Debug, Clone)]
pub struct Pod {
    /// The sandbox id.
    pub id: String,
    /// The config it was created with (containers need it too).
    pub config: PodSandboxConfig,
    /// Where container logs go.
    pub log_dir: PathBuf,
    /// The pod's cgroup parent.
    pub cgroup_parent: String,
}

/// What a pod should look like.
#[derive(Debug, Clone, Default)]
pub struct PodSpec {
    /// Use the node's network namespace.
    pub host_network: bool,
    /// Use the node's PID namespace (`hostPID`).
    pub host_pid: bool,
    /// Allow privileged containers (kubelet sets this when any container is privileged).
    pub privileged: bool,
    /// The pod's annotations (`metadata.annotations`).
    pub annotations: Vec<(String, String)>,
}

/// What a container should look like.
#[derive(Debug, Clone, Default)]
pub struct ContainerSpec {
    /// Container name.
    pub name: String,
    /// Image reference.
    pub image: String,
    /// Entrypoint override (`command`).
    pub command: Vec<String>,
    /// Arguments.
    pub args: Vec<String>,
    /// Environment.
    pub env: Vec<(String, String)>,
    /// Memory limit in bytes (0: none).
    pub memory_limit: i64,
    /// The security context of Kubernetes' "restricted" Pod Security Standard, as kubelet
    /// sends it: uid and gid 1000, a read-only rootfs, no new privileges, every capability
    /// dropped, the runtime's default seccomp profile, and kubelet's masked and read-only
    /// `/proc` paths.
    pub restricted: bool,
    /// Bind mounts (host path, container path), read-write, as a `hostPath` volume.
    pub mounts: Vec<(String, String)>,
    /// `securityContext.privileged` (kubelet then sends no masked or read-only paths).
    pub privileged: bool,
}

/// The `/proc` paths kubelet masks by default.
const MASKED_PATHS: [&str; 9] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
];
/// The `/proc` paths kubelet makes read-only by default.
const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

fn security_context(
    spec: &ContainerSpec,
    ns: Option<NamespaceOption>,
) -> LinuxContainerSecurityContext {
    if spec.privileged {
        return LinuxContainerSecurityContext {
            namespace_options: ns,
            privileged: true,
            ..Default::default()
        };
    }
    let mut context = LinuxContainerSecurityContext {
        namespace_options: ns,
        masked_paths: MASKED_PATHS.map(String::from).to_vec(),
        readonly_paths: READONLY_PATHS.map(String::from).to_vec(),
        ..Default::default()
    };
    if spec.restricted {
        context.run_as_user = Some(Int64Value { value: 1000 });
        context.run_as_group = Some(Int64Value { value: 1000 });
        context.readonly_rootfs = true;
        context.no_new_privs = true;
        context.capabilities = Some(Capability {
            drop_capabilities: vec!["ALL".into()],
            ..Default::default()
        });
        context.seccomp = Some(SecurityProfile {
            profile_type: security_profile::ProfileType::RuntimeDefault as i32,
            localhost_ref: String::new(),
        });
    }
    context
}

fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

impl Cri {
    /// Connects to the containerd under test.
    pub fn connect() -> Cri {
        Cri::connect_to(&ctr::address())
    }

    /// Connects to the containerd whose socket is `socket`.
    pub fn connect_to(socket: &str) -> Cri {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let channel = rt
            .block_on(wasmpod_deploy::node::cri::channel(Path::new(socket)))
            .expect("connect to the CRI socket");
        Cri {
            rt,
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
        }
    }

    /// The image service's view of `image`, if present.
    pub fn image_present(&mut self, image: &str) -> bool {
        let req = ImageStatusRequest {
            image: Some(ImageSpec {
                image: image.to_string(),
                ..Default::default()
            }),
            verbose: false,
        };
        let mut c = self.images.clone();
        self.rt
            .block_on(c.image_status(req))
            .map(|r| r.into_inner().image.is_some())
            .unwrap_or(false)
    }

    /// PullImage, as kubelet sends it; returns the image reference containerd answers.
    pub fn pull_image(&mut self, image: &str) -> Result<String, tonic::Status> {
        let req = PullImageRequest {
            image: Some(ImageSpec {
                image: image.to_string(),
                ..Default::default()
            }),
            auth: None,
            sandbox_config: None,
        };
        let mut c = self.images.clone();
        self.rt
            .block_on(c.pull_image(req))
            .map(|r| r.into_inner().image_ref)
    }

    /// RunPodSandbox with `handler`.
    pub fn run_pod(&mut self, handler: &str, spec: &PodSpec) -> Result<Pod, tonic::Status> {
        let name = unique("pod");
        let uid = unique("uid");
        let log_dir = std::env::temp_dir().join(format!("wasmpod-e2e-logs/{name}"));
        std::fs::create_dir_all(&log_dir).expect("log dir");
        let cgroup_parent = format!("{CGROUP_PARENT_ROOT}/pod{uid}");
        let network = if spec.host_network {
            NamespaceMode::Node
        } else {
            NamespaceMode::Pod
        };
        let config = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.clone(),
                uid,
                namespace: "default".into(),
                attempt: 0,
            }),
            // kubelet leaves the hostname to the node for hostNetwork pods.
            hostname: if spec.host_network {
                String::new()
            } else {
                name.clone()
            },
            log_directory: log_dir.display().to_string(),
            annotations: spec.annotations.iter().cloned().collect(),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: cgroup_parent.clone(),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        network: network as i32,
                        pid: if spec.host_pid {
                            NamespaceMode::Node
                        } else {
                            NamespaceMode::Container
                        } as i32,
                        ipc: NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    privileged: spec.privileged,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let req = RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: handler.to_string(),
        };
        let mut c = self.runtime.clone();
        let id = self
            .rt
            .block_on(c.run_pod_sandbox(req))?
            .into_inner()
            .pod_sandbox_id;
        Ok(Pod {
            id,
            config,
            log_dir,
            cgroup_parent,
        })
    }

    /// CreateContainer as kubelet sends it.
    pub fn create_container(
        &mut self,
        pod: &Pod,
        spec: &ContainerSpec,
    ) -> Result<String, tonic::Status> {
        let ns = pod
            .config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.clone());
        let config = ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: spec.name.clone(),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image: spec.image.clone(),
                ..Default::default()
            }),
            command: spec.command.clone(),
            args: spec.args.clone(),
            envs: spec
                .env
                .iter()
                .map(|(k, v)| KeyValue {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect(),
            log_path: format!("{}.log", spec.name),
            mounts: spec
                .mounts
                .iter()
                .map(|(host, container)| Mount {
                    host_path: host.clone(),
                    container_path: container.clone(),
                    ..Default::default()
                })
                .collect(),
            linux: Some(LinuxContainerConfig {
                resources: Some(LinuxContainerResources {
                    memory_limit_in_bytes: spec.memory_limit,
                    ..Default::default()
                }),
                security_context: Some(security_context(spec, ns)),
            }),
            ..Default::default()
        };
        let req = CreateContainerRequest {
            pod_sandbox_id: pod.id.clone(),
            config: Some(config),
            sandbox_config: Some(pod.config.clone()),
        };
        let mut c = self.runtime.clone();
        Ok(self
            .rt
            .block_on(c.create_container(req))?
            .into_inner()
            .container_id)
    }

    /// StartContainer.
    pub fn start_container(&mut self, id: &str) -> Result<(), tonic::Status> {
        let mut c = self.runtime.clone();
        self.rt.block_on(c.start_container(StartContainerRequest {
            container_id: id.to_string(),
        }))?;
        Ok(())
    }

    /// ContainerStatus.
    pub fn container_status(&mut self, id: &str) -> Result<ContainerStatus, tonic::Status> {
        let mut c = self.runtime.clone();
        let resp = self
            .rt
            .block_on(c.container_status(ContainerStatusRequest {
                container_id: id.to_string(),
                verbose: false,
            }))?;
        resp.into_inner()
            .status
            .ok_or_else(|| tonic::Status::not_found("no status"))
    }

    /// Polls ContainerStatus until the container has exited; returns its status.
    pub fn wait_exited(&mut self, id: &str, timeout: std::time::Duration) -> ContainerStatus {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let status = self.container_status(id).expect("container status");
            if status.state == ContainerState::ContainerExited as i32
                || std::time::Instant::now() > deadline
            {
                return status;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// StopContainer with a grace period in seconds.
    pub fn stop_container(&mut self, id: &str, timeout: i64) -> Result<(), tonic::Status> {
        let mut c = self.runtime.clone();
        self.rt.block_on(c.stop_container(StopContainerRequest {
            container_id: id.to_string(),
            timeout,
        }))?;
        Ok(())
    }

    /// RemoveContainer.
    pub fn remove_container(&mut self, id: &str) -> Result<(), tonic::Status> {
        let mut c = self.runtime.clone();
        self.rt
            .block_on(c.remove_container(RemoveContainerRequest {
                container_id: id.to_string(),
            }))?;
        Ok(())
    }

    /// ExecSync: (exit code, stdout, stderr).
    pub fn exec_sync(
        &mut self,
        id: &str,
        cmd: &[&str],
        timeout: i64,
    ) -> Result<(i32, String, String), tonic::Status> {
        let mut c = self.runtime.clone();
        let resp = self
            .rt
            .block_on(c.exec_sync(ExecSyncRequest {
                container_id: id.to_string(),
                cmd: cmd.iter().map(|s| s.to_string()).collect(),
                timeout,
            }))?
            .into_inner();
        Ok((
            resp.exit_code,
            String::from_utf8_lossy(&resp.stdout).into_owned(),
            String::from_utf8_lossy(&resp.stderr).into_owned(),
        ))
    }

    /// UpdateContainerResources with a new memory limit.
    pub fn update_memory(&mut self, id: &str, limit: i64) -> Result<(), tonic::Status> {
        let mut c = self.runtime.clone();
        self.rt.block_on(
            c.update_container_resources(UpdateContainerResourcesRequest {
                container_id: id.to_string(),
                linux: Some(LinuxContainerResources {
                    memory_limit_in_bytes: limit,
                    ..Default::default()
                }),
                ..Default::default()
            }),
        )?;
        Ok(())
    }

    /// ContainerStats.
    pub fn container_stats(&mut self, id: &str) -> Result<ContainerStats, tonic::Status> {
        let mut c = self.runtime.clone();
        let resp = self.rt.block_on(c.container_stats(ContainerStatsRequest {
            container_id: id.to_string(),
        }))?;
        resp.into_inner()
            .stats
            .ok_or_else(|| tonic::Status::not_found("no stats"))
    }

    /// PodSandboxStatus (verbose), with the info map.
    pub fn pod_status(
        &mut self,
        pod: &Pod,
    ) -> Result<(PodSandboxStatus, HashMap<String, String>), tonic::Status> {
        let mut c = self.runtime.clone();
        let resp = self
            .rt
            .block_on(c.pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: pod.id.clone(),
                verbose: true,
            }))?
            .into_inner();
        Ok((
            resp.status
                .ok_or_else(|| tonic::Status::not_found("no status"))?,
            resp.info,
        ))
    }

    /// The pod's network namespace path, from the sandbox's runtime spec.
    pub fn pod_netns(&mut self, pod: &Pod) -> Option<String> {
        let (_, info) = self.pod_status(pod).ok()?;
        let info: serde_json::Value = serde_json::from_str(info.get("info")?).ok()?;
        info["runtimeSpec"]["linux"]["namespaces"]
            .as_array()?
            .iter()
            .find(|n| n["type"] == "network")
            .and_then(|n| n["path"].as_str())
            .map(str::to_string)
    }

    /// StopPodSandbox, RemovePodSandbox, then the pod's cgroup directories (kubelet's job).
    pub fn remove_pod(&mut self, pod: &Pod) -> Result<(), tonic::Status> {
        let mut c = self.runtime.clone();
        self.rt.block_on(c.stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod.id.clone(),
        }))?;
        self.rt
            .block_on(c.remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: pod.id.clone(),
            }))?;
        remove_cgroup_dirs(&pod.cgroup_parent);
        let _ = std::fs::remove_dir_all(&pod.log_dir);
        Ok(())
    }
}

/// The processes in the cgroups (pids controller) under `pod`'s cgroup parent whose
/// directory name contains `name`: a container's when `name` is its id, all when it is "".
pub fn pod_processes(pod: &Pod, name: &str) -> Vec<i32> {
    fn walk(dir: &Path, name: &str, out: &mut Vec<i32>) {
        if dir
            .file_name()
            .is_some_and(|n| n.to_string_lossy().contains(name))
        {
            let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            out.extend(procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        }
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if entry.path().is_dir() {
                walk(&entry.path(), name, out);
            }
        }
    }
    let mut pids = Vec::new();
    let root = Path::new("/sys/fs/cgroup/pids").join(pod.cgroup_parent.trim_start_matches('/'));
    walk(&root, name, &mut pids);
    pids
}

/// Removes a cgroup (v1: in every controller) and its now-empty parents up to the test root.
pub fn remove_cgroup_dirs(path: &str) {
    let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for c in controllers.flatten() {
        let dir = c.path().join(path.trim_start_matches('/'));
        let _ = std::fs::remove_dir(&dir);
    }
}

/// The contents of a CRI log file, as (stream, text) lines.
pub fn log_lines(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(4, ' ');
            let _time = parts.next()?;
            let stream = parts.next()?.to_string();
            let _tag = parts.next()?;
            Some((stream, parts.next().unwrap_or("").to_string()))
        })
        .collect()
}

/// Builds the pause image (a static C program) and imports it into the CRI namespace.
pub fn ensure_pause_image() {
    ensure_pause_image_at(&ctr::address());
}

/// [`ensure_pause_image`] for the containerd at `address`.
pub fn ensure_pause_image_at(address: &str) {
    let out = fixtures::dir().join("pause");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/pause.c");
    let status = Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .expect("run gcc");
    assert!(status.success(), "gcc -static pause.c failed");
    let image = wasmpod_oci::image::ImageBuilder::new(PAUSE_IMAGE)
        .platform("linux", "amd64")
        .entrypoint(["/pause"])
        .file("/pause", std::fs::read(&out).expect("pause binary"), 0o755);
    import_k8s_at(address, &image, PAUSE_IMAGE);
}

/// Imports an image into the CRI namespace.
pub fn import_k8s(image: &wasmpod_oci::image::ImageBuilder, name: &str) {
    import_k8s_at(&ctr::address(), image, name);
}

/// [`import_k8s`] into the containerd at `address`.
pub fn import_k8s_at(address: &str, image: &wasmpod_oci::image::ImageBuilder, name: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let tar = dir.path().join("image.tar");
    image.write_tar(&tar).expect("write image tar");
    let out = Command::new("ctr")
        .args(["--address", address, "--namespace", K8S_NAMESPACE])
        .args(["images", "import", "--all-platforms"])
        .arg(&tar)
        .output()
        .expect("ctr images import");
    assert!(
        out.status.success(),
        "import {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
