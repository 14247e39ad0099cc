//! kots-bundle: move a Kubernetes application and every image it needs into an airgapped
//! network.
//!
//! The crate is cut like go-containerregistry / containers/image: images live in
//! *transports* ([`registry`], [`archive`], [`layout`]) and one engine ([`copy`]) moves them
//! between any two; [`manifest`] is what they all speak. `export`, `import` and `pull` are
//! that engine with different ends; the KOTS parts are [`upstream`] (where manifests come
//! from), [`discover`] (which images they need) and [`overlay`] (the app directory that
//! deploys them from the private registry). Dependencies point one way: the engine knows no
//! transport, and `scripts/module-deps` fails on a cycle between modules.

pub mod appstore;
pub mod archive;
pub mod attached;
pub mod cli;
pub mod copy;
pub mod differential;
pub mod digest;
pub mod discover;
pub mod export;
pub mod fsutil;
pub mod import;
pub mod inventory;
pub mod kustomize;
pub mod layout;
pub mod license;
pub mod manifest;
pub mod names;
pub mod overlay;
pub mod progress;
pub mod pull;
pub mod reference;
pub mod registry;
pub mod render;
pub mod rewrite;
pub mod serve;
pub(crate) mod subprocess;
pub mod upstream;
pub mod warnings;
pub mod yaml;
