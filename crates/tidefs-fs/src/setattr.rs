//! setattr: chmod, chown, truncate, utimens, flags, with the side effects Linux applies
//! (ctime, clearing setuid/setgid).

use crate::caller::Caller;
use crate::clock::Timespec;
use crate::cx::Cx;
use crate::error::{FsError, Result};
use crate::inode::{FileKind, Inode, MODE_PERM_BITS, S_IFMT, S_ISGID, S_ISUID, S_IXGRP};

/// How to set a timestamp (utimensat's `UTIME_NOW` or a value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSet {
    Now,
    At(Timespec),
}

/// The attributes to change; `None` leaves one alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetAttr {
    /// Permission bits (07777); the file type cannot change.
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<TimeSet>,
    pub mtime: Option<TimeSet>,
    /// Explicit ctime (FUSE may pass one); otherwise any change sets ctime to now.
    pub ctime: Option<Timespec>,
    pub flags: Option<u64>,
}

/// Clears setuid, and setgid where it means "run as group" (group-executable), as Linux
/// does when a file is written or changes owner (should_remove_suid).
pub(crate) fn kill_suid_sgid(inode: &mut Inode) {
    inode.mode &= !S_ISUID;
    if inode.mode & S_IXGRP != 0 {
        inode.mode &= !S_ISGID;
    }
}

impl Cx<'_, '_> {
    pub fn setattr(&mut self, ino: u64, attr: &SetAttr, caller: &Caller) -> Result<Inode> {
        let mut inode = self.inode(ino)?;
        let now = self.now;
        if let Some(size) = attr.size {
            match inode.kind() {
                FileKind::Regular => {}
                FileKind::Directory => return Err(FsError::IsDir(format!("inode {ino}"))),
                _ => {
                    return Err(FsError::Invalid(format!(
                        "truncate of non-regular inode {ino}"
                    )))
                }
            }
            let changed = size != inode.size;
            self.truncate_data(&mut inode, size)?;
            if changed {
                inode.mtime = now;
            }
            // As Linux's do_truncate: privileges go even if the size stays.
            if !caller.is_root() {
                kill_suid_sgid(&mut inode);
            }
            self.drop_file_capabilities(ino)?;
        }
        if attr.uid.is_some() || attr.gid.is_some() {
            if let Some(uid) = attr.uid {
                inode.uid = uid;
            }
            if let Some(gid) = attr.gid {
                inode.gid = gid;
            }
            if !inode.is_dir() {
                kill_suid_sgid(&mut inode);
                self.drop_file_capabilities(ino)?;
            }
        }
        if let Some(mode) = attr.mode {
            inode.mode = (inode.mode & S_IFMT) | (mode & MODE_PERM_BITS);
        }
        let time = |t: TimeSet| match t {
            TimeSet::Now => now,
            TimeSet::At(t) => t,
        };
        if let Some(t) = attr.atime {
            inode.atime = time(t);
        }
        if let Some(t) = attr.mtime {
            inode.mtime = time(t);
        }
        if let Some(f) = attr.flags {
            inode.flags = f;
        }
        inode.ctime = attr.ctime.unwrap_or(now);
        self.put_inode(&inode)?;
        Ok(inode)
    }
}
