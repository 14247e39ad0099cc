//! HTTP or HTTPS: which schemes to try for a registry host, and telling a TLS failure
//! (worth a `--registry-ca` hint, or a fall back to plain HTTP on loopback) from the rest.
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

fn strip_port(host: &str) -> &str {
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

/// The hint for an HTTPS failure: how to trust the registry's certificate.
pub(crate) fn tls_hint(registry: &str) -> String {
    format!(
        " (TLS with {registry} failed: pass --registry-ca FILE with the CA certificate that signed the registry's certificate, or --insecure-skip-tls-verify; if the registry serves plain HTTP, pass --plain-http)"
    )
}

/// An error's message with its causes, `a: b: c` (reqwest's own message alone is terse).
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    for err in causes(e) {
        let s = err.to_string();
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
}
