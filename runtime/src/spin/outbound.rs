//! `allowed_outbound_hosts`: which hosts a component may reach. Entries are
//! `scheme://host[:port]` with `*` wildcards (`https://*`, `*://localhost:*`,
//! `https://*.example.com`), port ranges (`:8000-8100`), or `insecure:allow-all` alone.
//! Without a port an entry means its scheme's default port. An empty list allows nothing.
//! Templates (`{{ var }}`) are expanded before parsing, by the caller.

use std::net::{IpAddr, SocketAddr};

/// A parsed `allowed_outbound_hosts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedHosts {
    /// `insecure:allow-all`.
    All,
    /// Only these.
    Some(Vec<HostPattern>),
}

/// One entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    scheme: Option<String>,
    host: HostMatch,
    ports: PortMatch,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostMatch {
    Any,
    /// `*.example.com`: any subdomain (the suffix, with its dot).
    Subdomains(String),
    Exact(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PortMatch {
    Any,
    Range(u16, u16),
}

/// The default port of a scheme Spin knows.
pub fn default_port(scheme: &str) -> Option<u16> {
    Some(match scheme {
        "http" => 80,
        "https" => 443,
        "redis" | "rediss" => 6379,
        "mqtt" => 1883,
        "mqtts" => 8883,
        "postgres" => 5432,
        "mysql" => 3306,
        _ => return None,
    })
}

impl AllowedHosts {
    /// Parses the (expanded) entries of one component.
    pub fn parse(entries: &[String]) -> Result<AllowedHosts, String> {
        if entries.iter().any(|e| e == "insecure:allow-all") {
            if entries.len() > 1 {
                return Err(
                    "allowed_outbound_hosts: `insecure:allow-all` must be the only entry".into(),
                );
            }
            return Ok(AllowedHosts::All);
        }
        entries
            .iter()
            .map(|e| {
                HostPattern::parse(e).map_err(|why| format!("allowed_outbound_hosts {e:?}: {why}"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(AllowedHosts::Some)
    }

    /// Whether a request to `scheme://host:port` is allowed.
    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        match self {
            AllowedHosts::All => true,
            AllowedHosts::Some(patterns) => patterns.iter().any(|p| p.allows(scheme, host, port)),
        }
    }

    /// Whether nothing is allowed.
    pub fn is_empty(&self) -> bool {
        matches!(self, AllowedHosts::Some(p) if p.is_empty())
    }

    /// Whether a socket (`wasi:sockets`) to `addr` is allowed: by an entry whose host is `*`,
    /// that IP address, or `localhost` for a loopback address, on a matching port, whatever
    /// its scheme.
    pub fn allows_socket(&self, addr: SocketAddr) -> bool {
        match self {
            AllowedHosts::All => true,
            AllowedHosts::Some(patterns) => patterns.iter().any(|p| {
                let host_ok = match &p.host {
                    HostMatch::Any => true,
                    HostMatch::Exact(h) if h == "localhost" => addr.ip().is_loopback(),
                    HostMatch::Exact(h) => h
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .parse::<IpAddr>()
                        .is_ok_and(|ip| ip == addr.ip()),
                    HostMatch::Subdomains(_) => false,
                };
                host_ok && p.ports.allows(addr.port())
            }),
        }
    }
}

impl PortMatch {
    fn allows(&self, port: u16) -> bool {
        match self {
            PortMatch::Any => true,
            PortMatch::Range(lo, hi) => (*lo..=*hi).contains(&port),
        }
    }
}

impl HostPattern {
    fn parse(entry: &str) -> Result<HostPattern, String> {
        let (scheme, rest) = entry
            .split_once("://")
            .ok_or("it needs a scheme (`https://host`, or `*://host:port`)")?;
        if scheme.is_empty() {
            return Err("the scheme is empty".into());
        }
        let rest = rest.trim_end_matches('/');
        if rest.contains('/') {
            return Err("only a scheme, a host and a port may be given, not a path".into());
        }
        // `[v6]:port`, `host:port`, or a host alone.
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (addr, after) = v6.split_once(']').ok_or("unclosed `[`")?;
            (format!("[{addr}]"), after.strip_prefix(':'))
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (rest.to_string(), None),
            }
        };
        if host.is_empty() {
            return Err("the host is empty".into());
        }
        let host = if host == "*" {
            HostMatch::Any
        } else if let Some(suffix) = host.strip_prefix("*.") {
            HostMatch::Subdomains(format!(".{}", suffix.to_ascii_lowercase()))
        } else if host.contains('*') {
            return Err("a host wildcard must be `*` or `*.domain`".into());
        } else {
            HostMatch::Exact(host.to_ascii_lowercase())
        };
        let ports = match port {
            Some("*") => PortMatch::Any,
            Some(p) => match p.split_once('-') {
                Some((lo, hi)) => {
                    let lo: u16 = lo.parse().map_err(|_| format!("bad port {lo:?}"))?;
                    let hi: u16 = hi.parse().map_err(|_| format!("bad port {hi:?}"))?;
                    if lo > hi {
                        return Err(format!("port range {p} is empty"));
                    }
                    PortMatch::Range(lo, hi)
                }
                None => {
                    let n: u16 = p.parse().map_err(|_| format!("bad port {p:?}"))?;
                    PortMatch::Range(n, n)
                }
            },
            None => match default_port(scheme) {
                Some(n) => PortMatch::Range(n, n),
                None => {
                    return Err(format!(
                        "scheme {scheme} has no default port: give one (`{scheme}://host:port` \
                         or `:*`)"
                    ))
                }
            },
        };
        Ok(HostPattern {
            scheme: (scheme != "*").then(|| scheme.to_ascii_lowercase()),
            host,
            ports,
        })
    }

    fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        let host = host.to_ascii_lowercase();
        let scheme_ok = self.scheme.as_deref().is_none_or(|s| s == scheme);
        let host_ok = match &self.host {
            HostMatch::Any => true,
            HostMatch::Subdomains(suffix) => host.ends_with(suffix.as_str()),
            HostMatch::Exact(h) => *h == host,
        };
        scheme_ok && host_ok && self.ports.allows(port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(entries: &[&str]) -> AllowedHosts {
        AllowedHosts::parse(&entries.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn entries_allow_what_they_name() {
        let a = allowed(&[
            "https://example.com",
            "http://localhost:3000",
            "https://*.fermyon.app",
            "*://10.0.0.1:8000-8100",
            "redis://cache",
        ]);
        let cases = [
            ("https", "example.com", 443, true),
            ("https", "EXAMPLE.com", 443, true),
            ("https", "example.com", 8443, false),
            ("http", "example.com", 80, false),
            ("http", "localhost", 3000, true),
            ("http", "localhost", 3001, false),
            ("https", "a.fermyon.app", 443, true),
            ("https", "fermyon.app", 443, false),
            ("http", "10.0.0.1", 8050, true),
            ("tcp", "10.0.0.1", 8100, true),
            ("http", "10.0.0.1", 8101, false),
            ("redis", "cache", 6379, true),
            ("https", "evil.com", 443, false),
        ];
        for (scheme, host, port, want) in cases {
            assert_eq!(
                a.allows(scheme, host, port),
                want,
                "{scheme}://{host}:{port}"
            );
        }
        assert!(!allowed(&[]).allows("https", "example.com", 443));
        assert!(allowed(&[]).is_empty());
        assert!(allowed(&["insecure:allow-all"]).allows("http", "x", 1));
        assert!(allowed(&["*://*:*"]).allows("http", "anything", 9));
    }

    #[test]
    fn self_is_a_host_of_its_own() {
        let a = allowed(&["http://self"]);
        assert!(a.allows("http", "self", 80));
        assert!(!a.allows("https", "self", 443));
        assert!(allowed(&["https://self"]).allows("https", "self", 443));
    }

    #[test]
    fn sockets_match_addresses() {
        let a = allowed(&["*://localhost:6379", "*://192.168.1.2:*"]);
        assert!(a.allows_socket("127.0.0.1:6379".parse().unwrap()));
        assert!(!a.allows_socket("127.0.0.1:6380".parse().unwrap()));
        assert!(a.allows_socket("192.168.1.2:1".parse().unwrap()));
        assert!(!a.allows_socket("192.168.1.3:1".parse().unwrap()));
    }

    #[test]
    fn bad_entries_are_refused() {
        for bad in [
            "example.com",
            "https://exa*mple.com",
            "https://example.com/path",
            "ftp://example.com",
            "https://example.com:99999",
            "https://example.com:9-1",
            "://x",
        ] {
            assert!(
                AllowedHosts::parse(&[bad.to_string()]).is_err(),
                "{bad} was accepted"
            );
        }
        assert!(AllowedHosts::parse(&["insecure:allow-all".into(), "https://x".into()]).is_err());
    }
}
