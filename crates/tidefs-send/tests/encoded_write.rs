//! Proves that receive decodes compressed ENCODED_WRITE commands (`btrfs send
//! --compressed-data`): zlib, zstd and btrfs's LZO layout at every sector size land as
//! the plain bytes, a kernel-made compressed stream arrives intact, and bad encoded data
//! fails the receive with a clear error and leaves the pool as it was.

mod support;

use std::io::Write;

use support::{assert_clean, mem_fs, receive_bytes};
use tidefs_fs::Subvol;
use tidefs_send::receive::{receive, ReceiveOptions};
use tidefs_stream::{Command, SendStreamWriter, StreamVersion};

const SECTOR: usize = 4096;

/// Extent data as btrfs keeps it: padded with zeros to whole sectors.
fn pad(mut v: Vec<u8>) -> Vec<u8> {
    v.resize(v.len().div_ceil(SECTOR) * SECTOR, 0);
    v
}

fn zlib(plain: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(plain).unwrap();
    pad(e.finish().unwrap())
}

fn zstd(plain: &[u8]) -> Vec<u8> {
    pad(zstd::bulk::compress(plain, 3).unwrap())
}

/// btrfs's LZO extent: LE32 total length, then per sector of input an LE32 segment
/// length and its LZO1X data; a segment header that would straddle a sector boundary
/// starts at the next sector instead (as the kernel's lzo.c writes it).
fn lzo(plain: &[u8], sector: usize) -> Vec<u8> {
    lzo_padded(plain, sector).0
}

/// `lzo`, and how many sector tails were skipped.
fn lzo_padded(plain: &[u8], sector: usize) -> (Vec<u8>, usize) {
    let mut out = vec![0u8; 4];
    let mut pads = 0;
    for chunk in plain.chunks(sector) {
        let left = sector - out.len() % sector;
        if left < 4 {
            out.resize(out.len() + left, 0);
            pads += 1;
        }
        let seg = lzokay::compress::compress(chunk).unwrap();
        out.extend_from_slice(&(seg.len() as u32).to_le_bytes());
        out.extend_from_slice(&seg);
    }
    let total = out.len() as u32;
    out[..4].copy_from_slice(&total.to_le_bytes());
    (pad(out), pads)
}

/// Compressible, but not a single repeated byte.
fn text(len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    let mut i = 0u64;
    while v.len() < len {
        v.extend_from_slice(format!("line {i} of a compressible file {}\n", i % 7).as_bytes());
        i += 1;
    }
    v.truncate(len);
    v
}

struct Encoded {
    compression: u32,
    data: Vec<u8>,
    unencoded_len: u64,
    unencoded_offset: u64,
    unencoded_file_len: u64,
    offset: u64,
}

fn stream(writes: &[Encoded], encryption: Option<u32>) -> Vec<u8> {
    let mut w = SendStreamWriter::new(Vec::new(), StreamVersion::V2).unwrap();
    w.write_command(&Command::Subvol {
        path: b"r".to_vec(),
        uuid: [7; 16],
        ctransid: 5,
    })
    .unwrap();
    w.write_command(&Command::Mkfile {
        path: b"f".to_vec(),
        ino: 257,
    })
    .unwrap();
    for e in writes {
        w.write_command(&Command::EncodedWrite {
            path: b"f".to_vec(),
            offset: e.offset,
            unencoded_file_len: e.unencoded_file_len,
            unencoded_len: e.unencoded_len,
            unencoded_offset: e.unencoded_offset,
            compression: Some(e.compression),
            encryption,
            data: e.data.clone(),
        })
        .unwrap();
    }
    w.end().unwrap();
    w.into_inner().unwrap()
}

fn read_file(sub: &Subvol) -> Vec<u8> {
    let ino = sub.resolve(b"/f").unwrap();
    let size = sub.getattr(ino).unwrap().size;
    sub.read(ino, 0, size).unwrap()
}

/// Receives one encoded write of `data` (encoding `plain`): the file must hold
/// plain[unencoded_offset..][..file_len] at `offset`.
fn check_codec(compression: u32, plain: &[u8], data: Vec<u8>) {
    let (fs, _) = mem_fs();
    let (offset, unencoded_offset, file_len) = (8192u64, 1000u64, plain.len() as u64 - 3000);
    let s = stream(
        &[Encoded {
            compression,
            data,
            unencoded_len: plain.len() as u64,
            unencoded_offset,
            unencoded_file_len: file_len,
            offset,
        }],
        Some(0),
    );
    let snap = receive_bytes(&fs, "dst", &s);
    let got = read_file(&snap);
    let mut want = vec![0u8; offset as usize];
    want.extend_from_slice(&plain[unencoded_offset as usize..][..file_len as usize]);
    assert_eq!(got.len(), want.len(), "compression {compression}: size");
    assert!(got == want, "compression {compression}: content differs");
    assert_clean(&fs);
}

#[test]
fn zlib_extent_is_decoded() {
    let plain = text(128 * 1024);
    check_codec(1, &plain, zlib(&plain));
}

#[test]
fn zstd_extent_is_decoded() {
    let plain = text(128 * 1024);
    check_codec(2, &plain, zstd(&plain));
}

#[test]
fn lzo_extents_are_decoded_at_every_sector_size() {
    for (compression, sector) in (3u32..=7).zip([4096, 8192, 16384, 32768, 65536]) {
        let plain = text(128 * 1024);
        check_codec(compression, &plain, lzo(&plain, sector));
    }
}

#[test]
fn lzo_segment_headers_skip_sector_tails() {
    // Incompressible sectors make segments a little longer than a sector, so segment
    // headers fall at every position, some within 4 bytes of a sector's end.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut plain: Vec<u8> = (0..128 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    // A compressible run at the start of the first sector shortens its segment byte
    // by byte, until the second segment's header falls within 4 bytes of a sector end.
    let mut skipped = 0;
    for run in 0..SECTOR {
        plain[..run].fill(b'z');
        let (data, pads) = lzo_padded(&plain, SECTOR);
        if pads > 0 {
            skipped += pads;
            check_codec(3, &plain, data);
            break;
        }
    }
    assert!(skipped > 0, "no segment header fell near a sector end");
}

/// The last extent of a file holds data up to i_size only, while its unencoded length
/// is a whole number of sectors; the rest reads as zeros (kernel stream: 37856 of
/// 40960 bytes).
#[test]
fn short_tail_extent_reads_as_zeros_past_its_data() {
    let plain = text(37856);
    for (compression, data) in [
        (1, zlib(&plain)),
        (2, zstd(&plain)),
        (3, lzo(&plain, SECTOR)),
    ] {
        let (fs, _) = mem_fs();
        let s = stream(
            &[Encoded {
                compression,
                data,
                unencoded_len: 40960,
                unencoded_offset: 0,
                unencoded_file_len: 37856,
                offset: 0,
            }],
            None,
        );
        let snap = receive_bytes(&fs, "dst", &s);
        assert!(read_file(&snap) == plain, "compression {compression}");
    }
}

#[test]
fn kernel_compressed_stream_is_received() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tidefs-stream/tests/fixtures/compressed-v2.stream"
    );
    let bytes = std::fs::read(path).unwrap();
    let (fs, _) = mem_fs();
    let snap = receive_bytes(&fs, "c1", &bytes);
    let ino = snap.resolve(b"/compressible").unwrap();
    let size = snap.getattr(ino).unwrap().size;
    assert_eq!(size, 300_000);
    assert!(snap.read(ino, 0, size).unwrap() == vec![b'c'; 300_000]);
    assert_clean(&fs);
}

/// A receive of `s` must fail naming the encoded write and `what`, and leave no trace.
fn refused(s: &[u8], what: &str) {
    let (fs, _) = mem_fs();
    let e = receive(&fs, "dst", s, &ReceiveOptions::default(), &mut |_| {})
        .expect_err("bad encoded data must fail the receive")
        .to_string();
    assert!(e.contains("encoded_write"), "{e}");
    assert!(e.contains(what), "{e} does not say {what}");
    assert!(fs.subvolume("dst").is_err(), "a failed receive left dst");
    assert_clean(&fs);
}

fn one(compression: u32, data: Vec<u8>, unencoded_len: u64) -> Vec<u8> {
    stream(
        &[Encoded {
            compression,
            data,
            unencoded_len,
            unencoded_offset: 0,
            unencoded_file_len: unencoded_len.min(4096),
            offset: 0,
        }],
        None,
    )
}

#[test]
fn corrupt_data_fails_cleanly() {
    let plain = text(64 * 1024);
    let len = plain.len() as u64;
    // Damaged in the middle.
    for (compression, mut data, name) in [
        (1, zlib(&plain), "zlib"),
        (2, zstd(&plain), "zstd"),
        (3, lzo(&plain, SECTOR), "lzo"),
    ] {
        for b in &mut data[6..40] {
            *b ^= 0x5a;
        }
        refused(&one(compression, data, len), name);
    }
    // Cut short.
    for (compression, data, name) in [
        (1, zlib(&plain), "zlib"),
        (2, zstd(&plain), "zstd"),
        (3, lzo(&plain, SECTOR), "lzo"),
    ] {
        let cut = data[..data.len() / 3].to_vec();
        refused(&one(compression, cut, len), name);
    }
    // Garbage and nothing.
    for compression in 1..=7 {
        refused(&one(compression, vec![0xff; 100], len), "corrupt");
        refused(&one(compression, Vec::new(), len), "corrupt");
    }
}

#[test]
fn data_longer_than_its_unencoded_length_fails() {
    let plain = text(64 * 1024);
    let short = plain.len() as u64 - 1;
    for (compression, data) in [
        (1, zlib(&plain)),
        (2, zstd(&plain)),
        (3, lzo(&plain, SECTOR)),
        (7, lzo(&plain, 65536)),
    ] {
        refused(
            &one(compression, data, short),
            "decodes to more than its unencoded length",
        );
    }
}

#[test]
fn unsupported_encodings_are_refused() {
    let plain = text(8192);
    let enc = stream(
        &[Encoded {
            compression: 2,
            data: zstd(&plain),
            unencoded_len: 8192,
            unencoded_offset: 0,
            unencoded_file_len: 8192,
            offset: 0,
        }],
        Some(1),
    );
    refused(&enc, "encryption 1 is not supported");
    refused(&one(8, zstd(&plain), 8192), "unknown compression type 8");
    refused(&one(2, zstd(&plain), 1 << 40), "larger than");
    // The file range must lie inside the unencoded extent.
    let outside = stream(
        &[Encoded {
            compression: 2,
            data: zstd(&plain),
            unencoded_len: 8192,
            unencoded_offset: 4096,
            unencoded_file_len: 8192,
            offset: 0,
        }],
        None,
    );
    refused(&outside, "outside its unencoded length");
}
