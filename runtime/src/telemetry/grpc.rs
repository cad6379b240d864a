//! OTLP/gRPC export (`OTEL_EXPORTER_OTLP_PROTOCOL=grpc`): one unary call of
//! `TraceService/Export` per batch over HTTP/2, cleartext (prior knowledge) for `http://`
//! endpoints and TLS with ALPN `h2` for `https://` ones (the web PKI's authorities), the
//! message in gRPC's length-prefixed frame. The call succeeded when the collector's
//! `grpc-status` (a trailer, or a header of a trailers-only answer) is 0.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderMap, CONTENT_TYPE};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::config::OtlpConfig;

/// `message` (an encoded `ExportTraceServiceRequest`) as one gRPC frame: not compressed, its
/// length, itself.
pub fn frame(message: &[u8]) -> Vec<u8> {
    let mut framed = Vec::with_capacity(message.len() + 5);
    framed.push(0);
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(message);
    framed
}

/// Calls `Export` at the endpoint with `message`.
pub async fn export(config: &OtlpConfig, message: &[u8]) -> Result<(), String> {
    let uri = &config.endpoint;
    let host = uri.host().ok_or("the endpoint has no host")?;
    let host = host.trim_matches(['[', ']']).to_string();
    let tls = uri.scheme_str() == Some("https");
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let mut request = hyper::Request::post(uri.clone())
        .header(CONTENT_TYPE, "application/grpc")
        .header("te", "trailers");
    for (name, value) in &config.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let request = request
        .body(Full::new(Bytes::from(frame(message))))
        .map_err(|e| format!("cannot make the request: {e}"))?;
    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    if tls {
        let mut client = (*crate::spin::tls::web_pki()).clone();
        client.alpn_protocols = vec![b"h2".to_vec()];
        let name = ServerName::try_from(host).map_err(|e| format!("not a server name: {e}"))?;
        let stream = TlsConnector::from(Arc::new(client))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        call(TokioIo::new(stream), request).await
    } else {
        call(TokioIo::new(tcp), request).await
    }
}

async fn call<IO>(io: IO, request: hyper::Request<Full<Bytes>>) -> Result<(), String>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .map_err(|e| format!("HTTP/2: {e}"))?;
    // The connection ends when the sender is dropped.
    tokio::spawn(connection);
    let response = (sender.send_request(request).await).map_err(|e| format!("HTTP/2: {e}"))?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = (response.into_body().collect().await).map_err(|e| format!("HTTP/2: {e}"))?;
    if !status.is_success() {
        return Err(format!("the collector answered {status}"));
    }
    outcome(&headers, body.trailers())
}

/// What the collector's `grpc-status` (and `grpc-message`) say.
fn outcome(headers: &HeaderMap, trailers: Option<&HeaderMap>) -> Result<(), String> {
    let field = |name: &str| {
        (trailers.and_then(|t| t.get(name)))
            .or_else(|| headers.get(name))
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    match field("grpc-status").as_deref() {
        Some("0") => Ok(()),
        Some(code) => Err(format!(
            "the collector answered grpc-status {code}: {}",
            field("grpc-message").unwrap_or_default()
        )),
        None => Err("the collector answered no grpc-status".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_statuses() {
        assert_eq!(frame(b"abc"), [0, 0, 0, 0, 3, b'a', b'b', b'c']);
        let mut ok = HeaderMap::new();
        ok.insert("grpc-status", "0".parse().unwrap());
        assert_eq!(outcome(&HeaderMap::new(), Some(&ok)), Ok(()));
        // A trailers-only answer carries the status in its headers.
        let mut denied = HeaderMap::new();
        denied.insert("grpc-status", "7".parse().unwrap());
        denied.insert("grpc-message", "no".parse().unwrap());
        assert_eq!(
            outcome(&denied, None),
            Err("the collector answered grpc-status 7: no".into())
        );
        assert!(outcome(&HeaderMap::new(), None).is_err());
    }
}
