//! Writing a tree's edited nodes at commit, one level at a time from the leaves up.
//!
//! A parent's entry for a child holds the child's checksum, so a node can only be encoded
//! after its edited children; nodes of one level do not depend on each other. So the edited
//! nodes are gathered level by level, get their blocks (each level's nodes side by side on
//! the device, so the batch writer sends them as few large writes), and each level is then
//! encoded, checksummed and written, by two threads when it is big: a commit after a batch
//! of random inserts rewrites most of the tree, and that work is most of the commit.

use std::sync::Arc;

use crate::bref::BlockRef;
use crate::error::{Result, StoreError};
use crate::ids::Tid;
use crate::layout::NODE_BLOCKS;
use crate::node::{node_checksum, Node};
use crate::node_io::{BatchWriter, NodeIo};

use super::mutate::Mutator;
use super::root::Root;

/// Levels with at least this many edited nodes are encoded and written by two threads.
const PARALLEL_NODES_MIN: usize = 64;

/// An edited node waiting to be written.
struct Pending {
    node: Arc<Node>,
    block: u64,
    /// Index of the parent in the level above, and this node's entry in the parent.
    parent: Option<(usize, usize)>,
}

impl Mutator<'_> {
    /// Writes every edited node of a tree, children before parents; the root becomes clean.
    pub fn write_out(&mut self, root: &mut Root, writer: &mut BatchWriter) -> Result<()> {
        let Root::Dirty(top) = root else {
            return Ok(());
        };
        let top = top.clone();
        let level = top.level;
        *root = Root::Empty;
        let mut levels = gather(top);
        levels.reverse(); // the lowest edited level first
        for pending in levels.iter_mut().flatten() {
            pending.block = self.space.alloc(NODE_BLOCKS)?;
            self.io.forget(pending.block);
        }
        let mut second = self.io.batch_writer();
        let mut below: Vec<(BlockRef, Arc<Node>)> = Vec::new();
        for i in 0..levels.len() {
            let (lower, upper) = levels.split_at_mut(i);
            let this = &mut upper[0];
            for p in this.iter_mut() {
                if !p.node.is_leaf() {
                    unique(&mut p.node).reset_child_cache();
                }
            }
            if let Some(children) = lower.last() {
                for (child, (r, clean)) in children.iter().zip(&below) {
                    let (parent, entry) = child.parent.expect("only the top has no parent");
                    let n = unique(&mut this[parent].node);
                    n.set_clean_child(entry, *r);
                    n.remember_child(entry, clean);
                }
            }
            below = self.write_level(this, writer, &mut second)?;
        }
        second.finish()?;
        let (bref, _) = below.pop().expect("the top level holds the root");
        *root = Root::Clean { bref, level };
        Ok(())
    }

    /// Encodes and writes one level's nodes; returns their refs and clean nodes, in order.
    fn write_level(
        &self,
        level: &mut [Pending],
        writer: &mut BatchWriter,
        second: &mut BatchWriter,
    ) -> Result<Vec<(BlockRef, Arc<Node>)>> {
        let (tid, io) = (self.tid, self.io);
        if level.len() < PARALLEL_NODES_MIN {
            return encode_all(level, tid, io, writer);
        }
        let (first_half, second_half) = level.split_at_mut(level.len() / 2);
        std::thread::scope(|scope| {
            let other = scope.spawn(|| encode_all(second_half, tid, io, second));
            let mut mine = encode_all(first_half, tid, io, writer)?;
            let theirs = other.join().unwrap_or_else(|_| {
                Err(StoreError::Invalid("node writer thread panicked".into()))
            })?;
            mine.extend(theirs);
            Ok(mine)
        })
    }
}

/// The edited nodes under `top`, level by level from the top; each node's edited children
/// are taken out of it (its entries for them are filled in when they are written).
fn gather(mut top: Arc<Node>) -> Vec<Vec<Pending>> {
    unique(&mut top);
    let mut levels = vec![vec![Pending {
        node: top,
        block: 0,
        parent: None,
    }]];
    loop {
        let above = levels.last_mut().expect("starts with the top");
        let mut next = Vec::new();
        for (index, p) in above.iter_mut().enumerate() {
            let n = unique(&mut p.node);
            for entry in 0..n.len() {
                if let Some(mut child) = n.take_dirty_child(entry) {
                    unique(&mut child);
                    next.push(Pending {
                        node: child,
                        block: 0,
                        parent: Some((index, entry)),
                    });
                }
            }
        }
        if next.is_empty() {
            return levels;
        }
        levels.push(next);
    }
}

fn encode_all(
    level: &mut [Pending],
    tid: Tid,
    io: &NodeIo,
    writer: &mut BatchWriter,
) -> Result<Vec<(BlockRef, Arc<Node>)>> {
    let mut out = Vec::with_capacity(level.len());
    for p in level {
        let n = unique(&mut p.node);
        n.tid = tid;
        let buf = writer.node_slot(p.block)?;
        n.encode(buf);
        let checksum = node_checksum(buf);
        io.remember(p.block, checksum, p.node.clone());
        let r = BlockRef {
            block: p.block,
            checksum,
            modify_tid: tid,
        };
        out.push((r, p.node.clone()));
    }
    Ok(out)
}

/// The node, copied first if a savepoint still shares it.
fn unique(node: &mut Arc<Node>) -> &mut Node {
    Arc::make_mut(node)
}
