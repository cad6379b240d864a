//! [`SpinApp`]: a Spin application as wasmpod runs it, whichever shape it came in (a
//! `spin.toml` in the rootfs, or a locked app from the image's layers). The manifest and lock
//! readers produce it; the runtime is given nothing else. Paths in it are as the container's
//! init sees them after `pivot_root`, except each component's `host_path`, which is where the
//! container helper reads the Wasm to compile it before the container exists.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::WasmKind;

/// A Spin application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpinApp {
    /// `[application] name`.
    pub name: String,
    /// `[application] version`.
    pub version: Option<String>,
    /// Where the app came from, for messages (`/spin.toml`, or the lock layer's digest).
    pub origin: String,
    /// `[variables]`: the app's variables, by name.
    pub variables: BTreeMap<String, AppVariable>,
    /// The components, in manifest order.
    pub components: Vec<SpinComponent>,
    /// The HTTP triggers, in manifest order (the router decides which one a request reaches).
    pub http_triggers: Vec<HttpTrigger>,
    /// The `[[trigger.cron]]` entries (the Spin cron trigger plugin's), in manifest order.
    #[serde(default)]
    pub cron_triggers: Vec<CronTrigger>,
    /// The `[[trigger.command]]` entries (the Spin command trigger plugin's).
    #[serde(default)]
    pub command_triggers: Vec<CommandTrigger>,
    /// The `[[trigger.redis]]` entries.
    #[serde(default)]
    pub redis_triggers: Vec<RedisTrigger>,
    /// The `[[trigger.mqtt]]` entries.
    #[serde(default)]
    pub mqtt_triggers: Vec<MqttTrigger>,
}

impl SpinApp {
    /// A lone Wasm package (a `wkg oci push` image, layer `digest` at `host_path`) as a
    /// one-component app on route `/...`, as Spin loads a bare Wasm file.
    pub fn of_package(digest: &str, host_path: PathBuf) -> Result<SpinApp, crate::OciError> {
        let kind = match crate::EntrypointKind::of_file(&host_path)? {
            crate::EntrypointKind::Wasm(kind) => kind,
            other => {
                return Err(crate::OciError::SpinApp {
                    file: digest.to_string(),
                    reason: format!("the package is a {}, not Wasm", other.describe()),
                })
            }
        };
        let id = "main".to_string();
        Ok(SpinApp {
            name: "main".into(),
            version: None,
            origin: digest.to_string(),
            variables: BTreeMap::new(),
            components: vec![SpinComponent {
                id: id.clone(),
                kind,
                host_path,
                environment: Vec::new(),
                files: Vec::new(),
                allowed_outbound_hosts: Vec::new(),
                key_value_stores: Vec::new(),
                sqlite_databases: Vec::new(),
                ai_models: Vec::new(),
                variables: BTreeMap::new(),
            }],
            http_triggers: vec![HttpTrigger {
                id: "main-http-trigger".into(),
                route: HttpRoute::Path("/...".into()),
                target: HttpTarget::Component(id),
            }],
            cron_triggers: Vec::new(),
            command_triggers: Vec::new(),
            redis_triggers: Vec::new(),
            mqtt_triggers: Vec::new(),
        })
    }

    /// The component with id `id`.
    pub fn component(&self, id: &str) -> Option<&SpinComponent> {
        self.components.iter().find(|c| c.id == id)
    }

    /// Keeps only the components named in `keep` (`SPIN_COMPONENTS_TO_RETAIN`) and the triggers
    /// that reach them (static responses stay). Naming a component the app lacks is an error.
    pub fn retain_components(&mut self, keep: &[String]) -> Result<(), String> {
        if let Some(missing) = keep.iter().find(|k| self.component(k).is_none()) {
            return Err(format!(
                "SPIN_COMPONENTS_TO_RETAIN names component {missing:?}, which the app does not have \
                 (it has: {})",
                self.components
                    .iter()
                    .map(|c| c.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        self.components.retain(|c| keep.contains(&c.id));
        self.http_triggers.retain(|t| match &t.target {
            HttpTarget::Component(id) => keep.contains(id),
            HttpTarget::StaticResponse(_) => true,
        });
        self.cron_triggers.retain(|t| keep.contains(&t.component));
        self.command_triggers
            .retain(|t| keep.contains(&t.component));
        Ok(())
    }
}

/// An application variable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppVariable {
    /// The default; `None` means the variable is required.
    pub default: Option<String>,
    /// Whether it is secret (never logged).
    pub secret: bool,
}

/// One component of the app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpinComponent {
    /// The component id (kebab-case).
    pub id: String,
    /// Core module (componentized at load) or component.
    pub kind: WasmKind,
    /// The Wasm as the host sees it (in the mounted rootfs, or the node's layer directory).
    pub host_path: PathBuf,
    /// The guest's whole WASI environment (`environment`).
    pub environment: Vec<(String, String)>,
    /// Directories preopened read-only for the guest (`files`).
    pub files: Vec<FileMount>,
    /// `allowed_outbound_hosts` (with the deprecated `allowed_http_hosts` converted), as
    /// written: templates are expanded at start, when variables are known.
    pub allowed_outbound_hosts: Vec<String>,
    /// `key_value_stores`: the labels the component may open.
    pub key_value_stores: Vec<String>,
    /// `sqlite_databases`.
    pub sqlite_databases: Vec<String>,
    /// `ai_models`.
    pub ai_models: Vec<String>,
    /// `variables`: component config, values being templates over app variables.
    pub variables: BTreeMap<String, String>,
}

/// A directory the guest sees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMount {
    /// The directory, in the container.
    pub source: PathBuf,
    /// Where the guest sees it (absolute).
    pub destination: String,
}

/// One `[[trigger.http]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpTrigger {
    /// The trigger id.
    pub id: String,
    /// Where it is reached.
    pub route: HttpRoute,
    /// What answers (through the component's HTTP export: the `http` executor, the only
    /// one wasmpod runs; the loaders refuse the others).
    pub target: HttpTarget,
}

/// One `[[trigger.cron]]`: run `component`'s `handle-cron-event` export on a schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CronTrigger {
    /// The trigger id.
    pub id: String,
    /// The component id.
    pub component: String,
    /// `cron_expression`, as written (checked when the app is linked).
    pub cron_expression: String,
}

/// One `[[trigger.command]]`: run `component`'s `wasi:cli/run` once; its exit code is the
/// container's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandTrigger {
    /// The trigger id.
    pub id: String,
    /// The component id.
    pub component: String,
}

/// One `[[trigger.redis]]`: run `component`'s `fermyon:spin/inbound-redis` export for each
/// message published on `channel` at `address`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedisTrigger {
    /// The trigger id.
    pub id: String,
    /// The component id.
    pub component: String,
    /// The channel to subscribe to.
    pub channel: String,
    /// The server: the trigger's `address`, else `[application.trigger.redis] address`, as
    /// written (it may hold `{{ variable }}` templates, expanded at start).
    pub address: String,
}

/// One `[[trigger.mqtt]]` (the Spin MQTT trigger plugin's shape): run `component`'s
/// `handle-message` export for each message on `topic` at the broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MqttTrigger {
    /// The trigger id.
    pub id: String,
    /// The component id.
    pub component: String,
    /// The topic (filter) to subscribe to, as written (templates expanded at start).
    pub topic: String,
    /// The subscription's quality of service.
    pub qos: MqttQos,
    /// The broker: `[application.trigger.mqtt]`.
    pub broker: MqttBroker,
}

/// An MQTT quality of service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MqttQos {
    /// 0.
    AtMostOnce,
    /// 1.
    AtLeastOnce,
    /// 2.
    ExactlyOnce,
}

impl MqttQos {
    /// The QoS a manifest's `qos = "1"` (or `1`) names.
    pub fn parse(text: &str) -> Option<MqttQos> {
        match text.trim() {
            "0" => Some(MqttQos::AtMostOnce),
            "1" => Some(MqttQos::AtLeastOnce),
            "2" => Some(MqttQos::ExactlyOnce),
            _ => None,
        }
    }

    /// Its number.
    pub fn level(self) -> u8 {
        match self {
            MqttQos::AtMostOnce => 0,
            MqttQos::AtLeastOnce => 1,
            MqttQos::ExactlyOnce => 2,
        }
    }
}

/// The broker of the MQTT triggers, as written (address, username and password may hold
/// `{{ variable }}` templates, expanded at start).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MqttBroker {
    /// `mqtt://host[:port]`.
    pub address: String,
    /// Empty: no credentials.
    pub username: String,
    /// The password.
    pub password: String,
    /// Seconds between keep-alive pings (0: none).
    pub keep_alive_secs: u64,
}

/// An HTTP trigger's route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HttpRoute {
    /// A route as written (`/hello`, `/api/...`, `/users/:id`).
    Path(String),
    /// `{ private = true }`: reachable only by service chaining.
    Private,
}

/// What answers an HTTP trigger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HttpTarget {
    /// The component with this id.
    Component(String),
    /// A fixed response.
    StaticResponse(StaticResponse),
}

/// `static_response = { status_code, headers, body }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaticResponse {
    /// The status (default 200).
    pub status_code: u16,
    /// Response headers.
    pub headers: BTreeMap<String, String>,
    /// The body, if any.
    pub body: Option<String>,
}
