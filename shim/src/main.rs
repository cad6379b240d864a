//! `containerd-shim-wasmpod-v1`: the wasmpod containerd shim (also installed as
//! `containerd-shim-spin-v2` and `containerd-shim-wasmtime-v1`).
//!
//! One binary, three modes:
//! - containerd's shim protocol: `start`, `delete`, and the serving daemon ([`shim_cmd`]);
//! - `__wasmpod-container`: the single-threaded container helper ([`container_setup`]), which
//!   creates containers with libcontainer; its container init then runs the Wasm guest
//!   ([`executor`]). The serving shim runs it in workers of its zygote ([`sandbox`]) instead
//!   of exec'ing the binary, when it can.

mod cgroup;
mod compile_cgroup;
mod compile_cmd;
mod container_setup;
mod content;
mod error;
mod events;
mod executor;
mod lifecycle;
mod oom;
mod ops;
mod options;
mod reaper;
mod rootfs;
mod sandbox;
mod service;
mod shim_cmd;
mod start_signal;
mod task;
mod tty;

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args
        .get(1)
        .map(|a| a == sandbox::protocol::HELPER_ARG)
        .unwrap_or(false)
    {
        container_setup::main();
    }
    if args
        .get(1)
        .map(|a| a == sandbox::protocol::COMPILE_ARG)
        .unwrap_or(false)
    {
        compile_cmd::main();
    }
    std::process::exit(shim_cmd::main(&args));
}
