//! The daemon loop's own rules (retries, timeouts, one job per source, the overall limit,
//! shutdown) on jobs that fail, hang or count on demand; the jobs themselves are tested end
//! to end through the binary (`crates/cli/tests/integration/ops_daemon.rs`).

use super::*;
use crate::event::RunRecord;
use crate::test_util::WAIT;
use std::sync::atomic::AtomicUsize;

/// The security watch and canary of `main` off: these tests count the jobs they declare
/// (`a_daemon_supervises_the_watch_and_once_does_not_start_it` has them on).
const NO_SECURITY: &str =
    "[repositories.main.security]\nwatch = false\n\n[repositories.main.security.canary]\nenabled = false\n\n";

fn config(dir: &std::path::Path, body: &str) -> Config {
    let text = format!(
        "[daemon]\nstate-dir = {:?}\nretry-backoff = \"100ms\"\nshutdown-grace = \"10s\"\n\n\
         [repositories.main]\nlocation = {:?}\n\n{NO_SECURITY}{body}",
        dir.join("state").display().to_string(),
        dir.join("no-vault").display().to_string(),
    );
    Config::parse(&text, &dir.join("coffer.toml")).unwrap()
}

fn record(ctx: &JobContext, spec: &JobSpec, outcome: Outcome, class: Option<&str>) -> RunRecord {
    RunRecord {
        outcome,
        error_class: class.map(str::to_owned),
        error: class.map(|c| format!("a {c} error")),
        ..RunRecord::new(&spec.id, spec.kind, spec.source.as_deref(), &spec.repository, &ctx.host, ctx.clock.now())
    }
}

/// Runs the daemon in a thread until `until` holds on its state (or [`WAIT`]), then stops
/// it. A daemon that stops by itself fails the test at once, with its error.
fn run_until(config: Config, job: RunFn, until: impl Fn(&State) -> bool) -> Arc<State> {
    let dir = config.daemon.state_dir.clone().unwrap();
    let (tx, rx) = crossbeam_channel::unbounded();
    let d = std::thread::spawn(move || run_with(config, &rx, Clock::system(), Options::default(), job));
    let deadline = Instant::now() + WAIT;
    let stopped = |d: std::thread::JoinHandle<Result<(), DaemonError>>| -> ! {
        match d.join() {
            Ok(r) => panic!("the daemon stopped by itself: {r:?}"),
            Err(p) => std::panic::resume_unwind(p),
        }
    };
    let state = loop {
        if let Ok(s) = State::open(&dir) {
            break Arc::new(s);
        }
        if d.is_finished() {
            stopped(d);
        }
        assert!(Instant::now() < deadline, "the daemon's state never opened in {WAIT:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    while !until(&state) {
        if d.is_finished() {
            stopped(d);
        }
        assert!(Instant::now() < deadline, "condition not reached in {WAIT:?}: {:#?}", state.runs(None, 50).unwrap());
        std::thread::sleep(Duration::from_millis(50));
    }
    tx.send(Control::Shutdown).unwrap();
    d.join().unwrap().unwrap();
    state
}

fn outcomes(state: &State, job: &str) -> Vec<Outcome> {
    let mut v: Vec<Outcome> = state.runs(Some(job), 1000).unwrap().into_iter().map(|r| r.outcome).collect();
    v.reverse();
    v
}

#[test]
fn transient_failures_are_retried_with_backoff_and_others_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(
        dir.path(),
        "[files.flaky]\nrepository = \"main\"\npaths = [\"/\"]\nschedule = \"every 1s\"\nretries = 2\n\n\
         [files.broken]\nrepository = \"main\"\npaths = [\"/\"]\nschedule = \"every 1s\"\nretries = 2\n",
    );
    let calls = Arc::new(AtomicUsize::new(0));
    let broken_calls = Arc::new(AtomicUsize::new(0));
    let (c1, c2) = (calls.clone(), broken_calls.clone());
    let job: RunFn = Arc::new(move |ctx: &JobContext, spec: &JobSpec, _ctl: &JobControl| {
        if spec.id == "broken/backup" {
            c2.fetch_add(1, Ordering::SeqCst);
            return record(ctx, spec, Outcome::Failed, Some("invalid"));
        }
        // Fails twice (transient), then works; again for every run.
        if c1.fetch_add(1, Ordering::SeqCst) % 3 < 2 {
            record(ctx, spec, Outcome::Failed, Some("transient"))
        } else {
            record(ctx, spec, Outcome::Success, None)
        }
    });
    let state = run_until(c, job, |s| {
        s.last_run("flaky/backup", &[Outcome::Success]).unwrap().is_some()
            && s.last_run("broken/backup", &[Outcome::Failed]).unwrap().is_some()
    });
    let ok = state.last_run("flaky/backup", &[Outcome::Success]).unwrap().unwrap();
    assert_eq!(ok.attempts, 3);
    assert!(ok.scheduled.is_some());
    let failed = state.last_run("broken/backup", &[Outcome::Failed]).unwrap().unwrap();
    assert_eq!(failed.attempts, 1, "a non-transient error is not retried");
    // Each recorded run of `broken` made exactly one attempt.
    let broken_runs = outcomes(&state, "broken/backup").iter().filter(|o| **o == Outcome::Failed).count();
    assert_eq!(broken_calls.load(Ordering::SeqCst), broken_runs);
}

#[test]
fn a_job_past_its_timeout_is_cancelled_and_recorded_as_timed_out() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(
        dir.path(),
        "[files.slow]\nrepository = \"main\"\npaths = [\"/\"]\nschedule = \"every 1s\"\ntimeout = \"1s\"\n",
    );
    let job: RunFn = Arc::new(|ctx: &JobContext, spec: &JobSpec, ctl: &JobControl| {
        while !ctl.cancel.is_cancelled() {
            std::thread::sleep(Duration::from_millis(10));
        }
        record(ctx, spec, Outcome::Cancelled, Some("cancelled"))
    });
    let state = run_until(c, job, |s| s.last_run("slow/backup", &[Outcome::TimedOut]).unwrap().is_some());
    let r = state.last_run("slow/backup", &[Outcome::TimedOut]).unwrap().unwrap();
    assert!(r.error.unwrap().contains("timeout"));
    let took = r.finished.duration_since(r.started).as_secs_f64();
    // Not before its timeout; the upper bound only tells the timeout from a run that ended
    // some other way much later (a loaded machine delays the cancellation by seconds).
    assert!((0.9..60.0).contains(&took), "{took}");
    // Slots that came due while it ran were missed, not run beside it.
    let o = outcomes(&state, "slow/backup");
    assert!(o.contains(&Outcome::Missed), "{o:?}");
}

#[test]
fn one_job_per_source_and_the_overall_limit_hold() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[daemon]\nstate-dir = {:?}\nmax-concurrent-jobs = 2\nshutdown-grace = \"10s\"\n\n\
         [repositories.main]\nlocation = \"/nonexistent\"\n\
         [repositories.main.verify]\nschedule = \"every 1s\"\n\
         [repositories.main.prune]\nschedule = \"every 1s\"\n\n{NO_SECURITY}\
         [files.a]\nrepository = \"main\"\npaths = [\"/\"]\nschedule = \"every 1s\"\n\
         [files.b]\nrepository = \"main\"\npaths = [\"/\"]\nschedule = \"every 1s\"\n\
         [files.c]\nrepository = \"main\"\npaths = [\"/\"]\nschedule = \"every 1s\"\n",
        dir.path().join("state").display().to_string()
    );
    let c = Config::parse(&text, &dir.path().join("coffer.toml")).unwrap();
    let now_running = Arc::new(Mutex::new(Vec::<String>::new()));
    let worst = Arc::new(Mutex::new((0usize, false)));
    let (nr, w) = (now_running.clone(), worst.clone());
    let job: RunFn = Arc::new(move |ctx: &JobContext, spec: &JobSpec, _ctl: &JobControl| {
        let lane = lane(spec);
        {
            let mut r = nr.lock().unwrap();
            let mut w = w.lock().unwrap();
            let same_lane = r.iter().any(|l| Some(l) == lane.as_ref());
            r.push(lane.clone().unwrap());
            w.0 = w.0.max(r.len());
            w.1 |= same_lane;
        }
        std::thread::sleep(Duration::from_millis(700));
        {
            let mut r = nr.lock().unwrap();
            if let Some(i) = r.iter().position(|l| Some(l) == lane.as_ref()) {
                r.remove(i);
            }
        }
        record(ctx, spec, Outcome::Success, None)
    });
    let state = run_until(c, job, |s| {
        ["a/backup", "b/backup", "c/backup", "main/verify", "main/prune"]
            .iter()
            .all(|j| s.last_run(j, &[Outcome::Success]).unwrap().is_some())
    });
    let (most, same_lane) = *worst.lock().unwrap();
    assert!(most <= 2, "at most max-concurrent-jobs at once: {most}");
    assert!(!same_lane, "verify and prune of one repository never ran at once");
    drop(state);
}

#[test]
fn shutdown_cancels_running_jobs_records_them_and_keeps_their_slot_for_next_time() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path(), "[files.long]\nrepository = \"main\"\npaths = [\"/\"]\nschedule = \"every 1s\"\n");
    let started = Arc::new(AtomicBool::new(false));
    let s2 = started.clone();
    let job: RunFn = Arc::new(move |ctx: &JobContext, spec: &JobSpec, ctl: &JobControl| {
        s2.store(true, Ordering::SeqCst);
        while !ctl.cancel.is_cancelled() {
            std::thread::sleep(Duration::from_millis(10));
        }
        record(ctx, spec, Outcome::Failed, Some("cancelled"))
    });
    let before = Clock::system().now();
    let st = started.clone();
    let state = run_until(c, job, move |_| st.load(Ordering::SeqCst));
    let runs = state.runs(Some("long/backup"), 10).unwrap();
    let cancelled: Vec<_> = runs.iter().filter(|r| r.outcome == Outcome::Cancelled).collect();
    assert_eq!(cancelled.len(), 1, "{runs:#?}");
    let slot = cancelled[0].scheduled.unwrap();
    // The slot key still points before the cancelled slot: the next start runs it again.
    let kept: Timestamp = state.get(&slot_key("long/backup")).unwrap().unwrap().parse().unwrap();
    assert!(kept < slot, "{kept} < {slot}");
    assert!(kept >= before.checked_sub(jiff::SignedDuration::from_secs(1)).unwrap());
}

#[test]
fn the_lock_holds_while_the_daemon_runs() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path(), "[files.a]\nrepository = \"main\"\npaths = [\"/\"]\nschedule = \"daily\"\n");
    let c2 = c.clone();
    let (tx, rx) = crossbeam_channel::unbounded();
    let d = std::thread::spawn(move || run(c, &rx, Clock::system()));
    let lock = dir.path().join("state/daemon.lock");
    let deadline = Instant::now() + WAIT;
    while !std::fs::read_to_string(&lock).is_ok_and(|s| !s.is_empty()) {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    let (_tx2, rx2) = crossbeam_channel::unbounded();
    let e = run(c2, &rx2, Clock::system()).unwrap_err();
    assert!(matches!(e, DaemonError::AlreadyRunning { .. }), "{e}");
    assert_eq!(e.class(), ErrorClass::Conflict);
    tx.send(Control::Shutdown).unwrap();
    d.join().unwrap().unwrap();
}

#[test]
fn a_continuous_job_is_restarted_with_backoff_not_in_a_loop() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(
        dir.path(),
        "[postgres.db]\nrepository = \"main\"\narchiving = \"streaming\"\ncheck-interval = \"1h\"\n\
         [postgres.db.base-backup]\nschedule = \"daily 03:00\"\n",
    );
    let starts = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let s2 = starts.clone();
    let job: RunFn = Arc::new(move |ctx: &JobContext, spec: &JobSpec, _ctl: &JobControl| {
        if spec.kind == JobKind::Stream {
            s2.lock().unwrap().push(Instant::now());
            return record(ctx, spec, Outcome::Failed, Some("transient"));
        }
        record(ctx, spec, Outcome::Success, None)
    });
    let st = starts.clone();
    let state = run_until(c, job, move |_| st.lock().unwrap().len() >= 3);
    let starts = starts.lock().unwrap().clone();
    // At least 1 s, then at least 2 s between restarts: never a loop, and the delay grew.
    // Only lower bounds: a loaded machine adds any delay to either gap, so comparing the
    // two gaps would fail on a scheduling hiccup (the doubling itself is
    // `supervise::tests`'s to pin).
    let gaps: Vec<f64> = starts.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).collect();
    assert!(gaps[0] >= 0.9 && gaps[1] >= 1.9, "{gaps:?}");
    // Every end is recorded.
    let ended = outcomes(&state, "db/stream");
    assert!(ended.len() >= 2 && ended.iter().all(|o| matches!(o, Outcome::Failed | Outcome::Cancelled)), "{ended:?}");
}

#[test]
fn once_runs_what_is_due_and_returns() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path(), "[files.a]\nrepository = \"main\"\npaths = [\"/\"]\nschedule = \"every 1s\"\n");
    let job: RunFn =
        Arc::new(|ctx: &JobContext, spec: &JobSpec, _: &JobControl| record(ctx, spec, Outcome::Success, None));
    let (_tx, rx) = crossbeam_channel::unbounded();
    // First start: the job is new, nothing is due yet.
    run_with(c.clone(), &rx, Clock::system(), Options { once: true }, job.clone()).unwrap();
    let state = State::open(&dir.path().join("state")).unwrap();
    assert!(state.runs(None, 10).unwrap().is_empty());
    std::thread::sleep(Duration::from_millis(2100));
    run_with(c, &rx, Clock::system(), Options { once: true }, job).unwrap();
    let runs = state.runs(None, 10).unwrap();
    let ok: Vec<_> = runs.iter().filter(|r| r.outcome == Outcome::Success).collect();
    assert_eq!(ok.len(), 1, "{runs:#?}");
    assert!(ok[0].late);
}

#[test]
fn a_job_that_panics_is_a_failed_run_and_runs_again() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path(), "[files.a]\nrepository = \"main\"\npaths = [\"/\"]\nschedule = \"every 1s\"\n");
    let job: RunFn = Arc::new(|_: &JobContext, _: &JobSpec, _: &JobControl| panic!("a bug in a job"));
    let state = run_until(c, job, |s| {
        s.runs(Some("a/backup"), 10).unwrap().iter().filter(|r| r.outcome == Outcome::Failed).count() >= 2
    });
    let r = state.last_run("a/backup", &[Outcome::Failed]).unwrap().unwrap();
    assert!(r.error.unwrap().contains("panicked"));
    assert!(r.scheduled.is_some());
}

#[test]
fn a_daemon_supervises_the_watch_and_once_does_not_start_it() {
    let dir = tempfile::tempdir().unwrap();
    // Security on (the default) for the repository `main`.
    let text = format!(
        "[daemon]\nstate-dir = {:?}\nshutdown-grace = \"10s\"\n\n[repositories.main]\nlocation = \"/nonexistent\"\n\n\
         [files.a]\nrepository = \"main\"\npaths = [\"/\"]\nschedule = \"daily\"\n",
        dir.path().join("state").display().to_string()
    );
    let c = Config::parse(&text, &dir.path().join("coffer.toml")).unwrap();
    let kinds: Vec<(String, bool)> = crate::jobs::jobs(&c).into_iter().map(|j| (j.id, j.schedule.is_none())).collect();
    assert_eq!(
        kinds,
        [("a/backup".to_owned(), false), ("main/watch".to_owned(), true), ("main/canary".to_owned(), false)]
    );
    let watched = Arc::new(AtomicUsize::new(0));
    let w2 = watched.clone();
    let job: RunFn = Arc::new(move |ctx: &JobContext, spec: &JobSpec, ctl: &JobControl| {
        if spec.kind == JobKind::Watch {
            w2.fetch_add(1, Ordering::SeqCst);
            while !ctl.cancel.is_cancelled() {
                std::thread::sleep(Duration::from_millis(10));
            }
            return record(ctx, spec, Outcome::Cancelled, Some("cancelled"));
        }
        record(ctx, spec, Outcome::Success, None)
    });
    let (_tx, rx) = crossbeam_channel::unbounded();
    run_with(c.clone(), &rx, Clock::system(), Options { once: true }, job.clone()).unwrap();
    assert_eq!(watched.load(Ordering::SeqCst), 0, "--once starts no continuous job");
    let w3 = watched.clone();
    let state = run_until(c, job, move |_| w3.load(Ordering::SeqCst) == 1);
    // Stopped by the shutdown: one run, recorded `cancelled`, never restarted in between.
    assert_eq!(outcomes(&state, "main/watch"), [Outcome::Cancelled]);
    assert_eq!(watched.load(Ordering::SeqCst), 1);
}

/// A drill that ran and did not pass (class `drill`) is not retried and raises
/// `drill-failed` naming its failed checks; one that could not run raises `job-failed`.
#[test]
fn drill_jobs_a_failed_drill_is_not_retried_and_alerts_drill_failed() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let c = config(
        dir.path(),
        &format!(
            "[files.home]\nrepository = \"main\"\npaths = [\"/\"]\nschedule = \"daily 02:00\"\n\n\
             [files.home.drill]\nschedule = \"every 1s\"\nretries = 2\n\n\
             [files.db]\nrepository = \"main\"\npaths = [\"/\"]\nschedule = \"daily 02:00\"\n\n\
             [files.db.drill]\nschedule = \"every 1s\"\nretries = 2\n\n\
             [alerts.command.inbox]\ncommand = [\"/bin/sh\", \"-c\", \"cat > \\\"$0/$(date +%s%N)-$$.json\\\"\", {:?}]\n",
            inbox.display().to_string()
        ),
    );
    let job: RunFn = Arc::new(move |ctx: &JobContext, spec: &JobSpec, _ctl: &JobControl| {
        if spec.id == "home/drill" {
            let mut r = record(ctx, spec, Outcome::Failed, Some(crate::jobs::DRILL_CLASS));
            r.error = Some("drill did not pass: rto: recovered in 9.0s, target 1s".into());
            r.details.insert("failed_check_1".into(), "rto: recovered in 9.0s, target 1s".into());
            r.details.insert("drill_report".into(), "0123456789abcdef".into());
            return r;
        }
        record(ctx, spec, Outcome::Failed, Some("not-found"))
    });
    let state = run_until(c, job, |s| {
        s.last_run("home/drill", &[Outcome::Failed]).unwrap().is_some()
            && s.last_run("db/drill", &[Outcome::Failed]).unwrap().is_some()
    });
    let failed = state.last_run("home/drill", &[Outcome::Failed]).unwrap().unwrap();
    assert_eq!(failed.attempts, 1, "a drill that did not pass is not retried");
    let alerts = || -> Vec<serde_json::Value> {
        std::fs::read_dir(&inbox)
            .unwrap()
            .filter_map(|e| serde_json::from_slice(&std::fs::read(e.unwrap().path()).ok()?).ok())
            .collect()
    };
    let deadline = Instant::now() + WAIT;
    let has = |kind: &str, job: &str| alerts().iter().any(|a| a["kind"] == kind && a["job"] == job);
    while !(has("drill-failed", "home/drill") && has("job-failed", "db/drill")) {
        assert!(Instant::now() < deadline, "no drill-failed and job-failed alerts: {:#?}", alerts());
        std::thread::sleep(Duration::from_millis(100));
    }
    let a = alerts().into_iter().find(|a| a["kind"] == "drill-failed").unwrap();
    assert_eq!(a["problem"], "drill-failed:home/drill");
    assert_eq!(a["severity"], "error");
    assert_eq!(a["details"]["failed_check_1"], "rto: recovered in 9.0s, target 1s");
    assert_eq!(a["details"]["drill_report"], "0123456789abcdef");
    assert!(a["summary"].as_str().unwrap().starts_with("drill home/drill: drill did not pass: rto:"), "{a}");
    assert!(!has("job-failed", "home/drill"), "{:#?}", alerts());
    assert!(!has("drill-failed", "db/drill"), "{:#?}", alerts());
}
