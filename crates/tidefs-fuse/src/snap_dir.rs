//! The hidden `.snap` directory at the root of a mounted subvolume (as in CephFS): its
//! entries are the subvolume's snapshots, read-only; `mkdir .snap/NAME` takes a snapshot,
//! `rmdir .snap/NAME` deletes one, `rename` within `.snap` renames one.

use std::collections::HashMap;
use std::sync::Arc;

use fuser::{Errno, FileAttr, FileType, INodeNo};
use parking_lot::RwLock;
use tidefs_fs::{Fs, FsError, Inode, SubvolId, SubvolInfo};

use crate::attr::system_time;
use crate::inode_map::SNAP_DIR_INO;
use crate::page_flush::PageFlusher;
use crate::tree::Tree;

/// Name of the directory at the root of a mounted subvolume.
pub const SNAP_DIR_NAME: &[u8] = b".snap";

/// Cloning shares the cache of snapshot handles, so the mount and its control socket (see
/// `snap_control`) agree on which snapshots are gone.
#[derive(Clone)]
pub struct SnapDir {
    fs: Fs,
    subvol: SubvolInfo,
    /// Handles on snapshots that were looked up, by id (one catalog read per snapshot).
    trees: Arc<RwLock<HashMap<SubvolId, Tree>>>,
    /// Brings the kernel's cached writes in before a snapshot is taken.
    flusher: PageFlusher,
}

fn name_str(name: &[u8]) -> Result<&str, FsError> {
    std::str::from_utf8(name).map_err(|_| FsError::BadName {
        name: String::from_utf8_lossy(name).into_owned(),
        why: "snapshot names are UTF-8",
    })
}

impl SnapDir {
    pub(crate) fn new(fs: Fs, subvol: SubvolInfo, flusher: PageFlusher) -> SnapDir {
        SnapDir {
            fs,
            subvol,
            trees: Arc::new(RwLock::new(HashMap::new())),
            flusher,
        }
    }

    /// The mounted subvolume whose snapshots these are.
    pub fn subvol_name(&self) -> &str {
        &self.subvol.name
    }

    fn tree_of(&self, info: SubvolInfo) -> Result<Tree, FsError> {
        let id = info.id;
        if let Some(t) = self.trees.read().get(&id) {
            return Ok(t.clone());
        }
        let tree = Tree {
            sv: Arc::new(self.fs.open_id(id)?),
            via_snap_dir: Some(id),
        };
        self.trees.write().insert(id, tree.clone());
        Ok(tree)
    }

    /// The snapshot with FUSE id `id`; ESTALE once it is deleted (the kernel may still hold
    /// numbers of it).
    pub fn tree(&self, id: SubvolId) -> Result<Tree, Errno> {
        if let Some(t) = self.trees.read().get(&id) {
            return Ok(t.clone());
        }
        match self.fs.info(id) {
            Ok(info) if info.is_snapshot() && info.parent == Some(self.subvol.id) => {
                self.tree_of(info).map_err(|e| crate::attr::errno(&e))
            }
            Ok(_) | Err(FsError::SubvolumeNotFound(_)) => Err(Errno::ESTALE),
            Err(e) => Err(crate::attr::errno(&e)),
        }
    }

    pub fn lookup(&self, name: &[u8]) -> Result<Tree, FsError> {
        let name = name_str(name).map_err(|_| FsError::NotFound("snapshot".into()))?;
        let info = self
            .fs
            .list_snapshots(&self.subvol.name)?
            .into_iter()
            .find(|s| s.name == name)
            .ok_or_else(|| FsError::SnapshotNotFound(format!("{}@{name}", self.subvol.name)))?;
        self.tree_of(info)
    }

    /// Snapshots in catalog order, with their ids.
    pub fn list(&self) -> Result<Vec<(String, SubvolId)>, FsError> {
        Ok(self
            .fs
            .list_snapshots(&self.subvol.name)?
            .into_iter()
            .map(|s| (s.name, s.id))
            .collect())
    }

    /// Takes snapshot `name` of everything written so far, including what the kernel still
    /// holds (see `page_flush`): never call it on a serving thread.
    pub fn create(&self, name: &[u8]) -> Result<Tree, FsError> {
        let name = name_str(name)?;
        self.flusher.flush()?;
        let info = self.fs.create_snapshot(&self.subvol.name, name)?;
        self.tree_of(info)
    }

    pub fn delete(&self, name: &[u8], busy: impl Fn(&Tree) -> bool) -> Result<(), FsError> {
        let tree = self.lookup(name)?;
        // A snapshot with open files stays: deleting its tree would pull the data from under
        // them (Linux answers EBUSY for a mount point in use in the same spirit).
        if busy(&tree) {
            return Err(FsError::Busy(format!(
                "snapshot {} has open files",
                String::from_utf8_lossy(name)
            )));
        }
        self.fs
            .delete_snapshot(&self.subvol.name, name_str(name)?)?;
        self.trees.write().remove(&tree.sv.info().id);
        Ok(())
    }

    pub fn rename(&self, old: &[u8], new: &[u8]) -> Result<(), FsError> {
        let tree = self.lookup(old)?;
        self.fs
            .rename_snapshot(&self.subvol.name, name_str(old)?, name_str(new)?)?;
        // The cached handle carries the old name in its info; the next use reloads it.
        self.trees.write().remove(&tree.sv.info().id);
        Ok(())
    }

    /// What `stat .snap` shows: a directory owned like the subvolume's root, writable only by
    /// its owner (the kernel checks that before `mkdir`/`rmdir` reach us).
    pub fn attr(&self, root: &Inode) -> FileAttr {
        FileAttr {
            ino: INodeNo(SNAP_DIR_INO),
            size: 0,
            blocks: 0,
            atime: system_time(root.atime),
            mtime: system_time(root.mtime),
            ctime: system_time(root.ctime),
            crtime: system_time(root.btime),
            kind: FileType::Directory,
            perm: 0o755,
            nlink: 2,
            uid: root.uid,
            gid: root.gid,
            rdev: 0,
            blksize: tidefs_fs::limits::DATA_BLOCK_BYTES as u32,
            flags: 0,
        }
    }
}
