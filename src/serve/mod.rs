//! `serve`: an `.airgap` archive as a read-only OCI registry, read in place. For a network
//! that has no registry yet: clients (skopeo, containerd or docker mirrors, a distribution
//! registry as a pull-through cache) pull straight out of the file.
//!
//! - [`catalog`]: which names are served and what each holds (built from the manifests);
//! - [`routes`]: the distribution API's read routes, writes refused with 405;
//! - [`blob`]: blobs streamed with flat memory, each checked against its digest as served.
//!
//! One task per connection (HTTP/1.1 and h2, optionally TLS); each blob response reads the
//! archive from its own file handle on a blocking thread, so clients do not wait on each
//! other.

mod blob;
pub mod catalog;
mod routes;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::archive::{ArchiveReader, ArchiveSource};
use crate::copy;
use crate::reference::Reference;

pub use catalog::{Catalog, Naming};

/// Every response body: small ones whole, blobs streamed.
pub(crate) type Body = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

pub struct ServeOptions {
    pub archive: PathBuf,
    pub listen: SocketAddr,
    /// PEM certificate chain and private key: serve HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub naming: Naming,
}

/// A server bound to its address, ready to run.
pub struct Server {
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<routes::State>,
}

impl Server {
    /// Opens the archive (head, index, every manifest checked), builds the catalog and
    /// binds the address.
    pub async fn bind(opts: &ServeOptions) -> anyhow::Result<Server> {
        let path = opts.archive.clone();
        let reader = Arc::new(
            tokio::task::spawn_blocking(move || {
                let reader = ArchiveReader::open(&path)?;
                reader.check_layout()?;
                Ok::<_, crate::archive::ArchiveError>(reader)
            })
            .await
            .context("reading the archive")??,
        );
        // It could not answer for the blobs it leaves out: clients would get 404 mid-pull.
        if let Some(d) = &reader.metadata().differential {
            anyhow::bail!(
                "{} is a differential archive (made against {}): it leaves out {} blobs, so it \
                 cannot be served as a registry; serve the complete archive, or import this \
                 one into the registry that holds the rest",
                opts.archive.display(),
                d.against.describe(),
                d.omitted.len()
            );
        }
        let source = ArchiveSource::new(reader.clone());
        let sources: Vec<Reference> = reader
            .metadata()
            .images
            .iter()
            .map(|i| i.reference.clone())
            .collect();
        let mut images = Vec::with_capacity(sources.len());
        for r in &sources {
            images.push(copy::resolve(&source, r, &[]).await?);
        }
        let catalog = Catalog::build(&images, &opts.naming)?;
        for (name, owners) in &catalog.ambiguous {
            tracing::warn!(
                "not serving {name:?}: it would name {}; use their whole names ({})",
                owners.join(" and "),
                owners.join(", ")
            );
        }
        let tls = match &opts.tls {
            Some((cert, key)) => Some(acceptor(cert, key)?),
            None => None,
        };
        let listener = tokio::net::TcpListener::bind(opts.listen)
            .await
            .with_context(|| format!("listening on {}", opts.listen))?;
        Ok(Server {
            listener,
            tls,
            state: Arc::new(routes::State { reader, catalog }),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn catalog(&self) -> &Catalog {
        &self.state.catalog
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Accepts connections until `stop` resolves; connections already open are then given a
    /// few seconds to finish.
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
        let mut stop = std::pin::pin!(stop);
        let tracker = tokio_util::task::TaskTracker::new();
        loop {
            let (tcp, peer) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: pause instead of spinning.
                        tracing::warn!("accepting a connection: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                },
                _ = &mut stop => break,
            };
            let _ = tcp.set_nodelay(true);
            let state = self.state.clone();
            let tls = self.tls.clone();
            tracker.spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let state = state.clone();
                    async move { Ok::<_, std::convert::Infallible>(routes::handle(state, req).await) }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let served = match tls {
                    Some(acceptor) => match acceptor.accept(tcp).await {
                        Ok(stream) => {
                            builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await
                        }
                        Err(e) => {
                            tracing::info!("{peer}: TLS handshake failed: {e}");
                            return;
                        }
                    },
                    None => builder.serve_connection(TokioIo::new(tcp), service).await,
                };
                if let Err(e) = served {
                    tracing::debug!("{peer}: connection ended: {e}");
                }
            });
        }
        tracker.close();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), tracker.wait()).await;
        Ok(())
    }
}

/// A TLS acceptor from a PEM certificate chain and private key (h2 and HTTP/1.1 by ALPN).
fn acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("--tls-cert {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("--tls-cert {}", cert.display()))?;
    if chain.is_empty() {
        anyhow::bail!("--tls-cert {}: no certificate in the file", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("--tls-key {}: no private key read", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("--tls-cert and --tls-key do not make a usable pair")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
