//! `kots-bundle completions SHELL` and `kots-bundle man`: shell completions and a man page
//! generated from the same clap definitions as `--help`, as kubectl, helm and skopeo users
//! expect.

use std::io::Write as _;

use clap::CommandFactory as _;

use super::Cli;

#[derive(clap::Args, Debug)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    pub shell: clap_complete::Shell,
}

/// Prints the completion script, e.g. `kots-bundle completions bash >
/// /etc/bash_completion.d/kots-bundle`.
pub fn completions(args: &CompletionsArgs) -> anyhow::Result<i32> {
    let mut cmd = Cli::command();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(args.shell, &mut cmd, "kots-bundle", &mut out);
    out.flush()?;
    Ok(super::exit::OK)
}

#[derive(clap::Args, Debug)]
pub struct ManArgs {
    /// Write one page per command (kots-bundle.1, kots-bundle-export.1, ...) into DIR
    /// instead of printing the main page.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<std::path::PathBuf>,
}

/// Prints the man page (roff), e.g. `kots-bundle man | man -l -`.
pub fn man(args: &ManArgs) -> anyhow::Result<i32> {
    let cmd = Cli::command();
    match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            clap_mangen::generate_to(cmd, dir)?;
        }
        None => {
            let mut out = std::io::stdout().lock();
            clap_mangen::Man::new(cmd).render(&mut out)?;
            out.flush()?;
        }
    }
    Ok(super::exit::OK)
}
