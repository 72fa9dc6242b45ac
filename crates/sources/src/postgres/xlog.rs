//! Reading transaction times out of an archived WAL segment, for `info`'s end of the
//! recovery window.
//!
//! `recovery_target_time = T` stops at the first commit or abort record later than `T`; when
//! no archived record is later, recovery ends "before the configured recovery target was
//! reached" and the server does not promote. So the latest time a restore can reach is the
//! timestamp of the newest commit or abort record in the archive — not the time a segment
//! was archived, which would promise a window the WAL does not cover. The invariant this
//! module guards: a time is reported only from a record that belongs to this segment
//! (every page's header must carry the segment's own address and the WAL magic, so the
//! stale tail of a recycled file or of a `.partial` is never read) and that is a complete
//! commit or abort record of the transaction resource manager.

const BLCKSZ: usize = 8192;
const SHORT_HEADER: usize = 24;
const LONG_HEADER: usize = 40;
const XLP_FIRST_IS_CONTRECORD: u16 = 0x0001;
use coffer_repository::wal::XLP_LONG_HEADER;
/// `XLogRecord`: tot_len u32, xid u32, prev u64, info u8, rmid u8, 2 pad, crc u32.
const RECORD_HEADER: usize = 24;
const RM_XLOG_ID: u8 = 0;
const RM_XACT_ID: u8 = 1;
const XLOG_SWITCH: u8 = 0x40;
const XLOG_XACT_OPMASK: u8 = 0x70;
/// COMMIT, ABORT, COMMIT_PREPARED, ABORT_PREPARED: the records `recovery_target_time` tests.
const XACT_TIMED: [u8; 4] = [0x00, 0x20, 0x30, 0x40];
/// Seconds from the Unix epoch to PostgreSQL's (2000-01-01 00:00:00 UTC).
const PG_EPOCH: i64 = 946_684_800;

/// The `xact_time` of the last commit or abort record that starts in `data`, the segment
/// at byte address `seg_start` (segment number × segment size), if any.
pub fn last_xact_time(data: &[u8], seg_start: u64) -> Option<jiff::Timestamp> {
    // The segment's records without page headers: headers are multiples of 8 bytes and
    // pages start 8-aligned, so a record's alignment in this stream is its LSN's.
    let mut stream = Vec::with_capacity(data.len());
    let mut skip = 0usize;
    for (i, page) in data.chunks_exact(BLCKSZ).enumerate() {
        let magic = u16::from_le_bytes([page[0], page[1]]);
        let info = u16::from_le_bytes([page[2], page[3]]);
        let addr = u64::from_le_bytes(page[8..16].try_into().ok()?);
        // Magic numbers of PostgreSQL 15 to 18 (0xD110 .. 0xD11F covers their range).
        if magic & 0xFFF0 != 0xD110 || addr != seg_start + (i * BLCKSZ) as u64 {
            break;
        }
        if i == 0 && info & XLP_FIRST_IS_CONTRECORD != 0 {
            // The tail of a record begun in the previous segment.
            let rem = u32::from_le_bytes(page[16..20].try_into().ok()?) as usize;
            skip = rem.next_multiple_of(8);
        }
        let header = if info & XLP_LONG_HEADER != 0 { LONG_HEADER } else { SHORT_HEADER };
        stream.extend_from_slice(&page[header..]);
    }
    let mut pos = skip;
    let mut last = None;
    while pos + RECORD_HEADER <= stream.len() {
        let rec = &stream[pos..];
        let len = u32::from_le_bytes(rec[0..4].try_into().ok()?) as usize;
        if len < RECORD_HEADER || pos + len > stream.len() {
            // The end of the WAL written so far, or a record that ends in the next segment.
            break;
        }
        let (info, rmid) = (rec[16], rec[17]);
        if rmid == RM_XLOG_ID && info & 0xF0 == XLOG_SWITCH {
            break;
        }
        if rmid == RM_XACT_ID && XACT_TIMED.contains(&(info & XLOG_XACT_OPMASK)) {
            if let Some(t) = main_data(&rec[RECORD_HEADER..len]).and_then(xact_time) {
                last = Some(t);
            }
        }
        pos += len.next_multiple_of(8);
    }
    last
}

/// The main data of a record without block references (a transaction record has none),
/// from the bytes after its header.
fn main_data(mut body: &[u8]) -> Option<&[u8]> {
    loop {
        match *body.first()? {
            // XLR_BLOCK_ID_DATA_SHORT: a one-byte length.
            255 => {
                let n = *body.get(1)? as usize;
                return body.get(2..2 + n);
            }
            // XLR_BLOCK_ID_DATA_LONG: a four-byte length.
            254 => {
                let n = u32::from_le_bytes(body.get(1..5)?.try_into().ok()?) as usize;
                return body.get(5..5 + n);
            }
            // XLR_BLOCK_ID_ORIGIN (u16) and XLR_BLOCK_ID_TOPLEVEL_XID (u32) precede the data.
            253 => body = body.get(3..)?,
            252 => body = body.get(5..)?,
            _ => return None,
        }
    }
}

/// `xl_xact_commit.xact_time` / `xl_xact_abort.xact_time`: microseconds since 2000-01-01.
fn xact_time(main: &[u8]) -> Option<jiff::Timestamp> {
    let us = i64::from_le_bytes(main.get(..8)?.try_into().ok()?);
    jiff::Timestamp::from_microsecond(us.checked_add(PG_EPOCH * 1_000_000)?).ok()
}
