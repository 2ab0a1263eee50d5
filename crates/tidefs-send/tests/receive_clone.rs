//! Proves that receive applies CLONE commands by sharing blocks: a snapshot sent with a
//! clone source the receiver holds (`send -c`) arrives as clones of that source's extents,
//! so the receiving pool grows by the changed blocks and metadata only, and the received
//! tree equals the one sent.

mod support;

use support::{assert_clean, assert_same_tree, mem_fs, receive_bytes, send_bytes, source, ROOT};
use tidefs_fs::{Fs, ROOT_INO};
use tidefs_stream::{Command, SendStreamReader, StreamVersion};

const MIB: u64 = 1 << 20;

fn used_blocks(fs: &Fs) -> u64 {
    fs.fsync().unwrap();
    fs.pool().usage().used_blocks
}

fn clone_commands(stream: &[u8]) -> Vec<(u64, u64)> {
    let mut r = SendStreamReader::new(stream);
    let mut out = Vec::new();
    while let Some(c) = r.next_command().unwrap() {
        if let Command::Clone { offset, len, .. } = c {
            out.push((offset, len));
        }
    }
    out
}

#[test]
fn clones_from_a_held_snapshot_share_blocks_on_the_receiver() {
    let (src_fs, sub, _) = source();
    // 8 MiB and a partial block, so one CLONE may end at the end of file unaligned.
    let data: Vec<u8> = (0..8 * MIB + 1000).map(|i| (i % 253) as u8).collect();
    let f = sub.create(ROOT_INO, b"f", 0o644, &ROOT).unwrap().ino;
    sub.write(f, 0, &data, &ROOT).unwrap();
    src_fs.create_snapshot("src", "s1").unwrap();
    let s1 = src_fs.snapshot("src", "s1").unwrap();

    let (dst_fs, _) = mem_fs();
    let r1 = receive_bytes(
        &dst_fs,
        "dst",
        &send_bytes(&src_fs, &s1, None, &[], StreamVersion::V1),
    );
    assert_same_tree(&s1, &r1, true);

    // One block changes; the rest of the file can be cloned from s1, which the receiver
    // holds as r1.
    sub.write(f, MIB, b"changed", &ROOT).unwrap();
    src_fs.create_snapshot("src", "s2").unwrap();
    let s2 = src_fs.snapshot("src", "s2").unwrap();
    let stream = send_bytes(
        &src_fs,
        &s2,
        None,
        std::slice::from_ref(&s1),
        StreamVersion::V1,
    );
    let cloned: u64 = clone_commands(&stream).iter().map(|c| c.1).sum();
    assert!(
        cloned >= 8 * MIB - 4096,
        "the stream clones only {cloned} bytes"
    );

    let before = used_blocks(&dst_fs);
    let r2 = receive_bytes(&dst_fs, "copy", &stream);
    let grown = used_blocks(&dst_fs) - before;
    assert_same_tree(&s2, &r2, true);
    // 2049 blocks of file: copied, they would take them all again.
    assert!(grown < 256, "receiving the clones used {grown} blocks");
    // The received file is independent of the one it shares blocks with.
    let copy = dst_fs.subvolume("copy").unwrap();
    let g = copy.resolve(b"/f").unwrap();
    copy.write(g, 0, b"only in copy", &ROOT).unwrap();
    assert_eq!(r1.read(g, 0, 12).unwrap(), &data[..12]);

    assert_clean(&dst_fs);
}
