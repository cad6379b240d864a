//! Reading a container's Wasm from containerd's content store, for images that carry it as a
//! layer of its own rather than as a file in the rootfs (see `wasmpod_oci::artifact`).
//!
//! Asked only when `args[0]` is not a file in the rootfs: the container record names the
//! image, the image names a manifest (directly, or through an index with a `wasm` entry), and
//! the manifest's Wasm layers are read if its config says `architecture: wasm` or is a CNCF
//! Wasm artifact config. Containers without an image (dockerd 26 creates them so) or with a
//! non-Wasm image give `None`, and the caller reports the missing file.
//!
//! A Wasm layer is streamed to a node-wide directory of layers named by digest (under the
//! compile cache's directory), checked against its digest as it is written, and renamed into
//! place only when complete: it is read from containerd once per node, never held in the
//! shim's memory, and shared by every container that runs it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use containerd_client::services::v1::{
    containers_client::ContainersClient, content_client::ContentClient,
    images_client::ImagesClient, GetContainerRequest, GetImageRequest, ReadContentRequest,
};
use containerd_client::tonic::Request;
use containerd_client::with_namespace;
use sha2::{Digest, Sha256};
use tonic::transport::Channel;
use wasmpod_oci::artifact::{self, BlobRef, ManifestView};
use wasmpod_oci::spin::lock::{LockedApp, ARCHIVE_LAYER, LOCKED_APP_LAYER};

use crate::error::{ShimError, ShimResult};

/// The longest a lookup may take before Create fails with an error.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Manifests, indexes and configs larger than this are not images we read.
const MAX_DOCUMENT: i64 = 4 << 20;

/// Wasm layers larger than this are refused.
const MAX_LAYER: i64 = 1 << 30;

/// containerd's API, as the shim was started to use it.
#[derive(Debug, Clone)]
pub struct ContentStore {
    /// containerd's gRPC socket.
    socket: PathBuf,
    /// The namespace of the shim's containers.
    namespace: String,
}

/// A Wasm layer, written to the node's layer directory.
#[derive(Debug, Clone)]
pub struct WasmLayer {
    /// The file holding the layer's bytes (shared by every container that runs it).
    pub path: PathBuf,
    /// The layer's digest.
    pub digest: String,
    /// Whether it is a lone `application/wasm` layer (a `wkg` package) of a container run
    /// under the Spin runtime name, which the Spin shim runs as a one-component app.
    pub spin_package: bool,
}

/// The runtime name under which a lone Wasm package is a Spin app.
const SPIN_RUNTIME: &str = "io.containerd.spin.v2";

/// A Spin app pushed as layers (`spin registry push`): its lock, and the layers it names, in
/// the node's layer directory.
#[derive(Debug)]
pub struct SpinLayers {
    /// The image, for messages.
    pub image: String,
    /// The locked app.
    pub lock: LockedApp,
    /// Where each layer the lock names is on the node, by digest.
    pub blobs: BTreeMap<String, PathBuf>,
}

/// What the content store holds for a container whose entrypoint is not in its rootfs.
#[derive(Debug)]
pub enum LayerLookup {
    /// The image's Wasm layer, in the node's layer directory.
    Found(WasmLayer),
    /// The image is a Spin app pushed as layers.
    SpinApp(SpinLayers),
    /// The container record names no image (dockerd 26 creates containers that way).
    NoImage,
    /// The image has no Wasm layers, or its config does not say it is Wasm.
    NoWasmLayers,
}

impl ContentStore {
    /// containerd at `address` (a socket path, with or without `unix://`), in `namespace`.
    pub fn new(address: &str, namespace: &str) -> ContentStore {
        ContentStore {
            socket: PathBuf::from(address.strip_prefix("unix://").unwrap_or(address)),
            namespace: namespace.to_string(),
        }
    }

    /// Finds the Wasm layer of container `id`'s image, written into `layers` (once a node).
    pub async fn wasm_layer(&self, id: &str, layers: &Path) -> ShimResult<LayerLookup> {
        match tokio::time::timeout(LOOKUP_TIMEOUT, self.lookup(id, layers)).await {
            Ok(result) => result,
            Err(_) => Err(ShimError::Unavailable(format!(
                "reading the image of {id} from containerd's content store took over {}s",
                LOOKUP_TIMEOUT.as_secs()
            ))),
        }
    }

    async fn lookup(&self, id: &str, layers: &Path) -> ShimResult<LayerLookup> {
        let channel = containerd_client::connect(&self.socket)
            .await
            .map_err(|e| {
                ShimError::Unavailable(format!(
                    "connect to containerd at {}: {e}",
                    self.socket.display()
                ))
            })?;
        let ns = self.namespace.as_str();
        let container = ContainersClient::new(channel.clone())
            .get(with_namespace!(GetContainerRequest { id: id.into() }, ns))
            .await
            .map_err(|e| status("read the container record", e))?
            .into_inner()
            .container;
        let runtime = container
            .as_ref()
            .and_then(|c| c.runtime.as_ref())
            .map(|r| r.name.clone())
            .unwrap_or_default();
        let Some(image_name) = container.map(|c| c.image).filter(|i| !i.is_empty()) else {
            return Ok(LayerLookup::NoImage);
        };
        let image = ImagesClient::new(channel.clone())
            .get(with_namespace!(
                GetImageRequest {
                    name: image_name.clone()
                },
                ns
            ))
            .await
            .map_err(|e| status(&format!("read image {image_name}"), e))?
            .into_inner()
            .image;
        let Some(target) = image.and_then(|i| i.target) else {
            return Ok(LayerLookup::NoWasmLayers);
        };
        let mut target = BlobRef {
            media_type: target.media_type,
            digest: target.digest,
            size: target.size,
        };
        let reader = BlobReader { channel, ns };
        if artifact::is_index(&target.media_type) {
            let index = reader.read(&target, MAX_DOCUMENT).await?;
            match artifact::wasm_manifest_of_index(&index).map_err(oci_error)? {
                Some(manifest) => target = manifest,
                None => return Ok(LayerLookup::NoWasmLayers),
            }
        }
        let manifest =
            ManifestView::parse(&reader.read(&target, MAX_DOCUMENT).await?).map_err(oci_error)?;
        let lock_layer = manifest.layer_of_type(LOCKED_APP_LAYER).cloned();
        if manifest.wasm_layers.is_empty() && lock_layer.is_none() {
            return Ok(LayerLookup::NoWasmLayers);
        }
        let wasm_config = manifest.is_wasm_artifact()
            || artifact::config_is_wasm(&reader.read(&manifest.config, MAX_DOCUMENT).await?);
        if !wasm_config {
            return Ok(LayerLookup::NoWasmLayers);
        }
        if let Some(lock_layer) = lock_layer {
            let spin = spin_layers(&reader, &manifest, &lock_layer, layers, &image_name).await?;
            return Ok(LayerLookup::SpinApp(spin));
        }
        let layer = match manifest.wasm_layers.as_slice() {
            [one] => one,
            many => {
                return Err(ShimError::FailedPrecondition(format!(
                    "image {image_name} has {} Wasm layers; wasmpod runs images with one",
                    many.len()
                )))
            }
        };
        let path = layer_path(layers, &layer.digest)?;
        let present = std::fs::metadata(&path).is_ok_and(|m| m.len() as i64 == layer.size);
        if present {
            log::debug!("{id}: Wasm layer {} is on the node already", layer.digest);
        } else {
            let written = reader.write_to(layer, MAX_LAYER, &path).await?;
            log::debug!("{id}: wrote {written} bytes of Wasm from {image_name}");
        }
        let spin_package = runtime == SPIN_RUNTIME
            && layer.media_type == artifact::WASM_ARTIFACT_LAYER
            && manifest.layers.len() == 1;
        Ok(LayerLookup::Found(WasmLayer {
            path,
            digest: layer.digest.clone(),
            spin_package,
        }))
    }
}

/// Reads the lock of a Spin app image and writes the layers it names to `layers` (each once
/// a node, digest-checked).
async fn spin_layers(
    reader: &BlobReader<'_>,
    manifest: &ManifestView,
    lock_layer: &BlobRef,
    layers: &Path,
    image: &str,
) -> ShimResult<SpinLayers> {
    let bad = |reason: String| {
        ShimError::FailedPrecondition(format!(
            "Spin app {image} ({}): {reason}",
            lock_layer.digest
        ))
    };
    if manifest.layer_of_type(ARCHIVE_LAYER).is_some() {
        return Err(bad(
            "its files are in archive layers (SPIN_OCI_ARCHIVE_LAYERS), which wasmpod does not \
             read yet: push it without SPIN_OCI_ARCHIVE_LAYERS"
                .into(),
        ));
    }
    let lock = LockedApp::parse(&reader.read(lock_layer, MAX_DOCUMENT).await?).map_err(bad)?;
    let mut blobs = BTreeMap::new();
    for digest in lock.digests() {
        let layer = manifest
            .layers
            .iter()
            .find(|l| l.digest == digest)
            .ok_or_else(|| {
                bad(format!(
                    "the lock names {digest}, which is not a layer of the image"
                ))
            })?;
        let path = layer_path(layers, &digest)?;
        let present = std::fs::metadata(&path).is_ok_and(|m| m.len() as i64 == layer.size);
        if !present {
            reader.write_to(layer, MAX_LAYER, &path).await?;
        }
        blobs.insert(digest, path);
    }
    Ok(SpinLayers {
        image: image.to_string(),
        lock,
        blobs,
    })
}

/// Where the layer with `digest` is kept in `layers`; only sha256 digests are accepted.
fn layer_path(layers: &Path, digest: &str) -> ShimResult<PathBuf> {
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| {
            ShimError::FailedPrecondition(format!("layer digest {digest:?} is not a sha256 digest"))
        })?;
    Ok(layers.join(format!("sha256-{hex}.wasm")))
}

/// Reads whole blobs from the content service, checking their digest.
struct BlobReader<'a> {
    channel: Channel,
    ns: &'a str,
}

impl BlobReader<'_> {
    /// The whole blob in memory (documents: manifests, indexes, configs).
    async fn read(&self, blob: &BlobRef, limit: i64) -> ShimResult<Vec<u8>> {
        let mut bytes = Vec::with_capacity(blob.size.clamp(0, limit) as usize);
        self.stream(blob, limit, |chunk| {
            bytes.extend_from_slice(chunk);
            Ok(())
        })
        .await?;
        Ok(bytes)
    }

    /// Streams the blob into `path`: written to a temporary file beside it and renamed into
    /// place once complete and digest-checked. Returns the bytes written.
    async fn write_to(&self, blob: &BlobRef, limit: i64, path: &Path) -> ShimResult<u64> {
        let dir = path.parent().unwrap_or(Path::new("/"));
        std::fs::create_dir_all(dir)
            .map_err(|e| ShimError::Internal(format!("create {}: {e}", dir.display())))?;
        let mut temp = tempfile::NamedTempFile::new_in(dir).map_err(|e| {
            ShimError::Internal(format!("a temporary file in {}: {e}", dir.display()))
        })?;
        let mut written = 0u64;
        self.stream(blob, limit, |chunk| {
            written += chunk.len() as u64;
            temp.write_all(chunk)
                .map_err(|e| ShimError::Internal(format!("write {}: {e}", path.display())))
        })
        .await?;
        temp.persist(path)
            .map_err(|e| ShimError::Internal(format!("keep {}: {}", path.display(), e.error)))?;
        Ok(written)
    }

    /// Hands the blob's bytes to `sink` chunk by chunk, then checks size and digest.
    async fn stream(
        &self,
        blob: &BlobRef,
        limit: i64,
        mut sink: impl FnMut(&[u8]) -> ShimResult<()>,
    ) -> ShimResult<()> {
        if blob.size > limit {
            return Err(ShimError::FailedPrecondition(format!(
                "blob {} ({}) is {} bytes, more than the {limit} wasmpod reads",
                blob.digest, blob.media_type, blob.size
            )));
        }
        let ns = self.ns;
        let request = ReadContentRequest {
            digest: blob.digest.clone(),
            offset: 0,
            size: 0,
        };
        let mut stream = ContentClient::new(self.channel.clone())
            .read(with_namespace!(request, ns))
            .await
            .map_err(|e| status(&format!("read blob {}", blob.digest), e))?
            .into_inner();
        let mut hasher = Sha256::new();
        let mut total: i64 = 0;
        while let Some(chunk) = stream
            .message()
            .await
            .map_err(|e| status(&format!("read blob {}", blob.digest), e))?
        {
            total += chunk.data.len() as i64;
            if total > limit {
                return Err(ShimError::FailedPrecondition(format!(
                    "blob {} is larger than the {limit} bytes wasmpod reads",
                    blob.digest
                )));
            }
            hasher.update(&chunk.data);
            sink(&chunk.data)?;
        }
        let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
        if actual != blob.digest {
            return Err(ShimError::FailedPrecondition(format!(
                "blob {} read from the content store has digest {actual}",
                blob.digest
            )));
        }
        Ok(())
    }
}

fn status(what: &str, e: tonic::Status) -> ShimError {
    ShimError::Unavailable(format!("{what}: {}", e.message()))
}

fn oci_error(e: wasmpod_oci::OciError) -> ShimError {
    ShimError::FailedPrecondition(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_are_kept_by_digest() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        let path = layer_path(Path::new("/cache/layers"), &digest).unwrap();
        assert_eq!(
            path,
            Path::new("/cache/layers").join(format!("sha256-{}.wasm", "ab".repeat(32)))
        );
        for bad in ["sha256:../../etc/passwd", "sha512:abcd", "", "sha256:zz"] {
            assert!(layer_path(Path::new("/l"), bad).is_err(), "{bad}");
        }
    }
}
