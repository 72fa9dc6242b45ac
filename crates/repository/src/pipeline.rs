//! The backup write pipeline: compress and seal blobs on every core, fill packs, upload.
//!
//! ```text
//! caller ──(kind, id, plaintext)──► sealers ×N ──(sealed)──► packer ──(pack)──► uploaders ×2
//!   (reads, chunks, hashes, dedups)   zstd + AEAD              16 MiB packs,      put + lock,
//!                                                              trees apart        index checkpoints
//! ```
//!
//! Blobs travel between the stages in batches (up to [`BATCH_BLOBS`] blobs or
//! [`BATCH_BYTES`]): a backup of many small files otherwise paid a thread wake-up and a
//! channel hand-off per blob at each stage, which a profile of the benchmark tree (12 120
//! files) showed as a tenth of the backup's CPU time in context switches and channel spins.
//!
//! Invariant guarded: nothing is acknowledged early. [`Pipeline::finish`] returns only
//! after every pack has been stored (durable, locked) and lists them, so the caller can
//! write the index and then the snapshot; the first store error stops the pipeline and is
//! returned. Channels are bounded, so memory stays at a few chunks per stage plus the
//! packs being filled and uploaded.

use crate::crypto::MasterKey;
use crate::error::{RepoError, Result};
use crate::id::Id;
use crate::index::{IndexFile, IndexPack};
use crate::pack::{self, BlobKind, ObjectKind, PackBuilder};
use coffer_store::{ObjectStore, Retention, RetentionMode};
use crossbeam_channel::{Receiver, Sender, bounded};
use jiff::Timestamp;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

struct Job {
    kind: BlobKind,
    id: Id,
    data: Vec<u8>,
}

enum Sealed {
    /// A blob sealed alone.
    One { kind: BlobKind, id: Id, sealed: Vec<u8>, raw_len: usize },
    /// Small blobs compressed and sealed together ([`pack::seal_group`]).
    Group { kind: BlobKind, sealed: Vec<u8>, members: Vec<(Id, u32)> },
}

impl Sealed {
    fn kind(&self) -> BlobKind {
        match self {
            Self::One { kind, .. } | Self::Group { kind, .. } => *kind,
        }
    }
}

/// A batch is sent on once it holds this many blobs… (enough small files to fill a group:
/// groups are made within one batch, by the sealer that has it)
const BATCH_BLOBS: usize = 256;
/// …or this many bytes (so a chunk of 1 MiB or more goes on at once, alone or nearly).
const BATCH_BYTES: usize = 1 << 20;

/// Blobs submitted but not yet handed to the sealers.
#[derive(Default)]
struct Batch {
    jobs: Vec<Job>,
    bytes: usize,
}

/// Where and how packs and index objects are stored.
#[derive(Clone)]
pub(crate) struct Target {
    pub store: Arc<dyn ObjectStore>,
    pub key: MasterKey,
    pub prefix: String,
    pub mode: RetentionMode,
    pub until: Timestamp,
    pub pack_size: usize,
    pub checkpoint_packs: usize,
    /// The local metadata cache, which keeps the index objects written (the next backup of
    /// this host then reads none of them back).
    pub cache: Option<Arc<crate::cache::MetaCache>>,
    /// The dictionary small data blobs are compressed with, once there is one (set at the
    /// start, or by the writer when it has trained one mid-backup).
    pub dict: Arc<std::sync::OnceLock<&'static crate::dict::Dictionary>>,
    /// The ids of the index objects written, for the writer to add to the catalog at commit
    /// (`BlobWriter::record_own`).
    pub written: Arc<std::sync::Mutex<Vec<Id>>>,
}

impl Target {
    /// Create-only: a pack or index with these bytes already stored (by a concurrent
    /// backup, or a retried request) is success ([`crate::put::put_once`]).
    fn put(&self, key: &str, bytes: &[u8]) -> Result<()> {
        self.put_reported(key, bytes).map(|_| ())
    }

    /// [`Target::put`], with the version stored and the lock the store reported for it
    /// ([`crate::put::put_once_reported`]).
    fn put_reported(&self, key: &str, bytes: &[u8]) -> Result<(coffer_store::VersionId, Option<Retention>)> {
        crate::put::put_once_reported(self.store.as_ref(), key, bytes, Retention { mode: self.mode, until: self.until })
    }

    pub(crate) fn pack_key(&self, id: &Id) -> String {
        let hex = id.to_string();
        format!("{}data/{}/{hex}", self.prefix, &hex[..2])
    }

    /// Writes an index object stating `packs`.
    pub(crate) fn write_index(&self, packs: Vec<IndexPack>) -> Result<()> {
        for packs in split_index(packs) {
            let bytes = pack::seal_object(&self.key, ObjectKind::Index, &IndexFile { packs });
            let id = Id::hash(&bytes);
            self.put(&format!("{}index/{id}", self.prefix), &bytes)?;
            if let Some(c) = &self.cache {
                c.put(crate::cache::Kind::Index, &id, &bytes);
                self.written.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(id);
            }
        }
        Ok(())
    }
}

/// Cuts `packs` into the contents of index objects of at most
/// [`pack::MAX_INDEX_OBJECT_BLOBS`] blobs each, whole packs only (a pack holding more is an
/// object alone), in order. Nothing for no packs.
fn split_index(packs: Vec<IndexPack>) -> Vec<Vec<IndexPack>> {
    let mut objects: Vec<Vec<IndexPack>> = Vec::new();
    let mut blobs = 0;
    for p in packs {
        let n = p.blobs.len();
        match objects.last_mut() {
            Some(last) if blobs + n <= pack::MAX_INDEX_OBJECT_BLOBS => last.push(p),
            _ => {
                objects.push(vec![p]);
                blobs = 0;
            }
        }
        blobs += n;
    }
    objects
}

#[derive(Default)]
struct Shared {
    /// Packs stored but not yet stated in an index object.
    unindexed: Mutex<Vec<IndexPack>>,
    /// Every pack stored.
    all: Mutex<Vec<IndexPack>>,
    error: Mutex<Option<RepoError>>,
    bytes_stored: AtomicU64,
    /// Compliance-mode locks the store reported for the packs stored.
    locks: Mutex<crate::cache::LockObservations>,
}

impl Shared {
    fn fail(&self, e: RepoError) {
        let mut slot = self.error.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(e);
        }
    }

    fn failed(&self) -> bool {
        self.error.lock().unwrap_or_else(std::sync::PoisonError::into_inner).is_some()
    }
}

/// A running pipeline. Dropping it without [`Pipeline::finish`] stops the threads and
/// discards what was not yet stored (an interrupted backup).
pub(crate) struct Pipeline {
    jobs: Option<Sender<Vec<Job>>>,
    batch: Mutex<Batch>,
    threads: Vec<JoinHandle<()>>,
    shared: Arc<Shared>,
}

/// What the pipeline stored.
pub(crate) struct Stored {
    /// Every pack stored.
    pub packs: Vec<IndexPack>,
    /// Packs not yet in an index object.
    pub unindexed: Vec<IndexPack>,
    /// Bytes of packs stored.
    pub bytes: u64,
    /// `(key, version) → until` (Unix seconds) of the packs stored whose lock the store
    /// reported as compliance mode ([`Target::observe_locks`]); the caller drops ended ones.
    pub locks: crate::cache::LockObservations,
}

impl Pipeline {
    /// Starts sealers on every core, a packer and two uploaders.
    pub(crate) fn start(target: Target) -> Self {
        let shared = Arc::new(Shared::default());
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get).clamp(1, 8);
        // Small queues: each item is a batch of about 1 MiB (or one chunk of up to 8 MiB),
        // and a pack is 16 MiB.
        let (job_tx, job_rx) = bounded::<Vec<Job>>(cores);
        let (sealed_tx, sealed_rx) = bounded::<Vec<Sealed>>(cores);
        let (pack_tx, pack_rx) = bounded::<Finished>(0);
        let mut threads = Vec::new();
        for _ in 0..cores {
            let (rx, tx, key, dict) = (job_rx.clone(), sealed_tx.clone(), target.key.clone(), target.dict.clone());
            threads.push(spawn("coffer-seal", move || seal_loop(&rx, &tx, &key, &dict)));
        }
        drop(sealed_tx);
        let key = target.key.clone();
        let size = target.pack_size;
        threads.push(spawn("coffer-pack", move || pack_loop(&sealed_rx, &pack_tx, &key, size)));
        for _ in 0..2 {
            let (rx, t, s) = (pack_rx.clone(), target.clone(), shared.clone());
            threads.push(spawn("coffer-upload", move || upload_loop(&rx, &t, &s)));
        }
        Self { jobs: Some(job_tx), batch: Mutex::default(), threads, shared }
    }

    /// Queues a blob (blocks while the stages are full). It reaches the sealers with the
    /// next full batch, or at [`Pipeline::finish`].
    pub(crate) fn submit(&self, kind: BlobKind, id: Id, data: Vec<u8>) -> Result<()> {
        self.check()?;
        let full = {
            let mut b = self.batch.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            b.bytes += data.len();
            b.jobs.push(Job { kind, id, data });
            if b.jobs.len() >= BATCH_BLOBS || b.bytes >= BATCH_BYTES {
                std::mem::take(&mut *b).jobs
            } else {
                Vec::new()
            }
        };
        self.send(full)
    }

    fn send(&self, jobs: Vec<Job>) -> Result<()> {
        if jobs.is_empty() {
            return Ok(());
        }
        let tx = self.jobs.as_ref().expect("pipeline running");
        if tx.send(jobs).is_err() {
            self.check()?;
            return Err(RepoError::Invalid("the backup pipeline stopped".into()));
        }
        Ok(())
    }

    /// The first error a stage hit, if any.
    pub(crate) fn check(&self) -> Result<()> {
        match self.shared.error.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Drains every stage and waits until every pack is stored.
    pub(crate) fn finish(mut self) -> Result<Stored> {
        let rest = std::mem::take(&mut *self.batch.lock().unwrap_or_else(std::sync::PoisonError::into_inner)).jobs;
        self.send(rest)?;
        self.jobs = None;
        for t in self.threads.drain(..) {
            if t.join().is_err() {
                self.shared.fail(RepoError::Invalid("a backup pipeline thread panicked".into()));
            }
        }
        self.check()?;
        let take = |m: &Mutex<Vec<IndexPack>>| {
            std::mem::take(&mut *m.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
        };
        Ok(Stored {
            packs: take(&self.shared.all),
            unindexed: take(&self.shared.unindexed),
            bytes: self.shared.bytes_stored.load(Ordering::Relaxed),
            locks: std::mem::take(&mut *self.shared.locks.lock().unwrap_or_else(std::sync::PoisonError::into_inner)),
        })
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            // Interrupted: make every stage stop at its next step, then wait for them.
            self.shared.fail(RepoError::Invalid("backup interrupted".into()));
            self.jobs = None;
            for t in self.threads.drain(..) {
                let _ = t.join();
            }
        }
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    std::thread::Builder::new().name(name.into()).spawn(f).expect("cannot start a pipeline thread")
}

fn seal_loop(
    rx: &Receiver<Vec<Job>>,
    tx: &Sender<Vec<Sealed>>,
    key: &MasterKey,
    dict: &std::sync::OnceLock<&'static crate::dict::Dictionary>,
) {
    for jobs in rx {
        let dict = dict.get().copied();
        if tx.send(seal_batch(jobs, key, dict)).is_err() {
            return;
        }
    }
}

/// Seals one batch: small blobs (up to [`pack::GROUP_BLOB_MAX`]) in groups of about
/// [`pack::GROUP_TARGET`] bytes per kind, when a group compresses; the rest alone. Data
/// blobs of a repository with a dictionary are compressed alone with it (as before
/// groups): the dictionary already removes what they share.
fn seal_batch(jobs: Vec<Job>, key: &MasterKey, dict: Option<&'static crate::dict::Dictionary>) -> Vec<Sealed> {
    let mut out = Vec::with_capacity(jobs.len());
    // Per kind (data, tree): the small blobs waiting for a group.
    let mut open: [Vec<Job>; 2] = [Vec::new(), Vec::new()];
    let mut open_bytes = [0usize; 2];
    let alone = |j: Job, out: &mut Vec<Sealed>| {
        out.push(Sealed::One {
            kind: j.kind,
            id: j.id,
            sealed: pack::seal_blob_with(key, j.kind, &j.id, &j.data, dict),
            raw_len: j.data.len(),
        });
    };
    let close = |group: Vec<Job>, out: &mut Vec<Sealed>| {
        if group.len() > 1 {
            let blobs: Vec<&[u8]> = group.iter().map(|j| j.data.as_slice()).collect();
            if let Some(sealed) = pack::seal_group(key, group[0].kind, &blobs) {
                let members =
                    group.iter().map(|j| (j.id, u32::try_from(j.data.len()).expect("a small blob"))).collect();
                out.push(Sealed::Group { kind: group[0].kind, sealed, members });
                return;
            }
        }
        for j in group {
            alone(j, out);
        }
    };
    for j in jobs {
        let groupable =
            !j.data.is_empty() && j.data.len() <= pack::GROUP_BLOB_MAX && (j.kind == BlobKind::Tree || dict.is_none());
        if !groupable {
            alone(j, &mut out);
            continue;
        }
        let k = usize::from(j.kind == BlobKind::Tree);
        open_bytes[k] += j.data.len();
        open[k].push(j);
        if open_bytes[k] >= pack::GROUP_TARGET {
            open_bytes[k] = 0;
            close(std::mem::take(&mut open[k]), &mut out);
        }
    }
    for group in open {
        close(group, &mut out);
    }
    out
}

/// A finished pack: bytes, id, entries.
type Finished = (Vec<u8>, Id, Vec<pack::PackEntry>);

/// Fills packs, one per blob kind: tree blobs never share a pack with file data, so reading
/// a snapshot's trees (the parent of the next backup, `ls`, `diff`, the restore walk) fetches
/// tree packs only, not 16 MiB of file data per tree. The format does not require it (a
/// pack may hold blobs of any kind); readers work the same on mixed packs.
fn pack_loop(rx: &Receiver<Vec<Sealed>>, tx: &Sender<Finished>, key: &MasterKey, size: usize) {
    let mut packs = [PackBuilder::default(), PackBuilder::default()];
    for s in rx.iter().flatten() {
        let pack = &mut packs[usize::from(s.kind() == BlobKind::Tree)];
        match s {
            Sealed::One { kind, id, sealed, raw_len } => pack.add(kind, id, &sealed, raw_len),
            Sealed::Group { kind, sealed, members } => pack.add_group(kind, &sealed, &members),
        }
        if pack.len() >= size && tx.send(std::mem::take(pack).finish(key)).is_err() {
            return;
        }
    }
    for pack in packs {
        if !pack.is_empty() && tx.send(pack.finish(key)).is_err() {
            return;
        }
    }
}

fn upload_loop(rx: &Receiver<Finished>, t: &Target, shared: &Shared) {
    for (bytes, id, entries) in rx {
        if shared.failed() {
            continue; // drain so the packer never blocks
        }
        let key = t.pack_key(&id);
        let reported = match t.put_reported(&key, &bytes) {
            Ok(r) => r,
            Err(e) => {
                shared.fail(e);
                continue;
            }
        };
        shared.bytes_stored.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        observe(t, shared, &key, reported, &id, &bytes, &entries);
        let p = IndexPack { id, size: bytes.len() as u64, retain_until: t.until, blobs: entries };
        shared.all.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(p.clone());
        // Checkpoint: an interrupted backup leaves at most a few packs unindexed.
        let batch = {
            let mut u = shared.unindexed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            u.push(p);
            if u.len() >= t.checkpoint_packs { std::mem::take(&mut *u) } else { Vec::new() }
        };
        if let Err(e) = t.write_index(batch) {
            shared.fail(e);
        }
    }
}

/// Records, for the local cache, what the first `verify` after this backup would otherwise
/// fetch of a pack just stored (docs/cache.md, "Lock observations"):
///
/// - a pack of trees: its bytes, exactly as stored (no request: they are in hand);
/// - its lock, **as the store reported it** for the exact version stored: the put reads the
///   version back anyway (on S3 a `HeadObject` after every `PutObject`, which checks size,
///   checksum and lock), so this costs no request. Kept only for compliance mode (the one
///   mode nobody can shorten); what the put asked for is never recorded, so a store that
///   ignores lock headers is still caught by `verify`. No report in hand (an existing
///   version whose lock this put extended) means no observation: verify reads that lock.
fn observe(
    t: &Target,
    shared: &Shared,
    key: &str,
    (version, reported): (coffer_store::VersionId, Option<Retention>),
    id: &Id,
    bytes: &[u8],
    entries: &[pack::PackEntry],
) {
    let Some(cache) = &t.cache else { return };
    if !entries.is_empty() && entries.iter().all(|e| e.kind == BlobKind::Tree) {
        cache.put(crate::cache::Kind::TreePack, id, bytes);
    }
    if let Some(r) = reported.filter(|r| r.mode == RetentionMode::Compliance) {
        shared
            .locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert((key.to_owned(), version.0), r.until.as_second());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pack::PackEntry;

    fn packs(blobs: &[usize]) -> Vec<IndexPack> {
        blobs
            .iter()
            .enumerate()
            .map(|(i, &n)| IndexPack {
                id: Id([u8::try_from(i).unwrap(); 32]),
                size: 1,
                retain_until: Timestamp::UNIX_EPOCH,
                blobs: vec![
                    PackEntry {
                        kind: BlobKind::Data,
                        id: Id([0; 32]),
                        offset: 0,
                        length: 1,
                        raw_length: 1,
                        group: pack::InGroup::NONE
                    };
                    n
                ],
            })
            .collect()
    }

    /// Index objects hold whole packs, in order, at most MAX_INDEX_OBJECT_BLOBS blobs each
    /// unless one pack alone holds more.
    #[test]
    fn index_objects_are_split_by_blobs() {
        let m = pack::MAX_INDEX_OBJECT_BLOBS;
        let shape = |input: &[usize]| -> Vec<Vec<usize>> {
            split_index(packs(input)).iter().map(|o| o.iter().map(|p| p.blobs.len()).collect()).collect()
        };
        assert!(shape(&[]).is_empty());
        assert_eq!(shape(&[3, 4]), vec![vec![3, 4]]);
        assert_eq!(shape(&[m - 1, 1, 1]), vec![vec![m - 1, 1], vec![1]]);
        assert_eq!(shape(&[10, m + 5, 2]), vec![vec![10], vec![m + 5], vec![2]]);
        let ids: Vec<u8> = split_index(packs(&[m / 2, m / 2, m / 2])).iter().flatten().map(|p| p.id.0[0]).collect();
        assert_eq!(ids, [0, 1, 2], "order kept");
    }
}
