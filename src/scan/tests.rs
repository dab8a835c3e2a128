use super::*;
use std::fs;
use std::hash::BuildHasher;

#[test]
fn files_are_read_line_by_line_across_pieces() {
    let dir = tempfile::tempdir().unwrap();
    // Lines around and across the 1 MiB pieces, one longer than a
    // piece, empty ones, and a last line without its end.
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let mut len = 0usize;
    while len < (3 << 20) {
        let n = match lines.len() % 7 {
            0 => 0,
            1 => (1 << 20) + 3,
            _ => 1000 + lines.len() % 4093,
        };
        lines.push((0..n).map(|i| b'a' + (i % 26) as u8).collect());
        len += n + 1;
    }
    for partial in [&b""[..], b"half a rec"] {
        let mut bytes = lines.join(&b'\n');
        bytes.push(b'\n');
        bytes.extend_from_slice(partial);
        fs::write(dir.path().join("list"), &bytes).unwrap();
        let store = StoreDir::open(dir.path()).unwrap();
        let mut got: Vec<Vec<u8>> = Vec::new();
        let mut f = store.file(b"list").unwrap();
        let rest = read_lines(&mut f, UIDLIST_CAP, &mut |l| got.push(l.to_vec())).unwrap();
        assert_eq!(got, lines);
        assert_eq!(rest, partial);
        // Over the cap: refused, as a whole read would be.
        let mut f = store.file(b"list").unwrap();
        assert!(matches!(
            read_lines(&mut f, 1 << 20, &mut |_| {}),
            Err(Refused::TooBig { .. })
        ));
    }
}

#[test]
fn name_hash_is_stable_in_a_process_and_tells_lengths_apart() {
    let (a, b) = (NameHash::default(), NameHash::default());
    let name = b"1455674145.M8826P59269.imap1.example.net,S=1930,W=1981".to_vec();
    assert_eq!(a.hash_one(&name), b.hash_one(&name));
    assert_ne!(a.hash_one(b"a".to_vec()), a.hash_one(b"a\0".to_vec()));
    assert_ne!(a.hash_one(b"".to_vec()), a.hash_one(b"\0".to_vec()));
    let mut m: NameMap<u32> = NameMap::default();
    for i in 0..1000u32 {
        m.insert(format!("{i}.M1P1.host").into_bytes(), i);
    }
    assert!((0..1000u32).all(|i| m[format!("{i}.M1P1.host").as_bytes()] == i));
}
