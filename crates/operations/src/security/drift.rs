//! The drift watch: the store's protective configuration against its baseline.
//! (Issue 14: to be built.)

use super::SecurityEvent;
use crate::config::Config;
use crate::state::State;
use coffer_store::Clock;

/// Compares the protective configuration of repository `repository`'s store with its
/// baseline (establishing the baseline on the first run) and returns the events found:
/// one per drifted field, and `unreadable` when it cannot be read. Never fails: a failure
/// is an event.
#[must_use]
pub fn check(_config: &Config, _repository: &str, _state: &State, _clock: &Clock) -> Vec<SecurityEvent> {
    Vec::new()
}
