//! The MQTT trigger (the Spin MQTT trigger plugin's `[[trigger.mqtt]]`): subscribes to each
//! trigger's `topic` at `[application.trigger.mqtt]`'s broker and runs the component's
//! `handle-message` export for each message there, each in a fresh instance. Both shapes of
//! that export are called: `handle-message(message)` and `handle-message(message,
//! metadata)` (a record with the `topic`), returning `result<_, error>`. Triggers on one
//! broker share one session. A broker that is not there at start, or goes away, is retried
//! with backoff (1 s, doubling to 30 s), each attempt a line in the log.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, ConnectReturnCode, Event, Packet, QoS};
use wasmpod_oci::spin::app::{MqttBroker, MqttQos, MqttTrigger};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{ComponentExportIndex, InstancePre, Val};
use wasmtime::Engine;

use super::mqtt::{generated_client_id, parse_address};
use super::reconnect::Backoff;
use super::state::{describe_failure, ComponentEnv, SpinState};
use crate::limits::GuestLimits;
use crate::signals::TerminationWatch;

/// The export an MQTT-triggered component must have.
pub const EXPORT: &str = "handle-message";

/// One MQTT trigger, linked.
pub struct MqttJob {
    /// The trigger id.
    pub trigger: String,
    /// The component id.
    pub component: String,
    pre: InstancePre<SpinState>,
    export: ComponentExportIndex,
    /// Whether `handle-message` takes the message's metadata too.
    with_metadata: bool,
}

impl MqttJob {
    /// Links `pre` for `trigger`; the error says what the component lacks.
    pub fn link(
        engine: &Engine,
        trigger: &MqttTrigger,
        pre: InstancePre<SpinState>,
    ) -> Result<MqttJob, String> {
        let lacks = |what: &str| {
            format!("it {what}, so it cannot run an MQTT trigger (it needs {EXPORT}(message) or {EXPORT}(message, metadata))")
        };
        let component = pre.component();
        let export = component
            .component_type()
            .get_export(engine, EXPORT)
            .map(|e| e.ty);
        let params = match export {
            Some(ComponentItem::ComponentFunc(f)) => f.params().len(),
            Some(_) => return Err(lacks("exports a handle-message that is not a function")),
            None => return Err(lacks("does not export handle-message")),
        };
        if !(1..=2).contains(&params) {
            return Err(lacks(&format!(
                "exports a handle-message taking {params} arguments"
            )));
        }
        let export = component
            .get_export_index(None, EXPORT)
            .ok_or_else(|| lacks("does not export handle-message"))?;
        Ok(MqttJob {
            trigger: trigger.id.clone(),
            component: trigger.component.clone(),
            pre,
            export,
            with_metadata: params == 2,
        })
    }

    async fn fire(
        &self,
        engine: &Engine,
        watch: &TerminationWatch,
        topic: String,
        message: Vec<u8>,
        state: Result<SpinState, String>,
    ) -> Result<(), String> {
        let mut store = state?.into_store(engine, watch);
        let describe = |e: &wasmtime::Error| describe_failure(e, watch);
        let instance = self
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| describe(&e))?;
        let func = instance
            .get_func(&mut store, self.export)
            .ok_or("its handle-message export is gone")?;
        let mut params = vec![Val::List(message.into_iter().map(Val::U8).collect())];
        if self.with_metadata {
            params.push(Val::Record(vec![("topic".into(), Val::String(topic))]));
        }
        let mut results = [Val::Bool(false)];
        func.call_async(&mut store, &params, &mut results)
            .await
            .map_err(|e| describe(&e))?;
        match &results[0] {
            Val::Result(Err(e)) => Err(format!("it returned an error: {e:?}")),
            _ => Ok(()),
        }
    }
}

/// One trigger on a broker: its topic (templates expanded), QoS and job.
pub struct Subscribed {
    /// The topic filter.
    pub topic: String,
    /// Its QoS.
    pub qos: MqttQos,
    /// The job, with what its component's instances start with.
    pub job: Arc<MqttJob>,
    /// Its component's environment.
    pub env: ComponentEnv,
}

/// The triggers of one broker.
pub struct Session {
    /// The broker, templates expanded.
    pub broker: MqttBroker,
    /// The triggers on it.
    pub triggers: Vec<Subscribed>,
}

fn qos(q: MqttQos) -> QoS {
    match q {
        MqttQos::AtMostOnce => QoS::AtMostOnce,
        MqttQos::AtLeastOnce => QoS::AtLeastOnce,
        MqttQos::ExactlyOnce => QoS::ExactlyOnce,
    }
}

impl Session {
    /// Subscribes and runs messages until the task is dropped, reconnecting as needed.
    pub async fn run(self, engine: Engine, watch: TerminationWatch, limits: GuestLimits) {
        let this = Arc::new(self);
        let what = format!("mqtt {}", this.broker.address);
        let mut backoff = Backoff::default();
        loop {
            let reason = this.listen(&engine, &watch, &limits, &mut backoff).await;
            if !backoff.retry(&what, &reason, &watch).await {
                return;
            }
        }
    }

    /// One session: connect, subscribe to every topic, then run each message's triggers
    /// until the connection fails (the reason is returned).
    async fn listen(
        self: &Arc<Self>,
        engine: &Engine,
        watch: &TerminationWatch,
        limits: &GuestLimits,
        backoff: &mut Backoff,
    ) -> String {
        let address = match parse_address(&self.broker.address) {
            Ok(a) => a,
            Err(_) => return "not an mqtt:// or mqtts:// address".into(),
        };
        let client_id = address
            .client_id
            .clone()
            .unwrap_or_else(generated_client_id);
        // The trigger's own session: over TLS, the broker's certificate must chain to the web PKI.
        let mut options = address.options(client_id, |_| super::tls::web_pki());
        options.set_keep_alive(Duration::from_secs(self.broker.keep_alive_secs));
        if !self.broker.username.is_empty() {
            options.set_credentials(&self.broker.username, &self.broker.password);
        }
        let (client, mut events) = AsyncClient::new(options, 64);
        for t in &self.triggers {
            if let Err(e) = client.subscribe(&t.topic, qos(t.qos)).await {
                return format!("cannot subscribe to {}: {e}", t.topic);
            }
        }
        let mut acked = 0;
        loop {
            let event = match events.poll().await {
                Ok(event) => event,
                Err(e) => return format!("{e}"),
            };
            match event {
                Event::Incoming(Packet::ConnAck(ack)) if ack.code != ConnectReturnCode::Success => {
                    return format!("the broker refused the session: {:?}", ack.code)
                }
                Event::Incoming(Packet::SubAck(_)) => {
                    acked += 1;
                    if acked == self.triggers.len() {
                        backoff.connected();
                        for t in &self.triggers {
                            eprintln!(
                                "wasmpod: mqtt trigger {} runs component {} for messages on {} \
                                 at {}",
                                t.job.trigger, t.job.component, t.topic, self.broker.address
                            );
                        }
                    }
                }
                Event::Incoming(Packet::Publish(p)) => {
                    for t in self
                        .triggers
                        .iter()
                        .filter(|t| rumqttc::matches(&p.topic, &t.topic))
                    {
                        let (job, state) = (t.job.clone(), t.env.state(limits.clone()));
                        let (engine, watch) = (engine.clone(), watch.clone());
                        let (topic, payload) = (p.topic.clone(), p.payload.to_vec());
                        let span = t.env.message_span(&job.trigger, "mqtt", &topic);
                        tokio::spawn(async move {
                            let fired = job.fire(&engine, &watch, topic.clone(), payload, state);
                            if let Err(reason) = crate::telemetry::traced(span, fired).await {
                                eprintln!(
                                    "wasmpod: mqtt trigger {}: component {} failed on a message \
                                     on {topic}: {reason}",
                                    job.trigger, job.component
                                );
                            }
                        });
                    }
                }
                _ => {}
            }
        }
    }
}
