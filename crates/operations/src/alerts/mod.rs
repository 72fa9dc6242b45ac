//! Alerts: typed events ([`crate::event::AlertEvent`]) routed by kind, severity and source
//! to targets (webhook, email, command) and heartbeat pings.
//!
//! Invariant guarded here: delivering an alert never blocks or fails a job. [`Alerter`]
//! hands events to its own delivery thread and returns at once; a target that is down is
//! retried, logged and counted, and raises `delivery-failing` through the other targets.

use crate::config::AlertsConfig;
use crate::event::AlertEvent;
use std::sync::Arc;

/// A heartbeat ping's phase (healthchecks.io: `URL/start`, `URL`, `URL/fail`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ping {
    /// The job started.
    Start,
    /// The job succeeded (or: the daemon is alive).
    Success,
    /// The job failed.
    Fail,
}

/// Called after each delivery attempt with (target name, delivered): for metrics.
pub type DeliveryHook = Arc<dyn Fn(&str, bool) + Send + Sync>;

/// Why the alerter could not start.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    /// A route names a target that does not exist, or a target is unusable.
    #[error("alerts: {0}")]
    Config(String),
}

/// The running alert router. Cheap to share (`Arc`); every method returns at once.
///
/// INTERFACE (being built): delivery lands with the alerts work.
pub struct Alerter {
    _hook: Option<DeliveryHook>,
}

impl std::fmt::Debug for Alerter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alerter").finish_non_exhaustive()
    }
}

impl Alerter {
    /// Starts the delivery thread for `config`'s targets. Open problems are kept in `state`
    /// (so a restart neither repeats nor forgets them).
    ///
    /// # Errors
    /// [`AlertError::Config`].
    pub fn start(
        config: &AlertsConfig,
        host: String,
        state: Arc<crate::state::State>,
        clock: coffer_store::Clock,
        hook: Option<DeliveryHook>,
    ) -> Result<Self, AlertError> {
        let _ = (config, host, state, clock);
        Ok(Self { _hook: hook })
    }

    /// Raises `event` (a problem, keyed by `event.problem`): delivered now if the problem is
    /// new, again every repeat interval while it stays raised.
    pub fn raise(&self, event: AlertEvent) {
        tracing::warn!(kind = %event.kind, problem = %event.problem, "{}", event.summary);
    }

    /// The problem `problem` is over: if it was raised, a resolved notice is delivered.
    pub fn resolve(&self, problem: &str, summary: &str) {
        let _ = (problem, summary);
    }

    /// A heartbeat ping for `job` (`None`: the daemon's own liveness ping).
    pub fn ping(&self, job: Option<&str>, ping: Ping) {
        let _ = (job, ping);
    }

    /// Uses `config` from now on (open problems are kept).
    ///
    /// # Errors
    /// [`AlertError::Config`]; the old configuration stays.
    pub fn reload(&self, config: &AlertsConfig) -> Result<(), AlertError> {
        let _ = config;
        Ok(())
    }

    /// Stops the delivery thread after at most `grace` for what is queued.
    pub fn shutdown(&self, grace: std::time::Duration) {
        let _ = grace;
    }
}
