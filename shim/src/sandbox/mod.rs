//! The process model: how the multi-threaded shim gets container operations done in
//! single-threaded processes. [`protocol`] is the wire format (a leaf); [`client`] is the
//! shim's one client, which uses a [`zygote`] worker or an exec'd helper; the zygote forks a
//! worker per request and runs the function it was forked with (the container helper,
//! `crate::container_setup::respond`), so nothing here calls back up into the helper;
//! [`requester`] tells a worker whether the shim still waits for its answer.

pub mod client;
pub mod protocol;
pub mod requester;
pub mod zygote;
