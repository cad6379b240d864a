//! The Redis trigger: `[[trigger.redis]]` subscribes to `channel` on the trigger's server and
//! runs the component's `handle-message` for each message published there, each in a fresh
//! instance, as messages arrive: Spin 2's `fermyon:spin/inbound-redis`, or Spin 4's
//! `spin:redis/inbound-redis@3.0.0` (an async export, run in the store's event loop until
//! its tasks are done). Triggers on the same
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

#[allow(missing_docs)]
mod bindings3 {
    wasmtime::component::bindgen!({
        path: "wit/spin-inbound-redis",
        world: "wasmpod:spin-inbound-redis/spin-redis-trigger-3",
    });
}

use bindings::SpinRedisTriggerPre;
use bindings3::SpinRedisTrigger3Pre;

/// The exports a Redis-triggered component may have: one of them.
pub const EXPORTS: [&str; 2] = [
    "fermyon:spin/inbound-redis",
    "spin:redis/inbound-redis@3.0.0",
];

/// A component's `handle-message`, linked.
pub enum MessageHandler {
    /// `fermyon:spin/inbound-redis` (Spin 2 and 3).
    Spin2(SpinRedisTriggerPre<SpinState>),
    /// `spin:redis/inbound-redis@3.0.0` (Spin 4, async).
    Spin4(SpinRedisTrigger3Pre<SpinState>),
}

impl MessageHandler {
    /// The handler `pre` exports; the error says what it lacks.
    fn link(pre: InstancePre<SpinState>) -> Result<MessageHandler, String> {
        if let Ok(pre) = SpinRedisTrigger3Pre::new(pre.clone()) {
            return Ok(MessageHandler::Spin4(pre));
        }
        SpinRedisTriggerPre::new(pre)
            .map(MessageHandler::Spin2)
            .map_err(|e| {
                format!(
                    "it exports neither {} nor {} (handle-message), so it cannot run a Redis \
                     trigger: {e:#}",
                    EXPORTS[0], EXPORTS[1]
                )
            })
    }

    /// Runs `handle-message` for `message` in a fresh instance in `store`.
    async fn run(
        &self,
        store: &mut wasmtime::Store<SpinState>,
        message: Vec<u8>,
    ) -> wasmtime::Result<Result<(), String>> {
        match self {
            MessageHandler::Spin2(pre) => {
                let instance = pre.instantiate_async(&mut *store).await?;
                let handled = instance
                    .fermyon_spin_inbound_redis()
                    .call_handle_message(&mut *store, &message)
                    .await?;
                Ok(handled.map_err(|e| format!("it returned {e:?}")))
            }
            MessageHandler::Spin4(pre) => {
                let instance = pre.instantiate_async(&mut *store).await?;
                store
                    .run_concurrent(async move |accessor| {
                        let handled = instance
                            .spin_redis_inbound_redis()
                            .call_handle_message(accessor, message)
                            .await?;
                        Ok(handled.map_err(|e| format!("it returned {e:?}")))
                    })
                    .await?
            }
        }
    }
}

/// One Redis trigger, linked.
pub struct RedisJob {
    /// The trigger id.
    pub trigger: String,
    /// The component id.
    pub component: String,
    /// The channel it subscribes to.
    pub channel: String,
    /// The component, linked, with its `handle-message`.
    pub handler: MessageHandler,
}

impl RedisJob {
    /// Links `pre` for `trigger`; the error says what the component lacks.
    pub fn link(trigger: &RedisTrigger, pre: InstancePre<SpinState>) -> Result<RedisJob, String> {
        Ok(RedisJob {
            trigger: trigger.id.clone(),
            component: trigger.component.clone(),
            channel: trigger.channel.clone(),
            handler: MessageHandler::link(pre)?,
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
        match self.handler.run(&mut store, message).await {
            Ok(handled) => handled,
            Err(e) => Err(describe_failure(&e, watch)),
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
