//! The context one file-system operation runs in: the store's write transaction, the tree
//! of the subvolume, and the time the operation happens at (one clock reading per
//! operation, so every timestamp an operation sets is the same, as in Linux).

use tidefs_store::{Extent, ReadTxn, Record, StoreError, Tid, TreeId, TreeView, WriteTxn};

use crate::clock::Timespec;
use crate::error::Result;

/// What an operation reads and writes through: the writer's transaction, or (for
/// operations that only read) a view of the latest state that does not hold the writer
/// lock, so reads run alongside writes.
pub(crate) enum Txn<'t, 'a> {
    Write(&'t mut WriteTxn<'a>),
    Read(&'t ReadTxn),
}

fn read_only_misuse() -> StoreError {
    StoreError::Invalid("internal: a read-only file-system operation tried to write".into())
}

impl<'a> Txn<'_, 'a> {
    pub fn get(&mut self, tree: TreeId, key: &[u8]) -> tidefs_store::Result<Option<Record>> {
        match self {
            Txn::Write(t) => t.get(tree, key),
            Txn::Read(r) => r.tree(tree)?.get(key),
        }
    }

    pub fn tree(&mut self, tree: TreeId) -> tidefs_store::Result<TreeView> {
        match self {
            Txn::Write(t) => t.tree(tree),
            Txn::Read(r) => r.tree(tree),
        }
    }

    pub fn read_extent(
        &self,
        extent: Extent,
        offset: u64,
        buf: &mut [u8],
    ) -> tidefs_store::Result<()> {
        match self {
            Txn::Write(t) => t.read_extent(extent, offset, buf),
            Txn::Read(r) => r.read_extent(extent, offset, buf),
        }
    }

    /// Hints that part of an extent will be read soon (reads only; a writer's data is
    /// fresh anyway).
    pub fn prefetch_extent(&self, extent: Extent, offset: u64, len: u64) {
        if let Txn::Read(r) = self {
            r.prefetch_extent(extent, offset, len);
        }
    }

    fn writer(&mut self) -> tidefs_store::Result<&mut WriteTxn<'a>> {
        match self {
            Txn::Write(t) => Ok(t),
            Txn::Read(_) => Err(read_only_misuse()),
        }
    }

    pub fn insert(&mut self, tree: TreeId, key: &[u8], value: &[u8]) -> tidefs_store::Result<bool> {
        self.writer()?.insert(tree, key, value)
    }

    pub fn remove(&mut self, tree: TreeId, key: &[u8]) -> tidefs_store::Result<bool> {
        self.writer()?.remove(tree, key)
    }

    pub fn insert_with_extent(
        &mut self,
        tree: TreeId,
        key: &[u8],
        extent: Extent,
        payload: &[u8],
    ) -> tidefs_store::Result<bool> {
        self.writer()?
            .insert_with_extent(tree, key, extent, payload)
    }

    pub fn contiguous_blocks(&mut self, max: u32) -> tidefs_store::Result<u32> {
        self.writer()?.contiguous_blocks(max)
    }

    pub fn alloc_extent(&mut self, blocks: u32) -> tidefs_store::Result<Extent> {
        self.writer()?.alloc_extent(blocks)
    }

    /// Writes extents' data as [`tidefs_store::WriteTxn::write_extents`] does, running
    /// `work` while the data is being written.
    pub fn write_extents_with<R: Send>(
        &mut self,
        writes: &[(Extent, &[u8])],
        work: impl FnOnce() -> R + Send,
    ) -> tidefs_store::Result<R> {
        self.writer()?.write_extents_with(writes, work)
    }

    /// The tid changes made now will commit with.
    pub fn tid(&self) -> Tid {
        match self {
            Txn::Write(t) => t.tid(),
            Txn::Read(r) => Tid(r.tid().0 + 1),
        }
    }
}

pub(crate) struct Cx<'t, 'a> {
    pub t: Txn<'t, 'a>,
    pub tree: TreeId,
    pub now: Timespec,
}

impl<'t, 'a> Cx<'t, 'a> {
    pub fn new(t: &'t mut WriteTxn<'a>, tree: TreeId, now: Timespec) -> Self {
        Cx {
            t: Txn::Write(t),
            tree,
            now,
        }
    }

    pub fn reading(r: &'t ReadTxn, tree: TreeId, now: Timespec) -> Self {
        Cx {
            t: Txn::Read(r),
            tree,
            now,
        }
    }

    pub fn get(&mut self, key: &[u8]) -> Result<Option<Record>> {
        Ok(self.t.get(self.tree, key)?)
    }

    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.t.insert(self.tree, key, value)?;
        Ok(())
    }

    pub fn del(&mut self, key: &[u8]) -> Result<bool> {
        Ok(self.t.remove(self.tree, key)?)
    }

    /// The tree as this operation sees it so far.
    pub fn view(&mut self) -> Result<TreeView> {
        Ok(self.t.tree(self.tree)?)
    }

    /// Keys (only) of all records starting with `prefix`, collected before any is changed.
    pub fn keys_with_prefix(&mut self, prefix: &[u8]) -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        for r in self.view()?.prefix(prefix)? {
            out.push(r?.key);
        }
        Ok(out)
    }
}
