//! The root of one tree as a transaction or a reader sees it.

use std::sync::Arc;

use crate::bref::BlockRef;
use crate::error::Result;
use crate::node::Node;
use crate::node_io::NodeIo;

/// Where a tree starts: nothing, a written node, or a node edited in this transaction.
#[derive(Clone)]
pub(crate) enum Root {
    Empty,
    Clean { bref: BlockRef, level: u8 },
    Dirty(Arc<Node>),
}

impl Root {
    pub fn from_ref(bref: Option<BlockRef>, level: u8) -> Root {
        match bref {
            Some(bref) => Root::Clean { bref, level },
            None => Root::Empty,
        }
    }

    /// The root node, loaded if needed.
    pub fn node(&self, io: &NodeIo) -> Result<Option<Arc<Node>>> {
        match self {
            Root::Empty => Ok(None),
            Root::Clean { bref, level } => io.load(*bref, Some(*level)).map(Some),
            Root::Dirty(node) => Ok(Some(node.clone())),
        }
    }
}

/// Child `i` of an internal node, loaded if needed.
pub(crate) fn child(io: &NodeIo, node: &Node, i: usize) -> Result<Arc<Node>> {
    if let Some(c) = node.dirty_child(i) {
        return Ok(c.clone());
    }
    if let Some(c) = node.cached_child(i) {
        return Ok(c);
    }
    let c = io.load(node.child_ref(i), Some(node.level - 1))?;
    node.remember_child(i, &c);
    Ok(c)
}

/// Whether two children are certainly the same subtree (same block or same edited node).
pub(crate) fn same_child(a: &Node, i: usize, b: &Node, j: usize) -> bool {
    match (a.dirty_child(i), b.dirty_child(j)) {
        (Some(x), Some(y)) => Arc::ptr_eq(x, y),
        (None, None) => a.child_ref(i) == b.child_ref(j),
        _ => false,
    }
}
