//! Faults the fault tests inject into the node under test: restarting the private containerd
//! under running shims, finding a shim's helpers to kill them at the right moment, and
//! reading what containerd logged of the events it was forwarded.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::ctr;
use crate::leaks;

fn containerd_dir() -> PathBuf {
    PathBuf::from(ctr::state_dir())
}

fn containerd_pid() -> i32 {
    let text = std::fs::read_to_string(containerd_dir().join("containerd.pid"))
        .expect("containerd.pid of the containerd under test (test/lib/containerd.sh)");
    text.trim().parse().expect("a pid in containerd.pid")
}

fn nul_separated(path: PathBuf) -> Vec<String> {
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// Stops the containerd under test with SIGTERM (its shims live on, as under
/// `systemctl restart containerd`), runs `while_down`, keeps it down for at least `down` in
/// all, and starts it again with the same command line and environment, appending to its
/// log. Returns once it answers.
pub fn restart_containerd(down: Duration, while_down: impl FnOnce()) {
    let pid = containerd_pid();
    let args = nul_separated(PathBuf::from(format!("/proc/{pid}/cmdline")));
    let env: Vec<(String, String)> = nul_separated(PathBuf::from(format!("/proc/{pid}/environ")))
        .into_iter()
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect();
    let stopped_at = Instant::now();
    // SAFETY: kill with a pid read from containerd.pid and a constant signal.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        // A zombie (our own child only in theory) counts as gone once its state says so.
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if state.contains(") Z") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "containerd {pid} ignored SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    while_down();
    if let Some(rest) = down.checked_sub(stopped_at.elapsed()) {
        std::thread::sleep(rest);
    }
    let log = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(containerd_dir().join("containerd.log"))
        .expect("open containerd.log");
    let mut command = Command::new(&args[0]);
    command
        .args(&args[1..])
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup log"))
        .stderr(log);
    // SAFETY: setsid in the child before exec, as test/lib/containerd.sh starts it.
    unsafe {
        command.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let child = command.spawn().expect("start containerd again");
    let mut file = std::fs::File::create(containerd_dir().join("containerd.pid"))
        .expect("write containerd.pid");
    writeln!(file, "{}", child.id()).expect("write containerd.pid");
    // The child is not waited for: containerd.sh stop (or the next restart) ends it.
    std::mem::forget(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ran = ctr::run_ctr(&["version"]);
        if ran.code == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "containerd did not come back: {ran:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Where containerd's log ends now: [`forwarded_since`] reads from here.
pub fn containerd_log_offset() -> u64 {
    std::fs::metadata(containerd_dir().join("containerd.log"))
        .map(|m| m.len())
        .unwrap_or(0)
}

/// containerd's log (where the shims' logs go too) from `offset` on.
pub fn containerd_log_since(offset: u64) -> String {
    let log = std::fs::read(containerd_dir().join("containerd.log")).unwrap_or_default();
    String::from_utf8_lossy(log.get(offset as usize..).unwrap_or_default()).into_owned()
}

/// A tmpfs mounted on a new directory for the test's life (unmounted when dropped).
pub struct Tmpfs {
    path: std::path::PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl Tmpfs {
    /// A tmpfs of `size` (as `mount -o size=` takes it: `64k`, `1m`).
    pub fn new(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut tmpfs = Tmpfs::at(dir.path(), size);
        tmpfs._dir = Some(dir);
        tmpfs
    }

    /// A tmpfs of `size` mounted at `path` (made if missing).
    pub fn at(path: &std::path::Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).expect("mkdir");
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0711"),
                "tmpfs",
            ])
            .arg(path)
            .status()
            .expect("mount");
        assert!(status.success(), "mount a tmpfs on {}", path.display());
        Tmpfs {
            path: path.to_path_buf(),
            _dir: None,
        }
    }

    /// Where it is mounted.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Makes it read-only.
    pub fn read_only(&self) {
        let status = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&self.path)
            .status()
            .expect("mount");
        assert!(status.success(), "remount {} ro", self.path.display());
    }

    /// Fills it up but for `room` bytes, with a file named `.filler`.
    pub fn fill_leaving(&self, room: u64) {
        use std::io::Write;
        let filler = self.path.join(".filler");
        let mut file = std::fs::File::create(&filler).expect("create filler");
        let chunk = vec![0u8; 4096];
        while file.write_all(&chunk).is_ok() {}
        let written = file.metadata().map(|m| m.len()).unwrap_or(0);
        file.set_len(written.saturating_sub(room))
            .expect("truncate filler");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

/// Whether the containerd under test logs each event a shim forwards to it (1.6 does, at
/// debug level; 1.7 and 2.x do not), so that [`forwarded_since`] can count them.
pub fn logs_forwarded_events() -> bool {
    let out = crate::ctr::run_ctr(&["version"]);
    let server = out.stdout.split("Server:").nth(1).unwrap_or_default();
    server
        .lines()
        .find_map(|l| l.trim().strip_prefix("Version:"))
        .is_some_and(|v| v.trim().trim_start_matches('v').starts_with("1.6"))
}

/// How many events of `topic` in the test namespace containerd logged as forwarded to it
/// (by a shim) since `offset`; the containerd under test logs at debug level.
pub fn forwarded_since(offset: u64, topic: &str) -> usize {
    let tail = containerd_log_since(offset);
    let ns = format!("ns={}", ctr::namespace());
    let topic = format!("topic={topic}");
    tail.lines()
        .filter(|l| l.contains("event forwarded") && l.contains(&ns))
        .filter(|l| l.split_whitespace().any(|w| w == topic))
        .count()
}

/// The first process whose command line satisfies `matches`, waiting up to `timeout`.
pub fn wait_for_process(
    timeout: Duration,
    matches: impl Fn(i32, &[String]) -> bool,
) -> Option<i32> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(pid) = crate::leaks::processes_matching(&matches) {
            return Some(pid);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Whether process `pid` is gone (exited and reaped) within `timeout`.
pub fn exits_within(pid: i32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether `args` is a compile of a new Wasm file (`wasmpod-compile __wasmpod-compile`).
pub fn is_compile(args: &[String]) -> bool {
    args.iter().any(|a| a == "__wasmpod-compile")
}

/// The zygote of shim `shim`: its child named `wasmpod-zygote`.
pub fn zygote_of(shim: i32) -> Option<i32> {
    crate::leaks::processes_matching(&|pid, _args: &[String]| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let ppid = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<i32>().ok());
        ppid == Some(shim)
            && std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "wasmpod-zygote")
    })
}

/// Sends `signal` to `pid`.
pub fn signal(pid: i32, signal: libc::c_int) {
    // SAFETY: kill with a pid the test found and a signal number.
    unsafe { libc::kill(pid, signal) };
}

/// What each of containerd's open fds points at (to name a leaked one); a unix socket is
/// followed by its path and its peer's owner as `ss` reports them, where `ss` is installed.
pub fn containerd_fds() -> Vec<String> {
    let dir = format!("/proc/{}/fd", containerd_pid());
    let sockets = leaks::unix_sockets();
    let mut links: Vec<String> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| {
            let target = std::fs::read_link(entry.path())
                .map(|t| t.display().to_string())
                .unwrap_or_else(|e| e.to_string());
            let about = leaks::socket_behind(&target, &sockets)
                .map(|s| {
                    let peer = sockets.iter().find(|p| p.inode == s.peer);
                    format!(
                        " ({} {} -> peer {} {})",
                        s.state,
                        s.path,
                        s.peer,
                        peer.map_or("not listed", |p| p.users.as_str())
                    )
                })
                .unwrap_or_default();
            format!("{}={target}{about}", entry.file_name().to_string_lossy())
        })
        .collect();
    links.sort();
    links
}
