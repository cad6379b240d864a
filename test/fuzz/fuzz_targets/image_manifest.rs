//! Image manifests, indexes and configs as the shim reads them from containerd's content
//! store: any bytes through each reader, and the Wasm layers of a manifest that parses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasmpod_oci::artifact::{config_is_wasm, wasm_manifest_of_index, ManifestView};

fuzz_target!(|data: &[u8]| {
    if let Ok(view) = ManifestView::parse(data) {
        let _ = view.is_wasm_artifact();
        for layer in &view.layers {
            let _ = view.layer_of_type(&layer.media_type);
        }
    }
    let _ = wasm_manifest_of_index(data);
    let _ = config_is_wasm(data);
});
