//! Mail-like messages: small, similar (shared headers and words) and each different, the
//! input on which the compression dictionary and the grouping of small blobs are tested
//! and measured. One generator for the repository's unit and integration tests and the
//! CLI's end-to-end tests, so they stay the same data.
//!
//! Tests pin sizes and ratios measured on these exact bytes: a change to the template
//! changes what they measure, so each [`Ending`] keeps the bytes it had.

use std::path::Path;

/// How a message ends, after the hour of the meeting: each length has tests that measured
/// it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// `... moved to 7\n` (the dictionary's unit tests).
    Bare,
    /// `... moved to 7 o'clock\n` (the dictionary end to end, in the repository crate).
    OClock,
    /// `... moved to 7 o'clock.\n` and a line about the minutes ([`spool`]'s files).
    Minutes,
}

/// Message `i` of the series `seed`: every field derived from `i * 2654435761 + seed`.
#[must_use]
pub fn message(i: u32, seed: u32, ending: Ending) -> Vec<u8> {
    let x = i.wrapping_mul(2_654_435_761).wrapping_add(seed);
    let ending = match ending {
        Ending::Bare => "\n",
        Ending::OClock => " o'clock\n",
        Ending::Minutes => {
            " o'clock.\nplease find the minutes of the last review below and send corrections before friday.\n"
        }
    };
    format!(
        "Return-Path: <user{}@example.org>\nReceived: from mx{}.example.net (Postfix) with ESMTPS id {x:08X}\n\
         MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nSubject: report {} of {}\n\n\
         the quarterly numbers for region {} are attached and the meeting moved to {}{ending}",
        x % 977,
        x % 40,
        x % 13,
        x % 7,
        x % 31,
        x % 24
    )
    .into_bytes()
}

/// Writes messages `0..n` (series 0, [`Ending::Minutes`]) into `dir` as `m00000`, … (the
/// directory created), and returns their bytes: a spool of small similar files.
///
/// # Panics
/// When a file cannot be written (a test's own scratch directory).
pub fn spool(dir: &Path, n: u32) -> Vec<Vec<u8>> {
    std::fs::create_dir_all(dir).unwrap();
    (0..n)
        .map(|i| {
            let body = message(i, 0, Ending::Minutes);
            std::fs::write(dir.join(format!("m{i:05}")), &body).unwrap();
            body
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes the size tests measured: pinned here so a change to the template is seen
    /// as one (and the tests' numbers measured again), never slipped in.
    #[test]
    fn mail_messages_keep_their_bytes() {
        let head = "Return-Path: <user0@example.org>\nReceived: from mx0.example.net (Postfix) with ESMTPS id 00000000\n\
                    MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nSubject: report 0 of 0\n\n\
                    the quarterly numbers for region 0 are attached and the meeting moved to 0";
        assert_eq!(message(0, 0, Ending::Bare), format!("{head}\n").into_bytes());
        assert_eq!(message(0, 0, Ending::OClock), format!("{head} o'clock\n").into_bytes());
        let lens: Vec<usize> = [Ending::Bare, Ending::OClock, Ending::Minutes]
            .iter()
            .map(|e| (0..1000).map(|i| message(i, 7, *e).len()).sum())
            .collect();
        let hashes: Vec<String> = [Ending::Bare, Ending::OClock, Ending::Minutes]
            .iter()
            .map(|e| {
                let mut h = blake3::Hasher::new();
                for i in 0..1000 {
                    h.update(&message(i, 7, *e));
                }
                h.finalize().to_hex()[..16].to_owned()
            })
            .collect();
        assert_eq!(lens, [259_128, 267_128, 353_128]);
        assert_eq!(hashes, ["9ddcd261ff09d051", "c2a057167d04f4d7", "f3874590e4298411"]);
    }

    #[test]
    fn mail_spool_writes_what_it_returns() {
        let dir = tempfile::tempdir().unwrap();
        let bodies = spool(&dir.path().join("s"), 3);
        assert_eq!(bodies.len(), 3);
        for (i, b) in bodies.iter().enumerate() {
            assert_eq!(&std::fs::read(dir.path().join(format!("s/m{i:05}"))).unwrap(), b);
            assert_eq!(*b, message(u32::try_from(i).unwrap(), 0, Ending::Minutes));
        }
    }
}
