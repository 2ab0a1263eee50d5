//! Proves `Subvol::clone_range` (reflink): the clone reads like its source, shares its
//! blocks (pool usage grows by metadata only), stays independent of it under later writes
//! in either direction, works from snapshots and across subvolumes, refuses what Linux
//! FICLONERANGE refuses, and — in a random test against a byte-array model mixing writes,
//! truncates, punched holes and clones — always reads as the model says; fsck stays clean
//! throughout. `TIDEFS_SEED=n` replays one seed of the random test.

mod common;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tidefs_fs::{errno, falloc, ExtentKind, Fs, Subvol, ROOT_INO};

use common::{assert_clean, mem_fs, run_seeded, seeds, ROOT};

const B: u64 = 4096;
const MIB: u64 = 1 << 20;

fn used(fs: &Fs) -> u64 {
    fs.fsync().unwrap();
    fs.pool().usage().used_blocks
}

/// Bytes that differ in every block, so a block mapped to the wrong place shows.
fn pattern(len: u64, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i / 7 % 251) as u8 ^ (i / B) as u8 ^ seed)
        .collect()
}

fn file(sub: &Subvol, name: &[u8], data: &[u8]) -> u64 {
    let ino = sub.create(ROOT_INO, name, 0o644, &ROOT).unwrap().ino;
    if !data.is_empty() {
        sub.write(ino, 0, data, &ROOT).unwrap();
    }
    ino
}

fn read_all(sub: &Subvol, ino: u64) -> Vec<u8> {
    let size = sub.getattr(ino).unwrap().size;
    sub.read(ino, 0, size).unwrap()
}

fn data_extents(sub: &Subvol, ino: u64) -> Vec<(u64, u64, ExtentKind)> {
    sub.extents(ino)
        .unwrap()
        .into_iter()
        .map(|e| (e.offset, e.len, e.kind))
        .collect()
}

fn clone_errno(
    sub: &Subvol,
    src: &Subvol,
    src_ino: u64,
    src_off: u64,
    dst_ino: u64,
    dst_off: u64,
    len: u64,
) -> i32 {
    sub.clone_range(src, src_ino, src_off, dst_ino, dst_off, len, &ROOT)
        .unwrap_err()
        .errno()
}

#[test]
fn clone_of_16_mib_reads_equal_and_shares_every_block() {
    let (fs, sub, clock) = mem_fs();
    let data = pattern(16 * MIB, 1);
    let src = file(&sub, b"src", &data);
    let dst = file(&sub, b"dst", b"");
    assert_clean(&fs);
    let before = used(&fs);
    let mtime_before = sub.getattr(dst).unwrap().mtime;
    clock.advance_nanos(5_000_000_000);
    let n = sub
        .clone_range(&sub, src, 0, dst, 0, 16 * MIB, &ROOT)
        .unwrap();
    assert_eq!(n, 16 * MIB);
    let after = used(&fs);
    // 4096 data blocks were shared; only records and tree nodes are new.
    assert!(
        after - before < 64,
        "cloning 16 MiB used {} blocks",
        after - before
    );
    assert_eq!(read_all(&sub, dst), data);
    assert_eq!(data_extents(&sub, dst), data_extents(&sub, src));
    let attr = sub.getattr(dst).unwrap();
    assert_eq!(attr.size, 16 * MIB);
    assert_eq!(attr.blocks, 4096);
    assert!(attr.mtime > mtime_before);
    assert_eq!(attr.ctime, attr.mtime);
    assert_clean(&fs);
}

#[test]
fn writes_after_a_clone_change_only_the_file_written() {
    let (fs, sub, _) = mem_fs();
    let data = pattern(MIB, 2);
    let src = file(&sub, b"src", &data);
    let dst = file(&sub, b"dst", b"");
    sub.clone_range(&sub, src, 0, dst, 0, MIB, &ROOT).unwrap();
    assert_clean(&fs);
    sub.write(dst, 5000, b"into the clone", &ROOT).unwrap();
    assert_eq!(read_all(&sub, src), data);
    sub.write(src, 300_000, b"into the source", &ROOT).unwrap();
    sub.fallocate(src, falloc::PUNCH_HOLE | falloc::KEEP_SIZE, 0, 8192)
        .unwrap();
    let mut want = data.clone();
    want[5000..5014].copy_from_slice(b"into the clone");
    assert_eq!(read_all(&sub, dst), want);
    assert_clean(&fs);
}

#[test]
fn middle_ranges_replace_destination_records_and_grow_the_file() {
    let (fs, sub, _) = mem_fs();
    let a = pattern(64 * B, 3);
    let b = pattern(16 * B, 4);
    let src = file(&sub, b"src", &a);
    let dst = file(&sub, b"dst", &b);
    // Into the middle: blocks 4..8 of dst become blocks 10..14 of src; record pieces of
    // src are split at both ends of the range.
    sub.clone_range(&sub, src, 10 * B, dst, 4 * B, 4 * B, &ROOT)
        .unwrap();
    let mut want = b.clone();
    want[(4 * B) as usize..(8 * B) as usize]
        .copy_from_slice(&a[(10 * B) as usize..(14 * B) as usize]);
    assert_eq!(read_all(&sub, dst), want);
    assert_clean(&fs);
    // Past the end: the gap between the old end and the range is a hole.
    sub.clone_range(&sub, src, 0, dst, 20 * B, 2 * B, &ROOT)
        .unwrap();
    want.resize((20 * B) as usize, 0);
    want.extend_from_slice(&a[..(2 * B) as usize]);
    assert_eq!(read_all(&sub, dst), want);
    assert_eq!(sub.getattr(dst).unwrap().blocks, 16 + 2);
    assert_clean(&fs);
}

#[test]
fn a_range_ending_at_the_source_end_of_file_may_be_unaligned() {
    let (fs, sub, _) = mem_fs();
    let data = pattern(10_000, 5);
    let src = file(&sub, b"src", &data);
    let dst = file(&sub, b"dst", &pattern(5000, 6));
    // Length 0 means "to the source's end of file", as in FICLONERANGE.
    let n = sub.clone_range(&sub, src, 0, dst, 0, 0, &ROOT).unwrap();
    assert_eq!(n, 10_000);
    assert_eq!(read_all(&sub, dst), data);
    // Appended after the destination's end (an unaligned one): the gap reads as zeros.
    let n = sub
        .clone_range(&sub, src, 8192, dst, 12_288, 10_000 - 8192, &ROOT)
        .unwrap();
    assert_eq!(n, 10_000 - 8192);
    let mut want = data.clone();
    want.resize(12_288, 0);
    want.extend_from_slice(&data[8192..]);
    assert_eq!(read_all(&sub, dst), want);
    assert_eq!(sub.getattr(dst).unwrap().size, 12_288 + 10_000 - 8192);
    assert_clean(&fs);
}

#[test]
fn holes_stay_holes_and_prealloc_stays_prealloc() {
    let (fs, sub, _) = mem_fs();
    let src = file(&sub, b"src", b"");
    sub.write(src, 0, &pattern(B, 7), &ROOT).unwrap();
    sub.write(src, 9 * B, &pattern(B, 8), &ROOT).unwrap();
    sub.fallocate(src, falloc::KEEP_SIZE, 4 * B, 2 * B).unwrap();
    let dst = file(&sub, b"dst", &pattern(10 * B, 9));
    sub.clone_range(&sub, src, 0, dst, 0, 10 * B, &ROOT)
        .unwrap();
    assert_eq!(read_all(&sub, dst), read_all(&sub, src));
    let kinds: Vec<_> = data_extents(&sub, dst)
        .into_iter()
        .map(|(off, len, kind)| (off, len, matches!(kind, ExtentKind::Prealloc)))
        .collect();
    assert_eq!(
        kinds,
        vec![(0, B, false), (4 * B, 2 * B, true), (9 * B, B, false)]
    );
    assert_eq!(sub.getattr(dst).unwrap().blocks, 4);
    assert_clean(&fs);
}

#[test]
fn inline_sources_are_copied_as_data() {
    let (fs, sub, _) = mem_fs();
    let src = file(&sub, b"src", b"small inline file");
    let dst = file(&sub, b"dst", b"");
    sub.clone_range(&sub, src, 0, dst, 0, 0, &ROOT).unwrap();
    assert_eq!(read_all(&sub, dst), b"small inline file");
    assert_eq!(data_extents(&sub, dst)[0].2, ExtentKind::Inline);
    // Far out, past the inline limit: becomes a block.
    sub.clone_range(&sub, src, 0, dst, 4 * B, 0, &ROOT).unwrap();
    let mut want = b"small inline file".to_vec();
    want.resize((4 * B) as usize, 0);
    want.extend_from_slice(b"small inline file");
    assert_eq!(read_all(&sub, dst), want);
    // An inline file grown by truncate: the part past its bytes stays a hole.
    sub.truncate(src, 64 * MIB, &ROOT).unwrap();
    let big = file(&sub, b"big", b"");
    let before = used(&fs);
    sub.clone_range(&sub, src, 0, big, 0, 0, &ROOT).unwrap();
    assert!(used(&fs) - before < 16);
    assert_eq!(sub.read(big, 0, 32).unwrap()[..17], *b"small inline file");
    assert_eq!(sub.read(big, 32 * MIB, 4).unwrap(), [0; 4]);
    assert_clean(&fs);
}

#[test]
fn clones_from_a_snapshot_and_into_another_subvolume() {
    let (fs, sub, _) = mem_fs();
    let old = pattern(MIB, 10);
    let f = file(&sub, b"f", &old);
    fs.create_snapshot("main", "s").unwrap();
    let snap = fs.snapshot("main", "s").unwrap();
    sub.write(f, 0, &pattern(MIB, 11), &ROOT).unwrap();
    let restored = file(&sub, b"restored", b"");
    let before = used(&fs);
    sub.clone_range(&snap, f, 0, restored, 0, MIB, &ROOT)
        .unwrap();
    assert!(used(&fs) - before < 16);
    assert_eq!(read_all(&sub, restored), old);
    assert_clean(&fs);

    fs.create_subvolume("other", &ROOT).unwrap();
    let other = fs.subvolume("other").unwrap();
    let g = file(&other, b"g", b"");
    let before = used(&fs);
    other.clone_range(&sub, f, 0, g, 0, MIB, &ROOT).unwrap();
    assert!(used(&fs) - before < 16);
    assert_eq!(read_all(&other, g), read_all(&sub, f));
    // The source subvolume can go; the clone keeps the blocks.
    let keep = read_all(&other, g);
    fs.delete_snapshot("main", "s").unwrap();
    fs.delete_subvolume("main").unwrap();
    assert_eq!(read_all(&other, g), keep);
    assert_clean(&fs);
}

#[test]
fn deleting_the_source_keeps_the_clone_and_the_space_returns_with_the_last_copy() {
    let (fs, sub, _) = mem_fs();
    let empty = used(&fs);
    let data = pattern(4 * MIB, 12);
    let src = file(&sub, b"src", &data);
    let dst = file(&sub, b"dst", b"");
    sub.clone_range(&sub, src, 0, dst, 0, 4 * MIB, &ROOT)
        .unwrap();
    sub.unlink(ROOT_INO, b"src", &ROOT).unwrap();
    assert_clean(&fs);
    assert!(used(&fs) - empty >= 1024, "the clone still holds the data");
    assert_eq!(read_all(&sub, dst), data);
    sub.unlink(ROOT_INO, b"dst", &ROOT).unwrap();
    assert!(used(&fs) - empty < 16, "the last copy frees the data");
    assert_clean(&fs);
}

#[test]
fn refuses_what_ficlonerange_refuses() {
    let (fs, sub, _) = mem_fs();
    let src = file(&sub, b"src", &pattern(10 * B + 100, 13));
    let dst = file(&sub, b"dst", &pattern(20 * B, 14));
    let e = |src_off, dst_ino, dst_off, len| {
        clone_errno(&sub, &sub, src, src_off, dst_ino, dst_off, len)
    };
    assert_eq!(e(100, dst, 0, B), errno::EINVAL, "unaligned source offset");
    assert_eq!(
        e(0, dst, 100, B),
        errno::EINVAL,
        "unaligned destination offset"
    );
    assert_eq!(
        e(0, dst, 0, B + 1),
        errno::EINVAL,
        "unaligned length inside the file"
    );
    assert_eq!(
        e(0, dst, 0, 12 * B),
        errno::EINVAL,
        "range past the source's end"
    );
    assert_eq!(
        e(11 * B, dst, 0, B),
        errno::EINVAL,
        "offset past the source's end"
    );
    assert_eq!(
        e(8 * B, dst, 0, 2 * B + 100),
        errno::EINVAL,
        "partial last block into the middle of the destination"
    );
    assert_eq!(
        e(0, src, 4 * B, 8 * B),
        errno::EINVAL,
        "overlap within one file"
    );
    assert_eq!(
        e(4 * B, src, 0, 8 * B),
        errno::EINVAL,
        "overlap within one file"
    );
    assert_eq!(e(0, ROOT_INO, 0, B), errno::EISDIR);
    assert_eq!(
        clone_errno(&sub, &sub, ROOT_INO, 0, dst, 0, B),
        errno::EISDIR
    );
    assert_eq!(e(0, 999_999, 0, B), errno::ENOENT);
    fs.create_snapshot("main", "s").unwrap();
    let snap = fs.snapshot("main", "s").unwrap();
    assert_eq!(clone_errno(&snap, &sub, src, 0, dst, 0, B), errno::EROFS);
    // Non-overlapping ranges of one file are fine.
    sub.clone_range(&sub, src, 0, src, 12 * B, 4 * B, &ROOT)
        .unwrap();
    assert_eq!(
        sub.read(src, 12 * B, 4 * B).unwrap(),
        sub.read(src, 0, 4 * B).unwrap()
    );
    // Nothing refused changed anything.
    assert_eq!(read_all(&sub, dst), pattern(20 * B, 14));
    assert_clean(&fs);
}

/// The byte-array model of the random test: one `Vec` per file.
struct Model {
    files: Vec<Vec<u8>>,
}

impl Model {
    /// The errno FICLONERANGE gives, or the bytes cloned after applying it.
    fn clone_range(
        &mut self,
        s: usize,
        src_off: u64,
        d: usize,
        dst_off: u64,
        len: u64,
    ) -> Result<u64, i32> {
        let size = self.files[s].len() as u64;
        if !src_off.is_multiple_of(B) || !dst_off.is_multiple_of(B) || src_off > size {
            return Err(errno::EINVAL);
        }
        let len = if len == 0 { size - src_off } else { len };
        let end = src_off + len;
        if end > size || (!len.is_multiple_of(B) && end != size) {
            return Err(errno::EINVAL);
        }
        if len == 0 {
            return Ok(0);
        }
        if s == d && src_off < dst_off + len && dst_off < end {
            return Err(errno::EINVAL);
        }
        if !len.is_multiple_of(B) && dst_off + len < self.files[d].len() as u64 {
            return Err(errno::EINVAL);
        }
        let bytes = self.files[s][src_off as usize..end as usize].to_vec();
        let f = &mut self.files[d];
        let dst_end = (dst_off + len) as usize;
        if f.len() < dst_end {
            f.resize(dst_end, 0);
        }
        f[dst_off as usize..dst_end].copy_from_slice(&bytes);
        Ok(len)
    }
}

const FILES: usize = 3;
const FILE_BYTES_RANGE: u64 = 48 * B;
const OPS_PER_SEED: usize = 150;

/// An offset that is usually block aligned (so clones mostly succeed) and sometimes not.
fn offset(rng: &mut ChaCha8Rng) -> u64 {
    let blk = rng.gen_range(0..FILE_BYTES_RANGE / B);
    if rng.gen_bool(0.9) {
        blk * B
    } else {
        blk * B + rng.gen_range(1..B)
    }
}

fn random_ops(seed: u64) {
    let (fs, sub, _) = mem_fs();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let inos: Vec<u64> = (0..FILES)
        .map(|i| file(&sub, format!("f{i}").as_bytes(), b""))
        .collect();
    let mut model = Model {
        files: vec![Vec::new(); FILES],
    };
    let mut snapshot: Option<(Subvol, Vec<Vec<u8>>)> = None;
    let mut clones_done = 0;
    for step in 0..OPS_PER_SEED {
        let f = rng.gen_range(0..FILES);
        let what = match rng.gen_range(0..10) {
            0..=2 => {
                let off = rng.gen_range(0..FILE_BYTES_RANGE);
                let len = rng
                    .gen_range(1..4 * B + 10)
                    .min(FILE_BYTES_RANGE - off)
                    .max(1);
                let data: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
                sub.write(inos[f], off, &data, &ROOT).unwrap();
                let m = &mut model.files[f];
                let end = (off + len) as usize;
                if m.len() < end {
                    m.resize(end, 0);
                }
                m[off as usize..end].copy_from_slice(&data);
                format!("write f{f} {off}+{len}")
            }
            3 => {
                let size = rng.gen_range(0..FILE_BYTES_RANGE);
                sub.truncate(inos[f], size, &ROOT).unwrap();
                model.files[f].resize(size as usize, 0);
                format!("truncate f{f} {size}")
            }
            4 => {
                let off = rng.gen_range(0..FILE_BYTES_RANGE);
                let len = rng.gen_range(1..8 * B);
                sub.fallocate(inos[f], falloc::PUNCH_HOLE | falloc::KEEP_SIZE, off, len)
                    .unwrap();
                let m = &mut model.files[f];
                let end = ((off + len) as usize).min(m.len());
                if (off as usize) < end {
                    m[off as usize..end].fill(0);
                }
                format!("punch f{f} {off}+{len}")
            }
            _ => {
                let d = rng.gen_range(0..FILES);
                let src_off = offset(&mut rng);
                let dst_off = offset(&mut rng);
                let size = model.files[f].len() as u64;
                let len = match rng.gen_range(0..4) {
                    0 => 0,
                    // To the end of file: often unaligned.
                    1 => size.saturating_sub(src_off),
                    _ => rng.gen_range(1..16) * B,
                };
                let want = model.clone_range(f, src_off, d, dst_off, len);
                let got = sub
                    .clone_range(&sub, inos[f], src_off, inos[d], dst_off, len, &ROOT)
                    .map_err(|e| e.errno());
                assert_eq!(
                    got, want,
                    "step {step}: clone f{f} {src_off} -> f{d} {dst_off} len {len}"
                );
                clones_done += usize::from(matches!(want, Ok(n) if n > 0));
                format!("clone f{f} {src_off} -> f{d} {dst_off} len {len}: {want:?}")
            }
        };
        for (i, &ino) in inos.iter().enumerate() {
            assert_eq!(
                read_all(&sub, ino),
                model.files[i],
                "step {step} ({what}): f{i} differs"
            );
        }
        if step % 50 == 49 {
            assert_clean(&fs);
            if let Some((snap, files)) = &snapshot {
                for (i, &ino) in inos.iter().enumerate() {
                    assert_eq!(read_all(snap, ino), files[i], "snapshot f{i} changed");
                }
            }
            let name = format!("s{step}");
            fs.create_snapshot("main", &name).unwrap();
            snapshot = Some((fs.snapshot("main", &name).unwrap(), model.files.clone()));
        }
    }
    // Guards the generator: a seed whose clones all fail proves nothing about sharing.
    assert!(clones_done >= 10, "only {clones_done} clones succeeded");
    assert_clean(&fs);
}

#[test]
fn random_writes_truncates_holes_and_clones_match_a_byte_model() {
    for seed in seeds(12) {
        eprintln!("clone_range random test seed {seed}");
        run_seeded("random_writes_truncates_holes_and_clones", seed, random_ops);
    }
}
