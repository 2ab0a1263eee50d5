//! The write transaction: the single writer's view of the pool, edited in memory and written
//! out by a commit.

use rustc_hash::FxHashMap as HashMap;
use std::sync::Arc;

use crate::bref::{Extent, TreeInfo};
use crate::btree::mutate::{lookup, Accounting, Mutator, SpaceRef};
use crate::btree::root::Root;
use crate::error::{Result, StoreError};
use crate::ids::{Tid, TreeId};
use crate::layout::{block_offset, KEY_BYTES_MAX, NODE_BLOCKS, VALUE_BYTES_MAX};
use crate::node::{key_prefix, EntryKind};
use crate::node_io::NodeIo;
use crate::record::Record;
use crate::redo::{Redo, RedoLog};
use crate::space_map::{FreedRun, SpaceMap, RC_MAX};
use crate::tracked_set::TrackedSet;
use crate::tree_view::TreeView;

/// A tree this transaction has touched.
#[derive(Clone)]
pub(crate) struct TreeState {
    pub root: Root,
    /// The tree's record; `info.root` is stale while `root` is dirty.
    pub info: TreeInfo,
    /// The root-tree record must be rewritten at commit.
    pub entry_dirty: bool,
}

/// What [`TxnState::rollback`] restores.
pub(crate) struct Savepoint {
    trees: HashMap<TreeId, TreeState>,
    root_tree: Root,
    next_tree_id: u64,
    freed_len: usize,
    dirty_nodes: u64,
    fresh_bytes: u64,
    changed: bool,
}

/// Everything the open transaction has changed.
pub(crate) struct TxnState {
    pub tid: Tid,
    pub trees: HashMap<TreeId, TreeState>,
    pub root_tree: Root,
    pub next_tree_id: u64,
    pub freed: Vec<FreedRun>,
    pub fresh: TrackedSet,
    /// Extents allocated by this transaction (writable until commit).
    pub born: TrackedSet,
    pub dirty_nodes: u64,
    pub fresh_bytes: u64,
    pub changed: bool,
    /// Set while single writes run under a checkpoint (see `redo.rs`).
    pub redo: Option<RedoLog>,
}

impl TxnState {
    pub fn new(tid: Tid, root_tree: Root, next_tree_id: u64) -> TxnState {
        TxnState {
            tid,
            trees: HashMap::default(),
            root_tree,
            next_tree_id,
            freed: Vec::new(),
            fresh: TrackedSet::default(),
            born: TrackedSet::default(),
            dirty_nodes: 0,
            fresh_bytes: 0,
            changed: false,
            redo: None,
        }
    }

    /// Remembers the state so a failed change can be undone. Cheap: the trees map holds
    /// `Arc`s, and the extent sets and space map log their changes instead of being copied.
    pub fn savepoint(&mut self) -> Savepoint {
        self.fresh.begin_savepoint();
        self.born.begin_savepoint();
        Savepoint {
            trees: self.trees.clone(),
            root_tree: self.root_tree.clone(),
            next_tree_id: self.next_tree_id,
            freed_len: self.freed.len(),
            dirty_nodes: self.dirty_nodes,
            fresh_bytes: self.fresh_bytes,
            changed: self.changed,
        }
    }

    /// Keeps every change made since the savepoint.
    pub fn keep(&mut self) {
        self.fresh.end_savepoint();
        self.born.end_savepoint();
    }

    /// Undoes every change made since the savepoint.
    pub fn rollback(&mut self, sp: Savepoint) {
        self.fresh.rollback();
        self.born.rollback();
        self.trees = sp.trees;
        self.root_tree = sp.root_tree;
        self.next_tree_id = sp.next_tree_id;
        self.freed.truncate(sp.freed_len);
        self.dirty_nodes = sp.dirty_nodes;
        self.fresh_bytes = sp.fresh_bytes;
        self.changed = sp.changed;
    }

    /// Blocks the next commit may need to allocate, at most.
    pub fn commit_blocks_estimate(&self) -> u64 {
        // Every edited node plus a path of root-tree nodes per touched tree, with slack for
        // splits while the root tree's records are rewritten.
        (self.dirty_nodes + 4 * (self.trees.len() as u64 + 4)) * u64::from(NODE_BLOCKS)
    }
}

/// Bytes from which [`WriteTxn::write_extents`] uses two writer threads.
const PARALLEL_WRITE_BYTES_MIN: usize = 4 << 20;

/// Splits `runs` (device offset, buffers, bytes) so the runs before the returned index
/// hold about half of `total` bytes, cutting a run between two of its buffers if need be.
fn split_runs_in_half(runs: &mut Vec<(u64, Vec<&[u8]>, usize)>, total: usize) -> usize {
    let mut before = 0;
    for i in 0..runs.len() {
        let (at, bufs, len) = &mut runs[i];
        if before + *len < total / 2 {
            before += *len;
            continue;
        }
        // The middle falls in run i: cut it after the buffer that reaches the middle.
        let mut upto = 0;
        let mut cut = bufs.len();
        for (j, b) in bufs.iter().enumerate() {
            upto += b.len();
            if before + upto >= total / 2 {
                cut = j + 1;
                break;
            }
        }
        if cut == bufs.len() {
            return i + 1;
        }
        let tail = bufs.split_off(cut);
        let tail_len = *len - upto;
        let tail_at = *at + upto as u64;
        *len = upto;
        runs.insert(i + 1, (tail_at, tail, tail_len));
        return i + 1;
    }
    runs.len()
}

pub(crate) fn tree_key(id: TreeId) -> [u8; 8] {
    id.0.to_be_bytes()
}

/// Root-tree key of a tree name. Tree records have 8-byte keys; names are longer, so the
/// two never collide.
pub(crate) fn name_key(name: &str) -> Result<Vec<u8>> {
    if name.is_empty() || name.len() > 255 {
        return Err(StoreError::Invalid(format!(
            "tree name {name:?} must be 1 to 255 bytes"
        )));
    }
    let mut k = vec![0xff; 8];
    k.extend_from_slice(name.as_bytes());
    Ok(k)
}

/// The writer's handle inside [`crate::Pool::write`]: every change made through it commits
/// together, or (if the closure fails) none of them happens.
pub struct WriteTxn<'a> {
    pub(crate) state: &'a mut TxnState,
    pub(crate) space: &'a mut SpaceMap,
    pub(crate) io: &'a Arc<NodeIo>,
}

pub(crate) fn decode_name_value(v: &[u8]) -> TreeId {
    TreeId(u64::from_le_bytes(v.try_into().unwrap_or([0xff; 8])))
}

macro_rules! mutator {
    ($self:ident, $owner:expr) => {{
        let TxnState {
            tid,
            freed,
            fresh,
            dirty_nodes,
            ..
        } = &mut *$self.state;
        Mutator {
            io: $self.io,
            space: SpaceRef::Own(&mut *$self.space),
            tid: *tid,
            owner: $owner,
            freed,
            fresh,
            dirty_nodes,
        }
    }};
}

impl WriteTxn<'_> {
    /// Notes that the running write is about to change something.
    fn changing(&mut self) {
        if let Some(log) = &mut self.state.redo {
            log.write_dirty = true;
        }
    }

    /// Logs a change that succeeded, for replay after a later write's rollback.
    fn log(&mut self, redo: impl FnOnce() -> Redo) {
        if let Some(log) = &mut self.state.redo {
            log.log(redo);
        }
    }

    /// Makes again the changes of `entries`, which were made once from the state this
    /// transaction is in now.
    pub(crate) fn replay(&mut self, entries: Vec<Redo>, arena: &[u8]) -> Result<()> {
        debug_assert!(self.state.redo.is_none());
        let differs = |what: &str| {
            Err(StoreError::Invalid(format!(
                "replaying the open transaction: {what} differs from the first time"
            )))
        };
        let mut at = 0usize;
        let mut take = |len: u32| {
            let bytes = &arena[at..at + len as usize];
            at += len as usize;
            bytes
        };
        for e in entries {
            match e {
                Redo::Put {
                    tree,
                    key_len,
                    value_len,
                    kind,
                } => {
                    let key = take(key_len);
                    let value = take(value_len);
                    self.put(tree, key, value, kind)?;
                }
                Redo::Remove { tree, key_len } => {
                    self.remove(tree, take(key_len))?;
                }
                Redo::AllocExtent(extent) => {
                    if self.alloc_extent(extent.blocks)? != extent {
                        return differs("an extent allocation");
                    }
                }
                Redo::CreateTree(id) => {
                    if self.create_tree()? != id {
                        return differs("a new tree's id");
                    }
                }
                Redo::SnapshotTree {
                    source,
                    read_only,
                    id,
                } => {
                    if self.snapshot_tree(source, read_only)? != id {
                        return differs("a snapshot's id");
                    }
                }
                Redo::DeleteTree(id) => self.delete_tree(id)?,
                Redo::SetReadOnly(id, ro) => self.set_read_only(id, ro)?,
                Redo::SetNamedTree(name, id) => self.set_named_tree(&name, id)?,
            }
        }
        Ok(())
    }

    /// The tid these changes will commit with.
    pub fn tid(&self) -> Tid {
        self.state.tid
    }

    fn load_tree(&mut self, id: TreeId) -> Result<()> {
        if id == TreeId::ROOT {
            return Err(StoreError::Invalid(
                "the root tree is managed by the store".into(),
            ));
        }
        if self.state.trees.contains_key(&id) {
            return Ok(());
        }
        let (node, i) = lookup(self.io, &self.state.root_tree, &tree_key(id))?
            .ok_or(StoreError::NoSuchTree(id))?;
        let info = TreeInfo::decode(node.value(i))
            .map_err(|e| StoreError::corrupt("root tree record", 0, format!("tree {id}: {e}")))?;
        self.state.trees.insert(
            id,
            TreeState {
                root: Root::from_ref(info.root, info.root_level),
                info,
                entry_dirty: false,
            },
        );
        Ok(())
    }

    fn writable_tree(&mut self, id: TreeId) -> Result<()> {
        self.load_tree(id)?;
        if self.state.trees[&id].info.read_only {
            return Err(StoreError::ReadOnlyTree(id));
        }
        Ok(())
    }

    fn check_sizes(key: &[u8], value_len: usize) -> Result<()> {
        if key.len() > KEY_BYTES_MAX {
            return Err(StoreError::KeyTooLong {
                len: key.len(),
                max: KEY_BYTES_MAX,
            });
        }
        if value_len > VALUE_BYTES_MAX {
            return Err(StoreError::ValueTooLong {
                len: value_len,
                max: VALUE_BYTES_MAX,
            });
        }
        Ok(())
    }

    fn put(&mut self, tree: TreeId, key: &[u8], value: &[u8], kind: EntryKind) -> Result<bool> {
        let new = self.edit_tree(tree, |m, root| {
            m.insert(root, key, value, kind, Accounting::Managed)
        })?;
        if let Some(log) = &mut self.state.redo {
            log.log_put(tree, key, value, kind);
        }
        Ok(new)
    }

    /// Runs `edit` on `tree`'s root with a mutator; the tree and the transaction count as
    /// changed afterwards, also when the edit failed part-way.
    fn edit_tree<T>(
        &mut self,
        tree: TreeId,
        edit: impl FnOnce(&mut Mutator<'_>, &mut Root) -> Result<T>,
    ) -> Result<T> {
        self.writable_tree(tree)?;
        self.changing();
        let mut ts = self.state.trees.remove(&tree).expect("loaded");
        let result = edit(&mut mutator!(self, tree), &mut ts.root);
        ts.entry_dirty = true;
        self.state.trees.insert(tree, ts);
        self.state.changed = true;
        result
    }

    /// Sets `key` to `value`. Returns true if the key was new.
    pub fn insert(&mut self, tree: TreeId, key: &[u8], value: &[u8]) -> Result<bool> {
        Self::check_sizes(key, value.len())?;
        self.put(tree, key, value, EntryKind::Plain)
    }

    /// Inserts many records, as [`WriteTxn::insert`] one after another would (a key given
    /// twice ends with its last value). They are applied in key order: consecutive keys
    /// share most of their path, so a random batch goes in at about the speed of an
    /// ordered one. Returns how many keys were new.
    pub fn insert_many<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &mut self,
        tree: TreeId,
        records: &[(K, V)],
    ) -> Result<u64> {
        for (k, v) in records {
            Self::check_sizes(k.as_ref(), v.as_ref().len())?;
        }
        // Sorted by key, then by position: of equal keys the last given comes last, and is
        // the one kept. The first 8 key bytes, as a number, decide most comparisons without
        // touching the keys (sorting slices took a tenth of a batch's time).
        let mut order: Vec<(u64, usize)> = records
            .iter()
            .enumerate()
            .map(|(i, (k, _))| (key_prefix(k.as_ref()), i))
            .collect();
        order.sort_unstable_by(|&(pa, a), &(pb, b)| {
            pa.cmp(&pb)
                .then_with(|| records[a].0.as_ref().cmp(records[b].0.as_ref()))
                .then(a.cmp(&b))
        });
        let mut batch: Vec<(&[u8], &[u8])> = Vec::with_capacity(order.len());
        for (_, i) in order {
            let (k, v) = &records[i];
            let (k, v) = (k.as_ref(), v.as_ref());
            match batch.last_mut() {
                Some(last) if last.0 == k => *last = (k, v),
                _ => batch.push((k, v)),
            }
        }
        self.put_sorted(tree, &batch)
    }

    /// Puts a sorted batch of plain records without duplicate keys; large batches go in
    /// with two threads (`btree/parallel_insert.rs`).
    fn put_sorted(&mut self, tree: TreeId, batch: &[(&[u8], &[u8])]) -> Result<u64> {
        let new = self.edit_tree(tree, |m, root| m.insert_sorted(root, batch))?;
        if let Some(log) = &mut self.state.redo {
            for &(k, v) in batch {
                log.log_put(tree, k, v, EntryKind::Plain);
            }
        }
        Ok(new)
    }

    /// Sets `key` to a record that references `extent` (and carries `payload`). The record
    /// holds its own reference: the first record made for a fresh extent takes over the
    /// allocation's reference, every further one (a reflink) adds one.
    pub fn insert_with_extent(
        &mut self,
        tree: TreeId,
        key: &[u8],
        extent: Extent,
        payload: &[u8],
    ) -> Result<bool> {
        Self::check_sizes(key, payload.len() + Extent::ENCODED_BYTES)?;
        let head = self.space.get(extent.block)?;
        if head == 0 || head > RC_MAX {
            return Err(StoreError::Invalid(format!(
                "extent at block {} is not allocated",
                extent.block
            )));
        }
        let mut value = vec![0u8; Extent::ENCODED_BYTES + payload.len()];
        extent.encode(&mut value);
        value[Extent::ENCODED_BYTES..].copy_from_slice(payload);
        self.put(tree, key, &value, EntryKind::Extent)
    }

    /// Removes `key`. Returns whether it was there.
    pub fn remove(&mut self, tree: TreeId, key: &[u8]) -> Result<bool> {
        self.writable_tree(tree)?;
        self.changing();
        let mut ts = self.state.trees.remove(&tree).expect("loaded");
        let result = mutator!(self, tree).remove(&mut ts.root, key, Accounting::Managed);
        if matches!(result, Ok(true)) {
            ts.entry_dirty = true;
            self.state.changed = true;
            if let Some(log) = &mut self.state.redo {
                log.log_remove(tree, key);
            }
        }
        self.state.trees.insert(tree, ts);
        result
    }

    /// The record with `key`, including this transaction's changes.
    pub fn get(&mut self, tree: TreeId, key: &[u8]) -> Result<Option<Record>> {
        self.tree(tree)?.get(key)
    }

    /// A view of `tree` with this transaction's changes so far.
    pub fn tree(&mut self, tree: TreeId) -> Result<TreeView> {
        self.load_tree(tree)?;
        Ok(TreeView::new(
            self.io.clone(),
            tree,
            self.state.trees[&tree].root.clone(),
        ))
    }

    /// The record describing `tree`.
    pub fn tree_info(&mut self, tree: TreeId) -> Result<TreeInfo> {
        self.load_tree(tree)?;
        Ok(self.state.trees[&tree].info)
    }

    /// Every tree of the pool with its record, in id order.
    pub fn list_trees(&mut self) -> Result<Vec<(TreeId, TreeInfo)>> {
        let view = TreeView::new(self.io.clone(), TreeId::ROOT, self.state.root_tree.clone());
        let mut out = crate::read_txn::decode_tree_list(view)?;
        for (id, info) in &mut out {
            if let Some(ts) = self.state.trees.get(id) {
                *info = ts.info;
            }
        }
        Ok(out)
    }

    fn write_tree_entry(&mut self, id: TreeId, info: &TreeInfo) -> Result<()> {
        let mut root = std::mem::replace(&mut self.state.root_tree, Root::Empty);
        let result = mutator!(self, TreeId::ROOT).insert(
            &mut root,
            &tree_key(id),
            &info.encode(),
            EntryKind::Tree,
            Accounting::Raw,
        );
        self.state.root_tree = root;
        result.map(|_| ())
    }

    /// The tree registered under `name` (layers above find their own trees this way).
    pub fn named_tree(&mut self, name: &str) -> Result<Option<TreeId>> {
        let key = name_key(name)?;
        Ok(lookup(self.io, &self.state.root_tree, &key)?
            .map(|(node, i)| decode_name_value(node.value(i))))
    }

    /// Registers `tree` under `name` (or removes the name with `None`).
    pub fn set_named_tree(&mut self, name: &str, tree: Option<TreeId>) -> Result<()> {
        let key = name_key(name)?;
        self.changing();
        let mut root = std::mem::replace(&mut self.state.root_tree, Root::Empty);
        let result = match tree {
            Some(id) => mutator!(self, TreeId::ROOT)
                .insert(
                    &mut root,
                    &key,
                    &id.0.to_le_bytes(),
                    EntryKind::Plain,
                    Accounting::Raw,
                )
                .map(|_| ()),
            None => mutator!(self, TreeId::ROOT)
                .remove(&mut root, &key, Accounting::Raw)
                .map(|_| ()),
        };
        self.state.root_tree = root;
        self.state.changed = true;
        if result.is_ok() {
            self.log(|| Redo::SetNamedTree(name.to_string(), tree));
        }
        result
    }

    /// Creates an empty tree.
    pub fn create_tree(&mut self) -> Result<TreeId> {
        self.changing();
        let id = TreeId(self.state.next_tree_id);
        self.state.next_tree_id += 1;
        let info = TreeInfo {
            root: None,
            root_level: 0,
            read_only: false,
            created_tid: self.state.tid,
            origin: None,
        };
        self.write_tree_entry(id, &info)?;
        self.state.trees.insert(
            id,
            TreeState {
                root: Root::Empty,
                info,
                entry_dirty: false,
            },
        );
        self.state.changed = true;
        self.log(|| Redo::CreateTree(id));
        Ok(id)
    }

    /// Writes out `tree`'s edited nodes now, so its root can be shared.
    fn write_out_tree(&mut self, tree: TreeId) -> Result<()> {
        let mut ts = self.state.trees.remove(&tree).expect("loaded");
        let mut writer = self.io.batch_writer();
        let result = mutator!(self, tree)
            .write_out(&mut ts.root, &mut writer)
            .and_then(|()| writer.finish());
        if let Root::Clean { bref, level } = &ts.root {
            ts.info.root = Some(*bref);
            ts.info.root_level = *level;
        } else {
            ts.info.root = None;
            ts.info.root_level = 0;
        }
        self.state.trees.insert(tree, ts);
        result
    }

    /// A new tree sharing every block with `source` as it is now: O(1) in the tree's size.
    /// `read_only` makes it a snapshot; otherwise it is a writable clone.
    pub fn snapshot_tree(&mut self, source: TreeId, read_only: bool) -> Result<TreeId> {
        self.load_tree(source)?;
        self.changing();
        if matches!(self.state.trees[&source].root, Root::Dirty(_)) {
            self.write_out_tree(source)?;
            self.state
                .trees
                .get_mut(&source)
                .expect("loaded")
                .entry_dirty = true;
        }
        let src = self.state.trees[&source].info;
        if let Some(root) = src.root {
            self.space.inc(root.block)?;
        }
        let id = TreeId(self.state.next_tree_id);
        self.state.next_tree_id += 1;
        let info = TreeInfo {
            root: src.root,
            root_level: src.root_level,
            read_only,
            created_tid: self.state.tid,
            origin: Some(source),
        };
        self.write_tree_entry(id, &info)?;
        self.state.changed = true;
        self.log(|| Redo::SnapshotTree {
            source,
            read_only,
            id,
        });
        Ok(id)
    }

    /// Deletes a tree; blocks no other tree shares are freed.
    pub fn delete_tree(&mut self, tree: TreeId) -> Result<()> {
        self.load_tree(tree)?;
        self.changing();
        let ts = self.state.trees.remove(&tree).expect("loaded");
        mutator!(self, tree).release_root(ts.root)?;
        let mut root = std::mem::replace(&mut self.state.root_tree, Root::Empty);
        let result =
            mutator!(self, TreeId::ROOT).remove(&mut root, &tree_key(tree), Accounting::Raw);
        self.state.root_tree = root;
        result?;
        self.state.changed = true;
        self.log(|| Redo::DeleteTree(tree));
        Ok(())
    }

    /// Makes a tree read-only or writable.
    pub fn set_read_only(&mut self, tree: TreeId, read_only: bool) -> Result<()> {
        self.load_tree(tree)?;
        self.changing();
        let ts = self.state.trees.get_mut(&tree).expect("loaded");
        ts.info.read_only = read_only;
        ts.entry_dirty = true;
        self.state.changed = true;
        self.log(|| Redo::SetReadOnly(tree, read_only));
        Ok(())
    }

    /// How many blocks (up to `max`) an extent allocated now can have and still lie right
    /// after the last allocation, in the same space page: big data cut to fit lies back to
    /// back instead of leaving the rest of each page to smaller allocations.
    pub fn contiguous_blocks(&mut self, max: u32) -> Result<u32> {
        self.space.free_run_at_cursor(max)
    }

    /// Allocates `blocks` contiguous data blocks, writable until commit. The extent is freed
    /// at commit unless a record references it by then.
    pub fn alloc_extent(&mut self, blocks: u32) -> Result<Extent> {
        let needed = u64::from(blocks)
            + self.state.commit_blocks_estimate()
            + self.space.data_reserve_blocks();
        let free = self.space.allocatable_blocks();
        if needed > free {
            return Err(StoreError::NoSpace {
                needed_blocks: u64::from(blocks),
                free_blocks: free.saturating_sub(needed - u64::from(blocks)),
            });
        }
        self.changing();
        let block = self.space.alloc(blocks)?;
        self.io.forget(block);
        self.state.fresh.insert(block);
        self.state.born.insert(block);
        self.state.fresh_bytes += u64::from(blocks) * crate::layout::BLOCK_BYTES as u64;
        self.state.changed = true;
        self.log(|| Redo::AllocExtent(Extent { block, blocks }));
        Ok(Extent { block, blocks })
    }

    /// Writes into an extent allocated by this transaction.
    pub fn write_extent(&mut self, extent: Extent, offset: u64, data: &[u8]) -> Result<()> {
        self.check_extent_write(extent, offset, data.len())?;
        let at = block_offset(extent.block) + offset;
        self.io
            .device
            .write_data_at(at, data)
            .map_err(|e| StoreError::io("writing extent data", at, e))
    }

    /// Writes several extents' data (each from offset 0), as [`WriteTxn::write_extent`]
    /// does. Big batches are written by two threads at once: one direct write at a time
    /// leaves a fast disk idle between requests.
    pub fn write_extents(&mut self, writes: &[(Extent, &[u8])]) -> Result<()> {
        self.write_extents_with(writes, || ())
    }

    /// [`WriteTxn::write_extents`], running `work` on the calling thread while big batches
    /// are written (checksumming the same data, say), so CPU work overlaps the I/O.
    pub fn write_extents_with<R: Send>(
        &mut self,
        writes: &[(Extent, &[u8])],
        work: impl FnOnce() -> R + Send,
    ) -> Result<R> {
        let total: usize = writes.iter().map(|(_, d)| d.len()).sum();
        if writes.len() < 2 || total < PARALLEL_WRITE_BYTES_MIN {
            for (e, d) in writes {
                self.write_extent(*e, 0, d)?;
            }
            return Ok(work());
        }
        for (extent, data) in writes {
            self.check_extent_write(*extent, 0, data.len())?;
        }
        // Extents allocated one after another usually lie one after another on the device:
        // such a run goes down as one vectored request. The runs are split in two halves
        // by bytes, one per thread.
        let mut runs: Vec<(u64, Vec<&[u8]>, usize)> = Vec::new();
        for (extent, data) in writes {
            let at = block_offset(extent.block);
            match runs.last_mut() {
                Some((start, bufs, len)) if *start + *len as u64 == at => {
                    bufs.push(data);
                    *len += data.len();
                }
                _ => runs.push((at, vec![data], data.len())),
            }
        }
        let half = split_runs_in_half(&mut runs, total);
        let device = &self.io.device;
        let write_runs = |runs: &[(u64, Vec<&[u8]>, usize)]| -> Result<()> {
            runs.iter().try_for_each(|(at, bufs, _)| {
                device
                    .write_data_vectored_at(*at, bufs)
                    .map_err(|e| StoreError::io("writing extent data", *at, e))
            })
        };
        let (first, second) = runs.split_at(half);
        let joined = |h: std::thread::ScopedJoinHandle<'_, Result<()>>| {
            h.join().unwrap_or_else(|_| {
                Err(StoreError::Invalid("extent writer thread panicked".into()))
            })
        };
        std::thread::scope(|scope| {
            let a = scope.spawn(|| write_runs(first));
            let b = scope.spawn(|| write_runs(second));
            let done = work();
            let a = joined(a);
            joined(b).and(a).map(|()| done)
        })
    }

    fn check_extent_write(&self, extent: Extent, offset: u64, len: usize) -> Result<()> {
        if offset + len as u64 > extent.bytes() {
            return Err(StoreError::Invalid(format!(
                "write of {len} bytes at {offset} past the end of a {}-byte extent",
                extent.bytes()
            )));
        }
        if !self.state.born.contains(extent.block) {
            return Err(StoreError::Invalid(format!(
                "extent at block {} was not allocated by this transaction; committed data is never overwritten",
                extent.block
            )));
        }
        Ok(())
    }

    /// Reads data of an extent.
    pub fn read_extent(&self, extent: Extent, offset: u64, buf: &mut [u8]) -> Result<()> {
        crate::read_txn::read_extent(self.io, extent, offset, buf)
    }
}

impl WriteTxn<'_> {
    /// Commit, first half: frees unreferenced fresh extents and writes every edited node,
    /// the root tree last. Returns the root tree's new root.
    pub(crate) fn write_out_all(&mut self) -> Result<Root> {
        let tid = self.state.tid;
        let fresh: Vec<u64> = self.state.fresh.take_all();
        for block in fresh {
            if let Some(blocks) = self.space.dec(block)? {
                self.state.freed.push(FreedRun {
                    block,
                    blocks,
                    freed_tid: tid,
                });
            }
        }
        let mut ids: Vec<TreeId> = self
            .state
            .trees
            .iter()
            .filter(|(_, ts)| ts.entry_dirty)
            .map(|(id, _)| *id)
            .collect();
        ids.sort();
        for id in ids {
            self.write_out_tree(id)?;
            let info = self.state.trees[&id].info;
            self.write_tree_entry(id, &info)?;
            self.state.trees.get_mut(&id).expect("loaded").entry_dirty = false;
        }
        let mut root = std::mem::replace(&mut self.state.root_tree, Root::Empty);
        let mut writer = self.io.batch_writer();
        let result = mutator!(self, TreeId::ROOT)
            .write_out(&mut root, &mut writer)
            .and_then(|()| writer.finish());
        self.state.root_tree = root.clone();
        result.map(|()| root)
    }
}

#[cfg(test)]
mod tests {
    use super::split_runs_in_half;

    type Runs<'a> = Vec<(u64, Vec<&'a [u8]>, usize)>;

    fn lens(runs: &Runs<'_>) -> Vec<(u64, Vec<usize>, usize)> {
        runs.iter()
            .map(|(at, bufs, len)| (*at, bufs.iter().map(|b| b.len()).collect(), *len))
            .collect()
    }

    #[test]
    fn halves_cut_a_run_between_buffers() {
        let data = [0u8; 40];
        let mut runs: Runs = vec![(
            0,
            vec![&data[..10], &data[..10], &data[..10], &data[..10]],
            40,
        )];
        assert_eq!(split_runs_in_half(&mut runs, 40), 1);
        assert_eq!(
            lens(&runs),
            vec![(0, vec![10, 10], 20), (20, vec![10, 10], 20)]
        );
    }

    #[test]
    fn halves_fall_between_runs() {
        let data = [0u8; 40];
        let mut runs: Runs = vec![(0, vec![&data[..20]], 20), (100, vec![&data[..20]], 20)];
        assert_eq!(split_runs_in_half(&mut runs, 40), 1);
        assert_eq!(lens(&runs), vec![(0, vec![20], 20), (100, vec![20], 20)]);
    }

    #[test]
    fn one_buffer_cannot_be_cut() {
        let data = [0u8; 40];
        let mut runs: Runs = vec![(0, vec![&data[..]], 40)];
        assert_eq!(split_runs_in_half(&mut runs, 40), 1);
        assert_eq!(lens(&runs), vec![(0, vec![40], 40)]);
    }
}
