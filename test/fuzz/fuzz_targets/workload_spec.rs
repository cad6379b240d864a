//! `config.json` to the workload: any bytes as an OCI runtime spec, then (when it parses) the
//! workload view of it and the search for its entrypoint in a small rootfs (a Wasm file, a
//! script, a symlink loop, a link out of the rootfs, a directory). Its `root` is always that
//! rootfs: the target never looks at the node's own files.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use oci_spec::runtime::{RootBuilder, Spec};
use wasmpod_oci::locate::locate;
use wasmpod_oci::WorkloadSpec;

fn bundle() -> &'static PathBuf {
    static BUNDLE: OnceLock<PathBuf> = OnceLock::new();
    BUNDLE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir").keep();
        let rootfs = dir.join("rootfs");
        std::fs::create_dir_all(rootfs.join("bin")).expect("mkdir");
        std::fs::create_dir_all(rootfs.join("data")).expect("mkdir");
        std::fs::write(rootfs.join("app.wasm"), b"\0asm\x01\0\0\0").expect("write");
        std::fs::write(rootfs.join("bin/run.sh"), b"#!/bin/nope\n").expect("write");
        let _ = std::os::unix::fs::symlink("/loop", rootfs.join("loop"));
        let _ = std::os::unix::fs::symlink("../../../../etc/passwd", rootfs.join("out"));
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(mut spec) = serde_json::from_slice::<Spec>(data) else {
        return;
    };
    let root = RootBuilder::default()
        .path("rootfs")
        .build()
        .expect("a root");
    spec.set_root(Some(root));
    if let Ok(workload) = WorkloadSpec::from_spec(&spec, bundle()) {
        let _ = locate(&workload);
    }
});
