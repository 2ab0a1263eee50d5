//! Difference of two trees by walking both together and skipping every pair of identical
//! subtrees: cost follows the changed paths, not the tree size.

use std::sync::Arc;

use crate::error::Result;
use crate::node::Node;
use crate::node_io::NodeIo;
use crate::record::Record;

use super::root::{child, same_child, Root};

/// One key whose record differs between the two trees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffEntry {
    pub key: Vec<u8>,
    /// The record in the first tree (`None`: added).
    pub old: Option<Record>,
    /// The record in the second tree (`None`: removed).
    pub new: Option<Record>,
}

/// A pending piece of one side of the walk.
enum Item {
    /// A whole tree (its root node).
    Tree(Arc<Node>),
    /// Child `i` of an internal node.
    Child(Arc<Node>, usize),
    /// Entry `i` of a leaf.
    Entry(Arc<Node>, usize),
}

impl Item {
    fn level(&self) -> Option<u8> {
        match self {
            Item::Tree(n) => Some(n.level),
            Item::Child(p, _) => Some(p.level - 1),
            Item::Entry(..) => None,
        }
    }

    /// A key no record in this subtree is below (`None`: unbounded).
    fn lower_bound(&self) -> Option<&[u8]> {
        match self {
            Item::Tree(_) => None,
            Item::Child(p, i) => Some(p.key(*i)),
            Item::Entry(n, i) => Some(n.key(*i)),
        }
    }
}

/// Iterator over the differences between two trees, in key order.
pub struct TreeDiff {
    io: Arc<NodeIo>,
    a: Vec<Item>,
    b: Vec<Item>,
    nodes_read: u64,
}

impl TreeDiff {
    pub(crate) fn new(io: Arc<NodeIo>, a: &Root, b: &Root) -> Result<TreeDiff> {
        let mut diff = TreeDiff {
            io,
            a: Vec::new(),
            b: Vec::new(),
            nodes_read: 0,
        };
        let identical = match (a, b) {
            (Root::Clean { bref: x, .. }, Root::Clean { bref: y, .. }) => x == y,
            (Root::Dirty(x), Root::Dirty(y)) => Arc::ptr_eq(x, y),
            (Root::Empty, Root::Empty) => true,
            _ => false,
        };
        if !identical {
            if let Some(n) = a.node(&diff.io)? {
                diff.a.push(Item::Tree(n));
            }
            if let Some(n) = b.node(&diff.io)? {
                diff.b.push(Item::Tree(n));
            }
        }
        Ok(diff)
    }

    /// Nodes the walk has opened so far (lets tests check the cost follows the changes).
    pub fn nodes_read(&self) -> u64 {
        self.nodes_read
    }

    fn expand(io: &NodeIo, side: &mut Vec<Item>, nodes_read: &mut u64) -> Result<()> {
        *nodes_read += 1;
        let node = match side.pop().expect("expanding an item") {
            Item::Tree(n) => n,
            Item::Child(p, i) => child(io, &p, i)?,
            Item::Entry(..) => unreachable!("entries are not expanded"),
        };
        if node.is_leaf() {
            side.extend((0..node.len()).rev().map(|i| Item::Entry(node.clone(), i)));
        } else {
            side.extend((0..node.len()).rev().map(|i| Item::Child(node.clone(), i)));
        }
        Ok(())
    }

    fn step(&mut self) -> Result<Option<DiffEntry>> {
        loop {
            match (self.a.last(), self.b.last()) {
                (None, None) => return Ok(None),
                (Some(Item::Entry(n, i)), None) => {
                    let old = Record::from_leaf(n, *i);
                    self.a.pop();
                    return Ok(Some(removed(old)));
                }
                (None, Some(Item::Entry(n, i))) => {
                    let new = Record::from_leaf(n, *i);
                    self.b.pop();
                    return Ok(Some(added(new)));
                }
                (Some(_), None) => Self::expand(&self.io, &mut self.a, &mut self.nodes_read)?,
                (None, Some(_)) => Self::expand(&self.io, &mut self.b, &mut self.nodes_read)?,
                (Some(Item::Entry(x, i)), Some(Item::Entry(y, j))) => {
                    let (kx, ky) = (x.key(*i), y.key(*j));
                    match kx.cmp(ky) {
                        std::cmp::Ordering::Less => {
                            let old = Record::from_leaf(x, *i);
                            self.a.pop();
                            return Ok(Some(removed(old)));
                        }
                        std::cmp::Ordering::Greater => {
                            let new = Record::from_leaf(y, *j);
                            self.b.pop();
                            return Ok(Some(added(new)));
                        }
                        std::cmp::Ordering::Equal => {
                            let same = x.kind(*i) == y.kind(*j) && x.value(*i) == y.value(*j);
                            let entry = (!same).then(|| DiffEntry {
                                key: kx.to_vec(),
                                old: Some(Record::from_leaf(x, *i)),
                                new: Some(Record::from_leaf(y, *j)),
                            });
                            self.a.pop();
                            self.b.pop();
                            if entry.is_some() {
                                return Ok(entry);
                            }
                        }
                    }
                }
                (Some(Item::Entry(x, i)), Some(sub)) => {
                    // The record lies before everything in the other subtree: it is unmatched.
                    if sub.lower_bound().is_some_and(|lo| x.key(*i) < lo) {
                        let old = Record::from_leaf(x, *i);
                        self.a.pop();
                        return Ok(Some(removed(old)));
                    }
                    Self::expand(&self.io, &mut self.b, &mut self.nodes_read)?;
                }
                (Some(sub), Some(Item::Entry(y, j))) => {
                    if sub.lower_bound().is_some_and(|lo| y.key(*j) < lo) {
                        let new = Record::from_leaf(y, *j);
                        self.b.pop();
                        return Ok(Some(added(new)));
                    }
                    Self::expand(&self.io, &mut self.a, &mut self.nodes_read)?;
                }
                (Some(x), Some(y)) => {
                    if let (Item::Child(p, i), Item::Child(q, j)) = (x, y) {
                        if same_child(p, *i, q, *j) {
                            self.a.pop();
                            self.b.pop();
                            continue;
                        }
                    }
                    let (lx, ly) = (x.level(), y.level());
                    if lx >= ly {
                        Self::expand(&self.io, &mut self.a, &mut self.nodes_read)?;
                    }
                    if ly >= lx {
                        Self::expand(&self.io, &mut self.b, &mut self.nodes_read)?;
                    }
                }
            }
        }
    }
}

fn removed(old: Record) -> DiffEntry {
    DiffEntry {
        key: old.key.clone(),
        old: Some(old),
        new: None,
    }
}

fn added(new: Record) -> DiffEntry {
    DiffEntry {
        key: new.key.clone(),
        old: None,
        new: Some(new),
    }
}

impl Iterator for TreeDiff {
    type Item = Result<DiffEntry>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.step() {
            Ok(Some(e)) => Some(Ok(e)),
            Ok(None) => None,
            Err(e) => {
                self.a.clear();
                self.b.clear();
                Some(Err(e))
            }
        }
    }
}
