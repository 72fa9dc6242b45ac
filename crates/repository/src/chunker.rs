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

/// Chunks many inputs with one reusable buffer. An input no larger than the maximum chunk
/// size (most files) is read whole and cut in memory — no per-input allocation; a larger
/// one is streamed. Both give the same cut points (tested below).
pub struct Chunker {
    params: ChunkerParams,
    buf: Vec<u8>,
}

impl Chunker {
    /// A chunker with the repository's parameters.
    #[must_use]
    pub fn new(params: ChunkerParams) -> Self {
        Self { params, buf: Vec::new() }
    }

    /// Calls `f` with each chunk of `reader`'s bytes, in order; `size_hint` is the expected
    /// length (a file's size). Returns the number of bytes read.
    ///
    /// # Errors
    /// A read error, or the first error `f` returns.
    pub fn chunks<R: Read, E: From<std::io::Error>>(
        &mut self,
        mut reader: R,
        size_hint: u64,
        mut f: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<u64, E> {
        let p = self.params;
        if size_hint <= u64::from(p.max) {
            self.buf.clear();
            (&mut reader).take(u64::from(p.max) + 1).read_to_end(&mut self.buf)?;
            if self.buf.len() <= p.max as usize {
                for c in fastcdc::v2020::FastCDC::new(&self.buf, p.min, p.avg, p.max) {
                    f(&self.buf[c.offset..c.offset + c.length])?;
                }
                return Ok(self.buf.len() as u64);
            }
            // It grew while being read: stream what was read, then the rest.
            let head = std::mem::take(&mut self.buf);
            return stream_all(std::io::Cursor::new(head).chain(reader), p, f);
        }
        stream_all(std::io::BufReader::with_capacity(1 << 20, reader), p, f)
    }
}

fn stream_all<R: Read, E: From<std::io::Error>>(
    reader: R,
    p: ChunkerParams,
    mut f: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<u64, E> {
    let mut n = 0u64;
    for c in stream(reader, p) {
        let c = c.map_err(|e| E::from(std::io::Error::other(e.to_string())))?;
        n += c.data.len() as u64;
        f(&c.data)?;
    }
    Ok(n)
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

    #[test]
    fn in_memory_and_streamed_cuts_agree() {
        let p = ChunkerParams::default();
        let mut c = Chunker::new(p);
        for (len, seed) in [(0, 1), (100, 2), (600_000, 3), (8 << 20, 4), ((8 << 20) + 1, 5), (20 << 20, 6)] {
            let data = seeded(len, seed);
            let streamed: Vec<Vec<u8>> = stream(&data[..], p).map(|c| c.unwrap().data).collect();
            for hint in [0, len as u64, u64::MAX] {
                let mut got = Vec::new();
                let n = c
                    .chunks(&data[..], hint, |chunk| {
                        got.push(chunk.to_vec());
                        Ok::<(), std::io::Error>(())
                    })
                    .unwrap();
                assert_eq!(n, len as u64);
                assert_eq!(got, streamed, "len {len}, size hint {hint}");
            }
        }
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
