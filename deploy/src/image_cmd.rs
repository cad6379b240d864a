//! `wasmpod image build`: a Wasm module, component or Spin app as an OCI image tarball.
//!
//! ```text
//! wasmpod image build [options] APP.wasm
//!   -o, --output FILE        the OCI image tarball to write (required)
//!   -t, --tag NAME           the image name, e.g. me/app:1.0 (= docker.io/me/app:1.0) (required)
//!       --path PATH          where the .wasm goes in the image (default /app.wasm)
//!       --file SRC:DST       add a file (repeatable)
//!       --env KEY=VALUE      set an environment variable (repeatable)
//!       --workdir DIR        set the working directory
//!       --platform OS/ARCH   the image platform (default wasi/wasm)
//!       --shape SHAPE        rootfs (default), wasm-layer or artifact
//!
//! wasmpod image build --spin DIR/spin.toml -o OUT.tar -t NAME [--shape rootfs|spin-registry]
//! ```
//!
//! The image is a single-manifest OCI image, deterministic for the same inputs, loadable with
//! `ctr images import --all-platforms`, `docker load` and `skopeo copy oci-archive:`. Shapes:
//! - `rootfs`: `FROM scratch` plus the `.wasm` as a file, whose path is the entrypoint;
//! - `wasm-layer`: the `.wasm` as a Wasm layer of its own (the entrypoint still names the
//!   path, which the shim finds in the content store); extra files go in a tar layer;
//! - `artifact`: a CNCF Wasm artifact (Wasm layer only, no files, no entrypoint; CRI only).
//!
//! With `--spin`, the image is a Spin app, built from its manifest and the files it names:
//! - `rootfs`: `/spin.toml` and its files in the image's filesystem (`FROM scratch` + `COPY`);
//! - `spin-registry`: the layers `spin registry push` writes (a Wasm layer per component, data
//!   layers, the locked app last).

use std::path::PathBuf;

use wasmpod_oci::image::{ImageBuilder, ImageShape};
use wasmpod_oci::reference::ImageName;
use wasmpod_oci::spin::package::{package, PackageShape};
use wasmpod_oci::{EntrypointKind, WasmKind};

pub const USAGE: &str = "usage: wasmpod image build -o OUT.tar -t NAME [--path /app.wasm] \
[--file SRC:DST]... [--env K=V]... [--workdir DIR] [--platform wasi/wasm] \
[--shape rootfs|wasm-layer|artifact] APP.wasm
       wasmpod image build --spin DIR/spin.toml -o OUT.tar -t NAME [--shape rootfs|spin-registry]";

#[derive(Debug, Default)]
struct BuildArgs {
    output: Option<PathBuf>,
    tag: Option<String>,
    path: Option<String>,
    files: Vec<(PathBuf, String)>,
    env: Vec<String>,
    workdir: Option<String>,
    platform: Option<(String, String)>,
    shape: ImageShape,
    wasm: Option<PathBuf>,
    spin: Option<PathBuf>,
}

fn parse(args: &[String]) -> Result<BuildArgs, String> {
    let mut out = BuildArgs::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match arg.as_str() {
            "-o" | "--output" => out.output = Some(value(arg)?.into()),
            "-t" | "--tag" => out.tag = Some(value(arg)?),
            "--path" => {
                let p = value(arg)?;
                if !p.starts_with('/') {
                    return Err(format!("--path must be absolute: {p}"));
                }
                out.path = Some(p);
            }
            "--file" => {
                let spec = value(arg)?;
                let (src, dst) = spec
                    .split_once(':')
                    .filter(|(_, d)| d.starts_with('/'))
                    .ok_or_else(|| format!("--file takes SRC:/DST, not {spec}"))?;
                out.files.push((src.into(), dst.to_string()));
            }
            "--env" => {
                let kv = value(arg)?;
                if !kv.contains('=') {
                    return Err(format!("--env takes KEY=VALUE, not {kv}"));
                }
                out.env.push(kv);
            }
            "--workdir" => out.workdir = Some(value(arg)?),
            "--platform" => {
                let p = value(arg)?;
                let (os, arch) = p
                    .split_once('/')
                    .ok_or_else(|| format!("--platform takes OS/ARCH, not {p}"))?;
                out.platform = Some((os.into(), arch.into()));
            }
            "--shape" => {
                out.shape = match value(arg)?.as_str() {
                    "rootfs" => ImageShape::Rootfs,
                    "wasm-layer" => ImageShape::WasmLayer,
                    "artifact" => ImageShape::WasmArtifact,
                    "spin-registry" => ImageShape::SpinRegistry,
                    other => {
                        return Err(format!(
                            "--shape takes rootfs, wasm-layer, artifact or spin-registry, not \
                             {other}"
                        ))
                    }
                }
            }
            "--spin" => out.spin = Some(value(arg)?.into()),
            "-h" | "--help" => return Err(USAGE.to_string()),
            other if other.starts_with('-') => return Err(format!("unknown option {other}")),
            other => {
                if out.wasm.replace(other.into()).is_some() {
                    return Err("give one .wasm file".into());
                }
            }
        }
    }
    Ok(out)
}

fn build(args: BuildArgs) -> Result<(), String> {
    let output = args.output.clone().ok_or("--output is required")?;
    let tag = args.tag.clone().ok_or("--tag is required")?;
    let name = ImageName::parse(&tag).map_err(|e| e.to_string())?;
    if let Some(manifest) = &args.spin {
        return build_spin(&args, manifest, &name, &output);
    }
    let wasm_path = args.wasm.ok_or("the .wasm file is required")?;
    let wasm =
        std::fs::read(&wasm_path).map_err(|e| format!("read {}: {e}", wasm_path.display()))?;
    match EntrypointKind::of_bytes(&wasm) {
        EntrypointKind::Wasm(WasmKind::CoreModule | WasmKind::Component) => {}
        other => {
            return Err(format!(
                "{} is not Wasm: it is {}",
                wasm_path.display(),
                other.describe()
            ))
        }
    }
    let path = args.path.unwrap_or_else(|| "/app.wasm".into());
    let mut image = ImageBuilder::new(name.to_string()).shape(args.shape);
    image = match args.shape {
        ImageShape::Rootfs => image.entrypoint([path.clone()]).file(&path, wasm, 0o755),
        ImageShape::WasmLayer => image.entrypoint([path.clone()]).wasm_layer(wasm),
        ImageShape::WasmArtifact => {
            if args.workdir.is_some() || !args.env.is_empty() {
                return Err(
                    "a CNCF Wasm artifact has no environment or working directory; \
                            set them in the pod spec"
                        .into(),
                );
            }
            image.wasm_layer(wasm)
        }
        ImageShape::SpinRegistry => {
            return Err("--shape spin-registry is for Spin apps: give --spin DIR/spin.toml".into())
        }
    };
    if let Some((os, arch)) = &args.platform {
        image = image.platform(os, arch);
    }
    for kv in args.env {
        image = image.env(kv);
    }
    if let Some(dir) = args.workdir {
        image = image.working_dir(dir);
    }
    for (src, dst) in args.files {
        let bytes = std::fs::read(&src).map_err(|e| format!("read {}: {e}", src.display()))?;
        image = image.file(&dst, bytes, 0o644);
    }
    image.write_tar(&output).map_err(|e| e.to_string())?;
    println!("wrote {} ({name})", output.display());
    Ok(())
}

/// `--spin`: the app of `manifest` in the shape asked for.
fn build_spin(
    args: &BuildArgs,
    manifest: &std::path::Path,
    name: &ImageName,
    output: &std::path::Path,
) -> Result<(), String> {
    if args.wasm.is_some()
        || !args.files.is_empty()
        || !args.env.is_empty()
        || args.path.is_some()
        || args.workdir.is_some()
        || args.platform.is_some()
    {
        return Err(
            "with --spin the manifest says what goes in the image: give no .wasm, --file, \
             --env, --path, --workdir or --platform"
                .into(),
        );
    }
    let shape = match args.shape {
        ImageShape::Rootfs => PackageShape::Rootfs,
        ImageShape::SpinRegistry => PackageShape::Registry,
        _ => return Err("a Spin app's --shape is rootfs or spin-registry".into()),
    };
    let image = package(manifest, &name.to_string(), shape).map_err(|e| e.to_string())?;
    image.write_tar(output).map_err(|e| e.to_string())?;
    println!("wrote {} ({name})", output.display());
    Ok(())
}

/// Runs `wasmpod image build ARGS` (ARGS after `build`).
pub fn main(args: &[String]) -> Result<(), String> {
    parse(args).and_then(build)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn parses_options() {
        let a = parse(&args(&[
            "-o",
            "x.tar",
            "-t",
            "n:1",
            "--path",
            "/bin/a.wasm",
            "--file",
            "s.txt:/s.txt",
            "--env",
            "A=1",
            "--platform",
            "wasi/wasm",
            "app.wasm",
        ]))
        .unwrap();
        assert_eq!(a.output, Some("x.tar".into()));
        assert_eq!(a.path.as_deref(), Some("/bin/a.wasm"));
        assert_eq!(
            a.files,
            vec![(PathBuf::from("s.txt"), "/s.txt".to_string())]
        );
        assert_eq!(a.platform, Some(("wasi".into(), "wasm".into())));
        assert_eq!(a.wasm, Some("app.wasm".into()));
    }

    #[test]
    fn rejects_bad_options() {
        assert!(parse(&args(&["--path", "rel.wasm"])).is_err());
        assert!(parse(&args(&["--file", "nodst"])).is_err());
        assert!(parse(&args(&["--env", "NOEQ"])).is_err());
        assert!(parse(&args(&["--bogus"])).is_err());
        assert!(parse(&args(&["a.wasm", "b.wasm"])).is_err());
        assert!(parse(&args(&["-o"])).is_err());
    }

    #[test]
    fn builds_only_wasm() {
        let dir = tempfile::tempdir().unwrap();
        let not_wasm = dir.path().join("x.wasm");
        std::fs::write(&not_wasm, b"text").unwrap();
        let a = BuildArgs {
            output: Some(dir.path().join("o.tar")),
            tag: Some("n:1".into()),
            wasm: Some(not_wasm),
            ..Default::default()
        };
        assert!(build(a).unwrap_err().contains("not Wasm"));
        let wasm = dir.path().join("ok.wasm");
        std::fs::write(&wasm, b"\0asm\x01\0\0\0").unwrap();
        let a = BuildArgs {
            output: Some(dir.path().join("o.tar")),
            tag: Some("n:1".into()),
            wasm: Some(wasm),
            ..Default::default()
        };
        build(a).unwrap();
        let tar = std::fs::read(dir.path().join("o.tar")).unwrap();
        let index = tar::Archive::new(tar.as_slice())
            .entries()
            .unwrap()
            .map(|e| e.unwrap())
            .find(|e| e.path().unwrap().to_str() == Some("index.json"))
            .map(|mut e| {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut e, &mut s).unwrap();
                s
            })
            .unwrap();
        // `docker load` wants the full name.
        assert!(index.contains(r#""io.containerd.image.name":"docker.io/library/n:1""#));
    }

    #[test]
    fn refuses_a_bad_name_before_reading_anything() {
        let a = BuildArgs {
            output: Some("/nonexistent/o.tar".into()),
            tag: Some("Me/App".into()),
            wasm: Some("/nonexistent/app.wasm".into()),
            ..Default::default()
        };
        assert!(build(a).unwrap_err().contains("invalid image name"));
    }
}
