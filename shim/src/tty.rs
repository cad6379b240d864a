//! Terminals for native processes (`ctr run -t`, `ctr task exec -t`, `kubectl exec -it`).
//!
//! libcontainer opens the pty inside the container and sends its master end over a console
//! socket; the shim listens on that socket, keeps the master, copies containerd's stdin FIFO
//! into it and its output to containerd's stdout FIFO, and resizes it on ResizePty.

use std::fs::{File, OpenOptions};
use std::io::{IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

/// How long the shim waits for libcontainer to send the pty master.
const MASTER_WAIT: Duration = Duration::from_secs(10);

/// A console socket the helper's container process connects to.
pub struct ConsoleSocket {
    path: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    /// Listens at a fresh, short path under `dir`.
    pub fn bind(dir: &Path) -> std::io::Result<ConsoleSocket> {
        std::fs::create_dir_all(dir)?;
        let mut random = [0u8; 8];
        File::open("/dev/urandom")?.read_exact(&mut random)?;
        let name: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let path = dir.join(format!("tty-{name}.sock"));
        let listener = UnixListener::bind(&path)?;
        Ok(ConsoleSocket { path, listener })
    }

    /// The socket's path, for libcontainer.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits for the pty master (blocking; run it off the async threads).
    pub fn receive_master(self) -> std::io::Result<OwnedFd> {
        self.listener.set_nonblocking(true)?;
        let deadline = std::time::Instant::now() + MASTER_WAIT;
        let stream = loop {
            match self.listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if std::time::Instant::now() > deadline {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "no terminal was sent by the container",
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(e),
            }
        };
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(MASTER_WAIT))?;
        let mut buf = [0u8; 4096];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::empty(),
        )
        .map_err(std::io::Error::from)?;
        for c in msg.cmsgs().map_err(std::io::Error::from)? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                if let Some(fd) = fds.first() {
                    // SAFETY: the kernel just gave us this descriptor.
                    return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
                }
            }
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the console socket carried no descriptor",
        ))
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A pty master owned by the shim, with its copy threads running.
pub struct Console {
    master: Arc<OwnedFd>,
    /// Set when the process has exited: the stdin thread stops.
    done: Arc<AtomicBool>,
}

impl Console {
    /// Starts copying between the master and containerd's FIFOs.
    pub fn start(master: OwnedFd, stdin: &str, stdout: &str) -> std::io::Result<Console> {
        let master = Arc::new(master);
        if !stdout.is_empty() {
            let out = OpenOptions::new().read(true).write(true).open(stdout)?;
            let reader = File::from(master.try_clone()?);
            std::thread::Builder::new()
                .name("tty-out".into())
                .spawn(move || copy(reader, out))?;
        }
        let done = Arc::new(AtomicBool::new(false));
        if !stdin.is_empty() {
            // Non-blocking: containerd may open its end late, close it early, or never.
            let input = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(stdin)?;
            let writer = File::from(master.try_clone()?);
            let done = done.clone();
            std::thread::Builder::new()
                .name("tty-in".into())
                .spawn(move || copy_until(input, writer, &done))?;
        }
        Ok(Console { master, done })
    }

    /// Stops copying input (the process has exited).
    pub fn finish(&self) {
        self.done.store(true, Ordering::SeqCst);
    }

    /// Sets the terminal size.
    pub fn resize(&self, width: u32, height: u32) -> std::io::Result<()> {
        let size = libc::winsize {
            ws_row: height as u16,
            ws_col: width as u16,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ with a valid winsize on a pty master we own.
        if unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &size) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Copies from a non-blocking FIFO until `done` is set or the pty is gone.
fn copy_until(mut from: File, mut to: File, done: &AtomicBool) {
    let mut buf = [0u8; 8192];
    while !done.load(Ordering::SeqCst) {
        match from.read(&mut buf) {
            Ok(n) if n > 0 => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            // No writer yet, or none any more, or nothing to read: look again shortly.
            Ok(_) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(_) => break,
        }
    }
}

/// Copies until either side ends (the pty reports EIO once the process is gone).
fn copy(mut from: File, mut to: File) {
    let mut buf = [0u8; 8192];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
}
