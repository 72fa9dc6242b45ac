//! TLS for Coffer's queries to PostgreSQL (`coffer_sources::postgres::client`), against real
//! servers listening on 127.0.0.1: one with `ssl = on` and a certificate signed by a
//! throwaway CA, one without TLS. The policy under test is `postgres::tls`'s module doc.

use coffer_sources::postgres::{PgError, client};
use coffer_store::ErrorClass;
use coffer_testkit::pg::{PgSandbox, require_postgres};

/// Whether the session the client is in is encrypted, as the server sees it.
fn encrypted(c: &mut postgres::Client) -> bool {
    c.query_one("select ssl from pg_stat_ssl where pid = pg_backend_pid()", &[]).unwrap().get(0)
}

fn tls_error(r: Result<postgres::Client, PgError>) -> String {
    match r {
        Err(e @ PgError::Tls(_)) => {
            assert_eq!(e.class(), ErrorClass::Refused);
            let text = e.to_string();
            assert!(!text.contains('\n'), "one line: {text}");
            text
        }
        Err(e) => panic!("expected a TLS error, got {e:?}"),
        Ok(_) => panic!("expected a TLS error, connected"),
    }
}

#[test]
fn queries_use_tls_as_sslmode_says_and_check_the_certificate_as_root() {
    require_postgres();
    let sb = PgSandbox::new();
    let ca = sb.test_ca("ca");
    let other = sb.test_ca("other-ca");
    let pg = sb.cluster_tcp("tls", Some(&ca));
    let base = pg.tcp_conninfo();
    let ca_pem = ca.ca.display();

    // (a) require with the CA: encrypted.
    let mut c = client::connect(Some(&format!("{base} sslmode=require sslrootcert={ca_pem}"))).unwrap();
    assert!(encrypted(&mut c), "sslmode=require must encrypt");
    // The same as a URL, and verify-full for 127.0.0.1 (in the certificate's names).
    let url = format!(
        "postgresql://postgres@127.0.0.1:{}/postgres?sslmode=verify-full&sslrootcert={}",
        pg.port,
        ca.ca.display().to_string().replace('/', "%2F")
    );
    assert!(encrypted(&mut client::connect(Some(&url)).unwrap()));
    // verify-full checks the host name; verify-ca does not.
    let wrong_name = format!("host=db.invalid hostaddr=127.0.0.1 port={} user=postgres dbname=postgres", pg.port);
    let e = tls_error(client::connect(Some(&format!("{wrong_name} sslmode=verify-full sslrootcert={ca_pem}"))));
    assert!(e.contains("not valid for this host name") && e.contains("db.invalid"), "{e}");
    let mut c = client::connect(Some(&format!("{wrong_name} sslmode=verify-ca sslrootcert={ca_pem}"))).unwrap();
    assert!(encrypted(&mut c));

    // (b) roots without the server's CA: refused, naming the server and why; never plaintext.
    let other_pem = other.ca.display().to_string();
    for mode in ["require", "verify-ca", "verify-full", "prefer"] {
        let e = tls_error(client::connect(Some(&format!("{base} sslmode={mode} sslrootcert={other_pem}"))));
        assert!(e.contains("not trusted") && e.contains(&other_pem), "{mode}: {e}");
        assert!(e.contains(&format!("127.0.0.1:{}", pg.port)), "{mode}: names the server: {e}");
    }

    // require without a root file: unlike libpq's, Coffer's checks the chain, against the
    // system's CAs, which did not sign this certificate (or a system without any: refused
    // too, asking for sslrootcert).
    match client::connect(Some(&format!("{base} sslmode=require"))) {
        Err(e @ PgError::Tls(_)) => assert!(e.to_string().contains("system's trusted CAs"), "{e}"),
        Err(e @ PgError::Invalid(_)) => assert!(e.to_string().contains("sslrootcert"), "{e}"),
        Err(e) => panic!("{e:?}"),
        Ok(_) => panic!("sslmode=require connected to a server whose CA nobody trusts"),
    }

    // (c) disable: plaintext.
    let mut c = client::connect(Some(&format!("{base} sslmode=disable"))).unwrap();
    assert!(!encrypted(&mut c), "sslmode=disable must not encrypt");
    // prefer without roots of the user's: encrypted, as libpq's prefer (no check).
    let mut c = client::connect(Some(&base)).unwrap();
    assert!(encrypted(&mut c), "the default (prefer) encrypts when the server offers TLS");

    // The unix socket never uses TLS, whatever sslmode says (as libpq).
    let mut c = client::connect(Some(&format!("{} sslmode=require", pg.conninfo()))).unwrap();
    assert!(!encrypted(&mut c));

    // A root file that does not exist is a clear error, not a connection without roots.
    let e = client::connect(Some(&format!("{base} sslmode=require sslrootcert=/nonexistent/ca.pem"))).err().unwrap();
    assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
}

#[test]
fn a_server_without_tls_fails_under_require_and_is_plaintext_under_prefer_as_root() {
    require_postgres();
    let sb = PgSandbox::new();
    let ca = sb.test_ca("ca");
    let pg = sb.cluster_tcp("plain", None);
    let base = pg.tcp_conninfo();

    // (d) require: refused, clearly.
    for mode in ["require", "verify-full"] {
        let e = tls_error(client::connect(Some(&format!("{base} sslmode={mode} sslrootcert={}", ca.ca.display()))));
        assert!(e.contains("does not accept TLS"), "{mode}: {e}");
    }
    // prefer: plaintext, as libpq (the server offers no TLS).
    let mut c = client::connect(Some(&base)).unwrap();
    assert!(!encrypted(&mut c));
}
