//! Image names: the short forms people type (`app`, `me/app:1.0`) turned into the full
//! names containerd and Docker store (`docker.io/library/app:latest`,
//! `docker.io/me/app:1.0`), with the same rules as `docker tag`.
//!
//! `docker load` refuses an `io.containerd.image.name` that is not in the full form, so the
//! image builder writes only full names.

use crate::OciError;

/// The registry a name without one is on.
const DEFAULT_REGISTRY: &str = "docker.io";
/// The tag a name without one gets.
const DEFAULT_TAG: &str = "latest";

/// A parsed image name: `registry/repository:tag`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageName {
    registry: String,
    repository: String,
    tag: String,
}

impl ImageName {
    /// Parses `name` as `docker tag` would: a first component with a `.` or a `:`, or
    /// `localhost`, is a registry (otherwise `docker.io`); a Docker Hub name of one component
    /// is under `library/`; no tag means `latest`. Digests (`@sha256:...`) are refused: a
    /// built image gets its digest from its content.
    pub fn parse(name: &str) -> Result<ImageName, OciError> {
        let bad = |why: &str| OciError::Image(format!("invalid image name {name:?}: {why}"));
        if name.contains('@') {
            return Err(bad("a digest cannot be given to an image being built"));
        }
        let (path, tag) = match name.rsplit_once(':') {
            Some((path, tag)) if !tag.contains('/') => (path, tag),
            _ => (name, DEFAULT_TAG),
        };
        if !valid_tag(tag) {
            return Err(bad(
                "a tag is up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'",
            ));
        }
        let (registry, repository) = match path.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), rest.to_string())
            }
            Some(_) => (DEFAULT_REGISTRY.to_string(), path.to_string()),
            None => (DEFAULT_REGISTRY.to_string(), format!("library/{path}")),
        };
        if !valid_registry(&registry) {
            return Err(bad(
                "the registry must be a host name with an optional port",
            ));
        }
        if repository.is_empty() || !repository.split('/').all(valid_path_component) {
            return Err(bad(
                "each part of the repository is lower-case letters and digits, \
                 separated by '.', '_', '__' or dashes",
            ));
        }
        Ok(ImageName {
            registry,
            repository,
            tag: tag.to_string(),
        })
    }

    /// The tag alone (`1.0`).
    pub fn tag(&self) -> &str {
        &self.tag
    }
}

impl std::fmt::Display for ImageName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}:{}", self.registry, self.repository, self.tag)
    }
}

fn valid_tag(tag: &str) -> bool {
    let mut chars = tag.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric() || c == '_')
        && tag.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn valid_registry(registry: &str) -> bool {
    let (host, port) = match registry.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (registry, None),
    };
    let host_ok = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    host_ok && port_ok
}

/// `[a-z0-9]+` runs joined by `.`, `_`, `__` or any number of `-`.
fn valid_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if alnum(b) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        let ok = matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(name: &str) -> String {
        ImageName::parse(name).unwrap().to_string()
    }

    #[test]
    fn short_names_get_the_docker_hub_defaults() {
        assert_eq!(full("app"), "docker.io/library/app:latest");
        assert_eq!(full("app:1.0"), "docker.io/library/app:1.0");
        assert_eq!(full("me/app:1"), "docker.io/me/app:1");
        assert_eq!(full("me/team/app"), "docker.io/me/team/app:latest");
        assert_eq!(full("docker.io/me/app:v2"), "docker.io/me/app:v2");
    }

    #[test]
    fn registries_are_recognised_as_docker_does() {
        assert_eq!(full("localhost/app"), "localhost/app:latest");
        assert_eq!(full("localhost:5000/me/app:1"), "localhost:5000/me/app:1");
        assert_eq!(full("ghcr.io/o/app:2.1"), "ghcr.io/o/app:2.1");
        assert_eq!(ImageName::parse("ghcr.io/o/app:2.1").unwrap().tag(), "2.1");
    }

    #[test]
    fn bad_names_are_refused() {
        for name in [
            "",
            "App",
            "me/App:1",
            "app:",
            "app:-x",
            "app@sha256:00",
            "me//app",
            "-app",
            "app-",
            "a..b",
            "reg.io:port/app",
            ":1",
        ] {
            assert!(ImageName::parse(name).is_err(), "{name:?} was accepted");
        }
        assert!(ImageName::parse(&format!("app:{}", "t".repeat(129))).is_err());
    }

    #[test]
    fn separators_follow_the_distribution_grammar() {
        for ok in ["a.b", "a_b", "a__b", "a-b", "a---b", "a1"] {
            assert!(valid_path_component(ok), "{ok}");
        }
        for bad in ["a___b", "a._b", "a-.b", "_a", "a/"] {
            assert!(!valid_path_component(bad), "{bad}");
        }
    }
}
