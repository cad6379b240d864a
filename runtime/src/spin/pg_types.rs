//! Postgres values as the Spin Postgres interfaces carry them, independent of the interface
//! version: [`Value`] is sent as a query parameter ([`ToSql`], checked against the type the
//! server infers) and read from a row by its column's type ([`read`]). NUMERIC (as a base-10
//! string) and INTERVAL are encoded and decoded here, in Postgres's binary formats.

use std::error::Error as StdError;

use bytes::{BufMut, BytesMut};
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use tokio_postgres::types::{to_sql_checked, FromSql, IsNull, ToSql, Type};
use tokio_postgres::Row;

type BoxError = Box<dyn StdError + Sync + Send>;

/// A Postgres INTERVAL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    /// Microseconds.
    pub micros: i64,
    /// Days.
    pub days: i32,
    /// Months.
    pub months: i32,
}

/// One value, as a parameter or in a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// NULL (a parameter of any type).
    Null,
    /// BOOL.
    Bool(bool),
    /// "char".
    Int8(i8),
    /// INT2.
    Int16(i16),
    /// INT4.
    Int32(i32),
    /// INT8.
    Int64(i64),
    /// FLOAT4.
    Float32(f32),
    /// FLOAT8.
    Float64(f64),
    /// TEXT, VARCHAR, CHAR(n), NAME.
    Str(String),
    /// BYTEA.
    Binary(Vec<u8>),
    /// DATE.
    Date(NaiveDate),
    /// TIME.
    Time(NaiveTime),
    /// TIMESTAMP, and TIMESTAMPTZ read in UTC.
    DateTime(NaiveDateTime),
    /// Seconds since the Unix epoch, sent as a TIMESTAMPTZ.
    Timestamp(i64),
    /// UUID, in its hyphenated form.
    Uuid(String),
    /// JSON or JSONB, as its text.
    Jsonb(Vec<u8>),
    /// NUMERIC, in base 10.
    Decimal(String),
    /// INT4[].
    ArrayInt32(Vec<Option<i32>>),
    /// INT8[].
    ArrayInt64(Vec<Option<i64>>),
    /// NUMERIC[].
    ArrayDecimal(Vec<Option<String>>),
    /// TEXT[] or VARCHAR[].
    ArrayStr(Vec<Option<String>>),
    /// INTERVAL.
    Interval(Interval),
    /// A column of a type with no value here: its bytes as the server sent them.
    Unsupported(Vec<u8>),
}

impl ToSql for Value {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Bool(v) => v.to_sql_checked(ty, out),
            Value::Int8(v) => v.to_sql_checked(ty, out),
            Value::Int16(v) => v.to_sql_checked(ty, out),
            Value::Int32(v) => v.to_sql_checked(ty, out),
            Value::Int64(v) => v.to_sql_checked(ty, out),
            Value::Float32(v) => v.to_sql_checked(ty, out),
            Value::Float64(v) => v.to_sql_checked(ty, out),
            Value::Str(v) => v.to_sql_checked(ty, out),
            Value::Binary(v) => v.to_sql_checked(ty, out),
            Value::Date(v) => v.to_sql_checked(ty, out),
            Value::Time(v) => v.to_sql_checked(ty, out),
            Value::DateTime(v) => v.to_sql_checked(ty, out),
            Value::Timestamp(secs) => DateTime::<Utc>::from_timestamp(*secs, 0)
                .ok_or_else(|| format!("timestamp {secs} is out of range"))?
                .to_sql_checked(ty, out),
            Value::Uuid(s) => uuid::Uuid::parse_str(s)
                .map_err(|e| format!("uuid {s:?}: {e}"))?
                .to_sql_checked(ty, out),
            Value::Jsonb(bytes) => serde_json::from_slice::<serde_json::Value>(bytes)
                .map_err(|e| format!("jsonb: {e}"))?
                .to_sql_checked(ty, out),
            Value::Decimal(s) => Numeric(s.clone()).to_sql_checked(ty, out),
            Value::ArrayInt32(v) => v.to_sql_checked(ty, out),
            Value::ArrayInt64(v) => v.to_sql_checked(ty, out),
            Value::ArrayDecimal(v) => v
                .iter()
                .map(|d| d.clone().map(Numeric))
                .collect::<Vec<_>>()
                .to_sql_checked(ty, out),
            Value::ArrayStr(v) => v.to_sql_checked(ty, out),
            Value::Interval(i) => i.to_sql_checked(ty, out),
            Value::Unsupported(_) => Err("an unsupported value cannot be a parameter".into()),
        }
    }

    fn accepts(_: &Type) -> bool {
        // Each variant checks the server's type itself (above); NULL fits any.
        true
    }

    to_sql_checked!();
}

/// The value of column `i` of `row`, by the column's type.
pub fn read(row: &Row, i: usize) -> Result<Value, tokio_postgres::Error> {
    fn get<'a, T: FromSql<'a>>(
        row: &'a Row,
        i: usize,
        f: impl FnOnce(T) -> Value,
    ) -> Result<Value, tokio_postgres::Error> {
        Ok(row.try_get::<_, Option<T>>(i)?.map_or(Value::Null, f))
    }
    let ty = row.columns()[i].type_().clone();
    match ty {
        Type::BOOL => get(row, i, Value::Bool),
        Type::CHAR => get(row, i, Value::Int8),
        Type::INT2 => get(row, i, Value::Int16),
        Type::INT4 => get(row, i, Value::Int32),
        Type::INT8 => get(row, i, Value::Int64),
        Type::FLOAT4 => get(row, i, Value::Float32),
        Type::FLOAT8 => get(row, i, Value::Float64),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
            get(row, i, Value::Str)
        }
        Type::BYTEA => get(row, i, Value::Binary),
        Type::DATE => get(row, i, Value::Date),
        Type::TIME => get(row, i, Value::Time),
        Type::TIMESTAMP => get(row, i, Value::DateTime),
        Type::TIMESTAMPTZ => get(row, i, |t: DateTime<Utc>| Value::DateTime(t.naive_utc())),
        Type::UUID => get(row, i, |u: uuid::Uuid| {
            Value::Uuid(u.hyphenated().to_string())
        }),
        Type::JSON | Type::JSONB => get(row, i, |j: serde_json::Value| {
            Value::Jsonb(serde_json::to_vec(&j).unwrap_or_default())
        }),
        Type::NUMERIC => get(row, i, |n: Numeric| Value::Decimal(n.0)),
        Type::INT4_ARRAY => get(row, i, Value::ArrayInt32),
        Type::INT8_ARRAY => get(row, i, Value::ArrayInt64),
        Type::NUMERIC_ARRAY => get(row, i, |v: Vec<Option<Numeric>>| {
            Value::ArrayDecimal(v.into_iter().map(|n| n.map(|n| n.0)).collect())
        }),
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY => get(row, i, Value::ArrayStr),
        Type::INTERVAL => get(row, i, Value::Interval),
        _ => get(row, i, |r: Raw| Value::Unsupported(r.0)),
    }
}

/// A value of any type, as the bytes the server sent.
struct Raw(Vec<u8>);

impl<'a> FromSql<'a> for Raw {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Raw, BoxError> {
        Ok(Raw(raw.to_vec()))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

impl<'a> FromSql<'a> for Interval {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Interval, BoxError> {
        let bytes: [u8; 16] = raw.try_into().map_err(|_| "an INTERVAL is 16 bytes")?;
        let (micros, rest) = bytes.split_at(8);
        let (days, months) = rest.split_at(4);
        Ok(Interval {
            micros: i64::from_be_bytes(micros.try_into()?),
            days: i32::from_be_bytes(days.try_into()?),
            months: i32::from_be_bytes(months.try_into()?),
        })
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::INTERVAL
    }
}

impl ToSql for Interval {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        out.put_i64(self.micros);
        out.put_i32(self.days);
        out.put_i32(self.months);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::INTERVAL
    }

    to_sql_checked!();
}

/// A NUMERIC as a base-10 string (`-12.340`, `NaN`).
#[derive(Debug, Clone, PartialEq)]
struct Numeric(String);

const NUMERIC_NEG: u16 = 0x4000;
const NUMERIC_NAN: u16 = 0xC000;

impl<'a> FromSql<'a> for Numeric {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Numeric, BoxError> {
        let word = |i: usize| -> Result<u16, BoxError> {
            let b = raw.get(i * 2..i * 2 + 2).ok_or("a NUMERIC is cut short")?;
            Ok(u16::from_be_bytes([b[0], b[1]]))
        };
        let (ndigits, weight, sign, dscale) = (word(0)?, word(1)? as i16, word(2)?, word(3)?);
        if sign == NUMERIC_NAN {
            return Ok(Numeric("NaN".into()));
        }
        let digits = (0..usize::from(ndigits))
            .map(|i| word(4 + i))
            .collect::<Result<Vec<_>, _>>()?;
        // Group k (of 4 decimal digits) counts 10000^(weight - k).
        let group = |k: i32| -> u16 {
            usize::try_from(i32::from(weight) - k)
                .ok()
                .and_then(|idx| digits.get(idx).copied())
                .unwrap_or(0)
        };
        let mut text = String::new();
        if sign == NUMERIC_NEG {
            text.push('-');
        }
        if weight < 0 {
            text.push('0');
        } else {
            for k in (0..=i32::from(weight)).rev() {
                let g = group(k);
                if text.trim_start_matches('-').is_empty() {
                    text.push_str(&g.to_string());
                } else {
                    text.push_str(&format!("{g:04}"));
                }
            }
        }
        if dscale > 0 {
            let mut frac = String::new();
            let mut k = -1;
            while frac.len() < usize::from(dscale) {
                frac.push_str(&format!("{:04}", group(k)));
                k -= 1;
            }
            frac.truncate(usize::from(dscale));
            text.push('.');
            text.push_str(&frac);
        }
        Ok(Numeric(text))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }
}

impl ToSql for Numeric {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        let s = self.0.trim();
        if s.eq_ignore_ascii_case("nan") {
            for w in [0, 0, NUMERIC_NAN, 0] {
                out.put_u16(w);
            }
            return Ok(IsNull::No);
        }
        let (negative, unsigned) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s.strip_prefix('+').unwrap_or(s)),
        };
        let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
        let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
        if (int.is_empty() && frac.is_empty()) || !all_digits(int) || !all_digits(frac) {
            return Err(format!("{:?} is not a decimal number", self.0).into());
        }
        let int = int.trim_start_matches('0');
        // Whole groups of 4 digits: the integer part padded on the left, the fraction on
        // the right.
        let int_pad = (4 - int.len() % 4) % 4;
        let frac_pad = (4 - frac.len() % 4) % 4;
        let padded = format!("{}{int}{frac}{}", "0".repeat(int_pad), "0".repeat(frac_pad));
        let mut groups: Vec<u16> = padded
            .as_bytes()
            .chunks(4)
            .map(|c| c.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0')))
            .collect();
        let mut weight = i32::try_from((int.len() + int_pad) / 4)? - 1;
        while groups.first() == Some(&0) {
            groups.remove(0);
            weight -= 1;
        }
        while groups.last() == Some(&0) {
            groups.pop();
        }
        if groups.is_empty() {
            weight = 0;
        }
        out.put_u16(u16::try_from(groups.len())?);
        out.put_i16(i16::try_from(weight)?);
        out.put_u16(if negative && !groups.is_empty() {
            NUMERIC_NEG
        } else {
            0
        });
        out.put_u16(u16::try_from(frac.len())?);
        for g in groups {
            out.put_u16(g);
        }
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }

    to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(s: &str) -> String {
        let mut buf = BytesMut::new();
        Numeric(s.into()).to_sql(&Type::NUMERIC, &mut buf).unwrap();
        Numeric::from_sql(&Type::NUMERIC, &buf).unwrap().0
    }

    #[test]
    fn numerics_round_trip_in_postgres_binary_format() {
        for (given, read) in [
            ("0", "0"),
            ("1", "1"),
            ("12345", "12345"),
            ("-12.340", "-12.340"),
            ("0.0001", "0.0001"),
            ("10000.5", "10000.5"),
            ("+007", "7"),
            ("123456789.123456789", "123456789.123456789"),
            ("NaN", "NaN"),
        ] {
            assert_eq!(round_trip(given), read, "{given}");
        }
        let mut buf = BytesMut::new();
        assert!(Numeric("1e5".into())
            .to_sql(&Type::NUMERIC, &mut buf)
            .is_err());
        assert!(Numeric("".into()).to_sql(&Type::NUMERIC, &mut buf).is_err());
    }

    #[test]
    fn a_numeric_the_server_sent() {
        // 1234.5 with scale 2: two groups, weight 0... 1234 | 5000, dscale 2.
        let raw = [0, 2, 0, 0, 0, 0, 0, 2, 0x04, 0xD2, 0x13, 0x88];
        assert_eq!(
            Numeric::from_sql(&Type::NUMERIC, &raw).unwrap().0,
            "1234.50"
        );
    }

    #[test]
    fn intervals_and_checked_parameters() {
        let i = Interval {
            micros: -5,
            days: 3,
            months: 14,
        };
        let mut buf = BytesMut::new();
        i.to_sql(&Type::INTERVAL, &mut buf).unwrap();
        assert_eq!(Interval::from_sql(&Type::INTERVAL, &buf).unwrap(), i);
        // A parameter of the wrong type for the column is refused, not sent.
        let mut buf = BytesMut::new();
        assert!(Value::Int64(1).to_sql(&Type::INT4, &mut buf).is_err());
        assert!(Value::Null.to_sql(&Type::INT4, &mut buf).is_ok());
        assert!(Value::Uuid("nope".into())
            .to_sql(&Type::UUID, &mut buf)
            .is_err());
    }
}
