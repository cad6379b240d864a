//! Spin applications: the model wasmpod runs ([`app::SpinApp`]), read from a `spin.toml`
//! ([`manifest`], resolved in an image's filesystem by [`rootfs`]).

pub mod app;
pub mod lock;
pub mod manifest;
pub mod package;
pub mod rootfs;

pub use app::SpinApp;
