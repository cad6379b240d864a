//! Classifying an entrypoint by its first bytes, and reading an ELF header's machine: any
//! bytes as a file's head.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasmpod_oci::classify::EntrypointKind;

fuzz_target!(|data: &[u8]| {
    let _ = EntrypointKind::of_bytes(data).describe();
});
