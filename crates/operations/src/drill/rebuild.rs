//! The full-rebuild drill (`coffer drill rebuild`, job `REPOSITORY/rebuild`): in a clean
//! scratch root, with nothing but the repository's location, the reader's credentials and
//! the password — no local state, no cache, no coffer.toml from the host — the policy the
//! daemon ran is read back from the repository's ledger ([`super::PolicyRecord`]) and every
//! source it declares for that repository is restored and checked: every files source's
//! latest snapshot, every PostgreSQL cluster to its latest point. One RTO for everything
//! back, and one per source.
//!
//! Invariant guarded here: **nothing from the host is read**. The repository is opened
//! from [`RebuildOptions`] alone (its location, the reader's credentials file, the
//! password) — not through `coffer.toml`, the state directory, a cache or anything under
//! `$HOME` — and what to restore comes from the policy stored in the repository
//! ([`super::policy::stored_policy`]), read back as hostile input.
//!
//! Each files source is drilled with [`files::drill`] (its latest snapshot of exactly the
//! source's paths, whole), each PostgreSQL source with [`pg::drill`] (its cluster to the
//! end of the archive, with the source's SQL checks), in scratch directories
//! `ROOT/files/NAME` and `ROOT/pg/NAME`. A source that fails does not stop the others.

use super::files::{self, FilesDrillOptions, Pick};
use super::pg::{self, PgDrillOptions, PgPoint};
use super::policy::stored_policy_with_problems;
use super::{CheckOutcome, DrillError, DrillKind, DrillReport};
use crate::config::{FilesSource, PostgresSource};
use crate::open::OpenJobError;
use coffer_repository::{JobControl, KeySource, RepoRequest, Repository};
use coffer_store::{Clock, CreateVault, CredentialsSource, Role, StoreLocation, StoreRequest};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// What a rebuild starts from: only these.
#[derive(Clone)]
pub struct RebuildOptions {
    /// The job (`REPOSITORY/rebuild`, or `manual`).
    pub job: String,
    /// The repository's location (a vault directory or `s3://…`).
    pub location: String,
    /// The reader's credentials file (none: the vault's own, or the AWS chain).
    pub credentials: Option<PathBuf>,
    /// The repository password.
    pub password: Zeroizing<Vec<u8>>,
    /// The host, for the report.
    pub host: String,
    /// The scratch root (created; must be empty if it exists; removed after).
    pub scratch: PathBuf,
    /// The RTO target for everything back (none: the stored policy's).
    pub rto_target: Option<Duration>,
    /// The user PostgreSQL servers run as when the drill runs as root.
    pub run_as: Option<String>,
    /// Leave what was restored in place.
    pub keep: bool,
}

impl std::fmt::Debug for RebuildOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password is a secret: never in a log.
        f.debug_struct("RebuildOptions")
            .field("job", &self.job)
            .field("location", &self.location)
            .field("credentials", &self.credentials)
            .field("scratch", &self.scratch)
            .finish_non_exhaustive()
    }
}

/// How long a PostgreSQL source's throwaway server may take to recover to the end of the
/// archive (the stored policy sets no such limit).
pub const PG_START_TIMEOUT: Duration = Duration::from_secs(3600);

/// Runs the full rebuild.
///
/// # Errors
/// [`DrillError`] when it could not run at all (the repository cannot be opened, no policy
/// is stored in it); a rebuild that ran and failed is `Ok` with `passed: false`.
pub fn rebuild(opts: &RebuildOptions, ctl: &JobControl) -> Result<DrillReport, DrillError> {
    let clock = Clock::from_env();
    let created = prepare_scratch(&opts.scratch)?;
    let result = run(opts, ctl, &clock);
    if !opts.keep {
        clean_scratch(&opts.scratch, created);
    }
    result
}

fn run(opts: &RebuildOptions, ctl: &JobControl, clock: &Clock) -> Result<DrillReport, DrillError> {
    let start = Instant::now();
    let started = clock.now();
    let repo = open(opts, clock)?;
    let (record, problems) = stored_policy_with_problems(&repo).map_err(|e| match e {
        crate::ledger::LedgerError::Repo(e) => DrillError::Repo(e),
        other => DrillError::Invalid(other.to_string()),
    })?;
    // Counted in the `policy` check; a command prints nothing but its result.
    for p in &problems {
        tracing::debug!(object = %p.object, problem = ?p.kind, "{}", p.message);
    }
    let Some(record) = record else {
        return Err(DrillError::Invalid(format!(
            "no policy is stored in the ledger of {}{}: run `coffer config store` on the host that backs it up \
             (or start its daemon, which stores it) first",
            opts.location,
            if problems.iter().any(|p| p.message.contains("policy")) {
                " (policy records were found, but none holds: `coffer ledger verify` lists them)"
            } else {
                ""
            }
        )));
    };
    // `PolicyRecord::config` held when the record was read: parsing again cannot fail.
    let config = record.config().map_err(DrillError::Invalid)?;
    let name = record.repository.clone();
    let mut report = DrillReport::new(DrillKind::Rebuild, &opts.job, &name, &opts.host, started);
    let files: Vec<(&String, &FilesSource)> = config.files.iter().filter(|(_, s)| s.repository == name).collect();
    let pgs: Vec<(&String, &PostgresSource)> = config.postgres.iter().filter(|(_, s)| s.repository == name).collect();
    report.check(
        "policy",
        None,
        CheckOutcome::Passed,
        format!(
            "policy {} recorded {} (hash {}): {} files and {} PostgreSQL sources for repository {name}{}",
            short(&record.id),
            record.recorded,
            short(&record.hash),
            files.len(),
            pgs.len(),
            if problems.is_empty() {
                String::new()
            } else {
                format!("; {} ledger problems passed over", problems.len())
            }
        ),
    );
    let rebuild_conf = config.repositories.get(&name).and_then(|r| r.rebuild.clone());
    report.rto_target_seconds =
        opts.rto_target.or_else(|| rebuild_conf.as_ref().and_then(|r| r.rto_target)).map(|d| d.as_secs_f64());
    if files.is_empty() && pgs.is_empty() {
        report.error =
            Some(format!("the stored policy declares no source for repository {name}: the rebuild proves nothing"));
    }
    let mut merge = Merge { report, back: None, bytes: 0 };
    for (source, s) in files {
        if ctl.cancel.is_cancelled() {
            return Err(DrillError::Cancelled);
        }
        let d = s.drill.as_ref();
        let fo = FilesDrillOptions {
            job: opts.job.clone(),
            source: Some(source.clone()),
            repository: name.clone(),
            host: opts.host.clone(),
            snapshot: Pick::Latest,
            paths: s.paths.iter().map(|p| p.display().to_string()).collect(),
            sample: None,
            scratch: opts.scratch.join("files").join(source),
            rto_target: d.and_then(|d| d.rto_target),
            keep: opts.keep,
        };
        let offset = start.elapsed();
        tracing::debug!(source = %source, scratch = %fo.scratch.display(), "rebuild: restoring files source");
        let result = files::drill(&repo, &fo, ctl);
        merge.source(source, offset, result)?;
    }
    let run_as_default = opts.run_as.clone().or_else(|| rebuild_conf.as_ref().and_then(|r| r.run_as.clone()));
    for (source, s) in pgs {
        if ctl.cancel.is_cancelled() {
            return Err(DrillError::Cancelled);
        }
        let d = s.drill.as_ref();
        let po = PgDrillOptions {
            job: opts.job.clone(),
            source: Some(source.clone()),
            repository: name.clone(),
            host: opts.host.clone(),
            cluster: cluster_name(source),
            sysid: None,
            point: PgPoint::Latest,
            checks: d.map(|d| d.check.clone()).unwrap_or_default(),
            scratch: opts.scratch.join("pg").join(source),
            rto_target: d.and_then(|d| d.rto_target),
            run_as: run_as_default.clone().or_else(|| d.and_then(|d| d.run_as.clone())),
            start_timeout: PG_START_TIMEOUT,
            keep: opts.keep,
        };
        let offset = start.elapsed();
        tracing::debug!(source = %source, scratch = %po.scratch.display(), "rebuild: restoring PostgreSQL source");
        let result = pg::drill(&repo, &po, ctl);
        merge.source(source, offset, result)?;
    }
    let Merge { mut report, back, bytes, .. } = merge;
    if let Some(back) = back {
        report.rto_seconds = Some(back);
        if back > 0.0 {
            report.throughput = Some(bytes as f64 / back);
        }
    }
    report.finish(clock.now());
    Ok(report)
}

/// The per-source reports folded into the rebuild's.
struct Merge {
    report: DrillReport,
    /// Seconds from the start to the last source back.
    back: Option<f64>,
    bytes: u64,
}

impl Merge {
    /// Folds in one source's drill, started `offset` after the rebuild: its restored
    /// entries (their RTO counted from the rebuild's start), its checks (named by source),
    /// its error as a failed `restore` check. A source that failed does not stop the others;
    /// only a cancellation does.
    fn source(
        &mut self,
        source: &str,
        offset: Duration,
        result: Result<DrillReport, DrillError>,
    ) -> Result<(), DrillError> {
        let offset = offset.as_secs_f64();
        match result {
            Err(DrillError::Cancelled) => return Err(DrillError::Cancelled),
            Err(e) => {
                tracing::debug!(source, error = %e, "rebuild: the source's drill could not run");
                self.report.check("restore", Some(source), CheckOutcome::Failed, one_line(&e.to_string()));
            }
            Ok(r) => {
                if let Some(err) = &r.error {
                    self.report.check("restore", Some(source), CheckOutcome::Failed, one_line(err));
                }
                for mut restored in r.restored {
                    restored.source.get_or_insert_with(|| source.to_owned());
                    restored.rto_seconds += offset;
                    self.bytes = self.bytes.saturating_add(restored.bytes);
                    self.back = Some(self.back.map_or(restored.rto_seconds, |b| b.max(restored.rto_seconds)));
                    self.report.restored.push(restored);
                }
                let had_checks = !r.checks.is_empty();
                for mut c in r.checks {
                    c.source.get_or_insert_with(|| source.to_owned());
                    self.report.checks.push(c);
                }
                if !r.passed && r.error.is_none() && !had_checks {
                    self.report.check("restore", Some(source), CheckOutcome::Failed, "the drill ran no check");
                }
                if let Some(age) = r.data_age_seconds {
                    self.report.data_age_seconds = Some(self.report.data_age_seconds.map_or(age, |a| a.max(age)));
                }
                for (k, v) in r.versions {
                    self.report.versions.entry(k).or_insert(v);
                }
            }
        }
        Ok(())
    }
}

/// Opens the repository as the reader from the options alone.
fn open(opts: &RebuildOptions, clock: &Clock) -> Result<Repository, DrillError> {
    let shown = opts.location.clone();
    let store_err = |source| OpenJobError::Store { repository: shown.clone(), source: Box::new(source) };
    let location = StoreLocation::parse(&opts.location).map_err(store_err)?;
    let credentials = opts.credentials.clone().map_or(CredentialsSource::Implicit, CredentialsSource::File);
    let req = StoreRequest {
        // Always a location: the embedded default vault lives under $HOME.
        location: Some(location),
        credentials,
        role: Some(Role::Reader),
        default_role: Role::Reader,
        check_job_role: false,
        create: CreateVault::Never,
    };
    let store = coffer_store::open_store(&req).map_err(store_err)?.handle.into_shared();
    let req = RepoRequest { clock: clock.clone(), ..RepoRequest::new(KeySource::Password(opts.password.clone())) };
    coffer_repository::open_repository(store, &opts.location, &req)
        .map(|o| o.repo)
        .map_err(|source| OpenJobError::Repo { repository: shown.clone(), source: Box::new(source) }.into())
}

/// Makes the scratch root (refusing one that is not empty); returns whether it was created.
fn prepare_scratch(root: &Path) -> Result<bool, DrillError> {
    let io = |what: &str| {
        let what = format!("{what} {}", root.display());
        move |source| DrillError::Io { what, source }
    };
    match std::fs::read_dir(root) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(DrillError::Invalid(format!(
                    "the scratch root {} is not empty: a rebuild restores only into an empty or new directory",
                    root.display()
                )));
            }
            Ok(false)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(root).map_err(io("cannot create the scratch root"))?;
            Ok(true)
        }
        Err(e) => Err(io("cannot read the scratch root")(e)),
    }
}

/// Removes what the rebuild put in the scratch root (the root too, when it made it).
fn clean_scratch(root: &Path, created: bool) {
    let result = if created {
        std::fs::remove_dir_all(root)
    } else {
        std::fs::read_dir(root).and_then(|entries| {
            for e in entries {
                let p = e?.path();
                if p.is_dir() { std::fs::remove_dir_all(&p)? } else { std::fs::remove_file(&p)? }
            }
            Ok(())
        })
    };
    if let Err(e) = result {
        tracing::warn!(scratch = %root.display(), error = %e, "cannot remove the rebuild's scratch space");
    }
}

/// The cluster name a PostgreSQL source's base backups record (as its base-backup job
/// names it): the source's name when PostgreSQL's rules allow.
fn cluster_name(source: &str) -> Option<String> {
    (!source.is_empty() && !source.contains(char::is_whitespace)).then(|| source.to_owned())
}

/// The first 12 characters of an id or hash (from a hostile record: cut by characters).
fn short(s: &str) -> String {
    s.chars().take(12).collect()
}

/// One line of at most 300 characters.
fn one_line(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const BASE: &str = "[repositories.main]\nlocation = \"/srv/vault\"\n\n[files.home]\nrepository = \"main\"\npaths = [\"/home\"]\nschedule = \"daily\"\n\n[repositories.main.rebuild]\nschedule = \"monthly\"\n";

    fn refused(extra: &str, line: usize, needle: &str) {
        let e = Config::parse(&format!("{BASE}{extra}"), Path::new("c.toml")).expect_err("refused").to_string();
        assert!(e.starts_with(&format!("c.toml:{line}:")), "line {line}: {e}");
        assert!(e.contains(needle), "{needle:?} in {e}");
    }

    #[test]
    fn drill_rebuild_config_rules() {
        let c = Config::parse(
            &format!("{BASE}rto-target = \"4h\"\nscratch = \"/var/tmp/rebuild\"\nrun-as = \"postgres\"\n"),
            Path::new("c.toml"),
        )
        .unwrap();
        let r = c.repositories["main"].rebuild.clone().unwrap();
        assert_eq!(r.rto_target, Some(Duration::from_secs(4 * 3600)));
        assert_eq!(r.scratch.as_deref(), Some(Path::new("/var/tmp/rebuild")));
        refused("rto-target = \"0s\"\n", 11, "it must be positive");
        refused("scratch = \"tmp/rebuild\"\n", 11, "the rebuild's scratch root must be an absolute path");
        refused("run-as = \"\"\n", 11, "run-as must be a user name");
        refused("scratchy = \"/x\"\n", 11, "unknown field");
    }

    #[test]
    fn drill_rebuild_scratch_must_be_empty_and_is_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        assert!(prepare_scratch(&root).unwrap(), "created");
        std::fs::create_dir_all(root.join("files/home")).unwrap();
        std::fs::write(root.join("files/home/a"), b"x").unwrap();
        let e = prepare_scratch(&root).unwrap_err();
        assert!(matches!(e, DrillError::Invalid(ref m) if m.contains("is not empty")), "{e}");
        clean_scratch(&root, false);
        assert!(root.is_dir() && std::fs::read_dir(&root).unwrap().next().is_none(), "emptied, kept");
        assert!(!prepare_scratch(&root).unwrap(), "existed");
        clean_scratch(&root, true);
        assert!(!root.exists());
    }

    /// A location that holds no repository: a one-line error naming it, before any scratch
    /// work is left behind.
    #[test]
    fn drill_rebuild_no_repository_is_an_error_and_leaves_no_scratch() {
        let tmp = tempfile::tempdir().unwrap();
        let vault = tmp.path().join("vault");
        coffer_store::LocalVault::init(&vault, &coffer_store::VaultOptions::default()).unwrap();
        let opts = RebuildOptions {
            job: "manual".into(),
            location: vault.display().to_string(),
            credentials: None,
            password: Zeroizing::new(b"pw".to_vec()),
            host: "h".into(),
            scratch: tmp.path().join("scratch"),
            rto_target: None,
            run_as: None,
            keep: false,
        };
        let e = rebuild(&opts, &JobControl::default()).unwrap_err();
        assert!(e.to_string().contains(&vault.display().to_string()), "{e}");
        assert!(!opts.scratch.exists());
    }
}
