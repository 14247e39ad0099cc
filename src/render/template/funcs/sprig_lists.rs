//! Sprig's list functions (`list.go`): `list`, `append`, `prepend`, `first`, `rest`, `last`,
//! `initial`, `reverse`, `uniq`, `without`, `has`, `slice`, `concat`, `chunk`, `until`,
//! `untilStep`. Lists are values: `append` returns a new list, as in Sprig.

use gotmpl::{TemplateError, Value};

use super::Funcs;
use crate::render::template::args::{call_error, list, Args};
use crate::render::template::gofmt::type_name;

fn as_list<'a>(name: &str, v: &'a Value, what: &str) -> Result<&'a [Value], TemplateError> {
    match v {
        Value::List(l) => Ok(l),
        other => Err(call_error(
            name,
            format!("Cannot {what} on type {}", type_name(other)),
        )),
    }
}

/// Go's `reflect.DeepEqual` for template values.
pub fn deep_equal(a: &Value, b: &Value) -> bool {
    a == b
}

pub fn until_step(start: i64, stop: i64, step: i64) -> Vec<Value> {
    let mut v = Vec::new();
    const CAP: usize = 1 << 20;
    if stop < start {
        if step >= 0 {
            return v;
        }
        let mut i = start;
        while i > stop && v.len() < CAP {
            v.push(Value::Int(i));
            i += step;
        }
        return v;
    }
    if step <= 0 {
        return v;
    }
    let mut i = start;
    while i < stop && v.len() < CAP {
        v.push(Value::Int(i));
        i += step;
    }
    v
}

pub fn register(m: &mut Funcs) {
    m.add("list", |a| Ok(list(a.to_vec())));
    m.add("tuple", |a| Ok(list(a.to_vec())));
    for (name, what, front) in [
        ("append", "push", false),
        ("push", "push", false),
        ("mustAppend", "push", false),
        ("mustPush", "push", false),
        ("prepend", "prepend", true),
        ("mustPrepend", "prepend", true),
    ] {
        m.add(name, move |a| {
            let a = Args::exact(name, a, 2)?;
            let mut items = as_list(name, a.get(0), what)?.to_vec();
            if front {
                items.insert(0, a.get(1).clone());
            } else {
                items.push(a.get(1).clone());
            }
            Ok(list(items))
        });
    }
    type Pick = fn(&[Value]) -> Value;
    let picks: [(&str, &str, Pick); 5] = [
        ("first", "find first", |l| {
            l.first().cloned().unwrap_or(Value::Nil)
        }),
        ("last", "find last", |l| {
            l.last().cloned().unwrap_or(Value::Nil)
        }),
        ("rest", "find rest", |l| {
            if l.is_empty() {
                Value::Nil
            } else {
                list(l[1..].to_vec())
            }
        }),
        ("initial", "find initial", |l| {
            if l.is_empty() {
                Value::Nil
            } else {
                list(l[..l.len() - 1].to_vec())
            }
        }),
        ("reverse", "find reverse", |l| {
            list(l.iter().rev().cloned().collect())
        }),
    ];
    for (name, what, f) in picks {
        m.add(name, move |a| {
            let a = Args::exact(name, a, 1)?;
            Ok(f(as_list(name, a.get(0), what)?))
        });
        let must: &'static str = match name {
            "first" => "mustFirst",
            "last" => "mustLast",
            "rest" => "mustRest",
            "initial" => "mustInitial",
            _ => "mustReverse",
        };
        m.add(must, move |a| {
            let a = Args::exact(must, a, 1)?;
            Ok(f(as_list(must, a.get(0), what)?))
        });
    }
    for name in ["uniq", "mustUniq"] {
        m.add(name, move |a| {
            let a = Args::exact(name, a, 1)?;
            let mut out: Vec<Value> = Vec::new();
            for v in as_list(name, a.get(0), "find uniq")? {
                if !out.iter().any(|o| deep_equal(o, v)) {
                    out.push(v.clone());
                }
            }
            Ok(list(out))
        });
    }
    for name in ["without", "mustWithout"] {
        m.add(name, move |a| {
            let a = Args::at_least(name, a, 1)?;
            let omit = &a.args[1..];
            Ok(list(
                as_list(name, a.get(0), "find without")?
                    .iter()
                    .filter(|v| !omit.iter().any(|o| deep_equal(o, v)))
                    .cloned()
                    .collect(),
            ))
        });
    }
    for name in ["has", "mustHas"] {
        m.add(name, move |a| {
            let a = Args::exact(name, a, 2)?;
            match a.get(1) {
                Value::Nil => Ok(Value::Bool(false)),
                haystack => Ok(Value::Bool(
                    as_list(name, haystack, "find has")?
                        .iter()
                        .any(|v| deep_equal(v, a.get(0))),
                )),
            }
        });
    }
    for name in ["slice", "mustSlice"] {
        m.add(name, move |a| {
            let a = Args::at_least(name, a, 1)?;
            let l = match a.get(0) {
                Value::List(l) => l,
                other => {
                    return Err(call_error(
                        name,
                        format!(
                            "list should be type of slice or array but {}",
                            type_name(other)
                        ),
                    ))
                }
            };
            let idx = |i: usize| -> Result<usize, TemplateError> { Ok(a.int(i)?.max(0) as usize) };
            let (start, end) = match a.len() {
                1 => (0, l.len()),
                2 => (idx(1)?, l.len()),
                _ => (idx(1)?, idx(2)?),
            };
            if start > end || end > l.len() {
                return Err(call_error(
                    name,
                    format!("slice bounds out of range [{start}:{end}]"),
                ));
            }
            Ok(list(l[start..end].to_vec()))
        });
    }
    m.add("concat", |a| {
        let mut out = Vec::new();
        for v in a {
            match v {
                Value::List(l) => out.extend(l.iter().cloned()),
                Value::Nil => {}
                other => {
                    return Err(call_error(
                        "concat",
                        format!("Cannot concat type {} as list", type_name(other)),
                    ))
                }
            }
        }
        Ok(list(out))
    });
    for name in ["chunk", "mustChunk"] {
        m.add(name, move |a| {
            let a = Args::exact(name, a, 2)?;
            let size = a.int(0)?;
            if size <= 0 {
                return Err(call_error(name, "chunk size must be positive"));
            }
            let l = as_list(name, a.get(1), "chunk")?;
            Ok(list(
                l.chunks(size as usize).map(|c| list(c.to_vec())).collect(),
            ))
        });
    }
    m.add("until", |a| {
        let n = Args::exact("until", a, 1)?.int(0)?;
        Ok(list(until_step(0, n, if n < 0 { -1 } else { 1 })))
    });
    m.add("untilStep", |a| {
        let a = Args::exact("untilStep", a, 3)?;
        Ok(list(until_step(a.int(0)?, a.int(1)?, a.int(2)?)))
    });
}
