//! AWS CloudTrail events: the template AWS needs and the SQS consumer.
//! (Issue 14: to be built.)

use super::SecurityEvent;
use crate::config::Config;
use crate::state::State;
use coffer_store::Clock;

/// Receives what waits in repository `repository`'s CloudTrail queue (if it has one) and
/// returns an event for each security-relevant CloudTrail record; messages are deleted
/// from the queue only after the caller has the events (at-least-once, deduplicated by
/// CloudTrail's `eventID` in the state). Never fails: a queue that cannot be read is an
/// `unreadable` event.
#[must_use]
pub fn poll(_config: &Config, _repository: &str, _state: &State, _clock: &Clock) -> Vec<SecurityEvent> {
    Vec::new()
}
