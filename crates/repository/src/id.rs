//! Content identifiers: 32-byte hashes shown as 64 lowercase hex digits.
//!
//! Blob ids are BLAKE3 keyed with the repository's id key over the plaintext, so equal
//! content dedups while the ids reveal nothing about content to someone without the key.
//! Storage ids (packs, indexes, snapshots) are unkeyed BLAKE3 of the stored bytes, so
//! anyone can check a stored object against its name, and a snapshot's id doubles as the
//! hash its successor records.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// A 32-byte identifier.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(pub [u8; 32]);

impl Id {
    /// BLAKE3 of `data` (storage ids).
    #[must_use]
    pub fn hash(data: &[u8]) -> Self {
        Self(*blake3::hash(data).as_bytes())
    }

    /// Whether `obj` holds the bytes this storage id names. A store's `get` has verified the
    /// data against the checksum it stored (the `ObjectStore` contract); when that checksum
    /// is this same unkeyed BLAKE3 (the local vault's), comparing it with the id compares the
    /// bytes, and they are not hashed a second time — every pack a restore or verify read
    /// from a local vault was hashed twice, an eighth of a restore's CPU time. Any other
    /// checksum (S3's SHA-256), and none, means hashing the bytes.
    #[must_use]
    pub fn names(&self, obj: &coffer_store::Object) -> bool {
        match obj.meta.checksum.strip_prefix("blake3:") {
            Some(hex) if hex.len() == 64 => hex.eq_ignore_ascii_case(&self.to_string()),
            _ => Self::hash(&obj.data) == *self,
        }
    }

    /// The first 8 hex digits, for display.
    #[must_use]
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.short())
    }
}

impl FromStr for Id {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| format!("{s:?} is not a 64-digit hex id"))?;
        Ok(Self(out))
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A visitor, not `String`: an index holds one id per blob, and allocating a string
        // for each was the largest cost of decoding one (a catalog's index at 2 000
        // backups: ~5 000 ids per run).
        struct Hex;
        impl serde::de::Visitor<'_> for Hex {
            type Value = Id;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a 64-digit hex id")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Id, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(Hex)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(data: &[u8], checksum: String) -> coffer_store::Object {
        coffer_store::Object {
            meta: coffer_store::ObjectVersion {
                key: "data/x".into(),
                version: coffer_store::VersionId("v".into()),
                created: jiff::Timestamp::UNIX_EPOCH,
                is_latest: true,
                delete_marker: false,
                size: data.len() as u64,
                checksum,
                retention: None,
                legal_hold: false,
            },
            data: data.to_vec(),
        }
    }

    #[test]
    fn an_id_names_the_bytes_by_the_stores_blake3_or_by_hashing() {
        let (a, b) = (b"pack a".as_slice(), b"pack b".as_slice());
        let (ida, idb) = (Id::hash(a), Id::hash(b));
        let blake3 = |d: &[u8]| format!("blake3:{}", blake3::hash(d).to_hex());
        // The store's verified BLAKE3: compared, upper or lower case.
        assert!(ida.names(&object(a, blake3(a))));
        assert!(ida.names(&object(a, blake3(a).to_uppercase().replace("BLAKE3", "blake3"))));
        assert!(!idb.names(&object(a, blake3(a))));
        // Another algorithm, or none: the bytes are hashed.
        assert!(ida.names(&object(a, "sha256:00".into())));
        assert!(!idb.names(&object(a, "sha256:00".into())));
        assert!(!idb.names(&object(a, String::new())));
        assert!(ida.names(&object(a, "blake3:short".into())));
    }
}
