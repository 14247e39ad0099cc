//! What `serve` answers for: every repository name an image of the archive is reachable
//! under, and per repository its tags, manifests and blobs. Built once at start from the
//! archive's manifests (read and verified; layers are not touched).
//!
//! Each source image is served under
//! - its repository path as the source registry has it (`library/nginx`, `org/app`): what a
//!   containerd or docker mirror of that registry asks for;
//! - its whole name as a path (`docker.io/library/nginx`, `quay.io/org/app`; a `host:port`
//!   registry as `host_port`), which never collides;
//! - the name `import` would push it under ([`crate::rewrite::plan`], with the same
//!   `--image-namespace` and `--preserve-paths`).
//!
//! A name two different source images would share is not served (with a warning), except
//! the import names, where it is an error as it is for import.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::copy::ResolvedImage;
use crate::digest::Digest;
use crate::reference::Reference;
use crate::rewrite::{self, Endpoint};

/// A manifest or index the archive holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestInfo {
    pub media_type: String,
    pub size: u64,
}

/// One served repository.
#[derive(Debug, Default)]
pub struct Repo {
    pub tags: BTreeMap<String, Digest>,
    pub manifests: HashMap<Digest, ManifestInfo>,
    /// Every blob reachable from this repository (layers, configs and the manifests
    /// themselves, as registries serve manifests as blobs too), with its size.
    pub blobs: HashMap<Digest, u64>,
}

impl Repo {
    /// A manifest by tag or digest: its digest and what it is.
    pub fn manifest(&self, reference: &str) -> Option<(Digest, &ManifestInfo)> {
        let digest = match reference.parse::<Digest>() {
            Ok(d) => d,
            Err(_) => self.tags.get(reference)?.clone(),
        };
        let info = self.manifests.get(&digest)?;
        Some((digest, info))
    }
}

/// The names of [`Catalog::build`]: how import would name images, for the third form.
#[derive(Debug, Clone, Default)]
pub struct Naming {
    pub namespace: Option<String>,
    pub preserve_paths: bool,
}

#[derive(Debug, Default)]
pub struct Catalog {
    pub repos: BTreeMap<String, Repo>,
    /// Names left out because two source images would share them: (name, the sources).
    pub ambiguous: Vec<(String, Vec<String>)>,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error(transparent)]
    Rewrite(#[from] rewrite::RewriteError),
}

impl Catalog {
    pub fn build(images: &[ResolvedImage], naming: &Naming) -> Result<Catalog, CatalogError> {
        let sources: Vec<Reference> = images.iter().map(|i| i.source.clone()).collect();
        // Only the repository path of the plan's targets is used: the host is a placeholder.
        let endpoint = Endpoint {
            registry: "serve.invalid".into(),
            prefix: None,
        };
        let plan = rewrite::plan(
            &sources,
            &endpoint,
            naming.namespace.as_deref(),
            naming.preserve_paths,
        )?;
        let import_name: HashMap<&Reference, String> = plan
            .iter()
            .map(|r| (&r.source, r.target.repository().to_string()))
            .collect();

        // Served name -> the source names (registry/repository) that would claim it.
        let mut claims: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut names_of: Vec<Vec<String>> = Vec::with_capacity(images.len());
        for image in images {
            let src = &image.source;
            let mut names = vec![
                src.repository().to_string(),
                format!("{}/{}", path_of_registry(src.registry()), src.repository()),
            ];
            if let Some(n) = import_name.get(src) {
                names.push(n.clone());
            }
            names.sort();
            names.dedup();
            for n in &names {
                claims.entry(n.clone()).or_default().insert(src.name());
            }
            names_of.push(names);
        }
        let mut catalog = Catalog::default();
        for (name, owners) in &claims {
            if owners.len() > 1 {
                catalog
                    .ambiguous
                    .push((name.clone(), owners.iter().cloned().collect()));
            }
        }
        for (image, names) in images.iter().zip(names_of) {
            for name in names {
                if claims[&name].len() > 1 {
                    continue;
                }
                catalog.repos.entry(name).or_default().add(image);
            }
        }
        Ok(catalog)
    }

    /// The repository `name`; with a mirror's `ns=REGISTRY` hint (containerd sends it), the
    /// whole-name form of that registry first, so `org/app?ns=quay.io` finds
    /// `quay.io/org/app` even where `org/app` alone is ambiguous.
    pub fn repo(&self, name: &str, ns: Option<&str>) -> Option<&Repo> {
        if let Some(ns) = ns {
            let registry = if ns == "index.docker.io" || ns == "registry-1.docker.io" {
                crate::reference::DOCKER_HUB
            } else {
                ns
            };
            let full = format!("{}/{name}", path_of_registry(registry));
            if let Some(r) = self.repos.get(&full) {
                return Some(r);
            }
        }
        self.repos.get(name)
    }
}

impl Repo {
    fn add(&mut self, image: &ResolvedImage) {
        if let Some(tag) = image.source.tag() {
            // A tag named twice (`x:1` and `x:1@sha256:...`) means what the tag-only
            // reference found; the reader already refuses one reference with two digests.
            let tag_only = image.source.digest().is_none();
            if tag_only || !self.tags.contains_key(tag) {
                self.tags.insert(tag.to_string(), image.top.digest.clone());
            }
        }
        for m in std::iter::once(&image.top).chain(image.children.iter()) {
            self.manifests.insert(
                m.digest.clone(),
                ManifestInfo {
                    media_type: m.media_type.clone(),
                    size: m.bytes.len() as u64,
                },
            );
        }
        for d in image.all_blobs() {
            self.blobs.insert(d.digest, d.size);
        }
    }
}

/// A registry as a repository path component, as `--preserve-paths` spells it
/// (`localhost:5000` -> `localhost_5000`).
fn path_of_registry(registry: &str) -> String {
    registry.to_ascii_lowercase().replace(':', "_")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Descriptor, Manifest};
    use bytes::Bytes;

    fn image(reference: &str, seed: &str) -> ResolvedImage {
        let bytes = Bytes::from(format!("{{\"m\":\"{seed}\"}}"));
        let layer = Digest::of(seed.as_bytes());
        ResolvedImage {
            source: Reference::parse(reference).unwrap(),
            top: Manifest {
                digest: Digest::of(&bytes),
                bytes,
                media_type: crate::manifest::OCI_MANIFEST.into(),
            },
            children: vec![],
            blobs: vec![Descriptor {
                digest: layer,
                size: seed.len() as u64,
                media_type: "x".into(),
            }],
            platforms: vec![],
            fetched: Default::default(),
        }
    }

    #[test]
    fn every_image_is_served_under_its_source_whole_and_import_names() {
        let images = [
            image("quay.io/org/app:1", "a"),
            image("localhost:5000/tools/x:2", "b"),
        ];
        let c = Catalog::build(
            &images,
            &Naming {
                namespace: Some("myapp".into()),
                preserve_paths: false,
            },
        )
        .unwrap();
        let names: Vec<&str> = c.repos.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "localhost_5000/tools/x",
                "myapp/app",
                "myapp/x",
                "org/app",
                "quay.io/org/app",
                "tools/x"
            ]
        );
        let (d, info) = c.repos["myapp/app"].manifest("1").unwrap();
        assert_eq!(d, images[0].top.digest);
        assert_eq!(info.media_type, crate::manifest::OCI_MANIFEST);
        assert!(c.repos["myapp/app"].manifest(d.as_str()).is_some());
        assert!(c.repos["myapp/app"].manifest("2").is_none());
        // Blobs are per repository: x's layer is not reachable through app.
        assert!(!c.repos["org/app"]
            .blobs
            .contains_key(&images[1].blobs[0].digest));
    }

    #[test]
    fn a_short_name_two_registries_share_is_left_out_and_ns_picks_one() {
        let images = [
            image("quay.io/org/app:1", "a"),
            image("ghcr.io/org/app:1", "b"),
        ];
        let c = Catalog::build(&images, &Naming::default());
        // Import names collide too (both `app`): import refuses, so does serve.
        assert!(matches!(c, Err(CatalogError::Rewrite(_))), "{c:?}");
        let c = Catalog::build(
            &images,
            &Naming {
                namespace: None,
                preserve_paths: true,
            },
        )
        .unwrap();
        assert!(!c.repos.contains_key("org/app"));
        assert_eq!(c.ambiguous.len(), 1, "{:?}", c.ambiguous);
        let via_ns = c.repo("org/app", Some("ghcr.io")).unwrap();
        assert_eq!(via_ns.tags["1"], images[1].top.digest);
        assert!(c.repo("org/app", None).is_none());
    }
}
