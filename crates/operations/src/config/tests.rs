//! The policy file end to end: parse, overrides, validation and their error places.

use super::*;
use std::path::Path;

const EXAMPLE: &str = include_str!("../../../../examples/coffer.toml");

/// A valid file with one job of each kind the rules below touch.
const BASE: &str = r#"[repositories.main]
location = "/srv/vault"

[files.home]
repository = "main"
paths = ["/home"]
schedule = "daily 02:00"

[alerts.webhook.ops]
url = "https://hooks.example.com/x"

[[alerts.route]]
targets = ["ops"]
"#;

fn parse(text: &str) -> Result<Config, String> {
    Config::parse(text, Path::new("c.toml")).map_err(|e| e.to_string())
}

fn parse_env(text: &str, vars: &[(&str, &str)]) -> Result<Config, String> {
    Config::parse_with_env(text, Path::new("c.toml"), vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())))
        .map_err(|e| e.to_string())
}

/// The error of `text`, which must start with `c.toml:LINE:COL: ` and contain `needle`.
fn refused(text: &str, line: usize, col: usize, needle: &str) {
    let e = parse(text).expect_err("must be refused");
    assert!(e.starts_with(&format!("c.toml:{line}:{col}: ")), "expected {line}:{col}: {e}");
    assert!(e.contains(needle), "expected {needle:?} in: {e}");
    assert!(!e.contains('\n'), "one line: {e}");
}

#[test]
fn the_example_implements_the_policy_and_is_valid() {
    let c = Config::parse(EXAMPLE, Path::new("examples/coffer.toml")).unwrap();
    let main = &c.repositories["main"];
    assert!(main.location.as_deref().unwrap().starts_with("s3://"));
    for role in ["writer", "pruner", "reader"] {
        assert!(main.credentials.contains_key(role), "{role}");
    }
    assert_eq!(main.verify.as_ref().unwrap().read_data_spec(), Some(ReadDataSpec::Percent(10)));
    assert_eq!(main.verify.as_ref().unwrap().schedule.interval(), Duration::from_secs(7 * 86_400));
    assert_eq!(main.prune.as_ref().unwrap().schedule.interval(), Duration::from_secs(86_400));
    let files = c.files.values().next().unwrap();
    assert_eq!(files.schedule.interval(), Duration::from_secs(86_400));
    // Every retention rule within the 90-day ceiling.
    let r = files.retention;
    let longest = [
        r.retain.unwrap_or_default(),
        r.within.unwrap_or_default(),
        Duration::from_secs(u64::from(r.daily) * 86_400),
        Duration::from_secs(u64::from(r.weekly) * 7 * 86_400),
        Duration::from_secs(u64::from(r.monthly) * 31 * 86_400),
    ]
    .into_iter()
    .max()
    .unwrap();
    assert!(longest <= Duration::from_secs(88 * 86_400), "{longest:?}");
    let db = c.postgres.values().next().unwrap();
    assert_eq!(db.archiving, Archiving::ArchiveCommand);
    assert_eq!(db.base_backup.schedule.interval(), Duration::from_secs(86_400));
    assert!(!c.alerts.email.is_empty() && !c.alerts.webhook.is_empty() && !c.alerts.heartbeat.is_empty());
    assert!(!c.alerts.route.is_empty());
    assert!(c.metrics.is_some());
}

#[test]
fn base_is_valid() {
    parse(BASE).unwrap();
}

#[test]
fn a_source_names_a_declared_repository_or_default() {
    refused(
        &BASE.replace("repository = \"main\"", "repository = \"mian\""),
        5,
        14,
        "repository \"mian\" is not declared",
    );
    let c = parse(&BASE.replace("repository = \"main\"\n", "")).unwrap();
    assert_eq!(c.files["home"].repository, "default");
}

#[test]
fn routes_name_existing_targets_and_sources() {
    refused(&BASE.replace("targets = [\"ops\"]", "targets = [\"ops\", \"opps\"]"), 13, 19, "no alert target \"opps\"");
    refused(
        &BASE.replace("targets = [\"ops\"]", "targets = [\"ops\"]\nsources = [\"hom\"]"),
        14,
        12,
        "no source or repository",
    );
    parse(&BASE.replace("targets = [\"ops\"]", "targets = [\"ops\"]\nsources = [\"home\", \"main\"]")).unwrap();
}

#[test]
fn names_are_checked_and_unique() {
    refused(&BASE.replace("[files.home]", "[files.Home]"), 4, 8, "invalid source name \"Home\"");
    let both = format!("{BASE}\n[postgres.home]\nbase-backup = {{ schedule = \"daily\" }}\n");
    refused(&both, 15, 11, "also used by [files.home]");
    let targets = format!("{BASE}\n[alerts.heartbeat.ops]\nurl = \"https://hc.example.com/x\"\n");
    refused(&targets, 15, 19, "target name \"ops\" is also used by [alerts.webhook.ops]");
}

#[test]
fn paths_are_absolute() {
    refused(&BASE.replace("paths = [\"/home\"]", "paths = [\"/home\", \"rel\"]"), 6, 19, "absolute");
    refused(&BASE.replace("location = \"/srv/vault\"", "location = \"vault\""), 2, 12, "absolute");
    refused(&format!("[daemon]\nstate-dir = \"state\"\n{BASE}"), 2, 13, "absolute");
}

#[test]
fn secrets_are_references_only() {
    let conn = format!(
        "{BASE}\n[postgres.db]\nconnection = \"host=db password=hunter2\"\nbase-backup = {{ schedule = \"daily\" }}\n"
    );
    let e = parse(&conn).unwrap_err();
    assert!(e.starts_with("c.toml:16:14: ") && e.contains("PGPASSFILE") && e.contains(".pgpass"), "{e}");
    assert!(!e.contains("hunter2"), "{e}");
    refused(
        &BASE.replace(
            "location = \"/srv/vault\"",
            "location = \"/srv/vault\"\npassword = { file = \"/p\", env = \"P\" }",
        ),
        3,
        12,
        "exactly one of `file` or `env`",
    );
    refused(
        &BASE.replace("location = \"/srv/vault\"", "location = \"/srv/vault\"\npassword = {}"),
        3,
        12,
        "exactly one",
    );
    // An inline secret is not a reference at all.
    let e = parse(&BASE.replace("location = \"/srv/vault\"", "location = \"/srv/vault\"\npassword = \"hunter2\""))
        .unwrap_err();
    assert!(e.starts_with("c.toml:3:12: "), "{e}");
}

#[test]
fn urls_addresses_zones_and_limits() {
    refused(&BASE.replace("https://hooks.example.com/x", "ftp://hooks.example.com/x"), 10, 7, "http:// or https://");
    refused(&BASE.replace("https://hooks.example.com/x", "hooks.example.com"), 10, 7, "not a URL");
    let email = format!(
        "{BASE}\n[alerts.email.mail]\nserver = \"smtp.example.com\"\nfrom = \"coffer@example.com\"\nto = [\"ops@example.com\", \"nobody\"]\n"
    );
    refused(&email, 18, 26, "\"nobody\" is not an email address");
    refused(&format!("[daemon]\ntimezone = \"Mars/Olympus\"\n{BASE}"), 2, 12, "unknown time zone");
    parse(&format!("[daemon]\ntimezone = \"Europe/Paris\"\n{BASE}")).unwrap();
    refused(&format!("[daemon]\nmax-concurrent-jobs = 0\n{BASE}"), 2, 23, "at least 1");
    refused(
        &BASE.replace("schedule = \"daily 02:00\"", "schedule = \"daily 02:00\"\nretention = { retain = \"0s\" }"),
        8,
        24,
        "positive",
    );
}

#[test]
fn read_data_is_all_or_a_percentage() {
    let v = |rd: &str| format!("{BASE}\n[repositories.main.verify]\nschedule = \"weekly\"\nread-data = \"{rd}\"\n");
    refused(&v("150%"), 17, 13, "expected \"all\" or a percentage");
    refused(&v("some"), 17, 13, "expected \"all\"");
    let c = parse(&v("all")).unwrap();
    assert_eq!(c.repositories["main"].verify.as_ref().unwrap().read_data_spec(), Some(ReadDataSpec::All));
    assert_eq!(c.repositories["main"].verify.as_ref().unwrap().reads(), coffer_repository::ReadData::All);
}

#[test]
fn heartbeat_jobs_exist() {
    let hb =
        |job: &str| format!("{BASE}\n[alerts.heartbeat.hc]\nurl = \"https://hc.example.com/x\"\njob = \"{job}\"\n");
    parse(&hb("home/backup")).unwrap();
    refused(&hb("home/backups"), 17, 7, "no job \"home/backups\"");
}

#[test]
fn at_least_one_job() {
    // A repository alone is watched: its store's security watch and canary are jobs.
    let c = Config::parse("[repositories.main]\nlocation = \"/srv/vault\"\n", Path::new("c.toml")).unwrap();
    c.require_jobs().unwrap();
    let ids: Vec<String> = crate::jobs::jobs(&c).into_iter().map(|j| j.id).collect();
    assert_eq!(ids, ["main/watch", "main/canary"]);
    let c = Config::parse(
        "[repositories.main]\nlocation = \"/srv/vault\"\n\n[repositories.main.security]\nwatch = false\n\n\
         [repositories.main.security.canary]\nenabled = false\n",
        Path::new("c.toml"),
    )
    .unwrap();
    let e = c.require_jobs().unwrap_err().to_string();
    assert!(e.starts_with("c.toml: no jobs"), "{e}");
}

#[test]
fn the_first_problem_in_the_file_is_reported() {
    let text = BASE
        .replace("location = \"/srv/vault\"", "location = \"vault\"")
        .replace("targets = [\"ops\"]", "targets = [\"x\"]");
    refused(&text, 2, 12, "absolute");
}

#[test]
fn overrides_set_keys_before_the_types_are_checked() {
    let c = parse_env(
        BASE,
        &[
            ("COFFER_DAEMON__MAX_CONCURRENT_JOBS", "4"),
            ("COFFER_REPOSITORIES__MAIN__LOCATION", "s3://bucket/p"),
            ("COFFER_METRICS__LISTEN", "127.0.0.1:9477"),
            ("COFFER_FILES__HOME__PATHS", "[\"/srv\", \"/home\"]"),
            ("COFFER_REPOSITORIES__MAIN__PASSWORD", "{ env = \"PW\" }"),
            ("COFFER_ALERTS__ROUTE__0__MIN_SEVERITY", "error"),
            // Not overrides: no double underscore.
            ("COFFER_PASSWORD", "x"),
            ("COFFER_CONFIG", "/nowhere"),
            ("COFFER_REPO", "/nowhere"),
            ("OTHER__X", "1"),
        ],
    )
    .unwrap();
    assert_eq!(c.daemon.max_concurrent_jobs, 4);
    assert_eq!(c.repositories["main"].location.as_deref(), Some("s3://bucket/p"));
    assert_eq!(c.metrics.unwrap().listen.to_string(), "127.0.0.1:9477");
    assert_eq!(c.files["home"].paths, [Path::new("/srv"), Path::new("/home")]);
    assert_eq!(c.repositories["main"].password.as_ref().unwrap().env.as_deref(), Some("PW"));
    assert_eq!(c.alerts.route[0].min_severity, Some(crate::event::Severity::Error));
}

#[test]
fn a_name_with_underscores_can_be_overridden() {
    let text = BASE.replace("[files.home]", "[files.my_home]");
    let c = parse_env(&text, &[("COFFER_FILES__MY_HOME__SCHEDULE", "hourly")]).unwrap();
    assert_eq!(c.files["my_home"].schedule.to_string(), "hourly");
}

#[test]
fn an_error_an_override_causes_names_the_variable() {
    let e = parse_env(BASE, &[("COFFER_DAEMON__MAX_CONCURRENT_JOBS", "many")]).unwrap_err();
    assert!(e.starts_with("c.toml: COFFER_DAEMON__MAX_CONCURRENT_JOBS: "), "{e}");
    let e = parse_env(BASE, &[("COFFER_DAEMON__MAX_CONCURENT_JOBS", "3")]).unwrap_err();
    assert!(e.starts_with("c.toml: COFFER_DAEMON__MAX_CONCURENT_JOBS: ") && e.contains("max-concurent-jobs"), "{e}");
    let e = parse_env(BASE, &[("COFFER_FILES__HOME__REPOSITORY", "nope")]).unwrap_err();
    assert!(e.starts_with("c.toml: COFFER_FILES__HOME__REPOSITORY: repository \"nope\" is not declared"), "{e}");
    let e = parse_env(BASE, &[("COFFER_FILES__HOME__PATHS__X", "1")]).unwrap_err();
    assert!(e.starts_with("c.toml: COFFER_FILES__HOME__PATHS__X: "), "{e}");
    let e = parse_env(BASE, &[("COFFER_DAEMON__MAX_CONCURRENT_JOBS__X", "1")]).unwrap_err();
    assert!(e.contains("COFFER_DAEMON__MAX_CONCURRENT_JOBS__X"), "{e}");
    // A new table from an override that is not a source is refused with the variable too.
    let e = parse_env(BASE, &[("COFFER_FILEZ__X__PATHS", "[\"/x\"]")]).unwrap_err();
    assert!(e.starts_with("c.toml: COFFER_FILEZ__X__PATHS: ") && e.contains("filez"), "{e}");
}

#[test]
fn show_redacts_and_keeps_references() {
    let text = format!("{BASE}\n[alerts.heartbeat.hc]\nurl = \"https://hc-ping.com/secret-uuid\"\n",)
        .replace("https://hooks.example.com/x", "https://user:pw@hooks.example.com/x?token=tok")
        .replace("location = \"/srv/vault\"", "location = \"/srv/vault\"\npassword = { file = \"/etc/coffer/pw\" }");
    let c = redacted(&parse(&text).unwrap());
    let shown = toml::to_string(&c).unwrap();
    for secret in ["secret-uuid", "user", ":pw@", "tok"] {
        assert!(!shown.contains(secret), "{secret} in:\n{shown}");
    }
    assert!(shown.contains("/etc/coffer/pw") && shown.contains("https://hooks.example.com/x"), "{shown}");
    // What is shown parses back (defaults spelled out).
    let back = Config::parse(&shown, Path::new("shown.toml")).unwrap();
    assert_eq!(back.daemon.max_concurrent_jobs, 2);
}

#[test]
fn a_missing_key_names_its_table() {
    let e = parse(&BASE.replace("schedule = \"daily 02:00\"\n", "")).unwrap_err();
    assert!(e.starts_with("c.toml:4:1: missing field `schedule` in [files.home]"), "{e}");
}

#[test]
fn security_keys_are_checked() {
    let c = Config::parse("[repositories.main]\nlocation = \"/srv/vault\"\n", Path::new("c.toml")).unwrap();
    let sec = &c.repositories["main"].security;
    assert!(sec.watch && sec.canary.enabled, "on by default");
    assert_eq!(sec.poll_interval, std::time::Duration::from_secs(60));
    let bad = |text: &str, needle: &str| {
        let e = Config::parse(text, Path::new("c.toml")).unwrap_err().to_string();
        assert!(e.contains(needle), "{e}");
    };
    bad(
        "[repositories.main]\nlocation = \"s3://bucket/coffer-security/x/?endpoint=http://127.0.0.1:9\"\n[files.a]\nrepository = \"main\"\npaths = [\"/a\"]\nschedule = \"daily\"\n",
        "reserved",
    );
    bad(
        "[repositories.main]\nlocation = \"/v\"\n[repositories.main.security]\npoll-interval = \"0s\"\n",
        "c.toml:4:17: duration \"0s\" is zero",
    );
    bad(
        "[repositories.main]\nlocation = \"/v\"\n[repositories.main.security.cloudtrail]\nqueue-url = \"sqs\"\n",
        "c.toml:4:13: queue-url must be the http(s) URL",
    );
    bad("[repositories.main]\nlocation = \"/v\"\n[repositories.main.security]\nwatchh = true\n", "watchh");
}

#[test]
fn drill_pg_settings_are_validated() {
    let pg = "[postgres.db]\nrepository = \"main\"\n[postgres.db.base-backup]\nschedule = \"daily\"\n[postgres.db.drill]\nschedule = \"weekly\"\n";
    let ok = format!(
        "{BASE}{pg}rto-target = \"15m\"\nscratch = \"/var/tmp/drill\"\nrun-as = \"postgres\"\n\
         [[postgres.db.drill.check]]\nname = \"orders\"\nquery = \"select count(*) > 0 from orders\"\nexpect = \"t\"\ndatabase = \"app\"\n"
    );
    let c = parse(&ok).unwrap();
    let d = c.postgres["db"].drill.as_ref().unwrap();
    assert_eq!((d.check.len(), d.rto_target), (1, Some(Duration::from_secs(900))));
    // Lines: BASE has 13, the source's drill table starts at 19.
    let line = BASE.lines().count() + 7;
    refused(&format!("{BASE}{pg}scratch = \"drill\"\n"), line, 11, "scratch must be an absolute path");
    refused(&format!("{BASE}{pg}run-as = \"\"\n"), line, 10, "run-as is empty");
    refused(&format!("{BASE}{pg}rto-target = \"0s\"\n"), line, 14, "");
    let check = "[[postgres.db.drill.check]]\nname = \"a\"\nquery = \"select 1\"\nexpect = \"1\"\n";
    refused(&format!("{BASE}{pg}{check}{check}"), line + 5, 8, "check name \"a\" is used twice");
    refused(
        &format!("{BASE}{pg}[[postgres.db.drill.check]]\nname = \"a\"\nquery = \" \"\nexpect = \"1\"\n"),
        line + 2,
        9,
        "query is empty",
    );
    refused(
        &format!("{BASE}{pg}[[postgres.db.drill.check]]\nname = \"a b\"\nquery = \"select 1\"\nexpect = \"1\"\n"),
        line + 1,
        8,
        "invalid check name",
    );
}

#[test]
fn files_drill_settings_are_checked_where_they_are_written() {
    let drill = |body: &str| format!("{BASE}\n[files.home.drill]\nschedule = \"weekly\"\n{body}");
    let c = parse(&drill("snapshot = \"random\"\nsample = 20\nrto-target = \"15m\"\nscratch = \"/var/tmp/drill\"\n"))
        .unwrap();
    let d = c.files["home"].drill.as_ref().unwrap();
    assert_eq!((d.snapshot, d.sample, d.rto_target), (SnapshotPick::Random, Some(20), Some(Duration::from_secs(900))));
    assert_eq!(d.scratch.as_deref(), Some(Path::new("/var/tmp/drill")));
    let line = BASE.lines().count() + 4;
    refused(&drill("sample = 0\n"), line, 10, "sample must be at least 1");
    refused(&drill("rto-target = \"0s\"\n"), line, 14, "must be positive");
    refused(&drill("scratch = \"drill\"\n"), line, 11, "scratch must be an absolute path");
    refused(&drill("snapshot = \"oldest\"\n"), line, 12, "oldest");
    refused(&drill("samples = 3\n"), line, 1, "samples");
}

#[test]
fn relist_after_defaults_to_a_day_takes_zero_and_refuses_nonsense() {
    let c = parse(BASE).unwrap();
    assert_eq!(c.repositories["main"].relist_after(), Duration::from_secs(86_400));
    let with = |v: &str| {
        BASE.replace("location = \"/srv/vault\"", &format!("location = \"/srv/vault\"\nrelist-after = \"{v}\""))
    };
    assert_eq!(parse(&with("0s")).unwrap().repositories["main"].relist_after(), Duration::ZERO);
    assert_eq!(parse(&with("6h")).unwrap().repositories["main"].relist_after(), Duration::from_secs(6 * 3600));
    refused(&with("soon"), 3, 16, "invalid duration \"soon\"");
}
