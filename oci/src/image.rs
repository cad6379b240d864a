//! Writing OCI image layouts as tarballs (`oci-layout`, `index.json`, `blobs/sha256/...`), the
//! format `ctr images import`, `docker load` and `skopeo copy oci-archive:` read.
//!
//! The output is deterministic: the same inputs give the same bytes (sorted JSON keys, tar
//! entries with mtime 0 and owner 0:0, files in the order given).

use std::io::Write;
use std::path::Path;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::OciError;

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
    bytes: Vec<u8>,
    mode: u32,
}

/// Builds a single-manifest OCI image with one tar layer.
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
        }
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
            bytes: bytes.into(),
            mode,
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
        if self.name.is_empty() {
            return Err(OciError::Image("the image needs a name".into()));
        }
        let layer = self.layer_tar()?;
        let layer_digest = sha256(&layer);
        let config = serde_json::to_vec(&self.config_json(&layer_digest))
            .map_err(|e| OciError::Image(e.to_string()))?;
        let config_digest = sha256(&config);
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_MANIFEST,
            "config": {"mediaType": MEDIA_TYPE_CONFIG, "digest": config_digest, "size": config.len()},
            "layers": [{"mediaType": MEDIA_TYPE_LAYER_TAR, "digest": layer_digest, "size": layer.len()}],
        }))
        .map_err(|e| OciError::Image(e.to_string()))?;
        let manifest_digest = sha256(&manifest);
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{
                "mediaType": MEDIA_TYPE_MANIFEST,
                "digest": manifest_digest,
                "size": manifest.len(),
                "platform": {"os": self.os, "architecture": self.architecture},
                "annotations": {
                    "io.containerd.image.name": self.name,
                    "org.opencontainers.image.ref.name": ref_name(&self.name),
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
        for (digest, blob) in [
            (&layer_digest, &layer),
            (&config_digest, &config),
            (&manifest_digest, &manifest),
        ] {
            let name = format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"));
            append(&mut out, &name, blob, 0o644)?;
        }
        out.into_inner().map_err(|e| OciError::Image(e.to_string()))
    }

    fn config_json(&self, layer_digest: &str) -> Value {
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
        json!({
            "architecture": self.architecture,
            "os": self.os,
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
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
            append(&mut layer, &file.path, &file.bytes, file.mode)?;
        }
        layer
            .into_inner()
            .map_err(|e| OciError::Image(e.to_string()))
    }
}

fn ref_name(name: &str) -> &str {
    // `ref.name` is the tag alone when the name has one.
    match name.rsplit_once(':') {
        Some((_, tag)) if !tag.contains('/') => tag,
        _ => "latest",
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
}
