//! The tests' private image registry (`test/lib/registry.sh`, address in
//! `WASMPOD_REGISTRY`): images written by the `oci` crate are pushed to it with
//! `skopeo copy oci-archive:` and pulled back through CRI, the way a node gets them.

use std::process::Command;

use wasmpod_oci::image::ImageBuilder;

/// The registry's `host:port`, or `None` (with a message saying why the test skips).
pub fn available() -> Option<String> {
    let address = std::env::var("WASMPOD_REGISTRY").ok();
    if address.is_none() {
        crate::skip::skip(crate::skip::Skip::Missing(
            "no registry under test (`make e2e` starts one)".into(),
        ));
    }
    address
}

/// Writes `image` (whose name must be on the registry) as an OCI archive and pushes it with
/// `skopeo copy oci-archive:`; returns the name.
pub fn push(image: &ImageBuilder, name: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let tar = dir.path().join("image.tar");
    image.write_tar(&tar).expect("write image tar");
    let out = Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(format!("oci-archive:{}", tar.display()))
        .arg(format!("docker://{name}"))
        .output()
        .expect("run skopeo (make setup installs it)");
    assert!(
        out.status.success(),
        "skopeo copy {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    name.to_string()
}
