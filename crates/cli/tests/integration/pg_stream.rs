//! `coffer pg stream`: WAL over the replication protocol (pg_receivewal and a slot) into
//! the repository, against a real PostgreSQL 15 server (see `pg_util`).

use crate::pg_util::{Cluster, PgEnv as _, PgSandbox, require_postgres};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A running `coffer pg stream`; killed (SIGKILL, like a crash) on drop.
struct Stream {
    child: Child,
}

impl Stream {
    /// Starts it, storing the unfinished segment every `interval`.
    fn start(sb: &PgSandbox, pg: &Cluster, spool: &Path, interval: &str) -> Self {
        let mut cmd =
            pg.env(sb.c(["pg", "stream", "--synchronous", "--partial-interval", interval, "--spool"]).arg(spool)).cmd;
        let child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).spawn().expect("start coffer pg stream");
        let s = Self { child };
        wait_for(pg, "select active from pg_replication_slots where slot_name = 'coffer'", "t");
        s
    }

    /// Stops it as an operator or a service manager would (SIGTERM): it stores nothing
    /// more; what it has not stored stays in the spool.
    fn stop(mut self) {
        let pid = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let _ = self.child.wait();
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[track_caller]
fn wait_for(pg: &Cluster, sql: &str, want: &str) {
    let deadline = Instant::now() + coffer_testkit::WAIT;
    loop {
        if pg.sql(sql) == want {
            return;
        }
        assert!(Instant::now() < deadline, "{sql} never gave {want}: {}", pg.log());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Rows of `t`, as "count:ids".
fn rows(sql: impl Fn(&str) -> String) -> String {
    sql("select count(*) || ':' || coalesce(string_agg(id::text, ',' order by id), '') from t")
}

fn sync_on(pg: &Cluster, on: bool) {
    let v = if on { "'coffer'" } else { "''" };
    pg.sql(&format!("alter system set synchronous_standby_names = {v}"));
    pg.sql("select pg_reload_conf()");
    if on {
        wait_for(
            pg,
            "select coalesce(max(sync_state), '') from pg_stat_replication where application_name = 'coffer'",
            "sync",
        );
    }
}

#[test]
fn stream_resumes_from_its_slot_and_loses_no_committed_row_when_the_server_crashes_as_root() {
    require_postgres();
    let started = Instant::now();
    let sb = PgSandbox::new();
    let mut pg = sb.cluster("main");
    pg.sql("create table t (id int primary key, v text)");
    pg.env(sb.c(["pg", "backup"])).ok();
    // From here on only the stream stores WAL: archive_command "succeeds" storing nothing.
    pg.sql("alter system set archive_command = 'true'");
    pg.sql("select pg_reload_conf()");
    let spool: PathBuf = sb.path("spool");

    let stream = Stream::start(&sb, &pg, &spool, "1s");
    sync_on(&pg, true);
    for i in 1..=5 {
        pg.sql(&format!("insert into t values ({i}, 'streamed')"));
    }
    // While it runs, the unfinished segment reaches the repository at the interval.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let info = sb.c(["pg", "info", "--json"]).ok().json();
        if info["clusters"][0]["last_segment"].as_str().is_some_and(|s| s.ends_with(".partial")) {
            break;
        }
        assert!(Instant::now() < deadline, "no .partial stored while streaming: {info}");
        std::thread::sleep(Duration::from_millis(300));
    }
    // Stopped: the slot keeps the server's WAL while segments pass and checkpoints recycle
    // them (without the slot, the restarted receiver would find them gone).
    stream.stop();
    wait_for(&pg, "select active from pg_replication_slots where slot_name = 'coffer'", "f");
    sync_on(&pg, false);
    for i in 6..=10 {
        pg.sql(&format!("insert into t values ({i}, 'while stopped')"));
        pg.sql("select pg_switch_wal()");
    }
    pg.sql("checkpoint");
    pg.sql("checkpoint");
    // From here on it stores the unfinished segment only when it starts, so what the last
    // commits wrote reaches the repository only through the spool.
    let stream = Stream::start(&sb, &pg, &spool, "1h");
    sync_on(&pg, true);
    // Synchronous: each commit returns once pg_receivewal has flushed it to the spool.
    for i in 11..=20 {
        pg.sql(&format!("insert into t values ({i}, 'synchronous')"));
    }
    let expect = rows(|q| pg.sql(q));
    assert!(expect.starts_with("20:"), "{expect}");
    // The source dies without a checkpoint or any archiving; then the stream is stopped
    // before it stored the unfinished segment, which is left in the spool …
    pg.crash();
    stream.stop();
    // … and stored from there without a server.
    let doc = sb.c(["pg", "stream", "--drain", "--json", "--spool"]).arg(&spool).ok().json();
    assert!(doc["stored"].as_u64().is_some(), "{doc}");
    let info = sb.c(["pg", "info", "--json"]).ok().json();
    let cl = &info["clusters"][0];
    assert_eq!(cl["gaps"], serde_json::json!([]), "the restarted stream resumed without a gap: {info}");
    assert!(cl["last_segment"].as_str().is_some_and(|s| s.ends_with(".partial")), "{info}");
    // Everything the spool held is in the repository: only the unfinished segment (still
    // pg_receivewal's to complete) and the cluster's name stay.
    let left: Vec<String> = std::fs::read_dir(&spool)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.ends_with(".partial") && n != "coffer.sysid")
        .collect();
    assert_eq!(left, Vec::<String>::new());

    // RPO 0: the latest state has every committed row.
    let dir = sb.path("restored");
    sb.c(["pg", "restore", "--latest", "--start", "--target"]).arg(&dir).ok();
    let psql = |sql: &str| sb.psql_at(&dir, sql);
    assert_eq!(rows(psql), expect);
    sb.stop_immediate(&dir);
    eprintln!("pg stream scenario took {:.1?}", started.elapsed());
}
