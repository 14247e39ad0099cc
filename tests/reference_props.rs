//! Properties of image references over generated input: valid references round-trip and
//! normalize idempotently, Docker Hub's familiar spellings agree, and invalid input is
//! rejected with a message that says what is wrong.

use kots_bundle::reference::Reference;
use proptest::prelude::*;

/// A path component: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn component() -> impl Strategy<Value = String> {
    "[a-z0-9]{1,8}(([.]|_{1,2}|-{1,3})[a-z0-9]{1,6}){0,2}"
}

fn repository() -> impl Strategy<Value = String> {
    prop::collection::vec(component(), 1..=3).prop_map(|c| c.join("/"))
}

/// Registries as manifests write them: hub, well-known hosts, hosts with ports, IPs.
fn registry() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("docker.io".to_string()),
        Just("quay.io".to_string()),
        Just("localhost:5000".to_string()),
        Just("127.0.0.1:5000".to_string()),
        Just("[::1]:5000".to_string()),
        (
            "[a-z][a-z0-9-]{0,6}[a-z0-9]",
            "[a-z]{2,5}",
            prop::option::of(1u32..=65535)
        )
            .prop_map(|(h, tld, port)| match port {
                Some(p) => format!("{h}.{tld}:{p}"),
                None => format!("{h}.{tld}"),
            }),
    ]
}

fn tag() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_][A-Za-z0-9_.-]{0,30}"
}

fn digest() -> impl Strategy<Value = String> {
    "[0-9a-f]{64}".prop_map(|h| format!("sha256:{h}"))
}

/// A valid reference as text, with its expected parts after normalization.
#[derive(Debug, Clone)]
struct Valid {
    text: String,
    /// `text` in three parts: `registry/` (or nothing), the repository as written, and
    /// the `:tag@digest` suffix.
    parts: (String, String, String),
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

fn valid() -> impl Strategy<Value = Valid> {
    (
        prop::option::of(registry()),
        repository(),
        prop::option::of(tag()),
        prop::option::of(digest()),
    )
        .prop_filter(
            "without a registry, the first component must not look like a host",
            |(reg, repo, _, _)| {
                reg.is_some() || {
                    let first = repo.split('/').next().unwrap();
                    !(repo.contains('/') && (first.contains('.') || first == "localhost"))
                }
            },
        )
        .prop_map(|(reg, repo, tag, digest)| {
            let prefix = reg.as_ref().map(|r| format!("{r}/")).unwrap_or_default();
            let mut suffix = String::new();
            if let Some(t) = &tag {
                suffix.push(':');
                suffix.push_str(t);
            }
            if let Some(d) = &digest {
                suffix.push('@');
                suffix.push_str(d);
            }
            let text = format!("{prefix}{repo}{suffix}");
            let parts = (prefix, repo.clone(), suffix);
            let registry = reg.unwrap_or_else(|| "docker.io".to_string());
            let repository = if registry == "docker.io" && !repo.contains('/') {
                format!("library/{repo}")
            } else {
                repo
            };
            let tag = if tag.is_none() && digest.is_none() {
                Some("latest".to_string())
            } else {
                tag
            };
            Valid {
                text,
                parts,
                registry,
                repository,
                tag,
                digest,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn valid_references_parse_to_their_parts_and_round_trip(v in valid()) {
        let r = Reference::parse(&v.text)
            .map_err(|e| TestCaseError::fail(format!("{}: {e}", v.text)))?;
        prop_assert_eq!(r.registry(), v.registry.as_str());
        prop_assert_eq!(r.repository(), v.repository.as_str());
        prop_assert_eq!(r.tag(), v.tag.as_deref());
        prop_assert_eq!(r.digest().map(|d| d.to_string()), v.digest.clone());
        // parse(to_string(r)) == r, and normalizing twice changes nothing.
        let printed = r.to_string();
        let again = Reference::parse(&printed)
            .map_err(|e| TestCaseError::fail(format!("{printed}: {e}")))?;
        prop_assert_eq!(&again, &r);
        prop_assert_eq!(again.to_string(), printed);
    }

    #[test]
    fn docker_hub_spellings_agree(name in component(), tag in prop::option::of(tag())) {
        let suffix = tag.as_ref().map(|t| format!(":{t}")).unwrap_or_default();
        let want = format!(
            "docker.io/library/{name}:{}",
            tag.as_deref().unwrap_or("latest")
        );
        for spelling in [
            format!("{name}{suffix}"),
            format!("library/{name}{suffix}"),
            format!("docker.io/{name}{suffix}"),
            format!("docker.io/library/{name}{suffix}"),
            format!("index.docker.io/{name}{suffix}"),
            format!("index.docker.io/library/{name}{suffix}"),
        ] {
            let r = Reference::parse(&spelling)
                .map_err(|e| TestCaseError::fail(format!("{spelling}: {e}")))?;
            prop_assert_eq!(r.to_string(), want.clone(), "spelling {}", spelling);
        }
    }

    #[test]
    fn uppercase_in_the_repository_is_rejected(
        v in valid(),
        upper in "[A-Z]",
        at in any::<prop::sample::Index>(),
    ) {
        // Put the capital into the last path component: always repository, never host.
        let (prefix, repo, suffix) = &v.parts;
        let last_start = repo.rfind('/').map_or(0, |i| i + 1);
        let pos = last_start + at.index(repo.len() - last_start + 1);
        let bad = format!("{prefix}{}{upper}{}{suffix}", &repo[..pos], &repo[pos..]);
        let e = Reference::parse(&bad).err().ok_or_else(|| {
            TestCaseError::fail(format!("{bad:?} was accepted"))
        })?;
        let msg = e.to_string();
        prop_assert!(msg.contains("lowercase") && msg.contains(&bad), "{}", msg);
    }

    #[test]
    fn bad_digests_are_rejected(
        v in valid(),
        digest in prop_oneof![
            "[0-9a-f]{1,63}".prop_map(|h| format!("sha256:{h}")),
            "[0-9a-f]{65,80}".prop_map(|h| format!("sha256:{h}")),
            "[0-9a-f]{0,30}[A-FG-Zg-z][0-9a-f]{0,33}".prop_map(|h| format!("sha256:{h}")),
            "[0-9a-f]{64}".prop_map(|h| format!("md5:{h}")),
            "[0-9a-f]{64}",
        ],
    ) {
        let name = v.text.split('@').next().unwrap();
        let bad = format!("{name}@{digest}");
        let e = Reference::parse(&bad).err().ok_or_else(|| {
            TestCaseError::fail(format!("{bad:?} was accepted"))
        })?;
        let msg = e.to_string();
        prop_assert!(msg.contains("digest") && msg.contains(&bad), "{}", msg);
    }
}
