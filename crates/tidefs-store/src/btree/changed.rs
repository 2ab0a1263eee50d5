//! Records written after a given tid, found by descending only into subtrees whose bref
//! says something beneath changed after it.

use std::sync::Arc;

use crate::error::Result;
use crate::ids::Tid;
use crate::node::Node;
use crate::node_io::NodeIo;
use crate::record::Record;

use super::root::{child, Root};

/// Iterator over the records of a tree with a tid newer than `since`, in key order.
/// Removed records leave no trace here; use [`crate::TreeDiff`] to see removals.
pub struct ChangedSince {
    io: Arc<NodeIo>,
    since: Tid,
    /// Pending (node, next index) frames.
    stack: Vec<(Arc<Node>, usize)>,
    /// Nodes read so far (lets tests check the cost follows the changes).
    nodes_visited: u64,
}

impl ChangedSince {
    pub(crate) fn new(io: Arc<NodeIo>, root: &Root, since: Tid) -> Result<ChangedSince> {
        let mut it = ChangedSince {
            io,
            since,
            stack: Vec::new(),
            nodes_visited: 0,
        };
        let newer = match root {
            Root::Empty => false,
            Root::Clean { bref, .. } => bref.modify_tid > since,
            Root::Dirty(_) => true,
        };
        if newer {
            if let Some(n) = root.node(&it.io)? {
                it.nodes_visited += 1;
                it.stack.push((n, 0));
            }
        }
        Ok(it)
    }

    /// How many nodes the walk has read so far.
    pub fn nodes_visited(&self) -> u64 {
        self.nodes_visited
    }

    fn step(&mut self) -> Result<Option<Record>> {
        while let Some((node, idx)) = self.stack.last_mut() {
            if *idx >= node.len() {
                self.stack.pop();
                continue;
            }
            let i = *idx;
            *idx += 1;
            let node = node.clone();
            if node.is_leaf() {
                if node.entry_tid(i) > self.since {
                    return Ok(Some(Record::from_leaf(&node, i)));
                }
                continue;
            }
            let newer = node.dirty_child(i).is_some() || node.child_ref(i).modify_tid > self.since;
            if newer {
                let c = child(&self.io, &node, i)?;
                self.nodes_visited += 1;
                self.stack.push((c, 0));
            }
        }
        Ok(None)
    }
}

impl Iterator for ChangedSince {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.step() {
            Ok(Some(r)) => Some(Ok(r)),
            Ok(None) => None,
            Err(e) => {
                self.stack.clear();
                Some(Err(e))
            }
        }
    }
}
