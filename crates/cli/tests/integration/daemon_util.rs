//! A real `coffer daemon` for the end-to-end tests: started on a policy file with the
//! sandbox's HOME and the test password, its log (stderr, `COFFER_LOG=debug`) in a file,
//! stopped with SIGTERM — and SIGKILLed on drop, so a failing assertion never leaves one
//! running.

use crate::repo_util::{PASSWORD, Repo};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `coffer daemon`, killed on drop.
pub struct Daemon {
    child: Option<Child>,
    log: PathBuf,
}

impl Daemon {
    /// `coffer --config CONFIG daemon` with `env` added, logging to `log`; returns once the
    /// log shows `ready` (signals sent before the handlers are installed would kill it
    /// outright).
    #[track_caller]
    pub fn start(repo: &Repo, config: &Path, log: PathBuf, env: &[(&str, String)], ready: &str) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_coffer"));
        cmd.env_clear()
            .env("HOME", repo.sb.home())
            .env("COFFER_PASSWORD", PASSWORD)
            .env("COFFER_LOG", "debug")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .arg("--config")
            .arg(config)
            .arg("daemon")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("daemon log"));
        let child = cmd.spawn().expect("spawn coffer daemon");
        let d = Self { child: Some(child), log };
        d.wait_for(60, &format!("the daemon to log {ready:?}"), || d.log().contains(ready));
        d
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its process id.
    pub fn pid(&self) -> rustix::process::Pid {
        let id = self.child.as_ref().expect("running").id();
        rustix::process::Pid::from_raw(i32::try_from(id).unwrap()).unwrap()
    }

    /// Sends `sig`.
    pub fn signal(&self, sig: rustix::process::Signal) {
        rustix::process::kill_process(self.pid(), sig).expect("signal the daemon");
    }

    /// Waits up to `secs` (or [`coffer_testkit::WAIT`] if longer: a loaded machine stretches
    /// every step, and the deadline only catches a daemon that never gets there) for `cond`,
    /// failing with `what` and the daemon's log.
    #[track_caller]
    pub fn wait_for(&self, secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs).max(coffer_testkit::WAIT);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}; daemon log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends SIGTERM, waits for a clean exit (0) and returns the log.
    #[track_caller]
    pub fn stop(mut self) -> String {
        self.signal(rustix::process::Signal::TERM);
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + coffer_testkit::WAIT;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                let log = self.log();
                assert_eq!(status.code(), Some(0), "daemon exit after SIGTERM; log:\n{log}");
                return log;
            }
            assert!(Instant::now() < deadline, "daemon did not stop after SIGTERM; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
