//! export: writes a subvolume or snapshot out as a host directory tree: modes, owners,
//! times with nanoseconds, xattrs, hard links, symlinks, fifos, sockets, devices, and
//! holes (only stored ranges are written; the size is set with ftruncate). Attributes go
//! last: data, then xattrs, then owner (which clears setuid), then mode, then times;
//! directories after everything inside them.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{
    AtFlags, FileType, Mode, OFlags, Timespec as HostTimespec, Timestamps, XattrFlags, CWD,
};

use crate::clock::Timespec;
use crate::error::{FsError, Result};
use crate::file_data::{ExtentKind, FileExtent};
use crate::host::{io_err, Xattrs};
use crate::import::{CopyStats, Progress};
use crate::inode::{FileKind, Inode, ROOT_INO};
use crate::subvol::Subvol;

/// Files up to this size are read with their directory's listing.
const SMALL_FILE_BYTES: u64 = 1 << 20;
/// Bytes of a big file per read from the pool.
const EXPORT_CHUNK_BYTES: u64 = 8 << 20;

struct Entry {
    name: Vec<u8>,
    inode: Inode,
    xattrs: Xattrs,
    symlink: Vec<u8>,
    extents: Vec<FileExtent>,
    /// The whole file, for small files.
    data: Option<Vec<u8>>,
}

/// One store call per directory: its entries with everything needed to write them out.
fn list_dir(sub: &Subvol, dir: u64) -> Result<Vec<Entry>> {
    sub.op(|cx| {
        let mut out = Vec::new();
        for e in cx.dir_entries(dir)? {
            let inode = cx.inode(e.ino)?;
            let mut xattrs = Vec::new();
            for name in cx.list_xattrs(e.ino)? {
                let v = cx.get_xattr(e.ino, &name)?.unwrap_or_default();
                xattrs.push((name, v));
            }
            let (symlink, extents, data) = match inode.kind() {
                FileKind::Symlink => (cx.read_symlink_target(e.ino)?, Vec::new(), None),
                FileKind::Regular => {
                    let extents = cx.file_extents(&inode)?;
                    let data = if inode.size <= SMALL_FILE_BYTES {
                        Some(cx.read_data(&inode, 0, inode.size)?)
                    } else {
                        None
                    };
                    (Vec::new(), extents, data)
                }
                _ => (Vec::new(), Vec::new(), None),
            };
            out.push(Entry {
                name: e.name,
                inode,
                xattrs,
                symlink,
                extents,
                data,
            });
        }
        Ok(out)
    })
}

fn host_time(t: Timespec) -> HostTimespec {
    HostTimespec {
        tv_sec: t.sec,
        tv_nsec: t.nsec.into(),
    }
}

/// Sets xattrs, owner, mode and times of `path` in that order.
fn set_attrs(
    path: &Path,
    inode: &Inode,
    xattrs: &[(Vec<u8>, Vec<u8>)],
    stats: &mut CopyStats,
) -> Result<()> {
    for (name, value) in xattrs {
        rustix::fs::lsetxattr(path, OsStr::from_bytes(name), value, XattrFlags::empty())
            .map_err(io_err("setxattr", path))?;
        stats.xattrs += 1;
    }
    rustix::fs::chownat(
        CWD,
        path,
        Some(rustix::fs::Uid::from_raw(inode.uid)),
        Some(rustix::fs::Gid::from_raw(inode.gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(io_err("chown", path))?;
    if inode.kind() != FileKind::Symlink {
        rustix::fs::chmodat(
            CWD,
            path,
            Mode::from_raw_mode(inode.mode & 0o7777),
            AtFlags::empty(),
        )
        .map_err(io_err("chmod", path))?;
    }
    let times = Timestamps {
        last_access: host_time(inode.atime),
        last_modification: host_time(inode.mtime),
    };
    rustix::fs::utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(io_err("utimensat", path))
}

/// Writes the stored ranges of a file (what lies between stays a hole), then its
/// attributes, all through one descriptor opened relative to its directory.
fn write_file(
    sub: &Subvol,
    dir: BorrowedFd<'_>,
    path: &Path,
    e: &Entry,
    stats: &mut CopyStats,
    progress: &mut Progress,
) -> Result<()> {
    let fd = rustix::fs::openat(
        dir,
        OsStr::from_bytes(&e.name),
        OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(io_err("create", path))?;
    // The stored ranges, in chunks; what lies between stays a hole.
    let mut chunks = Vec::new();
    let mut written_end = 0;
    for ext in &e.extents {
        if ext.kind == ExtentKind::Prealloc {
            continue;
        }
        let end = (ext.offset + ext.len).min(e.inode.size);
        let mut off = ext.offset;
        while off < end {
            let n = (end - off).min(EXPORT_CHUNK_BYTES);
            chunks.push((off, n));
            off += n;
        }
        written_end = written_end.max(end);
    }
    let mut write_chunk = |off: u64, chunk: &[u8]| -> Result<()> {
        let mut done = 0;
        while done < chunk.len() {
            done += rustix::io::pwrite(&fd, &chunk[done..], off + done as u64)
                .map_err(io_err("write", path))?;
        }
        stats.bytes += chunk.len() as u64;
        progress.bytes += chunk.len() as u64;
        Ok(())
    };
    match &e.data {
        Some(d) => {
            for &(off, n) in &chunks {
                write_chunk(off, &d[off as usize..(off + n) as usize])?;
            }
        }
        // A big file: a reader thread reads the next chunks from the pool while this one
        // writes, so reading and writing overlap.
        None => std::thread::scope(|scope| -> Result<()> {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Result<(u64, Vec<u8>)>>(2);
            let ino = e.inode.ino;
            let chunks = &chunks;
            scope.spawn(move || {
                for (i, &(off, n)) in chunks.iter().enumerate() {
                    if let Some(&(next, m)) = chunks.get(i + 1) {
                        // Only a hint: a failure shows in the read itself.
                        let _ = sub.prefetch(ino, next, m);
                    }
                    let read = sub.read(ino, off, n).map(|data| (off, data));
                    let failed = read.is_err();
                    if tx.send(read).is_err() || failed {
                        return;
                    }
                }
            });
            for item in rx {
                let (off, data) = item?;
                write_chunk(off, &data)?;
            }
            Ok(())
        })?,
    }
    if written_end < e.inode.size {
        rustix::fs::ftruncate(&fd, e.inode.size).map_err(io_err("truncate", path))?;
    }
    for (name, value) in &e.xattrs {
        rustix::fs::fsetxattr(&fd, OsStr::from_bytes(name), value, XattrFlags::empty())
            .map_err(io_err("setxattr", path))?;
        stats.xattrs += 1;
    }
    let inode = &e.inode;
    rustix::fs::fchown(
        &fd,
        Some(rustix::fs::Uid::from_raw(inode.uid)),
        Some(rustix::fs::Gid::from_raw(inode.gid)),
    )
    .map_err(io_err("chown", path))?;
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(inode.mode & 0o7777))
        .map_err(io_err("chmod", path))?;
    let times = Timestamps {
        last_access: host_time(inode.atime),
        last_modification: host_time(inode.mtime),
    };
    rustix::fs::futimens(&fd, &times).map_err(io_err("utimens", path))
}

/// Writes the tree of `sub` (a subvolume or snapshot) into `host_dir`, which must be
/// missing or empty. `progress` is called after every directory.
pub fn export(
    sub: &Subvol,
    host_dir: &Path,
    progress: &mut dyn FnMut(Progress),
) -> Result<CopyStats> {
    std::fs::create_dir_all(host_dir).map_err(|e| FsError::host("mkdir", host_dir, e))?;
    if std::fs::read_dir(host_dir)
        .map_err(|e| FsError::host("readdir", host_dir, e))?
        .next()
        .is_some()
    {
        return Err(FsError::Exists(format!(
            "{} is not empty",
            host_dir.display()
        )));
    }
    let mut stats = CopyStats::default();
    let mut prog = Progress::default();
    let mut linked: HashMap<u64, PathBuf> = HashMap::new();
    // Directories in creation order; their attributes are set in reverse (children first).
    let root = sub.getattr(ROOT_INO)?;
    let root_xattrs = sub.op(|cx| {
        let mut v = Vec::new();
        for name in cx.list_xattrs(ROOT_INO)? {
            let value = cx.get_xattr(ROOT_INO, &name)?.unwrap_or_default();
            v.push((name, value));
        }
        Ok(v)
    })?;
    let mut dirs: Vec<(PathBuf, Inode, Xattrs)> = vec![(host_dir.to_path_buf(), root, root_xattrs)];
    let mut stack = vec![(ROOT_INO, host_dir.to_path_buf())];
    while let Some((dir, dir_path)) = stack.pop() {
        let dir_fd = rustix::fs::openat(
            CWD,
            &dir_path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io_err("open", &dir_path))?;
        for e in list_dir(sub, dir)? {
            let path = dir_path.join(OsStr::from_bytes(&e.name));
            let kind = e.inode.kind();
            if kind != FileKind::Directory && e.inode.nlink > 1 {
                if let Some(first) = linked.get(&e.inode.ino) {
                    rustix::fs::linkat(CWD, first, CWD, &path, AtFlags::empty())
                        .map_err(io_err("link", &path))?;
                    stats.hard_links += 1;
                    prog.entries += 1;
                    continue;
                }
                linked.insert(e.inode.ino, path.clone());
            }
            match kind {
                FileKind::Directory => {
                    rustix::fs::mkdirat(CWD, &path, Mode::from_raw_mode(0o700))
                        .map_err(io_err("mkdir", &path))?;
                    stack.push((e.inode.ino, path.clone()));
                    dirs.push((path, e.inode, e.xattrs));
                    stats.dirs += 1;
                    prog.entries += 1;
                    continue;
                }
                FileKind::Regular => {
                    write_file(sub, dir_fd.as_fd(), &path, &e, &mut stats, &mut prog)?;
                    stats.files += 1;
                    prog.entries += 1;
                    continue;
                }
                FileKind::Symlink => {
                    rustix::fs::symlinkat(OsStr::from_bytes(&e.symlink), CWD, &path)
                        .map_err(io_err("symlink", &path))?;
                    stats.symlinks += 1;
                }
                special => {
                    let ft = match special {
                        FileKind::Fifo => FileType::Fifo,
                        FileKind::Socket => FileType::Socket,
                        FileKind::CharDevice => FileType::CharacterDevice,
                        _ => FileType::BlockDevice,
                    };
                    rustix::fs::mknodat(CWD, &path, ft, Mode::from_raw_mode(0o600), e.inode.rdev)
                        .map_err(io_err("mknod", &path))?;
                    stats.specials += 1;
                }
            }
            set_attrs(&path, &e.inode, &e.xattrs, &mut stats)?;
            prog.entries += 1;
        }
        progress(prog);
    }
    for (path, inode, xattrs) in dirs.iter().rev() {
        set_attrs(path, inode, xattrs, &mut stats)?;
    }
    Ok(stats)
}
