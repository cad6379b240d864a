//! Packaging a Spin app from its `spin.toml` on disk into an image, in either shape the Spin
//! shim runs:
//! - [`PackageShape::Rootfs`]: `FROM scratch` + `COPY`: the manifest at `/spin.toml` and every
//!   file it names at the same relative path;
//! - [`PackageShape::Registry`]: what `spin registry push` writes: one Wasm layer per
//!   component source, one data layer per file (content of 128 bytes or less inlined), and the
//!   locked app last, naming them by digest.
//!
//! Both are deterministic: files are taken in sorted order.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::app::{HttpRoute, StaticResponse};
use super::lock::{
    ContentPath, ContentRef, LockedApp, LockedComponent, LockedSource, LockedTrigger,
    LockedVariable, DATA_LAYER, LOCKED_APP_DIGEST_LABEL, LOCKED_APP_LAYER,
};
use super::manifest::{self, FilesEntry, ManifestTarget, Source};
use crate::artifact::WASM_CONTENT_LAYER;
use crate::image::{ImageBuilder, ImageShape};
use crate::OciError;

/// Content up to this size is inlined into the lock instead of getting a layer.
pub const INLINE_LIMIT: usize = 128;

/// Which image shape to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackageShape {
    /// `/spin.toml` and its files in the image's filesystem.
    Rootfs,
    /// `spin registry push` layers.
    Registry,
}

/// One component's files: (guest path relative to its mount, path on disk).
type Files = Vec<(String, PathBuf)>;

fn fail(manifest: &Path, reason: impl Into<String>) -> OciError {
    OciError::SpinApp {
        file: manifest.display().to_string(),
        reason: reason.into(),
    }
}

/// The image named `name` of the app whose manifest is `manifest_path`, in `shape`.
pub fn package(
    manifest_path: &Path,
    name: &str,
    shape: PackageShape,
) -> Result<ImageBuilder, OciError> {
    let text = std::fs::read_to_string(manifest_path)
        .map_err(|e| fail(manifest_path, format!("cannot read: {e}")))?;
    let m = manifest::parse(&text).map_err(|e| fail(manifest_path, e))?;
    let dir = manifest_path.parent().unwrap_or(Path::new("."));
    let mut sources = BTreeMap::new();
    let mut files: BTreeMap<String, (Files, Vec<(String, PathBuf)>)> = BTreeMap::new();
    for (id, c) in &m.components {
        let Source::Local(rel) = &c.source else {
            return Err(fail(
                manifest_path,
                format!("[component.{id}] source: only local files can be packaged"),
            ));
        };
        sources.insert(id.clone(), (rel.clone(), dir.join(rel)));
        let mut mounted = Vec::new();
        let mut on_disk = Vec::new();
        for entry in &c.files {
            let (src, dest) = match entry {
                FilesEntry::Pattern(p) => (p.clone(), format!("/{}", p.trim_matches('/'))),
                FilesEntry::Placement {
                    source,
                    destination,
                } => (source.clone(), destination.clone()),
            };
            let root = dir.join(&src);
            if !root.is_dir() {
                return Err(fail(
                    manifest_path,
                    format!("[component.{id}] files: {src:?} is not a directory"),
                ));
            }
            for file in regular_files(&root).map_err(|e| fail(manifest_path, e))? {
                let rel = file
                    .strip_prefix(&root)
                    .map_err(|e| fail(manifest_path, e.to_string()))?
                    .to_string_lossy()
                    .into_owned();
                let guest = format!("{}/{rel}", dest.trim_end_matches('/'));
                mounted.push((guest.trim_start_matches('/').to_string(), file.clone()));
                on_disk.push((format!("{}/{rel}", src.trim_matches('/')), file));
            }
        }
        files.insert(id.clone(), (mounted, on_disk));
    }
    let read = |p: &Path| {
        std::fs::read(p).map_err(|e| fail(manifest_path, format!("read {}: {e}", p.display())))
    };
    match shape {
        PackageShape::Rootfs => {
            let mut image = ImageBuilder::new(name).platform("wasi", "wasm").file(
                "/spin.toml",
                text.as_bytes().to_vec(),
                0o644,
            );
            let mut placed = std::collections::BTreeSet::new();
            for (rel, path) in sources.values() {
                if placed.insert(rel.clone()) {
                    image = image.file(
                        &format!("/{}", rel.trim_start_matches("./")),
                        read(path)?,
                        0o644,
                    );
                }
            }
            for (_, on_disk) in files.values() {
                for (rel, path) in on_disk {
                    if placed.insert(rel.clone()) {
                        image = image.file(&format!("/{rel}"), read(path)?, 0o644);
                    }
                }
            }
            Ok(image)
        }
        PackageShape::Registry => {
            let mut layers: Vec<(&str, Vec<u8>)> = Vec::new();
            let mut seen = std::collections::BTreeSet::new();
            let mut components = Vec::new();
            for (id, c) in &m.components {
                let bytes = read(&sources[id].1)?;
                let digest = digest_of(&bytes);
                if seen.insert(digest.clone()) {
                    layers.push((WASM_CONTENT_LAYER, bytes));
                }
                let mut locked_files = Vec::new();
                for (guest, path) in &files[id].0 {
                    let bytes = read(path)?;
                    let content = if bytes.len() <= INLINE_LIMIT {
                        ContentRef {
                            inline: Some(base64::engine::general_purpose::STANDARD.encode(&bytes)),
                            ..Default::default()
                        }
                    } else {
                        let digest = digest_of(&bytes);
                        if seen.insert(digest.clone()) {
                            layers.push((DATA_LAYER, bytes));
                        }
                        ContentRef {
                            digest: Some(digest),
                            ..Default::default()
                        }
                    };
                    locked_files.push(ContentPath {
                        content,
                        path: guest.clone(),
                    });
                }
                let mut metadata = BTreeMap::new();
                for (key, list) in [
                    ("allowed_outbound_hosts", &c.allowed_outbound_hosts),
                    ("key_value_stores", &c.key_value_stores),
                    ("databases", &c.sqlite_databases),
                    ("ai_models", &c.ai_models),
                ] {
                    if !list.is_empty() {
                        metadata.insert(key.to_string(), json!(list));
                    }
                }
                components.push(LockedComponent {
                    id: id.clone(),
                    metadata,
                    source: LockedSource {
                        content_type: "application/wasm".into(),
                        content: ContentRef {
                            digest: Some(digest),
                            ..Default::default()
                        },
                    },
                    env: c.environment.clone(),
                    files: locked_files,
                    config: c.variables.clone(),
                    dependencies: BTreeMap::new(),
                    host_requirements: BTreeMap::new(),
                });
            }
            let triggers = m
                .http_triggers
                .iter()
                .map(|t| {
                    let mut config = serde_json::Map::new();
                    config.insert(
                        "route".into(),
                        match &t.route {
                            HttpRoute::Path(p) => json!(p),
                            HttpRoute::Private => json!({"private": true}),
                        },
                    );
                    match &t.target {
                        ManifestTarget::Component(c) => {
                            config.insert("component".into(), json!(c));
                        }
                        ManifestTarget::StaticResponse(s) => {
                            config.insert("static_response".into(), static_json(s));
                        }
                    }
                    LockedTrigger {
                        id: t.id.clone(),
                        trigger_type: "http".into(),
                        trigger_config: Value::Object(config),
                    }
                })
                .chain(m.cron_triggers.iter().map(|t| LockedTrigger {
                    id: t.id.clone(),
                    trigger_type: "cron".into(),
                    trigger_config: json!({
                        "component": t.component,
                        "cron_expression": t.cron_expression,
                    }),
                }))
                .chain(m.command_triggers.iter().map(|t| LockedTrigger {
                    id: t.id.clone(),
                    trigger_type: "command".into(),
                    trigger_config: json!({ "component": t.component }),
                }))
                .chain(m.redis_triggers.iter().map(|t| LockedTrigger {
                    id: t.id.clone(),
                    trigger_type: "redis".into(),
                    trigger_config: json!({
                        "component": t.component,
                        "channel": t.channel,
                        "address": t.address,
                    }),
                }))
                .chain(m.mqtt_triggers.iter().map(|t| LockedTrigger {
                    id: t.id.clone(),
                    trigger_type: "mqtt".into(),
                    trigger_config: json!({
                        "component": t.component,
                        "topic": t.topic,
                        "qos": t.qos.level().to_string(),
                        "address": t.broker.address,
                        "username": t.broker.username,
                        "password": t.broker.password,
                        "keep_alive_interval": t.broker.keep_alive_secs.to_string(),
                    }),
                }))
                .collect();
            let mut metadata = BTreeMap::new();
            metadata.insert("name".to_string(), json!(m.name));
            if let Some(v) = &m.version {
                metadata.insert("version".to_string(), json!(v));
            }
            metadata.insert("trigger".to_string(), json!({"type": "http"}));
            // As `spin registry push` records it: an app whose components may call each
            // other needs a host that chains them.
            let chains = m.components.values().any(|c| {
                c.allowed_outbound_hosts
                    .iter()
                    .any(|h| h.trim_end_matches('/').ends_with(".spin.internal"))
            });
            let (must_understand, host_requirements) = if chains {
                (
                    vec!["host_requirements".to_string()],
                    BTreeMap::from([("local_service_chaining".to_string(), json!("required"))]),
                )
            } else {
                (Vec::new(), BTreeMap::new())
            };
            let lock = LockedApp {
                spin_lock_version: 0,
                must_understand,
                metadata,
                host_requirements,
                variables: m
                    .variables
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            LockedVariable {
                                default: v.default.clone(),
                                secret: v.secret,
                                description: None,
                            },
                        )
                    })
                    .collect(),
                triggers,
                components,
            };
            let lock_bytes =
                serde_json::to_vec(&lock).map_err(|e| fail(manifest_path, e.to_string()))?;
            let lock_digest = digest_of(&lock_bytes);
            let mut image = ImageBuilder::new(name)
                .shape(ImageShape::SpinRegistry)
                .platform("wasip1", "wasm")
                .label(LOCKED_APP_DIGEST_LABEL, &lock_digest);
            for (media_type, bytes) in layers {
                image = image.typed_layer(media_type, bytes);
            }
            Ok(image.typed_layer(LOCKED_APP_LAYER, lock_bytes))
        }
    }
}

fn static_json(s: &StaticResponse) -> Value {
    let mut v = json!({"status_code": s.status_code, "headers": s.headers});
    if let Some(body) = &s.body {
        v["body"] = json!(body);
    }
    v
}

fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Every regular file under `root`, recursively, sorted.
pub fn regular_files(root: &Path) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries =
            std::fs::read_dir(&dir).map_err(|e| format!("read {}: {e}", dir.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("read {}: {e}", dir.display()))?;
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.is_file() {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::create_dir_all(p.join("target")).unwrap();
        std::fs::create_dir_all(p.join("static/sub")).unwrap();
        std::fs::write(p.join("target/app.wasm"), b"\0asm\x01\0\0\0").unwrap();
        std::fs::write(p.join("static/small.txt"), b"small").unwrap();
        std::fs::write(p.join("static/sub/big.txt"), vec![b'x'; 500]).unwrap();
        std::fs::write(
            p.join("spin.toml"),
            r#"
spin_manifest_version = 2
[application]
name = "pkg"
version = "2.0.0"
[variables]
v = { default = "d" }
[[trigger.http]]
route = "/..."
component = "app"
[[trigger.http]]
route = "/s"
static_response = { body = "static" }
[application.trigger.mqtt]
address = "mqtt://{{ v }}:1883"
keep_alive_interval = "15"
[[trigger.mqtt]]
topic = "in/#"
qos = "2"
component = "app"
[component.app]
source = "target/app.wasm"
files = [{ source = "static", destination = "/www" }]
key_value_stores = ["default"]
allowed_outbound_hosts = ["http://*.spin.internal"]
"#,
        )
        .unwrap();
        dir
    }

    #[test]
    fn the_registry_shape_round_trips_through_the_lock_reader() {
        let dir = app_dir();
        let image = package(
            &dir.path().join("spin.toml"),
            "docker.io/me/pkg:1",
            PackageShape::Registry,
        )
        .unwrap();
        let tar = image.to_tar_bytes().unwrap();
        // Deterministic.
        assert_eq!(tar, image.to_tar_bytes().unwrap());
        let blobs = blobs_of(&tar);
        let manifest: Value = serde_json::from_slice(
            blobs
                .values()
                .find(|b| b.starts_with(b"{\"config\""))
                .unwrap(),
        )
        .unwrap();
        let layers = manifest["layers"].as_array().unwrap();
        let types: Vec<&str> = layers
            .iter()
            .map(|l| l["mediaType"].as_str().unwrap())
            .collect();
        assert_eq!(types, [WASM_CONTENT_LAYER, DATA_LAYER, LOCKED_APP_LAYER]);
        let lock_digest = layers[2]["digest"].as_str().unwrap();
        let lock = LockedApp::parse(&blobs[lock_digest]).unwrap();
        assert_eq!(
            lock.host_requirements.get("local_service_chaining"),
            Some(&json!("required"))
        );
        // Write the layers as the shim would, and read the app back.
        let out = tempfile::tempdir().unwrap();
        let mut on_node = BTreeMap::new();
        for l in layers {
            let d = l["digest"].as_str().unwrap().to_string();
            let p = out.path().join(d.replace(':', "-"));
            std::fs::write(&p, &blobs[&d]).unwrap();
            on_node.insert(d, p);
        }
        let rootfs = out.path().join("rootfs");
        let app = lock
            .into_app("test", &on_node, out.path(), &rootfs)
            .unwrap();
        assert_eq!(
            (app.name.as_str(), app.version.as_deref()),
            ("pkg", Some("2.0.0"))
        );
        assert_eq!(app.components[0].key_value_stores, ["default"]);
        assert_eq!(
            std::fs::read(rootfs.join("assets/app/www/small.txt")).unwrap(),
            b"small"
        );
        assert_eq!(
            std::fs::read(rootfs.join("assets/app/www/sub/big.txt"))
                .unwrap()
                .len(),
            500
        );
        assert_eq!(app.http_triggers.len(), 2);
        let mqtt = &app.mqtt_triggers[0];
        assert_eq!(
            (mqtt.topic.as_str(), mqtt.qos, mqtt.broker.address.as_str()),
            (
                "in/#",
                crate::spin::app::MqttQos::ExactlyOnce,
                "mqtt://{{ v }}:1883"
            )
        );
        assert_eq!(mqtt.broker.keep_alive_secs, 15);
    }

    #[test]
    fn the_rootfs_shape_keeps_the_manifest_paths() {
        let dir = app_dir();
        let image = package(
            &dir.path().join("spin.toml"),
            "docker.io/me/pkg:1",
            PackageShape::Rootfs,
        )
        .unwrap();
        let tar = image.to_tar_bytes().unwrap();
        let layer = blobs_of(&tar)
            .into_values()
            .find(|b| b.len() > 1024 && !b.starts_with(b"{"))
            .unwrap();
        let names: Vec<String> = tar::Archive::new(layer.as_slice())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .filter(|n| !n.ends_with('/'))
            .collect();
        assert_eq!(
            names,
            [
                "spin.toml",
                "target/app.wasm",
                "static/small.txt",
                "static/sub/big.txt"
            ]
        );
    }

    fn blobs_of(tar: &[u8]) -> BTreeMap<String, Vec<u8>> {
        let mut out = BTreeMap::new();
        for e in tar::Archive::new(tar).entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().display().to_string();
            if let Some(hex) = name.strip_prefix("blobs/sha256/") {
                if hex.is_empty() {
                    continue;
                }
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut e, &mut bytes).unwrap();
                out.insert(format!("sha256:{hex}"), bytes);
            }
        }
        out
    }
}
