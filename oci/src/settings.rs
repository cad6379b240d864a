//! [`Settings`]: what a workload runs with beyond its runtime spec. Each [`Knob`] is set for
//! one container by a `wasmpod.dev/` annotation of its spec, and for every container of a
//! runtime handler by a key of the handler's runtime options; the annotation wins. This
//! module parses and checks the values; what they do is the runtime's business.
//!
//! | annotation | runtime option | value |
//! | --- | --- | --- |
//! | `wasmpod.dev/wasm-features` | `WasmFeatures` | proposals to turn on or (with `-`) off, e.g. `-threads,wide-arithmetic` |
//! | `wasmpod.dev/cpu-time-limit` | `CpuTimeLimitSeconds` | whole seconds of CPU a command may use |
//! | `wasmpod.dev/http-request-timeout` | `HttpRequestTimeoutSeconds` | seconds one HTTP request may run |
//! | `wasmpod.dev/http-drain-timeout` | `HttpDrainTimeoutSeconds` | seconds a stop waits for requests in flight |
//! | `wasmpod.dev/http-max-connections` | `HttpMaxConnections` | client connections at once |
//! | `wasmpod.dev/http-instance-memory` | `HttpInstanceMemory` | bytes (or `Ki`, `Mi`, `Gi`) one request's instance may use |

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::OciError;

/// The prefix of the annotations wasmpod reads; any other annotation under it is an error.
pub const ANNOTATION_PREFIX: &str = "wasmpod.dev/";

/// One setting, as an annotation and as a runtime option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Knob {
    /// Wasm proposals on or off, beyond Wasmtime's defaults.
    WasmFeatures,
    /// Seconds of CPU time a command may use.
    CpuTimeLimit,
    /// Seconds one HTTP request may run.
    HttpRequestTimeout,
    /// Seconds a stop waits for HTTP requests in flight.
    HttpDrainTimeout,
    /// Client connections an HTTP service serves at once.
    HttpMaxConnections,
    /// Bytes of memories and tables one HTTP request's instance may use.
    HttpInstanceMemory,
}

impl Knob {
    /// Every knob.
    pub const ALL: [Knob; 6] = [
        Knob::WasmFeatures,
        Knob::CpuTimeLimit,
        Knob::HttpRequestTimeout,
        Knob::HttpDrainTimeout,
        Knob::HttpMaxConnections,
        Knob::HttpInstanceMemory,
    ];

    /// The annotation that sets it for one container.
    pub fn annotation(self) -> &'static str {
        match self {
            Knob::WasmFeatures => "wasmpod.dev/wasm-features",
            Knob::CpuTimeLimit => "wasmpod.dev/cpu-time-limit",
            Knob::HttpRequestTimeout => "wasmpod.dev/http-request-timeout",
            Knob::HttpDrainTimeout => "wasmpod.dev/http-drain-timeout",
            Knob::HttpMaxConnections => "wasmpod.dev/http-max-connections",
            Knob::HttpInstanceMemory => "wasmpod.dev/http-instance-memory",
        }
    }

    /// The runtime option that sets it for every container of a handler.
    pub fn option(self) -> &'static str {
        match self {
            Knob::WasmFeatures => "WasmFeatures",
            Knob::CpuTimeLimit => "CpuTimeLimitSeconds",
            Knob::HttpRequestTimeout => "HttpRequestTimeoutSeconds",
            Knob::HttpDrainTimeout => "HttpDrainTimeoutSeconds",
            Knob::HttpMaxConnections => "HttpMaxConnections",
            Knob::HttpInstanceMemory => "HttpInstanceMemory",
        }
    }

    /// The knob an annotation key names.
    pub fn of_annotation(key: &str) -> Option<Knob> {
        Knob::ALL.into_iter().find(|k| k.annotation() == key)
    }

    /// The knob a runtime option key names.
    pub fn of_option(key: &str) -> Option<Knob> {
        Knob::ALL.into_iter().find(|k| k.option() == key)
    }

    fn expected(self) -> String {
        match self {
            Knob::WasmFeatures => format!(
                "a comma-separated list of Wasm proposals, each turned on by its name or off by \
                 -name, from {}",
                WasmProposal::ALL.map(WasmProposal::name).join(", ")
            ),
            Knob::CpuTimeLimit => "whole seconds above 0".into(),
            Knob::HttpRequestTimeout | Knob::HttpDrainTimeout => "seconds above 0".into(),
            Knob::HttpMaxConnections => "a whole number above 0".into(),
            Knob::HttpInstanceMemory => "a size in bytes, e.g. 67108864 or 64Mi".into(),
        }
    }
}

/// A Wasm proposal that can be turned on or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WasmProposal {
    /// Shared memories and atomics (spawning threads is a separate WASI proposal).
    Threads,
    /// 128-bit SIMD.
    Simd,
    /// Relaxed SIMD, whose results may differ between CPUs.
    RelaxedSimd,
    /// 64-bit memories.
    Memory64,
    /// More than one memory per module.
    MultiMemory,
    /// Tail calls.
    TailCall,
    /// Garbage-collected structs and arrays.
    Gc,
    /// Exception handling.
    Exceptions,
    /// Typed function references.
    FunctionReferences,
    /// Extended constant expressions.
    ExtendedConst,
    /// Memories with pages smaller than 64 KiB.
    CustomPageSizes,
    /// 128-bit arithmetic instructions.
    WideArithmetic,
}

impl WasmProposal {
    /// Every proposal that can be chosen.
    pub const ALL: [WasmProposal; 12] = [
        WasmProposal::Threads,
        WasmProposal::Simd,
        WasmProposal::RelaxedSimd,
        WasmProposal::Memory64,
        WasmProposal::MultiMemory,
        WasmProposal::TailCall,
        WasmProposal::Gc,
        WasmProposal::Exceptions,
        WasmProposal::FunctionReferences,
        WasmProposal::ExtendedConst,
        WasmProposal::CustomPageSizes,
        WasmProposal::WideArithmetic,
    ];

    /// Its name in a feature list.
    pub fn name(self) -> &'static str {
        match self {
            WasmProposal::Threads => "threads",
            WasmProposal::Simd => "simd",
            WasmProposal::RelaxedSimd => "relaxed-simd",
            WasmProposal::Memory64 => "memory64",
            WasmProposal::MultiMemory => "multi-memory",
            WasmProposal::TailCall => "tail-call",
            WasmProposal::Gc => "gc",
            WasmProposal::Exceptions => "exceptions",
            WasmProposal::FunctionReferences => "function-references",
            WasmProposal::ExtendedConst => "extended-const",
            WasmProposal::CustomPageSizes => "custom-page-sizes",
            WasmProposal::WideArithmetic => "wide-arithmetic",
        }
    }
}

/// Proposals turned on (`true`) or off (`false`) over the engine's defaults; a proposal not
/// named keeps its default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WasmFeatures(pub BTreeMap<WasmProposal, bool>);

impl WasmFeatures {
    /// Parses `threads,-relaxed-simd` (spaces allowed; the last mention of a proposal wins).
    pub fn parse(list: &str) -> Result<WasmFeatures, String> {
        let mut chosen = BTreeMap::new();
        for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (name, on) = match item.strip_prefix('-') {
                Some(name) => (name, false),
                None => (item.strip_prefix('+').unwrap_or(item), true),
            };
            let proposal = WasmProposal::ALL
                .into_iter()
                .find(|p| p.name() == name)
                .ok_or_else(|| format!("{name:?} is not a Wasm proposal wasmpod can choose"))?;
            chosen.insert(proposal, on);
        }
        Ok(WasmFeatures(chosen))
    }

    /// Whether nothing differs from the defaults.
    pub fn is_default(&self) -> bool {
        self.0.is_empty()
    }
}

/// The limits of an HTTP service that were set (the runtime has the defaults).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpSettings {
    /// How long one request may run.
    pub request_timeout: Option<Duration>,
    /// How long a stop waits for requests in flight.
    pub drain_timeout: Option<Duration>,
    /// Client connections at once.
    pub max_connections: Option<usize>,
    /// Bytes one request's instance may use.
    pub instance_memory: Option<u64>,
}

/// Every knob's value for one workload (unset ones take the runtime's defaults).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// Wasm proposals on or off.
    #[serde(default)]
    pub wasm_features: WasmFeatures,
    /// Seconds of CPU time a command may use.
    #[serde(default)]
    pub cpu_time_limit_secs: Option<u64>,
    /// The limits of an HTTP service.
    #[serde(default)]
    pub http: HttpSettings,
}

impl Settings {
    /// Sets `knob` from its text; the error says what was expected.
    pub fn set(&mut self, knob: Knob, value: &str) -> Result<(), String> {
        let value = value.trim();
        let bad = || knob.expected();
        match knob {
            Knob::WasmFeatures => {
                self.wasm_features =
                    WasmFeatures::parse(value).map_err(|e| format!("{e}; expected {}", bad()))?
            }
            Knob::CpuTimeLimit => {
                self.cpu_time_limit_secs =
                    Some(value.parse().ok().filter(|s| *s > 0).ok_or_else(bad)?)
            }
            Knob::HttpRequestTimeout => {
                self.http.request_timeout = Some(parse_seconds(value).ok_or_else(bad)?)
            }
            Knob::HttpDrainTimeout => {
                self.http.drain_timeout = Some(parse_seconds(value).ok_or_else(bad)?)
            }
            Knob::HttpMaxConnections => {
                self.http.max_connections =
                    Some(value.parse().ok().filter(|n| *n > 0).ok_or_else(bad)?)
            }
            Knob::HttpInstanceMemory => {
                self.http.instance_memory = Some(parse_bytes(value).ok_or_else(bad)?)
            }
        }
        Ok(())
    }

    /// The settings a spec's annotations make: every `wasmpod.dev/` key must be a knob with a
    /// good value; other annotations are not wasmpod's.
    pub fn from_annotations<'a>(
        annotations: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> Result<Settings, OciError> {
        let mut settings = Settings::default();
        let mut ours: Vec<_> = annotations
            .into_iter()
            .filter(|(k, _)| k.starts_with(ANNOTATION_PREFIX))
            .collect();
        // One order whatever the map's, so that the first bad key is always the same one.
        ours.sort();
        for (key, value) in ours {
            let knob = Knob::of_annotation(key).ok_or_else(|| OciError::Annotation {
                key: key.clone(),
                reason: format!(
                    "not one wasmpod reads (it reads {})",
                    Knob::ALL.map(Knob::annotation).join(", ")
                ),
            })?;
            settings
                .set(knob, value)
                .map_err(|reason| OciError::Annotation {
                    key: key.clone(),
                    reason: format!("{value:?}: {reason}"),
                })?;
        }
        Ok(settings)
    }

    /// These settings with those set in `over` put on top (proposals one by one).
    pub fn overlaid(mut self, over: &Settings) -> Settings {
        self.wasm_features
            .0
            .extend(over.wasm_features.0.iter().map(|(p, on)| (*p, *on)));
        self.cpu_time_limit_secs = over.cpu_time_limit_secs.or(self.cpu_time_limit_secs);
        let (mine, theirs) = (&mut self.http, &over.http);
        mine.request_timeout = theirs.request_timeout.or(mine.request_timeout);
        mine.drain_timeout = theirs.drain_timeout.or(mine.drain_timeout);
        mine.max_connections = theirs.max_connections.or(mine.max_connections);
        mine.instance_memory = theirs.instance_memory.or(mine.instance_memory);
        self
    }
}

/// Whole or fractional seconds above 0 (and below a billion).
pub fn parse_seconds(value: &str) -> Option<Duration> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0 && *s < 1e9)
        .map(Duration::from_secs_f64)
}

/// `N`, `NKi`, `NMi` or `NGi` bytes, above 0.
pub fn parse_bytes(value: &str) -> Option<u64> {
    let value = value.trim();
    let (digits, unit) = match value.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => value.split_at(at),
        None => (value, ""),
    };
    let shift = match unit {
        "" => 0,
        "Ki" => 10,
        "Mi" => 20,
        "Gi" => 30,
        _ => return None,
    };
    let n: u64 = digits.parse().ok()?;
    n.checked_mul(1 << shift).filter(|b| *b > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn annotations(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_knob_is_read_from_its_annotation() {
        let a = annotations(&[
            (
                "wasmpod.dev/wasm-features",
                "-threads, wide-arithmetic,+memory64",
            ),
            ("wasmpod.dev/cpu-time-limit", "30"),
            ("wasmpod.dev/http-request-timeout", "2.5"),
            ("wasmpod.dev/http-drain-timeout", "1"),
            ("wasmpod.dev/http-max-connections", "10"),
            ("wasmpod.dev/http-instance-memory", "64Mi"),
            ("io.kubernetes.cri.sandbox-id", "not ours"),
        ]);
        let s = Settings::from_annotations(&a).unwrap();
        assert_eq!(
            s.wasm_features.0,
            BTreeMap::from([
                (WasmProposal::Threads, false),
                (WasmProposal::WideArithmetic, true),
                (WasmProposal::Memory64, true),
            ])
        );
        assert_eq!(s.cpu_time_limit_secs, Some(30));
        assert_eq!(s.http.request_timeout, Some(Duration::from_millis(2500)));
        assert_eq!(s.http.drain_timeout, Some(Duration::from_secs(1)));
        assert_eq!(s.http.max_connections, Some(10));
        assert_eq!(s.http.instance_memory, Some(64 << 20));
        assert_eq!(
            Settings::from_annotations(&annotations(&[])).unwrap(),
            Settings::default()
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_name_themselves() {
        for (key, value, says) in [
            (
                "wasmpod.dev/wasm-feature",
                "threads",
                "not one wasmpod reads",
            ),
            (
                "wasmpod.dev/wasm-features",
                "threads,warp-drive",
                "\"warp-drive\"",
            ),
            ("wasmpod.dev/cpu-time-limit", "1.5", "whole seconds"),
            ("wasmpod.dev/cpu-time-limit", "0", "whole seconds"),
            (
                "wasmpod.dev/http-request-timeout",
                "soon",
                "seconds above 0",
            ),
            ("wasmpod.dev/http-drain-timeout", "-1", "seconds above 0"),
            ("wasmpod.dev/http-max-connections", "0", "whole number"),
            ("wasmpod.dev/http-instance-memory", "64MB", "size in bytes"),
        ] {
            let err = Settings::from_annotations(&annotations(&[(key, value)]))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key) && err.contains(says), "{err}");
        }
    }

    #[test]
    fn annotations_go_on_top_of_handler_settings() {
        let mut handler = Settings::default();
        handler.set(Knob::WasmFeatures, "-threads,-simd").unwrap();
        handler.set(Knob::CpuTimeLimit, "60").unwrap();
        handler.set(Knob::HttpMaxConnections, "100").unwrap();
        let mut pod = Settings::default();
        pod.set(Knob::WasmFeatures, "threads").unwrap();
        pod.set(Knob::CpuTimeLimit, "5").unwrap();
        let s = handler.overlaid(&pod);
        assert_eq!(
            s.wasm_features.0,
            BTreeMap::from([(WasmProposal::Threads, true), (WasmProposal::Simd, false)])
        );
        assert_eq!(s.cpu_time_limit_secs, Some(5));
        assert_eq!(s.http.max_connections, Some(100));
    }

    #[test]
    fn knobs_are_found_by_both_names() {
        for knob in Knob::ALL {
            assert_eq!(Knob::of_annotation(knob.annotation()), Some(knob));
            assert_eq!(Knob::of_option(knob.option()), Some(knob));
        }
        assert_eq!(parse_bytes("2Gi"), Some(2 << 30));
        assert_eq!(parse_bytes("0"), None);
        assert_eq!(parse_seconds("inf"), None);
    }
}
