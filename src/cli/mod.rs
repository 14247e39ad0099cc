//! Command-line interface: parses arguments and hands each command to its module. Each
//! command lives in its own file with its `Args` and a `run` that returns the exit code.

use anyhow::Context as _;
use clap::{Parser, Subcommand};

pub mod common;
pub mod docs;
pub mod download;
pub mod export;
pub mod images;
pub mod import;
pub mod inspect;
pub mod inventory;
pub mod pull;
pub mod render;
pub mod selection;
pub mod serve;
pub mod template;
pub mod upstream;
pub mod verify;

/// Exit codes scripts can rely on.
pub mod exit {
    /// Everything worked.
    pub const OK: i32 = 0;
    /// The command failed (bad input, registry or I/O error); the message says why.
    pub const FAILURE: i32 = 1;
    /// The command line itself was wrong (clap's own code).
    pub const USAGE: i32 = 2;
    /// `verify` found the archive corrupt or inconsistent.
    pub const CORRUPT: i32 = 3;
    /// Stopped by SIGINT (128 + 2, as shells report it).
    pub const INTERRUPTED: i32 = 130;
    /// Stopped by SIGTERM (128 + 15).
    pub const TERMINATED: i32 = 143;
}

#[derive(Parser, Debug)]
#[command(
    name = "kots-bundle",
    version,
    about = "Get a Kubernetes application and every image it needs into an airgapped network",
    long_about = "Get a Kubernetes application and every image it needs into an airgapped network.\n\n\
        On a host with internet access, `export` fetches the app's manifests, finds every image they \
        reference, pulls the images and writes one `.airgap` file. Inside the network, `import` \
        pushes those images to the private registry and writes an app directory whose \
        `overlays/midstream` deploys with `kubectl apply -k`. `pull --rewrite-images` does both at \
        once on a host that reaches the internet and the registry."
)]
pub struct Cli {
    /// Print less: errors only.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print more: -v for details, -vv for HTTP traffic (credentials are never printed).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Treat warnings (templated or invalid images, unparseable manifests, no image found,
    /// skipped charts) as a failure: exit 1. For CI pipelines. Export and pull stop before
    /// downloading anything.
    #[arg(long, global = true)]
    pub strict: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Fetch an app's manifests and every image they need into one .airgap file.
    Export(export::ExportArgs),
    /// Push an .airgap file's images to the private registry and write the app directory.
    Import(import::ImportArgs),
    /// Fetch and push in one go on a host that reaches both sides, or update an app directory.
    Pull(pull::PullArgs),
    /// List every image an app needs, normalized, one per line.
    Images(images::ImagesArgs),
    /// Print what will deploy: the app rendered (templates, config, charts) as base documents.
    Template(template::TemplateArgs),
    /// Show what an .airgap file holds (reads its head, index and manifests, never the layers).
    Inspect(inspect::InspectArgs),
    /// Check every blob of an .airgap file against its digest, and the file against its metadata.
    Verify(verify::VerifyArgs),
    /// List what the private registry holds of an imported app (have.json), for export --since.
    Inventory(inventory::InventoryArgs),
    /// Rebuild an app directory from the copy import stored in the private registry.
    Download(download::DownloadArgs),
    /// Serve an .airgap file as a read-only registry (OCI distribution API), read in place.
    Serve(serve::ServeArgs),
    /// Print a shell completion script (bash, zsh, fish, ...).
    Completions(docs::CompletionsArgs),
    /// Print the man page (or write one per command with --dir).
    Man(docs::ManArgs),
}

/// A command line that parses but asks for something refused (exit 2, like clap's own
/// errors): a password on the command line, say.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// A command stopped by SIGINT or SIGTERM.
#[derive(Debug, thiserror::Error)]
#[error("interrupted by {signal}; stopped, and removed what this run had started to write")]
pub struct Interrupted {
    pub signal: &'static str,
}

/// Runs a command's future until it ends or the process gets SIGINT/SIGTERM. On a signal the
/// future is dropped, so what it was writing is cleaned up by its owners (a partial archive,
/// an app directory this run created), and the runtime's tasks are stopped.
pub fn run_until_signal<T>(
    rt: tokio::runtime::Runtime,
    fut: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    let result = rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("installing a SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("installing a SIGINT handler")?;
        tokio::select! {
            r = fut => r,
            _ = int.recv() => Err(Interrupted { signal: "SIGINT" }.into()),
            _ = term.recv() => Err(Interrupted { signal: "SIGTERM" }.into()),
        }
    });
    // After a signal, a blocking task cut off mid-write by the shutdown below panics in
    // its own thread as it unwinds (cleaning up as it goes); its message would only bury
    // the one line that matters, so it is not printed.
    if result
        .as_ref()
        .err()
        .is_some_and(|e| e.downcast_ref::<Interrupted>().is_some())
    {
        std::panic::set_hook(Box::new(|_| {}));
        // A helm or kubectl runs in its own process group, so the terminal's signal did
        // not reach it.
        crate::subprocess::kill_running();
    }
    // Tasks spawned by the command hold parts of its output; dropping them cleans up.
    rt.shutdown_timeout(std::time::Duration::from_secs(5));
    result
}

pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let _ = e.print();
            return code;
        }
    };
    init_logging(cli.quiet, cli.verbose);
    let result = match &cli.command {
        Command::Export(a) => export::run(a, cli.quiet, cli.strict),
        Command::Import(a) => import::run(a, cli.quiet),
        Command::Pull(a) => pull::run(a, cli.quiet, cli.strict),
        Command::Images(a) => images::run(a),
        Command::Template(a) => template::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Verify(a) => verify::run(a, cli.quiet),
        Command::Serve(a) => serve::run(a, cli.quiet),
        Command::Download(a) => download::run(a, cli.quiet),
        Command::Inventory(a) => inventory::run(a, cli.quiet),
        Command::Completions(a) => docs::completions(a),
        Command::Man(a) => docs::man(a),
    };
    let result = result.and_then(|code| {
        crate::warnings::check_strict(cli.strict, "were printed")?;
        Ok(code)
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            if e.downcast_ref::<UsageError>().is_some() {
                return exit::USAGE;
            }
            match e.downcast_ref::<Interrupted>() {
                Some(Interrupted { signal: "SIGTERM" }) => exit::TERMINATED,
                Some(_) => exit::INTERRUPTED,
                None => exit::FAILURE,
            }
        }
    }
}

/// An error and its causes on one line, each said once: many error types already include
/// their cause's text in their own message, and repeating it helps nobody.
pub fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

fn init_logging(quiet: bool, verbose: u8) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info,kots_bundle=debug",
        (false, _) => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("KOTS_BUNDLE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    use std::io::IsTerminal as _;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colour codes only for a person at a terminal, never in logs or CI output.
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_chain_says_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file (os error 2)");
        let e = anyhow::Error::new(crate::upstream::UpstreamError::Io {
            path: "x.yaml".into(),
            source: io,
        })
        .context("export failed");
        assert_eq!(
            error_chain(&e),
            "export failed: upstream x.yaml: No such file (os error 2)"
        );
    }
}
