//! Spin variables: the app's `[variables]` resolved once at start from the providers
//! (runtime config `[[variables_provider]]` entries in order, then the container's
//! environment, then the variable's default), and each component's `variables` (templates
//! over app variables, `"{{ name }}"`) expanded from them.
//!
//! The environment provider reads `SPIN_VARIABLE_<NAME>` (the name upper-cased); as the Spin
//! shim does, a bare upper-case `<NAME>` in the container's environment counts too (the
//! prefixed one wins). A required variable nobody sets fails the start, naming it.

use std::collections::BTreeMap;

use wasmpod_oci::spin::app::AppVariable;

/// The environment provider's default prefix.
pub const ENV_PREFIX: &str = "SPIN_VARIABLE";

/// One source of variable values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provider {
    /// `type = "static"`: fixed values.
    Static(BTreeMap<String, String>),
    /// `type = "env"`: `<PREFIX>_<NAME>` from the container's environment (and the
    /// `.env`-style file at `dotenv`, read at start, if any).
    Env {
        /// The prefix (default [`ENV_PREFIX`]).
        prefix: String,
        /// Values read from the dotenv file.
        dotenv: BTreeMap<String, String>,
    },
}

impl Provider {
    fn get(&self, name: &str, env: &BTreeMap<String, String>) -> Option<String> {
        match self {
            Provider::Static(values) => values.get(name).cloned(),
            Provider::Env { prefix, dotenv } => {
                let key = format!("{prefix}_{}", name.to_uppercase());
                env.get(&key).or_else(|| dotenv.get(&key)).cloned()
            }
        }
    }
}

/// The resolved values of the app's variables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppValues(BTreeMap<String, String>);

impl AppValues {
    /// Resolves `variables` from `providers` (in order), then the container's `env`, then
    /// the defaults.
    pub fn resolve(
        variables: &BTreeMap<String, AppVariable>,
        providers: &[Provider],
        env: &[(String, String)],
    ) -> Result<AppValues, String> {
        let mut env_map: BTreeMap<String, String> = env.iter().cloned().collect();
        // Bare upper-case names stand for the prefixed ones, unless those are set.
        for name in variables.keys() {
            let bare = name.to_uppercase();
            let prefixed = format!("{ENV_PREFIX}_{bare}");
            if !env_map.contains_key(&prefixed) {
                if let Some(v) = env_map.get(&bare).cloned() {
                    env_map.insert(prefixed, v);
                }
            }
        }
        let always = Provider::Env {
            prefix: ENV_PREFIX.to_string(),
            dotenv: BTreeMap::new(),
        };
        let mut values = BTreeMap::new();
        let mut missing = Vec::new();
        for (name, var) in variables {
            let found = providers
                .iter()
                .chain(std::iter::once(&always))
                .find_map(|p| p.get(name, &env_map))
                .or_else(|| var.default.clone());
            match found {
                Some(v) => {
                    values.insert(name.clone(), v);
                }
                None => missing.push(name.as_str()),
            }
        }
        if !missing.is_empty() {
            return Err(format!(
                "no provider resolved required variable(s): {} (set {} in the container's \
                 environment, or give a value in /runtime-config.toml)",
                missing.join(", "),
                missing
                    .iter()
                    .map(|n| format!("{ENV_PREFIX}_{}", n.to_uppercase()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        Ok(AppValues(values))
    }

    /// Expands a template (`"literal {{ var }} more"`) with these values.
    pub fn expand(&self, template: &str) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = template;
        while let Some(start) = rest.find("{{") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| format!("template {template:?} has an unclosed `{{{{`"))?;
            let name = after[..end].trim();
            let value = self.0.get(name).ok_or_else(|| {
                format!("template {template:?} names {name:?}, which is not an app variable")
            })?;
            out.push_str(value);
            rest = &after[end + 2..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// A component's `variables`, expanded.
    pub fn component_config(
        &self,
        component: &str,
        templates: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, String> {
        templates
            .iter()
            .map(|(k, t)| {
                if !wasmpod_oci::spin::manifest::is_variable_name(k) {
                    return Err(format!(
                        "component {component}: variable name {k:?} is not valid"
                    ));
                }
                self.expand(t)
                    .map(|v| (k.clone(), v))
                    .map_err(|e| format!("component {component} variable {k}: {e}"))
            })
            .collect()
    }
}

/// Reads a `.env`-style file: `NAME=value` lines, `#` comments, optional quotes.
pub fn parse_dotenv(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.strip_prefix("export ").unwrap_or(l).split_once('='))
        .map(|(k, v)| {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            (k.trim().to_string(), v.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(list: &[(&str, Option<&str>)]) -> BTreeMap<String, AppVariable> {
        list.iter()
            .map(|(n, d)| {
                (
                    n.to_string(),
                    AppVariable {
                        default: d.map(str::to_string),
                        secret: false,
                    },
                )
            })
            .collect()
    }

    fn env(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn providers_in_order_then_env_then_default() {
        let v = vars(&[
            ("a", Some("da")),
            ("b", Some("db")),
            ("c", None),
            ("d", None),
        ]);
        let providers = [Provider::Static(
            [("a".to_string(), "static".to_string())].into(),
        )];
        let values = AppValues::resolve(
            &v,
            &providers,
            &env(&[
                ("SPIN_VARIABLE_A", "env"),
                ("SPIN_VARIABLE_C", "prefixed"),
                ("C", "bare"),
                ("D", "bare"),
            ]),
        )
        .unwrap();
        assert_eq!(values.expand("{{a}}").unwrap(), "static");
        assert_eq!(values.expand("{{ b }}").unwrap(), "db");
        assert_eq!(values.expand("{{c}}").unwrap(), "prefixed");
        assert_eq!(values.expand("x{{ d }}y").unwrap(), "xbarey");
    }

    #[test]
    fn a_missing_required_variable_is_named() {
        let v = vars(&[("api_key", None), ("ok", Some("1"))]);
        let err = AppValues::resolve(&v, &[], &[]).unwrap_err();
        assert!(
            err.contains("api_key") && err.contains("SPIN_VARIABLE_API_KEY"),
            "{err}"
        );
    }

    #[test]
    fn env_providers_with_prefixes_and_dotenv() {
        let v = vars(&[("x", None), ("y", None)]);
        let providers = [Provider::Env {
            prefix: "MY".into(),
            dotenv: parse_dotenv("# c\nMY_Y=\"from file\"\n"),
        }];
        let values = AppValues::resolve(&v, &providers, &env(&[("MY_X", "1")])).unwrap();
        assert_eq!(values.expand("{{x}}-{{y}}").unwrap(), "1-from file");
    }

    #[test]
    fn templates() {
        let values = AppValues::resolve(&vars(&[("n", Some("v"))]), &[], &[]).unwrap();
        assert_eq!(values.expand("plain").unwrap(), "plain");
        assert!(values.expand("{{ nope }}").unwrap_err().contains("nope"));
        assert!(values.expand("{{ n").is_err());
        let config = values
            .component_config("c", &[("k".to_string(), "<{{n}}>".to_string())].into())
            .unwrap();
        assert_eq!(config["k"], "<v>");
        assert!(values
            .component_config("c", &[("Bad".to_string(), "x".to_string())].into())
            .is_err());
    }
}
