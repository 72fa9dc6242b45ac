//! Directory trees: one blob per directory, listing its entries with full metadata.
//!
//! Names and symlink targets are bytes on Unix; a name that is valid UTF-8 is stored as a
//! string, any other keeps its exact bytes in `name-raw` (hex) so restore reproduces it.
//!
//! A tree read back is hostile input: whoever holds the writer's key and the password (a
//! compromised backup host) can forge trees that authenticate. [`Tree::hostile_entries`]
//! names every entry that could make a restore write somewhere other than where its name
//! says, or that no honest backup produces: a name that is empty, `.` or `..`, or holds `/`
//! or NUL; a name repeated in one directory (a symlink `a` and then a directory `a` would
//! have the restore write through the link); a symlink whose target cannot be created.
//! Restore refuses these entries, `verify` reports them and `ls` marks them.
//!
//! Hard links need no rule of their own: the format states them as the same `(device,
//! inode)` on several file entries of one snapshot, never as a path, so a restore only
//! ever links a name to a file it created itself, at a name that passed these checks.

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

/// Why `name` cannot be a directory entry's name, if it cannot: a restore creating it would
/// name another place (`..`, `/`), the directory itself (`.`, empty) or fail (NUL).
#[must_use]
pub fn name_problem(name: &[u8]) -> Option<&'static str> {
    match name {
        b"" => Some("the name is empty"),
        b"." | b".." => Some("\".\" and \"..\" are not names of entries"),
        _ if name.contains(&b'/') => Some("the name holds \"/\""),
        _ if name.contains(&0) => Some("the name holds NUL"),
        _ => None,
    }
}

/// `name` quoted, with anything but printable ASCII escaped (`"..\x00"`): how a hostile name
/// is shown, so it cannot pass for a path or hide in a terminal.
#[must_use]
pub fn quoted(name: &[u8]) -> String {
    format!("\"{}\"", name.escape_ascii())
}

/// An entry of a tree that a restore must refuse ([`Tree::hostile_entries`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hostile {
    /// Its position in [`Tree::nodes`].
    pub index: usize,
    /// One line naming it (quoted) and saying what is wrong.
    pub message: String,
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

    /// The entries a restore must refuse, in tree order: names [`name_problem`] rejects, every
    /// entry of a name that appears more than once (which one is genuine cannot be told, and
    /// restoring any of them could write through another), and symlinks whose target is
    /// empty or holds NUL. Empty for any tree an honest backup writes.
    #[must_use]
    pub fn hostile_entries(&self) -> Vec<Hostile> {
        let mut count: std::collections::HashMap<&[u8], usize> = std::collections::HashMap::new();
        for n in &self.nodes {
            *count.entry(n.name_bytes()).or_default() += 1;
        }
        let mut out = Vec::new();
        for (index, n) in self.nodes.iter().enumerate() {
            let name = n.name_bytes();
            let why = name_problem(name).map(str::to_owned).or_else(|| {
                let times = count[name];
                (times > 1).then(|| format!("the name appears {times} times in this directory"))
            });
            let why = why.or_else(|| {
                let target = n.target_bytes().unwrap_or_default();
                (n.kind == NodeKind::Symlink && (target.is_empty() || target.contains(&0)))
                    .then(|| "the symbolic link's target is empty or holds NUL".to_owned())
            });
            if let Some(why) = why {
                out.push(Hostile { index, message: format!("entry {}: {why}", quoted(name)) });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &[u8], kind: NodeKind) -> Node {
        let mut n = Node {
            name: String::new(),
            name_raw: None,
            kind,
            mode: 0o644,
            uid: 0,
            gid: 0,
            user: None,
            group: None,
            mtime: Timestamp::UNIX_EPOCH,
            atime: Timestamp::UNIX_EPOCH,
            ctime: Timestamp::UNIX_EPOCH,
            inode: 0,
            device: 0,
            links: 1,
            size: 0,
            content: Vec::new(),
            subtree: None,
            target: None,
            target_raw: None,
            rdev: 0,
            xattrs: Vec::new(),
        };
        n.set_name(name);
        n
    }

    #[test]
    fn hostile_entries_name_each_bad_entry_and_pass_honest_ones() {
        let mut link = node(b"l", NodeKind::Symlink);
        link.set_target(b"/etc/passwd"); // a symlink may point anywhere: restoring it writes nothing there
        let mut bad_link = node(b"m", NodeKind::Symlink);
        bad_link.set_target(b"a\0b");
        let tree = Tree {
            nodes: vec![
                node(b"", NodeKind::File),
                node(b".", NodeKind::Dir),
                node(b"..", NodeKind::Dir),
                node(b"../x", NodeKind::File),
                node(b"a", NodeKind::Symlink),
                node(b"a", NodeKind::Dir),
                node(b"caf\xe9\n", NodeKind::File),
                link,
                bad_link,
                node(b"n\0ul", NodeKind::File),
                node(b"ok", NodeKind::File),
                node(b"...", NodeKind::File),
            ],
        };
        let got: Vec<(usize, String)> = tree.hostile_entries().into_iter().map(|h| (h.index, h.message)).collect();
        let want = [
            (0, "entry \"\": the name is empty"),
            (1, "entry \".\": \".\" and \"..\" are not names of entries"),
            (2, "entry \"..\": \".\" and \"..\" are not names of entries"),
            (3, "entry \"../x\": the name holds \"/\""),
            (4, "entry \"a\": the name appears 2 times in this directory"),
            (5, "entry \"a\": the name appears 2 times in this directory"),
            (8, "entry \"m\": the symbolic link's target is empty or holds NUL"),
            (9, "entry \"n\\x00ul\": the name holds NUL"),
        ];
        let want: Vec<(usize, String)> = want.iter().map(|(i, m)| (*i, (*m).to_owned())).collect();
        assert_eq!(got, want);
        assert_eq!(quoted(b"caf\xe9\n"), "\"caf\\xe9\\n\"");
    }
}
