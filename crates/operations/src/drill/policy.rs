//! The policy file stored in the repository (ledger kind [`crate::ledger::POLICY`], body
//! [`PolicyRecord`]): what lets a rebuild start from the repository alone.
//!
//! Writing: [`record_policy`] queues a record in the local outbox for every repository the
//! policy uses — when its text differs from the one last recorded for that repository, or
//! when the last record is older than [`REFRESH`] — and the daemon's flusher (or
//! `coffer config store`) appends it as the writer. The daemon calls it at start, on reload
//! and at its housekeeping; what was last recorded per repository is kept in the state's kv
//! under [`kv_key`].
//!
//! Reading: [`stored_policy`] returns the newest record of the chain that holds: the ledger
//! has authenticated it, but its body is still hostile (the writer's key can write any
//! body), so it is bounded ([`MAX_POLICY_BYTES`]), its hash must match its text, and the
//! text must parse as a policy file; any other record is reported, never a crash.
//!
//! Invariants guarded here:
//! - **The ledger always holds a policy record while the repository is used**: ledger
//!   records are locked until the repository's retention ceiling and then pruned, so the
//!   record is renewed every [`REFRESH`] (30 days, well within the 90-day ceiling) even
//!   when the file does not change.
//! - **No secret is stored**: what is stored is the effective policy (after `COFFER_*`
//!   overrides and with every default spelled out) as `coffer config show` prints it
//!   ([`policy_text`], through [`crate::config::redacted`]): secrets are only references
//!   ([`crate::config::SecretRef`]), webhook URLs lose their userinfo and query, heartbeat
//!   URLs (a ping URL is a credential) keep only their origin.

use super::PolicyRecord;
use crate::config::Config;
use crate::ledger::{LedgerError, POLICY};
use crate::state::{State, StateError};
use coffer_repository::{Id, LedgerProblem, LedgerProblemKind, Repository};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

/// The largest policy text read back (1 MiB): a policy file is a few kilobytes; a bigger
/// body is an attack on the reader, not a policy.
pub const MAX_POLICY_BYTES: usize = 1 << 20;

/// How old the last record of a repository may get before it is recorded again although
/// the file did not change (30 days).
pub const REFRESH: Duration = Duration::from_secs(30 * 24 * 3600);

/// The state kv key of what was last recorded for `repository`.
#[must_use]
pub fn kv_key(repository: &str) -> String {
    format!("policy-recorded:{repository}")
}

/// What the state keeps of the last policy record queued for a repository.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Last {
    hash: String,
    recorded: Timestamp,
}

impl PolicyRecord {
    /// The format version this build writes.
    pub const VERSION: u32 = 1;

    /// A record of `toml` for `repository`, made at `now`.
    #[must_use]
    pub fn new(repository: &str, toml: &str, now: Timestamp) -> Self {
        let hash = hash(toml);
        // Unique per record: the same text recorded again (the refresh) is a new record.
        let id = Id::hash(format!("{hash} {repository} {now}").as_bytes()).to_string()[..32].to_owned();
        Self {
            version: Self::VERSION,
            id,
            hash,
            repository: repository.to_owned(),
            recorded: now,
            toml: toml.to_owned(),
        }
    }

    /// Checks a record read back (bounded size, the hash matches the text, the repository
    /// name is sane) and parses its text as a policy file.
    ///
    /// # Errors
    /// What is wrong, one line.
    pub fn config(&self) -> Result<Config, String> {
        if self.version > Self::VERSION {
            return Err(format!("policy record format {} is newer than this coffer reads", self.version));
        }
        if self.toml.len() > MAX_POLICY_BYTES {
            return Err(format!(
                "policy text of {} bytes is over the {} bytes a policy record may hold",
                self.toml.len(),
                MAX_POLICY_BYTES
            ));
        }
        if hash(&self.toml) != self.hash {
            return Err("policy record whose hash does not match its text".to_owned());
        }
        if self.repository.is_empty() || self.repository.len() > 200 {
            return Err("policy record without a usable repository name".to_owned());
        }
        let shown = format!("policy record {}", self.id.chars().take(16).collect::<String>());
        let config = Config::parse(&self.toml, Path::new(&shown)).map_err(|e| e.to_string())?;
        Ok(config)
    }
}

/// The text stored for `config`: its effective values, redacted, as TOML (which parses
/// back as a policy file).
///
/// # Errors
/// The serializer's, one line (a configuration the schema describes always serializes).
pub fn policy_text(config: &Config) -> Result<String, String> {
    toml::to_string(&crate::config::redacted(config)).map_err(|e| e.to_string())
}

/// BLAKE3 of `text`, hex.
#[must_use]
pub fn hash(text: &str) -> String {
    Id::hash(text.as_bytes()).to_string()
}

/// Queues the policy's record for every repository `config` uses whose last record (kept
/// in `state`) has another hash or is older than [`REFRESH`] at `now`; returns the
/// repositories queued (to flush).
///
/// # Errors
/// [`StateError`]; what was queued before the error stays queued.
pub fn record_policy(state: &State, config: &Config, host: &str, now: Timestamp) -> Result<Vec<String>, StateError> {
    let text = match policy_text(config) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "cannot render the policy to store it in the repository");
            return Ok(Vec::new());
        }
    };
    let text = text.as_str();
    if text.len() > MAX_POLICY_BYTES {
        tracing::warn!(bytes = text.len(), "the policy file is too large to be stored in the repository");
        return Ok(Vec::new());
    }
    let digest = hash(text);
    let mut queued = Vec::new();
    for name in crate::jobs::used_repositories(config) {
        let key = kv_key(&name);
        let last = state.get(&key)?.and_then(|v| serde_json::from_str::<Last>(&v).ok());
        let fresh = last.as_ref().is_some_and(|l| {
            l.hash == digest
                && l.recorded <= now
                && Duration::try_from(now.duration_since(l.recorded)).is_ok_and(|age| age < REFRESH)
        });
        if fresh {
            continue;
        }
        let record = PolicyRecord::new(&name, text, now);
        let body = serde_json::to_value(&record).expect("a policy record serialises");
        state.record_other(&name, POLICY, host, &body)?;
        let last = Last { hash: digest.clone(), recorded: now };
        state.set(&key, &serde_json::to_string(&last).expect("serialises"))?;
        tracing::info!(repository = %name, policy_hash = %digest, record = %record.id,
            "policy file queued for the repository's ledger");
        queued.push(name);
    }
    Ok(queued)
}

/// Queues the policy's record for each of `repositories` now, changed or not (`coffer
/// config store`: a host without a daemon, or a record wanted at once), and keeps it as the
/// last recorded; returns the records queued.
///
/// # Errors
/// [`PolicyStoreError`]: a policy that does not render, a text over
/// [`MAX_POLICY_BYTES`], the state.
pub fn record_policy_now(
    state: &State,
    config: &Config,
    host: &str,
    now: Timestamp,
    repositories: &[String],
) -> Result<Vec<PolicyRecord>, PolicyStoreError> {
    let text = policy_text(config).map_err(PolicyStoreError::Render)?;
    let text = text.as_str();
    if text.len() > MAX_POLICY_BYTES {
        return Err(PolicyStoreError::TooLarge { bytes: text.len() });
    }
    let mut out = Vec::new();
    for name in repositories {
        let record = PolicyRecord::new(name, text, now);
        let body = serde_json::to_value(&record).expect("a policy record serialises");
        state.record_other(name, POLICY, host, &body)?;
        let last = Last { hash: record.hash.clone(), recorded: now };
        state.set(&kv_key(name), &serde_json::to_string(&last).expect("serialises"))?;
        out.push(record);
    }
    Ok(out)
}

/// Why the policy could not be queued by hand.
#[derive(Debug, thiserror::Error)]
pub enum PolicyStoreError {
    /// The policy does not render as TOML.
    #[error("cannot render the policy: {0}")]
    Render(String),
    /// The file is too large to store.
    #[error("the policy file is {bytes} bytes, over the {MAX_POLICY_BYTES} bytes a policy record may hold")]
    TooLarge {
        /// Its size.
        bytes: usize,
    },
    /// The local state failed.
    #[error(transparent)]
    State(#[from] StateError),
}

impl PolicyStoreError {
    /// The class of this error.
    #[must_use]
    pub fn class(&self) -> coffer_store::ErrorClass {
        match self {
            Self::Render(_) | Self::TooLarge { .. } => coffer_store::ErrorClass::Invalid,
            Self::State(e) => e.class(),
        }
    }
}

/// Policy records with their ledger ids, in chain order.
pub type Policies = Vec<(Id, PolicyRecord)>;

/// Every policy record of `repo`'s ledger that holds (see [`PolicyRecord::config`]), in
/// chain order, and every problem: the chain's, and policy records that do not hold
/// ([`LedgerProblemKind::BadBody`], [`LedgerProblemKind::NewerFormat`]).
///
/// # Errors
/// Store errors other than damage.
pub fn read_policies(repo: &Repository) -> Result<(Policies, Vec<LedgerProblem>), LedgerError> {
    let view = repo.ledger()?;
    let mut problems = view.problems;
    let mut out = Vec::new();
    for e in view.entries.iter().filter(|e| e.record.kind == POLICY) {
        match crate::ledger::parse_body(repo, e) {
            Ok(crate::ledger::Body::Policy(r)) => match r.config() {
                Ok(_) => out.push((e.id, *r)),
                Err(why) => problems.push(LedgerProblem {
                    kind: LedgerProblemKind::BadBody,
                    object: repo.ledger_key(&e.id),
                    message: format!("an authentic policy record that does not hold: {}", clip(&why)),
                }),
            },
            Ok(_) => {}
            Err(p) => problems.push(p),
        }
    }
    Ok((out, problems))
}

/// The newest policy record of `repo`'s ledger that holds, with the problems met (records
/// passed over, damage to the chain); none when the ledger holds none.
///
/// # Errors
/// Store errors other than damage.
pub fn stored_policy_with_problems(
    repo: &Repository,
) -> Result<(Option<PolicyRecord>, Vec<LedgerProblem>), LedgerError> {
    let (all, problems) = read_policies(repo)?;
    Ok((all.into_iter().last().map(|(_, r)| r), problems))
}

/// The newest policy record of `repo`'s ledger that holds (records that do not are
/// logged and passed over); none when the ledger holds none.
///
/// # Errors
/// Store errors other than damage.
pub fn stored_policy(repo: &Repository) -> Result<Option<PolicyRecord>, LedgerError> {
    let (newest, problems) = stored_policy_with_problems(repo)?;
    for p in &problems {
        tracing::warn!(object = %p.object, problem = ?p.kind, "{}", p.message);
    }
    Ok(newest)
}

/// At most 300 characters of a message quoting hostile text.
fn clip(s: &str) -> String {
    let one: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).take(300).collect();
    one
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_store::Clock;

    const POLICY_A: &str = "[repositories.main]\nlocation = \"/srv/vault\"\n\n[files.home]\nrepository = \"main\"\npaths = [\"/home\"]\nschedule = \"daily\"\n";
    const POLICY_B: &str = "[repositories.main]\nlocation = \"/srv/vault\"\n\n[files.etc]\nrepository = \"main\"\npaths = [\"/etc\"]\nschedule = \"daily\"\n";

    fn setup() -> (tempfile::TempDir, Clock, Repository, State) {
        let tmp = tempfile::tempdir().unwrap();
        let clock = Clock::manual("2030-01-01T00:00:00Z".parse().unwrap());
        let (repo, _) = crate::test_util::vault_repo(tmp.path(), &clock);
        let state = State::open(&tmp.path().join("state")).unwrap();
        (tmp, clock, repo, state)
    }

    fn config(text: &str) -> Config {
        Config::parse(text, Path::new("coffer.toml")).unwrap()
    }

    fn append(repo: &Repository, r: &PolicyRecord) {
        repo.append_ledger_as("h1", POLICY, &serde_json::to_value(r).unwrap()).unwrap();
    }

    /// The stored text is the effective policy, redacted, and parses back to the same
    /// sources; a heartbeat URL (a credential) and a webhook's query token are not in it.
    #[test]
    fn drill_rebuild_the_stored_text_is_the_redacted_policy_and_hashes() {
        let with_secrets = format!(
            "{POLICY_A}\n[alerts.webhook.ops]\nurl = \"https://hooks.example.com/x?token=s3cr3t-token\"\n\n\
             [alerts.heartbeat.hc]\nurl = \"https://hc-ping.example.com/ping-uuid-s3cr3t\"\n"
        );
        let text = policy_text(&config(&with_secrets)).unwrap();
        assert!(!text.contains("s3cr3t"), "{text}");
        let r = PolicyRecord::new("main", &text, "2030-01-01T00:00:00Z".parse().unwrap());
        assert_eq!(r.hash, blake3_hex(&text));
        assert_eq!(r.id.len(), 32);
        let back = r.config().unwrap();
        assert_eq!(back.files["home"].paths, [std::path::PathBuf::from("/home")]);
        assert_eq!(policy_text(&back).unwrap(), text, "stable: the same policy, the same hash");
    }

    fn blake3_hex(s: &str) -> String {
        Id::hash(s.as_bytes()).to_string()
    }

    #[test]
    fn drill_rebuild_stored_policy_newest_wins() {
        let (_tmp, clock, repo, _state) = setup();
        assert_eq!(stored_policy(&repo).unwrap(), None, "no record yet");
        let a = PolicyRecord::new("main", POLICY_A, clock.now());
        append(&repo, &a);
        clock.advance(Duration::from_secs(60));
        let b = PolicyRecord::new("main", POLICY_B, clock.now());
        append(&repo, &b);
        repo.append_ledger_as("h1", "run", &serde_json::json!({"run_id": "x"})).unwrap();
        let (newest, problems) = stored_policy_with_problems(&repo).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(newest.as_ref(), Some(&b));
        assert!(newest.unwrap().config().unwrap().files.contains_key("etc"));
    }

    /// Hostile bodies: a wrong hash, an oversized text, a text that is not a policy file,
    /// a body that is not a record, a newer format. Each is a problem; the older record that
    /// holds is the answer.
    #[test]
    fn drill_rebuild_stored_policy_hostile_bodies_are_problems() {
        let (_tmp, clock, repo, _state) = setup();
        let good = PolicyRecord::new("main", POLICY_A, clock.now());
        append(&repo, &good);
        let mut wrong_hash = PolicyRecord::new("main", POLICY_B, clock.now());
        wrong_hash.hash = hash(POLICY_A);
        append(&repo, &wrong_hash);
        let big = format!("# {}\n{POLICY_B}", "x".repeat(MAX_POLICY_BYTES));
        append(&repo, &PolicyRecord::new("main", &big, clock.now()));
        append(&repo, &PolicyRecord::new("main", "this is [not toml", clock.now()));
        append(&repo, &PolicyRecord::new("main", "[files.x]\nunknown-key = 1\n", clock.now()));
        repo.append_ledger_as("h1", POLICY, &serde_json::json!({"id": "zz", "toml": 7})).unwrap();
        repo.append_ledger_as("h1", POLICY, &serde_json::json!("a string")).unwrap();
        let mut newer = PolicyRecord::new("main", POLICY_B, clock.now());
        newer.version = 99;
        append(&repo, &newer);
        let (newest, problems) = stored_policy_with_problems(&repo).unwrap();
        assert_eq!(newest, Some(good), "the newest record that holds");
        assert_eq!(
            problems.iter().map(|p| p.kind).collect::<Vec<_>>(),
            [
                LedgerProblemKind::BadBody,
                LedgerProblemKind::BadBody,
                LedgerProblemKind::BadBody,
                LedgerProblemKind::BadBody,
                LedgerProblemKind::BadBody,
                LedgerProblemKind::BadBody,
                LedgerProblemKind::NewerFormat
            ]
        );
        assert!(problems[0].message.contains("hash does not match"), "{}", problems[0].message);
        assert!(problems[1].message.contains("over the 1048576 bytes"), "{}", problems[1].message);
        assert!(problems.iter().all(|p| p.message.len() < 600), "messages are bounded");
        // Nothing that holds: none, no panic.
        let (_tmp2, _clock2, repo2, _) = setup();
        append(&repo2, &wrong_hash);
        assert_eq!(stored_policy(&repo2).unwrap(), None);
    }

    /// Recorded once per change: the same text again is not queued; another text is; the
    /// same text 30 days later is (the refresh); every repository the file uses has its own.
    #[test]
    fn drill_rebuild_record_policy_once_per_change() {
        let (_tmp, clock, repo, state) = setup();
        let a = config(POLICY_A);
        assert_eq!(record_policy(&state, &a, "h1", clock.now()).unwrap(), ["main"]);
        assert_eq!(record_policy(&state, &a, "h1", clock.now()).unwrap(), Vec::<String>::new(), "unchanged");
        clock.advance(Duration::from_secs(3600));
        assert!(record_policy(&state, &a, "h1", clock.now()).unwrap().is_empty(), "an hour later, unchanged");
        let b = config(POLICY_B);
        assert_eq!(record_policy(&state, &b, "h1", clock.now()).unwrap(), ["main"], "changed");
        clock.advance(REFRESH);
        assert_eq!(record_policy(&state, &b, "h1", clock.now()).unwrap(), ["main"], "refreshed");
        assert!(record_policy(&state, &b, "h1", clock.now()).unwrap().is_empty());
        let two = config(&format!("{POLICY_A}\n[repositories.off]\nlocation = \"/srv/off\"\n"));
        let two_text = policy_text(&two).unwrap();
        assert_eq!(record_policy(&state, &two, "h1", clock.now()).unwrap(), ["main", "off"]);
        assert_eq!(state.outbox_entries("main", 100).unwrap().len(), 4);
        assert_eq!(crate::ledger::flush_outbox(&state, "main", &repo).unwrap(), 4);
        let (all, problems) = read_policies(&repo).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        let hashes: Vec<&str> = all.iter().map(|(_, r)| r.hash.as_str()).collect();
        let (ha, hb) = (hash(&policy_text(&a).unwrap()), hash(&policy_text(&b).unwrap()));
        assert_eq!(hashes, [ha.as_str(), hb.as_str(), hb.as_str(), hash(&two_text).as_str()]);
        assert_eq!(stored_policy(&repo).unwrap().unwrap().toml, two_text);
    }
}
