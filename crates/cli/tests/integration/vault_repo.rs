//! `coffer vault …` given a local `--repo` (or `COFFER_REPO`) acts on that directory as its
//! vault, as it does on an `s3://` repository's bucket — never on the default vault.

use crate::exists;
use crate::repo_util::{PASSWORD, Repo};

#[test]
fn vault_commands_use_a_local_repo_as_their_vault() {
    let repo = Repo::init();
    let src = repo.sb.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), b"hello").unwrap();
    repo.backup(&[&src], &[]);

    // `--repo DIR vault versions` lists the repository's objects, without any --vault.
    let listed =
        repo.sb.coffer(["--repo"]).arg(repo.vault()).args(["--role", "auditor", "vault", "versions", "--json"]).ok();
    let doc = listed.json();
    let keys: Vec<&str> = doc["versions"].as_array().unwrap().iter().map(|v| v["key"].as_str().unwrap()).collect();
    assert!(keys.contains(&"config"), "the repository's objects: {keys:?}");
    assert!(keys.iter().any(|k| k.starts_with("snapshots/")), "{keys:?}");

    // The same through COFFER_REPO, and for a command that stores: the put lands in the repo.
    let put = repo
        .sb
        .coffer(["vault", "put", "note", "-", "--retain", "1d"])
        .env("COFFER_REPO", repo.vault())
        .stdin(b"x")
        .ok();
    let version = put.stdout_text().trim().to_owned();
    let got = repo.sb.coffer(["--repo"]).arg(repo.vault()).args(["vault", "get", "note", "--version", &version]).ok();
    assert_eq!(got.stdout, b"x");
    assert!(!exists(&repo.sb.home().join(".local/share/coffer/vault")), "the default vault was never created");

    // An explicit --vault still wins over --repo.
    let other = repo.sb.path("other");
    repo.sb.coffer(["vault", "init"]).arg(&other).ok();
    let err = repo
        .sb
        .coffer(["--repo"])
        .arg(repo.vault())
        .arg("--vault")
        .arg(&other)
        .args(["vault", "get", "note"])
        .env("COFFER_PASSWORD", PASSWORD)
        .fails(5);
    assert!(err.contains("note not found"), "{err}");

    // A --repo that is not a vault is named, not replaced by the default vault.
    let missing = repo.sb.path("no-such-repo");
    let err = repo.sb.coffer(["--repo"]).arg(&missing).args(["vault", "versions"]).fails(1);
    assert!(err.contains(&missing.display().to_string()) && err.contains("is not a coffer vault"), "{err}");
}
