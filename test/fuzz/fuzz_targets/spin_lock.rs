//! A Spin registry image's locked app (`spin.lock` JSON): any bytes through its reader.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = wasmpod_oci::spin::lock::LockedApp::parse(data);
});
