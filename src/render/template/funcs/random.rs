//! Random values: KOTS's `RandomString` (a length and a regexp character class, default
//! `[_A-Za-z0-9]`, parsed as Go's `regexp/syntax` would) and `RandomBytes`, Sprig's
//! `randAlphaNum`, `randAlpha`, `randNumeric`, `randAscii`, `randBytes`, `randInt`, `uuidv4`.
//! All draw from the OS's CSPRNG (they make passwords), and each marks the render as
//! generated so the value is saved rather than drawn again on the next render.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use base64::Engine as _;
use gotmpl::{TemplateError, Value};

use super::{Env, Funcs};
use crate::render::template::args::{call_error, string, Args};

/// KOTS's default `RandomString` charset.
pub const DEFAULT_CHARSET: &str = "[_A-Za-z0-9]";

fn random_bytes(n: usize) -> Result<Vec<u8>, TemplateError> {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).map_err(|e| call_error("random", e))?;
    Ok(buf)
}

/// A uniform integer in `0..n` (rejection sampling, no modulo bias).
fn below(n: u64) -> Result<u64, TemplateError> {
    if n <= 1 {
        return Ok(0);
    }
    let zone = u64::MAX - u64::MAX % n;
    loop {
        let b = random_bytes(8)?;
        let v = u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
        if v < zone {
            return Ok(v % n);
        }
    }
}

/// The ranges of a character class, or `None` if `charset` is not one (KOTS then returns "").
fn class_ranges(charset: &str) -> Option<Vec<(char, char)>> {
    let hir = regex_syntax::ParserBuilder::new()
        .unicode(true)
        .utf8(true)
        .build()
        .parse(charset)
        .ok()?;
    match hir.kind() {
        regex_syntax::hir::HirKind::Class(regex_syntax::hir::Class::Unicode(c)) => {
            Some(c.iter().map(|r| (r.start(), r.end())).collect())
        }
        _ => None,
    }
}

/// `n` characters drawn uniformly from the ranges.
fn draw(ranges: &[(char, char)], n: usize) -> Result<String, TemplateError> {
    let total: u64 = ranges
        .iter()
        .map(|(a, b)| u64::from(*b as u32 - *a as u32) + 1)
        .sum();
    let mut out = String::with_capacity(n);
    for _ in 0..n {
        let mut k = below(total)?;
        for (a, b) in ranges {
            let size = u64::from(*b as u32 - *a as u32) + 1;
            if k < size {
                // Surrogates are not in a Unicode class, so this is a char.
                out.push(char::from_u32(*a as u32 + k as u32).unwrap_or('\u{FFFD}'));
                break;
            }
            k -= size;
        }
    }
    Ok(out)
}

/// KOTS's `RandomString length [charset]`.
pub fn random_string(length: u64, charset: &str) -> Result<String, TemplateError> {
    let Some(ranges) = class_ranges(charset) else {
        return Ok(String::new());
    };
    draw(&ranges, length.min(1 << 20) as usize)
}

pub fn register(m: &mut Funcs, env: &Arc<Env>) {
    let mark = |env: &Arc<Env>| {
        let e = env.clone();
        move || e.generated.store(true, Ordering::Relaxed)
    };

    let generated = mark(env);
    m.add("RandomString", move |a| {
        let a = Args::at_least("RandomString", a, 1)?;
        let len = a.int(0)?.max(0) as u64;
        let charsets = a.strs_from(1)?;
        generated();
        Ok(string(random_string(
            len,
            charsets.first().copied().unwrap_or(DEFAULT_CHARSET),
        )?))
    });
    let generated = mark(env);
    m.add("RandomBytes", move |a| {
        let n = Args::exact("RandomBytes", a, 1)?.int(0)?.clamp(0, 1 << 20) as usize;
        generated();
        Ok(string(
            base64::engine::general_purpose::STANDARD.encode(random_bytes(n)?),
        ))
    });
    let generated = mark(env);
    m.add("randBytes", move |a| {
        let n = Args::exact("randBytes", a, 1)?.int(0)?.clamp(0, 1 << 20) as usize;
        generated();
        Ok(string(
            base64::engine::general_purpose::STANDARD.encode(random_bytes(n)?),
        ))
    });
    for (name, ranges) in [
        ("randAlphaNum", &[('0', '9'), ('A', 'Z'), ('a', 'z')][..]),
        ("randAlpha", &[('A', 'Z'), ('a', 'z')][..]),
        ("randNumeric", &[('0', '9')][..]),
        ("randAscii", &[(' ', '~')][..]),
    ] {
        let generated = mark(env);
        m.add(name, move |a| {
            let n = Args::exact(name, a, 1)?.int(0)?.clamp(0, 1 << 20) as usize;
            generated();
            Ok(string(draw(ranges, n)?))
        });
    }
    let generated = mark(env);
    m.add("randInt", move |a| {
        let a = Args::exact("randInt", a, 2)?;
        let (min, max) = (a.int(0)?, a.int(1)?);
        if max <= min {
            return Err(call_error("randInt", "invalid argument to Intn"));
        }
        generated();
        Ok(Value::Int(min + below((max - min) as u64)? as i64))
    });
    let generated = mark(env);
    m.add("uuidv4", move |a| {
        Args::exact("uuidv4", a, 0)?;
        generated();
        let mut b = random_bytes(16)?;
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let h = hex::encode(&b);
        Ok(string(format!(
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        )))
    });
    let generated = mark(env);
    m.add("shuffle", move |a| {
        let s = Args::exact("shuffle", a, 1)?.str(0)?;
        generated();
        let mut chars: Vec<char> = s.chars().collect();
        for i in (1..chars.len()).rev() {
            let j = below(i as u64 + 1)? as usize;
            chars.swap(i, j);
        }
        Ok(string(chars.into_iter().collect::<String>()))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_string_uses_the_class() {
        let s = random_string(200, DEFAULT_CHARSET).unwrap();
        assert_eq!(s.chars().count(), 200);
        assert!(s.chars().all(|c| c == '_' || c.is_ascii_alphanumeric()));
        let s = random_string(50, "[a-c]").unwrap();
        assert!(s.chars().all(|c| ('a'..='c').contains(&c)), "{s}");
        let s = random_string(30, "[[:digit:]]").unwrap();
        assert!(s.chars().all(|c| c.is_ascii_digit()), "{s}");
        // Not a character class: KOTS returns "".
        assert_eq!(random_string(10, "abc").unwrap(), "");
        assert_eq!(random_string(10, "[").unwrap(), "");
        assert_ne!(
            random_string(32, DEFAULT_CHARSET).unwrap(),
            random_string(32, DEFAULT_CHARSET).unwrap()
        );
    }
}
