//! Golden check: the field names `docs/design.md` documents for the key file, the index
//! file and the pack header are the ones serde writes (the bytes on disk). The names are
//! the format: a mismatch means the documentation is wrong, never that the format may
//! change to match it.

use coffer_repository::crypto::KeyFile;
use coffer_repository::index::{IndexFile, IndexPack};
use coffer_repository::pack::PackEntry;
use coffer_repository::{BlobKind, Id, KdfParams};
use std::collections::BTreeSet;

fn design() -> String {
    let p = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/design.md");
    std::fs::read_to_string(p).expect("read docs/design.md")
}

/// The text of `docs/design.md` from the heading `### {title}` to the next heading.
fn section(title: &str) -> String {
    let doc = design();
    let start = doc.find(&format!("\n### {title}")).unwrap_or_else(|| panic!("no section {title:?} in design.md"));
    let rest = &doc[start + 1..];
    let end = rest[4..].find("\n#").map_or(rest.len(), |e| e + 4);
    rest[..end].to_owned()
}

/// Every `"name":` in `text` (the JSON keys of its examples).
fn documented_keys(text: &str) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let mut rest = text;
    while let Some(q) = rest.find('"') {
        let after = &rest[q + 1..];
        let Some(end) = after.find('"') else { break };
        let word = &after[..end];
        if after[end + 1..].starts_with(':') && !word.is_empty() {
            keys.insert(word.to_owned());
        }
        rest = &after[end + 1..];
    }
    keys
}

/// Every object key of the JSON `v`, at any depth.
fn written_keys(v: &serde_json::Value, out: &mut BTreeSet<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                out.insert(k.clone());
                written_keys(v, out);
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| written_keys(v, out)),
        _ => {}
    }
}

fn keys_of(value: impl serde::Serialize) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    written_keys(&serde_json::to_value(value).unwrap(), &mut keys);
    keys
}

fn entry() -> PackEntry {
    PackEntry {
        kind: BlobKind::Data,
        id: Id([7; 32]),
        offset: 0,
        length: 60,
        raw_length: 20,
        group: coffer_repository::pack::InGroup::NONE,
    }
}

#[test]
fn key_file_field_names_are_the_documented_ones() {
    let key = KeyFile {
        version: 1,
        kdf: "argon2id".into(),
        params: KdfParams::default(),
        salt: vec![1; 16],
        wrapped: vec![2; 96],
        created: jiff::Timestamp::UNIX_EPOCH,
        host: "h".into(),
        label: "l".into(),
    };
    let written = keys_of(&key);
    assert!(written.contains("memory_kib"), "the bytes on disk say memory_kib: {written:?}");
    // The example block only: the text after it shows the master key's own JSON.
    let sec = section("Key file");
    let block = sec.split("```").nth(1).expect("the key file example");
    assert_eq!(documented_keys(block), written, "docs/design.md, Key file");
}

#[test]
fn index_file_field_names_are_the_documented_ones() {
    let index = IndexFile {
        packs: vec![IndexPack {
            id: Id([1; 32]),
            size: 80,
            retain_until: jiff::Timestamp::UNIX_EPOCH,
            // A blob alone and a grouped one (pack version 3: `group_offset`).
            blobs: vec![entry(), PackEntry { group: coffer_repository::pack::InGroup::at(5).unwrap(), ..entry() }],
        }],
    };
    let written = keys_of(&index);
    assert!(written.contains("group_offset"), "{written:?}");
    assert!(written.contains("retain_until"), "the bytes on disk say retain_until: {written:?}");
    assert_eq!(documented_keys(&section("Index file")), written, "docs/design.md, Index file");
}

#[test]
fn pack_header_field_names_are_the_documented_ones() {
    let header = keys_of(vec![entry()]);
    let doc = section("Pack (`data/XX/ID`)");
    assert_eq!(documented_keys(&doc), header, "docs/design.md, Pack");
}
