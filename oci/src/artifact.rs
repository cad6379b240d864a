//! Wasm carried in image manifests rather than in a filesystem layer: the media types, picking
//! the Wasm manifest out of an image index, and finding the Wasm layers of a manifest.
//!
//! Two shapes are recognised:
//! - a standard OCI image whose config says `architecture: wasm`, with Wasm layers next to (or
//!   instead of) tar layers;
//! - a CNCF Wasm artifact: config media type [`WASM_ARTIFACT_CONFIG`], Wasm layers only.
//!
//! Parsing is tolerant (unknown fields are ignored) because these documents come from any
//! registry or tool; the caller fetches the blobs (from containerd's content store).

use serde_json::Value;

use crate::OciError;

/// Layer media types that hold a Wasm module or component.
pub const WASM_LAYER_MEDIA_TYPES: [&str; 3] = [
    "application/wasm",
    "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm",
    "application/vnd.wasm.content.layer.v1+wasm",
];

/// The layer media type `wasmpod image build` writes into a standard OCI image.
pub const WASM_CONTENT_LAYER: &str = "application/vnd.wasm.content.layer.v1+wasm";

/// The layer media type of a CNCF Wasm artifact.
pub const WASM_ARTIFACT_LAYER: &str = "application/wasm";

/// The config media type of a CNCF Wasm artifact.
pub const WASM_ARTIFACT_CONFIG: &str = "application/vnd.wasm.config.v0+json";

/// Media types of image indexes (OCI and Docker).
const INDEX_MEDIA_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// A content descriptor: what a blob is, and its digest and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRef {
    /// The media type.
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes.
    pub size: i64,
}

impl BlobRef {
    fn from_json(v: &Value) -> Option<BlobRef> {
        Some(BlobRef {
            media_type: v.get("mediaType")?.as_str()?.to_string(),
            digest: v.get("digest")?.as_str()?.to_string(),
            size: v.get("size").and_then(Value::as_i64).unwrap_or(0),
        })
    }
}

/// Whether a blob of `media_type` is an image index (a list of manifests).
pub fn is_index(media_type: &str) -> bool {
    INDEX_MEDIA_TYPES.contains(&media_type)
}

/// Whether a layer of `media_type` holds Wasm.
pub fn is_wasm_layer(media_type: &str) -> bool {
    WASM_LAYER_MEDIA_TYPES.contains(&media_type)
}

/// The manifest for the `wasm` architecture in an image index, if it has one.
pub fn wasm_manifest_of_index(index: &[u8]) -> Result<Option<BlobRef>, OciError> {
    let index: Value = parse(index, "image index")?;
    let manifests = index
        .get("manifests")
        .and_then(Value::as_array)
        .ok_or_else(|| OciError::Image("the image index has no manifests".into()))?;
    Ok(manifests
        .iter()
        .find(|m| m.pointer("/platform/architecture").and_then(Value::as_str) == Some("wasm"))
        .and_then(BlobRef::from_json))
}

/// What an image manifest says about Wasm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestView {
    /// The config blob.
    pub config: BlobRef,
    /// Every layer that holds Wasm, in manifest order.
    pub wasm_layers: Vec<BlobRef>,
    /// Every layer, in manifest order.
    pub layers: Vec<BlobRef>,
}

impl ManifestView {
    /// Reads an image manifest.
    pub fn parse(manifest: &[u8]) -> Result<ManifestView, OciError> {
        let manifest: Value = parse(manifest, "image manifest")?;
        let config = manifest
            .get("config")
            .and_then(BlobRef::from_json)
            .ok_or_else(|| OciError::Image("the image manifest has no config".into()))?;
        let layers: Vec<BlobRef> = manifest
            .get("layers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(BlobRef::from_json)
            .collect();
        let wasm_layers = layers
            .iter()
            .filter(|l| is_wasm_layer(&l.media_type))
            .cloned()
            .collect();
        Ok(ManifestView {
            config,
            wasm_layers,
            layers,
        })
    }

    /// The layer of the given media type, if the manifest has one.
    pub fn layer_of_type(&self, media_type: &str) -> Option<&BlobRef> {
        self.layers.iter().find(|l| l.media_type == media_type)
    }

    /// Whether the config is a CNCF Wasm artifact config (no need to read it).
    pub fn is_wasm_artifact(&self) -> bool {
        self.config.media_type == WASM_ARTIFACT_CONFIG
    }
}

/// Whether an OCI image config names the `wasm` architecture.
pub fn config_is_wasm(config: &[u8]) -> bool {
    serde_json::from_slice::<Value>(config)
        .ok()
        .and_then(|c| c.get("architecture")?.as_str().map(|a| a == "wasm"))
        .unwrap_or(false)
}

fn parse(bytes: &[u8], what: &str) -> Result<Value, OciError> {
    serde_json::from_slice(bytes).map_err(|e| OciError::Image(format!("invalid {what}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_wasm_manifest_of_an_index() {
        let index = br#"{"manifests":[
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:a","size":1,
             "platform":{"os":"linux","architecture":"amd64"}},
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:b","size":2,
             "platform":{"os":"wasip1","architecture":"wasm"}}]}"#;
        let m = wasm_manifest_of_index(index).unwrap().unwrap();
        assert_eq!((m.digest.as_str(), m.size), ("sha256:b", 2));
        let linux_only = br#"{"manifests":[{"mediaType":"x","digest":"sha256:a","size":1,
            "platform":{"os":"linux","architecture":"amd64"}}]}"#;
        assert_eq!(wasm_manifest_of_index(linux_only).unwrap(), None);
        assert!(wasm_manifest_of_index(b"{}").is_err());
        assert!(is_index("application/vnd.oci.image.index.v1+json"));
    }

    #[test]
    fn finds_wasm_layers_and_artifact_configs() {
        let manifest = br#"{"config":{"mediaType":"application/vnd.oci.image.config.v1+json",
              "digest":"sha256:c","size":3},
            "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:t","size":9},
                      {"mediaType":"application/vnd.wasm.content.layer.v1+wasm","digest":"sha256:w","size":8}]}"#;
        let view = ManifestView::parse(manifest).unwrap();
        assert!(!view.is_wasm_artifact());
        assert_eq!(view.wasm_layers.len(), 1);
        assert_eq!(view.wasm_layers[0].digest, "sha256:w");

        let artifact = br#"{"config":{"mediaType":"application/vnd.wasm.config.v0+json",
              "digest":"sha256:c","size":3},
            "layers":[{"mediaType":"application/wasm","digest":"sha256:w","size":8}]}"#;
        let view = ManifestView::parse(artifact).unwrap();
        assert!(view.is_wasm_artifact());
        assert_eq!(view.wasm_layers.len(), 1);
        assert!(ManifestView::parse(b"{\"layers\":[]}").is_err());
    }

    #[test]
    fn reads_the_architecture_of_a_config() {
        assert!(config_is_wasm(br#"{"architecture":"wasm","os":"wasip1"}"#));
        assert!(!config_is_wasm(br#"{"architecture":"amd64","os":"linux"}"#));
        assert!(!config_is_wasm(b"not json"));
    }
}
