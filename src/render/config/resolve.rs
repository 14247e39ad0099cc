//! Every item's value, rendered in dependency order, as KOTS's `newConfigContext` does it
//! (the rules are in the module doc of [`super`]): answers and saved values applied, a cycle
//! named, required items without a value listed together.

use std::collections::{BTreeMap, BTreeSet};

use super::super::template::{render_tracked, Context, ItemValue};
use super::{Config, ConfigError, ConfigItem, ConfigValues};

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
