//! Sprig's numbers (`numeric.go` and `functions.go`): integer math (`add`, `sub`, `mul`,
//! `div`, `mod`, `max`, `min`), decimal float math (`addf`, `subf`, `mulf`, `divf`: exact
//! decimals, as shopspring/decimal makes `0.1 + 0.2` exactly `0.3`), `floor`, `ceil`,
//! `round`, `seq`, and the conversions `int`, `int64`, `float64`, `atoi`, `toDecimal`, with
//! spf13/cast's rules (strings parse, anything unparsable is 0).

use gotmpl::{TemplateError, Value};

use super::kots_static::parse_int;
use super::sprig_lists::until_step;
use super::Funcs;
use crate::render::template::args::{call_error, string, Args};

fn trim_zero_decimal(s: &str) -> &str {
    let mut found_zero = false;
    for (i, c) in s.char_indices().rev() {
        match c {
            '.' if found_zero => return &s[..i],
            '.' => return s,
            '0' => found_zero = true,
            _ => return s,
        }
    }
    s
}

/// cast's `ToInt64`.
pub fn to_int64(v: &Value) -> i64 {
    match v {
        Value::Int(n) => *n,
        Value::Uint(n) => *n as i64,
        Value::Float(f) => *f as i64,
        Value::Bool(b) => i64::from(*b),
        Value::String(s) => parse_int(trim_zero_decimal(s), 0),
        _ => 0,
    }
}

/// cast's `ToFloat64`.
pub fn to_float64(v: &Value) -> f64 {
    match v {
        Value::Int(n) => *n as f64,
        Value::Uint(n) => *n as f64,
        Value::Float(f) => *f,
        Value::Bool(b) => f64::from(u8::from(*b)),
        Value::String(s) => s.parse().unwrap_or(0.0),
        _ => 0.0,
    }
}

/// A float as an exact decimal `mantissa * 10^-scale`, from its shortest representation.
fn decimal(f: f64) -> Option<(i128, u32)> {
    let s = format!("{f}");
    let (int, frac) = s.split_once('.').unwrap_or((&s, ""));
    let scale = frac.len() as u32;
    let m: i128 = format!("{int}{frac}").parse().ok()?;
    Some((m, scale))
}

fn from_decimal(m: i128, scale: u32) -> f64 {
    if scale == 0 {
        return m as f64;
    }
    let neg = m < 0;
    let digits = format!("{:0>width$}", m.unsigned_abs(), width = scale as usize + 1);
    let (i, f) = digits.split_at(digits.len() - scale as usize);
    let s = format!("{}{i}.{f}", if neg { "-" } else { "" });
    s.parse().unwrap_or(0.0)
}

#[derive(Clone, Copy)]
enum FOp {
    Add,
    Sub,
    Mul,
    Div,
}

/// shopspring/decimal arithmetic on the decimal values of two floats.
fn decimal_op(a: f64, b: f64, op: FOp) -> f64 {
    let exact = || -> Option<f64> {
        let (ma, sa) = decimal(a)?;
        let (mb, sb) = decimal(b)?;
        match op {
            FOp::Add | FOp::Sub => {
                let s = sa.max(sb);
                let ma = ma.checked_mul(10i128.checked_pow(s - sa)?)?;
                let mb = mb.checked_mul(10i128.checked_pow(s - sb)?)?;
                let m = match op {
                    FOp::Add => ma.checked_add(mb)?,
                    _ => ma.checked_sub(mb)?,
                };
                Some(from_decimal(m, s))
            }
            FOp::Mul => Some(from_decimal(ma.checked_mul(mb)?, sa + sb)),
            FOp::Div => None,
        }
    };
    exact().unwrap_or(match op {
        FOp::Add => a + b,
        FOp::Sub => a - b,
        FOp::Mul => a * b,
        // decimal.Div keeps 16 fractional digits.
        FOp::Div => ((a / b) * 1e16).round() / 1e16,
    })
}

fn int_op(
    name: &'static str,
    f: fn(i64, i64) -> Option<i64>,
) -> impl Fn(&[Value]) -> Result<Value, TemplateError> {
    move |a| {
        let a = Args::exact(name, a, 2)?;
        f(to_int64(a.get(0)), to_int64(a.get(1)))
            .map(Value::Int)
            .ok_or_else(|| call_error(name, "runtime error: integer divide by zero"))
    }
}

fn seq(params: &[i64]) -> String {
    let join = |v: Vec<Value>| {
        v.iter()
            .map(|x| match x {
                Value::Int(n) => n.to_string(),
                _ => String::new(),
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    match *params {
        [end] => {
            let inc = if end < 1 { -1 } else { 1 };
            join(until_step(1, end + inc, inc))
        }
        [start, end] => {
            let step = if end < start { -1 } else { 1 };
            join(until_step(start, end + step, step))
        }
        [start, step, end] => {
            let mut inc = 1;
            if end < start {
                inc = -1;
                if step > 0 {
                    return String::new();
                }
            }
            join(until_step(start, end + inc, step))
        }
        _ => String::new(),
    }
}

pub fn register(m: &mut Funcs) {
    m.add("add", |a| {
        Ok(Value::Int(
            a.iter().map(to_int64).fold(0i64, i64::wrapping_add),
        ))
    });
    m.add("add1", |a| {
        Ok(Value::Int(
            to_int64(Args::exact("add1", a, 1)?.get(0)).wrapping_add(1),
        ))
    });
    m.add("sub", int_op("sub", |x, y| Some(x.wrapping_sub(y))));
    m.add("div", int_op("div", |x, y| x.checked_div(y)));
    m.add("mod", int_op("mod", |x, y| x.checked_rem(y)));
    m.add("mul", |a| {
        let a = Args::at_least("mul", a, 1)?;
        Ok(Value::Int(
            a.args[1..]
                .iter()
                .map(to_int64)
                .fold(to_int64(a.get(0)), i64::wrapping_mul),
        ))
    });
    for (name, pick_max) in [("max", true), ("biggest", true), ("min", false)] {
        m.add(name, move |a| {
            let a = Args::at_least(name, a, 1)?;
            let vals = a.args.iter().map(to_int64);
            Ok(Value::Int(if pick_max {
                vals.max().unwrap_or(0)
            } else {
                vals.min().unwrap_or(0)
            }))
        });
    }
    for (name, pick_max) in [("maxf", true), ("minf", false)] {
        m.add(name, move |a| {
            let a = Args::at_least(name, a, 1)?;
            let mut acc = to_float64(a.get(0));
            for v in &a.args[1..] {
                let x = to_float64(v);
                acc = if pick_max { acc.max(x) } else { acc.min(x) };
            }
            Ok(Value::Float(acc))
        });
    }
    m.add("floor", |a| {
        Ok(Value::Float(
            to_float64(Args::exact("floor", a, 1)?.get(0)).floor(),
        ))
    });
    m.add("ceil", |a| {
        Ok(Value::Float(
            to_float64(Args::exact("ceil", a, 1)?.get(0)).ceil(),
        ))
    });
    m.add("round", |a| {
        let a = Args::at_least("round", a, 2)?;
        let round_on = if a.len() > 2 { a.float(2)? } else { 0.5 };
        let val = to_float64(a.get(0));
        let pow = 10f64.powf(a.int(1)? as f64);
        let digit = pow * val;
        let r = if digit.fract() >= round_on {
            digit.ceil()
        } else {
            digit.floor()
        };
        Ok(Value::Float(r / pow))
    });
    m.add("addf", |a| {
        Ok(Value::Float(a.iter().fold(0.0, |acc, v| {
            decimal_op(acc, to_float64(v), FOp::Add)
        })))
    });
    m.add("add1f", |a| {
        let v = to_float64(Args::exact("add1f", a, 1)?.get(0));
        Ok(Value::Float(decimal_op(v, 1.0, FOp::Add)))
    });
    for (name, op) in [("subf", FOp::Sub), ("mulf", FOp::Mul), ("divf", FOp::Div)] {
        m.add(name, move |a| {
            let a = Args::at_least(name, a, 1)?;
            Ok(Value::Float(
                a.args[1..].iter().fold(to_float64(a.get(0)), |acc, v| {
                    decimal_op(acc, to_float64(v), op)
                }),
            ))
        });
    }
    m.add("int", |a| {
        Ok(Value::Int(to_int64(Args::exact("int", a, 1)?.get(0))))
    });
    m.add("int64", |a| {
        Ok(Value::Int(to_int64(Args::exact("int64", a, 1)?.get(0))))
    });
    m.add("float64", |a| {
        Ok(Value::Float(to_float64(
            Args::exact("float64", a, 1)?.get(0),
        )))
    });
    m.add("atoi", |a| {
        let s = Args::exact("atoi", a, 1)?.str(0)?;
        let ok = !s.is_empty()
            && s.strip_prefix(['+', '-'])
                .unwrap_or(s)
                .chars()
                .all(|c| c.is_ascii_digit());
        Ok(Value::Int(if ok { parse_int(s, 10) } else { 0 }))
    });
    m.add("toDecimal", |a| {
        let v = Args::exact("toDecimal", a, 1)?.get(0);
        let s = super::sprig_strings::strval(v);
        let ok = !s.is_empty() && s.trim_start_matches('-').chars().all(|c| c.is_digit(8));
        Ok(Value::Int(if ok { parse_int(&s, 8) } else { 0 }))
    });
    m.add("seq", |a| {
        let a = Args::at_least("seq", a, 0)?;
        let params = (0..a.len())
            .map(|i| a.int(i))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(string(seq(&params)))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_math_like_shopspring() {
        assert_eq!(decimal_op(0.1, 0.2, FOp::Add), 0.3);
        assert_eq!(decimal_op(1.1, 3.0, FOp::Mul), 3.3);
        assert_eq!(decimal_op(0.3, 0.1, FOp::Sub), 0.2);
    }

    #[test]
    fn cast_conversions() {
        assert_eq!(to_int64(&string("42")), 42);
        assert_eq!(to_int64(&string("5.0")), 5);
        assert_eq!(to_int64(&string("0x10")), 16);
        assert_eq!(to_int64(&string("abc")), 0);
        assert_eq!(to_int64(&Value::Float(3.9)), 3);
        assert_eq!(to_float64(&string("1.5")), 1.5);
        assert_eq!(seq(&[3]), "1 2 3");
        assert_eq!(seq(&[2, 5]), "2 3 4 5");
        assert_eq!(seq(&[0, 2, 6]), "0 2 4 6");
        assert_eq!(seq(&[5, 2]), "5 4 3 2");
    }
}
