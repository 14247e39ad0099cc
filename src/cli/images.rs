//! `kots-bundle images`: list every image an app needs.

use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct ImagesArgs {
    /// A directory of manifests, a .tar.gz/.tgz of them, or an .airgap archive.
    pub path: PathBuf,
    /// Print JSON with where each image was found.
    #[arg(long)]
    pub json: bool,
}

pub fn run(_args: &ImagesArgs) -> anyhow::Result<i32> {
    anyhow::bail!("not implemented yet")
}
