//! Feeds arbitrary bytes to `receive` on an in-memory pool holding subvolume `src` (a
//! small tree) and its snapshot `src@base`.
//!
//! Raw mode (first byte 0 mod 4): the rest is the stream itself (CRCs repaired first
//! when bit 2 of the first byte is set, so mutations get past the checksum). Structured
//! mode (otherwise):
//! the bytes drive a generator of commands over a small set of names, written with
//! tidefs-stream's writer: full streams into `dst` and incremental ones against
//! `src@base` into `src`, with every body command, compressed ENCODED_WRITEs, cut-off
//! streams and resumable receives.
//!
//! Invariants: no panic; a failed receive leaves the pool reading as before (same
//! subvolumes and snapshots, same trees); a cut-off resumable receive, once aborted, too;
//! and afterwards, success or not, the file system fsck and the store fsck are clean.

#![no_main]

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use tidefs_fs::{Caller, FileKind, Fs, ManualClock, Subvol, Timespec, ROOT_INO};
use tidefs_send::receive::{abort, receive, ReceiveOptions};
use tidefs_send::ReceiveError;
use tidefs_store::{CreateOptions, MemDevice, OpenOptions, Pool};
use tidefs_stream::{repair_crcs, Command, SendStreamWriter, StreamVersion, Timespec as WireTime};

const ROOT: Caller = Caller::ROOT;
/// The pool may not grow past this: a FALLOCATE of terabytes meets ENOSPC.
const POOL_BYTES_MAX: u64 = 256 << 20;

fn pool() -> (Fs, Subvol) {
    // Small start and cache: a fresh pool per input must cost little.
    let pool = Pool::create(
        // (A device with a capacity limit would be used whole from the start.)
        Arc::new(MemDevice::new()),
        &CreateOptions {
            initial_bytes: 1 << 20,
            max_bytes: Some(POOL_BYTES_MAX),
        },
        &OpenOptions {
            cache_bytes: 4 << 20,
        },
    )
    .unwrap();
    let fs = Fs::format(
        pool,
        Arc::new(ManualClock::new(Timespec::new(1_700_000_000, 0))),
    )
    .unwrap();
    fs.create_subvolume("src", &ROOT).unwrap();
    let s = fs.subvolume("src").unwrap();
    let a = s.mkdir(ROOT_INO, b"a", 0o755, &ROOT).unwrap().ino;
    let f = s.create(a, b"f", 0o644, &ROOT).unwrap().ino;
    s.write(f, 0, &[b'f'; 10_000], &ROOT).unwrap();
    let g = s.create(a, b"g", 0o600, &ROOT).unwrap().ino;
    s.write(g, 8192, b"sparse tail", &ROOT).unwrap();
    s.link(g, ROOT_INO, b"b").unwrap();
    let d = s.mkdir(ROOT_INO, b"d", 0o700, &ROOT).unwrap().ino;
    s.mkdir(d, b"e", 0o755, &ROOT).unwrap();
    s.symlink(ROOT_INO, b"sym", b"a/f", &ROOT).unwrap();
    s.mknod(ROOT_INO, b"fifo", 0o010644, 0, &ROOT).unwrap();
    s.setxattr(f, b"user.k", b"v", 0).unwrap();
    fs.create_snapshot("src", "base").unwrap();
    fs.fsync().unwrap();
    (fs, s)
}

/// Everything observable of one tree, by path (inode numbers left out).
fn tree(sub: &Subvol) -> Tree {
    let mut out = BTreeMap::new();
    let mut stack = vec![(ROOT_INO, b"/".to_vec())];
    while let Some((ino, path)) = stack.pop() {
        let i = sub.getattr(ino).unwrap();
        let mut xattrs = Vec::new();
        for name in sub.listxattr(ino).unwrap() {
            let v = sub.getxattr(ino, &name).unwrap();
            xattrs.push((name, v));
        }
        let content = match i.kind() {
            FileKind::Regular => sub.read(ino, 0, i.size).unwrap(),
            FileKind::Symlink => sub.readlink(ino).unwrap(),
            _ => Vec::new(),
        };
        if i.kind() == FileKind::Directory {
            let mut cookie = 0;
            loop {
                let batch = sub.readdir(ino, cookie, 256).unwrap();
                if batch.is_empty() {
                    break;
                }
                for e in batch {
                    cookie = e.next_cookie;
                    if e.name == b"." || e.name == b".." {
                        continue;
                    }
                    let mut p = path.clone();
                    p.extend_from_slice(&e.name);
                    p.push(b'/');
                    stack.push((e.ino, p));
                }
            }
        }
        let desc = format!(
            "{:?} {:o} {}:{} n{} s{} r{} a{:?} m{:?} c{:?} x{xattrs:?}",
            i.kind(),
            i.mode,
            i.uid,
            i.gid,
            i.nlink,
            i.size,
            i.rdev,
            i.atime,
            i.mtime,
            i.ctime
        );
        out.insert(path, (desc, content));
    }
    out
}

type Tree = BTreeMap<Vec<u8>, (String, Vec<u8>)>;

/// What a failed receive must leave as it was: subvolumes, snapshots, their trees.
fn state(fs: &Fs) -> Vec<(String, Tree)> {
    let mut out = Vec::new();
    for s in fs.list_subvolumes().unwrap() {
        let info = format!(
            "{} {} {:?} {:?}",
            s.name, s.uuid, s.received_uuid, s.metadata
        );
        out.push((info, tree(&fs.open_id(s.id).unwrap())));
        for n in fs.list_snapshots(&s.name).unwrap() {
            let info = format!("@{} {} {:?}", n.name, n.uuid, n.received_uuid);
            out.push((info, tree(&fs.open_id(n.id).unwrap())));
        }
    }
    out
}

/// What differs between two states, path by path.
fn difference(before: &[(String, Tree)], after: &[(String, Tree)]) -> String {
    let mut out = String::new();
    if before.len() != after.len() {
        out.push_str(&format!(
            "subvolumes and snapshots: {} -> {}\n",
            before.len(),
            after.len()
        ));
    }
    for ((bi, bt), (ai, at)) in before.iter().zip(after) {
        if bi != ai {
            out.push_str(&format!("{bi}\n  -> {ai}\n"));
        }
        for (path, b) in bt {
            let p = String::from_utf8_lossy(path);
            match at.get(path) {
                None => out.push_str(&format!("{bi}: {p} gone\n")),
                Some(a) if a != b => {
                    out.push_str(&format!("{bi}: {p}\n  {}\n  -> {}\n", b.0, a.0));
                    if a.1 != b.1 {
                        out.push_str(&format!("  content {} -> {} bytes\n", b.1.len(), a.1.len()));
                    }
                }
                _ => {}
            }
        }
        for path in at.keys().filter(|p| !bt.contains_key(*p)) {
            out.push_str(&format!("{bi}: {} new\n", String::from_utf8_lossy(path)));
        }
    }
    out
}

fn assert_clean(fs: &Fs, what: &str) {
    let problems = fs.fsck(true).unwrap();
    assert!(problems.is_empty(), "{what}: fs fsck: {problems:?}");
    fs.fsync().unwrap();
    let report = tidefs_store::fsck(fs.pool(), &mut |_| {}).unwrap();
    assert!(
        report.is_clean(),
        "{what}: store fsck: {:?}",
        report.problems
    );
}

/// Reads the fuzz input as choices.
struct Gen<'a> {
    bytes: &'a [u8],
}

impl Gen<'_> {
    fn u8(&mut self) -> u8 {
        match self.bytes.split_first() {
            Some((b, rest)) => {
                self.bytes = rest;
                *b
            }
            None => 0,
        }
    }

    fn done(&self) -> bool {
        self.bytes.is_empty()
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.u8() as usize % from.len()]
    }

    fn raw_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        for x in &mut b {
            *x = self.u8();
        }
        u64::from_le_bytes(b)
    }

    /// Mostly values a file system cares about, sometimes anything.
    fn num(&mut self) -> u64 {
        match self.u8() % 8 {
            0 => self.raw_u64(),
            1 => self.pick(&[u64::MAX, u64::MAX - 4095, 1 << 63, 1 << 40, (1 << 32) - 1]),
            2 => u64::from(self.u8()) * 4096,
            3 => u64::from(self.u8()) * 4096 + u64::from(self.u8()),
            4 => self.pick(&[0, 1, 4095, 4096, 4097, 10_000, 65_536, 131_072, 1 << 20]),
            _ => u64::from(self.u8()),
        }
    }

    fn path(&mut self) -> Vec<u8> {
        const NAMES: &[&[u8]] = &[
            b"",
            b"a",
            b"a/f",
            b"a/g",
            b"b",
            b"d",
            b"d/e",
            b"d/e/x",
            b"sym",
            b"fifo",
            b"n",
            b"a/n",
            b"d/e/n",
            b"o257-1-0",
            b"o258-1-0",
            b"d/n/m",
            b"sym/x",
            b"fifo/x",
            b"a/",
            b"./a/f",
            b"a//g",
            b"x",
            b"d/e/x/y",
        ];
        self.pick(NAMES).to_vec()
    }

    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = (self.u8() as usize).min(max).min(self.bytes.len());
        let (v, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        v.to_vec()
    }

    fn time(&mut self) -> WireTime {
        WireTime {
            sec: self.num(),
            nsec: self.pick(&[0, 1, 999_999_999, 1_000_000_000, u32::MAX]),
        }
    }

    /// Data of a WRITE: short bytes from the input, or a long repeated pattern.
    fn data(&mut self) -> Vec<u8> {
        if self.u8().is_multiple_of(4) {
            let unit = self.bytes(16);
            let len = self.pick(&[4096usize, 65_536, 131_072, 200_000]);
            unit.iter().copied().cycle().take(len).collect()
        } else {
            self.bytes(255)
        }
    }
}

fn lzo_extent(plain: &[u8], sector: usize) -> Vec<u8> {
    let mut out = vec![0u8; 4];
    for chunk in plain.chunks(sector) {
        let left = sector - out.len() % sector;
        if left < 4 {
            out.resize(out.len() + left, 0);
        }
        let seg = lzokay::compress::compress(chunk).unwrap();
        out.extend_from_slice(&(seg.len() as u32).to_le_bytes());
        out.extend_from_slice(&seg);
    }
    let total = out.len() as u32;
    out[..4].copy_from_slice(&total.to_le_bytes());
    out
}

fn encoded_write(g: &mut Gen) -> Command {
    let unit = g.bytes(8);
    let len = g.pick(&[0usize, 1, 100, 4096, 37_856, 131_072, 131_073]);
    let plain: Vec<u8> = unit.iter().copied().cycle().take(len).collect();
    let compression = g.pick(&[0u32, 1, 2, 3, 4, 7, 8, 0xffff_ffff]);
    let mut data = match compression {
        0 => plain.clone(),
        1 => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&plain).unwrap();
            e.finish().unwrap()
        }
        2 => zstd::bulk::compress(&plain, 1).unwrap(),
        3..=7 => lzo_extent(&plain, 4096 << (compression - 3)),
        _ => g.bytes(64),
    };
    // Damage: flip a byte, or cut the data short.
    match g.u8() % 6 {
        0 if !data.is_empty() => {
            let at = g.u8() as usize % data.len();
            data[at] ^= g.u8() | 1;
        }
        1 => data.truncate(g.u8() as usize),
        _ => {}
    }
    let unencoded_len = match g.u8() % 5 {
        0 => g.num(),
        1 => len as u64 + 1,
        2 => (len as u64).saturating_sub(1),
        3 => (len as u64).div_ceil(4096) * 4096,
        _ => len as u64,
    };
    let unencoded_offset = match g.u8() % 3 {
        0 => g.num(),
        _ => 0,
    };
    let unencoded_file_len = match g.u8() % 3 {
        0 => g.num(),
        _ => unencoded_len.saturating_sub(unencoded_offset),
    };
    Command::EncodedWrite {
        path: g.path(),
        offset: g.num(),
        unencoded_file_len,
        unencoded_len,
        unencoded_offset,
        compression: Some(compression),
        encryption: g.pick(&[None, Some(0), Some(0), Some(1)]),
        data,
    }
}

fn command(g: &mut Gen, stream_uuid: [u8; 16], parent_uuid: [u8; 16]) -> Command {
    let path = g.path();
    match g.u8() % 26 {
        0 => Command::Mkfile { path, ino: g.num() },
        1 => Command::Mkdir { path, ino: g.num() },
        2 => Command::Mknod {
            path,
            ino: g.num(),
            rdev: g.num(),
            mode: g.pick(&[
                0o020644, 0o060600, 0o010644, 0o140755, 0o100644, 0o040755, 0o120777,
            ]) | g.pick(&[0, 0o7000, 1 << 40]),
        },
        3 => Command::Mkfifo {
            path,
            ino: g.num(),
            rdev: Some(0),
            mode: Some(0o010644),
        },
        4 => Command::Mksock {
            path,
            ino: g.num(),
            rdev: None,
            mode: None,
        },
        5 => Command::Symlink {
            path,
            ino: g.num(),
            target: g.bytes(40),
        },
        6 => Command::Rename {
            from: path,
            to: g.path(),
        },
        7 => Command::Link {
            path,
            existing: g.path(),
        },
        8 => Command::Unlink { path },
        9 => Command::Rmdir { path },
        10 => Command::SetXattr {
            path,
            name: g
                .pick(&[
                    &b"user.k"[..],
                    b"user.other",
                    b"security.capability",
                    b"",
                    b"bad",
                ])
                .to_vec(),
            data: g.bytes(100),
        },
        11 => Command::RemoveXattr {
            path,
            name: g.pick(&[&b"user.k"[..], b"user.other", b""]).to_vec(),
        },
        12..=14 => Command::Write {
            path,
            offset: g.num(),
            data: g.data(),
        },
        15 => Command::Clone {
            offset: g.num(),
            len: g.num(),
            path,
            clone_uuid: g.pick(&[stream_uuid, parent_uuid, [9; 16]]),
            clone_ctransid: g.num(),
            clone_path: g.path(),
            clone_offset: g.num(),
        },
        16 => Command::Truncate {
            path,
            size: g.num(),
        },
        17 => Command::Chmod {
            path,
            mode: g.pick(&[0o644, 0o7777, 0o40755, u64::MAX]),
        },
        18 => Command::Chown {
            path,
            uid: g.pick(&[0, 1000, u32::MAX as u64, 1 << 32]),
            gid: g.pick(&[0, 1000, u64::MAX]),
        },
        19 => Command::Utimes {
            path,
            atime: g.time(),
            mtime: g.time(),
            ctime: g.time(),
            otime: None,
        },
        20 => Command::UpdateExtent {
            path,
            offset: g.num(),
            len: g.num(),
        },
        21 => Command::Fallocate {
            path,
            mode: g.pick(&[0, 1, 3, 2, 0x10, u32::MAX]),
            offset: g.num(),
            len: g.num(),
        },
        22 => Command::Fileattr {
            path,
            fileattr: g.num(),
        },
        23 | 24 => encoded_write(g),
        _ if g.u8().is_multiple_of(2) => Command::End,
        _ => Command::Subvol {
            path: b"again".to_vec(),
            uuid: stream_uuid,
            ctransid: 1,
        },
    }
}

/// A stream from the generator, and where its receive goes.
fn structured(g: &mut Gen, fs: &Fs) -> (Vec<u8>, &'static str) {
    let base = fs.snapshot("src", "base").unwrap().info().clone();
    let parent_uuid = *base.uuid.as_bytes();
    let stream_uuid = g.pick(&[[1u8; 16], parent_uuid]);
    let (first, target) = match g.u8() % 4 {
        0 => (
            Command::Subvol {
                path: g.pick(&[&b"r"[..], b"base", b""]).to_vec(),
                uuid: stream_uuid,
                ctransid: 7,
            },
            "dst",
        ),
        1 => (
            Command::Subvol {
                path: b"r".to_vec(),
                uuid: stream_uuid,
                ctransid: 7,
            },
            "src",
        ),
        _ => (
            Command::Snapshot {
                path: g.pick(&[&b"next"[..], b"base", b"n/x"]).to_vec(),
                uuid: stream_uuid,
                ctransid: 9,
                clone_uuid: g.pick(&[parent_uuid, parent_uuid, [9; 16]]),
                clone_ctransid: g.pick(&[base.tid.0, base.tid.0, 3]),
            },
            "src",
        ),
    };
    let mut w = SendStreamWriter::new(Vec::new(), StreamVersion::V2).unwrap();
    w.write_command(&first).unwrap();
    let count = g.u8() as usize % 48;
    for _ in 0..count {
        if g.done() {
            break;
        }
        let c = command(g, stream_uuid, parent_uuid);
        // The writer refuses what no reader accepts (e.g. paths leaving the subvolume).
        if w.write_command(&c).is_err() {
            continue;
        }
        if c == Command::End {
            break;
        }
    }
    let _ = w.end();
    let mut bytes = w.into_inner().unwrap();
    // Cut off: a stream interrupted in transit.
    if g.u8().is_multiple_of(8) {
        let keep = g.raw_u64() as usize % (bytes.len() + 1);
        bytes.truncate(keep);
    }
    (bytes, target)
}

fuzz_target!(|input: &[u8]| {
    let mut g = Gen { bytes: input };
    let mode = g.u8();
    let (fs, _src) = pool();
    // Raw bytes mostly stop in the reader; the generator gets three inputs in four.
    let (stream, target) = if mode & 3 == 0 {
        let mut raw = g.bytes.to_vec();
        if mode & 4 != 0 {
            repair_crcs(&mut raw);
        }
        (raw, if mode & 8 == 0 { "dst" } else { "src" })
    } else {
        structured(&mut g, &fs)
    };
    let opts = ReceiveOptions {
        resumable: mode & 16 != 0,
        force: false,
        checkpoint_commands: u64::from(mode >> 5) + 1,
    };
    let before = state(&fs);
    match receive(&fs, target, &stream[..], &opts, &mut |_| {}) {
        Ok(summary) => {
            assert!(fs.snapshot(target, &summary.snapshot.name).is_ok());
            assert_clean(&fs, "after a receive");
        }
        Err(e) => {
            if let ReceiveError::Interrupted { .. } = e {
                assert!(opts.resumable, "interrupted without resume: {e}");
                assert_clean(&fs, "after an interrupted receive");
                abort(&fs, target).unwrap_or_else(|a| panic!("abort after {e}: {a}"));
            }
            let after = state(&fs);
            if before != after {
                panic!(
                    "a failed receive changed the pool: {e}\n{}",
                    difference(&before, &after)
                );
            }
            assert_clean(&fs, "after a failed receive");
        }
    }
});
