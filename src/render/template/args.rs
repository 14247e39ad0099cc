//! Arguments of template functions, checked the way Go's `text/template` checks a call against
//! the Go function's signature: argument count (`wrong number of args for F: want 1 got 2`) and
//! types (`wrong type for value; expected string; got int`), so a template that Go rejects is
//! rejected here too.

use gotmpl::{TemplateError, Value};

use super::gofmt::type_name;

pub type FnResult = Result<Value, TemplateError>;

/// An error from inside a function, reported as Go reports it (`error calling F: ...`).
pub fn call_error(name: &str, msg: impl std::fmt::Display) -> TemplateError {
    TemplateError::Exec(format!("error calling {name}: {msg}"))
}

/// The arguments one call received, with the function's name for error messages.
pub struct Args<'a> {
    pub name: &'static str,
    pub args: &'a [Value],
}

impl<'a> Args<'a> {
    /// Exactly `n` arguments.
    pub fn exact(name: &'static str, args: &'a [Value], n: usize) -> Result<Self, TemplateError> {
        if args.len() != n {
            return Err(TemplateError::Exec(format!(
                "wrong number of args for {name}: want {n} got {}",
                args.len()
            )));
        }
        Ok(Args { name, args })
    }

    /// A variadic Go function with `n` fixed parameters.
    pub fn at_least(
        name: &'static str,
        args: &'a [Value],
        n: usize,
    ) -> Result<Self, TemplateError> {
        if args.len() < n {
            return Err(TemplateError::Exec(format!(
                "wrong number of args for {name}: want at least {n} got {}",
                args.len()
            )));
        }
        Ok(Args { name, args })
    }

    pub fn len(&self) -> usize {
        self.args.len()
    }

    pub fn get(&self, i: usize) -> &'a Value {
        self.args.get(i).unwrap_or(&Value::Nil)
    }

    fn wrong(&self, i: usize, expected: &str) -> TemplateError {
        let v = self.get(i);
        if matches!(v, Value::Nil) {
            return TemplateError::Exec(format!(
                "invalid value; expected {expected} (argument {} of {})",
                i + 1,
                self.name
            ));
        }
        TemplateError::Exec(format!(
            "wrong type for value; expected {expected}; got {} (argument {} of {})",
            type_name(v),
            i + 1,
            self.name
        ))
    }

    /// A Go `string` parameter.
    pub fn str(&self, i: usize) -> Result<&'a str, TemplateError> {
        match self.get(i) {
            Value::String(s) => Ok(s),
            _ => Err(self.wrong(i, "string")),
        }
    }

    /// A Go integer parameter (`int`, `int64`, `uint64`: Go converts untyped constants, and
    /// our values do not keep Go's exact integer kind).
    pub fn int(&self, i: usize) -> Result<i64, TemplateError> {
        match self.get(i) {
            Value::Int(n) => Ok(*n),
            Value::Uint(n) => i64::try_from(*n).map_err(|_| self.wrong(i, "int")),
            _ => Err(self.wrong(i, "int")),
        }
    }

    /// A Go `float64` parameter (an integer constant converts, as in Go).
    pub fn float(&self, i: usize) -> Result<f64, TemplateError> {
        match self.get(i) {
            Value::Float(f) => Ok(*f),
            Value::Int(n) => Ok(*n as f64),
            Value::Uint(n) => Ok(*n as f64),
            _ => Err(self.wrong(i, "float64")),
        }
    }

    /// A Go `bool` parameter.
    pub fn bool(&self, i: usize) -> Result<bool, TemplateError> {
        match self.get(i) {
            Value::Bool(b) => Ok(*b),
            _ => Err(self.wrong(i, "bool")),
        }
    }

    /// A Go `map[string]interface{}` parameter.
    pub fn map(
        &self,
        i: usize,
    ) -> Result<&'a std::collections::BTreeMap<std::sync::Arc<str>, Value>, TemplateError> {
        match self.get(i) {
            Value::Map(m) => Ok(m),
            _ => Err(self.wrong(i, "map[string]interface {}")),
        }
    }

    /// Every argument from `from` on as strings (a Go `...string` parameter).
    pub fn strs_from(&self, from: usize) -> Result<Vec<&'a str>, TemplateError> {
        (from..self.len()).map(|i| self.str(i)).collect()
    }
}

pub fn string(s: impl Into<String>) -> Value {
    Value::String(s.into().into())
}

pub fn list(items: Vec<Value>) -> Value {
    Value::List(items.into())
}
