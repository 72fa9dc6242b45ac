//! The daemon's `/metrics` listener filled as a daemon with many jobs fills it, for
//! `bench/daemon.sh` (scrape time) until the daemon itself serves it, and for trying
//! dashboards and rules against a real exposition.
//!
//! ```text
//! cargo run --release -p coffer-operations --example metrics_serve -- [JOBS] [ADDR]
//! ```
//!
//! `JOBS` files jobs (default 100), each with a successful run, schedule facts and a few
//! failures; one repository, one PostgreSQL source, two alert targets. Listens on `ADDR`
//! (default `127.0.0.1:0`), prints `listening on http://ADDR/metrics`, and serves until its
//! stdin closes.
#![allow(clippy::disallowed_macros, reason = "a program of its own: it prints")]
#![allow(clippy::disallowed_methods, reason = "sample timestamps near now; no lock decision")]

use coffer_operations::event::{JobKind, Outcome, RunRecord, job_id, random_id};
use coffer_operations::metrics::{Metrics, serve};
use coffer_operations::{JobSpec, Schedule};
use jiff::{Timestamp, ToSpan as _};
use std::io::Read as _;
use std::sync::Arc;
use std::time::Duration;

fn main() {
    let mut args = std::env::args().skip(1);
    let jobs: usize = args.next().map_or(100, |a| a.parse().expect("JOBS: a number"));
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:0".into()).parse().expect("ADDR: host:port");
    let now = Timestamp::now();
    let m = Arc::new(Metrics::new());
    m.daemon_started(now);
    for i in 0..jobs {
        let source = format!("source-{i:03}");
        let spec = JobSpec {
            id: job_id(&source, JobKind::Backup),
            kind: JobKind::Backup,
            source: Some(source.clone()),
            repository: "main".into(),
            schedule: Some(Schedule::parse("hourly").expect("a schedule")),
            random_delay: None,
            timeout: Duration::from_secs(3600),
            retries: 2,
        };
        m.set_job(&spec, Some(now + 1.hour()), false);
        for (n, outcome) in [Outcome::Success, Outcome::Failed, Outcome::Success].into_iter().enumerate() {
            let finished = now - (3 - n as i64).hours();
            m.observe_run(&RunRecord {
                version: RunRecord::VERSION,
                run_id: random_id(),
                job: spec.id.clone(),
                kind: spec.kind,
                source: Some(source.clone()),
                repository: "main".into(),
                host: "bench".into(),
                scheduled: None,
                late: false,
                started: finished - 90.seconds(),
                finished,
                outcome,
                attempts: 1,
                error_class: None,
                error: None,
                files: Some(1000),
                bytes_read: Some(1 << 30),
                bytes_added: Some(1 << 20),
                snapshot: None,
                warnings: 0,
                details: Default::default(),
            });
        }
    }
    m.set_repository("main", 100 << 30, 90 << 30);
    m.set_postgres("db", Some(2.0), Some(now));
    m.set_verify_problems("main", 0);
    m.add_target("ops-webhook");
    m.add_target("mail");
    let server = serve(addr, Arc::clone(&m)).expect("listen");
    println!("listening on http://{}/metrics", server.addr());
    // Serves until stdin closes (the bench script holds it open).
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    server.shutdown();
}
