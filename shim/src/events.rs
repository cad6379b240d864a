//! One ordered queue of task events and the single task that forwards them to containerd.
//! Events are queued synchronously (under the task's own lock where order matters), so the
//! order in which they are queued is the order containerd sees them in.

use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::MessageDyn;
use containerd_shim::protos::shim::event::Envelope;
use containerd_shim::protos::shim::events::ForwardRequest;
use containerd_shim::protos::shim_async::{Client, EventsClient};
use containerd_shim::protos::ttrpc::context::Context;
use containerd_shim::util::{connect, convert_to_any};
use tokio::sync::mpsc;

/// An event on its way to containerd.
pub struct QueuedEvent {
    /// The topic, e.g. `/tasks/exit`.
    pub topic: &'static str,
    /// The event message.
    pub event: Box<dyn MessageDyn>,
}

/// Where the task service puts events. Cloning gives another handle on the same queue.
#[derive(Clone)]
pub struct EventSink {
    tx: mpsc::UnboundedSender<QueuedEvent>,
}

impl EventSink {
    /// A sink and the receiving end of its queue.
    pub fn new() -> (EventSink, mpsc::UnboundedReceiver<QueuedEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (EventSink { tx }, rx)
    }

    /// Queues an event; never blocks.
    pub fn send(&self, topic: &'static str, event: impl MessageDyn) {
        if self
            .tx
            .send(QueuedEvent {
                topic,
                event: Box::new(event),
            })
            .is_err()
        {
            log::warn!("event {topic} dropped: the publisher has stopped");
        }
    }
}

/// Why one attempt to hand an event to containerd failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// containerd could not be reached (socket gone, connection reset, call timed out): it is
    /// restarting or down, and the event is kept until it is back.
    #[error("containerd unreachable: {0}")]
    Unreachable(String),
    /// containerd answered and refused the event.
    #[error("containerd refused the event: {0}")]
    Refused(String),
}

/// Hands one event to containerd.
#[async_trait::async_trait]
pub trait Publisher: Send {
    /// One attempt to deliver `req`.
    async fn publish(&mut self, req: &ForwardRequest) -> Result<(), PublishError>;
}

/// How long events are held while containerd is unreachable, and how often a refused one is
/// tried again.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryPolicy {
    /// The first wait after a failed attempt; it doubles up to `max_backoff`.
    pub first_backoff: std::time::Duration,
    /// The longest wait between two attempts.
    pub max_backoff: std::time::Duration,
    /// How long one event is held while containerd is unreachable before it is dropped.
    pub unreachable_for: std::time::Duration,
    /// How many times an event containerd refuses is tried.
    pub refused_attempts: u32,
}

impl Default for DeliveryPolicy {
    /// Rides out a containerd restart (systemd restarts it within seconds; a slow node may take
    /// minutes) and gives up on an event containerd itself rejects after a few tries.
    fn default() -> Self {
        DeliveryPolicy {
            first_backoff: std::time::Duration::from_millis(50),
            max_backoff: std::time::Duration::from_secs(1),
            unreachable_for: std::time::Duration::from_secs(600),
            refused_attempts: 5,
        }
    }
}

/// Tries `req` until it is delivered or the policy gives up; true when delivered.
async fn deliver(
    publisher: &mut dyn Publisher,
    topic: &str,
    req: &ForwardRequest,
    policy: DeliveryPolicy,
) -> bool {
    let began = tokio::time::Instant::now();
    let mut backoff = policy.first_backoff;
    let mut refused = 0;
    let mut unreachable_logged = false;
    loop {
        match publisher.publish(req).await {
            Ok(()) => {
                if unreachable_logged {
                    log::info!("containerd is back: event {topic} delivered");
                }
                return true;
            }
            Err(PublishError::Refused(e)) => {
                refused += 1;
                log::warn!("publish {topic} (attempt {refused}): {e}");
                if refused >= policy.refused_attempts {
                    log::error!("event {topic} dropped: containerd refused it {refused} times");
                    return false;
                }
            }
            Err(PublishError::Unreachable(e)) => {
                if !unreachable_logged {
                    log::warn!("publish {topic}: {e}; holding events until containerd is back");
                    unreachable_logged = true;
                }
                if began.elapsed() >= policy.unreachable_for {
                    log::error!(
                        "event {topic} dropped: containerd unreachable for {:?}",
                        policy.unreachable_for
                    );
                    return false;
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(policy.max_backoff);
    }
}

/// How long one forward call may take before containerd is taken for unreachable.
const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Publishes over ttrpc to containerd's `Events` service, reconnecting after any failure.
pub struct TtrpcPublisher {
    address: String,
    client: Option<EventsClient>,
}

impl TtrpcPublisher {
    /// A publisher for containerd's ttrpc socket at `address`; it connects on first use.
    pub fn new(address: String) -> Self {
        TtrpcPublisher {
            address,
            client: None,
        }
    }
}

#[async_trait::async_trait]
impl Publisher for TtrpcPublisher {
    async fn publish(&mut self, req: &ForwardRequest) -> Result<(), PublishError> {
        if self.client.is_none() {
            let fd = connect(&self.address)
                .map_err(|e| PublishError::Unreachable(format!("connect {}: {e}", self.address)))?;
            // SAFETY: `fd` is a freshly connected unix socket that we own.
            self.client = Some(EventsClient::new(unsafe {
                Client::from_raw_unix_socket_fd(fd)
            }));
        }
        let Some(client) = &self.client else {
            return Err(PublishError::Unreachable("no connection".into()));
        };
        let result =
            tokio::time::timeout(CALL_TIMEOUT, client.forward(Context::default(), req)).await;
        match result {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(containerd_shim::protos::ttrpc::Error::RpcStatus(status))) => {
                Err(PublishError::Refused(format!("{status:?}")))
            }
            Ok(Err(e)) => {
                self.client = None;
                Err(PublishError::Unreachable(e.to_string()))
            }
            Err(_) => {
                self.client = None;
                Err(PublishError::Unreachable(format!(
                    "no answer within {CALL_TIMEOUT:?}"
                )))
            }
        }
    }
}

/// Forwards queued events through `publisher`, in order, one at a time (an event is delivered
/// or given up on before any later one is sent), until every sink is dropped and the queue is
/// empty. While containerd is unreachable events are held, so a containerd restart loses
/// none of them.
pub async fn forward(
    mut publisher: impl Publisher,
    namespace: String,
    policy: DeliveryPolicy,
    mut rx: mpsc::UnboundedReceiver<QueuedEvent>,
) {
    while let Some(item) = rx.recv().await {
        let mut envelope = Envelope::new();
        envelope.topic = item.topic.to_string();
        envelope.namespace = namespace.clone();
        envelope.timestamp = Some(timestamp(std::time::SystemTime::now())).into();
        envelope.event = match convert_to_any(item.event) {
            Ok(any) => Some(any).into(),
            Err(e) => {
                log::error!("encode event {}: {e}", item.topic);
                continue;
            }
        };
        let mut req = ForwardRequest::new();
        req.envelope = Some(envelope).into();
        deliver(&mut publisher, item.topic, &req, policy).await;
    }
}

/// A protobuf timestamp for `at`.
pub fn timestamp(at: std::time::SystemTime) -> Timestamp {
    let since = at
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let mut ts = Timestamp::new();
    ts.seconds = since.as_secs() as i64;
    ts.nanos = since.subsec_nanos() as i32;
    ts
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim::protos::events::task::TaskExit;
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// What the fake containerd does with each attempt, in order; once the script is used up
    /// every attempt succeeds.
    #[derive(Clone, Copy)]
    enum Answer {
        Down,
        Refuse,
    }

    struct FakeContainerd {
        script: VecDeque<Answer>,
        /// An id containerd never takes: every attempt at it finds containerd down.
        unreachable_for_id: Option<&'static str>,
        delivered: Arc<Mutex<Vec<String>>>,
        attempts: Arc<Mutex<u32>>,
    }

    #[async_trait::async_trait]
    impl Publisher for FakeContainerd {
        async fn publish(&mut self, req: &ForwardRequest) -> Result<(), PublishError> {
            *self.attempts.lock().unwrap() += 1;
            let exit = TaskExit::parse_from_bytes(&req.envelope.event.value).expect("a TaskExit");
            if self.unreachable_for_id == Some(exit.container_id.as_str()) {
                return Err(PublishError::Unreachable("connection refused".into()));
            }
            match self.script.pop_front() {
                Some(Answer::Down) => Err(PublishError::Unreachable("connection refused".into())),
                Some(Answer::Refuse) => Err(PublishError::Refused("invalid".into())),
                None => {
                    self.delivered.lock().unwrap().push(exit.container_id);
                    Ok(())
                }
            }
        }
    }

    use containerd_shim::protos::protobuf::Message;

    fn quick(unreachable_for: Duration) -> DeliveryPolicy {
        DeliveryPolicy {
            first_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
            unreachable_for,
            refused_attempts: 3,
        }
    }

    /// Queues a TaskExit for each id, forwards them through a fake that answers `script` first,
    /// and returns the ids the fake took in the order it took them, and its attempt count.
    async fn run(
        script: &[Answer],
        unreachable_for_id: Option<&'static str>,
        ids: &[&str],
        policy: DeliveryPolicy,
    ) -> (Vec<String>, u32) {
        let delivered = Arc::new(Mutex::new(Vec::new()));
        let attempts = Arc::new(Mutex::new(0));
        let fake = FakeContainerd {
            script: script.iter().copied().collect(),
            unreachable_for_id,
            delivered: delivered.clone(),
            attempts: attempts.clone(),
        };
        let (sink, rx) = EventSink::new();
        for id in ids {
            let mut exit = TaskExit::new();
            exit.container_id = id.to_string();
            sink.send("/tasks/exit", exit);
        }
        drop(sink);
        forward(fake, "default".into(), policy, rx).await;
        let ids = delivered.lock().unwrap().clone();
        let n = *attempts.lock().unwrap();
        (ids, n)
    }

    #[tokio::test]
    async fn events_queued_while_containerd_is_down_arrive_once_each_in_order() {
        // 40 failed attempts is far longer than the old five-try limit.
        let script = vec![Answer::Down; 40];
        let (ids, attempts) = run(
            &script,
            None,
            &["a", "b", "c"],
            quick(Duration::from_secs(60)),
        )
        .await;
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(attempts, 43);
    }

    #[tokio::test]
    async fn an_event_containerd_refuses_is_dropped_and_the_next_goes_through() {
        let script = vec![Answer::Refuse; 3];
        let (ids, attempts) = run(
            &script,
            None,
            &["refused", "next"],
            quick(Duration::from_secs(60)),
        )
        .await;
        assert_eq!(ids, ["next"]);
        assert_eq!(attempts, 4);
    }

    #[tokio::test]
    async fn a_refusal_after_an_outage_is_retried_within_its_own_budget() {
        let script = [Answer::Down, Answer::Down, Answer::Refuse, Answer::Refuse];
        let (ids, _) = run(&script, None, &["a"], quick(Duration::from_secs(60))).await;
        assert_eq!(ids, ["a"]);
    }

    #[tokio::test]
    async fn an_event_is_dropped_only_after_containerd_stays_unreachable_past_the_limit() {
        // containerd never takes "lost": it is held for the 20 ms limit, then given up on,
        // and "kept" behind it still goes through.
        let (ids, attempts) = run(
            &[],
            Some("lost"),
            &["lost", "kept"],
            quick(Duration::from_millis(20)),
        )
        .await;
        assert_eq!(ids, ["kept"]);
        assert!(attempts > 3, "held over several attempts, got {attempts}");
    }
}
