//! `coffer pg backup` over TLS: a server on 127.0.0.1 with `ssl = on` and a throwaway CA's
//! certificate. Coffer's own query and `pg_basebackup` both use the connection string's
//! `sslmode=verify-full sslrootcert=…`; a CA that did not sign the server's certificate is
//! refused (exit 3, one line naming the server) before anything is written.

use crate::pg_util::{PgSandbox, require_postgres};

#[test]
fn pg_backup_over_tls_checks_the_server_certificate_as_root() {
    require_postgres();
    let sb = PgSandbox::new();
    let ca = sb.test_ca("ca");
    let other = sb.test_ca("other-ca");
    let pg = sb.cluster_tcp("tls", Some(&ca));
    let conninfo =
        |root: &std::path::Path| format!("{} sslmode=verify-full sslrootcert={}", pg.tcp_conninfo(), root.display());

    let err = sb.c(["pg", "backup", "--pg", &conninfo(&other.ca)]).fails(3);
    assert!(err.contains("not trusted") && err.contains(&format!("127.0.0.1:{}", pg.port)), "{err}");
    assert_eq!(base_backups(&sb), 0, "a refused connection stores no base backup");

    sb.c(["pg", "backup", "--pg", &conninfo(&ca.ca)]).ok();
    assert_eq!(base_backups(&sb), 1, "the base backup over TLS is stored");
}

fn base_backups(sb: &PgSandbox) -> usize {
    let info = sb.c(["pg", "info", "--json"]).ok().json();
    info["clusters"]
        .as_array()
        .map_or(0, |cs| cs.iter().filter_map(|c| c["base_backups"].as_array()).map(Vec::len).sum())
}
