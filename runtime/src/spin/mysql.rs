//! `fermyon:spin/mysql@2.0.0` and `spin:mysql/mysql@3.0.0` (Spin 4, async), Spin's outbound
//! MySQL, served with mysql_async (MySQL and MariaDB, over TCP, or TLS when the address says
//! `require_ssl=true`, verified as [`super::tls`] says): a connection may be opened only to a server the component's
//! `allowed_outbound_hosts` lists (`mysql://host:port`), otherwise `connection-failed` says
//! the address is not permitted. Statements run as prepared statements (the binary
//! protocol), so each column's value comes back as the column's type says: integers signed
//! or unsigned by width, floats, text or (binary character set) bytes; DECIMAL as its text;
//! dates and times, which neither version has a case for, as `unsupported`. 3.0's types are
//! 2.0's under other names: it is served by the same code, its values converted.

use mysql_async::consts::{ColumnFlags, ColumnType};
use mysql_async::prelude::Queryable;
use mysql_async::{ClientIdentity, Column, Conn, Opts, OptsBuilder, Params, Row, Value};
use std::sync::Arc;

use tokio::sync::Mutex;
use wasmtime::component::{Accessor, FutureReader, HasSelf, Resource, StreamReader};

use super::async_host::streamed_rows;
use super::rdbms::v2t::{self, Column as DbColumn, DbDataType, DbValue, Error, ParameterValue};
use super::rdbms::{mysql as v2, mysql3 as v3};
use super::state::{ComponentHost, SpinState};

/// The character set number of binary strings (BLOB, BINARY, VARBINARY).
const BINARY_CHARSET: u16 = 63;

/// An open connection, as a guest resource; shared, so that a 3.0 statement runs without
/// the store.
pub struct MysqlConnection(Arc<Mutex<Conn>>);

fn param(p: ParameterValue) -> Value {
    match p {
        ParameterValue::Boolean(b) => Value::Int(i64::from(b)),
        ParameterValue::Int8(v) => Value::Int(v.into()),
        ParameterValue::Int16(v) => Value::Int(v.into()),
        ParameterValue::Int32(v) => Value::Int(v.into()),
        ParameterValue::Int64(v) => Value::Int(v),
        ParameterValue::Uint8(v) => Value::UInt(v.into()),
        ParameterValue::Uint16(v) => Value::UInt(v.into()),
        ParameterValue::Uint32(v) => Value::UInt(v.into()),
        ParameterValue::Uint64(v) => Value::UInt(v),
        ParameterValue::Floating32(v) => Value::Float(v),
        ParameterValue::Floating64(v) => Value::Double(v),
        ParameterValue::Str(s) => Value::Bytes(s.into_bytes()),
        ParameterValue::Binary(b) => Value::Bytes(b),
        ParameterValue::DbNull => Value::NULL,
    }
}

fn params(list: Vec<ParameterValue>) -> Params {
    if list.is_empty() {
        Params::Empty
    } else {
        Params::Positional(list.into_iter().map(param).collect())
    }
}

/// Whether values of columns of type `t` are strings of bytes (text, or bytes in the binary
/// character set).
fn is_string(t: ColumnType) -> bool {
    use ColumnType as T;
    matches!(
        t,
        T::MYSQL_TYPE_VARCHAR
            | T::MYSQL_TYPE_VAR_STRING
            | T::MYSQL_TYPE_STRING
            | T::MYSQL_TYPE_TINY_BLOB
            | T::MYSQL_TYPE_MEDIUM_BLOB
            | T::MYSQL_TYPE_LONG_BLOB
            | T::MYSQL_TYPE_BLOB
            | T::MYSQL_TYPE_ENUM
            | T::MYSQL_TYPE_SET
            | T::MYSQL_TYPE_JSON
    )
}

fn data_type(c: &Column) -> DbDataType {
    let unsigned = c.flags().contains(ColumnFlags::UNSIGNED_FLAG);
    use ColumnType as T;
    match (c.column_type(), unsigned) {
        (T::MYSQL_TYPE_TINY, false) => DbDataType::Int8,
        (T::MYSQL_TYPE_TINY, true) => DbDataType::Uint8,
        (T::MYSQL_TYPE_SHORT | T::MYSQL_TYPE_YEAR, false) => DbDataType::Int16,
        (T::MYSQL_TYPE_SHORT | T::MYSQL_TYPE_YEAR, true) => DbDataType::Uint16,
        (T::MYSQL_TYPE_LONG | T::MYSQL_TYPE_INT24, false) => DbDataType::Int32,
        (T::MYSQL_TYPE_LONG | T::MYSQL_TYPE_INT24, true) => DbDataType::Uint32,
        (T::MYSQL_TYPE_LONGLONG, false) => DbDataType::Int64,
        (T::MYSQL_TYPE_LONGLONG, true) => DbDataType::Uint64,
        (T::MYSQL_TYPE_FLOAT, _) => DbDataType::Floating32,
        (T::MYSQL_TYPE_DOUBLE, _) => DbDataType::Floating64,
        (T::MYSQL_TYPE_DECIMAL | T::MYSQL_TYPE_NEWDECIMAL, _) => DbDataType::Str,
        (T::MYSQL_TYPE_BIT, _) => DbDataType::Binary,
        (t, _) if is_string(t) && c.character_set() == BINARY_CHARSET => DbDataType::Binary,
        (t, _) if is_string(t) => DbDataType::Str,
        _ => DbDataType::Other,
    }
}

/// The value of a column of type `ty`, or why it does not convert.
fn value(ty: DbDataType, v: Value) -> Result<DbValue, String> {
    fn int<T: TryFrom<i64> + TryFrom<u64>>(v: &Value) -> Result<T, String> {
        match *v {
            Value::Int(n) => T::try_from(n).map_err(|_| format!("{n} is out of range")),
            Value::UInt(n) => T::try_from(n).map_err(|_| format!("{n} is out of range")),
            ref other => Err(format!("{other:?} is not an integer")),
        }
    }
    if v == Value::NULL {
        return Ok(DbValue::DbNull);
    }
    Ok(match ty {
        DbDataType::Int8 => DbValue::Int8(int(&v)?),
        DbDataType::Int16 => DbValue::Int16(int(&v)?),
        DbDataType::Int32 => DbValue::Int32(int(&v)?),
        DbDataType::Int64 => DbValue::Int64(int(&v)?),
        DbDataType::Uint8 => DbValue::Uint8(int(&v)?),
        DbDataType::Uint16 => DbValue::Uint16(int(&v)?),
        DbDataType::Uint32 => DbValue::Uint32(int(&v)?),
        DbDataType::Uint64 => DbValue::Uint64(int(&v)?),
        DbDataType::Floating32 => match v {
            Value::Float(x) => DbValue::Floating32(x),
            other => return Err(format!("{other:?} is not a FLOAT")),
        },
        DbDataType::Floating64 => match v {
            Value::Double(x) => DbValue::Floating64(x),
            Value::Float(x) => DbValue::Floating64(x.into()),
            other => return Err(format!("{other:?} is not a DOUBLE")),
        },
        DbDataType::Str => match v {
            Value::Bytes(b) => DbValue::Str(String::from_utf8(b).map_err(|e| e.to_string())?),
            other => return Err(format!("{other:?} is not text")),
        },
        DbDataType::Binary => match v {
            Value::Bytes(b) => DbValue::Binary(b),
            other => return Err(format!("{other:?} is not bytes")),
        },
        _ => DbValue::Unsupported,
    })
}

fn row_set(columns: &[Column], rows: Vec<Row>) -> Result<v2t::RowSet, Error> {
    let types: Vec<DbDataType> = columns.iter().map(data_type).collect();
    let rows = rows
        .into_iter()
        .map(|row| {
            row.unwrap()
                .into_iter()
                .zip(&types)
                .map(|(v, ty)| value(*ty, v))
                .collect::<Result<Vec<_>, _>>()
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(Error::ValueConversionFailed)?;
    Ok(v2t::RowSet {
        columns: columns
            .iter()
            .zip(types)
            .map(|(c, data_type)| DbColumn {
                name: c.name_str().into_owned(),
                data_type,
            })
            .collect(),
        rows,
    })
}

fn query_failed(e: mysql_async::Error) -> Error {
    Error::QueryFailed(e.to_string())
}

/// A session with the server at `address`, if `host`'s component may reach it (a denial is
/// logged).
async fn connect(host: &ComponentHost, address: &str) -> Result<MysqlConnection, Error> {
    let denied = Error::ConnectionFailed(format!("address {address} is not permitted"));
    let opts = Opts::from_url(address)
        .map_err(|e| Error::ConnectionFailed(format!("invalid address: {e}")))?;
    let (name, port) = (opts.ip_or_hostname().to_string(), opts.tcp_port());
    if opts.socket().is_some() {
        host.log_denied("mysql", &name, port);
        return Err(denied);
    }
    if !host.may_reach("mysql", &name, port) {
        return Err(denied);
    }
    // TLS (`require_ssl=true` in the address) to a host the component's `[[client_tls]]`
    // names: its authorities and client certificate.
    let opts = match (opts.ssl_opts(), host.tls.pem(&name)) {
        (Some(ssl), Some(pem)) => {
            let mut ssl = ssl.clone().with_disable_built_in_roots(!pem.web_pki);
            if let Some(ca) = &pem.ca {
                ssl = ssl.with_root_certs(vec![ca.clone().into()]);
            }
            if let Some((cert, key)) = &pem.identity {
                let identity = ClientIdentity::new(cert.clone().into(), key.clone().into());
                ssl = ssl.with_client_identity(Some(identity));
            }
            Opts::from(OptsBuilder::from_opts(opts).ssl_opts(ssl))
        }
        _ => opts,
    };
    match Conn::new(opts).await {
        Ok(conn) => Ok(MysqlConnection(Arc::new(Mutex::new(conn)))),
        Err(e) => Err(Error::ConnectionFailed(e.to_string())),
    }
}

/// The rows of `statement`, read whole.
async fn query(
    conn: &Mutex<Conn>,
    statement: String,
    list: Vec<ParameterValue>,
) -> Result<v2t::RowSet, Error> {
    let mut conn = conn.lock().await;
    let mut result = conn
        .exec_iter(statement, params(list))
        .await
        .map_err(query_failed)?;
    let columns = result.columns().map(|c| c.to_vec()).unwrap_or_default();
    let rows: Vec<Row> = result.collect().await.map_err(query_failed)?;
    row_set(&columns, rows)
}

async fn execute(
    conn: &Mutex<Conn>,
    statement: String,
    list: Vec<ParameterValue>,
) -> Result<(), Error> {
    let mut conn = conn.lock().await;
    conn.exec_drop(statement, params(list))
        .await
        .map_err(query_failed)
}

/// Ends the session cleanly, unless another holder still has it; a server that is gone
/// already needs no goodbye.
async fn disconnect(conn: MysqlConnection) {
    if let Ok(conn) = Arc::try_unwrap(conn.0) {
        let goodbye = conn.into_inner().disconnect();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), goodbye).await;
    }
}

impl v2::Host for SpinState {}

impl v2::HostConnection for SpinState {
    async fn open(
        &mut self,
        address: String,
    ) -> wasmtime::Result<Result<Resource<MysqlConnection>, Error>> {
        Ok(match connect(&self.host, &address).await {
            Ok(conn) => Ok(self.table.push(conn)?),
            Err(e) => Err(e),
        })
    }

    async fn query(
        &mut self,
        conn: Resource<MysqlConnection>,
        statement: String,
        list: Vec<ParameterValue>,
    ) -> wasmtime::Result<Result<v2t::RowSet, Error>> {
        let conn = self.table.get(&conn)?.0.clone();
        Ok(query(&conn, statement, list).await)
    }

    async fn execute(
        &mut self,
        conn: Resource<MysqlConnection>,
        statement: String,
        list: Vec<ParameterValue>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let conn = self.table.get(&conn)?.0.clone();
        Ok(execute(&conn, statement, list).await)
    }

    async fn drop(&mut self, conn: Resource<MysqlConnection>) -> wasmtime::Result<()> {
        disconnect(self.table.delete(conn)?).await;
        Ok(())
    }
}

/// `From` between two versions' enums whose cases have the same names: those with a value,
/// then those without.
macro_rules! same_cases {
    ($from:ty => $to:ty { $($with:ident),* ; $($unit:ident),* }) => {
        impl From<$from> for $to {
            fn from(value: $from) -> $to {
                type F = $from;
                type T = $to;
                match value {
                    $(F::$with(x) => T::$with(x),)*
                    $(F::$unit => T::$unit,)*
                }
            }
        }
    };
}

same_cases!(v3::ParameterValue => ParameterValue {
    Boolean, Int8, Int16, Int32, Int64, Uint8, Uint16, Uint32, Uint64, Floating32, Floating64,
    Str, Binary; DbNull
});
same_cases!(DbValue => v3::DbValue {
    Boolean, Int8, Int16, Int32, Int64, Uint8, Uint16, Uint32, Uint64, Floating32, Floating64,
    Str, Binary; DbNull, Unsupported
});
same_cases!(DbDataType => v3::DbDataType {
    ; Boolean, Int8, Int16, Int32, Int64, Uint8, Uint16, Uint32, Uint64, Floating32, Floating64,
    Str, Binary, Other
});
same_cases!(Error => v3::Error {
    ConnectionFailed, BadParameter, QueryFailed, ValueConversionFailed, Other;
});

fn params_v3(list: Vec<v3::ParameterValue>) -> Vec<ParameterValue> {
    list.into_iter().map(Into::into).collect()
}

/// The connection behind `conn`, shared.
fn connection_of<T>(
    accessor: &Accessor<T, HasSelf<SpinState>>,
    conn: &Resource<MysqlConnection>,
) -> wasmtime::Result<Arc<Mutex<Conn>>> {
    accessor.with(|mut access| Ok(access.get().table.get(conn)?.0.clone()))
}

impl v3::Host for SpinState {}

impl v3::HostConnection for SpinState {
    async fn drop(&mut self, conn: Resource<MysqlConnection>) -> wasmtime::Result<()> {
        disconnect(self.table.delete(conn)?).await;
        Ok(())
    }
}

/// 3.0 (Spin 4): 2.0's work, each statement without holding the store; a query's rows are
/// read whole, then streamed to the guest.
impl<T> v3::HostConnectionWithStore<T> for HasSelf<SpinState> {
    async fn open(
        accessor: &Accessor<T, Self>,
        address: String,
    ) -> wasmtime::Result<Result<Resource<MysqlConnection>, v3::Error>> {
        let host = accessor.with(|mut access| access.get().host.clone());
        match connect(&host, &address).await {
            Ok(conn) => accessor.with(|mut access| Ok(Ok(access.get().table.push(conn)?))),
            Err(e) => Ok(Err(e.into())),
        }
    }

    async fn query(
        accessor: &Accessor<T, Self>,
        conn: Resource<MysqlConnection>,
        statement: String,
        params: Vec<v3::ParameterValue>,
    ) -> wasmtime::Result<
        Result<
            (
                Vec<v3::Column>,
                StreamReader<v3::Row>,
                FutureReader<Result<(), v3::Error>>,
            ),
            v3::Error,
        >,
    > {
        let conn = connection_of(accessor, &conn)?;
        let rows = match query(&conn, statement, params_v3(params)).await {
            Ok(rows) => rows,
            Err(e) => return Ok(Err(e.into())),
        };
        let columns = (rows.columns.into_iter())
            .map(|c| v3::Column {
                name: c.name,
                data_type: c.data_type.into(),
            })
            .collect();
        let rows: Vec<v3::Row> = (rows.rows.into_iter())
            .map(|row| row.into_iter().map(Into::into).collect())
            .collect();
        let (stream, done) = accessor.with(|mut access| streamed_rows(&mut access, rows))?;
        Ok(Ok((columns, stream, done)))
    }

    async fn execute(
        accessor: &Accessor<T, Self>,
        conn: Resource<MysqlConnection>,
        statement: String,
        params: Vec<v3::ParameterValue>,
    ) -> wasmtime::Result<Result<(), v3::Error>> {
        let conn = connection_of(accessor, &conn)?;
        Ok(execute(&conn, statement, params_v3(params))
            .await
            .map_err(Into::into))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_follow_their_column_types() {
        assert!(matches!(
            value(DbDataType::Int8, Value::Int(-5)),
            Ok(DbValue::Int8(-5))
        ));
        assert!(matches!(
            value(DbDataType::Uint64, Value::UInt(u64::MAX)),
            Ok(DbValue::Uint64(u64::MAX))
        ));
        assert!(value(DbDataType::Int8, Value::Int(300))
            .unwrap_err()
            .contains("out of range"));
        assert!(
            matches!(value(DbDataType::Str, Value::Bytes(b"hi".to_vec())), Ok(DbValue::Str(ref s)) if s == "hi")
        );
        assert!(matches!(
            value(DbDataType::Other, Value::Date(2026, 12, 1, 0, 0, 0, 0)),
            Ok(DbValue::Unsupported)
        ));
        assert!(matches!(
            value(DbDataType::Int32, Value::NULL),
            Ok(DbValue::DbNull)
        ));
        assert!(matches!(
            param(ParameterValue::Boolean(true)),
            Value::Int(1)
        ));
    }
}
