//! The tar format: parsing a 512-byte header block (ustar, GNU long names, octal and
//! base-256 numbers).
//!
//! Invariant guarded here: a header is hostile input — malformed fields and out-of-range
//! numbers are refused, never trusted.

/// A member's header, with a GNU long name or link already applied.
pub(super) struct Header {
    pub(super) name: Vec<u8>,
    pub(super) link: Vec<u8>,
    pub(super) kind: u8,
    pub(super) mode: u32,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) uname: Vec<u8>,
    pub(super) gname: Vec<u8>,
    pub(super) size: u64,
    pub(super) mtime: i64,
}

/// The bytes of a NUL-terminated (or full) field.
pub(super) fn text(b: &[u8]) -> &[u8] {
    b.iter().position(|&c| c == 0).map_or(b, |n| &b[..n])
}

/// A numeric field: octal digits (surrounded by spaces or NULs), or base-256 when the
/// first byte's high bit is set (GNU tar and PostgreSQL use it for sizes of 8 GiB and
/// more). `None` if neither.
pub(super) fn number(b: &[u8]) -> Option<u64> {
    if b.first().is_some_and(|&c| c & 0x80 != 0) {
        if b[0] == 0xff {
            return None; // negative
        }
        let mut v = u64::from(b[0] & 0x7f);
        for &c in &b[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(c))?;
        }
        return Some(v);
    }
    // An all-blank field is 0 (some writers leave unused fields empty).
    let mut v: u64 = 0;
    for &c in text(b).iter().skip_while(|&&c| c == b' ') {
        match c {
            b'0'..=b'7' => v = v.checked_mul(8)?.checked_add(u64::from(c - b'0'))?,
            b' ' => break,
            _ => return None,
        }
    }
    Some(v)
}

/// Parses one header block; `None` for the all-zero block that ends an archive.
pub(super) fn parse_header(b: &[u8; 512]) -> std::result::Result<Option<Header>, String> {
    if b.iter().all(|&c| c == 0) {
        return Ok(None);
    }
    let stored = number(&b[148..156]).ok_or("unreadable header checksum")?;
    let unsigned: u64 =
        b.iter().enumerate().map(|(i, &c)| if (148..156).contains(&i) { 32 } else { u64::from(c) }).sum();
    // Some old writers summed signed bytes.
    let signed: i64 = b
        .iter()
        .enumerate()
        .map(|(i, &c)| if (148..156).contains(&i) { 32 } else { i64::from(i8::from_ne_bytes([c])) })
        .sum();
    if stored != unsigned && i64::try_from(stored).ok() != Some(signed) {
        return Err("header checksum mismatch (not a tar archive, or damaged)".into());
    }
    let field = |r: std::ops::Range<usize>, what: &str| number(&b[r]).ok_or_else(|| format!("unreadable {what}"));
    let ustar = &b[257..263] == b"ustar\0";
    let mut name = text(&b[0..100]).to_vec();
    if ustar {
        let prefix = text(&b[345..500]);
        if !prefix.is_empty() {
            let mut full = prefix.to_vec();
            full.push(b'/');
            full.extend_from_slice(&name);
            name = full;
        }
    }
    let mtime = field(136..148, "modification time")?;
    Ok(Some(Header {
        name,
        link: text(&b[157..257]).to_vec(),
        kind: b[156],
        mode: u32::try_from(field(100..108, "mode")? & 0o7777).unwrap_or(0),
        uid: u32::try_from(field(108..116, "user id")?).map_err(|_| "user id out of range")?,
        gid: u32::try_from(field(116..124, "group id")?).map_err(|_| "group id out of range")?,
        uname: if ustar || &b[257..263] == b"ustar " { text(&b[265..297]).to_vec() } else { Vec::new() },
        gname: if ustar || &b[257..263] == b"ustar " { text(&b[297..329]).to_vec() } else { Vec::new() },
        size: field(124..136, "size")?,
        mtime: i64::try_from(mtime).map_err(|_| "modification time out of range")?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_octal_and_base_256() {
        assert_eq!(number(b"00000001000\0"), Some(512));
        assert_eq!(number(b"  777 \0"), Some(0o777));
        assert_eq!(number(b"\0\0\0\0"), Some(0));
        assert_eq!(number(&[0x80, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0]), Some(2 << 32));
        assert_eq!(number(b"12x"), None);
    }
}
