//! `wasmpod-testkit`: writes the images the demo and the benchmark use.
//!
//! - `wasmpod-testkit hello-image OUT.tar NAME`: the hello module at `/hello.wasm`
//! - `wasmpod-testkit probe-image OUT.tar NAME`: the C probe at `/probe.wasm` (needs clang)
//! - `wasmpod-testkit busybox-image OUT.tar NAME`: the host's static busybox, linux/amd64
//! - `wasmpod-testkit big-image OUT.tar NAME`: a module of 20,000 functions (seconds to compile)

use std::path::Path;
use std::process::ExitCode;

use wasmpod_e2e::fixtures;
use wasmpod_oci::image::ImageBuilder;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(cmd), Some(out), Some(name)) = (args.get(1), args.get(2), args.get(3)) else {
        eprintln!(
            "usage: wasmpod-testkit hello-image|probe-image|busybox-image|big-image OUT.tar NAME"
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
