//! Real S3 servers for the tests, started by the tests: moto (plumbing, SigV4, IAM) and
//! LocalStack (the Object Lock oracle), each as a child process on a free 127.0.0.1 port,
//! from the virtualenvs `.ci/s3-venv.sh` installs (`$COFFER_S3_VENV`, default
//! `~/.cache/coffer/s3-venv`). A server is stopped (its whole process group) when its
//! [`S3Server`] is dropped.
//!
//! A server that is not installed fails the test that needs it, with a message naming the
//! command that installs it (`bash .ci/s3-venv.sh`): a test never passes by running nothing.
//! `.ci/test` installs the servers before it runs the suite.
//!
//! [`S3Harness`] is the contract suite's harness for `S3Store`: a fresh Object Lock bucket
//! per harness and one `S3Store` per role. It cannot move the server's clock, so the suite
//! skips its `needs_clock` checks. Each server's known differences from AWS's documented
//! behaviour are listed as named [`Quirk`]s ([`MOTO_QUIRKS`], [`LOCALSTACK_QUIRKS`]); the
//! tests probe that each quirk is really there (so the list stays true) and run the whole
//! contract suite through `S3Store`, which enforces those rules itself. Only a quirk that
//! `S3Store` cannot work around may name contract checks it breaks, and the tests demand
//! that exactly those checks fail — the contract itself is never weakened.

use crate::contract::StoreHarness;
use coffer_store::{
    AuditEntry, Clock, Credentials, ObjectStore, Principal, Role, S3Credentials, S3Location, S3Options, S3Store, Secret,
};
use jiff::Timestamp;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Which server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerKind {
    /// moto 5.2.5 (`moto_server`).
    Moto,
    /// LocalStack (`localstack-core` 2026.3.0, S3 only, host mode).
    LocalStack,
}

impl ServerKind {
    /// Lowercase name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Moto => "moto",
            Self::LocalStack => "localstack",
        }
    }

    /// The server's documented quirks.
    #[must_use]
    pub fn quirks(self) -> &'static [Quirk] {
        match self {
            Self::Moto => MOTO_QUIRKS,
            Self::LocalStack => LOCALSTACK_QUIRKS,
        }
    }
}

/// A named, documented difference between a server and AWS's documented S3 behaviour.
#[derive(Clone, Copy, Debug)]
pub struct Quirk {
    /// Short name (used in test output and `docs/s3-compatibility.md`).
    pub name: &'static str,
    /// What the server does, and what AWS does instead.
    pub what: &'static str,
    /// How `S3Store` copes.
    pub coffer: &'static str,
    /// Contract checks this quirk makes fail even through `S3Store` (empty when `S3Store`
    /// enforces the rule itself).
    pub breaks: &'static [&'static str],
    /// Contract checks this quirk makes fail only with some timings (e.g. when two
    /// requests fall within the same second of a server that keeps whole seconds): either
    /// outcome is accepted, and the quirk itself is probed deterministically elsewhere.
    pub may_break: &'static [&'static str],
}

/// moto 5.2.5's known differences from AWS (each probed by the tests).
pub const MOTO_QUIRKS: &[Quirk] = &[
    Quirk {
        name: "compliance-can-be-shortened",
        what: "PutObjectRetention shortens an active compliance retention (AWS: AccessDenied)",
        coffer: "S3Store reads the current retention first and refuses (Locked) any shortening",
        breaks: &[],
        may_break: &[],
    },
    Quirk {
        name: "compliance-can-become-governance",
        what: "PutObjectRetention turns an active compliance retention into governance (AWS: AccessDenied)",
        coffer: "S3Store refuses (Locked) any change of an active compliance retention but an extension",
        breaks: &[],
        may_break: &[],
    },
    Quirk {
        name: "no-get-object-retention",
        what: "GetObjectRetention answers with the object's body instead of the retention",
        coffer: "S3Store reads retention and legal hold from HeadObject's lock headers",
        breaks: &[],
        may_break: &[],
    },
    Quirk {
        name: "versioning-can-be-suspended-on-a-lock-bucket",
        what: "PutBucketVersioning Suspended succeeds on a bucket with Object Lock (AWS: InvalidBucketState)",
        coffer: "S3Store refuses to suspend versioning (InvalidRequest) without asking the server",
        breaks: &[],
        may_break: &[],
    },
    Quirk {
        name: "marker-version-get-is-not-found",
        what: "GetObject of a delete marker's version id answers 404 NoSuchVersion (AWS: 405 MethodNotAllowed with x-amz-delete-marker)",
        coffer: "on a 404 for a version, S3Store looks the version up in the version listing and reports InvalidRequest for a marker",
        breaks: &[],
        may_break: &[],
    },
    Quirk {
        name: "lock-config-needs-an-empty-bucket",
        what: "PutObjectLockConfiguration on a bucket that holds objects fails with InvalidBucket \"Bucket needs to be empty\" (AWS: allowed at any time)",
        coffer: "none possible: the default retention of a used bucket cannot be changed on moto",
        breaks: &["default_retention_applies_when_none_is_given", "lock_config_cannot_be_disabled", "access_matrix"],
        may_break: &[],
    },
    Quirk {
        name: "versions-and-markers-not-interleaved",
        what: "ListObjectVersions lists every Version before every DeleteMarker, not one newest-first sequence per key, with whole-second LastModified",
        coffer: "S3Store orders a key's versions and markers by LastModified; within one second the order is the server's, so a version and a marker of one key made in the same second may be listed out of order",
        breaks: &[],
        may_break: &["delete_adds_a_marker_and_removes_nothing"],
    },
    Quirk {
        name: "multipart-lock-headers-ignored",
        what: "CompleteMultipartUpload stores the object without the lock headers given to CreateMultipartUpload (AWS: the version carries them)",
        coffer: "S3Store checks every put with HeadObject; a multipart version found without its lock gets it with PutObjectRetention (and PutObjectLegalHold), then is checked again",
        breaks: &[],
        may_break: &[],
    },
    Quirk {
        name: "get-bucket-versioning-unparseable",
        what: "GetBucketVersioning's reply has an XML root the AWS SDK for Rust rejects",
        coffer: "none possible: the status cannot be read, so versioning() fails with Io on moto",
        breaks: &["versioning_cannot_be_suspended", "attack_matrix"],
        may_break: &[],
    },
];

/// LocalStack 2026.3.0's known differences from AWS (each probed by the tests).
pub const LOCALSTACK_QUIRKS: &[Quirk] = &[
    Quirk {
        name: "past-retain-until-accepted",
        what: "PutObject accepts a retain-until date in the past (AWS: InvalidArgument)",
        coffer: "S3Store refuses a retain-until not in the future (InvalidRequest) before sending",
        breaks: &[],
        may_break: &[],
    },
    Quirk {
        name: "lock-headers-on-a-plain-bucket",
        what: "PutObject with lock headers succeeds on a bucket without Object Lock (AWS: InvalidRequest)",
        coffer: "`coffer vault init` checks the bucket's lock configuration; every put is verified by HeadObject",
        breaks: &[],
        may_break: &[],
    },
    Quirk {
        name: "versions-and-markers-not-interleaved",
        what: "ListObjectVersions lists every DeleteMarker before every Version, not one newest-first sequence per key, with whole-second LastModified",
        coffer: "S3Store orders a key's versions and markers by LastModified; within one second the order is the server's, so a version and a marker of one key made in the same second may be listed out of order",
        breaks: &[],
        may_break: &[],
    },
    Quirk {
        name: "no-auth",
        what: "checks no signatures, IAM or bucket policies: any key may do anything",
        coffer: "S3Store checks the role itself (Principal::authorize); IAM is tested on moto",
        breaks: &[],
        may_break: &[],
    },
];

/// Where `.ci/s3-venv.sh` installs the servers.
#[must_use]
pub fn venv_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("COFFER_S3_VENV").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".cache/coffer/s3-venv")
}

/// A running S3 server; stopped on drop.
#[derive(Debug)]
pub struct S3Server {
    kind: ServerKind,
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    /// Services besides S3 (LocalStack only).
    services: &'static [&'static str],
}

impl S3Server {
    /// Starts `kind` on a free loopback port and waits until it serves S3.
    ///
    /// # Panics
    /// When the server is not installed (the message names the command that installs it),
    /// or fails to start or become ready.
    #[must_use]
    pub fn start(kind: ServerKind) -> Self {
        Self::start_services(kind, &[])
    }

    /// Starts LocalStack serving SQS and EventBridge besides S3 (`SERVICES=s3,sqs,events`),
    /// for the CloudTrail watch's tests: S3 behaves as with [`Self::start`]. Runs from the
    /// `localstack-events` environment (the same LocalStack with moto-ext, which its
    /// EventBridge needs; `.ci/s3-venv.sh`).
    ///
    /// # Panics
    /// As [`Self::start`] (the message names the command that installs that environment).
    #[must_use]
    pub fn start_with_events() -> Self {
        Self::start_services(ServerKind::LocalStack, &["sqs", "events"])
    }

    fn start_services(kind: ServerKind, extra: &'static [&'static str]) -> Self {
        let venv = venv_dir();
        let program = match kind {
            ServerKind::Moto => venv.join("moto/bin/moto_server"),
            ServerKind::LocalStack if !extra.is_empty() => venv.join("localstack-events/bin/python"),
            ServerKind::LocalStack => venv.join("localstack/bin/python"),
        };
        assert!(
            program.exists(),
            "the S3 test server {} is not installed ({} is missing): `bash .ci/s3-venv.sh` installs it \
             (`.ci/test` installs every test dependency and runs the suite)",
            kind.name(),
            program.display()
        );
        let port = free_port();
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let log = std::fs::File::create(dir.path().join("server.log")).expect("create the server log");
        let mut cmd = Command::new(&program);
        match kind {
            ServerKind::Moto => {
                cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
            }
            ServerKind::LocalStack => {
                let volume = dir.path().join("volume");
                std::fs::create_dir_all(&volume).expect("create the localstack volume");
                cmd.args(["-m", "localstack.runtime.main"])
                    .env("GATEWAY_LISTEN", format!("127.0.0.1:{port}"))
                    .env("LOCALSTACK_HOST", format!("127.0.0.1:{port}"))
                    .env("SERVICES", std::iter::once("s3").chain(extra.iter().copied()).collect::<Vec<_>>().join(","))
                    .env("EAGER_SERVICE_LOADING", "1")
                    .env("GATEWAY_SERVER", "hypercorn")
                    .env("DISABLE_EVENTS", "1")
                    .env("SKIP_SSL_CERT_DOWNLOAD", "1")
                    .env("DNS_ADDRESS", "0")
                    .env("LOCALSTACK_VOLUME_DIR", &volume)
                    .env("TMPDIR", dir.path());
            }
        }
        {
            use std::os::unix::process::CommandExt as _;
            // Its own process group, so that drop stops every process it started.
            cmd.process_group(0);
        }
        let child = cmd
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let mut server = Self { kind, child, port, dir, services: extra };
        server.wait_ready(Duration::from_secs(90));
        server
    }

    fn wait_ready(&mut self, timeout: Duration) {
        let start = Instant::now();
        let (path, ready): (&str, fn(u16, &str) -> bool) = match self.kind {
            ServerKind::Moto => ("/moto-api/", |status, _| status == 200),
            ServerKind::LocalStack => ("/_localstack/health", |status, body| {
                status == 200 && (body.contains("\"s3\": \"running\"") || body.contains("\"s3\":\"running\""))
            }),
        };
        let others_ready = |body: &str| {
            self.services.iter().all(|s| {
                body.contains(&format!("\"{s}\": \"running\"")) || body.contains(&format!("\"{s}\":\"running\""))
            })
        };
        while start.elapsed() < timeout {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited with {status} before it was ready; its log:\n{}", self.kind.name(), self.log());
            }
            if let Some((status, body)) = http_get(self.port, path) {
                if ready(status, &body) && others_ready(&body) {
                    return;
                }
                if let Some(s) = self.services.iter().find(|s| body.contains(&format!("\"{s}\": \"error\""))) {
                    panic!("{} cannot serve {s}; its log:\n{}", self.kind.name(), self.log());
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{} not ready after {timeout:?}; its log:\n{}", self.kind.name(), self.log());
    }

    /// Which server this is.
    #[must_use]
    pub fn kind(&self) -> ServerKind {
        self.kind
    }

    /// `http://127.0.0.1:PORT`.
    #[must_use]
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The loopback port.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's output so far.
    #[must_use]
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// A location in `bucket` (under `prefix`) on this server.
    #[must_use]
    pub fn location(&self, bucket: &str, prefix: &str) -> S3Location {
        let mut loc = S3Location::new(bucket, prefix);
        loc.endpoint = Some(self.endpoint());
        loc.region = Some("us-east-1".into());
        loc.path_style = true;
        loc
    }

    /// The `s3://` URL of `bucket`/`prefix` on this server.
    #[must_use]
    pub fn url(&self, bucket: &str, prefix: &str) -> String {
        format!("s3://{bucket}/{prefix}?endpoint={}&region=us-east-1", self.endpoint())
    }

    /// An `S3Store` on `bucket` acting as `role` with that role's test credentials.
    ///
    /// # Panics
    /// If the store cannot be opened.
    #[must_use]
    pub fn store(&self, bucket: &str, prefix: &str, role: Role) -> S3Store {
        S3Store::connect(&S3Options {
            location: self.location(bucket, prefix),
            credentials: S3Credentials::Static(test_credentials(self.kind, role)),
            principal: Principal { name: format!("s3-{role}"), role },
            multipart: coffer_store::s3::Multipart::default(),
        })
        .expect("open an S3 store")
    }

    /// As [`S3Server::store`], sending objects larger than `multipart.threshold` in parts.
    ///
    /// # Panics
    /// If the store cannot be opened.
    #[must_use]
    pub fn store_with(
        &self,
        bucket: &str,
        prefix: &str,
        role: Role,
        multipart: coffer_store::s3::Multipart,
    ) -> S3Store {
        S3Store::connect(&S3Options {
            location: self.location(bucket, prefix),
            credentials: S3Credentials::Static(test_credentials(self.kind, role)),
            principal: Principal { name: format!("s3-{role}"), role },
            multipart,
        })
        .expect("open an S3 store")
    }

    /// Creates a fresh Object Lock bucket (no default retention) named `PREFIX-RANDOM`.
    ///
    /// # Panics
    /// If the bucket cannot be created.
    #[must_use]
    pub fn new_bucket(&self, prefix: &str) -> String {
        let mut nonce = [0u8; 4];
        getrandom::fill(&mut nonce).expect("random source");
        let bucket = format!("{prefix}-{}", nonce.iter().map(|b| format!("{b:02x}")).collect::<String>());
        self.store(&bucket, "", Role::Admin)
            .create_bucket(None)
            .unwrap_or_else(|e| panic!("create bucket {bucket}: {e}"));
        bucket
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let pid = i32::try_from(self.child.id()).ok().and_then(rustix::process::Pid::from_raw);
        if let Some(pid) = pid {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::TERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if matches!(self.child.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The test access key of `role` on `kind`. Without auth both servers accept any key;
/// LocalStack maps keys that look like neither an account id nor an AWS key to its default
/// account, so every role sees the same buckets.
#[must_use]
pub fn test_credentials(kind: ServerKind, role: Role) -> Credentials {
    let _ = kind;
    Credentials { access_key: format!("coffer-{role}"), secret_key: Secret::new(format!("secret-of-{role}")) }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port");
    l.local_addr().expect("local address").port()
}

/// A minimal HTTP/1.0 GET on 127.0.0.1: status and body, or `None` when nothing answers.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    Some((status, body))
}

/// The contract harness for `S3Store`: a fresh Object Lock bucket on a running server and
/// one store per role.
#[derive(Debug)]
pub struct S3Harness {
    bucket: String,
    stores: Vec<S3Store>,
    clock: Clock,
}

impl S3Harness {
    /// A fresh bucket on `server` and a store per role.
    #[must_use]
    pub fn new(server: &S3Server) -> Self {
        let bucket = server.new_bucket("coffer-contract");
        let stores = Role::ALL.iter().map(|&r| server.store(&bucket, "", r)).collect();
        Self { bucket, stores, clock: Clock::system() }
    }

    /// The bucket under test.
    #[must_use]
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The store acting as `role`.
    #[must_use]
    pub fn store(&self, role: Role) -> &S3Store {
        let i = Role::ALL.iter().position(|&r| r == role).expect("every role has a store");
        &self.stores[i]
    }
}

impl StoreHarness for S3Harness {
    fn handle(&self, role: Role) -> Box<dyn ObjectStore> {
        Box::new(self.store(role).clone())
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    fn can_move_clock(&self) -> bool {
        false
    }

    fn advance(&self, _by: Duration) {
        panic!("an S3 server keeps its own time: the harness cannot move it");
    }

    fn audit_log_as(&self, _role: Role, _after: u64) -> Option<coffer_store::Result<Vec<AuditEntry>>> {
        None
    }
}
