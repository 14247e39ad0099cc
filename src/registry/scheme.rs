//! HTTP or HTTPS: which schemes to try for a registry host, telling a TLS failure (worth a
//! hint, or a fall back to plain HTTP on loopback) from the rest, and what of a URL or a
//! transport error may be shown (never userinfo or a query, which can hold signatures).
//!
//! HTTPS is the default everywhere. Plain HTTP is allowed only for loopback hosts (which
//! try HTTPS first, because tests and local setups run TLS registries on 127.0.0.1 too),
//! for mirrors marked `insecure`, or for every host with `--plain-http`.

use std::net::IpAddr;

/// The host that serves the registry API for a registry name (Docker Hub's API lives on
/// `registry-1.docker.io`, not on `docker.io`).
pub(crate) fn api_host(registry: &str) -> &str {
    match registry {
        "docker.io" | "index.docker.io" => "registry-1.docker.io",
        other => other,
    }
}

/// Whether `host` (with an optional `:port`) is this machine.
pub(crate) fn is_loopback(host: &str) -> bool {
    let name = strip_port(host);
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let bare = name.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

pub(crate) fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        // [::1]:5000
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !name.contains(':') => {
            name
        }
        _ => host,
    }
}

/// Schemes to try, in order.
pub(crate) fn candidates(
    registry: &str,
    plain_http: bool,
    insecure: bool,
) -> &'static [&'static str] {
    if plain_http {
        &["http"]
    } else if insecure || is_loopback(registry) {
        &["https", "http"]
    } else {
        &["https"]
    }
}

/// Every error in a chain, including the ones `std::io::Error` wraps: its `source()` skips
/// its own payload, and hyper/rustls nest io errors inside io errors.
pub(crate) fn causes<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> Vec<&'a (dyn std::error::Error + 'static)> {
    let mut out = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        out.push(err);
        cur = match err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    out
}

/// Whether a request failed in the TLS layer (handshake, certificate trust, a plain-HTTP
/// server answering a ClientHello), as opposed to a refused connection or a timeout.
pub(crate) fn is_tls_error(e: &(dyn std::error::Error + 'static)) -> bool {
    causes(e)
        .iter()
        .any(|c| c.downcast_ref::<rustls::Error>().is_some())
}

/// Whether two URLs share scheme, host and port: where a registry's credentials may go.
pub(crate) fn same_origin(a: &url::Url, b: &url::Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// A URL as it may appear in messages and logs: no userinfo, fragment or query (upload
/// sessions and storage redirects carry signed state there), except an upload's `digest`,
/// which says what the request was about.
pub(crate) fn redact_url(url: &url::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    let digest: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, v)| k == "digest" && v.starts_with("sha256:"))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    u.set_query(None);
    if !digest.is_empty() {
        u.query_pairs_mut().extend_pairs(digest);
    }
    u.set_fragment(None);
    u.to_string()
}

/// `host[:port]` of a URL, the port only when the URL names one.
pub(crate) fn authority(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }
}

/// An error's message with its causes, `a: b: c` (reqwest's own message alone is terse).
/// reqwest names the URL in its message; that is dropped, since every caller names the
/// request itself, and a URL with a query or userinfo must not be shown.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    for err in causes(e) {
        let mut s = err.to_string();
        if let Some(url) = err.downcast_ref::<reqwest::Error>().and_then(|r| r.url()) {
            s = s.replace(&format!(" for url ({})", url.as_str()), "");
            s = s.replace(url.as_str(), &redact_url(url));
        }
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_compare_scheme_host_and_port() {
        let u = |s: &str| url::Url::parse(s).unwrap();
        assert!(same_origin(
            &u("https://r.io/v2/x"),
            &u("https://r.io:443/")
        ));
        assert!(!same_origin(&u("http://r.io/v2/x"), &u("https://r.io/")));
        assert!(!same_origin(
            &u("https://evil.io/v2/x"),
            &u("https://r.io/")
        ));
        assert!(!same_origin(&u("https://r.io:5000/"), &u("https://r.io/")));
    }

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "localhost:5000",
            "127.0.0.1",
            "127.0.0.1:5000",
            "127.3.4.5:80",
            "[::1]:5000",
            "[::1]",
            "::1",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in [
            "quay.io",
            "10.0.0.1:5000",
            "registry.local:5000",
            "localhost.example.com",
        ] {
            assert!(!is_loopback(h), "{h}");
        }
    }

    #[test]
    fn scheme_candidates() {
        assert_eq!(candidates("quay.io", false, false), ["https"]);
        assert_eq!(
            candidates("127.0.0.1:5000", false, false),
            ["https", "http"]
        );
        assert_eq!(candidates("mirror.local", false, true), ["https", "http"]);
        assert_eq!(candidates("quay.io", true, false), ["http"]);
        assert_eq!(api_host("docker.io"), "registry-1.docker.io");
        assert_eq!(api_host("ghcr.io"), "ghcr.io");
    }

    #[test]
    fn urls_in_messages_lose_userinfo_and_query() {
        let u = url::Url::parse(
            "https://bob:hunter2@s3.example/b/data?X-Amz-Signature=abc&X-Amz-Credential=k#f",
        )
        .unwrap();
        assert_eq!(redact_url(&u), "https://s3.example/b/data");
        let up = url::Url::parse("http://r/v2/x/blobs/uploads/u?_state=secret&digest=sha256%3Aab")
            .unwrap();
        assert_eq!(
            redact_url(&up),
            "http://r/v2/x/blobs/uploads/u?digest=sha256%3Aab"
        );
        assert_eq!(authority(&u), "s3.example");
        let u = url::Url::parse("http://127.0.0.1:5000/v2/").unwrap();
        assert_eq!(authority(&u), "127.0.0.1:5000");
    }
}
