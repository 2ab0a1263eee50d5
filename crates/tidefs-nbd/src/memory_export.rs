//! A sparse in-memory block device, for tests and benchmarks: 4 KiB blocks in a
//! `BTreeMap`, where a block that was never written (or was trimmed) is a real hole.

use std::collections::BTreeMap;

use parking_lot::RwLock;

use crate::error::ExportError;
use crate::export::{BlockExport, BlockSizeConstraints, BlockStatusExtent};
use crate::limits::BLOCK_STATUS_EXTENTS_MAX;

/// Allocation unit of [`MemoryExport`]; holes are tracked at this granularity.
pub const MEMORY_BLOCK_BYTES: u64 = 4096;

/// A sparse block device held in memory. Everything written is "durable" at once, so
/// `flush` has nothing to do and is trivially global across connections.
pub struct MemoryExport {
    size: u64,
    read_only: bool,
    constraints: BlockSizeConstraints,
    blocks: RwLock<BTreeMap<u64, Block>>,
}

/// An allocated block. A block absent from the map is a hole.
enum Block {
    /// Allocated, reads as zeroes (written with `NBD_CMD_FLAG_NO_HOLE`); costs no memory.
    Zeroed,
    Data(Box<[u8]>),
}

impl MemoryExport {
    /// An empty (all-hole) export of `size` bytes with default block size constraints.
    pub fn new(size: u64) -> Self {
        Self {
            size,
            read_only: false,
            constraints: BlockSizeConstraints::DEFAULT,
            blocks: RwLock::new(BTreeMap::new()),
        }
    }

    /// Refuses writes (to test read-only handling).
    pub fn with_read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Advertises other constraints (to test alignment handling). The minimum may not
    /// exceed [`MEMORY_BLOCK_BYTES`], so that extents always end on a minimum-block boundary.
    pub fn with_block_size(mut self, constraints: BlockSizeConstraints) -> Self {
        assert!(u64::from(constraints.minimum_bytes()) <= MEMORY_BLOCK_BYTES);
        self.constraints = constraints;
        self
    }

    /// Number of allocated 4 KiB blocks (data or zeroed); holes do not count.
    pub fn allocated_blocks(&self) -> usize {
        self.blocks.read().len()
    }

    fn check_range(&self, offset: u64, len: u64) -> Result<(), ExportError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(ExportError::OutOfRange {
                offset,
                len,
                size: self.size,
            }),
        }
    }

    fn check_writable(&self) -> Result<(), ExportError> {
        if self.read_only {
            return Err(ExportError::ReadOnly);
        }
        Ok(())
    }
}

/// The piece of one block that a byte range covers.
struct BlockPiece {
    index: u64,
    /// Offset inside the block.
    start: usize,
    len: usize,
    /// Offset of the piece from the start of the range.
    range_offset: usize,
}

impl BlockPiece {
    fn is_whole_block(&self) -> bool {
        self.len as u64 == MEMORY_BLOCK_BYTES
    }
}

/// Splits `offset..offset + len` at block boundaries.
fn pieces(offset: u64, len: u64) -> impl Iterator<Item = BlockPiece> {
    let end = offset + len;
    let mut position = offset;
    std::iter::from_fn(move || {
        if position >= end {
            return None;
        }
        let index = position / MEMORY_BLOCK_BYTES;
        let start = position % MEMORY_BLOCK_BYTES;
        let piece_len = (MEMORY_BLOCK_BYTES - start).min(end - position);
        let piece = BlockPiece {
            index,
            start: start as usize,
            len: piece_len as usize,
            range_offset: (position - offset) as usize,
        };
        position += piece_len;
        Some(piece)
    })
}

fn zeroed_block() -> Box<[u8]> {
    vec![0u8; MEMORY_BLOCK_BYTES as usize].into_boxed_slice()
}

impl BlockExport for MemoryExport {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn block_size(&self) -> BlockSizeConstraints {
        self.constraints
    }

    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), ExportError> {
        self.check_range(offset, buf.len() as u64)?;
        let blocks = self.blocks.read();
        for piece in pieces(offset, buf.len() as u64) {
            let target = &mut buf[piece.range_offset..piece.range_offset + piece.len];
            match blocks.get(&piece.index) {
                Some(Block::Data(data)) => {
                    target.copy_from_slice(&data[piece.start..piece.start + piece.len]);
                }
                Some(Block::Zeroed) | None => target.fill(0),
            }
        }
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8], _fua: bool) -> Result<(), ExportError> {
        self.check_writable()?;
        self.check_range(offset, data.len() as u64)?;
        let mut blocks = self.blocks.write();
        for piece in pieces(offset, data.len() as u64) {
            let source = &data[piece.range_offset..piece.range_offset + piece.len];
            if piece.is_whole_block() {
                // Copy straight into a new block instead of zero-filling one first.
                blocks.insert(piece.index, Block::Data(source.into()));
                continue;
            }
            let block = blocks.entry(piece.index).or_insert(Block::Zeroed);
            if let Block::Zeroed = block {
                *block = Block::Data(zeroed_block());
            }
            let Block::Data(bytes) = block else {
                unreachable!("a zeroed block was just replaced by data");
            };
            bytes[piece.start..piece.start + piece.len].copy_from_slice(source);
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), ExportError> {
        Ok(())
    }

    fn trim(&self, offset: u64, len: u64) -> Result<(), ExportError> {
        self.check_writable()?;
        self.check_range(offset, len)?;
        // Trim is advisory: only whole blocks are dropped, partial ones keep their bytes.
        let mut blocks = self.blocks.write();
        for piece in pieces(offset, len).filter(BlockPiece::is_whole_block) {
            blocks.remove(&piece.index);
        }
        Ok(())
    }

    fn write_zeroes(
        &self,
        offset: u64,
        len: u64,
        may_punch_hole: bool,
        _fua: bool,
    ) -> Result<(), ExportError> {
        self.check_writable()?;
        self.check_range(offset, len)?;
        let mut blocks = self.blocks.write();
        for piece in pieces(offset, len) {
            if piece.is_whole_block() {
                if may_punch_hole {
                    blocks.remove(&piece.index);
                } else {
                    blocks.insert(piece.index, Block::Zeroed);
                }
                continue;
            }
            match blocks.get_mut(&piece.index) {
                Some(Block::Data(bytes)) => bytes[piece.start..piece.start + piece.len].fill(0),
                Some(Block::Zeroed) => {}
                // A hole already reads as zeroes; NO_HOLE asks for it to be allocated.
                None if may_punch_hole => {}
                None => {
                    blocks.insert(piece.index, Block::Zeroed);
                }
            }
        }
        Ok(())
    }

    fn block_status(&self, offset: u64, len: u64) -> Result<Vec<BlockStatusExtent>, ExportError> {
        self.check_range(offset, len)?;
        let end = offset + len;
        let blocks = self.blocks.read();
        let mut extents = ExtentList::default();
        let mut position = offset;
        let first_index = offset / MEMORY_BLOCK_BYTES;
        let last_index = (end - 1) / MEMORY_BLOCK_BYTES;
        // Walk only the allocated blocks; the gaps between them are holes.
        for (&index, block) in blocks.range(first_index..=last_index) {
            if extents.is_full() {
                break;
            }
            let block_start = (index * MEMORY_BLOCK_BYTES).max(position);
            if block_start > position {
                extents.push(block_start - position, true, true);
            }
            let block_end = ((index + 1) * MEMORY_BLOCK_BYTES).min(end);
            extents.push(
                block_end - block_start,
                false,
                matches!(block, Block::Zeroed),
            );
            position = block_end;
        }
        if position < end && !extents.is_full() {
            extents.push(end - position, true, true);
        }
        Ok(extents.0)
    }
}

/// Extents being built, merged when consecutive ones share a state.
#[derive(Default)]
struct ExtentList(Vec<BlockStatusExtent>);

impl ExtentList {
    fn push(&mut self, len: u64, hole: bool, zero: bool) {
        debug_assert!(len > 0);
        if let Some(last) = self.0.last_mut() {
            if last.hole == hole && last.zero == zero {
                last.len += len;
                return;
            }
        }
        self.0.push(BlockStatusExtent { len, hole, zero });
    }

    fn is_full(&self) -> bool {
        self.0.len() >= BLOCK_STATUS_EXTENTS_MAX
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: u64 = MEMORY_BLOCK_BYTES;

    fn hole(len: u64) -> BlockStatusExtent {
        BlockStatusExtent {
            len,
            hole: true,
            zero: true,
        }
    }

    fn data(len: u64) -> BlockStatusExtent {
        BlockStatusExtent {
            len,
            hole: false,
            zero: false,
        }
    }

    #[test]
    fn new_export_is_one_hole_and_reads_zeroes() {
        let export = MemoryExport::new(10 * B);
        assert_eq!(export.block_status(0, 10 * B).unwrap(), vec![hole(10 * B)]);
        let mut buf = vec![0xffu8; 3 * B as usize];
        export.read(B / 2, &mut buf).unwrap();
        assert!(buf.iter().all(|&b| b == 0));
        assert_eq!(export.allocated_blocks(), 0);
    }

    #[test]
    fn unaligned_write_reads_back_and_allocates_touched_blocks() {
        let export = MemoryExport::new(10 * B);
        let payload: Vec<u8> = (0..B + 100).map(|i| (i % 251) as u8).collect();
        export.write(B - 50, &payload, false).unwrap();
        let mut back = vec![0u8; payload.len()];
        export.read(B - 50, &mut back).unwrap();
        assert_eq!(back, payload);
        assert_eq!(export.allocated_blocks(), 3);
        assert_eq!(
            export.block_status(0, 10 * B).unwrap(),
            vec![data(3 * B), hole(7 * B)]
        );
    }

    #[test]
    fn block_status_starts_at_offset_and_stops_at_len() {
        let export = MemoryExport::new(10 * B);
        export.write(4 * B, &[1u8; B as usize], false).unwrap();
        let extents = export.block_status(B + 7, 4 * B).unwrap();
        assert_eq!(extents, vec![hole(3 * B - 7), data(B), hole(7)]);
    }

    #[test]
    fn trim_drops_whole_blocks_only() {
        let export = MemoryExport::new(4 * B);
        export.write(0, &[7u8; 4 * B as usize], false).unwrap();
        export.trim(B / 2, 2 * B).unwrap();
        assert_eq!(
            export.allocated_blocks(),
            3,
            "only block 1 is wholly inside"
        );
        let mut buf = vec![0u8; B as usize / 2];
        export.read(B / 2, &mut buf).unwrap();
        assert!(
            buf.iter().all(|&b| b == 7),
            "partial blocks keep their bytes"
        );
    }

    #[test]
    fn write_zeroes_punches_or_keeps_allocation() {
        let export = MemoryExport::new(4 * B);
        export.write(0, &[9u8; 4 * B as usize], false).unwrap();
        export.write_zeroes(0, 2 * B, true, false).unwrap();
        export.write_zeroes(2 * B, B + 10, false, false).unwrap();
        assert_eq!(
            export.block_status(0, 4 * B).unwrap(),
            vec![
                hole(2 * B),
                BlockStatusExtent {
                    len: B,
                    hole: false,
                    zero: true
                },
                data(B)
            ]
        );
        let mut buf = vec![1u8; 3 * B as usize + 10];
        export.read(0, &mut buf).unwrap();
        assert!(buf.iter().all(|&b| b == 0));
        let mut rest = vec![0u8; B as usize - 10];
        export.read(3 * B + 10, &mut rest).unwrap();
        assert!(rest.iter().all(|&b| b == 9));
    }

    #[test]
    fn no_hole_write_zeroes_allocates_holes() {
        let export = MemoryExport::new(2 * B);
        export.write_zeroes(10, 20, false, false).unwrap();
        assert_eq!(export.allocated_blocks(), 1);
        export.write_zeroes(B + 10, 20, true, false).unwrap();
        assert_eq!(
            export.allocated_blocks(),
            1,
            "a hole already reads as zeroes"
        );
    }

    #[test]
    fn out_of_range_and_read_only_are_refused() {
        let export = MemoryExport::new(B);
        assert!(matches!(
            export.write(B - 1, &[0, 0], false),
            Err(ExportError::OutOfRange { .. })
        ));
        assert!(matches!(
            export.read(u64::MAX, &mut [0]),
            Err(ExportError::OutOfRange { .. })
        ));
        let read_only = MemoryExport::new(B).with_read_only(true);
        assert!(matches!(
            read_only.write(0, &[1], false),
            Err(ExportError::ReadOnly)
        ));
        assert!(matches!(read_only.trim(0, 1), Err(ExportError::ReadOnly)));
    }

    #[test]
    fn size_not_a_multiple_of_the_block_ends_in_a_short_extent() {
        let export = MemoryExport::new(B + 100);
        export.write(B, &[3u8; 100], false).unwrap();
        assert_eq!(
            export.block_status(0, B + 100).unwrap(),
            vec![hole(B), data(100)]
        );
    }
}
