//! Starting a created container without a helper process: the container's init waits on
//! libcontainer's notify socket (`<state dir>/notify.sock`) and runs its payload as soon as a
//! client connects and closes. Used when the spec has no `poststart` hooks (libcontainer's own
//! start, through the helper, runs those).

use std::os::fd::AsRawFd;
use std::path::Path;

use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;

/// libcontainer's name for the socket in the container's state directory.
pub const NOTIFY_FILE: &str = "notify.sock";

/// Tells the init waiting in `container_dir` to start.
pub async fn send(container_dir: &Path) -> Result<(), String> {
    let path = container_dir.join(NOTIFY_FILE);
    // Socket paths are limited to 108 bytes and CRI's ids alone are 64: connect through
    // an open handle on the directory instead of its full path.
    let dir = std::fs::File::open(container_dir)
        .map_err(|e| format!("start: open {}: {e}", container_dir.display()))?;
    let short = format!("/proc/self/fd/{}/{NOTIFY_FILE}", dir.as_raw_fd());
    let mut stream = UnixStream::connect(&short)
        .await
        .map_err(|e| format!("start: connect to {}: {e}", path.display()))?;
    drop(dir);
    stream
        .write_all(b"start container")
        .await
        .map_err(|e| format!("start: {e}"))?;
    stream.shutdown().await.map_err(|e| format!("start: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_listener_sees_a_connection_and_eof() {
        let dir = tempfile::tempdir().unwrap();
        let listener =
            std::os::unix::net::UnixListener::bind(dir.path().join(NOTIFY_FILE)).unwrap();
        let waiter = std::thread::spawn(move || {
            use std::io::Read;
            let (mut s, _) = listener.accept().unwrap();
            let mut msg = String::new();
            s.read_to_string(&mut msg).unwrap();
            msg
        });
        send(dir.path()).await.unwrap();
        let long = dir.path().join("x".repeat(100));
        assert_eq!(waiter.join().unwrap(), "start container");
        // A directory whose socket path is longer than a sockaddr_un can hold.
        std::fs::create_dir(&long).unwrap();
        // Bound through a short /proc/self/fd path (changing the cwd would race other tests).
        let listener = {
            use std::os::fd::AsRawFd;
            let dir = std::fs::File::open(&long).unwrap();
            let short = format!("/proc/self/fd/{}/{NOTIFY_FILE}", dir.as_raw_fd());
            std::os::unix::net::UnixListener::bind(short).unwrap()
        };
        let waiter = std::thread::spawn(move || {
            use std::io::Read;
            let (mut s, _) = listener.accept().unwrap();
            let mut msg = String::new();
            s.read_to_string(&mut msg).is_ok()
        });
        send(&long).await.unwrap();
        assert!(waiter.join().unwrap());
        assert!(send(&dir.path().join("missing")).await.is_err());
    }
}
