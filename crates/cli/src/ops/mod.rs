//! The operations commands: `config`, `daemon`, `run`, `status`, `alert`, `ledger`, and the
//! packaging helpers (`completions`, `man`). Each parses, calls `coffer_operations`, and
//! renders; the work lives in the library.

pub mod alert;
pub mod audit;
pub mod config;
pub mod daemon;
pub mod drill;
pub mod drill_files;
pub mod drill_history;
pub mod drill_pg;
pub mod drill_rebuild;
pub mod ledger;
pub mod packaging;
pub mod run;
pub mod security;
pub mod security_aws;
pub mod security_baseline;
pub mod status;

use crate::Global;
use anyhow::Result;
use coffer_operations::Config;
use std::path::PathBuf;

/// The policy file a command reads: `--config`/`COFFER_CONFIG`, else
/// `$XDG_CONFIG_HOME/coffer/coffer.toml` (`~/.config/coffer/coffer.toml`) when it exists,
/// else `/etc/coffer/coffer.toml`.
pub fn config_path(global: &Global) -> PathBuf {
    if let Some(p) = global.config.as_ref().filter(|p| !p.as_os_str().is_empty()) {
        return p.clone();
    }
    let user = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").filter(|p| !p.is_empty()).map(|h| PathBuf::from(h).join(".config")))
        .map(|d| d.join("coffer/coffer.toml"));
    match user {
        Some(p) if p.exists() => p,
        _ => PathBuf::from("/etc/coffer/coffer.toml"),
    }
}

/// Loads the policy file the command names.
/// `--no-cache` and `--cache-dir` (or `COFFER_CACHE_DIR`) override every repository's
/// `cache`/`cache-dir` keys for this run.
pub fn load_config(global: &Global) -> Result<Config> {
    let mut config = Config::load(&config_path(global))?;
    config.cache_override = cache_override(global);
    Ok(config)
}

/// What the command line says of the cache, if anything.
fn cache_override(global: &Global) -> Option<coffer_repository::CacheChoice> {
    if global.no_cache {
        return Some(coffer_repository::CacheChoice::Off);
    }
    global
        .cache_dir
        .as_ref()
        .filter(|d| !d.as_os_str().is_empty())
        .map(|d| coffer_repository::CacheChoice::Always(d.clone()))
}
