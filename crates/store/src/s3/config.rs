//! How an `S3Store` is configured: credentials, location, principal, and the multipart
//! upload parameters.
//!
//! Invariant guarded here: part sizes stay within S3's limits (at least `MIN_PART_SIZE`, at
//! most `MAX_PARTS` parts), so an upload never fails half-way for its shape.

use super::*;

/// How an `S3Store` authenticates.
#[derive(Clone, Debug)]
pub enum S3Credentials {
    /// The standard AWS chain: environment, profile files, web identity, ECS, instance role.
    Chain,
    /// An explicit access key (one per role: the writer never holds the pruner's keys).
    Static(Credentials),
}

/// Everything needed to open an [`S3Store`].
#[derive(Clone, Debug)]
pub struct S3Options {
    /// Bucket, prefix, endpoint.
    pub location: S3Location,
    /// Credentials.
    pub credentials: S3Credentials,
    /// Who these credentials are: the role comes from configuration (which key set was
    /// given), because S3 authenticates keys, not Coffer roles. The store also refuses
    /// locally what the role may not do.
    pub principal: Principal,
    /// When and how objects are sent in parts.
    pub multipart: Multipart,
}

/// The smallest part S3 accepts (except the last part of an upload).
pub const MIN_PART_SIZE: u64 = 5 << 20;

/// The most parts of one upload.
pub(super) const MAX_PARTS: u64 = 10_000;

/// How many parts of one upload are in flight at most.
pub(super) const PART_CONCURRENCY: usize = 4;

/// Multipart upload settings: an object larger than `threshold` bytes is sent as a
/// multipart upload in parts of `part_size` (grown if it would take more than 10 000 parts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Multipart {
    /// Objects larger than this go in parts; at most 5 GiB (S3's single-PUT limit).
    pub threshold: u64,
    /// Size of every part but the last; at least [`MIN_PART_SIZE`].
    pub part_size: u64,
}

impl Default for Multipart {
    /// Above 64 MiB, in 16 MiB parts: a repository pack (16 MiB plus at most one chunk)
    /// goes in one `PutObject`, the cheapest request; larger objects in parts, so a lost
    /// connection costs one part, not the whole object.
    fn default() -> Self {
        Self { threshold: 64 << 20, part_size: 16 << 20 }
    }
}
