//! Where an application's manifests come from: a directory, a `.tar.gz`/`.tgz`, an
//! `https://` URL of such a tarball, or `replicated://APP` with a license file.
//!
//! Every source is read into memory as a list of [`ManifestFile`]s: manifests are small,
//! and holding them lets discovery, the archive and the app directory all work from the
//! same bytes, exactly as shipped. `replicated://` asks the vendor API ([`vendor`]).

pub mod vendor;

use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// Refuse manifests trees larger than this: they are YAML, not images.
const MAX_UPSTREAM_BYTES: u64 = 512 * 1024 * 1024;

/// One file of the application, with its path relative to the upstream root
/// (`/`-separated, no `..`, no leading `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestFile {
    pub path: String,
    pub data: Vec<u8>,
}

#[cfg(test)]
impl ManifestFile {
    /// A file holding `text`, for unit tests.
    pub(crate) fn text(path: &str, text: &str) -> ManifestFile {
        ManifestFile {
            path: path.into(),
            data: text.as_bytes().to_vec(),
        }
    }
}

/// The application as fetched.
#[derive(Debug, Clone, Default)]
pub struct Upstream {
    /// Where it came from, as the user wrote it (never with credentials).
    pub source: String,
    /// App name: `--app-name`, else the release's, the KOTS `Application`'s, or the
    /// source's own (never a generic folder name); `None` when none of them gives one.
    pub name: Option<String>,
    /// App version, when the release or the `Application` kind gives one.
    pub version: Option<String>,
    /// Sorted by path.
    pub files: Vec<ManifestFile>,
    /// For `replicated://`: what the vendor API said about the release it served.
    pub release: Option<crate::upstream::vendor::VendorRelease>,
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("upstream {path}: not a directory, .tar.gz or .tgz file")]
    Unsupported { path: PathBuf },
    #[error("upstream {path}: file {entry:?} cannot be carried ({why})")]
    UnsafeEntry {
        path: PathBuf,
        entry: String,
        why: String,
    },
    #[error("--app-name {name:?}: {why}")]
    AppName { name: String, why: String },
    #[error(
        "upstream {source_ref}: cannot tell the app's name (no KOTS Application document, and \
         its folder names are generic); pass --app-name NAME"
    )]
    NoName { source_ref: String },
    #[error(
        "upstream {path}: larger than {MAX_UPSTREAM_BYTES} bytes; is this really a manifests tree?"
    )]
    TooLarge { path: PathBuf },
    #[error("upstream {path}: no files found")]
    Empty { path: PathBuf },
    #[error("upstream {url}: {why}")]
    Fetch { url: String, why: String },
    #[error("license {path}: {why}")]
    License { path: PathBuf, why: String },
    #[error("upstream {source_ref}: {why}")]
    Source { source_ref: String, why: String },
}

impl Upstream {
    /// The app's name, for commands that name files and directories after it.
    pub fn require_name(&self) -> Result<&str, UpstreamError> {
        self.name.as_deref().ok_or_else(|| UpstreamError::NoName {
            source_ref: self.source.clone(),
        })
    }
}

/// How to fetch remote upstreams.
#[derive(Debug, Clone, Default)]
pub struct UpstreamOptions {
    /// KOTS license for `replicated://APP`.
    pub license_file: Option<PathBuf>,
    /// Extra CA (PEM) trusted for `https://` and the vendor API.
    pub ca_file: Option<PathBuf>,
    /// `--app-name`: the app's name, instead of the one the upstream suggests.
    pub app_name: Option<String>,
    /// For `replicated://`: the channel, the version and the release updated from.
    pub release: crate::upstream::vendor::ReleaseQuery,
}

/// Fetches the app from any supported source: a directory or tarball path, an `https://`
/// URL of a tarball, or `replicated://APP` with a license.
pub async fn load(source: &str, opts: &UpstreamOptions) -> Result<Upstream, UpstreamError> {
    if let Some(app) = source.strip_prefix("replicated://") {
        return load_replicated(source, app, opts).await;
    }
    if source.starts_with("https://") || is_loopback_http(source) {
        // `https://user:pass@host/app.tgz`: the credentials are sent to that host, and
        // appear nowhere else (not in messages, metadata or state.json).
        let (url, credentials) = split_credentials(source);
        let basic = credentials.as_ref().map(|(u, p)| (u.as_str(), p.as_str()));
        let bytes = fetch(&url, opts, basic).await?.0;
        let files = read_tgz(&bytes[..], Path::new(&url))?;
        return finish_remote(&url, files, None, None, opts);
    }
    if source.starts_with("http://") {
        return Err(UpstreamError::Source {
            source_ref: redact(source),
            why: "plain http is accepted only from localhost; use https://".into(),
        });
    }
    let path = Path::new(source);
    tokio::task::block_in_place(|| load_path(path, opts))
}

fn finish_remote(
    source: &str,
    mut files: Vec<ManifestFile>,
    release_name: Option<String>,
    version: Option<String>,
    opts: &UpstreamOptions,
) -> Result<Upstream, UpstreamError> {
    if files.is_empty() {
        return Err(UpstreamError::Empty {
            path: PathBuf::from(source),
        });
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    check_tree(source, &files)?;
    let (app_name, app_version) = app_identity(&files);
    // The URL's path, most specific first: `.../myapp-1.2.tgz` names the app.
    let path = url::Url::parse(source)
        .map(|u| u.path().to_string())
        .unwrap_or_default();
    let from_source = path.rsplit('/').find_map(name_from_component);
    Ok(Upstream {
        source: source.to_string(),
        name: choose_name(
            opts,
            [release_name, app_name, from_source].into_iter().flatten(),
        )?,
        version: version.or(app_version),
        files,
        release: None,
    })
}

/// Folder names that say nothing about the app (`./manifests`): the app is named after the
/// folder above instead.
const GENERIC_NAMES: &[&str] = &[
    "manifests",
    "manifest",
    "upstream",
    "deploy",
    "deployment",
    "deployments",
    "k8s",
    "kubernetes",
    "kube",
    "yaml",
    "yamls",
    "config",
    "configs",
    "base",
    "app",
    "apps",
    "src",
    "release",
    "releases",
    "chart",
    "charts",
    "kustomize",
    "overlays",
    "resources",
    "files",
    "dist",
    "build",
    "output",
    "out",
    "tmp",
    "temp",
    "latest",
    "stable",
];

/// An app name from one path component (`myapp-1.2.tgz` -> `myapp-1-2`), unless generic.
fn name_from_component(part: &str) -> Option<String> {
    let stem = part
        .trim_end_matches(".tar.gz")
        .trim_end_matches(".tgz")
        .trim_end_matches(".tar");
    if GENERIC_NAMES.contains(&stem.to_ascii_lowercase().as_str()) {
        return None;
    }
    crate::names::app_name_from(stem)
}

/// `--app-name` if given (checked, never altered), else the first of `found`.
fn choose_name(
    opts: &UpstreamOptions,
    mut found: impl Iterator<Item = String>,
) -> Result<Option<String>, UpstreamError> {
    if let Some(name) = &opts.app_name {
        crate::names::app_name(name).map_err(|why| UpstreamError::AppName {
            name: crate::names::escaped(name),
            why: why.to_string(),
        })?;
        return Ok(Some(name.clone()));
    }
    Ok(found.next())
}

/// Every file can be written beside the others (no `a` beside `a/b.yaml`, no duplicates).
fn check_tree(source: &str, files: &[ManifestFile]) -> Result<(), UpstreamError> {
    crate::names::check_tree(files.iter().map(|f| f.path.as_str())).map_err(|(entry, why)| {
        UpstreamError::UnsafeEntry {
            path: PathBuf::from(source),
            entry,
            why: why.to_string(),
        }
    })
}

/// Most redirects one fetch follows (Go's net/http, which KOTS uses, stops at 10 too).
const MAX_REDIRECTS: usize = 10;
/// How much of a refusal's body is shown: the vendor's message, not a page of HTML.
const MAX_ERROR_BODY: usize = 2048;

/// GETs `url` into memory (manifests are small; capped), TLS verified. Redirects are
/// followed (release downloads may go to a CDN), never to plain http off loopback, and
/// `basic` credentials are sent to the first origin only: reqwest drops Authorization on a
/// redirect to another host or port. A refusal's message is the server's body, with the
/// password cut out.
pub(crate) async fn fetch(
    url: &str,
    opts: &UpstreamOptions,
    basic: Option<(&str, &str)>,
) -> Result<(Vec<u8>, reqwest::header::HeaderMap), UpstreamError> {
    let err = |why: String| UpstreamError::Fetch {
        url: url.to_string(),
        why,
    };
    if !url.starts_with("https://") && !is_loopback_http(url) {
        return Err(err(
            "plain http is accepted only from localhost; use https://".into(),
        ));
    }
    let policy = reqwest::redirect::Policy::custom(|attempt| {
        match redirect_refusal(attempt.url(), attempt.previous()) {
            Some(why) => attempt.error(why),
            None => attempt.follow(),
        }
    });
    // A vendor API or CDN that stops answering must not hang an export: the same limits
    // (and variables) as for registries.
    let secs = |var: &str, default: u64| {
        std::time::Duration::from_secs(
            std::env::var(var)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .filter(|&s: &u64| s > 0)
                .unwrap_or(default),
        )
    };
    let idle = secs("KOTS_BUNDLE_IDLE_TIMEOUT", 60);
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("kots-bundle/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(secs("KOTS_BUNDLE_CONNECT_TIMEOUT", 30))
        .read_timeout(idle)
        .redirect(policy);
    if let Some(ca) = &opts.ca_file {
        let pem = std::fs::read(ca)
            .map_err(|e| err(format!("reading --upstream-ca {}: {e}", ca.display())))?;
        let cert = reqwest::Certificate::from_pem(&pem)
            .map_err(|e| err(format!("--upstream-ca {}: {e}", ca.display())))?;
        builder = builder.add_root_certificate(cert);
    }
    let client = builder.build().map_err(|e| err(e.to_string()))?;
    let mut req = client.get(url);
    if let Some((user, pass)) = basic {
        req = req.basic_auth(user, Some(pass));
    }
    let hide = |s: String| match basic {
        Some((_, pass)) if !pass.is_empty() => s.replace(pass, "***"),
        _ => s,
    };
    let stalled = |e: &reqwest::Error| {
        let why = hide(describe_reqwest(e));
        if e.is_timeout() {
            format!(
                "{why}: no answer for {} s; if the link is this slow, raise \
                 KOTS_BUNDLE_IDLE_TIMEOUT (seconds)",
                idle.as_secs()
            )
        } else {
            why
        }
    };
    let resp = req.send().await.map_err(|e| {
        let why = stalled(&e);
        if why.contains("certificate") {
            err(format!(
                "{why}; if the server's certificate is from a private CA, pass --upstream-ca FILE"
            ))
        } else {
            err(why)
        }
    })?;
    let status = resp.status();
    if !status.is_success() {
        // KOTS shows the vendor's body as the error: it says what to do (an expired
        // license, a version not on the channel).
        // Only the start is read: a body that never ends must not hold the refusal.
        let mut body = Vec::new();
        let mut stream = resp.bytes_stream();
        use futures_util::StreamExt;
        while let Some(Ok(chunk)) = stream.next().await {
            body.extend_from_slice(&chunk);
            if body.len() >= MAX_ERROR_BODY {
                break;
            }
        }
        let text = String::from_utf8_lossy(&body[..body.len().min(MAX_ERROR_BODY)]);
        let text = hide(text.trim().to_string());
        return Err(err(if text.is_empty() {
            format!("HTTP {status}")
        } else {
            format!("HTTP {status}: {}", crate::names::escaped(&text))
        }));
    }
    let headers = resp.headers().clone();
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    use futures_util::StreamExt;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| err(stalled(&e)))?;
        body.extend_from_slice(&chunk);
        if body.len() as u64 > MAX_UPSTREAM_BYTES {
            return Err(err(format!("larger than {MAX_UPSTREAM_BYTES} bytes")));
        }
    }
    Ok((body, headers))
}

/// A URL without its `user:password@` part, and that part (percent-decoded). A string that
/// is not a URL is returned as it is.
pub fn split_credentials(source: &str) -> (String, Option<(String, String)>) {
    let Ok(mut u) = url::Url::parse(source) else {
        return (source.to_string(), None);
    };
    if u.username().is_empty() && u.password().is_none() {
        return (source.to_string(), None);
    }
    let decode = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    let creds = (
        decode(&u.username().replace('+', "%2B")),
        decode(&u.password().unwrap_or("").replace('+', "%2B")),
    );
    let _ = u.set_username("");
    let _ = u.set_password(None);
    (u.to_string(), Some(creds))
}

/// `source` as it may be shown or stored: credentials in a URL replaced by `***`.
pub fn redact(source: &str) -> String {
    match split_credentials(source) {
        (url, Some(_)) => match url.split_once("://") {
            Some((scheme, rest)) => format!("{scheme}://***@{rest}"),
            None => url,
        },
        (s, None) => s,
    }
}

/// `http://localhost...`, `http://127.0.0.1...`, `http://[::1]...`: test doubles and local mirrors.
/// Why a redirect to `next` is not followed, after `previous` (the first request first):
/// too many, or plain http off loopback, or plain http after https (a downgrade, even to
/// loopback: what was private on the way out must stay so).
fn redirect_refusal(next: &url::Url, previous: &[url::Url]) -> Option<String> {
    if previous.len() > MAX_REDIRECTS {
        return Some(format!("more than {MAX_REDIRECTS} redirects"));
    }
    if next.scheme() == "https" {
        return None;
    }
    let downgrade = previous.iter().any(|u| u.scheme() == "https");
    if downgrade || !is_loopback_http(next.as_str()) {
        return Some(format!("redirected to {next}, which is not https"));
    }
    None
}

fn is_loopback_http(url: &str) -> bool {
    let Ok(u) = url::Url::parse(url) else {
        return false;
    };
    u.scheme() == "http"
        && matches!(
            u.host_str(),
            Some("localhost") | Some("127.0.0.1") | Some("[::1]")
        )
}

fn describe_reqwest(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

use crate::license::License;

async fn load_replicated(
    source: &str,
    app: &str,
    opts: &UpstreamOptions,
) -> Result<Upstream, UpstreamError> {
    let license_path = opts
        .license_file
        .as_ref()
        .ok_or_else(|| UpstreamError::Source {
            source_ref: source.to_string(),
            why: "replicated:// needs --license-file".into(),
        })?;
    let license = License::load(license_path).map_err(|e| UpstreamError::License {
        path: license_path.clone(),
        why: e.why,
    })?;
    // `replicated://APP/CHANNEL`, as KOTS parses it; `--channel` says the same.
    let (app, path_channel) = match app.trim_end_matches('/').split_once('/') {
        Some((a, c)) => (a, Some(c.to_string())),
        None => (app.trim_end_matches('/'), None),
    };
    if !app.is_empty() && app != license.app_slug {
        return Err(UpstreamError::License {
            path: license_path.clone(),
            why: format!("is for app {:?}, not {app:?}", license.app_slug),
        });
    }
    let mut query = opts.release.clone();
    match (&query.channel, path_channel) {
        (Some(flag), Some(path)) if *flag != path => {
            return Err(UpstreamError::Source {
                source_ref: source.to_string(),
                why: format!("names channel {path:?} but --channel is {flag:?}"),
            })
        }
        (None, path) => query.channel = path,
        _ => {}
    }
    let (body, release) = crate::upstream::vendor::download(&license, &query, opts)
        .await
        .map_err(|e| match e {
            crate::upstream::vendor::VendorError::License(why) => UpstreamError::License {
                path: license_path.clone(),
                why,
            },
            crate::upstream::vendor::VendorError::RequiredSkipped(e) => UpstreamError::Source {
                source_ref: source.to_string(),
                why: format!(
                    "{e}; run again with --app-version-label {}, then update again (the app \
                     directory was left as it was)",
                    e.oldest
                ),
            },
        })?;
    let files = read_tgz(&body[..], Path::new(source))?;
    let mut up = finish_remote(
        source,
        files,
        crate::names::app_name_from(&license.app_slug),
        release.version_label.clone(),
        opts,
    )?;
    up.release = Some(release);
    Ok(up)
}

/// Reads a local directory or tarball.
pub fn load_path(path: &Path, opts: &UpstreamOptions) -> Result<Upstream, UpstreamError> {
    let meta = std::fs::metadata(path).map_err(|source| UpstreamError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut files = if meta.is_dir() {
        read_dir(path)?
    } else if is_tarball_name(&path.to_string_lossy()) {
        let f = std::fs::File::open(path).map_err(|source| UpstreamError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        read_tgz(f, path)?
    } else {
        return Err(UpstreamError::Unsupported {
            path: path.to_path_buf(),
        });
    };
    if files.is_empty() {
        return Err(UpstreamError::Empty {
            path: path.to_path_buf(),
        });
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let source = path.display().to_string();
    check_tree(&source, &files)?;
    let (name, version) = app_identity(&files);
    // The path's own name, or the folder's above a generic one (`myapp/manifests`).
    let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let from_path = canonical
        .components()
        .rev()
        .take(2)
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .find_map(|c| name_from_component(&c));
    Ok(Upstream {
        name: choose_name(opts, name.into_iter().chain(from_path))?,
        source,
        version,
        files,
        release: None,
    })
}

pub fn is_tarball_name(name: &str) -> bool {
    name.ends_with(".tar.gz") || name.ends_with(".tgz")
}

fn read_dir(root: &Path) -> Result<Vec<ManifestFile>, UpstreamError> {
    let mut files = Vec::new();
    let mut total = 0u64;
    for entry in walkdir::WalkDir::new(root)
        .follow_links(false)
        .sort_by_file_name()
    {
        let entry = entry.map_err(|e| UpstreamError::Io {
            path: e.path().unwrap_or(root).to_path_buf(),
            source: e.into(),
        })?;
        if !entry.file_type().is_file() {
            continue;
        }
        let rel = entry.path().strip_prefix(root).unwrap_or(entry.path());
        if rel
            .components()
            .any(|c| c.as_os_str().to_string_lossy().starts_with('.'))
        {
            continue; // .git and editor droppings are not part of the app
        }
        let data = std::fs::read(entry.path()).map_err(|source| UpstreamError::Io {
            path: entry.path().to_path_buf(),
            source,
        })?;
        total += data.len() as u64;
        if total > MAX_UPSTREAM_BYTES {
            return Err(UpstreamError::TooLarge {
                path: root.to_path_buf(),
            });
        }
        let raw = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        // Refused here, before anything is fetched, for the same reasons the archive
        // reader would refuse it inside the air gap.
        crate::names::relative_path(&raw).map_err(|why| UpstreamError::UnsafeEntry {
            path: root.to_path_buf(),
            entry: crate::names::escaped(&raw),
            why: why.to_string(),
        })?;
        files.push(ManifestFile { path: raw, data });
    }
    Ok(files)
}

/// Reads a gzip'd tar of manifests; regular files only, no path may leave the root.
pub fn read_tgz(r: impl Read, origin: &Path) -> Result<Vec<ManifestFile>, UpstreamError> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(r));
    let io = |source| UpstreamError::Io {
        path: origin.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    let mut total = 0u64;
    for entry in archive.entries().map_err(io)? {
        let mut entry = entry.map_err(io)?;
        let kind = entry.header().entry_type();
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        if kind.is_dir() || kind.is_pax_global_extensions() {
            continue;
        }
        if !kind.is_file() {
            // Links could point outside the tree; manifests never need them.
            return Err(UpstreamError::UnsafeEntry {
                path: origin.to_path_buf(),
                entry: raw,
                why: "not a regular file".into(),
            });
        }
        let path = crate::names::normalize_relative_path(&raw).map_err(|why| {
            UpstreamError::UnsafeEntry {
                path: origin.to_path_buf(),
                entry: crate::names::escaped(&raw),
                why: why.to_string(),
            }
        })?;
        total += entry.size();
        if total > MAX_UPSTREAM_BYTES {
            return Err(UpstreamError::TooLarge {
                path: origin.to_path_buf(),
            });
        }
        let mut data = Vec::with_capacity(entry.size() as usize);
        entry.read_to_end(&mut data).map_err(io)?;
        files.push(ManifestFile { path, data });
    }
    strip_common_top_dir(&mut files);
    Ok(files)
}

/// Release tarballs usually wrap everything in one top directory (`app-1.2.3/...`);
/// drop it so `upstream/` holds the manifests themselves.
fn strip_common_top_dir(files: &mut [ManifestFile]) {
    let Some(first) = files.first() else { return };
    let Some((top, _)) = first.path.split_once('/') else {
        return;
    };
    let prefix = format!("{top}/");
    if files.iter().all(|f| f.path.starts_with(&prefix)) {
        for f in files.iter_mut() {
            f.path = f.path[prefix.len()..].to_string();
        }
    }
}

/// Name and version from a KOTS `Application` document, when the app ships one. Files that
/// do not parse are skipped here: the render stage reports them, once.
pub fn app_identity(files: &[ManifestFile]) -> (Option<String>, Option<String>) {
    for f in files {
        if crate::yaml::Format::of(&f.path).is_none() {
            continue;
        }
        let Ok(text) = std::str::from_utf8(&f.data) else {
            continue;
        };
        for doc in crate::yaml::yaml_documents(text) {
            let Ok(v) = doc.parsed else { continue };
            let api = v.get("apiVersion").and_then(|a| a.as_str()).unwrap_or("");
            if v.get("kind").and_then(|k| k.as_str()) == Some("Application")
                && api.starts_with("kots.io/")
            {
                let name = v
                    .get("metadata")
                    .and_then(|m| m.get("name"))
                    .and_then(|n| n.as_str())
                    .and_then(crate::names::app_name_from);
                let version = v
                    .get("spec")
                    .and_then(|s| s.get("version"))
                    .and_then(|n| n.as_str())
                    .map(str::to_string);
                return (name, version);
            }
        }
    }
    (None, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redirect_never_downgrades_to_plain_http() {
        let u = |s: &str| url::Url::parse(s).unwrap();
        let https = [u("https://replicated.app/release/myapp")];
        assert!(redirect_refusal(&u("https://cdn.example.com/x"), &https).is_none());
        // Off loopback, and from https even to loopback.
        assert!(redirect_refusal(&u("http://cdn.example.com/x"), &https).is_some());
        assert!(redirect_refusal(&u("http://127.0.0.1:8080/x"), &https).is_some());
        // A loopback double over plain http may move to another loopback port.
        let local = [u("http://127.0.0.1:1/release/myapp")];
        assert!(redirect_refusal(&u("http://127.0.0.1:2/x"), &local).is_none());
        let many = vec![u("https://replicated.app/"); MAX_REDIRECTS + 1];
        assert!(redirect_refusal(&u("https://replicated.app/"), &many)
            .unwrap()
            .contains("more than 10 redirects"));
    }

    #[test]
    fn credentials_are_split_off_and_redacted() {
        let (url, creds) = split_credentials("https://u%40corp:p%2Fw+x@host:8443/a/app.tgz");
        assert_eq!(url, "https://host:8443/a/app.tgz");
        assert_eq!(creds, Some(("u@corp".into(), "p/w+x".into())));
        assert_eq!(
            redact("https://u:secret@host/app.tgz"),
            "https://***@host/app.tgz"
        );
        assert_eq!(redact("./manifests"), "./manifests");
        assert_eq!(split_credentials("https://host/x").1, None);
    }

    #[test]
    fn strips_single_top_dir() {
        let mut files = vec![
            ManifestFile {
                path: "app-1/a.yaml".into(),
                data: vec![],
            },
            ManifestFile {
                path: "app-1/sub/b.yaml".into(),
                data: vec![],
            },
        ];
        strip_common_top_dir(&mut files);
        assert_eq!(files[0].path, "a.yaml");
        assert_eq!(files[1].path, "sub/b.yaml");
    }
}
