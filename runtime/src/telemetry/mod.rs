//! OpenTelemetry traces of a Spin app: one span per HTTP request (a `server` span named
//! `METHOD route`, a child of the request's W3C `traceparent` when it has one) and one per
//! trigger run (cron tick, Redis or MQTT message), exported in batches to an OTLP endpoint
//! over HTTP or gRPC ([`config`], [`otlp`], [`grpc`]) by a task of the app's runtime. Spans are queued without
//! waiting; a full queue drops spans (said once in the log) rather than slowing requests. On
//! stop the queue is flushed, within a bound.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tokio::sync::mpsc;

pub mod config;
pub mod grpc;
pub mod otlp;

pub use config::{OtlpConfig, Protocol, TelemetryConfig};

/// Spans waiting to be exported, at most.
const QUEUE: usize = 2048;

/// Spans in one export, at most.
const MAX_BATCH: usize = 512;

/// How long a span waits for others to join its batch.
const BATCH_DELAY: Duration = Duration::from_millis(500);

/// How long the last export may take when the app stops.
const FLUSH_LIMIT: Duration = Duration::from_secs(3);

/// A span's identity: its trace and its own id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanContext {
    /// The trace it belongs to.
    pub trace_id: [u8; 16],
    /// Its own id.
    pub span_id: [u8; 8],
}

impl SpanContext {
    /// Its W3C `traceparent` header value (sampled).
    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-01",
            hex::encode(self.trace_id),
            hex::encode(self.span_id)
        )
    }

    /// The parent named by a W3C `traceparent` header (`00-<trace>-<span>-<flags>`), if it is
    /// one (all-zero ids are not).
    pub fn from_traceparent(header: &str) -> Option<SpanContext> {
        let mut parts = header.trim().split('-');
        let version = parts.next()?;
        let trace = parts.next()?;
        let span = parts.next()?;
        let flags = parts.next()?;
        if version.len() != 2 || version == "ff" || flags.len() != 2 {
            return None;
        }
        let trace_id: [u8; 16] = hex::decode(trace).ok()?.try_into().ok()?;
        let span_id: [u8; 8] = hex::decode(span).ok()?.try_into().ok()?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(SpanContext { trace_id, span_id })
    }
}

/// What a span is to its trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    /// Work inside the app (a cron tick).
    Internal,
    /// An HTTP request served.
    Server,
    /// A message received (Redis, MQTT).
    Consumer,
}

/// An attribute's value.
#[derive(Debug, Clone, PartialEq)]
pub enum AttributeValue {
    /// Text.
    Text(String),
    /// A whole number.
    Int(i64),
}

/// A span that has ended, waiting for export.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishedSpan {
    /// Its identity.
    pub context: SpanContext,
    /// Its parent's id, in the same trace.
    pub parent: Option<[u8; 8]>,
    /// Its name.
    pub name: String,
    /// Its kind.
    pub kind: SpanKind,
    /// When it started and ended (nanoseconds since the Unix epoch).
    pub start_unix_nano: u64,
    /// When it ended.
    pub end_unix_nano: u64,
    /// Its attributes.
    pub attributes: Vec<(&'static str, AttributeValue)>,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// Starts spans; a span it starts is exported when it is finished. Cheap to clone; one that
/// exports nothing ([`Tracer::off`]) makes no spans.
#[derive(Debug, Clone)]
pub struct Tracer {
    queue: Option<mpsc::Sender<FinishedSpan>>,
}

impl Tracer {
    /// A tracer that makes no spans.
    pub fn off() -> Tracer {
        Tracer { queue: None }
    }

    /// A span named `name` of `kind`, a child of `parent` (else the root of a new trace);
    /// `None` when spans are not exported.
    pub fn start(
        &self,
        name: impl Into<String>,
        kind: SpanKind,
        parent: Option<SpanContext>,
    ) -> Option<ActiveSpan> {
        let queue = self.queue.clone()?;
        let ids = uuid::Uuid::new_v4();
        let own = uuid::Uuid::new_v4();
        let mut span_id = [0u8; 8];
        span_id.copy_from_slice(&own.as_bytes()[..8]);
        let trace_id = parent.map(|p| p.trace_id).unwrap_or(*ids.as_bytes());
        Some(ActiveSpan {
            queue,
            span: FinishedSpan {
                context: SpanContext { trace_id, span_id },
                parent: parent.map(|p| p.span_id),
                name: name.into(),
                kind,
                start_unix_nano: unix_nanos(),
                end_unix_nano: 0,
                attributes: Vec::new(),
                error: None,
            },
        })
    }
}

/// A span in progress.
pub struct ActiveSpan {
    queue: mpsc::Sender<FinishedSpan>,
    span: FinishedSpan,
}

impl ActiveSpan {
    /// Its identity, for the requests it makes (their `traceparent`).
    pub fn context(&self) -> SpanContext {
        self.span.context
    }

    /// Sets its name (once what was matched is known).
    pub fn rename(&mut self, name: impl Into<String>) {
        self.span.name = name.into();
    }

    /// Adds an attribute.
    pub fn set(&mut self, key: &'static str, value: impl Into<AttributeValue>) {
        self.span.attributes.push((key, value.into()));
    }

    /// Marks it failed, with `reason`.
    pub fn fail(&mut self, reason: impl Into<String>) {
        self.span.error = Some(reason.into());
    }

    /// Ends it and queues it for export (dropped if the queue is full).
    pub fn finish(mut self) {
        self.span.end_unix_nano = unix_nanos();
        if self.queue.try_send(self.span).is_err() && !DROPPED.swap(true, Relaxed) {
            eprintln!(
                "wasmpod: telemetry: the span queue is full ({QUEUE}): spans are dropped until \
                 the collector catches up"
            );
        }
    }
}

/// Runs `run` inside `span` (if any): a failure marks the span failed with its reason.
pub async fn traced<T>(
    span: Option<ActiveSpan>,
    run: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    let result = run.await;
    if let Some(mut span) = span {
        if let Err(reason) = &result {
            span.fail(reason.clone());
        }
        span.finish();
    }
    result
}

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

/// Whether a dropped span has been reported.
static DROPPED: AtomicBool = AtomicBool::new(false);

impl From<String> for AttributeValue {
    fn from(s: String) -> Self {
        AttributeValue::Text(s)
    }
}

impl From<&str> for AttributeValue {
    fn from(s: &str) -> Self {
        AttributeValue::Text(s.to_string())
    }
}

impl From<i64> for AttributeValue {
    fn from(i: i64) -> Self {
        AttributeValue::Int(i)
    }
}

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// The app's telemetry: its [`Tracer`] and the task exporting what it records (with the way
/// to tell it to finish).
pub struct Telemetry {
    tracer: Tracer,
    exporter: Option<(
        tokio::task::JoinHandle<()>,
        tokio::sync::oneshot::Sender<()>,
    )>,
}

impl Telemetry {
    /// Starts exporting as `env` says, on the current runtime. A configuration that cannot be
    /// used is said in the log, and nothing is exported.
    pub fn start(env: &[(String, String)]) -> Telemetry {
        match TelemetryConfig::from_env(env) {
            Ok(TelemetryConfig::Off) => Telemetry {
                tracer: Tracer::off(),
                exporter: None,
            },
            Ok(TelemetryConfig::Otlp(config)) => {
                let (queue, spans) = mpsc::channel(QUEUE);
                let (stop, stopped) = tokio::sync::oneshot::channel();
                log::info!("exporting spans to {}", config.endpoint);
                Telemetry {
                    tracer: Tracer { queue: Some(queue) },
                    exporter: Some((tokio::spawn(export(spans, config, stopped)), stop)),
                }
            }
            Err(reason) => {
                eprintln!("wasmpod: telemetry is off: {reason}");
                Telemetry {
                    tracer: Tracer::off(),
                    exporter: None,
                }
            }
        }
    }

    /// The tracer the app's triggers record with.
    pub fn tracer(&self) -> Tracer {
        self.tracer.clone()
    }

    /// Exports what is still queued, waiting at most [`FLUSH_LIMIT`]; spans finished after
    /// this are not exported.
    pub async fn shutdown(self) {
        if let Some((exporter, stop)) = self.exporter {
            _ = stop.send(());
            if tokio::time::timeout(FLUSH_LIMIT, exporter).await.is_err() {
                eprintln!(
                    "wasmpod: telemetry: the last spans were not exported within {FLUSH_LIMIT:?}"
                );
            }
        }
    }
}

/// Sends the spans from `spans` in batches until every sender is gone or `stop` fires; then
/// sends what is still queued and ends.
async fn export(
    mut spans: mpsc::Receiver<FinishedSpan>,
    config: OtlpConfig,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let mut failing = false;
    let mut stopping = false;
    loop {
        let mut batch = Vec::new();
        if stopping {
            while batch.len() < MAX_BATCH {
                match spans.try_recv() {
                    Ok(span) => batch.push(span),
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                return;
            }
        } else {
            tokio::select! {
                span = spans.recv() => match span {
                    Some(span) => batch.push(span),
                    None => return,
                },
                _ = &mut stop => {
                    stopping = true;
                    continue;
                }
            }
            let deadline = tokio::time::Instant::now() + BATCH_DELAY;
            while batch.len() < MAX_BATCH && !stopping {
                tokio::select! {
                    span = tokio::time::timeout_at(deadline, spans.recv()) => match span {
                        Ok(Some(span)) => batch.push(span),
                        Ok(None) | Err(_) => break,
                    },
                    _ = &mut stop => stopping = true,
                }
            }
        }
        let count = batch.len();
        match send(&config, otlp::encode(&config.resource, batch)).await {
            Ok(()) if failing => {
                failing = false;
                eprintln!("wasmpod: telemetry: exporting to {} again", config.endpoint);
            }
            Ok(()) => {}
            Err(reason) if !failing => {
                failing = true;
                eprintln!(
                    "wasmpod: telemetry: {count} spans not exported to {}: {reason} (said once \
                     until an export succeeds)",
                    config.endpoint
                );
            }
            Err(_) => {}
        }
    }
}

/// Sends one encoded request to the endpoint, as its protocol says.
async fn send(config: &OtlpConfig, body: Vec<u8>) -> Result<(), String> {
    match config.protocol {
        Protocol::HttpProtobuf => post(config, body).await,
        Protocol::Grpc => tokio::time::timeout(config.timeout, grpc::export(config, &body))
            .await
            .map_err(|_| format!("no answer within {:?}", config.timeout))?,
    }
}

/// POSTs one encoded request to the endpoint (OTLP/HTTP).
async fn post(config: &OtlpConfig, body: Vec<u8>) -> Result<(), String> {
    let mut request = hyper::Request::post(config.endpoint.clone())
        .header(hyper::header::CONTENT_TYPE, "application/x-protobuf");
    for (name, value) in &config.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let request = request
        .body(
            Full::new(Bytes::from(body))
                .map_err(
                    |never: std::convert::Infallible| -> wasmtime_wasi_http::Error {
                        match never {}
                    },
                )
                .boxed_unsync(),
        )
        .map_err(|e| format!("cannot make the request: {e}"))?;
    let options = wasmtime_wasi_http::RequestOptions {
        connect_timeout: Some(config.timeout),
        first_byte_timeout: Some(config.timeout),
        between_bytes_timeout: Some(config.timeout),
    };
    let exchange = async {
        let (response, io) = wasmtime_wasi_http::default_send_request(request, Some(options))
            .await
            .map_err(|e| format!("{e:?}"))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{e:?}"))?
            .to_bytes();
        let _ = io.await;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!(
                "the collector answered {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ))
        }
    };
    tokio::time::timeout(config.timeout, exchange)
        .await
        .map_err(|_| format!("no answer within {:?}", config.timeout))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_headers() {
        let parent = SpanContext::from_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .unwrap();
        assert_eq!(
            hex::encode(parent.trace_id),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(hex::encode(parent.span_id), "00f067aa0ba902b7");
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-zzf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(SpanContext::from_traceparent(bad), None, "{bad:?}");
        }
    }

    #[tokio::test]
    async fn spans_are_children_of_their_parent_and_reach_the_queue() {
        let (queue, mut spans) = mpsc::channel(4);
        let tracer = Tracer { queue: Some(queue) };
        assert!(Tracer::off().start("x", SpanKind::Server, None).is_none());
        let parent = SpanContext::from_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        );
        let mut span = tracer.start("GET", SpanKind::Server, parent).unwrap();
        span.rename("GET /...");
        span.set("http.response.status_code", 500);
        span.fail("the handler failed");
        span.finish();
        let root = tracer.start("cron tick", SpanKind::Internal, None).unwrap();
        root.finish();
        let child = spans.recv().await.unwrap();
        assert_eq!(child.name, "GET /...");
        assert_eq!(child.context.trace_id, parent.unwrap().trace_id);
        assert_eq!(child.parent, Some(parent.unwrap().span_id));
        assert!(child.end_unix_nano >= child.start_unix_nano);
        assert_eq!(child.error.as_deref(), Some("the handler failed"));
        let root = spans.recv().await.unwrap();
        assert_eq!(root.parent, None);
        assert_ne!(root.context.trace_id, child.context.trace_id);
        // The encoding carries what the span holds.
        let bytes = otlp::encode(
            &[("service.name".into(), "spin".into())],
            vec![child.clone()],
        );
        let decoded =
            <otlp::ExportTraceServiceRequest as prost::Message>::decode(&bytes[..]).unwrap();
        let span = &decoded.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(span.name, "GET /...");
        assert_eq!(span.kind, 2);
        assert_eq!(span.parent_span_id, parent.unwrap().span_id.to_vec());
        assert_eq!(span.status.as_ref().unwrap().code, 2);
    }
}
