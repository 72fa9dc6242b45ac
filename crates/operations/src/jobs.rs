//! Jobs: what the policy file asks to run ([`jobs`]), and running one ([`run_job`]) through
//! the same library calls the commands make.
//!
//! Invariants guarded here:
//! - a job runs with the role its work needs and no other (backups, base backups and
//!   streaming as `writer`, prune as `pruner`, verify and the archive check as `reader`),
//!   so separation of duties holds for the daemon as for the commands;
//! - every attempt ends in one complete [`RunRecord`]: a failure is a record with its error
//!   class and a one-line message (the libraries' errors, which never hold a secret), never
//!   a panic or a missing record; a cancelled job is `cancelled`, having acknowledged
//!   nothing (the libraries commit nothing once cancelled).
//!
//! The bodies live in `jobs/files.rs` (backup), `jobs/repository.rs` (verify, prune) and
//! `jobs/postgres.rs` (base backup, stream, archive check); the record's fields and
//! `details` keys are documented in `docs/operations.md`, "Jobs".

mod canary;
mod drill;
mod files;
mod postgres;
mod repository;
mod watch;

pub use canary::SECURITY_CLASS;
pub use drill::{DRILL_CLASS, failure_line as drill_failure_line, report_details as drill_details};
pub use postgres::{ARCHIVE_CLASS, ARCHIVE_KEYS};
pub use repository::read_data;

use crate::config::{Archiving, Config, JobSchedule};
use crate::event::{JobKind, Outcome, RunRecord, job_id};
use crate::schedule::Schedule;
use coffer_repository::{Event, JobControl};
use coffer_store::ErrorClass;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
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

/// Every job of `config`, in a stable order (files, postgres, repositories (verify, prune,
/// watch, canary); by name).
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
        if let Some(d) = &s.drill {
            out.push(scheduled(name, JobKind::Drill, Some(name), &s.repository, &d.when()));
        }
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
        if let Some(d) = &s.drill {
            out.push(scheduled(name, JobKind::Drill, Some(name), &s.repository, &d.when()));
        }
    }
    for name in used_repositories(config) {
        // A source may name a repository the file does not declare: only the embedded
        // `default` resolves; validation reports the others.
        let Some(r) = config.repository(&name) else { continue };
        if let Some(v) = &r.verify {
            out.push(scheduled(&name, JobKind::Verify, None, &name, &v.when()));
        }
        if let Some(p) = &r.prune {
            out.push(scheduled(&name, JobKind::Prune, None, &name, &p.when()));
        }
        if let Some(b) = &r.rebuild {
            out.push(scheduled(&name, JobKind::Rebuild, None, &name, &b.when()));
        }
        // Security monitoring is on by default for every store the file uses: it must not
        // depend on someone remembering to turn it on (`docs/security.md`).
        if r.security.watch {
            out.push(JobSpec {
                id: job_id(&name, JobKind::Watch),
                kind: JobKind::Watch,
                source: None,
                repository: name.clone(),
                schedule: None,
                random_delay: None,
                timeout: Duration::MAX,
                retries: u32::MAX,
            });
        }
        if r.security.canary.enabled {
            out.push(JobSpec {
                id: job_id(&name, JobKind::Canary),
                kind: JobKind::Canary,
                source: None,
                repository: name.clone(),
                schedule: Some(r.security.canary.schedule.clone()),
                random_delay: None,
                timeout: r.security.canary.timeout,
                retries: 0,
            });
        }
    }
    out
}

/// The repositories `config` uses: those it declares and those its sources name (the
/// embedded `default` among them), by name.
#[must_use]
pub fn used_repositories(config: &Config) -> std::collections::BTreeSet<String> {
    config.repositories.keys().cloned().chain(config.sources().map(|(_, r)| r.to_owned())).collect()
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
    /// Where security events go (the watch's and the canary's findings); none: they are
    /// only logged.
    pub security: Option<crate::security::SecuritySink>,
}

/// How many warnings (or verify problems) a record quotes in `details` (`warning_1`, …).
pub const QUOTED: usize = 5;

/// Runs one attempt of `spec` and returns its record (outcome, error class and message,
/// numbers, snapshot). Retries, timeouts and the `scheduled`/`late`/`attempts` fields are
/// the caller's (the daemon's): it cancels through `ctl` and sets them. A cancelled attempt
/// is [`Outcome::Cancelled`] (the daemon turns its own timeout into `timed-out`).
#[must_use]
pub fn run_job(ctx: &JobContext, spec: &JobSpec, ctl: &JobControl) -> RunRecord {
    let started = ctx.clock.now();
    tracing::debug!(job = %spec.id, "job {} starting", spec.id);
    let tally = Arc::new(Tally::default());
    let ctl = tally.wrap(ctl);
    let result = match spec.kind {
        JobKind::Backup => files::backup(ctx, spec, &ctl),
        JobKind::Verify => repository::verify(ctx, spec, &ctl),
        JobKind::Prune => repository::prune(ctx, spec, &ctl),
        JobKind::BaseBackup => postgres::base_backup(ctx, spec, &ctl),
        JobKind::Stream => postgres::stream(ctx, spec, &ctl),
        JobKind::ArchiveCheck => postgres::archive_check(ctx, spec, &ctl),
        JobKind::Watch => watch::watch(ctx, spec, &ctl),
        JobKind::Canary => canary::canary(ctx, spec, &ctl),
        JobKind::Drill => drill::drill(ctx, spec, &ctl),
        JobKind::Rebuild => drill::rebuild(ctx, spec, &ctl),
    };
    let mut record = RunRecord::new(&spec.id, spec.kind, spec.source.as_deref(), &spec.repository, &ctx.host, started);
    let (observed, first) = tally.warnings();
    match result {
        Ok(done) => {
            let count = observed.max(done.warnings.len() as u64);
            let quoted = if done.warnings.is_empty() { first } else { done.warnings };
            record.outcome = if done.warned || count > 0 { Outcome::Warning } else { Outcome::Success };
            record.files = done.files.or_else(|| tally.objects());
            record.bytes_read = done.bytes_read;
            record.bytes_added = done.bytes_added.or_else(|| tally.objects().map(|_| tally.object_bytes()));
            record.snapshot = done.snapshot;
            record.warnings = count;
            record.details = done.details;
            quote(&mut record.details, "warning", &quoted);
        }
        Err(f) => {
            record.outcome =
                if f.class == ErrorClass::Cancelled.as_str() { Outcome::Cancelled } else { Outcome::Failed };
            record.files = tally.objects();
            record.bytes_added = tally.objects().map(|_| tally.object_bytes());
            record.warnings = observed;
            record.details = f.details;
            quote(&mut record.details, "warning", &first);
            record.error_class = Some(f.class);
            record.error = Some(f.error);
        }
    }
    record.finished = ctx.clock.now();
    record
}

/// `KEY_1` … `KEY_N`: the first [`QUOTED`] items.
fn quote(details: &mut BTreeMap<String, String>, key: &str, items: &[String]) {
    for (i, w) in items.iter().take(QUOTED).enumerate() {
        details.insert(format!("{key}_{}", i + 1), one_line(w));
    }
}

/// What a job's work produced, for its record.
#[derive(Debug, Default)]
struct Done {
    /// Done, but not everything (outcome `warning`) even without a warning message.
    warned: bool,
    files: Option<u64>,
    bytes_read: Option<u64>,
    bytes_added: Option<u64>,
    snapshot: Option<String>,
    /// The report's warnings (those the observer saw count when this is empty).
    warnings: Vec<String>,
    details: BTreeMap<String, String>,
}

/// Why a job failed: the class's name (an [`ErrorClass`] name, or `archive` for the archive
/// check's verdict), one line, and the facts known.
#[derive(Debug)]
struct Failure {
    class: String,
    error: String,
    details: BTreeMap<String, String>,
}

impl Failure {
    /// A library error: its class and its chain, one line.
    fn of(e: &(dyn std::error::Error + 'static), class: ErrorClass) -> Self {
        Self { class: class.as_str().to_owned(), error: chain(e), details: BTreeMap::new() }
    }

    /// A failure of class `class` with this message.
    fn new(class: &str, error: impl Into<String>) -> Self {
        Self { class: class.to_owned(), error: one_line(&error.into()), details: BTreeMap::new() }
    }

    fn with(mut self, details: BTreeMap<String, String>) -> Self {
        self.details.extend(details);
        self
    }
}

impl From<crate::open::OpenJobError> for Failure {
    fn from(e: crate::open::OpenJobError) -> Self {
        let class = e.class();
        Self::of(&e, class)
    }
}

/// An error and its sources joined with ": ", skipping a source whose text the message
/// already holds (many errors print their source themselves), on one line.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut next = e.source();
    while let Some(c) = next {
        let t = c.to_string();
        if !t.is_empty() && !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        next = c.source();
    }
    one_line(&s)
}

/// `s` with its line breaks (a server's multi-line message) turned into spaces.
fn one_line(s: &str) -> String {
    s.split(['\n', '\r']).map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

/// Counts what a job reports through its observer (warnings, objects stored), passing every
/// event on to the caller's observer: the numbers of jobs whose report does not carry them
/// (streaming ends only by cancellation or failure) or that fail part-way.
#[derive(Default)]
struct Tally {
    inner: Mutex<TallyInner>,
}

#[derive(Default)]
struct TallyInner {
    warnings: u64,
    first: Vec<String>,
    objects: Option<u64>,
    object_bytes: u64,
}

impl Tally {
    /// `ctl` with this tally watching (the same cancellation token).
    fn wrap(self: &Arc<Self>, ctl: &JobControl) -> JobControl {
        let me = Arc::clone(self);
        let outer = Arc::clone(&ctl.observer);
        let observer = move |e: &Event<'_>| {
            me.event(e);
            outer.event(e);
        };
        JobControl { observer: Arc::new(observer), cancel: ctl.cancel.clone() }
    }

    fn event(&self, e: &Event<'_>) {
        let mut t = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match e {
            Event::Warning { item, message } => {
                t.warnings += 1;
                if t.first.len() < QUOTED {
                    t.first.push(if item.is_empty() { (*message).to_owned() } else { format!("{item}: {message}") });
                }
            }
            Event::Object { action: "stored", bytes, .. } => {
                *t.objects.get_or_insert(0) += 1;
                t.object_bytes += bytes;
            }
            _ => {}
        }
    }

    fn warnings(&self) -> (u64, Vec<String>) {
        let t = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        (t.warnings, t.first.clone())
    }

    fn objects(&self) -> Option<u64> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).objects
    }

    fn object_bytes(&self) -> u64 {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).object_bytes
    }
}

/// The source `spec` names in `config`'s table `table`.
fn source<'a, T>(table: &'a BTreeMap<String, T>, spec: &JobSpec) -> Result<&'a T, Failure> {
    let name = spec.source.as_deref().unwrap_or_default();
    table.get(name).ok_or_else(|| {
        Failure::new(ErrorClass::Invalid.as_str(), format!("job {}: source {name:?} is not in coffer.toml", spec.id))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read {0}: {1}")]
    struct Outer(&'static str, #[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("permission denied")]
    struct Inner;

    #[derive(Debug, thiserror::Error)]
    #[error("backup failed")]
    struct Wrapper(#[source] Outer);

    #[test]
    fn error_chains_are_one_line_without_repeats() {
        assert_eq!(chain(&Outer("/x", Inner)), "cannot read /x: permission denied");
        assert_eq!(chain(&Wrapper(Outer("/x", Inner))), "backup failed: cannot read /x: permission denied");
        assert_eq!(one_line("FATAL: no\n  DETAIL: more\n"), "FATAL: no DETAIL: more");
    }

    #[test]
    fn error_class_names_are_kebab_case() {
        assert_eq!(ErrorClass::NotFound.as_str(), "not-found");
        assert_eq!(ErrorClass::Cancelled.as_str(), "cancelled");
    }
}
