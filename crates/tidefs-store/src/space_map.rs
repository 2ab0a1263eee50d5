//! The space map: a reference count for every block of the pool, and the allocator over it.
//!
//! # Why reference counts
//! Snapshots share nodes and data extents. tidefs counts references per allocation (the
//! lazy scheme of Rodeh's "B-trees, shadowing, and clones"): a node's count is the number
//! of parents (or root-tree entries) pointing at it; copying a shared node on write bumps
//! its children's counts instead of copying them. Deleting a tree decrements counts and
//! frees exactly the allocations that reach zero. Counts were chosen over birth-tid dead
//! lists because clones are writable and can be deleted in any order, which dead lists
//! handle only with much more machinery; and fsck can prove counts exactly by recounting.
//!
//! # Values
//! `0` free, `1..=RC_MAX` first block of an allocation with that many references,
//! `RC_CONT` a later block of the allocation before it, `RC_RESERVED` a block of the fixed
//! layout (superblocks, space-map slots). In memory only, `RC_PENDING` marks blocks freed by
//! a transaction that a reader may still see; on disk they are written as free.
//!
//! # Persistence without allocation
//! Space page p lives in one of two fixed slots at the head of its own range (layout.rs);
//! directory page d holds the checksum of each of its 509 space pages and lives in one of
//! two fixed slots too; the superblock holds the checksum of every directory page. A commit
//! writes each changed page into the slot that does *not* hold its committed copy, so the
//! committed copy survives a crash; the checksum chain from the superblock tells which slot
//! is current, so a stale page left by a crashed commit is never mistaken for a current one.
//!
//! Space page / directory page layout (4 KiB, little-endian):
//! ```text
//!   0 u32 magic   "TDSP" space page, "TDDR" directory page
//!   4 u32 crc     crc32c of the 4 KiB with this field zero; never 0 (see salt)
//!   8 u64 tid     commit that wrote the page
//!  16 u32 index   page number
//!  20 u32 salt    changed until crc != 0, since crc 0 means "never written"
//!  24 ...         space page: 1018 × u32 counts; directory page: 509 × (u32 crc, u32 free)
//! ```

use std::collections::BTreeSet;

use rustc_hash::FxHashMap as HashMap;
use std::sync::Arc;

use crate::bref::le_u32;
use crate::device::BlockDevice;
use crate::error::{Result, StoreError};
use crate::ids::Tid;
use crate::layout::*;

pub(crate) const RC_FREE: u32 = 0;
pub(crate) const RC_CONT: u32 = u32::MAX;
pub(crate) const RC_RESERVED: u32 = u32::MAX - 1;
pub(crate) const RC_PENDING: u32 = u32::MAX - 2;
pub(crate) const RC_MAX: u32 = u32::MAX - 16;

const SPACE_MAGIC: u32 = 0x5053_4454; // "TDSP"
const DIR_MAGIC: u32 = 0x5244_4454; // "TDDR"

struct SpacePage {
    counts: Box<[u32]>,
    committed_slot: Option<u8>,
    /// Blocks in `RC_PENDING`: free on disk, not yet reusable.
    pending: u32,
}

struct DirPage {
    /// Per space page: checksum of its committed copy (0 = never written) and free blocks.
    entries: Vec<(u32, u32)>,
    committed_slot: Option<u8>,
}

enum Undo {
    Count { block: u64, old: u32 },
    Dirtied(u64),
    Grew { old_total_pages: u64 },
}

/// A run of blocks freed by a transaction, reusable once no reader can reach it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FreedRun {
    pub block: u64,
    pub blocks: u32,
    pub freed_tid: Tid,
}

/// Figures for `df`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpaceUsage {
    /// Blocks the pool spans now.
    pub total_blocks: u64,
    /// Blocks the pool may grow to (equal to `total_blocks` for a device of fixed size).
    pub max_blocks: u64,
    /// Blocks holding nodes or data.
    pub used_blocks: u64,
    /// Blocks of the fixed layout (superblocks and space map).
    pub reserved_blocks: u64,
}

pub(crate) struct SpaceMap {
    device: Arc<dyn BlockDevice>,
    total_pages: u64,
    /// 0: grow as long as the device allows.
    max_pages: u64,
    dir_crcs: Vec<u32>,
    dirs: HashMap<u64, DirPage>,
    pages: HashMap<u64, SpacePage>,
    dirty: BTreeSet<u64>,
    used_blocks: u64,
    /// Blocks in `RC_PENDING` over all pages.
    pending_blocks: u64,
    cursor: u64,
    undo: Option<Vec<Undo>>,
    /// The cursor when the savepoint began: restored with it, so allocations repeated
    /// after a rollback land where they did the first time.
    undo_cursor: u64,
}

fn virgin_counts(page: u64) -> Box<[u32]> {
    let mut counts = vec![RC_FREE; PAGE_BLOCKS as usize].into_boxed_slice();
    for c in counts
        .iter_mut()
        .take(reserved_blocks_in_page(page) as usize)
    {
        *c = RC_RESERVED;
    }
    counts
}

fn page_crc(buf: &mut [u8]) -> u32 {
    let saved = le_u32(&buf[4..8]);
    buf[4..8].fill(0);
    let crc = crc32c::crc32c(buf);
    buf[4..8].copy_from_slice(&saved.to_le_bytes());
    crc
}

/// Seals a page buffer: fills in salt and crc so that the crc is never 0.
fn seal_page(buf: &mut [u8], magic: u32, tid: Tid, index: u64) -> u32 {
    buf[0..4].copy_from_slice(&magic.to_le_bytes());
    buf[8..16].copy_from_slice(&tid.0.to_le_bytes());
    buf[16..20].copy_from_slice(&(index as u32).to_le_bytes());
    let mut salt = 0u32;
    loop {
        buf[20..24].copy_from_slice(&salt.to_le_bytes());
        buf[4..8].fill(0);
        let crc = crc32c::crc32c(buf);
        if crc != 0 {
            buf[4..8].copy_from_slice(&crc.to_le_bytes());
            return crc;
        }
        salt += 1;
    }
}

impl SpaceMap {
    /// A space map over a pool of `total_pages` pages whose directory checksums are `dir_crcs`.
    pub fn open(
        device: Arc<dyn BlockDevice>,
        total_pages: u64,
        max_pages: u64,
        dir_crcs: Vec<u32>,
        used_blocks: u64,
    ) -> Result<SpaceMap> {
        let mut map = SpaceMap {
            device,
            total_pages,
            max_pages,
            dir_crcs,
            dirs: HashMap::default(),
            pages: HashMap::default(),
            dirty: BTreeSet::new(),
            used_blocks,
            pending_blocks: 0,
            cursor: 0,
            undo: None,
            undo_cursor: 0,
        };
        for d in 0..map.dir_count() {
            map.load_dir(d)?;
        }
        Ok(map)
    }

    fn dir_count(&self) -> u64 {
        self.total_pages.div_ceil(DIR_PAGES)
    }

    pub fn total_pages(&self) -> u64 {
        self.total_pages
    }

    pub fn max_pages(&self) -> u64 {
        self.max_pages
    }

    pub fn used_blocks(&self) -> u64 {
        self.used_blocks
    }

    pub fn usage(&self) -> SpaceUsage {
        let max_pages = if self.max_pages == 0 {
            self.total_pages
        } else {
            self.max_pages
        };
        SpaceUsage {
            total_blocks: self.total_pages * PAGE_BLOCKS,
            max_blocks: max_pages * PAGE_BLOCKS,
            used_blocks: self.used_blocks,
            reserved_blocks: reserved_blocks_total(self.total_pages),
        }
    }

    /// Blocks an allocation can still get: free now, plus what the pool may grow by, less
    /// blocks freed recently that a reader may still see.
    pub fn allocatable_blocks(&self) -> u64 {
        if self.max_pages == 0 && self.total_pages < POOL_PAGES_MAX {
            return u64::MAX / 4; // grows with its device
        }
        let pages = if self.max_pages == 0 {
            self.total_pages
        } else {
            self.max_pages.min(POOL_PAGES_MAX)
        };
        let capacity = pages * PAGE_BLOCKS - reserved_blocks_total(pages);
        capacity.saturating_sub(self.used_blocks + self.pending_blocks)
    }

    /// Blocks kept back from data so metadata edits (including deletes) can still commit
    /// when the pool is full.
    pub fn data_reserve_blocks(&self) -> u64 {
        let pages = if self.max_pages == 0 {
            self.total_pages
        } else {
            self.max_pages
        };
        (pages * PAGE_BLOCKS / 50).max(256)
    }

    fn load_dir(&mut self, d: u64) -> Result<()> {
        let crc = self.dir_crcs.get(d as usize).copied().unwrap_or(0);
        let dir = if crc == 0 {
            let first = d * DIR_PAGES;
            DirPage {
                entries: (first..first + DIR_PAGES)
                    .map(|p| (0, (PAGE_BLOCKS - reserved_blocks_in_page(p)) as u32))
                    .collect(),
                committed_slot: None,
            }
        } else {
            let (slot, buf) = self.read_matching(
                "space directory page",
                [dir_page_slot_block(d, 0), dir_page_slot_block(d, 1)],
                crc,
                DIR_MAGIC,
                d,
            )?;
            let entries = (0..DIR_PAGES as usize)
                .map(|i| {
                    let at = PAGE_HEADER_BYTES + 8 * i;
                    (le_u32(&buf[at..at + 4]), le_u32(&buf[at + 4..at + 8]))
                })
                .collect();
            DirPage {
                entries,
                committed_slot: Some(slot),
            }
        };
        self.dirs.insert(d, dir);
        Ok(())
    }

    /// Reads both slots of a page and returns the one whose checksum is `crc`.
    fn read_matching(
        &self,
        what: &'static str,
        blocks: [u64; 2],
        crc: u32,
        magic: u32,
        index: u64,
    ) -> Result<(u8, Vec<u8>)> {
        let mut found = 0;
        for (slot, block) in blocks.iter().enumerate() {
            let mut buf = vec![0u8; BLOCK_BYTES];
            self.device
                .read_at(block_offset(*block), &mut buf)
                .map_err(|e| StoreError::io("reading the space map", block_offset(*block), e))?;
            found = page_crc(&mut buf);
            if found == crc && le_u32(&buf[4..8]) == crc {
                if le_u32(&buf[0..4]) != magic || u64::from(le_u32(&buf[16..20])) != index {
                    return Err(StoreError::corrupt(
                        what,
                        *block,
                        "wrong magic or page number",
                    ));
                }
                return Ok((slot as u8, buf));
            }
        }
        Err(StoreError::ChecksumMismatch {
            what,
            block: blocks[1],
            expected: crc,
            found,
        })
    }

    fn page(&mut self, p: u64) -> Result<&mut SpacePage> {
        if !self.pages.contains_key(&p) {
            let d = p / DIR_PAGES;
            if !self.dirs.contains_key(&d) {
                self.load_dir(d)?;
            }
            let crc = self.dirs[&d].entries[(p % DIR_PAGES) as usize].0;
            let page = if crc == 0 {
                SpacePage {
                    counts: virgin_counts(p),
                    committed_slot: None,
                    pending: 0,
                }
            } else {
                let (slot, buf) = self.read_matching(
                    "space map page",
                    [space_page_slot_block(p, 0), space_page_slot_block(p, 1)],
                    crc,
                    SPACE_MAGIC,
                    p,
                )?;
                let counts = (0..PAGE_BLOCKS as usize)
                    .map(|i| le_u32(&buf[PAGE_HEADER_BYTES + 4 * i..]))
                    .collect();
                SpacePage {
                    counts,
                    committed_slot: Some(slot),
                    pending: 0,
                }
            };
            self.pages.insert(p, page);
        }
        Ok(self.pages.get_mut(&p).expect("just loaded"))
    }

    /// The count of `block` (see module docs for the special values).
    pub fn get(&mut self, block: u64) -> Result<u32> {
        let (p, i) = self.locate(block)?;
        Ok(self.page(p)?.counts[i])
    }

    fn locate(&self, block: u64) -> Result<(u64, usize)> {
        let p = block / PAGE_BLOCKS;
        if p >= self.total_pages {
            return Err(StoreError::corrupt(
                "block reference",
                block,
                format!(
                    "block is past the end of the pool ({} blocks)",
                    self.total_pages * PAGE_BLOCKS
                ),
            ));
        }
        Ok((p, (block % PAGE_BLOCKS) as usize))
    }

    fn on_disk_used(v: u32) -> bool {
        !matches!(v, RC_FREE | RC_PENDING | RC_RESERVED)
    }

    /// Sets a count, keeping the free/used figures and the undo log.
    fn set(&mut self, block: u64, new: u32) -> Result<()> {
        let (p, i) = self.locate(block)?;
        let page = self.page(p)?;
        let old = page.counts[i];
        page.counts[i] = new;
        if old == RC_PENDING {
            page.pending -= 1;
        }
        if new == RC_PENDING {
            page.pending += 1;
        }
        if old == RC_PENDING {
            self.pending_blocks -= 1;
        }
        if new == RC_PENDING {
            self.pending_blocks += 1;
        }
        let (was, is) = (Self::on_disk_used(old), Self::on_disk_used(new));
        if was != is {
            let entry = &mut self
                .dirs
                .get_mut(&(p / DIR_PAGES))
                .expect("dir loaded")
                .entries[(p % DIR_PAGES) as usize];
            if is {
                entry.1 -= 1;
                self.used_blocks += 1;
            } else {
                entry.1 += 1;
                self.used_blocks -= 1;
            }
        }
        let newly_dirty = self.dirty.insert(p);
        if let Some(undo) = &mut self.undo {
            undo.push(Undo::Count { block, old });
            if newly_dirty {
                undo.push(Undo::Dirtied(p));
            }
        }
        Ok(())
    }

    /// Adds a reference to the allocation starting at `block`.
    pub fn inc(&mut self, block: u64) -> Result<()> {
        let v = self.get(block)?;
        if v == RC_FREE || v > RC_MAX {
            return Err(StoreError::corrupt(
                "space map",
                block,
                format!("adding a reference to a block that is not allocated (count {v:#x})"),
            ));
        }
        if v == RC_MAX {
            return Err(StoreError::Invalid(format!(
                "block {block} has too many references"
            )));
        }
        self.set(block, v + 1)
    }

    /// Drops a reference; when the last goes, frees the allocation (as pending) and returns
    /// its length in blocks.
    pub fn dec(&mut self, block: u64) -> Result<Option<u32>> {
        let v = self.get(block)?;
        if v == RC_FREE || v > RC_MAX {
            return Err(StoreError::corrupt(
                "space map",
                block,
                format!("dropping a reference to a block that is not allocated (count {v:#x})"),
            ));
        }
        if v > 1 {
            self.set(block, v - 1)?;
            return Ok(None);
        }
        self.set(block, RC_PENDING)?;
        let mut len = 1u32;
        let page_end = (block / PAGE_BLOCKS + 1) * PAGE_BLOCKS;
        while block + u64::from(len) < page_end && self.get(block + u64::from(len))? == RC_CONT {
            self.set(block + u64::from(len), RC_PENDING)?;
            len += 1;
        }
        Ok(Some(len))
    }

    /// Makes blocks freed earlier allocatable again (they are already free on disk).
    pub fn release(&mut self, run: FreedRun) -> Result<()> {
        for b in run.block..run.block + u64::from(run.blocks) {
            let (p, i) = self.locate(b)?;
            let page = self.page(p)?;
            if page.counts[i] == RC_PENDING {
                page.counts[i] = RC_FREE;
                page.pending -= 1;
                self.pending_blocks -= 1;
            }
        }
        Ok(())
    }

    /// Allocates `blocks` contiguous blocks with one reference. Grows the pool if needed.
    pub fn alloc(&mut self, blocks: u32) -> Result<u64> {
        let usable = PAGE_BLOCKS - reserved_blocks_in_page(DIR_PAGES);
        if blocks == 0 || u64::from(blocks) > usable {
            return Err(StoreError::Invalid(format!(
                "cannot allocate {blocks} contiguous blocks"
            )));
        }
        loop {
            if let Some(block) = self.find_run(blocks)? {
                self.set(block, 1)?;
                for b in block + 1..block + u64::from(blocks) {
                    self.set(b, RC_CONT)?;
                }
                self.cursor = block + u64::from(blocks);
                return Ok(block);
            }
            if !self.grow()? {
                return Err(StoreError::NoSpace {
                    needed_blocks: u64::from(blocks),
                    free_blocks: self.allocatable_blocks(),
                });
            }
        }
    }

    /// How many free blocks (up to `max`) follow the allocation cursor within its page: an
    /// allocation of that many lands right after the last one.
    pub fn free_run_at_cursor(&mut self, max: u32) -> Result<u32> {
        let p = self.cursor / PAGE_BLOCKS;
        if p >= self.total_pages {
            return Ok(0);
        }
        let from = (self.cursor % PAGE_BLOCKS) as usize;
        let page = self.page(p)?;
        let run = page.counts[from..]
            .iter()
            .take(max as usize)
            .take_while(|&&c| c == RC_FREE)
            .count();
        Ok(run as u32)
    }

    /// Next-fit search for a run of free blocks, starting at the cursor.
    fn find_run(&mut self, blocks: u32) -> Result<Option<u64>> {
        let start_page = (self.cursor / PAGE_BLOCKS).min(self.total_pages.saturating_sub(1));
        for step in 0..=self.total_pages {
            let p = (start_page + step) % self.total_pages;
            let free = self.dirs_free(p)?;
            let from = if step == 0 {
                (self.cursor % PAGE_BLOCKS) as usize
            } else {
                0
            };
            let page = self.page(p)?;
            if free.saturating_sub(page.pending) < blocks {
                continue;
            }
            if let Some(i) = find_zero_run(&page.counts, from, blocks as usize) {
                return Ok(Some(p * PAGE_BLOCKS + i as u64));
            }
            if step == self.total_pages {
                break;
            }
        }
        Ok(None)
    }

    fn dirs_free(&mut self, p: u64) -> Result<u32> {
        let d = p / DIR_PAGES;
        if !self.dirs.contains_key(&d) {
            self.load_dir(d)?;
        }
        Ok(self.dirs[&d].entries[(p % DIR_PAGES) as usize].1)
    }

    /// Adds pages to the pool; false when it may not grow any more.
    fn grow(&mut self) -> Result<bool> {
        let limit = if self.max_pages == 0 {
            POOL_PAGES_MAX
        } else {
            self.max_pages.min(POOL_PAGES_MAX)
        };
        if self.total_pages >= limit {
            return Ok(false);
        }
        let add = (self.total_pages / 8).clamp(16, 256);
        let new_total = (self.total_pages + add).min(limit);
        let bytes = new_total * PAGE_BLOCKS * BLOCK_BYTES as u64;
        if self.device.grow(bytes).is_err() {
            return Ok(false);
        }
        if let Some(undo) = &mut self.undo {
            undo.push(Undo::Grew {
                old_total_pages: self.total_pages,
            });
        }
        self.cursor = self.total_pages * PAGE_BLOCKS;
        self.total_pages = new_total;
        for d in 0..self.dir_count() {
            if !self.dirs.contains_key(&d) {
                self.load_dir(d)?;
            }
        }
        Ok(true)
    }

    /// Starts recording changes so that [`SpaceMap::rollback`] can undo them.
    pub fn begin_savepoint(&mut self) {
        self.undo = Some(Vec::new());
        self.undo_cursor = self.cursor;
    }

    /// Forgets the recorded changes (they stay).
    pub fn end_savepoint(&mut self) {
        self.undo = None;
    }

    /// Undoes every change since [`SpaceMap::begin_savepoint`].
    pub fn rollback(&mut self) -> Result<()> {
        let Some(undo) = self.undo.take() else {
            return Ok(());
        };
        self.cursor = self.undo_cursor;
        for entry in undo.into_iter().rev() {
            match entry {
                Undo::Count { block, old } => self.set(block, old)?,
                Undo::Dirtied(p) => {
                    self.dirty.remove(&p);
                }
                Undo::Grew { old_total_pages } => self.total_pages = old_total_pages,
            }
        }
        Ok(())
    }

    /// Writes every changed page into its spare slot, then the changed directory pages.
    /// Returns the directory checksums for the superblock. The caller flushes.
    pub fn write_dirty(&mut self, tid: Tid) -> Result<Vec<u32>> {
        let dirty: Vec<u64> = std::mem::take(&mut self.dirty).into_iter().collect();
        let mut dirty_dirs = BTreeSet::new();
        let mut buf = vec![0u8; BLOCK_BYTES];
        for p in dirty {
            let page = self.page(p)?;
            for (i, &c) in page.counts.iter().enumerate() {
                let disk = if c == RC_PENDING { RC_FREE } else { c };
                buf[PAGE_HEADER_BYTES + 4 * i..PAGE_HEADER_BYTES + 4 * i + 4]
                    .copy_from_slice(&disk.to_le_bytes());
            }
            let slot = page.committed_slot.map_or(0, |s| 1 - s);
            page.committed_slot = Some(slot);
            let crc = seal_page(&mut buf, SPACE_MAGIC, tid, p);
            let block = space_page_slot_block(p, slot);
            self.device
                .write_at(block_offset(block), &buf)
                .map_err(|e| StoreError::io("writing the space map", block_offset(block), e))?;
            let d = p / DIR_PAGES;
            self.dirs.get_mut(&d).expect("dir loaded").entries[(p % DIR_PAGES) as usize].0 = crc;
            dirty_dirs.insert(d);
        }
        self.dir_crcs.resize(self.dir_count() as usize, 0);
        for d in dirty_dirs {
            let dir = self.dirs.get_mut(&d).expect("dir loaded");
            buf.fill(0);
            for (i, (crc, free)) in dir.entries.iter().enumerate() {
                let at = PAGE_HEADER_BYTES + 8 * i;
                buf[at..at + 4].copy_from_slice(&crc.to_le_bytes());
                buf[at + 4..at + 8].copy_from_slice(&free.to_le_bytes());
            }
            let slot = dir.committed_slot.map_or(0, |s| 1 - s);
            dir.committed_slot = Some(slot);
            let crc = seal_page(&mut buf, DIR_MAGIC, tid, d);
            let block = dir_page_slot_block(d, slot);
            self.device
                .write_at(block_offset(block), &buf)
                .map_err(|e| StoreError::io("writing the space map", block_offset(block), e))?;
            self.dir_crcs[d as usize] = crc;
        }
        Ok(self.dir_crcs.clone())
    }

    /// Every count of page `p` as the map holds it now (for fsck).
    pub fn page_counts(&mut self, p: u64) -> Result<Vec<u32>> {
        Ok(self.page(p)?.counts.to_vec())
    }

    /// The free-block figure the directory holds for page `p` (for fsck).
    pub fn directory_free(&mut self, p: u64) -> Result<u32> {
        self.dirs_free(p)
    }
}

/// Reserved blocks in a pool of `pages` space pages.
pub(crate) fn reserved_blocks_total(pages: u64) -> u64 {
    if pages == 0 {
        return 0;
    }
    2 * pages + 2 * pages.div_ceil(DIR_PAGES) + 4
}

/// Finds `len` consecutive `RC_FREE` counts at or after `from`.
fn find_zero_run(counts: &[u32], from: usize, len: usize) -> Option<usize> {
    let mut run = 0;
    for (i, &c) in counts.iter().enumerate().skip(from) {
        if c == RC_FREE {
            run += 1;
            if run == len {
                return Some(i + 1 - len);
            }
        } else {
            run = 0;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::MemDevice;

    fn map() -> SpaceMap {
        let dev: Arc<dyn BlockDevice> = Arc::new(MemDevice::new());
        SpaceMap::open(dev, 4, 0, vec![0], 0).unwrap()
    }

    #[test]
    fn the_free_run_at_the_cursor_is_what_an_allocation_there_gets() {
        let mut m = map();
        let a = m.alloc(256).unwrap();
        let run = m.free_run_at_cursor(u32::MAX).unwrap();
        assert!(run > 0 && u64::from(run) <= PAGE_BLOCKS);
        assert_eq!(m.free_run_at_cursor(10).unwrap(), 10);
        // Exactly that many land right after the last allocation and fill the page's rest.
        assert_eq!(m.alloc(run).unwrap(), a + 256);
        assert_eq!((a + 256 + u64::from(run)) % PAGE_BLOCKS, 0);
        assert_eq!(m.free_run_at_cursor(u32::MAX).unwrap(), 0);
    }

    #[test]
    fn alloc_never_hands_out_reserved_or_used_blocks() {
        let mut m = map();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..500 {
            let b = m.alloc(4).unwrap();
            for x in b..b + 4 {
                assert!(seen.insert(x), "block {x} handed out twice");
                assert!(x % PAGE_BLOCKS >= reserved_blocks_in_page(x / PAGE_BLOCKS));
            }
        }
        assert_eq!(m.used_blocks(), 2000);
    }

    #[test]
    fn dec_to_zero_frees_the_whole_run_but_only_release_makes_it_reusable() {
        let mut m = map();
        let b = m.alloc(4).unwrap();
        m.inc(b).unwrap();
        assert_eq!(m.dec(b).unwrap(), None);
        assert_eq!(m.dec(b).unwrap(), Some(4));
        assert_eq!(m.used_blocks(), 0);
        m.cursor = 0;
        let c = m.alloc(4).unwrap();
        assert_ne!(c, b, "a pending block was reused");
        m.release(FreedRun {
            block: b,
            blocks: 4,
            freed_tid: Tid(1),
        })
        .unwrap();
        m.cursor = 0;
        assert_eq!(m.alloc(4).unwrap(), b);
    }

    #[test]
    fn rollback_restores_counts_and_figures() {
        let mut m = map();
        let keep = m.alloc(4).unwrap();
        m.begin_savepoint();
        let gone = m.alloc(8).unwrap();
        m.inc(keep).unwrap();
        m.rollback().unwrap();
        assert_eq!(m.get(keep).unwrap(), 1);
        assert_eq!(m.get(gone).unwrap(), RC_FREE);
        assert_eq!(m.used_blocks(), 4);
    }

    #[test]
    fn written_pages_read_back_from_the_right_slot() {
        let dev: Arc<dyn BlockDevice> = Arc::new(MemDevice::new());
        let mut m = SpaceMap::open(dev.clone(), 4, 0, vec![0], 0).unwrap();
        let a = m.alloc(3).unwrap();
        let crcs = m.write_dirty(Tid(2)).unwrap();
        let b = m.alloc(5).unwrap();
        // A second commit that never lands: its pages go to the other slots.
        let _ = m.write_dirty(Tid(3)).unwrap();
        let mut back = SpaceMap::open(dev, 4, 0, crcs, 3).unwrap();
        assert_eq!(back.get(a).unwrap(), 1);
        assert_eq!(back.get(a + 2).unwrap(), RC_CONT);
        assert_eq!(back.get(b).unwrap(), RC_FREE);
    }
}
