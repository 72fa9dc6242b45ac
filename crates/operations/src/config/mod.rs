//! `coffer.toml`, the policy file: what to back up, where, when, how long to keep it, how
//! to check it, and whom to tell. One schema, read by `coffer config check|show`, the daemon
//! and `coffer status`.
//!
//! Invariants guarded here:
//! - **Secrets only by reference.** A password, an SMTP password or a webhook key is a
//!   [`SecretRef`] (a file or an environment variable), never a value in the file, so the
//!   file can be shown, versioned and stored in the repository; [`SecretRef`] never shows
//!   what it points to.
//! - **Every error names file, line and column** and says what is allowed (unknown keys are
//!   refused, not ignored: a typo must not silently turn a job off).
//!
//! Layout (every key is documented in `docs/configuration.md`; `examples/coffer.toml` is an
//! annotated file implementing the policy):
//!
//! ```toml
//! [daemon]                      # state directory, concurrency, catch-up, retries
//! [metrics]                     # the Prometheus listener
//! [repositories.NAME]           # location, password, per-role credentials
//! [repositories.NAME.verify]    # verify schedule
//! [repositories.NAME.prune]     # prune schedule
//! [files.NAME]                  # a files source
//! [postgres.NAME]               # a PostgreSQL source
//! [alerts]                      # repeat interval
//! [alerts.webhook.NAME]         # alert targets, by kind
//! [alerts.email.NAME]
//! [alerts.command.NAME]
//! [alerts.heartbeat.NAME]
//! [[alerts.route]]              # which events go to which targets
//! ```

mod env;
mod load;
mod show;
#[cfg(test)]
mod tests;
mod validate;

pub use env::{ENV_PREFIX, Override, overrides};
pub use load::{ConfigError, Location};
pub use show::redacted;
pub use validate::ReadDataSpec;

use crate::schedule::Schedule;
use coffer_repository::KeepRules;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The name of the repository a source uses when it names none: the embedded default vault
/// unless `[repositories.default]` says otherwise.
pub const DEFAULT_REPOSITORY: &str = "default";

/// The whole policy file.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Config {
    /// How the daemon runs jobs.
    #[serde(default)]
    pub daemon: DaemonConfig,
    /// The Prometheus listener (none: no listener).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsConfig>,
    /// Repositories, by name.
    #[serde(default)]
    pub repositories: BTreeMap<String, RepositoryConfig>,
    /// Files sources, by name.
    #[serde(default)]
    pub files: BTreeMap<String, FilesSource>,
    /// PostgreSQL sources, by name.
    #[serde(default)]
    pub postgres: BTreeMap<String, PostgresSource>,
    /// Alert targets and routes.
    #[serde(default)]
    pub alerts: AlertsConfig,
    /// The file this was read from (not a key).
    #[serde(skip)]
    pub path: Option<PathBuf>,
    /// The metadata cache every repository uses whatever its `cache`/`cache-dir` keys say:
    /// the command line's `--no-cache` (Off) or `--cache-dir DIR` (Always). Not a key, and
    /// not part of the policy's hash: a flag of one run does not change the policy.
    #[serde(skip)]
    pub cache_override: Option<coffer_repository::CacheChoice>,
}

/// `[daemon]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct DaemonConfig {
    /// Where the daemon keeps its local state (run history for `status`, schedule slots,
    /// open problems, ledger records not yet stored). Default: `$STATE_DIRECTORY` (systemd),
    /// else `dirs::state_dir()/coffer`, else `~/.local/state/coffer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<PathBuf>,
    /// Jobs running at once, overall (one at a time per source regardless).
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent_jobs: usize,
    /// Run once, late, a slot missed while the daemon was down (systemd's `Persistent=true`).
    #[serde(default = "yes")]
    pub catch_up: bool,
    /// Timeout of a job that sets none.
    #[serde(default = "default_timeout", with = "coffer_repository::options::duration")]
    pub default_timeout: Duration,
    /// Retries of a job that fails with a transient error (network, throttling), unless the
    /// job sets its own.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// The first retry's delay; each next one doubles it.
    #[serde(default = "default_backoff", with = "coffer_repository::options::duration")]
    pub retry_backoff: Duration,
    /// The time zone of calendar schedules (IANA name). Default: the system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// A host name for the records (default: this machine's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// On shutdown (SIGTERM), how long running jobs get to stop and records to reach the
    /// ledger before the daemon exits anyway.
    #[serde(default = "default_shutdown_grace", with = "coffer_repository::options::duration")]
    pub shutdown_grace: Duration,
    /// Alert (`archive-lagging`) when a continuous job (WAL streaming) has been down this
    /// long.
    #[serde(default = "default_stream_down_alert", with = "coffer_repository::options::duration")]
    pub stream_down_alert: Duration,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            state_dir: None,
            max_concurrent_jobs: default_max_concurrent(),
            catch_up: true,
            default_timeout: default_timeout(),
            retries: default_retries(),
            retry_backoff: default_backoff(),
            timezone: None,
            host: None,
            shutdown_grace: default_shutdown_grace(),
            stream_down_alert: default_stream_down_alert(),
        }
    }
}

fn default_shutdown_grace() -> Duration {
    Duration::from_secs(30)
}
fn default_stream_down_alert() -> Duration {
    Duration::from_secs(120)
}

fn default_max_concurrent() -> usize {
    2
}
fn yes() -> bool {
    true
}
/// Leaves a default-true switch out of a printed configuration (it was not written either).
#[allow(clippy::trivially_copy_pass_by_ref, reason = "serde's skip_serializing_if passes a reference")]
fn is_true(b: &bool) -> bool {
    *b
}
fn default_timeout() -> Duration {
    Duration::from_secs(6 * 3600)
}
fn default_retries() -> u32 {
    2
}
fn default_backoff() -> Duration {
    Duration::from_secs(30)
}

/// `[metrics]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address of the `/metrics` listener, e.g. `127.0.0.1:9477`.
    pub listen: SocketAddr,
}

/// A secret, by reference: `{ file = "/etc/coffer/password" }` (its first line) or
/// `{ env = "COFFER_PASSWORD" }`. Debug and serialization show the reference, never the
/// secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SecretRef {
    /// A file whose first line is the secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// An environment variable holding the secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
}

/// `[repositories.NAME]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RepositoryConfig {
    /// A local vault directory or `s3://BUCKET/PREFIX?endpoint=URL&region=R`; none: the
    /// embedded default vault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// The repository password (default: `{ env = "COFFER_PASSWORD" }`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretRef>,
    /// A key file (`coffer key export`) instead of the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// The credentials file each role's jobs present (`writer`, `pruner`, `reader`,
    /// `auditor`); a role not named uses the implicit credentials (the vault's own
    /// `credentials/ROLE.toml`, or the AWS chain).
    #[serde(default)]
    pub credentials: BTreeMap<String, PathBuf>,
    /// Verify schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifyJob>,
    /// Prune schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune: Option<PruneJob>,
    /// The security watch and canary of this repository's store (on by default).
    #[serde(default)]
    pub security: SecurityConfig,
    /// The full-rebuild drill of this repository's sources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebuild: Option<RebuildDrill>,
    /// Keep a local cache of the repository's metadata objects (on by default; used for
    /// remote stores only unless `cache-dir` is set: `docs/cache.md`).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub cache: bool,
    /// Where the metadata cache lives (default: `$XDG_CACHE_HOME/coffer`, else
    /// `$HOME/.cache/coffer`); naming it uses the cache for a local vault too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_dir: Option<PathBuf>,
    /// How long after this host last listed the repository's history its backups may take
    /// the cache's copy of that listing instead of listing again (default a day; `0s`
    /// lists on every backup): `docs/cache.md`, "Backups without a listing".
    #[serde(
        default,
        with = "coffer_repository::options::opt_duration_or_zero",
        skip_serializing_if = "Option::is_none"
    )]
    pub relist_after: Option<std::time::Duration>,
}

impl Default for RepositoryConfig {
    /// What an empty `[repositories.NAME]` table says.
    fn default() -> Self {
        Self {
            location: None,
            password: None,
            key_file: None,
            credentials: BTreeMap::new(),
            verify: None,
            prune: None,
            security: SecurityConfig::default(),
            rebuild: None,
            cache: true,
            cache_dir: None,
            relist_after: None,
        }
    }
}

impl RepositoryConfig {
    /// The metadata cache its jobs use (see the fields `cache` and `cache-dir`).
    #[must_use]
    pub fn cache_choice(&self) -> coffer_repository::CacheChoice {
        use coffer_repository::CacheChoice;
        match (&self.cache_dir, self.cache) {
            (_, false) => CacheChoice::Off,
            (Some(d), true) => CacheChoice::Always(d.clone()),
            (None, true) => coffer_repository::cache::default_root().map_or(CacheChoice::Off, CacheChoice::Remote),
        }
    }

    /// How long its backups may take the cache's listing for a complete one (`relist-after`).
    #[must_use]
    pub fn relist_after(&self) -> std::time::Duration {
        self.relist_after.unwrap_or(coffer_repository::repo::DEFAULT_RELIST_AFTER)
    }
}

/// `[repositories.NAME.security]`: the watch over the repository's store and its canary
/// (`docs/security.md`). On by default: security monitoring must not depend on someone
/// remembering to turn it on.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SecurityConfig {
    /// Run the continuous watch (audit log, drift, CloudTrail queue).
    #[serde(default = "yes")]
    pub watch: bool,
    /// How often the audit log and the event queue are read (default 1m).
    #[serde(default = "default_poll", with = "coffer_repository::options::duration")]
    pub poll_interval: Duration,
    /// How often the protective configuration is compared with the baseline (default 15m).
    #[serde(default = "default_drift", with = "coffer_repository::options::duration")]
    pub drift_interval: Duration,
    /// Audit entries (and a clock) out of time order by more than this are a clock anomaly
    /// (default 5s: NTP steps are smaller).
    #[serde(default = "default_clock_tolerance", with = "coffer_repository::options::duration")]
    pub clock_tolerance: Duration,
    /// Principals (names, access keys or ARNs) besides the roles' own whose requests are not
    /// `unknown-principal` events.
    #[serde(default)]
    pub known_principals: Vec<String>,
    /// AWS CloudTrail events through EventBridge and SQS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloudtrail: Option<CloudTrailConfig>,
    /// The immutability canary.
    #[serde(default)]
    pub canary: CanaryConfig,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            watch: true,
            poll_interval: default_poll(),
            drift_interval: default_drift(),
            clock_tolerance: default_clock_tolerance(),
            known_principals: Vec::new(),
            cloudtrail: None,
            canary: CanaryConfig::default(),
        }
    }
}

fn default_poll() -> Duration {
    Duration::from_secs(60)
}
fn default_drift() -> Duration {
    Duration::from_secs(15 * 60)
}
fn default_clock_tolerance() -> Duration {
    Duration::from_secs(5)
}

/// `[repositories.NAME.security.cloudtrail]`: the SQS queue the generated EventBridge rule
/// feeds (`coffer security aws-template`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct CloudTrailConfig {
    /// The queue's URL.
    pub queue_url: String,
    /// The queue's region (default: from the URL, else the AWS chain's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// An endpoint other than AWS's (tests, LocalStack).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// A credentials file (`access-key`, `secret-key`) allowed to receive and delete
    /// messages; none: the AWS chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<PathBuf>,
}

/// `[repositories.NAME.security.canary]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct CanaryConfig {
    /// Run the canary.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// When (default `daily`).
    #[serde(default = "default_canary_schedule")]
    pub schedule: Schedule,
    /// Cancelled after this long (default 10m).
    #[serde(default = "default_canary_timeout", with = "coffer_repository::options::duration")]
    pub timeout: Duration,
}

impl Default for CanaryConfig {
    fn default() -> Self {
        Self { enabled: true, schedule: default_canary_schedule(), timeout: default_canary_timeout() }
    }
}

fn default_canary_schedule() -> Schedule {
    Schedule::parse("daily").expect("`daily` is a schedule")
}
fn default_canary_timeout() -> Duration {
    Duration::from_secs(600)
}

/// When and how long a job runs. Every job's table has these keys (`schedule`,
/// `random-delay`, `timeout`, `retries`) at its top level; they are written out in each table
/// rather than flattened, because serde's flatten loses the error positions and
/// `deny_unknown_fields`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct JobSchedule {
    /// Calendar expression (`hourly`, `daily 02:00`, `*-*-* 00/4:00`, `every 30s`).
    pub schedule: Schedule,
    /// A random delay up to this long after each scheduled instant (spreads load).
    #[serde(default, with = "coffer_repository::options::opt_duration", skip_serializing_if = "Option::is_none")]
    pub random_delay: Option<Duration>,
    /// The job is cancelled after this long (default: `daemon.default-timeout`).
    #[serde(default, with = "coffer_repository::options::opt_duration", skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Retries on transient errors (default: `daemon.retries`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
}

/// The schedule keys of a job table, spelled out (see [`JobSchedule`]).
macro_rules! job_table {
    ($(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* pub $f:ident : $t:ty,)* }) => {
        $(#[$m])*
        #[derive(Clone, Debug, Serialize, Deserialize)]
        #[serde(rename_all = "kebab-case", deny_unknown_fields)]
        pub struct $name {
            /// Calendar expression (`hourly`, `daily 02:00`, `*-*-* 00/4:00`, `every 30s`).
            pub schedule: Schedule,
            /// A random delay up to this long after each scheduled instant.
            #[serde(default, with = "coffer_repository::options::opt_duration", skip_serializing_if = "Option::is_none")]
            pub random_delay: Option<Duration>,
            /// Cancelled after this long (default: `daemon.default-timeout`).
            #[serde(default, with = "coffer_repository::options::opt_duration", skip_serializing_if = "Option::is_none")]
            pub timeout: Option<Duration>,
            /// Retries on transient errors (default: `daemon.retries`).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub retries: Option<u32>,
            $($(#[$fm])* pub $f: $t,)*
        }

        impl $name {
            /// The schedule keys.
            #[must_use]
            pub fn when(&self) -> JobSchedule {
                JobSchedule {
                    schedule: self.schedule.clone(),
                    random_delay: self.random_delay,
                    timeout: self.timeout,
                    retries: self.retries,
                }
            }
        }
    };
}

job_table! {
/// `[repositories.NAME.verify]`.
pub struct VerifyJob {
    /// Also read and authenticate pack data: `"all"`, or a percentage such as `"5%"`
    /// (default: structure only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_data: Option<String>,
}
}

job_table! {
/// `[repositories.NAME.prune]`.
pub struct PruneJob {}
}

job_table! {
/// `[files.NAME]`: directories and files backed up as one series of snapshots.
pub struct FilesSource {
    /// The repository (default: `default`).
    #[serde(default = "default_repository")]
    pub repository: String,
    /// Files and directories to back up (absolute).
    pub paths: Vec<PathBuf>,
    /// Globs to leave out (restic's rules: with a `/` the absolute path, else the name).
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Do not cross into other file systems.
    #[serde(default)]
    pub one_file_system: bool,
    /// Tags of every snapshot.
    #[serde(default)]
    pub tags: Vec<String>,
    /// How long snapshots are kept (within the repository's ceiling).
    #[serde(default)]
    pub retention: KeepRules,
    /// The source's restore drill.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill: Option<FilesDrill>,
}
}

/// Which snapshot a scheduled files drill restores.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SnapshotPick {
    /// The newest.
    #[default]
    Latest,
    /// One at random.
    Random,
}

job_table! {
/// `[files.NAME.drill]`: the source's restore drill (`docs/drills.md`).
pub struct FilesDrill {
    /// Which snapshot (`latest` or `random`).
    #[serde(default)]
    pub snapshot: SnapshotPick,
    /// Restore and check only this many files, chosen at random (default: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<usize>,
    /// A drill taking longer than this fails.
    #[serde(default, with = "coffer_repository::options::opt_duration", skip_serializing_if = "Option::is_none")]
    pub rto_target: Option<Duration>,
    /// Scratch space (default: `drill/` under the state directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scratch: Option<PathBuf>,
}
}

/// Where a scheduled PostgreSQL drill recovers to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PointPick {
    /// A random time in the recovery window.
    #[default]
    Random,
    /// The end of the archived WAL.
    Latest,
}

/// `[[postgres.NAME.drill.check]]`: a query the restored server must answer as expected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SqlCheck {
    /// The check's name (in reports: `sql:NAME`).
    pub name: String,
    /// The database (default `postgres`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// The query; its first row's columns, joined by `|`, are compared with `expect`.
    pub query: String,
    /// The expected result, as psql's unaligned output prints it (`t`, `42`, `a|b`).
    pub expect: String,
}

job_table! {
/// `[postgres.NAME.drill]`: the cluster's point-in-time restore drill.
pub struct PostgresDrill {
    /// Where to recover to (`random` or `latest`).
    #[serde(default)]
    pub point: PointPick,
    /// A drill taking longer than this fails.
    #[serde(default, with = "coffer_repository::options::opt_duration", skip_serializing_if = "Option::is_none")]
    pub rto_target: Option<Duration>,
    /// Scratch space (default: `drill/` under the state directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scratch: Option<PathBuf>,
    /// The user the throwaway server runs as when the daemon runs as root (default
    /// `postgres`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as: Option<String>,
    /// The user's SQL checks.
    #[serde(default)]
    pub check: Vec<SqlCheck>,
}
}

job_table! {
/// `[repositories.NAME.rebuild]`: the full rebuild of every source stored in the repository,
/// from the repository alone.
pub struct RebuildDrill {
    /// A rebuild taking longer than this fails.
    #[serde(default, with = "coffer_repository::options::opt_duration", skip_serializing_if = "Option::is_none")]
    pub rto_target: Option<Duration>,
    /// Scratch root (default: `rebuild/` under the state directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scratch: Option<PathBuf>,
    /// The user PostgreSQL servers run as when the daemon runs as root (default `postgres`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as: Option<String>,
}
}

/// How a PostgreSQL cluster's WAL reaches the repository.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Archiving {
    /// The server's `archive_command` runs `coffer pg wal-push`; the daemon watches
    /// `pg_stat_archiver`.
    #[default]
    ArchiveCommand,
    /// The daemon runs `pg stream` (a replication connection) and restarts it.
    Streaming,
    /// Both.
    Both,
}

/// `[postgres.NAME]`: a cluster archived continuously, with scheduled base backups.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PostgresSource {
    /// The repository (default: `default`).
    #[serde(default = "default_repository")]
    pub repository: String,
    /// libpq connection string (no password: use `PGPASSFILE` or a `.pgpass`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
    /// How WAL is archived.
    #[serde(default)]
    pub archiving: Archiving,
    /// Streaming's spool directory (default: under the state directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spool: Option<PathBuf>,
    /// Streaming's replication slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
    /// Alert when the newest archived WAL is older than this (default 15m).
    #[serde(default = "default_lag", with = "coffer_repository::options::duration")]
    pub archive_lag_alert: Duration,
    /// How often archiving health is checked (default 1m).
    #[serde(default = "default_check", with = "coffer_repository::options::duration")]
    pub check_interval: Duration,
    /// Base backups.
    pub base_backup: JobSchedule,
    /// How long base backups are kept (within the repository's ceiling).
    #[serde(default)]
    pub retention: KeepRules,
    /// The cluster's restore drill.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill: Option<PostgresDrill>,
}

fn default_repository() -> String {
    DEFAULT_REPOSITORY.to_owned()
}
fn default_lag() -> Duration {
    Duration::from_secs(15 * 60)
}
fn default_check() -> Duration {
    Duration::from_secs(60)
}

/// `[alerts]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct AlertsConfig {
    /// An ongoing problem is notified again after this long (default 4h).
    #[serde(default = "default_repeat", with = "coffer_repository::options::duration")]
    pub repeat_interval: Duration,
    /// A security alert not yet acknowledged is notified again after this long (default 1h).
    #[serde(default = "default_security_repeat", with = "coffer_repository::options::duration")]
    pub security_repeat_interval: Duration,
    /// Webhook targets.
    #[serde(default)]
    pub webhook: BTreeMap<String, WebhookTarget>,
    /// Email targets.
    #[serde(default)]
    pub email: BTreeMap<String, EmailTarget>,
    /// Command targets.
    #[serde(default)]
    pub command: BTreeMap<String, CommandTarget>,
    /// Heartbeat ping targets.
    #[serde(default)]
    pub heartbeat: BTreeMap<String, HeartbeatTarget>,
    /// Routes; none: every event to every webhook, email and command target.
    #[serde(default)]
    pub route: Vec<Route>,
    /// The wait before a failed delivery's first retry; it doubles with each retry (default
    /// 5s).
    #[serde(default = "default_retry_backoff", with = "coffer_repository::options::duration")]
    pub retry_backoff: Duration,
    /// After this many deliveries in a row to one target failed (each after its retries),
    /// `delivery-failing` is raised through the other targets (default 3).
    #[serde(default = "default_failing_after")]
    pub failing_after: u32,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            repeat_interval: default_repeat(),
            security_repeat_interval: default_security_repeat(),
            webhook: BTreeMap::new(),
            email: BTreeMap::new(),
            command: BTreeMap::new(),
            heartbeat: BTreeMap::new(),
            route: Vec::new(),
            retry_backoff: default_retry_backoff(),
            failing_after: default_failing_after(),
        }
    }
}

fn default_retry_backoff() -> Duration {
    Duration::from_secs(5)
}
fn default_failing_after() -> u32 {
    3
}

fn default_security_repeat() -> Duration {
    Duration::from_secs(3600)
}
fn default_repeat() -> Duration {
    Duration::from_secs(4 * 3600)
}
fn default_delivery_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_delivery_retries() -> u32 {
    3
}

/// `[alerts.webhook.NAME]`: a JSON POST (`docs/alerts.md`), signed with HMAC-SHA256 when a
/// secret is set.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct WebhookTarget {
    /// The URL.
    pub url: String,
    /// The HMAC key (`X-Coffer-Signature: sha256=HEX`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretRef>,
    /// Per attempt.
    #[serde(default = "default_delivery_timeout", with = "coffer_repository::options::duration")]
    pub timeout: Duration,
    /// Attempts after the first.
    #[serde(default = "default_delivery_retries")]
    pub retries: u32,
}

/// How an SMTP connection is secured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS (required).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No TLS (a relay on localhost only).
    None,
}

/// `[alerts.email.NAME]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct EmailTarget {
    /// SMTP server host.
    pub server: String,
    /// Port (default: 587 for STARTTLS, 465 for TLS, 25 without).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Security of the connection.
    #[serde(default)]
    pub tls: SmtpTls,
    /// Login name, if the server wants one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Login password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretRef>,
    /// Sender.
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
    /// Per attempt.
    #[serde(default = "default_delivery_timeout", with = "coffer_repository::options::duration")]
    pub timeout: Duration,
    /// Attempts after the first.
    #[serde(default = "default_delivery_retries")]
    pub retries: u32,
}

/// `[alerts.command.NAME]`: a program run with the event in its environment and as JSON on
/// its stdin.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct CommandTarget {
    /// Program and arguments (no shell).
    pub command: Vec<String>,
    /// Killed after this long.
    #[serde(default = "default_delivery_timeout", with = "coffer_repository::options::duration")]
    pub timeout: Duration,
    /// Runs after the first that failed (default 0: a command may have done part of its
    /// work).
    #[serde(default)]
    pub retries: u32,
}

/// `[alerts.heartbeat.NAME]`: pings in the healthchecks.io convention (`URL/start`, `URL`,
/// `URL/fail`) so an outside service notices when nothing happens.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct HeartbeatTarget {
    /// The check's ping URL.
    pub url: String,
    /// Ping for this job (`SOURCE/KIND`, e.g. `home/backup`); none: the daemon itself pings
    /// every `interval` while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// The daemon's ping interval (when no job is named; default 1m).
    #[serde(default = "default_ping", with = "coffer_repository::options::duration")]
    pub interval: Duration,
    /// Per ping.
    #[serde(default = "default_delivery_timeout", with = "coffer_repository::options::duration")]
    pub timeout: Duration,
}

fn default_ping() -> Duration {
    Duration::from_secs(60)
}

/// `[[alerts.route]]`: events matching every given matcher go to `targets`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Route {
    /// Event kinds (`job-failed`, `job-missed`, …); empty: any.
    #[serde(default)]
    pub kinds: Vec<crate::event::AlertKind>,
    /// The lowest severity that matches (default: any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_severity: Option<crate::event::Severity>,
    /// Sources (or repositories, for their jobs); empty: any.
    #[serde(default)]
    pub sources: Vec<String>,
    /// Target names.
    pub targets: Vec<String>,
}

impl Config {
    /// Every source's name, with its repository.
    pub fn sources(&self) -> impl Iterator<Item = (&str, &str)> {
        self.files
            .iter()
            .map(|(n, s)| (n.as_str(), s.repository.as_str()))
            .chain(self.postgres.iter().map(|(n, s)| (n.as_str(), s.repository.as_str())))
    }

    /// The repository `name`: declared, or the embedded default for `default`.
    #[must_use]
    pub fn repository(&self, name: &str) -> Option<RepositoryConfig> {
        let mut r = match self.repositories.get(name) {
            Some(r) => r.clone(),
            None if name == DEFAULT_REPOSITORY => RepositoryConfig::default(),
            None => return None,
        };
        match &self.cache_override {
            Some(coffer_repository::CacheChoice::Off) => r.cache = false,
            Some(coffer_repository::CacheChoice::Always(dir)) => {
                r.cache = true;
                r.cache_dir = Some(dir.clone());
            }
            Some(coffer_repository::CacheChoice::Remote(_)) | None => {}
        }
        Some(r)
    }
}
