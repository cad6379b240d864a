//! Where a SQLite database of a Spin app lives ([`StoreLocation`]: a file or memory), and its
//! one connection, opened on first use and kept ([`LazyConnection`]). The key-value stores
//! ([`super::kv`]) and the SQLite databases ([`super::sqlite`]) sit on it.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::Connection;

/// Where one database keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// A SQLite file (created with its directory on first use).
    File(PathBuf),
    /// In this process's memory; gone when it exits.
    Memory,
}

/// What the connection is prepared with once opened (creating a schema, say).
pub type Prepare = fn(&Connection) -> rusqlite::Result<()>;

/// A database's connection, opened on first use; operations run under its lock.
#[derive(Debug)]
pub struct LazyConnection {
    what: String,
    location: StoreLocation,
    prepare: Prepare,
    conn: Mutex<Option<Connection>>,
}

impl LazyConnection {
    /// The connection to the database at `location`, named `what` in errors (`key-value
    /// store default`), prepared with `prepare` when opened.
    pub fn new(what: String, location: StoreLocation, prepare: Prepare) -> LazyConnection {
        LazyConnection {
            what,
            location,
            prepare,
            conn: Mutex::new(None),
        }
    }

    /// Where the database is.
    pub fn location(&self) -> &StoreLocation {
        &self.location
    }

    /// Runs `f` on the connection, opening it first if needed. An open error is a string
    /// naming the database; `f`'s errors are returned as they are.
    pub fn with<R, E: From<String>>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<R, E>,
    ) -> Result<R, E> {
        let mut guard = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            *guard = Some(self.open().map_err(E::from)?);
        }
        match guard.as_mut() {
            Some(conn) => f(conn),
            None => Err(E::from(format!("{} is not open", self.what))),
        }
    }

    fn open(&self) -> Result<Connection, String> {
        let conn = match &self.location {
            StoreLocation::Memory => Connection::open_in_memory(),
            StoreLocation::File(path) => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| format!("create {}: {e}", dir.display()))?;
                }
                Connection::open(path)
            }
        }
        .map_err(|e| format!("open {}: {e}", self.what))?;
        // A file database logs to a write-ahead log and syncs at checkpoints: a write is one
        // append, not a rewritten journal and two fsyncs (the default made a get+set per
        // request ten times slower than a hello); a crash can lose the last writes, never
        // the file. Other SQLite users of the file (Spin itself) read WAL databases as they
        // are.
        if matches!(self.location, StoreLocation::File(_)) {
            conn.pragma_update(None, "journal_mode", "WAL")
                .and_then(|()| conn.pragma_update(None, "synchronous", "NORMAL"))
                .map_err(|e| format!("prepare {}: {e}", self.what))?;
        }
        conn.busy_timeout(Duration::from_secs(5))
            .and_then(|()| (self.prepare)(&conn))
            .map_err(|e| format!("prepare {}: {e}", self.what))?;
        Ok(conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_database_is_created_with_its_directory_and_kept_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/db.sqlite");
        let db = LazyConnection::new("db".into(), StoreLocation::File(path.clone()), |c| {
            c.execute_batch("CREATE TABLE IF NOT EXISTS t (x)")
        });
        assert!(!path.exists());
        db.with(|c| {
            c.execute("INSERT INTO t VALUES (1)", [])
                .map_err(|e| e.to_string())
        })
        .unwrap();
        let n: i64 = db
            .with(|c| {
                c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
                    .map_err(|e| e.to_string())
            })
            .unwrap();
        assert_eq!(n, 1);
        assert!(path.exists());
    }

    #[test]
    fn an_unopenable_database_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("file"), "").unwrap();
        let db = LazyConnection::new(
            "sqlite database default".into(),
            StoreLocation::File(dir.path().join("file/db")),
            |_| Ok(()),
        );
        let err = db.with(|_| Ok::<_, String>(())).unwrap_err();
        assert!(err.contains("create"), "{err}");
    }
}
