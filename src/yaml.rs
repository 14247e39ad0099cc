//! The one reader of YAML and JSON streams: splits a file into its documents and parses each
//! on its own, so one broken document is reported once (with its line in the file) and never
//! hides, or stalls on, the documents after it. Every stage that reads manifests (upstream,
//! render, discover, overlay) goes through here.

use std::fmt;

use serde::Deserialize as _;
use serde_yaml_ng::Value;

/// One document of a stream.
#[derive(Debug)]
pub struct Document<'a> {
    /// The document's text exactly as written (without its `---` marker line).
    pub raw: &'a str,
    /// 1-based line of the file where `raw` starts.
    pub line: usize,
    /// The parsed value (merge keys applied), or why it does not parse.
    pub parsed: Result<Value, ParseError>,
}

/// Why a document does not parse, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub message: String,
    /// 1-based line in the file, when the parser gives one.
    pub line: Option<usize>,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "line {l}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Which reader a file name calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
}

/// Documents (their raw text, as [`documents`] gives them) written back as one file:
/// YAML documents separated by `---`, JSON ones by a newline.
pub fn join(docs: &[&str], format: Format) -> String {
    let sep = match format {
        Format::Yaml => "---\n",
        Format::Json => "\n",
    };
    let mut s = String::new();
    for (i, raw) in docs.iter().enumerate() {
        if i > 0 && !s.ends_with('\n') {
            s.push('\n');
        }
        if i > 0 {
            s.push_str(sep);
        }
        s.push_str(raw);
    }
    s
}

impl Format {
    /// `.yaml`/`.yml` and `.json`, any case; `None` for anything else.
    pub fn of(path: &str) -> Option<Format> {
        let lower = path.to_ascii_lowercase();
        if lower.ends_with(".yaml") || lower.ends_with(".yml") {
            Some(Format::Yaml)
        } else if lower.ends_with(".json") {
            Some(Format::Json)
        } else {
            None
        }
    }
}

/// The documents of `text` read as `format`.
pub fn documents(text: &str, format: Format) -> Vec<Document<'_>> {
    match format {
        Format::Yaml => yaml_documents(text),
        Format::Json => json_documents(text),
    }
}

/// Splits a YAML stream into its documents and parses each on its own. Empty,
/// comment-only and `null` documents are dropped.
pub fn yaml_documents(text: &str) -> Vec<Document<'_>> {
    split_yaml(text)
        .into_iter()
        .filter(|(raw, _)| {
            raw.lines().any(|l| {
                let t = l.trim();
                !t.is_empty() && !t.starts_with('#') && !l.starts_with('%')
            })
        })
        .filter_map(|(raw, line)| match parse_yaml(raw, line) {
            Ok(Value::Null) => None,
            parsed => Some(Document { raw, line, parsed }),
        })
        .collect()
}

/// A document that says it is a Kubernetes object (`apiVersion:` and `kind:` lines) whether
/// or not it parses: one that does not parse is worth a warning.
pub fn looks_like_manifest(raw: &str) -> bool {
    let has = |key: &str| raw.lines().any(|l| l.trim_start().starts_with(key));
    has("apiVersion:") && has("kind:")
}

/// Parses one YAML document (as [`yaml_documents`] yields it) that starts at `line`.
pub fn parse_yaml(raw: &str, line: usize) -> Result<Value, ParseError> {
    // CRLF files: the parser copes, but a stray `\r` would end up in scalars.
    let owned;
    let raw = if raw.contains('\r') {
        owned = raw.replace("\r\n", "\n");
        owned.as_str()
    } else {
        raw
    };
    // Directives (`%YAML 1.2`) belong to the stream, not to one document. They are blanked,
    // not removed, so line numbers stay those of the file.
    let body: String;
    let raw = if raw.lines().any(|l| l.starts_with('%')) {
        body = raw
            .lines()
            .map(|l| if l.starts_with('%') { "" } else { l })
            .collect::<Vec<_>>()
            .join("\n");
        body.as_str()
    } else {
        raw
    };
    let mut v = Value::deserialize(serde_yaml_ng::Deserializer::from_str(raw))
        .map_err(|e| yaml_error(&e, line))?;
    v.apply_merge().map_err(|e| ParseError {
        message: format!("merge key: {}", strip_location(&e.to_string())),
        line: e.location().map(|l| line + l.line().saturating_sub(1)),
    })?;
    Ok(v)
}

fn yaml_error(e: &serde_yaml_ng::Error, first_line: usize) -> ParseError {
    ParseError {
        message: strip_location(&e.to_string()),
        line: e
            .location()
            .map(|l| first_line + l.line().saturating_sub(1)),
    }
}

/// The parser's message without its ` at line L column C` parts, which count from the
/// document's start rather than the file's.
fn strip_location(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// The documents of a YAML stream with their first line, separated by `---` (which may carry
/// content after it on its line) and ended by `...`. Markers are only at column 0, as YAML
/// requires.
fn split_yaml(text: &str) -> Vec<(&str, usize)> {
    let mut docs = Vec::new();
    let mut start = 0;
    let mut start_line = 1;
    let mut pos = 0;
    for (n, line) in text.split_inclusive('\n').enumerate() {
        let content = line.trim_end_matches(['\n', '\r']);
        let is_start = content == "---"
            || (content.starts_with("---") && content[3..].starts_with([' ', '\t']));
        let is_end = content == "..." || content.starts_with("... ");
        if is_start || is_end {
            docs.push((&text[start..pos], start_line));
            if is_start && content.len() > 3 {
                start = pos + 3; // the rest of a `--- ` line is the next document's start
                start_line = n + 1;
            } else {
                start = pos + line.len();
                start_line = n + 2;
            }
        }
        pos += line.len();
    }
    docs.push((&text[start..], start_line));
    docs
}

/// A JSON file: one value or a stream of them (`{..}{..}`, or one per line).
pub fn json_documents(text: &str) -> Vec<Document<'_>> {
    let mut out = Vec::new();
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<serde_json::Value>();
    // The line of the first character of the value, past the whitespace before it.
    let line_at = |offset: usize| {
        let rest = &text[offset..];
        let start = offset + rest.len() - rest.trim_start().len();
        text[..start].matches('\n').count() + 1
    };
    loop {
        let offset = stream.byte_offset();
        match stream.next() {
            None => break,
            Some(Ok(j)) => {
                let raw = &text[offset..stream.byte_offset()];
                let parsed = serde_yaml_ng::to_value(j).map_err(|e| ParseError {
                    message: e.to_string(),
                    line: None,
                });
                if !matches!(parsed, Ok(Value::Null)) {
                    out.push(Document {
                        raw,
                        line: line_at(offset),
                        parsed,
                    });
                }
            }
            Some(Err(e)) => {
                // A JSON stream cannot be resynchronized after an error: the rest is one
                // broken document.
                let message = e.to_string();
                let message = match message.find(" at line ") {
                    Some(i) => message[..i].to_string(),
                    None => message,
                };
                out.push(Document {
                    raw: &text[offset..],
                    line: line_at(offset),
                    parsed: Err(ParseError {
                        message,
                        line: Some(e.line()),
                    }),
                });
                break;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raws(text: &str) -> Vec<&str> {
        split_yaml(text).into_iter().map(|(r, _)| r).collect()
    }

    #[test]
    fn splits_documents_at_markers_only_at_column_zero() {
        let docs = raws("a: 1\n---\nb: |\n  ---\n  x\n--- {c: 3}\n...\n# tail\n");
        assert_eq!(docs.len(), 4, "{docs:?}");
        assert_eq!(docs[0], "a: 1\n");
        assert_eq!(
            docs[1], "b: |\n  ---\n  x\n",
            "verbatim, marker line excluded"
        );
        assert_eq!(raws("a: 1\r\n---\r\nb: 2\r\n"), ["a: 1\r\n", "b: 2\r\n"]);
        assert_eq!(docs[2].trim(), "{c: 3}");
        assert_eq!(
            yaml_documents("---\n---\n# only a comment\n---\nnull\n").len(),
            0
        );
    }

    #[test]
    fn documents_know_their_first_line() {
        let lines: Vec<usize> = split_yaml("a: 1\n---\nb: 2\nc: 3\n--- {d: 4}\n")
            .into_iter()
            .map(|(_, l)| l)
            .collect();
        assert_eq!(lines, [1, 3, 5]);
    }

    #[test]
    fn a_broken_document_is_reported_once_with_its_file_line() {
        // A tab indent, an unterminated quote and a Helm template, between good documents.
        let text = "a: 1\n---\nkind: ConfigMap\nmetadata:\n\tname: x\n---\nb: \"open\n---\n{{- if .Values.x }}\nkind: Pod\n{{- end }}\n---\nc: 3\n";
        let docs = yaml_documents(text);
        let errors: Vec<String> = docs
            .iter()
            .filter_map(|d| d.parsed.as_ref().err().map(ToString::to_string))
            .collect();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].starts_with("line 5:"), "{}", errors[0]);
        assert!(!errors[0].contains("column"), "{}", errors[0]);
        assert_eq!(docs.first().unwrap().parsed.as_ref().unwrap()["a"], 1);
        assert_eq!(docs.last().unwrap().parsed.as_ref().unwrap()["c"], 3);
    }

    #[test]
    fn json_stream_error_ends_the_stream() {
        let docs = json_documents("{\"a\": 1}\n{\"b\": \n");
        assert_eq!(docs.len(), 2);
        assert!(docs[0].parsed.is_ok());
        let e = docs[1].parsed.as_ref().unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert_eq!(docs[1].line, 2);
    }
}
