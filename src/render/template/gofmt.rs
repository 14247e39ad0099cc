//! Go's `fmt` formatting of template values: what `{{ x }}`, `print`, `println` and `printf`
//! produce in Go (`%v` of floats is the shortest `%g`, so `1e+06`, not `1000000`; lists print as
//! `[a b]`, maps as `map[k:v]`). The engine routes every printed value through [`format_value`].

use gotmpl::Value;

/// Go's `%v` of a value, as `fmt.Sprint` prints it.
pub fn format_value(v: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, v);
    out
}

fn write_value(out: &mut String, v: &Value) {
    match v {
        Value::Nil => out.push_str("<nil>"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(n) => out.push_str(&n.to_string()),
        Value::Uint(n) => out.push_str(&n.to_string()),
        Value::Float(f) => out.push_str(&format_float(*f, 'g', None)),
        Value::String(s) => out.push_str(s),
        Value::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Map(m) => {
            out.push_str("map[");
            for (i, (k, item)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(k);
                out.push(':');
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Function(_) => out.push_str("<func>"),
    }
}

/// Go's type name of a value, as error messages and `%!verb(type=value)` print it.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Nil => "<nil>",
        Value::Bool(_) => "bool",
        Value::Int(_) => "int",
        Value::Uint(_) => "uint",
        Value::Float(_) => "float64",
        Value::String(_) => "string",
        Value::List(_) => "[]interface {}",
        Value::Map(_) => "map[string]interface {}",
        Value::Function(_) => "func",
    }
}

/// `fmt.Sprint`: a space between two operands when neither is a string.
pub fn sprint(args: &[Value]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        let is_str = |v: &Value| matches!(v, Value::String(_));
        if i > 0 && !is_str(a) && !is_str(&args[i - 1]) {
            out.push(' ');
        }
        write_value(&mut out, a);
    }
    out
}

/// `fmt.Sprintln`: spaces between all operands and a final newline.
pub fn sprintln(args: &[Value]) -> String {
    let parts: Vec<String> = args.iter().map(format_value).collect();
    let mut out = parts.join(" ");
    out.push('\n');
    out
}

/// The decimal digits of `|f|` (no trailing zeros) and the position of the decimal point,
/// shortest round-trip (`sig == None`) or rounded to `sig` significant digits.
fn digits(f: f64, sig: Option<usize>) -> (String, i32) {
    let s = match sig {
        None => format!("{:e}", f.abs()),
        Some(p) => format!("{:.*e}", p.max(1) - 1, f.abs()),
    };
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let mut d: String = mant.chars().filter(|c| *c != '.').collect();
    while d.len() > 1 && d.ends_with('0') {
        d.pop();
    }
    if d == "0" {
        return (d, 1);
    }
    (d, exp + 1)
}

fn exp_suffix(out: &mut String, upper: bool, exp: i32) {
    out.push(if upper { 'E' } else { 'e' });
    out.push(if exp < 0 { '-' } else { '+' });
    let a = exp.unsigned_abs();
    if a < 10 {
        out.push('0');
    }
    out.push_str(&a.to_string());
}

/// Go's `strconv.FormatFloat(f, verb, prec, 64)` for `e`, `E`, `f`, `F`, `g`, `G`
/// (`prec == None`: `%g` is the shortest representation, `%e`/`%f` default to 6).
pub fn format_float(f: f64, verb: char, prec: Option<usize>) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let mut out = String::new();
    if f.is_sign_negative() {
        out.push('-');
    }
    let a = f.abs();
    match verb {
        'e' | 'E' => {
            let s = format!("{:.*e}", prec.unwrap_or(6), a);
            let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
            out.push_str(mant);
            exp_suffix(&mut out, verb == 'E', exp.parse().unwrap_or(0));
        }
        'f' | 'F' => out.push_str(&format!("{:.*}", prec.unwrap_or(6), a)),
        _ => {
            let shortest = prec.is_none();
            let p = prec.map(|p| p.max(1));
            let (d, dp) = digits(a, p);
            let nd = d.len() as i32;
            let mut eprec = p.map_or(6, |p| p as i32);
            if !shortest && eprec > nd && nd >= dp {
                eprec = nd;
            }
            if shortest {
                eprec = 6;
            }
            let exp = dp - 1;
            if exp < -4 || exp >= eprec {
                out.push_str(&d[..1]);
                if d.len() > 1 {
                    out.push('.');
                    out.push_str(&d[1..]);
                }
                exp_suffix(&mut out, verb == 'G', exp);
            } else if dp <= 0 {
                out.push_str("0.");
                out.push_str(&"0".repeat((-dp) as usize));
                out.push_str(&d);
            } else if dp >= nd {
                out.push_str(&d);
                out.push_str(&"0".repeat((dp - nd) as usize));
            } else {
                out.push_str(&d[..dp as usize]);
                out.push('.');
                out.push_str(&d[dp as usize..]);
            }
        }
    }
    out
}

/// Go's `strconv.Quote`.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => {
                if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32))
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32))
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[derive(Default)]
struct Spec {
    minus: bool,
    plus: bool,
    sharp: bool,
    space: bool,
    zero: bool,
    width: Option<usize>,
    prec: Option<usize>,
}

impl Spec {
    fn pad(&self, out: &mut String, body: &str, numeric: bool) {
        let len = body.chars().count();
        let w = self.width.unwrap_or(0).min(1 << 16);
        if len >= w {
            out.push_str(body);
        } else if self.minus {
            out.push_str(body);
            out.push_str(&" ".repeat(w - len));
        } else if self.zero && numeric {
            let (sign, rest) = match body.chars().next() {
                Some(c @ ('-' | '+' | ' ')) => (c.to_string(), &body[1..]),
                _ => (String::new(), body),
            };
            out.push_str(&sign);
            out.push_str(&"0".repeat(w - len));
            out.push_str(rest);
        } else if self.zero {
            out.push_str(&"0".repeat(w - len));
            out.push_str(body);
        } else {
            out.push_str(&" ".repeat(w - len));
            out.push_str(body);
        }
    }

    fn sign(&self, negative: bool) -> &'static str {
        if negative {
            "-"
        } else if self.plus {
            "+"
        } else if self.space {
            " "
        } else {
            ""
        }
    }
}

fn bad_verb(out: &mut String, verb: char, v: &Value) {
    match v {
        Value::Nil => out.push_str(&format!("%!{verb}(<nil>)")),
        _ => out.push_str(&format!("%!{verb}({}={})", type_name(v), format_value(v))),
    }
}

fn int_in_base(n: i128, base: u32, upper: bool) -> String {
    let mut digits = Vec::new();
    let mut m = n.unsigned_abs();
    if m == 0 {
        digits.push(b'0');
    }
    while m > 0 {
        let d = (m % base as u128) as u8;
        digits.push(match d {
            0..=9 => b'0' + d,
            _ if upper => b'A' + d - 10,
            _ => b'a' + d - 10,
        });
        m /= base as u128;
    }
    digits.reverse();
    String::from_utf8(digits).unwrap_or_default()
}

fn format_one(out: &mut String, spec: &Spec, verb: char, v: &Value) {
    let as_int = match v {
        Value::Int(n) => Some(*n as i128),
        Value::Uint(n) => Some(*n as i128),
        _ => None,
    };
    match (verb, v) {
        ('v', Value::String(s)) if spec.sharp => spec.pad(out, &quote(s), false),
        ('v', _) => spec.pad(out, &format_value(v), false),
        ('T', _) => spec.pad(out, type_name(v), false),
        ('s', Value::String(s)) => {
            let body: String = match spec.prec {
                Some(p) => s.chars().take(p).collect(),
                None => s.to_string(),
            };
            spec.pad(out, &body, false)
        }
        ('q', Value::String(s)) => {
            if spec.sharp && !s.contains('`') && !s.chars().any(|c| c.is_control() && c != '\t') {
                spec.pad(out, &format!("`{s}`"), false)
            } else {
                spec.pad(out, &quote(s), false)
            }
        }
        ('x' | 'X', Value::String(s)) => {
            let mut body = String::new();
            for b in s.bytes() {
                if verb == 'x' {
                    body.push_str(&format!("{b:02x}"));
                } else {
                    body.push_str(&format!("{b:02X}"));
                }
            }
            spec.pad(out, &body, false)
        }
        (
            's' | 'd' | 'q' | 'x' | 'X' | 'o' | 'b' | 'e' | 'E' | 'f' | 'F' | 'g' | 'G',
            Value::List(items),
        ) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                format_one(out, spec, verb, item);
            }
            out.push(']');
        }
        ('t', Value::Bool(b)) => spec.pad(out, if *b { "true" } else { "false" }, false),
        ('d' | 'b' | 'o' | 'O' | 'x' | 'X', _) if as_int.is_some() => {
            let n = as_int.unwrap_or(0);
            let (base, prefix) = match verb {
                'd' => (10, ""),
                'b' => (2, if spec.sharp { "0b" } else { "" }),
                'o' => (8, if spec.sharp { "0" } else { "" }),
                'O' => (8, "0o"),
                'x' => (16, if spec.sharp { "0x" } else { "" }),
                _ => (16, if spec.sharp { "0X" } else { "" }),
            };
            let mut digits = int_in_base(n, base, verb == 'X');
            if let Some(p) = spec.prec {
                while digits.len() < p {
                    digits.insert(0, '0');
                }
            }
            let body = format!("{}{prefix}{digits}", spec.sign(n < 0));
            spec.pad(out, &body, true)
        }
        ('c', _) if as_int.is_some() => {
            let c = char::from_u32(as_int.unwrap_or(0) as u32).unwrap_or('\u{FFFD}');
            spec.pad(out, &c.to_string(), false)
        }
        ('q', _) if as_int.is_some() => {
            let c = char::from_u32(as_int.unwrap_or(0) as u32).unwrap_or('\u{FFFD}');
            let q = quote(&c.to_string());
            let inner = &q[1..q.len() - 1];
            let inner = if inner == "\\\"" { "\"" } else { inner };
            let body = if c == '\'' {
                "'\\''".to_string()
            } else {
                format!("'{inner}'")
            };
            spec.pad(out, &body, false)
        }
        ('U', _) if as_int.is_some() => {
            let body = format!("U+{:04X}", as_int.unwrap_or(0));
            spec.pad(out, &body, false)
        }
        ('e' | 'E' | 'f' | 'F' | 'g' | 'G', Value::Float(f)) => {
            let mut body = format_float(*f, verb, spec.prec);
            if !body.starts_with('-') {
                body.insert_str(0, spec.sign(false));
            }
            spec.pad(out, &body, true)
        }
        _ => bad_verb(out, verb, v),
    }
}

/// Go's `fmt.Sprintf` for the verbs templates use (`%v %s %q %d %t %f %e %g %x %X %o %b %c %U`,
/// flags `-+# 0`, width and precision including `*`, `%[n]` indexes), with Go's
/// `%!verb(type=value)`, `%!verb(MISSING)` and `%!(EXTRA ...)` markers.
pub fn sprintf(format: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut next = 0usize;
    let mut reordered = false;
    let chars: Vec<char> = format.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c != '%' {
            out.push(c);
            i += 1;
            continue;
        }
        i += 1;
        let mut spec = Spec::default();
        while i < chars.len() {
            match chars[i] {
                '-' => spec.minus = true,
                '+' => spec.plus = true,
                '#' => spec.sharp = true,
                ' ' => spec.space = true,
                '0' => spec.zero = !spec.minus,
                _ => break,
            }
            i += 1;
        }
        let mut arg_index = |i: &mut usize, next: &mut usize| {
            if *i < chars.len() && chars[*i] == '[' {
                if let Some(end) = chars[*i..].iter().position(|c| *c == ']') {
                    let n: String = chars[*i + 1..*i + end].iter().collect();
                    if let Ok(n) = n.parse::<usize>() {
                        if n >= 1 {
                            *next = n - 1;
                            reordered = true;
                        }
                    }
                    *i += end + 1;
                }
            }
        };
        arg_index(&mut i, &mut next);
        let number = |i: &mut usize, next: &mut usize, out: &mut String| -> Option<usize> {
            if *i < chars.len() && chars[*i] == '*' {
                *i += 1;
                let v = args.get(*next);
                *next += 1;
                match v {
                    Some(Value::Int(n)) if *n >= 0 => Some(*n as usize),
                    Some(Value::Uint(n)) => Some(*n as usize),
                    _ => {
                        out.push_str("%!(BADWIDTH)");
                        None
                    }
                }
            } else {
                let start = *i;
                while *i < chars.len() && chars[*i].is_ascii_digit() {
                    *i += 1;
                }
                if *i > start {
                    chars[start..*i].iter().collect::<String>().parse().ok()
                } else {
                    None
                }
            }
        };
        spec.width = number(&mut i, &mut next, &mut out);
        if i < chars.len() && chars[i] == '.' {
            i += 1;
            arg_index(&mut i, &mut next);
            spec.prec = Some(number(&mut i, &mut next, &mut out).unwrap_or(0));
        }
        arg_index(&mut i, &mut next);
        let Some(&verb) = chars.get(i) else {
            out.push_str("%!(NOVERB)");
            break;
        };
        i += 1;
        if verb == '%' {
            out.push('%');
            continue;
        }
        match args.get(next) {
            None => out.push_str(&format!("%!{verb}(MISSING)")),
            Some(v) => {
                next += 1;
                format_one(&mut out, &spec, verb, v);
            }
        }
    }
    if !reordered && next < args.len() {
        out.push_str("%!(EXTRA ");
        for (k, v) in args[next..].iter().enumerate() {
            if k > 0 {
                out.push_str(", ");
            }
            match v {
                Value::Nil => out.push_str("<nil>"),
                _ => out.push_str(&format!("{}={}", type_name(v), format_value(v))),
            }
        }
        out.push(')');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_like_go() {
        for (f, want) in [
            (7.5, "7.5"),
            (0.5, "0.5"),
            (1e6, "1e+06"),
            (123456.0, "123456"),
            (1234567.0, "1.234567e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1e21, "1e+21"),
            (-2.0, "-2"),
            (0.0, "0"),
            (100.0, "100"),
        ] {
            assert_eq!(format_float(f, 'g', None), want, "{f}");
        }
        assert_eq!(format_float(1.23456, 'f', Some(2)), "1.23");
        assert_eq!(format_float(1234.5678, 'e', None), "1.234568e+03");
        assert_eq!(format_float(1234.5678, 'g', Some(3)), "1.23e+03");
        assert_eq!(format_float(100.0, 'g', Some(3)), "100");
    }

    #[test]
    fn sprintf_like_go() {
        let s = |v: &str| Value::String(v.into());
        assert_eq!(sprintf("%s-%d", &[s("a"), Value::Int(3)]), "a-3");
        assert_eq!(sprintf("%5s|%-5s|", &[s("ab"), s("cd")]), "   ab|cd   |");
        assert_eq!(sprintf("%05d", &[Value::Int(-42)]), "-0042");
        assert_eq!(
            sprintf(
                "%x %X %o %b",
                &[
                    Value::Int(255),
                    Value::Int(255),
                    Value::Int(8),
                    Value::Int(5)
                ]
            ),
            "ff FF 10 101"
        );
        assert_eq!(sprintf("%q", &[s("a\"b\n")]), "\"a\\\"b\\n\"");
        assert_eq!(
            sprintf("%v %v", &[Value::Float(1e6), Value::Bool(true)]),
            "1e+06 true"
        );
        assert_eq!(sprintf("%.2f", &[Value::Float(2.0 / 3.0)]), "0.67");
        assert_eq!(sprintf("%d", &[s("x")]), "%!d(string=x)");
        assert_eq!(sprintf("%d %d", &[Value::Int(1)]), "1 %!d(MISSING)");
        assert_eq!(
            sprintf("%d", &[Value::Int(1), s("x")]),
            "1%!(EXTRA string=x)"
        );
        assert_eq!(sprintf("100%%", &[]), "100%");
        assert_eq!(sprintf("%[2]s %[1]s", &[s("a"), s("b")]), "b a");
        assert_eq!(sprintf("%*d", &[Value::Int(4), Value::Int(7)]), "   7");
        assert_eq!(sprintf("%s", &[Value::Nil]), "%!s(<nil>)");
    }

    #[test]
    fn values_print_like_go() {
        let list =
            Value::List(vec![Value::Int(1), Value::String("a".into()), Value::Float(2.5)].into());
        assert_eq!(format_value(&list), "[1 a 2.5]");
        assert_eq!(
            sprint(&[
                Value::Int(1),
                Value::Int(2),
                Value::String("x".into()),
                Value::Int(3)
            ]),
            "1 2x3"
        );
        assert_eq!(
            sprintln(&[Value::Int(1), Value::String("x".into())]),
            "1 x\n"
        );
    }
}
