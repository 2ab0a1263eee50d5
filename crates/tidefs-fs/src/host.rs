//! What import and export need from the host file system: metadata as tidefs fields,
//! xattrs, and errors that name the path.

use std::ffi::OsStr;
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rustix::fs::{AtFlags, Mode, OFlags};

use crate::clock::Timespec;
use crate::error::{FsError, Result};

/// Name/value pairs of a file's xattrs.
pub(crate) type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// The attributes of a host file that tidefs keeps.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HostMeta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u64,
    pub size: u64,
    pub nlink: u64,
    pub dev: u64,
    pub ino: u64,
    pub atime: Timespec,
    pub mtime: Timespec,
}

pub(crate) fn lstat(path: &Path) -> Result<HostMeta> {
    let m = std::fs::symlink_metadata(path).map_err(|e| FsError::host("lstat", path, e))?;
    Ok(HostMeta {
        mode: m.mode(),
        uid: m.uid(),
        gid: m.gid(),
        rdev: m.rdev(),
        size: m.size(),
        nlink: m.nlink(),
        dev: m.dev(),
        ino: m.ino(),
        atime: Timespec::new(m.atime(), m.atime_nsec() as u32),
        mtime: Timespec::new(m.mtime(), m.mtime_nsec() as u32),
    })
}

pub(crate) fn io_err<'p>(
    op: &'static str,
    path: &'p Path,
) -> impl Fn(rustix::io::Errno) -> FsError + 'p {
    move |e| {
        FsError::host(
            op,
            path,
            std::io::Error::from_raw_os_error(e.raw_os_error()),
        )
    }
}

/// Attributes of `name` in the directory `dir` (not following symlinks); `path` names it
/// in errors. Lookups relative to an open directory save a path walk per file.
pub(crate) fn stat_at(dir: BorrowedFd<'_>, name: &OsStr, path: &Path) -> Result<HostMeta> {
    let st =
        rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(io_err("lstat", path))?;
    Ok(HostMeta {
        mode: st.st_mode,
        uid: st.st_uid,
        gid: st.st_gid,
        rdev: st.st_rdev,
        size: st.st_size as u64,
        nlink: st.st_nlink,
        dev: st.st_dev,
        ino: st.st_ino,
        atime: Timespec::new(st.st_atime, st.st_atime_nsec as u32),
        mtime: Timespec::new(st.st_mtime, st.st_mtime_nsec as u32),
    })
}

/// The data (`size` bytes, as lstat said) and xattrs of a small regular file.
pub(crate) fn read_small_file(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    size: u64,
    path: &Path,
) -> Result<(Vec<u8>, Xattrs)> {
    let fd = rustix::fs::openat(dir, name, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        .map_err(io_err("open", path))?;
    let mut data = vec![0u8; size as usize];
    let mut done = 0;
    while done < data.len() {
        let n =
            rustix::io::pread(&fd, &mut data[done..], done as u64).map_err(io_err("read", path))?;
        if n == 0 {
            data.truncate(done); // shrank since lstat
            break;
        }
        done += n;
    }
    let xattrs = collect_xattrs(
        path,
        |buf| rustix::fs::flistxattr(&fd, buf),
        |name, buf| rustix::fs::fgetxattr(&fd, name, buf),
    )?;
    Ok((data, xattrs))
}

/// Every xattr of `path` (not following symlinks), by name.
pub(crate) fn read_xattrs(path: &Path) -> Result<Xattrs> {
    collect_xattrs(
        path,
        |buf| rustix::fs::llistxattr(path, buf),
        |name, buf| rustix::fs::lgetxattr(path, name, buf),
    )
}

fn collect_xattrs(
    path: &Path,
    list: impl Fn(&mut [u8]) -> rustix::io::Result<usize>,
    get: impl Fn(&OsStr, &mut [u8]) -> rustix::io::Result<usize>,
) -> Result<Xattrs> {
    let mut names = vec![0u8; 1024];
    let n = loop {
        match list(&mut names[..]) {
            Ok(n) => break n,
            Err(rustix::io::Errno::RANGE) => names.resize(names.len() * 4, 0),
            Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(io_err("listxattr", path)(e)),
        }
    };
    let mut out = Vec::new();
    for name in names[..n].split(|&b| b == 0).filter(|s| !s.is_empty()) {
        let mut value = vec![0u8; 256];
        let len = loop {
            match get(OsStr::from_bytes(name), &mut value[..]) {
                Ok(len) => break len,
                Err(rustix::io::Errno::RANGE) => value.resize(value.len() * 4, 0),
                Err(e) => return Err(io_err("getxattr", path)(e)),
            }
        };
        value.truncate(len);
        out.push((name.to_vec(), value));
    }
    Ok(out)
}
