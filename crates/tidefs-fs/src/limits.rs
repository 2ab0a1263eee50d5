//! Every limit of the file system layer, named with its unit. They are enforced at the edge
//! (the public operations) with typed errors, and each one is exercised by a test.

/// Longest name of one directory entry, snapshot or subvolume (Linux `NAME_MAX`).
pub const NAME_BYTES_MAX: usize = 255;
/// Longest path the path helpers accept (Linux `PATH_MAX`, including the final NUL).
pub const PATH_BYTES_MAX: usize = 4096;
/// Longest symlink target (Linux: `PATH_MAX - 1`).
pub const SYMLINK_TARGET_BYTES_MAX: usize = 4095;
/// Longest xattr name, prefix included (Linux `XATTR_NAME_MAX`).
pub const XATTR_NAME_BYTES_MAX: usize = 255;
/// Largest xattr value (Linux `XATTR_SIZE_MAX`).
pub const XATTR_VALUE_BYTES_MAX: usize = 65536;
/// Largest file size: the largest `off_t`, as on Linux. Offsets are keys, so any `u64`
/// would do; the limit is what callers can express.
pub const FILE_BYTES_MAX: u64 = i64::MAX as u64;
/// Most hard links one inode may have (ext4's limit, so `link` fails the same way).
pub const LINKS_MAX: u32 = 65000;
/// Files whose data fits in this many bytes are stored inline in one record.
pub const INLINE_DATA_BYTES_MAX: usize = 2048;
/// Bytes per file-data block: the unit of copy-on-write and of the data checksums.
pub const DATA_BLOCK_BYTES: usize = 4096;
/// Most blocks one data record references (its checksums must fit in one record value).
pub const EXTENT_RECORD_BLOCKS_MAX: u32 = 512;
/// Blocks per extent when file data is allocated: as many as pack the store's space
/// pages without holes (a record could reference a few more).
pub const DATA_EXTENT_BLOCKS: u32 = if tidefs_store::EXTENT_BLOCKS_PACKED < EXTENT_RECORD_BLOCKS_MAX
{
    tidefs_store::EXTENT_BLOCKS_PACKED
} else {
    EXTENT_RECORD_BLOCKS_MAX
};
/// Bytes of an xattr value or symlink target kept in one record; longer ones are chunked.
pub const VALUE_CHUNK_BYTES: usize = 2048;
/// Inode numbers handed out per range (DESIGN.md 4: allocation from ranges).
pub const INO_RANGE_LEN: u64 = 4096;
/// Most directory levels the path helpers walk before declaring a loop.
pub const PATH_DEPTH_MAX: usize = PATH_BYTES_MAX / 2;
