//! `kots-bundle inspect`: what an archive holds, from its head, entry index, manifests and
//! upstream files (never the layers). Every string from the archive is printed escaped
//! ([`names::escaped`]), so a hostile name cannot rewrite the terminal.

use std::path::PathBuf;

use crate::archive::ArchiveReader;
use crate::cli::exit;
use crate::names::escaped;
use crate::progress::human_bytes;

#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// The .airgap archive.
    pub archive: PathBuf,
    /// Print the metadata document as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &InspectArgs) -> anyhow::Result<i32> {
    // The head, the entry index, the manifests and the app's files: cheap, and enough to
    // refuse a truncated, incomplete or tampered-with layout. Layer content is `verify`'s job.
    let reader = ArchiveReader::open(&args.archive)?;
    reader.check_layout()?;
    let meta = reader.metadata();
    if args.json {
        // JSON escapes control characters itself.
        println!("{}", serde_json::to_string_pretty(meta)?);
        return Ok(exit::OK);
    }
    println!("app:         {}", escaped(&meta.app.name));
    println!(
        "version:     {}",
        meta.app.version.as_deref().map_or("-".into(), escaped)
    );
    println!("source:      {}", escaped(&meta.app.source));
    if let Some(r) = &meta.app.release {
        let or_dash = |s: &str| if s.is_empty() { "-".into() } else { escaped(s) };
        println!(
            "release:     {} on channel {} ({}), sequence {}{}",
            r.version_label.as_deref().map_or("-".into(), escaped),
            or_dash(&r.channel_name),
            or_dash(&r.channel_id),
            r.channel_sequence.map_or("-".into(), |s| s.to_string()),
            if r.is_required { ", required" } else { "" }
        );
        println!(
            "released:    {}",
            r.released_at.as_deref().map_or("-".into(), escaped)
        );
    }
    println!(
        "created:     {} by {} {}",
        escaped(&meta.created),
        escaped(&meta.tool.name),
        escaped(&meta.tool.version)
    );
    println!("compression: {:?}", meta.compression);
    match crate::archive::signer(reader.index()) {
        Some(Ok(k)) => println!(
            "signature:   ed25519, key {} (check with verify --key)",
            k.fingerprint()
        ),
        Some(Err(why)) => println!("signature:   unreadable ({})", escaped(&why)),
        None => println!("signature:   none"),
    }
    let volumes = reader.volumes();
    if volumes.count() > 1 {
        let names: Vec<String> = volumes
            .paths()
            .map(|p| escaped(&p.display().to_string()))
            .collect();
        println!("volumes:     {} ({})", volumes.count(), names.join(", "));
    }
    println!("images:      {}", meta.images.len());
    for i in &meta.images {
        let platforms = if i.platforms.is_empty() {
            "-".to_string()
        } else {
            escaped(&i.platforms.join(","))
        };
        println!(
            "  {}\n    digest {}  platforms {}  size {}",
            escaped(&i.reference.to_string()),
            i.digest,
            platforms,
            human_bytes(i.size)
        );
    }
    println!(
        "blobs:       {} ({} total, each stored once)",
        meta.blobs.len(),
        human_bytes(meta.total_size)
    );
    if let Some(d) = &meta.differential {
        println!(
            "differential: against {}: {} blobs ({}) omitted, which import needs in the registry",
            d.against.describe(),
            d.omitted.len(),
            human_bytes(d.omitted_size)
        );
    }
    println!("manifests:   {} files", meta.upstream_files.len());
    Ok(exit::OK)
}
