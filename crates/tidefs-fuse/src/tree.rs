//! A tree seen through the mount: the mounted subvolume (or snapshot), or a snapshot reached
//! through `.snap`, with the rule that turns its inode numbers into FUSE numbers.

use std::sync::Arc;

use fuser::{Errno, FileAttr};
use tidefs_fs::{Inode, Subvol, SubvolId};

use crate::attr::file_attr;
use crate::inode_map::Node;

#[derive(Clone)]
pub struct Tree {
    pub sv: Arc<Subvol>,
    /// Set for a snapshot reached through `.snap`; `None` for the mounted tree.
    pub via_snap_dir: Option<SubvolId>,
}

impl Tree {
    pub fn node(&self, ino: u64) -> Node {
        match self.via_snap_dir {
            None => Node::Mounted(ino),
            Some(snap) => Node::InSnapshot { snap, ino },
        }
    }

    /// The FUSE number of `ino`, or EOVERFLOW when the number layout has no room for it.
    pub fn fuse_ino(&self, ino: u64) -> Result<u64, Errno> {
        self.node(ino).to_fuse().ok_or(Errno::EOVERFLOW)
    }

    pub fn attr(&self, inode: &Inode) -> Result<FileAttr, Errno> {
        Ok(file_attr(self.fuse_ino(inode.ino)?, inode))
    }

    pub fn same_tree(&self, other: &Tree) -> bool {
        self.sv.info().tree == other.sv.info().tree
    }
}
