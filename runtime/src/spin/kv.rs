//! Spin key-value stores on SQLite, with Spin's schema (so an existing
//! `sqlite_key_value.db` works): one table, the store's label in the `store` column, so every
//! label of type `spin` can share a file. The `default` label is always defined, at
//! `<state_dir>/sqlite_key_value.db` (in-memory without a state directory).
//!
//! A store's connection is opened on first use and kept; operations are short and run under
//! its lock. Reads that would return more than Spin's 128 MiB fail as Spin's do.

use std::collections::BTreeMap;
use std::sync::Arc;

use rusqlite::{params, Connection, OptionalExtension};

use super::db::LazyConnection;
pub use super::db::StoreLocation;

/// The largest result a read may return (Spin's `MAX_HOST_BUFFERED_BYTES`).
pub const MAX_RESULT_BYTES: usize = 128 << 20;

/// The file of the `default` store in a state directory.
pub const DEFAULT_DB_FILE: &str = "sqlite_key_value.db";

/// Every store of the app, by label.
#[derive(Debug, Default)]
pub struct KvStores {
    stores: BTreeMap<String, Arc<KvStore>>,
}

impl KvStores {
    /// Stores at `locations`, by label.
    pub fn new(locations: BTreeMap<String, StoreLocation>) -> KvStores {
        KvStores {
            stores: locations
                .into_iter()
                .map(|(label, location)| {
                    let conn = LazyConnection::new(
                        format!("key-value store {label}"),
                        location,
                        create_table,
                    );
                    (label.clone(), Arc::new(KvStore { label, conn }))
                })
                .collect(),
        }
    }

    /// The store with `label`, if defined.
    pub fn get(&self, label: &str) -> Option<Arc<KvStore>> {
        self.stores.get(label).cloned()
    }

    /// Whether `label` is defined.
    pub fn contains(&self, label: &str) -> bool {
        self.stores.contains_key(label)
    }
}

/// One labelled store.
#[derive(Debug)]
pub struct KvStore {
    label: String,
    conn: LazyConnection,
}

/// What went wrong in a store, as the guest is told.
pub type KvResult<T> = Result<T, String>;

/// Spin's key-value table.
fn create_table(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS spin_key_value (
            store TEXT NOT NULL,
            key TEXT NOT NULL,
            value BLOB NOT NULL,
            PRIMARY KEY (store, key)
        )",
    )
}

impl KvStore {
    /// Runs `f` on the store's connection, opening it first if needed.
    fn with<R>(&self, f: impl FnOnce(&mut Connection, &str) -> rusqlite::Result<R>) -> KvResult<R> {
        self.conn
            .with(|c| f(c, &self.label).map_err(|e| format!("key-value store {}: {e}", self.label)))
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> KvResult<Option<Vec<u8>>> {
        let value = self.with(|c, store| current_value(c, store, key))?;
        if value.as_ref().is_some_and(|v| v.len() > MAX_RESULT_BYTES) {
            return Err(too_big());
        }
        Ok(value)
    }

    /// Sets `key` to `value`, replacing any value.
    pub fn set(&self, key: &str, value: &[u8]) -> KvResult<()> {
        self.with(|c, store| upsert(c, store, key, value))
    }

    /// Removes `key` (no error if absent).
    pub fn delete(&self, key: &str) -> KvResult<()> {
        self.with(|c, store| {
            c.prepare_cached("DELETE FROM spin_key_value WHERE store = ?1 AND key = ?2")?
                .execute(params![store, key])
                .map(drop)
        })
    }

    /// Whether `key` has a value.
    pub fn exists(&self, key: &str) -> KvResult<bool> {
        self.with(|c, store| {
            c.prepare_cached("SELECT 1 FROM spin_key_value WHERE store = ?1 AND key = ?2")?
                .exists(params![store, key])
        })
    }

    /// Every key.
    pub fn keys(&self) -> KvResult<Vec<String>> {
        let keys = self.with(|c, store| {
            c.prepare_cached("SELECT key FROM spin_key_value WHERE store = ?1")?
                .query_map(params![store], |row| row.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })?;
        if keys.iter().map(String::len).sum::<usize>() > MAX_RESULT_BYTES {
            return Err(too_big());
        }
        Ok(keys)
    }

    /// Adds `delta` to the number stored at `key` (0 when absent) and returns the sum. The
    /// number is kept as 8 little-endian bytes.
    pub fn increment(&self, key: &str, delta: i64) -> KvResult<i64> {
        let mut bad = None;
        let result = self.with(|c, store| {
            let tx = c.transaction()?;
            let current = current_value(&tx, store, key)?;
            let n = match current.as_deref().map(decode_number) {
                None => 0,
                Some(Some(n)) => n,
                Some(None) => {
                    bad = Some(());
                    return Ok(0);
                }
            };
            let sum = n.wrapping_add(delta);
            upsert(&tx, store, key, &sum.to_le_bytes())?;
            tx.commit()?;
            Ok(sum)
        })?;
        match bad {
            Some(()) => Err(format!("the value of {key:?} is not a number")),
            None => Ok(result),
        }
    }

    /// Sets `key` to `value` if its value is still `expected` (`None`: absent); says
    /// whether it did.
    pub fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        value: &[u8],
    ) -> KvResult<bool> {
        self.with(|c, store| {
            let tx = c.transaction()?;
            let current = current_value(&tx, store, key)?;
            if current.as_deref() != expected {
                return Ok(false);
            }
            upsert(&tx, store, key, value)?;
            tx.commit()?;
            Ok(true)
        })
    }
}

const UPSERT: &str = "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
     ON CONFLICT(store, key) DO UPDATE SET value = excluded.value";

/// Sets `key` of `store` to `value` (a connection or a transaction).
fn upsert(c: &Connection, store: &str, key: &str, value: &[u8]) -> rusqlite::Result<()> {
    c.prepare_cached(UPSERT)?
        .execute(params![store, key, value])
        .map(drop)
}

/// The value of `key` in `store`, read inside a transaction.
fn current_value(c: &Connection, store: &str, key: &str) -> rusqlite::Result<Option<Vec<u8>>> {
    c.prepare_cached("SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2")?
        .query_row(params![store, key], |row| row.get::<_, Vec<u8>>(0))
        .optional()
}

fn decode_number(bytes: &[u8]) -> Option<i64> {
    if let Ok(le) = <[u8; 8]>::try_from(bytes) {
        return Some(i64::from_le_bytes(le));
    }
    std::str::from_utf8(bytes).ok()?.trim().parse().ok()
}

fn too_big() -> String {
    format!("query result exceeds limit of {MAX_RESULT_BYTES} bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stores(dir: &std::path::Path) -> KvStores {
        let file = StoreLocation::File(dir.join("state/sqlite_key_value.db"));
        KvStores::new(
            [
                ("default".to_string(), file.clone()),
                ("other".to_string(), file),
                ("mem".to_string(), StoreLocation::Memory),
            ]
            .into(),
        )
    }

    #[test]
    fn operations_and_labels_sharing_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let s = stores(dir.path());
        let default = s.get("default").unwrap();
        let other = s.get("other").unwrap();
        assert_eq!(default.get("k").unwrap(), None);
        default.set("k", b"v1").unwrap();
        default.set("k", b"v2").unwrap();
        other.set("k", b"o").unwrap();
        assert_eq!(default.get("k").unwrap().as_deref(), Some(&b"v2"[..]));
        assert_eq!(other.get("k").unwrap().as_deref(), Some(&b"o"[..]));
        assert!(default.exists("k").unwrap());
        assert_eq!(default.keys().unwrap(), ["k"]);
        default.delete("k").unwrap();
        default.delete("k").unwrap();
        assert!(!default.exists("k").unwrap());
        assert!(other.exists("k").unwrap());
        assert!(s.get("nope").is_none());
        // The data is in the file, in Spin's schema.
        drop(s);
        let conn = Connection::open(dir.path().join("state/sqlite_key_value.db")).unwrap();
        let n: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM spin_key_value WHERE store = 'other' AND key = 'k'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn atomics() {
        let dir = tempfile::tempdir().unwrap();
        let s = stores(dir.path());
        let m = s.get("mem").unwrap();
        assert_eq!(m.increment("n", 5).unwrap(), 5);
        assert_eq!(m.increment("n", -2).unwrap(), 3);
        m.set("t", b"41").unwrap();
        assert_eq!(m.increment("t", 1).unwrap(), 42);
        m.set("x", b"not a number").unwrap();
        assert!(m.increment("x", 1).unwrap_err().contains("not a number"));
        assert!(m.compare_and_swap("c", None, b"1").unwrap());
        assert!(!m.compare_and_swap("c", None, b"2").unwrap());
        assert!(m.compare_and_swap("c", Some(b"1"), b"2").unwrap());
        assert_eq!(m.get("c").unwrap().as_deref(), Some(&b"2"[..]));
    }
}
