//! `fermyon:spin/redis@2.0.0`, Spin's outbound Redis interface, served with a real Redis
//! client (the `redis` crate, over tokio): a connection may be opened only to an address
//! the component's `allowed_outbound_hosts` lists (`redis://host:port`), as Spin gates it
//! (`invalid-address` otherwise, with a line in the log). Redis errors come back as
//! `other(message)`, a reply of the wrong type as `type-error`.

use redis::aio::MultiplexedConnection;
use redis::{FromRedisValue, Value};
use wasmtime::component::{HasSelf, Linker, Resource};

use super::outbound::default_port;
use super::state::SpinState;

#[allow(missing_docs)]
mod bindings {
    wasmtime::component::bindgen!({
        path: "wit/spin-redis",
        world: "wasmpod:spin-redis/spin-redis",
        imports: { default: async | trappable },
        with: {
            "fermyon:spin/redis.connection": super::RedisConnection,
        },
    });
}

use bindings::fermyon::spin::redis::{self as spin_redis, Error, RedisParameter, RedisResult};

/// An open connection, as a guest resource.
pub struct RedisConnection(MultiplexedConnection);

/// Adds the interface to `linker`.
pub fn add_to_linker(linker: &mut Linker<SpinState>) -> wasmtime::Result<()> {
    bindings::SpinRedis::add_to_linker::<SpinState, HasSelf<SpinState>>(linker, |s| s)
}

/// The scheme, host and port of a Redis address (`redis://[user:password@]host[:port][/db]`).
fn endpoint(address: &str) -> Option<(String, String, u16)> {
    let url = url::Url::parse(address).ok()?;
    let scheme = url.scheme().to_string();
    let host = url.host_str()?.trim_matches(['[', ']']).to_string();
    let port = url.port().or_else(|| default_port("redis"))?;
    Some((scheme, host, port))
}

/// A Redis failure as the guest sees it.
fn other(e: redis::RedisError) -> Error {
    if e.kind() == redis::ErrorKind::UnexpectedReturnType {
        Error::TypeError
    } else {
        Error::Other(e.to_string())
    }
}

/// Runs `cmd` on the connection `conn`, reading the reply as `R`.
async fn query<R: FromRedisValue>(
    state: &mut SpinState,
    conn: &Resource<RedisConnection>,
    cmd: &redis::Cmd,
) -> wasmtime::Result<Result<R, Error>> {
    let mut c = state.table.get(conn)?.0.clone();
    Ok(cmd.query_async::<R>(&mut c).await.map_err(other))
}

impl spin_redis::Host for SpinState {}

impl spin_redis::HostConnection for SpinState {
    async fn open(
        &mut self,
        address: String,
    ) -> wasmtime::Result<Result<Resource<RedisConnection>, Error>> {
        let Some((scheme, host, port)) = endpoint(&address) else {
            return Ok(Err(Error::InvalidAddress));
        };
        if !self.host.outbound.allows(&scheme, &host, port) {
            eprintln!(
                "wasmpod: component {} may not reach {scheme}://{host}:{port}: it is not in the \
                 component's allowed_outbound_hosts",
                self.host.id
            );
            return Ok(Err(Error::InvalidAddress));
        }
        let client = match redis::Client::open(address.as_str()) {
            Ok(c) => c,
            Err(_) => return Ok(Err(Error::InvalidAddress)),
        };
        match client.get_multiplexed_async_connection().await {
            Ok(conn) => Ok(Ok(self.table.push(RedisConnection(conn))?)),
            Err(e) => Ok(Err(other(e))),
        }
    }

    async fn publish(
        &mut self,
        conn: Resource<RedisConnection>,
        channel: String,
        payload: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let r = query::<i64>(self, &conn, redis::cmd("PUBLISH").arg(channel).arg(payload)).await?;
        Ok(r.map(|_| ()))
    }

    async fn get(
        &mut self,
        conn: Resource<RedisConnection>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        query(self, &conn, redis::cmd("GET").arg(key)).await
    }

    async fn set(
        &mut self,
        conn: Resource<RedisConnection>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        query(self, &conn, redis::cmd("SET").arg(key).arg(value)).await
    }

    async fn incr(
        &mut self,
        conn: Resource<RedisConnection>,
        key: String,
    ) -> wasmtime::Result<Result<i64, Error>> {
        query(self, &conn, redis::cmd("INCR").arg(key)).await
    }

    async fn del(
        &mut self,
        conn: Resource<RedisConnection>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<u32, Error>> {
        query(self, &conn, redis::cmd("DEL").arg(keys)).await
    }

    async fn sadd(
        &mut self,
        conn: Resource<RedisConnection>,
        key: String,
        values: Vec<String>,
    ) -> wasmtime::Result<Result<u32, Error>> {
        query(self, &conn, redis::cmd("SADD").arg(key).arg(values)).await
    }

    async fn smembers(
        &mut self,
        conn: Resource<RedisConnection>,
        key: String,
    ) -> wasmtime::Result<Result<Vec<String>, Error>> {
        query(self, &conn, redis::cmd("SMEMBERS").arg(key)).await
    }

    async fn srem(
        &mut self,
        conn: Resource<RedisConnection>,
        key: String,
        values: Vec<String>,
    ) -> wasmtime::Result<Result<u32, Error>> {
        query(self, &conn, redis::cmd("SREM").arg(key).arg(values)).await
    }

    async fn execute(
        &mut self,
        conn: Resource<RedisConnection>,
        command: String,
        arguments: Vec<RedisParameter>,
    ) -> wasmtime::Result<Result<Vec<RedisResult>, Error>> {
        let mut cmd = redis::cmd(&command);
        for a in arguments {
            match a {
                RedisParameter::Int64(n) => cmd.arg(n),
                RedisParameter::Binary(b) => cmd.arg(b),
            };
        }
        let value = query::<Value>(self, &conn, &cmd).await?;
        Ok(value.map(results))
    }

    async fn drop(&mut self, conn: Resource<RedisConnection>) -> wasmtime::Result<()> {
        self.table.delete(conn)?;
        Ok(())
    }
}

/// A reply as Spin gives it to `execute`: a list of results (an array's elements in order,
/// anything else as one).
fn results(value: Value) -> Vec<RedisResult> {
    match value {
        Value::Array(items) | Value::Set(items) => items.into_iter().flat_map(results).collect(),
        Value::Nil => vec![RedisResult::Nil],
        Value::Int(n) => vec![RedisResult::Int64(n)],
        Value::BulkString(b) => vec![RedisResult::Binary(b)],
        Value::SimpleString(s) => vec![RedisResult::Status(s)],
        Value::Okay => vec![RedisResult::Status("OK".into())],
        Value::Boolean(b) => vec![RedisResult::Int64(i64::from(b))],
        Value::Double(d) => vec![RedisResult::Binary(d.to_string().into_bytes())],
        Value::VerbatimString { text, .. } => vec![RedisResult::Binary(text.into_bytes())],
        other => vec![RedisResult::Binary(format!("{other:?}").into_bytes())],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_addresses() {
        assert_eq!(
            endpoint("redis://127.0.0.1:6380/0"),
            Some(("redis".into(), "127.0.0.1".into(), 6380))
        );
        assert_eq!(
            endpoint("redis://user:pw@cache.local"),
            Some(("redis".into(), "cache.local".into(), 6379))
        );
        assert_eq!(endpoint("not an address"), None);
    }

    #[test]
    fn execute_flattens_arrays() {
        let v = Value::Array(vec![
            Value::Int(1),
            Value::Nil,
            Value::BulkString(b"x".to_vec()),
            Value::Okay,
        ]);
        let got = format!("{:?}", results(v));
        let want = format!(
            "{:?}",
            vec![
                RedisResult::Int64(1),
                RedisResult::Nil,
                RedisResult::Binary(b"x".to_vec()),
                RedisResult::Status("OK".into())
            ]
        );
        assert_eq!(got, want);
    }
}
