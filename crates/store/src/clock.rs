//! The one clock every lock decision reads.
//!
//! Invariant guarded: a retention period can only end when real time has passed. Release
//! builds have exactly one source of time, the system clock. A clock that can be set or
//! moved exists only with the `test-clock` feature, which only test builds enable (through
//! `coffer-testkit`); `clippy.toml` forbids reading the wall clock anywhere else.
//!
//! The environment override that lets tests drive the `coffer` binary past an expiry
//! (`COFFER_TEST_CLOCK_OFFSET`) is honoured only with `test-clock` *and* debug assertions:
//! a workspace-wide `cargo build --release` builds `coffer-testkit` as a member and so
//! turns the feature on, and even that binary must not let an environment variable move
//! time past a compliance lock. `coffer-testkit` is also left out of the workspace's
//! `default-members`, so a plain `cargo build` does not enable the feature at all.

use jiff::Timestamp;
#[cfg(feature = "test-clock")]
use std::sync::{Arc, Mutex};

/// Where time comes from. Cheap to clone; clones of a manual clock share one time.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    #[cfg(feature = "test-clock")]
    manual: Option<Arc<Mutex<Timestamp>>>,
    #[cfg(feature = "test-clock")]
    offset: Option<jiff::SignedDuration>,
}

impl Clock {
    /// The system clock: the only clock of a release build.
    #[must_use]
    pub fn system() -> Self {
        Self::default()
    }

    /// The current time.
    #[must_use]
    pub fn now(&self) -> Timestamp {
        #[cfg(feature = "test-clock")]
        if let Some(t) = &self.manual {
            return *t.lock().expect("clock mutex poisoned");
        }
        #[allow(clippy::disallowed_methods, reason = "this is the one place that reads the wall clock")]
        let now = Timestamp::now();
        #[cfg(feature = "test-clock")]
        if let Some(offset) = self.offset {
            return now + offset;
        }
        now
    }

    /// A clock the caller sets and moves (test builds only).
    #[cfg(feature = "test-clock")]
    #[must_use]
    pub fn manual(start: Timestamp) -> Self {
        Self { manual: Some(Arc::new(Mutex::new(start))), offset: None }
    }

    /// The system clock shifted by `COFFER_TEST_CLOCK_OFFSET` seconds (test builds only), so
    /// that tests driving the `coffer` binary can look past an expiry date without sleeping.
    #[cfg(all(feature = "test-clock", debug_assertions))]
    #[must_use]
    pub fn from_env() -> Self {
        match std::env::var("COFFER_TEST_CLOCK_OFFSET").ok().and_then(|s| s.parse::<i64>().ok()) {
            Some(secs) => Self { manual: None, offset: Some(jiff::SignedDuration::from_secs(secs)) },
            None => Self::system(),
        }
    }

    /// The system clock. In release builds no environment variable can move it.
    #[cfg(not(all(feature = "test-clock", debug_assertions)))]
    #[must_use]
    pub fn from_env() -> Self {
        Self::system()
    }

    /// Moves a manual clock forward (test builds only).
    ///
    /// # Panics
    /// On the system clock, which cannot be moved.
    #[cfg(feature = "test-clock")]
    pub fn advance(&self, by: std::time::Duration) {
        let m = self.manual.as_ref().expect("only a manual clock can be moved");
        let mut t = m.lock().expect("clock mutex poisoned");
        *t += jiff::SignedDuration::try_from(by).expect("duration fits");
    }

    /// Sets a manual clock (test builds only).
    ///
    /// # Panics
    /// On the system clock, which cannot be set.
    #[cfg(feature = "test-clock")]
    pub fn set(&self, to: Timestamp) {
        let m = self.manual.as_ref().expect("only a manual clock can be set");
        *m.lock().expect("clock mutex poisoned") = to;
    }
}
