//! What a component is for, read from its top-level exports before it is compiled or
//! loaded: a command to run once (`wasi:cli/run`) or an HTTP service
//! (`wasi:http/incoming-handler@0.2.x` or `wasi:http/handler@0.3.x`). The answer picks the engine (an HTTP service gets the
//! pooling allocator) and how the workload is run.

use wasmparser::{Parser, Payload};

/// The WASIp2 export that makes a component an HTTP proxy (any 0.2.x version).
pub const INCOMING_HANDLER: &str = "wasi:http/incoming-handler@0.2.";

/// The WASIp3 export that makes a component an HTTP proxy (any 0.3.x version, release
/// candidates included).
pub const HANDLER: &str = "wasi:http/handler@0.3.";

/// Whether the export `name` is an HTTP handler.
pub fn is_http_handler(name: &str) -> bool {
    name.starts_with(INCOMING_HANDLER) || name.starts_with(HANDLER)
}

/// How a component is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComponentWorld {
    /// Run `wasi:cli/run` once; its result is the exit status.
    Command,
    /// Serve HTTP: one fresh instance per request.
    HttpProxy,
}

impl ComponentWorld {
    /// Reads the exports of the component in `bytes`. A component that exports the HTTP
    /// handler is served, even if it also exports `wasi:cli/run`; anything else (including
    /// bytes that do not parse, which the compiler then reports) is treated as a command.
    pub fn of(bytes: &[u8]) -> ComponentWorld {
        if TopLevel::of(bytes).exports.into_iter().any(is_http_handler) {
            ComponentWorld::HttpProxy
        } else {
            ComponentWorld::Command
        }
    }
}

/// The names of a component's own imports and exports (not those of the components nested
/// in it); as far as the bytes parse.
pub struct TopLevel<'a> {
    /// Its imports' names.
    pub imports: Vec<&'a str>,
    /// Its exports' names.
    pub exports: Vec<&'a str>,
}

impl<'a> TopLevel<'a> {
    /// Reads them from `bytes`.
    pub fn of(bytes: &'a [u8]) -> TopLevel<'a> {
        let mut names = TopLevel {
            imports: Vec::new(),
            exports: Vec::new(),
        };
        let mut depth = 0usize;
        for payload in Parser::new(0).parse_all(bytes) {
            let Ok(payload) = payload else {
                break;
            };
            match payload {
                Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
                Payload::End(_) => depth = depth.saturating_sub(1),
                Payload::ComponentImportSection(imports) if depth == 0 => {
                    names
                        .imports
                        .extend(imports.into_iter().flatten().map(|i| i.name.name));
                }
                Payload::ComponentExportSection(exports) if depth == 0 => {
                    names
                        .exports
                        .extend(exports.into_iter().flatten().map(|e| e.name.name));
                }
                _ => {}
            }
        }
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn component(exports: &str) -> Vec<u8> {
        wat::parse_str(format!(
            r#"(component
                 (core module $m (func (export "f")))
                 (core instance $i (instantiate $m))
                 (func $f (canon lift (core func $i "f")))
                 (instance $h (export "handle" (func $f)))
                 {exports})"#
        ))
        .unwrap()
    }

    #[test]
    fn reads_top_level_exports() {
        let proxy = component(r#"(export "wasi:http/incoming-handler@0.2.12" (instance $h))"#);
        assert_eq!(ComponentWorld::of(&proxy), ComponentWorld::HttpProxy);
        let p3 = component(r#"(export "wasi:http/handler@0.3.0" (instance $h))"#);
        assert_eq!(ComponentWorld::of(&p3), ComponentWorld::HttpProxy);
        let command = component(r#"(export "wasi:cli/run@0.2.0" (instance $h))"#);
        assert_eq!(ComponentWorld::of(&command), ComponentWorld::Command);
        assert_eq!(ComponentWorld::of(b"not wasm"), ComponentWorld::Command);
    }

    #[test]
    fn ignores_exports_of_nested_components() {
        let nested = wat::parse_str(
            r#"(component
                 (component $inner
                   (core module $m (func (export "f")))
                   (core instance $i (instantiate $m))
                   (func $f (canon lift (core func $i "f")))
                   (instance $h (export "handle" (func $f)))
                   (export "wasi:http/incoming-handler@0.2.12" (instance $h))))"#,
        )
        .unwrap();
        assert_eq!(ComponentWorld::of(&nested), ComponentWorld::Command);
    }
}
