//! One pass of the engine: parse with `gotmpl` (the Rust port of Go's `text/template`), check
//! the functions Go checks at parse time, and execute.
//!
//! Two things `gotmpl` does differently from Go are handled here, on the parsed tree, so the
//! template's meaning does not change:
//! - it prints floats (and lists/maps holding them) with Rust's formatting (`1000000` where Go
//!   prints `1e+06`): every output action gets a last pipeline stage that formats the value as
//!   Go's `fmt` does;
//! - its execution errors carry no position: before each action and control node a marker
//!   action records the node's line, so an error is reported at the line of the action that
//!   failed.
//!
//! It also looks functions up only when they run; Go rejects an unknown function at parse time,
//! even in a branch that is never taken, and so does [`check_functions`]. And it accepts
//! unbalanced blocks, which [`super::blocks`] rejects first.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use gotmpl::parse::{
    ActionNode, CommandNode, Expr, ListNode, Node, Number, Parser, PipeNode, Pos, SmolStr,
};
use gotmpl::{FuncMap, Template, TemplateError as GoError, Value};

use super::gofmt::format_value;

/// The marker function: records the line of the action about to run.
pub const LINE_FN: &str = "__kotsBundleLine";
/// The output stage: formats a printed value as Go's `fmt` does.
pub const PRINT_FN: &str = "__kotsBundlePrint";
const MAIN: &str = "__kotsBundleMain";

/// `gotmpl`'s built-in functions (Go's `text/template` builtins).
const BUILTINS: &[&str] = &[
    "and", "or", "not", "len", "index", "slice", "call", "print", "printf", "println", "html",
    "js", "urlquery", "eq", "ne", "lt", "le", "gt", "ge",
];

/// A failed pass: where (1-based line in the pass's input) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassError {
    pub line: usize,
    pub message: String,
}

/// The engine's own functions, which every pass adds to the caller's.
pub fn engine_funcs(funcs: &mut FuncMap, line: Arc<AtomicUsize>) {
    funcs.insert(
        LINE_FN.into(),
        Arc::new(move |args: &[Value]| {
            if let Some(Value::Int(n)) = args.first() {
                line.store(*n as usize, Ordering::Relaxed);
            }
            Ok(Value::String("".into()))
        }),
    );
    funcs.insert(
        PRINT_FN.into(),
        Arc::new(|args: &[Value]| {
            Ok(match args.last() {
                Some(Value::String(s)) => Value::String(s.clone()),
                Some(Value::Nil) | None => Value::String("<no value>".into()),
                Some(v) => Value::String(format_value(v).into()),
            })
        }),
    );
}

/// Renders `text` once with the delimiters `left`/`right`. `funcs` must include
/// [`engine_funcs`] bound to `line`.
pub fn run_pass(
    name: &str,
    text: &str,
    left: &str,
    right: &str,
    funcs: &FuncMap,
    line: &Arc<AtomicUsize>,
) -> Result<String, PassError> {
    if !text.contains(left) {
        return Ok(text.to_string());
    }
    super::blocks::check(text, left, right)?;
    let parser = Parser::with_name(Some(name), text, left, right).map_err(parse_error)?;
    let (tree, defines) = parser.parse().map_err(parse_error)?;

    let known: BTreeSet<&str> = funcs
        .keys()
        .map(String::as_str)
        .chain(BUILTINS.iter().copied())
        .collect();
    check_functions(&tree, &known)?;
    for d in &defines {
        check_functions(&d.body, &known)?;
    }

    let mut template = Template::new(name).funcs(funcs.clone());
    for d in defines {
        template = template.add_parse_tree(&d.name, instrument(d.body));
    }
    template = template.add_parse_tree(MAIN, instrument(tree));
    line.store(1, Ordering::Relaxed);
    template
        .execute_template_to_string(MAIN, &Value::Nil)
        .map_err(|e| PassError {
            line: line.load(Ordering::Relaxed),
            message: exec_message(&e),
        })
}

fn parse_error(e: GoError) -> PassError {
    match e {
        GoError::Parse { line, message, .. } | GoError::Lex { line, message, .. } => PassError {
            line: line.max(1),
            message,
        },
        other => PassError {
            line: 1,
            message: other.to_string(),
        },
    }
}

fn exec_message(e: &GoError) -> String {
    match e {
        GoError::Exec(m) => m.clone(),
        GoError::UndefinedFunction(f) => format!("function {f:?} not defined"),
        GoError::ArgCount {
            name,
            expected,
            got,
        } => format!("wrong number of args for {name}: want {expected} got {got}"),
        other => other.to_string(),
    }
}

/// Go's parse-time check: every function named in the template exists.
fn check_functions(list: &ListNode, known: &BTreeSet<&str>) -> Result<(), PassError> {
    for node in &list.nodes {
        match node {
            Node::Action(a) => check_pipe(&a.pipe, known)?,
            Node::If(b) | Node::Range(b) | Node::With(b) => {
                check_pipe(&b.pipe, known)?;
                check_functions(&b.body, known)?;
                if let Some(e) = &b.else_body {
                    check_functions(e, known)?;
                }
            }
            Node::Template(t) => {
                if let Some(p) = &t.pipe {
                    check_pipe(p, known)?;
                }
            }
            Node::List(l) => check_functions(l, known)?,
            Node::Define(d) => check_functions(&d.body, known)?,
            Node::Text(_) | Node::Break(_) | Node::Continue(_) => {}
        }
    }
    Ok(())
}

fn check_pipe(pipe: &PipeNode, known: &BTreeSet<&str>) -> Result<(), PassError> {
    for cmd in &pipe.commands {
        for arg in &cmd.args {
            check_expr(arg, known)?;
        }
    }
    Ok(())
}

fn check_expr(expr: &Expr, known: &BTreeSet<&str>) -> Result<(), PassError> {
    match expr {
        Expr::Identifier(pos, name) if !known.contains(name.as_str()) => Err(PassError {
            line: pos.line.max(1),
            message: format!("function {:?} not defined", name.as_str()),
        }),
        Expr::Pipe(_, p) => check_pipe(p, known),
        Expr::Chain(_, inner, _) => check_expr(inner, known),
        _ => Ok(()),
    }
}

fn marker(pos: Pos) -> Node {
    Node::Action(ActionNode {
        pos,
        pipe: PipeNode {
            pos,
            decl: Vec::new(),
            commands: vec![CommandNode {
                pos,
                args: vec![
                    Expr::Identifier(pos, SmolStr::new(LINE_FN)),
                    Expr::Number(pos, Number::Int(pos.line as i64)),
                ],
            }],
            is_assign: false,
        },
    })
}

/// Adds the line markers and the Go output stage (see the module doc).
fn instrument(list: ListNode) -> ListNode {
    let mut nodes = Vec::with_capacity(list.nodes.len() * 2);
    for node in list.nodes {
        match node {
            Node::Action(mut a) => {
                nodes.push(marker(a.pos));
                if a.pipe.decl.is_empty() {
                    let pos = a.pipe.pos;
                    a.pipe.commands.push(CommandNode {
                        pos,
                        args: vec![Expr::Identifier(pos, SmolStr::new(PRINT_FN))],
                    });
                }
                nodes.push(Node::Action(a));
            }
            Node::If(mut b) => {
                nodes.push(marker(b.pos));
                b.body = instrument(b.body);
                b.else_body = b.else_body.map(instrument);
                nodes.push(Node::If(b));
            }
            Node::Range(mut b) => {
                nodes.push(marker(b.pos));
                b.body = instrument(b.body);
                b.else_body = b.else_body.map(instrument);
                nodes.push(Node::Range(b));
            }
            Node::With(mut b) => {
                nodes.push(marker(b.pos));
                b.body = instrument(b.body);
                b.else_body = b.else_body.map(instrument);
                nodes.push(Node::With(b));
            }
            Node::Template(t) => {
                nodes.push(marker(t.pos));
                nodes.push(Node::Template(t));
            }
            Node::List(l) => nodes.push(Node::List(instrument(l))),
            other => nodes.push(other),
        }
    }
    ListNode {
        pos: list.pos,
        nodes,
    }
}
