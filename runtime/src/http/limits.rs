//! The limits an HTTP service runs under. Each has a default, which the handler's runtime
//! options and the container's `wasmpod.dev/http-*` annotations change (see
//! `wasmpod_oci::settings`), and the container's environment changes last (so `ctr run
//! --env`, `docker run -e` and a pod's `env` all set them):
//!
//! | variable | meaning | default |
//! | --- | --- | --- |
//! | `WASMPOD_HTTP_REQUEST_TIMEOUT` | seconds one request's instance may run; past it the request is stopped (500 if no response was sent yet) | 600 |
//! | `WASMPOD_HTTP_DRAIN_TIMEOUT` | seconds a stop signal waits for requests in flight before the service exits anyway | 25 |
//! | `WASMPOD_HTTP_MAX_CONNECTIONS` | open client connections at once; more wait in the listen backlog | 1024 |
//! | `WASMPOD_HTTP_INSTANCE_MEMORY` (for Spin apps also `SPIN_MAX_INSTANCE_MEMORY`) | bytes (suffix `Ki`, `Mi`, `Gi` allowed) one instance's memories and tables may use, below the container's own cap | the container's cap |

use std::time::Duration;

use wasmpod_oci::settings::{parse_bytes as bytes, parse_seconds, HttpSettings};

use crate::RuntimeError;

/// Seconds one request may run: `WASMPOD_HTTP_REQUEST_TIMEOUT`.
pub const REQUEST_TIMEOUT_ENV: &str = "WASMPOD_HTTP_REQUEST_TIMEOUT";
/// Seconds a stop waits for requests in flight: `WASMPOD_HTTP_DRAIN_TIMEOUT`.
pub const DRAIN_TIMEOUT_ENV: &str = "WASMPOD_HTTP_DRAIN_TIMEOUT";
/// Open connections at once: `WASMPOD_HTTP_MAX_CONNECTIONS`.
pub const MAX_CONNECTIONS_ENV: &str = "WASMPOD_HTTP_MAX_CONNECTIONS";
/// Memory of one instance: `WASMPOD_HTTP_INSTANCE_MEMORY`.
pub const INSTANCE_MEMORY_ENV: &str = "WASMPOD_HTTP_INSTANCE_MEMORY";
/// The Spin shim's name for [`INSTANCE_MEMORY_ENV`] (bytes), read when that is not set.
pub const SPIN_MAX_INSTANCE_MEMORY_ENV: &str = "SPIN_MAX_INSTANCE_MEMORY";

/// The limits of one HTTP service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLimits {
    /// How long one request's instance may run.
    pub request_timeout: Duration,
    /// How long a stop signal waits for requests in flight.
    pub drain_timeout: Duration,
    /// Client connections served at once.
    pub max_connections: usize,
    /// Bytes of memories and tables one instance may use (below the container's cap).
    pub instance_memory: Option<u64>,
}

impl Default for HttpLimits {
    fn default() -> HttpLimits {
        HttpLimits {
            request_timeout: Duration::from_secs(600),
            drain_timeout: Duration::from_secs(25),
            max_connections: 1024,
            instance_memory: None,
        }
    }
}

impl HttpLimits {
    /// The limits set in `env` (the last value of a name wins), then those in `settings`,
    /// defaults for the rest.
    pub fn resolve(
        settings: &HttpSettings,
        env: &[(String, String)],
    ) -> Result<HttpLimits, RuntimeError> {
        let get = |name: &str| {
            env.iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.trim())
        };
        let defaults = HttpLimits::default();
        let mut limits = HttpLimits {
            request_timeout: settings.request_timeout.unwrap_or(defaults.request_timeout),
            drain_timeout: settings.drain_timeout.unwrap_or(defaults.drain_timeout),
            max_connections: settings.max_connections.unwrap_or(defaults.max_connections),
            instance_memory: settings.instance_memory,
        };
        if let Some(v) = get(REQUEST_TIMEOUT_ENV) {
            limits.request_timeout = seconds(REQUEST_TIMEOUT_ENV, v)?;
        }
        if let Some(v) = get(DRAIN_TIMEOUT_ENV) {
            limits.drain_timeout = seconds(DRAIN_TIMEOUT_ENV, v)?;
        }
        if let Some(v) = get(MAX_CONNECTIONS_ENV) {
            limits.max_connections = v
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| bad(MAX_CONNECTIONS_ENV, v, "a whole number above 0"))?;
        }
        let memory = get(INSTANCE_MEMORY_ENV)
            .map(|v| (INSTANCE_MEMORY_ENV, v))
            .or_else(|| {
                get(SPIN_MAX_INSTANCE_MEMORY_ENV).map(|v| (SPIN_MAX_INSTANCE_MEMORY_ENV, v))
            });
        if let Some((name, v)) = memory {
            limits.instance_memory = Some(
                bytes(v).ok_or_else(|| bad(name, v, "a size in bytes, e.g. 67108864 or 64Mi"))?,
            );
        }
        Ok(limits)
    }
}

/// Descriptors kept back for the runtime itself (stdio, the listener, epoll, the cache's
/// mapped files, pipes).
const RESERVED_FDS: u64 = 64;

/// How many instances and connections fit in the process's descriptor limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdBudget {
    /// Instances alive at once (each opens the guest's preopened directories).
    pub instances: usize,
    /// Client connections open at once.
    pub connections: usize,
}

impl FdBudget {
    /// With `open_files` descriptors allowed (`RLIMIT_NOFILE`), instances that open
    /// `fds_per_instance` each, at most `max_instances` of them (the pool's slots) and at most
    /// `limits.max_connections` connections: half of what is left after [`RESERVED_FDS`] goes
    /// to instances, the rest to connections; never below one of each.
    pub fn new(
        open_files: u64,
        fds_per_instance: u64,
        max_instances: usize,
        limits: &HttpLimits,
    ) -> FdBudget {
        let spare = open_files.saturating_sub(RESERVED_FDS);
        let per_instance = fds_per_instance.max(1);
        let instances = ((spare / 2) / per_instance).clamp(1, max_instances as u64);
        let connections = spare
            .saturating_sub(instances * per_instance)
            .clamp(1, limits.max_connections as u64);
        FdBudget {
            instances: instances as usize,
            connections: connections as usize,
        }
    }
}

fn bad(name: &str, value: &str, expected: &str) -> RuntimeError {
    RuntimeError::Serve(format!("{name}={value:?}: expected {expected}"))
}

/// Whole or fractional seconds above 0.
fn seconds(name: &str, value: &str) -> Result<Duration, RuntimeError> {
    parse_seconds(value).ok_or_else(|| bad(name, value, "seconds above 0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_env::env;

    #[test]
    fn defaults_and_overrides() {
        assert_eq!(
            HttpLimits::resolve(&HttpSettings::default(), &[]).unwrap(),
            HttpLimits::default()
        );
        let l = HttpLimits::resolve(
            &HttpSettings::default(),
            &env(&[
                (REQUEST_TIMEOUT_ENV, "2.5"),
                (DRAIN_TIMEOUT_ENV, "1"),
                (MAX_CONNECTIONS_ENV, "10"),
                (INSTANCE_MEMORY_ENV, "64Mi"),
                (MAX_CONNECTIONS_ENV, "12"),
            ]),
        )
        .unwrap();
        assert_eq!(l.request_timeout, Duration::from_millis(2500));
        assert_eq!(l.drain_timeout, Duration::from_secs(1));
        assert_eq!(l.max_connections, 12, "the last value wins");
        assert_eq!(l.instance_memory, Some(64 << 20));
        assert_eq!(bytes("1048576"), Some(1 << 20));
        assert_eq!(bytes("2Gi"), Some(2 << 30));
    }

    #[test]
    fn the_environment_goes_over_the_settings() {
        let settings = HttpSettings {
            request_timeout: Some(Duration::from_secs(5)),
            max_connections: Some(7),
            instance_memory: Some(32 << 20),
            ..Default::default()
        };
        let l = HttpLimits::resolve(&settings, &env(&[(MAX_CONNECTIONS_ENV, "9")])).unwrap();
        assert_eq!(l.request_timeout, Duration::from_secs(5));
        assert_eq!(l.drain_timeout, HttpLimits::default().drain_timeout);
        assert_eq!(l.max_connections, 9);
        assert_eq!(l.instance_memory, Some(32 << 20));
    }

    #[test]
    fn descriptors_bound_instances_and_connections() {
        let limits = HttpLimits::default();
        // A roomy limit: the pool and the connection cap are the bounds.
        let roomy = FdBudget::new(1 << 20, 8, 128, &limits);
        assert_eq!((roomy.instances, roomy.connections), (128, 1024));
        // ctr's default of 1024 with 8 descriptors an instance: 60 instances, and the
        // connections get what is left.
        let tight = FdBudget::new(1024, 8, 128, &limits);
        assert_eq!(tight.instances, 60);
        assert_eq!(tight.connections, 1024 - 64 - 60 * 8);
        assert!(tight.instances as u64 * 8 + tight.connections as u64 + 64 <= 1024);
        let starved = FdBudget::new(10, 8, 128, &limits);
        assert_eq!((starved.instances, starved.connections), (1, 1));
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (name, value) in [
            (REQUEST_TIMEOUT_ENV, "soon"),
            (REQUEST_TIMEOUT_ENV, "0"),
            (DRAIN_TIMEOUT_ENV, "-1"),
            (MAX_CONNECTIONS_ENV, "0"),
            (INSTANCE_MEMORY_ENV, "64MB"),
            (INSTANCE_MEMORY_ENV, "0"),
        ] {
            let err = HttpLimits::resolve(&HttpSettings::default(), &env(&[(name, value)]))
                .unwrap_err()
                .to_string();
            assert!(err.contains(name) && err.contains(value), "{err}");
        }
    }
}
