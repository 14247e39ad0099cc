//! YAML output the way Go's YAML libraries write it, for KOTS's `YamlEscape` (go-yaml v3
//! `Marshal` of a string) and Helm's `toYaml` (sigs.k8s.io/yaml: go-yaml v2 style, 2-space
//! indent, sorted keys, sequences not indented under their key). The scalar style follows
//! libyaml's emitter: plain when the string reads back as itself, single-quoted when plain is
//! not allowed, double-quoted for strings that would read as another type or hold special
//! characters, literal blocks (`|`, `|-`, `|+`) for multi-line strings.

use gotmpl::Value;

use super::gofmt::format_float;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Style {
    Plain,
    Single,
    Double,
    Literal,
}

/// Would a plain scalar `s` resolve to something other than a string?
fn resolves_to_non_string(s: &str) -> bool {
    if s.is_empty() {
        return true;
    }
    const WORDS: &[&str] = &[
        "~", "null", "Null", "NULL", "true", "True", "TRUE", "false", "False", "FALSE", "y", "Y",
        "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On", "ON", "off", "Off", "OFF",
        ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf", "-.INF", ".nan",
        ".NaN", ".NAN", "<<",
    ];
    if WORDS.contains(&s) {
        return true;
    }
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    // Integers (decimal, 0x, 0o, 0b, leading-zero octal, `_` separators) and base-60 numbers.
    let lower = body.to_ascii_lowercase();
    let int_like =
        |d: &str, radix: u32| !d.is_empty() && d.chars().all(|c| c.is_digit(radix) || c == '_');
    if int_like(&lower, 10)
        || lower.strip_prefix("0x").is_some_and(|d| int_like(d, 16))
        || lower.strip_prefix("0o").is_some_and(|d| int_like(d, 8))
        || lower.strip_prefix("0b").is_some_and(|d| int_like(d, 2))
    {
        return true;
    }
    if body.contains(':')
        && body
            .split(':')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit() || c == '.'))
    {
        return true;
    }
    // Floats: [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?
    let (mant, exp) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let mant_ok = match mant.split_once('.') {
        Some((a, b)) => {
            (a.is_empty() && !b.is_empty() && b.chars().all(|c| c.is_ascii_digit()))
                || (!a.is_empty()
                    && a.chars().all(|c| c.is_ascii_digit())
                    && b.chars().all(|c| c.is_ascii_digit()))
        }
        None => !mant.is_empty() && mant.chars().all(|c| c.is_ascii_digit()),
    };
    let exp_ok = exp.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && e.chars().all(|c| c.is_ascii_digit())
    });
    if mant_ok && exp_ok {
        return true;
    }
    // Timestamps (YYYY-MM-DD...).
    let b = s.as_bytes();
    b.len() >= 10
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5].is_ascii_digit()
        && b[7] == b'-'
        && b[8].is_ascii_digit()
        && (b.len() == 10 || matches!(b[10], b'T' | b't' | b' ' | b'\t'))
}

fn is_printable(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{85}')
        || (' '..='~').contains(&c)
        || ('\u{A0}'..='\u{D7FF}').contains(&c)
        || ('\u{E000}'..='\u{FFFD}').contains(&c) && c != '\u{FEFF}'
        || ('\u{10000}'..='\u{10FFFF}').contains(&c)
}

/// libyaml's `yaml_emitter_analyze_scalar` + `select_scalar_style`, for a block context.
fn style_for(s: &str, simple_key: bool) -> Style {
    let requested = if s.contains('\n') {
        Style::Literal
    } else if !resolves_to_non_string(s) {
        Style::Plain
    } else {
        Style::Double
    };
    let chars: Vec<char> = s.chars().collect();
    let (mut block_ind, mut flow_ind, mut line_breaks, mut special) = (false, false, false, false);
    let (mut leading_space, mut leading_break, mut trailing_space, mut trailing_break) =
        (false, false, false, false);
    let (mut break_space, mut space_break) = (false, false);
    if s.starts_with("---") || s.starts_with("...") {
        block_ind = true;
        flow_ind = true;
    }
    let mut preceded_ws = true;
    let (mut prev_space, mut prev_break) = (false, false);
    for (i, &c) in chars.iter().enumerate() {
        let next = chars.get(i + 1).copied();
        let followed_ws = next.is_none_or(|n| matches!(n, ' ' | '\t' | '\n' | '\r'));
        if i == 0 {
            match c {
                '#' | ',' | '[' | ']' | '{' | '}' | '&' | '*' | '!' | '|' | '>' | '\'' | '"'
                | '%' | '@' | '`' => {
                    flow_ind = true;
                    block_ind = true;
                }
                '?' | ':' => {
                    flow_ind = true;
                    if followed_ws {
                        block_ind = true;
                    }
                }
                '-' if followed_ws => {
                    flow_ind = true;
                    block_ind = true;
                }
                _ => {}
            }
        } else {
            match c {
                ',' | '?' | '[' | ']' | '{' | '}' => flow_ind = true,
                ':' => {
                    flow_ind = true;
                    if followed_ws {
                        block_ind = true;
                    }
                }
                '#' if preceded_ws => {
                    flow_ind = true;
                    block_ind = true;
                }
                _ => {}
            }
        }
        if !is_printable(c) || (c == '\u{FEFF}') {
            special = true;
        }
        let is_break = matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}');
        if is_break {
            line_breaks = true;
        }
        if c == ' ' {
            if i == 0 {
                leading_space = true;
            }
            if i == chars.len() - 1 {
                trailing_space = true;
            }
            if prev_break {
                break_space = true;
            }
            prev_space = true;
            prev_break = false;
        } else if is_break {
            if i == 0 {
                leading_break = true;
            }
            if i == chars.len() - 1 {
                trailing_break = true;
            }
            if prev_space {
                space_break = true;
            }
            prev_space = false;
            prev_break = true;
        } else {
            prev_space = false;
            prev_break = false;
        }
        preceded_ws = matches!(c, ' ' | '\t' | '\n' | '\r');
    }
    let mut plain_ok = !s.is_empty();
    let mut single_ok = true;
    let mut block_ok = !s.is_empty();
    if leading_space || leading_break || trailing_space || trailing_break {
        plain_ok = false;
    }
    if trailing_space {
        block_ok = false;
    }
    if break_space {
        plain_ok = false;
        single_ok = false;
    }
    if space_break || special {
        plain_ok = false;
        single_ok = false;
        block_ok = false;
    }
    if line_breaks {
        plain_ok = false;
    }
    if block_ind {
        plain_ok = false;
    }
    let _ = flow_ind;
    let mut style = requested;
    if style == Style::Plain && !plain_ok {
        style = Style::Single;
    }
    if style == Style::Single && !single_ok {
        style = Style::Double;
    }
    if style == Style::Literal && (!block_ok || simple_key) {
        style = Style::Double;
    }
    style
}

fn double_quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '\0' => out.push_str("\\0"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{b}' => out.push_str("\\v"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            '\u{1b}' => out.push_str("\\e"),
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{85}' => out.push_str("\\N"),
            '\u{a0}' => out.push_str("\\_"),
            '\u{2028}' => out.push_str("\\L"),
            '\u{2029}' => out.push_str("\\P"),
            c if !is_printable(c) || c == '\u{FEFF}' => {
                let n = c as u32;
                if n <= 0xff {
                    out.push_str(&format!("\\x{n:02X}"));
                } else if n <= 0xffff {
                    out.push_str(&format!("\\u{n:04X}"));
                } else {
                    out.push_str(&format!("\\U{n:08X}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A literal block scalar: header (`|`, chomping, indentation hint) and the indented lines.
fn literal(s: &str, indent: usize) -> String {
    let mut out = String::from("|");
    if s.starts_with([' ', '\n']) {
        out.push_str(&indent.to_string());
    }
    let trailing = s.len() - s.trim_end_matches('\n').len();
    match trailing {
        0 => out.push('-'),
        1 => {}
        _ => out.push('+'),
    }
    let body = s.strip_suffix('\n').unwrap_or(s);
    let pad = " ".repeat(indent);
    for line in body.split('\n') {
        out.push('\n');
        if !line.is_empty() {
            out.push_str(&pad);
            out.push_str(line);
        }
    }
    out
}

/// One scalar string as it appears after `key: ` (or at the document root), with block
/// continuation lines indented by `indent`.
fn scalar(s: &str, indent: usize, simple_key: bool) -> String {
    match style_for(s, simple_key) {
        Style::Plain => s.to_string(),
        Style::Single => format!("'{}'", s.replace('\'', "''")),
        Style::Double => double_quoted(s),
        Style::Literal => literal(s, indent),
    }
}

/// go-yaml v3 `yaml.Marshal(s)` for a string: the document, with its final newline.
pub fn marshal_string(s: &str) -> String {
    let mut out = scalar(s, 4, false);
    out.push('\n');
    out
}

/// Helm's `toYaml`: sigs.k8s.io/yaml `Marshal` of the value, trailing newline removed.
pub fn to_yaml(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Map(m) if !m.is_empty() => write_map(&mut out, m, 0),
        Value::List(l) if !l.is_empty() => write_list(&mut out, l, 0),
        other => {
            out.push_str(&inline(other, 2));
            out.push('\n');
        }
    }
    out.trim_end_matches('\n').to_string()
}

fn number(v: &Value) -> Option<String> {
    match v {
        Value::Int(n) => Some(n.to_string()),
        Value::Uint(n) => Some(n.to_string()),
        // JSON round trip: integral floats read back as integers.
        Value::Float(f) if f.fract() == 0.0 && f.abs() < 1e21 => Some(format!("{f:.0}")),
        Value::Float(f) if f.is_nan() => Some(".nan".into()),
        Value::Float(f) if f.is_infinite() => Some(if *f > 0.0 { ".inf" } else { "-.inf" }.into()),
        Value::Float(f) => Some(format_float(*f, 'g', None)),
        _ => None,
    }
}

/// A value that fits after `key: ` on the same line (scalars, empty collections).
fn inline(v: &Value, indent: usize) -> String {
    if let Some(n) = number(v) {
        return n;
    }
    match v {
        Value::Nil => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::String(s) => scalar(s, indent, false),
        Value::List(_) => "[]".into(),
        Value::Map(_) => "{}".into(),
        Value::Function(_) => "null".into(),
        _ => "null".into(),
    }
}

fn is_block(v: &Value) -> bool {
    match v {
        Value::Map(m) => !m.is_empty(),
        Value::List(l) => !l.is_empty(),
        _ => false,
    }
}

fn write_map(
    out: &mut String,
    m: &std::collections::BTreeMap<std::sync::Arc<str>, Value>,
    indent: usize,
) {
    let pad = " ".repeat(indent);
    for (i, (k, v)) in m.iter().enumerate() {
        if i > 0 || !out.ends_with("- ") {
            out.push_str(&pad);
        }
        out.push_str(&scalar(k, indent + 2, true));
        out.push(':');
        match v {
            Value::Map(inner) if !inner.is_empty() => {
                out.push('\n');
                write_map(out, inner, indent + 2);
            }
            Value::List(items) if !items.is_empty() => {
                out.push('\n');
                write_list(out, items, indent);
            }
            other => {
                out.push(' ');
                out.push_str(&inline(other, indent + 2));
                out.push('\n');
            }
        }
    }
}

fn write_list(out: &mut String, items: &[Value], indent: usize) {
    let pad = " ".repeat(indent);
    for v in items {
        out.push_str(&pad);
        out.push_str("- ");
        match v {
            Value::Map(inner) if !inner.is_empty() => write_map(out, inner, indent + 2),
            Value::List(inner) if !inner.is_empty() => {
                // "- - a": the nested list starts on the same line.
                let mut nested = String::new();
                write_list(&mut nested, inner, indent + 2);
                out.push_str(nested.trim_start());
            }
            other => {
                out.push_str(&inline(other, indent + 2));
                out.push('\n');
            }
        }
        let _ = is_block(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_marshal_like_go_yaml_v3() {
        assert_eq!(marshal_string("abc"), "abc\n");
        assert_eq!(marshal_string(""), "\"\"\n");
        assert_eq!(marshal_string("true"), "\"true\"\n");
        assert_eq!(marshal_string("123"), "\"123\"\n");
        assert_eq!(marshal_string("1.5"), "\"1.5\"\n");
        assert_eq!(marshal_string("yes"), "\"yes\"\n");
        assert_eq!(marshal_string("a: b"), "'a: b'\n");
        assert_eq!(marshal_string("- x"), "'- x'\n");
        assert_eq!(marshal_string(" lead"), "' lead'\n");
        assert_eq!(marshal_string("it's"), "it's\n");
        assert_eq!(marshal_string("#c"), "'#c'\n");
        assert_eq!(marshal_string("a\u{1}b"), "\"a\\x01b\"\n");
        assert_eq!(
            marshal_string("abc\n123 456\nabc\n"),
            "|\n    abc\n    123 456\n    abc\n"
        );
        assert_eq!(marshal_string("a\nb"), "|-\n    a\n    b\n");
        assert_eq!(marshal_string("a\n\n"), "|+\n    a\n\n");
        assert_eq!(marshal_string("a \nb"), "\"a \\nb\"\n");
    }

    #[test]
    fn values_marshal_like_helm_to_yaml() {
        let m = |pairs: Vec<(&str, Value)>| {
            Value::Map(std::sync::Arc::new(
                pairs.into_iter().map(|(k, v)| (k.into(), v)).collect(),
            ))
        };
        let s = |x: &str| Value::String(x.into());
        let v = m(vec![
            ("b", Value::List(vec![s("x"), Value::Int(2)].into())),
            ("a", m(vec![("c", s("d")), ("e", Value::Bool(true))])),
            (
                "f",
                Value::List(vec![m(vec![("g", s("h")), ("i", Value::Float(1.5))])].into()),
            ),
            ("z", m(vec![])),
        ]);
        assert_eq!(
            to_yaml(&v),
            "a:\n  c: d\n  e: true\nb:\n- x\n- 2\nf:\n- g: h\n  i: 1.5\nz: {}"
        );
        assert_eq!(to_yaml(&s("x")), "x");
        assert_eq!(to_yaml(&m(vec![("k", s("l1\nl2\n"))])), "k: |\n  l1\n  l2");
    }
}
