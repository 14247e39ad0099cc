//! Sprig's encodings and hashes (`strings.go`, `crypto.go`, `defaults.go`): `b64enc`,
//! `b64dec`, `b32enc`, `b32dec`, `sha256sum`, `sha512sum`, `adler32sum`, `toJson` (Go's
//! `encoding/json`: sorted keys, HTML-safe escapes), `toPrettyJson`, `toRawJson`, `fromJson`,
//! and Helm's `toYaml`.

use base64::Engine as _;
use gotmpl::Value;
use sha2::Digest as _;

use super::kots_static::std_b64_decode;
use super::Funcs;
use crate::render::template::args::{call_error, string, Args};
use crate::render::template::yamlfmt;

const B32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

fn b32enc(data: &[u8]) -> String {
    let mut out = String::new();
    for chunk in data.chunks(5) {
        let mut buf = [0u8; 5];
        buf[..chunk.len()].copy_from_slice(chunk);
        let n = u64::from_be_bytes([0, 0, 0, buf[0], buf[1], buf[2], buf[3], buf[4]]);
        let chars = match chunk.len() {
            1 => 2,
            2 => 4,
            3 => 5,
            4 => 7,
            _ => 8,
        };
        for i in 0..8 {
            if i < chars {
                out.push(B32[((n >> (35 - 5 * i)) & 31) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn b32dec(s: &str) -> Result<Vec<u8>, String> {
    let clean: Vec<u8> = s.bytes().filter(|b| *b != b'\r' && *b != b'\n').collect();
    if !clean.len().is_multiple_of(8) {
        return Err(format!("illegal base32 data at input byte {}", clean.len()));
    }
    let mut out = Vec::new();
    for (ci, chunk) in clean.chunks(8).enumerate() {
        let pad = chunk.iter().rev().take_while(|b| **b == b'=').count();
        let mut n: u64 = 0;
        for (i, b) in chunk.iter().enumerate() {
            let v = if i >= 8 - pad {
                0
            } else {
                B32.iter()
                    .position(|x| x == b)
                    .ok_or_else(|| format!("illegal base32 data at input byte {}", ci * 8 + i))?
                    as u64
            };
            n = (n << 5) | v;
        }
        let bytes = n.to_be_bytes();
        let keep = match pad {
            0 => 5,
            1 => 4,
            3 => 3,
            4 => 2,
            6 => 1,
            _ => return Err(format!("illegal base32 data at input byte {}", ci * 8)),
        };
        out.extend_from_slice(&bytes[3..3 + keep]);
    }
    Ok(out)
}

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for byte in data {
        a = (a + u32::from(*byte)) % 65521;
        b = (b + a) % 65521;
    }
    (b << 16) | a
}

fn json_string(out: &mut String, s: &str, html: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' if html => out.push_str(&format!("\\u{:04x}", c as u32)),
            '\u{2028}' | '\u{2029}' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn json_float(f: f64) -> Result<String, String> {
    if !f.is_finite() {
        return Err(format!("json: unsupported value: {f}"));
    }
    let a = f.abs();
    if a != 0.0 && !(1e-6..1e21).contains(&a) {
        let s = format!("{f:e}");
        let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
        let e = if let Some(neg) = e.strip_prefix('-') {
            format!("-{neg}")
        } else {
            format!("+{e}")
        };
        return Ok(format!("{m}e{e}"));
    }
    Ok(format!("{f}"))
}

/// Go's `json.Marshal` (`indent`: `MarshalIndent(v, "", indent)`).
pub fn to_json(v: &Value, html: bool, indent: Option<&str>) -> Result<String, String> {
    let mut out = String::new();
    write_json(&mut out, v, html, indent, 0)?;
    Ok(out)
}

fn write_json(
    out: &mut String,
    v: &Value,
    html: bool,
    indent: Option<&str>,
    depth: usize,
) -> Result<(), String> {
    let newline = |out: &mut String, depth: usize| {
        if let Some(ind) = indent {
            out.push('\n');
            out.push_str(&ind.repeat(depth));
        }
    };
    match v {
        Value::Nil => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(n) => out.push_str(&n.to_string()),
        Value::Uint(n) => out.push_str(&n.to_string()),
        Value::Float(f) => out.push_str(&json_float(*f)?),
        Value::String(s) => json_string(out, s, html),
        Value::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, depth + 1);
                write_json(out, item, html, indent, depth + 1)?;
            }
            if !items.is_empty() {
                newline(out, depth);
            }
            out.push(']');
        }
        Value::Map(m) => {
            out.push('{');
            for (i, (k, item)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, depth + 1);
                json_string(out, k, html);
                out.push(':');
                if indent.is_some() {
                    out.push(' ');
                }
                write_json(out, item, html, indent, depth + 1)?;
            }
            if !m.is_empty() {
                newline(out, depth);
            }
            out.push('}');
        }
        Value::Function(_) => return Err("json: unsupported type: func".into()),
    }
    Ok(())
}

/// A JSON document as a template value (numbers are float64, as Go's `interface{}` decoding).
pub fn from_json(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => Value::Float(n.as_f64().unwrap_or(0.0)),
        serde_json::Value::String(s) => string(s.clone()),
        serde_json::Value::Array(a) => {
            Value::List(a.iter().map(from_json).collect::<Vec<_>>().into())
        }
        serde_json::Value::Object(o) => Value::Map(std::sync::Arc::new(
            o.iter()
                .map(|(k, v)| (k.as_str().into(), from_json(v)))
                .collect(),
        )),
    }
}

pub fn register(m: &mut Funcs) {
    let b64 = &base64::engine::general_purpose::STANDARD;
    m.add("b64enc", move |a| {
        Ok(string(b64.encode(Args::exact("b64enc", a, 1)?.str(0)?)))
    });
    m.add("b64dec", |a| {
        let s = Args::exact("b64dec", a, 1)?.str(0)?;
        Ok(string(std_b64_decode(s).unwrap_or_else(|| {
            // Sprig returns the decoder's error text.
            let clean: String = s.chars().filter(|c| *c != '\r' && *c != '\n').collect();
            match base64::engine::general_purpose::STANDARD.decode(&clean) {
                Err(base64::DecodeError::InvalidByte(at, _))
                | Err(base64::DecodeError::InvalidLastSymbol(at, _)) => {
                    format!("illegal base64 data at input byte {at}")
                }
                _ => format!("illegal base64 data at input byte {}", clean.len()),
            }
        })))
    });
    m.add("b32enc", |a| {
        Ok(string(b32enc(
            Args::exact("b32enc", a, 1)?.str(0)?.as_bytes(),
        )))
    });
    m.add("b32dec", |a| {
        let s = Args::exact("b32dec", a, 1)?.str(0)?;
        Ok(string(match b32dec(s) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) => e,
        }))
    });
    m.add("sha256sum", |a| {
        let s = Args::exact("sha256sum", a, 1)?.str(0)?;
        Ok(string(hex::encode(sha2::Sha256::digest(s.as_bytes()))))
    });
    m.add("sha512sum", |a| {
        let s = Args::exact("sha512sum", a, 1)?.str(0)?;
        Ok(string(hex::encode(sha2::Sha512::digest(s.as_bytes()))))
    });
    m.add("adler32sum", |a| {
        let s = Args::exact("adler32sum", a, 1)?.str(0)?;
        Ok(string(adler32(s.as_bytes()).to_string()))
    });
    for (name, html, indent, must) in [
        ("toJson", true, None, false),
        ("mustToJson", true, None, true),
        ("toPrettyJson", true, Some("  "), false),
        ("mustToPrettyJson", true, Some("  "), true),
        ("toRawJson", false, None, false),
        ("mustToRawJson", false, None, true),
    ] {
        m.add(name, move |a| {
            let v = Args::exact(name, a, 1)?.get(0);
            match to_json(v, html, indent) {
                Ok(s) => Ok(string(s)),
                Err(e) if must => Err(call_error(name, e)),
                Err(_) => Ok(string("")),
            }
        });
    }
    for (name, must) in [("fromJson", false), ("mustFromJson", true)] {
        m.add(name, move |a| {
            let s = Args::exact(name, a, 1)?.str(0)?;
            match serde_json::from_str::<serde_json::Value>(s) {
                Ok(v) => Ok(from_json(&v)),
                Err(e) if must => Err(call_error(name, e)),
                Err(_) => Ok(Value::Nil),
            }
        });
    }
    m.add("toYaml", |a| {
        Ok(string(yamlfmt::to_yaml(
            Args::exact("toYaml", a, 1)?.get(0),
        )))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_round_trips_like_go() {
        assert_eq!(b32enc(b"foobar"), "MZXW6YTBOI======");
        assert_eq!(b32dec("MZXW6YTBOI======").unwrap(), b"foobar");
        assert_eq!(b32enc(b""), "");
    }

    #[test]
    fn json_like_go() {
        let v = Value::Map(std::sync::Arc::new(
            [
                ("b".into(), Value::Float(1.5)),
                ("a".into(), string("<x>")),
                (
                    "c".into(),
                    Value::List(vec![Value::Int(1), Value::Nil].into()),
                ),
            ]
            .into_iter()
            .collect(),
        ));
        assert_eq!(
            to_json(&v, true, None).unwrap(),
            r#"{"a":"\u003cx\u003e","b":1.5,"c":[1,null]}"#
        );
        assert_eq!(
            to_json(&v, false, Some("  ")).unwrap(),
            "{\n  \"a\": \"<x>\",\n  \"b\": 1.5,\n  \"c\": [\n    1,\n    null\n  ]\n}"
        );
        assert_eq!(json_float(1e21).unwrap(), "1e+21");
        assert_eq!(json_float(1e-7).unwrap(), "1e-7");
        assert_eq!(json_float(100.0).unwrap(), "100");
        assert_eq!(adler32(b"Wikipedia"), 0x11E60398);
    }
}
