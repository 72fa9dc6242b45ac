//! A real SMTP server for email alert tests: `aiosmtpd` (Debian `python3-aiosmtpd`) run by
//! `smtp_sink.py` on 127.0.0.1, writing each message it receives to a directory.

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The running SMTP sink (stopped when dropped).
pub struct SmtpSink {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl SmtpSink {
    /// Starts the sink.
    ///
    /// # Panics
    /// When python3 or aiosmtpd is missing (naming the install command), or it does not start.
    #[must_use]
    pub fn start() -> Self {
        // Debian's package installs for the system's python3, which a pyenv shim may hide.
        let python = ["/usr/bin/python3", "python3"]
            .into_iter()
            .find(|py| {
                Command::new(py)
                    .args(["-c", "import aiosmtpd"])
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            })
            .expect("aiosmtpd is missing: apt-get install python3-aiosmtpd (or run .ci/test, which installs it)");
        let dir = tempfile::tempdir().expect("temp dir");
        let script = dir.path().join("smtp_sink.py");
        std::fs::write(&script, include_str!("smtp_sink.py")).expect("write the script");
        let out = dir.path().join("mail");
        std::fs::create_dir(&out).expect("mail dir");
        let mut child = Command::new(python)
            .arg(&script)
            .arg(&out)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start python3 smtp_sink.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("read READY");
        let port = line
            .strip_prefix("READY ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("smtp_sink.py did not start: {line:?}"));
        Self { child, port, dir }
    }

    /// The port on 127.0.0.1.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Waits until at least `n` messages arrived (at most `timeout`); each message's raw text
    /// (first line: `FROM RCPT,RCPT`), in arrival order.
    #[must_use]
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.messages();
            if got.len() >= n || Instant::now() >= deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The login names the server accepted (its authenticator records no password).
    #[must_use]
    pub fn logins(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("mail/logins"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The messages so far.
    #[must_use]
    pub fn messages(&self) -> Vec<String> {
        let mail = self.dir.path().join("mail");
        let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(&mail)
            .expect("mail dir")
            .filter_map(|e| {
                let p = e.ok()?.path();
                let n = p.file_name()?.to_str()?.strip_suffix(".eml")?.parse().ok()?;
                Some((n, p))
            })
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|(_, p)| String::from_utf8_lossy(&std::fs::read(p).expect("read mail")).into_owned())
            .collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
