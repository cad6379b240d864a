//! wasmpod's end-to-end test kit: Wasm fixtures built from our own sources at test time, OCI
//! image tarballs written with the `oci` crate, and a thin `ctr` client for the private
//! containerd that `test/lib/containerd.sh` starts (its socket is in
//! `WASMPOD_CONTAINERD_ADDRESS`), and a `docker` client for the private dockerd 26 on it.

pub mod cri;
pub mod ctr;
pub mod docker;
pub mod faults;
pub mod fixtures;
pub mod http;
pub mod leaks;
pub mod mqtt;
pub mod mysql;
pub mod native_images;
pub mod node;
pub mod otlp;
pub mod postgres;
pub mod process;
pub mod redis;
pub mod registry;
pub mod skip;
pub mod stress;
pub mod tls;
