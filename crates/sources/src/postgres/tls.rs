//! TLS for Coffer's own queries to PostgreSQL ([`super::client`]): libpq's `sslmode` and
//! `sslrootcert` read from the connection string (or `PGSSLMODE`, `PGSSLROOTCERT`), and a
//! rustls connector (aws-lc-rs, the crypto provider the AWS SDK already builds) that
//! checks the server's certificate as Coffer's policy says.
//!
//! Invariant guarded: a connection the settings say must be encrypted is encrypted or
//! fails; a certificate that fails the check fails the connection with a one-line
//! [`PgError::Tls`] naming the server and the reason, never a fallback to plaintext.
//!
//! The policy (docs/postgres.md, "TLS"), and how it differs from libpq's:
//!
//! | `sslmode` | encrypted | certificate chain checked | host name checked |
//! | --- | --- | --- | --- |
//! | `disable` | no | – | – |
//! | `allow`, `prefer` (default) | when the server offers TLS | only against roots the user gave (`sslrootcert`, `~/.postgresql/root.crt`) | no |
//! | `require`, `verify-ca` | always, or fail | always (the user's roots, else the system's) | no |
//! | `verify-full` | always, or fail | always | yes |
//!
//! Why: libpq's `require` encrypts without checking who answers unless a root file exists,
//! which an active attacker defeats (and then reads a password sent in clear text by
//! `password` authentication): Coffer always checks the chain under `require`, against the
//! system's CAs when no root file is given, so a self-signed server needs its CA in
//! `sslrootcert`. `prefer` is opportunistic by definition (an attacker can answer "no TLS"
//! and get plaintext), so checking a certificate there would protect nothing and would
//! break the common self-signed setup (Debian's default `ssl = on` with the snakeoil
//! certificate): Coffer encrypts without checking, as libpq does, unless the user gave
//! roots, which are then enforced. `verify-ca`/`verify-full`, which the client library's
//! parser refuses, are read here and mapped to its `require` plus the checks above.
//!
//! `allow` tries TLS first (libpq tries plaintext first); both accept either. Unix sockets
//! never use TLS (the server does not offer it there; libpq ignores `sslmode` for them).
//! Client certificates (`sslcert`, `sslkey`) are not supported: the client library refuses
//! those options with an error naming them.

use super::{PgError, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::path::PathBuf;
use std::sync::Arc;

/// libpq's `sslmode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS when the server offers it (libpq tries plaintext first; Coffer TLS first).
    Allow,
    /// TLS when the server offers it (libpq's default).
    Prefer,
    /// TLS or fail; the chain is checked (unlike libpq without a root file).
    Require,
    /// TLS or fail; the chain is checked.
    VerifyCa,
    /// TLS or fail; the chain and the host name are checked.
    VerifyFull,
}

impl SslMode {
    fn parse(v: &str) -> Result<Self> {
        Ok(match v {
            "disable" => Self::Disable,
            "allow" => Self::Allow,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            _ => {
                return Err(PgError::Invalid(format!(
                    "bad PostgreSQL connection string: invalid sslmode {v:?} (disable, allow, prefer, require, \
                     verify-ca or verify-full)"
                )));
            }
        })
    }

    /// The client library's mode: it knows only disable, prefer and require.
    #[must_use]
    pub fn client_mode(self) -> postgres::config::SslMode {
        use postgres::config::SslMode as M;
        match self {
            Self::Disable => M::Disable,
            Self::Allow | Self::Prefer => M::Prefer,
            Self::Require | Self::VerifyCa | Self::VerifyFull => M::Require,
        }
    }
}

/// Where the trusted CA certificates come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Roots {
    /// `sslrootcert=FILE` (or `PGSSLROOTCERT`): PEM certificates.
    File(PathBuf),
    /// `~/.postgresql/root.crt`, libpq's default root file, which exists.
    HomeFile(PathBuf),
    /// The operating system's trusted CAs (`sslrootcert=system`, or no root file).
    System,
}

impl Roots {
    fn given_by_user(&self) -> bool {
        !matches!(self, Self::System)
    }

    /// "signed by …": which CAs were tried, and what to do for the system's.
    fn describe(&self) -> String {
        match self {
            Self::File(p) | Self::HomeFile(p) => format!("a CA in {}", p.display()),
            Self::System => "any of the system's trusted CAs (give the server's CA with sslrootcert=FILE)".to_owned(),
        }
    }
}

/// How a connection uses TLS: its mode and its roots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsPolicy {
    /// `sslmode`.
    pub mode: SslMode,
    /// The trusted CAs.
    pub roots: Roots,
}

impl TlsPolicy {
    /// The policy from the connection string's `sslmode` and `sslrootcert` (already taken
    /// out of it), else `PGSSLMODE` and `PGSSLROOTCERT`, else libpq's defaults.
    ///
    /// # Errors
    /// `Invalid` for an unknown mode, or `sslrootcert=system` with a mode weaker than
    /// `verify-full` (libpq refuses it too).
    pub fn from_settings(mode: Option<&str>, rootcert: Option<&str>) -> Result<Self> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let mode_text = mode.map(str::to_owned).or_else(|| env("PGSSLMODE"));
        let rootcert = rootcert.map(str::to_owned).or_else(|| env("PGSSLROOTCERT"));
        let system = rootcert.as_deref() == Some("system");
        let mode = match mode_text.as_deref() {
            Some(m) => SslMode::parse(m)?,
            None if system => SslMode::VerifyFull,
            None => SslMode::Prefer,
        };
        if system && mode != SslMode::VerifyFull {
            return Err(PgError::Invalid(
                "bad PostgreSQL connection string: sslrootcert=system needs sslmode=verify-full".to_owned(),
            ));
        }
        let roots = match rootcert {
            Some(_) if system => Roots::System,
            Some(f) => Roots::File(PathBuf::from(f)),
            None => match dirs::home_dir().map(|h| h.join(".postgresql/root.crt")) {
                Some(p) if p.is_file() => Roots::HomeFile(p),
                _ => Roots::System,
            },
        };
        Ok(Self { mode, roots })
    }

    fn checks_chain(&self) -> bool {
        match self.mode {
            SslMode::Disable => false,
            SslMode::Allow | SslMode::Prefer => self.roots.given_by_user(),
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => true,
        }
    }

    fn load_roots(&self) -> Result<RootCertStore> {
        let mut store = RootCertStore::empty();
        match &self.roots {
            Roots::File(p) | Roots::HomeFile(p) => {
                let bytes = std::fs::read(p)
                    .map_err(super::io_err(format!("cannot read the root certificates {}", p.display())))?;
                let certs = CertificateDer::pem_slice_iter(&bytes)
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|e| PgError::Invalid(format!("bad root certificates in {}: {e}", p.display())))?;
                let (added, _) = store.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(PgError::Invalid(format!("no usable CA certificate in {}", p.display())));
                }
            }
            Roots::System => {
                // Certificates the system lists but rustls cannot parse are left out, as
                // every rustls client does; none at all is an error below.
                let found = rustls_native_certs::load_native_certs();
                store.add_parsable_certificates(found.certs);
                if store.is_empty() {
                    return Err(PgError::Invalid(
                        "no trusted CA certificates found on this system: set sslrootcert to the server's CA file"
                            .to_owned(),
                    ));
                }
            }
        }
        Ok(store)
    }

    /// The connector the client library uses for this policy (roots read now).
    ///
    /// # Errors
    /// `Io` or `Invalid` when the roots cannot be read.
    pub fn connector(&self) -> Result<tokio_postgres_rustls::MakeRustlsConnect> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let roots = if self.checks_chain() { Some(Arc::new(self.load_roots()?)) } else { None };
        let verifier = Verifier {
            roots,
            check_name: self.mode == SslMode::VerifyFull,
            algs: provider.signature_verification_algorithms,
        };
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider) as Arc<CryptoProvider>)
            .with_safe_default_protocol_versions()
            .map_err(|e| PgError::Server(format!("cannot set up TLS: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        // PostgreSQL 17's direct TLS negotiation requires it; older servers ignore it.
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
    }

    /// The TLS failure in `e`, if it is one, as a one-line [`PgError::Tls`] naming
    /// `server`.
    #[must_use]
    pub fn failure(&self, server: &str, e: &postgres::Error) -> Option<PgError> {
        let why = tls_reason(e, &self.roots)?;
        Some(PgError::Tls(format!("cannot connect to PostgreSQL at {server} over TLS: {why}")))
    }
}

/// Why a connection failed in TLS, from the error chain (`None`: not a TLS failure).
fn tls_reason(e: &postgres::Error, roots: &Roots) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        // tokio-rustls wraps rustls' error in an io::Error, whose `source()` skips it.
        let inner = c
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|r| r as &(dyn std::error::Error + 'static));
        for cand in [Some(c), inner].into_iter().flatten() {
            if let Some(r) = cand.downcast_ref::<rustls::Error>() {
                return Some(rustls_reason(r, roots));
            }
            // The client library's own messages (tokio-postgres 0.7, no typed kind); the
            // tests check the first, so an update that changes it does not go unnoticed.
            if cand.to_string() == "server does not support TLS" {
                return Some(
                    "the server does not accept TLS connections, and sslmode requires TLS (turn ssl on in the \
                     server's postgresql.conf, or set sslmode=prefer)"
                        .to_owned(),
                );
            }
            if cand.to_string() == "no hostname provided for TLS handshake" {
                return Some("TLS needs a host name or address (host=…)".to_owned());
            }
        }
        cur = c.source();
    }
    None
}

fn rustls_reason(e: &rustls::Error, roots: &Roots) -> String {
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            // BadSignature: a CA in the roots has the issuer's name but did not sign it (an
            // impostor, or another CA of the same name).
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                format!("the server's certificate is not trusted: it is not signed by {}", roots.describe())
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                "the server's certificate is not valid for this host name (sslmode=verify-full checks it)".to_owned()
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "the server's certificate has expired".to_owned()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "the server's certificate is not valid yet".to_owned()
            }
            other => format!("the server's certificate is not trusted: {other}"),
        },
        other => format!("TLS handshake failed: {other}"),
    }
}

/// Checks the server's certificate as the policy says: the chain against `roots` (none:
/// not checked), the host name when `check_name`. The handshake's signatures are always
/// checked (they prove the server holds the certificate's key).
#[derive(Debug)]
struct Verifier {
    roots: Option<Arc<RootCertStore>>,
    check_name: bool,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_cert_signed_by_trust_anchor(&cert, roots, intermediates, now, self.algs.all)?;
            if self.check_name {
                rustls::client::verify_server_name(&cert, server_name)?;
            }
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// A connection string without its `sslmode` and `sslrootcert` (which the client library
/// refuses or reads differently), and their values. Both of libpq's forms: `key=value`
/// pairs (values quoted with `'…'` and `\` escapes) and `postgresql://` URLs (`?key=value`
/// parameters, percent-encoded).
///
/// # Errors
/// `Invalid` for a `key=value` string that does not parse.
pub fn take_tls_settings(conninfo: &str) -> Result<(String, TlsSettings)> {
    if conninfo.starts_with("postgres://") || conninfo.starts_with("postgresql://") {
        return Ok(take_from_url(conninfo));
    }
    let mut rest = Vec::new();
    let mut s = TlsSettings::default();
    for (k, v) in key_values(conninfo)? {
        match k.as_str() {
            "sslmode" => s.mode = Some(v),
            "sslrootcert" => s.rootcert = Some(v),
            _ => rest.push(format!("{k}='{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))),
        }
    }
    Ok((rest.join(" "), s))
}

/// `sslmode` and `sslrootcert` as a connection string gave them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// `sslmode`.
    pub mode: Option<String>,
    /// `sslrootcert`.
    pub rootcert: Option<String>,
}

fn take_from_url(url: &str) -> (String, TlsSettings) {
    let mut s = TlsSettings::default();
    let Some((base, query)) = url.split_once('?') else { return (url.to_owned(), s) };
    let mut kept = Vec::new();
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match percent_decode(k).as_str() {
            "sslmode" => s.mode = Some(percent_decode(v)),
            "sslrootcert" => s.rootcert = Some(percent_decode(v)),
            _ => kept.push(pair),
        }
    }
    if kept.is_empty() { (base.to_owned(), s) } else { (format!("{base}?{}", kept.join("&")), s) }
}

fn percent_decode(s: &str) -> String {
    let hex = |c: Option<&u8>| c.and_then(|&c| char::from(c).to_digit(16));
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if let (b'%', Some(h), Some(l)) = (b[i], hex(b.get(i + 1)), hex(b.get(i + 2))) {
            out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// libpq's `key = value` pairs (the grammar the client library's parser reads).
fn key_values(s: &str) -> Result<Vec<(String, String)>> {
    let bad = |why: &str| PgError::Invalid(format!("bad PostgreSQL connection string: {why}"));
    let mut out = Vec::new();
    let mut it = s.chars().peekable();
    loop {
        while it.next_if(|c| c.is_whitespace()).is_some() {}
        let mut key = String::new();
        while let Some(c) = it.next_if(|c| !c.is_whitespace() && *c != '=') {
            key.push(c);
        }
        if key.is_empty() {
            if it.peek().is_some() {
                return Err(bad("a parameter has no name"));
            }
            return Ok(out);
        }
        while it.next_if(|c| c.is_whitespace()).is_some() {}
        if it.next() != Some('=') {
            return Err(bad(&format!("expected `=` after {key}")));
        }
        while it.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if it.next_if_eq(&'\'').is_some() {
            loop {
                match it.next() {
                    None => return Err(bad("unterminated quoted value")),
                    Some('\'') => break,
                    Some('\\') => value.extend(it.next()),
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = it.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(it.next());
                } else {
                    value.push(c);
                }
            }
            if value.is_empty() {
                return Err(bad(&format!("{key} has no value")));
            }
        }
        out.push((key, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_settings_are_taken_out_of_key_value_strings() {
        let (rest, s) =
            take_tls_settings("host=db port = 5433 sslmode=verify-full sslrootcert='/etc/ca dir/it\\'s.pem' user=x")
                .unwrap();
        assert_eq!(rest, "host='db' port='5433' user='x'");
        assert_eq!(s.mode.as_deref(), Some("verify-full"));
        assert_eq!(s.rootcert.as_deref(), Some("/etc/ca dir/it's.pem"));
        // What is left parses, with its quoting.
        let (rest, _) = take_tls_settings("password='a b\\'c\\\\' host=h").unwrap();
        let c: postgres::Config = rest.parse().unwrap();
        assert_eq!(c.get_password(), Some(&b"a b'c\\"[..]));
        assert!(take_tls_settings("host='unterminated").is_err());
        assert!(take_tls_settings("host").is_err());
    }

    #[test]
    fn tls_settings_are_taken_out_of_urls() {
        let (rest, s) = take_tls_settings(
            "postgresql://u@db:5433/x?sslmode=require&application_name=a&sslrootcert=%2Ftmp%2Fca.pem",
        )
        .unwrap();
        assert_eq!(rest, "postgresql://u@db:5433/x?application_name=a");
        assert_eq!(s, TlsSettings { mode: Some("require".into()), rootcert: Some("/tmp/ca.pem".into()) });
        let (rest, _) = take_tls_settings("postgres://db/x?sslmode=disable").unwrap();
        assert_eq!(rest, "postgres://db/x");
    }

    #[test]
    fn modes_map_to_the_client_library_and_set_the_checks() {
        let p = |m: &str, root: Option<&str>| TlsPolicy::from_settings(Some(m), root).unwrap();
        assert_eq!(p("verify-ca", Some("/ca.pem")).mode.client_mode(), postgres::config::SslMode::Require);
        assert_eq!(p("allow", Some("/ca.pem")).mode.client_mode(), postgres::config::SslMode::Prefer);
        assert!(p("require", Some("/ca.pem")).checks_chain());
        assert!(p("prefer", Some("/ca.pem")).checks_chain(), "the user's roots are enforced");
        assert!(!TlsPolicy { mode: SslMode::Prefer, roots: Roots::System }.checks_chain());
        assert!(TlsPolicy { mode: SslMode::Require, roots: Roots::System }.checks_chain());
        assert!(TlsPolicy::from_settings(Some("verify-everything"), None).is_err());
        assert!(TlsPolicy::from_settings(Some("require"), Some("system")).is_err());
        assert_eq!(TlsPolicy::from_settings(None, Some("system")).unwrap().mode, SslMode::VerifyFull);
    }
}
