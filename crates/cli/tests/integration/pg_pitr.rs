//! Point-in-time recovery to random targets of a pgbench-like workload: the restored data
//! equals exactly what was committed up to each target (counts and checksums).

use crate::pg_util::{PgEnv as _, PgSandbox, require_postgres};

/// A small deterministic generator (the seed is printed, and `COFFER_TEST_SEED` replays it).
struct Rng(u64);

impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        // SplitMix64.
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n
    }
}

/// What a restore must hold for the transactions `1..=upto`: the history rows and the
/// account balances they add up to.
fn state_sql(upto: Option<u64>) -> String {
    let filter = upto.map_or(String::new(), |u| format!("where tx <= {u}"));
    format!(
        "select (select count(*) from hist {filter}) || ' ' || \
         (select md5(coalesce(string_agg(tx || ',' || aid || ',' || delta, ';' order by tx), '')) from hist {filter}) || ' ' || \
         (select md5(string_agg(a.aid || ':' || coalesce(s.sum, 0), ';' order by a.aid)) from accounts a \
          left join (select aid, sum(delta) from hist {filter} group by aid) s on s.aid = a.aid)"
    )
}

#[test]
fn restore_to_random_commit_times_of_a_pgbench_like_workload_gives_exactly_the_committed_rows_as_root() {
    require_postgres();
    let started = std::time::Instant::now();
    // RandomState is seeded randomly per process: a fresh seed without reading the clock.
    let seed = std::env::var("COFFER_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        use std::hash::BuildHasher as _;
        std::collections::hash_map::RandomState::new().hash_one(0u8)
    });
    eprintln!("seed {seed} (COFFER_TEST_SEED={seed} replays it)");
    let mut rng = Rng(seed);
    let sb = PgSandbox::new();
    let pg = sb.cluster("main");
    // pgbench's accounts, with a random (incompressible) filler, and its history, which
    // also records when each transaction started.
    pg.sql(
        "create table accounts (aid int primary key, abalance int not null default 0, filler text);
         insert into accounts (aid, filler) select g, md5(random()::text) || md5(random()::text) from generate_series(1, 1000) g;
         create table hist (tx int primary key, aid int, delta int, started timestamptz, filler text)",
    );
    pg.env(sb.c(["pg", "backup"])).ok();

    // Explicit transactions, each recording clock_timestamp() first: transaction i+1's
    // start lies after transaction i's commit record and before its own, so as a
    // recovery_target_time (inclusive) it selects exactly transactions 1..=i.
    let n = 300u64;
    let mut script = String::new();
    for tx in 1..=n {
        let (aid, delta) = (rng.next(1000) + 1, rng.next(10_001) as i64 - 5000);
        script += &format!(
            "begin; insert into hist values ({tx}, {aid}, {delta}, clock_timestamp(), md5(random()::text)); \
             update accounts set abalance = abalance + {delta} where aid = {aid}; commit;\n"
        );
        if tx % 100 == 0 {
            pg.sql(&script);
            script.clear();
            // The same restore point name twice: a restore to it means the newest.
            if tx == 100 || tx == 200 {
                pg.sql("select pg_create_restore_point('dup')");
            }
        }
    }
    pg.switch_and_archive();
    assert_eq!(pg.sql("select count(*) from accounts a where abalance <> coalesce((select sum(delta) from hist h where h.aid = a.aid), 0)"), "0");

    for round in 0..3 {
        let upto = rng.next(n - 1) + 1;
        let target = pg.sql(&format!(
            r#"select to_char(started at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') from hist where tx = {}"#,
            upto + 1
        ));
        let expect = pg.sql(&state_sql(Some(upto)));
        let dir = sb.path(&format!("r{round}"));
        sb.c(["pg", "restore", "--start", "--time", &target, "--target"]).arg(&dir).ok();
        let got = sb.psql_at(&dir, &state_sql(None));
        sb.stop_immediate(&dir);
        assert_eq!(got, expect, "seed {seed}: restored to {target} (after transaction {upto})");
        assert!(got.starts_with(&format!("{upto} ")), "{got}");
    }
    // A restore point created twice: recovery would stop at the first it meets; coffer
    // recovers to the newest and says so.
    let dir = sb.path("r-dup");
    let run = sb.c(["pg", "restore", "--start", "--name", "dup", "--target"]).arg(&dir).ok();
    assert!(run.stderr.contains("restore point \"dup\" was created 2 times"), "{}", run.stderr);
    let got = sb.psql_at(&dir, &state_sql(None));
    sb.stop_immediate(&dir);
    assert_eq!(got, pg.sql(&state_sql(Some(200))));
    eprintln!("pg random-target PITR took {:.1?}", started.elapsed());
}
