//! The embedded default vault: created by the first `put`, never by a reading command, and
//! never at a location the user named.

use crate::{Sandbox, exists};

#[test]
fn the_readme_command_works_from_a_fresh_home() {
    // README: `cargo run --release -p coffer-cli -- vault put hello.txt README.md --retain 1d`
    let sb = Sandbox::new();
    let readme = sb.file("README.md", b"# Coffer\n");
    let run = sb.coffer(["vault", "put", "hello.txt"]).arg(&readme).args(["--retain", "1d"]).ok();
    let vault = sb.home().join(".local/share/coffer/vault");
    assert_eq!(
        run.stderr,
        format!(
            "coffer: created the default vault at {} (credentials in {})\n",
            vault.display(),
            vault.join("credentials").display()
        )
    );
    let version = run.stdout_text().trim().to_owned();
    assert_eq!(version.len(), 24, "{version}");
    assert!(exists(&vault.join("coffer-vault.toml")));
    assert!(exists(&vault.join("credentials/writer.toml")));

    // The second put uses it quietly; reads work without any setup.
    let run = sb.coffer(["vault", "put", "hello.txt", "-", "--retain", "1d"]).stdin(b"two").ok();
    assert!(run.stderr.is_empty(), "{}", run.stderr);
    assert_eq!(sb.coffer(["vault", "get", "hello.txt", "--version", &version]).ok().stdout, b"# Coffer\n");
    let listed = sb.coffer(["vault", "versions", "--json"]).ok().json();
    assert_eq!(listed["versions"].as_array().unwrap().len(), 2);
    assert_eq!(listed["versions"][1]["retention"]["mode"], "compliance");
}

#[test]
fn the_readme_backup_command_works_from_a_fresh_home() {
    // README: `COFFER_PASSWORD=change-me cargo run --release -p coffer-cli -- backup . --exclude target`
    let sb = Sandbox::new();
    let checkout = sb.path("checkout");
    std::fs::create_dir_all(checkout.join("src")).unwrap();
    std::fs::create_dir_all(checkout.join("target/debug")).unwrap();
    std::fs::write(checkout.join("README.md"), b"# Coffer\n").unwrap();
    std::fs::write(checkout.join("src/lib.rs"), b"fn main() {}\n").unwrap();
    std::fs::write(checkout.join("target/debug/big"), vec![7u8; 100_000]).unwrap();
    let backup = || {
        sb.coffer(["backup", ".", "--exclude", "target", "--json"])
            .current_dir(&checkout)
            .env("COFFER_PASSWORD", "change-me")
            .ok()
    };
    let first = backup();
    let vault = sb.home().join(".local/share/coffer/vault");
    assert!(first.stderr.contains(&format!("created vault {}", vault.display())), "{}", first.stderr);
    assert!(first.stderr.contains("created repository"), "{}", first.stderr);
    let doc = first.json();
    assert_eq!(doc["summary"]["files"], 2, "target/ is excluded: {doc}");
    assert_eq!(doc["summary"]["files_read"], 2);
    let second = backup();
    assert!(second.stderr.is_empty(), "{}", second.stderr);
    assert_eq!(second.json()["summary"]["files_read"], 0, "unchanged files are not read again");
    let ls = sb.coffer(["ls", "latest"]).env("COFFER_PASSWORD", "change-me").ok().stdout_text();
    assert!(ls.contains("checkout/src/lib.rs") && !ls.contains("target"), "{ls}");
}

#[test]
fn reading_commands_on_a_missing_default_vault_suggest_init_and_create_nothing() {
    let sb = Sandbox::new();
    let vault = sb.home().join(".local/share/coffer/vault");
    for args in [&["vault", "versions"][..], &["vault", "get", "k"], &["vault", "config"], &["vault", "rm", "k"]] {
        let err = sb.coffer(args).fails(1);
        assert_eq!(
            err,
            format!(
                "coffer: error: no vault at the default location {}; create one with `coffer vault init` (or name one with --vault DIR)",
                vault.display()
            )
        );
    }
    assert!(!exists(&sb.home().join(".local")), "nothing was created");
}

#[test]
fn xdg_data_home_moves_the_default_vault_and_init_without_dir_uses_it() {
    let sb = Sandbox::new();
    let data = sb.path("xdg-data");
    let run = sb.coffer(["vault", "init", "--json"]).env("XDG_DATA_HOME", &data).ok();
    let doc = run.json();
    assert_eq!(doc["vault"], data.join("coffer/vault").display().to_string());
    sb.coffer(["vault", "put", "k", "-"]).env("XDG_DATA_HOME", &data).stdin(b"v").ok();
    assert_eq!(sb.coffer(["vault", "get", "k"]).env("XDG_DATA_HOME", &data).ok().stdout, b"v");
    assert!(!exists(&sb.home().join(".local")), "HOME's data dir is not used");
}

#[test]
fn a_named_vault_is_never_created_implicitly() {
    let sb = Sandbox::new();
    let named = sb.path("typo");
    let err = sb.coffer(["--vault"]).arg(&named).args(["vault", "put", "k", "-"]).stdin(b"x").fails(1);
    assert_eq!(
        err,
        format!(
            "coffer: error: {} is not a coffer vault; create one with `coffer vault init {}`",
            named.display(),
            named.display()
        )
    );
    let err = sb.coffer(["vault", "put", "k", "-"]).env("COFFER_VAULT", &named).stdin(b"x").fails(1);
    assert!(err.contains("is not a coffer vault"), "{err}");
    assert!(!exists(&named));
    assert!(!exists(&sb.home().join(".local")), "nor the default one instead");
}

#[test]
fn put_with_outside_credentials_does_not_create_the_default_vault() {
    let sb = Sandbox::with_vault();
    let creds = sb.vault().join("credentials/writer.toml");
    let err = sb.coffer(["vault", "put", "k", "-", "--credentials"]).arg(&creds).stdin(b"x").fails(1);
    assert!(err.contains("no vault at the default location"), "{err}");
    assert!(!exists(&sb.home().join(".local")));
}
