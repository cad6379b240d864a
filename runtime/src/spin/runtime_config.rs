//! Spin's runtime configuration file (`/runtime-config.toml` in the container when present):
//! the state directory, key-value stores and SQLite databases (`type = "spin"` with a
//! `path`), variables providers (`static`, `env`), `[[client_tls]]` (the authorities and
//! client certificate of a component's TLS connections to some hosts) and
//! `max_instance_memory`. Relative paths are relative to the file's directory. What
//! wasmpod does not implement yet is refused with its name, or (for settings that only tune
//! a service wasmpod lacks) logged and ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::kv::{StoreLocation, DEFAULT_DB_FILE};
use super::sqlite;
use super::variables::{parse_dotenv, Provider, ENV_PREFIX};

/// Where the Spin shim looks for the file.
pub const RUNTIME_CONFIG_PATH: &str = "/runtime-config.toml";

/// The state directory when the file does not set one.
pub const DEFAULT_STATE_DIR: &str = "/.spin";

/// The runtime configuration wasmpod uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// Key-value stores by label (`default` always among them).
    pub kv_stores: BTreeMap<String, StoreLocation>,
    /// SQLite databases by label (`default` always among them).
    pub sqlite_databases: BTreeMap<String, StoreLocation>,
    /// Variables providers, in order.
    pub providers: Vec<Provider>,
    /// `[[client_tls]]` tables, in order (the first that names a component and host wins).
    pub client_tls: Vec<ClientTlsSettings>,
    /// `max_instance_memory`: bytes one instance may use.
    pub max_instance_memory: Option<u64>,
}

/// One `[[client_tls]]` table: for connections of `component_ids` to `hosts` (names, no
/// ports), the authorities to trust and the certificate to present. Paths are resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTlsSettings {
    /// The components it applies to.
    pub component_ids: Vec<String>,
    /// The hosts it applies to, lower-cased.
    pub hosts: Vec<String>,
    /// Whether the web PKI's authorities are trusted (`ca_use_webpki_roots`, or
    /// `ca_use_platform_roots`: wasmpod's platform roots are the same built-in list).
    pub web_pki_roots: bool,
    /// A PEM file of more authorities to trust (`ca_roots_file`).
    pub ca_roots_file: Option<PathBuf>,
    /// The client certificate chain and its private key, PEM files (`client_cert_file`,
    /// `client_private_key_file`).
    pub client_identity: Option<(PathBuf, PathBuf)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClientTls {
    component_ids: Vec<String>,
    hosts: Vec<String>,
    ca_use_platform_roots: Option<bool>,
    ca_use_webpki_roots: Option<bool>,
    ca_roots_file: Option<String>,
    client_cert_file: Option<String>,
    client_private_key_file: Option<String>,
}

impl RawClientTls {
    fn settings(self, dir: &Path) -> Result<ClientTlsSettings, String> {
        if self.component_ids.is_empty() || self.hosts.is_empty() {
            return Err("'component_ids' and 'hosts' may not be empty".into());
        }
        let mut hosts = Vec::new();
        for host in self.hosts {
            let bad = || format!("host {host:?} is not a host name (ports are not supported)");
            let authority: hyper::http::uri::Authority = host.parse().map_err(|_| bad())?;
            if authority.port().is_some() || authority.as_str().contains('@') {
                return Err(bad());
            }
            hosts.push(
                authority
                    .host()
                    .trim_matches(['[', ']'])
                    .to_ascii_lowercase(),
            );
        }
        // As Spin decides: platform (here, built-in) roots unless roots of one's own are given.
        let web_pki_roots = match (self.ca_use_platform_roots, self.ca_use_webpki_roots) {
            (None, None) => self.ca_roots_file.is_none(),
            (platform, webpki) => platform.unwrap_or(false) || webpki.unwrap_or(false),
        };
        if !web_pki_roots && self.ca_roots_file.is_none() {
            return Err("it trusts no authority: set ca_roots_file or ca_use_webpki_roots".into());
        }
        let client_identity = match (self.client_cert_file, self.client_private_key_file) {
            (Some(cert), Some(key)) => Some((resolve(dir, &cert), resolve(dir, &key))),
            (None, None) => None,
            _ => return Err("client_cert_file and client_private_key_file go together".into()),
        };
        Ok(ClientTlsSettings {
            component_ids: self.component_ids,
            hosts,
            web_pki_roots,
            ca_roots_file: self.ca_roots_file.map(|f| resolve(dir, &f)),
            client_identity,
        })
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    state_dir: Option<String>,
    #[allow(dead_code)]
    log_dir: Option<String>,
    #[serde(default)]
    key_value_store: BTreeMap<String, RawStore>,
    #[serde(default)]
    variables_provider: Vec<RawProvider>,
    #[serde(default)]
    variable_provider: Vec<RawProvider>,
    #[serde(default)]
    sqlite_database: BTreeMap<String, RawStore>,
    llm_compute: Option<toml::Value>,
    #[serde(default)]
    client_tls: Vec<RawClientTls>,
    outbound_http: Option<toml::Value>,
    max_instance_memory: Option<u64>,
}

/// A `[key_value_store.<label>]` or `[sqlite_database.<label>]` table.
#[derive(Deserialize)]
struct RawStore {
    #[serde(rename = "type")]
    kind: String,
    path: Option<String>,
    /// Fields of other store types (`url`, ...).
    #[serde(flatten)]
    other: BTreeMap<String, toml::Value>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum RawProvider {
    Static {
        values: BTreeMap<String, String>,
    },
    Env {
        prefix: Option<String>,
        dotenv_path: Option<String>,
    },
    Vault(#[allow(dead_code)] BTreeMap<String, toml::Value>),
    AzureKeyVault(#[allow(dead_code)] BTreeMap<String, toml::Value>),
}

impl RuntimeConfig {
    /// The configuration when there is no file.
    pub fn without_file() -> RuntimeConfig {
        RuntimeConfig::from_raw(RawConfig::default(), Path::new("/")).unwrap_or(RuntimeConfig {
            kv_stores: BTreeMap::new(),
            sqlite_databases: BTreeMap::new(),
            providers: Vec::new(),
            client_tls: Vec::new(),
            max_instance_memory: None,
        })
    }

    /// Reads `path` if it exists (`None` for [`RuntimeConfig::without_file`]'s config).
    /// Errors name the file and the field.
    pub fn load(path: &Path) -> Result<RuntimeConfig, String> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(RuntimeConfig::without_file())
            }
            Err(e) => return Err(format!("{}: cannot read: {e}", path.display())),
        };
        let dir = path.parent().unwrap_or(Path::new("/"));
        RuntimeConfig::parse(&text, dir).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses the text of a runtime config whose directory is `dir`.
    pub fn parse(text: &str, dir: &Path) -> Result<RuntimeConfig, String> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| e.message().trim().to_string())?;
        RuntimeConfig::from_raw(raw, dir)
    }

    fn from_raw(raw: RawConfig, dir: &Path) -> Result<RuntimeConfig, String> {
        let ignored = [
            ("llm_compute", raw.llm_compute.is_some()),
            ("outbound_http", raw.outbound_http.is_some()),
        ];
        for (name, set) in ignored {
            if set {
                eprintln!("wasmpod: runtime config: [{name}] is not used by wasmpod yet; ignored");
            }
        }
        let state_dir = raw
            .state_dir
            .as_deref()
            .map(|d| resolve(dir, d))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
        let kv_stores = locations(
            "key_value_store",
            "key-value stores",
            state_dir.join(DEFAULT_DB_FILE),
            raw.key_value_store,
            dir,
        )?;
        let sqlite_databases = locations(
            "sqlite_database",
            "SQLite databases",
            state_dir.join(sqlite::DEFAULT_DB_FILE),
            raw.sqlite_database,
            dir,
        )?;
        let mut providers = Vec::new();
        for p in raw
            .variables_provider
            .into_iter()
            .chain(raw.variable_provider)
        {
            providers.push(match p {
                RawProvider::Static { values } => Provider::Static(values),
                RawProvider::Env {
                    prefix,
                    dotenv_path,
                } => {
                    let dotenv = match dotenv_path {
                        Some(p) => {
                            let path = resolve(dir, &p);
                            let text = std::fs::read_to_string(&path).map_err(|e| {
                                format!(
                                    "[[variables_provider]] dotenv_path {}: {e}",
                                    path.display()
                                )
                            })?;
                            parse_dotenv(&text)
                        }
                        None => BTreeMap::new(),
                    };
                    Provider::Env {
                        prefix: prefix.unwrap_or_else(|| ENV_PREFIX.to_string()),
                        dotenv,
                    }
                }
                RawProvider::Vault(_) | RawProvider::AzureKeyVault(_) => {
                    return Err(
                        "[[variables_provider]]: wasmpod supports the \"static\" and \
                                \"env\" providers only so far"
                            .into(),
                    )
                }
            });
        }
        let client_tls = (raw.client_tls.into_iter().enumerate())
            .map(|(i, t)| {
                t.settings(dir)
                    .map_err(|e| format!("[[client_tls]] #{}: {e}", i + 1))
            })
            .collect::<Result<_, _>>()?;
        Ok(RuntimeConfig {
            kv_stores,
            sqlite_databases,
            providers,
            client_tls,
            max_instance_memory: raw.max_instance_memory,
        })
    }
}

/// Where the labels of `[<section>.<label>]` tables (`key_value_store`) keep their data, with
/// `default` at `default_file` unless a table moves it; `what` names them in errors.
fn locations(
    section: &str,
    what: &str,
    default_file: PathBuf,
    tables: BTreeMap<String, RawStore>,
    dir: &Path,
) -> Result<BTreeMap<String, StoreLocation>, String> {
    let mut out = BTreeMap::new();
    out.insert("default".to_string(), StoreLocation::File(default_file));
    for (label, store) in tables {
        if !wasmpod_oci::spin::manifest::is_store_label(&label) {
            return Err(format!(
                "[{section}.{label}]: {label:?} is not a valid label"
            ));
        }
        if let (Some(field), "spin") = (store.other.keys().next(), store.kind.as_str()) {
            return Err(format!(
                "[{section}.{label}]: unknown field `{field}` for type \"spin\" (it takes \
                 `path`)"
            ));
        }
        let location = match (store.kind.as_str(), store.path) {
            ("spin", Some(path)) => StoreLocation::File(resolve(dir, &path)),
            ("spin", None) => StoreLocation::Memory,
            (other, _) => {
                return Err(format!(
                    "[{section}.{label}] type = {other:?}: wasmpod supports {what} of type \
                     \"spin\" (SQLite files) only so far"
                ))
            }
        };
        out.insert(label, location);
    }
    Ok(out)
}

fn resolve(dir: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_without_a_file() {
        let c = RuntimeConfig::load(Path::new("/nonexistent/runtime-config.toml")).unwrap();
        assert_eq!(
            c.kv_stores["default"],
            StoreLocation::File("/.spin/sqlite_key_value.db".into())
        );
        assert!(c.providers.is_empty());
    }

    #[test]
    fn stores_state_and_providers() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("vars.env"), "MY_X=1\n").unwrap();
        let text = r#"
state_dir = "state"
[key_value_store.cache]
type = "spin"
path = "/data/cache.db"
[key_value_store.scratch]
type = "spin"
[sqlite_database.orders]
type = "spin"
path = "orders.db"
[[variables_provider]]
type = "static"
values = { a = "1" }
[[variables_provider]]
type = "env"
prefix = "MY"
dotenv_path = "vars.env"
"#;
        let c = RuntimeConfig::parse(text, dir.path()).unwrap();
        assert_eq!(
            c.kv_stores["default"],
            StoreLocation::File(dir.path().join("state/sqlite_key_value.db"))
        );
        assert_eq!(
            c.kv_stores["cache"],
            StoreLocation::File("/data/cache.db".into())
        );
        assert_eq!(c.kv_stores["scratch"], StoreLocation::Memory);
        assert_eq!(
            c.sqlite_databases["default"],
            StoreLocation::File(dir.path().join("state/sqlite_db.db"))
        );
        assert_eq!(
            c.sqlite_databases["orders"],
            StoreLocation::File(dir.path().join("orders.db"))
        );
        assert_eq!(c.providers.len(), 2);
        assert!(
            matches!(&c.providers[1], Provider::Env { prefix, dotenv } if prefix == "MY" && dotenv["MY_X"] == "1")
        );
    }

    #[test]
    fn client_tls_tables_as_spin_reads_them() {
        let text =
            "[[client_tls]]\ncomponent_ids = [\"a\", \"b\"]\nhosts = [\"DB.example\", \"[::1]\"]\n\
                    ca_roots_file = \"certs/ca.pem\"\n\
                    client_cert_file = \"c.pem\"\nclient_private_key_file = \"/k.pem\"\n\n\
                    [[client_tls]]\ncomponent_ids = [\"a\"]\nhosts = [\"other\"]\n";
        let c = RuntimeConfig::parse(text, Path::new("/etc/spin")).unwrap();
        assert_eq!(
            c.client_tls,
            [
                ClientTlsSettings {
                    component_ids: vec!["a".into(), "b".into()],
                    hosts: vec!["db.example".into(), "::1".into()],
                    // Roots of one's own replace the built-in ones unless asked for.
                    web_pki_roots: false,
                    ca_roots_file: Some("/etc/spin/certs/ca.pem".into()),
                    client_identity: Some(("/etc/spin/c.pem".into(), "/k.pem".into())),
                },
                ClientTlsSettings {
                    component_ids: vec!["a".into()],
                    hosts: vec!["other".into()],
                    web_pki_roots: true,
                    ca_roots_file: None,
                    client_identity: None,
                },
            ]
        );
    }

    #[test]
    fn bad_configs_name_the_field() {
        let cases = [
            ("statedir = \"x\"", "statedir"),
            (
                "[key_value_store.r]\ntype = \"redis\"\nurl = \"redis://x\"",
                "redis",
            ),
            ("[[variables_provider]]\ntype = \"vault\"", "static"),
            (
                "[[variables_provider]]\ntype = \"static\"\nvalue = {}",
                "value",
            ),
            ("[key_value_store.c]\ntype = \"spin\"\npaht = \"x\"", "paht"),
            (
                "[sqlite_database.l]\ntype = \"libsql\"\nurl = \"https://x\"",
                "SQLite databases of type \"spin\"",
            ),
            (
                "[[client_tls]]\ncomponent_ids = [\"a\"]\nhosts = [\"x:443\"]",
                "ports are not supported",
            ),
            (
                "[[client_tls]]\ncomponent_ids = []\nhosts = [\"x\"]",
                "[[client_tls]] #1: 'component_ids' and 'hosts' may not be empty",
            ),
            (
                "[[client_tls]]\ncomponent_ids = [\"a\"]\nhosts = [\"x\"]\nca_use_webpki_roots = false",
                "trusts no authority",
            ),
            (
                "[[client_tls]]\ncomponent_ids = [\"a\"]\nhosts = [\"x\"]\nclient_cert_file = \"c\"",
                "go together",
            ),
            (
                "[[client_tls]]\ncomponent_ids = [\"a\"]\nhosts = [\"x\"]\nca_file = \"c\"",
                "ca_file",
            ),
        ];
        for (text, needle) in cases {
            let err = RuntimeConfig::parse(text, Path::new("/")).unwrap_err();
            assert!(err.contains(needle), "{needle:?} not in {err:?}");
        }
    }
}
