//! A small OTLP traces receiver of our own, on loopback: over HTTP ([`Receiver::start`]) it
//! answers `POST /v1/traces` with 200, over gRPC ([`Receiver::start_grpc`], HTTP/2 with the
//! `h2` crate) it answers `TraceService/Export` with `grpc-status: 0`; it keeps the spans it
//! was sent, read from the protobuf with a wire-format reader
//! written here (field numbers from opentelemetry-proto's `trace.proto`), not with the shim's
//! own message types, so a wrong field number in the shim shows up as a missing field here.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One span, as received.
#[derive(Debug, Clone, Default)]
pub struct ReceivedSpan {
    /// Hex trace id.
    pub trace_id: String,
    /// Hex span id.
    pub span_id: String,
    /// Hex parent span id (empty for a root).
    pub parent_span_id: String,
    /// Its name.
    pub name: String,
    /// `SpanKind` (2 = server, 5 = consumer, 1 = internal).
    pub kind: u64,
    /// String and integer attributes, as text.
    pub attributes: BTreeMap<String, String>,
    /// `Status.code` (0 unset, 2 error).
    pub status_code: u64,
    /// The `service.name` of its resource.
    pub service_name: String,
}

/// A running receiver.
pub struct Receiver {
    /// Where it listens.
    pub addr: SocketAddr,
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
}

impl Receiver {
    /// Starts one on a free loopback port (it serves until the test process ends).
    pub fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the OTLP receiver");
        let addr = listener.local_addr().expect("its address");
        let spans = Arc::new(Mutex::new(Vec::new()));
        let kept = spans.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let kept = kept.clone();
                std::thread::spawn(move || serve(stream, &kept));
            }
        });
        Receiver { addr, spans }
    }

    /// Starts one that speaks OTLP/gRPC (HTTP/2 without TLS) on a free loopback port.
    pub fn start_grpc() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the OTLP receiver");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let addr = listener.local_addr().expect("its address");
        let spans = Arc::new(Mutex::new(Vec::new()));
        let kept = spans.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the receiver");
            runtime.block_on(async move {
                let listener =
                    tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
                while let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(serve_grpc(stream, kept.clone()));
                }
            });
        });
        Receiver { addr, spans }
    }

    /// The endpoint to give `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The spans received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().expect("the span list").clone()
    }

    /// Waits (up to `limit`) until `done` holds for the spans received.
    pub fn wait_for(
        &self,
        limit: Duration,
        done: impl Fn(&[ReceivedSpan]) -> bool,
    ) -> Vec<ReceivedSpan> {
        let deadline = Instant::now() + limit;
        loop {
            let spans = self.spans();
            if done(&spans) || Instant::now() > deadline {
                return spans;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Answers the requests of one connection.
fn serve(stream: std::net::TcpStream, spans: &Mutex<Vec<ReceivedSpan>>) {
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let ok = request_line.starts_with("POST /v1/traces ");
        if ok {
            spans.lock().expect("the span list").extend(decode(&body));
        }
        let status = if ok { "200 OK" } else { "404 Not Found" };
        let reply = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
        if writer.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

/// The gRPC method an OTLP exporter calls.
const GRPC_EXPORT: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// Answers the calls of one HTTP/2 connection.
async fn serve_grpc(stream: tokio::net::TcpStream, spans: Arc<Mutex<Vec<ReceivedSpan>>>) {
    let Ok(mut connection) = h2::server::handshake(stream).await else {
        return;
    };
    while let Some(Ok((request, mut respond))) = connection.accept().await {
        let spans = spans.clone();
        tokio::spawn(async move {
            let grpc = request.uri().path() == GRPC_EXPORT
                && request
                    .headers()
                    .get("content-type")
                    .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
            let mut body = request.into_body();
            let mut bytes = Vec::new();
            while let Some(Ok(chunk)) = body.data().await {
                let _ = body.flow_control().release_capacity(chunk.len());
                bytes.extend_from_slice(&chunk);
            }
            // One uncompressed frame: a zero flag, the length, the message.
            let message = match bytes.split_first() {
                Some((0, rest)) if rest.len() >= 4 => {
                    let length = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
                    rest.get(4..4 + length as usize)
                }
                _ => None,
            };
            let status = match message {
                Some(message) if grpc => {
                    spans.lock().expect("the span list").extend(decode(message));
                    "0"
                }
                _ => "12",
            };
            let response = http::Response::builder()
                .status(200)
                .header("content-type", "application/grpc")
                .body(())
                .expect("a response");
            let Ok(mut send) = respond.send_response(response, false) else {
                return;
            };
            // An empty `ExportTraceServiceResponse`, then the status.
            let _ = send.send_data(bytes::Bytes::from_static(&[0, 0, 0, 0, 0]), false);
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", http::HeaderValue::from_static(status));
            let _ = send.send_trailers(trailers);
        });
    }
}

/// A protobuf field: its number and its value (a varint or fixed number, or bytes).
enum Field<'a> {
    Number(u64),
    Bytes(&'a [u8]),
}

/// The fields of one message.
fn fields(mut bytes: &[u8]) -> Vec<(u64, Field<'_>)> {
    fn varint(bytes: &mut &[u8]) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = bytes.split_first()?;
            *bytes = rest;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let Some(key) = varint(&mut bytes) else { break };
        let value = match key & 7 {
            0 => match varint(&mut bytes) {
                Some(v) => Field::Number(v),
                None => break,
            },
            1 if bytes.len() >= 8 => {
                let (n, rest) = bytes.split_at(8);
                bytes = rest;
                Field::Number(u64::from_le_bytes(n.try_into().expect("8 bytes")))
            }
            5 if bytes.len() >= 4 => {
                let (n, rest) = bytes.split_at(4);
                bytes = rest;
                Field::Number(u64::from(u32::from_le_bytes(
                    n.try_into().expect("4 bytes"),
                )))
            }
            2 => {
                let Some(len) = varint(&mut bytes) else { break };
                let len = len as usize;
                if bytes.len() < len {
                    break;
                }
                let (v, rest) = bytes.split_at(len);
                bytes = rest;
                Field::Bytes(v)
            }
            _ => break,
        };
        out.push((key >> 3, value));
    }
    out
}

fn submessages(bytes: &[u8], number: u64) -> Vec<&[u8]> {
    fields(bytes)
        .into_iter()
        .filter_map(|(n, f)| match f {
            Field::Bytes(b) if n == number => Some(b),
            _ => None,
        })
        .collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `KeyValue` (1 key, 2 `AnyValue`: 1 string, 3 int) as (key, text).
fn key_value(bytes: &[u8]) -> (String, String) {
    let mut key = String::new();
    let mut value = String::new();
    for (n, f) in fields(bytes) {
        match (n, f) {
            (1, Field::Bytes(b)) => key = text(b),
            (2, Field::Bytes(any)) => {
                for (n, f) in fields(any) {
                    match (n, f) {
                        (1, Field::Bytes(s)) => value = text(s),
                        (3, Field::Number(i)) => value = (i as i64).to_string(),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    (key, value)
}

/// The spans of an `ExportTraceServiceRequest` (1 `ResourceSpans`: 1 `Resource` with 1
/// attributes, 2 `ScopeSpans` with 2 spans).
fn decode(request: &[u8]) -> Vec<ReceivedSpan> {
    let mut out = Vec::new();
    for resource_spans in submessages(request, 1) {
        let service_name = submessages(resource_spans, 1)
            .into_iter()
            .flat_map(|resource| submessages(resource, 1))
            .map(key_value)
            .find(|(k, _)| k == "service.name")
            .map(|(_, v)| v)
            .unwrap_or_default();
        for scope_spans in submessages(resource_spans, 2) {
            for span in submessages(scope_spans, 2) {
                let mut received = ReceivedSpan {
                    service_name: service_name.clone(),
                    ..Default::default()
                };
                for (n, f) in fields(span) {
                    match (n, f) {
                        (1, Field::Bytes(b)) => received.trace_id = hex::encode(b),
                        (2, Field::Bytes(b)) => received.span_id = hex::encode(b),
                        (4, Field::Bytes(b)) => received.parent_span_id = hex::encode(b),
                        (5, Field::Bytes(b)) => received.name = text(b),
                        (6, Field::Number(k)) => received.kind = k,
                        (9, Field::Bytes(kv)) => {
                            let (k, v) = key_value(kv);
                            received.attributes.insert(k, v);
                        }
                        (15, Field::Bytes(status)) => {
                            for (n, f) in fields(status) {
                                if let (3, Field::Number(code)) = (n, f) {
                                    received.status_code = code;
                                }
                            }
                        }
                        _ => {}
                    }
                }
                out.push(received);
            }
        }
    }
    out
}
