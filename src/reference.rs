//! Image references, parsed and normalized the way the Docker/OCI reference grammar does
//! (distribution/reference): `nginx` is `docker.io/library/nginx:latest`, a first component
//! with a `.` or `:` (or `localhost`) is a registry, `name:tag@sha256:...` keeps both.

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;

pub const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_LEGACY: &str = "index.docker.io";
const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

/// A fully normalized image reference: registry, repository, and a tag, a digest, or both.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference {input:?}: {why}")]
pub struct ReferenceError {
    pub input: String,
    pub why: String,
}

fn err(input: &str, why: impl Into<String>) -> ReferenceError {
    ReferenceError {
        input: input.to_string(),
        why: why.into(),
    }
}

impl Reference {
    /// Parses and normalizes. A reference with neither tag nor digest gets `:latest`.
    pub fn parse(input: &str) -> Result<Reference, ReferenceError> {
        if input.is_empty() {
            return Err(err(input, "empty"));
        }
        if input.trim() != input || input.chars().any(char::is_whitespace) {
            return Err(err(input, "contains whitespace"));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((r, d)) => {
                let digest = d.parse::<Digest>().map_err(|_| {
                    err(
                        input,
                        format!("digest {d:?} is not sha256:<64 lowercase hex>"),
                    )
                })?;
                (r, Some(digest))
            }
            None => (input, None),
        };
        // A tag is after the last ':' that comes after the last '/' (a ':' before that is a port).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                (&rest[..at], Some(rest[at + 1..].to_string()))
            }
            None => (rest, None),
        };
        if let Some(t) = &tag {
            validate_tag(input, t)?;
        }
        let (registry, repository) = split_registry(input, name)?;
        let tag = if tag.is_none() && digest.is_none() {
            Some("latest".to_string())
        } else {
            tag
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// Builds a reference from parts, validating each as [`Reference::parse`] would.
    pub fn new(
        registry: &str,
        repository: &str,
        tag: Option<&str>,
        digest: Option<Digest>,
    ) -> Result<Reference, ReferenceError> {
        let mut s = format!("{registry}/{repository}");
        if let Some(t) = tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &digest {
            s.push('@');
            s.push_str(d.as_str());
        }
        let r = Reference::parse(&s)?;
        if r.registry != registry || r.repository != repository {
            return Err(err(&s, "registry or repository is not in normalized form"));
        }
        Ok(r)
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }
    pub fn repository(&self) -> &str {
        &self.repository
    }
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The last path component of the repository (`nginx` of `docker.io/library/nginx`).
    pub fn last_component(&self) -> &str {
        self.repository
            .rsplit('/')
            .next()
            .unwrap_or(&self.repository)
    }

    /// What to ask the registry for: the digest when pinned (it is what the user deploys),
    /// else the tag.
    pub fn manifest_reference(&self) -> &str {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.as_str(),
            (None, Some(t)) => t,
            (None, None) => "latest",
        }
    }

    /// The same image with a different tag/digest.
    pub fn with_tag_digest(&self, tag: Option<&str>, digest: Option<Digest>) -> Reference {
        Reference {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: tag.map(str::to_string),
            digest,
        }
    }

    /// Every spelling of this name a manifest may use and that kustomize's `images:` matches
    /// literally: for `docker.io/library/nginx` that is `nginx`, `library/nginx`,
    /// `docker.io/nginx`, `docker.io/library/nginx` and the `index.docker.io` forms.
    pub fn familiar_names(&self) -> Vec<String> {
        let mut out = vec![self.name()];
        if self.registry == DOCKER_HUB {
            out.push(self.repository.clone());
            out.push(format!("{DOCKER_HUB_LEGACY}/{}", self.repository));
            if let Some(short) = self.repository.strip_prefix("library/") {
                out.push(short.to_string());
                out.push(format!("{DOCKER_HUB}/{short}"));
                out.push(format!("{DOCKER_HUB_LEGACY}/{short}"));
            }
        }
        out
    }
}

fn validate_tag(input: &str, tag: &str) -> Result<(), ReferenceError> {
    if tag.is_empty() {
        return Err(err(input, "empty tag"));
    }
    if tag.len() > MAX_TAG_LEN {
        return Err(err(
            input,
            format!("tag longer than {MAX_TAG_LEN} characters"),
        ));
    }
    let mut chars = tag.chars();
    let first = chars.next().unwrap();
    if !(first.is_ascii_alphanumeric() || first == '_') {
        return Err(err(
            input,
            format!("tag {tag:?} must start with a letter, digit or '_'"),
        ));
    }
    if let Some(c) = chars.find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))) {
        return Err(err(input, format!("tag {tag:?} contains {c:?}")));
    }
    Ok(())
}

/// Splits `name` into (registry, repository), applying Docker Hub's defaults.
fn split_registry(input: &str, name: &str) -> Result<(String, String), ReferenceError> {
    let (registry, path) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => (DOCKER_HUB.to_string(), name.to_string()),
    };
    validate_registry(input, &registry)?;
    let registry = if registry == DOCKER_HUB_LEGACY {
        DOCKER_HUB.to_string()
    } else {
        registry
    };
    let path = if registry == DOCKER_HUB && !path.contains('/') {
        format!("library/{path}")
    } else {
        path
    };
    validate_path(input, &path)?;
    if registry.len() + 1 + path.len() > MAX_NAME_LEN {
        return Err(err(
            input,
            format!("name longer than {MAX_NAME_LEN} characters"),
        ));
    }
    Ok((registry, path))
}

fn validate_registry(input: &str, registry: &str) -> Result<(), ReferenceError> {
    let (host, port) = match registry.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || registry.starts_with('[') => (h, Some(p)),
        _ => (registry, None),
    };
    if let Some(p) = port {
        if p.is_empty()
            || !p.bytes().all(|b| b.is_ascii_digit())
            || p.parse::<u32>().map_or(true, |n| n > 65535)
        {
            return Err(err(input, format!("registry port {p:?} is not a number")));
        }
    }
    if host.starts_with('[') && host.ends_with(']') {
        let inner = &host[1..host.len() - 1];
        if inner.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(err(
                input,
                format!("registry {host:?} is not a valid IPv6 address"),
            ));
        }
        return Ok(());
    }
    let ok = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if !ok {
        return Err(err(
            input,
            format!("registry host {host:?} is not a valid host name"),
        ));
    }
    Ok(())
}

fn validate_path(input: &str, path: &str) -> Result<(), ReferenceError> {
    if path.is_empty() {
        return Err(err(input, "empty repository name"));
    }
    for component in path.split('/') {
        if component.is_empty() {
            return Err(err(input, "repository has an empty path component"));
        }
        if component.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(err(input, "repository name must be lowercase"));
        }
        if !valid_component(component) {
            return Err(err(
                input,
                format!(
                    "repository component {component:?} must be lowercase letters and digits, separated by '.', '_', '__' or dashes"
                ),
            ));
        }
    }
    Ok(())
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    let mut i = 0;
    let run = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && alnum(b[*i]) {
            *i += 1;
        }
        *i > start
    };
    if !run(&mut i) {
        return false;
    }
    while i < b.len() {
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if !run(&mut i) {
            return false;
        }
    }
    true
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({self})")
    }
}

impl serde::Serialize for Reference {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Reference {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Reference::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn normalizes_like_docker() {
        assert_eq!(n("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(n("library/redis:7"), "docker.io/library/redis:7");
        assert_eq!(n("index.docker.io/foo/bar"), "docker.io/foo/bar:latest");
        assert_eq!(n("localhost:5000/a/b:1"), "localhost:5000/a/b:1");
        assert_eq!(n("localhost/a"), "localhost/a:latest");
        assert_eq!(n("127.0.0.1:5000/x"), "127.0.0.1:5000/x:latest");
        assert_eq!(
            n("quay.io/metallb/speaker:main"),
            "quay.io/metallb/speaker:main"
        );
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            n(&format!("nginx:1.25@{d}")),
            format!("docker.io/library/nginx:1.25@{d}")
        );
        assert_eq!(
            n(&format!("nginx@{d}")),
            format!("docker.io/library/nginx@{d}")
        );
    }

    #[test]
    fn rejects_with_reason() {
        for (input, why) in [
            ("Nginx", "lowercase"),
            ("", "empty"),
            ("nginx:", "empty tag"),
            ("nginx:-x", "must start"),
            ("a//b", "empty path component"),
            ("nginx@sha256:abc", "digest"),
            ("foo:99999/x", "port"),
            ("ng inx", "whitespace"),
            ("repl{{local}}", "component"),
        ] {
            let e = Reference::parse(input).unwrap_err();
            assert!(e.to_string().contains(why), "{input}: {e}");
        }
    }

    #[test]
    fn familiar_names_cover_hub_spellings() {
        let r = Reference::parse("nginx:1").unwrap();
        let names = r.familiar_names();
        for s in [
            "nginx",
            "library/nginx",
            "docker.io/nginx",
            "docker.io/library/nginx",
        ] {
            assert!(names.contains(&s.to_string()), "{s} missing from {names:?}");
        }
        let q = Reference::parse("quay.io/a/b").unwrap();
        assert_eq!(q.familiar_names(), vec!["quay.io/a/b".to_string()]);
        assert_eq!(q.last_component(), "b");
    }
}
