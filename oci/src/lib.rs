//! OCI formats for wasmpod: the runtime spec of a container (`config.json`) turned into a
//! [`WorkloadSpec`], finding and classifying the entrypoint inside a rootfs, and writing OCI
//! image layouts as tarballs.
//!
//! This crate knows OCI and nothing of Wasmtime or containerd:
//! 1. [`WorkloadSpec::from_bundle`] reads a bundle's `config.json`.
//! 2. [`resolve::resolve_entrypoint`] finds `args[0]` inside the rootfs.
//! 3. [`classify::EntrypointKind::of_file`] tells a core module, a component and a native
//!    program apart by their first bytes.
//! 4. [`artifact`] finds Wasm layers in image manifests (the shim reads the blobs).
//! 5. [`image::ImageBuilder`] writes image tarballs that `ctr images import` and `docker load`
//!    load, under full names ([`reference::ImageName`]).
#![deny(missing_docs)]

pub mod artifact;
pub mod classify;
pub mod error;
pub mod image;
pub mod reference;
pub mod resolve;
pub mod workload;

pub use classify::{EntrypointKind, NativeKind, WasmKind};
pub use error::OciError;
pub use workload::WorkloadSpec;
