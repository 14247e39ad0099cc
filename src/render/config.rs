//! The app's `kots.io/v1beta1 Config` (groups of items the operator fills in), the operator's
//! answers (`kind: ConfigValues`), and [`resolve`]: every item's value, rendered in dependency
//! order, as KOTS's `newConfigContext` does it.
//!
//! KOTS's rules, kept here: an item's `default` is always rendered; an editable item with an
//! answer takes the answer as its value, otherwise its `value` is rendered; `readonly` items
//! and types the operator cannot edit (`label`, `heading`) never take an answer;
//! `ConfigOption` is the value when not empty, else the default; `hidden` and `when` do not
//! change what `ConfigOption` returns, only whether a `required` item must be filled in.
//!
//! Saved values: what a random function generated (`RandomString` in a `default` or in an
//! editable item's `value`) and the operator's answers come back in [`Resolved::to_save`];
//! passed back as `saved` on the next resolve, a generated password never changes. KOTS keeps
//! generated values only for `value` (it saves every rendered value); kots-bundle also keeps
//! generated defaults, and saves nothing that is reproducible, so a vendor's new
//! deterministic default still takes effect on update.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_yaml_ng::Value as Yaml;

use super::template::{render_tracked, Context, ItemValue, TemplateError};

/// Config and ConfigValues files are small.
const MAX_FILE_BYTES: u64 = 16 << 20;

/// One `spec.groups[]` entry.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigGroup {
    pub name: String,
    pub title: String,
    /// Template text; the group is shown (and its required items checked) unless it renders
    /// to `false`.
    pub when: String,
    pub items: Vec<ConfigItem>,
}

/// One option of a `select_one`/`radio` item.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigChildItem {
    pub name: String,
    pub title: String,
}

/// One config item.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigItem {
    pub name: String,
    pub title: String,
    /// `text` (also when empty), `password`, `bool`, `select_one`, `radio`, `textarea`,
    /// `file`, `label`, `heading`, ...
    pub item_type: String,
    /// Template text.
    pub default: String,
    /// Template text.
    pub value: String,
    /// Template text.
    pub when: String,
    pub hidden: bool,
    pub readonly: bool,
    pub required: bool,
    /// Template text (`type: file`).
    pub filename: String,
    pub items: Vec<ConfigChildItem>,
}

impl ConfigItem {
    /// KOTS's `isReadOnly`: `readonly: true`, or a type the operator cannot edit.
    pub fn is_read_only(&self) -> bool {
        const EDITABLE: &[&str] = &[
            "",
            "bool",
            "file",
            "password",
            "select",
            "select_many",
            "select_one",
            "radio",
            "dropdown",
            "text",
            "textarea",
        ];
        self.readonly || !EDITABLE.contains(&self.item_type.as_str())
    }
}

/// A `kots.io/v1beta1 Config`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    pub name: String,
    pub groups: Vec<ConfigGroup>,
}

/// One answer (`spec.values.<item>`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigValue {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_plaintext: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
}

impl ConfigValue {
    /// The answer, as KOTS reads it: `value`, else `valuePlaintext`.
    pub fn answer(&self) -> Option<&str> {
        [self.value.as_deref(), self.value_plaintext.as_deref()]
            .into_iter()
            .flatten()
            .find(|v| !v.is_empty())
    }
}

/// A `kots.io/v1beta1 ConfigValues`: answers by item name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigValues {
    pub name: String,
    pub values: BTreeMap<String, ConfigValue>,
    /// Items whose values were left out of a copy kept outside the app directory (the
    /// registry's, [`crate::appstore`]): they must be answered again, never regenerated.
    /// Kept in the annotation [`WITHHELD_ANNOTATION`].
    pub withheld: BTreeSet<String>,
}

/// Lists, comma-separated, the items of a ConfigValues whose values were withheld.
pub const WITHHELD_ANNOTATION: &str = "kots-bundle.io/withheld";

/// Why config could not be read or resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{what}: {why}")]
    Parse { what: String, why: String },
    #[error("config items depend on each other in a cycle: {}", .0.join("; "))]
    Cycle(Vec<String>),
    #[error(
        "required config items have no value: {}; give them in --config-values \
         (kind: ConfigValues, spec.values.<item>.value)",
        .0.iter().map(|(n, t)| if t.is_empty() || t == n { n.clone() } else { format!("{n} ({t})") })
            .collect::<Vec<_>>().join(", ")
    )]
    Required(Vec<(String, String)>),
    #[error("config item {item:?} ({field}): {source}")]
    Template {
        item: String,
        field: &'static str,
        source: TemplateError,
    },
}

fn scalar_text(v: Option<&Yaml>) -> String {
    match v {
        Some(Yaml::String(s)) => s.clone(),
        Some(Yaml::Bool(b)) => b.to_string(),
        Some(Yaml::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

fn flag(v: Option<&Yaml>) -> bool {
    match v {
        Some(Yaml::Bool(b)) => *b,
        Some(Yaml::String(s)) => s == "true",
        _ => false,
    }
}

fn read_capped(path: &Path) -> Result<String, ConfigError> {
    let bad = |why: String| ConfigError::Parse {
        what: path.display().to_string(),
        why,
    };
    let meta = std::fs::metadata(path).map_err(|e| bad(e.to_string()))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(bad(format!(
            "{} bytes is too big for a config file",
            meta.len()
        )));
    }
    std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))
}

/// The first document of `text` with `kind: <kind>`.
fn find_kind(text: &str, kind: &str, what: &str) -> Result<Yaml, ConfigError> {
    let mut err = None;
    for d in crate::yaml::yaml_documents(text) {
        match d.parsed {
            Ok(v) if v.get("kind").and_then(Yaml::as_str) == Some(kind) => return Ok(v),
            Ok(_) => {}
            Err(e) => err = Some(e.to_string()),
        }
    }
    Err(ConfigError::Parse {
        what: what.to_string(),
        why: match err {
            Some(e) => format!("not YAML: {e}"),
            None => format!("no kind: {kind} document"),
        },
    })
}

impl Config {
    /// The Config of a parsed document (`kind: Config`).
    pub fn from_document(doc: &Yaml) -> Result<Config, ConfigError> {
        let bad = |why: &str| ConfigError::Parse {
            what: "kind: Config".into(),
            why: why.into(),
        };
        if doc.get("kind").and_then(Yaml::as_str) != Some("Config") {
            return Err(bad("not a kind: Config document"));
        }
        let name = scalar_text(doc.get("metadata").and_then(|m| m.get("name")));
        let mut groups = Vec::new();
        let empty = Vec::new();
        let gs = match doc.get("spec").and_then(|s| s.get("groups")) {
            Some(Yaml::Sequence(gs)) => gs,
            None | Some(Yaml::Null) => &empty,
            Some(_) => return Err(bad("spec.groups is not a list")),
        };
        for g in gs {
            let mut items = Vec::new();
            if let Some(Yaml::Sequence(is)) = g.get("items") {
                for i in is {
                    let item_name = scalar_text(i.get("name"));
                    if item_name.is_empty() {
                        return Err(bad("a config item has no name"));
                    }
                    let children = match i.get("items") {
                        Some(Yaml::Sequence(cs)) => cs
                            .iter()
                            .map(|c| ConfigChildItem {
                                name: scalar_text(c.get("name")),
                                title: scalar_text(c.get("title")),
                            })
                            .collect(),
                        _ => Vec::new(),
                    };
                    items.push(ConfigItem {
                        name: item_name,
                        title: scalar_text(i.get("title")),
                        item_type: scalar_text(i.get("type")),
                        default: scalar_text(i.get("default")),
                        value: scalar_text(i.get("value")),
                        when: scalar_text(i.get("when")),
                        hidden: flag(i.get("hidden")),
                        readonly: flag(i.get("readonly")),
                        required: flag(i.get("required")),
                        filename: scalar_text(i.get("filename")),
                        items: children,
                    });
                }
            }
            groups.push(ConfigGroup {
                name: scalar_text(g.get("name")),
                title: scalar_text(g.get("title")),
                when: scalar_text(g.get("when")),
                items,
            });
        }
        Ok(Config { name, groups })
    }

    /// Parses the first `kind: Config` document of a YAML stream.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_document(&find_kind(text, "Config", "kind: Config")?)
    }

    pub fn items(&self) -> impl Iterator<Item = &ConfigItem> {
        self.groups.iter().flat_map(|g| g.items.iter())
    }
}

impl ConfigValues {
    /// The ConfigValues of a parsed document.
    pub fn from_document(doc: &Yaml) -> Result<ConfigValues, ConfigError> {
        let bad = |why: String| ConfigError::Parse {
            what: "kind: ConfigValues".into(),
            why,
        };
        if doc.get("kind").and_then(Yaml::as_str) != Some("ConfigValues") {
            return Err(bad("not a kind: ConfigValues document".into()));
        }
        let name = scalar_text(doc.get("metadata").and_then(|m| m.get("name")));
        let withheld = doc
            .get("metadata")
            .and_then(|m| m.get("annotations"))
            .and_then(|a| a.get(WITHHELD_ANNOTATION))
            .and_then(Yaml::as_str)
            .map(|s| {
                s.split(',')
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let mut values = BTreeMap::new();
        if let Some(Yaml::Mapping(m)) = doc.get("spec").and_then(|s| s.get("values")) {
            for (k, v) in m {
                let Some(k) = k.as_str() else { continue };
                let text = |f: &str| match v.get(f) {
                    None | Some(Yaml::Null) => None,
                    other => Some(scalar_text(other)),
                };
                values.insert(
                    k.to_string(),
                    ConfigValue {
                        value: text("value"),
                        value_plaintext: text("valuePlaintext"),
                        default: text("default"),
                        filename: text("filename"),
                    },
                );
            }
        }
        Ok(ConfigValues {
            name,
            values,
            withheld,
        })
    }

    /// Parses the first `kind: ConfigValues` document of a YAML stream.
    pub fn parse(text: &str) -> Result<ConfigValues, ConfigError> {
        ConfigValues::from_document(&find_kind(text, "ConfigValues", "kind: ConfigValues")?)
    }

    /// Reads a ConfigValues file (`--config-values`, or the saved values).
    pub fn load(path: &Path) -> Result<ConfigValues, ConfigError> {
        ConfigValues::parse(&read_capped(path)?).map_err(|e| match e {
            ConfigError::Parse { why, .. } => ConfigError::Parse {
                what: path.display().to_string(),
                why,
            },
            other => other,
        })
    }

    /// As a `kots.io/v1beta1 ConfigValues` YAML document.
    pub fn to_yaml(&self) -> String {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Doc<'a> {
            api_version: &'a str,
            kind: &'a str,
            metadata: Metadata<'a>,
            spec: Spec<'a>,
        }
        #[derive(Serialize)]
        struct Metadata<'a> {
            name: &'a str,
            #[serde(skip_serializing_if = "BTreeMap::is_empty")]
            annotations: BTreeMap<&'a str, String>,
        }
        #[derive(Serialize)]
        struct Spec<'a> {
            values: &'a BTreeMap<String, ConfigValue>,
        }
        let name = if self.name.is_empty() {
            "config-values"
        } else {
            &self.name
        };
        let doc = Doc {
            api_version: "kots.io/v1beta1",
            kind: "ConfigValues",
            metadata: Metadata {
                name,
                annotations: if self.withheld.is_empty() {
                    BTreeMap::new()
                } else {
                    let list: Vec<&str> = self.withheld.iter().map(String::as_str).collect();
                    BTreeMap::from([(WITHHELD_ANNOTATION, list.join(","))])
                },
            },
            spec: Spec {
                values: &self.values,
            },
        };
        serde_yaml_ng::to_string(&doc).unwrap_or_default()
    }

    /// `self` with `newer`'s entries replacing the ones they name (`--config-values` given on
    /// an update replaces the saved answers it names and keeps the rest).
    pub fn merged_with(&self, newer: &ConfigValues) -> ConfigValues {
        let mut out = self.clone();
        if !newer.name.is_empty() {
            out.name = newer.name.clone();
        }
        for (k, v) in &newer.values {
            if v.answer().is_some() {
                out.withheld.remove(k);
            }
            out.values.insert(k.clone(), v.clone());
        }
        out
    }
}

/// The outcome of [`resolve`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resolved {
    /// Every item's value and default, for [`Context::config`].
    pub values: BTreeMap<String, ItemValue>,
    /// What to keep for the next resolve (pass it as `saved`): the operator's answers and
    /// every generated value. Write it with mode 0600: it holds passwords.
    pub to_save: ConfigValues,
    /// Required items left without a value (only from [`resolve_allowing_missing`]): name
    /// and title.
    pub missing: Vec<(String, String)>,
}

/// The config items a template refers to by name.
fn referenced_items(template: &str) -> Vec<String> {
    static RE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
            r#"(?:ConfigOption|ConfigOptionIndex|ConfigOptionData|ConfigOptionFilename|ConfigOptionEquals|ConfigOptionNotEquals)\s+(?:"([^"]+)"|`([^`]+)`)"#,
        )
        .expect("static regex")
    });
    RE.captures_iter(template)
        .filter_map(|c| c.get(1).or_else(|| c.get(2)))
        .map(|m| m.as_str().to_string())
        .collect()
}

/// Renders every item's value in dependency order (see the module doc).
///
/// `answers`: this run's `--config-values`; `saved`: the previous run's [`Resolved::to_save`].
/// `ctx` supplies license, registry and namespace; its `config` is ignored. Errors: a cycle
/// (naming the items), a template that fails (naming the item), or required items without a
/// value (all of them in one error).
pub fn resolve(
    config: Option<&Config>,
    answers: Option<&ConfigValues>,
    saved: Option<&ConfigValues>,
    ctx: &Context,
) -> Result<Resolved, ConfigError> {
    let resolved = resolve_allowing_missing(config, answers, saved, ctx)?;
    if resolved.missing.is_empty() {
        Ok(resolved)
    } else {
        Err(ConfigError::Required(resolved.missing))
    }
}

/// [`resolve`] for rendering before the operator has answered (`export`, `images`): required
/// items without a value render as empty and are listed in [`Resolved::missing`].
pub fn resolve_allowing_missing(
    config: Option<&Config>,
    answers: Option<&ConfigValues>,
    saved: Option<&ConfigValues>,
    ctx: &Context,
) -> Result<Resolved, ConfigError> {
    let saved = saved.cloned().unwrap_or_default();
    let stored = match answers {
        Some(a) => saved.merged_with(a),
        None => saved.clone(),
    };
    let mut to_save = stored.clone();

    // KOTS starts from the existing values: items the config does not list stay.
    let mut values: BTreeMap<String, ItemValue> = stored
        .values
        .iter()
        .filter_map(|(k, v)| {
            v.answer().map(|a| {
                (
                    k.clone(),
                    ItemValue {
                        value: a.to_string(),
                        default: String::new(),
                        filename: v.filename.clone().unwrap_or_default(),
                    },
                )
            })
        })
        .collect();
    let existing: BTreeSet<String> = values.keys().cloned().collect();

    let Some(config) = config else {
        return Ok(Resolved {
            values,
            to_save,
            missing: Vec::new(),
        });
    };

    // Dependency graph over the config's own items.
    let known: BTreeSet<&str> = config.items().map(|i| i.name.as_str()).collect();
    let mut deps: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for item in config.items() {
        let d = deps.entry(item.name.as_str()).or_default();
        for t in [&item.default, &item.value] {
            for r in referenced_items(t) {
                if known.contains(r.as_str()) && r != item.name {
                    d.insert(r);
                }
            }
        }
    }

    let mut ctx = ctx.clone();
    let mut done: BTreeSet<String> = BTreeSet::new();
    let order: Vec<&ConfigItem> = config.items().collect();
    while done.len() < known.len() {
        let ready: Vec<&ConfigItem> = order
            .iter()
            .copied()
            .filter(|i| !done.contains(&i.name))
            .filter(|i| deps[i.name.as_str()].iter().all(|d| done.contains(d)))
            .collect();
        if ready.is_empty() {
            let waiting = deps
                .iter()
                .filter(|(n, _)| !done.contains(**n))
                .map(|(n, d)| {
                    let on: Vec<String> = d
                        .iter()
                        .filter(|x| !done.contains(*x))
                        .map(|x| format!("{x:?}"))
                        .collect();
                    format!("{n:?} depends on {}", on.join(", "))
                })
                .collect();
            return Err(ConfigError::Cycle(waiting));
        }
        for item in ready {
            ctx.config = values.clone();
            let render_field = |field: &'static str, text: &str| {
                render_tracked(&format!("config item {}", item.name), text, &ctx).map_err(
                    |source| ConfigError::Template {
                        item: item.name.clone(),
                        field,
                        source,
                    },
                )
            };
            let (mut default, generated) = render_field("default", &item.default)?;
            if stored.withheld.contains(&item.name) {
                // Its value was left out of a copy; a new one would replace the one in use.
                default.clear();
            } else if generated {
                match saved.values.get(&item.name).and_then(|v| v.default.clone()) {
                    Some(kept) => default = kept,
                    None => {
                        to_save.values.entry(item.name.clone()).or_default().default =
                            Some(default.clone());
                    }
                }
            }
            let entry = if !item.is_read_only() && existing.contains(&item.name) {
                let prior = values.get(&item.name).cloned().unwrap_or_default();
                ItemValue {
                    value: prior.value,
                    default,
                    filename: prior.filename,
                }
            } else {
                let (value, generated) = render_field("value", &item.value)?;
                if generated && !item.is_read_only() {
                    to_save.values.entry(item.name.clone()).or_default().value =
                        Some(value.clone());
                }
                let (filename, _) = render_field("filename", &item.filename)?;
                ItemValue {
                    value,
                    default,
                    filename,
                }
            };
            values.insert(item.name.clone(), entry);
            done.insert(item.name.clone());
        }
    }

    // Required items: shown (not hidden, `when` not false, group `when` not false) and empty.
    ctx.config = values.clone();
    let is_false = |what: &str, item: &str, text: &str| -> Result<bool, ConfigError> {
        if text.is_empty() {
            return Ok(false);
        }
        let (s, _) =
            render_tracked(&format!("config {what} {item}"), text, &ctx).map_err(|source| {
                ConfigError::Template {
                    item: item.to_string(),
                    field: "when",
                    source,
                }
            })?;
        Ok(s.trim() == "false")
    };
    let mut missing = Vec::new();
    for group in &config.groups {
        if is_false("group", &group.name, &group.when)? {
            continue;
        }
        for item in &group.items {
            if !item.required || item.hidden || is_false("item", &item.name, &item.when)? {
                continue;
            }
            let v = &values[&item.name];
            if v.value.is_empty() && v.default.is_empty() {
                missing.push((item.name.clone(), item.title.clone()));
            }
        }
    }
    for name in stored
        .withheld
        .iter()
        .filter(|n| known.contains(n.as_str()))
    {
        let empty = values
            .get(name)
            .is_none_or(|v| v.value.is_empty() && v.default.is_empty());
        if empty && !missing.iter().any(|(n, _)| n == name) {
            missing.push((
                name.clone(),
                format!("{name}, left out of the registry's copy of the app directory"),
            ));
        }
    }
    if to_save.name.is_empty() {
        to_save.name = config.name.clone();
    }
    Ok(Resolved {
        values,
        to_save,
        missing,
    })
}
