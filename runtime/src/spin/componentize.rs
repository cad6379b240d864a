//! Turning a core module built for a Spin SDK (`wasm32-wasip1`, with the component type its
//! bindings generator embeds) into a component, as Spin does at load: `wit-component` with
//! the WASI preview1 reactor adapter. Components pass through.

use wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER;
use wit_component::ComponentEncoder;

use crate::RuntimeError;

/// The component for `module` (a core module).
pub fn componentize(module: &[u8]) -> Result<Vec<u8>, RuntimeError> {
    ComponentEncoder::default()
        .validate(true)
        .module(module)
        .and_then(|e| {
            e.adapter(
                "wasi_snapshot_preview1",
                WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
            )
        })
        .and_then(|mut e| e.encode())
        .map_err(|e| RuntimeError::Compile {
            what: "module",
            reason: format!(
                "cannot make a component of it (is it built with a Spin SDK for \
                 wasm32-wasip1?): {e:#}"
            ),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_module_with_no_component_type_is_refused_with_a_reason() {
        let module =
            wat::parse_str(r#"(module (import "env" "f" (func)) (memory (export "memory") 1))"#)
                .unwrap();
        let err = componentize(&module).unwrap_err().to_string();
        assert!(err.contains("component"), "{err}");
    }

    #[test]
    fn a_plain_reactor_module_becomes_a_component() {
        let module = wat::parse_str(
            r#"(module
                 (import "wasi_snapshot_preview1" "random_get" (func (param i32 i32) (result i32)))
                 (memory (export "memory") 1)
                 (func (export "_initialize")))"#,
        )
        .unwrap();
        let component = componentize(&module).unwrap();
        assert_eq!(&component[4..8], &[0x0d, 0x00, 0x01, 0x00]);
    }
}
