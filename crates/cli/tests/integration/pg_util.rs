//! The `pg_*` tests' sandbox: a CLI [`Sandbox`] with a repository, and the test kit's
//! PostgreSQL 15 servers (`coffer_testkit::pg`) in it, whose `archive_command` is this
//! build's `coffer pg wal-push` into that repository.
//!
//! Every `coffer` command of these tests runs as `postgres` too, so the vault it creates is
//! writable by `archive_command` and readable by `restore_command`.

use crate::{Cmd, Sandbox};
pub use coffer_testkit::pg::{Cluster, as_postgres, require_postgres};
use std::path::PathBuf;

/// The repository password of these tests.
pub const PASSWORD: &str = "pg test password";

/// A sandbox owned by `postgres`, with a repository at [`Sandbox::vault`]; the test kit's
/// server harness (`cluster`, `start`, `psql_at`, …) through `Deref`.
pub struct PgSandbox {
    /// The sandbox.
    pub sb: Sandbox,
    servers: coffer_testkit::pg::PgSandbox,
}

impl std::ops::Deref for PgSandbox {
    type Target = coffer_testkit::pg::PgSandbox;

    fn deref(&self) -> &Self::Target {
        &self.servers
    }
}

impl PgSandbox {
    /// A new sandbox, handed to `postgres`, with `coffer init` done.
    pub fn new() -> Self {
        let sb = Sandbox::new();
        // A file `lose-NAME` in the sandbox makes archiving "succeed" without storing NAME:
        // a WAL segment lost outside Coffer, to test gap detection.
        let archive = format!(
            "test -e {}/lose-%f || env HOME={} COFFER_REPO={} COFFER_PASSWORD='{PASSWORD}' {} pg wal-push %p",
            sb.path("").display(),
            sb.home().display(),
            sb.vault().display(),
            env!("CARGO_BIN_EXE_coffer")
        );
        let servers = coffer_testkit::pg::PgSandbox::in_dir(sb.path(""), sb.home(), Some(archive));
        let s = Self { sb, servers };
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
}

/// `coffer pg backup`/`stream` reaching a test server.
pub trait PgEnv {
    /// `c` with the libpq environment that reaches this server.
    fn env(&self, c: Cmd) -> Cmd;
}

impl PgEnv for Cluster {
    fn env(&self, mut c: Cmd) -> Cmd {
        for (k, v) in self.client_env() {
            c = c.env(k, v);
        }
        c
    }
}
