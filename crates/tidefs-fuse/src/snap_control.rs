//! Snapshots of the mounted subvolume taken, deleted or renamed from outside the mount
//! (through the pool's control socket): the same [`SnapDir`] calls that `.snap` mkdir, rmdir
//! and rename make, so the mount's handle cache stays right, followed by invalidating the
//! kernel's cached `.snap` entries so that the change shows at once instead of after the
//! entry TTL (60 s by default).

use std::ffi::OsStr;
use std::sync::Arc;

use fuser::{INodeNo, Notifier};
use tidefs_fs::{FsError, SubvolInfo};

use crate::inode_map::SNAP_DIR_INO;
use crate::snap_dir::SnapDir;

#[derive(Clone)]
pub struct SnapshotControl {
    snaps: SnapDir,
    notifier: Notifier,
}

impl SnapshotControl {
    pub(crate) fn new(snaps: SnapDir, notifier: Notifier) -> SnapshotControl {
        SnapshotControl { snaps, notifier }
    }

    /// The mounted subvolume.
    pub fn subvolume(&self) -> &str {
        self.snaps.subvol_name()
    }

    pub fn create(&self, name: &str) -> Result<SubvolInfo, FsError> {
        let tree = self.snaps.create(name.as_bytes())?;
        self.forget(&[name]);
        Ok(tree.sv.info().clone())
    }

    /// Deletes snapshot `name` unless the mount uses it. Open files of a snapshot hold its
    /// tree handle (as do requests in flight), so a handle shared beyond the cache and the
    /// one `delete` looked up means "in use": answered EBUSY, as `rmdir .snap/NAME` is.
    pub fn delete(&self, name: &str) -> Result<(), FsError> {
        self.snaps
            .delete(name.as_bytes(), |tree| Arc::strong_count(&tree.sv) > 2)?;
        self.forget(&[name]);
        Ok(())
    }

    pub fn rename(&self, old: &str, new: &str) -> Result<(), FsError> {
        self.snaps.rename(old.as_bytes(), new.as_bytes())?;
        self.forget(&[old, new]);
        Ok(())
    }

    /// Drops the kernel's cached lookups of `names` in `.snap` and the directory's cached
    /// attributes. Best effort: the kernel answers ENOENT for entries it never cached (fuser
    /// passes that as success), and a failure only means the old view lasts until the TTL.
    fn forget(&self, names: &[&str]) {
        for name in names {
            if let Err(e) = self
                .notifier
                .inval_entry(INodeNo(SNAP_DIR_INO), OsStr::new(name))
            {
                eprintln!("tidefs mount: invalidating .snap/{name} in the kernel: {e}");
            }
        }
        if let Err(e) = self.notifier.inval_inode(INodeNo(SNAP_DIR_INO), 0, 0) {
            eprintln!("tidefs mount: invalidating .snap in the kernel: {e}");
        }
    }
}
