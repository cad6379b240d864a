//! OCI formats for wasmpod: the runtime spec of a container (`config.json`) turned into a
//! [`WorkloadSpec`], finding and classifying the entrypoint inside a rootfs, and writing OCI
//! image layouts as tarballs.
//!
//! This crate knows OCI and nothing of Wasmtime or containerd:
//! 1. [`WorkloadSpec::from_bundle`] reads a bundle's `config.json`, once.
//! 2. [`locate::locate`] finds `args[0]` inside the rootfs ([`resolve`]), tells a core
//!    module, a component and a native program apart by their first bytes ([`classify`]),
//!    and yields the [`Workload`]: the one value the container helper and the container's
//!    init are given.
//! 3. A rootfs holding `/spin.toml` is a Spin app ([`spin`]): the workload is the whole
//!    [`spin::SpinApp`], its sources and directories resolved in the rootfs.
//! 4. [`artifact`] finds Wasm layers in image manifests (the shim reads the blobs).
//! 5. [`image::ImageBuilder`] writes image tarballs that `ctr images import` and `docker load`
//!    load, under full names ([`reference::ImageName`]).
//! 6. [`settings`] reads the `wasmpod.dev/` annotations (and the same knobs as runtime
//!    options) into the [`settings::Settings`] a workload carries.
#![deny(missing_docs)]

pub mod artifact;
pub mod classify;
pub mod error;
pub mod filesystem;
pub mod image;
pub mod locate;
pub mod reference;
pub mod resolve;
pub mod settings;
pub mod spin;
pub mod workload;

pub use classify::{EntrypointKind, NativeKind, WasmKind};
pub use error::OciError;
pub use locate::{Program, Workload};
pub use workload::WorkloadSpec;
