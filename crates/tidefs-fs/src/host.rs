//! What import and export need from the host file system: metadata as tidefs fields,
//! xattrs, and errors that name the path.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::clock::Timespec;
use crate::error::{FsError, Result};

/// Bytes of a file's data read in one piece during import and export.
pub(crate) const COPY_CHUNK_BYTES: usize = 2 << 20;

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

/// Every xattr of `path` (not following symlinks), by name.
pub(crate) fn read_xattrs(path: &Path) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut names = vec![0u8; 1024];
    let n = loop {
        match rustix::fs::llistxattr(path, &mut names[..]) {
            Ok(n) => break n,
            Err(rustix::io::Errno::RANGE) => names.resize(names.len() * 4, 0),
            Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(io_err("listxattr", path)(e)),
        }
    };
    let mut out = Vec::new();
    for name in names[..n].split(|&b| b == 0).filter(|s| !s.is_empty()) {
        let name_os = std::ffi::OsStr::from_bytes(name);
        let mut value = vec![0u8; 256];
        let len = loop {
            match rustix::fs::lgetxattr(path, name_os, &mut value[..]) {
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
