//! Sends a guest's outgoing HTTPS request over a TLS configuration of the host's choosing
//! (the runtime config's `[[client_tls]]`: its authorities, its client certificate), where
//! wasmtime-wasi-http's own sender trusts only the web PKI. HTTP/1.1, one connection per
//! request, with the request's connect and first-byte timeouts.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

/// What a request's connection does after the response head: it carries the body.
pub type ConnectionIo = Box<dyn std::future::Future<Output = Result<(), Error>> + Send>;

/// The longest a step waits when the request sets no timeout (as wasmtime-wasi-http).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// Sends `request` (an `https` URI) trusting `config`; the response and its connection.
pub async fn send(
    mut request: Request<WasiBody>,
    options: Option<RequestOptions>,
    config: Arc<rustls::ClientConfig>,
) -> Result<(Response<WasiBody>, ConnectionIo), Error> {
    let uri = request.uri().clone();
    let host = uri.host().ok_or(Error::HttpRequestUriInvalid)?;
    let host = host.trim_matches(['[', ']']).to_string();
    let port = uri.port_u16().unwrap_or(443);
    let connect_timeout = options.and_then(|o| o.connect_timeout);
    let first_byte_timeout = options.and_then(|o| o.first_byte_timeout);
    let name = ServerName::try_from(host.clone()).map_err(|_| Error::HttpRequestUriInvalid)?;

    let connect = async {
        let tcp = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(Error::Connect)?;
        let tls = (TlsConnector::from(config).connect(name, tcp).await).map_err(Error::Tls)?;
        hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(Error::Hyper)
    };
    let (mut sender, connection) =
        tokio::time::timeout(connect_timeout.unwrap_or(DEFAULT_TIMEOUT), connect)
            .await
            .map_err(|_| Error::ConnectionTimeout)??;
    let connection = tokio::spawn(connection);

    // The request line carries only the path: the authority is in `Host`.
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    *request.uri_mut() = path.parse().map_err(|_| Error::HttpRequestUriInvalid)?;
    if !request.headers().contains_key(hyper::header::HOST) {
        if let Some(authority) = uri.authority() {
            if let Ok(value) = hyper::header::HeaderValue::from_str(authority.as_str()) {
                request.headers_mut().insert(hyper::header::HOST, value);
            }
        }
    }
    let response = tokio::time::timeout(
        first_byte_timeout.unwrap_or(DEFAULT_TIMEOUT),
        sender.send_request(request),
    )
    .await
    .map_err(|_| Error::ConnectionReadTimeout)?
    .map_err(Error::Hyper)?;
    let response = response.map(|body| body.map_err(Error::Hyper).boxed_unsync());
    let io: ConnectionIo = Box::new(async move {
        match connection.await {
            Ok(done) => done.map_err(Error::Hyper),
            Err(_) => Err(Error::ConnectionTerminated),
        }
    });
    Ok((response, io))
}
