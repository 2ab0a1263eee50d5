//! The context one file-system operation runs in: the store's write transaction, the tree
//! of the subvolume, and the time the operation happens at (one clock reading per
//! operation, so every timestamp an operation sets is the same, as in Linux).

use tidefs_store::{Record, TreeId, TreeView, WriteTxn};

use crate::clock::Timespec;
use crate::error::Result;

pub(crate) struct Cx<'t, 'a> {
    pub t: &'t mut WriteTxn<'a>,
    pub tree: TreeId,
    pub now: Timespec,
}

impl<'t, 'a> Cx<'t, 'a> {
    pub fn new(t: &'t mut WriteTxn<'a>, tree: TreeId, now: Timespec) -> Self {
        Cx { t, tree, now }
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
