//! AWS CloudTrail events: the template AWS needs ([`template`]) and the consumer of the SQS
//! queue that the generated EventBridge rule feeds ([`poll`]).
//!
//! The chain: a request on the bucket → CloudTrail (bucket-level calls as management
//! events; object-level calls as data events, which the generated trail records) →
//! EventBridge (`AWS API Call via CloudTrail`; the rule matches the bucket and
//! [`WATCHED_EVENTS`]) → the SQS queue → [`poll`] → security events.
//!
//! Invariants guarded here:
//! - **exactly once per CloudTrail event**: SQS delivers at least once (and again after a
//!   visibility timeout); every record is deduplicated by its `eventID` in the state (kept
//!   [`SEEN_TTL`], longer than SQS keeps a message, at most [`MAX_SEEN`] per repository), so
//!   a redelivered message never alerts twice, across restarts too;
//! - **nothing is lost on the way**: a message is deleted only after the poll that read it
//!   has returned its events (at the start of the next poll); a message whose delete fails
//!   comes back and is passed over as seen. Losing an event is worse than repeating a
//!   delete;
//! - **hostile input**: bodies are bounded and parsed defensively ([`parse`]); a body that
//!   does not parse is itself an `unreadable` event (with its message id), then deleted;
//! - **a failing queue is one event, not one per poll**: the transition to failing is
//!   recorded in the state; recovery is logged;
//! - **normal work is silent**: an allowed object-level call that the caller's own Coffer
//!   role may make (the pruner removing a version, the writer extending a retention or
//!   placing a legal hold) is passed over; so is a refused canary probe that the canary
//!   announced ([`super::take_expected`]). Everything else on the list is an event.

pub mod parse;
pub mod template;

pub use parse::{Identity, TrailRecord, Unreadable, parse_body};
pub use template::{
    DEFAULT_QUEUE_NAME, Scope, TemplateError, TemplateOptions, WATCHED_EVENTS, cloudformation, documents,
    event_pattern, event_selectors, is_watched, queue_policy,
};

use super::{RESERVED_PREFIX, SecurityEvent, SecurityKind, take_expected};
use crate::config::{CloudTrailConfig, Config, RepositoryConfig};
use crate::state::State;
use coffer_store::s3::runtime::{OwnedRuntime, block_on_from_anywhere, shared_config};
use coffer_store::{Action, Clock, Role, S3Location};
use jiff::{SignedDuration, Timestamp};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex};

/// The layer name in events.
pub const LAYER: &str = "cloudtrail";

/// How long an `eventID` is remembered: longer than SQS keeps a message (14 days at most).
pub const SEEN_TTL: SignedDuration = SignedDuration::from_hours(15 * 24);

/// The most `eventID`s remembered per repository; the oldest go first.
pub const MAX_SEEN: usize = 20_000;

/// The most messages read by one poll (the rest wait for the next).
pub const MAX_MESSAGES_PER_POLL: usize = 1000;

/// Long-poll wait per receive: short, so the watch loop stays responsive.
const WAIT_SECONDS: i32 = 1;

/// SQS's largest receive batch.
const BATCH: usize = 10;

fn seen_prefix(repository: &str) -> String {
    format!("cloudtrail-seen:{repository}:")
}

fn failing_key(repository: &str) -> String {
    format!("cloudtrail-failing:{repository}")
}

fn pruned_key(repository: &str) -> String {
    format!("cloudtrail-pruned:{repository}")
}

/// The deduplication key of an id from a message (bounded: ids are hostile input).
fn dedupe_id(id: &str) -> String {
    if !id.is_empty() && id.len() <= 128 && id.bytes().all(|c| c.is_ascii_alphanumeric() || b"-_.:".contains(&c)) {
        id.to_owned()
    } else {
        use sha2_hmac::Digest as _;
        format!("sha256-{}", hex::encode(sha2_hmac::Sha256::digest(id.as_bytes())))
    }
}

/// Receives what waits in repository `repository`'s CloudTrail queue (if it has one) and
/// returns an event for each security-relevant CloudTrail record; messages are deleted
/// from the queue only after the caller has the events (at-least-once, deduplicated by
/// CloudTrail's `eventID` in the state). Never fails: a queue that cannot be read is an
/// `unreadable` event.
#[must_use]
pub fn poll(config: &Config, repository: &str, state: &State, clock: &Clock) -> Vec<SecurityEvent> {
    let Some(repo) = config.repositories.get(repository) else { return Vec::new() };
    let Some(ct) = &repo.security.cloudtrail else { return Vec::new() };
    let ctx = Context::new(repository, repo, ct);
    let poller = match poller_for(state, repository, ct) {
        Ok(p) => p,
        Err(reason) => return failing(state, &ctx, &reason, clock.now()).into_iter().collect(),
    };
    let mut p = poller.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    p.flush_deletes();
    let now = clock.now();
    prune_seen(state, repository, now);
    let mut out = Vec::new();
    let mut read = 0;
    let mut seen_now = HashSet::new();
    while read < MAX_MESSAGES_PER_POLL {
        let batch = match p.receive() {
            Ok(b) => b,
            Err(reason) => {
                out.extend(failing(state, &ctx, &reason, clock.now()));
                break;
            }
        };
        recovered(state, &ctx);
        let n = batch.len();
        read += n;
        for m in batch {
            out.extend(handle(state, &ctx, &m.id, &m.body, clock.now(), &mut seen_now));
            if let Some(h) = m.receipt {
                p.pending.push(h);
            }
        }
        if n < BATCH {
            break;
        }
    }
    out
}

/// What [`poll`] needs to classify a record.
struct Context {
    repository: String,
    /// The repository's location, if it is an S3 store.
    location: Option<S3Location>,
    /// `s3://BUCKET/PREFIX/`, or the queue URL for a repository that is not on S3.
    store: String,
    /// The access keys of the credentials files Coffer holds, with their roles.
    keys: BTreeMap<String, Role>,
    /// `security.known-principals`.
    known: BTreeSet<String>,
}

impl Context {
    fn new(repository: &str, repo: &RepositoryConfig, ct: &CloudTrailConfig) -> Self {
        let location = repo.location.as_deref().and_then(|l| S3Location::parse(l).ok());
        let store = location.as_ref().map_or_else(|| ct.queue_url.clone(), ToString::to_string);
        let mut keys = BTreeMap::new();
        for (role, path) in &repo.credentials {
            let Ok(role) = role.parse::<Role>() else { continue };
            match coffer_store::vault::read_credentials_file(path) {
                Ok(c) => {
                    keys.insert(c.access_key, role);
                }
                // A role whose key cannot be read is unknown here: its requests become
                // unknown-principal events (noisy, never silent).
                Err(e) => {
                    tracing::warn!(repository, role = %role, error = %e, "cloudtrail: cannot read a role's credentials")
                }
            }
        }
        let mut known: BTreeSet<String> = repo.security.known_principals.iter().cloned().collect();
        if let Some(c) = ct.credentials.as_deref().and_then(|p| coffer_store::vault::read_credentials_file(p).ok()) {
            known.insert(c.access_key);
        }
        Self { repository: repository.to_owned(), location, store, keys, known }
    }

    fn event(&self, kind: SecurityKind, now: Timestamp, summary: String) -> SecurityEvent {
        let mut e = SecurityEvent::new(kind, LAYER, now, summary);
        e.repository = Some(self.repository.clone());
        e.store = Some(self.store.clone());
        e
    }

    fn role_of(&self, id: &Identity) -> Option<Role> {
        id.access_key_id.as_ref().and_then(|k| self.keys.get(k)).copied()
    }

    fn is_known(&self, id: &Identity) -> bool {
        self.role_of(id).is_some() || id.names().iter().any(|n| self.known.contains(*n))
    }
}

/// One message, its events (none when already seen).
fn handle(
    state: &State,
    ctx: &Context,
    message_id: &str,
    body: &str,
    now: Timestamp,
    seen_now: &mut HashSet<String>,
) -> Vec<SecurityEvent> {
    let records = match parse_body(body) {
        Ok(r) => r,
        Err(Unreadable(why)) => {
            let key = dedupe_id(&format!("msg-{message_id}"));
            if !first_sight(state, ctx, &key, now, seen_now) {
                return Vec::new();
            }
            tracing::warn!(repository = %ctx.repository, message_id, reason = %why, "cloudtrail: unreadable queue message");
            let mut e = ctx.event(
                SecurityKind::Unreadable,
                now,
                format!("CloudTrail queue: a message that is not a CloudTrail event ({why})"),
            );
            e.details.insert("message-id".into(), parse::bounded(message_id));
            e.details.insert("reason".into(), why);
            return vec![e];
        }
    };
    let mut out = Vec::new();
    for (i, rec) in records.iter().enumerate() {
        if !is_watched(&rec.event_name) {
            tracing::debug!(repository = %ctx.repository, event = %rec.event_name, "cloudtrail: not a watched call");
            continue;
        }
        let key = rec.event_id.as_deref().map_or_else(|| dedupe_id(&format!("msg-{message_id}-{i}")), dedupe_id);
        if !first_sight(state, ctx, &key, now, seen_now) {
            tracing::debug!(repository = %ctx.repository, key, "cloudtrail: event seen before (redelivered)");
            continue;
        }
        let mut events = classify(state, ctx, rec, now);
        for e in &mut events {
            e.details.insert("message-id".into(), parse::bounded(message_id));
        }
        out.extend(events);
    }
    out
}

/// Whether `key` is new; if so it is remembered (in the state, before the events are
/// returned: a redelivery after a restart is passed over too).
fn first_sight(state: &State, ctx: &Context, key: &str, now: Timestamp, seen_now: &mut HashSet<String>) -> bool {
    if !seen_now.insert(key.to_owned()) {
        return false;
    }
    let k = format!("{}{key}", seen_prefix(&ctx.repository));
    match state.get(&k) {
        Ok(Some(_)) => false,
        Ok(None) => {
            if let Err(e) = state.set(&k, &now.as_second().to_string()) {
                // Reported anyway: a possible repeat is better than a lost event.
                tracing::warn!(repository = %ctx.repository, error = %e, "cloudtrail: cannot remember an event id");
            }
            true
        }
        Err(e) => {
            tracing::warn!(repository = %ctx.repository, error = %e, "cloudtrail: cannot check an event id");
            true
        }
    }
}

/// Forgets ids older than [`SEEN_TTL`] and all but the newest [`MAX_SEEN`]; at most hourly.
fn prune_seen(state: &State, repository: &str, now: Timestamp) {
    let last = state.get(&pruned_key(repository)).ok().flatten().and_then(|s| s.parse::<i64>().ok());
    if last.is_some_and(|l| (l..l + 3600).contains(&now.as_second())) {
        return;
    }
    let _ = state.set(&pruned_key(repository), &now.as_second().to_string());
    let Ok(mut all) = state.scan(&seen_prefix(repository)) else { return };
    let oldest_kept = (now - SEEN_TTL).as_second();
    all.sort_by_key(|(_, v)| std::cmp::Reverse(v.parse::<i64>().unwrap_or(0)));
    for (i, (k, v)) in all.iter().enumerate() {
        if i >= MAX_SEEN || v.parse::<i64>().unwrap_or(0) < oldest_kept {
            let _ = state.remove(k);
        }
    }
}

/// The `unreadable` event of a queue that cannot be read, once per failing period.
fn failing(state: &State, ctx: &Context, reason: &str, now: Timestamp) -> Option<SecurityEvent> {
    let key = failing_key(&ctx.repository);
    if matches!(state.get(&key), Ok(Some(_))) {
        tracing::debug!(repository = %ctx.repository, reason, "cloudtrail: queue still unreadable");
        return None;
    }
    let _ = state.set(&key, reason);
    tracing::warn!(repository = %ctx.repository, reason, "cloudtrail: cannot read the queue");
    let mut e = ctx.event(SecurityKind::Unreadable, now, format!("cannot read the CloudTrail queue: {reason}"));
    e.details.insert("reason".into(), reason.to_owned());
    Some(e)
}

fn recovered(state: &State, ctx: &Context) {
    let key = failing_key(&ctx.repository);
    if matches!(state.get(&key), Ok(Some(_))) {
        let _ = state.remove(&key);
        tracing::info!(repository = %ctx.repository, "cloudtrail: the queue is readable again");
    }
}

/// The Coffer actions a CloudTrail call amounts to (the audit log's names), most specific
/// first; empty for bucket-level calls Coffer has no action for.
fn actions_of(rec: &TrailRecord) -> Vec<Action> {
    match rec.event_name.as_str() {
        "DeleteObject" if rec.bypass_governance => vec![Action::BypassGovernance, Action::DeleteVersion],
        "DeleteObject" if rec.version_id.is_some() => vec![Action::DeleteVersion],
        "DeleteObject" => vec![Action::Delete],
        "DeleteObjects" => vec![Action::DeleteVersion, Action::Delete],
        "PutObjectRetention" if rec.bypass_governance => vec![Action::BypassGovernance],
        "PutObjectRetention" => vec![Action::PutRetention],
        // A hold whose status cannot be read counts as a removal (never routine).
        "PutObjectLegalHold" if rec.legal_hold.as_deref() == Some("ON") => vec![Action::LegalHoldOn],
        "PutObjectLegalHold" => vec![Action::LegalHoldOff],
        "PutObjectLockConfiguration" => vec![Action::PutLockConfig],
        "PutBucketVersioning" => vec![Action::PutVersioning],
        _ => Vec::new(),
    }
}

/// Whether an allowed call is the normal work of `role`.
fn routine(role: Role, actions: &[Action]) -> bool {
    !actions.is_empty()
        && actions
            .iter()
            .all(|a| matches!(a, Action::DeleteVersion | Action::PutRetention | Action::LegalHoldOn) && role.allows(*a))
}

/// Whether a refused call is a probe the canary announced (which is then used up).
fn announced_probe(state: &State, ctx: &Context, rec: &TrailRecord, role: Option<Role>, now: Timestamp) -> bool {
    let keys: Vec<Option<String>> = match &rec.key {
        None => vec![None],
        Some(k) if !k.contains(RESERVED_PREFIX) => return false,
        Some(k) => {
            let mut v = vec![Some(k.clone())];
            if let Some(rel) = ctx.location.as_ref().and_then(|l| k.strip_prefix(&l.prefix)).filter(|r| *r != k) {
                v.push(Some(rel.to_owned()));
            }
            v
        }
    };
    let principals: Vec<String> =
        rec.identity.names().into_iter().map(str::to_owned).chain(role.map(|r| r.as_str().to_owned())).collect();
    let actions: Vec<&str> =
        actions_of(rec).iter().map(|a| a.as_str()).chain(std::iter::once(rec.event_name.as_str())).collect();
    let time = rec.event_time.unwrap_or(now);
    for p in &principals {
        for a in &actions {
            for k in &keys {
                if take_expected(state, &ctx.store, p, a, k.as_deref(), time, now).unwrap_or(false) {
                    return true;
                }
            }
        }
    }
    false
}

/// The events of one watched record: a `cloudtrail` event, and an `unknown-principal` event
/// when Coffer does not know who made the call; none for routine work and announced probes.
fn classify(state: &State, ctx: &Context, rec: &TrailRecord, now: Timestamp) -> Vec<SecurityEvent> {
    let denied = rec.error_code.is_some();
    let role = ctx.role_of(&rec.identity);
    let known = ctx.is_known(&rec.identity);
    if !denied && role.is_some_and(|r| routine(r, &actions_of(rec))) {
        tracing::debug!(repository = %ctx.repository, event = %rec.event_name, "cloudtrail: routine work of a Coffer role");
        return Vec::new();
    }
    if denied && announced_probe(state, ctx, rec, role, now) {
        tracing::debug!(repository = %ctx.repository, event = %rec.event_name, "cloudtrail: an announced canary probe");
        return Vec::new();
    }
    let who = rec.identity.display();
    let outcome = if denied { "denied" } else { "allowed" };
    let what = match (&rec.key, &rec.bucket) {
        (Some(k), _) => format!("{} on {k}", rec.event_name),
        (None, Some(b)) => format!("{} on bucket {b}", rec.event_name),
        (None, None) => rec.event_name.clone(),
    };
    let fill = |e: &mut SecurityEvent| {
        e.time = rec.event_time;
        e.principal = Some(who.clone());
        e.role = role.map(|r| r.as_str().to_owned());
        e.action = Some(rec.event_name.clone());
        e.key.clone_from(&rec.key);
        e.object_version.clone_from(&rec.version_id);
        e.outcome = Some(outcome.to_owned());
        let d = &mut e.details;
        let mut put = |k: &str, v: &Option<String>| {
            if let Some(v) = v {
                d.insert(k.to_owned(), v.clone());
            }
        };
        put("event-id", &rec.event_id);
        put("access-key", &rec.identity.access_key_id);
        put("principal-type", &rec.identity.kind);
        put("principal-id", &rec.identity.principal_id);
        put("user-name", &rec.identity.user_name);
        put("account", &rec.identity.account_id);
        put("session-issuer", &rec.identity.issuer_arn);
        put("invoked-by", &rec.identity.invoked_by);
        put("source-ip", &rec.source_ip);
        put("user-agent", &rec.user_agent);
        put("region", &rec.region);
        put("bucket", &rec.bucket);
        put("error-code", &rec.error_code);
        put("error-message", &rec.error_message);
        put("legal-hold", &rec.legal_hold);
        put("retention", &rec.retention);
        put("versioning", &rec.versioning);
        put("event-time-unparsed", &rec.event_time_raw);
        if rec.bypass_governance {
            d.insert("bypass-governance".into(), "true".into());
        }
    };
    let reason = rec.error_code.as_deref().map_or_else(String::new, |c| format!(" ({c})"));
    let mut main = ctx.event(SecurityKind::CloudTrail, now, format!("CloudTrail: {what} by {who}: {outcome}{reason}"));
    fill(&mut main);
    let mut out = vec![main];
    if !known {
        let mut e = ctx.event(
            SecurityKind::UnknownPrincipal,
            now,
            format!("CloudTrail: {what} by a principal Coffer does not know ({who}): {outcome}{reason}"),
        );
        fill(&mut e);
        out.push(e);
    }
    out
}

/// One received message.
struct Received {
    id: String,
    body: String,
    receipt: Option<String>,
}

/// A queue consumer: its own small runtime and SQS client, and the receipts of the messages
/// the last poll returned (deleted at the start of the next).
struct Poller {
    rt: OwnedRuntime,
    client: aws_sdk_sqs::Client,
    queue_url: String,
    pending: Vec<String>,
}

type Shared = Arc<Mutex<Poller>>;

/// The pollers of this process, by state directory, repository and queue settings: a
/// poller lives across polls (its runtime, its connections, its pending deletes).
static POLLERS: LazyLock<Mutex<HashMap<PollerId, (String, Shared)>>> = LazyLock::new(Default::default);

/// A poller's identity: the state directory and the repository.
type PollerId = (String, String);

fn poller_for(state: &State, repository: &str, ct: &CloudTrailConfig) -> Result<Shared, String> {
    let creds = match &ct.credentials {
        Some(p) => Some(coffer_store::vault::read_credentials_file(p).map_err(|e| e.to_string())?),
        None => None,
    };
    let settings = format!(
        "{}\n{:?}\n{:?}\n{}",
        ct.queue_url,
        ct.endpoint,
        ct.region,
        creds.as_ref().map_or_else(String::new, |c| {
            use sha2_hmac::Digest as _;
            hex::encode(sha2_hmac::Sha256::digest(format!("{}\n{}", c.access_key, c.secret_key.expose())))
        })
    );
    let id = (state.path().display().to_string(), repository.to_owned());
    let mut all = POLLERS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((s, p)) = all.get(&id) {
        if *s == settings {
            return Ok(p.clone());
        }
    }
    let p = Arc::new(Mutex::new(Poller::connect(ct, creds.as_ref())?));
    all.insert(id, (settings, p.clone()));
    Ok(p)
}

/// Drops the poller of `repository` (on `state`), as a restart would: the messages its last
/// poll returned and had not yet deleted come back after their visibility timeout (and are
/// passed over as seen). For tests of redelivery; the daemon never needs it.
pub fn forget_poller(state: &State, repository: &str) {
    let id = (state.path().display().to_string(), repository.to_owned());
    POLLERS.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&id);
}

/// The region of a queue URL (`https://sqs.REGION.amazonaws.com/…`, LocalStack's
/// `http://sqs.REGION.localhost…`).
fn region_of_url(url: &str) -> Option<String> {
    let host = url.split("://").nth(1)?.split('/').next()?;
    let mut parts = host.split('.');
    (parts.next()? == "sqs").then_some(())?;
    let r = parts.next()?;
    (!r.is_empty() && r.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-'))
        .then(|| r.to_owned())
}

impl Poller {
    fn connect(ct: &CloudTrailConfig, creds: Option<&coffer_store::Credentials>) -> Result<Self, String> {
        let rt =
            OwnedRuntime::new(1, "coffer-sqs").map_err(|e| format!("cannot start the queue client's runtime: {e}"))?;
        let region = ct
            .region
            .clone()
            .or_else(|| region_of_url(&ct.queue_url))
            .or_else(|| ct.endpoint.as_ref().map(|_| "us-east-1".to_owned()));
        let client = block_on_from_anywhere(rt.get(), async {
            let shared = shared_config(region, ct.endpoint.as_deref(), creds).await;
            let conf = aws_sdk_sqs::config::Builder::from(&shared)
                .retry_config(
                    aws_smithy_types::retry::RetryConfig::standard()
                        .with_max_attempts(3)
                        .with_max_backoff(std::time::Duration::from_secs(2)),
                )
                // A poll must not hold the watch loop for long: a queue that does not answer
                // within these is a failing queue (reported), and the next poll tries again.
                .timeout_config(
                    aws_smithy_types::timeout::TimeoutConfig::builder()
                        .connect_timeout(std::time::Duration::from_secs(5))
                        .read_timeout(std::time::Duration::from_secs(10))
                        .operation_timeout(std::time::Duration::from_secs(30))
                        .build(),
                )
                .build();
            aws_sdk_sqs::Client::from_conf(conf)
        });
        Ok(Self { rt, client, queue_url: ct.queue_url.clone(), pending: Vec::new() })
    }

    fn receive(&self) -> Result<Vec<Received>, String> {
        let call = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(BATCH as i32)
            .wait_time_seconds(WAIT_SECONDS)
            .send();
        let out = block_on_from_anywhere(self.rt.get(), call).map_err(|e| sdk_error(&e))?;
        Ok(out
            .messages
            .unwrap_or_default()
            .into_iter()
            .map(|m| Received {
                id: m.message_id.unwrap_or_default(),
                body: m.body.unwrap_or_default(),
                receipt: m.receipt_handle,
            })
            .collect())
    }

    /// Deletes the messages the last poll returned. A failed delete is logged: the message
    /// comes back after its visibility timeout and is passed over as seen (then deleted).
    fn flush_deletes(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        for chunk in pending.chunks(BATCH) {
            let entries: Vec<_> = chunk
                .iter()
                .enumerate()
                .filter_map(|(i, h)| {
                    aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                        .id(format!("m{i}"))
                        .receipt_handle(h)
                        .build()
                        .ok()
                })
                .collect();
            let call = self.client.delete_message_batch().queue_url(&self.queue_url).set_entries(Some(entries)).send();
            match block_on_from_anywhere(self.rt.get(), call) {
                Ok(out) if out.failed.is_empty() => {}
                Ok(out) => tracing::warn!(
                    failed = out.failed.len(),
                    "cloudtrail: some queue messages were not deleted (they come back and are passed over)"
                ),
                Err(e) => {
                    tracing::warn!(error = %sdk_error(&e), "cloudtrail: cannot delete queue messages (they come back and are passed over)")
                }
            }
        }
    }
}

/// An SDK error in one line: the service's code and message, or why no answer came. Never
/// the credentials (the SDK's errors do not carry them).
fn sdk_error<E, R>(e: &aws_sdk_sqs::error::SdkError<E, R>) -> String
where
    E: aws_sdk_sqs::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_sqs::error::{DisplayErrorContext, SdkError};
    let text = match e {
        SdkError::ServiceError(s) => {
            let err = s.err();
            format!("{}: {}", err.code().unwrap_or("error"), err.message().unwrap_or("(no message)"))
        }
        SdkError::TimeoutError(_) => "timed out".to_owned(),
        other => DisplayErrorContext(other).to_string(),
    };
    parse::bounded(&text)
}

#[cfg(test)]
mod tests;
