//! `fermyon:spin/redis@2.0.0` and `spin:redis/redis@3.0.0` (Spin 4, async), Spin's outbound
//! Redis interfaces, served with a real Redis client (the `redis` crate, over tokio): a connection may be opened only to an address
//! the component's `allowed_outbound_hosts` lists (`redis://host:port`, or `rediss://` for
//! TLS, verified as [`super::tls`] says), as Spin gates it
//! (`invalid-address` otherwise, with a line in the log). Redis errors come back as
//! `other(message)`, a reply of the wrong type as `type-error`.

use redis::aio::MultiplexedConnection;
use redis::{FromRedisValue, Value};
use wasmtime::component::{Accessor, HasSelf, Linker, Resource};

use super::outbound::default_port;
use super::state::{ComponentHost, SpinState};

#[allow(missing_docs)]
mod bindings {
    wasmtime::component::bindgen!({
        path: "wit/spin-redis",
        world: "wasmpod:spin-redis/spin-redis",
        imports: {
            "fermyon:spin/redis": async | trappable,
            default: trappable,
        },
        with: {
            "fermyon:spin/redis.connection": super::RedisConnection,
            "spin:redis/redis.connection": super::RedisConnection,
        },
    });
}

use bindings::fermyon::spin::redis::{self as spin_redis, Error, RedisParameter, RedisResult};
use bindings::spin::redis::redis as v3;

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

/// A client for `address`, if it is one and `host`'s component may reach it (a denial is
/// logged): `invalid-address` otherwise, as Spin answers.
fn open_client(host: &ComponentHost, address: &str) -> Result<redis::Client, Error> {
    let Some((scheme, name, port)) = endpoint(address) else {
        return Err(Error::InvalidAddress);
    };
    if !host.may_reach(&scheme, &name, port) {
        return Err(Error::InvalidAddress);
    }
    // `rediss://` to a host the component's `[[client_tls]]` names: its authorities (then
    // only those) and client certificate; otherwise the web PKI and the platform's roots.
    let pem = if scheme == "rediss" {
        host.tls.pem(&name)
    } else {
        None
    };
    match pem {
        Some(pem) => redis::Client::build_with_tls(
            address,
            redis::TlsCertificates {
                client_tls: (pem.identity.clone()).map(|(client_cert, client_key)| {
                    redis::ClientTlsConfig {
                        client_cert,
                        client_key,
                    }
                }),
                root_cert: pem.ca.clone(),
            },
        ),
        None => redis::Client::open(address),
    }
    .map_err(|_| Error::InvalidAddress)
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
        let client = match open_client(&self.host, &address) {
            Ok(client) => client,
            Err(e) => return Ok(Err(e)),
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

/// The connection behind `conn`, cloned (a multiplexed connection is shared by its clones),
/// so that the command runs without the store.
fn connection_of<T>(
    accessor: &Accessor<T, HasSelf<SpinState>>,
    conn: &Resource<RedisConnection>,
) -> wasmtime::Result<MultiplexedConnection> {
    accessor.with(|mut access| Ok(access.get().table.get(conn)?.0.clone()))
}

/// Runs `cmd` on `conn`, reading the reply as `R`, in 3.0's error words.
async fn query_v3<T, R: FromRedisValue>(
    accessor: &Accessor<T, HasSelf<SpinState>>,
    conn: &Resource<RedisConnection>,
    cmd: &redis::Cmd,
) -> wasmtime::Result<Result<R, v3::Error>> {
    let mut c = connection_of(accessor, conn)?;
    Ok(cmd
        .query_async::<R>(&mut c)
        .await
        .map_err(|e| other(e).into()))
}

impl From<Error> for v3::Error {
    fn from(e: Error) -> v3::Error {
        match e {
            Error::InvalidAddress => v3::Error::InvalidAddress,
            Error::TooManyConnections => v3::Error::TooManyConnections,
            Error::TypeError => v3::Error::TypeError,
            Error::Other(m) => v3::Error::Other(m),
        }
    }
}

impl v3::Host for SpinState {}

impl v3::HostConnection for SpinState {
    fn drop(&mut self, conn: Resource<RedisConnection>) -> wasmtime::Result<()> {
        self.table.delete(conn)?;
        Ok(())
    }
}

/// 3.0 (Spin 4): the same commands as 2.0, each run without holding the store, so an
/// instance's other tasks go on while Redis answers.
impl<T> v3::HostConnectionWithStore<T> for HasSelf<SpinState> {
    async fn open(
        accessor: &Accessor<T, Self>,
        address: String,
    ) -> wasmtime::Result<Result<Resource<RedisConnection>, v3::Error>> {
        let host = accessor.with(|mut access| access.get().host.clone());
        let client = match open_client(&host, &address) {
            Ok(client) => client,
            Err(e) => return Ok(Err(e.into())),
        };
        match client.get_multiplexed_async_connection().await {
            Ok(conn) => accessor
                .with(|mut access| Ok(Ok(access.get().table.push(RedisConnection(conn))?))),
            Err(e) => Ok(Err(other(e).into())),
        }
    }

    async fn publish(
        accessor: &Accessor<T, Self>,
        conn: Resource<RedisConnection>,
        channel: String,
        payload: Vec<u8>,
    ) -> wasmtime::Result<Result<(), v3::Error>> {
        let cmd = redis::cmd("PUBLISH").arg(channel).arg(payload).to_owned();
        Ok(query_v3::<T, i64>(accessor, &conn, &cmd).await?.map(|_| ()))
    }

    async fn get(
        accessor: &Accessor<T, Self>,
        conn: Resource<RedisConnection>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, v3::Error>> {
        query_v3(accessor, &conn, redis::cmd("GET").arg(key)).await
    }

    async fn set(
        accessor: &Accessor<T, Self>,
        conn: Resource<RedisConnection>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), v3::Error>> {
        query_v3(accessor, &conn, redis::cmd("SET").arg(key).arg(value)).await
    }

    async fn incr(
        accessor: &Accessor<T, Self>,
        conn: Resource<RedisConnection>,
        key: String,
    ) -> wasmtime::Result<Result<i64, v3::Error>> {
        query_v3(accessor, &conn, redis::cmd("INCR").arg(key)).await
    }

    async fn del(
        accessor: &Accessor<T, Self>,
        conn: Resource<RedisConnection>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<u32, v3::Error>> {
        query_v3(accessor, &conn, redis::cmd("DEL").arg(keys)).await
    }

    async fn sadd(
        accessor: &Accessor<T, Self>,
        conn: Resource<RedisConnection>,
        key: String,
        values: Vec<String>,
    ) -> wasmtime::Result<Result<u32, v3::Error>> {
        query_v3(accessor, &conn, redis::cmd("SADD").arg(key).arg(values)).await
    }

    async fn smembers(
        accessor: &Accessor<T, Self>,
        conn: Resource<RedisConnection>,
        key: String,
    ) -> wasmtime::Result<Result<Vec<String>, v3::Error>> {
        query_v3(accessor, &conn, redis::cmd("SMEMBERS").arg(key)).await
    }

    async fn srem(
        accessor: &Accessor<T, Self>,
        conn: Resource<RedisConnection>,
        key: String,
        values: Vec<String>,
    ) -> wasmtime::Result<Result<u32, v3::Error>> {
        query_v3(accessor, &conn, redis::cmd("SREM").arg(key).arg(values)).await
    }

    async fn execute(
        accessor: &Accessor<T, Self>,
        conn: Resource<RedisConnection>,
        command: String,
        arguments: Vec<v3::RedisParameter>,
    ) -> wasmtime::Result<Result<Vec<v3::RedisResult>, v3::Error>> {
        let mut cmd = redis::cmd(&command);
        for a in arguments {
            match a {
                v3::RedisParameter::Int64(n) => cmd.arg(n),
                v3::RedisParameter::Binary(b) => cmd.arg(b),
            };
        }
        let value = query_v3::<T, Value>(accessor, &conn, &cmd).await?;
        Ok(value.map(|v| results(v).into_iter().map(Into::into).collect()))
    }
}

impl From<RedisResult> for v3::RedisResult {
    fn from(r: RedisResult) -> v3::RedisResult {
        match r {
            RedisResult::Nil => v3::RedisResult::Nil,
            RedisResult::Status(s) => v3::RedisResult::Status(s),
            RedisResult::Int64(n) => v3::RedisResult::Int64(n),
            RedisResult::Binary(b) => v3::RedisResult::Binary(b),
        }
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
