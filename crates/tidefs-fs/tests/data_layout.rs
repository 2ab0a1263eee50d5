//! Where file data lands in the pool: a file written sequentially in 1 MiB writes lies back
//! to back, broken only by the few blocks each space page reserves for itself, and does not
//! leave the rest of every page behind (it used to: three 1 MiB extents fit in a page, the
//! fourth started a new one, so a quarter of each page was skipped and the pool grew by half
//! as much again as the data).

mod common;

use common::{assert_clean, mem_fs, ROOT};
use tidefs_fs::{ExtentKind, ROOT_INO};

#[test]
fn sequential_writes_lie_back_to_back() {
    let (fs, sub, _) = mem_fs();
    let f = sub.create(ROOT_INO, b"big", 0o644, &ROOT).unwrap();
    let mib = 1 << 20;
    let chunk: Vec<u8> = (0..mib).map(|i| (i % 251) as u8 + 1).collect();
    let n = 40u64;
    for i in 0..n {
        sub.write(f.ino, i * mib as u64, &chunk, &ROOT).unwrap();
    }
    let mut pieces = Vec::new(); // (device byte offset, length) in file order
    for e in sub.extents(f.ino).unwrap() {
        match e.kind {
            ExtentKind::Data {
                extent,
                extent_offset,
            } => pieces.push((extent.block * 4096 + extent_offset, e.len)),
            other => panic!("unexpected extent {other:?}"),
        }
    }
    for pair in pieces.windows(2) {
        let ((a, a_len), (b, _)) = (pair[0], pair[1]);
        let gap = b.checked_sub(a + a_len).expect("data in file order");
        assert!(
            gap <= 4 * 4096,
            "a {gap}-byte gap after the piece at {a}: {pieces:?}"
        );
    }
    let covered: u64 = pieces.iter().map(|&(_, len)| len).sum();
    assert_eq!(covered, n * mib as u64);
    let usage = fs.pool().usage();
    let data_blocks = n * mib as u64 / 4096;
    assert!(
        usage.used_blocks < data_blocks + data_blocks / 20,
        "{} blocks used for {data_blocks} blocks of data",
        usage.used_blocks
    );
    assert!(sub.read(f.ino, 7 * mib as u64 + 5, 10).unwrap() == chunk[5..15]);
    assert_clean(&fs);
}
