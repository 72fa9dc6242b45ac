//! `coffer pg stream`: continuous WAL over the replication protocol, into the repository.
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

use super::{pg_program, psql, sysid_from_segment};
use crate::Global;
use crate::output::Output;
use crate::repo::RepoOpts;
use anyhow::{Context as _, Result, anyhow, bail};
use clap::Args;
use coffer_repository::{Repository, WalPut};
use coffer_store::Role;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `pg stream`.
#[derive(Debug, Args)]
pub(super) struct StreamArgs {
    /// The spool directory pg_receivewal writes into (created; keep it on durable storage)
    #[arg(long, value_name = "DIR")]
    spool: PathBuf,
    /// libpq connection string (else PGHOST, PGPORT, PGUSER… as usual)
    #[arg(long, value_name = "CONNINFO")]
    pg: Option<String>,
    /// The physical replication slot (created if missing)
    #[arg(long, default_value = "coffer", value_name = "NAME")]
    slot: String,
    /// Flush and report every write at once (pg_receivewal --synchronous); list the
    /// application name in the server's synchronous_standby_names for RPO 0
    #[arg(long)]
    synchronous: bool,
    /// The application name the server sees (for synchronous_standby_names)
    #[arg(long, default_value = "coffer", value_name = "NAME")]
    application_name: String,
    /// How often the unfinished segment is stored (as NAME.partial) while it changes
    #[arg(long, value_parser = crate::parse::duration, default_value = "10s", value_name = "DURATION")]
    partial_interval: Duration,
    /// Store what the spool holds (the unfinished segment too) and exit, without
    /// connecting to the server (e.g. after the server is lost)
    #[arg(long)]
    drain: bool,
    /// The cluster's system identifier [default: asked from the server, or remembered in the spool]
    #[arg(long, env = "COFFER_PG_SYSID")]
    sysid: Option<u64>,
    /// Open the repository with the key `pg export-key` wrote to FILE instead of the
    /// password (no key derivation)
    #[arg(long, env = "COFFER_PG_KEY_FILE", value_name = "FILE")]
    key_file: Option<PathBuf>,
}

/// The spool file remembering the system identifier, so `--drain` works without a server.
const SYSID_FILE: &str = "coffer.sysid";

/// Runs `coffer pg stream`.
pub(super) fn stream(g: &Global, r: &RepoOpts, a: &StreamArgs) -> Result<()> {
    std::fs::create_dir_all(&a.spool).with_context(|| format!("cannot create the spool {}", a.spool.display()))?;
    let remembered = std::fs::read_to_string(a.spool.join(SYSID_FILE)).ok().and_then(|s| s.trim().parse().ok());
    let sysid = match (a.sysid, remembered) {
        (Some(s), _) => s,
        (None, Some(s)) if a.drain => s,
        (None, _) if a.drain => bail!("the spool {} does not name its cluster; pass --sysid", a.spool.display()),
        (None, _) => psql(a.pg.as_deref(), "select system_identifier from pg_control_system()")?
            .parse()
            .context("bad system identifier from the server")?,
    };
    if let Some(old) = remembered.filter(|o| *o != sysid) {
        bail!("the spool {} belongs to cluster {old}, not {sysid}", a.spool.display());
    }
    std::fs::write(a.spool.join(SYSID_FILE), format!("{sysid}\n"))?;
    let repo = super::open_pg(g, r, Role::Writer, a.key_file.as_deref())?;
    let mut spool = Spool { dir: a.spool.clone(), sysid, history: BTreeSet::new(), partial: None, stored: 0 };
    // What an earlier run left behind goes first.
    spool.sweep(&repo, true)?;
    if a.drain {
        let mut out = Output::new(g.json);
        if out.json() {
            out.doc(&serde_json::json!({"sysid": sysid.to_string(), "stored": spool.stored}))?;
        } else {
            out.line(format!("stored {} WAL files from {} (cluster {sysid})", spool.stored, a.spool.display()))?;
        }
        return out.finish();
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
        c.arg("-S").arg(&a.slot).args(extra);
        if let Some(ci) = &a.pg {
            c.args(["-d", ci]);
        }
        if std::env::var_os("PGAPPNAME").is_none() {
            c.env("PGAPPNAME", &a.application_name);
        }
        c
    };
    let out = receivewal(&["--create-slot", "--if-not-exists"])
        .stdin(Stdio::null())
        .output()
        .context("cannot run pg_receivewal")?;
    if !out.status.success() {
        bail!("cannot create replication slot {}: {}", a.slot, String::from_utf8_lossy(&out.stderr).trim());
    }
    let mut args = vec!["-D".to_owned(), a.spool.display().to_string()];
    if a.synchronous {
        args.push("--synchronous".into());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // Its messages (reconnects, timeline switches) go to our stderr as they are.
    let mut child = receivewal(&args).stdin(Stdio::null()).spawn().context("cannot run pg_receivewal")?;
    if !g.json {
        eprintln!("coffer: streaming WAL of cluster {sysid} (slot {}) into {}", a.slot, a.spool.display());
    }
    let mut last_partial = Instant::now();
    loop {
        let exited = child.try_wait().context("cannot wait for pg_receivewal")?;
        let partial_due = last_partial.elapsed() >= a.partial_interval;
        let swept = spool.sweep(&repo, partial_due || exited.is_some());
        if partial_due {
            last_partial = Instant::now();
        }
        if let Err(e) = swept {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
        if let Some(st) = exited {
            bail!("pg_receivewal exited ({st}); the spool {} was stored", a.spool.display());
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
    fn sweep(&mut self, repo: &Repository, partial: bool) -> Result<()> {
        let mut names: Vec<String> = std::fs::read_dir(&self.dir)
            .with_context(|| format!("cannot list the spool {}", self.dir.display()))?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        names.sort();
        for name in &names {
            let path = self.dir.join(name);
            if super::is_segment_name(name) && !name.ends_with(".partial") {
                let data = self.read(&path)?;
                self.put(repo, name, &data)?;
                // Durable in the repository: the spool's copy is no longer needed.
                std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
            } else if name.ends_with(".history") && !self.history.contains(name) {
                let data = self.read(&path)?;
                self.put(repo, name, &data)?;
                self.history.insert(name.clone());
            }
        }
        if !partial {
            return Ok(());
        }
        for name in names.iter().filter(|n| n.ends_with(".partial")) {
            let Some(segment) = name.strip_suffix(".partial") else { continue };
            if !super::is_segment_name(segment) {
                continue;
            }
            // pg_receivewal may have just completed it (renamed it): the next sweep has it.
            let data = match std::fs::read(self.dir.join(name)) {
                Ok(d) => d,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).with_context(|| format!("cannot read {name} in the spool")),
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
                Ok(WalPut::Stored) => self.stored += 1,
                Ok(WalPut::AlreadyStored) => {}
                // E.g. the server archived its own `.partial` at a promotion, with other
                // bytes after its end: the stored one stays; the completed segment or the
                // next timeline carries on.
                Err(e) => eprintln!("coffer: warning: cannot store {name}: {e}"),
            }
            self.partial = Some((name.clone(), written));
        }
        Ok(())
    }

    fn read(&self, path: &Path) -> Result<Vec<u8>> {
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
    }

    fn put(&mut self, repo: &Repository, name: &str, data: &[u8]) -> Result<()> {
        if let Some(s) = sysid_from_segment(data).filter(|s| *s != self.sysid) {
            return Err(anyhow!("{name} in the spool belongs to cluster {s}, not {}", self.sysid));
        }
        let put = repo.put_wal(self.sysid, name, data).with_context(|| format!("cannot store WAL file {name}"))?;
        if put == WalPut::Stored {
            self.stored += 1;
        }
        Ok(())
    }
}
