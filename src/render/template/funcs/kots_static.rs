//! KOTS's static context (`pkg/template/static_context.go`): string, number and encoding
//! helpers, `Namespace`, `YamlEscape`, `Now`, and the cluster probes, which answer as KOTS does
//! outside a cluster (`KubernetesVersion` is `0.0.0+unknown`, `IsKurl` false, ...).

use std::sync::Arc;

use base64::Engine as _;
use gotmpl::Value;

use super::{Env, Funcs};
use crate::render::template::args::{call_error, list, string, Args};
use crate::render::template::{gofmt, gotime, yamlfmt};

pub fn register(m: &mut Funcs, env: &Arc<Env>) {
    m.add("Now", |a| {
        Args::exact("Now", a, 0)?;
        Ok(string(gotime::format_now("")))
    });
    m.add("NowFmt", |a| {
        let a = Args::exact("NowFmt", a, 1)?;
        Ok(string(gotime::format_now(a.str(0)?)))
    });
    m.add("ToLower", |a| {
        Ok(string(Args::exact("ToLower", a, 1)?.str(0)?.to_lowercase()))
    });
    m.add("ToUpper", |a| {
        Ok(string(Args::exact("ToUpper", a, 1)?.str(0)?.to_uppercase()))
    });
    m.add("TrimSpace", |a| {
        Ok(string(Args::exact("TrimSpace", a, 1)?.str(0)?.trim()))
    });
    m.add("Trim", |a| {
        let a = Args::at_least("Trim", a, 1)?;
        let s = a.str(0)?;
        let rest = a.strs_from(1)?;
        Ok(string(match rest.first() {
            None => s.trim().to_string(),
            Some(cutset) => s.trim_matches(|c| cutset.contains(c)).to_string(),
        }))
    });
    m.add("UrlEncode", |a| {
        Ok(string(query_escape(
            Args::exact("UrlEncode", a, 1)?.str(0)?,
        )))
    });
    m.add("Base64Encode", |a| {
        let s = Args::exact("Base64Encode", a, 1)?.str(0)?;
        Ok(string(base64::engine::general_purpose::STANDARD.encode(s)))
    });
    m.add("Base64Decode", |a| {
        let s = Args::exact("Base64Decode", a, 1)?.str(0)?;
        Ok(string(std_b64_decode(s).unwrap_or_default()))
    });
    m.add("Split", |a| {
        let a = Args::exact("Split", a, 2)?;
        Ok(list(
            go_split(a.str(0)?, a.str(1)?)
                .into_iter()
                .map(string)
                .collect(),
        ))
    });
    m.add("Add", |a| arith("Add", a, Op::Add));
    m.add("Sub", |a| arith("Sub", a, Op::Sub));
    m.add("Mult", |a| arith("Mult", a, Op::Mul));
    m.add("Div", |a| arith("Div", a, Op::Div));
    m.add("ParseBool", |a| {
        let s = Args::exact("ParseBool", a, 1)?.str(0)?;
        Ok(Value::Bool(parse_bool(s).unwrap_or(false)))
    });
    m.add("ParseFloat", |a| {
        let s = Args::exact("ParseFloat", a, 1)?.str(0)?;
        Ok(Value::Float(s.parse::<f64>().unwrap_or(0.0)))
    });
    m.add("ParseInt", |a| {
        let a = Args::at_least("ParseInt", a, 1)?;
        let base = if a.len() > 1 { a.int(1)? as u32 } else { 10 };
        Ok(Value::Int(parse_int(a.str(0)?, base)))
    });
    m.add("ParseUint", |a| {
        let a = Args::at_least("ParseUint", a, 1)?;
        let base = if a.len() > 1 { a.int(1)? as u32 } else { 10 };
        Ok(Value::Uint(parse_uint(a.str(0)?, base)))
    });
    m.add("HumanSize", |a| {
        let a = Args::exact("HumanSize", a, 1)?;
        Ok(string(human_size(to_float(a.get(0)))))
    });
    let e = env.clone();
    m.add("Namespace", move |a| {
        Args::exact("Namespace", a, 0)?;
        Ok(string(if e.ctx.namespace.is_empty() {
            "default"
        } else {
            &e.ctx.namespace
        }))
    });
    m.add("KotsVersion", |a| {
        Args::exact("KotsVersion", a, 0)?;
        Ok(string(env!("CARGO_PKG_VERSION")))
    });
    m.add("IsKurl", |a| {
        Args::exact("IsKurl", a, 0)?;
        Ok(Value::Bool(false))
    });
    m.add("Distribution", |a| {
        Args::exact("Distribution", a, 0)?;
        Ok(string(""))
    });
    m.add("NodeCount", |a| {
        Args::exact("NodeCount", a, 0)?;
        Ok(Value::Int(0))
    });
    for (name, var) in [
        ("HTTPSProxy", "HTTPS_PROXY"),
        ("HTTPProxy", "HTTP_PROXY"),
        ("NoProxy", "NO_PROXY"),
        ("PrivateCACert", "SSL_CERT_CONFIGMAP"),
    ] {
        m.add(name, move |a| {
            Args::exact(name, a, 0)?;
            Ok(string(std::env::var(var).unwrap_or_default()))
        });
    }
    m.add("KubernetesVersion", |a| {
        Args::exact("KubernetesVersion", a, 0)?;
        Ok(string("0.0.0+unknown"))
    });
    for name in ["KubernetesMajorVersion", "KubernetesMinorVersion"] {
        m.add(name, move |a| {
            Args::exact(name, a, 0)?;
            Ok(string(""))
        });
    }
    m.add("Lookup", |a| {
        Args::exact("Lookup", a, 4)?;
        Ok(Value::Map(Default::default()))
    });
    m.add("YamlEscape", |a| {
        let s = Args::exact("YamlEscape", a, 1)?.str(0)?;
        Ok(string(indent(20, &yamlfmt::marshal_string(s))))
    });
}

/// Sprig's (and KOTS's) `indent`: every line prefixed, including an empty last one.
pub fn indent(spaces: usize, v: &str) -> String {
    let pad = " ".repeat(spaces);
    format!("{pad}{}", v.replace('\n', &format!("\n{pad}")))
}

/// Go's `strings.Split` (an empty separator splits into characters).
pub fn go_split(s: &str, sep: &str) -> Vec<String> {
    if sep.is_empty() {
        return s.chars().map(|c| c.to_string()).collect();
    }
    s.split(sep).map(str::to_string).collect()
}

/// Go's `base64.StdEncoding.DecodeString`, which skips `\r` and `\n`.
pub fn std_b64_decode(s: &str) -> Option<String> {
    let clean: String = s.chars().filter(|c| *c != '\r' && *c != '\n').collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(clean)
        .ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// Go's `url.QueryEscape`.
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Go's `strconv.ParseBool`.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Digits and base of a Go integer literal for `strconv.ParseInt(s, base, 64)`: base 0 reads
/// the `0x`/`0o`/`0b`/`0` prefix and allows `_` separators.
fn int_digits(s: &str, base: u32) -> Option<(String, u32)> {
    if base == 0 {
        let lower = s.to_ascii_lowercase();
        let (digits, base) = if let Some(r) = lower.strip_prefix("0x") {
            (r.to_string(), 16)
        } else if let Some(r) = lower.strip_prefix("0o") {
            (r.to_string(), 8)
        } else if let Some(r) = lower.strip_prefix("0b") {
            (r.to_string(), 2)
        } else if lower.len() > 1 && lower.starts_with('0') {
            (lower[1..].to_string(), 8)
        } else {
            (lower, 10)
        };
        if digits.starts_with('_') && base == 10 || digits.ends_with('_') || digits.contains("__") {
            return None;
        }
        return Some((digits.replace('_', ""), base));
    }
    if !(2..=36).contains(&base) {
        return None;
    }
    Some((s.to_string(), base))
}

/// `strconv.ParseInt(s, base, 64)`, returning what KOTS returns when it ignores the error: 0,
/// or the clamped value on overflow.
pub fn parse_int(s: &str, base: u32) -> i64 {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let Some((digits, base)) = int_digits(body, base) else {
        return 0;
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(base)) {
        return 0;
    }
    match u128::from_str_radix(&digits, base) {
        Ok(v) if neg => {
            if v > i64::MAX as u128 + 1 {
                i64::MIN
            } else {
                (-(v as i128)) as i64
            }
        }
        Ok(v) => i64::try_from(v).unwrap_or(i64::MAX),
        Err(_) if neg => i64::MIN,
        Err(_) => i64::MAX,
    }
}

/// `strconv.ParseUint(s, base, 64)` with KOTS's ignored error.
pub fn parse_uint(s: &str, base: u32) -> u64 {
    let Some((digits, base)) = int_digits(s, base) else {
        return 0;
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(base)) {
        return 0;
    }
    u128::from_str_radix(&digits, base)
        .ok()
        .map_or(u64::MAX, |v| u64::try_from(v).unwrap_or(u64::MAX))
}

/// KOTS's `reflectToFloat`: numbers convert, anything else is 0.
pub fn to_float(v: &Value) -> f64 {
    match v {
        Value::Float(f) => *f,
        Value::Int(n) => *n as f64,
        Value::Uint(n) => *n as f64,
        _ => 0.0,
    }
}

/// docker/go-units `HumanSize`: decimal units, 4 significant digits.
pub fn human_size(mut size: f64) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut i = 0;
    while size >= 1000.0 && i < UNITS.len() - 1 {
        size /= 1000.0;
        i += 1;
    }
    format!("{}{}", gofmt::format_float(size, 'g', Some(4)), UNITS[i])
}

enum Op {
    Add,
    Sub,
    Mul,
    Div,
}

/// KOTS's `Add`/`Sub`/`Mult`/`Div`: float if either operand is a float, else the kind of the
/// first operand; a non-number first operand gives 0.
fn arith(name: &'static str, a: &[Value], op: Op) -> super::FnResult {
    let a = Args::exact(name, a, 2)?;
    let (x, y) = (a.get(0), a.get(1));
    let is_float = |v: &Value| matches!(v, Value::Float(_));
    if is_float(x) || is_float(y) {
        let (x, y) = (to_float(x), to_float(y));
        return Ok(Value::Float(match op {
            Op::Add => x + y,
            Op::Sub => x - y,
            Op::Mul => x * y,
            Op::Div => x / y,
        }));
    }
    let to_i = |v: &Value| match v {
        Value::Int(n) => *n,
        Value::Uint(n) => *n as i64,
        _ => 0,
    };
    let div_zero = || call_error(name, "runtime error: integer divide by zero");
    match x {
        Value::Int(n) => {
            let (n, m) = (*n, to_i(y));
            Ok(Value::Int(match op {
                Op::Add => n.wrapping_add(m),
                Op::Sub => n.wrapping_sub(m),
                Op::Mul => n.wrapping_mul(m),
                Op::Div if m == 0 => return Err(div_zero()),
                Op::Div => n.wrapping_div(m),
            }))
        }
        Value::Uint(n) => {
            let (n, m) = (*n, to_i(y) as u64);
            Ok(Value::Uint(match op {
                Op::Add => n.wrapping_add(m),
                Op::Sub => n.wrapping_sub(m),
                Op::Mul => n.wrapping_mul(m),
                Op::Div if m == 0 => return Err(div_zero()),
                Op::Div => n / m,
            }))
        }
        _ => Ok(Value::Int(0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_int_like_strconv() {
        assert_eq!(parse_int("-15", 10), -15);
        assert_eq!(parse_int("ff", 16), 255);
        assert_eq!(parse_int("0x1f", 0), 31);
        assert_eq!(parse_int("010", 0), 8);
        assert_eq!(parse_int("1_000", 0), 1000);
        assert_eq!(parse_int("1_000", 10), 0);
        assert_eq!(parse_int("abc", 10), 0);
        assert_eq!(parse_int("99999999999999999999", 10), i64::MAX);
        assert_eq!(parse_uint("-1", 10), 0);
        assert_eq!(parse_uint("15", 10), 15);
    }

    #[test]
    fn human_size_like_go_units() {
        assert_eq!(human_size(387346587344.0), "387.3GB");
        assert_eq!(human_size(0.0), "0B");
        assert_eq!(human_size(999.0), "999B");
        assert_eq!(human_size(1000.0), "1kB");
        assert_eq!(human_size(1234567.0), "1.235MB");
    }

    #[test]
    fn query_escape_like_go() {
        assert_eq!(
            query_escape("?some url unsafe=%value"),
            "%3Fsome+url+unsafe%3D%25value"
        );
    }
}
