//! A restore into scratch space, started and checked: what `coffer drill pg` (and the
//! daemon's `SOURCE/drill` job) runs against a throwaway server. A source knows how to
//! restore and how to check a restore; the drill's report is `coffer_operations::drill`'s.
//!
//! [`restore_to_scratch`] restores the base backup with [`restore`](super::restore()) into `SCRATCH/data`,
//! fetches the WAL recovery needs into `SCRATCH/wal` *before* the server starts, and starts
//! the server on a socket in `SCRATCH/data` (no TCP), authenticated by a `pg_hba` file of its
//! own, waiting until recovery reached the target and the server was promoted. The checks
//! ([`ScratchServer::amcheck`], [`ScratchServer::catalog`], [`ScratchServer::first_row`])
//! run against it; dropping the [`ScratchServer`] stops it.
//!
//! Why the WAL is fetched beforehand (`restore_command` = `cp` from `SCRATCH/wal`) rather
//! than by `coffer pg wal-fetch` per file: the drill is a library call (the daemon, tests),
//! which must not depend on a `coffer` executable on `PATH`; and the restored server runs
//! as another user (`postgres`), who must not get the repository key or credentials that
//! `wal-fetch` needs. Every file is authenticated as it is read from the repository, as
//! `wal-fetch` does. The cost is disk: the WAL from the base backup to the target (for a
//! time target, up to the first segment with a later commit, plus one).
//!
//! Invariants guarded:
//! - **the server never runs as root** (PostgreSQL refuses anyway): as root, the scratch
//!   tree is handed to [`RunAs`] and `pg_ctl`/`pg_amcheck` run through `setpriv`; the client
//!   programs talking to the restored (untrusted) data run unprivileged too;
//! - **the throwaway server is reachable only through its private socket** (`listen_addresses
//!   = ''`, the socket directory mode 0700), so its `trust` authentication admits only its
//!   own user and root;
//! - **a started server is stopped** whatever happens after (the guard's `Drop`).

use super::client::{connect_socket, server};
use super::restore::{StartSettings, postmaster_status, sh_quote, start_server};
use super::{BaseBackup, Lsn, PgError, RecoveryCommand, RestoreOptions, RestoreReport, Result, io_err, pg_program};
use coffer_repository::wal::Segment;
use coffer_repository::{Event, JobControl, Repository};
use jiff::Timestamp;
use postgres::{Client, Config, NoTls, SimpleQueryMessage};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The operating-system user a throwaway server runs as when this process is root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunAs {
    /// The user's name.
    pub name: String,
    /// Its uid.
    pub uid: u32,
    /// Its primary gid.
    pub gid: u32,
}

impl RunAs {
    /// The user `name`.
    ///
    /// # Errors
    /// `Invalid` when there is no such user, or it is root.
    pub fn lookup(name: &str) -> Result<Self> {
        let u = uzers::get_user_by_name(name)
            .ok_or_else(|| PgError::Invalid(format!("run-as: no user {name:?} on this host")))?;
        if u.uid() == 0 {
            return Err(PgError::Invalid(format!("run-as: {name:?} is root, which PostgreSQL refuses to run as")));
        }
        Ok(Self { name: name.to_owned(), uid: u.uid(), gid: u.primary_group_id() })
    }

    /// The user to run servers as: `name` (default `postgres`) when this process is root;
    /// `None` (this process's own user) otherwise.
    ///
    /// # Errors
    /// As [`RunAs::lookup`].
    pub fn when_root(name: Option<&str>) -> Result<Option<Self>> {
        if rustix::process::geteuid().is_root() { Self::lookup(name.unwrap_or("postgres")).map(Some) } else { Ok(None) }
    }
}

/// `program` as `run_as` (`setpriv --reuid --regid --init-groups`), or as this process.
pub(crate) fn command_as(run_as: Option<&RunAs>, program: &Path) -> Command {
    match run_as {
        Some(u) => {
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={}", u.uid)).arg(format!("--regid={}", u.gid)).arg("--init-groups").arg(program);
            c
        }
        None => Command::new(program),
    }
}

/// Hands `dir` and everything under it to `u` (symbolic links themselves, not followed).
///
/// # Errors
/// `Io` naming the path.
pub fn chown_tree(dir: &Path, u: &RunAs) -> Result<()> {
    let own = |p: &Path| {
        std::os::unix::fs::lchown(p, Some(u.uid), Some(u.gid)).map_err(io_err(format!(
            "cannot hand {} to {}",
            p.display(),
            u.name
        )))
    };
    own(dir)?;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).map_err(io_err(format!("cannot read {}", d.display())))? {
            let e = e.map_err(io_err(format!("cannot read {}", d.display())))?;
            let p = e.path();
            own(&p)?;
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p);
            }
        }
    }
    Ok(())
}

/// What a scratch restore recovers to, and how (the drill's request).
#[derive(Clone, Debug)]
pub struct ScratchRestore {
    /// The scratch directory: exists and is empty (the caller made it and removes it).
    pub scratch: PathBuf,
    /// Recover to this time …
    pub time: Option<Timestamp>,
    /// … or this LSN …
    pub lsn: Option<Lsn>,
    /// … or this restore point …
    pub name: Option<String>,
    /// … or the end of the archived WAL.
    pub latest: bool,
    /// The cluster.
    pub sysid: Option<u64>,
    /// The cluster by name.
    pub cluster: Option<String>,
    /// Run the server as this user (this process is root); `None`: as this process.
    pub run_as: Option<RunAs>,
    /// How long recovery may take.
    pub start_timeout: Duration,
}

/// The WAL fetched into scratch for recovery.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FetchedWal {
    /// Files written (segments and `.history` files).
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// A scratch restore, started.
#[derive(Debug)]
pub struct ScratchRestored {
    /// The restore (its base backup).
    pub report: RestoreReport,
    /// The WAL fetched for recovery.
    pub wal: FetchedWal,
    /// Files in the restored data directory before recovery.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// The running server, recovered and promoted.
    pub server: ScratchServer,
}

/// Restores into `opts.scratch` and starts the server there (see the module docs).
///
/// # Errors
/// Those of [`restore`](super::restore()) (`MissingWal` for a gap the plan sees); `Invalid` for a scratch
/// directory the server's user cannot reach or whose socket path is too long; `Server` when
/// the server does not start or recovery fails (the server is then stopped); cancellation.
pub fn restore_to_scratch(repo: &Repository, opts: &ScratchRestore, ctl: &JobControl) -> Result<ScratchRestored> {
    let scratch =
        std::path::absolute(&opts.scratch).map_err(io_err(format!("cannot resolve {}", opts.scratch.display())))?;
    let data = scratch.join("data");
    let wal = scratch.join("wal");
    // PostgreSQL's socket path: `DATA/.s.PGSQL.5432`, at most 107 bytes (sockaddr_un).
    if data.join(".s.PGSQL.5432").as_os_str().len() > 107 {
        return Err(PgError::Invalid(format!(
            "scratch directory {} is too long a path for the server's unix socket: choose a shorter one",
            scratch.display()
        )));
    }
    std::fs::create_dir_all(&wal).map_err(io_err(format!("cannot create {}", wal.display())))?;
    let ropts = RestoreOptions {
        time: opts.time,
        lsn: opts.lsn,
        name: opts.name.clone(),
        latest: opts.latest,
        sysid: opts.sysid,
        cluster: opts.cluster.clone(),
        start_timeout: opts.start_timeout,
        ..RestoreOptions::latest(&data)
    };
    let wal_q = sh_quote(&wal.display().to_string());
    let cmd = RecoveryCommand::Custom(format!("test -f {wal_q}/%f && cp {wal_q}/%f \"%p\""));
    let report = super::restore(repo, &ropts, &cmd, ctl)?;
    ctl.emit(&Event::Phase { name: "fetch-wal" });
    let until = match (opts.time, opts.lsn) {
        (Some(t), _) => Until::Time(t),
        (None, Some(l)) => Until::Lsn(l),
        _ => Until::End,
    };
    let fetched = fetch_wal(repo, &report.base, until, &wal, ctl)?;
    // A cluster whose configuration lives outside its data directory (Debian's
    // /etc/postgresql) has none in its base backup: the server needs the files to exist.
    for f in ["postgresql.conf", "pg_ident.conf"] {
        let p = data.join(f);
        if !p.exists() {
            std::fs::write(&p, "# written by coffer drill: the base backup had none\n")
                .map_err(io_err(format!("cannot write {}", p.display())))?;
        }
    }
    let hba = data.join("coffer-drill-hba.conf");
    std::fs::write(&hba, "# coffer drill: the private socket only\nlocal all all trust\n")
        .map_err(io_err(format!("cannot write {}", hba.display())))?;
    let (files, bytes) = tree_size(&data);
    if let Some(u) = &opts.run_as {
        chown_tree(&scratch, u)?;
        let ok = command_as(Some(u), Path::new("test"))
            .arg("-w")
            .arg(&data)
            .stdin(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Err(PgError::Invalid(format!(
                "user {} cannot reach scratch directory {} (a parent directory is not searchable by it); choose another",
                u.name,
                scratch.display()
            )));
        }
    }
    ctl.emit(&Event::Phase { name: "recover" });
    let mut server = ScratchServer::new(data, opts.run_as.clone(), opts.start_timeout);
    server.start(ctl)?;
    Ok(ScratchRestored { report, wal: fetched, files, bytes, server })
}

/// How far [`fetch_wal`] fetches.
#[derive(Clone, Copy, Debug)]
enum Until {
    /// To the segment after the first holding a commit later than this.
    Time(Timestamp),
    /// To this LSN's segment.
    Lsn(Lsn),
    /// Everything.
    End,
}

/// Fetches the `.history` files and the segments from `base`'s start on (its timeline and
/// later ones) into `dir`: a `.partial` segment under its full name, unless the full one is
/// archived (as `wal-fetch` serves them).
fn fetch_wal(repo: &Repository, base: &BaseBackup, until: Until, dir: &Path, ctl: &JobControl) -> Result<FetchedWal> {
    let names = repo.list_wal(base.sysid)?;
    let from = base.start_lsn.segment(base.seg_size);
    let mut out = FetchedWal::default();
    let mut write = |name: &str, data: &[u8]| -> Result<()> {
        let p = dir.join(name);
        std::fs::write(&p, data).map_err(io_err(format!("cannot write {}", p.display())))?;
        out.files += 1;
        out.bytes += data.len() as u64;
        Ok(())
    };
    for n in names.iter().filter(|n| n.ends_with(".history")) {
        ctl.check()?;
        if let Some(d) = repo.get_wal(base.sysid, n)? {
            write(n, &d)?;
        }
    }
    // Segments in WAL order per timeline: names sort so within one timeline.
    let mut segs: Vec<(Segment, &String)> = names
        .iter()
        .filter_map(|n| Segment::parse(n, base.seg_size).map(|s| (s, n)))
        .filter(|(s, _)| s.timeline >= base.timeline && s.number >= from)
        .collect();
    segs.sort_by_key(|(s, n)| (s.timeline, s.number, n.ends_with(".partial")));
    // Per timeline, the segment number after which nothing more is needed.
    let mut stop: std::collections::BTreeMap<u32, u64> = std::collections::BTreeMap::new();
    for (s, n) in segs {
        if let Until::Lsn(l) = until {
            if s.number > l.segment(base.seg_size) {
                continue;
            }
        }
        if stop.get(&s.timeline).is_some_and(|last| s.number > *last) {
            continue;
        }
        let full = n.strip_suffix(".partial").unwrap_or(n);
        if dir.join(full).exists() {
            continue;
        }
        ctl.check()?;
        let Some(d) = repo.get_wal(base.sysid, n)? else { continue };
        if let Until::Time(t) = until {
            // Recovery stops at the first commit after the target: in this segment, or in
            // the next when that record crosses into it.
            if super::xlog::last_xact_time(&d, s.number * base.seg_size).is_some_and(|x| x > t) {
                stop.entry(s.timeline).or_insert(s.number + 1);
            }
        }
        write(full, &d)?;
        ctl.emit(&Event::Object { action: "fetched", key: n, bytes: d.len() as u64 });
    }
    Ok(out)
}

/// Regular files under `dir` and their bytes.
fn tree_size(dir: &Path) -> (u64, u64) {
    let (mut files, mut bytes) = (0, 0);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => {
                    files += 1;
                    bytes += e.metadata().map_or(0, |m| m.len());
                }
                _ => {}
            }
        }
    }
    (files, bytes)
}

/// A throwaway server on a restored data directory: started by [`restore_to_scratch`],
/// stopped (immediately: it is thrown away) by [`ScratchServer::stop`] or when dropped.
#[derive(Debug)]
pub struct ScratchServer {
    data: PathBuf,
    run_as: Option<RunAs>,
    user: String,
    timeout: Duration,
}

/// How many lines of a check's findings a detail quotes.
const QUOTED: usize = 3;

impl ScratchServer {
    fn new(data: PathBuf, run_as: Option<RunAs>, timeout: Duration) -> Self {
        Self { data, run_as, user: String::new(), timeout }
    }

    /// The data directory (also the socket directory).
    #[must_use]
    pub fn data(&self) -> &Path {
        &self.data
    }

    /// The role checks connect as: the cluster's bootstrap superuser.
    #[must_use]
    pub fn user(&self) -> &str {
        &self.user
    }

    fn start(&mut self, ctl: &JobControl) -> Result<()> {
        // The roles the bootstrap superuser is likely named after: the server's user, ours,
        // `postgres`. Whichever the server knows, its bootstrap superuser (oid 10) is then
        // asked for and used.
        let mut users: Vec<String> = Vec::new();
        let me = uzers::get_current_username().and_then(|u| u.into_string().ok());
        for u in [self.run_as.as_ref().map(|r| r.name.clone()), me, Some("postgres".to_owned())].into_iter().flatten() {
            if !users.contains(&u) {
                users.push(u);
            }
        }
        let q = |p: &Path| sh_quote(&p.display().to_string());
        let extra = vec![
            format!("hba_file={}", q(&self.data.join("coffer-drill-hba.conf"))),
            format!("ident_file={}", q(&self.data.join("pg_ident.conf"))),
            "port=5432".to_owned(),
            "unix_socket_permissions=0700".to_owned(),
            "unix_socket_group=''".to_owned(),
            "ssl=off".to_owned(),
            "logging_collector=off".to_owned(),
            "hot_standby=on".to_owned(),
        ];
        let settings = StartSettings { timeout: self.timeout, run_as: self.run_as.as_ref(), users: &users, extra };
        let who = start_server(&self.data, &settings, ctl)?.unwrap_or_default();
        let (mut c, _) = connect_socket(&self.data, std::slice::from_ref(&who), "postgres")?;
        self.user = c
            .query_one("select rolname::text from pg_roles where oid = 10", &[])
            .map(|r| r.get::<_, String>(0))
            .unwrap_or(who);
        Ok(())
    }

    /// A connection to database `db` as [`Self::user`], statements limited to the start
    /// timeout.
    ///
    /// # Errors
    /// `Server` with the server's message.
    pub fn connect(&self, db: &str) -> Result<Client> {
        let mut c = Config::new();
        c.host_path(&self.data)
            .dbname(db)
            .user(&self.user)
            .application_name("coffer drill")
            .connect_timeout(Duration::from_secs(10))
            .options(&format!("-c statement_timeout={}", self.timeout.as_millis().max(1)));
        c.connect(NoTls).map_err(|e| server(&format!("cannot connect to database {db:?}"), &e))
    }

    /// `select version()`.
    ///
    /// # Errors
    /// `Server`.
    pub fn version(&self) -> Result<String> {
        let mut c = self.connect("postgres")?;
        c.query_one("select version()", &[]).map(|r| r.get(0)).map_err(|e| server("select version()", &e))
    }

    /// Whether the server is in recovery, and the time of the last transaction recovery
    /// replayed (`pg_last_xact_replay_timestamp()`, kept after promotion; none when recovery
    /// replayed no commit).
    ///
    /// # Errors
    /// `Server`.
    pub fn recovery_state(&self) -> Result<(bool, Option<Timestamp>)> {
        let mut c = self.connect("postgres")?;
        let r = c
            .query_one(
                "select pg_is_in_recovery(), (extract(epoch from pg_last_xact_replay_timestamp()) * 1000000)::int8",
                &[],
            )
            .map_err(|e| server("cannot ask the restored server about its recovery", &e))?;
        Ok((r.get(0), r.get::<_, Option<i64>>(1).and_then(|us| Timestamp::from_microsecond(us).ok())))
    }

    /// `pg_amcheck --all --install-missing --heapallindexed` (as the server's user): every
    /// table and B-tree index of every database. Returns its findings (empty: clean) and
    /// what it covered.
    ///
    /// # Errors
    /// `Io` when it cannot run; cancellation (it is killed).
    pub fn amcheck(&self, ctl: &JobControl) -> Result<Findings> {
        let scratch = self.data.parent().unwrap_or(Path::new("/"));
        let out_path = scratch.join("amcheck.out");
        let err_path = scratch.join("amcheck.err");
        let out = std::fs::File::create(&out_path).map_err(io_err(format!("cannot create {}", out_path.display())))?;
        let err = std::fs::File::create(&err_path).map_err(io_err(format!("cannot create {}", err_path.display())))?;
        let mut cmd = command_as(self.run_as.as_ref(), &pg_program("pg_amcheck"));
        // The command line names the server; the environment's libpq settings are for
        // others (PGOPTIONS, PGSERVICE… could redirect or change it).
        for (k, _) in std::env::vars_os() {
            if k.to_str().is_some_and(|k| k.starts_with("PG")) {
                cmd.env_remove(k);
            }
        }
        cmd.arg("-h")
            .arg(&self.data)
            .args(["-p", "5432", "-U", &self.user, "--all", "--install-missing", "--heapallindexed"])
            .current_dir(scratch)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let mut child = cmd.spawn().map_err(io_err(format!("cannot run {}", pg_program("pg_amcheck").display())))?;
        let status = loop {
            if let Err(e) = ctl.check() {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e.into());
            }
            match child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => return Err(PgError::Io { context: "cannot wait for pg_amcheck".into(), source: e }),
            }
        };
        let stdout = read_bounded(&out_path);
        let stderr = read_bounded(&err_path);
        let mut problems: Vec<String> = stdout
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with(char::is_whitespace))
            .map(one_line)
            .collect();
        if problems.is_empty() && !stdout.trim().is_empty() {
            problems.push(one_line(stdout.trim()));
        }
        if !status.success() && problems.is_empty() {
            let why = stderr.lines().find(|l| !l.trim().is_empty()).map_or_else(|| status.to_string(), one_line);
            problems.push(format!("pg_amcheck failed: {why}"));
        }
        Ok(Findings { problems, summary: "every table and B-tree index of every database (heapallindexed)".into() })
    }

    /// Catalog sanity, per database: every database allows connections (but `template0`)
    /// and is valid, connects, has a non-empty `pg_class`, and no index is invalid.
    ///
    /// # Errors
    /// `Server` when the database list cannot be read.
    pub fn catalog(&self) -> Result<Findings> {
        let mut c = self.connect("postgres")?;
        let dbs = c
            .query("select datname::text, datallowconn, datconnlimit from pg_database order by datname", &[])
            .map_err(|e| server("cannot list the restored server's databases", &e))?;
        let mut problems = Vec::new();
        let (mut checked, mut relations) = (0u64, 0i64);
        for row in dbs {
            let (name, allow, limit): (String, bool, i32) = (row.get(0), row.get(1), row.get(2));
            let shown = one_line(&name);
            if limit == -2 {
                problems.push(format!("database {shown:?} is invalid (an interrupted DROP DATABASE)"));
                continue;
            }
            if !allow {
                if name != "template0" {
                    problems.push(format!("database {shown:?} does not allow connections: not checked"));
                }
                continue;
            }
            let mut db = match self.connect(&name) {
                Ok(db) => db,
                Err(e) => {
                    problems.push(one_line(&e.to_string()));
                    continue;
                }
            };
            checked += 1;
            match db.query_one("select count(*) from pg_class", &[]) {
                Ok(r) if r.get::<_, i64>(0) > 0 => relations += r.get::<_, i64>(0),
                Ok(_) => problems.push(format!("database {shown:?}: pg_class is empty")),
                Err(e) => problems.push(one_line(&server(&format!("database {shown:?}: pg_class"), &e).to_string())),
            }
            match db.query("select indexrelid::regclass::text from pg_index where not indisvalid order by 1", &[]) {
                Ok(rows) => problems.extend(
                    rows.iter()
                        .map(|r| format!("database {shown:?}: index {} is invalid", one_line(&r.get::<_, String>(0)))),
                ),
                Err(e) => problems.push(one_line(&server(&format!("database {shown:?}: pg_index"), &e).to_string())),
            }
        }
        Ok(Findings { problems, summary: format!("{checked} databases, {relations} relations, no invalid index") })
    }

    /// The first row of `query`'s first result in database `db`, its columns as text
    /// joined by `|` (NULL as the empty string, as `psql -A` prints it); `None` without rows.
    ///
    /// # Errors
    /// `Server` quoting the server's message.
    pub fn first_row(&self, db: &str, query: &str) -> Result<Option<String>> {
        let mut c = self.connect(db)?;
        let msgs = c.simple_query(query).map_err(|e| match e.as_db_error() {
            Some(d) => PgError::Server(d.message().to_owned()),
            None => PgError::Server(e.to_string()),
        })?;
        for m in msgs {
            match m {
                SimpleQueryMessage::Row(r) => {
                    return Ok(Some((0..r.len()).map(|i| r.get(i).unwrap_or("")).collect::<Vec<_>>().join("|")));
                }
                // The first statement's result ends here: its rows were none.
                SimpleQueryMessage::CommandComplete(_) => return Ok(None),
                _ => {}
            }
        }
        Ok(None)
    }

    /// Stops the server (`pg_ctl stop -m immediate`: it is thrown away); nothing when it
    /// does not run.
    ///
    /// # Errors
    /// `Server` when `pg_ctl` fails.
    pub fn stop(&mut self) -> Result<()> {
        if postmaster_status(&self.data).is_none() {
            return Ok(());
        }
        let out = command_as(self.run_as.as_ref(), &pg_program("pg_ctl"))
            .args(["stop", "-m", "immediate", "-w", "-D"])
            .arg(&self.data)
            .current_dir(self.data.parent().unwrap_or(Path::new("/")))
            .stdin(Stdio::null())
            .output()
            .map_err(io_err("cannot run pg_ctl"))?;
        if out.status.success() || postmaster_status(&self.data).is_none() {
            Ok(())
        } else {
            Err(PgError::Server(format!(
                "cannot stop the restored server: {}",
                one_line(String::from_utf8_lossy(&out.stderr).trim())
            )))
        }
    }
}

impl Drop for ScratchServer {
    fn drop(&mut self) {
        // Best effort: an explicit `stop` reports its failure; a drop has no one to tell.
        let _ = self.stop();
    }
}

/// What a check found: the problems (empty: it held) and what it covered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Findings {
    /// One line each.
    pub problems: Vec<String>,
    /// What was checked, for a passing check's detail.
    pub summary: String,
}

impl Findings {
    /// One line: the summary when clean, else the count and the first problems.
    #[must_use]
    pub fn detail(&self) -> String {
        if self.problems.is_empty() {
            return self.summary.clone();
        }
        let mut d = format!(
            "{} problem(s): {}",
            self.problems.len(),
            self.problems[..self.problems.len().min(QUOTED)].join("; ")
        );
        if self.problems.len() > QUOTED {
            d += "; …";
        }
        d
    }
}

/// A file's first 64 KiB, lossily (a check's output: quoted, never trusted).
fn read_bounded(p: &Path) -> String {
    use std::io::Read as _;
    let mut buf = Vec::new();
    if let Ok(f) = std::fs::File::open(p) {
        let _ = f.take(64 * 1024).read_to_end(&mut buf);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// `s` as one bounded line: control characters replaced, at most 200 characters (text from
/// the restored server is untrusted).
#[must_use]
pub fn one_line(s: &str) -> String {
    let mut out: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).take(200).collect();
    if s.chars().count() > 200 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_are_one_bounded_line() {
        assert_eq!(one_line("a\nb\tc"), "a b c");
        assert_eq!(one_line(&"x".repeat(300)).chars().count(), 201);
        let f = Findings { problems: vec!["a".into(), "b".into(), "c".into(), "d".into()], summary: "s".into() };
        assert_eq!(f.detail(), "4 problem(s): a; b; c; …");
        assert_eq!(Findings { problems: vec![], summary: "s".into() }.detail(), "s");
    }

    #[test]
    fn run_as_refuses_root_and_unknown_users() {
        assert!(RunAs::lookup("root").unwrap_err().to_string().contains("root"));
        assert!(RunAs::lookup("no-such-user-coffer").unwrap_err().to_string().contains("no user"));
    }
}
