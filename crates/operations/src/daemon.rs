//! `coffer daemon`: runs every job of the policy file on its schedule.
//!
//! Invariants guarded here: one job at a time per source; every scheduled slot is either run
//! (on time or, once, late) or recorded as missed; a job that is stopped (timeout, shutdown)
//! leaves nothing acknowledged behind that a restart cannot continue.
