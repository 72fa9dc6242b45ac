//! A throwaway PostgreSQL 15 cluster for the `pg_*` tests: `initdb` into the sandbox as the
//! `postgres` user (via `setpriv`, see shared/notes/postgres.md), unix socket only, with
//! `archive_command` = this build's `coffer pg wal-push`. Dropping it stops the server
//! (the sandbox's temporary directory removes the files).
//!
//! Every `coffer` command of these tests runs as `postgres` too, so the vault it creates is
//! writable by `archive_command` and readable by `restore_command`.

use crate::{Cmd, Sandbox};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian's PostgreSQL 15 lives.
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
/// The repository password of these tests.
pub const PASSWORD: &str = "pg test password";

/// The command that installs [`PG_BIN`].
pub const INSTALL_POSTGRES: &str = "apt-get install postgresql-15";

/// Fails the calling test unless it runs as root (the server runs as the `postgres` user)
/// and PostgreSQL 15 is installed; the message names the command that installs it. A
/// missing server is a failure, never a pass.
#[track_caller]
pub fn require_postgres() {
    crate::repo_util::require_root("to run PostgreSQL as the postgres user");
    assert!(
        Path::new(PG_BIN).join("postgres").is_file(),
        "PostgreSQL 15 is not installed ({PG_BIN}/postgres is missing): `{INSTALL_POSTGRES}` installs it \
         (`.ci/test` installs every test dependency and runs the suite)"
    );
}

/// A sandbox owned by `postgres`, with a repository at [`Sandbox::vault`].
pub struct PgSandbox {
    /// The sandbox.
    pub sb: Sandbox,
}

/// `PROGRAM` as the `postgres` user with `HOME`.
pub fn as_postgres(program: impl AsRef<std::ffi::OsStr>, home: &Path) -> Command {
    let mut c = Command::new("setpriv");
    c.args(["--reuid=postgres", "--regid=postgres", "--init-groups", "env"])
        .arg(format!("HOME={}", home.display()))
        .arg(program);
    c
}

impl PgSandbox {
    /// A new sandbox, handed to `postgres`, with `coffer init` done.
    pub fn new() -> Self {
        let sb = Sandbox::new();
        let root = sb.path("");
        let st = Command::new("chown").arg("-R").arg("postgres:postgres").arg(&root).status().expect("chown");
        assert!(st.success());
        let s = Self { sb };
        s.c(["init"]).ok();
        s
    }

    /// A path in the sandbox.
    pub fn path(&self, name: &str) -> PathBuf {
        self.sb.path(name)
    }

    /// `coffer ARGS…` as `postgres` with the repository and password in the environment.
    pub fn c<I: IntoIterator<Item = S>, S: AsRef<std::ffi::OsStr>>(&self, args: I) -> Cmd {
        let mut cmd = as_postgres(env!("CARGO_BIN_EXE_coffer"), &self.sb.home());
        cmd.env_clear()
            .env("COFFER_REPO", self.sb.vault())
            .env("COFFER_PASSWORD", PASSWORD)
            .current_dir(self.path(""))
            .args(args);
        Cmd { cmd, stdin: None }
    }

    /// Runs `sql` on the server a restore started in `dir` (its socket is there); stdout,
    /// trimmed.
    pub fn psql_at(&self, dir: &Path, sql: &str) -> String {
        let out = as_postgres(Path::new(PG_BIN).join("psql"), &self.path("home"))
            .args(["-X", "-A", "-t", "-d", "postgres", "-h"])
            .arg(dir)
            .args(["-c", sql])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Stops (immediately) the server a restore started in `dir`.
    pub fn stop_immediate(&self, dir: &Path) {
        let st = as_postgres(Path::new(PG_BIN).join("pg_ctl"), &self.path("home"))
            .args(["stop", "-m", "immediate", "-D"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(st.status.success(), "pg_ctl stop {}: {}", dir.display(), String::from_utf8_lossy(&st.stderr));
    }

    /// `initdb`s a cluster at `name` and starts it with WAL archived into the repository.
    pub fn cluster(&self, name: &str) -> Cluster {
        self.cluster_with(name, &[], None)
    }

    /// [`Self::cluster`] with more `initdb` arguments (e.g. `--wal-segsize=1`), and, with
    /// `first_segment`, its WAL starting at that segment (`pg_resetwal -l`, before the first
    /// start: e.g. near the end of a 4 GiB logical WAL file, whose boundary the segment
    /// names cross without writing 4 GiB).
    pub fn cluster_with(&self, name: &str, initdb: &[&str], first_segment: Option<&str>) -> Cluster {
        let data = self.path(name);
        let sock = self.path(&format!("{name}.sock"));
        std::fs::create_dir(&sock).expect("socket dir");
        chown(&sock);
        let out = as_postgres(Path::new(PG_BIN).join("initdb"), &self.sb.home())
            .args(["-A", "trust", "-U", "postgres", "--no-sync"])
            .args(initdb)
            .arg("-D")
            .arg(&data)
            .current_dir(self.path(""))
            .output()
            .expect("run initdb");
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        if let Some(seg) = first_segment {
            let out = as_postgres(Path::new(PG_BIN).join("pg_resetwal"), &self.sb.home())
                .args(["-l", seg, "-D"])
                .arg(&data)
                .current_dir(self.path(""))
                .output()
                .expect("run pg_resetwal");
            assert!(out.status.success(), "pg_resetwal: {}", String::from_utf8_lossy(&out.stderr));
        }
        let conf = format!("\nlisten_addresses = ''\nfsync = off\nmax_wal_senders = 4\n{}", self.archive_conf());
        append(&data.join("postgresql.conf"), &conf);
        Cluster::start(self, data, sock)
    }

    /// Turns WAL archiving into the repository (back) on for the data directory `data`
    /// (a restore turns it off).
    pub fn enable_archiving(&self, data: &Path) {
        append(&data.join("postgresql.auto.conf"), &self.archive_conf());
    }

    fn archive_conf(&self) -> String {
        // A file `lose-NAME` in the sandbox makes archiving "succeed" without storing NAME:
        // a WAL segment lost outside Coffer, to test gap detection.
        let archive = format!(
            "test -e {}/lose-%f || env HOME={} COFFER_REPO={} COFFER_PASSWORD='{PASSWORD}' {} pg wal-push %p",
            self.path("").display(),
            self.sb.home().display(),
            self.sb.vault().display(),
            env!("CARGO_BIN_EXE_coffer")
        );
        format!("\narchive_mode = on\narchive_command = '{}'\n", archive.replace('\'', "''"))
    }

    /// Starts a server on an existing (restored) data directory.
    pub fn start(&self, data: PathBuf) -> Cluster {
        let sock = PathBuf::from(format!("{}.sock", data.display()));
        std::fs::create_dir(&sock).expect("socket dir");
        chown(&sock);
        let st = Command::new("chown").arg("-R").arg("postgres:postgres").arg(&data).status().expect("chown");
        assert!(st.success());
        Cluster::start(self, data, sock)
    }
}

fn chown(p: &Path) {
    let st = Command::new("chown").arg("postgres:postgres").arg(p).status().expect("chown");
    assert!(st.success());
}

fn append(p: &Path, text: &str) {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new().append(true).open(p).expect("open conf");
    f.write_all(text.as_bytes()).expect("append conf");
}

/// A running server; stopped on drop.
pub struct Cluster {
    /// Data directory.
    pub data: PathBuf,
    /// Socket directory.
    pub sock: PathBuf,
    home: PathBuf,
    child: Child,
}

impl Cluster {
    fn start(sb: &PgSandbox, data: PathBuf, sock: PathBuf) -> Self {
        let log = std::fs::File::create(format!("{}.log", data.display())).expect("log file");
        let child = as_postgres(Path::new(PG_BIN).join("postgres"), &sb.sb.home())
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(&sock)
            .current_dir(sb.path(""))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start postgres");
        let mut c = Self { data, sock, home: sb.sb.home(), child };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(st)) = c.child.try_wait() {
                panic!("postgres exited ({st}): {}", c.log());
            }
            if c.try_sql("select 1").is_ok_and(|o| o == "1") {
                return c;
            }
            assert!(Instant::now() < deadline, "postgres did not accept connections: {}", c.log());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The server log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(format!("{}.log", self.data.display())).unwrap_or_default()
    }

    fn try_sql(&self, sql: &str) -> Result<String, String> {
        let out = as_postgres(Path::new(PG_BIN).join("psql"), &self.home)
            .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-d", "postgres", "-h"])
            .arg(&self.sock)
            .args(["-c", sql])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Runs SQL, which must succeed; returns the unaligned output.
    #[track_caller]
    pub fn sql(&self, sql: &str) -> String {
        self.try_sql(sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Switches to a new WAL segment and waits until the finished one is archived.
    #[track_caller]
    pub fn switch_and_archive(&self) {
        let seg = self.sql("select pg_walfile_name(pg_switch_wal())");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let last = self.sql("select coalesce(last_archived_wal, '') from pg_stat_archiver");
            if last.as_str() >= seg.as_str() {
                return;
            }
            assert!(Instant::now() < deadline, "segment {seg} not archived: {}", self.log());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until recovery has ended (the server was promoted).
    #[track_caller]
    pub fn wait_promoted(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("restored postgres exited ({st}): {}", self.log());
            }
            if self.try_sql("select pg_is_in_recovery()").is_ok_and(|o| o == "f") {
                return;
            }
            assert!(Instant::now() < deadline, "recovery did not end: {}", self.log());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops the server abruptly (immediate shutdown: no checkpoint, no final archiving),
    /// as a crash would.
    pub fn crash(&mut self) {
        let pid = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::QUIT);
        let _ = self.child.wait();
    }

    /// Environment for `coffer pg backup` to reach this server.
    pub fn env(&self, c: Cmd) -> Cmd {
        c.env("PGHOST", &self.sock).env("PGUSER", "postgres").env("PGDATABASE", "postgres")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // SIGINT: fast shutdown.
        let _ =
            rustix::process::kill_process(rustix::process::Pid::from_child(&self.child), rustix::process::Signal::INT);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
