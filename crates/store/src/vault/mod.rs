//! `LocalVault`: the `ObjectStore` contract on a local directory — Coffer's embedded
//! default, and later the engine behind the vault server.
//!
//! Layout (format version 1; `docs/local-vault.md` is the reference):
//!
//! ```text
//! DIR/coffer-vault.toml      marker: format name and version (written last at init)
//! DIR/meta.sqlite            metadata, principals, audit log (SQLite, WAL mode)
//! DIR/data/00 … data/ff/     object data, one immutable file per version
//! DIR/tmp/                   staging for durable writes
//! DIR/credentials/ROLE.toml  access key per role (0600, directory 0700)
//! ```
//!
//! Invariants guarded here:
//! - **Nothing is overwritten.** A put writes a fresh file under a random name (temp file,
//!   fsync, rename, fsync directory) and only then commits its row; data files are never
//!   modified, and only `delete_version` removes one, after its row is gone.
//! - **Locks hold.** Every destructive or weakening request is checked against the
//!   version's retention and legal hold, with time read from the vault's [`Clock`], inside
//!   the same write transaction as its effect.
//! - **Every read is verified** against the size and BLAKE3 checksum recorded at put.
//! - **Every mutating request is audited**, allowed or denied (see the `audit` module).
//!
//! Several processes may share a vault: SQLite serialises writers across processes and
//! each version's file has a unique random name. Within a process, one connection behind a
//! mutex serialises metadata work; data-file I/O happens outside that lock.

mod audit;
mod db;
mod files;

pub use audit::{AuditEntry, AuditVerification, CLOCK_TOLERANCE, MAX_TIME_FINDINGS, TimeFinding, approx_duration};

use crate::clock::Clock;
use crate::error::{Result, StoreError};
use crate::model::{
    DefaultRetention, LockConfig, ObjectVersion, Page, Protection, PutOptions, Retention, VersionId, Versioning,
    validate_key,
};
use crate::role::{Action, Credentials, Principal, Role, Secret};
use crate::store::{Object, ObjectStore, RangeRead};
use db::{Row, VERSION_COLUMNS, db_err, row_to_version, until_seconds};
use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// Name of the marker file that makes a directory a vault.
pub const MARKER_FILE: &str = "coffer-vault.toml";
/// The on-disk format version this build writes and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;
const FORMAT_NAME: &str = "coffer-vault";
/// The most items one listing page holds, whatever `limit` asks (S3's `max-keys` cap). It
/// bounds memory per page and keeps `limit + 1` from overflowing; callers follow `next`.
pub const MAX_PAGE_LIMIT: usize = 1000;
const DB_FILE: &str = "meta.sqlite";
/// Puts of at least this many bytes hash on a second thread while the data file is written.
const HASH_IN_PARALLEL_FROM: usize = 1 << 20;

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Marker {
    format: String,
    version: u32,
    created: Timestamp,
}

/// Options for creating or opening a vault.
#[derive(Clone, Debug, Default)]
pub struct VaultOptions {
    /// Default retention for puts without one (set at init; changeable by the admin).
    pub default_retention: Option<DefaultRetention>,
    /// The clock (the system clock unless a test build supplies another).
    pub clock: Clock,
    /// Every put by the writer is create-only (`Exists` over an existing object), whatever
    /// it asks for, except on names [`crate::model::may_get_new_versions`] allows (growing
    /// `.partial` WAL segments): the vault's counterpart of the S3 bucket policy that
    /// requires `If-None-Match`. Set at init, kept in the vault, never turned off.
    pub writer_create_only: bool,
}

/// A vault on a local directory. Cheap to clone; clones share one connection.
#[derive(Clone, Debug)]
pub struct LocalVault {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    conn: Mutex<Connection>,
    clock: Clock,
}

impl LocalVault {
    /// Creates a vault in `dir` (which must not exist or be empty), with Object Lock and
    /// versioning enabled and one access key per role written to `dir/credentials/`.
    ///
    /// # Errors
    /// `InvalidRequest` if `dir` is already a vault or a non-empty directory; `Io`.
    pub fn init(dir: impl AsRef<Path>, opts: &VaultOptions) -> Result<Self> {
        let root = dir.as_ref().to_path_buf();
        if root.join(MARKER_FILE).exists() {
            return Err(StoreError::invalid(format!("{} is already a coffer vault", root.display())));
        }
        if let Ok(mut entries) = fs::read_dir(&root) {
            if entries.next().is_some() {
                return Err(StoreError::invalid(format!(
                    "{} is not empty; a vault needs a new or empty directory",
                    root.display()
                )));
            }
        }
        if let Some(d) = opts.default_retention {
            validate_default(&d)?;
        }
        let mkdir =
            |p: &Path| fs::create_dir_all(p).map_err(|e| StoreError::io(format!("cannot create {}", p.display()), e));
        mkdir(&root)?;
        mkdir(&root.join("tmp"))?;
        for i in 0..=255u8 {
            mkdir(&root.join("data").join(format!("{i:02x}")))?;
        }
        let cred_dir = root.join("credentials");
        mkdir(&cred_dir)?;
        set_mode(&cred_dir, 0o700)?;

        let conn = db::open(&root.join(DB_FILE), true)?;
        let now = opts.clock.now();
        {
            let tx = conn.unchecked_transaction().map_err(db_err("cannot initialise vault database"))?;
            if let Some(d) = opts.default_retention {
                put_default_retention(&tx, Some(d))?;
            }
            if opts.writer_create_only {
                tx.execute("INSERT INTO meta (name, value) VALUES ('writer-create-only', 'true')", [])
                    .map_err(db_err("cannot initialise vault database"))?;
            }
            for role in Role::ALL {
                let creds = Credentials {
                    access_key: format!(
                        "CK{}{}",
                        &role.as_str()[..2].to_ascii_uppercase(),
                        files::random_hex(8).to_ascii_uppercase()
                    ),
                    secret_key: Secret::new(files::random_hex(24)),
                };
                tx.execute(
                    "INSERT INTO principals (access_key, secret_hash, name, role) VALUES (?1, ?2, ?3, ?4)",
                    params![creds.access_key, secret_hash(&creds.secret_key), role.as_str(), role.as_str()],
                )
                .map_err(db_err("cannot create principals"))?;
                let text = toml::to_string(&creds).expect("credentials serialise");
                files::write_durable(&root.join("tmp"), &cred_dir, &format!("{role}.toml"), text.as_bytes(), 0o600)?;
            }
            audit::append(
                &tx,
                audit::NewEntry {
                    time: now,
                    principal: "init",
                    role: "-",
                    action: "init",
                    key: None,
                    version: None,
                    outcome: "allowed",
                    reason: String::new(),
                },
            )?;
            tx.commit().map_err(db_err("cannot initialise vault database"))?;
        }
        files::sync_dir(&root.join("data"))?;
        // The marker goes last: a crash during init leaves a directory that is not a vault.
        let marker = Marker { format: FORMAT_NAME.into(), version: FORMAT_VERSION, created: now };
        let text = toml::to_string(&marker).expect("marker serialises");
        files::write_durable(&root.join("tmp"), &root, MARKER_FILE, text.as_bytes(), 0o644)?;
        Ok(Self { inner: Arc::new(Inner { root, conn: Mutex::new(conn), clock: opts.clock.clone() }) })
    }

    /// Opens an existing vault with the system clock (or, in test builds only, the clock
    /// `COFFER_TEST_CLOCK_OFFSET` shifts).
    ///
    /// # Errors
    /// `NotAVault`, `UnsupportedFormat`, `Io`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        Self::open_with_clock(dir, Clock::from_env())
    }

    /// Opens an existing vault reading time from `clock`.
    ///
    /// # Errors
    /// `NotAVault`, `UnsupportedFormat`, `Io`.
    pub fn open_with_clock(dir: impl AsRef<Path>, clock: Clock) -> Result<Self> {
        let root = dir.as_ref().to_path_buf();
        let marker_path = root.join(MARKER_FILE);
        let text = match fs::read_to_string(&marker_path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(StoreError::NotAVault { path: root }),
            Err(e) => return Err(StoreError::io(format!("cannot read {}", marker_path.display()), e)),
        };
        let marker: Marker = toml::from_str(&text)
            .map_err(|e| StoreError::invalid(format!("{} is malformed: {}", marker_path.display(), e.message())))?;
        if marker.format != FORMAT_NAME {
            return Err(StoreError::NotAVault { path: root });
        }
        if marker.version > FORMAT_VERSION {
            return Err(StoreError::UnsupportedFormat { path: root, found: marker.version, supported: FORMAT_VERSION });
        }
        let conn = db::open(&root.join(DB_FILE), false)?;
        let schema: u32 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(db_err(format!("cannot read {}", root.join(DB_FILE).display())))?;
        if schema > db::SCHEMA_VERSION {
            return Err(StoreError::UnsupportedFormat { path: root, found: schema, supported: db::SCHEMA_VERSION });
        }
        files::remove_stale_temps(&root.join("tmp"));
        Ok(Self { inner: Arc::new(Inner { root, conn: Mutex::new(conn), clock }) })
    }

    /// The vault's directory.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The vault's clock.
    #[must_use]
    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// The vault's clock against the highest time it has recorded (`docs/local-vault.md`,
    /// "Time"): a clock behind it was moved back, or an earlier request ran on a clock
    /// moved forward. `behind` is set when the clock is behind the mark by more than
    /// [`CLOCK_TOLERANCE`]. Reads only; the caller decides how to say it.
    ///
    /// # Errors
    /// `Io`.
    pub fn clock_status(&self) -> Result<ClockStatus> {
        let conn = self.conn();
        let now = self.inner.clock.now();
        let high_water = audit::high_water(&conn)?;
        let behind = high_water.filter(|&mark| audit::is_behind(now, mark)).map(|mark| mark.duration_since(now));
        Ok(ClockStatus { now, high_water, behind })
    }

    /// Reads the access key created at init for `role` from `DIR/credentials/ROLE.toml`.
    ///
    /// # Errors
    /// `Io` if the file cannot be read (e.g. this user may not read it), `InvalidRequest` if malformed.
    pub fn read_credentials(&self, role: Role) -> Result<Credentials> {
        read_credentials_file(&self.inner.root.join("credentials").join(format!("{role}.toml")))
    }

    /// Authenticates `creds` and returns a handle acting as their principal. A failed
    /// attempt is recorded in the audit log.
    ///
    /// # Errors
    /// `Unauthenticated` for an unknown key or wrong secret; `Io`.
    pub fn login(&self, creds: &Credentials) -> Result<VaultHandle> {
        let conn = self.conn();
        let found: Option<(String, String, String)> = conn
            .query_row(
                "SELECT secret_hash, name, role FROM principals WHERE access_key = ?1",
                [&creds.access_key],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(db_err("cannot read principals"))?;
        let presented = secret_hash(&creds.secret_key);
        match found {
            Some((hash, name, role)) if constant_time_eq(hash.as_bytes(), presented.as_bytes()) => {
                let role = role.parse().map_err(|e: String| StoreError::io("corrupt principals table", e))?;
                drop(conn);
                Ok(VaultHandle { vault: self.clone(), principal: Principal { name, role } })
            }
            _ => {
                let err = StoreError::Unauthenticated { access_key: creds.access_key.clone() };
                let _ = self.append_outside_tx(&creds.access_key, "-", "authenticate", None, None, &err, &conn);
                Err(err)
            }
        }
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a half-applied transaction behind
        // (rusqlite rolls back on drop), so a poisoned mutex is still usable.
        self.inner.conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn data_path(&self, file: &str) -> PathBuf {
        self.inner.root.join("data").join(&file[..2]).join(file)
    }

    #[allow(clippy::too_many_arguments)]
    fn append_outside_tx(
        &self,
        principal: &str,
        role: &str,
        action: &str,
        key: Option<&str>,
        version: Option<&str>,
        err: &StoreError,
        conn: &Connection,
    ) -> Result<()> {
        let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)
            .map_err(db_err("cannot write the audit log"))?;
        let outcome = match err.kind() {
            crate::ErrorKind::Io | crate::ErrorKind::Corrupt => "failed",
            _ => "denied",
        };
        audit::append(
            &tx,
            audit::NewEntry {
                time: self.inner.clock.now(),
                principal,
                role,
                action,
                key,
                version,
                outcome,
                reason: crate::error::display_chain(err),
            },
        )?;
        tx.commit().map_err(db_err("cannot write the audit log"))
    }
}

/// The vault's clock against the highest time it has seen ([`LocalVault::clock_status`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ClockStatus {
    /// The clock's time now.
    pub now: Timestamp,
    /// The highest time any request was applied at (none: a vault from before it was kept).
    pub high_water: Option<Timestamp>,
    /// How far `now` is behind `high_water` (the whole distance), when it is behind by more
    /// than [`CLOCK_TOLERANCE`]; none when it is not.
    pub behind: Option<jiff::SignedDuration>,
}

/// A vault seen through one authenticated principal; implements [`ObjectStore`].
#[derive(Clone, Debug)]
pub struct VaultHandle {
    vault: LocalVault,
    principal: Principal,
}

impl VaultHandle {
    /// The vault behind this handle.
    #[must_use]
    pub fn vault(&self) -> &LocalVault {
        &self.vault
    }

    /// Audit log entries after `after` (0 for the start), oldest first, at most `limit`.
    ///
    /// # Errors
    /// `Forbidden` unless the role may read the audit log; `Io`.
    pub fn audit_log(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>> {
        self.principal.authorize(Action::ReadAuditLog)?;
        audit::read(&self.vault.conn(), after, limit)
    }

    /// The allowed requests that created or named `version` of `key` (who put it, who added
    /// the delete marker), oldest first: what `verify` names as the principal of a finding.
    ///
    /// # Errors
    /// `Forbidden` unless the role may read the audit log; `Io`.
    pub fn audit_entries_for(&self, key: &str, version: &VersionId) -> Result<Vec<AuditEntry>> {
        self.principal.authorize(Action::ReadAuditLog)?;
        audit::for_version(&self.vault.conn(), key, &version.0)
    }

    /// Checks the whole audit chain.
    ///
    /// # Errors
    /// `Forbidden` unless the role may read the audit log; `Io`.
    pub fn verify_audit_log(&self) -> Result<AuditVerification> {
        self.principal.authorize(Action::ReadAuditLog)?;
        audit::verify(&self.vault.conn())
    }

    /// Runs a mutating request: checks the role, runs `f` in an immediate write
    /// transaction with the current time, and audits the outcome — in the same transaction
    /// when allowed, in its own when refused.
    fn mutate<T>(
        &self,
        action: Action,
        key: Option<&str>,
        version: Option<&VersionId>,
        f: impl FnOnce(&rusqlite::Transaction<'_>, Timestamp) -> Result<(T, Option<VersionId>)>,
    ) -> Result<T> {
        let conn = self.vault.conn();
        let result = self.principal.authorize(action).and_then(|()| {
            let tx = rusqlite::Transaction::new_unchecked(&conn, TransactionBehavior::Immediate)
                .map_err(db_err("cannot start a vault transaction"))?;
            // Time is read once the write lock is held, so a request that queued behind
            // another process decides locks with the time it is applied at.
            let now = self.vault.inner.clock.now();
            let (value, new_version) = f(&tx, now)?;
            audit::append(
                &tx,
                audit::NewEntry {
                    time: now,
                    principal: &self.principal.name,
                    role: self.principal.role.as_str(),
                    action: action.as_str(),
                    key,
                    version: new_version.as_ref().or(version).map(|v| v.0.as_str()),
                    outcome: "allowed",
                    reason: String::new(),
                },
            )?;
            tx.commit().map_err(db_err("cannot commit a vault transaction"))?;
            Ok(value)
        });
        if let Err(err) = &result {
            // Best effort: the refusal itself is what the caller must see.
            let _ = self.vault.append_outside_tx(
                &self.principal.name,
                self.principal.role.as_str(),
                action.as_str(),
                key,
                version.map(|v| v.0.as_str()),
                err,
                &conn,
            );
        }
        result
    }

    fn authorize_read(&self, action: Action) -> Result<()> {
        self.principal.authorize(action)
    }

    /// The data file of the version `get` reads, opened (after the role's check).
    fn open_data(&self, key: &str, version: Option<&VersionId>) -> Result<(ObjectVersion, fs::File, PathBuf)> {
        self.authorize_read(Action::Get)?;
        let row = self.find(&self.vault.conn(), key, version)?;
        if row.meta.delete_marker {
            return Err(StoreError::invalid(format!(
                "{key} version {} is a delete marker and has no data",
                row.meta.version
            )));
        }
        let corrupt =
            |detail: String| StoreError::Corrupt { key: key.to_owned(), version: row.meta.version.clone(), detail };
        let file = row.file.as_deref().ok_or_else(|| corrupt("no data file recorded".into()))?;
        let path = self.vault.data_path(file);
        match fs::File::open(&path) {
            Ok(f) => Ok((row.meta, f, path)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Removed by a concurrent delete_version, or lost.
                match self.find(&self.vault.conn(), key, Some(&row.meta.version)) {
                    Err(nf @ StoreError::NotFound { .. }) => Err(nf),
                    _ => Err(corrupt(format!("data file {} is missing", path.display()))),
                }
            }
            Err(e) => Err(StoreError::io(format!("cannot read {}", path.display()), e)),
        }
    }

    fn find(&self, conn: &Connection, key: &str, version: Option<&VersionId>) -> Result<Row> {
        let not_found = || StoreError::NotFound { key: key.to_owned(), version: version.cloned() };
        let row = match version {
            Some(v) => conn
                .prepare_cached(&format!("SELECT {VERSION_COLUMNS} FROM versions v WHERE v.key = ?1 AND v.vid = ?2"))
                .and_then(|mut s| s.query_row(params![key.as_bytes(), v.0], row_to_version).optional()),
            None => conn
                .prepare_cached(&format!(
                    "SELECT {VERSION_COLUMNS} FROM versions v WHERE v.key = ?1 ORDER BY v.vid DESC LIMIT 1"
                ))
                .and_then(|mut s| s.query_row(params![key.as_bytes()], row_to_version).optional()),
        }
        .map_err(db_err(format!("cannot read metadata of {key}")))?
        .ok_or_else(not_found)?;
        if version.is_none() && row.meta.delete_marker {
            return Err(not_found());
        }
        Ok(row)
    }
}

impl ObjectStore for VaultHandle {
    fn principal(&self) -> &Principal {
        &self.principal
    }

    fn capabilities(&self) -> crate::store::Capabilities {
        crate::store::Capabilities::LOCAL
    }

    fn put(&self, key: &str, data: &[u8], opts: &PutOptions) -> Result<ObjectVersion> {
        // Refuse before writing any data; `mutate` checks (and audits) again.
        let pre = self
            .principal
            .authorize(Action::Put)
            .and_then(|()| if opts.legal_hold { self.principal.authorize(Action::LegalHoldOn) } else { Ok(()) });
        if let Err(e) = pre.and_then(|()| validate_key(key)) {
            let conn = self.vault.conn();
            let _ = self.vault.append_outside_tx(
                &self.principal.name,
                self.principal.role.as_str(),
                Action::Put.as_str(),
                Some(key),
                None,
                &e,
                &conn,
            );
            return Err(e);
        }
        let file = files::random_hex(16);
        let root = &self.vault.inner.root;
        let write = || files::write_durable(&root.join("tmp"), &root.join("data").join(&file[..2]), &file, data, 0o444);
        let hash = || format!("blake3:{}", blake3::hash(data).to_hex());
        // A large object is hashed on a second thread while its file is written and
        // fsynced (vault_bench: the hash is ~0.5 ms of a 4 MiB put); the row below is still
        // committed only after both finished. Small ones are not worth a thread.
        let checksum = if data.len() >= HASH_IN_PARALLEL_FROM {
            std::thread::scope(|s| {
                let hashing = s.spawn(hash);
                let written = write();
                let checksum = hashing.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
                written.map(|()| checksum)
            })?
        } else {
            let checksum = hash();
            write()?;
            checksum
        };

        let result = self.mutate(Action::Put, Some(key), None, |tx, now| {
            let retention = match opts.retention {
                Some(r) => {
                    check_future(r.until, now)?;
                    Some(Retention { mode: r.mode, until: normalize(r.until) })
                }
                None => default_retention(tx)?.map(|d| Retention {
                    mode: d.mode,
                    until: normalize(
                        now + jiff::SignedDuration::try_from(d.period).unwrap_or(jiff::SignedDuration::MAX),
                    ),
                }),
            };
            if opts.create_only
                || (self.principal.role == Role::Writer
                    && !crate::model::may_get_new_versions(key)
                    && writer_create_only(tx)?)
            {
                refuse_if_exists(tx, key)?;
            }
            let meta =
                insert_version(tx, key, now, Some((&file, data.len() as u64, &checksum)), retention, opts.legal_hold)?;
            let v = meta.version.clone();
            Ok((meta, Some(v)))
        });
        if result.is_err() {
            let _ = fs::remove_file(self.vault.data_path(&file));
        }
        result
    }

    fn get(&self, key: &str, version: Option<&VersionId>) -> Result<Object> {
        use std::io::Read as _;
        let (meta, mut file, path) = self.open_data(key, version)?;
        let corrupt =
            |detail: String| StoreError::Corrupt { key: key.to_owned(), version: meta.version.clone(), detail };
        let mut data = Vec::with_capacity(usize::try_from(meta.size).unwrap_or(0));
        file.read_to_end(&mut data).map_err(|e| StoreError::io(format!("cannot read {}", path.display()), e))?;
        if data.len() as u64 != meta.size {
            return Err(corrupt(format!(
                "size {} differs from the recorded {} ({})",
                data.len(),
                meta.size,
                path.display()
            )));
        }
        let actual = format!("blake3:{}", blake3::hash(&data).to_hex());
        if actual != meta.checksum {
            return Err(corrupt(format!("checksum mismatch ({})", path.display())));
        }
        Ok(Object { meta, data })
    }

    fn open_ranged(&self, key: &str, version: Option<&VersionId>) -> Result<Box<dyn RangeRead>> {
        let (meta, file, path) = self.open_data(key, version)?;
        let len = file.metadata().map_err(|e| StoreError::io(format!("cannot read {}", path.display()), e))?.len();
        if len != meta.size {
            return Err(StoreError::Corrupt {
                key: key.to_owned(),
                version: meta.version.clone(),
                detail: format!("size {len} differs from the recorded {} ({})", meta.size, path.display()),
            });
        }
        Ok(Box::new(files::RangeFile { meta, file, path }))
    }

    fn head(&self, key: &str, version: Option<&VersionId>) -> Result<ObjectVersion> {
        self.authorize_read(Action::Head)?;
        Ok(self.find(&self.vault.conn(), key, version)?.meta)
    }

    fn list(&self, prefix: &str, token: Option<&str>, limit: usize) -> Result<Page<ObjectVersion>> {
        self.authorize_read(Action::List)?;
        let after: Vec<u8> = match token {
            Some(t) => files::unhex(t).ok_or_else(|| StoreError::invalid(format!("malformed list token {t:?}")))?,
            None => Vec::new(),
        };
        let limit = limit.clamp(1, MAX_PAGE_LIMIT);
        let (from, to) = key_range(prefix, (!after.is_empty()).then_some(after.as_slice()));
        let conn = self.vault.conn();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {VERSION_COLUMNS} FROM live l JOIN versions v ON v.key = l.key AND v.vid = l.vid
                 WHERE l.key >= ?1 AND l.key < ?2 ORDER BY l.key LIMIT ?3"
            ))
            .map_err(db_err("cannot list keys"))?;
        let rows = stmt
            .query_map(params![from, to, limit as i64 + 1], row_to_version)
            .map_err(db_err("cannot list keys"))?
            .map(|r| r.map(|row| row.meta))
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(db_err("cannot list keys"))?;
        Ok(paginate(rows, limit, |last| files::hex(last.key.as_bytes())))
    }

    fn list_versions(&self, prefix: &str, token: Option<&str>, limit: usize) -> Result<Page<ObjectVersion>> {
        self.authorize_read(Action::ListVersions)?;
        let limit = limit.clamp(1, MAX_PAGE_LIMIT);
        let conn = self.vault.conn();
        let mut items = Vec::new();
        let mut after_key: Vec<u8> = Vec::new();
        let mut exclusive = false;
        if let Some(t) = token {
            let bad = || StoreError::invalid(format!("malformed version list token {t:?}"));
            let (k, v) = t.split_once('.').ok_or_else(bad)?;
            after_key = files::unhex(k).ok_or_else(bad)?;
            exclusive = true;
            // First the older versions of the key the previous page stopped in.
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {VERSION_COLUMNS} FROM versions v WHERE v.key = ?1 AND v.vid < ?2 ORDER BY v.vid DESC LIMIT ?3"
                ))
                .map_err(db_err("cannot list versions"))?;
            items = stmt
                .query_map(params![after_key, v, limit as i64 + 1], row_to_version)
                .map_err(db_err("cannot list versions"))?
                .map(|r| r.map(|row| row.meta))
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db_err("cannot list versions"))?;
        }
        if items.len() <= limit {
            let (from, to) = key_range(prefix, exclusive.then_some(after_key.as_slice()));
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {VERSION_COLUMNS} FROM versions v
                     WHERE v.key >= ?1 AND v.key < ?2 ORDER BY v.key, v.vid DESC LIMIT ?3"
                ))
                .map_err(db_err("cannot list versions"))?;
            let more = stmt
                .query_map(params![from, to, (limit + 1 - items.len()) as i64], row_to_version)
                .map_err(db_err("cannot list versions"))?
                .map(|r| r.map(|row| row.meta))
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db_err("cannot list versions"))?;
            items.extend(more);
        }
        Ok(paginate(items, limit, |last| format!("{}.{}", files::hex(last.key.as_bytes()), last.version)))
    }

    fn delete(&self, key: &str) -> Result<ObjectVersion> {
        self.mutate(Action::Delete, Some(key), None, |tx, now| {
            validate_key(key)?;
            let meta = insert_version(tx, key, now, None, None, false)?;
            let v = meta.version.clone();
            Ok((meta, Some(v)))
        })
    }

    fn delete_version(&self, key: &str, version: &VersionId, bypass_governance: bool) -> Result<()> {
        let file = self.mutate(Action::DeleteVersion, Some(key), Some(version), |tx, now| {
            let row = self.find(tx, key, Some(version))?;
            crate::lock::guard(&self.principal, &row.meta, true, false, bypass_governance, now)?;
            tx.execute("DELETE FROM versions WHERE key = ?1 AND vid = ?2", params![key.as_bytes(), version.0])
                .map_err(db_err(format!("cannot delete {key} version {version}")))?;
            refresh_live(tx, key)?;
            Ok((row.file, None))
        })?;
        if let Some(file) = file {
            // The row is gone, so nothing can reach the file; a crash here leaves only an
            // unreferenced file.
            let path = self.vault.data_path(&file);
            fs::remove_file(&path).map_err(|e| StoreError::io(format!("cannot remove {}", path.display()), e))?;
        }
        Ok(())
    }

    fn put_retention(
        &self,
        key: &str,
        version: &VersionId,
        retention: Option<Retention>,
        bypass_governance: bool,
    ) -> Result<()> {
        self.mutate(Action::PutRetention, Some(key), Some(version), |tx, now| {
            let row = self.find(tx, key, Some(version))?;
            if row.meta.delete_marker {
                return Err(StoreError::invalid(format!(
                    "{key} version {version} is a delete marker; it has no retention"
                )));
            }
            let new = match retention {
                Some(r) => {
                    check_future(r.until, now)?;
                    Some(Retention { mode: r.mode, until: normalize(r.until) })
                }
                None => None,
            };
            let weakening = crate::lock::weakens(row.meta.retention, new, now);
            crate::lock::guard(&self.principal, &row.meta, false, weakening, bypass_governance, now)?;
            tx.execute(
                "UPDATE versions SET mode = ?3, until_s = ?4 WHERE key = ?1 AND vid = ?2",
                params![key.as_bytes(), version.0, new.map(|r| r.mode.as_str()), new.map(|r| r.until.as_second())],
            )
            .map_err(db_err(format!("cannot set retention of {key} version {version}")))?;
            Ok(((), None))
        })
    }

    fn put_legal_hold(&self, key: &str, version: &VersionId, on: bool) -> Result<()> {
        let action = if on { Action::LegalHoldOn } else { Action::LegalHoldOff };
        self.mutate(action, Some(key), Some(version), |tx, _| {
            let row = self.find(tx, key, Some(version))?;
            if row.meta.delete_marker {
                return Err(StoreError::invalid(format!(
                    "{key} version {version} is a delete marker; it has no legal hold"
                )));
            }
            tx.execute(
                "UPDATE versions SET legal_hold = ?3 WHERE key = ?1 AND vid = ?2",
                params![key.as_bytes(), version.0, on],
            )
            .map_err(db_err(format!("cannot set legal hold of {key} version {version}")))?;
            Ok(((), None))
        })
    }

    fn lock_config(&self) -> Result<LockConfig> {
        self.authorize_read(Action::GetLockConfig)?;
        Ok(LockConfig { enabled: true, default_retention: default_retention(&self.vault.conn())? })
    }

    fn put_lock_config(&self, config: &LockConfig) -> Result<()> {
        self.mutate(Action::PutLockConfig, None, None, |tx, _| {
            if !config.enabled {
                return Err(StoreError::invalid("object lock cannot be disabled once enabled"));
            }
            if let Some(d) = &config.default_retention {
                validate_default(d)?;
            }
            put_default_retention(tx, config.default_retention)?;
            Ok(((), None))
        })
    }

    fn versioning(&self) -> Result<Versioning> {
        self.authorize_read(Action::GetVersioning)?;
        Ok(Versioning::Enabled)
    }

    fn put_versioning(&self, status: Versioning) -> Result<()> {
        self.mutate(Action::PutVersioning, None, None, |_, _| match status {
            Versioning::Enabled => Ok(((), None)),
            Versioning::Suspended => {
                Err(StoreError::invalid("versioning cannot be suspended on a store with object lock"))
            }
        })
    }

    /// The default fields (lock configuration, versioning) and `principals`: the principals
    /// table as canonical text (`principals_text`), so that a principal added or a
    /// credential replaced by editing `meta.sqlite` directly — which bypasses the audit
    /// log — shows as drift. Every role may read it, as every role may read the lock
    /// configuration: it holds access key ids and a digest, never a secret or its hash.
    fn protection(&self) -> Result<Protection> {
        let mut p = Protection::default();
        p.add_lock_config(self.lock_config());
        p.add("versioning", self.versioning().map(|v| v.to_string()));
        p.add("principals", principals_text(&self.vault.conn()));
        Ok(p)
    }
}

/// The most principals [`principals_text`] reads: a table grown past it (by editing the
/// file; the vault itself creates five) is reported unreadable, never read without bound.
const MAX_PRINCIPALS: usize = 1000;

/// The principals table as canonical text: compact JSON, sorted by access key,
/// `{"principals":[{"access-key":…,"name":…,"role":…},…],"secret-hashes-blake3":HEX}`, the
/// digest being BLAKE3 over each row's access key and secret hash (length-prefixed, in the
/// same order). Any change of a name, role, key or secret changes the text; the text never
/// holds a secret or a secret's hash.
fn principals_text(conn: &Connection) -> Result<String> {
    #[derive(Serialize)]
    struct P {
        #[serde(rename = "access-key")]
        access_key: String,
        name: String,
        role: String,
    }
    #[derive(Serialize)]
    struct Doc {
        principals: Vec<P>,
        #[serde(rename = "secret-hashes-blake3")]
        digest: String,
    }
    let mut stmt = conn
        .prepare("SELECT access_key, secret_hash, name, role FROM principals ORDER BY access_key LIMIT ?1")
        .map_err(db_err("cannot read principals"))?;
    let mut rows = stmt.query([MAX_PRINCIPALS as i64 + 1]).map_err(db_err("cannot read principals"))?;
    let mut principals = Vec::new();
    let mut digest = blake3::Hasher::new_derive_key("coffer vault principals digest v1");
    while let Some(r) = rows.next().map_err(db_err("cannot read principals"))? {
        if principals.len() == MAX_PRINCIPALS {
            return Err(StoreError::io(
                "cannot read principals",
                format!("the principals table holds more than {MAX_PRINCIPALS} rows"),
            ));
        }
        let access_key: String = r.get(0).map_err(db_err("cannot read principals"))?;
        let secret_hash: String = r.get(1).map_err(db_err("cannot read principals"))?;
        for part in [&access_key, &secret_hash] {
            digest.update(&(part.len() as u64).to_le_bytes());
            digest.update(part.as_bytes());
        }
        principals.push(P {
            access_key,
            name: r.get(2).map_err(db_err("cannot read principals"))?,
            role: r.get(3).map_err(db_err("cannot read principals"))?,
        });
    }
    let doc = Doc { principals, digest: digest.finalize().to_hex().to_string() };
    Ok(serde_json::to_string(&doc).expect("principals serialise"))
}

/// Inserts a version (`data` = file, size, checksum) or a delete marker (`None`), with an id
/// newer than every existing version of the key, and keeps `live` up to date.
/// Whether the vault makes every writer put create-only ([`VaultOptions::writer_create_only`]).
fn writer_create_only(conn: &Connection) -> Result<bool> {
    let v: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE name = 'writer-create-only'", [], |r| r.get(0))
        .optional()
        .map_err(db_err("cannot read the vault's settings"))?;
    Ok(v.as_deref() == Some("true"))
}

/// `Exists` when the key's latest version is an object (a create-only put's condition,
/// checked inside the put's write transaction, so no concurrent put can slip between).
fn refuse_if_exists(tx: &rusqlite::Transaction<'_>, key: &str) -> Result<()> {
    let latest: Option<(String, bool)> = tx
        .query_row(
            "SELECT vid, delete_marker FROM versions WHERE key = ?1 ORDER BY vid DESC LIMIT 1",
            [key.as_bytes()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(db_err(format!("cannot read versions of {key}")))?;
    match latest {
        Some((vid, false)) => Err(StoreError::Exists { key: key.to_owned(), version: Some(VersionId(vid)) }),
        _ => Ok(()),
    }
}

fn insert_version(
    tx: &rusqlite::Transaction<'_>,
    key: &str,
    now: Timestamp,
    data: Option<(&str, u64, &str)>,
    retention: Option<Retention>,
    legal_hold: bool,
) -> Result<ObjectVersion> {
    let prev: Option<String> = tx
        .query_row("SELECT max(vid) FROM versions WHERE key = ?1", [key.as_bytes()], |r| r.get(0))
        .map_err(db_err(format!("cannot read versions of {key}")))?;
    // Ids sort by creation: microseconds since the epoch, forced past the previous version
    // so that order holds even if the clock steps back; a random tail keeps ids unique.
    let prev_us = prev.as_deref().and_then(|p| p.get(..16)).and_then(|h| i64::from_str_radix(h, 16).ok());
    let us = now.as_microsecond().max(prev_us.map_or(0, |p| p + 1));
    let vid = VersionId(format!("{us:016x}{}", files::random_hex(4)));
    let created = Timestamp::from_microsecond(us).unwrap_or(now);
    let (file, size, checksum) = data.unwrap_or(("", 0, ""));
    tx.execute(
        "INSERT INTO versions (key, vid, created_us, delete_marker, size, checksum, file, mode, until_s, legal_hold)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            key.as_bytes(),
            vid.0,
            us,
            data.is_none(),
            size as i64,
            checksum,
            data.map(|_| file),
            retention.map(|r| r.mode.as_str()),
            retention.map(|r| r.until.as_second()),
            legal_hold
        ],
    )
    .map_err(db_err(format!("cannot record a version of {key}")))?;
    refresh_live(tx, key)?;
    Ok(ObjectVersion {
        key: key.to_owned(),
        version: vid,
        created,
        is_latest: true,
        delete_marker: data.is_none(),
        size,
        checksum: checksum.to_owned(),
        retention,
        legal_hold,
    })
}

/// Points `live` at the key's latest version if it is an object, or drops the key.
fn refresh_live(tx: &rusqlite::Transaction<'_>, key: &str) -> Result<()> {
    let latest: Option<(String, bool)> = tx
        .query_row(
            "SELECT vid, delete_marker FROM versions WHERE key = ?1 ORDER BY vid DESC LIMIT 1",
            [key.as_bytes()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(db_err(format!("cannot read versions of {key}")))?;
    match latest {
        Some((vid, false)) => tx.execute(
            "INSERT INTO live (key, vid) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET vid = excluded.vid",
            params![key.as_bytes(), vid],
        ),
        _ => tx.execute("DELETE FROM live WHERE key = ?1", [key.as_bytes()]),
    }
    .map_err(db_err(format!("cannot update the key index for {key}")))?;
    Ok(())
}

fn default_retention(conn: &Connection) -> Result<Option<DefaultRetention>> {
    let v: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE name = 'default-retention'", [], |r| r.get(0))
        .optional()
        .map_err(db_err("cannot read the lock configuration"))?;
    v.map(|s| {
        serde_json::from_str(&s).map_err(|e| StoreError::io("corrupt lock configuration in the vault database", e))
    })
    .transpose()
}

fn put_default_retention(conn: &Connection, d: Option<DefaultRetention>) -> Result<()> {
    match d {
        Some(d) => conn.execute(
            "INSERT INTO meta (name, value) VALUES ('default-retention', ?1)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            [serde_json::to_string(&d).expect("default retention serialises")],
        ),
        None => conn.execute("DELETE FROM meta WHERE name = 'default-retention'", []),
    }
    .map_err(db_err("cannot write the lock configuration"))?;
    Ok(())
}

fn validate_default(d: &DefaultRetention) -> Result<()> {
    if d.period.as_secs() == 0 {
        return Err(StoreError::invalid("default retention period must be at least one second"));
    }
    if d.period.as_secs() > 100 * 366 * 86_400 {
        return Err(StoreError::invalid("default retention period is longer than 100 years"));
    }
    Ok(())
}

fn check_future(until: Timestamp, now: Timestamp) -> Result<()> {
    if until <= now {
        return Err(StoreError::invalid(format!("retain-until {until} is not in the future (now {now})")));
    }
    Ok(())
}

fn normalize(t: Timestamp) -> Timestamp {
    Timestamp::from_second(until_seconds(t)).unwrap_or(Timestamp::MAX)
}

/// The half-open key range `[from, to)` a listing of `prefix` walks, starting after the key
/// `after` (the previous page's last) when given.
///
/// Both bounds are plain values so that SQLite seeks to `from` and stops at `to` in the
/// primary-key index: a listing costs what it returns, not the number of keys that sort
/// after the prefix (an `?2 IS NULL OR key < ?2` bound cannot stop an index scan, and did
/// not). Keys are UTF-8 and so never contain the byte 0xff: `[0xff]` is above every key.
/// `after ++ [0]` is the smallest byte string greater than `after`, so `key >= after ++ [0]`
/// is `key > after`.
fn key_range(prefix: &str, after: Option<&[u8]>) -> (Vec<u8>, Vec<u8>) {
    let mut from = prefix.as_bytes().to_vec();
    if let Some(after) = after {
        let mut next = after.to_vec();
        next.push(0);
        from = from.max(next);
    }
    let mut to = prefix.as_bytes().to_vec();
    loop {
        match to.pop() {
            Some(last) if last < 0xff => {
                to.push(last + 1);
                break;
            }
            Some(_) => {}
            None => {
                to.push(0xff);
                break;
            }
        }
    }
    (from, to)
}

fn paginate<T>(mut items: Vec<T>, limit: usize, token: impl Fn(&T) -> String) -> Page<T> {
    let next = if items.len() > limit {
        items.truncate(limit);
        items.last().map(token)
    } else {
        None
    };
    Page { items, next }
}

fn secret_hash(s: &Secret) -> String {
    blake3::derive_key("coffer vault credential v1", s.expose().as_bytes()).iter().fold(String::new(), |mut acc, b| {
        use std::fmt::Write as _;
        let _ = write!(acc, "{b:02x}");
        acc
    })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| StoreError::io(format!("cannot set permissions of {}", path.display()), e))
}

/// Reads a credentials file (TOML with `access-key` and `secret-key`).
///
/// # Errors
/// `Io` if unreadable, `InvalidRequest` if malformed.
pub fn read_credentials_file(path: &Path) -> Result<Credentials> {
    let text = fs::read_to_string(path)
        .map_err(|e| StoreError::io(format!("cannot read credentials {}", path.display()), e))?;
    // The parse error is not shown: it could quote the secret.
    toml::from_str(&text).map_err(|_| StoreError::invalid(format!("credentials file {} is malformed", path.display())))
}

#[cfg(test)]
mod tests {
    //! Listing cost: the vault promises that listing a prefix (or the versions under it)
    //! costs what the listing returns, not the size of the store. Counted in SQLite virtual
    //! machine instructions on the vault's own connection, not timed.
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Keys recorded directly in the metadata (no data files): the listing reads only rows.
    fn fill(vault: &LocalVault, prefix: &str, n: usize) {
        let mut conn = vault.conn();
        let tx = conn.transaction().unwrap();
        let now = vault.clock().now();
        for i in 0..n {
            insert_version(&tx, &format!("{prefix}{i:08}"), now, Some(("", 0, "")), None, false).unwrap();
        }
        tx.commit().unwrap();
    }

    /// SQLite instructions run by `f` on the vault's connection.
    fn ops<T>(vault: &LocalVault, f: impl FnOnce() -> T) -> (T, u64) {
        static OPS: AtomicU64 = AtomicU64::new(0);
        OPS.store(0, Ordering::SeqCst);
        vault.conn().progress_handler(
            1,
            Some(|| {
                OPS.fetch_add(1, Ordering::Relaxed);
                false
            }),
        );
        let out = f();
        vault.conn().progress_handler(0, None::<fn() -> bool>);
        (out, OPS.load(Ordering::SeqCst))
    }

    /// A put killed before its rename leaves a temp file; opening the vault a day later
    /// removes it, and never a temp file that may still be written.
    #[test]
    fn stale_temp_files_are_removed_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("v");
        LocalVault::init(&root, &VaultOptions::default()).unwrap();
        let tmp = root.join("tmp");
        let (old, fresh, other) = (tmp.join("aa.1.tmp"), tmp.join("bb.2.tmp"), tmp.join("notes.txt"));
        for p in [&old, &fresh, &other] {
            fs::write(p, b"half a put").unwrap();
        }
        #[allow(clippy::disallowed_methods, reason = "file times are the kernel's wall-clock times")]
        let day_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(86_500);
        for p in [&old, &other] {
            fs::File::options().write(true).open(p).unwrap().set_modified(day_ago).unwrap();
        }
        LocalVault::open(&root).unwrap();
        assert!(!old.exists(), "a temp file unwritten for a day is removed");
        assert!(fresh.exists(), "a temp file written just now may belong to a put in progress");
        assert!(other.exists(), "only temp files are removed");
    }

    // ---- time: the high-water mark, `clock-behind` entries, time findings ----

    fn vault() -> (tempfile::TempDir, LocalVault) {
        let dir = tempfile::tempdir().unwrap();
        let vault = LocalVault::init(dir.path().join("v"), &VaultOptions::default()).unwrap();
        (dir, vault)
    }

    /// Appends an entry dated `at`, as a request of the writer would (own transaction).
    fn entry_at(vault: &LocalVault, at: Timestamp) {
        let conn = vault.conn();
        let tx = rusqlite::Transaction::new_unchecked(&conn, TransactionBehavior::Immediate).unwrap();
        audit::append(
            &tx,
            audit::NewEntry {
                time: at,
                principal: "writer",
                role: "writer",
                action: "put",
                key: Some("k"),
                version: None,
                outcome: "allowed",
                reason: String::new(),
            },
        )
        .unwrap();
        tx.commit().unwrap();
    }

    fn mark(vault: &LocalVault) -> Option<Timestamp> {
        audit::high_water(&vault.conn()).unwrap()
    }

    fn all_entries(vault: &LocalVault) -> Vec<AuditEntry> {
        audit::read(&vault.conn(), 0, 100_000).unwrap()
    }

    fn clock_behind_entries(vault: &LocalVault) -> Vec<AuditEntry> {
        all_entries(vault).into_iter().filter(|e| e.action == "clock-behind").collect()
    }

    fn secs(n: i64) -> jiff::SignedDuration {
        jiff::SignedDuration::from_secs(n)
    }

    #[test]
    fn the_high_water_mark_only_rises_and_clock_behind_is_written_once_per_run() {
        let (_d, vault) = vault();
        let t0 = mark(&vault).expect("init sets the mark");
        assert_eq!(all_entries(&vault)[0].time, t0, "the mark is the init entry's time");

        entry_at(&vault, t0 + secs(3600));
        assert_eq!(mark(&vault), Some(t0 + secs(3600)), "a later entry raises the mark");

        // Back to t0: behind the mark by an hour. One `clock-behind` entry, before the
        // request's, naming the request's principal; the mark does not go down.
        entry_at(&vault, t0);
        entry_at(&vault, t0 + secs(60));
        entry_at(&vault, t0 + secs(120));
        assert_eq!(mark(&vault), Some(t0 + secs(3600)), "the mark never goes down");
        let behind = clock_behind_entries(&vault);
        assert_eq!(behind.len(), 1, "once per change of state, not per request: {behind:?}");
        assert_eq!(
            (behind[0].seq, behind[0].principal.as_str(), behind[0].outcome.as_str()),
            (3, "writer", "detected")
        );
        assert!(behind[0].reason.contains("by 1h"), "{}", behind[0].reason);
        assert_eq!(all_entries(&vault)[3].action, "put", "the request's own entry follows");
        assert!(vault.clock_status().unwrap().high_water == Some(t0 + secs(3600)));

        // Caught up: the state ends, the mark rises again; a new run behind it is a new state.
        entry_at(&vault, t0 + secs(7200));
        assert_eq!(mark(&vault), Some(t0 + secs(7200)));
        entry_at(&vault, t0 + secs(7200) - secs(600));
        assert_eq!(clock_behind_entries(&vault).len(), 2);
        assert!(
            vault
                .login(&vault.read_credentials(Role::Auditor).unwrap())
                .unwrap()
                .verify_audit_log()
                .unwrap()
                .problems
                .is_empty()
        );
    }

    #[test]
    fn the_tolerance_is_five_seconds_exactly() {
        let (_d, vault) = vault();
        let m = mark(&vault).unwrap() + secs(3600);
        entry_at(&vault, m);
        entry_at(&vault, m - CLOCK_TOLERANCE);
        assert!(clock_behind_entries(&vault).is_empty(), "5 s behind is within the tolerance");
        let auditor = vault.login(&vault.read_credentials(Role::Auditor).unwrap()).unwrap();
        assert!(auditor.verify_audit_log().unwrap().time_findings.is_empty());
        entry_at(&vault, m - CLOCK_TOLERANCE - jiff::SignedDuration::from_micros(1));
        assert_eq!(clock_behind_entries(&vault).len(), 1, "a microsecond more is behind");
        let found = auditor.verify_audit_log().unwrap().time_findings;
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].newest_seq, found[0].newest_before), (2, m));
        assert_eq!(found[0].seq, 4, "the `clock-behind` entry is the first one dated too early");
    }

    #[test]
    fn verify_reports_each_step_back_once_and_at_most_one_hundred() {
        let (_d, vault) = vault();
        let t0 = mark(&vault).unwrap();
        let auditor = vault.login(&vault.read_credentials(Role::Auditor).unwrap()).unwrap();
        assert!(auditor.verify_audit_log().unwrap().time_findings.is_empty(), "a fresh vault has none");

        // Forward 40 days (seq 2), then normal work (seq 3 clock-behind, 4, 5): one finding.
        entry_at(&vault, t0 + secs(40 * 86_400));
        for i in 0..2 {
            entry_at(&vault, t0 + secs(10 + i));
        }
        let v = auditor.verify_audit_log().unwrap();
        assert!(v.problems.is_empty(), "the chain is intact and the times still lie");
        assert_eq!(v.time_findings.len(), 1, "{:?}", v.time_findings);
        let f = &v.time_findings[0];
        assert_eq!((f.seq, f.time, f.newest_seq, f.newest_before), (3, t0 + secs(10), 2, t0 + secs(40 * 86_400)));

        // Another step back while still behind: a second finding against the same entry.
        entry_at(&vault, t0);
        let v = auditor.verify_audit_log().unwrap();
        assert_eq!(v.time_findings.len(), 2);
        assert_eq!((v.time_findings[1].seq, v.time_findings[1].newest_seq), (6, 2));

        // 150 more steps back: findings stop at 100, the walk does not.
        for i in 0..150 {
            entry_at(&vault, t0 - secs(10 * (i + 1)));
        }
        let v = auditor.verify_audit_log().unwrap();
        assert_eq!(v.time_findings.len(), MAX_TIME_FINDINGS);
        assert_eq!(v.entries, 156);
    }

    #[test]
    fn clock_status_says_how_far_behind_the_mark_the_clock_is() {
        let (_d, vault) = vault();
        let status = vault.clock_status().unwrap();
        assert_eq!(status.behind, None, "a fresh vault's clock is not behind");
        assert!(status.high_water.is_some_and(|m| m <= status.now));

        let ahead = vault.clock().now() + secs(40 * 86_400);
        entry_at(&vault, ahead);
        let status = vault.clock_status().unwrap();
        assert_eq!(status.high_water, Some(ahead));
        let by = status.behind.expect("40 days behind");
        assert!(by > secs(40 * 86_400 - 60) && by <= secs(40 * 86_400), "{by:?}");
        assert_eq!(approx_duration(by), "40d");

        // A mangled record is no record: the newest entry's time stands in for it.
        vault.conn().execute("UPDATE meta SET value = 'yesterday' WHERE name = 'clock-high-water'", []).unwrap();
        assert_eq!(vault.clock_status().unwrap().high_water, Some(ahead));
        entry_at(&vault, ahead + secs(1));
        assert_eq!(mark(&vault), Some(ahead + secs(1)), "the next entry writes a good one");
    }

    #[test]
    fn approx_duration_rounds_to_two_units() {
        let cases = [
            (0, "0s"),
            (12, "12s"),
            (125, "2m 5s"),
            (7500, "2h 5m"),
            (86_400 * 40, "40d"),
            (86_400 * 39 + 3600 * 23 + 59, "39d 23h"),
        ];
        for (s, text) in cases {
            assert_eq!(approx_duration(secs(s)), text);
        }
        assert_eq!(approx_duration(secs(86_400 * 40) - jiff::SignedDuration::from_millis(7)), "40d");
        assert_eq!(approx_duration(secs(-90)), "-1m 30s");
    }

    // ---- protection(): the principals field ----

    fn principals_field(vault: &LocalVault, role: Role) -> String {
        let h = vault.login(&vault.read_credentials(role).unwrap()).unwrap();
        let p = h.protection().unwrap();
        assert!(p.unreadable.is_empty(), "{:?}", p.unreadable);
        assert_eq!(p.fields.get("object-lock").map(String::as_str), Some("enabled"));
        p.fields["principals"].clone()
    }

    #[test]
    fn protection_names_the_principals_and_changes_only_when_they_do() {
        let (_d, vault) = vault();
        let before = principals_field(&vault, Role::Auditor);
        assert_eq!(before, principals_field(&vault, Role::Writer), "every role reads the same text");
        for role in Role::ALL {
            let creds = vault.read_credentials(role).unwrap();
            assert!(before.contains(&format!("\"access-key\":\"{}\"", creds.access_key)), "{before}");
            assert!(!before.contains(creds.secret_key.expose()), "never a secret");
            assert!(!before.contains(&secret_hash(&creds.secret_key)), "never a secret's hash");
        }

        // Ordinary work changes nothing.
        let writer = vault.login(&vault.read_credentials(Role::Writer).unwrap()).unwrap();
        writer.put("k", b"x", &PutOptions::default()).unwrap();
        assert_eq!(principals_field(&vault, Role::Auditor), before);

        // A secret replaced by editing the database directly (no audit entry).
        let db = vault.root().join(DB_FILE);
        let raw = Connection::open(&db).unwrap();
        let pruner = vault.read_credentials(Role::Pruner).unwrap();
        let changed = raw
            .execute(
                "UPDATE principals SET secret_hash = ?1 WHERE access_key = ?2",
                params![secret_hash(&Secret::new("attacker".into())), pruner.access_key],
            )
            .unwrap();
        assert_eq!(changed, 1);
        let replaced = principals_field(&vault, Role::Auditor);
        assert_ne!(replaced, before, "a replaced secret shows");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&replaced).unwrap()["principals"],
            serde_json::from_str::<serde_json::Value>(&before).unwrap()["principals"],
            "only the digest changed"
        );

        // A principal added the same way.
        raw.execute(
            "INSERT INTO principals (access_key, secret_hash, name, role) VALUES ('CKADEVIL', 'x', 'mallory', 'admin')",
            [],
        )
        .unwrap();
        let added = principals_field(&vault, Role::Auditor);
        assert!(added.contains("\"access-key\":\"CKADEVIL\",\"name\":\"mallory\",\"role\":\"admin\""), "{added}");
    }

    #[test]
    fn listings_cost_what_they_return_not_the_keys_around_them() {
        let dir = tempfile::tempdir().unwrap();
        let vault = LocalVault::init(dir.path().join("v"), &VaultOptions::default()).unwrap();
        let h = vault.login(&vault.read_credentials(Role::Writer).unwrap()).unwrap();
        fill(&vault, "b/", 3);
        let measure = |vault: &LocalVault| {
            let (keys, keys_ops) = ops(vault, || h.list("b/", None, 1000).unwrap());
            let (versions, versions_ops) = ops(vault, || h.list_versions("b/", None, 1000).unwrap());
            assert_eq!((keys.items.len(), versions.items.len()), (3, 3));
            // A second page, resumed from a token, must seek too.
            let first = h.list("b/", None, 1).unwrap();
            let (_, resumed_ops) = ops(vault, || h.list("b/", first.next.as_deref(), 1000).unwrap());
            let first = h.list_versions("b/", None, 1).unwrap();
            let (_, resumed_versions_ops) = ops(vault, || h.list_versions("b/", first.next.as_deref(), 1000).unwrap());
            [keys_ops, versions_ops, resumed_ops, resumed_versions_ops]
        };
        let small = measure(&vault);
        // 20,000 keys on either side of the listed prefix.
        fill(&vault, "a/", 20_000);
        fill(&vault, "c/", 20_000);
        let big = measure(&vault);
        for (what, (s, b)) in
            ["list", "list_versions", "list resumed", "list_versions resumed"].iter().zip(small.iter().zip(big.iter()))
        {
            // Scanning the neighbours would cost hundreds of thousands of instructions;
            // a seek costs a few more per B-tree level.
            assert!(*b < s * 2 + 200, "{what}: {s} instructions alone, {b} beside 40,000 keys");
        }
    }
}
