//! Spin's outbound Postgres, `fermyon:spin/postgres@2.0.0`, `spin:postgres/postgres@3.0.0`
//! and `@4.0.0`, served with tokio-postgres: a connection may be opened only to a server the
//! component's `allowed_outbound_hosts` lists (`postgres://host:port`), otherwise
//! `connection-failed` says the address is not permitted, as Spin says it. Parameters and
//! rows go through one version-free [`Value`] ([`super::pg_types`]); a value a version has
//! no case for comes back `unsupported`. Connections are plain TCP (no TLS yet).

use std::str::FromStr;

use tokio_postgres::config::Host as PgHost;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Config, NoTls, Row};
use wasmtime::component::Resource;

use super::pg_types::{self, Interval, Value};
use super::state::SpinState;

use super::rdbms::{postgres2 as v2, postgres3 as v3, postgres4 as v4, v2t};

/// An open connection, as a guest resource.
pub struct PgConnection(Client);

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
            None => format!("{e:#}"),
        };
        Failure::QueryFailed(text, db)
    }
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

impl SpinState {
    async fn pg_open(&mut self, address: &str) -> Result<Resource<PgConnection>, Failure> {
        let denied = || Failure::ConnectionFailed(format!("address {address} is not permitted"));
        let config = Config::from_str(address)
            .map_err(|e| Failure::ConnectionFailed(format!("invalid address: {e}")))?;
        let ports = config.get_ports();
        for (i, host) in config.get_hosts().iter().enumerate() {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            let PgHost::Tcp(name) = host else {
                return Err(denied());
            };
            if !self.host.outbound.allows("postgres", name, port) {
                eprintln!(
                    "wasmpod: component {} may not reach postgres://{name}:{port}: it is not in \
                     the component's allowed_outbound_hosts",
                    self.host.id
                );
                return Err(denied());
            }
        }
        if config.get_hosts().is_empty() {
            return Err(denied());
        }
        let (client, connection) = config
            .connect(NoTls)
            .await
            .map_err(|e| Failure::ConnectionFailed(format!("{e:#}")))?;
        // The connection's I/O runs until the client (the guest's resource) is dropped.
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                eprintln!("wasmpod: postgres connection: {e:#}");
            }
        });
        self.table
            .push(PgConnection(client))
            .map_err(|e| Failure::ConnectionFailed(e.to_string()))
    }

    async fn pg_query(
        &mut self,
        conn: &Resource<PgConnection>,
        statement: &str,
        params: Result<Vec<Value>, Failure>,
    ) -> wasmtime::Result<Result<RowSet, Failure>> {
        let client = &self.table.get(conn)?.0;
        Ok(async {
            let params = params?;
            let stmt = client.prepare(statement).await.map_err(Failure::query)?;
            let columns = (stmt.columns().iter())
                .map(|c| (c.name().to_string(), c.type_().clone()))
                .collect();
            let rows = (client.query(&stmt, &sql_params(&params)).await).map_err(Failure::query)?;
            row_set(columns, &rows)
        }
        .await)
    }

    async fn pg_execute(
        &mut self,
        conn: &Resource<PgConnection>,
        statement: &str,
        params: Result<Vec<Value>, Failure>,
    ) -> wasmtime::Result<Result<u64, Failure>> {
        let client = &self.table.get(conn)?.0;
        Ok(async {
            let params = params?;
            (client.execute(statement, &sql_params(&params)).await).map_err(Failure::query)
        }
        .await)
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

version!(v4, v4, error_v4,
    fn param_v4 {
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
    fn value_v4 {
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
        Value::Interval(i) => D::Interval(v4::Interval {
            micros: i.micros,
            days: i.days,
            months: i.months,
        }),
        Value::Unsupported(raw) => D::Unsupported(raw),
    }
    fn type_v4 {
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
    fn rows_v4, fn params_v4
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

fn error_v4(f: Failure) -> v4::Error {
    match f {
        Failure::ConnectionFailed(m) => v4::Error::ConnectionFailed(m),
        Failure::BadParameter(m) => v4::Error::BadParameter(m),
        Failure::QueryFailed(_, Some(d)) => {
            let d = *d;
            v4::Error::QueryFailed(v4::QueryError::DbError(v4::DbError {
                as_text: d.as_text,
                severity: d.severity,
                code: d.code,
                message: d.message,
                detail: d.detail,
                extras: Vec::new(),
            }))
        }
        Failure::QueryFailed(m, None) => v4::Error::QueryFailed(v4::QueryError::Text(m)),
        Failure::ValueConversionFailed(m) => v4::Error::ValueConversionFailed(m),
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
