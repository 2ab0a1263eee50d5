//! fsck: walks every tree from the superblock and checks everything the store promises.
//!
//! Invariants checked (docs/fsck.md lists them with the reasoning):
//! * every node's checksum matches its bref, its header and entries decode, keys are in
//!   order and inside the bounds its parent's separators give;
//! * every path from a root to a leaf has the same length (levels fall by one per step);
//! * tids never go backwards along a path (a child's tid is at most its parent's; a
//!   record's tid at most its node's);
//! * every space-map page verifies against the directory, every directory page against the
//!   superblock;
//! * every reachable allocation is allocated with exactly as many references as point at
//!   it; every allocated block is reachable; no block is claimed twice; the used-block count
//!   is exact.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use crate::bref::{BlockRef, TreeInfo};
use crate::error::{Result, StoreError};
use crate::ids::{Tid, TreeId};
use crate::layout::{reserved_blocks_in_page, NODE_BLOCKS, PAGE_BLOCKS};
use crate::node::{EntryKind, Node};
use crate::node_io::NodeIo;
use crate::pool::Pool;
use crate::space_map::{SpaceMap, RC_CONT, RC_FREE, RC_MAX, RC_RESERVED};
use crate::superblock::Superblock;

/// One thing wrong, located as precisely as fsck can.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsckProblem {
    pub block: Option<u64>,
    pub tree: Option<TreeId>,
    pub key: Option<Vec<u8>>,
    pub message: String,
}

impl fmt::Display for FsckProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(b) = self.block {
            write!(f, "block {b}: ")?;
        }
        if let Some(t) = self.tree {
            write!(f, "tree {t}: ")?;
        }
        if let Some(k) = &self.key {
            write!(f, "key {}: ", hex(k))?;
        }
        write!(f, "{}", self.message)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What fsck found.
#[derive(Debug, Clone, Default)]
pub struct FsckReport {
    pub tid: Tid,
    pub trees: u64,
    pub nodes: u64,
    pub records: u64,
    pub extents: u64,
    pub used_blocks: u64,
    pub problems: Vec<FsckProblem>,
}

impl FsckReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Claim {
    Node,
    Extent(u32),
}

struct Walk<'a> {
    io: &'a NodeIo,
    report: FsckReport,
    /// Allocation start → (references seen, what it is).
    refs: HashMap<u64, (u64, Claim)>,
    progress: &'a mut dyn FnMut(u64),
}

impl Walk<'_> {
    fn problem(
        &mut self,
        block: Option<u64>,
        tree: Option<TreeId>,
        key: Option<&[u8]>,
        message: String,
    ) {
        self.report.problems.push(FsckProblem {
            block,
            tree,
            key: key.map(<[u8]>::to_vec),
            message,
        });
    }

    /// Counts one reference; true if this is the first (the target must be walked).
    fn claim(&mut self, block: u64, claim: Claim, tree: TreeId) -> bool {
        match self.refs.get_mut(&block) {
            Some((n, c)) => {
                let same = *c == claim;
                *n += 1;
                if !same {
                    self.problem(Some(block), Some(tree), None, "block is referenced both as a node and as data, or as extents of different lengths".into());
                }
                false
            }
            None => {
                self.refs.insert(block, (1, claim));
                true
            }
        }
    }

    /// Walks the subtree at `r`. `lower`/`upper` bound its keys; `parent_tid` bounds its tids.
    fn node(
        &mut self,
        tree: TreeId,
        r: BlockRef,
        level: u8,
        lower: Option<&[u8]>,
        upper: Option<&[u8]>,
        parent_tid: Tid,
    ) {
        if r.modify_tid > parent_tid {
            self.problem(
                Some(r.block),
                Some(tree),
                lower,
                format!(
                    "tid {} is newer than its parent's {parent_tid}",
                    r.modify_tid
                ),
            );
        }
        if !self.claim(r.block, Claim::Node, tree) {
            return;
        }
        let node = match self.io.load(r, Some(level)) {
            Ok(n) => n,
            Err(e) => {
                self.problem(Some(r.block), Some(tree), lower, e.to_string());
                return;
            }
        };
        self.report.nodes += 1;
        (self.progress)(self.report.nodes);
        if node.len() == 0 {
            self.problem(Some(r.block), Some(tree), lower, "empty node".into());
            return;
        }
        if let Some(lo) = lower {
            if node.key(0) < lo {
                self.problem(
                    Some(r.block),
                    Some(tree),
                    Some(node.key(0)),
                    "key below the separator that leads here".into(),
                );
            }
        }
        if let Some(hi) = upper {
            if node.key(node.len() - 1) >= hi {
                self.problem(
                    Some(r.block),
                    Some(tree),
                    Some(node.key(node.len() - 1)),
                    "key at or above the next separator".into(),
                );
            }
        }
        if node.is_leaf() {
            self.leaf(tree, r.block, &node);
            return;
        }
        for i in 0..node.len() {
            let hi = if i + 1 < node.len() {
                Some(node.key(i + 1).to_vec())
            } else {
                upper.map(<[u8]>::to_vec)
            };
            let child = node.child_ref(i);
            let lo = node.key(i).to_vec();
            self.node(tree, child, level - 1, Some(&lo), hi.as_deref(), node.tid);
        }
    }

    fn leaf(&mut self, tree: TreeId, block: u64, node: &Arc<Node>) {
        for i in 0..node.len() {
            self.report.records += 1;
            match node.kind(i) {
                EntryKind::Extent => {
                    let e = node.extent(i).expect("decoded");
                    if e.blocks == 0 {
                        self.problem(
                            Some(block),
                            Some(tree),
                            Some(node.key(i)),
                            "zero-length extent".into(),
                        );
                    } else if self.claim(e.block, Claim::Extent(e.blocks), tree) {
                        self.report.extents += 1;
                    }
                }
                EntryKind::Tree => {
                    if tree != TreeId::ROOT {
                        self.problem(
                            Some(block),
                            Some(tree),
                            Some(node.key(i)),
                            "tree record outside the root tree".into(),
                        );
                        continue;
                    }
                    let id = TreeId(u64::from_be_bytes(node.key(i).try_into().unwrap_or([0; 8])));
                    let info = TreeInfo::decode(node.value(i)).expect("decoded");
                    self.report.trees += 1;
                    if let Some(root) = info.root {
                        self.node(id, root, info.root_level, None, None, Tid(u64::MAX));
                    }
                }
                EntryKind::Plain | EntryKind::Child => {}
            }
        }
    }
}

/// Checks the whole pool as of its last commit (committing the open transaction first).
pub fn fsck(pool: &Pool, progress: &mut dyn FnMut(u64)) -> Result<FsckReport> {
    // The walk reads the committed state from the device, bypassing every cache.
    pool.commit()?;
    let device = pool.shared.io.device.clone();
    let sb = Superblock::read_newest(&*device)?;
    let io = NodeIo::new(device.clone(), 64 << 20);
    let mut walk = Walk {
        io: &io,
        report: FsckReport {
            tid: sb.tid,
            ..FsckReport::default()
        },
        refs: HashMap::new(),
        progress,
    };
    if let Some(root) = sb.root_tree {
        walk.node(TreeId::ROOT, root, sb.root_tree_level, None, None, sb.tid);
    }
    let mut report = check_space(&mut walk, &sb, device)?;
    report.used_blocks = sb.used_blocks;
    Ok(report)
}

fn check_space(
    walk: &mut Walk<'_>,
    sb: &Superblock,
    device: Arc<dyn crate::device::BlockDevice>,
) -> Result<FsckReport> {
    let mut space = match SpaceMap::open(
        device,
        sb.total_pages,
        sb.max_pages,
        sb.dir_crcs.clone(),
        sb.used_blocks,
    ) {
        Ok(s) => s,
        Err(e) => {
            walk.problem(None, None, None, format!("space map: {e}"));
            return Ok(std::mem::take(&mut walk.report));
        }
    };
    let mut used = 0u64;
    for p in 0..sb.total_pages {
        let counts = match space.page_counts(p) {
            Ok(c) => c,
            Err(e) => {
                walk.problem(
                    Some(p * PAGE_BLOCKS),
                    None,
                    None,
                    format!("space map page {p}: {e}"),
                );
                continue;
            }
        };
        let reserved = reserved_blocks_in_page(p) as usize;
        let mut free = 0u32;
        let mut i = 0usize;
        while i < counts.len() {
            let block = p * PAGE_BLOCKS + i as u64;
            let c = counts[i];
            if i < reserved {
                if c != RC_RESERVED {
                    walk.problem(
                        Some(block),
                        None,
                        None,
                        "reserved block not marked reserved".into(),
                    );
                }
                i += 1;
                continue;
            }
            match c {
                RC_FREE => {
                    free += 1;
                    if walk.refs.contains_key(&block) {
                        walk.problem(
                            Some(block),
                            None,
                            None,
                            "referenced block is free in the space map".into(),
                        );
                    }
                    i += 1;
                }
                RC_RESERVED => {
                    walk.problem(
                        Some(block),
                        None,
                        None,
                        "block marked reserved outside the fixed layout".into(),
                    );
                    i += 1;
                }
                RC_CONT => {
                    walk.problem(
                        Some(block),
                        None,
                        None,
                        "continuation block without an allocation before it".into(),
                    );
                    used += 1;
                    i += 1;
                }
                count if count <= RC_MAX => {
                    let mut len = 1usize;
                    while i + len < counts.len() && counts[i + len] == RC_CONT {
                        len += 1;
                    }
                    used += len as u64;
                    match walk.refs.get(&block).copied() {
                        None => walk.problem(Some(block), None, None, format!("allocated ({count} references, {len} blocks) but unreachable: leaked")),
                        Some((seen, claim)) => {
                            if u64::from(count) != seen {
                                walk.problem(Some(block), None, None, format!("space map counts {count} references, {seen} found"));
                            }
                            let expected = match claim {
                                Claim::Node => NODE_BLOCKS,
                                Claim::Extent(n) => n,
                            };
                            if len as u32 != expected {
                                walk.problem(Some(block), None, None, format!("allocation is {len} blocks, its references say {expected}"));
                            }
                        }
                    }
                    i += len;
                }
                other => {
                    walk.problem(
                        Some(block),
                        None,
                        None,
                        format!("invalid space map value {other:#x}"),
                    );
                    i += 1;
                }
            }
        }
        match space.directory_free(p) {
            Ok(dir_free) if dir_free != free => walk.problem(
                Some(p * PAGE_BLOCKS),
                None,
                None,
                format!(
                    "space directory says {dir_free} free blocks in page {p}, the page has {free}"
                ),
            ),
            Ok(_) => {}
            Err(e) => walk.problem(Some(p * PAGE_BLOCKS), None, None, e.to_string()),
        }
    }
    let limit = sb.total_pages * PAGE_BLOCKS;
    let outside: Vec<u64> = walk.refs.keys().copied().filter(|&b| b >= limit).collect();
    for block in outside {
        walk.problem(
            Some(block),
            None,
            None,
            "referenced block lies past the end of the pool".into(),
        );
    }
    if used != sb.used_blocks {
        walk.problem(
            None,
            None,
            None,
            format!(
                "superblock counts {} used blocks, the space map {used}",
                sb.used_blocks
            ),
        );
    }
    Ok(std::mem::take(&mut walk.report))
}

impl From<FsckProblem> for StoreError {
    fn from(p: FsckProblem) -> Self {
        StoreError::corrupt("pool", p.block.unwrap_or(0), p.to_string())
    }
}
