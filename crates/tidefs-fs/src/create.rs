//! Operations that add a name: create, mknod, mkdir, symlink, link.

use crate::caller::Caller;
use crate::cx::Cx;
use crate::dir::{check_name, is_dot_or_dotdot};
use crate::error::{FsError, Result};
use crate::inode::{FileKind, Inode, NewInode, MODE_PERM_BITS, S_ISGID, S_IXGRP};
use crate::limits::{LINKS_MAX, SYMLINK_TARGET_BYTES_MAX};

/// What to create.
pub(crate) struct NodeSpec<'a> {
    pub kind: FileKind,
    /// Permission bits (07777); the caller has applied its umask.
    pub perm: u32,
    pub rdev: u64,
    pub symlink_target: Option<&'a [u8]>,
}

fn shown(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

impl Cx<'_, '_> {
    /// Checks that `name` can be added to directory `parent` and returns the directory.
    fn prepare_new_name(&mut self, parent: u64, name: &[u8]) -> Result<Inode> {
        // The parent is walked before the last component is looked up (ENOTDIR before
        // ENAMETOOLONG), as in the kernel.
        let dir = self.dir_inode(parent)?;
        check_name(name)?;
        if is_dot_or_dotdot(name) || self.find_entry(parent, name)?.is_some() {
            return Err(FsError::Exists(shown(name)));
        }
        if dir.nlink == 0 {
            // The directory was removed while someone still had it open.
            return Err(FsError::NotFound(format!("removed directory {parent}")));
        }
        Ok(dir)
    }

    /// Creates a new inode named `parent/name`.
    pub fn make_node(
        &mut self,
        parent: u64,
        name: &[u8],
        spec: NodeSpec<'_>,
        caller: &Caller,
    ) -> Result<Inode> {
        if let Some(target) = spec.symlink_target {
            if target.is_empty() {
                return Err(FsError::NotFound("empty symlink target".into()));
            }
            if target.len() > SYMLINK_TARGET_BYTES_MAX {
                return Err(FsError::NameTooLong {
                    len: target.len(),
                    max: SYMLINK_TARGET_BYTES_MAX,
                });
            }
        }
        let mut dir = self.prepare_new_name(parent, name)?;
        let is_dir = spec.kind == FileKind::Directory;
        // mkdir keeps only the permission and sticky bits (vfs_prepare_mode); setgid on a
        // directory comes from its parent alone.
        let mut perm = spec.perm & if is_dir { 0o1777 } else { MODE_PERM_BITS };
        // setgid directories hand their group down, and subdirectories inherit the bit
        // (inode_init_owner); a non-member creating a group-executable setgid file loses it.
        let gid = if dir.mode & S_ISGID != 0 {
            if is_dir {
                perm |= S_ISGID;
            }
            dir.gid
        } else {
            caller.gid
        };
        if !is_dir
            && perm & S_ISGID != 0
            && perm & S_IXGRP != 0
            && !caller.is_root()
            && gid != caller.gid
        {
            perm &= !S_ISGID;
        }
        if spec.kind == FileKind::Symlink {
            perm = 0o777;
        }
        let mut inode = self.new_inode(NewInode {
            mode: spec.kind.mode_bits() | perm,
            uid: caller.uid,
            gid,
            rdev: if matches!(spec.kind, FileKind::CharDevice | FileKind::BlockDevice) {
                spec.rdev
            } else {
                0
            },
        })?;
        inode.nlink = if is_dir { 2 } else { 1 };
        if let Some(target) = spec.symlink_target {
            self.write_symlink_target(inode.ino, target)?;
            inode.size = target.len() as u64;
        }
        self.add_entry(&mut dir, name, inode.ino, spec.kind)?;
        if is_dir {
            dir.nlink += 1;
        }
        dir.mtime = self.now;
        dir.ctime = self.now;
        self.put_inode(&dir)?;
        self.put_inode(&inode)?;
        Ok(inode)
    }

    /// Adds the name `new_parent/new_name` to inode `ino`.
    pub fn link(&mut self, ino: u64, new_parent: u64, new_name: &[u8]) -> Result<Inode> {
        let mut inode = self.inode(ino)?;
        // vfs_link's order: the new name must be free before the inode's type matters.
        let mut dir = self.prepare_new_name(new_parent, new_name)?;
        if inode.is_dir() {
            return Err(FsError::NotPermitted(format!(
                "hard link to directory {ino}"
            )));
        }
        if inode.nlink == 0 {
            return Err(FsError::NotFound(format!("inode {ino} has been unlinked")));
        }
        if inode.nlink >= LINKS_MAX {
            return Err(FsError::TooManyLinks {
                ino,
                max: LINKS_MAX,
            });
        }
        self.add_entry(&mut dir, new_name, ino, inode.kind())?;
        dir.mtime = self.now;
        dir.ctime = self.now;
        self.put_inode(&dir)?;
        inode.nlink += 1;
        inode.ctime = self.now;
        self.put_inode(&inode)?;
        Ok(inode)
    }
}
