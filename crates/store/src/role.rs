//! Roles, actions and the access matrix: who may do what.
//!
//! Invariant guarded: separation of duties. No role both creates and deletes data: the
//! `writer` adds versions and extends locks, and neither deletes nor hides anything (no
//! delete markers: a stolen writer key cannot hide a snapshot); the `pruner` removes
//! versions (only expired ones, and never bypassing governance); the `admin` configures,
//! may bypass governance and may hide a key behind a delete marker (which removes
//! nothing), but cannot weaken compliance, delete a version or put; the `reader` restores
//! and the `auditor` reads metadata and the audit log. The matrix is [`Role::allows`];
//! `docs/store.md` renders it and the contract suite tests every cell.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A principal's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Runs backups: puts, reads, lists, extends retention, sets legal holds. Never adds a
    /// delete marker, never deletes.
    Writer,
    /// Restores: gets and lists.
    Reader,
    /// Removes versions whose retention has ended; never puts, never bypasses governance.
    Pruner,
    /// Configures the store, may bypass governance and may hide a key behind a delete
    /// marker (which removes nothing); cannot weaken compliance, delete a version, or put.
    Admin,
    /// Reads metadata and the audit log; never reads data.
    Auditor,
}

impl Role {
    /// Every role, in matrix order.
    pub const ALL: [Role; 5] = [Role::Writer, Role::Reader, Role::Pruner, Role::Admin, Role::Auditor];

    /// The lowercase name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Writer => "writer",
            Self::Reader => "reader",
            Self::Pruner => "pruner",
            Self::Admin => "admin",
            Self::Auditor => "auditor",
        }
    }

    /// The access matrix: whether this role may perform `action` at all. Whether a permitted
    /// action succeeds still depends on locks (e.g. a pruner's delete of a locked version).
    #[must_use]
    pub fn allows(self, action: Action) -> bool {
        use Action as A;
        use Role as R;
        match action {
            A::Head | A::List | A::ListVersions | A::GetLockConfig | A::GetVersioning => true,
            A::Get => matches!(self, R::Writer | R::Reader),
            A::Put => self == R::Writer,
            // A backup never hides anything: a delete marker is an admin's curation, not
            // the writer's (a stolen writer key must not be able to hide a snapshot).
            A::Delete => self == R::Admin,
            A::DeleteVersion => self == R::Pruner,
            A::PutRetention | A::LegalHoldOn => matches!(self, R::Writer | R::Admin),
            A::BypassGovernance | A::LegalHoldOff | A::PutLockConfig | A::PutVersioning => self == R::Admin,
            A::ReadAuditLog => matches!(self, R::Admin | R::Auditor),
        }
    }
}

/// The access matrix as a Markdown table (rows: actions, columns: roles), as printed in
/// `docs/store.md`; a test keeps the two identical.
#[must_use]
pub fn matrix_markdown() -> String {
    let mut out = String::from("| action |");
    for r in Role::ALL {
        out.push_str(&format!(" {r} |"));
    }
    out.push_str("\n| --- |");
    out.push_str(&" :---: |".repeat(Role::ALL.len()));
    out.push('\n');
    for a in Action::ALL {
        out.push_str(&format!("| `{a}` |"));
        for r in Role::ALL {
            out.push_str(if r.allows(a) { " ✔ |" } else { " — |" });
        }
        out.push('\n');
    }
    out
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown role {s:?} (expected writer, reader, pruner, admin or auditor)"))
    }
}

/// Everything a request can ask to do, as checked against the matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Create a new version.
    Put,
    /// Read a version's data.
    Get,
    /// Read a version's metadata.
    Head,
    /// List keys.
    List,
    /// List versions and delete markers.
    ListVersions,
    /// Add a delete marker (removes nothing).
    Delete,
    /// Permanently remove one version (the only destructive action).
    DeleteVersion,
    /// Set or extend a version's retention.
    PutRetention,
    /// Shorten or remove a governance retention, or delete under one.
    BypassGovernance,
    /// Place a legal hold.
    LegalHoldOn,
    /// Remove a legal hold.
    LegalHoldOff,
    /// Read the Object Lock configuration.
    GetLockConfig,
    /// Change the Object Lock configuration (default retention).
    PutLockConfig,
    /// Read the versioning status.
    GetVersioning,
    /// Change the versioning status.
    PutVersioning,
    /// Read the audit log.
    ReadAuditLog,
}

impl Action {
    /// Every action, in matrix order.
    pub const ALL: [Action; 16] = [
        Action::Put,
        Action::Get,
        Action::Head,
        Action::List,
        Action::ListVersions,
        Action::Delete,
        Action::DeleteVersion,
        Action::PutRetention,
        Action::BypassGovernance,
        Action::LegalHoldOn,
        Action::LegalHoldOff,
        Action::GetLockConfig,
        Action::PutLockConfig,
        Action::GetVersioning,
        Action::PutVersioning,
        Action::ReadAuditLog,
    ];

    /// The kebab-case name, as in the audit log.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Put => "put",
            Self::Get => "get",
            Self::Head => "head",
            Self::List => "list",
            Self::ListVersions => "list-versions",
            Self::Delete => "delete",
            Self::DeleteVersion => "delete-version",
            Self::PutRetention => "put-retention",
            Self::BypassGovernance => "bypass-governance",
            Self::LegalHoldOn => "legal-hold-on",
            Self::LegalHoldOff => "legal-hold-off",
            Self::GetLockConfig => "get-lock-config",
            Self::PutLockConfig => "put-lock-config",
            Self::GetVersioning => "get-versioning",
            Self::PutVersioning => "put-versioning",
            Self::ReadAuditLog => "read-audit-log",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who makes a request: a name and a role. Established by authentication, never by the caller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// Name (for the audit log), e.g. `writer`.
    pub name: String,
    /// Role.
    pub role: Role,
}

impl Principal {
    /// Checks the matrix.
    ///
    /// # Errors
    /// [`crate::StoreError::Forbidden`] when the role may not perform `action`.
    pub fn authorize(&self, action: Action) -> crate::Result<()> {
        if self.role.allows(action) {
            Ok(())
        } else {
            Err(crate::StoreError::Forbidden { principal: self.name.clone(), role: self.role, action })
        }
    }
}

/// A secret string whose `Debug` and `Display` never show it (restic's `SecretString`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    #[must_use]
    pub fn new(s: String) -> Self {
        Self(s)
    }

    /// The secret itself, for the one place that needs it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("**redacted**")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("**redacted**")
    }
}

/// An access key: what a process presents to act as a principal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Credentials {
    /// Public access key id.
    pub access_key: String,
    /// Secret key.
    pub secret_key: Secret,
}

#[cfg(test)]
mod tests {
    /// The matrix in `docs/store.md` is generated from `Role::allows`; this fails when they drift.
    #[test]
    fn docs_matrix_matches_code() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/store.md")).unwrap();
        let start = doc.find("<!-- matrix:begin -->").expect("matrix begin marker") + "<!-- matrix:begin -->".len();
        let end = doc.find("<!-- matrix:end -->").expect("matrix end marker");
        assert_eq!(
            doc[start..end].trim(),
            super::matrix_markdown().trim(),
            "docs/store.md's access matrix differs from Role::allows; paste matrix_markdown() output"
        );
    }
}
