//! Writing OCI image layouts as tarballs (`oci-layout`, `index.json`, `blobs/sha256/...`), the
//! format `ctr images import`, `docker load` and `skopeo copy oci-archive:` read.
//!
//! Three shapes ([`ImageShape`]): a rootfs image (the `.wasm` is a file in a tar layer), a
//! Wasm-layer image (standard OCI config, the `.wasm` as a layer of its own), and a CNCF Wasm
//! artifact (config `application/vnd.wasm.config.v0+json`, Wasm layers only).
//!
//! The output is deterministic: the same inputs give the same bytes (sorted JSON keys, tar
//! entries with mtime 0 and owner 0:0, files in the order given).

use std::io::Write;
use std::path::Path;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::artifact::{WASM_ARTIFACT_CONFIG, WASM_ARTIFACT_LAYER, WASM_CONTENT_LAYER};
use crate::reference::ImageName;
use crate::{EntrypointKind, OciError, WasmKind};

/// Media type of an OCI image manifest.
pub const MEDIA_TYPE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of an OCI image config.
pub const MEDIA_TYPE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Media type of an uncompressed tar layer.
pub const MEDIA_TYPE_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// One file placed in the image's single layer.
#[derive(Debug, Clone)]
struct LayerFile {
    path: String,
    content: Content,
}

/// What a layer entry is.
#[derive(Debug, Clone)]
enum Content {
    /// A regular file with its permission bits.
    File { bytes: Vec<u8>, mode: u32 },
    /// A symbolic link to the target, as written.
    Symlink(String),
}

/// Where an image carries its Wasm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImageShape {
    /// Files only (the `.wasm` among them): runs anywhere a container image runs.
    #[default]
    Rootfs,
    /// Standard OCI config with `architecture: wasm`; each Wasm is a layer of its own, read
    /// from the content store by the shim (containerd >= 1.7.7 imports these).
    WasmLayer,
    /// CNCF Wasm artifact: Wasm layers only, config `application/vnd.wasm.config.v0+json`
    /// (CRI only: `ctr run` rejects that config type).
    WasmArtifact,
    /// What `spin registry push` writes: typed layers only (a Wasm layer per component, data
    /// layers, the locked app last), standard OCI config `wasm`/`wasip1` with the lock's
    /// digest as a label (see [`crate::spin::package`]).
    SpinRegistry,
}

/// Builds a single-manifest OCI image: a tar layer with the files, plus Wasm layers.
#[derive(Debug, Clone)]
pub struct ImageBuilder {
    name: String,
    os: String,
    architecture: String,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    env: Vec<String>,
    working_dir: Option<String>,
    files: Vec<LayerFile>,
    shape: ImageShape,
    wasm_layers: Vec<Vec<u8>>,
    typed_layers: Vec<(String, Vec<u8>)>,
    labels: Vec<(String, String)>,
}

impl ImageBuilder {
    /// A new image named `name` (for example `docker.io/library/hello:latest`), platform
    /// `wasi/wasm`, no entrypoint and no files.
    pub fn new(name: impl Into<String>) -> ImageBuilder {
        ImageBuilder {
            name: name.into(),
            os: "wasi".into(),
            architecture: "wasm".into(),
            entrypoint: Vec::new(),
            cmd: Vec::new(),
            env: Vec::new(),
            working_dir: None,
            files: Vec::new(),
            shape: ImageShape::Rootfs,
            wasm_layers: Vec::new(),
            typed_layers: Vec::new(),
            labels: Vec::new(),
        }
    }

    /// Adds a layer of `media_type` holding `bytes` (for [`ImageShape::SpinRegistry`]).
    pub fn typed_layer(mut self, media_type: &str, bytes: impl Into<Vec<u8>>) -> Self {
        self.typed_layers
            .push((media_type.to_string(), bytes.into()));
        self
    }

    /// Adds a config label.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.push((key.to_string(), value.to_string()));
        self
    }

    /// Sets the shape (default [`ImageShape::Rootfs`]); Wasm added with
    /// [`ImageBuilder::wasm_layer`] needs one of the Wasm shapes.
    pub fn shape(mut self, shape: ImageShape) -> Self {
        self.shape = shape;
        self
    }

    /// Adds `bytes` as a Wasm layer (not a file in the rootfs).
    pub fn wasm_layer(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.wasm_layers.push(bytes.into());
        self
    }

    /// Sets the platform (default `wasi`/`wasm`).
    pub fn platform(mut self, os: &str, architecture: &str) -> Self {
        self.os = os.into();
        self.architecture = architecture.into();
        self
    }

    /// Sets the entrypoint.
    pub fn entrypoint<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.entrypoint = args.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the default command (arguments after the entrypoint).
    pub fn cmd<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.cmd = args.into_iter().map(Into::into).collect();
        self
    }

    /// Adds an environment variable `KEY=value`.
    pub fn env(mut self, kv: impl Into<String>) -> Self {
        self.env.push(kv.into());
        self
    }

    /// Sets the working directory.
    pub fn working_dir(mut self, dir: impl Into<String>) -> Self {
        self.working_dir = Some(dir.into());
        self
    }

    /// Adds a file at absolute `path` in the layer with permission bits `mode`.
    pub fn file(mut self, path: &str, bytes: impl Into<Vec<u8>>, mode: u32) -> Self {
        self.files.push(LayerFile {
            path: path.trim_start_matches('/').to_string(),
            content: Content::File {
                bytes: bytes.into(),
                mode,
            },
        });
        self
    }

    /// Adds a symbolic link at absolute `path` pointing at `target` (kept as written:
    /// relative, absolute, or leading nowhere).
    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        self.files.push(LayerFile {
            path: path.trim_start_matches('/').to_string(),
            content: Content::Symlink(target.to_string()),
        });
        self
    }

    /// Writes the image as an OCI layout tarball at `out`.
    pub fn write_tar(&self, out: &Path) -> Result<(), OciError> {
        let bytes = self.to_tar_bytes()?;
        let tmp = out.with_extension("tmp");
        std::fs::write(&tmp, bytes).map_err(OciError::io("write", &tmp))?;
        std::fs::rename(&tmp, out).map_err(OciError::io("rename", out))
    }

    /// The OCI layout tarball as bytes.
    pub fn to_tar_bytes(&self) -> Result<Vec<u8>, OciError> {
        let name = ImageName::parse(&self.name)?;
        self.check_shape()?;
        let mut blobs: Vec<(String, Vec<u8>)> = Vec::new();
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        if !matches!(
            self.shape,
            ImageShape::WasmArtifact | ImageShape::SpinRegistry
        ) {
            let tar = self.layer_tar()?;
            let digest = sha256(&tar);
            layers.push(
                json!({"mediaType": MEDIA_TYPE_LAYER_TAR, "digest": digest, "size": tar.len()}),
            );
            diff_ids.push(digest.clone());
            blobs.push((digest, tar));
        }
        let layer_type = match self.shape {
            ImageShape::WasmArtifact => WASM_ARTIFACT_LAYER,
            _ => WASM_CONTENT_LAYER,
        };
        let mut wasm_digests = Vec::new();
        for wasm in &self.wasm_layers {
            let digest = sha256(wasm);
            layers.push(json!({"mediaType": layer_type, "digest": digest, "size": wasm.len()}));
            wasm_digests.push(digest.clone());
            blobs.push((digest, wasm.clone()));
        }
        for (media_type, bytes) in &self.typed_layers {
            let digest = sha256(bytes);
            layers.push(json!({"mediaType": media_type, "digest": digest, "size": bytes.len()}));
            blobs.push((digest, bytes.clone()));
        }
        let (config_type, config) = match self.shape {
            ImageShape::WasmArtifact => (
                WASM_ARTIFACT_CONFIG,
                self.artifact_config_json(&wasm_digests),
            ),
            _ => (MEDIA_TYPE_CONFIG, self.config_json(&diff_ids)),
        };
        let config = serde_json::to_vec(&config).map_err(|e| OciError::Image(e.to_string()))?;
        let config_digest = sha256(&config);
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_MANIFEST,
            "config": {"mediaType": config_type, "digest": config_digest, "size": config.len()},
            "layers": layers,
        }))
        .map_err(|e| OciError::Image(e.to_string()))?;
        blobs.push((config_digest, config));
        let manifest_digest = sha256(&manifest);
        blobs.push((manifest_digest.clone(), manifest.clone()));
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{
                "mediaType": MEDIA_TYPE_MANIFEST,
                "digest": manifest_digest,
                "size": manifest.len(),
                "platform": {"os": self.os, "architecture": self.architecture},
                "annotations": {
                    "io.containerd.image.name": name.to_string(),
                    "org.opencontainers.image.ref.name": name.tag(),
                },
            }],
        }))
        .map_err(|e| OciError::Image(e.to_string()))?;

        let mut out = tar::Builder::new(Vec::new());
        append(
            &mut out,
            "oci-layout",
            br#"{"imageLayoutVersion":"1.0.0"}"#,
            0o644,
        )?;
        append(&mut out, "index.json", &index, 0o644)?;
        append_dir(&mut out, "blobs/")?;
        append_dir(&mut out, "blobs/sha256/")?;
        let mut written = std::collections::BTreeSet::new();
        for (digest, blob) in &blobs {
            if !written.insert(digest.clone()) {
                continue;
            }
            let name = format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"));
            append(&mut out, &name, blob, 0o644)?;
        }
        out.into_inner().map_err(|e| OciError::Image(e.to_string()))
    }

    fn check_shape(&self) -> Result<(), OciError> {
        match self.shape {
            ImageShape::Rootfs if !self.wasm_layers.is_empty() => Err(OciError::Image(
                "Wasm layers need the wasm-layer or artifact shape".into(),
            )),
            ImageShape::WasmLayer | ImageShape::WasmArtifact if self.wasm_layers.is_empty() => Err(
                OciError::Image("this image shape needs a Wasm layer".into()),
            ),
            ImageShape::WasmArtifact if !self.files.is_empty() => Err(OciError::Image(
                "a CNCF Wasm artifact carries Wasm layers only, no files".into(),
            )),
            ImageShape::SpinRegistry if !self.files.is_empty() || !self.wasm_layers.is_empty() => {
                Err(OciError::Image(
                    "a Spin registry image carries typed layers only".into(),
                ))
            }
            _ if self.shape != ImageShape::SpinRegistry && !self.typed_layers.is_empty() => Err(
                OciError::Image("typed layers need the Spin registry shape".into()),
            ),
            _ => Ok(()),
        }
    }

    /// The CNCF Wasm artifact config: `wasip2` for a component, `wasip1` for a module.
    fn artifact_config_json(&self, layer_digests: &[String]) -> Value {
        let component = self
            .wasm_layers
            .first()
            .map(|w| EntrypointKind::of_bytes(w) == EntrypointKind::Wasm(WasmKind::Component));
        json!({
            "architecture": "wasm",
            "os": if component == Some(true) { "wasip2" } else { "wasip1" },
            "layerDigests": layer_digests,
        })
    }

    fn config_json(&self, diff_ids: &[String]) -> Value {
        let mut config = serde_json::Map::new();
        if !self.entrypoint.is_empty() {
            config.insert("Entrypoint".into(), json!(self.entrypoint));
        }
        if !self.cmd.is_empty() {
            config.insert("Cmd".into(), json!(self.cmd));
        }
        if !self.env.is_empty() {
            config.insert("Env".into(), json!(self.env));
        }
        if let Some(dir) = &self.working_dir {
            config.insert("WorkingDir".into(), json!(dir));
        }
        if !self.labels.is_empty() {
            let labels: serde_json::Map<String, Value> = self
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect();
            config.insert("Labels".into(), Value::Object(labels));
        }
        json!({
            "architecture": self.architecture,
            "os": self.os,
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        })
    }

    fn layer_tar(&self) -> Result<Vec<u8>, OciError> {
        let mut layer = tar::Builder::new(Vec::new());
        let mut dirs_done = std::collections::BTreeSet::new();
        for file in &self.files {
            if file.path.is_empty() {
                return Err(OciError::Image("a file needs a path".into()));
            }
            let mut parent = String::new();
            for part in file
                .path
                .split('/')
                .collect::<Vec<_>>()
                .split_last()
                .map(|x| x.1)
                .unwrap_or(&[])
            {
                parent.push_str(part);
                parent.push('/');
                if dirs_done.insert(parent.clone()) {
                    append_dir(&mut layer, &parent)?;
                }
            }
            match &file.content {
                Content::File { bytes, mode } => append(&mut layer, &file.path, bytes, *mode)?,
                Content::Symlink(target) => append_symlink(&mut layer, &file.path, target)?,
            }
        }
        layer
            .into_inner()
            .map_err(|e| OciError::Image(e.to_string()))
    }
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn header(size: u64, mode: u32, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(kind);
    h
}

fn append<W: Write>(
    b: &mut tar::Builder<W>,
    path: &str,
    data: &[u8],
    mode: u32,
) -> Result<(), OciError> {
    let mut h = header(data.len() as u64, mode, tar::EntryType::Regular);
    b.append_data(&mut h, path, data)
        .map_err(|e| OciError::Image(format!("tar {path}: {e}")))
}

fn append_symlink<W: Write>(
    b: &mut tar::Builder<W>,
    path: &str,
    target: &str,
) -> Result<(), OciError> {
    let mut h = header(0, 0o777, tar::EntryType::Symlink);
    b.append_link(&mut h, path, target)
        .map_err(|e| OciError::Image(format!("tar {path} -> {target}: {e}")))
}

fn append_dir<W: Write>(b: &mut tar::Builder<W>, path: &str) -> Result<(), OciError> {
    let mut h = header(0, 0o755, tar::EntryType::Directory);
    b.append_data(&mut h, path, std::io::empty())
        .map_err(|e| OciError::Image(format!("tar {path}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn image() -> ImageBuilder {
        ImageBuilder::new("docker.io/library/hello:v1")
            .entrypoint(["/bin/hello.wasm"])
            .env("A=1")
            .file("/bin/hello.wasm", b"\0asm\x01\0\0\0".to_vec(), 0o755)
    }

    fn entries(tarball: &[u8]) -> std::collections::BTreeMap<String, Vec<u8>> {
        let mut a = tar::Archive::new(tarball);
        a.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let mut v = Vec::new();
                e.read_to_end(&mut v).unwrap();
                (e.path().unwrap().display().to_string(), v)
            })
            .collect()
    }

    #[test]
    fn deterministic() {
        assert_eq!(
            image().to_tar_bytes().unwrap(),
            image().to_tar_bytes().unwrap()
        );
    }

    #[test]
    fn layout_is_consistent() {
        let files = entries(&image().to_tar_bytes().unwrap());
        let index: Value = serde_json::from_slice(&files["index.json"]).unwrap();
        let m = &index["manifests"][0];
        assert_eq!(m["platform"]["os"], "wasi");
        assert_eq!(
            m["annotations"]["io.containerd.image.name"],
            "docker.io/library/hello:v1"
        );
        assert_eq!(m["annotations"]["org.opencontainers.image.ref.name"], "v1");
        let blob = |d: &Value| {
            files[&format!(
                "blobs/sha256/{}",
                d.as_str().unwrap().trim_start_matches("sha256:")
            )]
                .clone()
        };
        let manifest_bytes = blob(&m["digest"]);
        assert_eq!(sha256(&manifest_bytes), m["digest"].as_str().unwrap());
        let manifest: Value = serde_json::from_slice(&manifest_bytes).unwrap();
        let config: Value = serde_json::from_slice(&blob(&manifest["config"]["digest"])).unwrap();
        assert_eq!(config["architecture"], "wasm");
        assert_eq!(config["config"]["Entrypoint"][0], "/bin/hello.wasm");
        let layer = blob(&manifest["layers"][0]["digest"]);
        assert_eq!(config["rootfs"]["diff_ids"][0], sha256(&layer));
        let layer_files = entries(&layer);
        assert!(layer_files.contains_key("bin/"));
        assert_eq!(layer_files["bin/hello.wasm"], b"\0asm\x01\0\0\0");
    }

    #[test]
    fn rejects_empty_name() {
        assert!(ImageBuilder::new("").to_tar_bytes().is_err());
    }

    /// The manifest and config of an image tarball, as JSON.
    fn manifest_and_config(tarball: &[u8]) -> (Value, Value) {
        let e = entries(tarball);
        let blob = |digest: &str| {
            let name = format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"));
            serde_json::from_slice::<Value>(&e[&name]).unwrap()
        };
        let index: Value = serde_json::from_slice(&e["index.json"]).unwrap();
        let manifest = blob(index["manifests"][0]["digest"].as_str().unwrap());
        let config = blob(manifest["config"]["digest"].as_str().unwrap());
        (manifest, config)
    }

    #[test]
    fn wasm_layer_and_artifact_shapes() {
        let wasm = b"\0asm\x0d\0\x01\0".to_vec();
        let layered = ImageBuilder::new("docker.io/library/app:v1")
            .shape(ImageShape::WasmLayer)
            .entrypoint(["/app.wasm"])
            .file("/data.txt", b"x".to_vec(), 0o644)
            .wasm_layer(wasm.clone())
            .to_tar_bytes()
            .unwrap();
        let (manifest, config) = manifest_and_config(&layered);
        let layers = manifest["layers"].as_array().unwrap();
        assert_eq!(layers[0]["mediaType"], MEDIA_TYPE_LAYER_TAR);
        assert_eq!(layers[1]["mediaType"], WASM_CONTENT_LAYER);
        // Only the tar layer is a filesystem layer.
        assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 1);
        assert_eq!(config["architecture"], "wasm");

        let artifact = ImageBuilder::new("docker.io/library/app:v1")
            .shape(ImageShape::WasmArtifact)
            .wasm_layer(wasm.clone())
            .to_tar_bytes()
            .unwrap();
        let (manifest, config) = manifest_and_config(&artifact);
        assert_eq!(manifest["config"]["mediaType"], WASM_ARTIFACT_CONFIG);
        let layers = manifest["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 1);
        assert_eq!(layers[0]["mediaType"], WASM_ARTIFACT_LAYER);
        assert_eq!(config["os"], "wasip2");
        assert_eq!(config["layerDigests"][0], layers[0]["digest"]);

        let files_in_artifact = ImageBuilder::new("a:1")
            .shape(ImageShape::WasmArtifact)
            .file("/x", b"x".to_vec(), 0o644)
            .wasm_layer(wasm.clone());
        assert!(files_in_artifact.to_tar_bytes().is_err());
        assert!(ImageBuilder::new("a:1")
            .wasm_layer(wasm)
            .to_tar_bytes()
            .is_err());
        assert!(ImageBuilder::new("a:1")
            .shape(ImageShape::WasmLayer)
            .to_tar_bytes()
            .is_err());
    }
}
