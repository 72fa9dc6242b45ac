//! The contract harness for `LocalVault`: a fresh vault in a temporary directory, with a
//! manual clock the checks can move.
//!
//! Invariant guarded here: the harness's store starts with Object Lock and versioning
//! enabled and no default retention, as every harness must.

use super::*;

/// The contract harness for `LocalVault`: a fresh vault in a temporary directory with a
/// manual clock, and one logged-in handle per role (credentials read from the vault's
/// `credentials/` directory, as the CLI does).
#[derive(Debug)]
pub struct LocalVaultHarness {
    clock: Clock,
    vault: LocalVault,
    handles: Vec<VaultHandle>,
    // Dropped last: removes the vault.
    _dir: tempfile::TempDir,
}

impl LocalVaultHarness {
    /// Where the clock of [`Self::new`] starts: deliberately a quarter second past a whole
    /// second, so that whole-second retain-until dates are never exactly "now".
    pub const START: &str = "2030-01-01T00:00:00.25Z";

    /// A fresh vault whose clock starts at [`Self::START`].
    ///
    /// # Panics
    /// If the vault cannot be created.
    #[must_use]
    pub fn new() -> Self {
        Self::starting_at(Self::START.parse().expect("valid start time"))
    }

    /// A fresh vault whose clock starts at `start`.
    ///
    /// # Panics
    /// If the vault cannot be created.
    #[must_use]
    pub fn starting_at(start: Timestamp) -> Self {
        Self::create(tempfile::tempdir().expect("create a temporary directory"), start)
    }

    /// A fresh vault whose clock starts at `start`, on `/dev/shm` (tmpfs) when the machine
    /// has it. The same code runs, but fsync costs nothing: for property tests that make
    /// thousands of requests. Durability is tested on a real disk by the crash trials.
    ///
    /// # Panics
    /// If the vault cannot be created.
    #[must_use]
    pub fn in_memory(start: Timestamp) -> Self {
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() };
        Self::create(dir.expect("create a temporary directory"), start)
    }

    pub(super) fn create(dir: tempfile::TempDir, start: Timestamp) -> Self {
        let clock = Clock::manual(start);
        let opts = VaultOptions { clock: clock.clone(), ..VaultOptions::default() };
        let vault = LocalVault::init(dir.path().join("vault"), &opts).expect("init a vault");
        let handles = Role::ALL
            .iter()
            .map(|&role| {
                let creds = vault.read_credentials(role).expect("read credentials");
                vault.login(&creds).expect("log in")
            })
            .collect();
        Self { clock, vault, handles, _dir: dir }
    }

    /// The vault under test.
    #[must_use]
    pub fn vault(&self) -> &LocalVault {
        &self.vault
    }

    /// The logged-in vault handle for `role`.
    #[must_use]
    pub fn vault_handle(&self, role: Role) -> &VaultHandle {
        let i = Role::ALL.iter().position(|&r| r == role).expect("every role has a handle");
        &self.handles[i]
    }
}

impl Default for LocalVaultHarness {
    fn default() -> Self {
        Self::new()
    }
}

impl StoreHarness for LocalVaultHarness {
    fn handle(&self, role: Role) -> Box<dyn ObjectStore> {
        Box::new(self.vault_handle(role).clone())
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    fn can_move_clock(&self) -> bool {
        true
    }

    fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    fn audit_log_as(&self, role: Role, after: u64) -> Option<coffer_store::Result<Vec<AuditEntry>>> {
        let handle = self.vault_handle(role);
        let mut out: Vec<AuditEntry> = Vec::new();
        loop {
            let from = out.last().map_or(after, |e| e.seq);
            match handle.audit_log(from, 1000) {
                Ok(page) if page.is_empty() => return Some(Ok(out)),
                Ok(page) => out.extend(page),
                Err(e) => return Some(Err(e)),
            }
        }
    }
}
