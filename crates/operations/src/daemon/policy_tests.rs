//! The daemon stores the policy file in its repositories' ledgers once per change: at
//! start, on reload, and not again while the text and its record's age stay the same.

use super::*;
use crate::drill::policy::{hash, kv_key, policy_text};
use crate::state::OutboxEntry;

fn write_config(dir: &std::path::Path, source: &str) -> PathBuf {
    let text = format!(
        "[daemon]\nstate-dir = {:?}\nshutdown-grace = \"5s\"\n\n\
         [repositories.main]\nlocation = {:?}\n\n\
         [repositories.main.security]\nwatch = false\n\n[repositories.main.security.canary]\nenabled = false\n\n\
         [files.{source}]\nrepository = \"main\"\npaths = [\"/{source}\"]\nschedule = \"daily\"\n",
        dir.join("state").display().to_string(),
        // No repository there: the records stay in the outbox, where the test counts them.
        dir.join("no-vault").display().to_string(),
    );
    let path = dir.join("coffer.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The policy records waiting in the outbox for `main`: their hashes.
fn queued(state: &State) -> Vec<String> {
    state
        .outbox_entries("main", 100)
        .unwrap()
        .into_iter()
        .filter_map(|(_, e)| match e {
            OutboxEntry::Other { kind, body, .. } if kind == crate::ledger::POLICY => {
                body.get("hash").and_then(serde_json::Value::as_str).map(str::to_owned)
            }
            _ => None,
        })
        .collect()
}

/// Runs a daemon on the file at `path`; `between` runs while it is up (given the control
/// sender); then stops it.
fn with_daemon(path: &std::path::Path, between: impl FnOnce(&Sender<Control>, &State)) {
    let config = Config::load(path).unwrap();
    let dir = config.daemon.state_dir.clone().unwrap();
    let (tx, rx) = crossbeam_channel::unbounded();
    let job: RunFn = Arc::new(|ctx: &JobContext, spec: &JobSpec, _ctl: &JobControl| {
        crate::event::RunRecord::new(
            &spec.id,
            spec.kind,
            spec.source.as_deref(),
            &spec.repository,
            &ctx.host,
            ctx.clock.now(),
        )
    });
    let d = std::thread::spawn(move || run_with(config, &rx, Clock::system(), Options::default(), job));
    let deadline = Instant::now() + crate::test_util::WAIT;
    let state = loop {
        if let Ok(s) = State::open(&dir) {
            break s;
        }
        assert!(Instant::now() < deadline, "no state");
        std::thread::sleep(Duration::from_millis(50));
    };
    between(&tx, &state);
    tx.send(Control::Shutdown).unwrap();
    d.join().unwrap().unwrap();
}

fn wait_for(state: &State, n: usize) -> Vec<String> {
    let deadline = Instant::now() + crate::test_util::WAIT;
    loop {
        let q = queued(state);
        if q.len() >= n {
            return q;
        }
        assert!(Instant::now() < deadline, "{n} policy records not queued: {q:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn drill_rebuild_the_daemon_records_the_policy_once_per_change() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "home");
    let first = hash(&policy_text(&Config::load(&path).unwrap()).unwrap());
    with_daemon(&path, |_, state| {
        assert_eq!(wait_for(state, 1), std::slice::from_ref(&first));
    });
    // Started again on the same file: nothing new (the state remembers the hash).
    with_daemon(&path, |_, state| {
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(queued(state), std::slice::from_ref(&first), "not recorded twice");
        let kept = state.get(&kv_key("main")).unwrap().unwrap();
        assert!(kept.contains(&first), "{kept}");
    });
    // Changed, then SIGHUP: recorded again, once.
    with_daemon(&path, |tx, state| {
        write_config(dir.path(), "etc");
        tx.send(Control::Reload).unwrap();
        let second = hash(&policy_text(&Config::load(&path).unwrap()).unwrap());
        assert_eq!(wait_for(state, 2), [first.clone(), second.clone()]);
        tx.send(Control::Reload).unwrap();
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(queued(state).len(), 2, "an unchanged reload records nothing");
    });
}
