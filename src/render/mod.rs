//! Rendering: what KOTS does between `upstream/` and `base/`. The Go-template engine with
//! KOTS's delimiters and functions ([`template`]), the app's `kind: Config` and the operator's
//! answers ([`config`]), the customer's license ([`license`]), and Helm charts rendered by a
//! real helm ([`helm`]).

pub mod config;
pub mod helm;
pub mod license;
pub mod template;
