//! `wasmpod-testkit`: writes the images the demo and the benchmark use.
//!
//! - `wasmpod-testkit hello-image OUT.tar NAME`: the hello module at `/hello.wasm`
//! - `wasmpod-testkit probe-image OUT.tar NAME`: the C probe at `/probe.wasm` (needs clang)
//! - `wasmpod-testkit busybox-image OUT.tar NAME`: the host's static busybox, linux/amd64
//! - `wasmpod-testkit big-image OUT.tar NAME`: a module of 20,000 functions (seconds to compile)
//! - `wasmpod-testkit py-proxy-image OUT.tar NAME`: the componentize-py `wasi:http` proxy at
//!   `/proxy.wasm` (needs `make setup`); `py-proxy-wasm OUT.wasm -` writes the component alone
//! - `wasmpod-testkit c-proxy-image OUT.tar NAME`: the C `wasi:http` proxy at `/proxy.wasm`
//!   (needs `make setup`); `c-proxy-wasm OUT.wasm -` writes the component alone
//! - `wasmpod-testkit spin-py-image OUT.tar NAME`: the Python Spin SDK test app, `/spin.toml`
//!   in the rootfs (needs `make setup`)
//! - `wasmpod-testkit spin-rust-image OUT.tar NAME`: the Spin Rust SDK hello and key-value
//!   counter (needs `make setup`)
//! - `wasmpod-testkit spin-rust-hello-image OUT.tar NAME`: the same without the counter (it
//!   imports only WASI); `spin-rust-hello-wasm OUT.wasm -` writes it componentized as
//!   wasmpod does, for `wasmtime serve`
//! - `wasmpod-testkit spin-c-image OUT.tar NAME`: a Spin hello app whose component is the C
//!   `wasi:http` proxy built as a core module (componentized when it is first loaded)
//! - `wasmpod-testkit tree-image OUT.tar NAME DIR ENTRY`: every file under DIR at the same
//!   path under `/`, with `/ENTRY` as the entrypoint (for programs that ship data files)

use std::path::Path;
use std::process::ExitCode;

use wasmpod_e2e::fixtures;
use wasmpod_oci::image::ImageBuilder;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(cmd), Some(out), Some(name)) = (args.get(1), args.get(2), args.get(3)) else {
        eprintln!(
            "usage: wasmpod-testkit hello-image|probe-image|busybox-image|big-image|py-proxy-image|\
             c-proxy-image|spin-py-image|spin-rust-image|spin-rust-hello-image|spin-c-image OUT.tar NAME, py-proxy-wasm|c-proxy-wasm|spin-rust-hello-wasm OUT.wasm -, \
             tree-image OUT.tar NAME DIR ENTRY"
        );
        return ExitCode::from(2);
    };
    let image = match cmd.as_str() {
        "hello-image" => ImageBuilder::new(name.as_str())
            .entrypoint(["/hello.wasm"])
            .file("/hello.wasm", fixtures::wat(fixtures::HELLO_WAT), 0o755),
        "probe-image" => ImageBuilder::new(name.as_str())
            .entrypoint(["/probe.wasm"])
            .file("/probe.wasm", fixtures::probe(), 0o755),
        "big-image" => ImageBuilder::new(name.as_str())
            .entrypoint(["/big.wasm"])
            .file("/big.wasm", fixtures::big_module(20_000, 7), 0o755),
        "busybox-image" => match std::fs::read("/bin/busybox") {
            Ok(bytes) => ImageBuilder::new(name.as_str())
                .platform("linux", "amd64")
                .entrypoint(["/bin/busybox"])
                .file("/bin/busybox", bytes, 0o755),
            Err(e) => {
                eprintln!("read /bin/busybox (apt-get install busybox-static): {e}");
                return ExitCode::FAILURE;
            }
        },
        "py-proxy-image" => ImageBuilder::new(name.as_str())
            .entrypoint(["/proxy.wasm"])
            .file(
                "/proxy.wasm",
                fixtures::py_component("proxy", fixtures::PyWorld::HttpProxy),
                0o755,
            ),
        "spin-py-image" => fixtures::spin_py_image(name, fixtures::SPIN_PY_MANIFEST),
        "spin-rust-image" => fixtures::spin_rust_image(name),
        "spin-rust-hello-image" => fixtures::spin_image(
            name,
            "spin_manifest_version = 2\n[application]\nname = \"rust-hello\"\n\
             [[trigger.http]]\nroute = \"/...\"\ncomponent = \"hello\"\n\
             [component.hello]\nsource = \"hello.wasm\"\n",
            &[("/hello.wasm", fixtures::spin_rust_hello_module())],
        ),
        "spin-rust-hello-wasm" => {
            let wasm = fixtures::componentized(&fixtures::spin_rust_hello_module());
            return match std::fs::write(out, wasm) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("write {out}: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        "spin-c-image" => fixtures::spin_image(
            name,
            "spin_manifest_version = 2\n[application]\nname = \"hello\"\n\
             [[trigger.http]]\nroute = \"/...\"\ncomponent = \"hello\"\n\
             [component.hello]\nsource = \"hello.wasm\"\n",
            &[("/hello.wasm", fixtures::c_proxy_core_module())],
        ),
        "c-proxy-image" => ImageBuilder::new(name.as_str())
            .entrypoint(["/proxy.wasm"])
            .file("/proxy.wasm", fixtures::c_proxy_component(), 0o755),
        "py-proxy-wasm" | "c-proxy-wasm" => {
            let wasm = if cmd == "c-proxy-wasm" {
                fixtures::c_proxy_component()
            } else {
                fixtures::py_component("proxy", fixtures::PyWorld::HttpProxy)
            };
            return match std::fs::write(out, wasm) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("write {out}: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        "tree-image" => {
            let (Some(root), Some(entry)) = (args.get(4), args.get(5)) else {
                eprintln!("usage: wasmpod-testkit tree-image OUT.tar NAME DIR ENTRY");
                return ExitCode::from(2);
            };
            match tree_image(name, Path::new(root), entry) {
                Ok(image) => image,
                Err(e) => {
                    eprintln!("read {root}: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        other => {
            eprintln!("unknown command {other}");
            return ExitCode::from(2);
        }
    };
    match image.write_tar(Path::new(out)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// An image of every regular file under `root`, entrypoint `/entry`.
fn tree_image(name: &str, root: &Path, entry: &str) -> std::io::Result<ImageBuilder> {
    let mut image = ImageBuilder::new(name).entrypoint([format!("/{entry}")]);
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir)? {
            let path = e?.path();
            let meta = std::fs::metadata(&path)?;
            if meta.is_dir() {
                dirs.push(path);
            } else if meta.is_file() {
                let rel = path.strip_prefix(root).map_err(std::io::Error::other)?;
                let mode = if rel == Path::new(entry) {
                    0o755
                } else {
                    0o644
                };
                image = image.file(&format!("/{}", rel.display()), std::fs::read(&path)?, mode);
            }
        }
    }
    Ok(image)
}
