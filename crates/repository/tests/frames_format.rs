//! Golden tests of pack version 3 (issue 16, small blobs compressed in groups): the header
//! bytes and the group's sealed layout are pinned; changing them is a format change
//! (`docs/design.md`, "Pack" and "Groups").

use coffer_repository::crypto::MasterKey;
use coffer_repository::id::Id;
use coffer_repository::pack::{self, BlobKind, InGroup, PackBuilder, PackEntry};

fn alone(id: u8, length: u32, raw_length: u32) -> PackEntry {
    PackEntry { kind: BlobKind::Data, id: Id([id; 32]), offset: 0, length, raw_length, group: InGroup::NONE }
}

fn member(id: u8, offset: u32, length: u32, raw_length: u32, inner: u32) -> PackEntry {
    PackEntry { kind: BlobKind::Tree, id: Id([id; 32]), offset, length, raw_length, group: InGroup::at(inner).unwrap() }
}

#[test]
fn frames_pack_header_v3_bytes_are_pinned() {
    let entries = [alone(0xab, 300, 5), member(0x01, 300, 0x90, 7, 0), member(0x02, 300, 0x90, 0x80, 7)];
    let b = pack::encode_header(&entries);
    // count of records (2) ‖ blob alone ‖ group: 2 ‖ kind ‖ length ‖ members ‖ (id ‖ raw)…
    let mut want = vec![2u8, 0];
    want.extend([0xab; 32]);
    want.extend([0xac, 0x02, 0x05]);
    want.extend([2, 1, 0x90, 0x01, 2]);
    want.extend([0x01; 32]);
    want.push(7);
    want.extend([0x02; 32]);
    want.extend([0x80, 0x01]);
    assert_eq!(b, want);

    // Read back from a whole pack (the trailer says version 3 when a group is present).
    let k = MasterKey::generate();
    let mut p = PackBuilder::default();
    p.add(BlobKind::Data, Id([0xab; 32]), &[0u8; 300], 5);
    p.add_group(BlobKind::Tree, &[0u8; 0x90], &[(Id([0x01; 32]), 7), (Id([0x02; 32]), 0x80)]);
    let (bytes, _, written) = p.finish(&k);
    assert_eq!(written, entries);
    assert_eq!(&bytes[bytes.len() - 5..], b"CFRP\x03");
    assert_eq!(pack::read_pack_header(&k, &bytes, "p").unwrap(), entries);
    // The index (JSON) names the offset in the group `group_offset`, absent when alone.
    let json = serde_json::to_value(entries).unwrap();
    assert_eq!(json[2]["group_offset"], 7);
    assert!(json[0].get("group_offset").is_none());
}

#[test]
fn frames_group_layout_is_pinned() {
    let k = MasterKey::generate();
    let blobs: Vec<Vec<u8>> = (0..50).map(|i| format!("Subject: message {i}\n\nhello\n").into_bytes()).collect();
    let refs: Vec<&[u8]> = blobs.iter().map(Vec::as_slice).collect();
    let sealed = pack::seal_group(&k, BlobKind::Data, &refs).unwrap();
    // nonce ‖ sealed(flag 1 ‖ declared size u32 LE ‖ zstd frame) ‖ tag, associated data
    // "coffer blob group" ‖ kind.
    let plain = k.open(b"coffer blob group\x00", &sealed, "g").unwrap();
    let total = blobs.iter().map(Vec::len).sum::<usize>();
    assert_eq!(plain[0], 1);
    assert_eq!(u32::from_le_bytes(plain[1..5].try_into().unwrap()) as usize, total);
    assert_eq!(zstd::bulk::decompress(&plain[5..], total).unwrap(), blobs.concat());
    assert!(k.open(b"coffer blob group\x01", &sealed, "g").is_err(), "bound to its kind");
    assert_eq!(sealed.len(), 24 + plain.len() + 16);
}
