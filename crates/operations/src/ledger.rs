//! The job ledger: every run, appended to the repository as a locked, hash-chained record,
//! so the history of what ran is tamper-evident and outlives the host.
//!
//! Invariant guarded here: a record reaches the repository only through the local outbox
//! ([`crate::state::State::record_run`]), and leaves the outbox only once the repository
//! holds it; so nothing recorded is lost when the repository is unreachable.
