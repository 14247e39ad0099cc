//! Go's block structure rules, checked before `gotmpl` parses: every `if`/`range`/`with`/
//! `define`/`block` closed by an `end`, no `end` or `else` outside one, `break`/`continue`
//! only inside a `range`. `gotmpl` 0.6 accepts an unclosed `{{if}}` and stops parsing at a
//! stray `{{end}}` (silently dropping the rest of the file), where Go reports an error.

use super::engine::PassError;

fn line_at(text: &str, offset: usize) -> usize {
    text[..offset].bytes().filter(|b| *b == b'\n').count() + 1
}

/// Offset just past the action's right delimiter, skipping string, raw-string and character
/// literals; `None` when the action is not closed (the parser reports that).
fn action_end(text: &str, from: usize, right: &str) -> Option<usize> {
    let b = text.as_bytes();
    let mut k = from;
    while k < b.len() {
        match b[k] {
            q @ (b'"' | b'\'') => {
                k += 1;
                while k < b.len() && b[k] != q {
                    if b[k] == b'\\' {
                        k += 1;
                    }
                    if b[k.min(b.len() - 1)] == b'\n' {
                        return None;
                    }
                    k += 1;
                }
                k += 1;
            }
            b'`' => {
                k += 1 + text[k + 1..].find('`')?;
                k += 1;
            }
            _ if text[k..].starts_with(right) => return Some(k + right.len()),
            _ => k += 1,
        }
    }
    None
}

pub fn check(text: &str, left: &str, right: &str) -> Result<(), PassError> {
    let err = |offset: usize, message: String| PassError {
        line: line_at(text, offset),
        message,
    };
    // (keyword, offset of its action)
    let mut stack: Vec<(&'static str, usize)> = Vec::new();
    let mut i = 0;
    while let Some(found) = text[i..].find(left) {
        let start = i + found;
        let mut j = start + left.len();
        if text[j..].starts_with('-') && text[j + 1..].starts_with([' ', '\t', '\r', '\n']) {
            j += 1;
        }
        let body = &text[j..];
        j += body.len() - body.trim_start().len();
        if text[j..].starts_with("/*") {
            match text[j + 2..].find("*/") {
                Some(e) => {
                    i = j + 2 + e + 2;
                    continue;
                }
                None => return Ok(()),
            }
        }
        let word: String = text[j..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let Some(end) = action_end(text, j, right) else {
            return Ok(());
        };
        let shown = |kw: &str| format!("{left}{kw}{right}");
        match word.as_str() {
            "if" => stack.push(("if", start)),
            "range" => stack.push(("range", start)),
            "with" => stack.push(("with", start)),
            "define" => stack.push(("define", start)),
            "block" => stack.push(("block", start)),
            "else" => match stack.last() {
                Some(("if" | "range" | "with", _)) => {}
                _ => return Err(err(start, format!("unexpected {}", shown(" else")))),
            },
            "end" if stack.pop().is_none() => {
                return Err(err(start, format!("unexpected {}", shown(" end"))));
            }
            "break" | "continue" => {
                let in_range = stack
                    .iter()
                    .rev()
                    .take_while(|(k, _)| !matches!(*k, "define" | "block"))
                    .any(|(k, _)| *k == "range");
                if !in_range {
                    return Err(err(
                        start,
                        format!("{} outside {}", shown(&format!(" {word}")), shown(" range")),
                    ));
                }
            }
            _ => {}
        }
        i = end;
    }
    match stack.last() {
        Some((kw, at)) => Err(err(
            *at,
            format!(
                "unexpected EOF: {} is never closed by {}",
                format_args!("{left} {kw}{right}"),
                format_args!("{left} end{right}")
            ),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_must_balance() {
        let ok = |t: &str| check(t, "{{repl", "}}").is_ok();
        assert!(ok(
            "{{repl if true}}a{{repl else if x}}b{{repl else}}c{{repl end}}"
        ));
        assert!(ok(
            "{{repl range .}}{{repl if .}}{{repl break}}{{repl end}}{{repl end}}"
        ));
        assert!(ok(r#"{{repl print "{{repl end}}" `}}` }}"#));
        assert!(ok("{{repl/* {{repl end}} */}}"));
        assert!(ok("{{repl ender}}{{repl endx}}"));
        let e = check("a\n{{repl if true}}x", "{{repl", "}}").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("unexpected EOF"), "{}", e.message);
        let e = check("a{{repl- end -}}b", "{{repl", "}}").unwrap_err();
        assert!(
            e.message.contains("unexpected {{repl end}}"),
            "{}",
            e.message
        );
        assert!(!ok("{{repl else}}"));
        assert!(!ok("{{repl break}}"));
        assert!(!ok(
            "{{repl range .}}{{repl define \"x\"}}{{repl break}}{{repl end}}{{repl end}}"
        ));
        assert!(ok("repl{{ with 1 }}"));
        assert!(check("repl{{ with 1 }}", "repl{{", "}}").is_err());
    }
}
