//! The read-only distribution API: one request in, one response out. Reads (GET, HEAD) of
//! `/v2/`, the catalog, tags lists, manifests and blobs; every write is refused with 405 and
//! a distribution error body, as a read-only registry answers.

use std::ops::RangeInclusive;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::header;
use hyper::{Method, Request, Response, StatusCode};

use super::catalog::Catalog;
use super::{blob, Body};
use crate::archive::ArchiveReader;
use crate::digest::Digest;

/// Most names or tags one list answer holds (a client may ask for fewer with `n`).
const MAX_PAGE: usize = 1000;

/// What every answer needs to know.
pub struct State {
    pub reader: Arc<ArchiveReader>,
    pub catalog: Catalog,
}

/// The error codes of the distribution spec this server answers with.
#[derive(Debug, Clone, Copy)]
enum Code {
    BlobUnknown,
    ManifestUnknown,
    NameUnknown,
    DigestInvalid,
    Unsupported,
}

impl Code {
    fn as_str(self) -> &'static str {
        match self {
            Code::BlobUnknown => "BLOB_UNKNOWN",
            Code::ManifestUnknown => "MANIFEST_UNKNOWN",
            Code::NameUnknown => "NAME_UNKNOWN",
            Code::DigestInvalid => "DIGEST_INVALID",
            Code::Unsupported => "UNSUPPORTED",
        }
    }
}

fn empty() -> Body {
    Empty::<Bytes>::new().map_err(|e| match e {}).boxed()
}

fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into()).map_err(|e| match e {}).boxed()
}

fn base(status: StatusCode) -> hyper::http::response::Builder {
    Response::builder()
        .status(status)
        .header("Docker-Distribution-API-Version", "registry/2.0")
}

fn error(status: StatusCode, code: Code, message: &str, head: bool) -> Response<Body> {
    let body = serde_json::json!({
        "errors": [{"code": code.as_str(), "message": message, "detail": null}]
    });
    let data = serde_json::to_vec(&body).expect("json");
    base(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, data.len())
        .body(if head { empty() } else { full(data) })
        .expect("valid response")
}

fn json(value: serde_json::Value, link: Option<String>) -> Response<Body> {
    let data = serde_json::to_vec(&value).expect("json");
    let mut b = base(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, data.len());
    if let Some(l) = link {
        b = b.header(header::LINK, l);
    }
    b.body(full(data)).expect("valid response")
}

/// Answers one request.
pub async fn handle<B>(state: Arc<State>, req: Request<B>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let head = method == Method::HEAD;
    let response = if method != Method::GET && method != Method::HEAD {
        error(
            StatusCode::METHOD_NOT_ALLOWED,
            Code::Unsupported,
            "this registry is read-only: kots-bundle serve answers pulls only",
            false,
        )
    } else {
        let range = req
            .headers()
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        route(&state, &path, &query, head, range.as_deref()).await
    };
    tracing::info!(
        "{method} {path}{}{query} -> {}",
        if query.is_empty() { "" } else { "?" },
        response.status().as_u16()
    );
    let mut response = response;
    if head {
        // HEAD answers carry the GET's headers and no body.
        *response.body_mut() = empty();
    }
    response
}

async fn route(
    state: &State,
    path: &str,
    query: &str,
    head: bool,
    range: Option<&str>,
) -> Response<Body> {
    let Some(rest) = path.strip_prefix("/v2/") else {
        return error(StatusCode::NOT_FOUND, Code::NameUnknown, "not found", head);
    };
    if rest.is_empty() {
        return json(serde_json::json!({}), None);
    }
    if rest == "_catalog" {
        return catalog(state, query);
    }
    let params = Params::parse(query);
    let ns = params.get("ns");
    if let Some(name) = rest.strip_suffix("/tags/list") {
        let Some(repo) = state.catalog.repo(name, ns) else {
            return name_unknown(name, head);
        };
        let tags: Vec<&String> = repo.tags.keys().collect();
        let (page, link) = paginate(&tags, &params, &format!("/v2/{name}/tags/list"));
        return json(serde_json::json!({"name": name, "tags": page}), link);
    }
    if let Some((name, reference)) = split_last(rest, "/manifests/") {
        let Some(repo) = state.catalog.repo(name, ns) else {
            return name_unknown(name, head);
        };
        let Some((digest, info)) = repo.manifest(reference) else {
            return error(
                StatusCode::NOT_FOUND,
                Code::ManifestUnknown,
                &format!("manifest {name}:{reference} is not in this archive"),
                head,
            );
        };
        let builder = base(StatusCode::OK)
            .header(header::CONTENT_TYPE, info.media_type.as_str())
            .header(header::CONTENT_LENGTH, info.size)
            .header("Docker-Content-Digest", digest.as_str())
            .header(header::ETAG, format!("\"{digest}\""));
        if head {
            return builder.body(empty()).expect("valid response");
        }
        let reader = state.reader.clone();
        let d = digest.clone();
        return match tokio::task::spawn_blocking(move || reader.read_blob(&d)).await {
            Ok(Ok(data)) => builder.body(full(data)).expect("valid response"),
            Ok(Err(e)) => {
                tracing::error!("manifest {digest}: {e}");
                internal(&format!(
                    "manifest {digest} cannot be read from the archive"
                ))
            }
            Err(e) => internal(&e.to_string()),
        };
    }
    if let Some((name, digest)) = split_last(rest, "/blobs/") {
        let Some(repo) = state.catalog.repo(name, ns) else {
            return name_unknown(name, head);
        };
        let Ok(digest) = digest.parse::<Digest>() else {
            return error(
                StatusCode::BAD_REQUEST,
                Code::DigestInvalid,
                &format!("{digest:?} is not a sha256 digest"),
                head,
            );
        };
        let Some(&size) = repo.blobs.get(&digest) else {
            return error(
                StatusCode::NOT_FOUND,
                Code::BlobUnknown,
                &format!("blob {digest} is not in {name}"),
                head,
            );
        };
        return blob_response(state, digest, size, head, range);
    }
    error(
        StatusCode::NOT_FOUND,
        Code::NameUnknown,
        &format!("{path} is not a route of this registry"),
        head,
    )
}

fn blob_response(
    state: &State,
    digest: Digest,
    size: u64,
    head: bool,
    range: Option<&str>,
) -> Response<Body> {
    let (status, span) = match range.map(|r| parse_range(r, size)) {
        None | Some(RangeAsk::Ignore) => (StatusCode::OK, None),
        Some(RangeAsk::Part(r)) => (StatusCode::PARTIAL_CONTENT, Some(r)),
        Some(RangeAsk::Unsatisfiable) => {
            // As Go's http.ServeContent (and so distribution) answers: no error code.
            return base(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{size}"))
                .header(header::CONTENT_LENGTH, 0)
                .body(empty())
                .expect("valid response");
        }
    };
    let whole = 0..=size.saturating_sub(1);
    let span = span.unwrap_or(whole);
    let length = if size == 0 {
        0
    } else {
        span.end() - span.start() + 1
    };
    let mut b = base(status)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, length)
        .header(header::ACCEPT_RANGES, "bytes")
        .header("Docker-Content-Digest", digest.as_str())
        .header(header::ETAG, format!("\"{digest}\""));
    if status == StatusCode::PARTIAL_CONTENT {
        b = b.header(
            header::CONTENT_RANGE,
            format!("bytes {}-{}/{size}", span.start(), span.end()),
        );
    }
    let body = if head {
        empty()
    } else {
        blob::body(state.reader.clone(), digest, size, span)
    };
    b.body(body).expect("valid response")
}

fn internal(message: &str) -> Response<Body> {
    let body = serde_json::json!({
        "errors": [{"code": "UNKNOWN", "message": message, "detail": null}]
    });
    base(StatusCode::INTERNAL_SERVER_ERROR)
        .header(header::CONTENT_TYPE, "application/json")
        .body(full(serde_json::to_vec(&body).expect("json")))
        .expect("valid response")
}

fn name_unknown(name: &str, head: bool) -> Response<Body> {
    error(
        StatusCode::NOT_FOUND,
        Code::NameUnknown,
        &format!("repository {name:?} is not in this archive"),
        head,
    )
}

fn catalog(state: &State, query: &str) -> Response<Body> {
    let params = Params::parse(query);
    let names: Vec<&String> = state.catalog.repos.keys().collect();
    let (page, link) = paginate(&names, &params, "/v2/_catalog");
    json(serde_json::json!({"repositories": page}), link)
}

/// `n` and `last` of a list request, as the distribution spec pages: the names after
/// `last`, at most `n`, and a `Link` to the next page when there is one.
fn paginate<'a>(
    sorted: &[&'a String],
    params: &Params,
    path: &str,
) -> (Vec<&'a String>, Option<String>) {
    let n = params
        .get("n")
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(MAX_PAGE)
        .min(MAX_PAGE);
    let from = match params.get("last") {
        Some(last) => sorted.partition_point(|s| s.as_str() <= last),
        None => 0,
    };
    let page: Vec<&String> = sorted[from..].iter().take(n).copied().collect();
    let link = match page.last() {
        Some(last) if from + page.len() < sorted.len() => Some(format!(
            "<{path}?n={n}&last={}>; rel=\"next\"",
            url::form_urlencoded::byte_serialize(last.as_bytes()).collect::<String>()
        )),
        _ => None,
    };
    (page, link)
}

/// A query string's parameters, decoded.
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(query: &str) -> Params {
        Params(
            url::form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect(),
        )
    }
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// `name/manifests/ref` -> (`name`, `ref`): split at the last marker, since a repository
/// name may itself contain `manifests` or `blobs` components.
fn split_last<'a>(rest: &'a str, marker: &str) -> Option<(&'a str, &'a str)> {
    let i = rest.rfind(marker)?;
    let (name, reference) = (&rest[..i], &rest[i + marker.len()..]);
    if name.is_empty() || reference.is_empty() || reference.contains('/') {
        return None;
    }
    Some((name, reference))
}

#[derive(Debug, PartialEq, Eq)]
enum RangeAsk {
    /// Answer with the whole blob (no range, or one this server does not do: several).
    Ignore,
    Part(RangeInclusive<u64>),
    Unsatisfiable,
}

/// One `bytes=` range (`a-b`, `a-`, `-n`) against a blob of `size` bytes.
fn parse_range(header: &str, size: u64) -> RangeAsk {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return RangeAsk::Ignore;
    };
    if spec.contains(',') {
        return RangeAsk::Ignore;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeAsk::Unsatisfiable;
    };
    let num = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let (start, end) = match (a.trim(), b.trim()) {
        ("", suffix) => match num(suffix) {
            Some(0) | None => return RangeAsk::Unsatisfiable,
            Some(n) => (size.saturating_sub(n), size.saturating_sub(1)),
        },
        (from, "") => match num(from) {
            Some(s) => (s, size.saturating_sub(1)),
            None => return RangeAsk::Unsatisfiable,
        },
        (from, to) => match (num(from), num(to)) {
            (Some(s), Some(e)) if s <= e => (s, e.min(size.saturating_sub(1))),
            _ => return RangeAsk::Unsatisfiable,
        },
    };
    if size == 0 || start >= size {
        return RangeAsk::Unsatisfiable;
    }
    RangeAsk::Part(start..=end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), RangeAsk::Part(0..=9));
        assert_eq!(parse_range("bytes=90-", 100), RangeAsk::Part(90..=99));
        assert_eq!(parse_range("bytes=-10", 100), RangeAsk::Part(90..=99));
        assert_eq!(parse_range("bytes=-500", 100), RangeAsk::Part(0..=99));
        assert_eq!(parse_range("bytes=50-500", 100), RangeAsk::Part(50..=99));
        assert_eq!(parse_range("bytes=100-", 100), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range("bytes=9-3", 100), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range("bytes=x-3", 100), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), RangeAsk::Ignore);
        assert_eq!(parse_range("items=0-1", 100), RangeAsk::Ignore);
    }

    #[test]
    fn names_split_at_the_last_marker() {
        assert_eq!(
            split_last("a/manifests/b/manifests/v1", "/manifests/"),
            Some(("a/manifests/b", "v1"))
        );
        assert_eq!(split_last("a/manifests/", "/manifests/"), None);
        assert_eq!(split_last("a/blobs/x/y", "/blobs/"), None);
    }

    #[test]
    fn pages_follow_last_and_n() {
        let names: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        let refs: Vec<&String> = names.iter().collect();
        let (page, link) = paginate(&refs, &Params::parse("n=2"), "/v2/_catalog");
        assert_eq!(page, [&names[0], &names[1]]);
        assert_eq!(
            link.as_deref(),
            Some("</v2/_catalog?n=2&last=b>; rel=\"next\"")
        );
        let (page, link) = paginate(&refs, &Params::parse("n=2&last=b"), "/v2/_catalog");
        assert_eq!(page, [&names[2], &names[3]]);
        assert_eq!(link, None);
    }
}
