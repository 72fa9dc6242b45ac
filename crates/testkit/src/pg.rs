//! A throwaway PostgreSQL 15 server for tests: `initdb` into a sandbox as the `postgres`
//! user (via `setpriv`, see shared/notes/postgres.md), unix socket only (or also 127.0.0.1,
//! with or without TLS, [`PgSandbox::cluster_tcp`], its certificate signed by a throwaway CA
//! made with `openssl`, [`PgSandbox::test_ca`]), WAL archived by an `archive_command` the
//! test chooses (the CLI's tests: `coffer pg wal-push`; library tests: none). Dropping a [`Cluster`] stops its server; dropping the [`PgSandbox`] removes the
//! files.
//!
//! Tests that use it run as root and end in `_as_root` (the server runs as `postgres`);
//! [`require_postgres`] fails — never passes — where PostgreSQL 15 is missing, naming the
//! command that installs it.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian's PostgreSQL 15 lives.
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// The command that installs [`PG_BIN`].
pub const INSTALL_POSTGRES: &str = "apt-get install postgresql-15";

/// The suffix of the names of tests that need root.
pub const AS_ROOT: &str = "_as_root";

/// Fails the calling test unless it runs as root (the server runs as the `postgres` user),
/// its name ends in [`AS_ROOT`], and PostgreSQL 15 is installed; the message names the
/// command that installs it. A missing server is a failure, never a pass.
#[track_caller]
pub fn require_postgres() {
    let thread = std::thread::current();
    let name = thread.name().unwrap_or("");
    assert!(
        name.ends_with(AS_ROOT),
        "{name}: a test that needs root must have a name ending in `{AS_ROOT}` (so that runs by other users leave it out)"
    );
    assert!(
        rustix::process::geteuid().is_root(),
        "{name} needs root to run PostgreSQL as the postgres user: run it as root (`.ci/test`, run by another user, \
         leaves out the tests whose names end in `{AS_ROOT}` and lists them as skipped)"
    );
    assert!(
        Path::new(PG_BIN).join("postgres").is_file(),
        "PostgreSQL 15 is not installed ({PG_BIN}/postgres is missing): `{INSTALL_POSTGRES}` installs it \
         (`.ci/test` installs every test dependency and runs the suite)"
    );
}

/// `PROGRAM` as the `postgres` user with `HOME`.
pub fn as_postgres(program: impl AsRef<OsStr>, home: &Path) -> Command {
    let mut c = Command::new("setpriv");
    c.args(["--reuid=postgres", "--regid=postgres", "--init-groups", "env"])
        .arg(format!("HOME={}", home.display()))
        .arg(program);
    c
}

/// A directory owned by `postgres` where servers are created, and the `archive_command`
/// they get.
pub struct PgSandbox {
    root: PathBuf,
    home: PathBuf,
    archive_command: Option<String>,
    _tmp: Option<tempfile::TempDir>,
}

impl PgSandbox {
    /// A new temporary sandbox, handed to `postgres`, whose servers archive nothing.
    ///
    /// # Panics
    /// When the directory cannot be created or handed over.
    #[must_use]
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().expect("temporary directory");
        let root = tmp.path().to_path_buf();
        let home = root.join("home");
        std::fs::create_dir_all(&home).expect("home");
        let mut s = Self::in_dir(root, home, None);
        s._tmp = Some(tmp);
        s
    }

    /// A sandbox in `root` (with `home` as the servers' `HOME`), both handed to `postgres`,
    /// whose servers run `archive_command` (PostgreSQL's `%p`/`%f` placeholders).
    ///
    /// # Panics
    /// When the directory cannot be handed over.
    #[must_use]
    pub fn in_dir(root: PathBuf, home: PathBuf, archive_command: Option<String>) -> Self {
        let st = Command::new("chown").arg("-R").arg("postgres:postgres").arg(&root).status().expect("chown");
        assert!(st.success());
        Self { root, home, archive_command, _tmp: None }
    }

    /// This sandbox, whose servers (created from now on) run `archive_command`.
    #[must_use]
    pub fn with_archive_command(mut self, archive_command: impl Into<String>) -> Self {
        self.archive_command = Some(archive_command.into());
        self
    }

    /// A path in the sandbox.
    #[must_use]
    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// The servers' `HOME`.
    #[must_use]
    pub fn home(&self) -> PathBuf {
        self.home.clone()
    }

    /// Runs `sql` on the server whose socket is in `dir` (as `coffer pg restore --start`
    /// starts one); stdout, trimmed.
    ///
    /// # Panics
    /// When `psql` cannot run.
    pub fn psql_at(&self, dir: &Path, sql: &str) -> String {
        let out = as_postgres(Path::new(PG_BIN).join("psql"), &self.home)
            .args(["-X", "-A", "-t", "-d", "postgres", "-h"])
            .arg(dir)
            .args(["-c", sql])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Stops (immediately) the server running on `dir`.
    ///
    /// # Panics
    /// When `pg_ctl` fails.
    pub fn stop_immediate(&self, dir: &Path) {
        let st = as_postgres(Path::new(PG_BIN).join("pg_ctl"), &self.home)
            .args(["stop", "-m", "immediate", "-D"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(st.status.success(), "pg_ctl stop {}: {}", dir.display(), String::from_utf8_lossy(&st.stderr));
    }

    /// `initdb`s a cluster at `name` and starts it.
    #[must_use]
    pub fn cluster(&self, name: &str) -> Cluster {
        self.cluster_with(name, &[], None)
    }

    /// [`Self::cluster`] with more `initdb` arguments (e.g. `--wal-segsize=1`), and, with
    /// `first_segment`, its WAL starting at that segment (`pg_resetwal -l`, before the first
    /// start: e.g. near the end of a 4 GiB logical WAL file, whose boundary the segment
    /// names cross without writing 4 GiB).
    ///
    /// # Panics
    /// When `initdb`, `pg_resetwal` or the server fail.
    #[must_use]
    pub fn cluster_with(&self, name: &str, initdb: &[&str], first_segment: Option<&str>) -> Cluster {
        let data = self.path(name);
        let sock = self.path(&format!("{name}.sock"));
        std::fs::create_dir(&sock).expect("socket dir");
        chown(&sock);
        let out = as_postgres(Path::new(PG_BIN).join("initdb"), &self.home)
            .args(["-A", "trust", "-U", "postgres", "--no-sync"])
            .args(initdb)
            .arg("-D")
            .arg(&data)
            .current_dir(&self.root)
            .output()
            .expect("run initdb");
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        if let Some(seg) = first_segment {
            let out = as_postgres(Path::new(PG_BIN).join("pg_resetwal"), &self.home)
                .args(["-l", seg, "-D"])
                .arg(&data)
                .current_dir(&self.root)
                .output()
                .expect("run pg_resetwal");
            assert!(out.status.success(), "pg_resetwal: {}", String::from_utf8_lossy(&out.stderr));
        }
        let conf = format!("\nlisten_addresses = ''\nfsync = off\nmax_wal_senders = 4\n{}", self.archive_conf());
        append(&data.join("postgresql.conf"), &conf);
        Cluster::start(self, data, sock, DEFAULT_PORT)
    }

    /// A cluster that also listens on 127.0.0.1 (a free port, [`Cluster::port`]), with
    /// `ssl = on` and `tls`'s server certificate when given (TLS on TCP only, as
    /// PostgreSQL offers it). `initdb -A trust` lets `postgres` in from 127.0.0.1, for
    /// queries and replication.
    ///
    /// # Panics
    /// When `initdb` or the server fail.
    #[must_use]
    pub fn cluster_tcp(&self, name: &str, tls: Option<&TestCa>) -> Cluster {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("port").port();
        let mut c = self.cluster_with(name, &[], None);
        let ssl = match tls {
            Some(t) => format!(
                "ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n",
                t.server_cert.display(),
                t.server_key.display()
            ),
            None => "ssl = off\n".to_owned(),
        };
        append(&c.data.join("postgresql.conf"), &format!("\nlisten_addresses = '127.0.0.1'\nport = {port}\n{ssl}"));
        let (data, sock) = (c.data.clone(), c.sock.clone());
        c.stop();
        Cluster::start(self, data, sock, port)
    }

    /// A throwaway CA (in `DIR/ca.pem`) and a server certificate it signed for `localhost`
    /// and 127.0.0.1 (`DIR/server.pem`, key `DIR/server.key`, owned by `postgres`), made with
    /// the `openssl` command in the sandbox's `name` directory.
    ///
    /// # Panics
    /// When `openssl` fails.
    #[must_use]
    pub fn test_ca(&self, name: &str) -> TestCa {
        let dir = self.path(name);
        std::fs::create_dir_all(&dir).expect("CA dir");
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .stdin(Stdio::null())
                .output()
                .unwrap_or_else(|e| panic!("cannot run openssl ({e}): `apt-get install openssl` installs it"));
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        let ca_args = ["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Coffer test CA"];
        openssl(&[&["req", "-x509"], &ec[..], &ca_args[..]].concat());
        std::fs::write(
            dir.join("ext.cnf"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
        )
        .expect("ext.cnf");
        openssl(
            &[&["req", "-new"], &ec[..], &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]]
                .concat(),
        );
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ]);
        let key = dir.join("server.key");
        chown(&key);
        chown(&dir.join("server.pem"));
        TestCa { ca: dir.join("ca.pem"), server_cert: dir.join("server.pem"), server_key: key }
    }

    /// Turns WAL archiving (back) on for the data directory `data` (a restore turns it off).
    pub fn enable_archiving(&self, data: &Path) {
        append(&data.join("postgresql.auto.conf"), &self.archive_conf());
    }

    fn archive_conf(&self) -> String {
        match &self.archive_command {
            Some(cmd) => format!("\narchive_mode = on\narchive_command = '{}'\n", cmd.replace('\'', "''")),
            None => String::new(),
        }
    }

    /// Starts a server on an existing (restored) data directory.
    ///
    /// # Panics
    /// When it does not start.
    #[must_use]
    pub fn start(&self, data: PathBuf) -> Cluster {
        let sock = PathBuf::from(format!("{}.sock", data.display()));
        std::fs::create_dir(&sock).expect("socket dir");
        chown(&sock);
        let st = Command::new("chown").arg("-R").arg("postgres:postgres").arg(&data).status().expect("chown");
        assert!(st.success());
        Cluster::start(self, data, sock, DEFAULT_PORT)
    }
}

impl Default for PgSandbox {
    fn default() -> Self {
        Self::new()
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

/// PostgreSQL's default port (the clusters on sockets only use it: their socket
/// directories differ).
pub const DEFAULT_PORT: u16 = 5432;

/// A throwaway CA and a server certificate it signed ([`PgSandbox::test_ca`]).
pub struct TestCa {
    /// The CA's certificate (PEM): what `sslrootcert` names.
    pub ca: PathBuf,
    /// The server's certificate (PEM), for `localhost` and 127.0.0.1.
    pub server_cert: PathBuf,
    /// Its private key, owned by `postgres`, mode 0600.
    pub server_key: PathBuf,
}

/// A running server; stopped on drop.
pub struct Cluster {
    /// Data directory.
    pub data: PathBuf,
    /// Socket directory.
    pub sock: PathBuf,
    /// The port (in the socket's name, and on 127.0.0.1 for [`PgSandbox::cluster_tcp`]).
    pub port: u16,
    home: PathBuf,
    child: Child,
}

impl Cluster {
    fn start(sb: &PgSandbox, data: PathBuf, sock: PathBuf, port: u16) -> Self {
        let log = std::fs::File::create(format!("{}.log", data.display())).expect("log file");
        let child = as_postgres(Path::new(PG_BIN).join("postgres"), &sb.home)
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(&sock)
            .current_dir(&sb.root)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start postgres");
        let mut c = Self { data, sock, port, home: sb.home.clone(), child };
        let deadline = Instant::now() + crate::WAIT;
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
    #[must_use]
    pub fn log(&self) -> String {
        std::fs::read_to_string(format!("{}.log", self.data.display())).unwrap_or_default()
    }

    /// Runs SQL; the unaligned output, or psql's error.
    ///
    /// # Errors
    /// psql's stderr when it fails.
    pub fn try_sql(&self, sql: &str) -> Result<String, String> {
        let out = as_postgres(Path::new(PG_BIN).join("psql"), &self.home)
            .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-d", "postgres", "-h"])
            .arg(&self.sock)
            .args(["-p", &self.port.to_string(), "-c", sql])
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
        let deadline = Instant::now() + crate::WAIT;
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
        let deadline = Instant::now() + crate::WAIT;
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

    /// The libpq environment that reaches this server (`PGHOST`, `PGUSER`, `PGDATABASE`).
    #[must_use]
    pub fn client_env(&self) -> Vec<(&'static str, OsString)> {
        let mut env = vec![
            ("PGHOST", self.sock.clone().into()),
            ("PGUSER", "postgres".into()),
            ("PGDATABASE", "postgres".into()),
        ];
        if self.port != DEFAULT_PORT {
            env.push(("PGPORT", self.port.to_string().into()));
        }
        env
    }

    /// A libpq connection string that reaches this server.
    #[must_use]
    pub fn conninfo(&self) -> String {
        let port = if self.port == DEFAULT_PORT { String::new() } else { format!(" port={}", self.port) };
        format!("host={}{port} user=postgres dbname=postgres", self.sock.display())
    }

    /// A libpq connection string that reaches this server over TCP (127.0.0.1), for a
    /// [`PgSandbox::cluster_tcp`].
    #[must_use]
    pub fn tcp_conninfo(&self) -> String {
        format!("host=127.0.0.1 port={} user=postgres dbname=postgres", self.port)
    }

    /// Stops the server (fast shutdown) and waits for it.
    pub fn stop(&mut self) {
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

impl Drop for Cluster {
    fn drop(&mut self) {
        // SIGINT: fast shutdown.
        self.stop();
    }
}
