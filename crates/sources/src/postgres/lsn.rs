//! Log sequence numbers: a byte position in a cluster's WAL, written `X/Y` (two hex
//! numbers, the high and low 32 bits) as PostgreSQL prints them.

use std::fmt;
use std::str::FromStr;

/// A WAL position (`pg_lsn`). Parsing accepts what PostgreSQL prints (`0/3000060`, any
/// case, surrounding blanks); formatting is PostgreSQL's (uppercase, no leading zeros).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl Lsn {
    /// The number of the segment holding this position.
    #[must_use]
    pub fn segment(self, seg_size: u64) -> u64 {
        self.0 / seg_size.max(1)
    }
}

/// A string that is not an LSN.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an LSN (like 0/3000060)")]
pub struct BadLsn(pub String);

impl FromStr for Lsn {
    type Err = BadLsn;

    fn from_str(s: &str) -> Result<Self, BadLsn> {
        let bad = || BadLsn(s.to_owned());
        let (hi, lo) = s.trim().split_once('/').ok_or_else(bad)?;
        // from_str_radix accepts a sign: PostgreSQL does not.
        let part = |p: &str| {
            (!p.is_empty() && p.len() <= 8 && p.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| u64::from_str_radix(p, 16).ok())
                .flatten()
        };
        Ok(Self((part(hi).ok_or_else(bad)? << 32) | part(lo).ok_or_else(bad)?))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xffff_ffff)
    }
}

impl serde::Serialize for Lsn {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Lsn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::Lsn;

    #[test]
    fn lsns_round_trip() {
        for (text, value) in
            [("0/0", 0), ("0/3000060", 0x300_0060), ("16/B374D848", 0x16_B374_D848), ("FFFFFFFF/FFFFFFFF", u64::MAX)]
        {
            let l: Lsn = text.parse().unwrap();
            assert_eq!(l, Lsn(value));
            assert_eq!(l.to_string(), text);
        }
        // What PostgreSQL also accepts on input: lowercase, leading zeros, blanks.
        assert_eq!(" 0/0300006a ".parse::<Lsn>().unwrap().to_string(), "0/300006A");
        assert_eq!(serde_json::to_string(&Lsn(0x1_0000_0002)).unwrap(), "\"1/2\"");
        assert_eq!(serde_json::from_str::<Lsn>("\"1/2\"").unwrap(), Lsn(0x1_0000_0002));
        assert_eq!(Lsn(0x300_0060).segment(16 << 20), 3);
    }

    #[test]
    fn bad_lsns_are_refused() {
        for bad in [
            "",
            "/",
            "0/",
            "/1",
            "3000060",
            "0/3000060/1",
            "g/1",
            "1/-1",
            "+1/1",
            "100000000/0",
            "0/100000000",
            "1 /2",
            "é/1",
        ] {
            let err = bad.parse::<Lsn>().unwrap_err();
            assert!(err.to_string().contains("is not an LSN"), "{bad:?}: {err}");
        }
    }
}
