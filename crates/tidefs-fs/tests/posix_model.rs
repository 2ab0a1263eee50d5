//! Proves that tidefs answers random sequences of POSIX operations exactly as the host
//! kernel does on a real directory: every result and errno, and the final tree (names,
//! types, modes, owners, sizes, contents, link counts, hard-link groups, xattrs, symlink
//! targets, device numbers).
//!
//! Runs as root here, which hides: permission checks (EACCES), the sticky-bit rule, and
//! the clearing of setuid/setgid on write and truncate by unprivileged users (root keeps
//! them: CAP_FSETID). Those are covered by `basic_ops.rs` against hand-written
//! expectations. Times are compared only where they are set explicitly (utimensat), since
//! the two sides have different clocks. `TIDEFS_SEED=n` replays one seed.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rustix::fs::{
    self as rfs, AtFlags, FileType, Mode, OFlags, RenameFlags, Timespec as RTimespec, Timestamps,
    CWD,
};
use tidefs_fs::{falloc, FileKind, Fs, SetAttr, Subvol, TimeSet, Timespec, ROOT_INO};

use common::{assert_clean, mem_fs, run_seeded, seeds, ROOT};

const OPS_PER_SEED: usize = 400;
const SEEDS: u64 = 25;

type R<T> = Result<T, i32>;

fn host<T>(r: rustix::io::Result<T>) -> R<T> {
    r.map_err(|e| e.raw_os_error())
}

fn tfs<T>(r: tidefs_fs::Result<T>) -> R<T> {
    r.map_err(|e| e.errno())
}

struct Open {
    fd: OwnedFd,
    ino: u64,
}

struct World {
    root: PathBuf,
    fs: Fs,
    sub: Subvol,
    rng: ChaCha8Rng,
    open: Vec<Open>,
    /// Entries of the host tree: relative path → type.
    entries: Vec<(Vec<u8>, FileType)>,
    log: Vec<String>,
}

fn join(parts: &[&[u8]]) -> Vec<u8> {
    parts.join(&b'/')
}

impl World {
    fn host_path(&self, rel: &[u8]) -> PathBuf {
        if rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(OsStr::from_bytes(rel))
        }
    }

    fn refresh(&mut self) {
        fn walk(dir: &Path, rel: &[u8], out: &mut Vec<(Vec<u8>, FileType)>) {
            let mut names: Vec<_> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            names.sort();
            for name in names {
                let p = dir.join(&name);
                let r = if rel.is_empty() {
                    name.as_bytes().to_vec()
                } else {
                    join(&[rel, name.as_bytes()])
                };
                let st = rfs::statat(CWD, &p, AtFlags::SYMLINK_NOFOLLOW).unwrap();
                let ft = FileType::from_raw_mode(st.st_mode);
                out.push((r.clone(), ft));
                if ft == FileType::Directory {
                    walk(&p, &r, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.root, b"", &mut out);
        self.entries = out;
    }

    fn name(&mut self) -> Vec<u8> {
        let r = self.rng.gen_range(0..100);
        if r < 4 {
            vec![b'L'; 255]
        } else if r < 6 {
            vec![b'M'; 256]
        } else {
            vec![b"abcdef"[self.rng.gen_range(0..6)]]
        }
    }

    fn pick_entry(&mut self, want: impl Fn(FileType) -> bool) -> Option<Vec<u8>> {
        let c: Vec<&Vec<u8>> = self
            .entries
            .iter()
            .filter(|(_, t)| want(*t))
            .map(|(p, _)| p)
            .collect();
        if c.is_empty() {
            None
        } else {
            Some(c[self.rng.gen_range(0..c.len())].clone())
        }
    }

    /// A directory to create in: usually a real one (or the root), sometimes a file (ENOTDIR)
    /// or a missing one (ENOENT).
    fn parent(&mut self) -> Vec<u8> {
        let r = self.rng.gen_range(0..100);
        if r < 4 {
            if let Some(f) = self.pick_entry(|t| t == FileType::RegularFile) {
                return f;
            }
        }
        if r < 7 {
            return b"zz".to_vec();
        }
        if r < 30 {
            return Vec::new();
        }
        self.pick_entry(|t| t == FileType::Directory)
            .unwrap_or_default()
    }

    fn new_path(&mut self) -> Vec<u8> {
        let p = self.parent();
        let n = self.name();
        if p.is_empty() {
            n
        } else {
            join(&[&p, &n])
        }
    }

    /// An existing entry accepted by `want`, or now and then a path that may not exist.
    fn existing(&mut self, want: impl Fn(FileType) -> bool) -> Vec<u8> {
        if self.rng.gen_range(0..100) < 10 {
            return self.new_path();
        }
        self.pick_entry(want).unwrap_or_else(|| b"zz".to_vec())
    }

    /// The kernel follows symlinks where tidefs' inode operations do not; operations that
    /// follow are not aimed at symlinks.
    fn is_symlink(&self, rel: &[u8]) -> bool {
        self.entries
            .iter()
            .any(|(e, t)| e == rel && *t == FileType::Symlink)
    }

    /// Opening fifos, sockets and devices does things (block, ENXIO, reach a device)
    /// that say nothing about the file system; data operations leave them alone.
    fn is_special(&self, rel: &[u8]) -> bool {
        self.entries
            .iter()
            .any(|(e, t)| e == rel && !matches!(t, FileType::RegularFile | FileType::Directory))
    }

    fn split(rel: &[u8]) -> (Vec<u8>, Vec<u8>) {
        match rel.iter().rposition(|&b| b == b'/') {
            Some(i) => (rel[..i].to_vec(), rel[i + 1..].to_vec()),
            None => (Vec::new(), rel.to_vec()),
        }
    }

    fn t_resolve(&self, rel: &[u8]) -> R<u64> {
        let mut p = b"/".to_vec();
        p.extend_from_slice(rel);
        tfs(self.sub.resolve(&p))
    }

    /// The parent directory and last name of `rel`, as the kernel's path walk finds them:
    /// a parent that is not a directory fails here with ENOTDIR, before any other path of
    /// the same call is looked at (rename walks the old path first).
    fn t_parent(&self, rel: &[u8]) -> R<(u64, Vec<u8>)> {
        let (dir, name) = Self::split(rel);
        let ino = self.t_resolve(&dir)?;
        if !tfs(self.sub.getattr(ino))?.is_dir() {
            return Err(rustix::io::Errno::NOTDIR.raw_os_error());
        }
        Ok((ino, name))
    }

    fn check<T: PartialEq + std::fmt::Debug>(&self, what: &str, h: R<T>, t: R<T>) {
        if h != t {
            let tail: Vec<&String> = self.log.iter().rev().take(15).collect();
            panic!("{what}: host {h:?}, tidefs {t:?}\nlast ops (newest first):\n{tail:#?}");
        }
    }

    fn step(&mut self, i: usize) {
        let op = self.rng.gen_range(0..100);
        match op {
            0..=7 => self.op_create(),
            8..=14 => self.op_mkdir(),
            15..=17 => self.op_mknod(),
            18..=21 => self.op_symlink(),
            22..=27 => self.op_link(),
            28..=35 => self.op_unlink(),
            36..=40 => self.op_rmdir(),
            41..=52 => self.op_rename(),
            53..=60 => self.op_write(),
            61..=64 => self.op_truncate(),
            65..=67 => self.op_open(),
            68..=73 => self.op_fd_io(),
            74..=76 => self.op_close(),
            77..=82 => self.op_xattr(),
            83..=85 => self.op_chmod(),
            86..=87 => self.op_chown(),
            88..=91 => self.op_utimens(),
            92..=97 => self.op_read_file(),
            _ => {
                self.log.push("fsync".into());
                self.sub.fsync().unwrap();
            }
        }
        self.refresh();
        if i % 100 == 99 {
            self.compare_trees();
        }
    }

    fn op_create(&mut self) {
        let p = self.new_path();
        let mode = self.rng.gen_range(0..0o1000u32);
        self.log
            .push(format!("create {} {mode:o}", String::from_utf8_lossy(&p)));
        let h = host(rfs::openat(
            CWD,
            self.host_path(&p),
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY,
            Mode::from_raw_mode(mode),
        ))
        .map(|_| ());
        let t = self
            .t_parent(&p)
            .and_then(|(d, n)| tfs(self.sub.create(d, &n, mode, &ROOT)).map(|_| ()));
        self.check("create", h, t);
    }

    fn op_mkdir(&mut self) {
        let p = self.new_path();
        let mode = if self.rng.gen_bool(0.1) {
            0o2775
        } else {
            0o755
        };
        self.log
            .push(format!("mkdir {} {mode:o}", String::from_utf8_lossy(&p)));
        let h = host(rfs::mkdirat(
            CWD,
            self.host_path(&p),
            Mode::from_raw_mode(mode),
        ));
        let t = self
            .t_parent(&p)
            .and_then(|(d, n)| tfs(self.sub.mkdir(d, &n, mode, &ROOT)).map(|_| ()));
        self.check("mkdir", h, t);
    }

    fn op_mknod(&mut self) {
        let p = self.new_path();
        let (ft, bits, dev) = match self.rng.gen_range(0..3) {
            0 => (FileType::Fifo, 0o010000, 0),
            1 => (FileType::Socket, 0o140000, 0),
            _ => (FileType::CharacterDevice, 0o020000, rfs::makedev(1, 3)),
        };
        self.log
            .push(format!("mknod {} {ft:?}", String::from_utf8_lossy(&p)));
        let h = host(rfs::mknodat(
            CWD,
            self.host_path(&p),
            ft,
            Mode::from_raw_mode(0o640),
            dev,
        ));
        let t = self
            .t_parent(&p)
            .and_then(|(d, n)| tfs(self.sub.mknod(d, &n, bits | 0o640, dev, &ROOT)).map(|_| ()));
        self.check("mknod", h, t);
    }

    fn op_symlink(&mut self) {
        let p = self.new_path();
        // Targets that never resolve, so the kernel's following of symlinks never matters.
        let target = match self.rng.gen_range(0..4) {
            0 => vec![b'q'; 4095],
            1 => b"/no/such/target".to_vec(),
            _ => format!("../nowhere-{}", self.rng.gen_range(0..1000)).into_bytes(),
        };
        self.log
            .push(format!("symlink {}", String::from_utf8_lossy(&p)));
        let h = host(rfs::symlinkat(
            OsStr::from_bytes(&target),
            CWD,
            self.host_path(&p),
        ));
        let t = self
            .t_parent(&p)
            .and_then(|(d, n)| tfs(self.sub.symlink(d, &n, &target, &ROOT)).map(|_| ()));
        self.check("symlink", h, t);
    }

    fn op_link(&mut self) {
        let old = self.existing(|_| true);
        let new = self.new_path();
        self.log.push(format!(
            "link {} {}",
            String::from_utf8_lossy(&old),
            String::from_utf8_lossy(&new)
        ));
        let h = host(rfs::linkat(
            CWD,
            self.host_path(&old),
            CWD,
            self.host_path(&new),
            AtFlags::empty(),
        ));
        let t = self.t_resolve(&old).and_then(|ino| {
            let (d, n) = self.t_parent(&new)?;
            tfs(self.sub.link(ino, d, &n)).map(|_| ())
        });
        self.check("link", h, t);
    }

    fn op_unlink(&mut self) {
        let p = self.existing(|_| true);
        self.log
            .push(format!("unlink {}", String::from_utf8_lossy(&p)));
        let h = host(rfs::unlinkat(CWD, self.host_path(&p), AtFlags::empty()));
        let t = self
            .t_parent(&p)
            .and_then(|(d, n)| tfs(self.sub.unlink(d, &n, &ROOT)));
        self.check("unlink", h, t);
    }

    fn op_rmdir(&mut self) {
        let p = self.existing(|t| t == FileType::Directory || t == FileType::RegularFile);
        self.log
            .push(format!("rmdir {}", String::from_utf8_lossy(&p)));
        let h = host(rfs::unlinkat(CWD, self.host_path(&p), AtFlags::REMOVEDIR));
        let t = self
            .t_parent(&p)
            .and_then(|(d, n)| tfs(self.sub.rmdir(d, &n, &ROOT)));
        self.check("rmdir", h, t);
    }

    fn op_rename(&mut self) {
        let old = self.existing(|_| true);
        let new = if self.rng.gen_bool(0.5) {
            self.existing(|_| true)
        } else {
            self.new_path()
        };
        let (hf, tf) = match self.rng.gen_range(0..10) {
            0..=5 => (RenameFlags::empty(), 0),
            6 | 7 => (RenameFlags::NOREPLACE, tidefs_fs::rename_flags::NOREPLACE),
            _ => (RenameFlags::EXCHANGE, tidefs_fs::rename_flags::EXCHANGE),
        };
        self.log.push(format!(
            "rename {} {} {tf}",
            String::from_utf8_lossy(&old),
            String::from_utf8_lossy(&new)
        ));
        let h = host(rfs::renameat_with(
            CWD,
            self.host_path(&old),
            CWD,
            self.host_path(&new),
            hf,
        ));
        let t = self.t_parent(&old).and_then(|(od, on)| {
            let (nd, nn) = self.t_parent(&new)?;
            tfs(self.sub.rename(od, &on, nd, &nn, tf, &ROOT))
        });
        self.check("rename", h, t);
    }

    fn data(&mut self) -> (u64, Vec<u8>) {
        let off = match self.rng.gen_range(0..10) {
            0..=6 => self.rng.gen_range(0..16384),
            7 | 8 => self.rng.gen_range(0..1 << 20),
            _ => 0,
        };
        let len = match self.rng.gen_range(0..3) {
            0 => self.rng.gen_range(1..64),
            1 => self.rng.gen_range(1..3000),
            _ => self.rng.gen_range(1..3 * 4096 + 100),
        };
        let mut d = vec![0u8; len];
        self.rng.fill(&mut d[..]);
        (off, d)
    }

    fn op_write(&mut self) {
        let p = self.existing(|t| t == FileType::RegularFile || t == FileType::Directory);
        if self.is_special(&p) {
            return;
        }
        let (off, d) = self.data();
        self.log.push(format!(
            "write {} @{off} +{}",
            String::from_utf8_lossy(&p),
            d.len()
        ));
        let h = host(rfs::openat(
            CWD,
            self.host_path(&p),
            OFlags::WRONLY,
            Mode::empty(),
        ))
        .and_then(|fd| host(rustix::io::pwrite(&fd, &d, off)));
        let t = self
            .t_resolve(&p)
            .and_then(|ino| tfs(self.sub.write(ino, off, &d, &ROOT)));
        self.check("write", h, t);
    }

    fn op_truncate(&mut self) {
        let p = self.existing(|t| t == FileType::RegularFile || t == FileType::Directory);
        if self.is_special(&p) {
            return;
        }
        let size = if self.rng.gen_bool(0.8) {
            self.rng.gen_range(0..20000)
        } else {
            self.rng.gen_range(0..1 << 21)
        };
        self.log
            .push(format!("truncate {} {size}", String::from_utf8_lossy(&p)));
        let h = host(rfs::openat(
            CWD,
            self.host_path(&p),
            OFlags::WRONLY,
            Mode::empty(),
        ))
        .and_then(|fd| host(rfs::ftruncate(&fd, size)));
        let t = self
            .t_resolve(&p)
            .and_then(|ino| tfs(self.sub.truncate(ino, size, &ROOT)).map(|_| ()));
        self.check("truncate", h, t);
    }

    fn op_open(&mut self) {
        let Some(p) = self.pick_entry(|t| t == FileType::RegularFile) else {
            return;
        };
        self.log
            .push(format!("open {}", String::from_utf8_lossy(&p)));
        let fd = rfs::openat(CWD, self.host_path(&p), OFlags::RDWR, Mode::empty()).unwrap();
        let ino = self.t_resolve(&p).unwrap();
        self.sub.open(ino).unwrap();
        self.open.push(Open { fd, ino });
    }

    fn op_fd_io(&mut self) {
        if self.open.is_empty() {
            return;
        }
        let i = self.rng.gen_range(0..self.open.len());
        match self.rng.gen_range(0..5) {
            0 | 1 => {
                let (off, d) = self.data();
                self.log
                    .push(format!("fd write {} @{off} +{}", self.open[i].ino, d.len()));
                let h = host(rustix::io::pwrite(&self.open[i].fd, &d, off));
                let t = tfs(self.sub.write(self.open[i].ino, off, &d, &ROOT));
                self.check("fd write", h, t);
            }
            2 => {
                let size = self.rng.gen_range(0..30000);
                self.log
                    .push(format!("fd truncate {} {size}", self.open[i].ino));
                let h = host(rfs::ftruncate(&self.open[i].fd, size));
                let t = tfs(self.sub.truncate(self.open[i].ino, size, &ROOT)).map(|_| ());
                self.check("fd truncate", h, t);
            }
            3 => {
                let punch = self.rng.gen_bool(0.6);
                let off = self.rng.gen_range(0..40000);
                let len = self.rng.gen_range(1..20000);
                self.log.push(format!(
                    "fallocate {} punch={punch} @{off} +{len}",
                    self.open[i].ino
                ));
                let (hm, tm) = if punch {
                    (
                        rfs::FallocateFlags::PUNCH_HOLE | rfs::FallocateFlags::KEEP_SIZE,
                        falloc::PUNCH_HOLE | falloc::KEEP_SIZE,
                    )
                } else {
                    (rfs::FallocateFlags::KEEP_SIZE, falloc::KEEP_SIZE)
                };
                let h = host(rfs::fallocate(&self.open[i].fd, hm, off, len));
                let t = tfs(self.sub.fallocate(self.open[i].ino, tm, off, len));
                self.check("fallocate", h, t);
            }
            _ => {
                let size = rfs::fstat(&self.open[i].fd).unwrap().st_size as u64;
                self.log.push(format!("fd read {}", self.open[i].ino));
                let mut buf = vec![0u8; size as usize + 10];
                let n = rustix::io::pread(&self.open[i].fd, &mut buf[..], 0).unwrap();
                buf.truncate(n);
                let t = tfs(self.sub.read(self.open[i].ino, 0, size + 10));
                self.check("fd read", Ok(buf), t);
                let st = rfs::fstat(&self.open[i].fd).unwrap();
                let a = self.sub.getattr(self.open[i].ino).unwrap();
                self.check(
                    "fd stat nlink/size",
                    Ok((st.st_nlink as u32, st.st_size as u64)),
                    Ok((a.nlink, a.size)),
                );
            }
        }
    }

    fn op_close(&mut self) {
        if self.open.is_empty() {
            return;
        }
        let i = self.rng.gen_range(0..self.open.len());
        let o = self.open.swap_remove(i);
        self.log.push(format!("close {}", o.ino));
        drop(o.fd);
        self.sub.release(o.ino).unwrap();
    }

    fn op_xattr(&mut self) {
        let p = self.existing(|_| true);
        let name = format!("user.{}", ["a", "b", "c"][self.rng.gen_range(0..3)]);
        match self.rng.gen_range(0..4) {
            0 | 1 => {
                let mut v = vec![0u8; self.rng.gen_range(0..100)];
                self.rng.fill(&mut v[..]);
                let (hf, tf) = match self.rng.gen_range(0..4) {
                    0 => (rfs::XattrFlags::CREATE, tidefs_fs::xattr_flags::CREATE),
                    1 => (rfs::XattrFlags::REPLACE, tidefs_fs::xattr_flags::REPLACE),
                    _ => (rfs::XattrFlags::empty(), 0),
                };
                self.log.push(format!(
                    "setxattr {} {name} {tf}",
                    String::from_utf8_lossy(&p)
                ));
                let h = host(rfs::lsetxattr(self.host_path(&p), name.as_str(), &v, hf));
                let t = self
                    .t_resolve(&p)
                    .and_then(|ino| tfs(self.sub.setxattr(ino, name.as_bytes(), &v, tf)));
                self.check("setxattr", h, t);
            }
            2 => {
                self.log.push(format!(
                    "removexattr {} {name}",
                    String::from_utf8_lossy(&p)
                ));
                let h = host(rfs::lremovexattr(self.host_path(&p), name.as_str()));
                let t = self
                    .t_resolve(&p)
                    .and_then(|ino| tfs(self.sub.removexattr(ino, name.as_bytes())));
                self.check("removexattr", h, t);
            }
            _ => {
                self.log
                    .push(format!("getxattr {} {name}", String::from_utf8_lossy(&p)));
                let mut buf = vec![0u8; 65536];
                let h = host(rfs::lgetxattr(
                    self.host_path(&p),
                    name.as_str(),
                    &mut buf[..],
                ))
                .map(|n| buf[..n].to_vec());
                let t = self
                    .t_resolve(&p)
                    .and_then(|ino| tfs(self.sub.getxattr(ino, name.as_bytes())));
                self.check("getxattr", h, t);
            }
        }
    }

    fn op_chmod(&mut self) {
        let p = self.existing(|t| t != FileType::Symlink);
        if self.is_symlink(&p) {
            return;
        }
        let mode = self.rng.gen_range(0..0o10000u32);
        self.log
            .push(format!("chmod {} {mode:o}", String::from_utf8_lossy(&p)));
        let h = host(rfs::chmodat(
            CWD,
            self.host_path(&p),
            Mode::from_raw_mode(mode),
            AtFlags::empty(),
        ));
        let t = self.t_resolve(&p).and_then(|ino| {
            let attr = SetAttr {
                mode: Some(mode),
                ..SetAttr::default()
            };
            tfs(self.sub.setattr(ino, &attr, &ROOT)).map(|_| ())
        });
        self.check("chmod", h, t);
    }

    fn op_chown(&mut self) {
        let p = self.existing(|_| true);
        let ids = [0u32, 1000, 65534];
        let uid = ids[self.rng.gen_range(0..3)];
        let gid = ids[self.rng.gen_range(0..3)];
        self.log
            .push(format!("chown {} {uid}:{gid}", String::from_utf8_lossy(&p)));
        let h = host(rfs::chownat(
            CWD,
            self.host_path(&p),
            Some(rfs::Uid::from_raw(uid)),
            Some(rfs::Gid::from_raw(gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        ));
        let t = self.t_resolve(&p).and_then(|ino| {
            let attr = SetAttr {
                uid: Some(uid),
                gid: Some(gid),
                ..SetAttr::default()
            };
            tfs(self.sub.setattr(ino, &attr, &ROOT)).map(|_| ())
        });
        self.check("chown", h, t);
    }

    fn op_utimens(&mut self) {
        let p = self.existing(|_| true);
        let a = Timespec::new(
            self.rng.gen_range(0..1 << 31),
            self.rng.gen_range(0..1_000_000_000),
        );
        let m = Timespec::new(
            self.rng.gen_range(0..1 << 31),
            self.rng.gen_range(0..1_000_000_000),
        );
        self.log
            .push(format!("utimens {}", String::from_utf8_lossy(&p)));
        let ts = |t: Timespec| RTimespec {
            tv_sec: t.sec,
            tv_nsec: t.nsec.into(),
        };
        let times = Timestamps {
            last_access: ts(a),
            last_modification: ts(m),
        };
        let h = host(rfs::utimensat(
            CWD,
            self.host_path(&p),
            &times,
            AtFlags::SYMLINK_NOFOLLOW,
        ))
        .map(|_| {
            let st = rfs::statat(CWD, self.host_path(&p), AtFlags::SYMLINK_NOFOLLOW).unwrap();
            (
                Timespec::new(st.st_atime, st.st_atime_nsec as u32),
                Timespec::new(st.st_mtime, st.st_mtime_nsec as u32),
            )
        });
        let t = self.t_resolve(&p).and_then(|ino| {
            let attr = SetAttr {
                atime: Some(TimeSet::At(a)),
                mtime: Some(TimeSet::At(m)),
                ..SetAttr::default()
            };
            tfs(self.sub.setattr(ino, &attr, &ROOT)).map(|i| (i.atime, i.mtime))
        });
        self.check("utimens", h, t);
    }

    fn op_read_file(&mut self) {
        let Some(p) = self.pick_entry(|t| t == FileType::RegularFile) else {
            return;
        };
        self.log
            .push(format!("read {}", String::from_utf8_lossy(&p)));
        let h = std::fs::read(self.host_path(&p)).unwrap();
        let ino = self.t_resolve(&p).unwrap();
        let t = tfs(self.sub.read(ino, 0, u64::MAX / 2));
        self.check("read", Ok(h), t);
    }

    /// Everything about both trees, keyed by path; hard links as groups of paths.
    fn compare_trees(&mut self) {
        let h = self.host_tree();
        let t = self.tidefs_tree();
        if h != t {
            for (k, v) in &h {
                if t.get(k) != Some(v) {
                    eprintln!(
                        "host   {} {v:?}\ntidefs {:?}",
                        String::from_utf8_lossy(k),
                        t.get(k)
                    );
                }
            }
            for k in t.keys() {
                if !h.contains_key(k) {
                    eprintln!("only in tidefs: {}", String::from_utf8_lossy(k));
                }
            }
            let tail: Vec<&String> = self.log.iter().rev().take(15).collect();
            panic!("trees differ; last ops (newest first):\n{tail:#?}");
        }
    }

    fn host_tree(&self) -> BTreeMap<Vec<u8>, Node> {
        let mut out = BTreeMap::new();
        let mut groups: BTreeMap<u64, Vec<Vec<u8>>> = BTreeMap::new();
        for (rel, _) in &self.entries {
            let p = self.host_path(rel);
            let st = rfs::statat(CWD, &p, AtFlags::SYMLINK_NOFOLLOW).unwrap();
            let ft = FileType::from_raw_mode(st.st_mode);
            let mut names = vec![0u8; 4096];
            let n = rfs::llistxattr(&p, &mut names[..]).unwrap();
            let mut xattrs = BTreeMap::new();
            for name in names[..n].split(|&b| b == 0).filter(|s| !s.is_empty()) {
                let mut v = vec![0u8; 65536];
                let len = rfs::lgetxattr(&p, OsStr::from_bytes(name), &mut v[..]).unwrap();
                xattrs.insert(name.to_vec(), v[..len].to_vec());
            }
            groups.entry(st.st_ino).or_default().push(rel.clone());
            out.insert(
                rel.clone(),
                Node {
                    mode: st.st_mode,
                    uid: st.st_uid,
                    gid: st.st_gid,
                    nlink: st.st_nlink as u32,
                    size: if ft == FileType::Directory {
                        0
                    } else {
                        st.st_size as u64
                    },
                    rdev: if ft == FileType::CharacterDevice {
                        st.st_rdev
                    } else {
                        0
                    },
                    content: match ft {
                        FileType::RegularFile => std::fs::read(&p).unwrap(),
                        FileType::Symlink => {
                            rfs::readlinkat(CWD, &p, Vec::new()).unwrap().into_bytes()
                        }
                        _ => Vec::new(),
                    },
                    xattrs,
                    links: Vec::new(),
                },
            );
        }
        link_groups(&mut out, groups);
        out
    }

    fn tidefs_tree(&self) -> BTreeMap<Vec<u8>, Node> {
        let mut out = BTreeMap::new();
        let mut groups: BTreeMap<u64, Vec<Vec<u8>>> = BTreeMap::new();
        let mut stack = vec![(ROOT_INO, Vec::new())];
        while let Some((dir, rel)) = stack.pop() {
            for e in self
                .sub
                .readdir(dir, 0, usize::MAX)
                .unwrap()
                .into_iter()
                .skip(2)
            {
                let r = if rel.is_empty() {
                    e.name.clone()
                } else {
                    join(&[&rel, &e.name])
                };
                let a = self.sub.getattr(e.ino).unwrap();
                let mut xattrs = BTreeMap::new();
                for name in self.sub.listxattr(e.ino).unwrap() {
                    let v = self.sub.getxattr(e.ino, &name).unwrap();
                    xattrs.insert(name, v);
                }
                groups.entry(e.ino).or_default().push(r.clone());
                out.insert(
                    r.clone(),
                    Node {
                        mode: a.mode,
                        uid: a.uid,
                        gid: a.gid,
                        nlink: a.nlink,
                        size: if a.is_dir() { 0 } else { a.size },
                        rdev: a.rdev,
                        content: match a.kind() {
                            FileKind::Regular => self.sub.read(e.ino, 0, u64::MAX / 2).unwrap(),
                            FileKind::Symlink => self.sub.readlink(e.ino).unwrap(),
                            _ => Vec::new(),
                        },
                        xattrs,
                        links: Vec::new(),
                    },
                );
                if a.is_dir() {
                    stack.push((e.ino, r));
                }
            }
        }
        link_groups(&mut out, groups);
        out
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Node {
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u32,
    size: u64,
    rdev: u64,
    content: Vec<u8>,
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Every path of the same inode.
    links: Vec<Vec<u8>>,
}

fn link_groups(out: &mut BTreeMap<Vec<u8>, Node>, groups: BTreeMap<u64, Vec<Vec<u8>>>) {
    for mut paths in groups.into_values() {
        paths.sort();
        for p in &paths {
            out.get_mut(p).unwrap().links = paths.clone();
        }
    }
}

fn run(seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let (fs, sub, _) = mem_fs();
    let mut w = World {
        root: dir.path().to_path_buf(),
        fs,
        sub,
        rng: ChaCha8Rng::seed_from_u64(seed),
        open: Vec::new(),
        entries: Vec::new(),
        log: Vec::new(),
    };
    for i in 0..OPS_PER_SEED {
        w.step(i);
    }
    w.compare_trees();
    assert_clean(&w.fs);
    for o in std::mem::take(&mut w.open) {
        drop(o.fd);
        w.sub.release(o.ino).unwrap();
    }
    w.compare_trees();
    assert_clean(&w.fs);
}

#[test]
fn random_operations_match_the_kernel() {
    assert!(
        rustix::process::getuid().is_root(),
        "the model test compares against root's view of the host"
    );
    rustix::process::umask(Mode::empty());
    for seed in seeds(SEEDS) {
        run_seeded("random_operations_match_the_kernel", seed, run);
    }
}
