//! Service chaining (Spin's local service chaining): a request a component sends to
//! `http://<component>.spin.internal/<path>` is answered in-process by that component's
//! HTTP handler, as if `<path>` had been routed to it, without touching the network. The
//! caller needs the target in its `allowed_outbound_hosts` (`http://<component>.spin.internal`
//! or `http://*.spin.internal`); the target needs an HTTP trigger, and a private route
//! (`route = { private = true }`) makes it reachable only this way.
//!
//! Self-requests (Spin's intra-application requests by route) take the same way: a request
//! to a relative URL (`/path`, no host) or to `http://self.alt/path` is routed by its path
//! as a request from outside would be, in-process; the caller needs `http://self` (or
//! `https://self`) in its `allowed_outbound_hosts`.
//!
//! The components' shared state is built before the server, so it holds a [`ServiceChain`]
//! that the server connects itself to once it exists (a weak reference: the server owns the
//! components, not the other way round).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, Weak};

use hyper::{Request, Response};
use wasmtime_wasi_http::{Error as HttpError, WasiBody};

/// The domain of the components' own hosts.
pub const INTERNAL_DOMAIN: &str = ".spin.internal";

/// The host a self-request may name (some SDKs cannot send a URL without one).
pub const SELF_HOST: &str = "self.alt";

/// Whether a request to `host` (empty for a relative URL) is a self-request.
pub fn is_self(host: &str) -> bool {
    host.is_empty() || host.eq_ignore_ascii_case(SELF_HOST)
}

/// The component that `host` names, if it is `<component>.spin.internal`.
pub fn target(host: &str) -> Option<&str> {
    let host = host.strip_suffix('.').unwrap_or(host);
    let cut = host.len().checked_sub(INTERNAL_DOMAIN.len())?;
    let (component, domain) = (host.get(..cut)?, host.get(cut..)?);
    (domain.eq_ignore_ascii_case(INTERNAL_DOMAIN) && !component.is_empty()).then_some(component)
}

/// The answer to a chained request.
pub type Chained = Pin<Box<dyn Future<Output = Result<Response<WasiBody>, HttpError>> + Send>>;

/// What answers chained requests: the app's HTTP server.
pub trait Dispatch: Send + Sync {
    /// The response of `component` to `req`.
    fn dispatch(self: Arc<Self>, component: &str, req: Request<WasiBody>) -> Chained;

    /// The app's response to `req`, routed by its path (a self-request).
    fn dispatch_self(self: Arc<Self>, req: Request<WasiBody>) -> Chained;
}

/// The way from a component to the app's HTTP server, once there is one.
#[derive(Default)]
pub struct ServiceChain {
    server: OnceLock<Weak<dyn Dispatch>>,
}

impl std::fmt::Debug for ServiceChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceChain")
            .field("connected", &self.server.get().is_some())
            .finish()
    }
}

impl ServiceChain {
    /// Chained requests go to `server` from now on (the first server connected stays).
    pub fn connect(&self, server: Weak<dyn Dispatch>) {
        _ = self.server.set(server);
    }

    /// Sends `req` to `component`. Without a server (an app with no HTTP trigger, or one
    /// that has stopped) nothing can answer.
    pub fn send(&self, component: &str, req: Request<WasiBody>) -> Chained {
        match self.server.get().and_then(Weak::upgrade) {
            Some(server) => server.dispatch(component, req),
            None => no_server(&format!("serves component {component}")),
        }
    }

    /// Sends the self-request `req` to the app's HTTP server.
    pub fn send_self(&self, req: Request<WasiBody>) -> Chained {
        match self.server.get().and_then(Weak::upgrade) {
            Some(server) => server.dispatch_self(req),
            None => no_server(&format!("answers {}", req.uri().path())),
        }
    }
}

fn no_server(what: &str) -> Chained {
    eprintln!("wasmpod: no HTTP trigger {what}: the app has no HTTP server to send it to");
    Box::pin(async { Err(HttpError::DestinationNotFound) })
}

/// A chain no server is connected to yet (an app without HTTP triggers keeps it so).
pub fn unconnected() -> Arc<ServiceChain> {
    Arc::new(ServiceChain::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty, Full};

    #[test]
    fn self_requests_have_no_host_or_self_alt() {
        assert!(is_self(""));
        assert!(is_self("Self.Alt"));
        assert!(!is_self("self"));
        assert!(!is_self("example.com"));
    }

    #[test]
    fn internal_hosts_name_a_component() {
        assert_eq!(target("backend.spin.internal"), Some("backend"));
        assert_eq!(target("back-end.SPIN.Internal."), Some("back-end"));
        assert_eq!(target("spin.internal"), None);
        assert_eq!(target(".spin.internal"), None);
        assert_eq!(target("example.com"), None);
        assert_eq!(target("backend.spin.internal.example.com"), None);
        assert_eq!(target("é.spin.internal"), Some("é"));
    }

    struct Echo;

    impl Dispatch for Echo {
        fn dispatch(self: Arc<Self>, component: &str, req: Request<WasiBody>) -> Chained {
            let body = format!("{component} {}", req.uri().path());
            Box::pin(async move {
                Ok(Response::new(
                    Full::new(Bytes::from(body))
                        .map_err(|e| match e {})
                        .boxed_unsync(),
                ))
            })
        }

        fn dispatch_self(self: Arc<Self>, req: Request<WasiBody>) -> Chained {
            self.dispatch("self", req)
        }
    }

    fn request() -> Request<WasiBody> {
        Request::builder()
            .uri("http://b.spin.internal/x")
            .body(Empty::new().map_err(|e| match e {}).boxed_unsync())
            .unwrap()
    }

    #[tokio::test]
    async fn requests_reach_the_connected_server_while_it_lives() {
        let chain = unconnected();
        assert!(matches!(
            chain.send("b", request()).await,
            Err(HttpError::DestinationNotFound)
        ));
        let server: Arc<dyn Dispatch> = Arc::new(Echo);
        chain.connect(Arc::downgrade(&server));
        let body = chain
            .send("b", request())
            .await
            .unwrap()
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(body, "b /x");
        let response = chain.send_self(request()).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "self /x");
        drop(server);
        assert!(chain.send("b", request()).await.is_err());
    }
}
