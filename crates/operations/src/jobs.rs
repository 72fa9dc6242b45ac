//! Jobs: what the policy file asks to run ([`jobs`]), and running one ([`run_job`]) through
//! the same library calls the commands make.
//!
//! Invariant guarded here: a job runs with the role its work needs and no other (backups
//! and base backups as `writer`, prune as `pruner`, verify as `reader`), so separation of
//! duties holds for the daemon as for the commands.

use crate::config::{Archiving, Config, JobSchedule};
use crate::event::{JobKind, job_id};
use crate::schedule::Schedule;
use std::time::Duration;

/// One job the policy file declares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobSpec {
    /// `OWNER/KIND`.
    pub id: String,
    /// What it does.
    pub kind: JobKind,
    /// The source it backs up or checks (none for repository jobs).
    pub source: Option<String>,
    /// The repository's name.
    pub repository: String,
    /// When it runs; `None` for a continuous job the daemon keeps running (streaming).
    pub schedule: Option<Schedule>,
    /// A random delay after each slot.
    pub random_delay: Option<Duration>,
    /// Cancelled after this long.
    pub timeout: Duration,
    /// Retries on transient errors.
    pub retries: u32,
}

impl JobSpec {
    /// The source, else the repository: what routes match as "source".
    #[must_use]
    pub fn owner(&self) -> &str {
        self.source.as_deref().unwrap_or(&self.repository)
    }
}

/// Every job of `config`, in a stable order (files, postgres, repositories; by name).
#[must_use]
pub fn jobs(config: &Config) -> Vec<JobSpec> {
    let d = &config.daemon;
    let scheduled = |owner: &str, kind, source: Option<&str>, repository: &str, when: &JobSchedule| JobSpec {
        id: job_id(owner, kind),
        kind,
        source: source.map(str::to_owned),
        repository: repository.to_owned(),
        schedule: Some(when.schedule.clone()),
        random_delay: when.random_delay,
        timeout: when.timeout.unwrap_or(d.default_timeout),
        retries: when.retries.unwrap_or(d.retries),
    };
    let mut out = Vec::new();
    for (name, s) in &config.files {
        out.push(scheduled(name, JobKind::Backup, Some(name), &s.repository, &s.when()));
    }
    for (name, s) in &config.postgres {
        out.push(scheduled(name, JobKind::BaseBackup, Some(name), &s.repository, &s.base_backup));
        if matches!(s.archiving, Archiving::Streaming | Archiving::Both) {
            out.push(JobSpec {
                id: job_id(name, JobKind::Stream),
                kind: JobKind::Stream,
                source: Some(name.clone()),
                repository: s.repository.clone(),
                schedule: None,
                random_delay: None,
                timeout: Duration::MAX,
                retries: u32::MAX,
            });
        }
        let every =
            Schedule::parse(&format!("every {}", coffer_repository::options::format_duration(s.check_interval)))
                .expect("a positive duration is a schedule");
        out.push(JobSpec {
            id: job_id(name, JobKind::ArchiveCheck),
            kind: JobKind::ArchiveCheck,
            source: Some(name.clone()),
            repository: s.repository.clone(),
            schedule: Some(every),
            random_delay: None,
            timeout: s.check_interval.max(Duration::from_secs(30)),
            retries: 0,
        });
    }
    for (name, r) in &config.repositories {
        if let Some(v) = &r.verify {
            out.push(scheduled(name, JobKind::Verify, None, name, &v.when()));
        }
        if let Some(p) = &r.prune {
            out.push(scheduled(name, JobKind::Prune, None, name, &p.when()));
        }
    }
    out
}

/// What every job needs besides its spec.
#[derive(Clone, Debug)]
pub struct JobContext {
    /// The policy in force.
    pub config: std::sync::Arc<Config>,
    /// The state directory (spools of streaming jobs live under it).
    pub state_dir: std::path::PathBuf,
    /// The host name recorded.
    pub host: String,
    /// The clock of lock decisions and records.
    pub clock: coffer_store::Clock,
}

/// Runs one attempt of `spec` and returns its record (outcome, error class and message,
/// numbers, snapshot). Retries, timeouts and the `scheduled`/`late` fields are the caller's
/// (the daemon's): it cancels through `ctl` and sets them.
///
/// INTERFACE (being built): the body lands with the jobs work.
#[must_use]
pub fn run_job(ctx: &JobContext, spec: &JobSpec, ctl: &coffer_repository::JobControl) -> crate::event::RunRecord {
    let _ = ctl;
    let now = ctx.clock.now();
    crate::event::RunRecord {
        version: crate::event::RunRecord::VERSION,
        run_id: crate::event::random_id(),
        job: spec.id.clone(),
        kind: spec.kind,
        source: spec.source.clone(),
        repository: spec.repository.clone(),
        host: ctx.host.clone(),
        scheduled: None,
        late: false,
        started: now,
        finished: now,
        outcome: crate::event::Outcome::Failed,
        attempts: 1,
        error_class: Some("other".into()),
        error: Some(format!("job kind {} is not runnable yet", spec.kind)),
        files: None,
        bytes_read: None,
        bytes_added: None,
        snapshot: None,
        warnings: 0,
        details: std::collections::BTreeMap::new(),
    }
}
