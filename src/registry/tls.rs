//! How a registry's certificate is trusted and which client certificate it is shown, one
//! TLS configuration per host: the system's CAs, `--registry-ca` files, and the host's cert
//! directory ([`super::certdir`]) with its CAs and client certificate. A client certificate
//! is only ever offered to the host whose directory holds it.
//!
//! A certificate given as trusted (in `--registry-ca` or a cert directory's `*.crt`) is also
//! accepted when the registry presents that very certificate as its own, CA flag or not:
//! what Docker's registry docs make with `openssl req -x509`, which OpenSSL 3 marks CA:TRUE
//! and webpki then refuses as `CaUsedAsEndEntity`. Its names (SAN) and validity are still
//! checked; any other certificate goes through webpki as usual.
//!
//! A refused certificate is described (self-signed, unknown issuer, name mismatch, expired)
//! and the hint names only what was not tried yet.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::certdir::{self, CertDirs};
use super::certproblem::{describe, problem, Seen};
use super::error::RegistryError;

/// Which end of a copy a client serves: the flags a hint may name differ.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Role {
    /// Export, and pull's source side: `--source-cert-dir`.
    Source,
    /// Import, and pull's destination: `--registry-cert-dir`.
    #[default]
    Destination,
}

impl Role {
    pub(super) fn cert_dir_flag(self) -> &'static str {
        match self {
            Role::Source => "--source-cert-dir",
            Role::Destination => "--registry-cert-dir",
        }
    }
}

/// TLS settings shared by every host, from which each host's configuration is built.
pub(crate) struct Trust {
    provider: Arc<CryptoProvider>,
    /// The system's CAs and the `--registry-ca` certificates.
    roots: RootCertStore,
    ca_files: Vec<(PathBuf, Vec<CertificateDer<'static>>)>,
    dirs: CertDirs,
    skip_verify: bool,
    role: Role,
}

/// What one host's TLS was set up with, for messages.
#[derive(Debug)]
pub(crate) struct HostInfo {
    pub host: String,
    pub role: Role,
    /// `--registry-ca` files, then the cert directory's `*.crt`.
    pub ca_files: Vec<PathBuf>,
    pub cert_dir: Option<PathBuf>,
    /// The cert directory came from the command line.
    pub explicit_dir: bool,
    pub client_cert: Option<PathBuf>,
    /// Verification is off for this host.
    pub skip_verify: bool,
    /// The server asked for a client certificate (in some handshake).
    pub asked_for_client_cert: AtomicBool,
    /// Some request to this host got an answer.
    pub answered: AtomicBool,
}

pub(crate) struct HostTls {
    pub config: rustls::ClientConfig,
    pub info: Arc<HostInfo>,
}

impl Trust {
    pub fn new(
        ca_files: &[PathBuf],
        dirs: CertDirs,
        skip_verify: bool,
        role: Role,
    ) -> Result<Trust, RegistryError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for e in &native.errors {
            tracing::debug!(error = %e, "reading the system's CA certificates");
        }
        roots.add_parsable_certificates(native.certs);
        let mut files = Vec::new();
        for f in ca_files {
            let certs = certdir::read_certs(f).map_err(|e| {
                RegistryError::Config(format!("--registry-ca {}: {e}", f.display()))
            })?;
            // A certificate webpki cannot use as an anchor may still be pinned.
            roots.add_parsable_certificates(certs.iter().cloned());
            files.push((f.clone(), certs));
        }
        if let Some(d) = &dirs.explicit {
            // Named on the command line: say now if it cannot be read.
            certdir::load(d, true)?;
        }
        Ok(Trust {
            provider,
            roots,
            ca_files: files,
            dirs,
            skip_verify,
            role,
        })
    }

    /// The TLS configuration for `host` (`name[:port]`); `registry` is false for a token
    /// service or a redirect target; `insecure` skips verification (an insecure mirror).
    pub fn host(
        &self,
        host: &str,
        registry: bool,
        insecure: bool,
    ) -> Result<HostTls, RegistryError> {
        let dir = self.dirs.load(host, registry)?;
        let mut roots = self.roots.clone();
        let mut pinned: Vec<CertificateDer<'static>> = Vec::new();
        let mut ca_files = Vec::new();
        for (path, certs) in self.ca_files.iter().chain(dir.cas.iter()) {
            roots.add_parsable_certificates(certs.iter().cloned());
            pinned.extend(certs.iter().cloned());
            ca_files.push(path.clone());
        }
        let key = match &dir.client {
            Some(c) => Some(Arc::new(
                CertifiedKey::from_der(c.chain.clone(), c.key.clone_key(), &self.provider)
                    .map_err(|e| {
                        RegistryError::Config(format!(
                            "client certificate {}: {e} (does its .key belong to it?)",
                            c.cert_file.display()
                        ))
                    })?,
            )),
            None => None,
        };
        let info = Arc::new(HostInfo {
            host: host.to_string(),
            role: self.role,
            ca_files,
            cert_dir: dir.dir.clone(),
            explicit_dir: registry && self.dirs.explicit.is_some(),
            client_cert: dir.client.as_ref().map(|c| c.cert_file.clone()),
            skip_verify: self.skip_verify || insecure,
            asked_for_client_cert: AtomicBool::new(false),
            answered: AtomicBool::new(false),
        });
        let verifier: Arc<dyn ServerCertVerifier> = if self.skip_verify || insecure {
            Arc::new(Verifier {
                webpki: None,
                pinned: Vec::new(),
                algorithms: self.provider.signature_verification_algorithms,
                any: true,
            })
        } else {
            Arc::new(
                Verifier::new(roots, pinned, &self.provider)
                    .map_err(|e| RegistryError::Config(format!("TLS set-up for {host}: {e}")))?,
            )
        };
        let mut config = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| RegistryError::Config(format!("TLS set-up for {host}: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_cert_resolver(Arc::new(ClientCertFor {
                key,
                info: info.clone(),
            }));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(HostTls { config, info })
    }
}

/// Offers the host's client certificate, if it has one, and notes that it was asked for.
#[derive(Debug)]
struct ClientCertFor {
    key: Option<Arc<CertifiedKey>>,
    info: Arc<HostInfo>,
}

impl ResolvesClientCert for ClientCertFor {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.info
            .asked_for_client_cert
            .store(true, Ordering::Relaxed);
        self.key.clone()
    }

    fn has_certs(&self) -> bool {
        self.key.is_some()
    }
}

/// webpki, plus the certificates given as trusted accepted as the server's own.
#[derive(Debug)]
struct Verifier {
    /// `None` when there is no CA at all (no system store, no `--registry-ca`).
    webpki: Option<Arc<WebPkiServerVerifier>>,
    pinned: Vec<CertificateDer<'static>>,
    algorithms: WebPkiSupportedAlgorithms,
    /// With `--insecure-skip-tls-verify` (or an insecure mirror): any certificate; the
    /// handshake signature is still checked against it.
    any: bool,
}

impl Verifier {
    fn new(
        roots: RootCertStore,
        pinned: Vec<CertificateDer<'static>>,
        provider: &Arc<CryptoProvider>,
    ) -> Result<Verifier, rustls::client::VerifierBuilderError> {
        let webpki = if roots.is_empty() {
            None
        } else {
            Some(
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()?,
            )
        };
        Ok(Verifier {
            webpki,
            pinned,
            algorithms: provider.signature_verification_algorithms,
            any: false,
        })
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.any {
            return Ok(ServerCertVerified::assertion());
        }
        let refused = match &self.webpki {
            Some(w) => match w.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            ) {
                Ok(v) => return Ok(v),
                Err(e) => e,
            },
            None => CertificateError::UnknownIssuer.into(),
        };
        let pinned = self
            .pinned
            .iter()
            .any(|p| p.as_ref() == end_entity.as_ref());
        if pinned {
            return check_pinned(end_entity, server_name, now)
                .map(|()| ServerCertVerified::assertion());
        }
        Err(problem(describe(&refused, end_entity, server_name, false)))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A certificate given as trusted, presented as the server's own: its names and validity
/// decide.
fn check_pinned(
    cert: &CertificateDer<'_>,
    server_name: &ServerName<'_>,
    now: UnixTime,
) -> Result<(), rustls::Error> {
    let parsed = rustls::server::ParsedCertificate::try_from(cert)?;
    if let Err(e) = rustls::client::verify_server_name(&parsed, server_name) {
        return Err(problem(describe(&e, cert, server_name, true)));
    }
    let (_, x509) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
    let now = now.as_secs() as i64;
    let v = x509.validity();
    let kind = if now < v.not_before.timestamp() {
        Some(Seen::NotYetValid {
            not_before: v.not_before.to_string(),
        })
    } else if now > v.not_after.timestamp() {
        Some(Seen::Expired {
            not_after: v.not_after.to_string(),
        })
    } else {
        None
    };
    match kind {
        None => Ok(()),
        Some(seen) => {
            let mut p = describe(&CertificateError::Expired.into(), cert, server_name, true);
            p.seen = seen;
            Err(problem(p))
        }
    }
}

#[cfg(test)]
mod tests {
    use rustls::OtherError;

    use super::super::certproblem::CertProblem;
    use super::*;

    fn self_signed(names: &[&str], ca: bool) -> CertificateDer<'static> {
        self_signed_until(names, ca, None)
    }

    fn self_signed_until(
        names: &[&str],
        ca: bool,
        years: Option<(i32, i32)>,
    ) -> CertificateDer<'static> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, names[0]);
        if ca {
            p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        }
        if let Some((from, to)) = years {
            p.not_before = rcgen::date_time_ymd(from, 1, 1);
            p.not_after = rcgen::date_time_ymd(to, 1, 1);
        }
        p.self_signed(&key).unwrap().der().clone()
    }

    fn verifier(pinned: Vec<CertificateDer<'static>>) -> Verifier {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(pinned.iter().cloned());
        Verifier::new(roots, pinned, &provider).unwrap()
    }

    fn verdict(v: &Verifier, cert: &CertificateDer<'static>, host: &str) -> Result<(), Seen> {
        let name = ServerName::try_from(host.to_string()).unwrap();
        v.verify_server_cert(cert, &[], &name, &[], UnixTime::now())
            .map(|_| ())
            .map_err(|e| match e {
                rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(p))) => {
                    p.downcast_ref::<CertProblem>().unwrap().seen.clone()
                }
                other => panic!("undescribed: {other:?}"),
            })
    }

    #[test]
    fn a_given_self_signed_ca_cert_is_accepted_as_the_servers_own_for_its_names_only() {
        let cert = self_signed(&["registry.local"], true);
        let v = verifier(vec![cert.clone()]);
        assert_eq!(verdict(&v, &cert, "registry.local"), Ok(()));
        match verdict(&v, &cert, "other.local") {
            Err(Seen::NameMismatch { names }) => assert_eq!(names, ["registry.local"]),
            other => panic!("{other:?}"),
        }
        // Not given: refused and called what it is.
        let stranger = self_signed(&["registry.local"], true);
        assert_eq!(
            verdict(&v, &stranger, "registry.local"),
            Err(Seen::SelfSigned)
        );
        assert_eq!(
            verdict(&verifier(vec![]), &cert, "registry.local"),
            Err(Seen::SelfSigned)
        );
    }

    #[test]
    fn a_given_certificate_out_of_its_validity_is_refused() {
        let old = self_signed_until(&["registry.local"], true, Some((2019, 2020)));
        match verdict(&verifier(vec![old.clone()]), &old, "registry.local") {
            Err(Seen::Expired { not_after }) => assert!(not_after.contains("2020"), "{not_after}"),
            other => panic!("{other:?}"),
        }
        let future = self_signed_until(&["registry.local"], false, Some((2999, 3000)));
        assert!(matches!(
            verdict(&verifier(vec![future.clone()]), &future, "registry.local"),
            Err(Seen::NotYetValid { .. })
        ));
    }
}
