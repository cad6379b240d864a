//! wasmpod's deployment tooling: the `wasmpod` command's `image build` and the node installer
//! (`wasmpod node install|uninstall|status`) that the DaemonSet in `deploy/` runs.

pub mod image_cmd;
pub mod installer_image;
pub mod node;
