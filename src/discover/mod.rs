//! Image discovery: finds every container image an application's manifests need (product
//! spec section 3), normalized, with where each one was found.
//!
//! What is read:
//! - every `.yaml`/`.yml`/`.json` file (any case), every document in it (multi-document
//!   YAML, JSON streams, CRLF, comments, anchors and `<<` merge keys);
//! - in any Kubernetes object (a mapping with `apiVersion` and `kind`), every `image` of
//!   every `containers`/`initContainers`/`ephemeralContainers` list at any depth: pods,
//!   workloads, CronJobs, `List` items and custom resources embedding pod templates;
//! - outside those lists, what operators pull ([`sites`]): a string or an `image:` map
//!   (`{registry?, repository|image, tag?, digest?}`) under any key named `image`,
//!   container args (`--flag=REF`, or a word that is a full reference) and env values
//!   (`RELATED_IMAGE_*`, or a full reference). These are *candidates*: kept apart in
//!   [`Discovery::candidates`] and mirrored only once their registry confirms them;
//! - KOTS `kots.io/*` `Application`: `spec.additionalImages` are added and
//!   `spec.excludedImages` removed once everything else is found;
//! - troubleshoot (`troubleshoot.sh/*`, `troubleshoot.replicated.com/*`) kinds: the `image`
//!   and `images` of each `spec.collectors[*]`/`spec.hostCollectors[*]` collector;
//! - Helm charts that were not rendered (`--no-helm`; otherwise `render::helm` renders them
//!   and their documents are read like any other), as directories (`Chart.yaml` beside
//!   `values.yaml`) or `.tgz` files (also nested in a chart's `charts/`): in `values.yaml`,
//!   complete references only: `image: repo:tag` strings (or `image: repo` beside a `tag`)
//!   and `image: {registry, repository|image, tag, digest}` maps at any depth, registry, tag
//!   and digest kept. What the chart's templates would have to finish (no tag, a bare name
//!   joined to a `global.hub`, a chart setting a global registry) is reported, not guessed.
//!
//! What is NOT covered, by design: without helm (`--no-helm`), an image that only a chart
//! template computes (or that values select with conditions, or non-`image` keys) is not
//! found; images inside longer strings (embedded YAML, shell scripts, `--flag=a,REF`), in
//! args or env that are not full references (`--image=nginx:1`), or in custom-resource
//! fields not named `image` are not found; troubleshoot specs stored inside
//! Secrets/ConfigMaps are not read. Such images are added with `--image`/`--images-file`.
//!
//! Templated (`{{ ... }}`, `repl{{ ... }}`) and invalid references are never added: each
//! becomes a [`Problem`] naming the file, the place in the document and why, and the rest
//! of the discovery goes on. Documents that are not Kubernetes objects are skipped quietly.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use anyhow::Context as _;
use serde_yaml_ng::Value;

mod chart_values;
mod manifests;
pub(crate) mod sites;

pub use sites::SiteKind;

use crate::archive::{ArchiveError, ArchiveReader};
use crate::reference::Reference;
use crate::upstream::{self, ManifestFile};
use crate::yaml;

/// Container lists whose items carry an `image` (core/v1 PodSpec).
pub(crate) const CONTAINER_LISTS: [&str; 3] =
    ["containers", "initContainers", "ephemeralContainers"];
/// Collector lists of troubleshoot kinds.
const COLLECTOR_LISTS: [&str; 2] = ["collectors", "hostCollectors"];
/// Charts nest charts; a deeper nesting than this is not a real chart.
const MAX_CHART_DEPTH: usize = 4;

/// Where an image reference (or a problem) was found.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Location {
    /// The file, relative to the app root; a file inside a chart archive is
    /// `charts/web-1.0.0.tgz!/values.yaml`.
    pub file: String,
    /// Where in the file: the object and the field path, e.g.
    /// `Deployment/web: spec.template.spec.containers[0].image`, with the document's
    /// 1-based number in multi-document files (`Deployment/web (document 3): ...`).
    pub path: String,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.file)
        } else {
            write!(f, "{}: {}", self.file, self.path)
        }
    }
}

/// A reference that was seen but not added, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub at: Location,
    pub why: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.why)
    }
}

/// The images found, each with every place it was found, and the problems met.
#[derive(Debug, Default, Clone)]
pub struct Discovery {
    /// Images that are always mirrored: pod specs, KOTS `additionalImages`, troubleshoot
    /// collectors, chart values, `--image`.
    pub images: BTreeMap<Reference, Vec<Location>>,
    /// References found only outside pod specs (operator fields, args, env): mirrored once
    /// their registry confirms them ([`Discovery::confirm`]). Never also in `images`.
    pub candidates: BTreeMap<Reference, Candidate>,
    pub problems: Vec<Problem>,
}

/// A reference found outside pod specs, where it may or may not be an image.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub sites: Vec<CandidateSite>,
    pub confirmation: Confirmation,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CandidateSite {
    #[serde(flatten)]
    pub at: Location,
    pub site: SiteKind,
}

/// What the source registry said about a candidate.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub enum Confirmation {
    /// Not asked (yet).
    #[default]
    Unchecked,
    /// Its manifest exists: it is an image and is mirrored.
    Confirmed,
    /// Not found, or the registry could not be asked; why. Not mirrored.
    Unconfirmed(String),
}

impl Discovery {
    /// Adds a required image; a candidate of the same reference becomes required.
    pub fn add(&mut self, r: Reference, at: Location) {
        let promoted = self.candidates.remove(&r);
        let sites = self.images.entry(r).or_default();
        for at in promoted
            .into_iter()
            .flat_map(|c| c.sites)
            .map(|s| s.at)
            .chain([at])
        {
            if !sites.contains(&at) {
                sites.push(at);
            }
        }
    }

    /// Adds a candidate found at `at`; one already required just gains the location.
    pub fn add_candidate(&mut self, r: Reference, at: Location, site: SiteKind) {
        if let Some(sites) = self.images.get_mut(&r) {
            if !sites.contains(&at) {
                sites.push(at);
            }
            return;
        }
        let c = self.candidates.entry(r).or_default();
        let s = CandidateSite { at, site };
        if !c.sites.contains(&s) {
            c.sites.push(s);
        }
    }

    /// Removes every image `r` names; true if something was removed. References are
    /// compared normalized; a reference without a digest also removes the same name and
    /// tag pinned by digest (`x:1` removes `x:1@sha256:..`), and one with a digest but no
    /// tag removes that digest under any tag.
    pub fn exclude(&mut self, r: &Reference) -> bool {
        let before = self.images.len() + self.candidates.len();
        self.images.retain(|found, _| !excludes(r, found));
        self.candidates.retain(|found, _| !excludes(r, found));
        self.images.len() + self.candidates.len() != before
    }

    /// The images to mirror, sorted and unique: the required ones and the confirmed
    /// candidates.
    pub fn references(&self) -> Vec<Reference> {
        let confirmed = self
            .candidates
            .iter()
            .filter(|(_, c)| c.confirmation == Confirmation::Confirmed)
            .map(|(r, _)| r);
        let all: std::collections::BTreeSet<&Reference> =
            self.images.keys().chain(confirmed).collect();
        all.into_iter().cloned().collect()
    }

    /// Every image found, sorted and unique: the required ones and every candidate not
    /// refuted by its registry (what `images` lists).
    pub fn listed(&self) -> Vec<Reference> {
        let open = self
            .candidates
            .iter()
            .filter(|(_, c)| !matches!(c.confirmation, Confirmation::Unconfirmed(_)))
            .map(|(r, _)| r);
        let all: std::collections::BTreeSet<&Reference> = self.images.keys().chain(open).collect();
        all.into_iter().cloned().collect()
    }

    /// Candidates not yet checked against their registry.
    pub fn unchecked(&self) -> Vec<Reference> {
        self.candidates
            .iter()
            .filter(|(_, c)| c.confirmation == Confirmation::Unchecked)
            .map(|(r, _)| r.clone())
            .collect()
    }

    /// Records what the registry said about candidate `r`.
    pub fn confirm(&mut self, r: &Reference, confirmation: Confirmation) {
        if let Some(c) = self.candidates.get_mut(r) {
            c.confirmation = confirmation;
        }
    }

    fn problem(&mut self, at: Location, why: impl Into<String>) {
        self.problems.push(Problem {
            at,
            why: why.into(),
        });
    }
}

fn excludes(r: &Reference, found: &Reference) -> bool {
    r.registry() == found.registry()
        && r.repository() == found.repository()
        && (r.digest().is_none() || r.digest() == found.digest())
        && (r.tag().is_none() || r.tag() == found.tag())
}

/// Finds the images in an app's files (as [`upstream::load_path`] reads them).
pub fn discover(files: &[ManifestFile]) -> Discovery {
    let mut s = Scanner::default();
    s.scan_files("", files, 0);
    s.finish()
}

/// The images an `.airgap` archive holds, from its metadata (the head of the file only).
pub fn discover_archive(path: &Path) -> Result<Discovery, ArchiveError> {
    let meta = ArchiveReader::read_metadata_only(path)?;
    let mut found = Discovery::default();
    for (i, img) in meta.images.into_iter().enumerate() {
        found.add(
            img.reference,
            Location {
                file: path.display().to_string(),
                path: format!("images[{i}]"),
            },
        );
    }
    Ok(found)
}

/// Reads a list of references: one per line, `#` starts a comment, blank lines ignored.
/// An invalid line is an error naming the file and line.
pub fn read_images_file(path: &Path) -> anyhow::Result<Vec<Reference>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading images file {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let r = Reference::parse(line).with_context(|| {
            format!(
                "images file {} line {}: fix or remove this line",
                path.display(),
                n + 1
            )
        })?;
        out.push(r);
    }
    Ok(out)
}

#[derive(Default)]
struct Scanner {
    found: Discovery,
    /// KOTS `excludedImages`, applied after everything else is found.
    excluded: Vec<(Reference, Location)>,
}

/// How one document is read.
#[derive(Clone, Copy)]
struct DocCtx<'a> {
    file: &'a str,
    /// `Kind/name` and, in multi-document files, `(document N)`.
    object: &'a str,
    /// A Helm chart's `templates/` file: templated references there are expected
    /// (values cover them), so they are not reported as problems.
    in_template: bool,
}

impl DocCtx<'_> {
    fn at(&self, path: &str) -> Location {
        Location {
            file: self.file.to_string(),
            path: if self.object.is_empty() {
                path.to_string()
            } else {
                format!("{}: {path}", self.object)
            },
        }
    }
}

/// `a/b/c.yaml` -> (`a/b`, `c.yaml`); `c.yaml` -> (``, `c.yaml`).
fn split_dir(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

impl Scanner {
    fn finish(mut self) -> Discovery {
        for (r, at) in std::mem::take(&mut self.excluded) {
            if !self.found.exclude(&r) {
                tracing::debug!("{at}: excluded image {r} is not referenced anywhere");
            }
        }
        self.found
    }

    /// `prefix` names the archive the files came from (`` at the top).
    fn scan_files(&mut self, prefix: &str, files: &[ManifestFile], depth: usize) {
        // Chart directories, with each chart's appVersion (the default image tag).
        let mut charts: BTreeMap<&str, Option<String>> = BTreeMap::new();
        for f in files {
            let (dir, base) = split_dir(&f.path);
            if base == "Chart.yaml" {
                charts.insert(dir, chart_values::chart_app_version(&f.data));
            }
        }
        let mut sorted: Vec<&ManifestFile> = files.iter().collect();
        sorted.sort_by(|a, b| a.path.cmp(&b.path));
        for f in sorted {
            let display = format!("{prefix}{}", f.path);
            if upstream::is_tarball_name(&f.path.to_ascii_lowercase()) {
                self.scan_tgz(&display, &f.data, depth);
                continue;
            }
            let Some(format) = yaml::Format::of(&f.path) else {
                continue;
            };
            let (dir, base) = split_dir(&f.path);
            if let Some(app_version) = charts.get(dir) {
                match base {
                    "values.yaml" | "values.yml" => {
                        self.scan_values(&display, &f.data, app_version.as_deref());
                        continue;
                    }
                    "Chart.yaml" | "values.schema.json" => continue,
                    _ => {}
                }
            }
            let in_template = charts.keys().any(|d| {
                let rel = if d.is_empty() {
                    Some(f.path.as_str())
                } else {
                    f.path.strip_prefix(*d).and_then(|r| r.strip_prefix('/'))
                };
                rel.is_some_and(|r| r.starts_with("templates/"))
            });
            self.scan_manifest(&display, &f.data, format, in_template);
        }
    }

    /// A `.tgz` inside the app: a Helm chart (or a tarball of manifests).
    fn scan_tgz(&mut self, display: &str, data: &[u8], depth: usize) {
        if depth >= MAX_CHART_DEPTH {
            self.found.problem(
                Location {
                    file: display.to_string(),
                    path: String::new(),
                },
                format!("archives nested deeper than {MAX_CHART_DEPTH} levels are not read"),
            );
            return;
        }
        match upstream::read_tgz(data, Path::new(display)) {
            Ok(inner) => self.scan_files(&format!("{display}!/"), &inner, depth + 1),
            Err(e) => self.found.problem(
                Location {
                    file: display.to_string(),
                    path: String::new(),
                },
                format!("not a readable chart archive ({e}); its images are not listed"),
            ),
        }
    }
}

/// Strings, and numbers/booleans as YAML wrote them (`tag: 7` is a tag).
fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn is_templated(s: &str) -> bool {
    s.contains("{{") || s.contains("}}")
}

/// `(kind, apiVersion)` of a Kubernetes object.
fn object_identity(v: &Value) -> Option<(&str, &str)> {
    let kind = v.get("kind")?.as_str()?;
    let api = v.get("apiVersion")?.as_str()?;
    Some((kind, api))
}

/// `Deployment/web` (plus `(document N)` in multi-document files).
fn object_label(v: &Value, doc_label: &str) -> String {
    let kind = v.get("kind").and_then(Value::as_str).unwrap_or("?");
    let meta = v.get("metadata");
    let name = meta
        .and_then(|m| m.get("name").or_else(|| m.get("generateName")))
        .and_then(scalar_string);
    let mut s = match name {
        Some(n) => format!("{kind}/{n}"),
        None => kind.to_string(),
    };
    if !doc_label.is_empty() {
        s.push(' ');
        s.push_str(doc_label);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(d: &Discovery) -> Vec<String> {
        d.references().iter().map(|r| r.to_string()).collect()
    }

    #[test]
    fn finds_containers_at_any_depth_with_paths() {
        let d = discover(&[ManifestFile::text(
            "app/cron.yaml",
            "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: tick}\nspec:\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          initContainers: [{name: i, image: busybox:1.36}]\n          containers: [{name: c, image: 'quay.io/x/y:2'}]\n",
        )]);
        assert_eq!(
            refs(&d),
            ["docker.io/library/busybox:1.36", "quay.io/x/y:2"]
        );
        let r = Reference::parse("quay.io/x/y:2").unwrap();
        assert_eq!(
            d.images[&r][0].to_string(),
            "app/cron.yaml: CronJob/tick: spec.jobTemplate.spec.template.spec.containers[0].image"
        );
        assert!(d.problems.is_empty(), "{:?}", d.problems);
    }

    #[test]
    fn non_kubernetes_yaml_is_skipped_quietly() {
        let d = discover(&[
            ManifestFile::text("config.yaml", "containers: [{image: nginx}]\n"),
            ManifestFile::text("broken-notes.yaml", "this: [is not: yaml\n"),
            ManifestFile::text("README.md", "image: nginx"),
        ]);
        assert!(d.images.is_empty());
        assert!(d.problems.is_empty(), "{:?}", d.problems);
    }

    #[test]
    fn broken_manifest_is_a_problem_but_not_fatal() {
        let d = discover(&[ManifestFile::text(
            "x.yaml",
            "apiVersion: v1\nkind: Pod\nspec: [oops\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: ok}\nspec: {containers: [{image: redis}]}\n",
        )]);
        assert_eq!(refs(&d), ["docker.io/library/redis:latest"]);
        assert_eq!(d.problems.len(), 1);
        assert!(d.problems[0]
            .to_string()
            .starts_with("x.yaml: document 1: not valid"));
    }

    #[test]
    fn templated_and_invalid_refs_are_problems() {
        let d = discover(&[ManifestFile::text(
            "p.yaml",
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - image: 'repl{{ LocalImageName \"x\" }}'\n  - image: Nginx\n  - image: ''\n  - image:\n  - image: ok:1\n",
        )]);
        assert_eq!(refs(&d), ["docker.io/library/ok:1"]);
        let msgs: Vec<String> = d.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(msgs.len(), 4, "{msgs:?}");
        assert!(msgs[0].starts_with("p.yaml: Pod/p: spec.containers[0].image: templated"));
        assert!(msgs[1].contains("containers[1]") && msgs[1].contains("lowercase"));
        assert!(msgs[2].contains("containers[2]") && msgs[2].contains("empty"));
        assert!(msgs[3].contains("containers[3]") && msgs[3].contains("empty"));
    }

    #[test]
    fn kots_application_adds_then_excludes_last() {
        let d = discover(&[
            ManifestFile::text(
                "a.yaml",
                "apiVersion: kots.io/v1beta1\nkind: Application\nmetadata: {name: a}\nspec:\n  additionalImages: [extra:1, 'quay.io/a/b:2']\n  excludedImages: [docker.io/library/skip:3]\n",
            ),
            ManifestFile::text(
                "z.yaml",
                "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{image: skip:3}, {image: keep:4}]}\n",
            ),
        ]);
        assert_eq!(
            refs(&d),
            [
                "docker.io/library/extra:1",
                "docker.io/library/keep:4",
                "quay.io/a/b:2"
            ]
        );
    }

    #[test]
    fn exclude_by_tag_removes_digest_pinned_too() {
        let dg = format!("sha256:{}", "b".repeat(64));
        let mut d = Discovery::default();
        let at = Location {
            file: "f".into(),
            path: String::new(),
        };
        d.add(Reference::parse(&format!("x:1@{dg}")).unwrap(), at.clone());
        d.add(Reference::parse("x:2").unwrap(), at.clone());
        assert!(!d.exclude(&Reference::parse("x:3").unwrap()));
        assert!(d.exclude(&Reference::parse("docker.io/library/x:1").unwrap()));
        assert_eq!(refs(&d), ["docker.io/library/x:2"]);
    }

    #[test]
    fn candidates_outside_pod_specs_are_kept_apart_until_confirmed() {
        let d = discover(&[ManifestFile::text(
            "op.yaml",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: op}\nspec:\n  template:\n    spec:\n      containers:\n      - name: op\n        image: quay.io/org/op:1\n        args: ['--x-image=quay.io/org/x:1', '--self=quay.io/org/op:1']\n---\napiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\nspec:\n  image: {repository: quay.io/org/partial}\n  other: {image: 'Bad Ref'}\n",
        )]);
        assert_eq!(refs(&d), ["quay.io/org/op:1"]);
        let x = Reference::parse("quay.io/org/x:1").unwrap();
        let c = &d.candidates[&x];
        assert_eq!(c.confirmation, Confirmation::Unchecked);
        assert_eq!(c.sites[0].site, SiteKind::Arg);
        assert_eq!(
            c.sites[0].at.to_string(),
            "op.yaml: Deployment/op (document 1): spec.template.spec.containers[0].args[0]"
        );
        // Also found as an arg, the operator's own image stays required, with both places.
        let op = Reference::parse("quay.io/org/op:1").unwrap();
        assert_eq!(d.images[&op].len(), 2);
        assert!(!d.candidates.contains_key(&op));
        let listed: Vec<String> = d.listed().iter().map(|r| r.to_string()).collect();
        assert_eq!(listed, ["quay.io/org/op:1", "quay.io/org/x:1"]);
        let msgs: Vec<String> = d.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(msgs.len(), 2, "{msgs:?}");
        assert!(
            msgs[0].contains("spec.image: image map names \"quay.io/org/partial\" without a tag")
        );
        assert!(msgs[1].contains("spec.other.image: invalid image reference"));

        let mut d = d;
        d.confirm(&x, Confirmation::Confirmed);
        assert_eq!(refs(&d), ["quay.io/org/op:1", "quay.io/org/x:1"]);
        d.confirm(&x, Confirmation::Unconfirmed("no".into()));
        assert_eq!(refs(&d), ["quay.io/org/op:1"]);
        assert_eq!(d.listed().len(), 1);
        // A required image added later (`--image`) takes the candidate over.
        d.add(
            x.clone(),
            Location {
                file: "--image".into(),
                path: String::new(),
            },
        );
        assert!(d.candidates.is_empty());
        assert_eq!(d.images[&x].len(), 2);
    }

    #[test]
    fn images_file_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("images.txt");
        std::fs::write(&p, "# header\nnginx\n\n  quay.io/a/b:1  # pinned\n").unwrap();
        let got: Vec<String> = read_images_file(&p)
            .unwrap()
            .iter()
            .map(|r| r.to_string())
            .collect();
        assert_eq!(got, ["docker.io/library/nginx:latest", "quay.io/a/b:1"]);
        std::fs::write(&p, "nginx\nBad/Name\n").unwrap();
        let e = format!("{:#}", read_images_file(&p).unwrap_err());
        assert!(
            e.contains("images.txt line 2") && e.contains("lowercase"),
            "{e}"
        );
    }
}
