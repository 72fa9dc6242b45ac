//! The security watch job (`crate::security::watch`): polls the repository's store until
//! cancelled. A continuous job, supervised like WAL streaming: it ends only when the daemon
//! stops or reloads it (the record is then `cancelled`); its own failures are security
//! events (`unreadable`), not an end.

use super::{Done, Failure, JobContext, JobSpec};
use crate::security::watch::{WatchContext, run};
use coffer_repository::JobControl;
use coffer_store::ErrorClass;

/// The watch.
pub(super) fn watch(ctx: &JobContext, spec: &JobSpec, ctl: &JobControl) -> Result<Done, Failure> {
    // Its own connection to the state: the cursors and failure flags it keeps are written
    // from this thread while the daemon records runs from others.
    let state = crate::state::State::open(&ctx.state_dir).map_err(|e| {
        let class = e.class();
        Failure::of(&e, class)
    })?;
    let w = WatchContext {
        config: &ctx.config,
        repository: &spec.repository,
        state: &state,
        clock: &ctx.clock,
        sink: ctx.security.as_ref(),
    };
    run(&w, &ctl.cancel);
    Err(Failure::new(
        ErrorClass::Cancelled.as_str(),
        format!("the security watch of {} stopped on request", spec.repository),
    ))
}
