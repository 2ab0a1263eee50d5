//! What readers get back: one record of a tree.

use crate::bref::Extent;
use crate::ids::Tid;
use crate::node::{EntryKind, Node};

/// One key → value item, with the tid of the transaction that last wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub key: Vec<u8>,
    /// The value bytes (after the extent reference, for extent records).
    pub value: Vec<u8>,
    /// The data extent this record references, if any.
    pub extent: Option<Extent>,
    pub tid: Tid,
}

impl Record {
    pub(crate) fn from_leaf(node: &Node, i: usize) -> Record {
        let (value, extent) = value_parts(node, i);
        Record {
            key: node.key(i).to_vec(),
            value: value.to_vec(),
            extent,
            tid: node.entry_tid(i),
        }
    }
}

/// Splits an entry's stored value into the caller's bytes and its extent.
pub(crate) fn value_parts(node: &Node, i: usize) -> (&[u8], Option<Extent>) {
    let v = node.value(i);
    match node.kind(i) {
        EntryKind::Extent => (&v[Extent::ENCODED_BYTES..], node.extent(i)),
        _ => (v, None),
    }
}
