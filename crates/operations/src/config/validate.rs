//! The rules of a policy file beyond its types, checked after serde: references between
//! tables, names, paths, secrets, URLs, addresses, zones and limits.
//!
//! Invariants guarded here:
//! - **Nothing dangles.** A source's repository, a route's targets and sources, a heartbeat's
//!   job exist; a typo is an error at load, not a job that silently never runs or an alert
//!   that silently goes nowhere.
//! - **Secrets only by reference.** A password inside a PostgreSQL connection string is
//!   refused; a [`SecretRef`](super::SecretRef) names exactly one of a file or a variable.
//! - **Every error points at the key or value at fault** (`FILE:LINE:COL`, or the `COFFER_*`
//!   variable that set it), found in the parsed document by its key path. When several
//!   rules are broken, the first in the file is reported.

use super::load::{Doc, Part, Places};
use super::{Config, EmailTarget, SecretRef, SmtpTls, VerifyJob};
use crate::config::ConfigError;
use coffer_repository::{KeepRules, ReadData};
use std::fmt;
use std::ops::Range;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

/// How much pack data a scheduled verify reads (`read-data` of `[repositories.NAME.verify]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadDataSpec {
    /// `"all"`: every pack.
    All,
    /// `"N%"`: a random N percent of the packs, 0 < N <= 100.
    Percent(u8),
}

impl Config {
    /// Refuses a policy with nothing to run: the daemon and `config check` ask this; a file
    /// that only names repositories (for `coffer ledger --repository`, `coffer status`) is
    /// otherwise valid.
    ///
    /// # Errors
    /// [`ConfigError::File`].
    pub fn require_jobs(&self) -> Result<(), ConfigError> {
        if crate::jobs::jobs(self).is_empty() {
            return Err(ConfigError::File {
                path: self.path.clone().unwrap_or_default(),
                message: "no jobs: declare at least one source ([files.NAME] or [postgres.NAME]), a repository's verify or prune, or leave its security watch on".into(),
            });
        }
        Ok(())
    }
}

impl ReadDataSpec {
    /// Parses `all` or `N%` (0 < N <= 100).
    ///
    /// # Errors
    /// What is allowed.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad =
            || format!("invalid read-data {text:?}: expected \"all\" or a percentage such as \"10%\" (1% to 100%)");
        if text == "all" {
            return Ok(Self::All);
        }
        let n: u8 = text.strip_suffix('%').and_then(|n| n.parse().ok()).ok_or_else(bad)?;
        if n == 0 || n > 100 {
            return Err(bad());
        }
        Ok(Self::Percent(n))
    }

    /// What the verify library reads.
    #[must_use]
    pub fn read_data(self) -> ReadData {
        match self {
            Self::All | Self::Percent(100) => ReadData::All,
            Self::Percent(n) => ReadData::Subset(f64::from(n) / 100.0),
        }
    }
}

impl FromStr for ReadDataSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s)
    }
}

impl fmt::Display for ReadDataSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => f.write_str("all"),
            Self::Percent(n) => write!(f, "{n}%"),
        }
    }
}

impl VerifyJob {
    /// The job's `read-data`, typed: `None` reads structure only. A loaded [`Config`] has
    /// been validated, so a value that does not parse cannot reach here; on a hand-built
    /// one it is also `None`.
    #[must_use]
    pub fn read_data_spec(&self) -> Option<ReadDataSpec> {
        self.read_data.as_deref().and_then(|t| ReadDataSpec::parse(t).ok())
    }

    /// What the verify library reads (`read` of [`coffer_repository::verify()`]).
    #[must_use]
    pub fn reads(&self) -> ReadData {
        self.read_data_spec().map_or(ReadData::None, ReadDataSpec::read_data)
    }
}

/// A broken rule, at a span of the document.
struct Problem {
    span: Option<Range<usize>>,
    message: String,
}

struct Checker<'d, 'a, 'i> {
    doc: &'d Doc<'a, 'i>,
    problems: Vec<Problem>,
}

impl Checker<'_, '_, '_> {
    fn at(&mut self, path: &[&str], part: Part, message: impl Into<String>) {
        self.problems.push(Problem { span: self.doc.span(path, part), message: message.into() });
    }

    fn name(&mut self, path: &[&str], what: &str) {
        let name = path.last().copied().unwrap_or_default();
        if !valid_name(name) {
            self.at(
                path,
                Part::Key,
                format!(
                    "invalid {what} name {name:?}: a name is lowercase letters, digits, `-` and `_`, starting with a letter or digit"
                ),
            );
        }
    }

    fn absolute(&mut self, path: &[&str], p: &Path, what: &str) {
        if !p.is_absolute() {
            self.at(path, Part::Value, format!("{what} must be an absolute path, not {:?}", p.display().to_string()));
        }
    }

    fn secret(&mut self, path: &[&str], s: &SecretRef) {
        match (&s.file, &s.env) {
            (Some(file), None) => {
                let mut p = path.to_vec();
                p.push("file");
                self.absolute(&p, file, "a secret's file");
            }
            (None, Some(var)) => {
                if !valid_env_name(var) {
                    let mut p = path.to_vec();
                    p.push("env");
                    self.at(&p, Part::Value, format!("invalid environment variable name {var:?}"));
                }
            }
            _ => self.at(
                path,
                Part::Value,
                "a secret is referenced by exactly one of `file` or `env`: `{ file = \"/etc/coffer/secret\" }` or `{ env = \"VAR\" }`",
            ),
        }
    }

    fn positive(&mut self, path: &[&str], d: Option<Duration>, what: &str) {
        if d.is_some_and(|d| d.is_zero()) {
            self.at(path, Part::Value, format!("{what} must be longer than zero"));
        }
    }

    fn http_url(&mut self, path: &[&str], text: &str) {
        match url::Url::parse(text) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            Ok(u) => self.at(
                path,
                Part::Value,
                format!("the URL must be http:// or https:// with a host, not {}://…", u.scheme()),
            ),
            Err(e) => self.at(path, Part::Value, format!("not a URL ({e}); expected e.g. https://example.com/hook")),
        }
    }

    fn retention(&mut self, path: &[&str], k: &KeepRules) {
        let sub = |key: &'static str| {
            let mut p = path.to_vec();
            p.push(key);
            p
        };
        self.positive(&sub("retain"), k.retain, "retain");
        self.positive(&sub("keep-within"), k.within, "keep-within");
    }
}

/// `[a-z0-9][a-z0-9_-]*`: names appear in job ids (`NAME/KIND`), metric labels, file names
/// and override variables.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

fn valid_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `user@domain` or `Name <user@domain>`.
fn looks_like_address(text: &str) -> bool {
    let addr = match (text.find('<'), text.strip_suffix('>')) {
        (Some(i), Some(inner)) => &inner[i + 1..],
        (None, None) => text,
        _ => return false,
    };
    match addr.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !addr.chars().any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>')
        }
        None => false,
    }
}

/// Whether a libpq connection string carries a password: a `password=` keyword, or a URI
/// with a password or a `password` parameter.
fn connection_has_password(conn: &str) -> bool {
    let lower = conn.to_ascii_lowercase();
    if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
        return match url::Url::parse(conn) {
            Ok(u) => u.password().is_some() || u.query_pairs().any(|(k, _)| k.eq_ignore_ascii_case("password")),
            // Unparsable: look for the keyword anyway rather than let a password through.
            Err(_) => lower.contains("password") || lower.contains(':') && lower.contains('@'),
        };
    }
    let mut rest = lower.as_str();
    while let Some(i) = rest.find("password") {
        let before_ok = i == 0 || rest[..i].ends_with(|c: char| c.is_whitespace());
        let after = rest[i + "password".len()..].trim_start();
        if before_ok && after.starts_with('=') {
            return true;
        }
        rest = &rest[i + 1..];
    }
    false
}

/// Checks every rule; the first broken one in the file is the error.
pub(super) fn validate(c: &Config, doc: &Doc<'_, '_>, places: &Places<'_>) -> Result<(), ConfigError> {
    let mut k = Checker { doc, problems: Vec::new() };

    // [daemon]
    let d = &c.daemon;
    if d.max_concurrent_jobs < 1 {
        k.at(&["daemon", "max-concurrent-jobs"], Part::Value, "max-concurrent-jobs must be at least 1");
    }
    if let Some(dir) = &d.state_dir {
        k.absolute(&["daemon", "state-dir"], dir, "state-dir");
    }
    if let Some(tz) = &d.timezone {
        if jiff::tz::TimeZone::get(tz).is_err() {
            k.at(
                &["daemon", "timezone"],
                Part::Value,
                format!("unknown time zone {tz:?}: expected an IANA name such as \"Europe/Paris\" or \"UTC\""),
            );
        }
    }
    k.positive(&["daemon", "default-timeout"], Some(d.default_timeout), "default-timeout");

    // [repositories.NAME]
    for (name, r) in &c.repositories {
        let base = ["repositories", name.as_str()];
        k.name(&base, "repository");
        if let Some(loc) = &r.location {
            let at = ["repositories", name, "location"];
            match coffer_store::StoreLocation::parse(loc) {
                Ok(coffer_store::StoreLocation::Local(dir)) => k.absolute(&at, &dir, "a local repository location"),
                Ok(coffer_store::StoreLocation::S3(l)) if l.prefix.starts_with(crate::security::RESERVED_PREFIX) => k.at(
                    &at,
                    Part::Value,
                    format!(
                        "the prefix {:?} is reserved for Coffer's security objects (the canary, the drift baseline); \
                         choose another",
                        crate::security::RESERVED_PREFIX
                    ),
                ),
                Ok(_) => {}
                Err(e) => k.at(&at, Part::Value, e.to_string()),
            }
        }
        if let Some(pw) = &r.password {
            k.secret(&["repositories", name, "password"], pw);
        }
        if let Some(f) = &r.key_file {
            k.absolute(&["repositories", name, "key-file"], f, "key-file");
        }
        for (role, file) in &r.credentials {
            let at = ["repositories", name, "credentials", role.as_str()];
            match role.parse::<coffer_store::Role>() {
                Ok(coffer_store::Role::Admin) | Err(_) => k.at(
                    &at,
                    Part::Key,
                    format!("unknown role {role:?} for credentials: the daemon's jobs run as writer, pruner, reader or auditor"),
                ),
                Ok(_) => k.absolute(&at, file, "a credentials file"),
            }
        }
        if let Some(v) = &r.verify {
            if let Some(t) = &v.read_data {
                if let Err(e) = ReadDataSpec::parse(t) {
                    k.at(&["repositories", name, "verify", "read-data"], Part::Value, e);
                }
            }
            k.positive(&["repositories", name, "verify", "timeout"], v.timeout, "timeout");
        }
        if let Some(p) = &r.prune {
            k.positive(&["repositories", name, "prune", "timeout"], p.timeout, "timeout");
        }
        if let Some(b) = &r.rebuild {
            k.positive(&["repositories", name, "rebuild", "rto-target"], b.rto_target, "rto-target");
            k.positive(&["repositories", name, "rebuild", "timeout"], b.timeout, "timeout");
            if let Some(dir) = &b.scratch {
                k.absolute(&["repositories", name, "rebuild", "scratch"], dir, "the rebuild's scratch root");
            }
            if b.run_as.as_deref().is_some_and(|u| u.is_empty() || u.contains(char::is_whitespace)) {
                k.at(&["repositories", name, "rebuild", "run-as"], Part::Value, "run-as must be a user name");
            }
        }
        let sec = &r.security;
        let at = |key: &'static str| ["repositories", name.as_str(), "security", key];
        k.positive(&at("poll-interval"), Some(sec.poll_interval), "poll-interval");
        k.positive(&at("drift-interval"), Some(sec.drift_interval), "drift-interval");
        k.positive(&["repositories", name, "security", "canary", "timeout"], Some(sec.canary.timeout), "timeout");
        if let Some(ct) = &sec.cloudtrail {
            // Not parsed as a URL: LocalStack's queue URLs (`http://sqs.REGION.127.0.0.1:PORT/…`)
            // have a host the URL parser takes for a malformed IPv4 address.
            if !(ct.queue_url.starts_with("https://") || ct.queue_url.starts_with("http://")) {
                k.at(
                    &["repositories", name, "security", "cloudtrail", "queue-url"],
                    Part::Value,
                    "queue-url must be the http(s) URL of an SQS queue".to_owned(),
                );
            }
            if let Some(f) = &ct.credentials {
                k.absolute(&["repositories", name, "security", "cloudtrail", "credentials"], f, "a credentials file");
            }
        }
    }

    // A source's repository is declared (or the embedded default).
    let repo_declared = |k: &mut Checker<'_, '_, '_>, kind: &str, name: &str, repository: &str| {
        if c.repository(repository).is_some() {
            return;
        }
        let mut names: Vec<&str> = c.repositories.keys().map(String::as_str).collect();
        if !names.contains(&super::DEFAULT_REPOSITORY) {
            names.push(super::DEFAULT_REPOSITORY);
        }
        k.at(
            &[kind, name, "repository"],
            Part::Value,
            format!(
                "repository {repository:?} is not declared: declare [repositories.{repository}] or use one of: {}",
                names.join(", ")
            ),
        );
    };

    // [files.NAME]
    for (name, s) in &c.files {
        k.name(&["files", name], "source");
        repo_declared(&mut k, "files", name, &s.repository);
        if s.paths.is_empty() {
            k.at(&["files", name, "paths"], Part::Value, "paths is empty: name at least one file or directory");
        }
        for (i, p) in s.paths.iter().enumerate() {
            let i = i.to_string();
            k.absolute(&["files", name, "paths", &i], p, "a backed-up path");
        }
        k.positive(&["files", name, "timeout"], s.timeout, "timeout");
        k.retention(&["files", name, "retention"], &s.retention);
        if let Some(d) = &s.drill {
            // [files.NAME.drill] (`docs/drills.md`, "The files drill").
            let at = |key: &'static str| ["files", name.as_str(), "drill", key];
            if d.sample == Some(0) {
                k.at(
                    &at("sample"),
                    Part::Value,
                    "sample must be at least 1 (files to restore and check); leave it out to check every file",
                );
            }
            k.positive(&at("rto-target"), d.rto_target, "rto-target");
            if let Some(dir) = &d.scratch {
                k.absolute(&at("scratch"), dir, "scratch");
            }
            k.positive(&at("timeout"), d.timeout, "timeout");
        }
    }

    // [postgres.NAME]
    for (name, s) in &c.postgres {
        k.name(&["postgres", name], "source");
        if c.files.contains_key(name) {
            k.at(
                &["postgres", name],
                Part::Key,
                format!("source name {name:?} is also used by [files.{name}]: source names are unique across [files] and [postgres]"),
            );
        }
        repo_declared(&mut k, "postgres", name, &s.repository);
        if let Some(conn) = &s.connection {
            if connection_has_password(conn) {
                k.at(
                    &["postgres", name, "connection"],
                    Part::Value,
                    "a password in the connection string is refused (secrets only by reference): put it in a password file named by PGPASSFILE, or in ~/.pgpass",
                );
            }
        }
        if let Some(spool) = &s.spool {
            k.absolute(&["postgres", name, "spool"], spool, "spool");
        }
        if let Some(slot) = &s.slot {
            if slot.is_empty()
                || slot.len() > 63
                || !slot.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                k.at(
                    &["postgres", name, "slot"],
                    Part::Value,
                    format!("invalid replication slot name {slot:?}: lowercase letters, digits and `_`, at most 63"),
                );
            }
        }
        if s.check_interval < Duration::from_secs(1) {
            k.at(&["postgres", name, "check-interval"], Part::Value, "check-interval must be at least 1s");
        }
        k.positive(&["postgres", name, "archive-lag-alert"], Some(s.archive_lag_alert), "archive-lag-alert");
        k.positive(&["postgres", name, "base-backup", "timeout"], s.base_backup.timeout, "timeout");
        k.retention(&["postgres", name, "retention"], &s.retention);
        if let Some(d) = &s.drill {
            postgres_drill(&mut k, name, d);
        }
    }

    // [alerts]: target names share one namespace (routes name targets by name alone).
    let a = &c.alerts;
    let mut targets: Vec<(&str, &str)> = Vec::new();
    for (kind, names) in [
        ("webhook", a.webhook.keys().collect::<Vec<_>>()),
        ("email", a.email.keys().collect()),
        ("command", a.command.keys().collect()),
        ("heartbeat", a.heartbeat.keys().collect()),
    ] {
        for name in names {
            k.name(&["alerts", kind, name], "target");
            if let Some((other, _)) = targets.iter().find(|(_, n)| n == name) {
                k.at(
                    &["alerts", kind, name],
                    Part::Key,
                    format!("target name {name:?} is also used by [alerts.{other}.{name}]: target names are unique across kinds"),
                );
            }
            targets.push((kind, name));
        }
    }
    for (name, w) in &a.webhook {
        k.http_url(&["alerts", "webhook", name, "url"], &w.url);
        if let Some(s) = &w.secret {
            k.secret(&["alerts", "webhook", name, "secret"], s);
        }
        k.positive(&["alerts", "webhook", name, "timeout"], Some(w.timeout), "timeout");
    }
    for (name, e) in &a.email {
        email(&mut k, name, e);
    }
    for (name, cmd) in &a.command {
        if cmd.command.first().is_none_or(String::is_empty) {
            k.at(
                &["alerts", "command", name, "command"],
                Part::Value,
                "command is empty: [\"/path/to/program\", \"arg\", …]",
            );
        }
        k.positive(&["alerts", "command", name, "timeout"], Some(cmd.timeout), "timeout");
    }
    let jobs = crate::jobs::jobs(c);
    for (name, h) in &a.heartbeat {
        k.http_url(&["alerts", "heartbeat", name, "url"], &h.url);
        if let Some(job) = &h.job {
            if !jobs.iter().any(|j| &j.id == job) {
                let ids: Vec<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
                k.at(
                    &["alerts", "heartbeat", name, "job"],
                    Part::Value,
                    format!("no job {job:?} in this file (jobs: {})", ids.join(", ")),
                );
            }
        }
        k.positive(&["alerts", "heartbeat", name, "interval"], Some(h.interval), "interval");
        k.positive(&["alerts", "heartbeat", name, "timeout"], Some(h.timeout), "timeout");
    }
    k.positive(&["alerts", "repeat-interval"], Some(a.repeat_interval), "repeat-interval");
    for (i, r) in a.route.iter().enumerate() {
        let i = i.to_string();
        if r.targets.is_empty() {
            k.at(&["alerts", "route", &i, "targets"], Part::Value, "a route needs at least one target");
        }
        for (j, t) in r.targets.iter().enumerate() {
            if !targets.iter().any(|(_, n)| n == t) {
                let known: Vec<&str> = targets.iter().map(|(_, n)| *n).collect();
                k.at(
                    &["alerts", "route", &i, "targets", &j.to_string()],
                    Part::Value,
                    format!(
                        "no alert target {t:?} (declare [alerts.webhook.{t}], [alerts.email.{t}], …; targets: {})",
                        if known.is_empty() { "none".to_owned() } else { known.join(", ") }
                    ),
                );
            }
        }
        for (j, s) in r.sources.iter().enumerate() {
            let known = c.files.contains_key(s) || c.postgres.contains_key(s) || c.repository(s).is_some();
            if !known {
                k.at(
                    &["alerts", "route", &i, "sources", &j.to_string()],
                    Part::Value,
                    format!("no source or repository {s:?} in this file"),
                );
            }
        }
    }

    if let Some(p) = k.problems.into_iter().min_by_key(|p| p.span.as_ref().map_or(0, |s| s.start)) {
        return Err(places.error(p.span, &p.message));
    }
    let _ = jobs;
    Ok(())
}

fn email(k: &mut Checker<'_, '_, '_>, name: &str, e: &EmailTarget) {
    if e.server.is_empty() || e.server.contains(|c: char| c.is_whitespace() || c == '/') {
        k.at(&["alerts", "email", name, "server"], Part::Value, "server is an SMTP host name or address");
    }
    if e.tls == SmtpTls::None && !matches!(e.server.as_str(), "localhost" | "127.0.0.1" | "::1") {
        k.at(
            &["alerts", "email", name, "tls"],
            Part::Value,
            "tls = \"none\" is only for a relay on this host (server = \"localhost\"): use \"starttls\" or \"tls\"",
        );
    }
    if let Some(pw) = &e.password {
        k.secret(&["alerts", "email", name, "password"], pw);
    }
    if !looks_like_address(&e.from) {
        k.at(&["alerts", "email", name, "from"], Part::Value, format!("{:?} is not an email address", e.from));
    }
    if e.to.is_empty() {
        k.at(&["alerts", "email", name, "to"], Part::Value, "to is empty: name at least one recipient");
    }
    for (i, t) in e.to.iter().enumerate() {
        if !looks_like_address(t) {
            k.at(
                &["alerts", "email", name, "to", &i.to_string()],
                Part::Value,
                format!("{t:?} is not an email address"),
            );
        }
    }
    k.positive(&["alerts", "email", name, "timeout"], Some(e.timeout), "timeout");
}

/// `[postgres.NAME.drill]`: a positive RTO target, an absolute scratch directory, a
/// run-as user, and SQL checks with unique names and a query.
fn postgres_drill(k: &mut Checker<'_, '_, '_>, name: &str, d: &super::PostgresDrill) {
    let at = |key: &'static str| ["postgres", name, "drill", key];
    k.positive(&at("rto-target"), d.rto_target, "rto-target");
    k.positive(&at("timeout"), d.timeout, "timeout");
    if let Some(p) = &d.scratch {
        k.absolute(&at("scratch"), p, "scratch");
    }
    if d.run_as.as_deref().is_some_and(|u| u.trim().is_empty()) {
        k.at(&at("run-as"), Part::Value, "run-as is empty: name the user the server runs as (default postgres)");
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, c) in d.check.iter().enumerate() {
        let i = i.to_string();
        let path = |key: &'static str| ["postgres", name, "drill", "check", i.as_str(), key];
        if c.name.is_empty() || !c.name.chars().all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch)) {
            k.at(
                &path("name"),
                Part::Value,
                format!("invalid check name {:?}: letters, digits, `-`, `_` and `.`", c.name),
            );
        } else if !seen.insert(c.name.as_str()) {
            k.at(&path("name"), Part::Value, format!("check name {:?} is used twice in this drill", c.name));
        }
        if c.query.trim().is_empty() {
            k.at(&path("query"), Part::Value, "query is empty");
        }
        if c.database.as_deref().is_some_and(str::is_empty) {
            k.at(&path("database"), Part::Value, "database is empty (leave it out for postgres)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_data_specs() {
        assert_eq!(ReadDataSpec::parse("all"), Ok(ReadDataSpec::All));
        assert_eq!(ReadDataSpec::parse("10%"), Ok(ReadDataSpec::Percent(10)));
        assert_eq!(ReadDataSpec::parse("100%"), Ok(ReadDataSpec::Percent(100)));
        for bad in ["0%", "101%", "10", "ten%", "", "-5%", "2.5%"] {
            assert!(ReadDataSpec::parse(bad).is_err(), "{bad}");
        }
        assert!(matches!(ReadDataSpec::Percent(10).read_data(), ReadData::Subset(f) if (f - 0.1).abs() < 1e-9));
        assert_eq!(ReadDataSpec::Percent(7).to_string(), "7%");
    }

    #[test]
    fn passwords_in_connection_strings() {
        for bad in [
            "host=db password=x",
            "password = x host=db",
            "host=db PASSWORD=x",
            "postgresql://u:secret@db/app",
            "postgres://u@db/app?password=x",
        ] {
            assert!(connection_has_password(bad), "{bad}");
        }
        for ok in [
            "host=db user=app passfile=/etc/coffer/pgpass",
            "postgresql://u@db/app?sslmode=require",
            "host=/run/postgresql",
        ] {
            assert!(!connection_has_password(ok), "{ok}");
        }
    }

    #[test]
    fn addresses_and_names() {
        assert!(looks_like_address("ops@example.com"));
        assert!(looks_like_address("Coffer <coffer@example.com>"));
        for bad in ["ops", "ops@", "@example.com", "a b@example.com", "Coffer <x@y", "a@b@c"] {
            assert!(!looks_like_address(bad), "{bad}");
        }
        assert!(valid_name("home") && valid_name("db-1") && valid_name("0_x"));
        assert!(
            !valid_name("Home") && !valid_name("-x") && !valid_name("") && !valid_name("a.b") && !valid_name("a/b")
        );
    }
}
