//! Readers: a consistent view of the last committed state that never blocks the writer.

use std::collections::HashMap;
use std::sync::Arc;

use crate::bref::{Extent, TreeInfo};
use crate::btree::root::Root;
use crate::error::{Result, StoreError};
use crate::ids::{Tid, TreeId};
use crate::layout::block_offset;
use crate::node_io::NodeIo;
use crate::pool::Shared;
use crate::tree_view::TreeView;
use crate::txn::tree_key;

/// The committed state a reader holds on to.
pub(crate) struct Committed {
    pub tid: Tid,
    pub root_tree: Root,
    /// Trees edited by the open transaction, for a view that includes its changes; their
    /// root-tree records are stale until the commit rewrites them.
    pub overlay: HashMap<TreeId, (Root, TreeInfo)>,
}

/// A read-only view of the pool as of one committed tid. While it lives, no block it can
/// reach is reused.
pub struct ReadTxn {
    pub(crate) shared: Arc<Shared>,
    pub(crate) committed: Arc<Committed>,
}

impl ReadTxn {
    /// The tid this view shows (for a view with uncommitted changes: the last commit).
    pub fn tid(&self) -> Tid {
        self.committed.tid
    }

    /// Whether this view includes changes of the open transaction.
    pub fn includes_uncommitted(&self) -> bool {
        !self.committed.overlay.is_empty()
    }

    fn root_view(&self) -> TreeView {
        TreeView::new(
            self.shared.io.clone(),
            TreeId::ROOT,
            self.committed.root_tree.clone(),
        )
    }

    /// The record describing `tree`.
    pub fn tree_info(&self, tree: TreeId) -> Result<TreeInfo> {
        if let Some((_, info)) = self.committed.overlay.get(&tree) {
            return Ok(*info);
        }
        let record = self
            .root_view()
            .get(&tree_key(tree))?
            .ok_or(StoreError::NoSuchTree(tree))?;
        TreeInfo::decode(&record.value)
            .map_err(|e| StoreError::corrupt("root tree record", 0, format!("tree {tree}: {e}")))
    }

    /// A view of `tree` as committed.
    pub fn tree(&self, tree: TreeId) -> Result<TreeView> {
        if tree == TreeId::ROOT {
            return Err(StoreError::Invalid(
                "the root tree is managed by the store".into(),
            ));
        }
        if let Some((root, _)) = self.committed.overlay.get(&tree) {
            return Ok(TreeView::new(self.shared.io.clone(), tree, root.clone()));
        }
        let info = self.tree_info(tree)?;
        Ok(TreeView::new(
            self.shared.io.clone(),
            tree,
            Root::from_ref(info.root, info.root_level),
        ))
    }

    /// Every tree with its record, in id order.
    pub fn list_trees(&self) -> Result<Vec<(TreeId, TreeInfo)>> {
        let mut out = decode_tree_list(self.root_view())?;
        for (id, info) in &mut out {
            if let Some((_, newer)) = self.committed.overlay.get(id) {
                *info = *newer;
            }
        }
        Ok(out)
    }

    /// The tree registered under `name`.
    pub fn named_tree(&self, name: &str) -> Result<Option<TreeId>> {
        let key = crate::txn::name_key(name)?;
        Ok(self
            .root_view()
            .get(&key)?
            .map(|r| crate::txn::decode_name_value(&r.value)))
    }

    /// Hints that bytes `[offset, offset + len)` of `extent` will be read soon (a
    /// sequential reader of cold data asks for the next extents while it reads this one).
    pub fn prefetch_extent(&self, extent: Extent, offset: u64, len: u64) {
        let len = len.min(extent.bytes().saturating_sub(offset));
        self.shared
            .io
            .device
            .prefetch(crate::layout::block_offset(extent.block) + offset, len);
    }

    /// Reads data of an extent.
    pub fn read_extent(&self, extent: Extent, offset: u64, buf: &mut [u8]) -> Result<()> {
        read_extent(&self.shared.io, extent, offset, buf)
    }
}

impl Drop for ReadTxn {
    fn drop(&mut self) {
        self.shared.unregister_reader(self.committed.tid);
    }
}

pub(crate) fn decode_tree_list(root: TreeView) -> Result<Vec<(TreeId, TreeInfo)>> {
    let mut out = Vec::new();
    for record in root.range::<std::ops::RangeFull>(..)? {
        let record = record?;
        if record.key.len() != 8 {
            continue; // a tree name, not a tree
        }
        let id =
            u64::from_be_bytes(
                record.key.as_slice().try_into().map_err(|_| {
                    StoreError::corrupt("root tree record", 0, "key is not a tree id")
                })?,
            );
        let info = TreeInfo::decode(&record.value)
            .map_err(|e| StoreError::corrupt("root tree record", 0, format!("tree {id}: {e}")))?;
        out.push((TreeId(id), info));
    }
    Ok(out)
}

pub(crate) fn read_extent(io: &NodeIo, extent: Extent, offset: u64, buf: &mut [u8]) -> Result<()> {
    if offset + buf.len() as u64 > extent.bytes() {
        return Err(StoreError::Invalid(format!(
            "read of {} bytes at {offset} past the end of a {}-byte extent",
            buf.len(),
            extent.bytes()
        )));
    }
    let at = block_offset(extent.block) + offset;
    io.device
        .read_at(at, buf)
        .map_err(|e| StoreError::io("reading extent data", at, e))
}
