//! Components built against the WASIp3 release candidate `0.3.0-rc-2026-03-15` (what the
//! Spin 4.0 SDKs and Python `spin-sdk` 4.0 target: `wasi:http/handler@0.3.0-rc-2026-03-15`),
//! served by Wasmtime's WASIp3, which implements the released `0.3.0`. A version with a
//! pre-release part never matches another version when linking, so before such a component
//! is compiled its `wasi:*@0.3.0-rc-2026-03-15` imports and exports are renamed to
//! `@0.3.0` ([`to_release`]). The release keeps the candidate's types; if one differs,
//! linking fails with the difference named, not a wrong call.
//!
//! A component that already uses an interface at both versions (Python `spin-sdk` 5.0 imports
//! the candidate's next to the release's) keeps the candidate's name for that interface: it
//! is then left unlinked, and a call to it fails with its name.

use std::borrow::Cow;
use std::collections::BTreeSet;

use wasm_encoder::reencode::{component_utils, Error, ReencodeComponent};
use wasmparser::Parser;

use crate::RuntimeError;

/// The release candidate served as `0.3.0`.
pub const RC_SUFFIX: &str = "-rc-2026-03-15";

/// The version the candidate is renamed to.
const RELEASE: &str = "@0.3.0";

/// The bytes of `component` with its WASIp3-candidate interface names renamed to `0.3.0`,
/// or `None` when it names none (the common case: nothing is re-encoded).
pub fn to_release(component: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let names = top_level_names(component);
    let renamed: BTreeSet<String> = names
        .iter()
        .filter_map(|name| released(name))
        .filter(|release| !names.contains(*release))
        .map(str::to_string)
        .collect();
    if renamed.is_empty() {
        return Ok(None);
    }
    let mut out = wasm_encoder::Component::new();
    let mut renamer = Renamer { renamed };
    renamer
        .parse_component(&mut out, Parser::new(0), component)
        .map_err(|e| format!("cannot rename its WASIp3 {RC_SUFFIX} interfaces: {e}"))?;
    Ok(Some(out.finish()))
}

/// The component Wasmtime compiles for `component`: [`to_release`]'s, or `component` itself.
pub fn served(component: Cow<'_, [u8]>) -> Result<Cow<'_, [u8]>, RuntimeError> {
    match to_release(&component) {
        Ok(Some(renamed)) => Ok(Cow::Owned(renamed)),
        Ok(None) => Ok(component),
        Err(reason) => Err(RuntimeError::Compile {
            what: "component",
            reason,
        }),
    }
}

/// The release name of a candidate interface name (`wasi:http/types@0.3.0-rc-2026-03-15` →
/// `wasi:http/types@0.3.0`): a prefix of it, so it borrows from the same bytes.
fn released(name: &str) -> Option<&str> {
    let release = name.strip_suffix(RC_SUFFIX)?;
    (name.starts_with("wasi:") && release.ends_with(RELEASE)).then_some(release)
}

/// The names of the component's own imports and exports.
fn top_level_names(component: &[u8]) -> BTreeSet<&str> {
    let names = crate::world::TopLevel::of(component);
    names.imports.into_iter().chain(names.exports).collect()
}

/// Re-encodes a component as it is (the trait's defaults), but for the names of the interfaces it renames, wherever
/// a component-level name says which interface is meant: imports and exports (of nested
/// components too), the arguments a nested component is instantiated with, and the exports
/// aliased out of component instances.
struct Renamer {
    /// The release names whose candidates are renamed.
    renamed: BTreeSet<String>,
}

impl Renamer {
    fn rename<'a>(&self, name: &'a str) -> &'a str {
        match released(name) {
            Some(release) if self.renamed.contains(release) => release,
            _ => name,
        }
    }

    fn extern_name<'a>(
        &self,
        mut name: wasmparser::ComponentExternName<'a>,
    ) -> wasm_encoder::ComponentExternName<'a> {
        name.name = self.rename(name.name);
        name.into()
    }
}

impl wasm_encoder::reencode::Reencode for Renamer {
    type Error = std::convert::Infallible;
}

impl ReencodeComponent for Renamer {
    fn parse_component_import_section(
        &mut self,
        imports: &mut wasm_encoder::ComponentImportSection,
        section: wasmparser::ComponentImportSectionReader<'_>,
    ) -> Result<(), Error<Self::Error>> {
        for import in section {
            let import = import?;
            let ty = self.component_type_ref(import.ty)?;
            imports.import(self.extern_name(import.name), ty);
        }
        Ok(())
    }

    fn parse_component_export(
        &mut self,
        exports: &mut wasm_encoder::ComponentExportSection,
        export: wasmparser::ComponentExport<'_>,
    ) -> Result<(), Error<Self::Error>> {
        let ty = export.ty.map(|t| self.component_type_ref(t)).transpose()?;
        let index = self.component_external_index(export.kind, export.index);
        exports.export(self.extern_name(export.name), export.kind.into(), index, ty);
        Ok(())
    }

    fn parse_component_instance(
        &mut self,
        instances: &mut wasm_encoder::ComponentInstanceSection,
        instance: wasmparser::ComponentInstance<'_>,
    ) -> Result<(), Error<Self::Error>> {
        match instance {
            wasmparser::ComponentInstance::Instantiate {
                component_index,
                args,
            } => {
                let component = self.component_index(component_index);
                let args: Vec<_> = args
                    .iter()
                    .map(|arg| {
                        let index = self.component_external_index(arg.kind, arg.index);
                        (self.rename(arg.name), arg.kind.into(), index)
                    })
                    .collect();
                instances.instantiate(component, args);
                Ok(())
            }
            from_exports => {
                component_utils::parse_component_instance(self, instances, from_exports)
            }
        }
    }

    fn component_alias<'a>(
        &mut self,
        alias: wasmparser::ComponentAlias<'a>,
    ) -> Result<wasm_encoder::Alias<'a>, Error<Self::Error>> {
        match alias {
            wasmparser::ComponentAlias::InstanceExport {
                kind,
                instance_index,
                name,
            } => Ok(wasm_encoder::Alias::InstanceExport {
                instance: self.component_instance_index(instance_index),
                kind: kind.into(),
                name: self.rename(name),
            }),
            other => component_utils::component_alias(self, other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A component importing `types` and exporting `handler` at `version`, with a nested
    /// component that imports the same interface under the same name.
    fn component(imports: &[&str], export: &str) -> Vec<u8> {
        let imports: String = imports
            .iter()
            .map(|name| format!(r#"(import "{name}" (instance (export "f" (func))))"#))
            .collect();
        let first = imports_first(imports.as_str());
        wat::parse_str(format!(
            r#"(component
                 {imports}
                 (component $inner
                   (import "{first}" (instance $t (export "f" (func))))
                   (alias export $t "f" (func $f))
                   (instance $h (export "handle" (func $f)))
                   (export "{export}" (instance $h)))
                 (instance $i (instantiate $inner (with "{first}" (instance 0))))
                 (alias export $i "{export}" (instance $e))
                 (export "{export}" (instance $e)))"#
        ))
        .unwrap()
    }

    fn imports_first(imports: &str) -> String {
        imports
            .split('"')
            .nth(1)
            .expect("at least one import")
            .to_string()
    }

    fn names(bytes: &[u8]) -> Vec<String> {
        let mut names: Vec<String> = top_level_names(bytes)
            .into_iter()
            .map(str::to_string)
            .collect();
        names.sort();
        names
    }

    #[test]
    fn candidate_names_become_the_release() {
        let rc = component(
            &["wasi:http/types@0.3.0-rc-2026-03-15"],
            "wasi:http/handler@0.3.0-rc-2026-03-15",
        );
        let renamed = to_release(&rc).unwrap().expect("renamed");
        wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
            .validate_all(&renamed)
            .expect("a valid component");
        assert_eq!(
            names(&renamed),
            ["wasi:http/handler@0.3.0", "wasi:http/types@0.3.0"]
        );
    }

    #[test]
    fn components_without_candidates_are_left_alone() {
        let release = component(&["wasi:http/types@0.3.0"], "wasi:http/handler@0.3.0");
        assert_eq!(to_release(&release).unwrap(), None);
        // Another candidate, or a candidate outside `wasi:`, is not this one.
        let other = component(
            &[
                "wasi:http/types@0.3.0-rc-2026-01-06",
                "spin:x/y@0.3.0-rc-2026-03-15",
            ],
            "wasi:http/handler@0.3.0-rc-2026-01-06",
        );
        assert_eq!(to_release(&other).unwrap(), None);
    }

    #[test]
    fn an_interface_imported_at_both_versions_keeps_the_candidate_name() {
        let both = component(
            &[
                "wasi:http/types@0.3.0",
                "wasi:http/types@0.3.0-rc-2026-03-15",
                "wasi:random/random@0.3.0-rc-2026-03-15",
            ],
            "wasi:http/handler@0.3.0",
        );
        let renamed = to_release(&both).unwrap().expect("renamed");
        assert_eq!(
            names(&renamed),
            [
                "wasi:http/handler@0.3.0",
                "wasi:http/types@0.3.0",
                "wasi:http/types@0.3.0-rc-2026-03-15",
                "wasi:random/random@0.3.0",
            ]
        );
    }
}
