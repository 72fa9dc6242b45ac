//! `pg stream`: continuous WAL over the replication protocol, into the repository.
//!
//! `pg_receivewal` (PostgreSQL's reference client of the streaming protocol: replication
//! slots, timeline switches, `--synchronous` flush reports) receives into a spool
//! directory; this loop stores what it finishes there as the same objects `wal-push`
//! writes (`pg/SYSID/wal/TLI/NAME`), so `wal-fetch`, `info` and `restore` need nothing
//! new:
//!
//! - a completed segment (`pg_receivewal` renames `NAME.partial` to `NAME` only after
//!   fsync) is stored, then removed from the spool — never before the store has said
//!   it is durable;
//! - the segment being received is stored as `NAME.partial` every `--partial-interval`
//!   while it changes, as a new version that must extend the stored one (see
//!   `coffer_repository::wal`), and never when `NAME` itself is already stored;
//! - `.history` files are stored as they appear.
//!
//! Invariant guarded: WAL leaves the spool only once it is durable in the repository, so
//! the spool plus the repository always hold everything `pg_receivewal` has acknowledged
//! to the server (with `--synchronous`, every commit the server reported to a client).
//! The spool is that durable buffer: killing this process at any moment loses nothing,
//! and the next start (or `--drain`) stores what is left first.

use super::{PgError, Result, client, io_err, pg_program, repo_at, warn};
use coffer_repository::wal::{is_segment_name, sysid_from_header};
use coffer_repository::{Event, JobControl, Repository, WalPut};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How to receive WAL (`pg stream`).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct StreamOptions {
    /// The spool directory pg_receivewal writes into (created; keep it on durable storage)
    #[cfg_attr(feature = "clap", arg(long, value_name = "DIR"))]
    pub spool: PathBuf,
    /// libpq connection string (else PGHOST, PGPORT, PGUSER… as usual)
    #[cfg_attr(feature = "clap", arg(long, value_name = "CONNINFO"))]
    #[serde(default)]
    pub pg: Option<String>,
    /// The physical replication slot (created if missing)
    #[cfg_attr(feature = "clap", arg(long, default_value = "coffer", value_name = "NAME"))]
    #[serde(default = "coffer")]
    pub slot: String,
    /// Flush and report every write at once (pg_receivewal --synchronous); list the
    /// application name in the server's synchronous_standby_names for RPO 0
    #[cfg_attr(feature = "clap", arg(long))]
    #[serde(default)]
    pub synchronous: bool,
    /// The application name the server sees (for synchronous_standby_names)
    #[cfg_attr(feature = "clap", arg(long, default_value = "coffer", value_name = "NAME"))]
    #[serde(default = "coffer")]
    pub application_name: String,
    /// How often the unfinished segment is stored (as NAME.partial) while it changes
    #[cfg_attr(feature = "clap", arg(long, value_parser = coffer_repository::options::parse_duration, default_value = "10s", value_name = "DURATION"))]
    #[serde(default = "ten_seconds", with = "coffer_repository::options::duration")]
    pub partial_interval: Duration,
    /// Store what the spool holds (the unfinished segment too) and exit, without
    /// connecting to the server (e.g. after the server is lost)
    #[cfg_attr(feature = "clap", arg(long))]
    #[serde(default)]
    pub drain: bool,
    /// The cluster's system identifier [default: asked from the server, or remembered in the spool]
    #[cfg_attr(feature = "clap", arg(long, env = "COFFER_PG_SYSID"))]
    #[serde(default)]
    pub sysid: Option<u64>,
}

fn coffer() -> String {
    "coffer".to_owned()
}

fn ten_seconds() -> Duration {
    Duration::from_secs(10)
}

/// What `stream` stored (with `drain`; streaming ends only with an error or cancellation).
#[derive(Clone, Debug, serde::Serialize)]
pub struct StreamReport {
    /// The cluster's system identifier.
    #[serde(serialize_with = "super::as_string")]
    pub sysid: u64,
    /// WAL files stored by this run.
    pub stored: u64,
}

/// The spool file remembering the system identifier, so `--drain` works without a server.
pub const SYSID_FILE: &str = "coffer.sysid";

/// The cluster a spool belongs to, as its [`SYSID_FILE`] says.
#[must_use]
pub fn spool_cluster(spool: &Path) -> Option<u64> {
    std::fs::read_to_string(spool.join(SYSID_FILE)).ok().and_then(|s| s.trim().parse().ok())
}

/// Receives WAL into `opts.spool` and stores it in `repo`; with `drain`, stores what the
/// spool holds and returns. Emits `Phase { name: "stream" }` once `pg_receivewal` runs
/// (the spool then names its cluster: [`spool_cluster`]), and an `Object` event per file
/// stored.
///
/// # Errors
/// `Invalid` for a spool of another cluster (or, draining, of none); `Server` when
/// `pg_receivewal` fails or exits; repository, I/O errors; cancellation (which stops
/// `pg_receivewal`; what it wrote stays in the spool).
pub fn stream(repo: &Repository, opts: &StreamOptions, ctl: &JobControl) -> Result<StreamReport> {
    std::fs::create_dir_all(&opts.spool)
        .map_err(io_err(format!("cannot create the spool {}", opts.spool.display())))?;
    let remembered = spool_cluster(&opts.spool);
    let sysid = match (opts.sysid, remembered) {
        (Some(s), _) => s,
        (None, Some(s)) if opts.drain => s,
        (None, _) if opts.drain => {
            return Err(PgError::Invalid(format!(
                "the spool {} does not name its cluster; pass --sysid",
                opts.spool.display()
            )));
        }
        (None, _) => client::server_facts(&mut client::connect(opts.pg.as_deref())?)?.sysid,
    };
    if let Some(old) = remembered.filter(|o| *o != sysid) {
        return Err(PgError::Invalid(format!(
            "the spool {} belongs to cluster {old}, not {sysid}",
            opts.spool.display()
        )));
    }
    let sysid_file = opts.spool.join(SYSID_FILE);
    std::fs::write(&sysid_file, format!("{sysid}\n"))
        .map_err(io_err(format!("cannot write {}", sysid_file.display())))?;
    let mut spool = Spool { dir: opts.spool.clone(), sysid, history: BTreeSet::new(), partial: None, stored: 0 };
    // What an earlier run left behind goes first.
    ctl.emit(&Event::Phase { name: "drain" });
    spool.sweep(repo, true, ctl)?;
    if opts.drain {
        return Ok(StreamReport { sysid, stored: spool.stored });
    }

    let receivewal = |extra: &[&str]| {
        // pg_receivewal must not outlive this process: a second one on the same slot is
        // refused, so a restarted `coffer pg stream` could not resume. setpriv (util-linux)
        // sets the parent-death signal without unsafe code here.
        let mut c = if Path::new("/usr/bin/setpriv").is_file() {
            let mut c = Command::new("/usr/bin/setpriv");
            c.args(["--pdeathsig", "TERM"]).arg(pg_program("pg_receivewal"));
            c
        } else {
            Command::new(pg_program("pg_receivewal"))
        };
        c.arg("-S").arg(&opts.slot).args(extra);
        if let Some(ci) = &opts.pg {
            c.args(["-d", ci]);
        }
        if std::env::var_os("PGAPPNAME").is_none() {
            c.env("PGAPPNAME", &opts.application_name);
        }
        c
    };
    let out = receivewal(&["--create-slot", "--if-not-exists"])
        .stdin(Stdio::null())
        .output()
        .map_err(io_err("cannot run pg_receivewal"))?;
    if !out.status.success() {
        return Err(PgError::Server(format!(
            "cannot create replication slot {}: {}",
            opts.slot,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let mut args = vec!["-D".to_owned(), opts.spool.display().to_string()];
    if opts.synchronous {
        args.push("--synchronous".into());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // Its messages (reconnects, timeline switches) go to our stderr as they are.
    let mut child = receivewal(&args).stdin(Stdio::null()).spawn().map_err(io_err("cannot run pg_receivewal"))?;
    ctl.emit(&Event::Phase { name: "stream" });
    let mut last_partial = Instant::now();
    loop {
        let exited = child.try_wait().map_err(io_err("cannot wait for pg_receivewal"))?;
        let partial_due = last_partial.elapsed() >= opts.partial_interval;
        // Cancelled: what the spool holds is stored first (nothing is lost either way).
        let swept = spool.sweep(repo, partial_due || exited.is_some(), ctl).and_then(|()| Ok(ctl.check()?));
        if partial_due {
            last_partial = Instant::now();
        }
        if let Err(e) = swept {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
        if let Some(st) = exited {
            return Err(PgError::Server(format!(
                "pg_receivewal exited ({st}); the spool {} was stored",
                opts.spool.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The spool directory and what this run stored from it.
struct Spool {
    dir: PathBuf,
    sysid: u64,
    /// `.history` files already stored (they stay in the spool; they are small).
    history: BTreeSet<String>,
    /// The unfinished segment last stored, and how much written WAL it held.
    partial: Option<(String, usize)>,
    stored: u64,
}

impl Spool {
    /// Stores the completed segments and new history files, and with `partial` the
    /// unfinished segment if it changed.
    fn sweep(&mut self, repo: &Repository, partial: bool, ctl: &JobControl) -> Result<()> {
        let mut names: Vec<String> = std::fs::read_dir(&self.dir)
            .map_err(io_err(format!("cannot list the spool {}", self.dir.display())))?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        names.sort();
        for name in &names {
            let path = self.dir.join(name);
            if is_segment_name(name) && !name.ends_with(".partial") {
                ctl.check()?;
                let data = self.read(&path)?;
                self.put(repo, name, &data, ctl)?;
                // Durable in the repository: the spool's copy is no longer needed.
                std::fs::remove_file(&path).map_err(io_err(format!("cannot remove {}", path.display())))?;
            } else if name.ends_with(".history") && !self.history.contains(name) {
                let data = self.read(&path)?;
                self.put(repo, name, &data, ctl)?;
                self.history.insert(name.clone());
            }
        }
        if !partial {
            return Ok(());
        }
        for name in names.iter().filter(|n| n.ends_with(".partial")) {
            let Some(segment) = name.strip_suffix(".partial") else { continue };
            if !is_segment_name(segment) {
                continue;
            }
            // pg_receivewal may have just completed it (renamed it): the next sweep has it.
            let data = match std::fs::read(self.dir.join(name)) {
                Ok(d) => d,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(format!("cannot read {name} in the spool"))(e)),
            };
            let written = data.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
            if written == 0 || self.partial.as_ref().is_some_and(|(n, w)| n == name && *w == written) {
                continue;
            }
            // A completed segment is never shadowed: wal-fetch prefers it anyway, and a
            // partial copy of it would only cost a locked version.
            if repo.get_wal(self.sysid, segment)?.is_some() {
                continue;
            }
            match repo.put_wal(self.sysid, name, &data) {
                Ok(WalPut::Stored) => {
                    self.stored += 1;
                    ctl.emit(&Event::Object { action: "stored", key: name, bytes: written as u64 });
                }
                Ok(WalPut::AlreadyStored) => {}
                // E.g. the server archived its own `.partial` at a promotion, with other
                // bytes after its end: the stored one stays; the completed segment or the
                // next timeline carries on.
                Err(e) => warn(ctl, name, &format!("cannot store {name}: {e}")),
            }
            self.partial = Some((name.clone(), written));
        }
        Ok(())
    }

    fn read(&self, path: &Path) -> Result<Vec<u8>> {
        std::fs::read(path).map_err(io_err(format!("cannot read {}", path.display())))
    }

    fn put(&mut self, repo: &Repository, name: &str, data: &[u8], ctl: &JobControl) -> Result<()> {
        if let Some(s) = sysid_from_header(data).filter(|s| *s != self.sysid) {
            return Err(PgError::Invalid(format!("{name} in the spool belongs to cluster {s}, not {}", self.sysid)));
        }
        let put = repo.put_wal(self.sysid, name, data).map_err(repo_at(format!("cannot store WAL file {name}")))?;
        if put == WalPut::Stored {
            self.stored += 1;
            ctl.emit(&Event::Object { action: "stored", key: name, bytes: data.len() as u64 });
        }
        Ok(())
    }
}
