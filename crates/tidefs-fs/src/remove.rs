//! Operations that remove a name: unlink and rmdir, the sticky-bit rule, and what happens
//! to an inode whose last name goes (freed, or kept as an orphan while it is open).

use crate::caller::Caller;
use crate::cx::Cx;
use crate::dir::check_name;
use crate::error::{FsError, Result};
use crate::inode::{Inode, S_ISVTX};
use crate::keys::orphan_key;

fn shown(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

/// Whether an inode is held open by a caller of this process.
pub(crate) type IsOpen<'a> = &'a dyn Fn(u64) -> bool;

/// In a sticky directory only the owner of the entry or of the directory (or root) may
/// remove or rename the entry. The kernel checks this for FUSE too; library callers such
/// as the CLI rely on this check.
pub(crate) fn check_sticky(dir: &Inode, victim: &Inode, caller: &Caller) -> Result<()> {
    if dir.mode & S_ISVTX != 0
        && !caller.is_root()
        && caller.uid != dir.uid
        && caller.uid != victim.uid
    {
        return Err(FsError::NotPermitted(format!(
            "inode {} in sticky directory {} belongs to someone else",
            victim.ino, dir.ino
        )));
    }
    Ok(())
}

impl Cx<'_, '_> {
    /// Drops one name of `inode` (already removed from its directory). At nlink 0 the
    /// inode is freed, or kept on the orphan list while it is open.
    pub fn drop_link(&mut self, mut inode: Inode, is_open: IsOpen<'_>) -> Result<()> {
        inode.nlink = if inode.is_dir() {
            0
        } else {
            inode.nlink.saturating_sub(1)
        };
        inode.ctime = self.now;
        if inode.nlink > 0 {
            return self.put_inode(&inode);
        }
        if is_open(inode.ino) {
            self.put(&orphan_key(inode.ino), &[])?;
            self.put_inode(&inode)
        } else {
            self.free_inode(inode.ino)
        }
    }

    /// Frees an orphan whose last user let go.
    pub fn reap_orphan(&mut self, ino: u64) -> Result<()> {
        if self.del(&orphan_key(ino))? {
            if let Some(inode) = self.try_inode(ino)? {
                if inode.nlink == 0 {
                    self.free_inode(ino)?;
                }
            }
        }
        Ok(())
    }

    pub fn unlink(
        &mut self,
        parent: u64,
        name: &[u8],
        caller: &Caller,
        is_open: IsOpen<'_>,
    ) -> Result<()> {
        let mut dir = self.dir_inode(parent)?;
        if name == b"." || name == b".." {
            return Err(FsError::IsDir(shown(name)));
        }
        check_name(name)?;
        let entry = self
            .find_entry(parent, name)?
            .ok_or_else(|| FsError::NotFound(shown(name)))?;
        let victim = self.inode(entry.ino)?;
        if victim.is_dir() {
            return Err(FsError::IsDir(shown(name)));
        }
        check_sticky(&dir, &victim, caller)?;
        self.remove_entry(&mut dir, name)?;
        dir.mtime = self.now;
        dir.ctime = self.now;
        self.put_inode(&dir)?;
        self.drop_link(victim, is_open)
    }

    pub fn rmdir(
        &mut self,
        parent: u64,
        name: &[u8],
        caller: &Caller,
        is_open: IsOpen<'_>,
    ) -> Result<()> {
        let mut dir = self.dir_inode(parent)?;
        if name == b"." {
            return Err(FsError::Invalid("rmdir of \".\"".into()));
        }
        if name == b".." {
            return Err(FsError::NotEmpty(shown(name)));
        }
        check_name(name)?;
        let entry = self
            .find_entry(parent, name)?
            .ok_or_else(|| FsError::NotFound(shown(name)))?;
        let victim = self.inode(entry.ino)?;
        if !victim.is_dir() {
            return Err(FsError::NotDir(shown(name)));
        }
        check_sticky(&dir, &victim, caller)?;
        if !self.dir_is_empty(victim.ino)? {
            return Err(FsError::NotEmpty(shown(name)));
        }
        self.remove_entry(&mut dir, name)?;
        dir.nlink -= 1;
        dir.mtime = self.now;
        dir.ctime = self.now;
        self.put_inode(&dir)?;
        self.drop_link(victim, is_open)
    }
}
