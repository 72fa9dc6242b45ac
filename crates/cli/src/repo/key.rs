//! `coffer key list` and `coffer key add`: several passwords per repository.
//!
//! Each password wraps the same master key in its own `keys/ID` object, so adding one
//! rewrites nothing else. Keys are locked like everything else and extended by every
//! backup. Removing a key is the pruner's business once its lock ends; a writer cannot.

use super::{RepoOpts, host, open_repo};
use crate::Global;
use crate::output::Output;
use crate::views;
use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use coffer_repository::KdfParams;
use coffer_store::Role;
use std::path::PathBuf;
use zeroize::Zeroizing;

/// `coffer key …`.
#[derive(Debug, Args)]
pub struct KeyArgs {
    #[command(subcommand)]
    cmd: KeyCmd,
}

#[derive(Debug, Subcommand)]
enum KeyCmd {
    /// List the repository's keys
    List,
    /// Add a password (the new one from COFFER_NEW_PASSWORD, --new-password-file, or a prompt)
    Add {
        /// Read the new password from the first line of this file
        #[arg(long, value_name = "FILE")]
        new_password_file: Option<PathBuf>,
        /// A note on whose key this is
        #[arg(long, default_value = "")]
        label: String,
    },
}

/// Runs `coffer key`.
pub fn run(global: &Global, r: &RepoOpts, args: &KeyArgs) -> Result<()> {
    let mut out = Output::new(global.json);
    match &args.cmd {
        KeyCmd::List => {
            let repo = open_repo(global, r, Role::Reader)?;
            let keys = repo.keys()?;
            if out.json() {
                let list: Vec<_> = keys
                    .iter()
                    .map(|(k, f)| views::KeyItem { key: k, created: f.created, host: &f.host, label: &f.label })
                    .collect();
                out.doc(&list)?;
            } else {
                for (k, f) in &keys {
                    out.line(format!("{k}  {}  {}  {}", f.created, f.host, f.label))?;
                }
            }
        }
        KeyCmd::Add { new_password_file, label } => {
            let repo = open_repo(global, r, Role::Writer)?;
            let new = new_password(new_password_file.as_ref())?;
            let id = repo.add_key(&new, KdfParams::default(), &host(), label)?;
            if out.json() {
                out.doc(&views::KeyAdded { key: format!("keys/{id}") })?;
            } else {
                out.line(format!("added key keys/{id}"))?;
            }
        }
    }
    out.finish()
}

fn new_password(file: Option<&PathBuf>) -> Result<Zeroizing<Vec<u8>>> {
    if let Ok(p) = std::env::var("COFFER_NEW_PASSWORD") {
        if !p.is_empty() {
            return Ok(Zeroizing::new(p.into_bytes()));
        }
    }
    if let Some(f) = file {
        return Ok(coffer_repository::open::read_password_file(f)?);
    }
    let p = Zeroizing::new(rpassword::prompt_password("new password: ").context("cannot read the new password")?);
    let again = Zeroizing::new(
        rpassword::prompt_password("repeat the new password: ").context("cannot read the new password")?,
    );
    if *p != *again {
        bail!("the passwords do not match");
    }
    if p.is_empty() {
        bail!("empty password");
    }
    Ok(Zeroizing::new(p.as_bytes().to_vec()))
}
