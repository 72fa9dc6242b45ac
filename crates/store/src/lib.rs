//! Coffer's store: the `ObjectStore` contract and its implementations.
//!
//! Everything Coffer promises rests on one contract: storage where every write makes a new
//! version, nothing is overwritten, a locked version cannot be removed before its
//! retain-until date by anyone, and each request is checked against the caller's role.
//!
//! - [`ObjectStore`] — the contract (module [`store`] documents it in full).
//! - [`Role`], [`Action`], [`Principal`] — the access matrix ([`Role::allows`]).
//! - [`iam`] — IAM policy documents for the roles, generated from the matrix.
//! - [`Clock`] — the one source of time for lock decisions.
//! - [`LocalVault`] — the crash-safe engine on a local directory; the embedded default.
//! - [`open`] — one way to open a store from a location, credentials and a role.
//! - `S3Store` (feature `s3`) — the contract over the S3 API, for AWS S3 and S3-compatible services.
//!
//! ```
//! use coffer_store::{LocalVault, VaultOptions, ObjectStore, PutOptions, Role};
//! let dir = tempfile::tempdir().unwrap();
//! let vault = LocalVault::init(dir.path().join("vault"), &VaultOptions::default()).unwrap();
//! let writer = vault.login(&vault.read_credentials(Role::Writer).unwrap()).unwrap();
//! let v = writer.put("hello", b"world", &PutOptions::default()).unwrap();
//! assert_eq!(writer.get("hello", Some(&v.version)).unwrap().data, b"world");
//! ```

pub mod clock;
pub mod error;
pub mod iam;
pub mod lock;
pub mod model;
pub mod open;
pub mod probe;
pub mod role;
#[cfg(feature = "s3")]
pub mod s3;
pub mod store;
pub mod vault;

pub use clock::Clock;
pub use error::{ErrorClass, ErrorKind, Result, StoreError, display_chain};
pub use model::{
    DefaultRetention, ListEntry, LockConfig, ObjectVersion, Page, Protection, PutOptions, Retention, RetentionMode,
    VersionId, Versioning, may_get_new_versions,
};
pub use open::{
    CreateVault, CredentialsSource, OpenError, OpenedStore, StoreHandle, StoreLocation, StoreRequest, open_store,
};
pub use probe::ProbeRequest;
pub use role::{Action, Credentials, Principal, Role, Secret, matrix_markdown};
#[cfg(feature = "s3")]
pub use s3::{S3Credentials, S3Location, S3Options, S3Store};
pub use store::{Capabilities, Object, ObjectStore, RangeRead};
pub use vault::{AuditEntry, AuditVerification, ClockStatus, LocalVault, TimeFinding, VaultHandle, VaultOptions};
