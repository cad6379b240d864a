//! `spin.toml`: any text through the manifest reader.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = wasmpod_oci::spin::manifest::parse(text);
    }
});
