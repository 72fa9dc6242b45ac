//! Alerts: typed events ([`crate::event::AlertEvent`]) routed by kind, severity and source
//! to targets (webhook, email, command) and heartbeat pings.
//!
//! Invariant guarded here: delivering an alert never blocks or fails a job. [`Alerter`]
//! hands events to its own delivery thread and returns at once; a target that is down is
//! retried, logged and counted, and raises `delivery-failing` through the other targets.
