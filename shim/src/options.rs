//! containerd's runtime options for the handler, as they reach the shim in
//! `CreateTaskRequest.options`:
//! - `runtimeoptions.v1.Options`: what the CRI plugin sends for non-runc runtimes; the
//!   handler's `options` table arrives as TOML in `config_body` (containerd 1.7+), or a TOML
//!   file named by `config_path` (`ConfigPath = "..."`, containerd 1.6);
//! - `containerd.runc.v1.Options`: runc's options type, accepted for its `SystemdCgroup`.

use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::Message;
use containerd_shim::protos::shim::oci::Options as RuncOptions;
use wasmpod_oci::settings::{Knob, Settings};

/// The keys of the handler's `options` table that wasmpod reads besides the knobs of
/// `wasmpod_oci::settings` (defaults for the `wasmpod.dev/` annotations); any other fails the
/// Create.
const KNOWN: [&str; 6] = [
    "ConfigPath",
    "SystemdCgroup",
    "CacheDir",
    "CacheMaxBytes",
    "CompileTimeoutSeconds",
    "CompileCgroup",
];

/// The options wasmpod understands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeOptions {
    /// Use the systemd cgroup driver (`linux.cgroupsPath` is `slice:prefix:name`).
    pub systemd_cgroup: bool,
    /// `CacheDir`: where compiled Wasm is kept (else `$WASMPOD_CACHE_DIR`, else the default).
    pub cache_dir: Option<String>,
    /// `CacheMaxBytes`: the compile cache's size bound.
    pub cache_max_bytes: Option<u64>,
    /// `CompileTimeoutSeconds`: how long compiling one Wasm file may take.
    pub compile_timeout_secs: Option<u64>,
    /// `CompileCgroup = "shim"`: compiles run in the shim's cgroup instead of the container's.
    pub compile_in_shim: bool,
    /// The knobs set for every container of the handler (its annotations go on top).
    pub settings: Settings,
}

impl RuntimeOptions {
    /// Decodes the options containerd attached to a Create request.
    pub fn from_any(any: Option<&Any>) -> Result<RuntimeOptions, String> {
        let Some(any) = any.filter(|a| !a.type_url.is_empty()) else {
            return Ok(RuntimeOptions::default());
        };
        let name = any.type_url.rsplit('/').next().unwrap_or_default();
        match name {
            "runtimeoptions.v1.Options" => {
                let (config_path, config_body) = decode_runtime_options(&any.value)?;
                if !config_body.is_empty() {
                    return RuntimeOptions::from_toml(&String::from_utf8_lossy(&config_body));
                }
                if !config_path.is_empty() {
                    let text = std::fs::read_to_string(&config_path)
                        .map_err(|e| format!("runtime options file {config_path}: {e}"))?;
                    return RuntimeOptions::from_toml(&text)
                        .map_err(|e| format!("runtime options file {config_path}: {e}"));
                }
                Ok(RuntimeOptions::default())
            }
            "containerd.runc.v1.Options" => {
                let runc = RuncOptions::parse_from_bytes(&any.value)
                    .map_err(|e| format!("runc options: {e}"))?;
                Ok(RuntimeOptions {
                    systemd_cgroup: runc.systemd_cgroup,
                    ..Default::default()
                })
            }
            other => Err(format!("unsupported runtime options type {other:?}")),
        }
    }

    /// Reads the handler's `options` table. A `ConfigPath` in it names a file of options
    /// that the table's own keys override (containerd 1.7+ sends the whole table, so a
    /// config written for 1.6, with only `ConfigPath`, keeps working there).
    pub fn from_toml(text: &str) -> Result<RuntimeOptions, String> {
        let mut table: toml::Table = text
            .parse()
            .map_err(|e| format!("runtime options are not TOML: {e}"))?;
        match table.remove("ConfigPath") {
            None => {}
            Some(toml::Value::String(path)) => {
                let file = std::fs::read_to_string(&path)
                    .map_err(|e| format!("runtime options file {path}: {e}"))?;
                let mut base: toml::Table = file
                    .parse()
                    .map_err(|e| format!("runtime options file {path} is not TOML: {e}"))?;
                base.remove("ConfigPath");
                base.extend(table);
                table = base;
            }
            Some(other) => return Err(format!("ConfigPath must be a path, not {other}")),
        }
        let mut settings = Settings::default();
        for (key, value) in &table {
            if KNOWN.contains(&key.as_str()) {
                continue;
            }
            let Some(knob) = Knob::of_option(key) else {
                return Err(format!(
                    "runtime option {key:?} is not one wasmpod reads (it reads {}, {})",
                    KNOWN.join(", "),
                    Knob::ALL.map(Knob::option).join(", ")
                ));
            };
            settings
                .set(knob, &knob_text(value))
                .map_err(|e| format!("runtime option {key} = {value}: {e}"))?;
        }
        let systemd_cgroup = match table.get("SystemdCgroup") {
            None => false,
            Some(toml::Value::Boolean(b)) => *b,
            Some(other) => return Err(format!("SystemdCgroup must be true or false, not {other}")),
        };
        let cache_dir = match table.get("CacheDir") {
            None => None,
            Some(toml::Value::String(s)) if s.starts_with('/') => Some(s.clone()),
            Some(other) => return Err(format!("CacheDir must be an absolute path, not {other}")),
        };
        let cache_max_bytes = positive(&table, "CacheMaxBytes")?;
        let compile_timeout_secs = positive(&table, "CompileTimeoutSeconds")?;
        let compile_in_shim = match table.get("CompileCgroup").map(|v| (v, v.as_str())) {
            None | Some((_, Some("container"))) => false,
            Some((_, Some("shim"))) => true,
            Some((other, _)) => {
                return Err(format!(
                    "CompileCgroup must be \"container\" or \"shim\", not {other}"
                ))
            }
        };
        Ok(RuntimeOptions {
            systemd_cgroup,
            cache_dir,
            cache_max_bytes,
            compile_timeout_secs,
            compile_in_shim,
            settings,
        })
    }

    /// The compile cache's directory and bound, after options, environment and defaults.
    pub fn cache(&self) -> (String, u64) {
        let dir = self
            .cache_dir
            .clone()
            .or_else(|| {
                std::env::var("WASMPOD_CACHE_DIR")
                    .ok()
                    .filter(|d| d.starts_with('/'))
            })
            .unwrap_or_else(|| wasmpod_runtime::cache::DEFAULT_DIR.to_string());
        (
            dir,
            self.cache_max_bytes
                .unwrap_or(wasmpod_runtime::cache::DEFAULT_MAX_BYTES),
        )
    }
}

/// A knob's value as the text its annotation would hold: a list becomes comma-separated.
fn knob_text(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Array(items) => items.iter().map(knob_text).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// The `config_path` (field 2) and `config_body` (field 3) of a `runtimeoptions.v1.Options`.
fn decode_runtime_options(bytes: &[u8]) -> Result<(String, Vec<u8>), String> {
    let mut path = String::new();
    let mut body = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let (key, used) = varint(rest)?;
        rest = &rest[used..];
        let (field, wire) = (key >> 3, key & 7);
        match wire {
            2 => {
                let (len, used) = varint(rest)?;
                rest = &rest[used..];
                let len = len as usize;
                if len > rest.len() {
                    return Err("runtime options: truncated field".into());
                }
                let value = &rest[..len];
                rest = &rest[len..];
                match field {
                    2 => path = String::from_utf8_lossy(value).into_owned(),
                    3 => body = value.to_vec(),
                    _ => {}
                }
            }
            0 => rest = &rest[varint(rest)?.1..],
            _ => return Err(format!("runtime options: unexpected wire type {wire}")),
        }
    }
    Ok((path, body))
}

/// The positive integer at `key`, if the table has one.
fn positive(table: &toml::Table, key: &str) -> Result<Option<u64>, String> {
    match table.get(key) {
        None => Ok(None),
        Some(toml::Value::Integer(n)) if *n > 0 => Ok(Some(*n as u64)),
        Some(other) => Err(format!("{key} must be a positive number, not {other}")),
    }
}

fn varint(bytes: &[u8]) -> Result<(u64, usize), String> {
    let mut value = 0u64;
    for (i, b) in bytes.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    Err("runtime options: bad varint".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(n: u8, value: &[u8]) -> Vec<u8> {
        let mut v = vec![(n << 3) | 2, value.len() as u8];
        v.extend_from_slice(value);
        v
    }

    fn any(type_url: &str, value: Vec<u8>) -> Any {
        let mut a = Any::new();
        a.type_url = type_url.into();
        a.value = value;
        a
    }

    #[test]
    fn config_body_toml() {
        let mut value = field(1, b"io.containerd.wasmpod.v1");
        value.extend(field(3, b"SystemdCgroup = true\n"));
        let o = RuntimeOptions::from_any(Some(&any("runtimeoptions.v1.Options", value))).unwrap();
        assert!(o.systemd_cgroup);
    }

    #[test]
    fn config_path_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("wasmpod.toml");
        std::fs::write(&file, "SystemdCgroup = true").unwrap();
        let value = field(2, file.to_str().unwrap().as_bytes());
        let o = RuntimeOptions::from_any(Some(&any(
            "type.googleapis.com/runtimeoptions.v1.Options",
            value,
        )))
        .unwrap();
        assert!(o.systemd_cgroup);
    }

    #[test]
    fn config_path_inside_the_body_is_read_and_overridden_by_the_bodys_keys() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("wasmpod.toml");
        std::fs::write(&file, "SystemdCgroup = true\nCacheMaxBytes = 4096\n").unwrap();
        let body = format!("ConfigPath = {:?}\nCacheMaxBytes = 8192\n", file.display());
        let o = RuntimeOptions::from_toml(&body).unwrap();
        assert!(o.systemd_cgroup);
        assert_eq!(o.cache_max_bytes, Some(8192));
        let missing = RuntimeOptions::from_toml("ConfigPath = \"/nonexistent/x.toml\"");
        assert!(missing.unwrap_err().contains("/nonexistent/x.toml"));
    }

    #[test]
    fn runc_options() {
        let mut runc = RuncOptions::new();
        runc.systemd_cgroup = true;
        let o = RuntimeOptions::from_any(Some(&any(
            "containerd.runc.v1.Options",
            runc.write_to_bytes().unwrap(),
        )))
        .unwrap();
        assert!(o.systemd_cgroup);
    }

    #[test]
    fn defaults_and_errors() {
        assert_eq!(
            RuntimeOptions::from_any(None).unwrap(),
            RuntimeOptions::default()
        );
        assert!(RuntimeOptions::from_toml("SystemdCgroup = \"yes\"").is_err());
        let timeout = RuntimeOptions::from_toml("CompileTimeoutSeconds = 30").unwrap();
        assert_eq!(timeout.compile_timeout_secs, Some(30));
        let shim = RuntimeOptions::from_toml("CompileCgroup = \"shim\"").unwrap();
        assert!(shim.compile_in_shim);
        let pod = RuntimeOptions::from_toml("CompileCgroup = \"pod\"").unwrap_err();
        assert!(
            pod.contains("CompileCgroup must be \"container\" or \"shim\", not \"pod\""),
            "{pod}"
        );
        let zero = RuntimeOptions::from_toml("CompileTimeoutSeconds = 0").unwrap_err();
        assert!(
            zero.contains("CompileTimeoutSeconds must be a positive number"),
            "{zero}"
        );
        assert!(RuntimeOptions::from_toml("not toml = = =").is_err());
        assert!(RuntimeOptions::from_any(Some(&any("something.Else", vec![]))).is_err());
        let unknown =
            RuntimeOptions::from_toml("SystemdCgroup = true\nSystemdCgrup = true").unwrap_err();
        assert!(
            unknown.contains("\"SystemdCgrup\" is not one wasmpod reads"),
            "{unknown}"
        );
    }

    #[test]
    fn knobs_as_handler_options() {
        let o = RuntimeOptions::from_toml(
            "WasmFeatures = [\"-threads\", \"wide-arithmetic\"]\nCpuTimeLimitSeconds = 60\n\
             HttpRequestTimeoutSeconds = 2.5\nHttpInstanceMemory = \"64Mi\"\n",
        )
        .unwrap();
        let mut want = Settings::default();
        want.set(Knob::WasmFeatures, "-threads,wide-arithmetic")
            .unwrap();
        want.set(Knob::CpuTimeLimit, "60").unwrap();
        want.set(Knob::HttpRequestTimeout, "2.5").unwrap();
        want.set(Knob::HttpInstanceMemory, "64Mi").unwrap();
        assert_eq!(o.settings, want);
        for (text, says) in [
            (
                "WasmFeatures = \"threads,warp\"",
                "runtime option WasmFeatures",
            ),
            ("CpuTimeLimitSeconds = 0", "whole seconds above 0"),
            ("HttpMaxConnections = true", "a whole number above 0"),
        ] {
            let err = RuntimeOptions::from_toml(text).unwrap_err();
            assert!(err.contains(says), "{text}: {err}");
        }
    }
}
