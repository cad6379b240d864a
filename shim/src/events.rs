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

/// How often one event is tried before it is dropped (with an error in the log).
const ATTEMPTS: u32 = 5;

/// Forwards queued events to containerd's ttrpc `Events` service at `address`, in order, one
/// at a time (a failed event is retried before any later one is sent), until every sink is
/// dropped and the queue is empty.
pub async fn forward(
    address: String,
    namespace: String,
    mut rx: mpsc::UnboundedReceiver<QueuedEvent>,
) {
    let mut client: Option<EventsClient> = None;
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
        let mut sent = false;
        for attempt in 0..ATTEMPTS {
            if client.is_none() {
                client = connect(&address).ok().map(|fd| {
                    // SAFETY: `fd` is a freshly connected unix socket that we own.
                    EventsClient::new(unsafe { Client::from_raw_unix_socket_fd(fd) })
                });
            }
            if let Some(c) = &client {
                match c.forward(Context::default(), &req).await {
                    Ok(_) => {
                        sent = true;
                        break;
                    }
                    Err(e) => {
                        log::warn!("publish {} (attempt {}): {e}", item.topic, attempt + 1);
                        client = None;
                    }
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(50 << attempt)).await;
        }
        if !sent {
            log::error!("event {} dropped after {ATTEMPTS} attempts", item.topic);
        }
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
