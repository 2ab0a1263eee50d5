//! Every limit of the volume layer, named with its unit last.

/// Bytes per volume block: the unit of the block map, of copy-on-write and of checksums.
/// Equal to the store's data block so that one map record covers one store block.
pub const VOLUME_BLOCK_BYTES: u64 = tidefs_store::BLOCK_BYTES as u64;

/// Longest volume or snapshot name.
pub const NAME_BYTES_MAX: usize = 255;

/// Largest volume. Sparse volumes may exceed the pool; this bounds offsets so that
/// `offset + len` never overflows and block indexes stay far inside `u64`.
pub const VOLUME_BYTES_MAX: u64 = 1 << 50;

/// Most blocks written to one store extent. A write request larger than this is split
/// over several extents, so one request never asks the allocator for a huge contiguous
/// run (the store allows at most 1000 blocks) and freeing stays fine-grained.
pub const EXTENT_BLOCKS_MAX: u64 = 256;

/// Most map records one block-status query walks before answering with what it has; the
/// client asks again from where the answer stopped.
pub const BLOCK_STATUS_RECORDS_MAX: usize = 64 * 1024;
