//! Where spans go, from the container's environment, as the OpenTelemetry SDKs (and Spin) read
//! it: export is on when `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as it is) or
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (plus `/v1/traces`) is set, and `OTEL_SDK_DISABLED` is not
//! `true`. `OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL` is `http/protobuf` (the default) or
//! `grpc` (OTLP/gRPC: the endpoint's scheme and authority, the `TraceService/Export` method);
//! `OTEL_EXPORTER_OTLP_[TRACES_]HEADERS` (`k=v,k=v`, values percent-decoded) and
//! `OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT` (milliseconds, default 10000) are honoured;
//! `OTEL_SERVICE_NAME` (default `spin`) and `OTEL_RESOURCE_ATTRIBUTES` describe the resource.

use std::time::Duration;

use hyper::http::uri::Uri;

/// How spans are exported.
#[derive(Debug, Clone, PartialEq)]
pub enum TelemetryConfig {
    /// Not at all: no endpoint, or `OTEL_SDK_DISABLED=true`.
    Off,
    /// To an OTLP/HTTP endpoint, protobuf-encoded.
    Otlp(OtlpConfig),
}

/// How spans travel to the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP/HTTP, a protobuf body (`http/protobuf`).
    HttpProtobuf,
    /// OTLP/gRPC over HTTP/2 (`grpc`): cleartext for `http://`, TLS for `https://`.
    Grpc,
}

/// The gRPC method spans are exported with.
pub const GRPC_EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// An OTLP traces endpoint and what to send it.
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpConfig {
    /// Where batches are POSTed (`.../v1/traces`, or the gRPC method).
    pub endpoint: Uri,
    /// How.
    pub protocol: Protocol,
    /// Extra request headers.
    pub headers: Vec<(String, String)>,
    /// How long one export may take.
    pub timeout: Duration,
    /// The resource's attributes, `service.name` first.
    pub resource: Vec<(String, String)>,
}

/// The default `service.name` (Spin's).
pub const DEFAULT_SERVICE_NAME: &str = "spin";

impl TelemetryConfig {
    /// Reads the configuration from `env` (later entries win); the error says which variable
    /// is wrong and why.
    pub fn from_env(env: &[(String, String)]) -> Result<TelemetryConfig, String> {
        let var = |name: &str| {
            env.iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        // A traces-specific variable wins over the general one.
        let traces = |name: &str| {
            let specific = name.replacen("OTEL_EXPORTER_OTLP_", "OTEL_EXPORTER_OTLP_TRACES_", 1);
            var(&specific)
                .map(|v| (specific, v))
                .or_else(|| var(name).map(|v| (name.to_string(), v)))
        };
        if var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Ok(TelemetryConfig::Off);
        }
        let protocol = match traces("OTEL_EXPORTER_OTLP_PROTOCOL") {
            None => Protocol::HttpProtobuf,
            Some((_, p)) if p == "http/protobuf" => Protocol::HttpProtobuf,
            Some((_, p)) if p == "grpc" => Protocol::Grpc,
            Some((name, protocol)) => {
                return Err(format!(
                    "{name}={protocol:?}: wasmpod exports spans with OTLP over HTTP in \
                     protobuf (http/protobuf) or over gRPC (grpc)"
                ))
            }
        };
        // (the variable, its value, the URL spans go to)
        let (name, value, url) = match (
            var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            var("OTEL_EXPORTER_OTLP_ENDPOINT"),
        ) {
            (Some(full), _) => ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", full.clone(), full),
            (None, Some(base)) if protocol == Protocol::HttpProtobuf => {
                let url = format!("{}/v1/traces", base.trim_end_matches('/'));
                ("OTEL_EXPORTER_OTLP_ENDPOINT", base, url)
            }
            (None, Some(base)) => ("OTEL_EXPORTER_OTLP_ENDPOINT", base.clone(), base),
            (None, None) => return Ok(TelemetryConfig::Off),
        };
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("{name}={value:?} is not a URL: {e}"))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.authority().is_none() {
            return Err(format!(
                "{name}={value:?} is not an http:// or https:// URL"
            ));
        }
        // gRPC calls one method at the endpoint's authority, whatever its path.
        let uri = match protocol {
            Protocol::HttpProtobuf => uri,
            Protocol::Grpc => {
                let mut parts = uri.into_parts();
                parts.path_and_query = Some(GRPC_EXPORT_PATH.parse().expect("a path"));
                Uri::from_parts(parts).map_err(|e| format!("{name}={value:?}: {e}"))?
            }
        };
        let headers = match traces("OTEL_EXPORTER_OTLP_HEADERS") {
            Some((name, list)) => {
                parse_pairs(&list).map_err(|e| format!("{name}={list:?}: {e}"))?
            }
            None => Vec::new(),
        };
        let timeout = match traces("OTEL_EXPORTER_OTLP_TIMEOUT") {
            Some((name, ms)) => Duration::from_millis(
                ms.parse()
                    .map_err(|_| format!("{name}={ms:?} is not a number of milliseconds"))?,
            ),
            None => Duration::from_secs(10),
        };
        let mut resource = match var("OTEL_RESOURCE_ATTRIBUTES") {
            Some(list) => {
                parse_pairs(&list).map_err(|e| format!("OTEL_RESOURCE_ATTRIBUTES={list:?}: {e}"))?
            }
            None => Vec::new(),
        };
        let service = var("OTEL_SERVICE_NAME")
            .or_else(|| {
                resource
                    .iter()
                    .find(|(k, _)| k == "service.name")
                    .map(|(_, v)| v.clone())
            })
            .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_string());
        resource.retain(|(k, _)| k != "service.name");
        resource.insert(0, ("service.name".to_string(), service));
        Ok(TelemetryConfig::Otlp(OtlpConfig {
            endpoint: uri,
            protocol,
            headers,
            timeout,
            resource,
        }))
    }
}

/// `k=v,k=v` with percent-encoded values (the OpenTelemetry list format).
fn parse_pairs(list: &str) -> Result<Vec<(String, String)>, String> {
    list.split(',')
        .filter(|item| !item.trim().is_empty())
        .map(|item| {
            let (k, v) = item
                .split_once('=')
                .ok_or_else(|| format!("{item:?} is not key=value"))?;
            let value = percent_decode(v.trim()).ok_or_else(|| format!("bad escape in {v:?}"))?;
            Ok((k.trim().to_string(), value))
        })
        .collect()
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_env::env;

    fn otlp(pairs: &[(&str, &str)]) -> OtlpConfig {
        match TelemetryConfig::from_env(&env(pairs)).unwrap() {
            TelemetryConfig::Otlp(c) => c,
            TelemetryConfig::Off => panic!("export is off for {pairs:?}"),
        }
    }

    #[test]
    fn off_without_an_endpoint_or_when_disabled() {
        assert_eq!(
            TelemetryConfig::from_env(&[]).unwrap(),
            TelemetryConfig::Off
        );
        let disabled = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_SDK_DISABLED", "TRUE"),
        ]);
        assert_eq!(
            TelemetryConfig::from_env(&disabled).unwrap(),
            TelemetryConfig::Off
        );
    }

    #[test]
    fn endpoints_headers_timeout_and_resource() {
        let c = otlp(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")]);
        assert_eq!(c.endpoint, "http://collector:4318/v1/traces");
        assert_eq!(c.timeout, Duration::from_secs(10));
        assert_eq!(c.resource, [("service.name".into(), "spin".into())]);
        let c = otlp(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://ignored:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "https://x.example/otlp/traces",
            ),
            ("OTEL_EXPORTER_OTLP_HEADERS", "a=1, b=two%20words"),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "2500"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "service.name=from-attrs,team=web",
            ),
        ]);
        assert_eq!(c.endpoint, "https://x.example/otlp/traces");
        assert_eq!(
            c.headers,
            [("a".into(), "1".into()), ("b".into(), "two words".into())]
        );
        assert_eq!(c.timeout, Duration::from_millis(2500));
        assert_eq!(
            c.resource,
            [
                ("service.name".into(), "from-attrs".into()),
                ("team".into(), "web".into())
            ]
        );
        let c = otlp(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_SERVICE_NAME", "shop"),
            ("OTEL_RESOURCE_ATTRIBUTES", "service.name=other"),
        ]);
        assert_eq!(c.resource, [("service.name".into(), "shop".into())]);
    }

    #[test]
    fn grpc_calls_the_export_method_at_the_endpoint() {
        let c = otlp(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ]);
        assert_eq!(c.protocol, Protocol::Grpc);
        assert_eq!(
            c.endpoint,
            format!("http://collector:4317{GRPC_EXPORT_PATH}").as_str()
        );
        let c = otlp(&[
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "https://x.example:443/ignored",
            ),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
        ]);
        assert_eq!(
            c.endpoint,
            format!("https://x.example:443{GRPC_EXPORT_PATH}").as_str()
        );
        let c = otlp(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")]);
        assert_eq!(c.protocol, Protocol::HttpProtobuf);
    }

    #[test]
    fn bad_values_are_named() {
        for (pairs, needle) in [
            (
                vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")],
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            ),
            (
                vec![
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                    ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
                ],
                "(grpc)",
            ),
            (
                vec![
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                    ("OTEL_EXPORTER_OTLP_TIMEOUT", "soon"),
                ],
                "OTEL_EXPORTER_OTLP_TIMEOUT",
            ),
            (
                vec![
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                    ("OTEL_EXPORTER_OTLP_HEADERS", "novalue"),
                ],
                "key=value",
            ),
        ] {
            let err = TelemetryConfig::from_env(&env(&pairs)).unwrap_err();
            assert!(err.contains(needle), "{err}");
            assert!(!err.contains("/v1/traces"), "the value as given: {err}");
        }
    }
}
