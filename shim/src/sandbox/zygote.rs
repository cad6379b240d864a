//! The shim's zygote: a single-threaded copy of the serving shim, forked before the shim
//! starts any thread, that forks one worker per container helper request.
//!
//! Why: every process that `exec`s our binary relocates its own copy of the binary's
//! relocated read-only data (about 1.3 MB of private memory for a binary with Wasmtime in
//! it). A process forked from one that already did shares those pages with it. The shim, the
//! zygote, and every container process cloned from a worker therefore share one copy instead
//! of one each, and a helper request skips an `exec` and the dynamic loader.
//!
//! Protocol: the shim sends one request per `SOCK_SEQPACKET` message (the JSON of a
//! [`super::protocol::HelperRequest`]) with three descriptors attached: the write ends of a
//! pipe for the JSON response and of a pipe for the worker's diagnostics, and the read end of
//! the requester pipe (see [`super::requester`]). A worker runs the [`Worker`] function the
//! zygote was forked with (the container helper) with the first two as its stdout and stderr;
//! the shim reads both to their end. When the shim's end of the socket closes (the shim
//! exited), the zygote exits.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Mutex;

use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};

/// The largest request the zygote reads (a request holds paths and, for exec, a file path).
const MAX_REQUEST: usize = 256 * 1024;

/// The shim's handle on its zygote.
pub struct Zygote {
    socket: Mutex<OwnedFd>,
    pid: i32,
}

/// What a worker runs: one request's bytes in, its answer on stdout; never returns.
pub type Worker = fn(&[u8]) -> !;

/// Forks the zygote, whose workers run `worker`. Must be called while the process has a
/// single thread (checked in debug builds).
pub fn fork(worker: Worker) -> Result<Zygote, String> {
    debug_assert_eq!(
        thread_count(),
        Some(1),
        "the zygote must be forked from a single-threaded process"
    );
    fork_with(worker)
}

/// [`fork`] without the check (the unit test forks from a process whose only other thread is
/// idle).
fn fork_with(worker: Worker) -> Result<Zygote, String> {
    let (shim_end, zygote_end) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| format!("socketpair: {e}"))?;
    // SAFETY: the caller guarantees a single thread, so the child may keep running Rust.
    match unsafe { libc::fork() } {
        -1 => Err(format!("fork: {}", std::io::Error::last_os_error())),
        0 => {
            drop(shim_end);
            serve(zygote_end, worker)
        }
        pid => {
            drop(zygote_end);
            Ok(Zygote {
                socket: Mutex::new(shim_end),
                pid,
            })
        }
    }
}

impl Zygote {
    /// Ends the zygote and waits (up to a second) until the shim's reaper has collected it,
    /// so it never outlives the shim as an orphan.
    pub fn stop(&self) {
        if let Ok(socket) = self.socket.lock() {
            // SAFETY: shutdown on a socket this process owns.
            unsafe { libc::shutdown(socket.as_raw_fd(), libc::SHUT_RDWR) };
        }
        let proc_dir = format!("/proc/{}", self.pid);
        for _ in 0..100 {
            if !std::path::Path::new(&proc_dir).exists() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        log::warn!("the zygote (pid {}) did not exit", self.pid);
    }

    /// Sends `request` with the write ends of the response and diagnostics pipes and the read
    /// end of the requester pipe.
    pub fn send(
        &self,
        request: &[u8],
        response: &OwnedFd,
        diagnostics: &OwnedFd,
        requester: &OwnedFd,
    ) -> Result<(), String> {
        let socket = self
            .socket
            .lock()
            .map_err(|_| "the zygote's socket lock is poisoned".to_string())?;
        let fds = [
            response.as_raw_fd(),
            diagnostics.as_raw_fd(),
            requester.as_raw_fd(),
        ];
        let cmsg = [ControlMessage::ScmRights(&fds)];
        sendmsg::<()>(
            socket.as_raw_fd(),
            &[IoSlice::new(request)],
            &cmsg,
            MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .map(|_| ())
        .map_err(|e| format!("send to the zygote: {e}"))
    }
}

/// The zygote's loop; never returns.
fn serve(socket: OwnedFd, work: Worker) -> ! {
    // SAFETY: prctl and signal with constant arguments. The zygote dies with the shim, and
    // the kernel reaps its workers (it waits for none of them).
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        libc::signal(libc::SIGCHLD, libc::SIG_IGN);
    }
    // The shim's stdio may be pipes that someone reads to their end (the `start` action
    // reads the daemon's stdout): the zygote must not hold them open.
    redirect_stdio_to_null();
    close_other_descriptors(socket.as_raw_fd());
    set_process_title("wasmpod-zygote", &["wasmpod-zygote"]);
    let mut buf = vec![0u8; MAX_REQUEST];
    loop {
        let (len, fds) = match receive(socket.as_raw_fd(), &mut buf) {
            Ok(Some(message)) => message,
            Ok(None) => std::process::exit(0),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => std::process::exit(1),
        };
        let [response, diagnostics, requester] = match <[OwnedFd; 3]>::try_from(fds) {
            Ok(fds) => fds,
            Err(_) => continue,
        };
        // SAFETY: the zygote is single-threaded. A failed fork drops the pipes: the shim
        // reads an empty response and says so.
        if unsafe { libc::fork() } == 0 {
            run_worker(
                &socket,
                &buf[..len],
                [response, diagnostics, requester],
                work,
            )
        }
    }
}

/// Receives one message and the descriptors attached to it; `None` when the shim is gone.
fn receive(
    socket: RawFd,
    buf: &mut [u8],
) -> Result<Option<(usize, Vec<OwnedFd>)>, nix::errno::Errno> {
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!([RawFd; 3]);
    let msg = recvmsg::<()>(
        socket,
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut fds = Vec::new();
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(received) = cmsg {
            // SAFETY: the kernel just gave us these descriptors; nothing else owns them.
            fds.extend(
                received
                    .into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    let len = msg.bytes;
    if len == 0 && fds.is_empty() {
        return Ok(None);
    }
    Ok(Some((len, fds)))
}

/// The threads of this process, from `/proc/self/status`.
fn thread_count() -> Option<usize> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))?
        .trim()
        .parse()
        .ok()
}

/// A worker: `work` with the shim's pipes as stdout and stderr, watching the requester pipe.
fn run_worker(
    socket: &OwnedFd,
    request: &[u8],
    [response, diagnostics, requester]: [OwnedFd; 3],
    work: Worker,
) -> ! {
    // SAFETY: plain syscalls on descriptors this process owns, in a single-threaded child.
    unsafe {
        libc::signal(libc::SIGCHLD, libc::SIG_DFL);
        libc::close(socket.as_raw_fd());
        libc::dup2(response.as_raw_fd(), 1);
        libc::dup2(diagnostics.as_raw_fd(), 2);
    }
    drop(response);
    drop(diagnostics);
    super::requester::watch(requester);
    // The container's processes are forks of this one: show them as the helper's were.
    set_process_title(
        "wasmpod-init",
        &["wasmpod-init", super::protocol::HELPER_ARG],
    );
    work(request)
}

/// Closes every descriptor above stdio but `keep`: whatever the shim inherited stays with
/// the shim, and workers (and the container processes forked from them) start clean.
fn close_other_descriptors(keep: RawFd) {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<RawFd> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
        .filter(|fd| *fd > 2 && *fd != keep)
        .collect();
    for fd in fds {
        // SAFETY: closing descriptors nothing in this single-threaded process uses any more
        // (the directory's own descriptor is already closed; closing it again is harmless).
        unsafe { libc::close(fd) };
    }
}

fn redirect_stdio_to_null() {
    // SAFETY: open and dup2 on descriptors this single-threaded process owns.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            for fd in 0..=2 {
                libc::dup2(null, fd);
            }
            if null > 2 {
                libc::close(null);
            }
        }
    }
}

/// Sets what `ps` shows for this process: its name, and its command line, by writing over
/// the original argument strings in place (their area is found in `/proc/self/stat`).
fn set_process_title(name: &str, args: &[&str]) {
    if let Ok(comm) = std::ffi::CString::new(name) {
        // SAFETY: PR_SET_NAME reads a NUL-terminated string of up to 16 bytes.
        unsafe { libc::prctl(libc::PR_SET_NAME, comm.as_ptr(), 0, 0, 0) };
    }
    let Some((start, end)) = argument_area() else {
        return;
    };
    let mut title = args.join("\0").into_bytes();
    title.push(0);
    let len = end - start;
    title.truncate(len);
    if let Some(last) = title.last_mut() {
        *last = 0;
    }
    // SAFETY: [start, end) is this process's own argument area, which the kernel laid out
    // and nothing frees; the strings are only made shorter, and stay NUL-terminated.
    unsafe {
        std::ptr::write_bytes(start as *mut u8, 0, len);
        std::ptr::copy_nonoverlapping(title.as_ptr(), start as *mut u8, title.len());
    }
}

/// `arg_start` and `arg_end` (fields 48 and 49 of `/proc/self/stat`).
fn argument_area() -> Option<(usize, usize)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_argument_area(&stat)
}

fn parse_argument_area(stat: &str) -> Option<(usize, usize)> {
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split(' ').collect();
    // `rest` starts at field 3.
    let start: usize = fields.get(48 - 3)?.parse().ok()?;
    let end: usize = fields.get(49 - 3)?.trim().parse().ok()?;
    (end > start).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_argument_area_in_stat() {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        let (start, end) = parse_argument_area(&stat).unwrap();
        assert!(end > start);
        // A command name with spaces and parentheses does not shift the fields.
        let odd = stat.replacen('(', "(a) b (", 1);
        assert_eq!(parse_argument_area(&odd), Some((start, end)));
    }

    /// The echo worker: answers each request with its bytes reversed.
    fn echo(request: &[u8]) -> ! {
        use std::io::Write;
        let reversed: Vec<u8> = request.iter().rev().copied().collect();
        let mut out = std::io::stdout();
        let _ = out.write_all(&reversed);
        let _ = out.flush();
        eprint!("echoed {} bytes", request.len());
        std::process::exit(0)
    }

    /// Sends `request` to `zygote` and reads the worker's answer and diagnostics.
    fn ask(zygote: &Zygote, request: &[u8]) -> (Vec<u8>, String) {
        use std::io::Read;
        let (response_r, response_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let (diag_r, diag_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let (requester_r, _requester_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        zygote
            .send(request, &response_w, &diag_w, &requester_r)
            .unwrap();
        drop((response_w, diag_w, requester_r));
        let mut response = Vec::new();
        std::fs::File::from(response_r)
            .read_to_end(&mut response)
            .unwrap();
        let mut diagnostics = String::new();
        std::fs::File::from(diag_r)
            .read_to_string(&mut diagnostics)
            .unwrap();
        (response, diagnostics)
    }

    const ECHO_CHILD: &str = "WASMPOD_ZYGOTE_ECHO_CHILD";

    /// Runs in a copy of the test binary (see the test below), whose only other thread is
    /// libtest's idle main thread: forks a zygote with the echo worker and talks to it.
    #[test]
    fn zygote_echo_child() {
        if std::env::var_os(ECHO_CHILD).is_none() {
            return;
        }
        let zygote = fork_with(echo).unwrap();
        assert_eq!(
            ask(&zygote, b"hello"),
            (b"olleh".to_vec(), "echoed 5 bytes".into())
        );
        // One worker per request; the zygote serves on.
        let big = vec![7u8; 100_000];
        assert_eq!(ask(&zygote, &big).0, big);
        // Closing the shim's end ends the zygote.
        // SAFETY: shutdown on a socket this process owns.
        unsafe { libc::shutdown(zygote.socket.lock().unwrap().as_raw_fd(), libc::SHUT_RDWR) };
        let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(zygote.pid), None).unwrap();
        assert!(
            matches!(status, nix::sys::wait::WaitStatus::Exited(_, 0)),
            "{status:?}"
        );
        println!("zygote echo ok");
    }

    #[test]
    fn a_zygote_forks_a_worker_per_request_and_exits_with_the_shim() {
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new(exe)
            .args([
                "--exact",
                "sandbox::zygote::tests::zygote_echo_child",
                "--test-threads=1",
                "--nocapture",
            ])
            .env(ECHO_CHILD, "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("zygote echo ok"),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn counts_threads() {
        let before = thread_count().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || rx.recv());
        assert_eq!(thread_count(), Some(before + 1));
        drop(tx);
        let _ = t.join();
    }
}
