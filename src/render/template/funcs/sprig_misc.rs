//! The rest of Sprig that manifests use: paths (`base`, `dir`, `clean`, `ext`, `isAbs`, Go's
//! `path` package), regular expressions (`regexMatch`, `regexFind`, `regexReplaceAll`, ...;
//! Go's RE2 syntax, which the `regex` crate shares), types (`typeOf`, `kindOf`, `kindIs`,
//! `deepEqual`), the environment (`env`, `expandenv`) and time (`now`, `date`, `unixEpoch`).

use gotmpl::{TemplateError, Value};

use super::sprig_lists::deep_equal;
use super::Funcs;
use crate::render::template::args::{call_error, list, string, Args};
use crate::render::template::gotime;

/// Go's `path.Clean`.
pub fn clean(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            s => parts.push(s),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

fn base(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let t = p.trim_end_matches('/');
    if t.is_empty() {
        return "/".into();
    }
    t.rsplit('/').next().unwrap_or(t).to_string()
}

fn dir(p: &str) -> String {
    let d = match p.rfind('/') {
        Some(i) => &p[..=i],
        None => "",
    };
    clean(d)
}

fn ext(p: &str) -> String {
    for (i, c) in p.char_indices().rev() {
        match c {
            '/' => return String::new(),
            '.' => return p[i..].to_string(),
            _ => {}
        }
    }
    String::new()
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Nil => "invalid",
        Value::Bool(_) => "bool",
        Value::Int(_) => "int",
        Value::Uint(_) => "uint",
        Value::Float(_) => "float64",
        Value::String(_) => "string",
        Value::List(_) => "slice",
        Value::Map(_) => "map",
        Value::Function(_) => "func",
    }
}

fn regex(name: &str, re: &str) -> Result<regex::Regex, TemplateError> {
    regex::RegexBuilder::new(re)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| call_error(name, e))
}

/// Go's `os.ExpandEnv`: `$VAR` and `${VAR}`.
fn expand_env(s: &str) -> String {
    let mut out = String::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' && i + 1 < b.len() {
            if b[i + 1] == b'{' {
                if let Some(end) = s[i + 2..].find('}') {
                    out.push_str(&std::env::var(&s[i + 2..i + 2 + end]).unwrap_or_default());
                    i += end + 3;
                    continue;
                }
            }
            let n = s[i + 1..]
                .bytes()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == b'_')
                .count();
            if n > 0 {
                out.push_str(&std::env::var(&s[i + 1..i + 1 + n]).unwrap_or_default());
                i += n + 1;
                continue;
            }
        }
        let c = s[i..].chars().next().unwrap_or(' ');
        out.push(c);
        i += c.len_utf8();
    }
    out
}

pub fn register(m: &mut Funcs) {
    type PathFn = fn(&str) -> Value;
    let paths: [(&'static str, PathFn); 10] = [
        ("base", |p| string(base(p))),
        ("dir", |p| string(dir(p))),
        ("clean", |p| string(clean(p))),
        ("ext", |p| string(ext(p))),
        ("isAbs", |p| Value::Bool(p.starts_with('/'))),
        ("osBase", |p| string(base(p))),
        ("osDir", |p| string(dir(p))),
        ("osClean", |p| string(clean(p))),
        ("osExt", |p| string(ext(p))),
        ("osIsAbs", |p| Value::Bool(p.starts_with('/'))),
    ];
    for (name, f) in paths {
        m.add(name, move |a| Ok(f(Args::exact(name, a, 1)?.str(0)?)));
    }

    m.add("env", |a| {
        let k = Args::exact("env", a, 1)?.str(0)?;
        Ok(string(std::env::var(k).unwrap_or_default()))
    });
    m.add("expandenv", |a| {
        Ok(string(expand_env(Args::exact("expandenv", a, 1)?.str(0)?)))
    });

    m.add("typeOf", |a| {
        let v = Args::exact("typeOf", a, 1)?.get(0);
        Ok(string(crate::render::template::gofmt::type_name(v)))
    });
    m.add("typeIs", |a| {
        let a = Args::exact("typeIs", a, 2)?;
        Ok(Value::Bool(
            a.str(0)? == crate::render::template::gofmt::type_name(a.get(1)),
        ))
    });
    m.add("typeIsLike", |a| {
        let a = Args::exact("typeIsLike", a, 2)?;
        let t = crate::render::template::gofmt::type_name(a.get(1));
        let want = a.str(0)?;
        Ok(Value::Bool(want == t || want == format!("*{t}")))
    });
    m.add("kindOf", |a| {
        Ok(string(kind_of(Args::exact("kindOf", a, 1)?.get(0))))
    });
    m.add("kindIs", |a| {
        let a = Args::exact("kindIs", a, 2)?;
        Ok(Value::Bool(a.str(0)? == kind_of(a.get(1))))
    });
    m.add("deepEqual", |a| {
        let a = Args::exact("deepEqual", a, 2)?;
        Ok(Value::Bool(deep_equal(a.get(0), a.get(1))))
    });

    for (name, must) in [("regexMatch", false), ("mustRegexMatch", true)] {
        m.add(name, move |a| {
            let a = Args::exact(name, a, 2)?;
            match regex(name, a.str(0)?) {
                Ok(r) => Ok(Value::Bool(r.is_match(a.str(1)?))),
                Err(e) if must => Err(e),
                Err(_) => Ok(Value::Bool(false)),
            }
        });
    }
    for (name, must) in [("regexFind", false), ("mustRegexFind", true)] {
        m.add(name, move |a| {
            let a = Args::exact(name, a, 2)?;
            match regex(name, a.str(0)?) {
                Ok(r) => Ok(string(r.find(a.str(1)?).map(|x| x.as_str()).unwrap_or(""))),
                Err(e) if must => Err(e),
                Err(_) => Ok(string("")),
            }
        });
    }
    for (name, must) in [("regexFindAll", false), ("mustRegexFindAll", true)] {
        m.add(name, move |a| {
            let a = Args::exact(name, a, 3)?;
            let n = a.int(2)?;
            match regex(name, a.str(0)?) {
                Ok(r) => {
                    let limit = if n < 0 { usize::MAX } else { n as usize };
                    Ok(list(
                        r.find_iter(a.str(1)?)
                            .take(limit)
                            .map(|x| string(x.as_str()))
                            .collect(),
                    ))
                }
                Err(e) if must => Err(e),
                Err(_) => Ok(list(Vec::new())),
            }
        });
    }
    for (name, literal, must) in [
        ("regexReplaceAll", false, false),
        ("mustRegexReplaceAll", false, true),
        ("regexReplaceAllLiteral", true, false),
        ("mustRegexReplaceAllLiteral", true, true),
    ] {
        m.add(name, move |a| {
            let a = Args::exact(name, a, 3)?;
            let (re, s, repl) = (a.str(0)?, a.str(1)?, a.str(2)?);
            match regex(name, re) {
                Ok(r) if literal => Ok(string(r.replace_all(s, regex::NoExpand(repl)))),
                Ok(r) => Ok(string(r.replace_all(s, repl))),
                Err(e) if must => Err(e),
                Err(_) => Ok(string("")),
            }
        });
    }
    for (name, must) in [("regexSplit", false), ("mustRegexSplit", true)] {
        m.add(name, move |a| {
            let a = Args::exact(name, a, 3)?;
            let n = a.int(2)?;
            match regex(name, a.str(0)?) {
                Ok(r) => {
                    let s = a.str(1)?;
                    let parts: Vec<Value> = if n == 0 {
                        Vec::new()
                    } else if n < 0 {
                        r.split(s).map(string).collect()
                    } else {
                        r.splitn(s, n as usize).map(string).collect()
                    };
                    Ok(list(parts))
                }
                Err(e) if must => Err(e),
                Err(_) => Ok(list(Vec::new())),
            }
        });
    }
    m.add("regexQuoteMeta", |a| {
        Ok(string(regex::escape(
            Args::exact("regexQuoteMeta", a, 1)?.str(0)?,
        )))
    });

    // Time: Sprig's `now` is a time.Time; here it is its RFC 3339 text, which `date` reads.
    m.add("now", |a| {
        Args::exact("now", a, 0)?;
        Ok(string(gotime::format_now(gotime::RFC3339)))
    });
    m.add("unixEpoch", |a| {
        Args::exact("unixEpoch", a, 1)?;
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Ok(string(d.as_secs().to_string()))
    });
    m.add("date", |a| {
        let a = Args::exact("date", a, 2)?;
        let layout = a.str(0)?;
        let secs = match a.get(1) {
            Value::Int(n) => *n,
            Value::String(s) => parse_rfc3339(s)
                .ok_or_else(|| call_error("date", format!("cannot read {s:?} as a time")))?,
            _ => 0,
        };
        Ok(string(gotime::format(&gotime::civil(secs, 0), layout)))
    });
}

/// Seconds since the epoch of an RFC 3339 UTC time (`2006-01-02T15:04:05Z`).
fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || !s.ends_with('Z') {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (h, mi, sec) = (n(11..13)?, n(14..16)?, n(17..19)?);
    // days-from-civil
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86400 + h * 3600 + mi * 60 + sec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_like_go() {
        assert_eq!(clean("a//b/../c/."), "a/c");
        assert_eq!(clean("/../a"), "/a");
        assert_eq!(clean(""), ".");
        assert_eq!(base("/a/b.txt"), "b.txt");
        assert_eq!(base("/"), "/");
        assert_eq!(dir("/a/b.txt"), "/a");
        assert_eq!(dir("b"), ".");
        assert_eq!(ext("a/b.tar.gz"), ".gz");
        assert_eq!(parse_rfc3339("2009-11-10T23:04:05Z"), Some(1_257_894_245));
    }
}
