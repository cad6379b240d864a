//! `fermyon:spin/mqtt@2.0.0` and `spin:mqtt/mqtt@3.0.0` (Spin 4, async: the same calls),
//! Spin's outbound MQTT, served with rumqttc (MQTT 3.1.1 over TCP, or TLS for `mqtts://`
//! with the component's TLS configuration, [`super::tls`]): a connection may be opened only to a broker the component's
//! `allowed_outbound_hosts` lists (`mqtt://host:port`), otherwise `connection-failed` says
//! the address is not permitted. `open` returns once the broker has accepted the session;
//! `publish` returns once the message is written (QoS 0), acknowledged (1) or completed (2),
//! so a message is not lost when the guest's instance ends right after.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS,
    TlsConfiguration, Transport,
};
use tokio::sync::Mutex;
use wasmtime::component::{Accessor, HasSelf, Linker, Resource};

use super::state::{ComponentHost, SpinState};

#[allow(missing_docs)]
mod bindings {
    wasmtime::component::bindgen!({
        path: "wit/spin-mqtt",
        world: "wasmpod:spin-mqtt/spin-mqtt",
        imports: { default: async | trappable },
        with: {
            "fermyon:spin/mqtt.connection": super::MqttConnection,
            "spin:mqtt/mqtt.connection": super::MqttConnection,
        },
    });
}

use bindings::fermyon::spin::mqtt::{self as spin_mqtt, Error, Qos};
use bindings::spin::mqtt::mqtt as v3;

/// How long the broker has to accept a session or acknowledge a message.
const BROKER_TIMEOUT: Duration = Duration::from_secs(30);

/// An open session, as a guest resource: the client and the event loop that carries its
/// packets (driven while the guest waits on it). Shared, so that a 3.0 call runs without
/// the store.
pub struct MqttConnection(Arc<Mutex<Session>>);

/// A session with a broker.
struct Session {
    client: AsyncClient,
    events: EventLoop,
}

/// Adds the interface to `linker`.
pub fn add_to_linker(linker: &mut Linker<SpinState>) -> wasmtime::Result<()> {
    bindings::SpinMqtt::add_to_linker::<SpinState, HasSelf<SpinState>>(linker, |s| s)
}

/// A broker address: `mqtt://host[:port][?client_id=ID]`, or `mqtts://` for TLS.
#[derive(Debug, PartialEq)]
pub(crate) struct Address {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub client_id: Option<String>,
}

impl Address {
    /// The scheme, as `allowed_outbound_hosts` names it.
    pub fn scheme(&self) -> &'static str {
        if self.tls {
            "mqtts"
        } else {
            "mqtt"
        }
    }

    /// Session options for this broker as `client_id`, over TLS with `tls` if the address
    /// says so.
    pub fn options(
        &self,
        client_id: String,
        tls: impl FnOnce(&str) -> Arc<rustls::ClientConfig>,
    ) -> MqttOptions {
        let mut options = MqttOptions::new(client_id, self.host.clone(), self.port);
        if self.tls {
            let config = TlsConfiguration::Rustls(tls(&self.host));
            options.set_transport(Transport::tls_with_config(config));
        }
        options
    }
}

pub(crate) fn parse_address(address: &str) -> Result<Address, Error> {
    let url = url::Url::parse(address).map_err(|_| Error::InvalidAddress)?;
    let tls = match url.scheme() {
        "mqtt" => false,
        "mqtts" => true,
        // WebSocket brokers are not served.
        _ => return Err(Error::InvalidAddress),
    };
    let host = url.host_str().ok_or(Error::InvalidAddress)?;
    let client_id = url
        .query_pairs()
        .find(|(k, _)| k == "client_id")
        .map(|(_, v)| v.into_owned());
    Ok(Address {
        tls,
        host: host.trim_matches(['[', ']']).to_string(),
        port: url.port().unwrap_or(if tls { 8883 } else { 1883 }),
        client_id,
    })
}

/// A client id for a connection whose address names none.
pub(crate) fn generated_client_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "wasmpod-{}-{nanos:x}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn failed(e: impl std::fmt::Display) -> Error {
    Error::ConnectionFailed(e.to_string())
}

/// Drives `events` until `done` says an event finished the wait.
async fn drive(
    events: &mut EventLoop,
    mut done: impl FnMut(&Event) -> Result<bool, Error>,
) -> Result<(), Error> {
    let wait = async {
        loop {
            let event = events.poll().await.map_err(failed)?;
            if done(&event)? {
                return Ok(());
            }
        }
    };
    tokio::time::timeout(BROKER_TIMEOUT, wait)
        .await
        .unwrap_or_else(|_| Err(Error::Other("the broker did not answer in time".into())))
}

/// A session with the broker at `address`, once it has accepted it, if `host`'s component
/// may reach it (a denial is logged).
async fn open(
    host: &ComponentHost,
    address: &str,
    username: String,
    password: String,
    keep_alive_interval_in_secs: u64,
) -> Result<MqttConnection, Error> {
    let parsed = parse_address(address)?;
    if !host.may_reach(parsed.scheme(), &parsed.host, parsed.port) {
        return Err(Error::ConnectionFailed(format!(
            "address {address} is not permitted"
        )));
    }
    let client_id = parsed.client_id.clone().unwrap_or_else(generated_client_id);
    let mut options = parsed.options(client_id, |name| host.tls.config(name));
    // rumqttc takes whole seconds, at least one (0 turns keep-alive off).
    options.set_keep_alive(Duration::from_secs(keep_alive_interval_in_secs));
    if !username.is_empty() {
        options.set_credentials(username, password);
    }
    let (client, mut events) = AsyncClient::new(options, 16);
    drive(&mut events, |event| match event {
        Event::Incoming(Packet::ConnAck(ack)) if ack.code == ConnectReturnCode::Success => Ok(true),
        Event::Incoming(Packet::ConnAck(ack)) => Err(failed(format!(
            "the broker refused the session: {:?}",
            ack.code
        ))),
        _ => Ok(false),
    })
    .await?;
    Ok(MqttConnection(Arc::new(Mutex::new(Session {
        client,
        events,
    }))))
}

/// Publishes `payload` on `topic`, returning once the message is written (QoS 0),
/// acknowledged (1) or completed (2).
async fn publish(
    session: &Mutex<Session>,
    topic: String,
    payload: Vec<u8>,
    qos: Qos,
) -> Result<(), Error> {
    let session = &mut *session.lock().await;
    let qos = match qos {
        Qos::AtMostOnce => QoS::AtMostOnce,
        Qos::AtLeastOnce => QoS::AtLeastOnce,
        Qos::ExactlyOnce => QoS::ExactlyOnce,
    };
    (session.client.publish(topic, qos, false, payload).await)
        .map_err(|e| Error::Other(e.to_string()))?;
    // The packet id the event loop gives this message, then its acknowledgement.
    let mut id = None;
    drive(&mut session.events, |event| {
        Ok(match (event, id) {
            (Event::Outgoing(Outgoing::Publish(pkid)), None) => {
                id = Some(*pkid);
                qos == QoS::AtMostOnce
            }
            (Event::Incoming(Packet::PubAck(ack)), Some(pkid)) => {
                qos == QoS::AtLeastOnce && ack.pkid == pkid
            }
            (Event::Incoming(Packet::PubComp(comp)), Some(pkid)) => comp.pkid == pkid,
            _ => false,
        })
    })
    .await
}

/// Ends the session cleanly; a broker that is gone already needs no goodbye.
async fn close(conn: MqttConnection) {
    let session = &mut *conn.0.lock().await;
    if session.client.try_disconnect().is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while let Ok(event) = session.events.poll().await {
                if event == Event::Outgoing(Outgoing::Disconnect) {
                    break;
                }
            }
        })
        .await;
    }
}

impl spin_mqtt::Host for SpinState {}

impl spin_mqtt::HostConnection for SpinState {
    async fn open(
        &mut self,
        address: String,
        username: String,
        password: String,
        keep_alive_interval_in_secs: u64,
    ) -> wasmtime::Result<Result<Resource<MqttConnection>, Error>> {
        let opened = open(
            &self.host,
            &address,
            username,
            password,
            keep_alive_interval_in_secs,
        );
        Ok(match opened.await {
            Ok(conn) => Ok(self.table.push(conn)?),
            Err(e) => Err(e),
        })
    }

    async fn publish(
        &mut self,
        conn: Resource<MqttConnection>,
        topic: String,
        payload: Vec<u8>,
        qos: Qos,
    ) -> wasmtime::Result<Result<(), Error>> {
        let session = self.table.get(&conn)?.0.clone();
        Ok(publish(&session, topic, payload, qos).await)
    }

    async fn drop(&mut self, conn: Resource<MqttConnection>) -> wasmtime::Result<()> {
        close(self.table.delete(conn)?).await;
        Ok(())
    }
}

impl From<Error> for v3::Error {
    fn from(e: Error) -> v3::Error {
        match e {
            Error::InvalidAddress => v3::Error::InvalidAddress,
            Error::TooManyConnections => v3::Error::TooManyConnections,
            Error::ConnectionFailed(m) => v3::Error::ConnectionFailed(m),
            Error::Other(m) => v3::Error::Other(m),
        }
    }
}

impl From<v3::Qos> for Qos {
    fn from(q: v3::Qos) -> Qos {
        match q {
            v3::Qos::AtMostOnce => Qos::AtMostOnce,
            v3::Qos::AtLeastOnce => Qos::AtLeastOnce,
            v3::Qos::ExactlyOnce => Qos::ExactlyOnce,
        }
    }
}

impl v3::Host for SpinState {}

impl v3::HostConnection for SpinState {
    async fn drop(&mut self, conn: Resource<MqttConnection>) -> wasmtime::Result<()> {
        close(self.table.delete(conn)?).await;
        Ok(())
    }
}

/// 3.0 (Spin 4): 2.0's calls, each without holding the store, so the instance's other
/// tasks go on while the broker answers.
impl<T> v3::HostConnectionWithStore<T> for HasSelf<SpinState> {
    async fn open(
        accessor: &Accessor<T, Self>,
        address: String,
        username: String,
        password: String,
        keep_alive_interval_in_secs: u64,
    ) -> wasmtime::Result<Result<Resource<MqttConnection>, v3::Error>> {
        let host = accessor.with(|mut access| access.get().host.clone());
        let opened = open(
            &host,
            &address,
            username,
            password,
            keep_alive_interval_in_secs,
        );
        match opened.await {
            Ok(conn) => accessor.with(|mut access| Ok(Ok(access.get().table.push(conn)?))),
            Err(e) => Ok(Err(e.into())),
        }
    }

    async fn publish(
        accessor: &Accessor<T, Self>,
        conn: Resource<MqttConnection>,
        topic: String,
        payload: Vec<u8>,
        qos: v3::Qos,
    ) -> wasmtime::Result<Result<(), v3::Error>> {
        let session = accessor.with(|mut access| {
            Ok::<_, wasmtime::Error>(access.get().table.get(&conn)?.0.clone())
        })?;
        let sent = publish(&session, topic, payload, qos.into()).await;
        Ok(sent.map_err(Into::into))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_broker_addresses() {
        assert_eq!(
            parse_address("mqtt://127.0.0.1:1884?client_id=c1").unwrap(),
            Address {
                tls: false,
                host: "127.0.0.1".into(),
                port: 1884,
                client_id: Some("c1".into())
            }
        );
        assert_eq!(parse_address("mqtt://broker.local").unwrap().port, 1883);
        let tls = parse_address("mqtts://broker").unwrap();
        assert_eq!((tls.tls, tls.port, tls.scheme()), (true, 8883, "mqtts"));
        assert!(matches!(
            parse_address("ws://broker:8080"),
            Err(Error::InvalidAddress)
        ));
        assert!(matches!(
            parse_address("nonsense"),
            Err(Error::InvalidAddress)
        ));
        assert_ne!(generated_client_id(), generated_client_id());
    }
}
