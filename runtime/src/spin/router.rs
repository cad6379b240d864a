//! Spin's HTTP routing, as a pure function of the app's routes and a request path, and the
//! `spin-*` headers a routed request carries.
//!
//! Rules (Spin's): a route is made absolute and loses one trailing `/`; a trailing `/...`
//! (or `/*`) makes it a wildcard; `:name` segments capture one segment. An exact route beats
//! a wildcard, a longer prefix beats a shorter one, a literal segment beats a capture. Two
//! triggers with the same route: the last one wins (and the load logs it). Private routes
//! are not routable. Routes under `/.well-known/spin/` are the runtime's own.

use std::collections::BTreeMap;

/// The prefix of the runtime's own routes.
pub const WELL_KNOWN_PREFIX: &str = "/.well-known/spin/";

/// One segment of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Capture(String),
}

/// A routable route.
#[derive(Debug, Clone)]
struct Route<T> {
    /// As written in the manifest.
    raw: String,
    /// Made absolute, one trailing `/` stripped.
    based: String,
    segments: Vec<Segment>,
    wildcard: bool,
    target: T,
}

/// A router over targets of type `T` (what answers a route).
#[derive(Debug, Clone)]
pub struct Router<T> {
    routes: Vec<Route<T>>,
}

/// A route that another trigger's route replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateRoute {
    /// The route.
    pub route: String,
    /// The trigger whose route is unreachable.
    pub replaced: String,
    /// The trigger that answers it.
    pub effective: String,
}

/// A request path matched to a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch<'r, T> {
    /// What answers.
    pub target: &'r T,
    /// The route as written.
    pub raw_route: &'r str,
    /// The route made absolute (`spin-matched-route`).
    pub based_route: &'r str,
    /// The part of the path the wildcard matched (`spin-path-info`).
    pub path_info: String,
    /// `:name` captures.
    pub captures: BTreeMap<String, String>,
}

impl<'r, T> RouteMatch<'r, T> {
    /// The match of a request sent straight to `target` (service chaining): the whole
    /// `path` is the wildcard's part of the route `/...`.
    pub fn synthetic(target: &'r T, path: &str) -> Self {
        RouteMatch {
            target,
            raw_route: "/...",
            based_route: "/...",
            path_info: path.to_string(),
            captures: BTreeMap::new(),
        }
    }

    /// The route without its trailing wildcard (`spin-component-route`).
    pub fn component_route(&self) -> &'r str {
        self.raw_route
            .strip_suffix("/...")
            .or_else(|| self.raw_route.strip_suffix("/*"))
            .unwrap_or(self.raw_route)
    }

    /// The headers Spin adds to a routed request, for a request to `full_url` from `client`.
    pub fn spin_headers(&self, full_url: &str, client: &str) -> Vec<(String, String)> {
        let mut headers = vec![
            ("spin-full-url".to_string(), full_url.to_string()),
            ("spin-path-info".to_string(), self.path_info.clone()),
            (
                "spin-matched-route".to_string(),
                self.based_route.to_string(),
            ),
            ("spin-base-path".to_string(), "/".to_string()),
            (
                "spin-raw-component-route".to_string(),
                self.raw_route.to_string(),
            ),
            (
                "spin-component-route".to_string(),
                self.component_route().to_string(),
            ),
            ("spin-client-addr".to_string(), client.to_string()),
        ];
        for (name, value) in &self.captures {
            headers.push((
                format!("spin-path-match-{}", name.replace('_', "-").to_lowercase()),
                value.clone(),
            ));
        }
        headers
    }
}

impl<T> Router<T> {
    /// A router over `routes` (trigger id, route as written, target), in manifest order.
    /// Returns the routes that a later duplicate replaced, for the caller to log.
    pub fn build(
        routes: impl IntoIterator<Item = (String, String, T)>,
    ) -> Result<(Router<T>, Vec<DuplicateRoute>), String> {
        let mut built: Vec<(String, Route<T>)> = Vec::new();
        let mut duplicates = Vec::new();
        for (trigger, raw, target) in routes {
            let route = parse(&raw, target).map_err(|e| format!("trigger {trigger}: {e}"))?;
            if let Some(i) = built.iter().position(|(_, r)| r.raw == route.raw) {
                let (replaced, _) = built.remove(i);
                duplicates.push(DuplicateRoute {
                    route: route.raw.clone(),
                    replaced,
                    effective: trigger.clone(),
                });
                built.insert(i, (trigger, route));
            } else {
                built.push((trigger, route));
            }
        }
        Ok((
            Router {
                routes: built.into_iter().map(|(_, r)| r).collect(),
            },
            duplicates,
        ))
    }

    /// The best route for `path` (no query), if any.
    pub fn route(&self, path: &str) -> Option<RouteMatch<'_, T>> {
        let trailing_slash = path.len() > 1 && path.ends_with('/');
        let parts: Vec<&str> = path
            .trim_start_matches('/')
            .trim_end_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        let mut best: Option<(Rank, &Route<T>, BTreeMap<String, String>)> = None;
        for route in &self.routes {
            let Some(captures) = matches(route, &parts) else {
                continue;
            };
            let rank = Rank::of(route);
            if best.as_ref().is_none_or(|(b, _, _)| rank > *b) {
                best = Some((rank, route, captures));
            }
        }
        let (_, route, captures) = best?;
        let path_info = if route.wildcard {
            let rest = parts[route.segments.len()..].join("/");
            match (rest.is_empty(), trailing_slash || path == "/") {
                (true, false) => String::new(),
                (true, true) => "/".to_string(),
                (false, false) => format!("/{rest}"),
                (false, true) => format!("/{rest}/"),
            }
        } else {
            String::new()
        };
        Some(RouteMatch {
            target: &route.target,
            raw_route: &route.raw,
            based_route: &route.based,
            path_info,
            captures,
        })
    }

    /// Whether any route lies under [`WELL_KNOWN_PREFIX`] (it can never be reached).
    pub fn reserved_routes(&self) -> Vec<&str> {
        self.routes
            .iter()
            .filter(|r| format!("{}/", r.based).starts_with(WELL_KNOWN_PREFIX))
            .map(|r| r.raw.as_str())
            .collect()
    }
}

/// How specific a route is: exact beats wildcard, then more segments, then literal
/// segments before captures, position by position.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Rank {
    exact: bool,
    length: usize,
    literals: Vec<bool>,
}

impl Rank {
    fn of<T>(route: &Route<T>) -> Rank {
        Rank {
            exact: !route.wildcard,
            length: route.segments.len(),
            literals: route
                .segments
                .iter()
                .map(|s| matches!(s, Segment::Literal(_)))
                .collect(),
        }
    }
}

fn matches<T>(route: &Route<T>, parts: &[&str]) -> Option<BTreeMap<String, String>> {
    let n = route.segments.len();
    if parts.len() < n || (!route.wildcard && parts.len() != n) {
        return None;
    }
    let mut captures = BTreeMap::new();
    for (segment, part) in route.segments.iter().zip(parts) {
        match segment {
            Segment::Literal(l) if l == part => {}
            Segment::Literal(_) => return None,
            Segment::Capture(name) => {
                captures.insert(name.clone(), (*part).to_string());
            }
        }
    }
    Some(captures)
}

fn parse<T>(raw: &str, target: T) -> Result<Route<T>, String> {
    let absolute = if raw.starts_with('/') {
        raw.to_string()
    } else {
        format!("/{raw}")
    };
    let based = absolute
        .strip_suffix('/')
        .map(str::to_string)
        .unwrap_or(absolute);
    let (prefix, wildcard) = match based
        .strip_suffix("/...")
        .or_else(|| based.strip_suffix("/*"))
    {
        Some(prefix) => (prefix, true),
        None if based == "/..." || based == "/*" => ("", true),
        None => (based.as_str(), false),
    };
    let mut segments = Vec::new();
    for part in prefix.split('/').filter(|s| !s.is_empty()) {
        if let Some(name) = part.strip_prefix(':') {
            if name.is_empty() {
                return Err(format!("route {raw:?}: a capture needs a name (`:name`)"));
            }
            segments.push(Segment::Capture(name.to_string()));
        } else if part == "..." || part.contains('*') {
            return Err(format!(
                "route {raw:?}: a wildcard may only end a route (`/...`)"
            ));
        } else {
            segments.push(Segment::Literal(part.to_string()));
        }
    }
    Ok(Route {
        raw: raw.to_string(),
        based,
        segments,
        wildcard,
        target,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(routes: &[(&str, &str)]) -> Router<String> {
        let (r, dups) = Router::build(
            routes
                .iter()
                .map(|(id, route)| (id.to_string(), route.to_string(), id.to_string())),
        )
        .unwrap();
        assert!(dups.is_empty(), "{dups:?}");
        r
    }

    fn target(r: &Router<String>, path: &str) -> Option<String> {
        r.route(path).map(|m| m.target.clone())
    }

    #[test]
    fn precedence() {
        let r = router(&[
            ("all", "/..."),
            ("one", "/one/..."),
            ("onetwo", "/one/two/..."),
            ("exact", "/one/two"),
            ("user", "/users/:id"),
            ("me", "/users/me"),
            ("root", "/"),
        ]);
        let cases = [
            ("/one/two/three", "onetwo"),
            ("/one/two", "exact"),
            ("/one/two/", "exact"),
            ("/one", "one"),
            ("/one/x", "one"),
            ("/users/42", "user"),
            ("/users/me", "me"),
            ("/users/42/x", "all"),
            ("/", "root"),
            ("/anything", "all"),
        ];
        for (path, want) in cases {
            assert_eq!(target(&r, path).as_deref(), Some(want), "{path}");
        }
        // Order does not matter.
        let r = router(&[("onetwo", "/one/two/..."), ("one", "/one/...")]);
        assert_eq!(target(&r, "/one/two/x").as_deref(), Some("onetwo"));
    }

    #[test]
    fn no_match_is_none() {
        let r = router(&[("a", "/a"), ("b", "/b/...")]);
        assert_eq!(target(&r, "/c"), None);
        assert_eq!(target(&r, "/a/b"), None);
        assert_eq!(target(&r, "/"), None);
    }

    #[test]
    fn path_info_keeps_trailing_slashes() {
        let r = router(&[("t", "/test/..."), ("all", "/...")]);
        let info = |p: &str| r.route(p).unwrap().path_info;
        assert_eq!(info("/test"), "");
        assert_eq!(info("/test/"), "/");
        assert_eq!(info("/test/hello"), "/hello");
        assert_eq!(info("/test/hello/"), "/hello/");
        assert_eq!(info("/1/2/3"), "/1/2/3");
        assert_eq!(info("/"), "/");
    }

    #[test]
    fn captures_become_headers() {
        let r = router(&[("u", "/users/:user_id/..."), ("e", "/e")]);
        let m = r.route("/users/42/posts").unwrap();
        assert_eq!(m.captures["user_id"], "42");
        let headers = m.spin_headers("http://h/users/42/posts", "1.2.3.4:5");
        assert!(headers.contains(&("spin-path-match-user-id".into(), "42".into())));
        // The headers SPIN.md's table lists, for route /foo/... and a request to /foo/bar.
        let r = router(&[("foo", "/foo/...")]);
        let m = r.route("/foo/bar").unwrap();
        let url = "https://fermyon.dev/foo/bar?key1=value1&key2=value2";
        let headers: BTreeMap<String, String> =
            m.spin_headers(url, "127.0.0.1:8777").into_iter().collect();
        let want: BTreeMap<String, String> = [
            ("spin-full-url", url),
            ("spin-path-info", "/bar"),
            ("spin-matched-route", "/foo/..."),
            ("spin-base-path", "/"),
            ("spin-raw-component-route", "/foo/..."),
            ("spin-component-route", "/foo"),
            ("spin-client-addr", "127.0.0.1:8777"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(headers, want);
    }

    #[test]
    fn a_chained_request_matches_the_whole_path() {
        let m = RouteMatch::synthetic(&7, "/api/items");
        let headers = m.spin_headers("http://b.spin.internal/api/items?x=1", "0.0.0.0:0");
        let get = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("spin-path-info"), Some("/api/items"));
        assert_eq!(get("spin-matched-route"), Some("/..."));
        assert_eq!(get("spin-component-route"), Some(""));
        assert_eq!(
            get("spin-full-url"),
            Some("http://b.spin.internal/api/items?x=1")
        );
        assert_eq!(*m.target, 7);
    }

    #[test]
    fn duplicates_last_wins_and_are_reported() {
        let (r, dups) = Router::build([
            ("first".to_string(), "/foo".to_string(), 1),
            ("other".to_string(), "/bar".to_string(), 2),
            ("second".to_string(), "/foo".to_string(), 3),
        ])
        .unwrap();
        assert_eq!(*r.route("/foo").unwrap().target, 3);
        assert_eq!(
            dups,
            [DuplicateRoute {
                route: "/foo".into(),
                replaced: "first".into(),
                effective: "second".into()
            }]
        );
    }

    #[test]
    fn routes_are_normalized() {
        let r = router(&[("a", "api/"), ("w", "/w/*")]);
        let m = r.route("/api").unwrap();
        assert_eq!(m.based_route, "/api");
        assert_eq!(m.raw_route, "api/");
        assert_eq!(r.route("/w/x").unwrap().path_info, "/x");
        assert_eq!(r.route("/w/x").unwrap().component_route(), "/w");
    }

    #[test]
    fn bad_and_reserved_routes() {
        let err = Router::build([("t".to_string(), "/a/.../b".to_string(), ())]).unwrap_err();
        assert!(
            err.contains("trigger t") && err.contains("/a/.../b"),
            "{err}"
        );
        assert!(Router::build([("t".to_string(), "/a/:".to_string(), ())]).is_err());
        let r = router(&[
            ("x", "/.well-known/spin/..."),
            ("y", "/.well-known/spindle"),
        ]);
        assert_eq!(r.reserved_routes(), ["/.well-known/spin/..."]);
    }
}
