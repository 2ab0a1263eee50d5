//! I/O on one volume or snapshot: reads, copy-on-write writes, trim, write-zeroes and
//! block status over its block map (block_map.rs).
//!
//! # Writes
//! A write is one store change (`Pool::write`): fresh extents (at most
//! [`EXTENT_BLOCKS_MAX`] blocks each) receive the new bytes, and one map record per block
//! points at them. Blocks only partly covered are read, merged and written whole. Nothing
//! committed is ever overwritten, so a snapshot taken at any moment keeps exactly what it
//! mapped; a write after a snapshot copies only the blocks it touches, and its cost does
//! not depend on how many snapshots exist (they share the map, not per-snapshot state).
//! The write is atomic with respect to every other request, every snapshot and every
//! commit, because all of them go through the store's single writer.
//!
//! # Reads
//! A read needs a view of the map and must read extent blocks that stay put until it is
//! done. Blocks that a later change frees become reusable only after a commit, and only
//! when no registered reader is older than the change that freed them. A read therefore
//! registers a reader (`Pool::read`, committed tid C) *before* taking its view: every
//! block the view can reach is either still mapped or was freed by a transaction after C,
//! and such blocks are kept until the reader lets go. The view itself comes from the
//! committed state when this tree has no writes after C (the common case for snapshots and
//! after a flush: no writer lock taken), else from the open transaction, so a read always
//! sees every write acknowledged before it, on any connection.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tidefs_store::{Pool, ReadTxn, Tid, TreeId, TreeView, WriteTxn};

use crate::block_map::{self, Mapping};
use crate::error::{Result, VolumeError};
use crate::limits::{BLOCK_STATUS_RECORDS_MAX, EXTENT_BLOCKS_MAX, VOLUME_BLOCK_BYTES};

const B: u64 = VOLUME_BLOCK_BYTES;
const BU: usize = VOLUME_BLOCK_BYTES as usize;

/// What every handle on one tree shares (all connections to one export, say).
pub(crate) struct TreeState {
    pub tree: TreeId,
    /// `NAME` or `NAME@SNAP`, for messages.
    pub label: String,
    pub snapshot: bool,
    pub size: AtomicU64,
    /// Tid of the newest transaction that changed this tree's map. While it is above the
    /// committed tid, readers must look at the open transaction.
    pub last_write_tid: AtomicU64,
    pub deleted: AtomicBool,
}

impl TreeState {
    pub fn note_write(&self, tid: Tid) {
        self.last_write_tid.fetch_max(tid.0, Ordering::SeqCst);
    }
}

/// The allocation state of a run of bytes, as block status reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockState {
    /// Nothing allocated; reads as zeroes.
    Hole,
    /// Allocated, reads as zeroes.
    Zero,
    /// Allocated data.
    Data,
}

/// One run of [`Volume::block_status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocation {
    pub len: u64,
    pub state: BlockState,
}

/// A handle for I/O on a volume or snapshot. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct Volume {
    pool: Pool,
    state: Arc<TreeState>,
    writable: bool,
}

impl Volume {
    pub(crate) fn new(pool: Pool, state: Arc<TreeState>, writable: bool) -> Volume {
        Volume {
            pool,
            state,
            writable,
        }
    }

    /// `NAME` or `NAME@SNAP`.
    pub fn label(&self) -> &str {
        &self.state.label
    }

    /// Current size in bytes.
    pub fn size(&self) -> u64 {
        self.state.size.load(Ordering::SeqCst)
    }

    pub fn is_snapshot(&self) -> bool {
        self.state.snapshot
    }

    /// Whether writes through this handle are refused.
    pub fn read_only(&self) -> bool {
        !self.writable
    }

    fn check_live(&self) -> Result<()> {
        if self.state.deleted.load(Ordering::SeqCst) {
            return Err(VolumeError::Deleted(self.state.label.clone()));
        }
        Ok(())
    }

    fn check_range(&self, offset: u64, len: u64) -> Result<()> {
        self.check_live()?;
        let size = self.size();
        match offset.checked_add(len) {
            Some(end) if end <= size => Ok(()),
            _ => Err(VolumeError::OutOfRange {
                volume: self.state.label.clone(),
                offset,
                len,
                size,
            }),
        }
    }

    fn check_write(&self, offset: u64, len: u64) -> Result<()> {
        if !self.writable {
            return Err(VolumeError::ReadOnly(self.state.label.clone()));
        }
        self.check_range(offset, len)
    }

    /// Runs one change of this tree's map as one store change.
    fn change<T>(&self, f: impl FnOnce(&mut WriteTxn<'_>) -> Result<T>) -> Result<(T, Tid)> {
        let tree = self.state.tree;
        let snapshot = self.state.snapshot;
        self.pool.write(|t| {
            if snapshot && t.tree_info(tree)?.read_only {
                // A snapshot exported writable (--writable-snapshots) becomes writable
                // at its first write, as csnap allowed.
                t.set_read_only(tree, false)?;
            }
            let value = f(t)?;
            self.state.note_write(t.tid());
            Ok((value, t.tid()))
        })
    }

    /// A reader registration and a view of the map that sees every acknowledged write
    /// (see the module documentation for why the order matters).
    fn view(&self) -> Result<(ReadTxn, TreeView)> {
        self.check_live()?;
        let guard = self.pool.read();
        if guard.tid().0 >= self.state.last_write_tid.load(Ordering::SeqCst) {
            let view = guard.tree(self.state.tree)?;
            return Ok((guard, view));
        }
        let tree = self.state.tree;
        let view = self.pool.write(|t| t.tree(tree))?;
        Ok((guard, view))
    }

    /// Fills `buf` with the bytes at `offset`. Holes read as zeroes; data is verified.
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.check_range(offset, buf.len() as u64)?;
        if buf.is_empty() {
            return Ok(());
        }
        let (guard, view) = self.view()?;
        let end = offset + buf.len() as u64;
        let (first, last) = (offset / B, end.div_ceil(B));
        let mut reader = RunReader {
            volume: self,
            guard: &guard,
            offset,
            buf,
            run: None,
        };
        let mut next = first;
        for record in view.range(&block_map::key(first)[..]..&block_map::key(last)[..])? {
            let (block, mapping) = self.decode(&record?)?;
            if block > next {
                reader.flush()?;
                reader.zero(next, block);
            }
            match mapping {
                Mapping::Zero => {
                    reader.flush()?;
                    reader.zero(block, block + 1);
                }
                Mapping::Data { extent, index, crc } => reader.push(block, extent, index, crc)?,
            }
            next = block + 1;
        }
        reader.flush()?;
        reader.zero(next, last);
        Ok(())
    }

    fn decode(&self, record: &tidefs_store::Record) -> Result<(u64, Mapping)> {
        block_map::decode(record).map_err(|detail| VolumeError::Corrupt {
            volume: self.state.label.clone(),
            what: "block map record",
            detail,
        })
    }

    fn verify(&self, block: u64, extent_block: u64, expected: u32, data: &[u8]) -> Result<()> {
        let found = crc32c::crc32c(data);
        if found != expected {
            return Err(VolumeError::Checksum {
                volume: self.state.label.clone(),
                offset: block * B,
                block: extent_block,
                expected,
                found,
            });
        }
        Ok(())
    }

    /// The current bytes of one block, inside a change (so it sees the open transaction).
    fn read_block_in(&self, t: &mut WriteTxn<'_>, block: u64, out: &mut [u8; BU]) -> Result<bool> {
        let Some(record) = t.get(self.state.tree, &block_map::key(block))? else {
            out.fill(0);
            return Ok(false);
        };
        match self.decode(&record)?.1 {
            Mapping::Zero => {
                out.fill(0);
                Ok(false)
            }
            Mapping::Data { extent, index, crc } => {
                t.read_extent(extent, Mapping::extent_offset(index), out)?;
                self.verify(block, extent.block + u64::from(index), crc, out)?;
                Ok(true)
            }
        }
    }

    /// Writes `data` at `offset`. Returns the tid the write will commit with.
    pub fn write(&self, offset: u64, data: &[u8]) -> Result<Tid> {
        self.check_write(offset, data.len() as u64)?;
        if data.is_empty() {
            return Ok(self.pool.committed_tid());
        }
        // Checksums of whole blocks are computed before taking the writer lock.
        let end = offset + data.len() as u64;
        let (first, last) = (offset / B, end.div_ceil(B));
        let whole: Vec<Option<u32>> = (first..last)
            .map(|b| {
                let at = b * B;
                (at >= offset && at + B <= end).then(|| {
                    let i = (at - offset) as usize;
                    crc32c::crc32c(&data[i..i + BU])
                })
            })
            .collect();
        let (_, tid) = self.change(|t| self.write_in(t, offset, data, &whole))?;
        Ok(tid)
    }

    /// The write itself, inside a change. `whole[i]` is the checksum of block `first + i`
    /// when `data` covers it entirely.
    fn write_in(
        &self,
        t: &mut WriteTxn<'_>,
        offset: u64,
        data: &[u8],
        whole: &[Option<u32>],
    ) -> Result<()> {
        let tree = self.state.tree;
        let end = offset + data.len() as u64;
        let (first, last) = (offset / B, end.div_ceil(B));
        let mut block = first;
        let mut merged = [0u8; BU];
        while block < last {
            let count = (last - block).min(EXTENT_BLOCKS_MAX);
            let extent = t.alloc_extent(count as u32)?;
            let mut crcs = Vec::with_capacity(count as usize);
            let mut i = 0;
            while i < count {
                let b = block + i;
                if let Some(crc) = whole[(b - first) as usize] {
                    // A run of whole blocks goes straight from the request.
                    let mut run = 1;
                    while i + run < count && whole[(b + run - first) as usize].is_some() {
                        run += 1;
                    }
                    let from = (b * B - offset) as usize;
                    t.write_extent(extent, i * B, &data[from..from + (run * B) as usize])?;
                    crcs.push(crc);
                    for j in 1..run {
                        crcs.push(whole[(b + j - first) as usize].expect("whole block"));
                    }
                    i += run;
                } else {
                    self.read_block_in(t, b, &mut merged)?;
                    let (lo, hi) = ((b * B).max(offset), (b * B + B).min(end));
                    merged[(lo - b * B) as usize..(hi - b * B) as usize]
                        .copy_from_slice(&data[(lo - offset) as usize..(hi - offset) as usize]);
                    t.write_extent(extent, i * B, &merged)?;
                    crcs.push(crc32c::crc32c(&merged));
                    i += 1;
                }
            }
            for (i, crc) in crcs.into_iter().enumerate() {
                let payload = block_map::data_payload(i as u16, crc);
                t.insert_with_extent(tree, &block_map::key(block + i as u64), extent, &payload)?;
            }
            block += count;
        }
        Ok(())
    }

    /// Discards the whole blocks inside the range (they become holes); partial blocks at
    /// the edges are left as they are, which NBD allows for a trim.
    pub fn trim(&self, offset: u64, len: u64) -> Result<Tid> {
        self.check_write(offset, len)?;
        let (first, last) = (offset.div_ceil(B), (offset + len) / B);
        if first >= last {
            return Ok(self.pool.committed_tid());
        }
        let tree = self.state.tree;
        Ok(self.change(|t| punch(t, tree, first, last).map(|_| ()))?.1)
    }

    /// Makes the range read as zeroes. Whole blocks become holes when `may_punch_hole`,
    /// else zero records (allocated zeroes); partial blocks holding data are rewritten.
    pub fn write_zeroes(&self, offset: u64, len: u64, may_punch_hole: bool) -> Result<Tid> {
        self.check_write(offset, len)?;
        if len == 0 {
            return Ok(self.pool.committed_tid());
        }
        let tree = self.state.tree;
        let end = offset + len;
        let (first, last) = (offset.div_ceil(B), end / B);
        let edges = edge_pieces(offset, end);
        Ok(self
            .change(|t| {
                for (at, piece_len) in edges {
                    self.zero_partial(t, at, piece_len)?;
                }
                if first < last {
                    if may_punch_hole {
                        punch(t, tree, first, last)?;
                    } else {
                        self.allocate_zeroes(t, first, last)?;
                    }
                }
                Ok(())
            })?
            .1)
    }

    /// Zeroes part of one block; blocks that already read as zero are left alone.
    fn zero_partial(&self, t: &mut WriteTxn<'_>, at: u64, len: u64) -> Result<()> {
        let block = at / B;
        let mut old = [0u8; BU];
        if !self.read_block_in(t, block, &mut old)? {
            return Ok(());
        }
        let lo = (at - block * B) as usize;
        old[lo..lo + len as usize].fill(0);
        let extent = t.alloc_extent(1)?;
        t.write_extent(extent, 0, &old)?;
        let payload = block_map::data_payload(0, crc32c::crc32c(&old));
        t.insert_with_extent(self.state.tree, &block_map::key(block), extent, &payload)?;
        Ok(())
    }

    /// Puts a zero record on every block of `[first, last)` that is not one already.
    fn allocate_zeroes(&self, t: &mut WriteTxn<'_>, first: u64, last: u64) -> Result<()> {
        let tree = self.state.tree;
        let mut already = Vec::new();
        for record in t
            .tree(tree)?
            .range(&block_map::key(first)[..]..&block_map::key(last)[..])?
        {
            let (block, mapping) = self.decode(&record?)?;
            if mapping == Mapping::Zero {
                already.push(block);
            }
        }
        let mut already = already.into_iter().peekable();
        for block in first..last {
            if already.peek() == Some(&block) {
                already.next();
                continue;
            }
            t.insert(tree, &block_map::key(block), &block_map::ZERO_VALUE)?;
        }
        Ok(())
    }

    /// Makes every write that returned before this call durable (a pool commit: this
    /// covers writes through every handle and connection).
    pub fn flush(&self) -> Result<Tid> {
        Ok(self.pool.commit()?)
    }

    /// Makes the writes of transaction `tid` durable (for FUA), committing only if needed.
    pub fn flush_through(&self, tid: Tid) -> Result<Tid> {
        Ok(self.pool.commit_through(tid)?)
    }

    /// The allocation of the range from `offset`, as consecutive runs. Covers at least one
    /// byte and at most `len` bytes; after [`BLOCK_STATUS_RECORDS_MAX`] map records it
    /// stops early (the caller asks again for the rest).
    pub fn block_status(&self, offset: u64, len: u64) -> Result<Vec<Allocation>> {
        self.check_range(offset, len)?;
        if len == 0 {
            return Ok(Vec::new());
        }
        let (_guard, view) = self.view()?;
        let end = offset + len;
        let (first, last) = (offset / B, end.div_ceil(B));
        let mut runs = AllocationRuns::new(offset, end);
        let mut next = first;
        for (seen, record) in view
            .range(&block_map::key(first)[..]..&block_map::key(last)[..])?
            .enumerate()
        {
            if seen == BLOCK_STATUS_RECORDS_MAX {
                return Ok(runs.finish());
            }
            let (block, mapping) = self.decode(&record?)?;
            runs.push(next, block, BlockState::Hole);
            let state = match mapping {
                Mapping::Zero => BlockState::Zero,
                Mapping::Data { .. } => BlockState::Data,
            };
            runs.push(block, block + 1, state);
            next = block + 1;
        }
        runs.push(next, last, BlockState::Hole);
        Ok(runs.finish())
    }
}

/// The partial-block pieces at the edges of `[offset, end)`: `(offset, len)` pairs.
fn edge_pieces(offset: u64, end: u64) -> Vec<(u64, u64)> {
    let (head_block, tail_block) = (offset / B, (end - 1) / B);
    let mut pieces = Vec::new();
    if head_block == tail_block {
        if !offset.is_multiple_of(B) || end - offset < B {
            pieces.push((offset, end - offset));
        }
        return pieces;
    }
    if !offset.is_multiple_of(B) {
        pieces.push((offset, B - offset % B));
    }
    if !end.is_multiple_of(B) {
        pieces.push((end - end % B, end % B));
    }
    pieces
}

/// Removes every record of `[first, last)`. Returns how many there were.
pub(crate) fn punch(t: &mut WriteTxn<'_>, tree: TreeId, first: u64, last: u64) -> Result<u64> {
    let mut keys = Vec::new();
    for record in t
        .tree(tree)?
        .range(&block_map::key(first)[..]..&block_map::key(last)[..])?
    {
        keys.push(record?.key);
    }
    for key in &keys {
        t.remove(tree, key)?;
    }
    Ok(keys.len() as u64)
}

/// Builds block-status runs from block ranges, clipped to the byte range asked for.
struct AllocationRuns {
    offset: u64,
    end: u64,
    covered: u64,
    runs: Vec<Allocation>,
}

impl AllocationRuns {
    fn new(offset: u64, end: u64) -> Self {
        AllocationRuns {
            offset,
            end,
            covered: offset,
            runs: Vec::new(),
        }
    }

    fn push(&mut self, first: u64, last: u64, state: BlockState) {
        if first >= last {
            return;
        }
        let (lo, hi) = ((first * B).max(self.offset), (last * B).min(self.end));
        debug_assert_eq!(lo, self.covered, "runs are pushed in order without gaps");
        self.covered = hi;
        match self.runs.last_mut() {
            Some(run) if run.state == state => run.len += hi - lo,
            _ => self.runs.push(Allocation {
                len: hi - lo,
                state,
            }),
        }
    }

    fn finish(self) -> Vec<Allocation> {
        self.runs
    }
}

/// Gathers consecutive blocks of one extent into one device read during [`Volume::read`].
struct RunReader<'a> {
    volume: &'a Volume,
    guard: &'a ReadTxn,
    offset: u64,
    buf: &'a mut [u8],
    run: Option<DataRun>,
}

struct DataRun {
    first_block: u64,
    extent: tidefs_store::Extent,
    first_index: u16,
    crcs: Vec<u32>,
}

impl RunReader<'_> {
    fn end(&self) -> u64 {
        self.offset + self.buf.len() as u64
    }

    /// Zeroes the part of `buf` that blocks `[first, last)` cover.
    fn zero(&mut self, first: u64, last: u64) {
        if first >= last {
            return;
        }
        let lo = (first * B).max(self.offset) - self.offset;
        let hi = (last * B).min(self.end()) - self.offset;
        self.buf[lo as usize..hi as usize].fill(0);
    }

    fn push(
        &mut self,
        block: u64,
        extent: tidefs_store::Extent,
        index: u16,
        crc: u32,
    ) -> Result<()> {
        if let Some(run) = &mut self.run {
            let n = run.crcs.len() as u64;
            if run.extent == extent
                && run.first_block + n == block
                && u64::from(run.first_index) + n == u64::from(index)
            {
                run.crcs.push(crc);
                return Ok(());
            }
        }
        self.flush()?;
        self.run = Some(DataRun {
            first_block: block,
            extent,
            first_index: index,
            crcs: vec![crc],
        });
        Ok(())
    }

    /// Reads the pending run, verifies each block, and copies what the request covers.
    fn flush(&mut self) -> Result<()> {
        let Some(run) = self.run.take() else {
            return Ok(());
        };
        let blocks = run.crcs.len() as u64;
        let (start, stop) = (run.first_block * B, (run.first_block + blocks) * B);
        let extent_at = Mapping::extent_offset(run.first_index);
        let (offset, end) = (self.offset, self.end());
        if start >= offset && stop <= end {
            let lo = (start - offset) as usize;
            let bytes = &mut self.buf[lo..lo + (blocks * B) as usize];
            self.guard.read_extent(run.extent, extent_at, bytes)?;
            return verify_run(self.volume, &run, bytes);
        }
        // The run sticks out of the request (partial blocks at its edges): read it whole,
        // verify it, copy the part asked for.
        let mut bytes = vec![0u8; (blocks * B) as usize];
        self.guard.read_extent(run.extent, extent_at, &mut bytes)?;
        verify_run(self.volume, &run, &bytes)?;
        let (lo, hi) = (start.max(offset), stop.min(end));
        let from = (lo - start) as usize;
        let n = (hi - lo) as usize;
        self.buf[(lo - offset) as usize..(lo - offset) as usize + n]
            .copy_from_slice(&bytes[from..from + n]);
        Ok(())
    }
}

fn verify_run(volume: &Volume, run: &DataRun, bytes: &[u8]) -> Result<()> {
    for (i, crc) in run.crcs.iter().enumerate() {
        let extent_block = run.extent.block + u64::from(run.first_index) + i as u64;
        volume.verify(
            run.first_block + i as u64,
            extent_block,
            *crc,
            &bytes[i * BU..(i + 1) * BU],
        )?;
    }
    Ok(())
}
