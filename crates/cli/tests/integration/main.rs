//! Integration tests of the `coffer` binary: the real executable, on real vaults in temporary
//! directories, checked through its stdout, stderr and exit code (no mocks).
//!
//! Every command runs with an empty environment except `HOME`, pointed at the sandbox, so a
//! developer's own `COFFER_*` variables or default vault can never leak in. Time is moved
//! past an expiry with `COFFER_TEST_CLOCK_OFFSET`, which only a debug test build honours
//! (the dev-dependency on `coffer-testkit` enables `coffer-store/test-clock`; a release
//! binary never lets a variable move its clock). A test that needs the clock moved is marked
//! `#[cfg_attr(not(debug_assertions), ignore = "moves the clock …")]`, so that
//! `cargo test --release` lists it as ignored instead of failing it.
//!
//! Tests that need root end in `_as_root` and call `repo_util::require_root`, which fails
//! them for any other user; `.ci/test` run by another user leaves them out and lists them.

#![allow(clippy::disallowed_macros, reason = "test code reports seeds and timings on stderr")]

mod audit;
mod bad_input;
mod cache;
mod daemon_util;
mod default_vault;
mod drill_files;
mod drill_pg;
mod drill_rebuild;
mod drill_schedule;
mod frames;
mod history;
mod json_contract;
mod locks;
mod objects;
mod observe;
mod ops_alert;
mod ops_config;
mod ops_daemon;
mod ops_jobs;
mod ops_ledger;
mod ops_metrics;
mod ops_status;
mod pg_archive;
mod pg_errors;
mod pg_pitr;
mod pg_restore_exact;
mod pg_rogue;
mod pg_stream;
mod pg_tls;
mod pg_util;
mod policy_audit;
mod release_features;
mod repo_cancel;
mod repo_concurrency;
mod repo_crash;
mod repo_errors;
mod repo_hostile;
mod repo_integrity;
mod repo_prune;
mod repo_roundtrip;
mod repo_util;
mod rogue_writer;
mod s3_fault;
mod s3_init;
mod s3_prune;
mod s3_repo;
mod s3_vault;
mod security_alerts;
mod security_canary;
mod security_clock;
mod security_cloudtrail;
mod security_drift;
mod security_s3matrix;
mod security_watch;
mod size_dict;
mod vault_repo;

use serde_json::Value;
use std::ffi::OsStr;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A temporary directory holding a home directory, a vault and input files.
pub struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    /// A new, empty sandbox with a home directory.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("home")).expect("home dir");
        Self { dir }
    }

    /// A sandbox with an initialised vault at [`Sandbox::vault`].
    pub fn with_vault() -> Self {
        let sb = Self::new();
        sb.coffer(["vault", "init"]).arg(sb.vault()).ok();
        sb
    }

    /// A path inside the sandbox.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The sandbox's `HOME`.
    pub fn home(&self) -> PathBuf {
        self.path("home")
    }

    /// Where the tests' explicit vault lives.
    pub fn vault(&self) -> PathBuf {
        self.path("vault")
    }

    /// Writes `data` to a file in the sandbox and returns its path.
    pub fn file(&self, name: &str, data: &[u8]) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, data).expect("write input file");
        p
    }

    /// `coffer ARGS…` with only `HOME` set.
    pub fn coffer<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(&self, args: I) -> Cmd {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_coffer"));
        cmd.env_clear().env("HOME", self.home()).current_dir(self.dir.path()).args(args);
        Cmd { cmd, stdin: None }
    }

    /// `coffer --vault VAULT vault ARGS…`.
    pub fn v<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(&self, args: I) -> Cmd {
        let mut c = self.coffer(["--vault"]);
        c.cmd.arg(self.vault()).arg("vault").args(args);
        c
    }

    /// Stores `data` under `key` with extra put arguments; returns the version id.
    pub fn put(&self, key: &str, data: &[u8], extra: &[&str]) -> String {
        let out = self.v(["put", key, "-"]).args(extra).stdin(data).ok().stdout_text();
        let version = out.trim().to_owned();
        assert_eq!(version.len(), 24, "put prints just the version id, got {out:?}");
        version
    }

    /// The versions listing as JSON items.
    pub fn versions(&self, prefix: &str) -> Vec<Value> {
        let doc = self.v(["versions", prefix, "--json"]).ok().json();
        doc["versions"].as_array().expect("versions array").clone()
    }

    /// The metadata of one version, from the listing.
    pub fn version_meta(&self, key: &str, version: &str) -> Value {
        self.versions(key)
            .into_iter()
            .find(|v| v["key"] == key && v["version"] == version)
            .unwrap_or_else(|| panic!("{key} {version} not listed"))
    }
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

/// A command about to run.
pub struct Cmd {
    cmd: Command,
    stdin: Option<Vec<u8>>,
}

impl Cmd {
    /// Adds an argument.
    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Self {
        self.cmd.arg(a);
        self
    }

    /// Adds arguments.
    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, a: I) -> Self {
        self.cmd.args(a);
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, k: &str, v: impl AsRef<OsStr>) -> Self {
        thread_local!(static NOTED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) });
        if !cfg!(debug_assertions) && k == "COFFER_TEST_CLOCK_OFFSET" && v.as_ref() != "0" && !NOTED.replace(true) {
            // Once per test thread; shown only if the test fails.
            println!(
                "note: this release build ignores COFFER_TEST_CLOCK_OFFSET; a test that needs the clock moved \
                 must be marked #[cfg_attr(not(debug_assertions), ignore = \"moves the clock …\")]"
            );
        }
        self.cmd.env(k, v);
        self
    }

    /// Runs in `dir`.
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.cmd.current_dir(dir);
        self
    }

    /// Feeds `data` on stdin.
    pub fn stdin(mut self, data: &[u8]) -> Self {
        self.stdin = Some(data.to_vec());
        self
    }

    /// Runs to completion.
    pub fn run(mut self) -> Run {
        self.cmd.stdin(if self.stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        self.cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = self.cmd.spawn().expect("spawn coffer");
        if let Some(data) = self.stdin.take() {
            let mut sink = child.stdin.take().expect("stdin");
            std::thread::spawn(move || {
                let _ = sink.write_all(&data);
            });
        }
        let out = child.wait_with_output().expect("wait for coffer");
        Run {
            code: out.status.code(),
            stdout: out.stdout,
            stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
            what: format!("{:?}", self.cmd),
        }
    }

    /// Runs and asserts success.
    #[track_caller]
    pub fn ok(self) -> Run {
        let run = self.run();
        assert_eq!(run.code, Some(0), "{} failed: {}", run.what, run.stderr);
        run
    }

    /// Runs, asserts exit code `code` and a one-line `coffer: error: …` on stderr; returns
    /// that line.
    #[track_caller]
    pub fn fails(self, code: i32) -> String {
        let run = self.run();
        assert_eq!(run.code, Some(code), "{}: expected exit {code}; stderr: {}", run.what, run.stderr);
        assert_eq!(run.stderr.lines().count(), 1, "{}: stderr must be one line: {:?}", run.what, run.stderr);
        assert!(run.stderr.starts_with("coffer: error: "), "{}: {:?}", run.what, run.stderr);
        assert!(run.stderr.ends_with('\n'));
        run.stderr.trim_end().to_owned()
    }
}

/// What a command did.
pub struct Run {
    /// Exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    /// Everything written to stdout.
    pub stdout: Vec<u8>,
    /// Everything written to stderr.
    pub stderr: String,
    what: String,
}

impl Run {
    /// Stdout as text.
    pub fn stdout_text(&self) -> String {
        String::from_utf8(self.stdout.clone()).expect("stdout is UTF-8")
    }

    /// Stdout as exactly one JSON document on one line.
    #[track_caller]
    pub fn json(&self) -> Value {
        let text = self.stdout_text();
        assert_eq!(text.lines().count(), 1, "--json prints one line: {text:?}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: not JSON ({e}): {text:?}", self.what))
    }
}

/// The sorted keys of a JSON object, to pin output shapes.
pub fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().expect("a JSON object").keys().map(String::as_str).collect();
    k.sort_unstable();
    k
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[3]
        })
        .collect()
}

/// Parses an RFC 3339 time from JSON.
pub fn ts(v: &Value) -> jiff::Timestamp {
    v.as_str().unwrap_or_else(|| panic!("not a time: {v}")).parse().expect("RFC 3339 time")
}

/// Whether `path` exists.
pub fn exists(path: &Path) -> bool {
    path.try_exists().expect("stat")
}
