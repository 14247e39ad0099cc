//! Sprig's dict functions (`dict.go`): `dict`, `get`, `set`, `unset`, `hasKey`, `pluck`,
//! `keys`, `pick`, `omit`, `merge`, `mergeOverwrite`, `values`, `dig`, `deepCopy`.
//!
//! Values are immutable here: `set` and `unset` return the changed dict but cannot change the
//! one the caller holds, so Helm's `{{ $_ := set $d "k" "v" }}` idiom leaves `$d` as it was.

use std::collections::BTreeMap;
use std::sync::Arc;

use gotmpl::{TemplateError, Value};

use super::sprig_strings::strval;
use super::Funcs;
use crate::render::template::args::{call_error, list, string, Args};

type Map = BTreeMap<Arc<str>, Value>;

fn map_value(m: Map) -> Value {
    Value::Map(Arc::new(m))
}

fn maps<'a>(name: &str, vals: &'a [Value]) -> Result<Vec<&'a Map>, TemplateError> {
    vals.iter()
        .map(|v| match v {
            Value::Map(m) => Ok(m.as_ref()),
            other => Err(TemplateError::Exec(format!(
                "wrong type for value; expected map[string]interface {{}}; got {} (argument of {name})",
                crate::render::template::gofmt::type_name(other)
            ))),
        })
        .collect()
}

/// mergo's `Merge`: a key missing or empty in `dst` takes `src`'s non-empty value; nested maps
/// merge; with `overwrite`, every non-empty `src` value wins.
fn merge_into(dst: &mut Map, src: &Map, overwrite: bool) {
    for (k, v) in src {
        match (dst.get_mut(k), v) {
            (Some(Value::Map(d)), Value::Map(s)) => {
                let mut inner = (**d).clone();
                merge_into(&mut inner, s, overwrite);
                *d = Arc::new(inner);
            }
            (Some(existing), v) => {
                let empty = super::sprig_defaults::is_empty;
                if !empty(v) && (overwrite || empty(existing)) {
                    *existing = v.clone();
                }
            }
            (None, v) => {
                dst.insert(k.clone(), v.clone());
            }
        }
    }
}

pub fn register(m: &mut Funcs) {
    m.add("dict", |a| {
        let mut d = Map::new();
        for pair in a.chunks(2) {
            let key: Arc<str> = strval(&pair[0]).into();
            d.insert(key, pair.get(1).cloned().unwrap_or_else(|| string("")));
        }
        Ok(map_value(d))
    });
    m.add("get", |a| {
        let a = Args::exact("get", a, 2)?;
        Ok(a.map(0)?
            .get(a.str(1)?)
            .cloned()
            .unwrap_or_else(|| string("")))
    });
    m.add("set", |a| {
        let a = Args::exact("set", a, 3)?;
        let mut d = a.map(0)?.clone();
        d.insert(a.str(1)?.into(), a.get(2).clone());
        Ok(map_value(d))
    });
    m.add("unset", |a| {
        let a = Args::exact("unset", a, 2)?;
        let mut d = a.map(0)?.clone();
        d.remove(a.str(1)?);
        Ok(map_value(d))
    });
    m.add("hasKey", |a| {
        let a = Args::exact("hasKey", a, 2)?;
        Ok(Value::Bool(a.map(0)?.contains_key(a.str(1)?)))
    });
    m.add("pluck", |a| {
        let a = Args::at_least("pluck", a, 1)?;
        let key = a.str(0)?;
        Ok(list(
            maps("pluck", &a.args[1..])?
                .into_iter()
                .filter_map(|d| d.get(key).cloned())
                .collect(),
        ))
    });
    m.add("keys", |a| {
        let mut k: Vec<Value> = Vec::new();
        for d in maps("keys", a)? {
            k.extend(d.keys().map(|k| Value::String(k.clone())));
        }
        Ok(list(k))
    });
    m.add("values", |a| {
        let a = Args::exact("values", a, 1)?;
        Ok(list(a.map(0)?.values().cloned().collect()))
    });
    m.add("pick", |a| {
        let a = Args::at_least("pick", a, 1)?;
        let d = a.map(0)?;
        let keys = a.strs_from(1)?;
        Ok(map_value(
            d.iter()
                .filter(|(k, _)| keys.contains(&k.as_ref()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ))
    });
    m.add("omit", |a| {
        let a = Args::at_least("omit", a, 1)?;
        let d = a.map(0)?;
        let keys = a.strs_from(1)?;
        Ok(map_value(
            d.iter()
                .filter(|(k, _)| !keys.contains(&k.as_ref()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ))
    });
    for (name, overwrite) in [
        ("merge", false),
        ("mustMerge", false),
        ("mergeOverwrite", true),
        ("mustMergeOverwrite", true),
    ] {
        m.add(name, move |a| {
            let a = Args::at_least(name, a, 1)?;
            let all = maps(name, a.args)?;
            let mut dst = all[0].clone();
            for src in &all[1..] {
                merge_into(&mut dst, src, overwrite);
            }
            Ok(map_value(dst))
        });
    }
    m.add("dig", |a| {
        let a = Args::at_least("dig", a, 3)?;
        let n = a.len();
        let keys = (0..n - 2)
            .map(|i| a.str(i))
            .collect::<Result<Vec<_>, _>>()?;
        let default = a.get(n - 2);
        let mut cur = a.map(n - 1)?;
        for (i, k) in keys.iter().enumerate() {
            match cur.get(*k) {
                Some(Value::Map(next)) if i + 1 < keys.len() => cur = next,
                Some(v) if i + 1 == keys.len() => return Ok(v.clone()),
                _ => return Ok(default.clone()),
            }
        }
        Ok(default.clone())
    });
    for name in ["deepCopy", "mustDeepCopy"] {
        m.add(name, move |a| {
            let a = Args::exact(name, a, 1)?;
            match a.get(0) {
                Value::Nil if name == "mustDeepCopy" => {
                    Err(call_error(name, "copy: cannot copy nil"))
                }
                v => Ok(v.clone()),
            }
        });
    }
}
