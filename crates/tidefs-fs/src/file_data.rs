//! File data: inline bytes for small files, copy-on-write extent references otherwise,
//! holes where nothing is recorded.
//!
//! Records `(ino, DATA, file offset)`:
//!
//! ```text
//! inline   (plain record, offset 0 only)     0x00, the file's first bytes
//! data     (record referencing an extent)    0x01, 3 × 0, ext_off u32, len u32, len × crc32c u32
//! prealloc (record referencing an extent)    0x02, 3 × 0, ext_off u32, len u32
//! ```
//!
//! `ext_off` and `len` count 4 KiB blocks; the record maps file blocks
//! `[offset/4096, offset/4096 + len)` to extent blocks `[ext_off, ext_off + len)`. Each data
//! block carries the crc32c of its 4096 bytes, so a read verifies what it returns (a
//! mismatch is EIO naming inode and offset). Prealloc blocks (fallocate) hold space and
//! read as zeros.
//!
//! Invariants: block records are aligned to 4 KiB and never overlap; a file has either
//! one inline record or block records, never both; bytes past the end of file inside its
//! last block read as zero (truncate zeroes them), so growing a file needs no data write.
//!
//! Overwrites never touch committed blocks: the new bytes of every touched block (old
//! contents merged in for partial blocks) go to a fresh extent, and references that
//! overlap the range are cut, keeping their outer pieces as records that point into the
//! same extent (the store counts those as further references). Snapshots and reflinked
//! copies therefore keep their data by construction.

use std::ops::Bound;

use tidefs_store::Extent;

use crate::cx::Cx;
use crate::error::{FsError, Result};
use crate::inode::Inode;
use crate::keys::{data_key, kind_prefix, KIND_DATA};
use crate::limits::{DATA_BLOCK_BYTES, DATA_EXTENT_BLOCKS, FILE_BYTES_MAX, INLINE_DATA_BYTES_MAX};
use crate::records::RecordError;

const B: u64 = DATA_BLOCK_BYTES as u64;
/// Unaligned writes up to this size go to the store as one run of whole blocks (one
/// extent, one record) rather than as a merged head, the whole blocks and a merged tail:
/// tar writes 10 KiB at a time, so every write was three extents.
const MERGED_WRITE_BYTES_MAX: usize = 64 * 1024;
/// The smallest piece a write of new blocks is cut into to fill the rest of a space page.
const PIECE_BLOCKS_MIN: u32 = 64;
const TYPE_INLINE: u8 = 0;
const TYPE_DATA: u8 = 1;
const TYPE_PREALLOC: u8 = 2;

/// `fallocate` mode bits (Linux values).
pub mod falloc {
    pub const KEEP_SIZE: u32 = 0x01;
    pub const PUNCH_HOLE: u32 = 0x02;
    pub const ZERO_RANGE: u32 = 0x10;
}

/// A data record that maps file blocks `[start, start + len)` onto blocks
/// `[ext_off, ext_off + len)` of `extent` (blocks of [`DATA_BLOCK_BYTES`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockRecord {
    /// First file block.
    pub start: u64,
    /// Blocks mapped (at least 1).
    pub len: u64,
    pub extent: Extent,
    /// First block inside `extent`.
    pub ext_off: u64,
    /// Per-block crc32c; `None` for preallocated (zero-reading) blocks.
    pub crcs: Option<Vec<u32>>,
}

impl BlockRecord {
    fn end(&self) -> u64 {
        self.start + self.len
    }

    pub(crate) fn payload(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(12 + self.crcs.as_ref().map_or(0, |c| 4 * c.len()));
        v.push(if self.crcs.is_some() {
            TYPE_DATA
        } else {
            TYPE_PREALLOC
        });
        v.extend_from_slice(&[0, 0, 0]);
        v.extend_from_slice(&(self.ext_off as u32).to_le_bytes());
        v.extend_from_slice(&(self.len as u32).to_le_bytes());
        if let Some(crcs) = &self.crcs {
            for c in crcs {
                v.extend_from_slice(&c.to_le_bytes());
            }
        }
        v
    }

    /// The part of this record covering file blocks `[lo, hi)` (inside the record).
    fn slice(&self, lo: u64, hi: u64) -> BlockRecord {
        let skip = (lo - self.start) as usize;
        let n = (hi - lo) as usize;
        BlockRecord {
            start: lo,
            len: hi - lo,
            extent: self.extent,
            ext_off: self.ext_off + (lo - self.start),
            crcs: self.crcs.as_ref().map(|c| c[skip..skip + n].to_vec()),
        }
    }
}

/// What a piece of a file is stored as (for export, SEEK_DATA and send).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtentKind {
    /// Bytes inside the inline record.
    Inline,
    /// Written data in a shared extent: `(extent, byte offset into it)`.
    Data { extent: Extent, extent_offset: u64 },
    /// Space held by fallocate; reads as zeros.
    Prealloc,
}

/// One stored range of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileExtent {
    pub offset: u64,
    pub len: u64,
    pub kind: ExtentKind,
}

/// A range of a source file as [`Cx::clone_into`] takes it.
pub(crate) enum CloneSource {
    /// The source is inline: its bytes inside the range, copied as data; the rest of the
    /// range (past the inline record) is a hole.
    Bytes(Vec<u8>),
    /// The block records of source blocks `[lo, …)`, cut to the range (holes are absent).
    Blocks { lo: u64, recs: Vec<BlockRecord> },
}

/// One decoded DATA record of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataRecord {
    /// The file's first bytes, kept in the record (offset 0 only).
    Inline(Vec<u8>),
    Block(BlockRecord),
}

/// Decodes the DATA record `r` (the format table is in the module doc).
pub(crate) fn decode_record(r: &tidefs_store::Record) -> Result<DataRecord, RecordError> {
    let bad = |what: &str| RecordError::new(&r.key, what);
    let offset = tidefs_store::parse_key3(&r.key)
        .ok_or_else(|| bad("bad key"))?
        .2;
    let v = &r.value;
    match (v.first().copied(), r.extent) {
        (Some(TYPE_INLINE), None) if offset == 0 => Ok(DataRecord::Inline(v[1..].to_vec())),
        (Some(t @ (TYPE_DATA | TYPE_PREALLOC)), Some(extent))
            if v.len() >= 12 && offset.is_multiple_of(B) =>
        {
            let ext_off = u64::from(u32::from_le_bytes(v[4..8].try_into().expect("4")));
            let len = u64::from(u32::from_le_bytes(v[8..12].try_into().expect("4")));
            if ext_off + len > u64::from(extent.blocks) || len == 0 {
                return Err(bad("range outside its extent"));
            }
            let crcs = if t == TYPE_DATA {
                if v.len() != 12 + 4 * len as usize {
                    return Err(bad("checksum table length"));
                }
                Some(
                    v[12..]
                        .chunks_exact(4)
                        .map(|c| u32::from_le_bytes(c.try_into().expect("4")))
                        .collect(),
                )
            } else {
                None
            };
            Ok(DataRecord::Block(BlockRecord {
                start: offset / B,
                len,
                extent,
                ext_off,
                crcs,
            }))
        }
        _ => Err(bad("unknown type")),
    }
}

fn decode(tree: tidefs_store::TreeId, r: &tidefs_store::Record) -> Result<DataRecord> {
    decode_record(r).map_err(|e| FsError::record(tree, e))
}

impl Cx<'_, '_> {
    fn inline_data(&mut self, ino: u64) -> Result<Option<Vec<u8>>> {
        let tree = self.tree;
        match self.get(&data_key(ino, 0))? {
            Some(r) => match decode(tree, &r)? {
                DataRecord::Inline(b) => Ok(Some(b)),
                DataRecord::Block(_) => Ok(None),
            },
            None => Ok(None),
        }
    }

    fn has_data_records(&mut self, ino: u64) -> Result<bool> {
        Ok(self
            .view()?
            .prefix(&kind_prefix(ino, KIND_DATA))?
            .next()
            .is_some())
    }

    /// Block records overlapping file blocks `[lo, hi)`, in order.
    fn block_records(&mut self, ino: u64, lo: u64, hi: u64) -> Result<Vec<BlockRecord>> {
        let tree = self.tree;
        let view = self.view()?;
        let lo_key = data_key(ino, lo.saturating_mul(B));
        let hi_key = data_key(ino, hi.saturating_mul(B));
        let first_key = data_key(ino, 0);
        let mut out = Vec::new();
        if let Some(r) = view
            .range_rev(first_key.as_slice()..=lo_key.as_slice())?
            .next()
        {
            if let DataRecord::Block(b) = decode(tree, &r?)? {
                if b.end() > lo {
                    out.push(b);
                }
            }
        }
        let range = (
            Bound::Excluded(lo_key.as_slice()),
            Bound::Excluded(hi_key.as_slice()),
        );
        for r in view.range(range)? {
            if let DataRecord::Block(b) = decode(tree, &r?)? {
                out.push(b);
            }
        }
        Ok(out)
    }

    /// Hints that file bytes `[offset, offset + len)` will be read soon.
    pub fn prefetch_data(&mut self, ino: u64, offset: u64, len: u64) -> Result<()> {
        let (lo, hi) = (offset / B, offset.saturating_add(len).div_ceil(B));
        for rec in self.block_records(ino, lo, hi)? {
            if rec.crcs.is_none() {
                continue; // preallocated: nothing stored to read
            }
            let from = rec.start.max(lo);
            let to = rec.end().min(hi);
            self.t.prefetch_extent(
                rec.extent,
                (rec.ext_off + from - rec.start) * B,
                (to - from) * B,
            );
        }
        Ok(())
    }

    /// Reads whole file blocks from `lo` into `dst` (a multiple of the block size),
    /// verifying every data block; holes read as zeros.
    fn read_blocks_into(&mut self, ino: u64, lo: u64, dst: &mut [u8]) -> Result<()> {
        let n = dst.len() as u64 / B;
        let mut filled = lo; // blocks before this are in `dst`
        let zero_to = |dst: &mut [u8], filled: &mut u64, to: u64| {
            if to > *filled {
                dst[((*filled - lo) * B) as usize..((to - lo) * B) as usize].fill(0);
                *filled = to;
            }
        };
        for rec in self.block_records(ino, lo, lo + n)? {
            let from = rec.start.max(lo);
            let to = rec.end().min(lo + n);
            zero_to(dst, &mut filled, from);
            let Some(crcs) = &rec.crcs else { continue }; // preallocated: zeros
            let part = &mut dst[((from - lo) * B) as usize..((to - lo) * B) as usize];
            self.t
                .read_extent(rec.extent, (rec.ext_off + from - rec.start) * B, part)?;
            for (i, block) in part.chunks(DATA_BLOCK_BYTES).enumerate() {
                let want = crcs[(from - rec.start) as usize + i];
                let got = crc32c::crc32c(block);
                if got != want {
                    return Err(FsError::DataCorrupt {
                        ino,
                        offset: (from + i as u64) * B,
                        detail: format!(
                            "crc32c {got:#010x}, expected {want:#010x} (extent at block {})",
                            rec.extent.block
                        ),
                    });
                }
            }
            filled = to;
        }
        zero_to(dst, &mut filled, lo + n);
        Ok(())
    }

    /// File block `index`, verified.
    fn read_block(&mut self, ino: u64, index: u64) -> Result<Vec<u8>> {
        let mut block = vec![0u8; DATA_BLOCK_BYTES];
        self.read_blocks_into(ino, index, &mut block)?;
        Ok(block)
    }

    /// Up to `len` bytes at `offset` (fewer at end of file).
    pub fn read_data(&mut self, inode: &Inode, offset: u64, len: u64) -> Result<Vec<u8>> {
        let want = inode.size.saturating_sub(offset).min(len);
        let mut buf = vec![0u8; want as usize];
        let n = self.read_data_into(inode, offset, &mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Reads up to `buf.len()` bytes at `offset` into `buf` (fewer at end of file); returns
    /// how many. Whole blocks go straight into `buf` (no copy: large reads are the common
    /// case and a second copy of them costs as much as the read); only a partial first or
    /// last block goes through a block-sized buffer.
    pub fn read_data_into(&mut self, inode: &Inode, offset: u64, buf: &mut [u8]) -> Result<usize> {
        if offset >= inode.size || buf.is_empty() {
            return Ok(0);
        }
        let end = inode.size.min(offset.saturating_add(buf.len() as u64));
        let out = &mut buf[..(end - offset) as usize];
        if let Some(inline) = self.inline_data(inode.ino)? {
            out.fill(0);
            let have = (inline.len() as u64).min(end);
            if offset < have {
                out[..(have - offset) as usize]
                    .copy_from_slice(&inline[offset as usize..have as usize]);
            }
            return Ok(out.len());
        }
        let first = offset / B;
        if first == (end - 1) / B {
            // All within one block.
            let at = (offset % B) as usize;
            let block = self.read_block(inode.ino, first)?;
            let n = out.len();
            out.copy_from_slice(&block[at..at + n]);
            return Ok(n);
        }
        // [offset, end) = head (the end of block `first`) + whole blocks [a, b) + tail
        // (the start of block `b`); head and tail may be empty.
        let a = offset.div_ceil(B);
        let b = end / B;
        let head = (a * B - offset) as usize;
        let tail = (end - b * B) as usize;
        if head > 0 {
            let block = self.read_block(inode.ino, first)?;
            out[..head].copy_from_slice(&block[DATA_BLOCK_BYTES - head..]);
        }
        let n = out.len();
        if b > a {
            self.read_blocks_into(inode.ino, a, &mut out[head..n - tail])?;
        }
        if tail > 0 {
            let block = self.read_block(inode.ino, b)?;
            out[n - tail..].copy_from_slice(&block[..tail]);
        }
        Ok(out.len())
    }

    /// Drops references to file blocks `[lo, hi)`; returns how many blocks were referenced.
    fn cut_blocks(&mut self, ino: u64, lo: u64, hi: u64) -> Result<u64> {
        let mut removed = 0;
        for rec in self.block_records(ino, lo, hi)? {
            // Pieces that survive are written before the original goes, so the extent
            // never drops to zero references in between.
            if rec.end() > hi {
                self.put_block_rec(ino, &rec.slice(hi, rec.end()))?;
            }
            if rec.start < lo {
                self.put_block_rec(ino, &rec.slice(rec.start, lo))?;
            } else {
                self.del(&data_key(ino, rec.start * B))?;
            }
            removed += rec.end().min(hi) - rec.start.max(lo);
        }
        Ok(removed)
    }

    fn put_block_rec(&mut self, ino: u64, rec: &BlockRecord) -> Result<()> {
        self.t.insert_with_extent(
            self.tree,
            &data_key(ino, rec.start * B),
            rec.extent,
            &rec.payload(),
        )?;
        Ok(())
    }

    /// Writes whole blocks starting at file block `lo` into fresh extents.
    fn write_new_blocks(&mut self, inode: &mut Inode, lo: u64, buf: &[u8]) -> Result<()> {
        debug_assert_eq!(buf.len() % DATA_BLOCK_BYTES, 0);
        let n = buf.len() as u64 / B;
        inode.blocks -= self.cut_blocks(inode.ino, lo, lo + n)?;
        let mut writes = Vec::new();
        let mut rest = buf;
        while !rest.is_empty() {
            let want = (rest.len() / DATA_BLOCK_BYTES).min(DATA_EXTENT_BLOCKS as usize) as u32;
            // What still fits in the space page being filled, unless that is a sliver:
            // sequential writes then lie back to back (a 1 MiB write fits 3 times in a
            // page; the 4th used to start a new page, leaving a quarter of each behind).
            let here = if want > PIECE_BLOCKS_MIN {
                self.t.contiguous_blocks(want)?
            } else {
                0 // too small to be cut: not worth looking
            };
            let blocks = if here >= PIECE_BLOCKS_MIN { here } else { want };
            let (chunk, after) = rest.split_at(blocks as usize * DATA_BLOCK_BYTES);
            writes.push((self.t.alloc_extent(blocks)?, chunk));
            rest = after;
        }
        // All at once: the store may write big batches in parallel, and the checksums are
        // computed while it does.
        let mut crcs = self.t.write_extents_with(&writes, || {
            writes
                .iter()
                .map(|(_, c)| c.chunks(DATA_BLOCK_BYTES).map(crc32c::crc32c).collect())
                .collect::<Vec<Vec<u32>>>()
        })?;
        let mut start = lo;
        for (i, &(extent, chunk)) in writes.iter().enumerate() {
            let blocks = (chunk.len() / DATA_BLOCK_BYTES) as u32;
            let rec = BlockRecord {
                start,
                len: u64::from(blocks),
                extent,
                ext_off: 0,
                crcs: Some(std::mem::take(&mut crcs[i])),
            };
            self.put_block_rec(inode.ino, &rec)?;
            inode.blocks += u64::from(blocks);
            start += u64::from(blocks);
        }
        Ok(())
    }

    /// Writes `data` at byte `offset` as blocks: partial first and last blocks are merged
    /// with their current contents; whole blocks of a large write go to the store straight
    /// from `data`, while a small unaligned write is merged into one run of blocks.
    fn write_blocks(&mut self, inode: &mut Inode, offset: u64, data: &[u8]) -> Result<()> {
        let end = offset + data.len() as u64;
        let aligned = offset.is_multiple_of(B) && end.is_multiple_of(B);
        let first_whole = offset.div_ceil(B);
        let whole_end = end / B;
        if whole_end <= first_whole || (data.len() <= MERGED_WRITE_BYTES_MAX && !aligned) {
            return self.write_blocks_merged(inode, offset, data);
        }
        let (head, rest) = data.split_at((first_whole * B - offset) as usize);
        let (middle, tail) = rest.split_at(((whole_end - first_whole) * B) as usize);
        if !head.is_empty() {
            self.write_blocks_merged(inode, offset, head)?;
        }
        self.write_new_blocks(inode, first_whole, middle)?;
        if !tail.is_empty() {
            self.write_blocks_merged(inode, whole_end * B, tail)?;
        }
        Ok(())
    }

    /// [`Self::write_blocks`] through a block-aligned copy: for writes within a block or
    /// two.
    fn write_blocks_merged(&mut self, inode: &mut Inode, offset: u64, data: &[u8]) -> Result<()> {
        let end = offset + data.len() as u64;
        let lo = offset / B;
        let hi = end.div_ceil(B);
        let mut buf = vec![0u8; ((hi - lo) * B) as usize];
        // A block that starts at or past the end of the file holds nothing to keep (bytes
        // past the end read as zeros), so an append reads at most the block it continues.
        if !offset.is_multiple_of(B) && lo * B < inode.size {
            let head = self.read_block(inode.ino, lo)?;
            buf[..DATA_BLOCK_BYTES].copy_from_slice(&head);
        }
        if !end.is_multiple_of(B)
            && (hi - 1 != lo || offset.is_multiple_of(B))
            && (hi - 1) * B < inode.size
        {
            let tail = self.read_block(inode.ino, hi - 1)?;
            let at = buf.len() - DATA_BLOCK_BYTES;
            buf[at..].copy_from_slice(&tail);
        }
        let skip = (offset - lo * B) as usize;
        buf[skip..skip + data.len()].copy_from_slice(data);
        self.write_new_blocks(inode, lo, &buf)
    }

    /// Moves inline bytes into a block so the file can grow past the inline limit.
    fn uninline(&mut self, inode: &mut Inode) -> Result<()> {
        if let Some(bytes) = self.inline_data(inode.ino)? {
            self.del(&data_key(inode.ino, 0))?;
            if !bytes.is_empty() {
                self.write_blocks(inode, 0, &bytes)?;
            }
        }
        Ok(())
    }

    /// Writes `data` at `offset`, growing the file as needed. Saves nothing: the caller
    /// updates size and times and stores the inode.
    pub fn write_data(&mut self, inode: &mut Inode, offset: u64, data: &[u8]) -> Result<()> {
        let end = offset + data.len() as u64;
        let new_size = inode.size.max(end);
        let inline = self.inline_data(inode.ino)?;
        if new_size <= INLINE_DATA_BYTES_MAX as u64
            && (inline.is_some() || !self.has_data_records(inode.ino)?)
        {
            let mut bytes = inline.unwrap_or_default();
            if bytes.len() < end as usize {
                bytes.resize(end as usize, 0);
            }
            bytes[offset as usize..end as usize].copy_from_slice(data);
            let mut v = Vec::with_capacity(1 + bytes.len());
            v.push(TYPE_INLINE);
            v.extend_from_slice(&bytes);
            self.put(&data_key(inode.ino, 0), &v)?;
        } else {
            self.uninline(inode)?;
            self.write_blocks(inode, offset, data)?;
        }
        inode.size = new_size;
        Ok(())
    }

    /// Zeroes bytes `[from, to)` that lie inside one block, copying the block on write,
    /// unless they already read as zero.
    fn zero_within_block(&mut self, inode: &mut Inode, from: u64, to: u64) -> Result<()> {
        let blk = from / B;
        let mut block = self.read_block(inode.ino, blk)?;
        let (a, b) = ((from - blk * B) as usize, (to - blk * B) as usize);
        if block[a..b].iter().all(|&x| x == 0) {
            return Ok(());
        }
        block[a..b].fill(0);
        self.write_new_blocks(inode, blk, &block)
    }

    /// Zeroes bytes `[from, to)`: whole blocks become holes, partial ones are rewritten.
    fn zero_range(&mut self, inode: &mut Inode, from: u64, to: u64) -> Result<()> {
        if from >= to {
            return Ok(());
        }
        if let Some(mut bytes) = self.inline_data(inode.ino)? {
            let end = (to as usize).min(bytes.len());
            if (from as usize) < end {
                bytes[from as usize..end].fill(0);
                let mut v = vec![TYPE_INLINE];
                v.extend_from_slice(&bytes);
                self.put(&data_key(inode.ino, 0), &v)?;
            }
            return Ok(());
        }
        let first_full = from.div_ceil(B);
        let last_full = to / B;
        if first_full < last_full {
            inode.blocks -= self.cut_blocks(inode.ino, first_full, last_full)?;
            if !from.is_multiple_of(B) {
                self.zero_within_block(inode, from, first_full * B)?;
            }
            if !to.is_multiple_of(B) {
                self.zero_within_block(inode, last_full * B, to)?;
            }
        } else if from / B == (to - 1) / B {
            self.zero_within_block(inode, from, to)?;
        } else {
            // Spans a block boundary without a whole block inside.
            self.zero_within_block(inode, from, first_full * B)?;
            self.zero_within_block(inode, first_full * B, to)?;
        }
        Ok(())
    }

    /// Sets the size, dropping data past the new end and zeroing the rest of its block.
    pub fn truncate_data(&mut self, inode: &mut Inode, size: u64) -> Result<()> {
        if size > FILE_BYTES_MAX {
            return Err(FsError::FileTooBig {
                ino: inode.ino,
                offset: size,
                max: FILE_BYTES_MAX,
            });
        }
        if let Some(mut bytes) = self.inline_data(inode.ino)? {
            if (size as usize) < bytes.len() {
                bytes.truncate(size as usize);
                if bytes.is_empty() {
                    self.del(&data_key(inode.ino, 0))?;
                } else {
                    let mut v = vec![TYPE_INLINE];
                    v.extend_from_slice(&bytes);
                    self.put(&data_key(inode.ino, 0), &v)?;
                }
            }
        } else {
            let keep = size.div_ceil(B);
            inode.blocks -= self.cut_blocks(inode.ino, keep, u64::MAX / B)?;
            if !size.is_multiple_of(B) && size < inode.size {
                self.zero_within_block(inode, size, keep * B)?;
            }
        }
        inode.size = size;
        Ok(())
    }

    /// fallocate: preallocate (optionally keeping the size), punch a hole, or zero a range.
    pub fn fallocate_data(
        &mut self,
        inode: &mut Inode,
        mode: u32,
        offset: u64,
        len: u64,
    ) -> Result<()> {
        let end = offset + len;
        let keep_size = mode & falloc::KEEP_SIZE != 0;
        if mode & (falloc::PUNCH_HOLE | falloc::ZERO_RANGE) != 0 {
            self.zero_range(inode, offset, end.min(inode.size))?;
            if !keep_size && end > inode.size {
                inode.size = end;
            }
            return Ok(());
        }
        self.uninline(inode)?;
        let (lo, hi) = (offset / B, end.div_ceil(B));
        let mut at = lo;
        let mut gaps = Vec::new();
        for rec in self.block_records(inode.ino, lo, hi)? {
            if rec.start > at {
                gaps.push((at, rec.start));
            }
            at = at.max(rec.end());
        }
        if at < hi {
            gaps.push((at, hi));
        }
        for (mut from, to) in gaps {
            while from < to {
                let blocks = (to - from).min(u64::from(DATA_EXTENT_BLOCKS));
                let extent = self.t.alloc_extent(blocks as u32)?;
                let rec = BlockRecord {
                    start: from,
                    len: blocks,
                    extent,
                    ext_off: 0,
                    crcs: None,
                };
                self.put_block_rec(inode.ino, &rec)?;
                inode.blocks += blocks;
                from += blocks;
            }
        }
        if !keep_size && end > inode.size {
            inode.size = end;
        }
        Ok(())
    }

    /// What bytes `[offset, offset + len)` of a file are stored as, collected before a
    /// clone changes anything (source and destination may be the same tree). `offset` is
    /// block aligned; the range lies inside the file.
    pub(crate) fn clone_source(
        &mut self,
        inode: &Inode,
        offset: u64,
        len: u64,
    ) -> Result<CloneSource> {
        debug_assert!(offset.is_multiple_of(B) && offset + len <= inode.size);
        if let Some(inline) = self.inline_data(inode.ino)? {
            // Inline bytes live inside the record: there is no extent to share. A file
            // grown by truncate keeps its inline record; what lies past it is a hole.
            let end = (offset + len).min(inline.len() as u64);
            let bytes = inline
                .get(offset as usize..end.max(offset) as usize)
                .unwrap_or_default();
            return Ok(CloneSource::Bytes(bytes.to_vec()));
        }
        let lo = offset / B;
        let hi = (offset + len).div_ceil(B);
        let recs = self
            .block_records(inode.ino, lo, hi)?
            .into_iter()
            .map(|r| r.slice(r.start.max(lo), r.end().min(hi)))
            .collect();
        Ok(CloneSource::Blocks { lo, recs })
    }

    /// Replaces bytes `[offset, offset + len)` of a file with `src` (from
    /// [`Self::clone_source`] of the same length), sharing its extents, and grows the file
    /// to the end of the range. `offset` is block aligned; an unaligned `len` ends at or
    /// past the end of file, where the source's zero tail is what the file must read.
    pub(crate) fn clone_into(
        &mut self,
        inode: &mut Inode,
        offset: u64,
        len: u64,
        src: CloneSource,
    ) -> Result<()> {
        debug_assert!(offset.is_multiple_of(B));
        match src {
            CloneSource::Bytes(mut bytes) => {
                debug_assert!(bytes.len() as u64 <= len);
                if offset + len <= INLINE_DATA_BYTES_MAX as u64 {
                    // Small enough to stay (or become) inline: plain data, zero-padded.
                    bytes.resize(len as usize, 0);
                    self.write_data(inode, offset, &bytes)?;
                } else {
                    // Past the bytes the range is a hole, and stays one.
                    self.uninline(inode)?;
                    inode.blocks -=
                        self.cut_blocks(inode.ino, offset / B, (offset + len).div_ceil(B))?;
                    if !bytes.is_empty() {
                        self.write_blocks(inode, offset, &bytes)?;
                    }
                    inode.size = inode.size.max(offset + len);
                }
            }
            CloneSource::Blocks { lo, recs } => {
                self.uninline(inode)?;
                let dst_lo = offset / B;
                let dst_hi = (offset + len).div_ceil(B);
                inode.blocks -= self.cut_blocks(inode.ino, dst_lo, dst_hi)?;
                for mut rec in recs {
                    // Same extent, same offset in it: the store adds a reference.
                    rec.start = dst_lo + (rec.start - lo);
                    debug_assert!(rec.end() <= dst_hi);
                    self.put_block_rec(inode.ino, &rec)?;
                    inode.blocks += rec.len;
                }
                inode.size = inode.size.max(offset + len);
            }
        }
        Ok(())
    }

    /// The stored ranges of a file, in order (holes are what lies between them).
    pub fn file_extents(&mut self, inode: &Inode) -> Result<Vec<FileExtent>> {
        let tree = self.tree;
        let mut out = Vec::new();
        for r in self.view()?.prefix(&kind_prefix(inode.ino, KIND_DATA))? {
            match decode(tree, &r?)? {
                DataRecord::Inline(bytes) => out.push(FileExtent {
                    offset: 0,
                    len: (bytes.len() as u64).min(inode.size),
                    kind: ExtentKind::Inline,
                }),
                DataRecord::Block(b) => out.push(FileExtent {
                    offset: b.start * B,
                    len: b.len * B,
                    kind: match b.crcs {
                        Some(_) => ExtentKind::Data {
                            extent: b.extent,
                            extent_offset: b.ext_off * B,
                        },
                        None => ExtentKind::Prealloc,
                    },
                }),
            }
        }
        Ok(out)
    }
}
