//! Sprig's string functions (`strings.go` and the Go `strings` wrappers in `functions.go`):
//! `trim`, `upper`, `lower`, `title`, `quote`, `squote`, `indent`, `nindent`, `replace`,
//! `trunc`, `contains`, `hasPrefix`, `join`, `split`, `splitList`, `toString`, ... Sprig puts
//! the string operated on last, so it can be piped: `"x" | trimPrefix "y"`.

use gotmpl::Value;

use super::kots_static::{go_split, indent};
use super::Funcs;
use crate::render::template::args::{list, string, Args};
use crate::render::template::gofmt::{format_value, quote};

/// Sprig's `strval`: a string as is, anything else as Go's `%v`.
pub fn strval(v: &Value) -> String {
    match v {
        Value::String(s) => s.to_string(),
        other => format_value(other),
    }
}

/// Sprig's `strslice`: a list's non-nil elements as strings; nil is empty; a scalar is one.
pub fn strslice(v: &Value) -> Vec<String> {
    match v {
        Value::List(items) => items
            .iter()
            .filter(|i| !matches!(i, Value::Nil))
            .map(strval)
            .collect(),
        Value::Nil => Vec::new(),
        other => vec![strval(other)],
    }
}

fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_sep = true;
    for c in s.chars() {
        if prev_sep {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev_sep = if c.is_ascii() {
            !(c.is_ascii_alphanumeric() || c == '_')
        } else {
            c.is_whitespace()
        };
    }
    out
}

fn first_upper_or_lower(s: &str, upper: bool) -> String {
    let mut chars = s.chars();
    match chars.next() {
        None => String::new(),
        Some(c) if upper => c.to_uppercase().chain(chars).collect(),
        Some(c) => c.to_lowercase().chain(chars).collect(),
    }
}

/// Words for the case conversions: split at non-alphanumerics and at lower->upper changes.
fn words(s: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut prev: Option<char> = None;
    for c in s.chars() {
        if !c.is_alphanumeric() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            prev = None;
            continue;
        }
        if let Some(p) = prev {
            if c.is_uppercase() && (p.is_lowercase() || p.is_ascii_digit()) && !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
        }
        cur.push(c);
        prev = Some(c);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn wrap(s: &str, width: usize) -> String {
    let width = width.max(1);
    let mut lines = Vec::new();
    for para in s.split('\n') {
        let mut line = String::new();
        for word in para.split(' ').filter(|w| !w.is_empty()) {
            if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        lines.push(line);
    }
    lines.join("\n")
}

fn split_map(parts: Vec<String>) -> Value {
    Value::Map(std::sync::Arc::new(
        parts
            .into_iter()
            .enumerate()
            .map(|(i, p)| (format!("_{i}").into(), string(p)))
            .collect(),
    ))
}

pub fn register(m: &mut Funcs) {
    // One string in, one string out.
    type Unary = fn(&str) -> String;
    let unary: [(&'static str, Unary); 10] = [
        ("trim", |s| s.trim().to_string()),
        ("upper", |s| s.to_uppercase()),
        ("lower", |s| s.to_lowercase()),
        ("title", title),
        ("untitle", |s| first_upper_or_lower(s, false)),
        ("nospace", |s| {
            s.chars().filter(|c| !c.is_whitespace()).collect()
        }),
        ("initials", |s| {
            s.split_whitespace()
                .filter_map(|w| w.chars().next())
                .collect()
        }),
        ("swapcase", |s| {
            s.chars()
                .map(|c| {
                    if c.is_uppercase() {
                        c.to_lowercase().collect::<String>()
                    } else {
                        c.to_uppercase().collect()
                    }
                })
                .collect()
        }),
        ("snakecase", |s| {
            words(s)
                .iter()
                .map(|w| w.to_lowercase())
                .collect::<Vec<_>>()
                .join("_")
        }),
        ("kebabcase", |s| {
            words(s)
                .iter()
                .map(|w| w.to_lowercase())
                .collect::<Vec<_>>()
                .join("-")
        }),
    ];
    for (name, f) in unary {
        m.add(name, move |a| {
            Ok(string(f(Args::exact(name, a, 1)?.str(0)?)))
        });
    }
    m.add("camelcase", |a| {
        let s = Args::exact("camelcase", a, 1)?.str(0)?;
        Ok(string(
            s.split(['_', '-', ' '])
                .map(|w| first_upper_or_lower(w, true))
                .collect::<String>(),
        ))
    });

    // (a, b string): the operand is the last argument.
    type Binary = fn(&str, &str) -> Value;
    let binary: [(&'static str, Binary); 7] = [
        ("trimAll", |cut, s| {
            string(s.trim_matches(|c| cut.contains(c)))
        }),
        ("trimall", |cut, s| {
            string(s.trim_matches(|c| cut.contains(c)))
        }),
        ("trimPrefix", |p, s| string(s.strip_prefix(p).unwrap_or(s))),
        ("trimSuffix", |p, s| string(s.strip_suffix(p).unwrap_or(s))),
        ("contains", |sub, s| Value::Bool(s.contains(sub))),
        ("hasPrefix", |p, s| Value::Bool(s.starts_with(p))),
        ("hasSuffix", |p, s| Value::Bool(s.ends_with(p))),
    ];
    for (name, f) in binary {
        m.add(name, move |a| {
            let a = Args::exact(name, a, 2)?;
            Ok(f(a.str(0)?, a.str(1)?))
        });
    }
    m.add("splitList", |a| {
        let a = Args::exact("splitList", a, 2)?;
        Ok(list(
            go_split(a.str(1)?, a.str(0)?)
                .into_iter()
                .map(string)
                .collect(),
        ))
    });
    m.add("split", |a| {
        let a = Args::exact("split", a, 2)?;
        Ok(split_map(go_split(a.str(1)?, a.str(0)?)))
    });
    m.add("splitn", |a| {
        let a = Args::exact("splitn", a, 3)?;
        let (sep, n, s) = (a.str(0)?, a.int(1)?, a.str(2)?);
        let parts: Vec<String> = if n == 0 {
            Vec::new()
        } else if n < 0 {
            go_split(s, sep)
        } else if sep.is_empty() {
            let chars: Vec<char> = s.chars().collect();
            let n = (n as usize).min(chars.len().max(1));
            let mut p: Vec<String> = chars[..n.saturating_sub(1).min(chars.len())]
                .iter()
                .map(|c| c.to_string())
                .collect();
            p.push(
                chars[n.saturating_sub(1).min(chars.len())..]
                    .iter()
                    .collect(),
            );
            p
        } else {
            s.splitn(n as usize, sep).map(str::to_string).collect()
        };
        Ok(split_map(parts))
    });
    m.add("replace", |a| {
        let a = Args::exact("replace", a, 3)?;
        let (old, new, s) = (a.str(0)?, a.str(1)?, a.str(2)?);
        Ok(string(if old.is_empty() {
            // Go: an empty old string matches at every rune boundary.
            let mut out = String::from(new);
            for c in s.chars() {
                out.push(c);
                out.push_str(new);
            }
            out
        } else {
            s.replace(old, new)
        }))
    });
    m.add("repeat", |a| {
        let a = Args::exact("repeat", a, 2)?;
        let n = a.int(0)?;
        if n < 0 {
            return Err(crate::render::template::args::call_error(
                "repeat",
                "strings: negative Repeat count",
            ));
        }
        Ok(string(a.str(1)?.repeat((n as usize).min(1 << 20))))
    });
    m.add("trunc", |a| {
        let a = Args::exact("trunc", a, 2)?;
        let (c, s) = (a.int(0)?, a.str(1)?);
        let len = s.len() as i64;
        let cut = |i: i64| {
            // Byte offsets as Go; never split a character.
            let mut i = i.clamp(0, len) as usize;
            while !s.is_char_boundary(i) {
                i += 1;
            }
            i
        };
        Ok(string(if c < 0 && len + c > 0 {
            &s[cut(len + c)..]
        } else if c >= 0 && len > c {
            &s[..cut(c)]
        } else {
            s
        }))
    });
    m.add("substr", |a| {
        let a = Args::exact("substr", a, 3)?;
        let (start, end, s) = (a.int(0)?, a.int(1)?, a.str(2)?);
        let len = s.len() as i64;
        let clamp = |i: i64| {
            let mut i = i.clamp(0, len) as usize;
            while !s.is_char_boundary(i) {
                i += 1;
            }
            i
        };
        Ok(string(if start < 0 {
            &s[..clamp(end)]
        } else if end < 0 || end > len {
            &s[clamp(start)..]
        } else if start > end {
            ""
        } else {
            &s[clamp(start)..clamp(end)]
        }))
    });
    m.add("abbrev", |a| {
        let a = Args::exact("abbrev", a, 2)?;
        let (w, s) = (a.int(0)?, a.str(1)?);
        let n = s.chars().count() as i64;
        Ok(string(if w < 4 || n <= w {
            s.to_string()
        } else {
            format!(
                "{}...",
                s.chars().take((w - 3) as usize).collect::<String>()
            )
        }))
    });
    m.add("wrap", |a| {
        let a = Args::exact("wrap", a, 2)?;
        Ok(string(wrap(a.str(1)?, a.int(0)?.max(1) as usize)))
    });
    m.add("wrapWith", |a| {
        let a = Args::exact("wrapWith", a, 3)?;
        Ok(string(
            wrap(a.str(2)?, a.int(0)?.max(1) as usize).replace('\n', a.str(1)?),
        ))
    });
    m.add("plural", |a| {
        let a = Args::exact("plural", a, 3)?;
        Ok(string(if a.int(2)? == 1 { a.str(0)? } else { a.str(1)? }))
    });
    m.add("indent", |a| {
        let a = Args::exact("indent", a, 2)?;
        Ok(string(indent(
            a.int(0)?.clamp(0, 1 << 16) as usize,
            a.str(1)?,
        )))
    });
    m.add("nindent", |a| {
        let a = Args::exact("nindent", a, 2)?;
        Ok(string(format!(
            "\n{}",
            indent(a.int(0)?.clamp(0, 1 << 16) as usize, a.str(1)?)
        )))
    });
    m.add("quote", |a| {
        Ok(string(
            a.iter()
                .filter(|v| !matches!(v, Value::Nil))
                .map(|v| quote(&strval(v)))
                .collect::<Vec<_>>()
                .join(" "),
        ))
    });
    m.add("squote", |a| {
        Ok(string(
            a.iter()
                .filter(|v| !matches!(v, Value::Nil))
                .map(|v| format!("'{}'", format_value(v)))
                .collect::<Vec<_>>()
                .join(" "),
        ))
    });
    m.add("cat", |a| {
        Ok(string(
            a.iter()
                .filter(|v| !matches!(v, Value::Nil))
                .map(format_value)
                .collect::<Vec<_>>()
                .join(" "),
        ))
    });
    m.add("toString", |a| {
        Ok(string(strval(Args::exact("toString", a, 1)?.get(0))))
    });
    m.add("toStrings", |a| {
        let v = Args::exact("toStrings", a, 1)?.get(0);
        Ok(list(strslice(v).into_iter().map(string).collect()))
    });
    m.add("join", |a| {
        let a = Args::exact("join", a, 2)?;
        Ok(string(strslice(a.get(1)).join(a.str(0)?)))
    });
    m.add("sortAlpha", |a| {
        let v = Args::exact("sortAlpha", a, 1)?.get(0);
        let mut items = match v {
            Value::List(_) => strslice(v),
            other => vec![strval(other)],
        };
        items.sort();
        Ok(list(items.into_iter().map(string).collect()))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn title_like_go() {
        assert_eq!(title("hello world-foo_bar"), "Hello World-Foo_bar");
    }
}
