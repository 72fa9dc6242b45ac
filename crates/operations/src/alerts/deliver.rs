//! One delivery to one target: the webhook POST, the email, the command, the heartbeat ping.
//!
//! Invariant guarded here: nothing a target is told, and no error or log line about it, holds
//! a secret: the webhook key and the SMTP password are read at delivery time and only signed
//! with or sent; URLs (which may carry a token, as chat webhooks' do) are never shown, only
//! the target's name.

use super::Ping;
use crate::config::{CommandTarget, EmailTarget, HeartbeatTarget, SmtpTls, WebhookTarget};
use crate::event::AlertEvent;
use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// A target, by kind, as configured.
#[derive(Clone, Debug)]
pub enum TargetSpec {
    /// `[alerts.webhook.NAME]`.
    Webhook(WebhookTarget),
    /// `[alerts.email.NAME]`.
    Email(EmailTarget),
    /// `[alerts.command.NAME]`.
    Command(CommandTarget),
    /// `[alerts.heartbeat.NAME]`.
    Heartbeat(HeartbeatTarget),
}

impl TargetSpec {
    /// `webhook`, `email`, `command` or `heartbeat`.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Webhook(_) => "webhook",
            Self::Email(_) => "email",
            Self::Command(_) => "command",
            Self::Heartbeat(_) => "heartbeat",
        }
    }

    /// Attempts after the first.
    #[must_use]
    pub fn retries(&self) -> u32 {
        match self {
            Self::Webhook(t) => t.retries,
            Self::Email(t) => t.retries,
            Self::Command(t) => t.retries,
            // A ping is sent again at the next event or interval anyway.
            Self::Heartbeat(_) => 0,
        }
    }
}

/// What a target is asked to deliver.
#[derive(Clone, Debug)]
pub enum Payload {
    /// An alert (or its resolved notice).
    Event(Box<AlertEvent>),
    /// A heartbeat ping.
    Ping(Ping),
}

/// Why a delivery failed. The message never holds a secret nor a target's URL.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// No such target in the policy file.
    #[error("no alert target named {0:?} in coffer.toml")]
    UnknownTarget(String),
    /// The target cannot take this payload (an event for a heartbeat target).
    #[error("target {0:?}: {1}")]
    Unsupported(String, &'static str),
    /// The alerts configuration is unusable.
    #[error("{0}")]
    Config(String),
    /// A secret could not be read.
    #[error("{0}")]
    Secret(String),
    /// The HTTP request failed or was answered with a non-2xx status.
    #[error("HTTP: {0}")]
    Http(String),
    /// SMTP failed.
    #[error("SMTP: {0}")]
    Smtp(String),
    /// The command could not run, failed or timed out.
    #[error("command: {0}")]
    Command(String),
}

impl DeliveryError {
    /// The class of this error.
    #[must_use]
    pub fn class(&self) -> coffer_store::ErrorClass {
        match self {
            Self::UnknownTarget(_) => coffer_store::ErrorClass::NotFound,
            Self::Unsupported(..) | Self::Config(_) | Self::Secret(_) => coffer_store::ErrorClass::Invalid,
            Self::Http(_) | Self::Smtp(_) | Self::Command(_) => coffer_store::ErrorClass::Transient,
        }
    }
}

/// One attempt to deliver `payload` to the target `name`.
///
/// # Errors
/// [`DeliveryError`].
pub fn deliver_once(name: &str, spec: &TargetSpec, payload: &Payload) -> Result<(), DeliveryError> {
    match (spec, payload) {
        (TargetSpec::Webhook(t), Payload::Event(e)) => webhook(name, t, e),
        (TargetSpec::Email(t), Payload::Event(e)) => email(name, t, e),
        (TargetSpec::Command(t), Payload::Event(e)) => command(t, e),
        (TargetSpec::Heartbeat(t), Payload::Ping(p)) => heartbeat(t, *p),
        (TargetSpec::Heartbeat(_), Payload::Event(_)) => {
            Err(DeliveryError::Unsupported(name.to_owned(), "a heartbeat target takes pings, not alerts"))
        }
        (_, Payload::Ping(_)) => Err(DeliveryError::Unsupported(name.to_owned(), "only heartbeat targets take pings")),
    }
}

/// The webhook body: the event as JSON (`docs/alerts.md`).
///
/// # Panics
/// Never: an [`AlertEvent`] always serializes.
#[must_use]
pub fn event_json(e: &AlertEvent) -> Vec<u8> {
    serde_json::to_vec(e).expect("an AlertEvent serializes")
}

/// `sha256=HEX` of HMAC-SHA256(`key`, `body`): the `X-Coffer-Signature` header.
#[must_use]
pub fn signature(key: &[u8], body: &[u8]) -> String {
    use hmac::{KeyInit as _, Mac as _};
    let mut mac = hmac::Hmac::<sha2_hmac::Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The system's root certificates, loaded once (rustls-native-certs).
fn roots() -> Arc<Vec<ureq::tls::Certificate<'static>>> {
    static ROOTS: OnceLock<Arc<Vec<ureq::tls::Certificate<'static>>>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            Arc::new(found.certs.iter().map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned()).collect())
        })
        .clone()
}

fn agent(timeout: Duration) -> ureq::Agent {
    let tls = ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .root_certs(ureq::tls::RootCerts::Specific(roots()))
        .build();
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        // A redirect could carry the signed body elsewhere; a webhook answers where it is.
        .max_redirects(0)
        .tls_config(tls)
        .build()
        .new_agent()
}

/// An HTTP error, told without the URL (it may carry a token).
fn http_error(e: &ureq::Error) -> DeliveryError {
    let what = match e {
        ureq::Error::Timeout(_) => "timed out".to_owned(),
        ureq::Error::Io(io) => format!("{} ({:?})", io, io.kind()),
        ureq::Error::HostNotFound => "host not found".to_owned(),
        ureq::Error::ConnectionFailed => "connection failed".to_owned(),
        ureq::Error::BadUri(_) => "invalid URL".to_owned(),
        ureq::Error::Tls(m) => format!("TLS: {m}"),
        ureq::Error::Rustls(r) => format!("TLS: {r}"),
        ureq::Error::StatusCode(c) => format!("status {c}"),
        ureq::Error::Http(h) => format!("invalid request: {h}"),
        ureq::Error::Protocol(p) => format!("protocol: {p}"),
        ureq::Error::RedirectFailed | ureq::Error::TooManyRedirects => "redirected (not followed)".to_owned(),
        ureq::Error::InvalidProxyUrl | ureq::Error::ConnectProxyFailed(_) => "proxy failed".to_owned(),
        ureq::Error::BodyStalled => "the body stalled".to_owned(),
        // Every other kind may name a URL or a proxy's: only that the request failed is said.
        _ => "request failed".to_owned(),
    };
    DeliveryError::Http(what)
}

fn webhook(name: &str, t: &WebhookTarget, e: &AlertEvent) -> Result<(), DeliveryError> {
    let body = event_json(e);
    let mut req = agent(t.timeout)
        .post(&t.url)
        .header("Content-Type", "application/json")
        .header("User-Agent", concat!("coffer/", env!("CARGO_PKG_VERSION")))
        .header("X-Coffer-Event", e.kind.as_str());
    if let Some(secret) = &t.secret {
        let key = secret.read(&format!("alert target {name}")).map_err(|err| DeliveryError::Secret(err.to_string()))?;
        req = req.header("X-Coffer-Signature", signature(&key, &body));
    }
    let resp = req.send(&body[..]).map_err(|err| http_error(&err))?;
    let status = resp.status();
    if status.is_success() { Ok(()) } else { Err(DeliveryError::Http(format!("status {}", status.as_u16()))) }
}

fn heartbeat(t: &HeartbeatTarget, ping: Ping) -> Result<(), DeliveryError> {
    let base = t.url.trim_end_matches('/');
    let url = match ping {
        Ping::Start => format!("{base}/start"),
        Ping::Success => base.to_owned(),
        Ping::Fail => format!("{base}/fail"),
    };
    let resp = agent(t.timeout).get(&url).call().map_err(|err| http_error(&err))?;
    let status = resp.status();
    if status.is_success() { Ok(()) } else { Err(DeliveryError::Http(format!("status {}", status.as_u16()))) }
}

/// The email's subject: `[coffer] SEVERITY KIND: summary` (`RESOLVED` for the resolved
/// notice).
#[must_use]
pub fn subject(e: &AlertEvent) -> String {
    let sev = if e.resolved { "RESOLVED".to_owned() } else { e.severity.as_str().to_uppercase() };
    let line: String = e.summary.chars().filter(|c| !c.is_control()).collect();
    format!("[coffer] {sev} {}: {line}", e.kind)
}

/// The email's text body: every field, one a line.
#[must_use]
pub fn text_body(e: &AlertEvent) -> String {
    use std::fmt::Write as _;
    let mut b = String::new();
    let _ = writeln!(b, "{}\n", e.summary);
    let mut field = |k: &str, v: &str| {
        let _ = writeln!(b, "{k:<11} {v}");
    };
    field("kind:", e.kind.as_str());
    field("severity:", e.severity.as_str());
    field("problem:", &e.problem);
    field("resolved:", if e.resolved { "yes" } else { "no" });
    field("time:", &e.time.to_string());
    field("host:", &e.host);
    if let Some(j) = &e.job {
        field("job:", j);
    }
    if let Some(s) = &e.source {
        field("source:", s);
    }
    if let Some(r) = &e.repository {
        field("repository:", r);
    }
    field("id:", &e.id);
    for (k, v) in &e.details {
        let _ = writeln!(b, "{k}: {v}");
    }
    b
}

fn email(name: &str, t: &EmailTarget, e: &AlertEvent) -> Result<(), DeliveryError> {
    use lettre::message::{Mailbox, header::ContentType};
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Tls, TlsParameters};
    use lettre::{Message, SmtpTransport, Transport as _};
    let smtp = |what: &str, err: &dyn std::fmt::Display| DeliveryError::Smtp(format!("{what}: {err}"));
    let from: Mailbox = t.from.parse().map_err(|err| smtp("from address", &err))?;
    let mut msg = Message::builder().from(from).subject(subject(e));
    for to in &t.to {
        msg = msg.to(to.parse::<Mailbox>().map_err(|err| smtp("to address", &err))?);
    }
    let msg = msg.header(ContentType::TEXT_PLAIN).body(text_body(e)).map_err(|err| smtp("message", &err))?;
    let params = || TlsParameters::new(t.server.clone()).map_err(|err| smtp("TLS", &err));
    let (tls, port) = match t.tls {
        SmtpTls::Starttls => (Tls::Required(params()?), 587),
        SmtpTls::Tls => (Tls::Wrapper(params()?), 465),
        SmtpTls::None => (Tls::None, 25),
    };
    let mut transport =
        SmtpTransport::builder_dangerous(&t.server).port(t.port.unwrap_or(port)).tls(tls).timeout(Some(t.timeout));
    if let Some(user) = &t.username {
        let password = match &t.password {
            Some(p) => p.read(&format!("alert target {name}")).map_err(|err| DeliveryError::Secret(err.to_string()))?,
            None => zeroize::Zeroizing::new(Vec::new()),
        };
        let password = String::from_utf8(password.to_vec())
            .map_err(|_| DeliveryError::Secret(format!("alert target {name}: the SMTP password is not UTF-8")))?;
        transport = transport.credentials(Credentials::new(user.clone(), password));
    }
    transport.build().send(&msg).map(|_| ()).map_err(|err| smtp("send", &err))
}

/// The environment a command target gets.
#[must_use]
pub fn command_env(e: &AlertEvent) -> Vec<(&'static str, String)> {
    vec![
        ("COFFER_ALERT_KIND", e.kind.as_str().to_owned()),
        ("COFFER_ALERT_SEVERITY", e.severity.as_str().to_owned()),
        ("COFFER_ALERT_PROBLEM", e.problem.clone()),
        ("COFFER_ALERT_RESOLVED", if e.resolved { "true" } else { "false" }.to_owned()),
        ("COFFER_ALERT_SUMMARY", e.summary.clone()),
        ("COFFER_ALERT_JOB", e.job.clone().unwrap_or_default()),
        ("COFFER_ALERT_SOURCE", e.source.clone().unwrap_or_default()),
        ("COFFER_ALERT_HOST", e.host.clone()),
        ("COFFER_ALERT_ID", e.id.clone()),
    ]
}

fn command(t: &CommandTarget, e: &AlertEvent) -> Result<(), DeliveryError> {
    let (program, args) = t.command.split_first().ok_or_else(|| DeliveryError::Command("empty command".into()))?;
    let mut child = Command::new(program)
        .args(args)
        // Its own process group: a timeout kills whatever it started too (a script's
        // children), not only the first process.
        .process_group(0)
        .envs(command_env(e))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|err| DeliveryError::Command(format!("cannot run {program}: {err}")))?;
    // Written from another thread: a command that does not read its stdin must not hold
    // this one past its timeout.
    if let Some(mut stdin) = child.stdin.take() {
        let body = event_json(e);
        std::thread::spawn(move || {
            let _ = stdin.write_all(&body);
        });
    }
    let deadline = Instant::now() + t.timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(DeliveryError::Command(format!("{program} exited with {status}"))),
            Ok(None) if Instant::now() >= deadline => {
                let _ = rustix::process::kill_process_group(
                    rustix::process::Pid::from_child(&child),
                    rustix::process::Signal::KILL,
                );
                let _ = child.kill();
                let _ = child.wait();
                return Err(DeliveryError::Command(format!(
                    "{program} was killed after its timeout ({})",
                    humantime_secs(t.timeout)
                )));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(err) => return Err(DeliveryError::Command(format!("waiting for {program}: {err}"))),
        }
    }
}

fn humantime_secs(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}
