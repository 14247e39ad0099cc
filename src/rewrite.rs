//! Where each image goes in the private registry: parses `--registry-endpoint` and
//! `--image-namespace`, and plans the source -> target name of every image (KOTS-compatible
//! flattening, or the whole source path with `--preserve-paths`).

use std::collections::BTreeMap;
use std::fmt;

use crate::reference::Reference;

/// The private registry images are pushed to: `host[:port]` plus an optional path prefix
/// (`registry.example.com/team` pushes under `team/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]`, as image references spell it.
    pub registry: String,
    /// Path after the host, without leading or trailing `/`.
    pub prefix: Option<String>,
}

/// One image: as the manifests name it, and where it is pushed and deployed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRewrite {
    /// Normalized, as found in the manifests.
    pub source: Reference,
    /// Same tag and digest as `source`, in the private registry.
    pub target: Reference,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RewriteError {
    #[error("invalid registry endpoint {input:?}: {why}")]
    Endpoint { input: String, why: String },
    #[error("invalid image namespace {namespace:?}: {why}")]
    Namespace { namespace: String, why: String },
    #[error(
        "images {first} and {second} would both be pushed to {target}; \
         use --preserve-paths to keep their whole source paths"
    )]
    Collision {
        target: String,
        first: String,
        second: String,
    },
    #[error("image {source_ref} cannot be pushed as {target}: {why}")]
    Target {
        source_ref: String,
        target: String,
        why: String,
    },
}

impl Endpoint {
    /// Accepts `host`, `host:port`, `host/prefix`, with or without `https://`/`http://`
    /// (the seed's examples use both). The scheme is dropped: whether to use TLS is the
    /// registry client's business, not part of image names.
    pub fn parse(input: &str) -> Result<Endpoint, RewriteError> {
        // Shown in errors: never with the credentials someone put in it.
        let bad = |why: &str| RewriteError::Endpoint {
            input: crate::upstream::redact(input),
            why: why.to_string(),
        };
        let s = input.trim();
        if s.is_empty() {
            return Err(bad("empty"));
        }
        let s = match s.split_once("://") {
            Some(("https" | "http", rest)) => rest,
            Some((scheme, _)) => {
                return Err(bad(&format!(
                    "scheme {scheme:?} is not supported; give host[:port][/path]"
                )))
            }
            None => s,
        };
        let s = s.trim_end_matches('/');
        if s.contains(['?', '#', '@']) || s.chars().any(char::is_whitespace) {
            return Err(bad(
                "give host[:port][/path], without credentials, query or spaces",
            ));
        }
        let (host, prefix) = match s.split_once('/') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        // Without a '.' or ':' (or `localhost`) the reference grammar reads the first component
        // of `host/ns/name` as a Docker Hub path, so the deployed images would come from Docker Hub.
        if !(host.contains('.') || host.contains(':') || host == "localhost") {
            return Err(bad(
                "the host must contain a '.' or a ':port', or be localhost; otherwise image \
                 names under it would mean Docker Hub (use e.g. registry.local or host:5000)",
            ));
        }
        let probe = match prefix {
            Some(p) => format!("{host}/{p}/x"),
            None => format!("{host}/x"),
        };
        let parsed = Reference::parse(&probe).map_err(|e| bad(&e.why))?;
        if parsed.registry() != host
            && !(host == "index.docker.io" && parsed.registry() == "docker.io")
        {
            return Err(bad("host is not a valid registry host[:port]"));
        }
        Ok(Endpoint {
            registry: parsed.registry().to_string(),
            prefix: prefix.map(str::to_string),
        })
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.prefix {
            Some(p) => write!(f, "{}/{p}", self.registry),
            None => f.write_str(&self.registry),
        }
    }
}

/// Checks an `--image-namespace` against the repository path grammar.
pub fn validate_namespace(namespace: &str) -> Result<(), RewriteError> {
    let bad = |why: String| RewriteError::Namespace {
        namespace: namespace.to_string(),
        why,
    };
    if namespace.is_empty() {
        return Err(bad(
            "empty; omit --image-namespace for registries without namespaces (ECR)".into(),
        ));
    }
    if namespace.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(bad("must be lowercase".into()));
    }
    if namespace.starts_with('/') || namespace.ends_with('/') {
        return Err(bad("must not start or end with '/'".into()));
    }
    Reference::parse(&format!("registry.invalid/{namespace}/x")).map_err(|e| {
        bad(format!(
            "{}; use lowercase letters and digits, separated by '.', '_', '__', '-' or '/'",
            e.why
        ))
    })?;
    Ok(())
}

/// Plans where every source image goes. Sources are deduplicated; the result is sorted by
/// source. Target repository: `[prefix/][namespace/]<last component of source>`, or with
/// `preserve_paths` `[prefix/][namespace/]<source registry>/<source repository>`.
pub fn plan(
    sources: &[Reference],
    endpoint: &Endpoint,
    namespace: Option<&str>,
    preserve_paths: bool,
) -> Result<Vec<ImageRewrite>, RewriteError> {
    if let Some(ns) = namespace {
        validate_namespace(ns)?;
    }
    let mut sorted: Vec<&Reference> = sources.iter().collect();
    sorted.sort();
    sorted.dedup();

    // Target repository -> the source name that claimed it first.
    let mut claimed: BTreeMap<String, String> = BTreeMap::new();
    let mut out = Vec::with_capacity(sorted.len());
    for source in sorted {
        let target = target_unchecked(source, endpoint, namespace, preserve_paths)?;
        let target_name = target.name();
        match claimed.get(&target_name) {
            Some(first) if *first != source.name() => {
                return Err(RewriteError::Collision {
                    target: target_name,
                    first: first.clone(),
                    second: source.name(),
                });
            }
            Some(_) => {}
            None => {
                claimed.insert(target_name, source.name());
            }
        }
        out.push(ImageRewrite {
            source: source.clone(),
            target,
        });
    }
    Ok(out)
}

/// Where ONE source image goes: the naming [`plan`] uses (without its check that no two sources
/// share a target). Used by KOTS's `LocalImageName`, so a templated image and a plain one land
/// on the same name.
pub fn target_of(
    source: &Reference,
    endpoint: &Endpoint,
    namespace: Option<&str>,
    preserve_paths: bool,
) -> Result<Reference, RewriteError> {
    if let Some(ns) = namespace {
        validate_namespace(ns)?;
    }
    target_unchecked(source, endpoint, namespace, preserve_paths)
}

/// [`target_of`] for a namespace already validated.
fn target_unchecked(
    source: &Reference,
    endpoint: &Endpoint,
    namespace: Option<&str>,
    preserve_paths: bool,
) -> Result<Reference, RewriteError> {
    let mut repo = String::new();
    for part in [endpoint.prefix.as_deref(), namespace]
        .into_iter()
        .flatten()
    {
        repo.push_str(part);
        repo.push('/');
    }
    if preserve_paths {
        repo.push_str(&registry_as_path(source.registry()));
        repo.push('/');
        repo.push_str(source.repository());
    } else {
        repo.push_str(source.last_component());
    }
    Reference::new(
        &endpoint.registry,
        &repo,
        source.tag(),
        source.digest().cloned(),
    )
    .map_err(|e| RewriteError::Target {
        source_ref: source.to_string(),
        target: format!("{}/{repo}", endpoint.registry),
        why: e.why,
    })
}

/// A registry as a repository path component: `localhost:5000` -> `localhost_5000`
/// (`:` is not allowed in paths; `_` never appears in host names, so this stays unambiguous).
fn registry_as_path(registry: &str) -> String {
    registry.to_ascii_lowercase().replace(':', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Reference {
        Reference::parse(s).unwrap()
    }

    fn ep(s: &str) -> Endpoint {
        Endpoint::parse(s).unwrap()
    }

    #[test]
    fn an_endpoint_error_never_shows_credentials() {
        let e = Endpoint::parse("https://u:secret@reg.example.com").unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
    }

    #[test]
    fn endpoint_forms() {
        assert_eq!(
            ep("https://registry.somebigbank.com"),
            Endpoint {
                registry: "registry.somebigbank.com".into(),
                prefix: None
            }
        );
        assert_eq!(
            ep("host.local:5000/"),
            Endpoint {
                registry: "host.local:5000".into(),
                prefix: None
            }
        );
        assert_eq!(
            ep("localhost:5000"),
            Endpoint {
                registry: "localhost:5000".into(),
                prefix: None
            }
        );
        assert_eq!(
            ep("http://reg.example.com/ns1/team"),
            Endpoint {
                registry: "reg.example.com".into(),
                prefix: Some("ns1/team".into())
            }
        );
        assert_eq!(ep("reg.example.com/ns1").to_string(), "reg.example.com/ns1");
    }

    #[test]
    fn endpoint_rejects_garbage() {
        for (input, why) in [
            ("", "empty"),
            ("ftp://x.com", "scheme"),
            ("myregistry", "'.' or a ':port'"),
            ("user:pw@reg.com", "credentials"),
            ("reg.com/Team", "lowercase"),
            ("reg.com:99999", "port"),
            ("reg..com", "host"),
            ("https://", "no host"),
        ] {
            let e = Endpoint::parse(input).unwrap_err().to_string();
            assert!(e.contains(why), "{input}: {e}");
        }
    }

    #[test]
    fn namespace_validation() {
        validate_namespace("app").unwrap();
        validate_namespace("team/app-1").unwrap();
        for (ns, why) in [
            ("App", "lowercase"),
            ("a b", "whitespace"),
            ("/a", "start or end"),
            ("", "empty"),
            ("a..b", "component"),
        ] {
            let e = validate_namespace(ns).unwrap_err().to_string();
            assert!(e.contains(why), "{ns}: {e}");
        }
    }

    #[test]
    fn flattens_to_last_component() {
        let d = format!("sha256:{}", "b".repeat(64));
        let sources = [
            r("nginx:1.25"),
            r("quay.io/org/sub/app:2"),
            r(&format!("ghcr.io/x/y:1@{d}")),
            r(&format!("ghcr.io/x/z@{d}")),
        ];
        let plan = plan(&sources, &ep("https://reg.local"), Some("app"), false).unwrap();
        let got: BTreeMap<String, String> = plan
            .iter()
            .map(|p| (p.source.to_string(), p.target.to_string()))
            .collect();
        assert_eq!(
            got["docker.io/library/nginx:1.25"],
            "reg.local/app/nginx:1.25"
        );
        assert_eq!(got["quay.io/org/sub/app:2"], "reg.local/app/app:2");
        assert_eq!(
            got[&format!("ghcr.io/x/y:1@{d}")],
            format!("reg.local/app/y:1@{d}")
        );
        assert_eq!(
            got[&format!("ghcr.io/x/z@{d}")],
            format!("reg.local/app/z@{d}")
        );
    }

    #[test]
    fn no_namespace_and_prefix() {
        let p = plan(
            &[r("quay.io/org/app:2")],
            &ep("123.dkr.ecr.us-east-1.amazonaws.com"),
            None,
            false,
        )
        .unwrap();
        assert_eq!(
            p[0].target.to_string(),
            "123.dkr.ecr.us-east-1.amazonaws.com/app:2"
        );
        let p = plan(
            &[r("quay.io/org/app:2")],
            &ep("reg.local/pre"),
            Some("ns"),
            false,
        )
        .unwrap();
        assert_eq!(p[0].target.to_string(), "reg.local/pre/ns/app:2");
    }

    #[test]
    fn same_name_different_tags_is_fine_and_duplicates_collapse() {
        let p = plan(
            &[r("nginx:1"), r("nginx:2"), r("docker.io/library/nginx:1")],
            &ep("reg.local"),
            Some("ns"),
            false,
        )
        .unwrap();
        assert_eq!(p.len(), 2);
    }

    #[test]
    fn collision_names_both_and_suggests_preserve_paths() {
        let sources = [r("quay.io/a/app:1"), r("ghcr.io/b/app:1")];
        let e = plan(&sources, &ep("reg.local"), Some("ns"), false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("quay.io/a/app") && e.contains("ghcr.io/b/app"),
            "{e}"
        );
        assert!(
            e.contains("reg.local/ns/app") && e.contains("--preserve-paths"),
            "{e}"
        );

        let p = plan(&sources, &ep("reg.local"), Some("ns"), true).unwrap();
        let targets: Vec<String> = p.iter().map(|p| p.target.to_string()).collect();
        assert_eq!(
            targets,
            [
                "reg.local/ns/ghcr.io/b/app:1",
                "reg.local/ns/quay.io/a/app:1"
            ]
        );
    }

    #[test]
    fn preserve_paths_keeps_registry_and_port() {
        let p = plan(
            &[r("localhost:5000/a/b:1"), r("nginx")],
            &ep("reg.local"),
            None,
            true,
        )
        .unwrap();
        let targets: Vec<String> = p.iter().map(|p| p.target.to_string()).collect();
        assert_eq!(
            targets,
            [
                "reg.local/docker.io/library/nginx:latest",
                "reg.local/localhost_5000/a/b:1"
            ]
        );
    }

    #[test]
    fn target_of_matches_plan() {
        let sources = [
            r("nginx:1.7.9"),
            r("quay.io/org/sub/app:2"),
            r("localhost:5000/a/b:1"),
        ];
        for preserve in [false, true] {
            let planned = plan(&sources, &ep("reg.local/pre"), Some("ns"), preserve).unwrap();
            for p in planned {
                let one = target_of(&p.source, &ep("reg.local/pre"), Some("ns"), preserve).unwrap();
                assert_eq!(one, p.target);
            }
        }
        assert_eq!(
            target_of(&r("nginx:1.7.9"), &ep("reg.local"), Some("app"), false)
                .unwrap()
                .to_string(),
            "reg.local/app/nginx:1.7.9"
        );
        assert!(target_of(&r("nginx"), &ep("reg.local"), Some("Bad"), false).is_err());
    }

    #[test]
    fn bad_namespace_fails_plan() {
        let e = plan(&[r("nginx")], &ep("reg.local"), Some("Bad"), false).unwrap_err();
        assert!(matches!(e, RewriteError::Namespace { .. }), "{e}");
    }
}
