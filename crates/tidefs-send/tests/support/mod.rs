//! Helpers shared by the send/receive tests: pools in memory, a deep tree comparison,
//! send-then-receive in one call, seeds.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use tidefs_fs::{Caller, ExtentKind, FileKind, Fs, ManualClock, Subvol, Timespec, ROOT_INO};
use tidefs_send::receive::{receive, ReceiveOptions};
use tidefs_send::{send_stream, SendRequest};
use tidefs_store::{CreateOptions, MemDevice, OpenOptions, Pool};
use tidefs_stream::StreamVersion;

pub const ROOT: Caller = Caller::ROOT;

/// A file system on an in-memory pool, with its clock.
/// Both fscks (file system and store) find nothing, after a commit.
pub fn assert_clean(fs: &Fs) {
    let problems = fs.fsck(true).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    fs.fsync().unwrap();
    assert!(tidefs_store::fsck(fs.pool(), &mut |_| {})
        .unwrap()
        .is_clean());
}

pub fn mem_fs() -> (Fs, Arc<ManualClock>) {
    let pool = Pool::create(
        Arc::new(MemDevice::new()),
        &CreateOptions::default(),
        &OpenOptions::default(),
    )
    .unwrap();
    let clock = Arc::new(ManualClock::new(Timespec::new(1_700_000_000, 0)));
    let fs = Fs::format(pool, clock.clone()).unwrap();
    (fs, clock)
}

/// A sender pool with subvolume "src", and its clock.
pub fn source() -> (Fs, Subvol, Arc<ManualClock>) {
    let (fs, clock) = mem_fs();
    fs.create_subvolume("src", &ROOT).unwrap();
    let sub = fs.subvolume("src").unwrap();
    (fs, sub, clock)
}

/// Everything observable about one inode, for comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: FileKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub size: u64,
    pub rdev: u64,
    pub atime: Timespec,
    pub mtime: Timespec,
    pub ctime: Timespec,
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// File bytes, symlink target.
    pub content: Vec<u8>,
    /// Data and preallocated ranges (merged), i.e. where the holes are.
    pub layout: Vec<(u64, u64, bool)>,
    /// Which paths share this inode (hard links), as the first path.
    pub link_group: Vec<u8>,
}

/// Data and preallocated ranges inside the file size, in whole blocks, merged (how they
/// are split into records, and whether small data is inline, is tidefs-fs's choice).
fn layout(sub: &Subvol, ino: u64) -> Vec<(u64, u64, bool)> {
    let size = sub.getattr(ino).unwrap().size;
    let mut out: Vec<(u64, u64, bool)> = Vec::new();
    for mut e in sub.extents(ino).unwrap() {
        if e.offset >= size {
            continue;
        }
        // Block granularity: small data may be stored inline, shorter than its block.
        let end = (e.offset + e.len).div_ceil(4096) * 4096;
        e.offset = e.offset / 4096 * 4096;
        e.len = end.min(size) - e.offset;
        let pre = e.kind == ExtentKind::Prealloc;
        match out.last_mut() {
            Some(last) if last.0 + last.1 == e.offset && last.2 == pre => last.1 += e.len,
            _ => out.push((e.offset, e.len, pre)),
        }
    }
    out
}

/// Path → node of a whole tree.
pub fn snapshot_tree(sub: &Subvol) -> BTreeMap<Vec<u8>, Node> {
    let mut out = BTreeMap::new();
    let mut first_path: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut stack = vec![(ROOT_INO, b"/".to_vec())];
    while let Some((ino, path)) = stack.pop() {
        let i = sub.getattr(ino).unwrap();
        let group = first_path
            .entry(ino)
            .or_insert_with(|| path.clone())
            .clone();
        let mut xattrs = BTreeMap::new();
        for name in sub.listxattr(ino).unwrap() {
            let v = sub.getxattr(ino, &name).unwrap();
            xattrs.insert(name, v);
        }
        let (content, lay) = match i.kind() {
            FileKind::Regular => (sub.read(ino, 0, i.size).unwrap(), layout(sub, ino)),
            FileKind::Symlink => (sub.readlink(ino).unwrap(), Vec::new()),
            _ => (Vec::new(), Vec::new()),
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
                    if p != b"/" {
                        p.push(b'/');
                    }
                    p.extend_from_slice(&e.name);
                    stack.push((e.ino, p));
                }
            }
        }
        out.insert(
            path,
            Node {
                kind: i.kind(),
                mode: i.mode,
                uid: i.uid,
                gid: i.gid,
                nlink: i.nlink,
                size: i.size,
                rdev: i.rdev,
                atime: i.atime,
                mtime: i.mtime,
                ctime: i.ctime,
                xattrs,
                content,
                layout: lay,
                link_group: group,
            },
        );
    }
    // Hard-link groups are compared by their smallest path (inode numbers differ).
    let mut groups: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    for (p, n) in &out {
        let g = groups
            .entry(n.link_group.clone())
            .or_insert_with(|| p.clone());
        if p < g {
            *g = p.clone();
        }
    }
    for n in out.values_mut() {
        n.link_group = groups[&n.link_group].clone();
    }
    out
}

/// Compares two trees in every respect; `holes`: compare the hole layout too.
pub fn assert_same_tree(expected: &Subvol, actual: &Subvol, holes: bool) {
    let a = snapshot_tree(expected);
    let b = snapshot_tree(actual);
    let a_paths: Vec<_> = a
        .keys()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    let b_paths: Vec<_> = b
        .keys()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    assert_eq!(a_paths, b_paths, "different names");
    for (p, na) in &a {
        let mut nb = b[p].clone();
        let mut na = na.clone();
        if !holes {
            na.layout.clear();
            nb.layout.clear();
        }
        if na != nb {
            let show = |n: &Node| {
                let mut n = n.clone();
                let sum: u64 = n
                    .content
                    .iter()
                    .enumerate()
                    .map(|(i, b)| (i as u64 + 1) * u64::from(*b))
                    .sum();
                n.content = format!("{} bytes, sum {sum}", n.content.len()).into_bytes();
                n.xattrs = n
                    .xattrs
                    .into_iter()
                    .map(|(k, v)| (k, format!("{} bytes", v.len()).into_bytes()))
                    .collect();
                format!("{n:?}").replace("content: ", "content: ")
            };
            panic!(
                "{} differs:\n expected {}\n   actual {}",
                String::from_utf8_lossy(p),
                show(&na),
                show(&nb)
            );
        }
    }
}

/// Sends `snap` (incrementally from `parent`) and returns the stream.
pub fn send_bytes(
    fs: &Fs,
    snap: &Subvol,
    parent: Option<&Subvol>,
    clones: &[Subvol],
    version: StreamVersion,
) -> Vec<u8> {
    let req = SendRequest {
        fs,
        snapshot: snap.clone(),
        parent: parent.cloned(),
        clone_sources: clones.to_vec(),
        version,
    };
    let (_, out) = send_stream(&req, Vec::new(), None, None).expect("send");
    out
}

/// Receives `stream` into subvolume `name` of `fs`; returns the received snapshot.
pub fn receive_bytes(fs: &Fs, name: &str, stream: &[u8]) -> Subvol {
    let s = receive(fs, name, stream, &ReceiveOptions::default(), &mut |_| {}).expect("receive");
    fs.open_id(s.snapshot.id).unwrap()
}

/// The seeds a randomized test runs: `TIDEFS_SEED` replays one, otherwise `count` fresh ones.
pub fn seeds(count: u64) -> Vec<u64> {
    match std::env::var("TIDEFS_SEED") {
        Ok(s) => vec![s.parse().expect("TIDEFS_SEED must be a number")],
        Err(_) => {
            let base = u64::from(rand::random::<u32>());
            (0..count).map(|i| base * 100_000 + i).collect()
        }
    }
}

/// Runs `f(seed)`, naming the seed if it panics so the failure can be replayed.
pub fn run_seeded(name: &str, seed: u64, f: impl FnOnce(u64)) {
    if let Err(e) = catch_unwind(AssertUnwindSafe(|| f(seed))) {
        eprintln!("\n{name} failed with seed {seed}; replay with TIDEFS_SEED={seed}\n");
        std::panic::resume_unwind(e);
    }
}

/// Path-based operations on a subvolume, for readable scenarios.
pub struct Ops<'a> {
    pub sub: &'a Subvol,
    pub clock: &'a ManualClock,
}

fn split_path(path: &str) -> (&str, &str) {
    let i = path.rfind('/').expect("absolute path");
    (if i == 0 { "/" } else { &path[..i] }, &path[i + 1..])
}

impl Ops<'_> {
    fn tick(&self) {
        self.clock.advance_nanos(1_000_123);
    }
    pub fn ino(&self, path: &str) -> u64 {
        self.sub
            .resolve(path.as_bytes())
            .unwrap_or_else(|e| panic!("{path}: {e}"))
    }
    fn parent(&self, path: &str) -> (u64, Vec<u8>) {
        let (d, n) = split_path(path);
        (self.ino(d), n.as_bytes().to_vec())
    }
    pub fn mkdir(&self, path: &str) -> u64 {
        self.tick();
        let (d, n) = self.parent(path);
        self.sub.mkdir(d, &n, 0o755, &ROOT).unwrap().ino
    }
    pub fn file(&self, path: &str, data: &[u8]) -> u64 {
        self.tick();
        let (d, n) = self.parent(path);
        let ino = self.sub.create(d, &n, 0o644, &ROOT).unwrap().ino;
        if !data.is_empty() {
            self.sub.write(ino, 0, data, &ROOT).unwrap();
        }
        ino
    }
    pub fn write(&self, path: &str, offset: u64, data: &[u8]) {
        self.tick();
        let ino = self.ino(path);
        self.sub.write(ino, offset, data, &ROOT).unwrap();
    }
    pub fn truncate(&self, path: &str, size: u64) {
        self.tick();
        let ino = self.ino(path);
        self.sub.truncate(ino, size, &ROOT).unwrap();
    }
    pub fn punch(&self, path: &str, offset: u64, len: u64) {
        self.tick();
        let ino = self.ino(path);
        self.sub.fallocate(ino, 3, offset, len).unwrap();
    }
    pub fn prealloc(&self, path: &str, offset: u64, len: u64) {
        self.tick();
        let ino = self.ino(path);
        self.sub.fallocate(ino, 1, offset, len).unwrap();
    }
    pub fn mv(&self, from: &str, to: &str) {
        self.tick();
        let (d1, n1) = self.parent(from);
        let (d2, n2) = self.parent(to);
        self.sub
            .rename(d1, &n1, d2, &n2, 0, &ROOT)
            .unwrap_or_else(|e| panic!("mv {from} {to}: {e}"));
    }
    pub fn exchange(&self, a: &str, b: &str) {
        self.tick();
        let (d1, n1) = self.parent(a);
        let (d2, n2) = self.parent(b);
        self.sub
            .rename(d1, &n1, d2, &n2, tidefs_fs::rename_flags::EXCHANGE, &ROOT)
            .unwrap_or_else(|e| panic!("exchange {a} {b}: {e}"));
    }
    pub fn rm(&self, path: &str) {
        self.tick();
        let (d, n) = self.parent(path);
        self.sub
            .unlink(d, &n, &ROOT)
            .unwrap_or_else(|e| panic!("rm {path}: {e}"));
    }
    pub fn rmdir(&self, path: &str) {
        self.tick();
        let (d, n) = self.parent(path);
        self.sub
            .rmdir(d, &n, &ROOT)
            .unwrap_or_else(|e| panic!("rmdir {path}: {e}"));
    }
    pub fn link(&self, existing: &str, new: &str) {
        self.tick();
        let ino = self.ino(existing);
        let (d, n) = self.parent(new);
        self.sub.link(ino, d, &n).unwrap();
    }
    pub fn symlink(&self, path: &str, target: &str) {
        self.tick();
        let (d, n) = self.parent(path);
        self.sub.symlink(d, &n, target.as_bytes(), &ROOT).unwrap();
    }
    pub fn mknod(&self, path: &str, mode: u32, rdev: u64) {
        self.tick();
        let (d, n) = self.parent(path);
        self.sub.mknod(d, &n, mode, rdev, &ROOT).unwrap();
    }
    pub fn chmod(&self, path: &str, mode: u32) {
        self.tick();
        let ino = self.ino(path);
        let a = tidefs_fs::SetAttr {
            mode: Some(mode),
            ..Default::default()
        };
        self.sub.setattr(ino, &a, &ROOT).unwrap();
    }
    pub fn chown(&self, path: &str, uid: u32, gid: u32) {
        self.tick();
        let ino = self.ino(path);
        let a = tidefs_fs::SetAttr {
            uid: Some(uid),
            gid: Some(gid),
            ..Default::default()
        };
        self.sub.setattr(ino, &a, &ROOT).unwrap();
    }
    pub fn utimes(&self, path: &str, sec: i64) {
        self.tick();
        let ino = self.ino(path);
        let a = tidefs_fs::SetAttr {
            atime: Some(tidefs_fs::TimeSet::At(Timespec::new(sec, 5))),
            mtime: Some(tidefs_fs::TimeSet::At(Timespec::new(sec + 1, 7))),
            ..Default::default()
        };
        self.sub.setattr(ino, &a, &ROOT).unwrap();
    }
    pub fn setxattr(&self, path: &str, name: &str, value: &[u8]) {
        self.tick();
        let ino = self.ino(path);
        self.sub.setxattr(ino, name.as_bytes(), value, 0).unwrap();
    }
    pub fn rmxattr(&self, path: &str, name: &str) {
        self.tick();
        let ino = self.ino(path);
        self.sub.removexattr(ino, name.as_bytes()).unwrap();
    }
}

/// Runs a scenario: `setup`, snapshot `a`; `change`, snapshot `b`. Sends `a` in full and
/// `b` incrementally (stream versions 1 and 2) into a fresh pool and checks that each
/// received snapshot equals its source. Returns the incremental v2 stream.
pub fn check_scenario(setup: impl Fn(&Ops), change: impl Fn(&Ops)) -> Vec<u8> {
    let (fs, sub, clock) = source();
    let ops = Ops {
        sub: &sub,
        clock: &clock,
    };
    setup(&ops);
    fs.create_snapshot("src", "a").unwrap();
    change(&ops);
    fs.create_snapshot("src", "b").unwrap();
    let a = fs.snapshot("src", "a").unwrap();
    let b = fs.snapshot("src", "b").unwrap();
    let mut last = Vec::new();
    for version in [StreamVersion::V2, StreamVersion::V1] {
        let (dst, _) = mem_fs();
        let full = send_bytes(&fs, &a, None, &[], version);
        let ra = receive_bytes(&dst, "dst", &full);
        assert_same_tree(&a, &ra, version == StreamVersion::V2);
        let inc = send_bytes(&fs, &b, Some(&a), &[], version);
        let rb = receive_bytes(&dst, "dst", &inc);
        assert_same_tree(&b, &rb, version == StreamVersion::V2);
        // The receive left a clean pool.
        let problems = dst.fsck(true).unwrap();
        assert!(problems.is_empty(), "fsck: {problems:?}");
        if version == StreamVersion::V2 {
            last = inc;
        }
    }
    last
}
