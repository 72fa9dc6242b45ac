//! Directory trees: one blob per directory, listing its entries with full metadata.
//!
//! Names and symlink targets are bytes on Unix; a name that is valid UTF-8 is stored as a
//! string, any other keeps its exact bytes in `name-raw` (hex) so restore reproduces it.

use crate::id::Id;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// Kind of a directory entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeKind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Named pipe.
    Fifo,
    /// Character device.
    CharDev,
    /// Block device.
    BlockDev,
    /// Unix socket (recorded, not recreated).
    Socket,
}

/// An extended attribute.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xattr {
    /// Name (valid UTF-8 on Linux).
    pub name: String,
    /// Value (hex).
    #[serde(with = "hex::serde")]
    pub value: Vec<u8>,
}

/// One directory entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Node {
    /// Name (lossy if not UTF-8; see `name_raw`).
    pub name: String,
    /// Exact name bytes when not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_hex")]
    pub name_raw: Option<Vec<u8>>,
    /// Kind.
    #[serde(rename = "type")]
    pub kind: NodeKind,
    /// Permission bits incl. setuid/setgid/sticky.
    pub mode: u32,
    /// Owner id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Owner name, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Group name, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Modification time (ns).
    pub mtime: Timestamp,
    /// Access time (ns).
    pub atime: Timestamp,
    /// Status change time (ns); used to detect changes, not restored.
    pub ctime: Timestamp,
    /// Inode number (change detection, hard links).
    pub inode: u64,
    /// Device of the filesystem.
    pub device: u64,
    /// Number of hard links.
    pub links: u64,
    /// Size in bytes (files).
    pub size: u64,
    /// Content chunks (files).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub content: Vec<Id>,
    /// Subtree (directories).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtree: Option<Id>,
    /// Link target (symlinks), exact bytes as hex when not UTF-8 (see `target_raw`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Exact target bytes when not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_hex")]
    pub target_raw: Option<Vec<u8>>,
    /// Device number (devices).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rdev: u64,
    /// Extended attributes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub xattrs: Vec<Xattr>,
}

#[allow(clippy::trivially_copy_pass_by_ref, reason = "serde's skip_serializing_if passes a reference")]
fn is_zero(v: &u64) -> bool {
    *v == 0
}

mod opt_hex {
    use serde::{Deserialize, Deserializer, Serializer};
    #[allow(clippy::ref_option, reason = "serde's `with` passes a reference to the field")]
    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_str(&hex::encode(b)),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<String>::deserialize(d)?.map(|s| hex::decode(s).map_err(serde::de::Error::custom)).transpose()
    }
}

impl Node {
    /// The exact name bytes.
    #[must_use]
    pub fn name_bytes(&self) -> &[u8] {
        self.name_raw.as_deref().unwrap_or(self.name.as_bytes())
    }

    /// Sets the name from bytes.
    pub fn set_name(&mut self, bytes: &[u8]) {
        let (s, raw) = text_and_raw(bytes);
        self.name = s;
        self.name_raw = raw;
    }

    /// The exact link target bytes.
    #[must_use]
    pub fn target_bytes(&self) -> Option<&[u8]> {
        self.target_raw.as_deref().or(self.target.as_deref().map(str::as_bytes))
    }

    /// Sets the link target from bytes.
    pub fn set_target(&mut self, bytes: &[u8]) {
        let (s, raw) = text_and_raw(bytes);
        self.target = Some(s);
        self.target_raw = raw;
    }
}

fn text_and_raw(bytes: &[u8]) -> (String, Option<Vec<u8>>) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (s.to_owned(), None),
        Err(_) => (String::from_utf8_lossy(bytes).into_owned(), Some(bytes.to_vec())),
    }
}

/// A directory: entries sorted by name bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    /// Entries.
    pub nodes: Vec<Node>,
}

impl Tree {
    /// Serialises (the tree blob's plaintext).
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("tree serialises")
    }

    /// Parses a tree blob.
    ///
    /// # Errors
    /// `Corrupt` naming the tree.
    pub fn from_bytes(bytes: &[u8], id: &Id) -> crate::Result<Self> {
        serde_json::from_slice(bytes).map_err(|e| crate::RepoError::corrupt(format!("tree {id}"), e.to_string()))
    }

    /// Finds an entry by exact name.
    #[must_use]
    pub fn find(&self, name: &[u8]) -> Option<&Node> {
        self.nodes.binary_search_by(|n| n.name_bytes().cmp(name)).ok().map(|i| &self.nodes[i])
    }
}
