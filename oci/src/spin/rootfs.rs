//! A Spin app from an image's filesystem: `/spin.toml` (as `FROM scratch` + `COPY` images
//! carry it) with its sources and `files` directories resolved in the rootfs, as Spin's
//! direct mounts resolve them: sources relative to the manifest, `files` only whole
//! directories, nothing downloaded at start.

use std::path::Path;

use super::app::{FileMount, HttpTarget, HttpTrigger, SpinApp, SpinComponent};
use super::manifest::{self, FilesEntry, Manifest, ManifestComponent, ManifestTarget, Source};
use crate::classify::EntrypointKind;
use crate::resolve::{host_path, resolve_in_root};
use crate::OciError;

/// Where Spin images keep their manifest.
pub const MANIFEST_PATH: &str = "/spin.toml";

/// Whether the rootfs at `rootfs` holds a Spin manifest.
pub fn has_manifest(rootfs: &Path) -> bool {
    host_path(rootfs, Path::new(MANIFEST_PATH)).is_file()
}

/// Loads the app whose manifest is [`MANIFEST_PATH`] in `rootfs`.
pub fn load(rootfs: &Path) -> Result<SpinApp, OciError> {
    let file = MANIFEST_PATH.to_string();
    let fail = |reason: String| OciError::SpinApp {
        file: file.clone(),
        reason,
    };
    let on_host = host_path(rootfs, Path::new(MANIFEST_PATH));
    let text = std::fs::read_to_string(&on_host).map_err(|e| fail(format!("cannot read: {e}")))?;
    let manifest = manifest::parse(&text).map_err(fail)?;
    resolve(rootfs, Path::new("/"), manifest).map_err(fail)
}

/// The app of `manifest`, whose directory is `dir` (in the container), resolved in `rootfs`.
fn resolve(rootfs: &Path, dir: &Path, manifest: Manifest) -> Result<SpinApp, String> {
    let mut components = Vec::new();
    for (id, c) in manifest.components {
        components.push(component(rootfs, dir, &id, c)?);
    }
    let http_triggers = manifest
        .http_triggers
        .into_iter()
        .map(|t| HttpTrigger {
            id: t.id,
            route: t.route,
            target: match t.target {
                ManifestTarget::Component(id) => HttpTarget::Component(id),
                ManifestTarget::StaticResponse(s) => HttpTarget::StaticResponse(s),
            },
        })
        .collect();
    Ok(SpinApp {
        name: manifest.name,
        version: manifest.version,
        origin: MANIFEST_PATH.to_string(),
        variables: manifest.variables,
        components,
        http_triggers,
        cron_triggers: manifest.cron_triggers,
        command_triggers: manifest.command_triggers,
        redis_triggers: manifest.redis_triggers,
        mqtt_triggers: manifest.mqtt_triggers,
    })
}

fn component(
    rootfs: &Path,
    dir: &Path,
    id: &str,
    c: ManifestComponent,
) -> Result<SpinComponent, String> {
    let where_ = format!("[component.{id}]");
    let source = match &c.source {
        Source::Local(path) => path,
        Source::Remote { url } => {
            return Err(format!(
                "{where_} source: {url} would be downloaded at start, and wasmpod does not \
                 reach the network to start an app: put the file in the image (wasmpod image \
                 build --spin) or push the app with `spin registry push`"
            ))
        }
        Source::Registry { package } => {
            return Err(format!(
                "{where_} source: package {package} would be fetched from a registry at start, \
                 which wasmpod does not do: put the file in the image"
            ))
        }
    };
    if c.has_dependencies {
        return Err(format!(
            "{where_} dependencies: wasmpod does not compose components at start; compose \
             them first (`spin registry push` does) or build the composed component"
        ));
    }
    if !c.exclude_files.is_empty() {
        return Err(format!(
            "{where_} exclude_files: only whole directories can be mounted from an image's \
             filesystem; remove exclude_files"
        ));
    }
    let in_container = resolve_in_root(rootfs, &dir.join(source)).map_err(|e| e.to_string())?;
    let host = host_path(rootfs, &in_container);
    if !host.is_file() {
        return Err(format!(
            "{where_} source: {source} ({}) is not a file in the image",
            in_container.display()
        ));
    }
    let kind = match EntrypointKind::of_file(&host).map_err(|e| e.to_string())? {
        EntrypointKind::Wasm(kind) => kind,
        other => {
            return Err(format!(
                "{where_} source: {source} is a {}, not Wasm",
                other.describe()
            ))
        }
    };
    let mut files = Vec::new();
    for entry in c.files {
        files.push(mount(rootfs, dir, &where_, entry)?);
    }
    Ok(SpinComponent {
        id: id.to_string(),
        kind,
        host_path: host,
        environment: c.environment.into_iter().collect(),
        files,
        allowed_outbound_hosts: c.allowed_outbound_hosts,
        key_value_stores: c.key_value_stores,
        sqlite_databases: c.sqlite_databases,
        ai_models: c.ai_models,
        variables: c.variables,
    })
}

/// A `files` entry as a directory mount.
fn mount(rootfs: &Path, dir: &Path, where_: &str, entry: FilesEntry) -> Result<FileMount, String> {
    let (source, destination) = match entry {
        FilesEntry::Pattern(p) => {
            if p.contains(['*', '?', '[', '{']) {
                return Err(format!(
                    "{where_} files: {p:?} is a glob; only directory mounts are supported \
                     from an image's filesystem (name the directory)"
                ));
            }
            let destination = format!("/{}", p.trim_start_matches("./").trim_matches('/'));
            (p, destination)
        }
        FilesEntry::Placement {
            source,
            destination,
        } => {
            if !destination.starts_with('/') {
                return Err(format!(
                    "{where_} files: destination {destination:?} must be an absolute path"
                ));
            }
            (source, destination)
        }
    };
    let in_container = resolve_in_root(rootfs, &dir.join(&source)).map_err(|e| e.to_string())?;
    if !host_path(rootfs, &in_container).is_dir() {
        return Err(format!(
            "{where_} files: {source:?} is not a directory in the image; only directory \
             mounts are supported from an image's filesystem"
        ));
    }
    Ok(FileMount {
        source: in_container,
        destination,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spin::app::HttpRoute;
    use crate::WasmKind;

    fn image(manifest: &str) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let p = root.path();
        std::fs::create_dir_all(p.join("target")).unwrap();
        std::fs::create_dir_all(p.join("static/css")).unwrap();
        std::fs::write(p.join("target/hello.wasm"), b"\0asm\x01\0\0\0").unwrap();
        std::fs::write(p.join("comp.wasm"), b"\0asm\x0d\0\x01\0").unwrap();
        std::fs::write(p.join("notes.txt"), b"text").unwrap();
        std::fs::write(p.join("spin.toml"), manifest).unwrap();
        root
    }

    const APP: &str = r#"
spin_manifest_version = 2
[application]
name = "app"
[[trigger.http]]
route = "/..."
component = "hello"
[[trigger.http]]
route = "/c"
component = "comp"
[component.hello]
source = "target/hello.wasm"
files = ["static", { source = "static/css", destination = "/css" }]
environment = { A = "1" }
[component.comp]
source = "./comp.wasm"
"#;

    #[test]
    fn resolves_sources_and_directories_in_the_image() {
        let root = image(APP);
        assert!(has_manifest(root.path()));
        let app = load(root.path()).unwrap();
        assert_eq!(app.origin, "/spin.toml");
        let hello = app.component("hello").unwrap();
        assert_eq!(hello.kind, WasmKind::CoreModule);
        assert_eq!(hello.host_path, root.path().join("target/hello.wasm"));
        assert_eq!(
            hello.files,
            [
                FileMount {
                    source: "/static".into(),
                    destination: "/static".into()
                },
                FileMount {
                    source: "/static/css".into(),
                    destination: "/css".into()
                }
            ]
        );
        assert_eq!(hello.environment, [("A".to_string(), "1".to_string())]);
        assert_eq!(app.component("comp").unwrap().kind, WasmKind::Component);
        assert_eq!(app.http_triggers[1].route, HttpRoute::Path("/c".into()));
        // It crosses to the container's init as JSON, unchanged.
        let json = serde_json::to_string(&app).unwrap();
        assert_eq!(serde_json::from_str::<SpinApp>(&json).unwrap(), app);
    }

    #[test]
    fn what_cannot_be_mounted_or_found_is_refused_by_name() {
        let cases = [
            (
                APP.replace("target/hello.wasm", "missing.wasm"),
                "missing.wasm",
            ),
            (APP.replace("target/hello.wasm", "notes.txt"), "not Wasm"),
            (
                APP.replace(
                    "source = \"target/hello.wasm\"",
                    "source = { url = \"https://x/y.wasm\", digest = \"sha256:00\" }",
                ),
                "https://x/y.wasm",
            ),
            (APP.replace("\"static\",", "\"static/*.css\","), "glob"),
            (
                APP.replace("\"static\",", "\"notes.txt\","),
                "not a directory",
            ),
            (
                APP.replace("destination = \"/css\"", "destination = \"css\""),
                "absolute",
            ),
            (
                APP.replace("environment =", "exclude_files = [\"x\"]\nenvironment ="),
                "exclude_files",
            ),
        ];
        for (text, needle) in cases {
            let root = image(&text);
            let err = load(root.path()).expect_err(needle).to_string();
            assert!(
                err.contains(needle) && err.contains("/spin.toml"),
                "{needle:?} not in {err:?}"
            );
        }
    }

    #[test]
    fn sources_cannot_escape_the_image() {
        let root = image(&APP.replace("target/hello.wasm", "../../../target/hello.wasm"));
        // `..` stops at the image's root: this names /target/hello.wasm in the image.
        let app = load(root.path()).unwrap();
        assert_eq!(
            app.component("hello").unwrap().host_path,
            root.path().join("target/hello.wasm")
        );
    }
}
