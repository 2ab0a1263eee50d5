//! rename(2) / renameat2(2): replace atomically, `RENAME_NOREPLACE`, `RENAME_EXCHANGE`,
//! with the checks in the order Linux makes them (do_renameat2, then vfs_rename, then the
//! file system), so the errno matches when several apply.

use crate::backref::parent_of_dir;
use crate::caller::Caller;
use crate::cx::Cx;
use crate::dir::{check_name, is_dot_or_dotdot};
use crate::error::{FsError, Result};
use crate::inode::{Inode, ROOT_INO};
use crate::remove::{check_sticky, IsOpen};

/// renameat2 flags (Linux values).
pub mod rename_flags {
    pub const NOREPLACE: u32 = 1;
    pub const EXCHANGE: u32 = 2;
}

fn shown(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

impl Cx<'_, '_> {
    /// Whether directory `ancestor` is `dir` or one of its ancestors.
    fn is_ancestor_or_self(&mut self, ancestor: u64, mut dir: u64) -> Result<bool> {
        let view = self.view()?;
        for _ in 0..crate::limits::PATH_DEPTH_MAX {
            if dir == ancestor {
                return Ok(true);
            }
            if dir == ROOT_INO {
                return Ok(false);
            }
            dir = parent_of_dir(&view, dir)?;
        }
        Err(FsError::Loop(format!("ancestors of directory {dir}")))
    }

    fn touch_dir(&mut self, dir: u64, nlink_delta: i32) -> Result<()> {
        let mut d = self.inode(dir)?;
        d.nlink = d.nlink.wrapping_add_signed(nlink_delta);
        d.mtime = self.now;
        d.ctime = self.now;
        self.put_inode(&d)
    }

    fn touch_ctime(&mut self, ino: u64) -> Result<Inode> {
        let mut i = self.inode(ino)?;
        i.ctime = self.now;
        self.put_inode(&i)?;
        Ok(i)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn rename(
        &mut self,
        parent: u64,
        name: &[u8],
        new_parent: u64,
        new_name: &[u8],
        flags: u32,
        caller: &Caller,
        is_open: IsOpen<'_>,
    ) -> Result<()> {
        use rename_flags::{EXCHANGE, NOREPLACE};
        if flags & !(NOREPLACE | EXCHANGE) != 0 || flags == NOREPLACE | EXCHANGE {
            return Err(FsError::Invalid(format!("rename flags {flags:#x}")));
        }
        let old_dir = self.dir_inode(parent)?;
        let new_dir = self.dir_inode(new_parent)?;
        if is_dot_or_dotdot(name) || is_dot_or_dotdot(new_name) {
            return Err(FsError::Busy(format!(
                "rename of {:?} or {:?}",
                shown(name),
                shown(new_name)
            )));
        }
        check_name(name)?;
        let src = self
            .find_entry(parent, name)?
            .ok_or_else(|| FsError::NotFound(shown(name)))?;
        check_name(new_name)?;
        let dst = self.find_entry(new_parent, new_name)?;
        if flags & NOREPLACE != 0 && dst.is_some() {
            return Err(FsError::Exists(shown(new_name)));
        }
        if flags & EXCHANGE != 0 && dst.is_none() {
            return Err(FsError::NotFound(shown(new_name)));
        }
        // lock_rename's traps: the source may not be an ancestor of the new parent, the
        // target may not be an ancestor of the old parent.
        if parent != new_parent {
            if src.kind == crate::inode::FileKind::Directory
                && self.is_ancestor_or_self(src.ino, new_parent)?
            {
                return Err(FsError::Invalid(format!(
                    "moving {} into itself",
                    shown(name)
                )));
            }
            if let Some(d) = &dst {
                if d.kind == crate::inode::FileKind::Directory
                    && self.is_ancestor_or_self(d.ino, parent)?
                {
                    return Err(if flags & EXCHANGE != 0 {
                        FsError::Invalid(format!("exchanging {} with its ancestor", shown(name)))
                    } else {
                        FsError::NotEmpty(shown(new_name))
                    });
                }
            }
        }
        if dst.as_ref().is_some_and(|d| d.ino == src.ino) {
            return Ok(()); // both names are links to one inode: POSIX says do nothing
        }
        let src_inode = self.inode(src.ino)?;
        check_sticky(&old_dir, &src_inode, caller)?;
        let dst_inode = match &dst {
            Some(d) => {
                let di = self.inode(d.ino)?;
                check_sticky(&new_dir, &di, caller)?;
                Some(di)
            }
            None => None,
        };
        let src_is_dir = src_inode.is_dir();
        if flags & EXCHANGE != 0 {
            let d = dst_inode.expect("checked above");
            self.repoint_entry(parent, name, d.ino, d.kind())?;
            self.repoint_entry(new_parent, new_name, src.ino, src_inode.kind())?;
            let delta = i32::from(src_is_dir) - i32::from(d.is_dir());
            if parent != new_parent {
                self.touch_dir(parent, -delta)?;
                self.touch_dir(new_parent, delta)?;
            } else {
                self.touch_dir(parent, 0)?;
            }
            self.touch_ctime(src.ino)?;
            self.touch_ctime(d.ino)?;
            return Ok(());
        }
        if let Some(victim) = &dst_inode {
            if src_is_dir && !victim.is_dir() {
                return Err(FsError::NotDir(shown(new_name)));
            }
            if !src_is_dir && victim.is_dir() {
                return Err(FsError::IsDir(shown(new_name)));
            }
            if victim.is_dir() && !self.dir_is_empty(victim.ino)? {
                return Err(FsError::NotEmpty(shown(new_name)));
            }
        }
        // The new name first (it takes over the target's slot), then the old one goes.
        match dst_inode {
            Some(victim) => {
                self.repoint_entry(new_parent, new_name, src.ino, src_inode.kind())?;
                if victim.is_dir() {
                    self.touch_dir(new_parent, -1)?; // the victim's ".." goes
                }
                self.drop_link(victim, is_open)?;
            }
            None => {
                let mut nd = self.inode(new_parent)?;
                self.add_entry(&mut nd, new_name, src.ino, src_inode.kind())?;
                self.put_inode(&nd)?;
            }
        }
        let mut od = self.inode(parent)?;
        self.remove_entry(&mut od, name)?;
        self.put_inode(&od)?;
        if src_is_dir && parent != new_parent {
            self.touch_dir(parent, -1)?;
            self.touch_dir(new_parent, 1)?;
        } else {
            self.touch_dir(parent, 0)?;
            self.touch_dir(new_parent, 0)?;
        }
        self.touch_ctime(src.ino)?;
        Ok(())
    }
}
