//! Rendering: what KOTS does between `upstream/` and `base/`. The Go-template engine with
//! KOTS's delimiters and functions ([`template`]), the app's `kind: Config` and the operator's
//! answers ([`config`]), and the customer's license ([`license`]).

pub mod config;
pub mod license;
pub mod template;
