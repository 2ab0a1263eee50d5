//! Ordered range scans in either direction.

use std::ops::Bound;
use std::sync::Arc;

use crate::error::Result;
use crate::node::Node;
use crate::node_io::NodeIo;
use crate::record::Record;

use super::root::{child, Root};

/// Iterates the records of a tree whose keys fall in a range, in key order or reverse.
///
/// It holds the nodes of its path, so it keeps seeing the tree as it was when it started
/// even while the transaction that made it edits the tree (edits copy shared nodes).
pub struct RangeIter {
    io: Arc<NodeIo>,
    /// Path from the root; for leaves the index is the next entry to yield (forward) or
    /// one past it (reverse).
    stack: Vec<(Arc<Node>, usize)>,
    lower: Bound<Vec<u8>>,
    upper: Bound<Vec<u8>>,
    reverse: bool,
    done: bool,
}

impl RangeIter {
    pub(crate) fn new(
        io: Arc<NodeIo>,
        root: &Root,
        lower: Bound<Vec<u8>>,
        upper: Bound<Vec<u8>>,
        reverse: bool,
    ) -> Result<RangeIter> {
        let mut it = RangeIter {
            io,
            stack: Vec::new(),
            lower,
            upper,
            reverse,
            done: false,
        };
        if let Some(node) = root.node(&it.io)? {
            it.seek(node)?;
        } else {
            it.done = true;
        }
        Ok(it)
    }

    fn seek(&mut self, mut node: Arc<Node>) -> Result<()> {
        let target = if self.reverse {
            &self.upper
        } else {
            &self.lower
        };
        let key: Option<Vec<u8>> = match target {
            Bound::Included(k) | Bound::Excluded(k) => Some(k.clone()),
            Bound::Unbounded => None,
        };
        loop {
            if node.is_leaf() {
                let pos = match (&key, self.reverse) {
                    (None, false) => 0,
                    (None, true) => node.len(),
                    (Some(k), false) => match node.search(k) {
                        Ok(i) if matches!(self.lower, Bound::Excluded(_)) => i + 1,
                        Ok(i) | Err(i) => i,
                    },
                    (Some(k), true) => match node.search(k) {
                        Ok(i) if matches!(self.upper, Bound::Excluded(_)) => i,
                        Ok(i) => i + 1,
                        Err(i) => i,
                    },
                };
                self.stack.push((node, pos));
                return Ok(());
            }
            if node.len() == 0 {
                return Ok(());
            }
            let i = match (&key, self.reverse) {
                (None, false) => 0,
                (None, true) => node.len() - 1,
                (Some(k), _) => node.child_index(k),
            };
            let next = child(&self.io, &node, i)?;
            self.stack.push((node, i));
            node = next;
        }
    }

    /// Moves to the next leaf position after the current leaf is used up.
    fn advance_leaf(&mut self) -> Result<bool> {
        self.stack.pop();
        loop {
            let Some((node, idx)) = self.stack.last_mut() else {
                return Ok(false);
            };
            let next = if self.reverse {
                idx.checked_sub(1)
            } else {
                Some(*idx + 1).filter(|&n| n < node.len())
            };
            let Some(n) = next else {
                self.stack.pop();
                continue;
            };
            *idx = n;
            let node = node.clone();
            let mut down = child(&self.io, &node, n)?;
            loop {
                if down.is_leaf() {
                    let pos = if self.reverse { down.len() } else { 0 };
                    self.stack.push((down, pos));
                    return Ok(true);
                }
                let i = if self.reverse { down.len() - 1 } else { 0 };
                let next = child(&self.io, &down, i)?;
                self.stack.push((down, i));
                down = next;
            }
        }
    }

    fn step(&mut self) -> Result<Option<Record>> {
        loop {
            let Some((leaf, idx)) = self.stack.last_mut() else {
                return Ok(None);
            };
            let i = if self.reverse {
                match idx.checked_sub(1) {
                    Some(i) => i,
                    None => {
                        if !self.advance_leaf()? {
                            return Ok(None);
                        }
                        continue;
                    }
                }
            } else if *idx < leaf.len() {
                *idx
            } else {
                if !self.advance_leaf()? {
                    return Ok(None);
                }
                continue;
            };
            *idx = if self.reverse { i } else { i + 1 };
            let key = leaf.key(i);
            let in_range = if self.reverse {
                match &self.lower {
                    Bound::Included(l) => key >= l.as_slice(),
                    Bound::Excluded(l) => key > l.as_slice(),
                    Bound::Unbounded => true,
                }
            } else {
                match &self.upper {
                    Bound::Included(u) => key <= u.as_slice(),
                    Bound::Excluded(u) => key < u.as_slice(),
                    Bound::Unbounded => true,
                }
            };
            if !in_range {
                return Ok(None);
            }
            return Ok(Some(Record::from_leaf(leaf, i)));
        }
    }
}

impl Iterator for RangeIter {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.step() {
            Ok(Some(r)) => Some(Ok(r)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}
