//! `kots-bundle serve`: an `.airgap` archive as a read-only registry, for a network without
//! one (or to seed one: a distribution registry as a pull-through cache of it).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;

use super::common::runtime;
use crate::cli::exit;
use crate::serve::{Naming, ServeOptions, Server};

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// The .airgap archive written by `kots-bundle export` (read in place, never extracted).
    pub archive: PathBuf,
    /// Address and port to listen on (port 0: any free port, printed at start).
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:5000")]
    pub listen: SocketAddr,
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Also serve every image under the name import would push it to with this
    /// --image-namespace (NS/<name>); without it, under <name>.
    #[arg(long, value_name = "NS")]
    pub image_namespace: Option<String>,
    /// Name images as import --preserve-paths would (NS/<source registry>/<path>).
    #[arg(long)]
    pub preserve_paths: bool,
}

pub fn run(args: &ServeArgs, quiet: bool) -> anyhow::Result<i32> {
    let opts = ServeOptions {
        archive: args.archive.clone(),
        listen: args.listen,
        tls: args.tls_cert.clone().zip(args.tls_key.clone()),
        naming: Naming {
            namespace: args.image_namespace.clone(),
            preserve_paths: args.preserve_paths,
        },
    };
    let rt = runtime()?;
    rt.block_on(async {
        let server = Server::bind(&opts)
            .await
            .with_context(|| format!("serving {} failed", args.archive.display()))?;
        let addr = server.local_addr()?;
        let scheme = if server.is_tls() { "https" } else { "http" };
        let repos = &server.catalog().repos;
        for (name, repo) in repos {
            tracing::debug!("serving {addr}/{name} (tags: {:?})", repo.tags.keys());
        }
        if !quiet {
            eprintln!(
                "serving {} read-only at {scheme}://{addr} ({} repositories; e.g. {}); Ctrl-C stops",
                args.archive.display(),
                repos.len(),
                repos
                    .iter()
                    .find_map(|(n, r)| r.tags.keys().next().map(|t| format!("{addr}/{n}:{t}")))
                    .unwrap_or_else(|| "no tags".into()),
            );
        }
        server.run(stop_signal()).await?;
        if !quiet {
            eprintln!("stopped");
        }
        Ok(exit::OK)
    })
}

/// SIGINT or SIGTERM: the normal way to stop a server, so not an error.
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}
