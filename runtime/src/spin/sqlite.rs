//! Spin's SQLite databases, `fermyon:spin/sqlite@2.0.0`, `spin:sqlite/sqlite@3.0.0` and
//! `@3.1.0` (Spin 4: 3.0 plus async functions), on rusqlite: the `default` database at `<state_dir>/sqlite_db.db`, other labels where the
//! runtime config's `[sqlite_database.<label>]` puts them. A component may open the labels
//! its `sqlite_databases` lists (`access-denied` otherwise, as in Spin); a label nothing
//! defines is `no-such-database` (and fails Create when a component lists it).
//!
//! A statement runs under its database's lock, so a connection's `last-insert-rowid` and
//! `changes` (3.0) are those of the guest's own last statement even when requests run side
//! by side; they are kept with the guest's connection.

use std::collections::BTreeMap;
use std::sync::Arc;

use rusqlite::types::Value;
use wasmtime::component::{Accessor, FutureReader, HasSelf, Linker, Resource, StreamReader};

use super::async_host::streamed_rows;
use super::db::{LazyConnection, StoreLocation};
use super::state::SpinState;

/// The file of the `default` database in a state directory.
pub const DEFAULT_DB_FILE: &str = "sqlite_db.db";

#[allow(missing_docs)]
mod bindings {
    wasmtime::component::bindgen!({
        path: "wit/spin-sqlite",
        world: "wasmpod:spin-sqlite/spin-sqlite",
        imports: { default: trappable },
        with: {
            "fermyon:spin/sqlite.connection": super::SqliteConnection,
            "spin:sqlite/sqlite@3.0.0.connection": super::SqliteConnection,
            "spin:sqlite/sqlite@3.1.0.connection": super::SqliteConnection,
        },
    });
}

use bindings::fermyon::spin::sqlite as v2;
use bindings::spin::sqlite3_0_0::sqlite as v3;
use bindings::spin::sqlite3_1_0::sqlite as v3_1;

/// Adds the three versions of the interface to `linker`.
pub fn add_to_linker(linker: &mut Linker<SpinState>) -> wasmtime::Result<()> {
    bindings::SpinSqlite::add_to_linker::<SpinState, HasSelf<SpinState>>(linker, |s| s)
}

/// Every database of the app, by label.
#[derive(Debug, Default)]
pub struct SqliteDatabases {
    databases: BTreeMap<String, Arc<LazyConnection>>,
}

impl SqliteDatabases {
    /// Databases at `locations`, by label.
    pub fn new(locations: BTreeMap<String, StoreLocation>) -> SqliteDatabases {
        SqliteDatabases {
            databases: locations
                .into_iter()
                .map(|(label, location)| {
                    let db =
                        LazyConnection::new(format!("sqlite database {label}"), location, |_| {
                            Ok(())
                        });
                    (label, Arc::new(db))
                })
                .collect(),
        }
    }

    /// Whether `label` is defined.
    pub fn contains(&self, label: &str) -> bool {
        self.databases.contains_key(label)
    }
}

/// An open database, as a guest resource, with what its last statement did.
pub struct SqliteConnection {
    db: Arc<LazyConnection>,
    last_insert_rowid: i64,
    changes: u64,
}

/// Why a statement or an open failed, before it is put in a version's words.
#[derive(Debug, PartialEq)]
enum Failure {
    NoSuchDatabase,
    AccessDenied,
    DatabaseFull,
    Io(String),
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure::Io(message)
    }
}

impl From<rusqlite::Error> for Failure {
    fn from(e: rusqlite::Error) -> Failure {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => Failure::DatabaseFull,
            _ => Failure::Io(e.to_string()),
        }
    }
}

/// What a statement returned: its column names and rows.
#[derive(Debug, PartialEq)]
struct Rows {
    columns: Vec<String>,
    rows: Vec<Vec<Value>>,
}

/// Runs `statement` with `params` on `conn`'s database; records the connection's row id and
/// change count after it.
fn execute(
    conn: &mut SqliteConnection,
    statement: &str,
    params: Vec<Value>,
) -> Result<Rows, Failure> {
    let (rows, rowid, changes) = conn.db.with(|c| {
        let rows = {
            let mut stmt = c.prepare_cached(statement)?;
            let columns: Vec<String> = stmt.column_names().into_iter().map(String::from).collect();
            let width = columns.len();
            let mut out = Vec::new();
            let mut cursor = stmt.query(rusqlite::params_from_iter(params))?;
            while let Some(row) = cursor.next()? {
                out.push(
                    (0..width)
                        .map(|i| row.get::<_, Value>(i))
                        .collect::<Result<_, _>>()?,
                );
            }
            Rows { columns, rows: out }
        };
        Ok::<_, Failure>((rows, c.last_insert_rowid(), c.changes()))
    })?;
    conn.last_insert_rowid = rowid;
    conn.changes = changes;
    Ok(rows)
}

impl SpinState {
    /// Opens `label` for this component.
    fn open_database(&mut self, label: &str) -> Result<Resource<SqliteConnection>, Failure> {
        if !self.host.sqlite_labels.iter().any(|l| l == label) {
            return Err(Failure::AccessDenied);
        }
        let db = self
            .host
            .sqlite
            .databases
            .get(label)
            .cloned()
            .ok_or(Failure::NoSuchDatabase)?;
        self.table
            .push(SqliteConnection {
                db,
                last_insert_rowid: 0,
                changes: 0,
            })
            .map_err(|e| Failure::Io(e.to_string()))
    }

    fn run_statement(
        &mut self,
        conn: &Resource<SqliteConnection>,
        statement: &str,
        params: Vec<Value>,
    ) -> wasmtime::Result<Result<Rows, Failure>> {
        let conn = self.table.get_mut(conn)?;
        Ok(execute(conn, statement, params))
    }
}

/// The guest's side of each version: its values and errors, to and from rusqlite's.
macro_rules! version {
    ($v:ident) => {
        impl From<$v::Value> for Value {
            fn from(v: $v::Value) -> Value {
                match v {
                    $v::Value::Integer(n) => Value::Integer(n),
                    $v::Value::Real(x) => Value::Real(x),
                    $v::Value::Text(s) => Value::Text(s),
                    $v::Value::Blob(b) => Value::Blob(b),
                    $v::Value::Null => Value::Null,
                }
            }
        }

        impl From<Value> for $v::Value {
            fn from(v: Value) -> $v::Value {
                match v {
                    Value::Integer(n) => $v::Value::Integer(n),
                    Value::Real(x) => $v::Value::Real(x),
                    Value::Text(s) => $v::Value::Text(s),
                    Value::Blob(b) => $v::Value::Blob(b),
                    Value::Null => $v::Value::Null,
                }
            }
        }

        impl From<Failure> for $v::Error {
            fn from(f: Failure) -> $v::Error {
                match f {
                    Failure::NoSuchDatabase => $v::Error::NoSuchDatabase,
                    Failure::AccessDenied => $v::Error::AccessDenied,
                    Failure::DatabaseFull => $v::Error::DatabaseFull,
                    Failure::Io(m) => $v::Error::Io(m),
                }
            }
        }

        impl From<Rows> for $v::QueryResult {
            fn from(r: Rows) -> $v::QueryResult {
                $v::QueryResult {
                    columns: r.columns,
                    rows: r
                        .rows
                        .into_iter()
                        .map(|row| $v::RowResult {
                            values: row.into_iter().map(Into::into).collect(),
                        })
                        .collect(),
                }
            }
        }

        impl $v::Host for SpinState {}
    };
}

version!(v2);
version!(v3);
version!(v3_1);

impl v2::HostConnection for SpinState {
    fn open(
        &mut self,
        database: String,
    ) -> wasmtime::Result<Result<Resource<SqliteConnection>, v2::Error>> {
        Ok(self.open_database(&database).map_err(Into::into))
    }

    fn execute(
        &mut self,
        conn: Resource<SqliteConnection>,
        statement: String,
        parameters: Vec<v2::Value>,
    ) -> wasmtime::Result<Result<v2::QueryResult, v2::Error>> {
        let params = parameters.into_iter().map(Into::into).collect();
        let rows = self.run_statement(&conn, &statement, params)?;
        Ok(rows.map(Into::into).map_err(Into::into))
    }

    fn drop(&mut self, conn: Resource<SqliteConnection>) -> wasmtime::Result<()> {
        self.table.delete(conn)?;
        Ok(())
    }
}

/// The 3.x connection's synchronous functions, the same in 3.0 and 3.1.
macro_rules! connection_3 {
    ($v:ident) => {
        impl $v::HostConnection for SpinState {
            fn open(
                &mut self,
                database: String,
            ) -> wasmtime::Result<Result<Resource<SqliteConnection>, $v::Error>> {
                Ok(self.open_database(&database).map_err(Into::into))
            }

            fn execute(
                &mut self,
                conn: Resource<SqliteConnection>,
                statement: String,
                parameters: Vec<$v::Value>,
            ) -> wasmtime::Result<Result<$v::QueryResult, $v::Error>> {
                let params = parameters.into_iter().map(Into::into).collect();
                let rows = self.run_statement(&conn, &statement, params)?;
                Ok(rows.map(Into::into).map_err(Into::into))
            }

            fn last_insert_rowid(
                &mut self,
                conn: Resource<SqliteConnection>,
            ) -> wasmtime::Result<i64> {
                Ok(self.table.get(&conn)?.last_insert_rowid)
            }

            fn changes(&mut self, conn: Resource<SqliteConnection>) -> wasmtime::Result<u64> {
                Ok(self.table.get(&conn)?.changes)
            }

            fn drop(&mut self, conn: Resource<SqliteConnection>) -> wasmtime::Result<()> {
                self.table.delete(conn)?;
                Ok(())
            }
        }
    };
}

connection_3!(v3);
connection_3!(v3_1);

/// 3.1's async functions (Spin 4): the same work as the synchronous ones, answered when
/// called; `execute-async` streams the rows it has read.
impl<T> v3_1::HostConnectionWithStore<T> for HasSelf<SpinState> {
    async fn open_async(
        accessor: &Accessor<T, Self>,
        database: String,
    ) -> wasmtime::Result<Result<Resource<SqliteConnection>, v3_1::Error>> {
        accessor.with(|mut access| Ok(access.get().open_database(&database).map_err(Into::into)))
    }

    async fn execute_async(
        accessor: &Accessor<T, Self>,
        conn: Resource<SqliteConnection>,
        statement: String,
        parameters: Vec<v3_1::Value>,
    ) -> wasmtime::Result<
        Result<
            (
                Vec<String>,
                StreamReader<v3_1::RowResult>,
                FutureReader<Result<(), v3_1::Error>>,
            ),
            v3_1::Error,
        >,
    > {
        let params = parameters.into_iter().map(Into::into).collect();
        accessor.with(|mut access| {
            let rows = match access.get().run_statement(&conn, &statement, params)? {
                Ok(rows) => v3_1::QueryResult::from(rows),
                Err(failure) => return Ok(Err(failure.into())),
            };
            let (stream, done) = streamed_rows(&mut access, rows.rows)?;
            Ok(Ok((rows.columns, stream, done)))
        })
    }

    async fn last_insert_rowid_async(
        accessor: &Accessor<T, Self>,
        conn: Resource<SqliteConnection>,
    ) -> wasmtime::Result<i64> {
        accessor.with(|mut access| Ok(access.get().table.get(&conn)?.last_insert_rowid))
    }

    async fn changes_async(
        accessor: &Accessor<T, Self>,
        conn: Resource<SqliteConnection>,
    ) -> wasmtime::Result<u64> {
        accessor.with(|mut access| Ok(access.get().table.get(&conn)?.changes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(location: StoreLocation) -> SqliteConnection {
        let dbs = SqliteDatabases::new([("default".to_string(), location)].into());
        SqliteConnection {
            db: dbs.databases["default"].clone(),
            last_insert_rowid: 0,
            changes: 0,
        }
    }

    #[test]
    fn statements_rows_row_ids_and_changes() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = connection(StoreLocation::File(dir.path().join("state/sqlite_db.db")));
        let created = execute(
            &mut c,
            "CREATE TABLE pets (id INTEGER PRIMARY KEY, name TEXT, weight REAL, photo BLOB)",
            vec![],
        )
        .unwrap();
        assert_eq!(created.rows, Vec::<Vec<Value>>::new());
        for name in ["rex", "tom"] {
            execute(
                &mut c,
                "INSERT INTO pets (name, weight, photo) VALUES (?, ?, ?)",
                vec![
                    Value::Text(name.into()),
                    Value::Real(4.5),
                    Value::Blob(vec![1, 2]),
                ],
            )
            .unwrap();
        }
        assert_eq!((c.last_insert_rowid, c.changes), (2, 1));
        let got = execute(
            &mut c,
            "SELECT id, name, photo, NULL AS none FROM pets WHERE id > ?",
            vec![Value::Integer(1)],
        )
        .unwrap();
        assert_eq!(got.columns, ["id", "name", "photo", "none"]);
        assert_eq!(
            got.rows,
            [[
                Value::Integer(2),
                Value::Text("tom".into()),
                Value::Blob(vec![1, 2]),
                Value::Null
            ]]
        );
        execute(&mut c, "UPDATE pets SET weight = 5", vec![]).unwrap();
        assert_eq!(c.changes, 2);
        let err = execute(&mut c, "SELEC nonsense", vec![]).unwrap_err();
        assert!(
            matches!(&err, Failure::Io(m) if m.contains("syntax error")),
            "{err:?}"
        );
        let err = execute(&mut c, "SELECT ?", vec![]).unwrap_err();
        assert!(matches!(err, Failure::Io(_)));
    }
}
