//! The job ledger: every run, appended to the repository as a locked, hash-chained record,
//! so the history of what ran is tamper-evident and outlives the host.
//!
//! Invariant guarded here: a record reaches the repository only through the local outbox
//! ([`crate::state::State::record_run`]), and leaves the outbox only once the repository
//! holds it; so nothing recorded is lost when the repository is unreachable.

use crate::state::{State, StateError};
use coffer_repository::Repository;

/// Why the ledger could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The local state failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// The repository failed.
    #[error(transparent)]
    Repo(#[from] coffer_repository::RepoError),
}

/// Appends to `repo`'s ledger every record waiting in `state`'s outbox for repository
/// `name`, oldest first; returns how many were stored.
///
/// INTERFACE (being built): lands with the ledger work.
///
/// # Errors
/// [`LedgerError`]; what was not stored stays in the outbox.
pub fn flush_outbox(state: &State, name: &str, repo: &Repository) -> Result<usize, LedgerError> {
    let _ = (state, name, repo);
    Ok(0)
}
