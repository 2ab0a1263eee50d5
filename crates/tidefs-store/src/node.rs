//! B+tree nodes: the in-memory form (a slotted page that is cheap to clone and edit) and
//! the 16 KiB on-disk form.
//!
//! On disk, little-endian, no padding:
//!
//! ```text
//! header, 32 bytes
//!   0  u32 magic "TDND" (0x444e4454)
//!   4  u8  level          0 = leaf
//!   5  u8  flags          must be 0
//!   6  u16 count          number of entries
//!   8  u64 tid            transaction that wrote the node
//!  16  u64 owner          tree that wrote it (for messages; nodes are shared by snapshots)
//!  24  u32 used           bytes of entries after the header
//!  28  u32 reserved       0
//! entries, in key order, each:
//!   0  u16 key length
//!   2  u16 value length
//!   4  u8  kind           0 plain, 1 extent, 2 tree, 3 child (internal nodes only)
//!   5  u64 tid            transaction that last modified the entry
//!  13  key bytes, then value bytes
//! zeros to 16 KiB
//! ```
//!
//! In an internal node, entry i's key is the lowest key of child i's subtree (child 0 also
//! holds anything lower) and its value is the child's [`BlockRef`].

use std::sync::{Arc, OnceLock, Weak};

use crate::bref::{le_u16, le_u32, le_u64, BlockRef, Extent, TreeInfo};
use crate::error::{Result, StoreError};
use crate::ids::{Tid, TreeId};
use crate::layout::{KEY_BYTES_MAX, NODE_BYTES, VALUE_BYTES_MAX};

pub(crate) const NODE_MAGIC: u32 = 0x444e_4454;
pub(crate) const NODE_HEADER_BYTES: usize = 32;
pub(crate) const ENTRY_HEADER_BYTES: usize = 13;
/// Bytes available for entries.
pub(crate) const NODE_CAPACITY_BYTES: usize = NODE_BYTES - NODE_HEADER_BYTES;
/// Below this many entry bytes a non-root node is merged with or refilled from a sibling.
pub(crate) const NODE_UNDERFLOW_BYTES: usize = NODE_CAPACITY_BYTES / 4;

/// What an entry's value holds, which decides how the store accounts for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// Opaque bytes.
    Plain = 0,
    /// An [`Extent`] followed by opaque bytes; the entry holds a reference on the extent.
    Extent = 1,
    /// A [`TreeInfo`] (root tree only); the entry holds a reference on the tree's root node.
    Tree = 2,
    /// A child [`BlockRef`] (internal nodes only).
    Child = 3,
}

impl EntryKind {
    fn from_u8(v: u8) -> Option<EntryKind> {
        Some(match v {
            0 => EntryKind::Plain,
            1 => EntryKind::Extent,
            2 => EntryKind::Tree,
            3 => EntryKind::Child,
            _ => return None,
        })
    }
}

/// Plain data, so cloning and dropping a node's slots is a memcpy and a free: a write
/// transaction copies nodes often (every savepoint shares them), so this matters.
#[derive(Clone, Copy)]
struct Slot {
    offset: u32,
    key_len: u16,
    value_len: u16,
    kind: EntryKind,
    tid: Tid,
}

impl Slot {
    fn encoded_bytes(&self) -> usize {
        ENTRY_HEADER_BYTES + self.key_len as usize + self.value_len as usize
    }
}

/// One node in memory. Clean nodes are shared read-only through `Arc`; a transaction edits
/// its own copies.
pub(crate) struct Node {
    pub level: u8,
    pub tid: Tid,
    pub owner: TreeId,
    slots: Vec<Slot>,
    /// Internal nodes of a transaction: children edited and not yet written, parallel to
    /// `slots` (empty for leaves and for nodes that have none).
    dirty_children: Vec<Option<Arc<Node>>>,
    /// Clean internal nodes: children already loaded, so a descent skips the node cache.
    /// Weak, so the node cache alone decides what stays in memory.
    child_cache: ChildCache,
    /// First 8 key bytes of each entry as a big-endian number: binary search compares these
    /// and touches a key's bytes only on a tie, which keeps searches to few cache lines.
    prefixes: Vec<u64>,
    heap: Vec<u8>,
    used_bytes: usize,
}

/// Loaded children of a clean node. Cloning a node (to edit it) leaves the copy without
/// one, since an edited node's entries move. Each is kept with its block, and used only
/// while the entry still points there.
#[derive(Default)]
pub(crate) struct ChildCache(Box<[OnceLock<LoadedChild>]>);

/// A loaded child: its block, and the node while anything else keeps it in memory.
type LoadedChild = (u64, Weak<Node>);

impl Clone for ChildCache {
    fn clone(&self) -> Self {
        ChildCache::default()
    }
}

/// A copy is made to be edited: its vectors get room to grow, so the inserts that follow
/// do not reallocate (and copy) them again at once.
impl Clone for Node {
    fn clone(&self) -> Self {
        fn with_room<T: Copy>(v: &[T], extra: usize) -> Vec<T> {
            let mut copy = Vec::with_capacity(v.len() + extra);
            copy.extend_from_slice(v);
            copy
        }
        let entries_room = self.slots.len() / 4 + 8;
        Node {
            level: self.level,
            tid: self.tid,
            owner: self.owner,
            slots: with_room(&self.slots, entries_room),
            dirty_children: self.dirty_children.clone(),
            child_cache: self.child_cache.clone(),
            prefixes: with_room(&self.prefixes, entries_room),
            heap: with_room(&self.heap, NODE_CAPACITY_BYTES / 4),
            used_bytes: self.used_bytes,
        }
    }
}

impl Node {
    /// This node, taken over to be edited (as a copy would be, see `Clone`): no cache of
    /// loaded children, since edited entries move, and room to grow.
    pub fn into_editable(mut self) -> Node {
        self.child_cache = ChildCache::default();
        let room = self.slots.len() / 4 + 8;
        self.slots.reserve(room);
        self.prefixes.reserve(room);
        self.heap.reserve(NODE_CAPACITY_BYTES / 4);
        self
    }
}

pub(crate) fn key_prefix(key: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = key.len().min(8);
    b[..n].copy_from_slice(&key[..n]);
    u64::from_be_bytes(b)
}

/// Nodes with fewer entries are searched by bisection alone.
const INTERPOLATE_MIN: usize = 32;

/// A range `[lo, hi)` of the sorted `prefixes` outside which every prefix is below `p`
/// (before `lo`) or above it (from `hi`). Keys are mostly spread evenly enough inside a node
/// that a guess by interpolation lands within a few entries, one or two cache lines, where
/// bisection alone touches five or six lines of a node not in the CPU's cache; from the
/// guess the range is widened by doubling steps, so skewed keys cost a few probes more.
fn bracket(prefixes: &[u64], p: u64) -> (usize, usize) {
    let n = prefixes.len();
    if n < INTERPOLATE_MIN {
        return (0, n);
    }
    let (first, last) = (prefixes[0], prefixes[n - 1]);
    if p <= first || p >= last {
        return (0, n);
    }
    let g = (u128::from(p - first) * (n as u128 - 1) / u128::from(last - first)) as usize;
    let lo = if prefixes[g] < p {
        g + 1
    } else {
        let mut step = 1;
        loop {
            if step > g {
                break 0;
            }
            if prefixes[g - step] < p {
                break g - step + 1;
            }
            step *= 2;
        }
    };
    let hi = if prefixes[g] > p {
        g
    } else {
        let mut step = 1;
        loop {
            if g + step >= n {
                break n;
            }
            if prefixes[g + step] > p {
                break g + step;
            }
            step *= 2;
        }
    };
    (lo, hi)
}

/// A reference held by an entry, which the store counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeldRef {
    Extent(Extent),
    /// A node: the root of a tree named by a root-tree entry, or a clean child.
    Node(BlockRef),
}

impl Node {
    pub fn new(level: u8, tid: Tid, owner: TreeId) -> Node {
        Node {
            level,
            tid,
            owner,
            slots: Vec::new(),
            dirty_children: Vec::new(),
            child_cache: ChildCache::default(),
            prefixes: Vec::new(),
            heap: Vec::new(),
            used_bytes: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_leaf(&self) -> bool {
        self.level == 0
    }

    pub fn used_bytes(&self) -> usize {
        self.used_bytes
    }

    pub fn is_overfull(&self) -> bool {
        self.used_bytes > NODE_CAPACITY_BYTES
    }

    pub fn is_underfull(&self) -> bool {
        self.used_bytes < NODE_UNDERFLOW_BYTES
    }

    pub fn key(&self, i: usize) -> &[u8] {
        let s = &self.slots[i];
        &self.heap[s.offset as usize..s.offset as usize + s.key_len as usize]
    }

    pub fn value(&self, i: usize) -> &[u8] {
        let s = &self.slots[i];
        let start = s.offset as usize + s.key_len as usize;
        &self.heap[start..start + s.value_len as usize]
    }

    pub fn kind(&self, i: usize) -> EntryKind {
        self.slots[i].kind
    }

    pub fn entry_tid(&self, i: usize) -> Tid {
        self.slots[i].tid
    }

    pub fn entry_bytes(&self, i: usize) -> usize {
        self.slots[i].encoded_bytes()
    }

    /// The extent an entry references, if any.
    pub fn extent(&self, i: usize) -> Option<Extent> {
        match self.slots[i].kind {
            EntryKind::Extent => Extent::decode(self.value(i)),
            _ => None,
        }
    }

    /// The reference an entry holds on another allocation, if any.
    pub fn held_ref(&self, i: usize) -> Option<HeldRef> {
        match self.slots[i].kind {
            EntryKind::Plain => None,
            EntryKind::Extent => self.extent(i).map(HeldRef::Extent),
            EntryKind::Tree => TreeInfo::decode(self.value(i))
                .ok()
                .and_then(|t| t.root)
                .map(HeldRef::Node),
            EntryKind::Child => {
                if self.dirty_child(i).is_some() {
                    None
                } else {
                    BlockRef::decode(self.value(i)).map(HeldRef::Node)
                }
            }
        }
    }

    /// Binary search: `Ok(i)` if entry i has `key`, else `Err(insertion point)`.
    pub fn search(&self, key: &[u8]) -> std::result::Result<usize, usize> {
        let p = key_prefix(key);
        let (mut lo, mut hi) = bracket(&self.prefixes, p);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let ord = match self.prefixes[mid].cmp(&p) {
                std::cmp::Ordering::Equal => self.key(mid).cmp(key),
                other => other,
            };
            match ord {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(mid),
            }
        }
        Err(lo)
    }

    /// Internal nodes: the child whose subtree holds `key`.
    pub fn child_index(&self, key: &[u8]) -> usize {
        match self.search(key) {
            Ok(i) => i,
            Err(0) => 0,
            Err(i) => i - 1,
        }
    }

    /// Internal nodes: the child's reference as written (stale if the child is dirty).
    pub fn child_ref(&self, i: usize) -> BlockRef {
        BlockRef::decode(self.value(i)).expect("child entries hold a block ref")
    }

    pub fn dirty_child(&self, i: usize) -> Option<&Arc<Node>> {
        self.dirty_children.get(i).and_then(Option::as_ref)
    }

    /// Child i of a clean node if it was loaded before and is still in memory.
    pub fn cached_child(&self, i: usize) -> Option<Arc<Node>> {
        if self.child_cache.0.len() != self.slots.len() {
            return None;
        }
        let (block, child) = self.child_cache.0[i].get()?;
        if *block != self.child_ref(i).block {
            return None;
        }
        child.upgrade()
    }

    /// Gives a node that just became clean an empty cache of loaded children.
    pub fn reset_child_cache(&mut self) {
        self.child_cache = ChildCache((0..self.slots.len()).map(|_| OnceLock::new()).collect());
    }

    /// Remembers child i of a clean node (first one wins; a dead entry stays dead and the
    /// node cache serves that child from then on).
    pub fn remember_child(&self, i: usize, child: &Arc<Node>) {
        if self.child_cache.0.len() == self.slots.len() {
            let _ = self.child_cache.0[i].set((self.child_ref(i).block, Arc::downgrade(child)));
        }
    }

    pub fn dirty_child_mut(&mut self, i: usize) -> Option<&mut Arc<Node>> {
        self.dirty_children.get_mut(i).and_then(Option::as_mut)
    }

    /// Makes `dirty_children` parallel to `slots` before one is stored.
    fn ensure_children(&mut self) {
        if self.dirty_children.len() != self.slots.len() {
            self.dirty_children.resize(self.slots.len(), None);
        }
    }

    pub fn set_dirty_child(&mut self, i: usize, child: Arc<Node>) {
        self.ensure_children();
        self.dirty_children[i] = Some(child);
    }

    pub fn take_dirty_child(&mut self, i: usize) -> Option<Arc<Node>> {
        self.dirty_children.get_mut(i).and_then(Option::take)
    }

    /// Records that child i is now written at `r`.
    pub fn set_clean_child(&mut self, i: usize, r: BlockRef) {
        let mut bytes = [0u8; BlockRef::ENCODED_BYTES];
        r.encode(&mut bytes);
        self.overwrite_value_in_place(i, &bytes);
        self.slots[i].tid = r.modify_tid;
        self.take_dirty_child(i);
    }

    fn overwrite_value_in_place(&mut self, i: usize, value: &[u8]) {
        let s = &self.slots[i];
        debug_assert_eq!(s.value_len as usize, value.len());
        let start = s.offset as usize + s.key_len as usize;
        self.heap[start..start + value.len()].copy_from_slice(value);
    }

    pub fn insert_at(
        &mut self,
        i: usize,
        key: &[u8],
        value: &[u8],
        kind: EntryKind,
        tid: Tid,
        dirty_child: Option<Arc<Node>>,
    ) {
        let offset = self.heap.len() as u32;
        self.heap.extend_from_slice(key);
        self.heap.extend_from_slice(value);
        let slot = Slot {
            offset,
            key_len: key.len() as u16,
            value_len: value.len() as u16,
            kind,
            tid,
        };
        self.used_bytes += slot.encoded_bytes();
        if !self.dirty_children.is_empty() {
            self.ensure_children();
            self.dirty_children.insert(i, None);
        }
        self.slots.insert(i, slot);
        if let Some(child) = dirty_child {
            self.set_dirty_child(i, child);
        }
        self.prefixes.insert(i, key_prefix(key));
    }

    /// Replaces entry i's value, keeping its key.
    pub fn replace_value(&mut self, i: usize, value: &[u8], kind: EntryKind, tid: Tid) {
        let old_len = self.slots[i].value_len as usize;
        if old_len == value.len() {
            self.overwrite_value_in_place(i, value);
        } else {
            let key = self.key(i).to_vec();
            let offset = self.heap.len() as u32;
            self.heap.extend_from_slice(&key);
            self.heap.extend_from_slice(value);
            self.slots[i].offset = offset;
            self.slots[i].value_len = value.len() as u16;
            self.used_bytes = self.used_bytes + value.len() - old_len;
            self.maybe_compact();
        }
        self.slots[i].kind = kind;
        self.slots[i].tid = tid;
    }

    /// Changes entry i's key (internal nodes: a separator moved).
    pub fn replace_key(&mut self, i: usize, key: &[u8]) {
        let value = self.value(i).to_vec();
        let old_len = self.slots[i].key_len as usize;
        let offset = self.heap.len() as u32;
        self.heap.extend_from_slice(key);
        self.heap.extend_from_slice(&value);
        self.slots[i].offset = offset;
        self.slots[i].key_len = key.len() as u16;
        self.prefixes[i] = key_prefix(key);
        self.used_bytes = self.used_bytes + key.len() - old_len;
        self.maybe_compact();
    }

    /// Removes entry i; returns its dirty child if it had one.
    pub fn remove(&mut self, i: usize) -> Option<Arc<Node>> {
        let slot = self.slots.remove(i);
        let child = if self.dirty_children.len() > i {
            self.dirty_children.remove(i)
        } else {
            None
        };
        self.prefixes.remove(i);
        self.used_bytes -= slot.encoded_bytes();
        self.maybe_compact();
        child
    }

    fn maybe_compact(&mut self) {
        if self.heap.len() > 2 * self.used_bytes + NODE_BYTES {
            let mut heap = Vec::with_capacity(self.used_bytes);
            for s in &mut self.slots {
                let start = s.offset as usize;
                let end = start + s.key_len as usize + s.value_len as usize;
                s.offset = heap.len() as u32;
                heap.extend_from_slice(&self.heap[start..end]);
            }
            self.heap = heap;
        }
    }

    /// Moves the upper half (by bytes) into a new right sibling and returns it.
    pub fn split(&mut self) -> Node {
        let target = self.used_bytes / 2;
        let mut acc = 0;
        let mut at = self.slots.len() - 1;
        for i in 0..self.slots.len() {
            acc += self.slots[i].encoded_bytes();
            if acc >= target {
                at = i + 1;
                break;
            }
        }
        let at = at.clamp(1, self.slots.len() - 1);
        self.split_off(at)
    }

    /// Moves entries `at..` into a new node.
    pub fn split_off(&mut self, at: usize) -> Node {
        let mut right = Node::new(self.level, self.tid, self.owner);
        let moved: Vec<Slot> = self.slots.drain(at..).collect();
        if self.dirty_children.len() > at {
            right.dirty_children = self.dirty_children.split_off(at);
        } else {
            self.dirty_children.truncate(at);
        }
        right.prefixes = self.prefixes.split_off(at);
        for s in moved {
            let start = s.offset as usize;
            let end = start + s.key_len as usize + s.value_len as usize;
            let offset = right.heap.len() as u32;
            right.heap.extend_from_slice(&self.heap[start..end]);
            self.used_bytes -= s.encoded_bytes();
            right.used_bytes += s.encoded_bytes();
            right.slots.push(Slot { offset, ..s });
        }
        self.maybe_compact();
        right
    }

    /// Appends every entry of `right` (whose keys are all greater).
    pub fn append(&mut self, right: &Node) {
        self.prefixes.extend_from_slice(&right.prefixes);
        for (i, s) in right.slots.iter().enumerate() {
            let offset = self.heap.len() as u32;
            self.heap.extend_from_slice(right.key(i));
            self.heap.extend_from_slice(right.value(i));
            self.used_bytes += s.encoded_bytes();
            self.slots.push(Slot { offset, ..*s });
            if let Some(child) = right.dirty_child(i) {
                let at = self.slots.len() - 1;
                self.set_dirty_child(at, child.clone());
            }
        }
    }

    /// Encodes the node into its 16 KiB disk form. Every child must be clean.
    pub fn encode(&self, out: &mut [u8]) {
        debug_assert_eq!(out.len(), NODE_BYTES);
        assert!(!self.is_overfull(), "encoding an overfull node");
        out[0..4].copy_from_slice(&NODE_MAGIC.to_le_bytes());
        out[4] = self.level;
        out[5] = 0;
        out[6..8].copy_from_slice(&(self.slots.len() as u16).to_le_bytes());
        out[8..16].copy_from_slice(&self.tid.0.to_le_bytes());
        out[16..24].copy_from_slice(&self.owner.0.to_le_bytes());
        out[24..28].copy_from_slice(&(self.used_bytes as u32).to_le_bytes());
        out[28..32].fill(0);
        let mut p = NODE_HEADER_BYTES;
        for (i, s) in self.slots.iter().enumerate() {
            assert!(
                self.dirty_child(i).is_none(),
                "encoding a node with a dirty child"
            );
            out[p..p + 2].copy_from_slice(&s.key_len.to_le_bytes());
            out[p + 2..p + 4].copy_from_slice(&s.value_len.to_le_bytes());
            out[p + 4] = s.kind as u8;
            out[p + 5..p + 13].copy_from_slice(&s.tid.0.to_le_bytes());
            p += ENTRY_HEADER_BYTES;
            let k = self.key(i);
            out[p..p + k.len()].copy_from_slice(k);
            p += k.len();
            let v = self.value(i);
            out[p..p + v.len()].copy_from_slice(v);
            p += v.len();
        }
        out[p..].fill(0);
    }

    /// Decodes and validates a node read from `block`. Never panics on bad bytes.
    pub fn decode(block: u64, bytes: &[u8]) -> Result<Node> {
        let bad = |detail: String| StoreError::corrupt("tree node", block, detail);
        if bytes.len() != NODE_BYTES {
            return Err(bad(format!("node of {} bytes", bytes.len())));
        }
        let magic = le_u32(&bytes[0..4]);
        if magic != NODE_MAGIC {
            return Err(bad(format!("bad magic {magic:#010x}")));
        }
        let level = bytes[4];
        if bytes[5] != 0 {
            return Err(bad(format!("unknown node flags {:#x}", bytes[5])));
        }
        let count = le_u16(&bytes[6..8]) as usize;
        let tid = Tid(le_u64(&bytes[8..16]));
        let owner = TreeId(le_u64(&bytes[16..24]));
        let used = le_u32(&bytes[24..28]) as usize;
        if used > NODE_CAPACITY_BYTES {
            return Err(bad(format!("claims {used} used bytes")));
        }
        let mut node = Node::new(level, tid, owner);
        node.slots.reserve(count);
        node.prefixes.reserve(count);
        node.heap.reserve(used);
        let end = NODE_HEADER_BYTES + used;
        let mut p = NODE_HEADER_BYTES;
        for i in 0..count {
            if p + ENTRY_HEADER_BYTES > end {
                return Err(bad(format!("entry {i} runs past the used bytes")));
            }
            let key_len = le_u16(&bytes[p..p + 2]) as usize;
            let value_len = le_u16(&bytes[p + 2..p + 4]) as usize;
            let kind = EntryKind::from_u8(bytes[p + 4])
                .ok_or_else(|| bad(format!("entry {i} has unknown kind {}", bytes[p + 4])))?;
            let entry_tid = Tid(le_u64(&bytes[p + 5..p + 13]));
            p += ENTRY_HEADER_BYTES;
            if p + key_len + value_len > end {
                return Err(bad(format!("entry {i} runs past the used bytes")));
            }
            if key_len > KEY_BYTES_MAX || value_len > VALUE_BYTES_MAX {
                return Err(bad(format!("entry {i} exceeds the key or value limit")));
            }
            let key = &bytes[p..p + key_len];
            let value = &bytes[p + key_len..p + key_len + value_len];
            p += key_len + value_len;
            let well_formed = match (level, kind) {
                (0, EntryKind::Plain) => true,
                (0, EntryKind::Extent) => value_len >= Extent::ENCODED_BYTES,
                (0, EntryKind::Tree) => TreeInfo::decode(value).is_ok(),
                (l, EntryKind::Child) if l > 0 => value_len == BlockRef::ENCODED_BYTES,
                _ => false,
            };
            if !well_formed {
                return Err(bad(format!(
                    "entry {i} is malformed for a level-{level} node"
                )));
            }
            if entry_tid > tid {
                return Err(bad(format!(
                    "entry {i} has tid {entry_tid} newer than its node's {tid}"
                )));
            }
            if i > 0 && node.key(i - 1) >= key {
                return Err(bad(format!("entry {i} is out of key order")));
            }
            node.insert_at(i, key, value, kind, entry_tid, None);
        }
        if p != end {
            return Err(bad(format!(
                "entries use {} bytes, header says {used}",
                p - NODE_HEADER_BYTES
            )));
        }
        if level > 0 {
            node.reset_child_cache();
        }
        Ok(node)
    }
}

/// The checksum stored in a bref for a node's bytes.
pub(crate) fn node_checksum(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
}

#[cfg(test)]
mod tests {
    #[test]
    fn bracket_keeps_smaller_prefixes_before_and_larger_after() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for round in 0..2000 {
            let n = rng.gen_range(0..200);
            // Even, clustered and duplicated prefixes.
            let spread: u64 = [u64::MAX, 1 << 20, 16][round % 3];
            let mut v: Vec<u64> = (0..n).map(|_| rng.gen_range(0..spread)).collect();
            if round % 5 == 0 && n > 10 {
                let dup = v[3];
                v[..n / 2].fill(dup);
            }
            v.sort_unstable();
            for _ in 0..20 {
                let p = if n > 0 && rng.gen_bool(0.5) {
                    v[rng.gen_range(0..n)]
                } else {
                    rng.gen_range(0..spread)
                };
                let (lo, hi) = super::bracket(&v, p);
                assert!(lo <= hi && hi <= n, "round {round}: {lo}..{hi} of {n}");
                assert!(v[..lo].iter().all(|&x| x < p), "round {round}: before {lo}");
                assert!(v[hi..].iter().all(|&x| x > p), "round {round}: from {hi}");
            }
        }
    }

    use super::*;

    fn leaf_with(n: usize) -> Node {
        let mut node = Node::new(0, Tid(3), TreeId(1));
        for i in 0..n {
            let key = format!("key{i:05}");
            node.insert_at(
                i,
                key.as_bytes(),
                &[i as u8; 40],
                EntryKind::Plain,
                Tid(2),
                None,
            );
        }
        node
    }

    #[test]
    fn encode_decode_round_trip() {
        let node = leaf_with(100);
        let mut buf = vec![0u8; NODE_BYTES];
        node.encode(&mut buf);
        let back = Node::decode(9, &buf).unwrap();
        assert_eq!(back.len(), 100);
        for i in 0..100 {
            assert_eq!(back.key(i), node.key(i));
            assert_eq!(back.value(i), node.value(i));
            assert_eq!(back.entry_tid(i), Tid(2));
        }
        assert_eq!(back.used_bytes(), node.used_bytes());
    }

    #[test]
    fn decode_rejects_damage_without_panicking() {
        let node = leaf_with(50);
        let mut buf = vec![0u8; NODE_BYTES];
        node.encode(&mut buf);
        for pos in (0..2000).step_by(7) {
            let mut bad = buf.clone();
            bad[pos] ^= 0xff;
            let _ = Node::decode(1, &bad); // must not panic
        }
        let mut bad = buf.clone();
        bad[0] = 0;
        let err = Node::decode(77, &bad).err().unwrap().to_string();
        assert!(err.contains("block 77"), "{err}");
    }

    #[test]
    fn split_balances_bytes_and_append_undoes_it() {
        let mut node = leaf_with(200);
        let before = node.used_bytes();
        let right = node.split();
        assert!(node.used_bytes().abs_diff(right.used_bytes()) < 200);
        assert_eq!(node.used_bytes() + right.used_bytes(), before);
        assert!(node.key(node.len() - 1) < right.key(0));
        node.append(&right);
        assert_eq!(node.len(), 200);
        assert_eq!(node.used_bytes(), before);
    }

    #[test]
    fn edits_keep_accounting_and_compact() {
        let mut node = leaf_with(10);
        for round in 0..2000 {
            node.replace_value(
                3,
                &vec![round as u8; 10 + round % 50],
                EntryKind::Plain,
                Tid(3),
            );
        }
        assert_eq!(node.value(3).len(), 10 + 1999 % 50);
        let expected: usize = (0..node.len()).map(|i| node.entry_bytes(i)).sum();
        assert_eq!(node.used_bytes(), expected);
        assert!(node.heap.len() < 3 * NODE_BYTES);
    }
}
