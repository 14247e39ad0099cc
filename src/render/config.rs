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
//!
//! This file holds the types and how they are read; `config/resolve.rs` the values.

mod resolve;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_yaml_ng::Value as Yaml;

use super::template::TemplateError;

pub use resolve::{resolve, resolve_allowing_missing, Resolved};

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
