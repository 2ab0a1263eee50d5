//! Editing a tree inside a transaction: copy-on-write of the path, splits, merges, and the
//! reference counting that keeps shared blocks exact.
//!
//! Reference rules (see space_map.rs): copying a clean node with one reference frees it
//! (as pending) and hands its children to the copy; copying a node with several references
//! adds one reference to each child and drops one from the original. Entries that hold an
//! extent or a tree root count as references too.

use std::sync::Arc;

use parking_lot::Mutex;

use crate::bref::{BlockRef, Extent};
use crate::error::Result;
use crate::ids::{Tid, TreeId};
use crate::node::{EntryKind, HeldRef, Node, NODE_CAPACITY_BYTES};
use crate::node_io::NodeIo;
use crate::space_map::{FreedRun, SpaceMap};
use crate::tracked_set::TrackedSet;

use super::root::Root;

/// Everything an edit needs, borrowed from the writer for the length of one operation.
pub(crate) struct Mutator<'a> {
    pub io: &'a NodeIo,
    pub space: SpaceRef<'a>,
    pub tid: Tid,
    pub owner: TreeId,
    pub freed: &'a mut Vec<FreedRun>,
    pub fresh: &'a mut TrackedSet,
    /// Upper bound on the nodes that the next commit must write.
    pub dirty_nodes: &'a mut u64,
}

/// The space map as an edit reaches it: the writer's own, or shared by the threads of a
/// parallel insert (`parallel_insert.rs`), which take turns at it.
pub(crate) enum SpaceRef<'a> {
    Own(&'a mut SpaceMap),
    Shared(&'a (dyn SharedSpace + Sync)),
}

/// A space map behind a lock. (A trait, so that a `Mutator` need not name the lifetime of
/// the writer's borrow inside the lock.)
pub(crate) trait SharedSpace {
    fn with_space(&self, f: &mut dyn FnMut(&mut SpaceMap));
}

impl SharedSpace for Mutex<&mut SpaceMap> {
    fn with_space(&self, f: &mut dyn FnMut(&mut SpaceMap)) {
        f(&mut self.lock())
    }
}

impl SpaceRef<'_> {
    fn with<T>(&mut self, f: impl FnOnce(&mut SpaceMap) -> T) -> T {
        match self {
            SpaceRef::Own(space) => f(space),
            SpaceRef::Shared(space) => {
                let (mut f, mut out) = (Some(f), None);
                space.with_space(&mut |s| out = f.take().map(|f| f(s)));
                out.expect("with_space calls back once")
            }
        }
    }

    pub fn get(&mut self, block: u64) -> Result<u32> {
        self.with(|s| s.get(block))
    }

    pub fn inc(&mut self, block: u64) -> Result<()> {
        self.with(|s| s.inc(block))
    }

    pub fn dec(&mut self, block: u64) -> Result<Option<u32>> {
        self.with(|s| s.dec(block))
    }

    pub fn alloc(&mut self, blocks: u32) -> Result<u64> {
        self.with(|s| s.alloc(blocks))
    }
}

/// Whether the store counts the references held by the entries being written.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Accounting {
    /// Extent entries take a reference on insert and drop it on removal or overwrite.
    Managed,
    /// The caller accounts for the entry's reference itself (root-tree bookkeeping).
    Raw,
}

impl Mutator<'_> {
    pub(super) fn new_node(&mut self, level: u8) -> Node {
        *self.dirty_nodes += 1;
        Node::new(level, self.tid, self.owner)
    }

    /// Takes a clean node to be edited: a copy, or the cached node itself when nothing else
    /// holds it (`NodeIo::load_for_edit`).
    fn cow(&mut self, r: BlockRef, level: u8) -> Result<Node> {
        let mut node = self.io.load_for_edit(r, Some(level))?;
        if self.space.get(r.block)? > 1 {
            for i in 0..node.len() {
                if let Some(held) = node.held_ref(i) {
                    self.space.inc(held_block(held))?;
                }
            }
            self.space.dec(r.block)?;
        } else {
            self.drop_ref_block(r.block)?;
        }
        *self.dirty_nodes += 1;
        node.tid = self.tid;
        node.owner = self.owner;
        Ok(node)
    }

    /// Drops one reference on an allocation; remembers it as freed if it was the last.
    fn drop_ref_block(&mut self, block: u64) -> Result<bool> {
        match self.space.dec(block)? {
            Some(blocks) => {
                self.freed.push(FreedRun {
                    block,
                    blocks,
                    freed_tid: self.tid,
                });
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Drops a reference held by an entry; frees what no longer has any.
    pub fn release(&mut self, held: HeldRef, level: Option<u8>) -> Result<()> {
        match held {
            HeldRef::Extent(e) => {
                self.drop_ref_block(e.block)?;
            }
            HeldRef::Node(r) => {
                // Only a node whose last reference goes is read: a node still shared keeps
                // its children, so deleting a snapshot reads just its exclusive part.
                if self.drop_ref_block(r.block)? {
                    let node = self.io.load(r, level)?;
                    self.release_entries(&node)?;
                }
            }
        }
        Ok(())
    }

    fn release_entries(&mut self, node: &Node) -> Result<()> {
        let child_level = node.level.checked_sub(1);
        for i in 0..node.len() {
            if let Some(child) = node.dirty_child(i) {
                self.release_dirty(child.clone())?;
            } else if let Some(held) = node.held_ref(i) {
                let level = if node.is_leaf() { None } else { child_level };
                self.release(held, level)?;
            }
        }
        Ok(())
    }

    /// Releases a node edited in this transaction and everything only it references.
    pub fn release_dirty(&mut self, node: Arc<Node>) -> Result<()> {
        self.release_entries(&node)
    }

    /// Releases a whole tree.
    pub fn release_root(&mut self, root: Root) -> Result<()> {
        match root {
            Root::Empty => Ok(()),
            Root::Clean { bref, level } => self.release(HeldRef::Node(bref), Some(level)),
            Root::Dirty(node) => self.release_dirty(node),
        }
    }

    /// Takes a reference for a newly written entry.
    fn attach(&mut self, held: HeldRef) -> Result<()> {
        if let HeldRef::Extent(e) = held {
            if self.fresh.remove(e.block) {
                return Ok(()); // the allocation's own reference becomes the entry's
            }
        }
        self.space.inc(held_block(held))
    }

    pub(super) fn root_mut<'r>(&mut self, root: &'r mut Root) -> Result<&'r mut Node> {
        match root {
            Root::Empty => *root = Root::Dirty(Arc::new(self.new_node(0))),
            Root::Clean { bref, level } => {
                let copy = self.cow(*bref, *level)?;
                *root = Root::Dirty(Arc::new(copy));
            }
            Root::Dirty(_) => {}
        }
        match root {
            Root::Dirty(node) => Ok(Arc::make_mut(node)),
            _ => unreachable!("made dirty above"),
        }
    }

    /// Child `i` of `parent`, copied for editing if it is clean.
    pub(super) fn child_mut<'n>(&mut self, parent: &'n mut Node, i: usize) -> Result<&'n mut Node> {
        if parent.dirty_child(i).is_none() {
            let copy = self.cow(parent.child_ref(i), parent.level - 1)?;
            parent.set_dirty_child(i, Arc::new(copy));
        }
        Ok(Arc::make_mut(parent.dirty_child_mut(i).expect("dirty")))
    }

    /// Inserts or replaces `key`. Returns true if the key was new.
    pub fn insert(
        &mut self,
        root: &mut Root,
        key: &[u8],
        value: &[u8],
        kind: EntryKind,
        accounting: Accounting,
    ) -> Result<bool> {
        let node = self.root_mut(root)?;
        let (split, new) = self.insert_rec(node, key, value, kind, accounting)?;
        if let Some(right) = split {
            let Root::Dirty(left) = std::mem::replace(root, Root::Empty) else {
                unreachable!("root is dirty")
            };
            let mut top = self.new_node(left.level + 1);
            let left_key = left.key(0).to_vec();
            let right_key = right.key(0).to_vec();
            let placeholder = [0u8; BlockRef::ENCODED_BYTES];
            top.insert_at(
                0,
                &left_key,
                &placeholder,
                EntryKind::Child,
                self.tid,
                Some(left),
            );
            top.insert_at(
                1,
                &right_key,
                &placeholder,
                EntryKind::Child,
                self.tid,
                Some(Arc::new(right)),
            );
            *root = Root::Dirty(Arc::new(top));
        }
        Ok(new)
    }

    pub(super) fn insert_rec(
        &mut self,
        node: &mut Node,
        key: &[u8],
        value: &[u8],
        kind: EntryKind,
        accounting: Accounting,
    ) -> Result<(Option<Node>, bool)> {
        node.tid = self.tid;
        let new = if node.is_leaf() {
            self.put_in_leaf(node, key, value, kind, accounting)?
        } else {
            let i = node.child_index(key);
            if i == 0 && key < node.key(0) {
                node.replace_key(0, key); // separators stay lower bounds of their subtrees
            }
            let child = self.child_mut(node, i)?;
            let (split, new) = self.insert_rec(child, key, value, kind, accounting)?;
            if let Some(right) = split {
                let sep = right.key(0).to_vec();
                let placeholder = [0u8; BlockRef::ENCODED_BYTES];
                node.insert_at(
                    i + 1,
                    &sep,
                    &placeholder,
                    EntryKind::Child,
                    self.tid,
                    Some(Arc::new(right)),
                );
            }
            new
        };
        if node.is_overfull() {
            *self.dirty_nodes += 1;
            return Ok((Some(node.split()), new));
        }
        Ok((None, new))
    }

    /// Inserts or replaces `key` in a leaf (which may become overfull). Returns true if
    /// the key was new.
    fn put_in_leaf(
        &mut self,
        node: &mut Node,
        key: &[u8],
        value: &[u8],
        kind: EntryKind,
        accounting: Accounting,
    ) -> Result<bool> {
        match node.search(key) {
            Ok(i) => {
                let old = node.held_ref(i);
                node.replace_value(i, value, kind, self.tid);
                if accounting == Accounting::Managed {
                    if let Some(held) = node.held_ref(i) {
                        self.attach(held)?;
                    }
                    if let Some(old) = old {
                        self.release(old, None)?;
                    }
                }
                Ok(false)
            }
            Err(i) => {
                node.insert_at(i, key, value, kind, self.tid, None);
                if accounting == Accounting::Managed {
                    if let Some(held) = node.held_ref(i) {
                        self.attach(held)?;
                    }
                }
                Ok(true)
            }
        }
    }

    /// Removes `key` if present. Returns whether it was there.
    pub fn remove(&mut self, root: &mut Root, key: &[u8], accounting: Accounting) -> Result<bool> {
        if !contains(self.io, root, key)? {
            return Ok(false);
        }
        let node = self.root_mut(root)?;
        self.remove_rec(node, key, accounting)?;
        // Shrink the tree while the root is empty or has a single child.
        while let Root::Dirty(node) = &*root {
            if node.len() == 0 {
                *root = Root::Empty;
            } else if !node.is_leaf() && node.len() == 1 {
                let child = match node.dirty_child(0) {
                    Some(c) => Root::Dirty(c.clone()),
                    None => Root::Clean {
                        bref: node.child_ref(0),
                        level: node.level - 1,
                    },
                };
                *root = child;
            } else {
                break;
            }
        }
        Ok(true)
    }

    fn remove_rec(&mut self, node: &mut Node, key: &[u8], accounting: Accounting) -> Result<()> {
        node.tid = self.tid;
        if node.is_leaf() {
            let i = node.search(key).expect("presence checked before editing");
            let old = node.held_ref(i);
            node.remove(i);
            if accounting == Accounting::Managed {
                if let Some(old) = old {
                    self.release(old, None)?;
                }
            }
            return Ok(());
        }
        let i = node.child_index(key);
        let child = self.child_mut(node, i)?;
        self.remove_rec(child, key, accounting)?;
        if child.is_underfull() {
            self.rebalance(node, i)?;
        }
        Ok(())
    }

    /// Merges child `i` with a sibling, or moves entries over from it.
    fn rebalance(&mut self, parent: &mut Node, i: usize) -> Result<()> {
        if parent.len() < 2 {
            return Ok(());
        }
        let (l, r) = if i + 1 < parent.len() {
            (i, i + 1)
        } else {
            (i - 1, i)
        };
        self.child_mut(parent, l)?;
        self.child_mut(parent, r)?;
        let mut right_arc = parent.take_dirty_child(r).expect("dirty");
        let right = Arc::make_mut(&mut right_arc);
        let left = Arc::make_mut(parent.dirty_child_mut(l).expect("dirty"));
        let total = left.used_bytes() + right.used_bytes();
        if total <= NODE_CAPACITY_BYTES {
            left.append(right);
            parent.remove(r);
            return Ok(());
        }
        // Redistribute so both halves hold about the same number of bytes.
        let target = total / 2;
        if left.used_bytes() < right.used_bytes() {
            let mut moved = 0;
            let mut k = 0;
            while k + 1 < right.len() && left.used_bytes() + moved + right.entry_bytes(k) <= target
            {
                moved += right.entry_bytes(k);
                k += 1;
            }
            let rest = right.split_off(k.max(1));
            left.append(right);
            *right = rest;
        } else {
            let mut moved = 0;
            let mut k = left.len();
            while k > 1 && right.used_bytes() + moved + left.entry_bytes(k - 1) <= target {
                moved += left.entry_bytes(k - 1);
                k -= 1;
            }
            let k = k.min(left.len() - 1);
            let mut moved_part = left.split_off(k);
            moved_part.append(right);
            moved_part.tid = self.tid;
            *right = moved_part;
        }
        let sep = right.key(0).to_vec();
        parent.replace_key(r, &sep);
        parent.set_dirty_child(r, right_arc);
        Ok(())
    }
}

fn held_block(held: HeldRef) -> u64 {
    match held {
        HeldRef::Extent(Extent { block, .. }) => block,
        HeldRef::Node(r) => r.block,
    }
}

/// Finds the leaf entry for `key`.
pub(crate) fn lookup(io: &NodeIo, root: &Root, key: &[u8]) -> Result<Option<(Arc<Node>, usize)>> {
    match root.node(io)? {
        Some(node) => lookup_from(io, node, key),
        None => Ok(None),
    }
}

/// [`lookup`] from a root node already at hand.
pub(crate) fn lookup_from(
    io: &NodeIo,
    mut node: Arc<Node>,
    key: &[u8],
) -> Result<Option<(Arc<Node>, usize)>> {
    loop {
        if node.len() == 0 {
            return Ok(None);
        }
        if node.is_leaf() {
            return Ok(node.search(key).ok().map(|i| (node, i)));
        }
        if key < node.key(0) {
            return Ok(None);
        }
        let i = node.child_index(key);
        node = super::root::child(io, &node, i)?;
    }
}

pub(crate) fn contains(io: &NodeIo, root: &Root, key: &[u8]) -> Result<bool> {
    Ok(lookup(io, root, key)?.is_some())
}
