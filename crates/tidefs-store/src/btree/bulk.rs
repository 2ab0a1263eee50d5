//! Inserting a sorted batch of records in one descent.
//!
//! Inserting records one by one walks from the root for each. A sorted batch is instead
//! split among the children of each node it passes through, so every edited node is
//! reached once per batch, its entries are added in one go, and it is split (into as many
//! pieces as needed) once at the end.

use std::sync::Arc;

use crate::bref::BlockRef;
use crate::error::Result;
use crate::node::{EntryKind, Node};

use super::mutate::{Accounting, Mutator};
use super::root::Root;

impl Mutator<'_> {
    /// Inserts or replaces `records`, sorted by key with no key twice. Returns how many
    /// keys were new.
    pub fn insert_sorted(
        &mut self,
        root: &mut Root,
        records: &[(&[u8], &[u8])],
        kind: EntryKind,
        accounting: Accounting,
    ) -> Result<u64> {
        debug_assert!(records.windows(2).all(|w| w[0].0 < w[1].0));
        if records.is_empty() {
            return Ok(0);
        }
        let node = self.root_mut(root)?;
        let (mut splits, new) = self.insert_sorted_rec(node, records, kind, accounting)?;
        // The root split: a new root above the old one and its new siblings, repeated
        // while that root is itself too full.
        while !splits.is_empty() {
            let Root::Dirty(left) = std::mem::replace(root, Root::Empty) else {
                unreachable!("root is dirty")
            };
            let mut top = self.new_node(left.level + 1);
            let placeholder = [0u8; BlockRef::ENCODED_BYTES];
            let first_key = left.key(0).to_vec();
            top.insert_at(
                0,
                &first_key,
                &placeholder,
                EntryKind::Child,
                self.tid,
                Some(left),
            );
            for right in splits {
                let key = right.key(0).to_vec();
                let at = top.len();
                let child = Some(Arc::new(right));
                top.insert_at(at, &key, &placeholder, EntryKind::Child, self.tid, child);
            }
            splits = self.split_overfull(&mut top);
            *root = Root::Dirty(Arc::new(top));
        }
        Ok(new)
    }

    fn insert_sorted_rec(
        &mut self,
        node: &mut Node,
        records: &[(&[u8], &[u8])],
        kind: EntryKind,
        accounting: Accounting,
    ) -> Result<(Vec<Node>, u64)> {
        node.tid = self.tid;
        let mut new = 0;
        if node.is_leaf() {
            for &(key, value) in records {
                new += u64::from(self.put_in_leaf(node, key, value, kind, accounting)?);
            }
        } else {
            if records[0].0 < node.key(0) {
                node.replace_key(0, records[0].0); // separators stay lower bounds
            }
            // Runs of records per child, found left to right, applied right to left so
            // the separators a split adds do not move the children still to be done.
            let mut runs: Vec<(usize, usize, usize)> = Vec::new();
            for (r, (key, _)) in records.iter().enumerate() {
                let child = node.child_index(key);
                match runs.last_mut() {
                    Some((c, _, end)) if *c == child => *end = r + 1,
                    _ => runs.push((child, r, r + 1)),
                }
            }
            let placeholder = [0u8; BlockRef::ENCODED_BYTES];
            for &(i, start, end) in runs.iter().rev() {
                let c = self.child_mut(node, i)?;
                let (splits, n) =
                    self.insert_sorted_rec(c, &records[start..end], kind, accounting)?;
                new += n;
                for (j, right) in splits.into_iter().enumerate() {
                    let key = right.key(0).to_vec();
                    let right = Some(Arc::new(right));
                    node.insert_at(
                        i + 1 + j,
                        &key,
                        &placeholder,
                        EntryKind::Child,
                        self.tid,
                        right,
                    );
                }
            }
        }
        Ok((self.split_overfull(node), new))
    }

    /// Splits a node that grew past a node's size into as many as needed; returns the new
    /// right siblings in key order (the node keeps the lowest part).
    fn split_overfull(&mut self, node: &mut Node) -> Vec<Node> {
        let mut pieces: Vec<Node> = Vec::new();
        // Halve whatever is too big, lowest first: `node`, then the pieces cut off.
        while node.is_overfull() {
            let right = node.split();
            *self.dirty_nodes += 1;
            pieces.insert(0, right);
        }
        let mut i = 0;
        while i < pieces.len() {
            if pieces[i].is_overfull() {
                let right = pieces[i].split();
                *self.dirty_nodes += 1;
                pieces.insert(i + 1, right);
            } else {
                i += 1;
            }
        }
        pieces
    }
}
