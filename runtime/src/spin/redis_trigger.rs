//! The Redis trigger: `[[trigger.redis]]` subscribes to `channel` on the trigger's server and
//! runs the component's `fermyon:spin/inbound-redis#handle-message` for each message
//! published there, each in a fresh instance, as messages arrive. Triggers on the same
//! server share one subscription. A server that is not there at start, or that goes away,
//! is retried with backoff (1 s, doubling to 30 s), each attempt a line in the log; a stop
//! signal ends the waiting at once.

use std::sync::Arc;

use futures_util::StreamExt;
use wasmpod_oci::spin::app::RedisTrigger;
use wasmtime::component::InstancePre;
use wasmtime::Engine;

use super::reconnect::Backoff;
use super::state::{describe_failure, ComponentEnv, SpinState};
use crate::limits::GuestLimits;
use crate::signals::TerminationWatch;

#[allow(missing_docs)]
mod bindings {
    wasmtime::component::bindgen!({
        path: "wit/spin-inbound-redis",
        world: "wasmpod:spin-inbound-redis/spin-redis-trigger",
        exports: { default: async },
    });
}

pub use bindings::SpinRedisTriggerPre;

/// The export a Redis-triggered component must have.
pub const EXPORT: &str = "fermyon:spin/inbound-redis";

/// One Redis trigger, linked.
pub struct RedisJob {
    /// The trigger id.
    pub trigger: String,
    /// The component id.
    pub component: String,
    /// The channel it subscribes to.
    pub channel: String,
    /// The component, linked, with its `handle-message`.
    pub pre: SpinRedisTriggerPre<SpinState>,
}

impl RedisJob {
    /// Links `pre` for `trigger`; the error says what the component lacks.
    pub fn link(trigger: &RedisTrigger, pre: InstancePre<SpinState>) -> Result<RedisJob, String> {
        let pre = SpinRedisTriggerPre::new(pre).map_err(|e| {
            format!(
                "it does not export {EXPORT} (handle-message), so it cannot run a Redis \
                 trigger: {e:#}"
            )
        })?;
        Ok(RedisJob {
            trigger: trigger.id.clone(),
            component: trigger.component.clone(),
            channel: trigger.channel.clone(),
            pre,
        })
    }

    async fn fire(
        &self,
        engine: &Engine,
        watch: &TerminationWatch,
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
        match instance
            .fermyon_spin_inbound_redis()
            .call_handle_message(&mut store, &message)
            .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("it returned {e:?}")),
            Err(e) => Err(describe(&e)),
        }
    }
}

/// The triggers of one server, each with what its component's instances start with.
pub struct Subscription {
    /// The server, templates expanded.
    pub address: String,
    /// The triggers on it.
    pub jobs: Vec<(Arc<RedisJob>, ComponentEnv)>,
}

impl Subscription {
    /// Subscribes and runs messages until the task is dropped, reconnecting as needed.
    pub async fn run(self, engine: Engine, watch: TerminationWatch, limits: GuestLimits) {
        let this = Arc::new(self);
        let what = format!("redis {}", this.address);
        let mut backoff = Backoff::default();
        loop {
            let reason = match this.listen(&engine, &watch, &limits, &mut backoff).await {
                Ok(()) => "the server closed the subscription".to_string(),
                Err(e) => e,
            };
            if !backoff.retry(&what, &reason, &watch).await {
                return;
            }
        }
    }

    /// One connection: subscribe to every channel, then run each message's triggers.
    async fn listen(
        self: &Arc<Self>,
        engine: &Engine,
        watch: &TerminationWatch,
        limits: &GuestLimits,
        backoff: &mut Backoff,
    ) -> Result<(), String> {
        let client = redis::Client::open(self.address.as_str())
            .map_err(|e| format!("not a Redis address: {e}"))?;
        let mut pubsub = client
            .get_async_pubsub()
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let mut channels: Vec<&str> = self.jobs.iter().map(|(j, _)| j.channel.as_str()).collect();
        channels.sort();
        channels.dedup();
        for channel in &channels {
            pubsub
                .subscribe(*channel)
                .await
                .map_err(|e| format!("cannot subscribe to {channel}: {e}"))?;
        }
        backoff.connected();
        for (job, _) in &self.jobs {
            eprintln!(
                "wasmpod: redis trigger {} runs component {} for messages on {} at {}",
                job.trigger, job.component, job.channel, self.address
            );
        }
        let mut messages = pubsub.on_message();
        while let Some(msg) = messages.next().await {
            let channel = msg.get_channel_name().to_string();
            let payload = msg.get_payload_bytes().to_vec();
            for (job, env) in self.jobs.iter().filter(|(j, _)| j.channel == channel) {
                let (job, state) = (job.clone(), env.state(limits.clone()));
                let (engine, watch, payload) = (engine.clone(), watch.clone(), payload.clone());
                let span = env.message_span(&job.trigger, "redis", &channel);
                tokio::spawn(async move {
                    let fired = job.fire(&engine, &watch, payload, state);
                    if let Err(reason) = crate::telemetry::traced(span, fired).await {
                        eprintln!(
                            "wasmpod: redis trigger {}: component {} failed on a message on \
                             {}: {reason}",
                            job.trigger, job.component, job.channel
                        );
                    }
                });
            }
        }
        Ok(())
    }
}
