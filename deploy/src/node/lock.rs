//! The installer's record on the node (`/opt/wasmpod/wasmpod-lock.json`): what it installed
//! and what it changed, so that a second install changes nothing and an uninstall takes away
//! exactly what was added.

use serde::{Deserialize, Serialize};

use super::error::NodeError;
use super::host::Host;

pub const LOCK_PATH: &str = "/opt/wasmpod/wasmpod-lock.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    /// The wasmpod version that installed.
    pub version: String,
    pub distribution: String,
    /// The sha256 of the shim binary installed.
    pub shim_sha256: String,
    /// The handler names the config got.
    pub handlers: Vec<String>,
    /// Host paths of the symlinks made (compatibility names, PATH links).
    pub links: Vec<String>,
    /// Host directories that did not exist before the first install, deepest last.
    #[serde(default)]
    pub created_dirs: Vec<String>,
    pub config: ConfigRecord,
}

/// The containerd config file (or template, or drop-in) the install changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigRecord {
    pub path: String,
    /// The file did not exist before: uninstall removes it.
    pub created: bool,
    /// Where the original bytes are kept (when the file existed).
    pub backup: Option<String>,
    /// The sha256 of the file as the install left it: if it still matches, uninstall puts
    /// the original back byte for byte; if not, it removes only wasmpod's tables.
    pub written_sha256: String,
    /// The schema version the file was edited with (1, 2 or 3).
    pub schema: i64,
}

impl Lock {
    pub fn read(host: &Host) -> Result<Option<Lock>, NodeError> {
        match host.read_optional(LOCK_PATH)? {
            None => Ok(None),
            Some(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
                NodeError::Config(format!(
                    "{LOCK_PATH} is not a wasmpod lock file ({e}); move it away to install again"
                ))
            }),
        }
    }

    pub fn write(&self, host: &Host) -> Result<(), NodeError> {
        let mut text = serde_json::to_string_pretty(self).expect("a lock serializes");
        text.push('\n');
        host.write_atomic(LOCK_PATH, text.as_bytes(), 0o644)
    }
}
