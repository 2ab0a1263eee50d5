//! A read-only handle on one tree as of a transaction or a committed root.

use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, OnceLock};

use crate::btree::changed::ChangedSince;
use crate::btree::cursor::RangeIter;
use crate::btree::diff::TreeDiff;
use crate::btree::mutate::lookup_from;
use crate::btree::root::Root;
use crate::error::Result;
use crate::ids::{Tid, TreeId};
use crate::node::Node;
use crate::node_io::NodeIo;
use crate::record::{value_parts, Record};

/// One tree frozen at the moment the view was taken.
#[derive(Clone)]
pub struct TreeView {
    pub(crate) io: Arc<NodeIo>,
    pub(crate) id: TreeId,
    pub(crate) root: Root,
    /// The root node once loaded: lookups then start without a trip to the node cache.
    root_node: OnceLock<Arc<Node>>,
}

fn owned(b: Bound<&[u8]>) -> Bound<Vec<u8>> {
    match b {
        Bound::Included(k) => Bound::Included(k.to_vec()),
        Bound::Excluded(k) => Bound::Excluded(k.to_vec()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl TreeView {
    pub(crate) fn new(io: Arc<NodeIo>, id: TreeId, root: Root) -> TreeView {
        TreeView {
            io,
            id,
            root,
            root_node: OnceLock::new(),
        }
    }

    pub fn id(&self) -> TreeId {
        self.id
    }

    /// The record with `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Record>> {
        self.find(key, Record::from_leaf)
    }

    /// `f` of the value stored under `key` (after the extent reference, for extent
    /// records), read in place: no copy of the record is made.
    pub fn get_with<T>(&self, key: &[u8], f: impl FnOnce(&[u8]) -> T) -> Result<Option<T>> {
        self.find(key, |node, i| f(value_parts(node, i).0))
    }

    fn find<T>(&self, key: &[u8], f: impl FnOnce(&Node, usize) -> T) -> Result<Option<T>> {
        let root = match self.root_node.get() {
            Some(node) => node.clone(),
            None => match self.root.node(&self.io)? {
                Some(node) => self.root_node.get_or_init(|| node).clone(),
                None => return Ok(None),
            },
        };
        Ok(lookup_from(&self.io, root, key)?.map(|(node, i)| f(&node, i)))
    }

    /// The value bytes of `key` (after the extent reference, for extent records).
    pub fn get_value(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.get(key)?.map(|r| r.value))
    }

    /// Records with keys in `range`, in ascending key order.
    pub fn range<'k, R: RangeBounds<&'k [u8]>>(&self, range: R) -> Result<RangeIter> {
        RangeIter::new(
            self.io.clone(),
            &self.root,
            owned(range.start_bound().cloned()),
            owned(range.end_bound().cloned()),
            false,
        )
    }

    /// Records with keys in `range`, in descending key order.
    pub fn range_rev<'k, R: RangeBounds<&'k [u8]>>(&self, range: R) -> Result<RangeIter> {
        RangeIter::new(
            self.io.clone(),
            &self.root,
            owned(range.start_bound().cloned()),
            owned(range.end_bound().cloned()),
            true,
        )
    }

    /// Records with keys starting with `prefix`, ascending.
    pub fn prefix(&self, prefix: &[u8]) -> Result<RangeIter> {
        let upper = prefix_successor(prefix);
        RangeIter::new(
            self.io.clone(),
            &self.root,
            Bound::Included(prefix.to_vec()),
            upper.map_or(Bound::Unbounded, Bound::Excluded),
            false,
        )
    }

    /// Records written after `since`.
    pub fn changed_since(&self, since: Tid) -> Result<ChangedSince> {
        ChangedSince::new(self.io.clone(), &self.root, since)
    }

    /// How `other` differs from this tree: `old` is this tree's record, `new` the other's.
    pub fn diff(&self, other: &TreeView) -> Result<TreeDiff> {
        TreeDiff::new(self.io.clone(), &self.root, &other.root)
    }

    /// Whether the tree holds no records.
    pub fn is_empty(&self) -> bool {
        matches!(self.root, Root::Empty)
    }
}

/// The smallest key greater than every key starting with `prefix` (None: no such key).
pub fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut v = prefix.to_vec();
    while let Some(last) = v.pop() {
        if last < 0xff {
            v.push(last + 1);
            return Some(v);
        }
    }
    None
}
