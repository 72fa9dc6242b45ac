//! `coffer run JOB`: one job of the policy file run by hand, through the same `run_job` the
//! daemon runs, its record printed and kept in the state directory.

use crate::repo_util::{PASSWORD, Repo};
use std::path::Path;

/// The policy file: repository `main` (the test vault), the state in the sandbox, and
/// files sources `home` (`src`) and `gone` (a path that does not exist).
fn policy(repo: &Repo) -> std::path::PathBuf {
    let text = format!(
        "[daemon]\nstate-dir = {:?}\nhost = \"runner\"\n\
         [repositories.main]\nlocation = {:?}\n\
         [files.home]\nrepository = \"main\"\nschedule = \"hourly\"\npaths = [{:?}]\n\
         [files.gone]\nrepository = \"main\"\nschedule = \"hourly\"\npaths = [{:?}]\n",
        repo.sb.path("state").display().to_string(),
        repo.vault().display().to_string(),
        repo.sb.path("src").display().to_string(),
        repo.sb.path("no/such/dir").display().to_string(),
    );
    repo.sb.file("coffer.toml", text.as_bytes())
}

fn run(repo: &Repo, config: &Path, job: &str) -> crate::Cmd {
    repo.sb.coffer(["run", job, "--config"]).arg(config).env("COFFER_PASSWORD", PASSWORD)
}

#[test]
fn ops_jobs_run_backs_up_now_prints_the_record_and_keeps_it() {
    let repo = Repo::init();
    std::fs::create_dir_all(repo.sb.path("src")).unwrap();
    std::fs::write(repo.sb.path("src/a.txt"), b"alpha").unwrap();
    let config = policy(&repo);

    let r = run(&repo, &config, "home/backup").arg("--json").ok().json();
    assert_eq!(
        (r["job"].as_str(), r["outcome"].as_str(), r["host"].as_str()),
        (Some("home/backup"), Some("success"), Some("runner")),
        "{r}"
    );
    let snap = r["snapshot"].as_str().unwrap().to_owned();
    let snaps = repo.c(["snapshots", "--json"]).ok().json();
    assert_eq!(snaps[0]["id"].as_str(), Some(snap.as_str()), "{snaps}");

    // Kept in the daemon's state, for `coffer status` and the ledger.
    let state = coffer_operations::State::open(&repo.sb.path("state")).unwrap();
    let runs = state.runs(Some("home/backup"), 10).unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].snapshot.as_deref(), Some(snap.as_str()));

    // Text: one line, then the details.
    let out = run(&repo, &config, "home/backup").ok().stdout_text();
    assert!(out.starts_with("home/backup success in ") && out.contains("snapshot "), "{out}");

    // A missing path: exit 1, one line naming the job and the path; recorded too.
    let line = run(&repo, &config, "gone/backup").fails(1);
    assert!(line.contains("gone/backup failed") && line.contains("no/such/dir"), "{line}");
    assert_eq!(state.runs(Some("gone/backup"), 10).unwrap()[0].error_class.as_deref(), Some("io"));

    // An unknown job: a usage error listing the jobs.
    let line = run(&repo, &config, "nope/backup").fails(2);
    assert!(line.contains("home/backup") && line.contains("gone/backup"), "{line}");
}
