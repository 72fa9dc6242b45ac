//! Coffer's operations layer: the policy file (`coffer.toml`) and everything that runs it
//! without a person — the daemon and its scheduler, the jobs (the same library calls the
//! commands make), the job ledger kept in the repository, logs, metrics and alerts.
//!
//! Layers: store ← repository ← sources ← **operations** ← CLI. Nothing here prints or exits:
//! logs are `tracing` events (the CLI installs the subscriber), results are typed values.

pub mod alerts;
pub mod audit;
pub mod config;
pub mod daemon;
pub mod drill;
pub mod event;
pub mod jobs;
pub mod ledger;
pub mod logs;
pub mod metrics;
pub mod open;
pub mod schedule;
pub mod security;
pub mod state;
pub mod status;
#[cfg(test)]
mod test_util;

pub use config::{Config, ConfigError};
pub use event::{AlertEvent, AlertKind, JobKind, Outcome, RunRecord, Severity};
pub use jobs::{JobSpec, jobs};
pub use schedule::Schedule;
pub use state::State;
