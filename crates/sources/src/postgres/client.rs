//! Queries to a PostgreSQL server, through the `postgres` client library rather than a
//! `psql` process (the daemon will poll `pg_stat_archiver` the same way).
//!
//! A connection string is libpq's (`host=/run/postgresql user=postgres`, or a
//! `postgresql://` URL); what it leaves out comes from libpq's environment variables
//! (`PGHOST`, `PGPORT`, `PGUSER`, `PGDATABASE`, `PGPASSWORD`, `PGAPPNAME`,
//! `PGCONNECT_TIMEOUT`, `PGSSLMODE`, `PGSSLROOTCERT`) and then libpq's defaults (the unix
//! socket in `/var/run/postgresql`, the operating-system user), so `pg backup` reaches the
//! server `pg_basebackup` reaches.
//!
//! TCP connections use TLS as `sslmode` says, through rustls ([`super::tls`], which holds
//! the policy): `disable` never, `prefer` (the default) when the server offers it,
//! `require`/`verify-ca`/`verify-full` always or fail. Unlike libpq, `require` checks the
//! server's certificate chain (against `sslrootcert`, `~/.postgresql/root.crt` or the
//! system's CAs); `verify-full` also checks the host name. A certificate that fails is a
//! [`PgError::Tls`], never a fallback to plaintext. Unix sockets never use TLS (PostgreSQL
//! does not offer it there), so the socket of a server Coffer started
//! ([`in_recovery_at_socket`]) is reached without it.
//!
//! Passwords never reach an error message: errors quote the server's message only.

use super::tls::{TlsPolicy, take_tls_settings};
use super::{PgError, Result};
use postgres::config::Host;
use postgres::{Client, Config, NoTls};
use std::path::Path;
use std::str::FromStr as _;
use std::time::Duration;

/// What `pg backup` asks the server before the base backup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerFacts {
    /// `pg_control_system().system_identifier`.
    pub sysid: u64,
    /// `wal_segment_size`, in bytes.
    pub seg_size: u64,
}

/// libpq's default socket directory on Debian and its derivatives.
const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";

/// A server to connect to: the client library's configuration and the TLS policy.
#[derive(Clone, Debug)]
pub struct Target {
    /// The client library's configuration, completed from the environment (its `sslmode`
    /// is the library's version of [`TlsPolicy::mode`]).
    pub config: Config,
    /// How TLS is used and the certificate checked.
    pub tls: TlsPolicy,
}

/// The client configuration for `conninfo`, completed from the environment as libpq does.
///
/// # Errors
/// `Invalid` for a connection string that does not parse.
pub fn config(conninfo: Option<&str>) -> Result<Target> {
    let bad = |e: postgres::Error| {
        // The library's message is "invalid connection string"; what is wrong is its source.
        let why = std::error::Error::source(&e).map_or_else(|| e.to_string(), ToString::to_string);
        PgError::Invalid(format!("bad PostgreSQL connection string: {why}"))
    };
    let (mut c, tls) = match conninfo.filter(|c| !c.trim().is_empty()) {
        Some(ci) => {
            // The client library refuses `sslrootcert` and `verify-*` modes: they are read here.
            let (rest, settings) = take_tls_settings(ci)?;
            let c = if rest.trim().is_empty() { Config::new() } else { Config::from_str(&rest).map_err(bad)? };
            (c, TlsPolicy::from_settings(settings.mode.as_deref(), settings.rootcert.as_deref())?)
        }
        None => (Config::new(), TlsPolicy::from_settings(None, None)?),
    };
    let env = env_var;
    if c.get_hosts().is_empty() {
        if c.get_hostaddrs().is_empty() {
            let hosts = env("PGHOST").unwrap_or_else(|| DEFAULT_SOCKET_DIR.to_owned());
            for h in hosts.split(',') {
                c.host(h);
            }
        } else {
            // Only addresses: each is its own host name, which TLS needs (the client library
            // checks a certificate against the host, as libpq checks it against the address).
            let addrs = c.get_hostaddrs().to_vec();
            for a in addrs {
                c.host(&a.to_string());
            }
        }
    }
    if c.get_ports().is_empty() {
        if let Some(p) = env("PGPORT").and_then(|p| p.parse().ok()) {
            c.port(p);
        }
    }
    if c.get_user().is_none() {
        if let Some(u) = env_user() {
            c.user(&u);
        }
    }
    if c.get_dbname().is_none() {
        if let Some(d) = env("PGDATABASE") {
            c.dbname(&d);
        }
    }
    if c.get_password().is_none() {
        if let Some(p) = env("PGPASSWORD") {
            c.password(p);
        }
    }
    if c.get_application_name().is_none() {
        c.application_name(&env("PGAPPNAME").unwrap_or_else(|| "coffer".to_owned()));
    }
    if c.get_connect_timeout().is_none() {
        let secs = env("PGCONNECT_TIMEOUT").and_then(|s| s.parse().ok()).unwrap_or(30);
        c.connect_timeout(Duration::from_secs(secs));
    }
    let sockets_only = c.get_hostaddrs().is_empty() && c.get_hosts().iter().all(|h| matches!(h, Host::Unix(_)));
    // Unix sockets never carry TLS: libpq ignores sslmode for them, and asking would make
    // `require` fail where pg_basebackup, with the same settings, connects.
    c.ssl_mode(if sockets_only { postgres::config::SslMode::Disable } else { tls.mode.client_mode() });
    Ok(Target { config: c, tls })
}

/// A libpq environment variable, unless unset or empty (libpq ignores empty ones).
fn env_var(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

/// libpq's user: `PGUSER`, else the operating-system user.
fn env_user() -> Option<String> {
    env_var("PGUSER").or_else(|| uzers::get_current_username().and_then(|u| u.into_string().ok()))
}

/// The server a configuration names, for messages: `HOST[,HOST…]:PORT[,PORT…]`.
fn server_name(c: &Config) -> String {
    let hosts = c
        .get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(h) => h.clone(),
            Host::Unix(p) => p.display().to_string(),
        })
        .collect::<Vec<_>>()
        .join(",");
    let ports = c.get_ports().iter().map(u16::to_string).collect::<Vec<_>>().join(",");
    format!("{hosts}:{}", if ports.is_empty() { "5432".to_owned() } else { ports })
}

/// Connects to the server `conninfo` (completed by [`config`]) names, with TLS as its
/// `sslmode` says.
///
/// # Errors
/// `Invalid` for a bad connection string or root certificate file, `Tls` when TLS fails
/// (an untrusted certificate, a server without TLS under `require`), `Server` when the
/// connection fails otherwise.
pub fn connect(conninfo: Option<&str>) -> Result<Client> {
    let t = config(conninfo)?;
    let result = if t.config.get_ssl_mode() == postgres::config::SslMode::Disable {
        t.config.connect(NoTls)
    } else {
        t.config.connect(t.tls.connector()?)
    };
    result.map_err(|e| {
        let name = server_name(&t.config);
        t.tls.failure(&name, &e).unwrap_or_else(|| server(&format!("cannot connect to PostgreSQL at {name}"), &e))
    })
}

pub(crate) fn server(what: &str, e: &postgres::Error) -> PgError {
    // The server's own message (e.g. "password authentication failed for user …") where
    // there is one; the client's otherwise. Neither carries the password.
    match e.as_db_error() {
        Some(db) => PgError::Server(format!("{what}: {}", db.message())),
        None => PgError::Server(format!("{what}: {e}")),
    }
}

/// The system identifier as PostgreSQL shows it: a `bigint`, negative for identifiers with
/// the high bit set (it is an unsigned 64-bit number).
fn sysid_of(text: &str) -> Result<u64> {
    text.parse::<u64>()
        .or_else(|_| text.parse::<i64>().map(|v| u64::from_ne_bytes(v.to_ne_bytes())))
        .map_err(|_| PgError::Server(format!("bad system identifier from the server: {text:?}")))
}

/// The cluster's system identifier and WAL segment size.
///
/// # Errors
/// `Server` when the connection or the query fails.
pub fn server_facts(client: &mut Client) -> Result<ServerFacts> {
    let row = client
        .query_one(
            "select system_identifier::text, (select setting from pg_settings where name = 'wal_segment_size') \
             from pg_control_system()",
            &[],
        )
        .map_err(|e| server("cannot ask the server for its system identifier", &e))?;
    let sysid: String = row.get(0);
    let seg: String = row.get(1);
    let seg_size =
        seg.parse().map_err(|_| PgError::Server(format!("bad wal_segment_size from the server: {seg:?}")))?;
    Ok(ServerFacts { sysid: sysid_of(&sysid)?, seg_size })
}

/// Whether the server listening on a socket in `dir` (as `pg restore --start` starts it)
/// is still in recovery.
///
/// # Errors
/// `Server` when it cannot be reached.
pub fn in_recovery_at_socket(dir: &Path) -> Result<bool> {
    // This server only: its socket, not the environment's host; the environment's user and
    // password (not its TLS settings: a socket carries none, and a bad PGSSLMODE must not
    // turn this check into a wait for a promotion it cannot see).
    let mut c = Config::new();
    c.host_path(dir).dbname("postgres").connect_timeout(Duration::from_secs(5));
    if let Some(u) = env_user() {
        c.user(&u);
    }
    if let Some(p) = env_var("PGPASSWORD") {
        c.password(p);
    }
    let mut client = c.connect(NoTls).map_err(|e| server("cannot connect to the restored server", &e))?;
    let row = client
        .query_one("select pg_is_in_recovery()", &[])
        .map_err(|e| server("cannot ask the restored server whether it is in recovery", &e))?;
    Ok(row.get(0))
}

/// Connects to database `db` of the server listening on a socket in `dir` (a server Coffer
/// started, whose authentication Coffer chose), as the first of `users` the server knows;
/// returns the client and the role. No password and no TLS: a socket carries none, and the
/// environment's settings are for other servers.
///
/// # Errors
/// `Server` quoting the last failure when none connects (or `users` is empty).
pub fn connect_socket(dir: &Path, users: &[String], db: &str) -> Result<(Client, String)> {
    let mut last = PgError::Server("no role to connect to the restored server as".into());
    for u in users {
        let mut c = Config::new();
        c.host_path(dir).dbname(db).user(u).application_name("coffer").connect_timeout(Duration::from_secs(10));
        match c.connect(NoTls) {
            Ok(client) => return Ok((client, u.clone())),
            Err(e) => last = server(&format!("cannot connect to database {db:?} of the restored server as {u:?}"), &e),
        }
    }
    Err(last)
}

/// `pg_stat_archiver`: the last WAL file the server archived and the last it failed to,
/// with when, and the WAL file the server writes now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiverStatus {
    /// `last_archived_wal`.
    pub last_archived: Option<String>,
    /// `last_archived_time`.
    pub last_archived_time: Option<jiff::Timestamp>,
    /// `last_failed_wal`.
    pub last_failed: Option<String>,
    /// `last_failed_time`.
    pub last_failed_time: Option<jiff::Timestamp>,
    /// `failed_count`.
    pub failed_count: i64,
    /// The WAL file holding the current write position (`pg_current_wal_lsn()`); none on a
    /// standby. At a segment boundary (just after a switch) it names the segment that ended,
    /// so "equal to the last archived" means nothing was written since.
    pub current_wal: Option<String>,
}

/// The server's archiver status (for monitoring: the daemon polls it).
///
/// # Errors
/// `Server` when the query fails.
pub fn archiver_status(client: &mut Client) -> Result<ArchiverStatus> {
    // Times as microseconds since the epoch: independent of the session's DateStyle and
    // time zone, and without the client library's date features.
    let row = client
        .query_one(
            "select last_archived_wal, (extract(epoch from last_archived_time) * 1000000)::int8, \
             last_failed_wal, (extract(epoch from last_failed_time) * 1000000)::int8, failed_count, \
             case when pg_is_in_recovery() then null else pg_walfile_name(pg_current_wal_lsn()) end \
             from pg_stat_archiver",
            &[],
        )
        .map_err(|e| server("cannot read pg_stat_archiver", &e))?;
    let time = |i: usize| -> Option<jiff::Timestamp> {
        row.get::<_, Option<i64>>(i).and_then(|us| jiff::Timestamp::from_microsecond(us).ok())
    };
    Ok(ArchiverStatus {
        last_archived: row.get(0),
        last_archived_time: time(1),
        last_failed: row.get(2),
        last_failed_time: time(3),
        failed_count: row.get(4),
        current_wal: row.get(5),
    })
}

#[cfg(test)]
mod tests {
    use postgres::config::{Host, SslMode};

    #[test]
    fn tls_applies_to_tcp_hosts_only_and_addresses_name_their_host() {
        let t = super::config(Some("host=/tmp sslmode=require")).unwrap();
        assert_eq!(t.config.get_ssl_mode(), SslMode::Disable, "no TLS on unix sockets, as libpq");
        let t = super::config(Some("hostaddr=127.0.0.1 sslmode=verify-full sslrootcert=/ca.pem")).unwrap();
        assert_eq!(t.config.get_ssl_mode(), SslMode::Require);
        assert_eq!(t.config.get_hosts(), [Host::Tcp("127.0.0.1".into())], "the address is the name TLS checks");
        let t = super::config(Some("host=db sslmode=disable")).unwrap();
        assert_eq!(t.config.get_ssl_mode(), SslMode::Disable);
        // Options the client library does not support are refused, naming them.
        let e = super::config(Some("host=db sslcert=/c.pem")).unwrap_err().to_string();
        assert!(e.contains("sslcert"), "{e}");
    }

    #[test]
    fn system_identifiers_with_the_high_bit_set_are_read() {
        assert_eq!(super::sysid_of("7300000000000000001").unwrap(), 7_300_000_000_000_000_001);
        assert_eq!(super::sysid_of("-1").unwrap(), u64::MAX);
        assert!(super::sysid_of("x").is_err());
    }
}
