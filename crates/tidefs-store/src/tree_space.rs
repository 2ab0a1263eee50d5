//! How much of the pool one tree holds: blocks only it reaches (freed if it were deleted)
//! and blocks it shares with other trees.

use crate::bref::BlockRef;
use crate::error::Result;
use crate::ids::TreeId;
use crate::layout::NODE_BLOCKS;
use crate::node::{EntryKind, Node};
use crate::node_io::NodeIo;
use crate::pool::Pool;
use crate::space_map::SpaceMap;

/// Space held by one tree, in 4 KiB blocks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeSpace {
    /// Blocks reachable only from this tree: exactly what deleting it would free.
    pub exclusive_blocks: u64,
    /// Blocks this tree reaches that other trees (snapshots, clones, reflinks) reach too.
    pub shared_blocks: u64,
}

struct Walk<'a> {
    io: &'a NodeIo,
    space: &'a mut SpaceMap,
    result: TreeSpace,
}

impl Walk<'_> {
    /// Under a node with more than one reference everything is shared; otherwise a block
    /// is exclusive when its own count is one.
    fn node(&mut self, r: BlockRef, level: u8, shared_above: bool) -> Result<()> {
        let shared = shared_above || self.space.get(r.block)? > 1;
        self.count(u64::from(NODE_BLOCKS), shared);
        let node = self.io.load(r, Some(level))?;
        self.entries(&node, shared)
    }

    fn entries(&mut self, node: &Node, shared: bool) -> Result<()> {
        for i in 0..node.len() {
            match node.kind(i) {
                EntryKind::Child => self.node(node.child_ref(i), node.level - 1, shared)?,
                EntryKind::Extent => {
                    let e = node.extent(i).expect("decoded");
                    let ext_shared = shared || self.space.get(e.block)? > 1;
                    self.count(u64::from(e.blocks), ext_shared);
                }
                EntryKind::Plain | EntryKind::Tree => {}
            }
        }
        Ok(())
    }

    fn count(&mut self, blocks: u64, shared: bool) {
        if shared {
            self.result.shared_blocks += blocks;
        } else {
            self.result.exclusive_blocks += blocks;
        }
    }
}

impl Pool {
    /// Walks `tree` as last committed (committing first) and sorts its blocks into
    /// exclusive and shared. Costs a read of the whole tree.
    pub fn tree_space(&self, tree: TreeId) -> Result<TreeSpace> {
        self.commit()?;
        let info = self.read().tree_info(tree)?;
        self.shared.with_writer_space(|space| {
            let mut walk = Walk {
                io: &self.shared.io,
                space,
                result: TreeSpace::default(),
            };
            if let Some(root) = info.root {
                walk.node(root, info.root_level, false)?;
            }
            Ok(walk.result)
        })
    }
}
