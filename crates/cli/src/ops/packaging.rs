//! `coffer completions SHELL` and `coffer man`: generated from the CLI definition itself
//! (`Cli::command()`), so they can never describe flags the binary does not have.

use crate::output::Output;
use anyhow::{Context as _, Result};
use clap::Args;
use clap_complete::Shell;
use std::path::PathBuf;

/// `coffer completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell
    #[arg(value_name = "SHELL")]
    shell: Shell,
}

/// `coffer man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write coffer.1 and a page per subcommand (coffer-backup.1, coffer-config-check.1, …)
    /// into this directory instead of printing coffer.1
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

/// Prints the completion script for `args.shell` (e.g. `coffer completions bash >
/// /usr/share/bash-completion/completions/coffer`).
pub fn completions(mut cmd: clap::Command, args: &CompletionsArgs) -> Result<()> {
    let mut buf = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "coffer", &mut buf);
    let mut out = Output::new(false);
    out.bytes(&buf)?;
    out.finish()
}

/// Prints `coffer.1`, or writes every page into `--out DIR`.
pub fn man(cmd: clap::Command, args: &ManArgs) -> Result<()> {
    match &args.out {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(cmd, dir)
                .with_context(|| format!("cannot write the man pages into {}", dir.display()))
        }
        None => {
            let mut buf = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut buf).context("cannot render the man page")?;
            let mut out = Output::new(false);
            out.bytes(&buf)?;
            out.finish()
        }
    }
}
