//! `kots-bundle verify`: check every blob of an archive against its digest, and the archive
//! against its metadata. Exit 3 when the archive is corrupt, 1 when it cannot be read.
//! Given one volume of a multi-volume archive (or `--volume-only`), checks that volume on
//! its own, so each can be checked as soon as it is copied.

use std::path::PathBuf;

use crate::archive::{split_volume_name, ArchiveError, ArchiveReader, Volumes};
use crate::cli::exit;
use crate::progress::human_bytes;

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// The .airgap archive (its first volume, for a multi-volume archive), or one volume
    /// (FILE.002, ...) to check that volume alone.
    pub archive: PathBuf,
    /// Check only this volume file (its content against the sha256 its trailer records,
    /// and against the first volume's record when that is beside it), not the whole
    /// archive: for the first volume before the others are copied.
    #[arg(long)]
    pub volume_only: bool,
    /// The vendor's ed25519 public key (PEM, `openssl pkey -in KEY -pubout`): the archive
    /// must be signed by it and be exactly what was signed (exit 3 if not, naming what
    /// changed).
    #[arg(long, value_name = "PUB", conflicts_with = "volume_only")]
    pub key: Option<PathBuf>,
    /// Threads that decode and hash entries at once (default: one per core).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: Option<u16>,
}

pub fn run(args: &VerifyArgs, quiet: bool) -> anyhow::Result<i32> {
    // A volume past the first (by its trailer, whatever its name) is checked alone.
    // So is FILE.NNN beside FILE: a volume cut short has lost the trailer that says so.
    let later_volume = matches!(Volumes::volume_number(&args.archive), Ok(Some(n)) if n > 1)
        || split_volume_name(&args.archive).is_some_and(|(first, _)| {
            first.exists() && matches!(Volumes::volume_number(&first), Ok(Some(1)))
        });
    if args.volume_only || later_volume {
        return report(Volumes::check_one(&args.archive).map(|c| {
            if !quiet {
                let against = match &c.checked_against {
                    Some(first) => format!(", as {} records", first.display()),
                    None if c.volume == 1 => String::new(),
                    None => " (the first volume is not beside it: checked against its own \
                             trailer only)"
                        .to_string(),
                };
                println!(
                    "OK {}: volume {} of {}, {}{against}",
                    args.archive.display(),
                    c.volume,
                    c.volumes,
                    human_bytes(c.size)
                );
            }
        }));
    }
    let key = args
        .key
        .as_deref()
        .map(crate::archive::PublicKey::from_pem_file)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--key {e}"))?;
    let mut signed = None;
    let result = ArchiveReader::open(&args.archive).and_then(|r| {
        // The signature first: cheap, and it names what changed since signing.
        if let Some(key) = &key {
            r.check_signature(key)?;
        }
        signed = crate::archive::signer(r.index());
        let total = r.metadata().total_size;
        let bar = crate::progress::Progress::new("verified", total, quiet);
        let last = std::sync::atomic::AtomicU64::new(0);
        let threads = args
            .threads
            .map(usize::from)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let summary = r.verify_with(threads, |done| {
            let before = last.fetch_max(done, std::sync::atomic::Ordering::Relaxed);
            crate::copy::CopyObserver::bytes(&bar, done.saturating_sub(before));
        });
        bar.finish();
        summary.map(|s| (s, r.volumes().count(), r.metadata().differential.clone()))
    });
    report(result.map(|(s, volumes, differential)| {
        if !quiet {
            let volumes = match volumes {
                1 => String::new(),
                n => format!(", {n} volumes"),
            };
            println!(
                "OK {}: {} images, {} blobs, {} verified{volumes}",
                args.archive.display(),
                s.images,
                s.blobs,
                human_bytes(s.bytes)
            );
            if let Some(d) = &differential {
                println!(
                    "differential against {}: {} blobs ({}) omitted, not verified here (import checks the registry holds them)",
                    d.against.describe(),
                    d.omitted.len(),
                    human_bytes(d.omitted_size)
                );
            }
            match (&signed, &key) {
                (Some(Ok(k)), Some(_)) => {
                    println!("signature OK: signed by key {}", k.fingerprint())
                }
                (Some(Ok(k)), None) => println!(
                    "signed by key {} (not checked: give --key PUB)",
                    k.fingerprint()
                ),
                (Some(Err(why)), _) => println!("signature unreadable: {why}"),
                (None, _) => {}
            }
        }
    }))
}

fn report(result: Result<(), ArchiveError>) -> anyhow::Result<i32> {
    match result {
        Ok(()) => Ok(exit::OK),
        // A file that cannot be read at all is a failure (1), not a corrupt archive (3).
        Err(e) => {
            eprintln!("error: {e}");
            Ok(if e.is_corrupt() {
                exit::CORRUPT
            } else {
                exit::FAILURE
            })
        }
    }
}
