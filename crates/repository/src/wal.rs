//! PostgreSQL WAL archive: one enveloped object per WAL file.
//!
//! Storage key: `pg/SYSID/wal/TLI/NAME` — SYSID the cluster's system identifier (decimal),
//! TLI the first eight hex digits of the file name (its timeline), NAME the file name as
//! PostgreSQL gives it (`000000010000000000000003`, `00000002.history`,
//! `….00000028.backup`, `….partial`). The object is an envelope of kind
//! [`ObjectKind::PgWal`] over the zstd-compressed bytes, sealed with the object's name in
//! the associated data (see [`pack::seal_bytes`]).
//!
//! Invariants guarded: an archived WAL file is never overwritten — a second push with the
//! same content succeeds without writing, one with different content is refused naming
//! the file; every WAL object is locked as long as a snapshot taken now would be (the
//! repository's default retention plus margin), and the config and keys it needs are
//! extended to that date too, so a repository fed only by `archive_command` stays
//! readable for as long as its WAL is kept.
//!
//! The one exception to "same name, same bytes" is a `.partial` segment (the unfinished
//! segment `coffer pg stream` stores at intervals, or the one PostgreSQL archives at
//! promotion): it grows. A push that extends the stored one (same bytes wherever both
//! hold written WAL, see [`partial_order`]) adds a new locked version — the older
//! versions stay, nothing is lost; one that holds less is already stored; one that
//! disagrees is refused like any other conflict. A `.partial` object has its own name,
//! so it never replaces the completed segment.

use crate::error::{RepoError, Result};
use crate::pack::{self, ObjectKind};
use crate::repo::{Repository, is_not_found};
use coffer_store::{PutOptions, Retention};
use jiff::SignedDuration;

/// What [`Repository::put_wal`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalPut {
    /// Stored now.
    Stored,
    /// Already stored with the same content; nothing written.
    AlreadyStored,
}

/// Checks a WAL file name: eight hex digits (the timeline) then hex digits, dots and
/// lowercase letters only (no path separators).
///
/// # Errors
/// `Invalid` naming the file.
pub fn check_wal_name(name: &str) -> Result<()> {
    let ok = name.len() >= 16
        && name.bytes().take(8).all(|b| b.is_ascii_hexdigit())
        && name.bytes().all(|b| b.is_ascii_hexdigit() || b == b'.' || b.is_ascii_lowercase());
    if ok { Ok(()) } else { Err(RepoError::Invalid(format!("{name:?} is not a WAL file name"))) }
}

/// PostgreSQL's WAL page size (`XLOG_BLCKSZ`).
const WAL_PAGE: usize = 8192;

/// How two copies of one unfinished (`.partial`) segment relate: `Less` if `new` holds
/// more written WAL than `old` and agrees with it, `Greater`/`Equal` if it holds no more,
/// `None` if they disagree. "Written" ends at the last non-zero byte (`pg_receivewal`
/// pads its `.partial` file with zeros); the last page of the shorter one is not compared
/// because it may have been read while it was being written.
#[must_use]
pub fn partial_order(old: &[u8], new: &[u8]) -> Option<std::cmp::Ordering> {
    let written = |d: &[u8]| d.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
    let (lo, ln) = (written(old), written(new));
    let common = lo.min(ln).saturating_sub(1) / WAL_PAGE * WAL_PAGE;
    (old[..common] == new[..common]).then(|| lo.cmp(&ln))
}

/// `xlp_info`'s flag for a long page header (the first page of a segment), which holds the
/// system identifier and the segment size. The flag is the same in every PostgreSQL version.
pub const XLP_LONG_HEADER: u16 = 0x0002;

/// PostgreSQL's default WAL segment size: only a fallback where the cluster's own is
/// unknown (no base backup, no long page header).
pub const DEFAULT_SEGMENT_SIZE: u64 = 16 << 20;

/// The WAL segment size (`xlp_seg_size`) in a segment's long page header, if `data` starts
/// with one holding a size PostgreSQL allows (a power of two from 1 MiB to 1 GiB). The one
/// decoder of the long page header: [`sysid_from_header`] trusts only what it accepts.
#[must_use]
pub fn segment_size_from_header(data: &[u8]) -> Option<u64> {
    if data.len() < 40 || u16::from_le_bytes([data[2], data[3]]) & XLP_LONG_HEADER == 0 {
        return None;
    }
    let size = u64::from(u32::from_le_bytes(data[32..36].try_into().ok()?));
    (size.is_power_of_two() && (1 << 20..=1 << 30).contains(&size)).then_some(size)
}

/// The system identifier (`xlp_sysid`) in a segment's long page header, if `data` starts
/// with a valid one ([`segment_size_from_header`]) and it is not zero.
#[must_use]
pub fn sysid_from_header(data: &[u8]) -> Option<u64> {
    segment_size_from_header(data)?;
    let sysid = u64::from_le_bytes(data.get(24..32)?.try_into().ok()?);
    (sysid != 0).then_some(sysid)
}

/// A WAL segment: its timeline and its number (its start LSN divided by the segment size).
///
/// Its file name (`TTTTTTTTXXXXXXXXYYYYYYYY`, 24 hex digits) depends on the segment size:
/// `XXXXXXXX` counts 4 GiB "logical files", `YYYYYYYY` segments within one. This is the one
/// place names and numbers convert; every size is clamped to 1 B..4 GiB first, so a
/// hostile size (from a listing, a snapshot) yields wrong names, never a panic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Segment {
    /// The timeline.
    pub timeline: u32,
    /// The segment number.
    pub number: u64,
}

/// Segments per 4 GiB logical file.
fn per_logical_file(seg_size: u64) -> u64 {
    0x1_0000_0000 / seg_size.clamp(1, 0x1_0000_0000)
}

impl Segment {
    /// The segment of a plain segment name (24 hex digits, maybe `.partial`).
    #[must_use]
    pub fn parse(name: &str, seg_size: u64) -> Option<Self> {
        if !is_segment_name(name) {
            return None;
        }
        let base = name.strip_suffix(".partial").unwrap_or(name);
        let timeline = u32::from_str_radix(&base[..8], 16).ok()?;
        let hi = u64::from_str_radix(&base[8..16], 16).ok()?;
        let lo = u64::from_str_radix(&base[16..], 16).ok()?;
        Some(Self { timeline, number: hi.checked_mul(per_logical_file(seg_size))?.checked_add(lo)? })
    }

    /// The segment's file name.
    #[must_use]
    pub fn name(self, seg_size: u64) -> String {
        let per = per_logical_file(seg_size);
        format!("{:08X}{:08X}{:08X}", self.timeline, self.number / per, self.number % per)
    }
}

/// Whether `name` is a plain segment name (24 hex digits, maybe `.partial`); unlike its
/// number, this does not depend on the segment size.
#[must_use]
pub fn is_segment_name(name: &str) -> bool {
    let base = name.strip_suffix(".partial").unwrap_or(name);
    base.len() == 24 && base.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Segments missing between the first and the last archived one of each timeline, in
/// order: point-in-time recovery cannot pass them.
#[must_use]
pub fn segment_gaps(names: &[String], seg_size: u64) -> Vec<Segment> {
    let mut by_tli: std::collections::BTreeMap<u32, Vec<u64>> = std::collections::BTreeMap::new();
    for n in names {
        if let Some(s) = Segment::parse(n, seg_size) {
            by_tli.entry(s.timeline).or_default().push(s.number);
        }
    }
    let mut out = Vec::new();
    for (timeline, mut segs) in by_tli {
        segs.sort_unstable();
        segs.dedup();
        for w in segs.windows(2) {
            out.extend((w[0] + 1..w[1]).map(|number| Segment { timeline, number }));
        }
    }
    out
}

impl Repository {
    /// The store key of a WAL file of cluster `sysid`.
    #[must_use]
    pub fn wal_key(&self, sysid: u64, name: &str) -> String {
        // Names come from listings too (hostile input): never slice inside a character.
        format!("{}pg/{sysid}/wal/{}/{name}", self.prefix(), name.get(..8).unwrap_or(name))
    }

    /// Stores one WAL file, durably and locked; never overwrites (a `.partial` segment
    /// may only grow, as a new version).
    ///
    /// # Errors
    /// `Invalid` for a bad name or when the file is already archived with other content;
    /// `Corrupt` when the stored one cannot be read; store errors.
    pub fn put_wal(&self, sysid: u64, name: &str, data: &[u8]) -> Result<WalPut> {
        check_wal_name(name)?;
        self.writable()?;
        if let Some(existing) = self.get_wal(sysid, name)? {
            if existing == data {
                return Ok(WalPut::AlreadyStored);
            }
            match partial_order(&existing, data) {
                Some(std::cmp::Ordering::Less) if name.ends_with(".partial") => {}
                Some(_) if name.ends_with(".partial") => return Ok(WalPut::AlreadyStored),
                _ => {
                    return Err(RepoError::Invalid(format!(
                        "WAL file {name} of cluster {sysid} is already archived with different content; refusing to overwrite it"
                    )));
                }
            }
        }
        let retain = SignedDuration::try_from(self.config().retention.default_retain).unwrap_or(SignedDuration::MAX);
        let until = self.lock_until(self.clock().now() + retain);
        let key = self.wal_key(sysid, name);
        let bytes = pack::seal_bytes(self.key(), ObjectKind::PgWal, name, data);
        // Create-only, except a `.partial` segment, which gets a new version as it grows. (The
        // sealed bytes differ from another archiver's for the same segment — random nonce —
        // so an existing segment is compared by its content, as above.)
        let opts = PutOptions {
            retention: Some(Retention { mode: self.config().retention.mode, until }),
            legal_hold: false,
            create_only: !name.ends_with(".partial"),
        };
        match self.store().put(&key, &bytes, &opts) {
            Ok(_) => {}
            Err(e) if e.kind() == coffer_store::ErrorKind::Exists => match self.get_wal(sysid, name)? {
                // Archived by another process since the check above.
                Some(stored) if stored == data => return Ok(WalPut::AlreadyStored),
                Some(_) => {
                    return Err(RepoError::Invalid(format!(
                        "WAL file {name} of cluster {sysid} is already archived with different content; refusing to overwrite it"
                    )));
                }
                // Only versions that are not this repository's hold the name: garbage put
                // there ahead of the archive by someone with the writer's key (segment
                // names are predictable). Readers take the first version that
                // authenticates, so storing this one after the garbage keeps the archive
                // going; a store that enforces create-only refuses it, and says why.
                None => {
                    let plain = PutOptions { create_only: false, ..opts };
                    self.store().put(&key, &bytes, &plain).map_err(RepoError::store(format!(
                        "cannot store {key}: the name holds only versions this repository did not write (tampering; `coffer verify` names them)"
                    )))?;
                }
            },
            Err(e) => return Err(RepoError::store(format!("cannot store {key}"))(e)),
        }
        self.extend_meta_to(until)?;
        Ok(WalPut::Stored)
    }

    /// Reads and authenticates one WAL file; `None` if it is not archived.
    ///
    /// # Errors
    /// `Corrupt` naming the object; store errors.
    pub fn get_wal(&self, sysid: u64, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.choose_wal(sysid, name)?.map(|(_, plain)| plain))
    }

    /// The stored (compressed, encrypted) bytes of one WAL file, unchecked; `None` if it
    /// is not archived. For a cache that keeps them as stored and authenticates them with
    /// [`Repository::open_wal`] when it serves them (`wal-fetch`'s prefetch).
    ///
    /// # Errors
    /// `Invalid` for a bad name; store errors.
    pub fn get_wal_sealed(&self, sysid: u64, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.choose_wal(sysid, name)?.map(|(sealed, _)| sealed))
    }

    /// The version of a WAL file a reader believes, sealed and opened (see [`crate::versions`]):
    /// a finished file is written once, so its first version that authenticates is the one
    /// (a later one, even well sealed by someone with the password, is not); a `.partial`
    /// segment grows, so the newest version that extends the first authentic one
    /// ([`partial_order`]) is. Delete markers hide nothing; with a point in time, later
    /// versions do not exist. `None` if no version authenticates (or there is none).
    ///
    /// # Errors
    /// `Invalid` for a bad name; store errors other than damage.
    fn choose_wal(&self, sysid: u64, name: &str) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        check_wal_name(name)?;
        let key = self.wal_key(sysid, name);
        let versions = crate::versions::versions_of(self.store(), &key, self.as_of())?;
        let partial = name.ends_with(".partial");
        let mut chosen: Option<(Vec<u8>, Vec<u8>)> = None;
        for v in &versions.objects {
            let sealed = match crate::repo::get_listed(self.store(), &key, v) {
                Ok(o) => o.data,
                Err(e) if is_not_found(&e) || e.kind() == coffer_store::ErrorKind::Corrupt => continue,
                Err(e) => return Err(RepoError::store(format!("cannot read {key}"))(e)),
            };
            let Ok(plain) = self.open_wal(name, &sealed, &key) else { continue };
            match &chosen {
                None => chosen = Some((sealed, plain)),
                Some((_, best)) if partial && partial_order(best, &plain) == Some(std::cmp::Ordering::Less) => {
                    chosen = Some((sealed, plain));
                }
                Some(_) if partial => {}
                Some(_) => break,
            }
        }
        Ok(chosen)
    }

    /// Authenticates and opens the stored bytes of the WAL file `name`: they must have
    /// been sealed by this repository's key for exactly that name (timeline included),
    /// so bytes from another repository or filed under another name are refused.
    ///
    /// # Errors
    /// `Corrupt` naming `context`.
    pub fn open_wal(&self, name: &str, bytes: &[u8], context: &str) -> Result<Vec<u8>> {
        check_wal_name(name)?;
        pack::open_bytes(self.key(), ObjectKind::PgWal, name, bytes, context)
    }

    /// The names of every WAL file archived for `sysid`, sorted.
    ///
    /// # Errors
    /// Store errors.
    pub fn list_wal(&self, sysid: u64) -> Result<Vec<String>> {
        let mut out = Vec::new();
        self.for_each_name(&format!("{}pg/{sysid}/wal/", self.prefix()), |k| {
            out.push(k.rsplit('/').next().unwrap_or_default().to_owned());
            Ok(())
        })?;
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// The system identifiers of every cluster with archived WAL.
    ///
    /// # Errors
    /// Store errors.
    pub fn pg_clusters(&self) -> Result<Vec<u64>> {
        let mut out = Vec::new();
        let prefix = format!("{}pg/", self.prefix());
        self.for_each_name(&prefix, |k| {
            // Keys come from a listing (hostile input): never slice, parse.
            if let Some(id) =
                k.strip_prefix(&prefix).and_then(|r| r.split('/').next()).and_then(|s| s.parse::<u64>().ok())
            {
                out.push(id);
            }
            Ok(())
        })?;
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }
}

/// Checks every cluster's WAL archive: a segment missing between the first and the last
/// archived one of a timeline is a gap (point-in-time recovery cannot pass it); with
/// `read_data`, every WAL object is read and authenticated.
///
/// # Errors
/// Store errors that prevent checking.
pub fn verify_wal(repo: &Repository, read_data: bool, problems: &mut Vec<crate::verify::Problem>) -> Result<()> {
    for sysid in repo.pg_clusters()? {
        let names = repo.list_wal(sysid)?;
        let mut seg_size = DEFAULT_SEGMENT_SIZE;
        let mut first = true;
        for n in names.iter().filter(|n| is_segment_name(n)) {
            if first || read_data {
                match repo.get_wal(sysid, n) {
                    Ok(Some(d)) if first => {
                        if let Some(size) = segment_size_from_header(&d) {
                            seg_size = size;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => problems.push(crate::verify::Problem {
                        object: repo.wal_key(sysid, n),
                        message: e.to_string(),
                        affected: Vec::new(),
                    }),
                }
                first = false;
            }
        }
        for gap in segment_gaps(&names, seg_size) {
            let name = gap.name(seg_size);
            problems.push(crate::verify::Problem {
                object: repo.wal_key(sysid, &name),
                message: format!("WAL segment {name} of cluster {sysid} is missing (a gap in the archive)"),
                affected: Vec::new(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{Segment, is_segment_name, partial_order, segment_gaps, segment_size_from_header, sysid_from_header};
    use std::cmp::Ordering;

    #[test]
    fn segment_names_depend_on_the_segment_size() {
        let s = Segment { timeline: 2, number: 0x1_0000_0003 >> 24 };
        assert_eq!(s.name(16 << 20), "000000020000000100000000");
        assert_eq!(Segment::parse("000000020000000100000000", 16 << 20), Some(s));
        // 1 MiB segments: 4096 per logical file.
        let s = Segment { timeline: 1, number: 4096 + 5 };
        assert_eq!(s.name(1 << 20), "000000010000000100000005");
        assert_eq!(Segment::parse("000000010000000100000005.partial", 1 << 20), Some(s));
        assert!(is_segment_name("000000010000000100000005.partial"));
        for bad in [
            "",
            "00000001.history",
            "0000000100000001000000051",
            "00000001000000010000000G",
            "é00000010000000100000005",
        ] {
            assert!(Segment::parse(bad, 16 << 20).is_none(), "{bad:?}");
        }
        // Hostile sizes give wrong names, never a panic.
        for size in [0, 3, 1 << 40, u64::MAX] {
            let _ = Segment { timeline: 1, number: u64::MAX }.name(size);
            let _ = Segment::parse("FFFFFFFFFFFFFFFFFFFFFFFF", size);
        }
    }

    #[test]
    fn gaps_are_per_timeline() {
        let names: Vec<String> = [
            "000000010000000000000001",
            "000000010000000000000004",
            "00000002.history",
            "000000020000000000000004.partial",
            "000000020000000000000006",
        ]
        .map(String::from)
        .to_vec();
        let gaps: Vec<String> = segment_gaps(&names, 16 << 20).into_iter().map(|s| s.name(16 << 20)).collect();
        assert_eq!(gaps, ["000000010000000000000002", "000000010000000000000003", "000000020000000000000005"]);
    }

    #[test]
    fn the_long_page_header_is_decoded_once() {
        let mut h = [0u8; 40];
        h[2] = 2;
        h[24..32].copy_from_slice(&7u64.to_le_bytes());
        h[32..36].copy_from_slice(&(16u32 << 20).to_le_bytes());
        assert_eq!((segment_size_from_header(&h), sysid_from_header(&h)), (Some(16 << 20), Some(7)));
        h[32..36].copy_from_slice(&3u32.to_le_bytes());
        assert_eq!((segment_size_from_header(&h), sysid_from_header(&h)), (None, None));
        assert_eq!(sysid_from_header(&h[..20]), None);
    }

    #[test]
    fn wal_keys_of_hostile_names_do_not_panic() {
        use coffer_store::{Clock, LocalVault, Role, VaultOptions};
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::manual("2030-01-01T00:00:00Z".parse().unwrap());
        let vault =
            LocalVault::init(dir.path().join("v"), &VaultOptions { clock: clock.clone(), ..Default::default() })
                .unwrap();
        let store = std::sync::Arc::new(vault.login(&vault.read_credentials(Role::Writer).unwrap()).unwrap());
        let opts = crate::repo::InitOptions {
            kdf: crate::KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 },
            ..Default::default()
        };
        let repo = crate::Repository::init(store, "t", "", b"pw", &opts, clock).unwrap();
        for name in ["", "é", "ééééé", "0000", "../../../x", "000000010000000000000001"] {
            let key = repo.wal_key(1, name);
            assert!(key.starts_with("pg/1/wal/"), "{key}");
        }
    }

    #[test]
    fn a_partial_segment_may_only_grow() {
        let page = |fill: u8| vec![fill; super::WAL_PAGE];
        let mut old = [page(1), page(2), vec![0; 4 * super::WAL_PAGE]].concat();
        let mut new = [page(1), page(2), page(3), vec![0; 3 * super::WAL_PAGE]].concat();
        assert_eq!(partial_order(&old, &new), Some(Ordering::Less));
        assert_eq!(partial_order(&new, &old), Some(Ordering::Greater));
        assert_eq!(partial_order(&old, &old), Some(Ordering::Equal));
        // The last page of the shorter copy may be torn: not compared.
        old[super::WAL_PAGE + 5] = 9;
        assert_eq!(partial_order(&old, &new), Some(Ordering::Less));
        // A difference in a page both hold completely: they disagree.
        new[5] = 7;
        assert_eq!(partial_order(&old, &new), None);
    }
}
