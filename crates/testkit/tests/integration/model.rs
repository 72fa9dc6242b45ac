//! Property test: random operation sequences, as random roles, applied to a real
//! `LocalVault` and to the in-memory model (`coffer_testkit::model`) give the same answers.
//!
//! Every step compares success or error kind, and for reads the data and the version sets
//! (mapped from the vault's opaque version ids to the model's ids, a mapping this test
//! keeps). After the last step the whole store is compared: every version's metadata,
//! the key listing and the lock configuration.

use coffer_store::{
    DefaultRetention, LockConfig, ObjectStore, ObjectVersion, PutOptions, Retention, RetentionMode, Role, VersionId,
};
use coffer_testkit::contract::{LocalVaultHarness, StoreHarness};
use coffer_testkit::model::{Answer, Model, ModelId, ModelMeta, ModelRetention};
use jiff::Timestamp;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use std::collections::HashMap;
use std::time::Duration;

const KEYS: [&str; 5] = ["a", "a/b", "b", "é", "éa"];
const PREFIXES: [&str; 4] = ["", "a", "é", "c"];
const START: &str = "2030-01-01T00:00:00Z";

/// A retention as `(mode, seconds from now)`; zero or negative is in the past.
type RetentionSpec = Option<(RetentionMode, i64)>;

/// Which version an operation names: the latest of a key, or one picked from every
/// version ever created (`pick` modulo their number), under its own key or another one.
#[derive(Clone, Debug)]
enum Target {
    Latest(usize),
    Version { pick: usize, other_key: Option<usize> },
}

#[derive(Clone, Debug)]
enum Op {
    Put {
        key: usize,
        data: Vec<u8>,
        retention: RetentionSpec,
        legal_hold: bool,
    },
    Delete {
        key: usize,
    },
    DeleteVersion {
        pick: usize,
        other_key: Option<usize>,
        bypass: bool,
    },
    PutRetention {
        pick: usize,
        other_key: Option<usize>,
        retention: RetentionSpec,
        bypass: bool,
    },
    LegalHold {
        pick: usize,
        other_key: Option<usize>,
        on: bool,
    },
    Get(Target),
    Head(Target),
    List {
        prefix: usize,
        limit: usize,
    },
    ListVersions {
        prefix: usize,
        limit: usize,
    },
    SetDefault(Option<(RetentionMode, i64)>),
    Advance(i64),
    /// Moves the clock to exactly the picked version's retain-until, if that is ahead:
    /// the boundary where a retention stops protecting.
    AdvanceToUntil {
        pick: usize,
    },
}

impl Op {
    /// The role that would normally make this request.
    fn natural_role(&self) -> Role {
        match self {
            Op::Put { .. } | Op::Delete { .. } => Role::Writer,
            Op::DeleteVersion { .. } => Role::Pruner,
            Op::PutRetention { bypass: true, .. } | Op::SetDefault(_) | Op::LegalHold { on: false, .. } => Role::Admin,
            Op::PutRetention { .. } | Op::LegalHold { .. } => Role::Writer,
            Op::Get(_) | Op::List { .. } => Role::Reader,
            Op::Head(_) | Op::ListVersions { .. } | Op::Advance(_) | Op::AdvanceToUntil { .. } => Role::Auditor,
        }
    }
}

fn mode() -> impl Strategy<Value = RetentionMode> {
    prop_oneof![Just(RetentionMode::Governance), Just(RetentionMode::Compliance)]
}

/// Seconds from now: mostly a few small values, so that dates and clock steps often meet
/// exactly (retain-until reached, shortened by one second, equal to now).
fn offset() -> impl Strategy<Value = i64> {
    prop_oneof![3 => prop::sample::select(vec![-1i64, 0, 1, 2, 3, 4, 10, 11]), 1 => -2i64..40]
}

fn retention() -> impl Strategy<Value = RetentionSpec> {
    prop_oneof![2 => Just(None), 3 => (mode(), offset()).prop_map(Some)]
}

/// Which version to name, counted back from the newest: mostly recent ones, so that
/// consecutive operations often meet on the same version.
fn pick() -> impl Strategy<Value = usize> {
    prop_oneof![3 => 0usize..3, 1 => any::<usize>()]
}

fn other_key() -> impl Strategy<Value = Option<usize>> {
    prop_oneof![4 => Just(None), 1 => (0..KEYS.len()).prop_map(Some)]
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        (0..KEYS.len()).prop_map(Target::Latest),
        (pick(), other_key()).prop_map(|(pick, other_key)| Target::Version { pick, other_key }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0..KEYS.len(), prop::collection::vec(any::<u8>(), 0..6), retention(), prop::bool::weighted(0.2))
            .prop_map(|(key, data, retention, legal_hold)| Op::Put { key, data, retention, legal_hold }),
        1 => (0..KEYS.len()).prop_map(|key| Op::Delete { key }),
        3 => (pick(), other_key(), any::<bool>())
            .prop_map(|(pick, other_key, bypass)| Op::DeleteVersion { pick, other_key, bypass }),
        3 => (pick(), other_key(), retention(), any::<bool>()).prop_map(|(pick, other_key, retention, bypass)| {
            Op::PutRetention { pick, other_key, retention, bypass }
        }),
        2 => (pick(), other_key(), any::<bool>()).prop_map(|(pick, other_key, on)| Op::LegalHold { pick, other_key, on }),
        2 => target().prop_map(Op::Get),
        2 => target().prop_map(Op::Head),
        1 => (0..PREFIXES.len(), 1usize..4).prop_map(|(prefix, limit)| Op::List { prefix, limit }),
        1 => (0..PREFIXES.len(), 1usize..4).prop_map(|(prefix, limit)| Op::ListVersions { prefix, limit }),
        1 => prop::option::of((mode(), 1i64..30)).prop_map(Op::SetDefault),
        2 => prop_oneof![prop::sample::select(vec![1i64, 2, 5, 10]), 1i64..25].prop_map(Op::Advance),
        2 => pick().prop_map(|pick| Op::AdvanceToUntil { pick }),
    ]
}

/// Runs a sequence against both and compares; the vault ↔ model version mapping lives here.
struct Run {
    h: LocalVaultHarness,
    handles: Vec<Box<dyn ObjectStore>>,
    model: Model,
    /// Every version ever created: model id, vault id, key.
    created: Vec<(ModelId, VersionId, String)>,
    to_model: HashMap<VersionId, ModelId>,
}

impl Run {
    fn new() -> Self {
        let start: Timestamp = START.parse().expect("start time");
        let h = LocalVaultHarness::in_memory(start);
        let handles = Role::ALL.iter().map(|&r| h.handle(r)).collect();
        Self { h, handles, model: Model::new(start.as_second()), created: Vec::new(), to_model: HashMap::new() }
    }

    fn store(&self, role: Role) -> &dyn ObjectStore {
        self.handles[Role::ALL.iter().position(|&r| r == role).expect("role")].as_ref()
    }

    fn until(&self, spec: RetentionSpec) -> (Option<Retention>, Option<(RetentionMode, i64)>) {
        match spec {
            None => (None, None),
            Some((mode, offset)) => {
                let until = self.model.now() + offset;
                let ts = Timestamp::from_second(until).expect("date in range");
                (Some(Retention { mode, until: ts }), Some((mode, until)))
            }
        }
    }

    fn record(&mut self, model: ModelId, vault: &ObjectVersion) -> Result<(), TestCaseError> {
        prop_assert!(
            self.to_model.insert(vault.version.clone(), model).is_none(),
            "the vault reused version id {}",
            vault.version
        );
        self.created.push((model, vault.version.clone(), vault.key.clone()));
        Ok(())
    }

    /// The version an operation names (`pick` counts back from the newest), in both
    /// worlds: (key, model id, vault id).
    fn resolve(&self, pick: usize, other_key: Option<usize>) -> (String, ModelId, VersionId) {
        if self.created.is_empty() {
            let key = KEYS[other_key.unwrap_or(0)].to_owned();
            return (key, ModelId::MAX, VersionId("0000000000000000deadbeef".into()));
        }
        let n = self.created.len();
        let (m, v, own) = &self.created[n - 1 - pick % n];
        let key = other_key.map_or_else(|| own.clone(), |k| KEYS[k].to_owned());
        (key, *m, v.clone())
    }

    fn meta(&self, v: &ObjectVersion) -> Result<ModelMeta, TestCaseError> {
        let Some(&id) = self.to_model.get(&v.version) else {
            return Err(TestCaseError::fail(format!("the vault returned version {} the model never made", v.version)));
        };
        Ok(ModelMeta {
            key: v.key.clone(),
            id,
            delete_marker: v.delete_marker,
            is_latest: v.is_latest,
            size: v.size,
            retention: v.retention.map(|r| ModelRetention { mode: r.mode, until: r.until.as_second() }),
            legal_hold: v.legal_hold,
        })
    }

    fn list_all(
        &self,
        f: impl Fn(Option<&str>) -> coffer_store::Result<coffer_store::Page<ObjectVersion>>,
    ) -> coffer_store::Result<Vec<ObjectVersion>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = f(token.as_deref())?;
            out.extend(page.items);
            match page.next {
                Some(t) => token = Some(t),
                None => return Ok(out),
            }
        }
    }

    /// Applies one step to both and compares the answers.
    #[allow(clippy::too_many_lines, reason = "one arm per operation reads best in one place")]
    fn step(&mut self, op: &Op, role: Role) -> Result<(), TestCaseError> {
        let kind = |e: coffer_store::StoreError| e.kind();
        match op {
            Op::Put { key, data, retention, legal_hold } => {
                let (vr, mr) = self.until(*retention);
                let opts = PutOptions { retention: vr, legal_hold: *legal_hold, create_only: false };
                let vault = self.store(role).put(KEYS[*key], data, &opts);
                let model = self.model.put(role, KEYS[*key], data, mr, *legal_hold);
                self.compare_created(vault, model)?;
            }
            Op::Delete { key } => {
                let vault = self.store(role).delete(KEYS[*key]);
                let model = self.model.delete(role, KEYS[*key]);
                self.compare_created(vault, model)?;
            }
            Op::DeleteVersion { pick, other_key, bypass } => {
                let (key, m, v) = self.resolve(*pick, *other_key);
                let vault = self.store(role).delete_version(&key, &v, *bypass).map_err(kind);
                let model = self.model.delete_version(role, &key, m, *bypass);
                prop_assert_eq!(vault, model);
            }
            Op::PutRetention { pick, other_key, retention, bypass } => {
                let (key, m, v) = self.resolve(*pick, *other_key);
                let (vr, mr) = self.until(*retention);
                let vault = self.store(role).put_retention(&key, &v, vr, *bypass).map_err(kind);
                let model = self.model.put_retention(role, &key, m, mr, *bypass);
                prop_assert_eq!(vault, model);
            }
            Op::LegalHold { pick, other_key, on } => {
                let (key, m, v) = self.resolve(*pick, *other_key);
                let vault = self.store(role).put_legal_hold(&key, &v, *on).map_err(kind);
                let model = self.model.put_legal_hold(role, &key, m, *on);
                prop_assert_eq!(vault, model);
            }
            Op::Get(target) => {
                let (key, version) = self.target(target);
                let vault = match self.store(role).get(&key, version.as_ref().map(|(_, v)| v)) {
                    Ok(o) => Ok((self.meta(&o.meta)?.id, o.data)),
                    Err(e) => Err(e.kind()),
                };
                let model = self.model.get(role, &key, version.map(|(m, _)| m));
                prop_assert_eq!(vault, model);
            }
            Op::Head(target) => {
                let (key, version) = self.target(target);
                let vault = match self.store(role).head(&key, version.as_ref().map(|(_, v)| v)) {
                    Ok(v) => Ok(self.meta(&v)?),
                    Err(e) => Err(e.kind()),
                };
                let model = self.model.head(role, &key, version.map(|(m, _)| m));
                prop_assert_eq!(vault, model);
            }
            Op::List { prefix, limit } => {
                let s = self.store(role);
                let vault = match self.list_all(|t| s.list(PREFIXES[*prefix], t, *limit)) {
                    Ok(items) => {
                        Ok(items.iter().map(|v| self.meta(v).map(|m| (m.key, m.id))).collect::<Result<Vec<_>, _>>()?)
                    }
                    Err(e) => Err(e.kind()),
                };
                prop_assert_eq!(vault, self.model.list(role, PREFIXES[*prefix]));
            }
            Op::ListVersions { prefix, limit } => {
                let s = self.store(role);
                let vault = match self.list_all(|t| s.list_versions(PREFIXES[*prefix], t, *limit)) {
                    Ok(items) => Ok(items.iter().map(|v| self.meta(v)).collect::<Result<Vec<_>, _>>()?),
                    Err(e) => Err(e.kind()),
                };
                prop_assert_eq!(vault, self.model.list_versions(role, PREFIXES[*prefix]));
            }
            Op::SetDefault(default) => {
                let cfg = LockConfig {
                    enabled: true,
                    default_retention: default.map(|(mode, secs)| DefaultRetention {
                        mode,
                        period: Duration::from_secs(secs.unsigned_abs()),
                    }),
                };
                let vault = self.store(role).put_lock_config(&cfg).map_err(kind);
                prop_assert_eq!(vault, self.model.put_lock_config(role, true, *default));
            }
            Op::Advance(secs) => {
                self.h.advance(Duration::from_secs(secs.unsigned_abs()));
                self.model.advance(*secs);
            }
            Op::AdvanceToUntil { pick } => {
                let (key, m, _) = self.resolve(*pick, None);
                let until = self.model.head(Role::Auditor, &key, Some(m)).ok().and_then(|v| v.retention);
                if let Some(r) = until.filter(|r| r.until > self.model.now()) {
                    let secs = r.until - self.model.now();
                    self.h.advance(Duration::from_secs(secs.unsigned_abs()));
                    self.model.advance(secs);
                }
            }
        }
        Ok(())
    }

    fn target(&self, target: &Target) -> (String, Option<(ModelId, VersionId)>) {
        match target {
            Target::Latest(k) => (KEYS[*k].to_owned(), None),
            Target::Version { pick, other_key } => {
                let (key, m, v) = self.resolve(*pick, *other_key);
                (key, Some((m, v)))
            }
        }
    }

    fn compare_created(
        &mut self,
        vault: coffer_store::Result<ObjectVersion>,
        model: Answer<ModelId>,
    ) -> Result<(), TestCaseError> {
        match (vault, model) {
            (Ok(v), Ok(m)) => {
                self.record(m, &v)?;
                let want = self.model.head(Role::Auditor, &v.key, Some(m));
                prop_assert_eq!(Ok(self.meta(&v)?), want, "the new version's metadata");
            }
            (Err(e), Err(k)) => prop_assert_eq!(e.kind(), k, "{}", e),
            (vault, model) => {
                return Err(TestCaseError::fail(format!("vault answered {vault:?}, model {model:?}")));
            }
        }
        Ok(())
    }

    /// Compares the whole store: every version's metadata, the listing, the configuration.
    fn compare_all(&self) -> Result<(), TestCaseError> {
        let auditor = self.store(Role::Auditor);
        let versions = self
            .list_all(|t| auditor.list_versions("", t, 1000))
            .map_err(|e| TestCaseError::fail(format!("list versions: {e}")))?;
        let vault: Vec<ModelMeta> = versions.iter().map(|v| self.meta(v)).collect::<Result<_, _>>()?;
        prop_assert_eq!(Ok(vault), self.model.list_versions(Role::Auditor, ""), "final versions");
        let reader = self.store(Role::Reader);
        for (key, id) in self.model.list(Role::Reader, "").expect("reader lists") {
            let (_, data) = self.model.get(Role::Reader, &key, Some(id)).expect("model data");
            let o = reader.get(&key, None).map_err(|e| TestCaseError::fail(format!("get {key}: {e}")))?;
            prop_assert_eq!((self.meta(&o.meta)?.id, o.data), (id, data), "final data of {}", key);
        }
        let cfg = auditor.lock_config().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let default = cfg.default_retention.map(|d| (d.mode, i64::try_from(d.period.as_secs()).expect("period")));
        prop_assert_eq!(Ok((cfg.enabled, default)), self.model.lock_config(Role::Auditor));
        Ok(())
    }
}

fn role_for(op: &Op, pick: u8) -> Role {
    // Mostly the role that normally makes the request, so that most steps get past the
    // access check; otherwise any role.
    if pick < 12 { op.natural_role() } else { Role::ALL[usize::from(pick) % Role::ALL.len()] }
}

/// Cases per run: a case costs milliseconds on tmpfs (see `LocalVaultHarness::in_memory`),
/// but a second of fsyncs on a slow disk.
fn cases() -> u32 {
    if std::path::Path::new("/dev/shm").is_dir() { 256 } else { 48 }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_shrink_iters: 2000, ..ProptestConfig::default() })]

    #[test]
    fn local_vault_agrees_with_the_model(steps in prop::collection::vec((op(), 0u8..20), 1..40)) {
        let mut run = Run::new();
        for (i, (op, pick)) in steps.iter().enumerate() {
            let role = role_for(op, *pick);
            run.step(op, role).map_err(|e| TestCaseError::fail(format!("step {i}: {op:?} as {role}: {e}")))?;
        }
        run.compare_all()?;
    }
}

/// The property test can fail: the model disagrees with a vault whose clock it does not follow.
#[test]
fn the_model_notices_a_divergence() {
    let mut run = Run::new();
    let put =
        Op::Put { key: 0, data: b"x".to_vec(), retention: Some((RetentionMode::Compliance, 5)), legal_hold: false };
    run.step(&put, Role::Writer).expect("put agrees");
    run.h.advance(Duration::from_secs(10)); // the model does not see this
    let delete = Op::DeleteVersion { pick: 0, other_key: None, bypass: false };
    assert!(run.step(&delete, Role::Pruner).is_err(), "the vault deletes, the model says locked");
}
