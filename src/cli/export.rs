//! `kots-bundle export`: fetch an app's manifests and every image they need into one
//! `.airgap` file.

use std::path::PathBuf;

use anyhow::Context;

use super::common::{runtime, RegistryArgs, SourceArgs};
use super::selection::{confirm_candidates, report_problems, SelectionArgs};
use crate::archive::{Compression, ZstdOptions};
use crate::cli::exit;
use crate::export::{export, ExportOptions};
use crate::registry::Client;

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// The app's manifests: a directory, a .tar.gz/.tgz, an https:// URL of one, or
    /// replicated://APP with --license-file.
    pub upstream: String,
    /// The archive to write (default: ./<app name>.airgap). Written only when complete.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// zstd (compact, seekable) or none (a plain tar that skopeo reads as oci-archive:).
    #[arg(long, value_enum, default_value_t = Compression::Zstd)]
    pub compression: Compression,
    /// zstd level (1-19) for manifests, configs, uncompressed layers and the app's files.
    /// Layers that are gzip or zstd already always use level 1: a higher one only costs time.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=19))]
    pub zstd_level: i32,
    /// Split the archive into volumes of at most SIZE bytes each, for removable media:
    /// FILE, FILE.002, FILE.003, ... (each can be verified on its own; import and verify
    /// read them in place). SIZE is bytes or a number with K, M, G, T (powers of 1000: 4G
    /// fits FAT32) or KiB, MiB, GiB, TiB (powers of 1024); at least 1MiB. An archive that
    /// fits one volume is an ordinary single file.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_volume_size: Option<u64>,
    /// Sign the archive with this ed25519 private key (PKCS#8 PEM, as `openssl genpkey
    /// -algorithm ed25519 -out KEY` writes it): the metadata, the entry index, every blob's
    /// and upstream file's digest. Check with `verify --key PUB` and `import
    /// --require-signature --key PUB`. zstd archives only.
    #[arg(long, value_name = "KEY")]
    pub sign_key: Option<PathBuf>,
    /// Write a differential archive: leave out every layer and config that FILE says the
    /// target registry holds (a `kots-bundle inventory` have.json, or the .airgap of the
    /// release imported there last). Manifests are always carried; import checks that the
    /// registry holds what was left out before it pushes anything.
    #[arg(long, value_name = "FILE")]
    pub since: Option<PathBuf>,
    #[command(flatten)]
    pub selection: SelectionArgs,
    #[command(flatten)]
    pub upstream_args: super::upstream::UpstreamArgs,
    #[command(flatten)]
    pub render: super::render::RenderArgs,
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

pub fn run(args: &ExportArgs, quiet: bool, strict: bool) -> anyhow::Result<i32> {
    // The key is read first: a wrong one stops the export before anything is fetched.
    let sign_key = match &args.sign_key {
        Some(_) if args.compression != Compression::Zstd => {
            return Err(crate::cli::UsageError(
                "--sign-key needs --compression zstd (the signature is in the zstd footer)".into(),
            )
            .into())
        }
        Some(p) => Some(std::sync::Arc::new(
            crate::archive::SigningKey::from_pem_file(p)
                .map_err(|e| anyhow::anyhow!("--sign-key {e}"))?,
        )),
        None => None,
    };
    // Read before anything is fetched, like the key.
    let since = args
        .since
        .as_deref()
        .map(crate::differential::Base::load)
        .transpose()?
        .map(std::sync::Arc::new);
    let rt = runtime()?;
    let upstream = rt.block_on(args.upstream_args.load_with(
        &args.upstream,
        args.render.license_file.as_deref(),
        None,
        true,
    ))?;
    let name = upstream.require_name()?.to_string();
    // Images are found in what the app renders to (templates, charts), not in the templates.
    let rendered = super::render::for_discovery(&upstream, &args.render)?;
    let mut found = args.selection.select(&rendered.for_discovery())?;
    let client = Client::new(args.registry.source_options(&args.source)?)?;
    rt.block_on(confirm_candidates(
        &mut found,
        &client,
        args.registry.concurrency as usize,
    ));
    report_problems(&found);
    let images = found.references();
    if images.is_empty() {
        crate::warnings::warn(format_args!("no images found in {}", upstream.source));
    }
    // Said now, on the online host, rather than first at import inside the air gap.
    let anywhere = crate::rewrite::Endpoint::parse("registry.invalid").expect("valid");
    if let Err(crate::rewrite::RewriteError::Collision { first, second, .. }) =
        crate::rewrite::plan(&images, &anywhere, None, false)
    {
        crate::warnings::warn(format_args!(
            "images {first} and {second} have the same last path component, so they would be \
             pushed to the same name; import with --preserve-paths"
        ));
    }
    crate::warnings::check_strict(strict, "in the app's manifests; nothing was downloaded")?;
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.airgap", name)));
    let opts = ExportOptions {
        output: output.clone(),
        compression: args.compression,
        zstd: ZstdOptions {
            level: args.zstd_level,
            ..ZstdOptions::default()
        },
        platforms: args.source.platform.clone(),
        attached: !args.source.no_signatures,
        concurrency: args.registry.concurrency as usize,
        quiet,
        max_volume_size: args.max_volume_size,
        sign_key,
        since,
    };
    super::run_until_signal(rt, async {
        Ok(export(&upstream, &name, &images, client, &opts).await?)
    })
    .with_context(|| format!("export to {} failed; nothing was written", output.display()))?;
    Ok(exit::OK)
}

/// `--max-volume-size`: bytes, or a number with a unit: K, M, G, T (and KB, MB, GB, TB) are
/// powers of 1000, KiB, MiB, GiB, TiB powers of 1024; case does not matter.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(format!("{s:?} is not a size (e.g. 4G, 500MiB, 1048576)"));
    }
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is too large"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => {
            return Err(format!(
                "{s:?}: unknown unit {unit:?} (K, M, G, T are powers of 1000; KiB, MiB, GiB, \
                 TiB powers of 1024)"
            ))
        }
    };
    let size = n
        .checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))?;
    if size < crate::archive::MIN_VOLUME_SIZE {
        return Err(format!(
            "{s:?} is {size} bytes; a volume is at least 1MiB ({} bytes)",
            crate::archive::MIN_VOLUME_SIZE
        ));
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn volume_sizes() {
        assert_eq!(parse_size("4G"), Ok(4_000_000_000));
        assert!(parse_size("4G").unwrap() < u32::MAX as u64, "4G fits FAT32");
        assert_eq!(parse_size("4GiB"), Ok(4 << 30));
        assert_eq!(parse_size("500M"), Ok(500_000_000));
        assert_eq!(parse_size("500mb"), Ok(500_000_000));
        assert_eq!(parse_size("2MiB"), Ok(2 << 20));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert!(parse_size("1000").is_err(), "under the minimum");
        assert!(parse_size("4X").is_err());
        assert!(parse_size("G").is_err());
        assert!(parse_size("-4G").is_err());
        assert!(parse_size("99999999999T").is_err());
    }
}
