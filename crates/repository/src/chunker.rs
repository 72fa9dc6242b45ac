//! Content-defined chunking: FastCDC (2020 variant) with the repository's parameters.
//!
//! Invariant guarded: the same bytes always cut at the same places, or deduplication
//! against older snapshots silently stops working. The golden test in this module pins
//! the cut points for seeded data; changing the chunker or its parameters is a format
//! change.

use crate::repo::ChunkerParams;
use std::io::Read;

/// Chunks of `reader`'s bytes, in order.
pub fn stream<R: Read>(reader: R, p: ChunkerParams) -> fastcdc::v2020::StreamCDC<R> {
    fastcdc::v2020::StreamCDC::new(reader, p.min, p.avg, p.max)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64*: a fixed, dependency-free generator so the data never changes.
    fn seeded(len: usize, mut s: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            out.extend_from_slice(&s.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
        }
        out.truncate(len);
        out
    }

    #[test]
    fn chunker_cut_points_are_pinned() {
        let data = seeded(32 << 20, 0x00c0_ffee);
        let cuts: Vec<(u64, usize)> =
            stream(&data[..], ChunkerParams::default()).map(|c| c.map(|c| (c.offset, c.length)).unwrap()).collect();
        assert_eq!(cuts.iter().map(|c| c.1).sum::<usize>(), data.len());
        let digest = blake3::hash(format!("{cuts:?}").as_bytes()).to_hex().to_string();
        // If this fails, the chunker's cut points changed: that is a repository format change.
        assert_eq!((cuts.len(), &digest[..16]), (PINNED_COUNT, PINNED_DIGEST), "cut points changed: {cuts:?}");
    }

    const PINNED_COUNT: usize = 26;
    const PINNED_DIGEST: &str = "090e662b6c5ae850";

    #[test]
    fn format_constants_are_pinned() {
        let c = ChunkerParams::default();
        assert_eq!((c.min, c.avg, c.max), (512 * 1024, 1024 * 1024, 8 * 1024 * 1024));
        assert_eq!(crate::pack::FORMAT_VERSION, 1);
    }
}
