//! `wasmpod`: the user-facing tool.
//!
//! ```text
//! wasmpod image build ...     a Wasm app as an OCI image (see image_cmd)
//! wasmpod node install|uninstall|status --host-root DIR ...
//!                             put the shim on a node, or take it off (see node)
//! ```

use std::process::ExitCode;

use wasmpod_deploy::{image_cmd, node};

fn usage() -> String {
    format!("{}\n{}", image_cmd::USAGE, node::USAGE)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("image") if args.get(1).map(String::as_str) == Some("build") => {
            image_cmd::main(&args[2..])
        }
        Some("node") => node::main(&args[1..]),
        Some("--help") | Some("-h") | Some("help") => {
            println!("{}", usage());
            Ok(())
        }
        Some("--version") | Some("-V") => {
            println!("wasmpod {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        _ => Err(usage()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wasmpod: {e}");
            ExitCode::from(2)
        }
    }
}
