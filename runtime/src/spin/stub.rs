//! Imports of the Spin platform that wasmpod does not serve yet (`wasi:otel`, WASI release
//! candidates imported next to their release, other drafts), linked as
//! functions that fail the call with the import's name, so that components built against
//! the whole platform (the Python SDK's are) instantiate, and fail only if they call one.
//!
//! Wasmtime's own `define_unknown_imports_as_traps` cannot be used: it defines an exact
//! instance for every import it does not find by exact name, which shadows the semver match
//! that lets a `wasi:http/types@0.2.0` import use the linker's `@0.2.6`.

use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, Linker, ResourceType};
use wasmtime::Engine;

/// Packages whose interfaces the linker already serves (WASI from wasmtime-wasi and
/// wasmtime-wasi-http, by semver, at 0.2.x and 0.3.x): never stubbed, but for their release
/// candidates, which do not match a release.
const SERVED_PACKAGES: [&str; 7] = [
    "wasi:cli/",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:filesystem/",
    "wasi:random/",
    "wasi:sockets/",
    "wasi:http/",
];

/// The Spin interfaces wasmpod serves itself ([`super::host`], [`super::async_host`] and the
/// database and messaging modules).
const SERVED_INTERFACES: [&str; 23] = [
    "fermyon:spin/key-value@2.0.0",
    "fermyon:spin/llm@2.0.0",
    "fermyon:spin/mqtt@2.0.0",
    "fermyon:spin/mysql@2.0.0",
    "fermyon:spin/postgres@2.0.0",
    "fermyon:spin/rdbms-types@2.0.0",
    "fermyon:spin/redis@2.0.0",
    "spin:redis/redis@3.0.0",
    "spin:mqtt/mqtt@3.0.0",
    "spin:mysql/mysql@3.0.0",
    "spin:key-value/key-value@3.0.0",
    "spin:variables/variables@3.0.0",
    "spin:postgres/postgres@3.0.0",
    "spin:postgres/postgres@4.0.0",
    "spin:postgres/postgres@4.2.0",
    "fermyon:spin/sqlite@2.0.0",
    "spin:sqlite/sqlite@3.0.0",
    "spin:sqlite/sqlite@3.1.0",
    "fermyon:spin/variables@2.0.0",
    "wasi:keyvalue/store@0.2.0-draft2",
    "wasi:keyvalue/atomics@0.2.0-draft2",
    "wasi:keyvalue/batch@0.2.0-draft2",
    "wasi:config/store@0.2.0-draft-2024-09-27",
];

/// How the message of a call to a stubbed function starts (Wasmtime's own words for it);
/// the function's name follows, up to the next backquote.
pub const NOT_PROVIDED: &str = "unknown import: `";

/// The message a call to a stubbed function fails with (the HTTP handler explains it).
pub fn not_provided(function: &str) -> String {
    format!("{NOT_PROVIDED}{function}` has not been defined")
}

/// The function a failure `reason` says was not provided, if that is what it says.
pub fn not_provided_in(reason: &str) -> Option<&str> {
    reason.split(NOT_PROVIDED).nth(1)?.split('`').next()
}

/// Defines every instance `component` imports that nothing above serves, as stubs.
pub fn add_missing<T: 'static>(
    linker: &mut Linker<T>,
    engine: &Engine,
    component: &Component,
) -> wasmtime::Result<()> {
    for (name, item) in component.component_type().imports(engine) {
        let served = (SERVED_PACKAGES.iter().any(|p| name.starts_with(p))
            && !name.contains("-rc-"))
            || SERVED_INTERFACES.contains(&name);
        let ComponentItem::ComponentInstance(instance) = item.ty else {
            continue;
        };
        if served {
            continue;
        }
        let mut stubs = linker.instance(name)?;
        for (export, ty) in instance.exports(engine) {
            match ty.ty {
                // An `async func` (the Spin 4 packages) needs a concurrent host function.
                ComponentItem::ComponentFunc(f) if f.async_() => {
                    let message = not_provided(&format!("{name}#{export}"));
                    stubs.func_new_concurrent(export, move |_, _, _, _| {
                        let message = message.clone();
                        Box::pin(async move { Err(wasmtime::Error::msg(message)) })
                    })?;
                }
                ComponentItem::ComponentFunc(_) => {
                    let message = not_provided(&format!("{name}#{export}"));
                    stubs.func_new(export, move |_, _, _, _| {
                        Err(wasmtime::Error::msg(message.clone()))
                    })?;
                }
                ComponentItem::Resource(_) => {
                    stubs.resource(export, ResourceType::host::<()>(), |_, _| Ok(()))?;
                }
                _ => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A component importing an interface nobody serves and exporting `run`, which calls it.
    const CALLS_UNKNOWN: &str = r#"
        (component
          (import "example:nowhere/thing@9.0.0" (instance $i (export "poke" (func))))
          (core func $poke (canon lower (func $i "poke")))
          (core module $m
            (import "host" "poke" (func $poke))
            (func (export "run") call $poke))
          (core instance $mi (instantiate $m (with "host" (instance (export "poke" (func $poke))))))
          (func (export "run") (canon lift (core func $mi "run"))))
    "#;

    #[test]
    fn an_unserved_import_links_and_fails_the_call_with_its_name() {
        let engine = Engine::default();
        let component = Component::new(&engine, CALLS_UNKNOWN).unwrap();
        let mut linker: Linker<()> = Linker::new(&engine);
        add_missing(&mut linker, &engine, &component).unwrap();
        let mut store = wasmtime::Store::new(&engine, ());
        let instance = linker.instantiate(&mut store, &component).unwrap();
        let run = instance
            .get_typed_func::<(), ()>(&mut store, "run")
            .unwrap();
        let err = format!("{:?}", run.call(&mut store, ()).unwrap_err());
        assert_eq!(
            not_provided_in(&err),
            Some("example:nowhere/thing@9.0.0#poke"),
            "{err}"
        );
    }
}
