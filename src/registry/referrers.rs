//! The OCI 1.1 referrers API (`GET /v2/<name>/referrers/<digest>`): the manifests whose
//! `subject` is a given manifest, as an image index, perhaps over several pages (`Link:
//! <...>; rel="next"`). Read through the mirrors like every other read; the first location
//! that answers decides, as for the attachment tags.

use reqwest::header::{ACCEPT, CONTENT_TYPE, LINK};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::digest::Digest;
use crate::manifest::OCI_INDEX;

use super::error::{Action, RegistryError};
use super::retry::Attempt;
use super::timeout::Meter;
use super::{Client, ReadFail};

/// Bodies over all pages: an honest list is a few KiB; this bounds what one image costs.
pub const MAX_REFERRERS_BODY: u64 = 4 * 1024 * 1024;
/// Descriptors over all pages.
pub const MAX_REFERRERS: usize = 1000;
/// Pages followed (a loop of `next` links ends here too).
pub const MAX_REFERRER_PAGES: usize = 16;

/// One entry of a referrers index: its descriptor exactly as the registry wrote it (with
/// `artifactType`, `annotations`), so it goes back into an index unchanged.
#[derive(Debug, Clone)]
pub struct Referrer {
    pub digest: Digest,
    pub media_type: String,
    pub json: Box<RawValue>,
}

impl Client {
    /// The referrers of `digest` in `repository`, or `None` when the registry has no
    /// referrers API (404, 400, 405, 501 on the first page). A body that is not an image
    /// index, or more than the limits above allow, is an error.
    pub async fn referrers(
        &self,
        registry: &str,
        repository: &str,
        digest: &Digest,
    ) -> Result<Option<Vec<Referrer>>, RegistryError> {
        self.read_through(
            registry,
            repository,
            digest.as_str(),
            |loc| async move {
                self.referrers_at(&loc.registry, &loc.repository, digest)
                    .await
            },
            |_| true,
        )
        .await
    }

    async fn referrers_at(
        &self,
        registry: &str,
        repository: &str,
        digest: &Digest,
    ) -> Result<Option<Vec<Referrer>>, RegistryError> {
        let ep = self.endpoint(registry).await?;
        let mut call = self.call(
            &ep,
            repository,
            Method::GET,
            &format!("/v2/{repository}/referrers/{digest}"),
            Action::Pull,
            format!("referrers of {digest}"),
        )?;
        let protocol = |why: String| RegistryError::Protocol {
            registry: registry.to_string(),
            repository: repository.to_string(),
            why: format!("referrers of {digest}: {why}"),
        };
        let mut got = Gathered::default();
        for page in 0..MAX_REFERRER_PAGES {
            let left = got.room();
            let label = call.label();
            let answer = self
                .retrier()
                .run(registry, &label, || async {
                    let resp = match self
                        .step(&call, self.send_once(&call, &accept_index).await)
                        .await
                    {
                        Ok(r) => r,
                        Err(a) => return a,
                    };
                    let status = resp.status();
                    if status != StatusCode::OK {
                        // A registry without the API answers the route as unknown.
                        let absent = matches!(status.as_u16(), 400 | 404 | 405 | 501);
                        return Attempt::Done(if page == 0 && absent {
                            Ok(None)
                        } else {
                            Err(self.fail(&call, resp).await)
                        });
                    }
                    let content_type = resp
                        .headers()
                        .get(CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .map(|v| v.split(';').next().unwrap_or("").trim().to_string());
                    let links: Vec<String> = resp
                        .headers()
                        .get_all(LINK)
                        .iter()
                        .filter_map(|v| v.to_str().ok().map(str::to_string))
                        .collect();
                    match self.read_capped(resp, left).await {
                        Ok(b) => Attempt::Done(Ok(Some((content_type, links, b)))),
                        Err(ReadFail::TooLarge) => Attempt::Done(Err(RegistryError::TooLarge {
                            registry: registry.to_string(),
                            what: format!(
                                "referrers of {registry}/{repository}@{digest} (over all pages)"
                            ),
                            limit: MAX_REFERRERS_BODY,
                        })),
                        Err(ReadFail::Io(e)) => Attempt::Retry {
                            why: e.to_string(),
                            last: Err(protocol(format!("reading the answer: {e}"))),
                            after: None,
                        },
                    }
                })
                .await?;
            let Some((content_type, links, body)) = answer else {
                return Ok(None);
            };
            let entries = parse_index(content_type.as_deref(), &body).map_err(protocol)?;
            got.take(body.len(), entries).map_err(protocol)?;
            let Some(link) = links.iter().find_map(|l| next_link(l)) else {
                return Ok(Some(got.out));
            };
            let next = call
                .url
                .join(&link)
                .map_err(|e| protocol(format!("next page link {link:?}: {e}")))?;
            // The registry's credentials go with the request: never to another origin.
            if !super::scheme::same_origin(&next, &ep.base) {
                return Err(protocol(format!(
                    "the next page is on another origin ({}); not followed",
                    super::scheme::redact_url(&next)
                )));
            }
            call.url = next;
        }
        Err(protocol(format!(
            "more than {MAX_REFERRER_PAGES} pages; refusing them"
        )))
    }
}

/// What the pages gave so far, within the limits.
#[derive(Default)]
struct Gathered {
    read: u64,
    out: Vec<Referrer>,
}

impl Gathered {
    /// Bytes the next page may have.
    fn room(&self) -> u64 {
        MAX_REFERRERS_BODY.saturating_sub(self.read)
    }

    fn take(&mut self, bytes: usize, entries: Vec<Referrer>) -> Result<(), String> {
        self.read += bytes as u64;
        if self.read > MAX_REFERRERS_BODY {
            return Err(format!(
                "answers over {MAX_REFERRERS_BODY} bytes; refusing them"
            ));
        }
        self.out.extend(entries);
        if self.out.len() > MAX_REFERRERS {
            return Err(format!(
                "more than {MAX_REFERRERS} referrers; refusing them"
            ));
        }
        Ok(())
    }
}

fn accept_index(rb: RequestBuilder, _: &std::sync::Arc<Meter>) -> RequestBuilder {
    rb.header(ACCEPT, OCI_INDEX)
}

#[derive(Deserialize)]
struct Index {
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    manifests: Vec<Box<RawValue>>,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(rename = "mediaType")]
    media_type: String,
    digest: String,
    // Required of a descriptor, though nothing here reads it.
    #[allow(dead_code)]
    size: u64,
}

/// The entries of an image index (a referrers answer, or a referrers tag's index): its
/// `Content-Type` must say index, or be generic and the body say so itself.
pub fn parse_index(content_type: Option<&str>, body: &[u8]) -> Result<Vec<Referrer>, String> {
    let generic = [
        "",
        "application/octet-stream",
        "text/plain",
        "application/json",
    ];
    match content_type {
        Some(ct) if ct != OCI_INDEX && !generic.contains(&ct) => {
            return Err(format!(
                "the answer is {ct:?}, not an OCI image index ({OCI_INDEX})"
            ))
        }
        _ => {}
    }
    let index: Index = serde_json::from_slice(body)
        .map_err(|e| format!("the answer is not an OCI image index: {e}"))?;
    if let Some(mt) = index.media_type.as_deref().filter(|mt| *mt != OCI_INDEX) {
        return Err(format!(
            "the answer is a {mt:?}, not an OCI image index ({OCI_INDEX})"
        ));
    }
    index
        .manifests
        .into_iter()
        .map(|json| {
            let e: Entry = serde_json::from_str(json.get())
                .map_err(|e| format!("an index entry is not a descriptor: {e}"))?;
            let digest = e
                .digest
                .parse()
                .map_err(|err| format!("an index entry's digest {:?}: {err}", e.digest))?;
            Ok(Referrer {
                digest,
                media_type: e.media_type,
                json,
            })
        })
        .collect()
}

/// The target of a `rel="next"` link in one `Link` header value (RFC 8288: several
/// comma-separated links, each `<uri>` then `;`-separated parameters).
fn next_link(value: &str) -> Option<String> {
    let mut rest = value;
    while let Some(start) = rest.find('<') {
        let end = start + rest[start..].find('>')?;
        let target = &rest[start + 1..end];
        let params = &rest[end + 1..];
        let params = &params[..params.find('<').unwrap_or(params.len())];
        let next = params.split(';').any(|p| {
            let Some((k, v)) = p.split_once('=') else {
                return false;
            };
            k.trim().eq_ignore_ascii_case("rel")
                && v.trim()
                    .trim_matches('"')
                    .split_whitespace()
                    .any(|r| r.eq_ignore_ascii_case("next"))
        });
        if next {
            return Some(target.trim().to_string());
        }
        rest = &rest[end + 1..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_links_are_found_among_others() {
        for (v, want) in [
            (
                r#"</v2/r/referrers/sha256:1?n=2&last=x>; rel="next""#,
                Some("/v2/r/referrers/sha256:1?n=2&last=x"),
            ),
            (r#"<https://h/a>; rel=next"#, Some("https://h/a")),
            (
                r#"<https://h/p>; rel="prev", <https://h/n>; title="x"; rel="NEXT""#,
                Some("https://h/n"),
            ),
            (r#"<https://h/p>; rel="prev""#, None),
            (r#"<https://h/a>; rel="first next""#, Some("https://h/a")),
            ("", None),
            ("<unclosed; rel=next", None),
        ] {
            assert_eq!(next_link(v).as_deref(), want, "{v}");
        }
    }

    #[test]
    fn limits_hold_over_all_pages() {
        let one = || {
            let d = format!("sha256:{}", "b".repeat(64));
            Referrer {
                digest: d.parse().unwrap(),
                media_type: "m".into(),
                json: RawValue::from_string("{}".into()).unwrap(),
            }
        };
        let mut g = Gathered::default();
        g.take(1024, vec![one(); MAX_REFERRERS]).unwrap();
        assert_eq!(g.room(), MAX_REFERRERS_BODY - 1024);
        let e = g.take(0, vec![one()]).unwrap_err();
        assert!(e.contains("more than 1000 referrers"), "{e}");
        let mut g = Gathered::default();
        g.take(MAX_REFERRERS_BODY as usize, vec![]).unwrap();
        assert_eq!(g.room(), 0);
        assert!(g.take(1, vec![]).unwrap_err().contains("bytes"));
    }

    #[test]
    fn an_index_keeps_each_descriptor_as_written() {
        let d = format!("sha256:{}", "a".repeat(64));
        let entry = format!(
            r#"{{"size":3, "mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{d}","artifactType":"application/spdx+json","annotations":{{"z":"1","a":"2"}}}}"#
        );
        let body = format!(r#"{{"schemaVersion":2,"manifests":[{entry}]}}"#);
        for ct in [Some(OCI_INDEX), None, Some("application/json")] {
            let got = parse_index(ct, body.as_bytes()).unwrap();
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].json.get(), entry);
            assert_eq!(got[0].digest.as_str(), d);
        }
    }

    #[test]
    fn what_is_not_an_index_is_refused() {
        let d = format!("sha256:{}", "a".repeat(64));
        let ok = format!(r#"{{"manifests":[{{"mediaType":"m","digest":"{d}","size":1}}]}}"#);
        for (ct, body, why) in [
            (Some("text/html"), ok.clone(), "text/html"),
            (
                Some(OCI_INDEX),
                "<html>".to_string(),
                "not an OCI image index",
            ),
            (
                Some(OCI_INDEX),
                r#"{"mediaType":"application/vnd.oci.image.manifest.v1+json","manifests":[]}"#
                    .to_string(),
                "not an OCI image index",
            ),
            (
                Some(OCI_INDEX),
                r#"{"manifests":[{"digest":"x"}]}"#.into(),
                "descriptor",
            ),
            (
                Some(OCI_INDEX),
                r#"{"manifests":[{"mediaType":"m","digest":"md5:x","size":1}]}"#.into(),
                "digest",
            ),
        ] {
            let e = parse_index(ct, body.as_bytes()).unwrap_err();
            assert!(e.contains(why), "{body}: {e}");
        }
    }
}
