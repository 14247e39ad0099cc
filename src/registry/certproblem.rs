//! What was wrong with a certificate a registry was refused over, and what to tell the
//! user: the refused certificate described (self-signed, unknown issuer, name mismatch,
//! expired) as it travels inside `rustls::Error`, a client certificate the server asked for
//! or refused, and a hint that names only what was not tried yet.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{CertificateError, OtherError};

use super::tls::HostInfo;

/// What was wrong with the certificate a registry presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seen {
    SelfSigned,
    UnknownIssuer,
    NameMismatch { names: Vec<String> },
    Expired { not_after: String },
    NotYetValid { not_before: String },
    Other(String),
}

/// A refused certificate, described; travels inside `rustls::Error` to the error message.
#[derive(Debug, Clone)]
pub(crate) struct CertProblem {
    pub seen: Seen,
    /// The name the client connected to.
    pub host: String,
    pub subject: String,
    pub issuer: String,
    /// The certificate is one of those given as trusted.
    pub given: bool,
}

impl fmt::Display for CertProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let subject = match (self.subject.is_empty(), self.given) {
            (true, false) => String::new(),
            (true, true) => " given as trusted".to_string(),
            (false, false) => format!(" ({})", self.subject),
            (false, true) => format!(" ({}) given as trusted", self.subject),
        };
        match &self.seen {
            Seen::SelfSigned => write!(f, "the certificate{subject} is self-signed"),
            Seen::UnknownIssuer => write!(
                f,
                "the certificate{subject} is signed by an unknown issuer ({})",
                self.issuer
            ),
            Seen::NameMismatch { names } => write!(
                f,
                "the certificate{subject} is for {}, not {}",
                if names.is_empty() {
                    "no host name (it has no subjectAltName)".to_string()
                } else {
                    names.join(", ")
                },
                self.host
            ),
            Seen::Expired { not_after } => {
                write!(f, "the certificate{subject} expired on {not_after}")
            }
            Seen::NotYetValid { not_before } => {
                write!(
                    f,
                    "the certificate{subject} is not valid before {not_before}"
                )
            }
            Seen::Other(why) => write!(f, "the certificate{subject} was refused: {why}"),
        }
    }
}

impl std::error::Error for CertProblem {}

pub(super) fn problem(p: CertProblem) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(p))))
}

/// Turns webpki's verdict into what a person can act on.
pub(super) fn describe(
    err: &rustls::Error,
    cert: &CertificateDer<'_>,
    server_name: &ServerName<'_>,
    given: bool,
) -> CertProblem {
    let host = server_name.to_str().into_owned();
    let parsed = x509_parser::parse_x509_certificate(cert.as_ref()).ok();
    let x509 = parsed.as_ref().map(|(_, c)| c);
    let subject = x509.map(|c| c.subject().to_string()).unwrap_or_default();
    let issuer = x509.map(|c| c.issuer().to_string()).unwrap_or_default();
    let self_issued = x509
        .is_some_and(|c| c.tbs_certificate.subject.as_raw() == c.tbs_certificate.issuer.as_raw());
    let seen = match err {
        rustls::Error::InvalidCertificate(ce) => match ce {
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                Seen::NameMismatch {
                    names: x509.map(names).unwrap_or_default(),
                }
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => Seen::Expired {
                not_after: x509
                    .map(|c| c.validity().not_after.to_string())
                    .unwrap_or_default(),
            },
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                Seen::NotYetValid {
                    not_before: x509
                        .map(|c| c.validity().not_before.to_string())
                        .unwrap_or_default(),
                }
            }
            _ if self_issued => Seen::SelfSigned,
            CertificateError::UnknownIssuer => Seen::UnknownIssuer,
            other => Seen::Other(other.to_string()),
        },
        other => Seen::Other(other.to_string()),
    };
    CertProblem {
        seen,
        host,
        subject,
        issuer,
        given,
    }
}

/// DNS names and IP addresses of the subjectAltName.
fn names(c: &x509_parser::certificate::X509Certificate<'_>) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok(Some(san)) = c.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(d.to_string()),
            GeneralName::IPAddress(b) => match b.len() {
                4 => Some(std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*b).ok()?).to_string()),
                16 => Some(std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*b).ok()?).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// What a TLS failure with `info`'s host was, and what to do: `(what was seen, hint)`.
/// `None` when the failure is not about TLS.
pub(crate) fn explain(
    e: &(dyn std::error::Error + 'static),
    info: Option<&HostInfo>,
) -> Option<(String, String)> {
    let causes = super::scheme::causes(e);
    let rustls_err = causes
        .iter()
        .find_map(|c| c.downcast_ref::<rustls::Error>());
    let alert = alert_received(e);
    if let Some(info) = info.filter(|i| client_cert_problem(e, i)) {
        let host = &info.host;
        let what = alert
            .map(|a| format!("the registry answered with TLS alert {a}"))
            .unwrap_or_else(|| "the registry closed the connection".to_string());
        return Some(match &info.client_cert {
            None => (
                format!("the registry asked for a client certificate and none is set up for {host} ({what})"),
                if info.explicit_dir {
                    format!(
                        "{} holds no client certificate: add client.cert and client.key there",
                        info.cert_dir
                            .as_ref()
                            .map(|d| d.display().to_string())
                            .unwrap_or_default()
                    )
                } else {
                    format!(
                        "put client.cert and client.key in {}, or pass {} DIR with them",
                        dir_hint(host),
                        info.role.cert_dir_flag()
                    )
                },
            ),
            Some(cert) => (
                format!(
                    "the registry refused the client certificate {} ({what})",
                    cert.display()
                ),
                "it must be signed by a CA the registry trusts for clients (distribution's http.tls.clientcas)".to_string(),
            ),
        });
    }
    let rustls_err = rustls_err?;
    let Some(info) = info else {
        return Some((
            format!("TLS failed: {rustls_err}"),
            "pass --registry-ca FILE with the CA that signed the certificate, or --insecure-skip-tls-verify".into(),
        ));
    };
    let host = &info.host;
    let given = if info.ca_files.is_empty() {
        String::new()
    } else {
        info.ca_files
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(inner))) =
        rustls_err
    {
        if let Some(p) = inner.downcast_ref::<CertProblem>() {
            let hint = match &p.seen {
                Seen::SelfSigned if !given.is_empty() => format!(
                    "it is none of the certificates given ({given}): give the certificate the registry serves (its domain.crt), or the CA that signed it"
                ),
                Seen::SelfSigned => format!(
                    "pass --registry-ca FILE with that certificate (the registry's domain.crt), or put it in {}; or --insecure-skip-tls-verify",
                    ca_hint(host)
                ),
                Seen::UnknownIssuer if !given.is_empty() => format!(
                    "none of the certificates given ({given}) nor the system's CAs signed it: give the CA certificate of {}",
                    p.issuer
                ),
                Seen::UnknownIssuer => format!(
                    "pass --registry-ca FILE with the CA certificate that signed it, or put it in {}; or --insecure-skip-tls-verify",
                    ca_hint(host)
                ),
                Seen::NameMismatch { .. } => format!(
                    "reach the registry by a name the certificate holds, or have the certificate reissued with {} in its subjectAltName",
                    strip_port(host)
                ),
                Seen::Expired { .. } => {
                    "renew the registry's certificate (or check this machine's clock)".to_string()
                }
                Seen::NotYetValid { .. } => "check this machine's clock".to_string(),
                Seen::Other(_) => "check the registry's certificate".to_string(),
            };
            return Some((p.to_string(), hint));
        }
    }
    let mut hint = String::from("if the registry serves plain HTTP, pass --plain-http");
    if given.is_empty() && info.cert_dir.is_none() && !info.skip_verify {
        hint = format!(
            "pass --registry-ca FILE with the CA that signed the registry's certificate, or --insecure-skip-tls-verify; {hint}"
        );
    }
    Some((format!("TLS failed: {rustls_err}"), hint))
}

fn ca_hint(host: &str) -> String {
    format!("/etc/docker/certs.d/{host}/ca.crt (or /etc/containers/certs.d/{host}/ca.crt)")
}

fn dir_hint(host: &str) -> String {
    format!("/etc/docker/certs.d/{host}/ (or /etc/containers/certs.d/{host}/)")
}

/// The TLS alert the server sent, if one ended the connection. After the handshake rustls
/// reports it only as text inside an I/O error.
fn alert_received(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    super::scheme::causes(e).iter().find_map(|c| {
        if let Some(rustls::Error::AlertReceived(a)) = c.downcast_ref::<rustls::Error>() {
            return Some(format!("{a:?}"));
        }
        let s = c.to_string();
        let (_, rest) = s.split_once("received fatal alert: ")?;
        Some(rest.split_whitespace().next().unwrap_or("").to_string())
    })
}

/// Whether a failure with this host is about the client certificate: the server asked for
/// one, and then refused the handshake or closed the connection (TLS 1.3 servers do that
/// after the handshake, so it shows as a broken connection, not a handshake failure). Such
/// a failure does not heal by retrying.
pub(crate) fn client_cert_problem(e: &(dyn std::error::Error + 'static), info: &HostInfo) -> bool {
    if !info.asked_for_client_cert.load(Ordering::Relaxed) {
        return false;
    }
    if let Some(a) = alert_received(e) {
        return matches!(
            a.as_str(),
            "CertificateRequired"
                | "BadCertificate"
                | "UnknownCA"
                | "CertificateUnknown"
                | "HandshakeFailure"
                | "AccessDenied"
                | "UnsupportedCertificate"
                | "CertificateExpired"
                | "CertificateRevoked"
        );
    }
    // Connected and then cut before the host ever answered: the handshake's verdict on
    // the certificate, as TLS 1.3 servers give it. Once the host has answered, a cut is
    // only a cut.
    if info.answered.load(Ordering::Relaxed) {
        return false;
    }
    super::scheme::causes(e)
        .iter()
        .find_map(|c| c.downcast_ref::<reqwest::Error>())
        .is_some_and(|r| !r.is_timeout() && (r.is_request() || r.is_connect()))
        && !super::scheme::causes(e).iter().any(|c| {
            c.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
        })
}

fn strip_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) && !h.contains(':') => h,
        _ => host,
    }
}
