//! The installer image the DaemonSet runs: the `wasmpod` CLI and the shim, each with the
//! shared libraries it loads (found the way the dynamic loader finds them, by `ldd`), as a
//! linux/amd64 OCI image built with wasmpod's own image builder. Nothing else is in it: no
//! shell, no package manager.
//!
//! ```text
//! wasmpod node image -o OUT.tar -t NAME [--shim PATH]
//! ```

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use wasmpod_oci::image::ImageBuilder;
use wasmpod_oci::reference::ImageName;

/// Where the binaries go in the image.
pub const IMAGE_BIN_DIR: &str = "/opt/wasmpod/bin";

/// The image of `wasmpod` (this binary) and `shim`.
pub fn build(name: &ImageName, wasmpod: &Path, shim: &Path) -> Result<ImageBuilder, String> {
    let mut image = ImageBuilder::new(name.to_string())
        .platform("linux", "amd64")
        .entrypoint([format!("{IMAGE_BIN_DIR}/wasmpod")])
        .cmd(["node", "install", "--host-root", "/host"]);
    let mut libraries = BTreeSet::new();
    for (binary, file_name) in [
        (wasmpod, "wasmpod"),
        (shim, super::node::install::SHIM_NAME),
    ] {
        let bytes = std::fs::read(binary).map_err(|e| format!("read {}: {e}", binary.display()))?;
        image = image.file(&format!("{IMAGE_BIN_DIR}/{file_name}"), bytes, 0o755);
        libraries.extend(shared_libraries(binary)?);
    }
    for lib in libraries {
        let bytes = std::fs::read(&lib).map_err(|e| format!("read {}: {e}", lib.display()))?;
        image = image.file(&lib.to_string_lossy(), bytes, 0o755);
    }
    Ok(image)
}

/// The shared libraries (and the loader) `binary` needs, as absolute paths.
pub fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>, String> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .map_err(|e| format!("run ldd: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // A static binary needs nothing.
        if text.contains("not a dynamic executable")
            || String::from_utf8_lossy(&out.stderr).contains("not a dynamic executable")
        {
            return Ok(Vec::new());
        }
        return Err(format!(
            "ldd {}: {}",
            binary.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    parse_ldd(&text)
}

/// The paths in `ldd` output: `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` and
/// the loader line `/lib64/ld-linux-x86-64.so.2 (0x...)`; `linux-vdso.so.1` is the kernel's.
fn parse_ldd(text: &str) -> Result<Vec<PathBuf>, String> {
    let mut paths = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.contains("=> not found") {
            return Err(format!("a library is missing: {line}"));
        }
        let path = match line.split_once("=>") {
            Some((_, right)) => right.split_whitespace().next(),
            None => line
                .split_whitespace()
                .next()
                .filter(|p| p.starts_with('/')),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            paths.push(PathBuf::from(p));
        }
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ldd_output() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        assert_eq!(
            parse_ldd(text).unwrap(),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
        assert!(parse_ldd("\tlibfoo.so.1 => not found\n").is_err());
    }
}
