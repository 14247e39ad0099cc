//! Sprig's defaults and flow control (`defaults.go`): `default`, `empty`, `coalesce`, `all`,
//! `any`, `compact`, `ternary`, `fail`, and Helm's `required`.

use gotmpl::Value;

use super::Funcs;
use crate::render::template::args::{call_error, list, Args};

/// Sprig's `empty`: nil, zero numbers, false, and empty strings, lists and maps.
pub fn is_empty(v: &Value) -> bool {
    match v {
        Value::Nil => true,
        Value::Bool(b) => !b,
        Value::Int(n) => *n == 0,
        Value::Uint(n) => *n == 0,
        Value::Float(f) => *f == 0.0,
        Value::String(s) => s.is_empty(),
        Value::List(l) => l.is_empty(),
        Value::Map(m) => m.is_empty(),
        Value::Function(_) => false,
    }
}

pub fn register(m: &mut Funcs) {
    m.add("default", |a| {
        let a = Args::at_least("default", a, 1)?;
        Ok(match a.args.get(1) {
            Some(given) if !is_empty(given) => given.clone(),
            _ => a.get(0).clone(),
        })
    });
    m.add("empty", |a| {
        Ok(Value::Bool(is_empty(Args::exact("empty", a, 1)?.get(0))))
    });
    m.add("coalesce", |a| {
        Ok(a.iter()
            .find(|v| !is_empty(v))
            .cloned()
            .unwrap_or(Value::Nil))
    });
    m.add("all", |a| Ok(Value::Bool(a.iter().all(|v| !is_empty(v)))));
    m.add("any", |a| Ok(Value::Bool(a.iter().any(|v| !is_empty(v)))));
    for name in ["compact", "mustCompact"] {
        m.add(name, move |a| {
            let a = Args::exact(name, a, 1)?;
            match a.get(0) {
                Value::List(items) => Ok(list(
                    items.iter().filter(|v| !is_empty(v)).cloned().collect(),
                )),
                other => Err(call_error(
                    name,
                    format!(
                        "Cannot compact on type {}",
                        crate::render::template::gofmt::type_name(other)
                    ),
                )),
            }
        });
    }
    m.add("ternary", |a| {
        let a = Args::exact("ternary", a, 3)?;
        Ok(if a.bool(2)? {
            a.get(0).clone()
        } else {
            a.get(1).clone()
        })
    });
    m.add("fail", |a| {
        let msg = Args::exact("fail", a, 1)?.str(0)?;
        Err(call_error("fail", msg))
    });
    m.add("required", |a| {
        let a = Args::exact("required", a, 2)?;
        let msg = a.str(0)?;
        match a.get(1) {
            Value::Nil => Err(call_error("required", msg)),
            Value::String(s) if s.is_empty() => Err(call_error("required", msg)),
            v => Ok(v.clone()),
        }
    });
}
