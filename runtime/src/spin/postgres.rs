//! Spin's outbound Postgres, `fermyon:spin/postgres@2.0.0`, `spin:postgres/postgres@3.0.0`,
//! `@4.0.0` and `@4.2.0` (Spin 4: a connection builder, and async functions that run without
//! holding the store), served with tokio-postgres: a connection may be opened only to a server the
//! component's `allowed_outbound_hosts` lists (`postgres://host:port`), otherwise
//! `connection-failed` says the address is not permitted, as Spin says it. Parameters and
//! rows go through one version-free [`Value`] ([`super::pg_types`]); a value a version has
//! no case for comes back `unsupported`. Connections use TLS when the server offers it
//! (verified as the component's TLS configuration says, [`super::tls`], or against 4.2's
//! `set-ca-root`), unless the address says `sslmode=disable`.

use std::str::FromStr;
use std::sync::Arc;

use tokio_postgres::config::{Host as PgHost, SslMode};
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Config, NoTls, Row};
use wasmtime::component::{Accessor, FutureReader, HasSelf, Resource, StreamReader};

use super::pg_types::{self, Interval, Value};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::async_host::streamed_rows;
use super::state::{ComponentHost, SpinState};
use super::tls;

use super::rdbms::{postgres2 as v2, postgres3 as v3, postgres4 as v4, postgres4_2 as v4_2, v2t};

/// An open connection, as a guest resource.
pub struct PgConnection(Arc<Client>);

/// A connection being set up (4.2's `connection-builder`): the address, and the TLS
/// configuration that trusts the CA root the guest gave.
pub struct PgConnectionBuilder {
    address: String,
    ca_root: Option<Arc<rustls::ClientConfig>>,
}

/// A server's error, as 4.0 reports it.
#[derive(Debug)]
struct DbError {
    as_text: String,
    severity: String,
    code: String,
    message: String,
    detail: Option<String>,
}

/// What went wrong, before it is put in a version's words.
#[derive(Debug)]
enum Failure {
    ConnectionFailed(String),
    BadParameter(String),
    QueryFailed(String, Option<Box<DbError>>),
    ValueConversionFailed(String),
}

impl Failure {
    fn query(e: tokio_postgres::Error) -> Failure {
        let db = e.as_db_error().map(|d| {
            Box::new(DbError {
                as_text: d.to_string(),
                severity: d.severity().to_string(),
                code: d.code().code().to_string(),
                message: d.message().to_string(),
                detail: d.detail().map(String::from),
            })
        });
        let text = match &db {
            Some(d) => d.as_text.clone(),
            None => with_causes(&e),
        };
        Failure::QueryFailed(text, db)
    }
}

/// `e` and what caused it, as one line (a TLS failure says why the certificate was refused).
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text = format!("{text}: {c}");
        cause = c.source();
    }
    text
}

/// A result set, version-free.
struct RowSet {
    columns: Vec<(String, Type)>,
    rows: Vec<Vec<Value>>,
}

fn row_set(columns: Vec<(String, Type)>, rows: &[Row]) -> Result<RowSet, Failure> {
    let rows = rows
        .iter()
        .map(|row| {
            (0..row.len())
                .map(|i| pg_types::read(row, i))
                .collect::<Result<Vec<_>, _>>()
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Failure::ValueConversionFailed(format!("{e:#}")))?;
    Ok(RowSet { columns, rows })
}

/// A client connected to `address`, if `host`'s component may reach it (a denial is
/// logged): over TLS unless the address says `sslmode=disable` (with the default `prefer`,
/// a server that has no TLS is spoken to in the clear), trusting what `ca_root` does (4.2's
/// `set-ca-root`), else what the component's TLS configuration says for the first host.
async fn connect(
    host: &ComponentHost,
    address: &str,
    ca_root: Option<Arc<rustls::ClientConfig>>,
) -> Result<Client, Failure> {
    let denied = || Failure::ConnectionFailed(format!("address {address} is not permitted"));
    let config = Config::from_str(address)
        .map_err(|e| Failure::ConnectionFailed(format!("invalid address: {e}")))?;
    let ports = config.get_ports();
    for (i, name) in config.get_hosts().iter().enumerate() {
        let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
        let PgHost::Tcp(name) = name else {
            return Err(denied());
        };
        if !host.may_reach("postgres", name, port) {
            return Err(denied());
        }
    }
    let Some(PgHost::Tcp(first)) = config.get_hosts().first() else {
        return Err(denied());
    };
    let tls = ca_root.unwrap_or_else(|| host.tls.config(first));
    let failed = |e: tokio_postgres::Error| Failure::ConnectionFailed(with_causes(&e));
    if config.get_ssl_mode() == SslMode::Disable {
        let (client, connection) = config.connect(NoTls).await.map_err(failed)?;
        run(connection);
        Ok(client)
    } else {
        let tls = MakeRustlsConnect::new((*tls).clone());
        let (client, connection) = config.connect(tls).await.map_err(failed)?;
        run(connection);
        Ok(client)
    }
}

/// Runs a connection's I/O until its client (the guest's resource) is dropped.
fn run<C>(connection: C)
where
    C: std::future::Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("wasmpod: postgres connection: {e:#}");
        }
    });
}

/// The rows of `statement`, read whole.
async fn query(
    client: &Client,
    statement: &str,
    params: Result<Vec<Value>, Failure>,
) -> Result<RowSet, Failure> {
    let params = params?;
    let stmt = client.prepare(statement).await.map_err(Failure::query)?;
    let columns = (stmt.columns().iter())
        .map(|c| (c.name().to_string(), c.type_().clone()))
        .collect();
    let rows = (client.query(&stmt, &sql_params(&params)).await).map_err(Failure::query)?;
    row_set(columns, &rows)
}

/// The number of rows `statement` changed.
async fn execute(
    client: &Client,
    statement: &str,
    params: Result<Vec<Value>, Failure>,
) -> Result<u64, Failure> {
    let params = params?;
    (client.execute(statement, &sql_params(&params)).await).map_err(Failure::query)
}

impl SpinState {
    async fn pg_open(&mut self, address: &str) -> Result<Resource<PgConnection>, Failure> {
        let client = connect(&self.host, address, None).await?;
        self.table
            .push(PgConnection(Arc::new(client)))
            .map_err(|e| Failure::ConnectionFailed(e.to_string()))
    }

    async fn pg_query(
        &mut self,
        conn: &Resource<PgConnection>,
        statement: &str,
        params: Result<Vec<Value>, Failure>,
    ) -> wasmtime::Result<Result<RowSet, Failure>> {
        let client = &self.table.get(conn)?.0;
        Ok(query(client, statement, params).await)
    }

    async fn pg_execute(
        &mut self,
        conn: &Resource<PgConnection>,
        statement: &str,
        params: Result<Vec<Value>, Failure>,
    ) -> wasmtime::Result<Result<u64, Failure>> {
        let client = &self.table.get(conn)?.0;
        Ok(execute(client, statement, params).await)
    }
}

/// `params` as tokio-postgres takes them.
fn sql_params(params: &[Value]) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
    params.iter().map(|p| p as _).collect()
}

fn unsigned() -> Failure {
    Failure::BadParameter("Postgres has no unsigned integer types".into())
}

fn ranges() -> Failure {
    Failure::BadParameter("range parameters are not supported by wasmpod yet".into())
}

type Date = (i32, u8, u8);
type Time = (u8, u8, u8, u32);
type DateTimeParts = (i32, u8, u8, u8, u8, u8, u32);

fn date((y, m, d): Date) -> Result<Value, Failure> {
    chrono::NaiveDate::from_ymd_opt(y, m.into(), d.into())
        .map(Value::Date)
        .ok_or_else(|| Failure::BadParameter(format!("{y}-{m}-{d} is not a date")))
}

fn time((h, m, s, ns): Time) -> Result<Value, Failure> {
    chrono::NaiveTime::from_hms_nano_opt(h.into(), m.into(), s.into(), ns)
        .map(Value::Time)
        .ok_or_else(|| Failure::BadParameter(format!("{h}:{m}:{s}.{ns} is not a time")))
}

fn datetime((y, mo, d, h, mi, s, ns): DateTimeParts) -> Result<Value, Failure> {
    let (Value::Date(day), Value::Time(t)) = (date((y, mo, d))?, time((h, mi, s, ns))?) else {
        return Err(Failure::BadParameter("not a date and time".into()));
    };
    Ok(Value::DateTime(day.and_time(t)))
}

fn date_parts(d: chrono::NaiveDate) -> Date {
    use chrono::Datelike;
    (d.year(), d.month() as u8, d.day() as u8)
}

fn time_parts(t: chrono::NaiveTime) -> Time {
    use chrono::Timelike;
    (
        t.hour() as u8,
        t.minute() as u8,
        t.second() as u8,
        t.nanosecond(),
    )
}

fn datetime_parts(dt: chrono::NaiveDateTime) -> DateTimeParts {
    let (y, mo, d) = date_parts(dt.date());
    let (h, mi, s, ns) = time_parts(dt.time());
    (y, mo, d, h, mi, s, ns)
}

/// One version of the interface: its parameters, values and column types to and from the
/// version-free ones (the cases all versions share, then `$param_arm`s, `$value_arm`s and
/// `$type_arm`s for the rest), its rows, and its connection resource. `$t` holds the
/// version's types, `$conn` its `connection`; `$error` puts a [`Failure`] in its words.
macro_rules! version {
    (
        $t:ident, $conn:ident, $error:ident,
        fn $param:ident { $($param_arm:tt)* }
        fn $value:ident { $($value_arm:tt)* }
        fn $data_type:ident { $($type_arm:tt)* }
        fn $rows:ident, fn $params:ident
    ) => {
        fn $param(p: $t::ParameterValue) -> Result<Value, Failure> {
            use $t::ParameterValue as P;
            Ok(match p {
                P::Boolean(v) => Value::Bool(v),
                P::Int8(v) => Value::Int8(v),
                P::Int16(v) => Value::Int16(v),
                P::Int32(v) => Value::Int32(v),
                P::Int64(v) => Value::Int64(v),
                P::Floating32(v) => Value::Float32(v),
                P::Floating64(v) => Value::Float64(v),
                P::Str(v) => Value::Str(v),
                P::Binary(v) => Value::Binary(v),
                P::DbNull => Value::Null,
                $($param_arm)*
            })
        }

        fn $value(v: Value) -> $t::DbValue {
            use $t::DbValue as D;
            match v {
                Value::Null => D::DbNull,
                Value::Bool(v) => D::Boolean(v),
                Value::Int8(v) => D::Int8(v),
                Value::Int16(v) => D::Int16(v),
                Value::Int32(v) => D::Int32(v),
                Value::Int64(v) => D::Int64(v),
                Value::Float32(v) => D::Floating32(v),
                Value::Float64(v) => D::Floating64(v),
                Value::Str(v) => D::Str(v),
                Value::Binary(v) => D::Binary(v),
                $($value_arm)*
            }
        }

        fn $data_type(t: &Type) -> $t::DbDataType {
            use $t::DbDataType as T;
            match *t {
                Type::BOOL => T::Boolean,
                Type::CHAR => T::Int8,
                Type::INT2 => T::Int16,
                Type::INT4 => T::Int32,
                Type::INT8 => T::Int64,
                Type::FLOAT4 => T::Floating32,
                Type::FLOAT8 => T::Floating64,
                Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => T::Str,
                Type::BYTEA => T::Binary,
                $($type_arm)*
            }
        }

        fn $rows(r: RowSet) -> $t::RowSet {
            $t::RowSet {
                columns: (r.columns.iter())
                    .map(|(name, t)| $t::Column {
                        name: name.clone(),
                        data_type: $data_type(t),
                    })
                    .collect(),
                rows: (r.rows.into_iter())
                    .map(|row| row.into_iter().map($value).collect())
                    .collect(),
            }
        }

        fn $params(params: Vec<$t::ParameterValue>) -> Result<Vec<Value>, Failure> {
            params.into_iter().map($param).collect()
        }

        impl $conn::Host for SpinState {}

        impl $conn::HostConnection for SpinState {
            async fn open(
                &mut self,
                address: String,
            ) -> wasmtime::Result<Result<Resource<PgConnection>, $t::Error>> {
                Ok(self.pg_open(&address).await.map_err($error))
            }

            async fn query(
                &mut self,
                conn: Resource<PgConnection>,
                statement: String,
                params: Vec<$t::ParameterValue>,
            ) -> wasmtime::Result<Result<$t::RowSet, $t::Error>> {
                let r = self.pg_query(&conn, &statement, $params(params)).await?;
                Ok(r.map($rows).map_err($error))
            }

            async fn execute(
                &mut self,
                conn: Resource<PgConnection>,
                statement: String,
                params: Vec<$t::ParameterValue>,
            ) -> wasmtime::Result<Result<u64, $t::Error>> {
                let r = self.pg_execute(&conn, &statement, $params(params)).await?;
                Ok(r.map_err($error))
            }

            async fn drop(&mut self, conn: Resource<PgConnection>) -> wasmtime::Result<()> {
                self.table.delete(conn)?;
                Ok(())
            }
        }
    };
}

version!(v2t, v2, error_v2,
    fn param_v2 {
        P::Uint8(_) | P::Uint16(_) | P::Uint32(_) | P::Uint64(_) => return Err(unsigned()),
    }
    fn value_v2 {
        _ => D::Unsupported,
    }
    fn type_v2 {
        _ => T::Other,
    }
    fn rows_v2, fn params_v2
);

version!(v3, v3, error_v3,
    fn param_v3 {
        P::Date(d) => date(d)?,
        P::Time(t) => time(t)?,
        P::Datetime(dt) => datetime(dt)?,
        P::Timestamp(secs) => Value::Timestamp(secs),
    }
    fn value_v3 {
        Value::Date(d) => D::Date(date_parts(d)),
        Value::Time(t) => D::Time(time_parts(t)),
        Value::DateTime(dt) => D::Datetime(datetime_parts(dt)),
        Value::Timestamp(secs) => D::Timestamp(secs),
        _ => D::Unsupported,
    }
    fn type_v3 {
        Type::DATE => T::Date,
        Type::TIME => T::Time,
        Type::TIMESTAMP | Type::TIMESTAMPTZ => T::Datetime,
        _ => T::Other,
    }
    fn rows_v3, fn params_v3
);

fn error_v2(f: Failure) -> v2t::Error {
    match f {
        Failure::ConnectionFailed(m) => v2t::Error::ConnectionFailed(m),
        Failure::BadParameter(m) => v2t::Error::BadParameter(m),
        Failure::QueryFailed(m, _) => v2t::Error::QueryFailed(m),
        Failure::ValueConversionFailed(m) => v2t::Error::ValueConversionFailed(m),
    }
}

fn error_v3(f: Failure) -> v3::Error {
    match f {
        Failure::ConnectionFailed(m) => v3::Error::ConnectionFailed(m),
        Failure::BadParameter(m) => v3::Error::BadParameter(m),
        Failure::QueryFailed(m, _) => v3::Error::QueryFailed(m),
        Failure::ValueConversionFailed(m) => v3::Error::ValueConversionFailed(m),
    }
}

/// The 4.x versions (4.0, and 4.2's types, which are 4.0's): their conversions and
/// errors, written once.
macro_rules! version_4 {
    (
        $t:ident, $error:ident,
        fn $param:ident, fn $value:ident, fn $data_type:ident, fn $rows:ident, fn $params:ident
    ) => {
        version!($t, $t, $error,
            fn $param {
                P::Date(d) => date(d)?,
                P::Time(t) => time(t)?,
                P::Datetime(dt) => datetime(dt)?,
                P::Timestamp(secs) => Value::Timestamp(secs),
                P::Uuid(s) => Value::Uuid(s),
                P::Jsonb(b) => Value::Jsonb(b),
                P::Decimal(s) => Value::Decimal(s),
                P::RangeInt32(_) | P::RangeInt64(_) | P::RangeDecimal(_) => return Err(ranges()),
                P::ArrayInt32(v) => Value::ArrayInt32(v),
                P::ArrayInt64(v) => Value::ArrayInt64(v),
                P::ArrayDecimal(v) => Value::ArrayDecimal(v),
                P::ArrayStr(v) => Value::ArrayStr(v),
                P::Interval(i) => Value::Interval(Interval {
                    micros: i.micros,
                    days: i.days,
                    months: i.months,
                }),
            }
            fn $value {
                Value::Date(d) => D::Date(date_parts(d)),
                Value::Time(t) => D::Time(time_parts(t)),
                Value::DateTime(dt) => D::Datetime(datetime_parts(dt)),
                Value::Timestamp(secs) => D::Timestamp(secs),
                Value::Uuid(s) => D::Uuid(s),
                Value::Jsonb(b) => D::Jsonb(b),
                Value::Decimal(s) => D::Decimal(s),
                Value::ArrayInt32(v) => D::ArrayInt32(v),
                Value::ArrayInt64(v) => D::ArrayInt64(v),
                Value::ArrayDecimal(v) => D::ArrayDecimal(v),
                Value::ArrayStr(v) => D::ArrayStr(v),
                Value::Interval(i) => D::Interval($t::Interval {
                    micros: i.micros,
                    days: i.days,
                    months: i.months,
                }),
                Value::Unsupported(raw) => D::Unsupported(raw),
            }
            fn $data_type {
                Type::DATE => T::Date,
                Type::TIME => T::Time,
                Type::TIMESTAMP | Type::TIMESTAMPTZ => T::Datetime,
                Type::UUID => T::Uuid,
                Type::JSON | Type::JSONB => T::Jsonb,
                Type::NUMERIC => T::Decimal,
                Type::INT4_RANGE => T::RangeInt32,
                Type::INT8_RANGE => T::RangeInt64,
                Type::NUM_RANGE => T::RangeDecimal,
                Type::INT4_ARRAY => T::ArrayInt32,
                Type::INT8_ARRAY => T::ArrayInt64,
                Type::NUMERIC_ARRAY => T::ArrayDecimal,
                Type::TEXT_ARRAY | Type::VARCHAR_ARRAY => T::ArrayStr,
                Type::INTERVAL => T::Interval,
                ref other => T::Other(other.name().to_string()),
            }
            fn $rows, fn $params
        );

        fn $error(f: Failure) -> $t::Error {
            match f {
                Failure::ConnectionFailed(m) => $t::Error::ConnectionFailed(m),
                Failure::BadParameter(m) => $t::Error::BadParameter(m),
                Failure::QueryFailed(_, Some(d)) => {
                    let d = *d;
                    $t::Error::QueryFailed($t::QueryError::DbError($t::DbError {
                        as_text: d.as_text,
                        severity: d.severity,
                        code: d.code,
                        message: d.message,
                        detail: d.detail,
                        extras: Vec::new(),
                    }))
                }
                Failure::QueryFailed(m, None) => $t::Error::QueryFailed($t::QueryError::Text(m)),
                Failure::ValueConversionFailed(m) => $t::Error::ValueConversionFailed(m),
            }
        }
    };
}

version_4!(v4, error_v4, fn param_v4, fn value_v4, fn type_v4, fn rows_v4, fn params_v4);
version_4!(v4_2, error_v4_2, fn param_v4_2, fn value_v4_2, fn type_v4_2, fn rows_v4_2, fn params_v4_2);

/// 4.2's connection builder, synchronous as the guest sees it.
impl v4_2::HostConnectionBuilder for SpinState {
    async fn new(&mut self, address: String) -> wasmtime::Result<Resource<PgConnectionBuilder>> {
        Ok(self.table.push(PgConnectionBuilder {
            address,
            ca_root: None,
        })?)
    }

    async fn set_ca_root(
        &mut self,
        builder: Resource<PgConnectionBuilder>,
        certificate: String,
    ) -> wasmtime::Result<Result<(), v4_2::Error>> {
        let config = match tls::with_ca_root(&certificate) {
            Ok(config) => config,
            Err(e) => return Ok(Err(v4_2::Error::BadParameter(e))),
        };
        self.table.get_mut(&builder)?.ca_root = Some(config);
        Ok(Ok(()))
    }

    async fn build(
        &mut self,
        builder: Resource<PgConnectionBuilder>,
    ) -> wasmtime::Result<Result<Resource<PgConnection>, v4_2::Error>> {
        let builder = self.table.get(&builder)?;
        let (address, ca_root) = (builder.address.clone(), builder.ca_root.clone());
        let opened = connect(&self.host, &address, ca_root).await;
        Ok(match opened {
            Ok(client) => Ok(self.table.push(PgConnection(Arc::new(client)))?),
            Err(failure) => Err(error_v4_2(failure)),
        })
    }

    async fn drop(&mut self, builder: Resource<PgConnectionBuilder>) -> wasmtime::Result<()> {
        self.table.delete(builder)?;
        Ok(())
    }
}

/// The client behind `conn`, shared, so that a statement runs without the store.
fn client_of<T>(
    accessor: &Accessor<T, HasSelf<SpinState>>,
    conn: &Resource<PgConnection>,
) -> wasmtime::Result<Arc<Client>> {
    accessor.with(|mut access| Ok(access.get().table.get(conn)?.0.clone()))
}

/// `client` as the guest's connection, in 4.2's words.
fn pushed<T>(
    accessor: &Accessor<T, HasSelf<SpinState>>,
    client: Result<Client, Failure>,
) -> wasmtime::Result<Result<Resource<PgConnection>, v4_2::Error>> {
    match client {
        Ok(client) => accessor.with(|mut access| {
            Ok(Ok(access
                .get()
                .table
                .push(PgConnection(Arc::new(client)))?))
        }),
        Err(failure) => Ok(Err(error_v4_2(failure))),
    }
}

/// 4.2's async builder (Spin 4): the connection is made without holding the store.
impl<T> v4_2::HostConnectionBuilderWithStore<T> for HasSelf<SpinState> {
    async fn build_async(
        accessor: &Accessor<T, Self>,
        builder: Resource<PgConnectionBuilder>,
    ) -> wasmtime::Result<Result<Resource<PgConnection>, v4_2::Error>> {
        let (host, address, ca_root) = accessor.with(|mut access| {
            let state = access.get();
            let builder = state.table.get(&builder)?;
            Ok::<_, wasmtime::Error>((
                state.host.clone(),
                builder.address.clone(),
                builder.ca_root.clone(),
            ))
        })?;
        let client = connect(&host, &address, ca_root).await;
        pushed(accessor, client)
    }
}

/// 4.2's async functions (Spin 4): each statement runs on the shared client without
/// holding the store, so the instance's other tasks go on while the server answers; a
/// query's rows are read whole, then streamed to the guest.
impl<T> v4_2::HostConnectionWithStore<T> for HasSelf<SpinState> {
    async fn open_async(
        accessor: &Accessor<T, Self>,
        address: String,
    ) -> wasmtime::Result<Result<Resource<PgConnection>, v4_2::Error>> {
        let host = accessor.with(|mut access| access.get().host.clone());
        let client = connect(&host, &address, None).await;
        pushed(accessor, client)
    }

    async fn query_async(
        accessor: &Accessor<T, Self>,
        conn: Resource<PgConnection>,
        statement: String,
        params: Vec<v4_2::ParameterValue>,
    ) -> wasmtime::Result<
        Result<
            (
                Vec<v4_2::Column>,
                StreamReader<v4_2::Row>,
                FutureReader<Result<(), v4_2::Error>>,
            ),
            v4_2::Error,
        >,
    > {
        let client = client_of(accessor, &conn)?;
        let rows = match query(&client, &statement, params_v4_2(params)).await {
            Ok(rows) => rows_v4_2(rows),
            Err(failure) => return Ok(Err(error_v4_2(failure))),
        };
        let (stream, done) = accessor.with(|mut access| streamed_rows(&mut access, rows.rows))?;
        Ok(Ok((rows.columns, stream, done)))
    }

    async fn execute_async(
        accessor: &Accessor<T, Self>,
        conn: Resource<PgConnection>,
        statement: String,
        params: Vec<v4_2::ParameterValue>,
    ) -> wasmtime::Result<Result<u64, v4_2::Error>> {
        let client = client_of(accessor, &conn)?;
        let done = execute(&client, &statement, params_v4_2(params)).await;
        Ok(done.map_err(error_v4_2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_version_gets_the_values_it_has_a_case_for() {
        let day = chrono::NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        assert!(matches!(
            value_v2(Value::Date(day)),
            v2t::DbValue::Unsupported
        ));
        assert!(matches!(
            value_v3(Value::Date(day)),
            v3::DbValue::Date((2026, 12, 1))
        ));
        assert!(matches!(
            value_v3(Value::Uuid("u".into())),
            v3::DbValue::Unsupported
        ));
        assert!(matches!(value_v4(Value::Uuid("u".into())), v4::DbValue::Uuid(ref u) if u == "u"));
        assert!(matches!(
            value_v4(Value::Decimal("1.5".into())),
            v4::DbValue::Decimal(ref d) if d == "1.5"
        ));
        assert!(matches!(type_v4(&Type::INET), v4::DbDataType::Other(ref n) if n == "inet"));
        assert!(matches!(type_v2(&Type::DATE), v2t::DbDataType::Other));
    }

    #[test]
    fn bad_parameters_are_named() {
        assert!(matches!(
            param_v2(v2t::ParameterValue::Uint8(1)),
            Err(Failure::BadParameter(_))
        ));
        let bad_day = param_v3(v3::ParameterValue::Date((2026, 2, 30)));
        assert!(matches!(bad_day, Err(Failure::BadParameter(ref m)) if m.contains("2026-2-30")));
        let dt = param_v3(v3::ParameterValue::Datetime((2026, 12, 1, 18, 30, 5, 7))).unwrap();
        assert_eq!(
            dt,
            Value::DateTime(
                chrono::NaiveDate::from_ymd_opt(2026, 12, 1)
                    .unwrap()
                    .and_hms_nano_opt(18, 30, 5, 7)
                    .unwrap()
            )
        );
    }
}
