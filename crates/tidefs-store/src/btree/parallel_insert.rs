//! Inserting a large sorted batch with two threads.
//!
//! A batch of random keys touches nearly every leaf, and inserting it one record at a time
//! is most of a bulk load's time on one CPU. The root's children are disjoint subtrees, so
//! the batch is cut between two of them and each half goes into its own children on its own
//! thread. The threads share nothing but the space map, which they take turns at (a few
//! reference counts per copied node), and the node cache, which is shared anyway. Splits of
//! the root's children are collected and put into the root once both are done (each child
//! ends as inserting the records one by one would have left it).

use std::ops::Range;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::bref::BlockRef;
use crate::error::{Result, StoreError};
use crate::node::{EntryKind, Node};
use crate::space_map::FreedRun;
use crate::tracked_set::TrackedSet;

use super::mutate::{Accounting, Mutator, SpaceRef};
use super::root::Root;

/// Batches smaller than this go in on the calling thread: a thread costs more than it saves.
pub(crate) const PARALLEL_RECORDS_MIN: usize = 8192;

/// One of the root's children with the records that go into it, and what it became.
struct Part {
    /// The child's entry in the root.
    entry: usize,
    records: Range<usize>,
    /// The child, then any siblings it split off, in key order.
    pieces: Vec<Arc<Node>>,
}

/// What a thread did besides editing its children.
#[derive(Default)]
struct Tally {
    new_keys: u64,
    freed: Vec<FreedRun>,
    dirty_nodes: u64,
}

impl Mutator<'_> {
    /// Inserts or replaces every record of `batch` (sorted by key, no key twice) as plain
    /// records; returns how many keys were new. Falls back to one thread when the tree is a
    /// single leaf or the batch is small.
    pub fn insert_sorted(&mut self, root: &mut Root, batch: &[(&[u8], &[u8])]) -> Result<u64> {
        let level = match root {
            Root::Empty => 0,
            Root::Clean { level, .. } => *level,
            Root::Dirty(node) => node.level,
        };
        if level == 0 || batch.len() < PARALLEL_RECORDS_MIN {
            return self.insert_each(root, batch);
        }
        let node = self.root_mut(root)?;
        if batch[0].0 < node.key(0) {
            node.replace_key(0, batch[0].0); // separators stay lower bounds of their subtrees
        }
        // The records of each child the batch reaches, each child made editable here.
        let mut parts = Vec::new();
        let mut start = 0;
        while start < batch.len() {
            let entry = node.child_index(batch[start].0);
            let end = if entry + 1 < node.len() {
                let next = node.key(entry + 1);
                start + batch[start..].partition_point(|(k, _)| *k < next)
            } else {
                batch.len()
            };
            if let Err(e) = self.child_mut(node, entry) {
                // Back into the root with the children taken so far: nothing is lost.
                for part in parts {
                    let Part { entry, pieces, .. } = part;
                    node.set_dirty_child(entry, pieces.into_iter().next().expect("the child"));
                }
                return Err(e);
            }
            let child = node.take_dirty_child(entry).expect("made editable above");
            parts.push(Part {
                entry,
                records: start..end,
                pieces: vec![child],
            });
            start = end;
        }
        // Cut the parts where half the records have gone before.
        let half = batch.len() / 2;
        let cut = parts
            .iter()
            .position(|p| p.records.end > half)
            .map_or(parts.len(), |i| i + 1)
            .min(parts.len() - 1)
            .max(1);
        let (mine, theirs) = parts.split_at_mut(cut);
        let (io, tid, owner) = (self.io, self.tid, self.owner);
        let shared_space = Mutex::new(match &mut self.space {
            SpaceRef::Own(space) => &mut **space,
            SpaceRef::Shared(_) => unreachable!("parallel inserts do not nest"),
        });
        let run = |parts: &mut [Part]| -> Result<Tally> {
            let mut tally = Tally::default();
            let mut fresh = TrackedSet::default();
            let mut m = Mutator {
                io,
                space: SpaceRef::Shared(&shared_space),
                tid,
                owner,
                freed: &mut tally.freed,
                fresh: &mut fresh,
                dirty_nodes: &mut tally.dirty_nodes,
            };
            let mut new_keys = 0;
            for part in parts {
                for &(key, value) in &batch[part.records.clone()] {
                    // The piece whose range holds the key: the last starting at or below it.
                    let at = part.pieces[1..].partition_point(|p| p.key(0) <= key);
                    let piece = Arc::make_mut(&mut part.pieces[at]);
                    let (split, new) =
                        m.insert_rec(piece, key, value, EntryKind::Plain, Accounting::Managed)?;
                    new_keys += u64::from(new);
                    if let Some(right) = split {
                        part.pieces.insert(at + 1, Arc::new(right));
                    }
                }
            }
            tally.new_keys = new_keys;
            Ok(tally)
        };
        let (a, b) = std::thread::scope(|scope| {
            let other = scope.spawn(|| run(theirs));
            let a = run(mine);
            let b = other.join().unwrap_or_else(|_| {
                Err(StoreError::Invalid(
                    "parallel insert thread panicked".into(),
                ))
            });
            (a, b)
        });
        // Whatever happened, every child goes back into the root.
        let node = match root {
            Root::Dirty(node) => Arc::make_mut(node),
            _ => unreachable!("made dirty above"),
        };
        let placeholder = [0u8; BlockRef::ENCODED_BYTES];
        for part in parts.into_iter().rev() {
            let mut pieces = part.pieces.into_iter();
            node.set_dirty_child(part.entry, pieces.next().expect("the child itself"));
            for (j, piece) in pieces.enumerate() {
                let sep = piece.key(0).to_vec();
                node.insert_at(
                    part.entry + 1 + j,
                    &sep,
                    &placeholder,
                    EntryKind::Child,
                    self.tid,
                    Some(piece),
                );
            }
        }
        node.tid = self.tid;
        let mut new_keys = 0;
        for tally in [a, b] {
            let tally = tally?;
            new_keys += tally.new_keys;
            self.freed.extend(tally.freed);
            *self.dirty_nodes += tally.dirty_nodes;
        }
        self.grow_while_overfull(root);
        Ok(new_keys)
    }

    fn insert_each(&mut self, root: &mut Root, batch: &[(&[u8], &[u8])]) -> Result<u64> {
        let mut new_keys = 0;
        for &(key, value) in batch {
            let new = self.insert(root, key, value, EntryKind::Plain, Accounting::Managed)?;
            new_keys += u64::from(new);
        }
        Ok(new_keys)
    }

    /// Splits an overfull root into pieces under a new root, as often as it takes.
    fn grow_while_overfull(&mut self, root: &mut Root) {
        loop {
            match root {
                Root::Dirty(top) if top.is_overfull() => {}
                _ => return,
            }
            let Root::Dirty(top) = std::mem::replace(root, Root::Empty) else {
                unreachable!("checked above")
            };
            let mut left = Arc::try_unwrap(top).unwrap_or_else(|shared| (*shared).clone());
            let mut pieces = Vec::new();
            split_all(&mut left, &mut pieces);
            *self.dirty_nodes += pieces.len() as u64;
            let mut new_top = self.new_node(left.level + 1);
            let placeholder = [0u8; BlockRef::ENCODED_BYTES];
            for (i, piece) in std::iter::once(left).chain(pieces).enumerate() {
                let sep = piece.key(0).to_vec();
                new_top.insert_at(
                    i,
                    &sep,
                    &placeholder,
                    EntryKind::Child,
                    self.tid,
                    Some(Arc::new(piece)),
                );
            }
            *root = Root::Dirty(Arc::new(new_top));
        }
    }
}

/// Splits `node` until no piece is overfull; the pieces after the first go to `out`, in
/// key order.
fn split_all(node: &mut Node, out: &mut Vec<Node>) {
    if !node.is_overfull() {
        return;
    }
    let mut right = node.split();
    let mut after = Vec::new();
    split_all(&mut right, &mut after);
    split_all(node, out);
    out.push(right);
    out.extend(after);
}
