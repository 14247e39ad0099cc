//! `kots-bundle verify`: check every blob of an archive against its digest, and the archive
//! against its metadata. Exit 3 when the archive is corrupt, 1 when it cannot be read.

use std::path::PathBuf;

use crate::archive::ArchiveReader;
use crate::cli::exit;
use crate::progress::human_bytes;

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// The .airgap archive.
    pub archive: PathBuf,
    /// Threads that decode and hash entries at once (default: one per core).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: Option<u16>,
}

pub fn run(args: &VerifyArgs, quiet: bool) -> anyhow::Result<i32> {
    let result = ArchiveReader::open(&args.archive).and_then(|r| {
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
        summary
    });
    match result {
        Ok(s) => {
            if !quiet {
                println!(
                    "OK {}: {} images, {} blobs, {} verified",
                    args.archive.display(),
                    s.images,
                    s.blobs,
                    human_bytes(s.bytes)
                );
            }
            Ok(exit::OK)
        }
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
