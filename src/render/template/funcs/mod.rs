//! The function map KOTS templates see: Sprig's (`sprig.TxtFuncMap()`, which KOTS starts from)
//! and KOTS's own contexts on top, each group in its own file with Go's semantics.

mod kots_config;
mod kots_environment;
mod kots_license;
mod kots_static;
mod random;
mod sprig_defaults;
mod sprig_dicts;
mod sprig_encoding;
mod sprig_lists;
mod sprig_math;
mod sprig_misc;
mod sprig_strings;
mod unsupported;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use gotmpl::{FuncMap, Value};

use super::args::FnResult;
use super::Context;

/// What the functions of one render share.
pub struct Env {
    pub ctx: Context,
    /// Set by every random function, so a generated value can be saved (see
    /// [`super::render_tracked`]).
    pub generated: Arc<AtomicBool>,
}

/// A function map under construction.
pub struct Funcs(FuncMap);

impl Funcs {
    pub fn add(&mut self, name: &str, f: impl Fn(&[Value]) -> FnResult + Send + Sync + 'static) {
        self.0.insert(name.to_string(), Arc::new(f));
    }
}

/// All functions, bound to `env`. Later groups override earlier ones, as KOTS's contexts
/// override Sprig.
pub fn build(env: Arc<Env>) -> FuncMap {
    let mut m = Funcs(FuncMap::new());
    unsupported::register(&mut m);
    sprig_strings::register(&mut m);
    sprig_defaults::register(&mut m);
    sprig_encoding::register(&mut m);
    sprig_lists::register(&mut m);
    sprig_dicts::register(&mut m);
    sprig_math::register(&mut m);
    sprig_misc::register(&mut m);
    random::register(&mut m, &env);
    kots_static::register(&mut m, &env);
    kots_license::register(&mut m, &env);
    kots_environment::register(&mut m, &env);
    kots_config::register(&mut m, &env);
    // Go's own `print`, `println` and `printf`, with Go's float formatting.
    m.add("print", |a| {
        Ok(super::args::string(super::gofmt::sprint(a)))
    });
    m.add("println", |a| {
        Ok(super::args::string(super::gofmt::sprintln(a)))
    });
    m.add("printf", |a| {
        let args = super::args::Args::at_least("printf", a, 1)?;
        Ok(super::args::string(super::gofmt::sprintf(
            args.str(0)?,
            &a[1..],
        )))
    });
    m.0
}
