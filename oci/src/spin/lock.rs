//! A Spin app from a locked app (`spin.lock` JSON), as `spin registry push` stores it in the
//! last layer of an image (media type [`LOCKED_APP_LAYER`]): component sources and files
//! name other layers by digest (or are inlined), and the caller has already written those
//! layers to the node, digest-checked. Unknown fields are ignored, as Spin ignores them; what
//! wasmpod cannot honour (an unknown host requirement, unresolvable content) is refused
//! with its name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::app::{
    AppVariable, CommandTrigger, CronTrigger, FileMount, HttpRoute, HttpTarget, HttpTrigger,
    MqttBroker, MqttQos, MqttTrigger, RedisTrigger, SpinApp, SpinComponent, StaticResponse,
};
use super::manifest::unsupported_trigger;
use crate::classify::EntrypointKind;

/// The host requirements a lock may state: `local_service_chaining` (components call each
/// other through `http://<component>.spin.internal`).
pub const HOST_REQUIREMENTS: [&str; 1] = ["local_service_chaining"];

/// The media type of the locked-app layer.
pub const LOCKED_APP_LAYER: &str = "application/vnd.fermyon.spin.application.v1+config";
/// The media type of a data (file) layer.
pub const DATA_LAYER: &str = "application/vnd.wasm.content.layer.v1+data";
/// The media type of an archive (tar+gzip of a `files` directory) layer.
pub const ARCHIVE_LAYER: &str = "application/vnd.wasm.content.bundle.v1.tar+gzip";
/// The config label naming the lock layer's digest.
pub const LOCKED_APP_DIGEST_LABEL: &str = "com.fermyon.spin.lockedAppDigest";

/// Where the files of registry apps are put in the container (`<dir>/<component-id>/...`),
/// as the Spin shim puts them.
pub const ASSETS_DIR: &str = "/assets";

/// A locked app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockedApp {
    /// `spin_lock_version` (0 or 1).
    pub spin_lock_version: u32,
    /// Features the reader must understand.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub must_understand: Vec<String>,
    /// `metadata` (name, version, ...).
    #[serde(default)]
    pub metadata: BTreeMap<String, Value>,
    /// App-wide host requirements.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub host_requirements: BTreeMap<String, Value>,
    /// Variables.
    #[serde(default)]
    pub variables: BTreeMap<String, LockedVariable>,
    /// Triggers.
    #[serde(default)]
    pub triggers: Vec<LockedTrigger>,
    /// Components.
    #[serde(default)]
    pub components: Vec<LockedComponent>,
}

/// A variable of a locked app: no default means required.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockedVariable {
    /// The default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// Whether it is secret.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub secret: bool,
    /// A description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A trigger of a locked app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockedTrigger {
    /// Its id.
    pub id: String,
    /// `http`, `redis`, ...
    pub trigger_type: String,
    /// Type-specific settings (`route`, `component`, `static_response`, `executor`).
    #[serde(default)]
    pub trigger_config: Value,
}

/// A component of a locked app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockedComponent {
    /// Its id.
    pub id: String,
    /// `metadata`: `allowed_outbound_hosts`, `key_value_stores`, `databases`, ...
    #[serde(default)]
    pub metadata: BTreeMap<String, Value>,
    /// The Wasm.
    pub source: LockedSource,
    /// The guest's environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Files, by guest path.
    #[serde(default)]
    pub files: Vec<ContentPath>,
    /// Component variables (templates).
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Imports satisfied by composition at load; pushed apps are already composed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dependencies: BTreeMap<String, Value>,
    /// Component host requirements.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub host_requirements: BTreeMap<String, Value>,
}

/// A component's source: content plus its type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockedSource {
    /// `application/wasm`.
    pub content_type: String,
    /// The content.
    #[serde(flatten)]
    pub content: ContentRef,
}

/// Content: by digest (a layer), inline (base64), or a URL (`file://`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContentRef {
    /// A URL (`file:///...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Base64 of the content itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<String>,
    /// `sha256:<hex>` of the content (and of its layer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// A file: content and where the guest sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContentPath {
    /// The content.
    #[serde(flatten)]
    pub content: ContentRef,
    /// The guest path (relative to the mount, which is `/`).
    pub path: String,
}

/// The blobs of an image that a lock's digests name, as the node has them.
pub trait Blobs {
    /// The file holding the blob with `digest`, if the image has it.
    fn path_of(&self, digest: &str) -> Option<PathBuf>;
}

impl Blobs for BTreeMap<String, PathBuf> {
    fn path_of(&self, digest: &str) -> Option<PathBuf> {
        self.get(digest).cloned()
    }
}

impl LockedApp {
    /// Parses a lock. A host requirement wasmpod does not provide is refused, as Spin refuses
    /// it.
    pub fn parse(bytes: &[u8]) -> Result<LockedApp, String> {
        let app: LockedApp =
            serde_json::from_slice(bytes).map_err(|e| format!("not a Spin locked app: {e}"))?;
        if app.spin_lock_version > 1 {
            return Err(format!(
                "spin_lock_version {} is newer than wasmpod reads (0 or 1)",
                app.spin_lock_version
            ));
        }
        if let Some(feature) = app
            .must_understand
            .iter()
            .find(|f| !["host_requirements", "component_host_requirements"].contains(&f.as_str()))
        {
            return Err(format!(
                "must_understand: wasmpod does not know {feature:?}"
            ));
        }
        let unknown = app
            .host_requirements
            .keys()
            .chain(
                app.components
                    .iter()
                    .flat_map(|c| c.host_requirements.keys()),
            )
            .find(|r| !HOST_REQUIREMENTS.contains(&r.as_str()));
        if let Some(requirement) = unknown {
            return Err(format!(
                "host_requirements: wasmpod does not know {requirement:?} (it provides {})",
                HOST_REQUIREMENTS.join(", ")
            ));
        }
        Ok(app)
    }

    /// The digests of layers the components need (sources and files).
    pub fn digests(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .components
            .iter()
            .flat_map(|c| {
                std::iter::once(&c.source.content)
                    .chain(c.files.iter().map(|f| &f.content))
                    .filter_map(|r| r.digest.clone())
            })
            .collect();
        all.sort();
        all.dedup();
        all
    }

    /// The app: sources from `blobs` (inline sources are written to `inline_dir`), files
    /// written into the container's rootfs (`rootfs`) under [`ASSETS_DIR`]`/<component-id>`,
    /// which the guest sees as `/`. `origin` names the app in messages.
    pub fn into_app(
        self,
        origin: &str,
        blobs: &dyn Blobs,
        inline_dir: &Path,
        rootfs: &Path,
    ) -> Result<SpinApp, String> {
        let name = self
            .metadata
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("spin-app")
            .to_string();
        let version = self
            .metadata
            .get("version")
            .and_then(Value::as_str)
            .map(str::to_string);
        let variables = self
            .variables
            .into_iter()
            .map(|(k, v)| {
                (
                    k,
                    AppVariable {
                        default: v.default,
                        secret: v.secret,
                    },
                )
            })
            .collect();
        let mut components = Vec::new();
        for c in self.components {
            components.push(component(c, blobs, inline_dir, rootfs)?);
        }
        // The app-level Redis address: `triggers.redis.address` (Spin 2+), or
        // `trigger.address` of a `trigger.type = "redis"` app (Spin 1 locks).
        let app_redis_address = self
            .metadata
            .get("triggers")
            .and_then(|t| t.pointer("/redis/address"))
            .or_else(|| {
                let trigger = self.metadata.get("trigger")?;
                (trigger.get("type")?.as_str()? == "redis").then(|| trigger.get("address"))?
            })
            .and_then(Value::as_str)
            .map(str::to_string);
        let mut http_triggers = Vec::new();
        let mut cron_triggers = Vec::new();
        let mut command_triggers = Vec::new();
        let mut redis_triggers = Vec::new();
        let mut mqtt_triggers = Vec::new();
        // The app-level broker: `triggers.mqtt` (what Spin writes for
        // [application.trigger.mqtt]); a trigger's own keys win.
        let app_mqtt = self
            .metadata
            .get("triggers")
            .and_then(|t| t.get("mqtt"))
            .cloned()
            .unwrap_or(Value::Null);
        for t in self.triggers {
            match t.trigger_type.as_str() {
                "http" => http_triggers.push(http_trigger(t)?),
                "cron" => {
                    let component = trigger_component(&t)?;
                    let cron_expression = t
                        .trigger_config
                        .get("cron_expression")
                        .and_then(Value::as_str)
                        .ok_or_else(|| format!("trigger {}: cron_expression is missing", t.id))?
                        .to_string();
                    cron_triggers.push(CronTrigger {
                        id: t.id,
                        component,
                        cron_expression,
                    });
                }
                "command" => {
                    let component = trigger_component(&t)?;
                    command_triggers.push(CommandTrigger {
                        id: t.id,
                        component,
                    });
                }
                "redis" => {
                    let component = trigger_component(&t)?;
                    let text = |key: &str| {
                        t.trigger_config
                            .get(key)
                            .and_then(Value::as_str)
                            .map(str::to_string)
                    };
                    let channel = text("channel")
                        .ok_or_else(|| format!("trigger {}: channel is missing", t.id))?;
                    let address = text("address")
                        .or_else(|| app_redis_address.clone())
                        .ok_or_else(|| format!("trigger {}: no Redis address", t.id))?;
                    redis_triggers.push(RedisTrigger {
                        id: t.id,
                        component,
                        channel,
                        address,
                    });
                }
                "mqtt" => {
                    let component = trigger_component(&t)?;
                    let text = |key: &str| {
                        let v = t.trigger_config.get(key).or_else(|| app_mqtt.get(key))?;
                        match v {
                            Value::String(s) => Some(s.clone()),
                            Value::Number(n) => Some(n.to_string()),
                            _ => None,
                        }
                    };
                    let missing = |key: &str| format!("trigger {}: {key} is missing", t.id);
                    let qos = text("qos")
                        .as_deref()
                        .and_then(MqttQos::parse)
                        .ok_or_else(|| format!("trigger {}: qos is 0, 1 or 2", t.id))?;
                    let keep_alive_secs = match text("keep_alive_interval") {
                        None => 30,
                        Some(k) => k.trim().parse().map_err(|_| {
                            format!("trigger {}: keep_alive_interval {k:?} is not seconds", t.id)
                        })?,
                    };
                    mqtt_triggers.push(MqttTrigger {
                        topic: text("topic").ok_or_else(|| missing("topic"))?,
                        qos,
                        broker: MqttBroker {
                            address: text("address").ok_or_else(|| missing("address"))?,
                            username: text("username").unwrap_or_default(),
                            password: text("password").unwrap_or_default(),
                            keep_alive_secs,
                        },
                        id: t.id,
                        component,
                    });
                }
                other => return Err(unsupported_trigger(other)),
            }
        }
        Ok(SpinApp {
            name,
            version,
            origin: origin.to_string(),
            variables,
            components,
            http_triggers,
            cron_triggers,
            command_triggers,
            redis_triggers,
            mqtt_triggers,
        })
    }
}

fn strings(metadata: &BTreeMap<String, Value>, key: &str) -> Vec<String> {
    metadata
        .get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The bytes or file of `content`.
enum Content {
    File(PathBuf),
    Bytes(Vec<u8>),
}

fn content(what: &str, r: &ContentRef, blobs: &dyn Blobs) -> Result<Content, String> {
    if let Some(inline) = &r.inline {
        return base64::engine::general_purpose::STANDARD
            .decode(inline)
            .map(Content::Bytes)
            .map_err(|e| format!("{what}: inline content is not base64: {e}"));
    }
    if let Some(digest) = &r.digest {
        return blobs
            .path_of(digest)
            .map(Content::File)
            .ok_or_else(|| format!("{what}: no layer of the image has digest {digest}"));
    }
    Err(format!(
        "{what}: content {} is neither inline nor a layer of the image",
        r.source.as_deref().unwrap_or("(none)")
    ))
}

fn component(
    c: LockedComponent,
    blobs: &dyn Blobs,
    inline_dir: &Path,
    rootfs: &Path,
) -> Result<SpinComponent, String> {
    let where_ = format!("component {}", c.id);
    if !c.dependencies.is_empty() {
        return Err(format!(
            "{where_}: its dependencies are not composed (push it without --skip-compose)"
        ));
    }
    let host_path = match content(&format!("{where_} source"), &c.source.content, blobs)? {
        Content::File(path) => path,
        Content::Bytes(bytes) => {
            let digest = format!(
                "sha256-{}",
                hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes))
            );
            let path = inline_dir.join(format!("{digest}.wasm"));
            std::fs::create_dir_all(inline_dir)
                .and_then(|()| std::fs::write(&path, &bytes))
                .map_err(|e| format!("{where_}: write {}: {e}", path.display()))?;
            path
        }
    };
    let kind = match EntrypointKind::of_file(&host_path).map_err(|e| e.to_string())? {
        EntrypointKind::Wasm(kind) => kind,
        other => {
            return Err(format!(
                "{where_} source is a {}, not Wasm",
                other.describe()
            ))
        }
    };
    let mut files = Vec::new();
    if !c.files.is_empty() {
        let dir = Path::new(ASSETS_DIR).join(&c.id);
        for f in &c.files {
            let rel = Path::new(f.path.trim_start_matches('/'));
            if rel
                .components()
                .any(|p| !matches!(p, std::path::Component::Normal(_)))
            {
                return Err(format!(
                    "{where_} file {:?}: not a plain relative path",
                    f.path
                ));
            }
            let target = crate::resolve::host_path(rootfs, &dir.join(rel));
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| format!("{where_}: create {}: {e}", parent.display()))?;
            }
            let written = match content(&format!("{where_} file {}", f.path), &f.content, blobs)? {
                Content::File(from) => std::fs::copy(&from, &target).map(drop),
                Content::Bytes(bytes) => std::fs::write(&target, bytes),
            };
            written.map_err(|e| format!("{where_}: write {}: {e}", target.display()))?;
        }
        files.push(FileMount {
            source: dir,
            destination: "/".into(),
        });
    }
    Ok(SpinComponent {
        id: c.id,
        kind,
        host_path,
        environment: c.env.into_iter().collect(),
        files,
        allowed_outbound_hosts: strings(&c.metadata, "allowed_outbound_hosts"),
        key_value_stores: strings(&c.metadata, "key_value_stores"),
        sqlite_databases: strings(&c.metadata, "databases"),
        ai_models: strings(&c.metadata, "ai_models"),
        variables: c.config,
    })
}

/// The component a non-HTTP trigger runs.
fn trigger_component(t: &LockedTrigger) -> Result<String, String> {
    t.trigger_config
        .get("component")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| format!("trigger {}: it names no component", t.id))
}

fn http_trigger(t: LockedTrigger) -> Result<HttpTrigger, String> {
    let where_ = format!("trigger {}", t.id);
    let config = &t.trigger_config;
    if let Some(executor) = config.pointer("/executor/type").and_then(Value::as_str) {
        if !["http", "spin"].contains(&executor) {
            return Err(format!(
                "{where_}: executor type {executor:?} is not supported by wasmpod (only \"http\")"
            ));
        }
    }
    let route = match config.get("route") {
        Some(Value::String(r)) => HttpRoute::Path(r.clone()),
        Some(Value::Object(o)) if o.get("private") == Some(&Value::Bool(true)) => {
            HttpRoute::Private
        }
        other => return Err(format!("{where_}: route {other:?} is not a route")),
    };
    let target = match (config.get("component"), config.get("static_response")) {
        (Some(Value::String(c)), None) => HttpTarget::Component(c.clone()),
        (None, Some(s)) => HttpTarget::StaticResponse(StaticResponse {
            status_code: s
                .get("status_code")
                .and_then(Value::as_u64)
                .and_then(|n| u16::try_from(n).ok())
                .unwrap_or(200),
            headers: s
                .get("headers")
                .and_then(Value::as_object)
                .map(|h| {
                    h.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                        .collect()
                })
                .unwrap_or_default(),
            body: s.get("body").and_then(Value::as_str).map(str::to_string),
        }),
        _ => {
            return Err(format!(
                "{where_}: it needs either a component or a static_response"
            ))
        }
    };
    Ok(HttpTrigger {
        id: t.id,
        route,
        target,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCK: &str = r#"{
      "spin_lock_version": 1,
      "metadata": {"name": "hello", "version": "1.0.0", "authors": ["x"], "trigger": {"type": "http"}},
      "variables": {"greeting": {"default": "hi"}, "token": {"secret": true}},
      "triggers": [
        {"id": "t1", "trigger_type": "http", "trigger_config": {"route": "/...", "component": "hello", "executor": {"type": "http"}}},
        {"id": "t2", "trigger_type": "http", "trigger_config": {"route": "/s", "static_response": {"status_code": 202, "body": "b"}}}
      ],
      "components": [{
        "id": "hello",
        "metadata": {"allowed_outbound_hosts": ["https://example.com"], "key_value_stores": ["default"]},
        "source": {"content_type": "application/wasm", "digest": "sha256:aa"},
        "env": {"K": "v"},
        "files": [{"digest": "sha256:bb", "path": "static/a.txt"}, {"inline": "aGk=", "path": "b.txt"}],
        "config": {"msg": "{{ greeting }}"},
        "future_field": true
      }],
      "future_top_level": 1
    }"#;

    #[test]
    fn a_lock_becomes_an_app_with_its_files_in_the_rootfs() {
        let dir = tempfile::tempdir().unwrap();
        let wasm = dir.path().join("aa.wasm");
        std::fs::write(&wasm, b"\0asm\x01\0\0\0").unwrap();
        let data = dir.path().join("bb.data");
        std::fs::write(&data, b"file bytes").unwrap();
        let blobs: BTreeMap<String, PathBuf> = [
            ("sha256:aa".to_string(), wasm.clone()),
            ("sha256:bb".to_string(), data),
        ]
        .into();
        let lock = LockedApp::parse(LOCK.as_bytes()).unwrap();
        assert_eq!(lock.digests(), ["sha256:aa", "sha256:bb"]);
        let rootfs = dir.path().join("rootfs");
        let app = lock
            .into_app("image x", &blobs, &dir.path().join("inline"), &rootfs)
            .unwrap();
        assert_eq!(app.name, "hello");
        assert_eq!(app.variables["token"].default, None);
        let c = &app.components[0];
        assert_eq!(c.host_path, wasm);
        assert_eq!(c.kind, crate::WasmKind::CoreModule);
        assert_eq!(c.key_value_stores, ["default"]);
        assert_eq!(c.files[0].source, Path::new("/assets/hello"));
        assert_eq!(
            std::fs::read(rootfs.join("assets/hello/static/a.txt")).unwrap(),
            b"file bytes"
        );
        assert_eq!(
            std::fs::read(rootfs.join("assets/hello/b.txt")).unwrap(),
            b"hi"
        );
        assert_eq!(app.http_triggers.len(), 2);
        assert!(
            matches!(&app.http_triggers[1].target, HttpTarget::StaticResponse(s) if s.status_code == 202)
        );
    }

    #[test]
    fn what_cannot_be_run_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let none: BTreeMap<String, PathBuf> = BTreeMap::new();
        let lock = LockedApp::parse(LOCK.as_bytes()).unwrap();
        let err = lock
            .into_app("x", &none, dir.path(), dir.path())
            .unwrap_err();
        assert!(err.contains("sha256:aa"), "{err}");
        assert!(LockedApp::parse(b"{}").is_err());
        assert!(LockedApp::parse(br#"{"spin_lock_version": 2}"#).is_err());
        let chained = LOCK.replace(
            "\"future_top_level\": 1",
            "\"host_requirements\": {\"local_service_chaining\": \"required\"}",
        );
        assert!(LockedApp::parse(chained.as_bytes()).is_ok());
        let teleport = LOCK.replace(
            "\"future_top_level\": 1",
            "\"host_requirements\": {\"teleportation\": \"required\"}",
        );
        let err = LockedApp::parse(teleport.as_bytes()).unwrap_err();
        assert!(err.contains("\"teleportation\""), "{err}");
        let sqs = LOCK.replace(
            "\"trigger_type\": \"http\", \"trigger_config\": {\"route\": \"/s\"",
            "\"trigger_type\": \"sqs\", \"trigger_config\": {\"route\": \"/s\"",
        );
        let err = LockedApp::parse(sqs.as_bytes())
            .unwrap()
            .into_app("x", &none, dir.path(), dir.path())
            .unwrap_err();
        assert!(err.contains("sha256:aa") || err.contains("sqs"), "{err}");
    }
}
