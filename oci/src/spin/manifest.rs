//! Reading a `spin.toml` (`spin_manifest_version = 2`, or version 1, converted) into the
//! manifest's normalized form, [`Manifest`]: trigger ids and inline components named as Spin
//! names them, variables checked. Every table refuses fields it does not know, as Spin's
//! does, so a typo fails the load with the field's name instead of being ignored.
//!
//! What the files the manifest names are (sources, `files` directories) is the business of
//! [`super::rootfs`], which resolves them in an image's filesystem.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::app::{
    AppVariable, CommandTrigger, CronTrigger, HttpRoute, MqttBroker, MqttQos, MqttTrigger,
    RedisTrigger, StaticResponse,
};

/// A parsed, normalized manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// `[application] name`.
    pub name: String,
    /// `[application] version`.
    pub version: Option<String>,
    /// `[variables]`.
    pub variables: BTreeMap<String, AppVariable>,
    /// Components by id, inline ones included.
    pub components: BTreeMap<String, ManifestComponent>,
    /// The HTTP triggers, in order.
    pub http_triggers: Vec<ManifestHttpTrigger>,
    /// The cron triggers, in order.
    pub cron_triggers: Vec<CronTrigger>,
    /// The command triggers, in order.
    pub command_triggers: Vec<CommandTrigger>,
    /// The Redis triggers, in order, each with its address.
    pub redis_triggers: Vec<RedisTrigger>,
    /// The MQTT triggers, in order, each with its broker.
    pub mqtt_triggers: Vec<MqttTrigger>,
}

/// A component as the manifest writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestComponent {
    /// The component's Wasm.
    pub source: Source,
    /// `files`.
    pub files: Vec<FilesEntry>,
    /// `exclude_files`.
    pub exclude_files: Vec<String>,
    /// `allowed_outbound_hosts`, with `allowed_http_hosts` converted.
    pub allowed_outbound_hosts: Vec<String>,
    /// `key_value_stores`.
    pub key_value_stores: Vec<String>,
    /// `sqlite_databases`.
    pub sqlite_databases: Vec<String>,
    /// `ai_models`.
    pub ai_models: Vec<String>,
    /// `environment`.
    pub environment: BTreeMap<String, String>,
    /// `variables`.
    pub variables: BTreeMap<String, String>,
    /// Whether `dependencies` is non-empty (composition is not done at run time).
    pub has_dependencies: bool,
}

/// Where a component's Wasm is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A path relative to the manifest.
    Local(String),
    /// `{ url, digest }`: downloaded by `spin up`.
    Remote {
        /// The URL.
        url: String,
    },
    /// `{ registry, package, version }`: a wasm-pkg registry package.
    Registry {
        /// The package.
        package: String,
    },
}

/// One `files` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilesEntry {
    /// A path or glob, relative to the manifest; mounted at the same path.
    Pattern(String),
    /// `{ source, destination }`.
    Placement {
        /// A directory relative to the manifest.
        source: String,
        /// Where the guest sees it.
        destination: String,
    },
}

/// An HTTP trigger as the manifest writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestHttpTrigger {
    /// The id (given, or derived as Spin derives it).
    pub id: String,
    /// The route.
    pub route: HttpRoute,
    /// The component id, or a static response.
    pub target: ManifestTarget,
}

/// What answers a trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestTarget {
    /// A component, by id.
    Component(String),
    /// `static_response`.
    StaticResponse(StaticResponse),
}

/// Parses the text of a `spin.toml`. The error names the field and says why.
pub fn parse(text: &str) -> Result<Manifest, String> {
    let table: toml::Table = toml::from_str(text).map_err(|e| toml_error(text, e))?;
    match (
        table.get("spin_manifest_version"),
        table.get("spin_version"),
    ) {
        (Some(toml::Value::Integer(2)), _) => {
            let raw: v2::ManifestV2 = toml::from_str(text).map_err(|e| toml_error(text, e))?;
            raw.normalize()
        }
        (Some(toml::Value::String(v)), _) | (None, Some(toml::Value::String(v))) if v == "1" => {
            let raw: v1::ManifestV1 = toml::from_str(text).map_err(|e| toml_error(text, e))?;
            raw.into_v2()?.normalize()
        }
        (Some(other), _) => Err(format!(
            "spin_manifest_version = {other} is not a version wasmpod reads (2, or \"1\")"
        )),
        (None, _) => Err("spin_manifest_version is missing (it must be 2)".into()),
    }
}

/// The parser's message, with the line it is about.
fn toml_error(text: &str, e: toml::de::Error) -> String {
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {}", e.message().trim())
        }
        None => e.message().trim().to_string(),
    }
}

/// Spin's rule for component ids and key-value labels: lower-case words of letters and
/// digits joined by `-` (or `_` for labels), starting with a letter.
fn is_kebab(id: &str, sep: char) -> bool {
    !id.is_empty()
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && !id.ends_with(sep)
        && !id.contains(&format!("{sep}{sep}"))
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == sep)
}

/// Variable names: `^[a-z][a-z0-9_]*$`.
pub fn is_variable_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Whether `label` is a valid key-value store or database label.
pub fn is_store_label(label: &str) -> bool {
    is_kebab(label, '-') || is_kebab(label, '_')
}

mod v2 {
    //! The serde shape of a version 2 manifest.
    use super::*;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct ManifestV2 {
        #[allow(dead_code)]
        pub spin_manifest_version: i64,
        pub application: Application,
        #[serde(default)]
        pub variables: BTreeMap<String, Variable>,
        #[serde(default)]
        pub trigger: BTreeMap<String, Vec<toml::Value>>,
        #[serde(default)]
        pub component: BTreeMap<String, Component>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Application {
        pub name: String,
        pub version: Option<String>,
        #[allow(dead_code)]
        pub description: Option<String>,
        #[serde(default)]
        #[allow(dead_code)]
        pub authors: Vec<String>,
        #[serde(default)]
        #[allow(dead_code)]
        pub targets: Vec<String>,
        #[serde(default)]
        pub trigger: BTreeMap<String, toml::Table>,
        #[serde(default)]
        #[allow(dead_code)]
        pub tool: BTreeMap<String, toml::Value>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Variable {
        pub default: Option<String>,
        #[serde(default)]
        pub required: bool,
        #[serde(default)]
        pub secret: bool,
        #[allow(dead_code)]
        pub description: Option<String>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Component {
        pub source: RawSource,
        #[allow(dead_code)]
        pub description: Option<String>,
        #[serde(default)]
        pub files: Vec<RawFiles>,
        #[serde(default)]
        pub exclude_files: Vec<String>,
        #[serde(default)]
        pub allowed_http_hosts: Vec<String>,
        #[serde(default)]
        pub allowed_outbound_hosts: Vec<String>,
        #[serde(default)]
        pub key_value_stores: Vec<String>,
        #[serde(default)]
        pub sqlite_databases: Vec<String>,
        #[serde(default)]
        pub ai_models: Vec<String>,
        #[serde(default)]
        pub environment: BTreeMap<String, String>,
        #[serde(default)]
        pub variables: BTreeMap<String, String>,
        #[allow(dead_code)]
        pub build: Option<toml::Value>,
        #[serde(default)]
        #[allow(dead_code)]
        pub tool: BTreeMap<String, toml::Value>,
        #[serde(default)]
        #[allow(dead_code)]
        pub targets: Vec<String>,
        #[serde(default)]
        pub dependencies: BTreeMap<String, toml::Value>,
        #[serde(default)]
        #[allow(dead_code)]
        pub dependencies_inherit_configuration: bool,
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    pub enum RawSource {
        Local(String),
        Remote(RemoteSource),
        Registry(RegistrySource),
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct RemoteSource {
        pub url: String,
        #[allow(dead_code)]
        pub digest: String,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct RegistrySource {
        #[allow(dead_code)]
        pub registry: Option<String>,
        pub package: String,
        #[allow(dead_code)]
        pub version: String,
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    pub enum RawFiles {
        Pattern(String),
        Placement(Placement),
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Placement {
        pub source: String,
        pub destination: String,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct HttpTrigger {
        pub id: Option<String>,
        pub route: RawRoute,
        pub component: Option<ComponentRef>,
        pub static_response: Option<RawStaticResponse>,
        pub executor: Option<Executor>,
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    pub enum RawRoute {
        Path(String),
        Private(PrivateRoute),
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct PrivateRoute {
        pub private: bool,
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    pub enum ComponentRef {
        Id(String),
        Inline(Box<Component>),
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct RawStaticResponse {
        pub status_code: Option<u16>,
        #[serde(default)]
        pub headers: BTreeMap<String, String>,
        pub body: Option<String>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Executor {
        #[serde(rename = "type")]
        pub kind: String,
        #[allow(dead_code)]
        pub argv: Option<String>,
    }

    impl ManifestV2 {
        pub fn normalize(self) -> Result<Manifest, String> {
            let mut variables = BTreeMap::new();
            for (name, v) in self.variables {
                if !is_variable_name(&name) {
                    return Err(format!(
                        "[variables] {name:?}: a variable name is lower-case letters, digits \
                         and '_', starting with a letter"
                    ));
                }
                let default = match (v.required, v.default) {
                    (true, None) => None,
                    (false, Some(d)) => Some(d),
                    (true, Some(_)) => {
                        return Err(format!(
                            "[variables] {name}: give either `required = true` or a `default`, \
                             not both"
                        ))
                    }
                    (false, None) => {
                        return Err(format!(
                            "[variables] {name}: give either `required = true` or a `default`"
                        ))
                    }
                };
                variables.insert(
                    name,
                    AppVariable {
                        default,
                        secret: v.secret,
                    },
                );
            }
            if let Some(http) = self.application.trigger.get("http") {
                for (key, value) in http {
                    match (key.as_str(), value.as_str()) {
                        ("base", Some("/")) => {}
                        ("base", _) => {
                            return Err(format!(
                                "[application.trigger.http] base = {value}: a base other than \
                                 \"/\" is no longer supported; put the prefix in each route"
                            ))
                        }
                        _ => {
                            return Err(format!(
                                "[application.trigger.http]: unknown field `{key}`"
                            ))
                        }
                    }
                }
            }
            let mut redis_address = None;
            if let Some(redis) = self.application.trigger.get("redis") {
                for (key, value) in redis {
                    match (key.as_str(), value.as_str()) {
                        ("address", Some(a)) => redis_address = Some(a.to_string()),
                        _ => {
                            return Err(format!(
                                "[application.trigger.redis]: unknown field `{key}` (only \
                                 `address`)"
                            ))
                        }
                    }
                }
            }
            let mqtt_broker = self
                .application
                .trigger
                .get("mqtt")
                .map(mqtt_broker)
                .transpose()?;
            let mut components = BTreeMap::new();
            for (id, c) in self.component {
                check_component_id(&id, &format!("[component.{id}]"))?;
                components.insert(id.clone(), c.normalize(&format!("[component.{id}]"))?);
            }
            let mut http_triggers = Vec::new();
            let mut cron_triggers = Vec::new();
            let mut command_triggers = Vec::new();
            let mut redis_triggers = Vec::new();
            let mut mqtt_triggers = Vec::new();
            for (kind, entries) in self.trigger {
                for (n, entry) in entries.into_iter().enumerate() {
                    let where_ = format!("[[trigger.{kind}]] #{}", n + 1);
                    let message = |e: toml::de::Error| format!("{where_}: {}", e.message().trim());
                    match kind.as_str() {
                        "http" => {
                            let t: HttpTrigger = entry.try_into().map_err(message)?;
                            http_triggers.push(t.normalize(n, &where_, &mut components)?);
                        }
                        "cron" => {
                            let t: RawCronTrigger = entry.try_into().map_err(message)?;
                            let (id, component) =
                                t.component
                                    .normalize("cron", t.id, n, &where_, &mut components)?;
                            cron_triggers.push(CronTrigger {
                                id,
                                component,
                                cron_expression: t.cron_expression,
                            });
                        }
                        "command" => {
                            let t: RawCommandTrigger = entry.try_into().map_err(message)?;
                            let (id, component) = t.component.normalize(
                                "command",
                                t.id,
                                n,
                                &where_,
                                &mut components,
                            )?;
                            command_triggers.push(CommandTrigger { id, component });
                        }
                        "redis" => {
                            let t: RawRedisTrigger = entry.try_into().map_err(message)?;
                            let address =
                                t.address.or_else(|| redis_address.clone()).ok_or_else(|| {
                                    format!(
                                    "{where_}: no Redis address: give the trigger an `address` \
                                     or set [application.trigger.redis] address"
                                )
                                })?;
                            let (id, component) = t.component.normalize(
                                "redis",
                                t.id,
                                n,
                                &where_,
                                &mut components,
                            )?;
                            redis_triggers.push(RedisTrigger {
                                id,
                                component,
                                channel: t.channel,
                                address,
                            });
                        }
                        "mqtt" => {
                            let t: RawMqttTrigger = entry.try_into().map_err(message)?;
                            let broker = mqtt_broker.clone().ok_or_else(|| {
                                format!(
                                    "{where_}: no MQTT broker: set [application.trigger.mqtt] \
                                     address"
                                )
                            })?;
                            let qos = MqttQos::parse(&t.qos.to_string().replace('"', ""))
                                .ok_or_else(|| {
                                    format!("{where_}: qos {}: it is 0, 1 or 2", t.qos)
                                })?;
                            let (id, component) =
                                t.component
                                    .normalize("mqtt", t.id, n, &where_, &mut components)?;
                            mqtt_triggers.push(MqttTrigger {
                                id,
                                component,
                                topic: t.topic,
                                qos,
                                broker,
                            });
                        }
                        _ => return Err(unsupported_trigger(&kind)),
                    }
                }
            }
            if command_triggers.len() > 1 {
                return Err(format!(
                    "{} [[trigger.command]] entries: an app runs one command (the container's \
                     process)",
                    command_triggers.len()
                ));
            }
            let targets = http_triggers
                .iter()
                .filter_map(|t| match &t.target {
                    ManifestTarget::Component(id) => Some((&t.id, id)),
                    ManifestTarget::StaticResponse(_) => None,
                })
                .chain(cron_triggers.iter().map(|t| (&t.id, &t.component)))
                .chain(command_triggers.iter().map(|t| (&t.id, &t.component)))
                .chain(redis_triggers.iter().map(|t| (&t.id, &t.component)))
                .chain(mqtt_triggers.iter().map(|t| (&t.id, &t.component)));
            for (trigger, id) in targets {
                if !components.contains_key(id) {
                    return Err(format!(
                        "trigger {trigger}: component {id:?} is not defined ([component.{id}] \
                         is missing)"
                    ));
                }
            }
            Ok(Manifest {
                name: self.application.name,
                version: self.application.version,
                variables,
                components,
                http_triggers,
                cron_triggers,
                command_triggers,
                redis_triggers,
                mqtt_triggers,
            })
        }
    }

    /// `[application.trigger.mqtt]`: `address` (required), `username`, `password`,
    /// `keep_alive_interval` (seconds, a string or a number; 30 by default).
    fn mqtt_broker(table: &toml::Table) -> Result<MqttBroker, String> {
        let mut broker = MqttBroker {
            address: String::new(),
            username: String::new(),
            password: String::new(),
            keep_alive_secs: 30,
        };
        for (key, value) in table {
            let text = match value {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(n) => n.to_string(),
                _ => String::new(),
            };
            match key.as_str() {
                "address" => broker.address = text,
                "username" => broker.username = text,
                "password" => broker.password = text,
                "keep_alive_interval" => {
                    broker.keep_alive_secs = text.trim().parse().map_err(|_| {
                        format!(
                            "[application.trigger.mqtt] keep_alive_interval {value}: a number \
                             of seconds"
                        )
                    })?
                }
                _ => {
                    return Err(format!(
                        "[application.trigger.mqtt]: unknown field `{key}` (`address`, \
                         `username`, `password`, `keep_alive_interval`)"
                    ))
                }
            }
        }
        if broker.address.is_empty() {
            return Err("[application.trigger.mqtt]: `address` is missing".into());
        }
        Ok(broker)
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct RawMqttTrigger {
        pub id: Option<String>,
        pub component: ComponentRef,
        pub topic: String,
        pub qos: toml::Value,
        #[allow(dead_code)]
        pub executor: Option<toml::Value>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct RawRedisTrigger {
        pub id: Option<String>,
        pub component: ComponentRef,
        pub channel: String,
        pub address: Option<String>,
        #[allow(dead_code)]
        pub executor: Option<toml::Value>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct RawCronTrigger {
        pub id: Option<String>,
        pub component: ComponentRef,
        pub cron_expression: String,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct RawCommandTrigger {
        pub id: Option<String>,
        pub component: ComponentRef,
    }

    impl ComponentRef {
        /// The trigger's id (given, or `<component>-<kind>-trigger`) and its component's id
        /// (an inline component is added as `<trigger id>-component`).
        fn normalize(
            self,
            kind: &str,
            id: Option<String>,
            index: usize,
            where_: &str,
            components: &mut BTreeMap<String, ManifestComponent>,
        ) -> Result<(String, String), String> {
            match self {
                ComponentRef::Id(c) => {
                    let id = id.unwrap_or_else(|| format!("{c}-{kind}-trigger"));
                    Ok((id, c))
                }
                ComponentRef::Inline(inline) => {
                    let id = id.unwrap_or_else(|| format!("{kind}-trigger{}", index + 1));
                    let name = format!("{id}-component");
                    components.insert(
                        name.clone(),
                        inline.normalize(&format!("{where_} component"))?,
                    );
                    Ok((id, name))
                }
            }
        }
    }

    impl Component {
        pub fn normalize(self, where_: &str) -> Result<ManifestComponent, String> {
            let source = match self.source {
                RawSource::Local(path) => Source::Local(path),
                RawSource::Remote(r) => Source::Remote { url: r.url },
                RawSource::Registry(r) => Source::Registry { package: r.package },
            };
            for label in &self.key_value_stores {
                if !is_store_label(label) {
                    return Err(format!(
                        "{where_} key_value_stores: {label:?} is not a valid label (lower-case \
                         words joined by '-' or '_')"
                    ));
                }
            }
            let mut allowed_outbound_hosts = self.allowed_outbound_hosts;
            for host in self.allowed_http_hosts {
                allowed_outbound_hosts.push(convert_http_host(&host));
            }
            Ok(ManifestComponent {
                source,
                files: self
                    .files
                    .into_iter()
                    .map(|f| match f {
                        RawFiles::Pattern(p) => FilesEntry::Pattern(p),
                        RawFiles::Placement(p) => FilesEntry::Placement {
                            source: p.source,
                            destination: p.destination,
                        },
                    })
                    .collect(),
                exclude_files: self.exclude_files,
                allowed_outbound_hosts,
                key_value_stores: self.key_value_stores,
                sqlite_databases: self.sqlite_databases,
                ai_models: self.ai_models,
                environment: self.environment,
                variables: self.variables,
                has_dependencies: !self.dependencies.is_empty(),
            })
        }
    }

    impl HttpTrigger {
        fn normalize(
            self,
            index: usize,
            where_: &str,
            components: &mut BTreeMap<String, ManifestComponent>,
        ) -> Result<ManifestHttpTrigger, String> {
            if let Some(executor) = &self.executor {
                match executor.kind.as_str() {
                    "http" | "spin" => {}
                    other => {
                        return Err(format!(
                            "{where_} executor type {other:?} is not supported by wasmpod (only \
                             \"http\")"
                        ))
                    }
                }
            }
            let route = match self.route {
                RawRoute::Path(p) => HttpRoute::Path(p),
                RawRoute::Private(PrivateRoute { private: true }) => HttpRoute::Private,
                RawRoute::Private(PrivateRoute { private: false }) => {
                    return Err(format!(
                        "{where_} route: `{{ private = false }}` is not a route; give a path"
                    ))
                }
            };
            let target_id = match (&self.component, &self.id) {
                (Some(ComponentRef::Id(c)), _) => Some(c.clone()),
                _ => None,
            };
            let id = match (self.id, &target_id) {
                (Some(id), _) => id,
                (None, Some(component)) => format!("{component}-http-trigger"),
                (None, None) => format!("http-trigger{}", index + 1),
            };
            let target = match (self.component, self.static_response) {
                (Some(ComponentRef::Id(c)), None) => ManifestTarget::Component(c),
                (Some(ComponentRef::Inline(inline)), None) => {
                    let name = format!("{id}-component");
                    let component = inline.normalize(&format!("{where_} component"))?;
                    components.insert(name.clone(), component);
                    ManifestTarget::Component(name)
                }
                (None, Some(s)) => ManifestTarget::StaticResponse(StaticResponse {
                    status_code: s.status_code.unwrap_or(200),
                    headers: s.headers,
                    body: s.body,
                }),
                (Some(_), Some(_)) => {
                    return Err(format!(
                        "{where_}: give either `component` or `static_response`, not both"
                    ))
                }
                (None, None) => {
                    return Err(format!(
                        "{where_}: give a `component` or a `static_response`"
                    ))
                }
            };
            Ok(ManifestHttpTrigger { id, route, target })
        }
    }

    fn check_component_id(id: &str, where_: &str) -> Result<(), String> {
        if is_kebab(id, '-') {
            Ok(())
        } else {
            Err(format!(
                "{where_}: {id:?} is not a valid component id (lower-case words of letters \
                 and digits joined by '-')"
            ))
        }
    }

    /// `allowed_http_hosts` entries are hosts (`example.com`, `insecure:allow-all`), or
    /// URLs; Spin reads them as `https` hosts on any port... except a full URL keeps its
    /// scheme.
    fn convert_http_host(host: &str) -> String {
        if host == "insecure:allow-all" || host.contains("://") {
            host.to_string()
        } else {
            format!("https://{host}")
        }
    }
}

pub(crate) fn unsupported_trigger(kind: &str) -> String {
    format!(
        "trigger type {kind:?} is not supported by wasmpod yet (it runs `http`, `redis`, \
         `mqtt`, `cron` and `command` triggers); remove the [[trigger.{kind}]] entries or run them \
         elsewhere"
    )
}

mod v1 {
    //! The serde shape of a version 1 manifest, and its conversion to version 2.
    use super::v2;
    use super::*;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct ManifestV1 {
        #[allow(dead_code)]
        pub spin_manifest_version: Option<String>,
        #[allow(dead_code)]
        pub spin_version: Option<String>,
        pub name: String,
        pub version: Option<String>,
        pub description: Option<String>,
        #[serde(default)]
        pub authors: Vec<String>,
        pub trigger: toml::Table,
        #[serde(default)]
        pub variables: BTreeMap<String, toml::Value>,
        #[serde(default, rename = "component")]
        pub components: Vec<ComponentV1>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct ComponentV1 {
        pub id: String,
        pub source: toml::Value,
        pub description: Option<String>,
        #[serde(default)]
        pub files: Vec<toml::Value>,
        #[serde(default)]
        pub exclude_files: Vec<String>,
        #[serde(default)]
        pub allowed_http_hosts: Vec<String>,
        #[serde(default)]
        pub allowed_outbound_hosts: Vec<String>,
        #[serde(default)]
        pub key_value_stores: Vec<String>,
        #[serde(default)]
        pub sqlite_databases: Vec<String>,
        #[serde(default)]
        pub ai_models: Vec<String>,
        #[serde(default)]
        pub environment: BTreeMap<String, String>,
        #[serde(default)]
        pub config: BTreeMap<String, String>,
        pub trigger: Option<toml::Table>,
        pub build: Option<toml::Value>,
    }

    impl ManifestV1 {
        /// The same app as a version 2 manifest (as `spin` converts it).
        pub fn into_v2(self) -> Result<v2::ManifestV2, String> {
            let kind = self
                .trigger
                .get("type")
                .and_then(toml::Value::as_str)
                .ok_or("trigger: `type` is missing")?
                .to_string();
            if kind != "http" {
                return Err(unsupported_trigger(&kind));
            }
            let mut app_trigger = toml::Table::new();
            for (k, v) in &self.trigger {
                if k != "type" {
                    app_trigger.insert(k.clone(), v.clone());
                }
            }
            let mut application = toml::Table::new();
            application.insert("name".into(), self.name.into());
            if let Some(v) = self.version {
                application.insert("version".into(), v.into());
            }
            if let Some(d) = self.description {
                application.insert("description".into(), d.into());
            }
            application.insert("authors".into(), to_value(&self.authors));
            if !app_trigger.is_empty() {
                let mut t = toml::Table::new();
                t.insert("http".into(), app_trigger.into());
                application.insert("trigger".into(), t.into());
            }
            let mut components = toml::Table::new();
            let mut triggers = Vec::new();
            for c in self.components {
                let mut t = c.trigger.clone().unwrap_or_default();
                t.insert("component".into(), c.id.clone().into());
                triggers.push(toml::Value::Table(t));
                let mut table = toml::Table::new();
                table.insert("source".into(), c.source);
                if let Some(d) = c.description {
                    table.insert("description".into(), d.into());
                }
                let lists = [
                    ("exclude_files", c.exclude_files),
                    ("allowed_http_hosts", c.allowed_http_hosts),
                    ("allowed_outbound_hosts", c.allowed_outbound_hosts),
                    ("key_value_stores", c.key_value_stores),
                    ("sqlite_databases", c.sqlite_databases),
                    ("ai_models", c.ai_models),
                ];
                for (key, list) in lists {
                    table.insert(key.into(), to_value(&list));
                }
                table.insert("files".into(), toml::Value::Array(c.files));
                table.insert("environment".into(), to_value(&c.environment));
                table.insert("variables".into(), to_value(&c.config));
                if let Some(b) = c.build {
                    table.insert("build".into(), b);
                }
                components.insert(c.id, table.into());
            }
            let mut trigger = toml::Table::new();
            trigger.insert("http".into(), toml::Value::Array(triggers));
            let mut doc = toml::Table::new();
            doc.insert("spin_manifest_version".into(), 2.into());
            doc.insert("application".into(), application.into());
            doc.insert("variables".into(), to_value(&self.variables));
            doc.insert("trigger".into(), trigger.into());
            doc.insert("component".into(), components.into());
            toml::Value::Table(doc)
                .try_into()
                .map_err(|e: toml::de::Error| e.message().trim().to_string())
        }
    }

    fn to_value<T: serde::Serialize>(v: &T) -> toml::Value {
        toml::Value::try_from(v).unwrap_or(toml::Value::Array(Vec::new()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO: &str = r#"
spin_manifest_version = 2

[application]
name = "hello"
version = "0.1.0"
authors = ["someone"]

[variables]
greeting = { default = "hi" }
token = { required = true, secret = true }

[[trigger.http]]
route = "/hello/..."
component = "hello"

[[trigger.http]]
id = "ping"
route = "/ping"
static_response = { status_code = 201, headers = { x-a = "b" }, body = "pong" }

[[trigger.http]]
route = { private = true }
component = { source = "inner.wasm" }

[component.hello]
source = "target/hello.wasm"
key_value_stores = ["default"]
allowed_http_hosts = ["example.com"]
allowed_outbound_hosts = ["http://localhost:3000"]
environment = { K = "v" }
files = ["static", { source = "assets", destination = "/a" }]
variables = { msg = "{{ greeting }} there" }
[component.hello.build]
command = "cargo build"
"#;

    #[test]
    fn reads_a_version_2_manifest() {
        let m = parse(HELLO).unwrap();
        assert_eq!(m.name, "hello");
        assert_eq!(m.version.as_deref(), Some("0.1.0"));
        assert_eq!(m.variables["greeting"].default.as_deref(), Some("hi"));
        assert_eq!(m.variables["token"].default, None);
        assert!(m.variables["token"].secret);
        let ids: Vec<&str> = m.http_triggers.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["hello-http-trigger", "ping", "http-trigger3"]);
        assert_eq!(m.http_triggers[2].route, HttpRoute::Private);
        assert_eq!(
            m.http_triggers[2].target,
            ManifestTarget::Component("http-trigger3-component".into())
        );
        assert!(m.components.contains_key("http-trigger3-component"));
        let ManifestTarget::StaticResponse(s) = &m.http_triggers[1].target else {
            panic!("not static");
        };
        assert_eq!((s.status_code, s.body.as_deref()), (201, Some("pong")));
        let hello = &m.components["hello"];
        assert_eq!(hello.source, Source::Local("target/hello.wasm".into()));
        assert_eq!(
            hello.allowed_outbound_hosts,
            ["http://localhost:3000", "https://example.com"]
        );
        assert_eq!(hello.files.len(), 2);
        assert_eq!(hello.variables["msg"], "{{ greeting }} there");
    }

    #[test]
    fn converts_a_version_1_manifest() {
        let v1 = r#"
spin_manifest_version = "1"
name = "old"
version = "1.0.0"
trigger = { type = "http", base = "/" }
[variables]
x = { default = "1" }
[[component]]
id = "hello"
source = "hello.wasm"
allowed_http_hosts = ["insecure:allow-all"]
config = { y = "{{ x }}" }
[component.trigger]
route = "/..."
"#;
        let m = parse(v1).unwrap();
        assert_eq!(m.name, "old");
        assert_eq!(m.http_triggers.len(), 1);
        assert_eq!(m.http_triggers[0].id, "hello-http-trigger");
        assert_eq!(m.http_triggers[0].route, HttpRoute::Path("/...".into()));
        assert_eq!(
            m.components["hello"].allowed_outbound_hosts,
            ["insecure:allow-all"]
        );
        assert_eq!(m.components["hello"].variables["y"], "{{ x }}");
    }

    /// Each bad manifest fails with a message naming what is wrong.
    #[test]
    fn bad_manifests_say_what_is_wrong() {
        let cases = [
            (HELLO.replace("authors =", "authorz ="), "authorz"),
            (
                HELLO.replace("key_value_stores", "key_value_store"),
                "key_value_store",
            ),
            (
                HELLO.replace("spin_manifest_version = 2", ""),
                "spin_manifest_version",
            ),
            (
                HELLO.replace("spin_manifest_version = 2", "spin_manifest_version = 3"),
                "3",
            ),
            (
                HELLO.replace("component = \"hello\"", "component = \"nope\""),
                "nope",
            ),
            (
                HELLO.replace(
                    "{ default = \"hi\" }",
                    "{ default = \"hi\", required = true }",
                ),
                "greeting",
            ),
            (HELLO.replace("greeting =", "Greeting ="), "Greeting"),
            (
                HELLO.replace(
                    "[[trigger.http]]\nid = \"ping\"",
                    "[[trigger.cron]]\nid = \"ping\"",
                ),
                "cron",
            ),
            (
                HELLO.replace(
                    "route = \"/ping\"",
                    "route = \"/ping\"\nexecutor = { type = \"wagi\" }",
                ),
                "wagi",
            ),
            (
                HELLO.replace(
                    "route = \"/ping\"",
                    "route = \"/ping\"\ncomponent = \"hello\"",
                ),
                "not both",
            ),
            (
                HELLO.replace("[component.hello", "[component.Hello"),
                "Hello",
            ),
            (
                format!("{HELLO}\n[application.trigger.http]\nbase = \"/api\"\n"),
                "base",
            ),
            (
                HELLO.replace("route = { private = true }", "route = { private = false }"),
                "private",
            ),
            ("not toml at all [".to_string(), ""),
        ];
        for (text, needle) in cases {
            let err = parse(&text).expect_err(needle);
            assert!(err.contains(needle), "{needle:?} not in {err:?}");
        }
    }

    #[test]
    fn labels_and_names() {
        for good in ["default", "my-store", "my_store", "s3"] {
            assert!(is_store_label(good), "{good}");
        }
        for bad in ["", "My", "-a", "a--b", "a-", "1a", "a b"] {
            assert!(!is_store_label(bad), "{bad}");
        }
        assert!(is_variable_name("api_key2"));
        assert!(!is_variable_name("ApiKey"));
        assert!(!is_variable_name("_x"));
    }

    #[test]
    fn cron_and_command_triggers() {
        let m = parse(
            r#"
spin_manifest_version = 2
[application]
name = "jobs"
[[trigger.cron]]
component = "tick"
cron_expression = "*/2 * * * * *"
[[trigger.cron]]
id = "inline"
component = { source = "b.wasm" }
cron_expression = "0 0 * * * *"
[[trigger.command]]
component = "tick"
[component.tick]
source = "a.wasm"
"#,
        )
        .unwrap();
        assert_eq!(
            m.cron_triggers,
            vec![
                CronTrigger {
                    id: "tick-cron-trigger".into(),
                    component: "tick".into(),
                    cron_expression: "*/2 * * * * *".into(),
                },
                CronTrigger {
                    id: "inline".into(),
                    component: "inline-component".into(),
                    cron_expression: "0 0 * * * *".into(),
                },
            ]
        );
        assert_eq!(m.command_triggers[0].id, "tick-command-trigger");
        assert!(m.components.contains_key("inline-component"));
        let base = "spin_manifest_version = 2\n[application]\nname = \"x\"\n";
        let missing = parse(&format!(
            "{base}[[trigger.cron]]\ncomponent = \"nope\"\ncron_expression = \"* * * * * *\"\n"
        ))
        .unwrap_err();
        assert!(missing.contains("\"nope\" is not defined"), "{missing}");
        let typo = parse(&format!(
            "{base}[[trigger.cron]]\ncomponent = \"c\"\ncron = \"* * * * * *\"\n"
        ))
        .unwrap_err();
        assert!(typo.contains("[[trigger.cron]] #1"), "{typo}");
        let sqs = parse(&format!(
            "{base}[[trigger.sqs]]\nqueue_url = \"c\"\ncomponent = \"c\"\n"
        ))
        .unwrap_err();
        assert!(
            sqs.contains("\"sqs\" is not supported") && sqs.contains("cron"),
            "{sqs}"
        );
    }

    #[test]
    fn mqtt_triggers_take_the_app_broker() {
        let base = "spin_manifest_version = 2\n[application]\nname = \"x\"\n";
        let component = "[component.c]\nsource = \"c.wasm\"\n";
        let trigger =
            "[[trigger.mqtt]]\ntopic = \"in/{{ room }}\"\nqos = \"1\"\ncomponent = \"c\"\n";
        let no_broker = parse(&format!("{base}{trigger}{component}")).unwrap_err();
        assert!(no_broker.contains("no MQTT broker"), "{no_broker}");
        let m = parse(&format!(
            "{base}[application.trigger.mqtt]\naddress = \"mqtt://b:1883\"\nusername = \"u\"\n\
             password = \"{{{{ pw }}}}\"\nkeep_alive_interval = \"10\"\n{trigger}\
             [[trigger.mqtt]]\ntopic = \"t\"\nqos = 2\ncomponent = \"c\"\n{component}"
        ))
        .unwrap();
        let t = &m.mqtt_triggers[0];
        assert_eq!(
            (t.id.as_str(), t.topic.as_str()),
            ("c-mqtt-trigger", "in/{{ room }}")
        );
        assert_eq!(t.qos, MqttQos::AtLeastOnce);
        assert_eq!(
            t.broker,
            MqttBroker {
                address: "mqtt://b:1883".into(),
                username: "u".into(),
                password: "{{ pw }}".into(),
                keep_alive_secs: 10
            }
        );
        assert_eq!(m.mqtt_triggers[1].qos, MqttQos::ExactlyOnce);
        let bad_qos = parse(&format!(
            "{base}[application.trigger.mqtt]\naddress = \"mqtt://b\"\n\
             [[trigger.mqtt]]\ntopic = \"t\"\nqos = \"3\"\ncomponent = \"c\"\n{component}"
        ))
        .unwrap_err();
        assert!(bad_qos.contains("qos \"3\": it is 0, 1 or 2"), "{bad_qos}");
        let bad_field = parse(&format!(
            "{base}[application.trigger.mqtt]\naddress = \"mqtt://b\"\nuser = \"u\"\n{component}"
        ))
        .unwrap_err();
        assert!(bad_field.contains("unknown field `user`"), "{bad_field}");
    }

    #[test]
    fn redis_triggers_take_the_trigger_or_the_app_address() {
        let base = "spin_manifest_version = 2\n[application]\nname = \"x\"\n";
        let component = "[component.c]\nsource = \"c.wasm\"\n";
        let no_address = parse(&format!(
            "{base}[[trigger.redis]]\nchannel = \"c\"\ncomponent = \"c\"\n{component}"
        ))
        .unwrap_err();
        assert!(no_address.contains("no Redis address"), "{no_address}");
        let m = parse(&format!(
            "{base}[application.trigger.redis]\naddress = \"redis://r:6379\"\n\
             [[trigger.redis]]\nchannel = \"events\"\ncomponent = \"c\"\n\
             [[trigger.redis]]\nchannel = \"other\"\naddress = \"redis://{{{{ host }}}}\"\n\
             component = \"c\"\n{component}"
        ))
        .unwrap();
        assert_eq!(m.redis_triggers[0].address, "redis://r:6379");
        assert_eq!(m.redis_triggers[0].id, "c-redis-trigger");
        assert_eq!(m.redis_triggers[0].channel, "events");
        assert_eq!(m.redis_triggers[1].address, "redis://{{ host }}");
        let bad = parse(&format!(
            "{base}[application.trigger.redis]\nadress = \"redis://r\"\n{component}"
        ))
        .unwrap_err();
        assert!(bad.contains("unknown field `adress`"), "{bad}");
    }
}
