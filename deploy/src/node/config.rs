//! The containerd config edit: wasmpod's runtime handlers as tables at the path the file's
//! schema version requires, added, updated in place and removed with `toml_edit`, so every
//! other byte of the file stays as it was. Pure text in, text out: no files here.

use toml_edit::{value, Array, DocumentMut, Item, Table};

use super::error::NodeError;

/// The config schema a containerd reads a file with: the file's `version`, or, with no
/// `version` line, what that containerd assumes (1.x: version 1, 2.x: version 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    V1,
    V2,
    V3,
}

impl Schema {
    /// The schema of `text` as a containerd of major version `containerd_major` reads it.
    pub fn of(text: &str, containerd_major: Option<u64>) -> Result<Schema, NodeError> {
        let doc = parse(text)?;
        let schema = match doc.get("version") {
            Some(item) => match item.as_integer() {
                Some(1) => Schema::V1,
                Some(2) => Schema::V2,
                Some(3) => Schema::V3,
                _ => {
                    return Err(NodeError::Config(format!(
                        "`version = {}` is not a containerd config version (1, 2 or 3)",
                        item.to_string().trim()
                    )))
                }
            },
            None if text.trim().is_empty() => match containerd_major {
                Some(major) => Schema::for_new_file(major),
                None => Schema::V2,
            },
            None => match containerd_major {
                Some(1) => Schema::V1,
                Some(_) => Schema::V3,
                None => {
                    return Err(NodeError::Config(
                        "the file has no `version` line and containerd's version is unknown, \
                         so its schema is too: add `version = 2` (containerd 1.x) or \
                         `version = 3` (2.x), or name the containerd binary with --containerd"
                            .into(),
                    ))
                }
            },
        };
        if schema == Schema::V3 && containerd_major == Some(1) {
            return Err(NodeError::Config(
                "the file is version 3, which containerd 1.x cannot read".into(),
            ));
        }
        Ok(schema)
    }

    /// The version a file the installer creates gets, for a containerd of this major version.
    pub fn for_new_file(containerd_major: u64) -> Schema {
        if containerd_major >= 2 {
            Schema::V3
        } else {
            Schema::V2
        }
    }

    pub fn number(self) -> i64 {
        match self {
            Schema::V1 => 1,
            Schema::V2 => 2,
            Schema::V3 => 3,
        }
    }

    /// The CRI plugin's table that holds `containerd.runtimes`.
    pub fn cri_runtime_plugin(self) -> &'static str {
        match self {
            Schema::V1 => "cri",
            Schema::V2 => "io.containerd.grpc.v1.cri",
            Schema::V3 => "io.containerd.cri.v1.runtime",
        }
    }

    /// The dotted path of one handler's table, as a user would write it.
    pub fn handler_path(self, handler: &str) -> String {
        format!(
            "plugins.\"{}\".containerd.runtimes.{handler}",
            self.cri_runtime_plugin()
        )
    }
}

/// One runtime handler: the CRI name (the RuntimeClass's `handler`) and the shim it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handler {
    pub name: String,
    pub runtime_type: String,
}

/// The handler's `options` table, which containerd passes to the shim.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShimOptions {
    pub systemd_cgroup: bool,
    pub cache_dir: Option<String>,
    pub cache_max_bytes: Option<u64>,
    /// A file with the same options, for containerd 1.6, which passes only its path.
    pub config_path: Option<String>,
}

impl ShimOptions {
    fn table(&self) -> Table {
        let mut t = Table::new();
        t["SystemdCgroup"] = value(self.systemd_cgroup);
        if let Some(dir) = &self.cache_dir {
            t["CacheDir"] = value(dir.as_str());
        }
        if let Some(max) = self.cache_max_bytes {
            t["CacheMaxBytes"] = value(i64::try_from(max).unwrap_or(i64::MAX));
        }
        if let Some(path) = &self.config_path {
            t["ConfigPath"] = value(path.as_str());
        }
        t
    }

    /// The options as the standalone TOML file `config_path` names.
    pub fn file_text(&self) -> String {
        let mut doc = DocumentMut::new();
        let mut plain = self.clone();
        plain.config_path = None;
        for (k, v) in plain.table().iter() {
            doc[k] = v.clone();
        }
        doc.to_string()
    }
}

/// What `apply` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub text: String,
    /// Whether `text` differs from the input.
    pub changed: bool,
}

/// Adds or updates the tables of `handlers` in `text`, read with `schema`, and removes the
/// tables in `owned` (those an earlier install added) that `handlers` no longer names. A
/// handler table that exists and is not in `owned` is someone else's: that is an error, not
/// an overwrite.
pub fn apply(
    text: &str,
    schema: Schema,
    handlers: &[Handler],
    options: &ShimOptions,
    owned: &[String],
) -> Result<Applied, NodeError> {
    let mut doc = parse(text)?;
    if text.trim().is_empty() {
        doc["version"] = value(schema.number());
    }
    let runtimes = runtimes_table(&mut doc, schema)?;
    let mut changed = text.trim().is_empty();
    for handler in handlers {
        let wanted = handler_table(handler, options);
        match runtimes.get(&handler.name) {
            Some(existing) => {
                let Some(existing) = existing.as_table() else {
                    return Err(NodeError::Conflict(format!(
                        "{} is not a table",
                        schema.handler_path(&handler.name)
                    )));
                };
                if !owned.contains(&handler.name) {
                    let other = existing
                        .get("runtime_type")
                        .and_then(Item::as_str)
                        .unwrap_or("no runtime_type");
                    return Err(NodeError::Conflict(format!(
                        "the handler {:?} is already configured ({} = {other:?}) and wasmpod \
                         did not add it; remove it, or choose other handler names with \
                         --handlers",
                        handler.name,
                        schema.handler_path(&handler.name)
                    )));
                }
                if same_values(existing, &wanted) {
                    continue;
                }
                runtimes.insert(&handler.name, Item::Table(wanted));
                changed = true;
            }
            None => {
                runtimes.insert(&handler.name, Item::Table(wanted));
                changed = true;
            }
        }
    }
    // Tables an earlier install added for handlers no longer asked for go, so that the lock,
    // which lists only the handlers asked for now, names every table the file has of ours.
    for name in owned {
        if !handlers.iter().any(|h| &h.name == name) && runtimes.remove(name).is_some() {
            changed = true;
        }
    }
    if !changed {
        return Ok(Applied {
            text: text.to_string(),
            changed: false,
        });
    }
    let mut out = doc.to_string();
    if !text.is_empty() && !text.ends_with('\n') && !out.ends_with('\n') {
        out.push('\n');
    }
    Ok(Applied { text: out, changed })
}

/// Removes the tables of the handlers named `names` from `text`; the parent tables that
/// become empty and were never written out stay unwritten.
pub fn remove(text: &str, schema: Schema, names: &[String]) -> Result<String, NodeError> {
    let mut doc = parse(text)?;
    let Some(runtimes) = find_runtimes(&mut doc, schema) else {
        return Ok(text.to_string());
    };
    let mut removed = false;
    for name in names {
        removed |= runtimes.remove(name).is_some();
    }
    Ok(if removed {
        doc.to_string()
    } else {
        text.to_string()
    })
}

/// The handler names `text` configures, and each one's `runtime_type`.
pub fn handlers_in(text: &str, schema: Schema) -> Result<Vec<(String, String)>, NodeError> {
    let mut doc = parse(text)?;
    let Some(runtimes) = find_runtimes(&mut doc, schema) else {
        return Ok(Vec::new());
    };
    Ok(runtimes
        .iter()
        .map(|(name, item)| {
            let runtime_type = item
                .get("runtime_type")
                .and_then(Item::as_str)
                .unwrap_or_default();
            (name.to_string(), runtime_type.to_string())
        })
        .collect())
}

/// The runc handler's `SystemdCgroup`, when the file sets one: a rendered config (k3s, rke2)
/// carries the cgroup driver its kubelet uses there.
pub fn runc_systemd_cgroup(text: &str, schema: Schema) -> Option<bool> {
    let mut doc = parse(text).ok()?;
    let runtimes = find_runtimes(&mut doc, schema)?;
    runtimes
        .get("runc")?
        .get("options")?
        .get("SystemdCgroup")?
        .as_bool()
}

/// Only our tables, as a block to append to a template (k3s, rke2): the same tables `apply`
/// writes, with parents left implicit.
pub fn tables_text(schema: Schema, handlers: &[Handler], options: &ShimOptions) -> String {
    let mut doc = DocumentMut::new();
    let runtimes = runtimes_table(&mut doc, schema).expect("a new document has no conflicts");
    for handler in handlers {
        runtimes.insert(&handler.name, Item::Table(handler_table(handler, options)));
    }
    doc.to_string()
}

fn parse(text: &str) -> Result<DocumentMut, NodeError> {
    text.parse::<DocumentMut>()
        .map_err(|e| NodeError::Config(format!("not valid TOML: {e}")))
}

fn handler_table(handler: &Handler, options: &ShimOptions) -> Table {
    let mut t = Table::new();
    t["runtime_type"] = value(handler.runtime_type.as_str());
    // The pod annotations wasmpod reads (none required; passed so that they can be).
    let mut annotations = Array::new();
    annotations.push("wasmpod.dev/*");
    t["pod_annotations"] = value(annotations);
    t["options"] = Item::Table(options.table());
    t
}

/// Whether `existing` holds exactly the keys and values of `wanted` (formatting aside).
fn same_values(existing: &Table, wanted: &Table) -> bool {
    to_json(&Item::Table(existing.clone())) == to_json(&Item::Table(wanted.clone()))
}

fn to_json(item: &Item) -> serde_json::Value {
    use serde_json::Value as J;
    match item {
        Item::None => J::Null,
        Item::Value(v) => value_json(v),
        Item::Table(t) => J::Object(t.iter().map(|(k, v)| (k.to_string(), to_json(v))).collect()),
        Item::ArrayOfTables(a) => {
            J::Array(a.iter().map(|t| to_json(&Item::Table(t.clone()))).collect())
        }
    }
}

fn value_json(v: &toml_edit::Value) -> serde_json::Value {
    use serde_json::Value as J;
    use toml_edit::Value as V;
    match v {
        V::String(s) => J::String(s.value().clone()),
        V::Integer(i) => J::from(*i.value()),
        V::Float(f) => J::from(*f.value()),
        V::Boolean(b) => J::Bool(*b.value()),
        V::Datetime(d) => J::String(d.value().to_string()),
        V::Array(a) => J::Array(a.iter().map(value_json).collect()),
        V::InlineTable(t) => J::Object(
            t.iter()
                .map(|(k, v)| (k.to_string(), value_json(v)))
                .collect(),
        ),
    }
}

/// `plugins.<cri>.containerd.runtimes`, created (as implicit tables) where missing.
fn runtimes_table(doc: &mut DocumentMut, schema: Schema) -> Result<&mut Table, NodeError> {
    let mut table = doc.as_table_mut();
    let mut path = String::new();
    for key in [
        "plugins",
        schema.cri_runtime_plugin(),
        "containerd",
        "runtimes",
    ] {
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(key);
        let item = table.entry(key).or_insert_with(|| {
            let mut t = Table::new();
            t.set_implicit(true);
            Item::Table(t)
        });
        table = match item {
            Item::Table(t) => t,
            _ => {
                return Err(NodeError::Config(format!(
                    "{path} is not written as a [table]; wasmpod edits only tables"
                )))
            }
        };
    }
    Ok(table)
}

fn find_runtimes(doc: &mut DocumentMut, schema: Schema) -> Option<&mut Table> {
    doc.get_mut("plugins")?
        .get_mut(schema.cri_runtime_plugin())?
        .get_mut("containerd")?
        .get_mut("runtimes")?
        .as_table_mut()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handlers() -> Vec<Handler> {
        vec![
            Handler {
                name: "wasmpod".into(),
                runtime_type: "io.containerd.wasmpod.v1".into(),
            },
            Handler {
                name: "spin".into(),
                runtime_type: "io.containerd.spin.v2".into(),
            },
        ]
    }

    fn opts() -> ShimOptions {
        ShimOptions {
            systemd_cgroup: true,
            cache_dir: Some("/var/lib/wasmpod/cache".into()),
            cache_max_bytes: Some(1 << 30),
            config_path: Some("/opt/wasmpod/etc/runtime-options.toml".into()),
        }
    }

    const V2: &str = r#"version = 2
# the node's own settings
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.9"   # pinned
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      SystemdCgroup = true
"#;

    const V3: &str = r#"version = 3
[plugins.'io.containerd.cri.v1.runtime'.containerd]
  default_runtime_name = 'runc'
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
    runtime_type = 'io.containerd.runc.v2'
"#;

    #[test]
    fn schema_follows_the_version_line_then_containerd() {
        assert_eq!(Schema::of(V2, Some(2)).unwrap(), Schema::V2);
        assert_eq!(Schema::of(V3, Some(2)).unwrap(), Schema::V3);
        assert!(Schema::of(V3, Some(1)).is_err());
        assert_eq!(Schema::of("[plugins]\n", Some(1)).unwrap(), Schema::V1);
        assert_eq!(Schema::of("[plugins]\n", Some(2)).unwrap(), Schema::V3);
        assert!(Schema::of("[plugins]\n", None)
            .unwrap_err()
            .to_string()
            .contains("no `version` line"));
        assert_eq!(Schema::of("", Some(2)).unwrap(), Schema::V3);
        assert_eq!(Schema::of("", Some(1)).unwrap(), Schema::V2);
        assert!(Schema::of("version = 9\n", Some(2)).is_err());
        assert!(Schema::of("version = [", Some(2)).is_err());
    }

    #[test]
    fn adds_tables_at_the_schemas_path_and_keeps_the_rest() {
        let out = apply(V2, Schema::V2, &handlers(), &opts(), &[]).unwrap();
        assert!(out.changed);
        assert!(out.text.starts_with(V2), "{}", out.text);
        assert!(out
            .text
            .contains("[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.spin]"));
        assert_eq!(
            handlers_in(&out.text, Schema::V2).unwrap(),
            vec![
                ("runc".into(), "io.containerd.runc.v2".into()),
                ("wasmpod".into(), "io.containerd.wasmpod.v1".into()),
                ("spin".into(), "io.containerd.spin.v2".into()),
            ]
        );
        let v3 = apply(V3, Schema::V3, &handlers(), &opts(), &[]).unwrap();
        assert!(v3.text.starts_with(V3));
        assert_eq!(handlers_in(&v3.text, Schema::V3).unwrap().len(), 3);
        assert!(handlers_in(&v3.text, Schema::V2).unwrap().is_empty());
    }

    #[test]
    fn applying_twice_changes_nothing_and_removing_restores_the_bytes() {
        let names: Vec<String> = handlers().into_iter().map(|h| h.name).collect();
        let once = apply(V3, Schema::V3, &handlers(), &opts(), &[]).unwrap();
        let twice = apply(&once.text, Schema::V3, &handlers(), &opts(), &names).unwrap();
        assert!(!twice.changed);
        assert_eq!(twice.text, once.text);
        assert_eq!(remove(&once.text, Schema::V3, &names).unwrap(), V3);
        assert_eq!(
            remove(
                &apply(V2, Schema::V2, &handlers(), &opts(), &[])
                    .unwrap()
                    .text,
                Schema::V2,
                &names
            )
            .unwrap(),
            V2
        );
    }

    #[test]
    fn a_handler_no_longer_asked_for_is_removed() {
        let names: Vec<String> = handlers().into_iter().map(|h| h.name).collect();
        let both = apply(V2, Schema::V2, &handlers(), &opts(), &[]).unwrap();
        let only_wasmpod = &handlers()[..1];
        let one = apply(&both.text, Schema::V2, only_wasmpod, &opts(), &names).unwrap();
        assert!(one.changed);
        let left: Vec<String> = handlers_in(&one.text, Schema::V2)
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(left, ["runc", "wasmpod"]);
        // A table that is not ours is never removed.
        let kept = apply(&both.text, Schema::V2, only_wasmpod, &opts(), &names[..1]).unwrap();
        assert_eq!(handlers_in(&kept.text, Schema::V2).unwrap().len(), 3);
    }

    #[test]
    fn changed_options_update_the_table_in_place() {
        let names: Vec<String> = handlers().into_iter().map(|h| h.name).collect();
        let once = apply(V2, Schema::V2, &handlers(), &opts(), &[]).unwrap();
        let other = ShimOptions {
            systemd_cgroup: false,
            ..opts()
        };
        let again = apply(&once.text, Schema::V2, &handlers(), &other, &names).unwrap();
        assert!(again.changed);
        assert_eq!(again.text.matches("runtimes.spin]").count(), 1);
        assert_eq!(again.text.matches("SystemdCgroup = false").count(), 2);
    }

    #[test]
    fn someone_elses_handler_is_a_conflict() {
        let theirs = format!(
            "{V3}[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.spin]\n  \
             runtime_type = '/opt/kwasm/bin/containerd-shim-spin-v2'\n"
        );
        let err = apply(&theirs, Schema::V3, &handlers(), &opts(), &[]).unwrap_err();
        assert!(err.to_string().contains("already configured"), "{err}");
        assert!(err.to_string().contains("kwasm"), "{err}");
    }

    #[test]
    fn an_empty_file_gets_a_version_line() {
        let out = apply("", Schema::V3, &handlers(), &opts(), &[]).unwrap();
        assert!(out.text.starts_with("version = 3\n"), "{}", out.text);
        assert_eq!(Schema::of(&out.text, None).unwrap(), Schema::V3);
    }

    #[test]
    fn reads_runcs_cgroup_driver_and_renders_a_block() {
        assert_eq!(runc_systemd_cgroup(V2, Schema::V2), Some(true));
        assert_eq!(runc_systemd_cgroup(V3, Schema::V3), None);
        let block = tables_text(Schema::V3, &handlers(), &opts());
        assert!(block
            .starts_with("[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.wasmpod]"));
        // The block appended to a rendered file is that file plus our tables.
        let joined = format!("{V3}\n{block}");
        assert_eq!(handlers_in(&joined, Schema::V3).unwrap().len(), 3);
    }

    #[test]
    fn the_options_file_has_the_same_options() {
        let text = opts().file_text();
        assert!(text.contains("SystemdCgroup = true"));
        assert!(text.contains("CacheMaxBytes = 1073741824"));
        assert!(!text.contains("ConfigPath"));
    }
}
