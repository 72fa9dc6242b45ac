//! Crash trials: a `crash-writer` process putting objects into a real `LocalVault` is
//! killed with SIGKILL at random points, and the vault is checked after every kill.
//!
//! After each kill: the vault opens; every acknowledged put reads back with exactly the
//! bytes its key implies and verifies; every acknowledged delete marker and retention is
//! there; nothing half-written is visible (every version listed reads back and matches its
//! key's content, and at most one operation — the one in flight — is visible without an
//! acknowledgement); versions from earlier trials are all still there; the audit chain
//! verifies and records every visible change exactly once.
//!
//! Kills are spread over every phase of a put: some during process start and vault open,
//! most a random delay after the k-th acknowledgement — zero (the next call has just begun),
//! up to 2 ms (the fsyncs of small objects and the SQLite commit), or up to 40 ms (inside
//! the write of a large object). The summary printed at the end counts the traces each
//! kill left (temp file, unreferenced data file, committed but unacknowledged operation),
//! which shows that the kills did land in each phase.
//!
//! Reproduce a failure with the seed it prints: `COFFER_CRASH_SEED=<seed>` (timings still
//! vary; the operations and the kill plan do not). `COFFER_CRASH_TRIALS` overrides the
//! number of trials.

use coffer_store::{LocalVault, ObjectStore, ObjectVersion, Role, VaultHandle, VersionId};
use coffer_testkit::crash::{Ack, Rng, content_for_key};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const WRITER: &str = env!("CARGO_BIN_EXE_crash-writer");
/// Trials per vault, and vaults; each vault is checked in full after its last trial.
const TRIALS_PER_VAULT: usize = 40;
const VAULTS: usize = 3;
/// How long a writer may take to produce the acknowledgements a trial waits for (a safety
/// net: a loaded machine can take far longer than the writer alone).
const ACK_TIMEOUT: Duration = coffer_testkit::WAIT;

/// A running `crash-writer` and the threads collecting its output.
struct Writer {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stdout: JoinHandle<String>,
    stderr: JoinHandle<String>,
    acks: Vec<Ack>,
}

impl Writer {
    fn spawn(vault: &Path, prefix: &str, seed: u64, extra: &[&str]) -> Self {
        let mut child = Command::new(WRITER)
            .arg("--vault")
            .arg(vault)
            .args(["--prefix", prefix, "--seed", &seed.to_string()])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {WRITER}: {e}"));
        let stdin = child.stdin.take();
        let (tx, lines) = channel();
        let out = child.stdout.take().expect("piped stdout");
        let stdout = std::thread::spawn(move || read_lines(out, &tx));
        let mut err = child.stderr.take().expect("piped stderr");
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        Self { child, stdin, lines, stdout, stderr, acks: Vec::new() }
    }

    /// Lets a writer started with `--wait` begin.
    fn go(&mut self) {
        use std::io::Write;
        let mut stdin = self.stdin.take().expect("stdin");
        stdin.write_all(b"go\n").expect("write to crash-writer");
    }

    /// Waits until `n` lines have arrived; `Err` (with the writer's stderr) if it exits or
    /// stalls first.
    fn wait_for_acks(&mut self, n: usize) -> Result<(), String> {
        let deadline = Instant::now() + ACK_TIMEOUT;
        while self.acks.len() < n {
            match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => self.acks.push(Ack::parse(&line)?),
                Err(RecvTimeoutError::Timeout) => return Err(format!("no acknowledgement {n} within {ACK_TIMEOUT:?}")),
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().map_err(|e| e.to_string())?;
                    return Err(format!("crash-writer exited early ({status}) after {} lines", self.acks.len()));
                }
            }
        }
        Ok(())
    }

    /// Kills the writer with SIGKILL (if still running) and returns every complete line it
    /// wrote, and the partial last line if any.
    fn kill(mut self) -> Result<(Vec<Ack>, String), String> {
        // `Child::kill` sends SIGKILL on Unix; it fails only if the child was already reaped.
        let _ = self.child.kill();
        let status = self.child.wait().map_err(|e| e.to_string())?;
        self.collect(status)
    }

    /// Waits for the writer to finish on its own; its exit must be a success.
    fn finish(mut self) -> Result<Vec<Ack>, String> {
        let status = self.child.wait().map_err(|e| e.to_string())?;
        if !status.success() {
            let err = self.stderr.join().unwrap_or_default();
            return Err(format!("crash-writer failed ({status}): {err}"));
        }
        let (acks, partial) = self.collect(status)?;
        if !partial.is_empty() {
            return Err(format!("crash-writer ended with a partial line {partial:?}"));
        }
        Ok(acks)
    }

    fn collect(mut self, status: std::process::ExitStatus) -> Result<(Vec<Ack>, String), String> {
        let partial = self.stdout.join().map_err(|_| "stdout reader panicked".to_owned())?;
        let stderr = self.stderr.join().unwrap_or_default();
        for line in self.lines.try_iter() {
            self.acks.push(Ack::parse(&line)?);
        }
        if !stderr.is_empty() {
            return Err(format!("crash-writer reported an error ({status}): {stderr}"));
        }
        Ok((self.acks, partial))
    }
}

/// Sends each complete line; returns what follows the last newline (a line cut by the kill).
fn read_lines(out: ChildStdout, tx: &std::sync::mpsc::Sender<String>) -> String {
    let mut r = BufReader::new(out);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match r.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return String::new(),
            Ok(_) if buf.ends_with(b"\n") => {
                buf.pop();
                let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
            }
            Ok(_) => return String::from_utf8_lossy(&buf).into_owned(),
        }
    }
}

/// What the test knows about one vault across its trials.
struct VaultState {
    dir: PathBuf,
    /// Every version seen so far (acknowledged or not) and whether it is a delete marker.
    known: BTreeMap<(String, VersionId), bool>,
    /// The latest retention acknowledged per version: (mode, until seconds).
    retention: HashMap<(String, VersionId), (coffer_store::RetentionMode, i64)>,
    /// Audit entries already checked.
    audit_seq: u64,
    /// Temp files and unreferenced data files left by earlier kills.
    temp_files: usize,
    orphan_files: usize,
}

/// Counts of what the kills left behind, over all trials.
#[derive(Default, Debug)]
struct Stats {
    trials: usize,
    acks: usize,
    before_first_ack: usize,
    left_temp_file: usize,
    left_orphan_data_file: usize,
    committed_unacked: usize,
    clean_between_ops: usize,
}

fn login(vault: &LocalVault, role: Role) -> VaultHandle {
    vault.login(&vault.read_credentials(role).expect("credentials")).expect("login")
}

fn list_all(h: &VaultHandle, prefix: &str) -> Result<Vec<ObjectVersion>, String> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = h.list_versions(prefix, token.as_deref(), 500).map_err(|e| format!("list_versions: {e}"))?;
        out.extend(page.items);
        match page.next {
            Some(t) => token = Some(t),
            None => return Ok(out),
        }
    }
}

fn list_keys(h: &VaultHandle, prefix: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = h.list(prefix, token.as_deref(), 500).map_err(|e| format!("list: {e}"))?;
        out.extend(page.items.into_iter().map(|v| v.key));
        match page.next {
            Some(t) => token = Some(t),
            None => return Ok(out),
        }
    }
}

/// Reads one version and checks it against the content its key implies.
fn check_reads_back(h: &VaultHandle, v: &ObjectVersion) -> Result<(), String> {
    let what = format!("{} version {}", v.key, v.version);
    let expected = content_for_key(&v.key).ok_or_else(|| format!("{what}: key encodes no size"))?;
    let obj = h.get(&v.key, Some(&v.version)).map_err(|e| format!("{what} does not read back: {e}"))?;
    if obj.data != expected {
        return Err(format!(
            "{what} reads back {} bytes that differ from the {} expected (half-written or mixed up)",
            obj.data.len(),
            expected.len()
        ));
    }
    let checksum = format!("blake3:{}", blake3::hash(&expected).to_hex());
    if obj.meta.size != expected.len() as u64 || obj.meta.checksum != checksum {
        return Err(format!(
            "{what}: recorded size/checksum {}/{} do not match the data",
            obj.meta.size, obj.meta.checksum
        ));
    }
    Ok(())
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |rd| rd.filter(|e| e.as_ref().is_ok_and(|e| e.path().is_file())).count())
}

fn count_data_files(root: &Path) -> usize {
    (0..=255u8).map(|i| count_files(&root.join("data").join(format!("{i:02x}")))).sum()
}

/// Checks the vault after a trial whose writer used `prefix` and acknowledged `acks`;
/// updates `state` and `stats`.
#[allow(clippy::too_many_lines, reason = "one check per invariant, in order")]
fn check_after_kill(state: &mut VaultState, prefix: &str, acks: &[Ack], stats: &mut Stats) -> Result<(), String> {
    let vault = LocalVault::open(&state.dir).map_err(|e| format!("the vault does not open after the kill: {e}"))?;
    let writer = login(&vault, Role::Writer);
    let auditor = login(&vault, Role::Auditor);

    let listed = list_all(&writer, "")?;
    let by_id: BTreeMap<(String, VersionId), &ObjectVersion> =
        listed.iter().map(|v| ((v.key.clone(), v.version.clone()), v)).collect();
    if by_id.len() != listed.len() {
        return Err("list_versions returned a version twice".into());
    }

    // Nothing acknowledged earlier is lost or changed.
    for ((key, vid), &marker) in &state.known {
        match by_id.get(&(key.clone(), vid.clone())) {
            None => return Err(format!("{key} version {vid}, present before this trial, is gone")),
            Some(v) if v.delete_marker != marker => return Err(format!("{key} version {vid} changed kind")),
            Some(_) => {}
        }
    }

    // Every acknowledgement of this trial is visible.
    let mut acked: BTreeSet<(String, VersionId)> = BTreeSet::new();
    let mut retention_acks = Vec::new();
    for a in acks {
        match a {
            Ack::Put { key, version } | Ack::Delete { key, version } => {
                let is_marker = matches!(a, Ack::Delete { .. });
                let v = by_id
                    .get(&(key.clone(), version.clone()))
                    .ok_or_else(|| format!("acknowledged {key} version {version} is not listed"))?;
                if v.delete_marker != is_marker {
                    return Err(format!("acknowledged {key} version {version}: delete_marker is {}", v.delete_marker));
                }
                acked.insert((key.clone(), version.clone()));
            }
            Ack::Retention { key, version, mode, until } => {
                state.retention.insert((key.clone(), version.clone()), (*mode, *until));
                retention_acks.push((key.clone(), version.clone()));
            }
            Ack::Done | Ack::Ready => return Err(format!("unexpected {a:?} from a writer that runs until killed")),
        }
    }
    // Every retention ever acknowledged still holds (at least as long, same mode).
    for ((key, vid), (mode, until)) in &state.retention {
        let v = by_id.get(&(key.clone(), vid.clone())).ok_or_else(|| format!("{key} version {vid} is gone"))?;
        let r = v.retention.ok_or_else(|| format!("acknowledged retention of {key} version {vid} is gone"))?;
        if r.mode != *mode || r.until.as_second() < *until {
            return Err(format!(
                "{key} version {vid}: retention {} until {} is weaker than acknowledged {mode} until {until}",
                r.mode, r.until
            ));
        }
    }

    // What appeared in this trial: all under its prefix, at most one without acknowledgement.
    let new: Vec<&ObjectVersion> =
        listed.iter().filter(|v| !state.known.contains_key(&(v.key.clone(), v.version.clone()))).collect();
    let mut unacked = 0;
    for v in &new {
        if !v.key.starts_with(prefix) {
            return Err(format!("{} version {} appeared, outside this trial's prefix {prefix}", v.key, v.version));
        }
        if !acked.contains(&(v.key.clone(), v.version.clone())) {
            unacked += 1;
        }
    }
    if unacked > 1 {
        return Err(format!(
            "{unacked} unacknowledged versions are visible; one writer has at most one call in flight"
        ));
    }
    // Nothing half-written: every new version reads back exactly.
    for v in new.iter().filter(|v| !v.delete_marker) {
        check_reads_back(&writer, v)?;
    }

    // The latest flags and the key index agree with the versions.
    let mut latest: BTreeMap<&str, &ObjectVersion> = BTreeMap::new();
    for v in &listed {
        let e = latest.entry(v.key.as_str()).or_insert(v);
        if v.version > e.version {
            *e = v;
        }
    }
    for v in &listed {
        let is_max = latest[v.key.as_str()].version == v.version;
        if v.is_latest != is_max {
            return Err(format!(
                "{} version {}: is_latest is {} but it is {}the newest",
                v.key,
                v.version,
                v.is_latest,
                if is_max { "" } else { "not " }
            ));
        }
    }
    let live: Vec<String> = latest.values().filter(|v| !v.delete_marker).map(|v| v.key.clone()).collect();
    let listed_keys = list_keys(&writer, "")?;
    if listed_keys != live {
        return Err(format!(
            "list shows {} keys but {} have an object as latest version",
            listed_keys.len(),
            live.len()
        ));
    }

    // The audit chain verifies, and records each new version and acknowledged retention
    // exactly once, allowed.
    let verification = auditor.verify_audit_log().map_err(|e| format!("verify_audit_log: {e}"))?;
    if !verification.problems.is_empty() {
        return Err(format!("the audit chain is broken: {:?}", verification.problems));
    }
    let mut entries = Vec::new();
    loop {
        let page = auditor.audit_log(state.audit_seq, 1000).map_err(|e| format!("audit_log: {e}"))?;
        let Some(last) = page.last() else { break };
        state.audit_seq = last.seq;
        entries.extend(page);
    }
    let mut creations: BTreeMap<(String, VersionId), usize> = BTreeMap::new();
    for e in &entries {
        if e.outcome != "allowed" {
            return Err(format!("audit entry {} is {}: {}", e.seq, e.outcome, e.reason));
        }
        if e.action == "put" || e.action == "delete" {
            let id = (e.key.clone().unwrap_or_default(), VersionId(e.version.clone().unwrap_or_default()));
            *creations.entry(id).or_default() += 1;
        }
    }
    let new_ids: BTreeMap<(String, VersionId), usize> =
        new.iter().map(|v| ((v.key.clone(), v.version.clone()), 1)).collect();
    if creations != new_ids {
        return Err(format!(
            "the audit log records {} creations, but {} versions appeared (each must be recorded exactly once)",
            creations.len(),
            new_ids.len()
        ));
    }
    for (key, vid) in &retention_acks {
        if !entries.iter().any(|e| {
            e.action == "put-retention" && e.key.as_deref() == Some(key) && e.version.as_deref() == Some(&vid.0)
        }) {
            return Err(format!("acknowledged retention of {key} version {vid} is not in the audit log"));
        }
    }

    // Traces of where the kill landed.
    let temp_files = count_files(&state.dir.join("tmp"));
    let data_files = count_data_files(&state.dir);
    let objects = listed.iter().filter(|v| !v.delete_marker).count();
    let orphans = data_files
        .checked_sub(objects)
        .ok_or_else(|| format!("{objects} object versions are listed but only {data_files} data files exist"))?;
    stats.trials += 1;
    stats.acks += acks.len();
    if acks.is_empty() {
        stats.before_first_ack += 1;
    }
    if temp_files > state.temp_files {
        stats.left_temp_file += 1;
    } else if orphans > state.orphan_files {
        stats.left_orphan_data_file += 1;
    } else if unacked > 0 {
        stats.committed_unacked += 1;
    } else {
        stats.clean_between_ops += 1;
    }
    state.temp_files = temp_files;
    state.orphan_files = orphans;
    for v in &new {
        state.known.insert((v.key.clone(), v.version.clone()), v.delete_marker);
    }
    Ok(())
}

/// Reads back every object version in the vault.
fn check_everything(state: &VaultState) -> Result<(), String> {
    let vault = LocalVault::open(&state.dir).map_err(|e| format!("the vault does not open: {e}"))?;
    let writer = login(&vault, Role::Writer);
    let listed = list_all(&writer, "")?;
    if listed.len() != state.known.len() {
        return Err(format!("{} versions listed, {} expected", listed.len(), state.known.len()));
    }
    for v in listed.iter().filter(|v| !v.delete_marker) {
        check_reads_back(&writer, v)?;
    }
    Ok(())
}

/// The kill plan of one trial.
#[derive(Debug)]
enum Kill {
    /// Kill this long after spawning (during start-up, vault open, login, first put).
    AfterSpawn(Duration),
    /// Kill this long after the `n`-th acknowledgement.
    AfterAck(usize, Duration),
}

fn plan(rng: &mut Rng) -> Kill {
    let micros = |rng: &mut Rng, max: u64| Duration::from_micros(rng.range(0, max));
    match rng.range(0, 99) {
        0..=9 => Kill::AfterSpawn(micros(rng, 15_000)),
        10..=34 => Kill::AfterAck(rng.range_usize(1, 6), Duration::ZERO),
        35..=69 => Kill::AfterAck(rng.range_usize(1, 6), micros(rng, 2_000)),
        _ => Kill::AfterAck(rng.range_usize(1, 6), micros(rng, 40_000)),
    }
}

fn seed_from_env(var: &str) -> u64 {
    match std::env::var(var) {
        Ok(s) => s.parse().unwrap_or_else(|_| panic!("{var}={s:?} is not a number")),
        Err(_) => Rng::os_seed(),
    }
}

#[test]
fn sigkill_at_random_points_loses_nothing_acknowledged() {
    let master = seed_from_env("COFFER_CRASH_SEED");
    let trials_per_vault = std::env::var("COFFER_CRASH_TRIALS")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .map_or(TRIALS_PER_VAULT, |n| n.div_ceil(VAULTS));
    eprintln!("crash trials: seed {master} (reproduce with COFFER_CRASH_SEED={master})");
    let started = Instant::now();
    let mut rng = Rng::new(master);
    let mut stats = Stats::default();
    for vault_no in 0..VAULTS {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().join("vault");
        LocalVault::init(&dir, &coffer_store::VaultOptions::default()).expect("init vault");
        let mut state = VaultState {
            dir,
            known: BTreeMap::new(),
            retention: HashMap::new(),
            audit_seq: 0,
            temp_files: 0,
            orphan_files: 0,
        };
        for trial in 0..trials_per_vault {
            let seed = rng.next_u64();
            let kill = plan(&mut rng);
            let prefix = format!("t{trial:03}/");
            let result = (|| {
                let mut w = Writer::spawn(&state.dir, &prefix, seed, &[]);
                let delay = match kill {
                    Kill::AfterSpawn(d) => d,
                    Kill::AfterAck(n, d) => {
                        if let Err(e) = w.wait_for_acks(n) {
                            let _ = w.kill();
                            return Err(e);
                        }
                        d
                    }
                };
                std::thread::sleep(delay);
                let (acks, _partial) = w.kill()?;
                check_after_kill(&mut state, &prefix, &acks, &mut stats)
            })();
            if let Err(e) = result {
                let kept = tmp.keep();
                panic!(
                    "crash trial {trial} of vault {vault_no} ({kill:?}, writer seed {seed}) failed: {e}\n\
                     master seed {master} (reproduce with COFFER_CRASH_SEED={master}); vault kept at {}",
                    kept.display()
                );
            }
        }
        if let Err(e) = check_everything(&state) {
            let kept = tmp.keep();
            panic!(
                "full check of vault {vault_no} failed: {e}\nmaster seed {master}; vault kept at {}",
                kept.display()
            );
        }
    }
    eprintln!("crash trials: {stats:?} in {:.1?}", started.elapsed());
    assert!(stats.trials >= 100 || std::env::var("COFFER_CRASH_TRIALS").is_ok(), "at least 100 trials");
}

/// Three writers share one vault at once: distinct prefixes plus one shared key.
#[test]
fn concurrent_writers_share_a_vault() {
    const WRITERS: usize = 3;
    const SHARED: &str = "shared/obj-1000";
    let master = seed_from_env("COFFER_CRASH_SEED");
    let mut rng = Rng::new(master);
    let ctx = format!("seed {master} (reproduce with COFFER_CRASH_SEED={master})");
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("vault");
    LocalVault::init(&dir, &coffer_store::VaultOptions::default()).expect("init vault");

    let mut writers: Vec<Writer> = (0..WRITERS)
        .map(|i| {
            Writer::spawn(
                &dir,
                &format!("c{i}/"),
                rng.next_u64(),
                &["--count", "45", "--max-size", "262144", "--shared", SHARED, "--shared-every", "3", "--wait"],
            )
        })
        .collect();
    // Start them together, once all have opened the vault.
    for (i, w) in writers.iter_mut().enumerate() {
        w.wait_for_acks(1).unwrap_or_else(|e| panic!("writer {i}: {e}; {ctx}"));
        assert_eq!(w.acks[0], Ack::Ready, "writer {i}'s first line; {ctx}");
    }
    for w in &mut writers {
        w.go();
    }
    let acks: Vec<Vec<Ack>> = writers
        .into_iter()
        .enumerate()
        .map(|(i, w)| w.finish().unwrap_or_else(|e| panic!("writer {i}: {e}; {ctx}")))
        .collect();

    let vault = LocalVault::open(&dir).expect("open vault");
    let writer = login(&vault, Role::Writer);
    let auditor = login(&vault, Role::Auditor);
    let listed = list_all(&writer, "").unwrap_or_else(|e| panic!("{e}; {ctx}"));
    let by_id: BTreeMap<(String, VersionId), &ObjectVersion> =
        listed.iter().map(|v| ((v.key.clone(), v.version.clone()), v)).collect();

    let mut expected: BTreeSet<(String, VersionId)> = BTreeSet::new();
    let mut shared_versions: Vec<VersionId> = Vec::new();
    let mut shared_by: BTreeMap<VersionId, usize> = BTreeMap::new();
    for (i, list) in acks.iter().enumerate() {
        assert_eq!(list.last(), Some(&Ack::Done), "writer {i} did not finish; {ctx}");
        let mut own_shared: Vec<&VersionId> = Vec::new();
        for a in list {
            match a {
                Ack::Put { key, version } | Ack::Delete { key, version } => {
                    let v = by_id
                        .get(&(key.clone(), version.clone()))
                        .unwrap_or_else(|| panic!("writer {i}: acknowledged {key} version {version} missing; {ctx}"));
                    assert_eq!(v.delete_marker, matches!(a, Ack::Delete { .. }), "{key} version {version}; {ctx}");
                    if !v.delete_marker {
                        check_reads_back(&writer, v).unwrap_or_else(|e| panic!("writer {i}: {e}; {ctx}"));
                    }
                    if key == SHARED {
                        own_shared.push(version);
                        shared_versions.push(version.clone());
                        shared_by.insert(version.clone(), i);
                    } else {
                        assert!(key.starts_with(&format!("c{i}/")), "writer {i} wrote {key}; {ctx}");
                    }
                    assert!(
                        expected.insert((key.clone(), version.clone())),
                        "{key} version {version} acknowledged twice"
                    );
                }
                Ack::Retention { key, version, mode, until } => {
                    let v = by_id[&(key.clone(), version.clone())];
                    let r = v.retention.unwrap_or_else(|| panic!("{key} version {version} lost its retention; {ctx}"));
                    assert!(r.mode == *mode && r.until.as_second() >= *until, "{key} version {version}: {r:?}; {ctx}");
                }
                Ack::Done | Ack::Ready => {}
            }
        }
        assert_eq!(own_shared.len(), 15, "writer {i} put the shared key every third call; {ctx}");
        assert!(
            own_shared.windows(2).all(|w| w[0] < w[1]),
            "writer {i}'s versions of the shared key are not in the order it made them: {own_shared:?}; {ctx}"
        );
    }
    // Nothing but what was acknowledged, and every version id of the shared key distinct.
    let listed_ids: BTreeSet<(String, VersionId)> = by_id.keys().cloned().collect();
    assert_eq!(listed.len(), listed_ids.len(), "a version is listed twice; {ctx}");
    assert_eq!(listed_ids, expected, "listed versions differ from the acknowledged ones; {ctx}");
    let distinct: BTreeSet<&VersionId> = shared_versions.iter().collect();
    assert_eq!(distinct.len(), WRITERS * 15, "version ids of the shared key repeat; {ctx}");

    // The shared key's history: newest first, creation times strictly increasing with the id,
    // only the newest marked latest, and it reads back.
    let shared: Vec<&ObjectVersion> = listed.iter().filter(|v| v.key == SHARED).collect();
    assert_eq!(shared.len(), WRITERS * 15);
    for w in shared.windows(2) {
        assert!(w[0].version > w[1].version, "versions of {SHARED} not newest first; {ctx}");
        assert!(w[0].created > w[1].created, "creation times of {SHARED} not increasing with the id; {ctx}");
    }
    assert!(shared[0].is_latest && shared[1..].iter().all(|v| !v.is_latest), "is_latest of {SHARED}; {ctx}");
    assert_eq!(writer.get(SHARED, None).expect("get shared").meta.version, shared[0].version);
    // They really ran at once: in version order, the shared key's writers alternate more
    // often than the WRITERS - 1 times that running one after another would give.
    let order: Vec<usize> = shared_by.values().copied().collect();
    let switches = order.windows(2).filter(|w| w[0] != w[1]).count();
    eprintln!("concurrent writers: the shared key's writer alternates {switches} times over {} versions", order.len());
    assert!(switches > WRITERS - 1, "the writers did not overlap (order {order:?}); {ctx}");

    // The audit log is one chain, with one allowed entry per version created.
    let verification = auditor.verify_audit_log().expect("verify audit log");
    assert!(verification.problems.is_empty(), "audit chain: {:?}; {ctx}", verification.problems);
    let mut log = Vec::new();
    loop {
        let page =
            auditor.audit_log(log.last().map_or(0, |e: &coffer_store::AuditEntry| e.seq), 500).expect("audit log");
        if page.is_empty() {
            break;
        }
        log.extend(page);
    }
    let created: BTreeSet<(String, VersionId)> = log
        .iter()
        .filter(|e| e.outcome == "allowed" && (e.action == "put" || e.action == "delete"))
        .map(|e| (e.key.clone().unwrap_or_default(), VersionId(e.version.clone().unwrap_or_default())))
        .collect();
    assert_eq!(created, expected, "audit log creations differ from the versions; {ctx}");
    assert!(log.iter().all(|e| e.outcome == "allowed"), "a request was refused or failed; {ctx}");
}
