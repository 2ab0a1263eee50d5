//! Where everything lives on the device: block geometry, the fixed places of superblocks and
//! space-map pages, and the limits that follow from the sizes.
//!
//! The device is an array of 4 KiB blocks. Blocks are grouped into *space pages* of
//! [`PAGE_BLOCKS`] blocks; the first blocks of every page's range are reserved:
//!
//! ```text
//! page p covers blocks [p*1018, (p+1)*1018)
//!   +0, +1   the two slots of space page p (ping-pong, see space_map.rs)
//!   +2, +3   only when p % 509 == 0: the two slots of directory page p/509
//!   +4..+8   only when p == 0: the four superblock slots
//! ```
//!
//! Putting the space map inside the range it describes means the pool grows by whole
//! pages without moving anything, and nothing about the map needs allocating.

/// Bytes per block: the unit of allocation and of space accounting.
pub const BLOCK_BYTES: usize = 4096;
/// Bytes per B+tree node.
pub const NODE_BYTES: usize = 16384;
/// Blocks per B+tree node.
pub const NODE_BLOCKS: u32 = (NODE_BYTES / BLOCK_BYTES) as u32;

/// Bytes of the header in front of a space page and of a directory page.
pub const PAGE_HEADER_BYTES: usize = 24;
/// Blocks described by one space page (one u32 reference count each).
pub const PAGE_BLOCKS: u64 = ((BLOCK_BYTES - PAGE_HEADER_BYTES) / 4) as u64;
/// Space pages described by one directory page (crc u32 + free u32 each).
pub const DIR_PAGES: u64 = ((BLOCK_BYTES - PAGE_HEADER_BYTES) / 8) as u64;

/// The superblock's fixed slots (block numbers). Each commit writes one pair, alternating,
/// so a torn superblock write always leaves the previous commit's pair intact.
pub const SUPERBLOCK_BLOCKS: [u64; 4] = [4, 5, 6, 7];
/// Bytes of the superblock before its table of directory-page checksums.
pub const SUPERBLOCK_HEADER_BYTES: usize = 104;
/// Directory pages the superblock can name; bounds the pool size (about 1.9 TiB).
pub const DIR_PAGES_MAX: u64 = ((BLOCK_BYTES - SUPERBLOCK_HEADER_BYTES) / 4) as u64;
/// Space pages a pool can have.
pub const POOL_PAGES_MAX: u64 = DIR_PAGES_MAX * DIR_PAGES;

/// Longest key a record may have.
pub const KEY_BYTES_MAX: usize = 512;
/// Longest value a record may have (including an extent reference).
pub const VALUE_BYTES_MAX: usize = 3072;

/// Extents of this many blocks fill the usable part of an ordinary space page's range
/// exactly twice, so big data allocated extent after extent lies back to back on the
/// device, broken only by the two space-map blocks every 1020 blocks. (Extents of 512
/// blocks fit only once per range and left a 2 MiB hole after each.)
pub const EXTENT_BLOCKS_PACKED: u32 = ((PAGE_BLOCKS - 2) / 2) as u32;

/// Block number of slot `slot` (0 or 1) of space page `page`.
pub fn space_page_slot_block(page: u64, slot: u8) -> u64 {
    page * PAGE_BLOCKS + u64::from(slot)
}

/// Block number of slot `slot` (0 or 1) of directory page `dir`.
pub fn dir_page_slot_block(dir: u64, slot: u8) -> u64 {
    dir * DIR_PAGES * PAGE_BLOCKS + 2 + u64::from(slot)
}

/// Number of reserved blocks at the start of page `page`'s range.
pub fn reserved_blocks_in_page(page: u64) -> u64 {
    if page == 0 {
        8
    } else if page.is_multiple_of(DIR_PAGES) {
        4
    } else {
        2
    }
}

/// Byte offset of a block.
pub fn block_offset(block: u64) -> u64 {
    block * BLOCK_BYTES as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_regions_do_not_overlap_and_hold_their_slots() {
        for page in [
            0u64,
            1,
            2,
            DIR_PAGES - 1,
            DIR_PAGES,
            DIR_PAGES + 1,
            3 * DIR_PAGES,
        ] {
            let first = page * PAGE_BLOCKS;
            let reserved = reserved_blocks_in_page(page);
            for slot in 0..2 {
                let b = space_page_slot_block(page, slot);
                assert!(b >= first && b < first + reserved);
            }
            if page % DIR_PAGES == 0 {
                for slot in 0..2 {
                    let b = dir_page_slot_block(page / DIR_PAGES, slot);
                    assert!(
                        b >= first && b < first + reserved,
                        "dir slot outside page {page}"
                    );
                    assert!(
                        b != space_page_slot_block(page, 0) && b != space_page_slot_block(page, 1)
                    );
                }
            }
        }
        for b in SUPERBLOCK_BLOCKS {
            assert!(b >= 4 && b < reserved_blocks_in_page(0));
        }
        assert_eq!(PAGE_BLOCKS, 1018);
        assert_eq!(DIR_PAGES, 509);
    }
}
