//! Starting a created container without a helper process: the container's init waits on
//! libcontainer's notify socket (`<state dir>/notify.sock`) and runs its payload as soon as a
//! client connects and closes. Used when the spec has no `poststart` hooks (libcontainer's own
//! start, through the helper, runs those).

use std::path::Path;

use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;

/// libcontainer's name for the socket in the container's state directory.
pub const NOTIFY_FILE: &str = "notify.sock";

/// Tells the init waiting in `container_dir` to start.
pub async fn send(container_dir: &Path) -> Result<(), String> {
    let path = container_dir.join(NOTIFY_FILE);
    let mut stream = UnixStream::connect(&path)
        .await
        .map_err(|e| format!("start: connect to {}: {e}", path.display()))?;
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
        assert_eq!(waiter.join().unwrap(), "start container");
        assert!(send(&dir.path().join("missing")).await.is_err());
    }
}
