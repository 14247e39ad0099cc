//! A stand-in for the Replicated vendor API (`replicated.app`), which cannot run here: a real
//! HTTP/1.1 server on a loopback port (a std thread per connection) that answers as the
//! vendor API answers KOTS.
//!
//! - `GET /release/<slug>[/<channel>]?...` with HTTP Basic `licenseID:licenseID`: the release
//!   the query asks for (`versionLabel`, else the channel's latest) as a gzip'd tar, with
//!   `X-Replicated-ChannelSequence`, `-ChannelID`, `-ChannelName`, `-VersionLabel`,
//!   `-IsRequired` and `-ReleasedAt`. With [`Vendor::use_cdn`], a 302 to a second loopback
//!   port ("the CDN"), which refuses any request that carries Authorization.
//! - `GET /release/<slug>/pending?channelSequence=N...`: `{"channelReleases": [...]}`, the
//!   channel's releases after N.
//! - [`Vendor::redirect_to`]: every API request answered with a 302 there.
//! - [`Vendor::refuse`]: every request answered with that status and body.
//!
//! Every request is recorded (port, path, query, Authorization) so tests assert exactly what
//! the client sent.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};

use base64::Engine as _;

/// One release on a channel.
#[derive(Clone, Debug)]
pub struct Release {
    pub channel_id: String,
    pub channel_name: String,
    /// The channel's slug, as `replicated://APP/<slug>` names it.
    pub channel_slug: String,
    pub sequence: i64,
    pub version_label: String,
    pub is_required: bool,
    pub released_at: String,
    pub tgz: Vec<u8>,
}

/// One request as the double saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// Which listener: `false` the vendor API, `true` the CDN.
    pub cdn: bool,
    pub path: String,
    /// The raw query string (after `?`), exactly as sent.
    pub query: String,
    pub authorization: Option<String>,
}

#[derive(Default)]
struct Shared {
    releases: Vec<Release>,
    /// The channel a request without one in its path downloads from (the license's).
    default_channel_id: String,
    cdn: bool,
    redirect: Option<String>,
    refuse: Option<(u16, String)>,
    seen: Vec<Seen>,
}

pub struct Vendor {
    pub addr: String,
    pub cdn_addr: String,
    license_id: String,
    slug: String,
    shared: Arc<Mutex<Shared>>,
}

impl Vendor {
    /// Starts the API and its CDN for app `slug`, accepting `license_id`; releases on
    /// `default_channel_id` are served when the path names no channel.
    pub fn start(slug: &str, license_id: &str, default_channel_id: &str) -> Vendor {
        let shared = Arc::new(Mutex::new(Shared {
            default_channel_id: default_channel_id.to_string(),
            ..Default::default()
        }));
        let api = TcpListener::bind("127.0.0.1:0").unwrap();
        let cdn = TcpListener::bind("127.0.0.1:0").unwrap();
        let v = Vendor {
            addr: api.local_addr().unwrap().to_string(),
            cdn_addr: cdn.local_addr().unwrap().to_string(),
            license_id: license_id.to_string(),
            slug: slug.to_string(),
            shared,
        };
        for (listener, is_cdn) in [(api, false), (cdn, true)] {
            let ctx = Ctx {
                shared: v.shared.clone(),
                slug: v.slug.clone(),
                expected_auth: format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD
                        .encode(format!("{license_id}:{license_id}"))
                ),
                cdn_addr: v.cdn_addr.clone(),
                is_cdn,
            };
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { return };
                    let ctx = ctx.clone();
                    std::thread::spawn(move || ctx.serve(stream));
                }
            });
        }
        v
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Publishes a release of the files of `dir` (wrapped in a top directory, as vendors'
    /// tarballs are).
    #[allow(clippy::too_many_arguments)]
    pub fn publish(
        &self,
        dir: &Path,
        channel: (&str, &str, &str),
        sequence: i64,
        version_label: &str,
        is_required: bool,
    ) {
        let (channel_id, channel_name, channel_slug) = channel;
        self.shared.lock().unwrap().releases.push(Release {
            channel_id: channel_id.into(),
            channel_name: channel_name.into(),
            channel_slug: channel_slug.into(),
            sequence,
            version_label: version_label.into(),
            is_required,
            released_at: format!("2026-11-{:02}T10:00:00Z", 1 + sequence % 28),
            tgz: tgz(dir),
        });
    }

    /// Release downloads answer with a redirect to the CDN port.
    pub fn use_cdn(&self) {
        self.shared.lock().unwrap().cdn = true;
    }

    /// Every request to the API is answered with a 302 to `location`.
    pub fn redirect_to(&self, location: &str) {
        self.shared.lock().unwrap().redirect = Some(location.to_string());
    }

    /// Every request is answered with `status` and `body`.
    pub fn refuse(&self, status: u16, body: &str) {
        self.shared.lock().unwrap().refuse = Some((status, body.to_string()));
    }

    /// The requests seen so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.lock().unwrap().seen.clone()
    }

    pub fn clear_seen(&self) {
        self.shared.lock().unwrap().seen.clear();
    }

    /// `Basic base64(licenseID:licenseID)`, as KOTS sends it.
    pub fn expected_authorization(&self) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{0}:{0}", self.license_id))
        )
    }
}

#[derive(Clone)]
struct Ctx {
    shared: Arc<Mutex<Shared>>,
    slug: String,
    expected_auth: String,
    cdn_addr: String,
    is_cdn: bool,
}

impl Ctx {
    fn serve(&self, mut stream: TcpStream) {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).is_err() {
            return;
        }
        let mut authorization = None;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("authorization") {
                    authorization = Some(v.trim().to_string());
                }
            }
        }
        let target = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .to_string();
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p.to_string(), q.to_string()),
            None => (target.clone(), String::new()),
        };
        let mut shared = self.shared.lock().unwrap();
        shared.seen.push(Seen {
            cdn: self.is_cdn,
            path: path.clone(),
            query: query.clone(),
            authorization: authorization.clone(),
        });
        let answer = self.answer(&shared, &path, &query, authorization.as_deref());
        drop(shared);
        let (status, headers, body) = answer;
        let head = format!(
            "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(&body);
    }

    fn answer(
        &self,
        shared: &Shared,
        path: &str,
        query: &str,
        authorization: Option<&str>,
    ) -> (String, String, Vec<u8>) {
        let text = |status: &str, body: &str| (status.to_string(), String::new(), body.into());
        if let Some((status, body)) = &shared.refuse {
            return (
                format!("{status} Refused"),
                String::new(),
                body.clone().into(),
            );
        }
        let params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let param = |k: &str| {
            params
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        if self.is_cdn {
            // The CDN must never see the license.
            if authorization.is_some() {
                return text("403 Forbidden", "the CDN was sent an Authorization header");
            }
            let seq: Option<i64> = path.strip_prefix("/blob/").and_then(|s| s.parse().ok());
            return match shared.releases.iter().find(|r| Some(r.sequence) == seq) {
                Some(r) => release_answer(r, String::new()),
                None => text("404 Not Found", "no such blob"),
            };
        }
        if authorization != Some(self.expected_auth.as_str()) {
            return text("401 Unauthorized", "invalid license");
        }
        if let Some(location) = &shared.redirect {
            return (
                "302 Found".into(),
                format!("Location: {location}\r\n"),
                Vec::new(),
            );
        }
        let Some(rest) = path.strip_prefix(&format!("/release/{}", self.slug)) else {
            return text("404 Not Found", "no such app");
        };
        let selected = param("selectedChannelId").unwrap_or_default();
        let after: i64 = param("channelSequence")
            .filter(|s| !s.is_empty())
            .and_then(|s| s.parse().ok())
            .unwrap_or(-1);
        if rest == "/pending" {
            let list: Vec<String> = shared
                .releases
                .iter()
                .filter(|r| r.channel_id == selected && r.sequence > after)
                .map(|r| {
                    format!(
                        r#"{{"channelSequence":{},"channelId":"{}","channelName":"{}","versionLabel":"{}","isRequired":{},"createdAt":"{}"}}"#,
                        r.sequence, r.channel_id, r.channel_name, r.version_label, r.is_required, r.released_at
                    )
                })
                .collect();
            return (
                "200 OK".into(),
                "Content-Type: application/json\r\nX-Replicated-UpdateCheckAt: 2026-12-01T00:00:00Z\r\n"
                    .into(),
                format!(r#"{{"channelReleases":[{}]}}"#, list.join(",")).into(),
            );
        }
        let on_channel: Vec<&Release> = match rest.strip_prefix('/') {
            Some(slug) => shared
                .releases
                .iter()
                .filter(|r| r.channel_slug == slug)
                .collect(),
            None => shared
                .releases
                .iter()
                .filter(|r| r.channel_id == shared.default_channel_id)
                .collect(),
        };
        let chosen = match param("versionLabel") {
            Some(label) => on_channel.into_iter().find(|r| r.version_label == label),
            None => on_channel.into_iter().max_by_key(|r| r.sequence),
        };
        let Some(r) = chosen else {
            return text(
                "404 Not Found",
                "No release matches the version label on this channel.",
            );
        };
        if shared.cdn {
            return (
                "302 Found".into(),
                format!(
                    "Location: http://{}/blob/{}\r\n{}",
                    self.cdn_addr,
                    r.sequence,
                    release_headers(r)
                ),
                Vec::new(),
            );
        }
        release_answer(r, String::new())
    }
}

fn release_headers(r: &Release) -> String {
    format!(
        "X-Replicated-ChannelSequence: {}\r\nX-Replicated-ChannelID: {}\r\nX-Replicated-ChannelName: {}\r\nX-Replicated-VersionLabel: {}\r\nX-Replicated-IsRequired: {}\r\nX-Replicated-ReleasedAt: {}\r\n",
        r.sequence, r.channel_id, r.channel_name, r.version_label, r.is_required, r.released_at
    )
}

/// The tarball with its headers (a CDN serving the vendor's object carries them too, so the
/// client reads them from the answer it finally gets, as KOTS's Go client does).
fn release_answer(r: &Release, extra: String) -> (String, String, Vec<u8>) {
    (
        "200 OK".into(),
        format!(
            "Content-Type: application/gzip\r\n{}{extra}",
            release_headers(r)
        ),
        r.tgz.clone(),
    )
}

pub fn tgz(dir: &Path) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    tar.append_dir_all("release-1", dir).unwrap();
    tar.into_inner().unwrap().finish().unwrap()
}

/// A license file in `dir` for app `myapp`, in the `kots.io/v1beta1` shape (one channel at
/// the top level) or `v1beta2` (`spec.channels`, multi-channel).
pub fn write_license(
    dir: &Path,
    api: &str,
    id: &str,
    endpoint: &str,
    sequence: i64,
) -> std::path::PathBuf {
    let p = dir.join("license.yaml");
    let channels = if api == "kots.io/v1beta2" {
        "  channels:\n  - channelID: ch-stable\n    channelName: Stable\n    channelSlug: stable\n    isDefault: true\n  - channelID: ch-beta\n    channelName: Beta\n    channelSlug: beta\n"
    } else {
        ""
    };
    std::fs::write(
        &p,
        format!(
            "apiVersion: {api}\nkind: License\nmetadata:\n  name: customer\nspec:\n  licenseID: {id}\n  appSlug: myapp\n  endpoint: {endpoint}\n  channelName: Stable\n  channelID: ch-stable\n  licenseSequence: {sequence}\n{channels}"
        ),
    )
    .unwrap();
    p
}
