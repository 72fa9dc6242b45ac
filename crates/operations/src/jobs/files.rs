//! The `backup` job of a files source: `coffer_sources::files::backup`, as `coffer backup`
//! calls it, with the source's paths, excludes and retention, as the `writer`.

use super::{Done, Failure, JobContext, JobSpec, source};
use coffer_repository::JobControl;
use coffer_sources::files::{self, BackupOptions};
use coffer_store::Role;

/// Backs up the source. Unreadable entries and files changed while read are warnings (the
/// snapshot is written, outcome `warning`); a path that does not exist fails the job.
pub(super) fn backup(ctx: &JobContext, spec: &JobSpec, ctl: &JobControl) -> Result<Done, Failure> {
    let s = source(&ctx.config.files, spec)?;
    let repo = crate::open::open_repository(&ctx.config, &spec.repository, Role::Writer, ctx.clock.clone())?;
    let opts = BackupOptions {
        paths: s.paths.clone(),
        excludes: s.exclude.clone(),
        one_file_system: s.one_file_system,
        tags: s.tags.clone(),
        host: ctx.host.clone(),
        retention: s.retention,
        ..BackupOptions::default()
    };
    let report = files::backup(&repo, &opts, ctl).map_err(|e| {
        let class = e.class();
        Failure::of(&e, class)
    })?;
    let sum = &report.info.summary;
    let mut done = Done {
        warned: sum.errors > 0,
        files: Some(sum.files),
        bytes_read: Some(sum.bytes),
        bytes_added: Some(sum.bytes_added),
        snapshot: Some(report.snapshot.to_string()),
        warnings: report.warnings.clone(),
        ..Done::default()
    };
    for (k, v) in [
        ("dirs", sum.dirs),
        ("files_read", sum.files_read),
        ("bytes_stored", sum.bytes_stored),
        ("unreadable", sum.errors),
        ("changed_while_read", sum.changed_while_read),
    ] {
        done.details.insert(k.to_owned(), v.to_string());
    }
    done.details.insert("expires".to_owned(), report.info.expires.to_string());
    Ok(done)
}
