//! `coffer vault …`: create a vault and work with its objects, locks and audit log.
//!
//! Each command opens the vault ([`crate::open`], over `coffer_store::open_store`), logs in as the chosen principal, makes
//! one or a few `ObjectStore` requests, and prints text or one JSON document. The store
//! enforces every rule (roles, locks, audit); nothing here decides what is allowed.
//!
//! **S3.** `--vault s3://BUCKET/PREFIX?endpoint=URL` (or, without `--vault`, an `s3://`
//! `--repo`/`COFFER_REPO`) makes every command act on that bucket through `S3Store`, as the
//! role `--role` names with the keys of the AWS chain or `--credentials` ([`crate::s3`]).
//! Keys are relative to the prefix, so `vault versions` lists the repository's objects.
//! `audit-log` has no S3 equivalent in the bucket (S3 keeps no request log of its own) and
//! is refused with a pointer to CloudTrail data events (`docs/s3-compatibility.md`).

use crate::Global;
use crate::error::UsageError;
use crate::error::{IntegrityError, SecurityError};
use crate::open::{self, Family};
use crate::output::{self, Align, Output};
use crate::parse;
use crate::views::{self, RetentionView, VersionView};
use anyhow::{Context as _, Result, anyhow};
use base64::Engine as _;
use clap::{Args, Subcommand, ValueEnum};
use coffer_store::vault::ClockStatus;
use coffer_store::{
    CreateVault, DefaultRetention, LocalVault, LockConfig, PutOptions, Retention, RetentionMode, Role, StoreHandle,
    StoreLocation, TimeFinding, VaultOptions, VersionId,
};
use jiff::Timestamp;
use std::io::Read as _;
use std::path::PathBuf;
use std::time::Duration;

/// `coffer vault`.
#[derive(Debug, Args)]
pub struct VaultArgs {
    #[command(subcommand)]
    command: VaultCommand,
}

#[derive(Debug, Subcommand)]
enum VaultCommand {
    /// Create a vault, with one access key per role
    Init(InitArgs),
    /// Store a file as a new version of KEY and print the version id
    Put(PutArgs),
    /// Write an object's data to stdout
    Get(GetArgs),
    /// Hide KEY behind a delete marker (admin; removes nothing), or remove one version
    /// (pruner, only once unprotected)
    Rm(RmArgs),
    /// List every version and delete marker under PREFIX
    Versions(VersionsArgs),
    /// Set or extend the retention of a version
    Retention(RetentionArgs),
    /// Turn the legal hold of a version on or off
    LegalHold(LegalHoldArgs),
    /// Show the lock configuration and versioning; as admin, set the default retention
    Config(ConfigArgs),
    /// Show the audit log, or verify its hash chain (auditor or admin)
    AuditLog(AuditLogArgs),
}

#[derive(Debug, Args)]
struct InitArgs {
    /// Directory for the new vault (new or empty), or s3://BUCKET?endpoint=URL to create an
    /// Object Lock bucket (or check an existing one) [default: --vault, COFFER_VAULT, or the
    /// default vault]
    dir: Option<PathBuf>,
    /// Retention applied to puts that name none, e.g. 90d
    #[arg(long, value_parser = parse::duration, value_name = "DURATION")]
    default_retention: Option<Duration>,
    /// Mode of the default retention [default: compliance]
    #[arg(long, value_name = "MODE", requires = "default_retention")]
    mode: Option<RetentionMode>,
    /// Make every writer put create-only (refused over an existing object), except growing
    /// PostgreSQL `.partial` WAL segments; permanent (local vaults; on S3 the bucket policy
    /// of `coffer iam policies` does this)
    #[arg(long)]
    writer_create_only: bool,
}

#[derive(Debug, Args)]
struct PutArgs {
    /// Key to store under
    key: String,
    /// File to store, or - for stdin
    file: PathBuf,
    /// Lock the version until this time (RFC 3339, e.g. 2030-01-31T00:00:00Z)
    #[arg(long, value_parser = parse::time, value_name = "TIME", group = "retention")]
    retain_until: Option<Timestamp>,
    /// Lock the version for this long from now, e.g. 30d
    #[arg(long, value_parser = parse::duration, value_name = "DURATION", group = "retention")]
    retain: Option<Duration>,
    /// Mode of the lock [default: compliance]
    #[arg(long, value_name = "MODE", requires = "retention")]
    mode: Option<RetentionMode>,
    /// Place a legal hold on the version
    #[arg(long)]
    legal_hold: bool,
    /// Refuse (exit 1) if KEY exists, instead of adding a version (S3: `If-None-Match: *`)
    #[arg(long)]
    create_only: bool,
}

#[derive(Debug, Args)]
struct GetArgs {
    /// Key to read
    key: String,
    /// Version to read [default: the latest]
    #[arg(long, value_name = "V")]
    version: Option<String>,
    /// Write the data to FILE instead of stdout
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct RmArgs {
    /// Key to delete
    key: String,
    /// Remove this version permanently (pruner; refused while it is locked) instead of
    /// adding a delete marker (which only the admin may add; `--role` defaults to admin
    /// without `--version`)
    #[arg(long, value_name = "V")]
    version: Option<String>,
    /// Remove a version under an active governance retention (needs the bypass permission)
    #[arg(long, requires = "version")]
    bypass_governance: bool,
}

#[derive(Debug, Args)]
struct VersionsArgs {
    /// Only keys starting with PREFIX
    #[arg(default_value = "")]
    prefix: String,
    /// Versions fetched per store request (memory use is one page)
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u16).range(1..))]
    page_size: u16,
}

#[derive(Debug, Args)]
struct RetentionArgs {
    /// Key
    key: String,
    /// Version whose retention to set
    #[arg(long, value_name = "V")]
    version: String,
    /// New retain-until time (RFC 3339)
    #[arg(long, value_parser = parse::time, value_name = "TIME")]
    until: Timestamp,
    /// Mode [default: the version's current mode, or compliance]
    #[arg(long, value_name = "MODE")]
    mode: Option<RetentionMode>,
    /// Shorten or remove an active governance retention (needs the bypass permission)
    #[arg(long)]
    bypass_governance: bool,
}

#[derive(Debug, Args)]
struct LegalHoldArgs {
    /// Key
    key: String,
    /// Version
    #[arg(long, value_name = "V")]
    version: String,
    /// New state
    state: HoldState,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum HoldState {
    On,
    Off,
}

#[derive(Debug, Args)]
struct ConfigArgs {
    /// Set the default retention applied to puts that name none (admin), e.g. 30d
    #[arg(long, value_parser = parse::duration, value_name = "DURATION", conflicts_with = "no_default_retention")]
    default_retention: Option<Duration>,
    /// Mode of the default retention [default: compliance]
    #[arg(long, value_name = "MODE", requires = "default_retention")]
    mode: Option<RetentionMode>,
    /// Remove the default retention (admin); existing locks are unchanged
    #[arg(long)]
    no_default_retention: bool,
}

#[derive(Debug, Args)]
struct AuditLogArgs {
    /// Check the whole hash chain and the entries' time order; exit 6 naming the problems if
    /// the chain is broken, 8 (security) if entries are dated before earlier ones (a moved clock)
    #[arg(long)]
    verify: bool,
    /// Entries fetched per store request (memory use is one page)
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u16).range(1..))]
    page_size: u16,
}

/// Runs a `coffer vault` command.
pub fn run(global: &Global, args: VaultArgs) -> Result<()> {
    let mut out = Output::new(global.json);
    match args.command {
        VaultCommand::Init(a) => init(global, &a, &mut out),
        VaultCommand::Put(a) => put(global, &a, &mut out),
        VaultCommand::Get(a) => get(global, &a, &mut out),
        VaultCommand::Rm(a) => rm(global, &a, &mut out),
        VaultCommand::Versions(a) => versions(global, &a, &mut out),
        VaultCommand::Retention(a) => retention(global, &a, &mut out),
        VaultCommand::LegalHold(a) => legal_hold(global, &a, &mut out),
        VaultCommand::Config(a) => config(global, &a, &mut out),
        VaultCommand::AuditLog(a) => audit_log(global, &a, &mut out),
    }?;
    out.finish()
}

/// The store a command acts on: a local vault as a logged-in principal, or an S3 bucket.
type Session = StoreHandle;

/// Opens the vault and logs in; everyday commands act as the writer by default. A command
/// that stores data (`put`) creates the default vault on first use.
fn session(global: &Global, intent: Intent, default_role: Role) -> Result<Session> {
    let create = match intent {
        Intent::Store => CreateVault::Default,
        Intent::Use => CreateVault::Never,
    };
    let handle = open::store(global, Family::Vault, default_role, false, create)?.handle;
    if let StoreHandle::Local(h) = &handle {
        warn_if_clock_behind(h.vault());
    }
    Ok(handle)
}

/// One warning line on stderr when the clock is behind the newest time the vault has
/// recorded (`docs/local-vault.md`, "Time"): the library only reports it. A vault whose
/// clock record cannot be read says nothing here; the command's own request will fail.
fn warn_if_clock_behind(vault: &LocalVault) {
    if let Ok(ClockStatus { now, high_water: Some(mark), behind: Some(by) }) = vault.clock_status() {
        eprintln!(
            "coffer: warning: the clock ({}) is behind the newest time this vault has recorded ({}) by {}: a clock \
             was moved; locks may have been judged on a wrong time",
            output::time(now),
            output::time(mark),
            coffer_store::vault::approx_duration(by)
        );
    }
}

/// One time finding as a line: `security: clock entry N (T) is dated before entry M (T'): …`.
fn time_finding_line(f: &TimeFinding) -> String {
    format!(
        "security: clock entry {} ({}) is dated before entry {} ({}): the clock was moved",
        f.seq,
        output::time(f.time),
        f.newest_seq,
        output::time(f.newest_before)
    )
}

/// What a command will do, which decides whether a missing default vault is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Intent {
    /// Reads or changes what is there: a missing vault is an error.
    Use,
    /// Stores data: a missing *default* vault is created first.
    Store,
}

fn now(handle: &Session) -> Timestamp {
    handle.now()
}

fn init(global: &Global, a: &InitArgs, out: &mut Output) -> Result<()> {
    let location = match &a.dir {
        Some(d) => Some(StoreLocation::from_path(d)?),
        None => open::location(global, Family::Vault)?,
    };
    let dir = match location {
        Some(StoreLocation::S3(location)) => {
            let default_retention = a
                .default_retention
                .map(|period| DefaultRetention { mode: a.mode.unwrap_or(RetentionMode::Compliance), period });
            if a.writer_create_only {
                anyhow::bail!(
                    "--writer-create-only is a local vault's setting; on S3 attach the bucket policy of `coffer iam policies`, which requires If-None-Match"
                );
            }
            return crate::s3::init_bucket(global, location, default_retention, out);
        }
        Some(StoreLocation::Local(dir)) => dir,
        None => coffer_store::open::default_vault_dir()?,
    };
    let dir = std::path::absolute(&dir).with_context(|| format!("cannot resolve {}", dir.display()))?;
    let default_retention = a
        .default_retention
        .map(|period| DefaultRetention { mode: a.mode.unwrap_or(RetentionMode::Compliance), period });
    LocalVault::init(
        &dir,
        &VaultOptions { default_retention, writer_create_only: a.writer_create_only, ..VaultOptions::default() },
    )?;
    let creds = open::credentials_files(&dir);
    if out.json() {
        return out.doc(&views::VaultInit {
            vault: &dir,
            default_retention: default_retention.map(Into::into),
            credentials: creds.iter().map(|(r, p)| (r.as_str(), p.as_path())).collect(),
        });
    }
    out.line(format_args!("created vault {}", dir.display()))?;
    out.line(format_args!("default retention: {}", output::default_retention_text(default_retention)))?;
    out.line("credentials, one access key per role (mode 0600; give each user only its role's file):")?;
    for (role, path) in &creds {
        out.line(format_args!("  {:<8} {}", role.as_str(), path.display()))?;
    }
    Ok(())
}

fn put(global: &Global, a: &PutArgs, out: &mut Output) -> Result<()> {
    let data = if a.file.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin().lock().read_to_end(&mut buf).context("cannot read stdin")?;
        buf
    } else {
        std::fs::read(&a.file).with_context(|| format!("cannot read {}", a.file.display()))?
    };
    let handle = session(global, Intent::Store, Role::Writer)?;
    let mode = a.mode.unwrap_or(RetentionMode::Compliance);
    let retention = match (a.retain_until, a.retain) {
        (Some(until), _) => Some(Retention { mode, until }),
        (None, Some(period)) => {
            let until = jiff::SignedDuration::try_from(period)
                .ok()
                .and_then(|d| now(&handle).checked_add(d).ok())
                .ok_or_else(|| anyhow!("--retain {} reaches past the largest time", parse::format_period(period)))?;
            Some(Retention { mode, until })
        }
        (None, None) => None,
    };
    let v =
        handle.put(&a.key, &data, &PutOptions { retention, legal_hold: a.legal_hold, create_only: a.create_only })?;
    if out.json() {
        return out.doc(&views::Put { key: &v.key, version: &v.version.0 });
    }
    out.line(&v.version)
}

fn get(global: &Global, a: &GetArgs, out: &mut Output) -> Result<()> {
    let handle = session(global, Intent::Use, Role::Writer)?;
    let version = a.version.as_deref().map(VersionId::from);
    let obj = handle.get(&a.key, version.as_ref())?;
    if let Some(path) = &a.output {
        std::fs::write(path, &obj.data).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if out.json() {
        let m = &obj.meta;
        return out.doc(&views::Get {
            key: &m.key,
            version: &m.version.0,
            created: m.created,
            size: m.size,
            checksum: &m.checksum,
            output: a.output.as_deref(),
            data_base64: a.output.is_none().then(|| base64::engine::general_purpose::STANDARD.encode(&obj.data)),
        });
    }
    if a.output.is_none() {
        out.bytes(&obj.data)?;
    }
    Ok(())
}

fn rm(global: &Global, a: &RmArgs, out: &mut Output) -> Result<()> {
    // Only the admin may add a delete marker (a writer never hides anything).
    let default_role = if a.version.is_none() { Role::Admin } else { Role::Writer };
    let handle = session(global, Intent::Use, default_role)?;
    use views::Rm;
    match &a.version {
        None => {
            let marker = handle.delete(&a.key)?;
            if out.json() {
                return out.doc(&Rm { key: &a.key, version: &marker.version.0, delete_marker: true, removed: false });
            }
            out.line(format_args!("added delete marker {} to {} (nothing removed)", marker.version, a.key))
        }
        Some(v) => {
            handle.delete_version(&a.key, &VersionId::from(v.as_str()), a.bypass_governance)?;
            if out.json() {
                return out.doc(&Rm { key: &a.key, version: v, delete_marker: false, removed: true });
            }
            out.line(format_args!("removed {} version {v}", a.key))
        }
    }
}

fn versions(global: &Global, a: &VersionsArgs, out: &mut Output) -> Result<()> {
    // Minimum widths fit a version id, a time to the second, and `compliance`.
    const COLUMNS: [(&str, Align, usize); 8] = [
        ("KEY", Align::Left, 0),
        ("VERSION", Align::Left, 24),
        ("CREATED", Align::Left, 20),
        ("SIZE", Align::Right, 8),
        ("MODE", Align::Left, 10),
        ("RETAIN-UNTIL", Align::Left, 20),
        ("HOLD", Align::Left, 4),
        ("FLAGS", Align::Left, 0),
    ];
    let handle = session(global, Intent::Use, Role::Writer)?;
    let now = now(&handle);
    if out.json() {
        out.begin_list(&[("prefix", &a.prefix)], "versions")?;
    }
    let mut token: Option<String> = None;
    let mut first_page = true;
    loop {
        let page = handle.list_versions(&a.prefix, token.as_deref(), usize::from(a.page_size))?;
        if out.json() {
            for v in &page.items {
                out.list_item(&VersionView::new(v, now))?;
            }
        } else {
            let rows: Vec<Vec<String>> = page.items.iter().map(|v| version_row(v, now)).collect();
            if !rows.is_empty() || first_page {
                out.table(&COLUMNS, &rows, first_page)?;
            }
        }
        first_page = false;
        match page.next {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    if out.json() {
        out.end_list()?;
    }
    Ok(())
}

fn version_row(v: &coffer_store::ObjectVersion, now: Timestamp) -> Vec<String> {
    let mut flags = Vec::new();
    if v.is_latest {
        flags.push("latest");
    }
    if v.delete_marker {
        flags.push("delete-marker");
    }
    if v.retention.is_some_and(|r| !r.active_at(now)) {
        flags.push("expired");
    }
    let dash = || "-".to_owned();
    vec![
        output::key_cell(&v.key),
        v.version.0.clone(),
        output::time(v.created),
        if v.delete_marker { dash() } else { v.size.to_string() },
        v.retention.map_or_else(dash, |r| r.mode.to_string()),
        v.retention.map_or_else(dash, |r| output::time(r.until)),
        if v.legal_hold { "on".to_owned() } else { dash() },
        if flags.is_empty() { dash() } else { flags.join(",") },
    ]
}

fn retention(global: &Global, a: &RetentionArgs, out: &mut Output) -> Result<()> {
    let handle = session(global, Intent::Use, Role::Writer)?;
    let version = VersionId::from(a.version.as_str());
    let mode = match a.mode {
        Some(m) => m,
        None => handle.head(&a.key, Some(&version))?.retention.map_or(RetentionMode::Compliance, |r| r.mode),
    };
    let r = Retention { mode, until: a.until };
    handle.put_retention(&a.key, &version, Some(r), a.bypass_governance)?;
    // Read back: the store keeps retain-until dates to the second, rounded up.
    let stored = handle.head(&a.key, Some(&version))?.retention.unwrap_or(r);
    if out.json() {
        return out.doc(&views::RetentionSet {
            key: &a.key,
            version: &a.version,
            retention: RetentionView::new(stored, now(&handle)),
        });
    }
    out.line(format_args!("{} version {} is retained ({}) until {}", a.key, a.version, stored.mode, stored.until))
}

fn legal_hold(global: &Global, a: &LegalHoldArgs, out: &mut Output) -> Result<()> {
    let handle = session(global, Intent::Use, Role::Writer)?;
    let on = matches!(a.state, HoldState::On);
    handle.put_legal_hold(&a.key, &VersionId::from(a.version.as_str()), on)?;
    if out.json() {
        return out.doc(&views::LegalHold { key: &a.key, version: &a.version, legal_hold: on });
    }
    out.line(format_args!("{} version {}: legal hold {}", a.key, a.version, if on { "on" } else { "off" }))
}

fn config(global: &Global, a: &ConfigArgs, out: &mut Output) -> Result<()> {
    let handle = session(global, Intent::Use, Role::Writer)?;
    if a.default_retention.is_some() || a.no_default_retention {
        let default_retention = a
            .default_retention
            .map(|period| DefaultRetention { mode: a.mode.unwrap_or(RetentionMode::Compliance), period });
        handle.put_lock_config(&LockConfig { enabled: true, default_retention })?;
    }
    let lock = handle.lock_config()?;
    let versioning = handle.versioning()?;
    if out.json() {
        return out.doc(&views::VaultConfig {
            vault: &handle.location(),
            object_lock: views::ObjectLock {
                enabled: lock.enabled,
                default_retention: lock.default_retention.map(Into::into),
            },
            versioning,
        });
    }
    out.line(format_args!("vault: {}", handle.location()))?;
    out.line(format_args!("object lock: {}", if lock.enabled { "enabled" } else { "disabled" }))?;
    out.line(format_args!("default retention: {}", output::default_retention_text(lock.default_retention)))?;
    out.line(format_args!(
        "versioning: {}",
        match versioning {
            coffer_store::Versioning::Enabled => "enabled",
            coffer_store::Versioning::Suspended => "suspended",
        }
    ))
}

fn audit_log(global: &Global, a: &AuditLogArgs, out: &mut Output) -> Result<()> {
    const COLUMNS: [(&str, Align, usize); 9] = [
        ("SEQ", Align::Right, 6),
        ("TIME", Align::Left, 20),
        ("PRINCIPAL", Align::Left, 0),
        ("ROLE", Align::Left, 7),
        ("ACTION", Align::Left, 17),
        ("OUTCOME", Align::Left, 7),
        ("KEY", Align::Left, 0),
        ("VERSION", Align::Left, 24),
        ("REASON", Align::Left, 0),
    ];
    // The writer may never read the log, so this command defaults to the auditor.
    let handle = match session(global, Intent::Use, Role::Auditor)? {
        StoreHandle::Local(h) => h,
        StoreHandle::S3(s) => {
            return Err(UsageError(format!(
                "{}: S3 keeps no audit log in the bucket; use AWS CloudTrail data events for S3 (or the server's access \
                 log), see docs/s3-compatibility.md",
                s.location()
            ))
            .into());
        }
    };
    if a.verify {
        let check = handle.verify_audit_log()?;
        let intact = check.problems.is_empty();
        if out.json() {
            out.doc(&views::AuditVerify::from(&check))?;
        } else {
            if intact {
                out.line(format_args!("audit log intact: {} entries, head {}", check.entries, check.head))?;
            }
            for f in &check.time_findings {
                out.line(time_finding_line(f))?;
            }
        }
        let root = handle.vault().root().display();
        // Time findings are signs of tampering (exit 8) even on an intact chain; a broken
        // chain beside them is said in the same line.
        if let Some(first) = check.time_findings.first() {
            return Err(SecurityError(format!(
                "audit log of {root}: {} entr{} dated before an earlier one (a clock was moved){}; first: {}",
                check.time_findings.len(),
                if check.time_findings.len() == 1 { "y" } else { "ies" },
                if intact {
                    String::new()
                } else {
                    format!(", and the chain is broken: {}", check.problems.join("; "))
                },
                time_finding_line(first).trim_start_matches("security: clock ")
            ))
            .into());
        }
        if !intact {
            return Err(IntegrityError(format!("audit log of {root} is broken: {}", check.problems.join("; "))).into());
        }
        return Ok(());
    }
    if out.json() {
        out.begin_list(&[], "entries")?;
    }
    let mut after = 0;
    let mut first_page = true;
    loop {
        let entries = handle.audit_log(after, usize::from(a.page_size))?;
        if out.json() {
            for e in &entries {
                out.list_item(&views::AuditEntryView::from(e))?;
            }
        } else if !entries.is_empty() || first_page {
            let dash = || "-".to_owned();
            let rows: Vec<Vec<String>> = entries
                .iter()
                .map(|e| {
                    vec![
                        e.seq.to_string(),
                        output::time(e.time),
                        e.principal.clone(),
                        e.role.clone(),
                        e.action.clone(),
                        e.outcome.clone(),
                        e.key.as_deref().map_or_else(dash, output::key_cell),
                        e.version.clone().unwrap_or_else(dash),
                        if e.reason.is_empty() { dash() } else { e.reason.replace(['\r', '\n'], " ") },
                    ]
                })
                .collect();
            out.table(&COLUMNS, &rows, first_page)?;
        }
        first_page = false;
        match entries.last() {
            Some(last) if entries.len() == usize::from(a.page_size) => after = last.seq,
            _ => break,
        }
    }
    if out.json() {
        out.end_list()?;
    }
    Ok(())
}
