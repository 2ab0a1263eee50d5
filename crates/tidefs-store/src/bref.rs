//! References between blocks: [`BlockRef`] (parent → child node), [`Extent`] (record → data
//! blocks) and [`TreeInfo`] (root tree → a tree's root), with their byte layouts.

use crate::ids::{Tid, TreeId};

/// How a parent points at a child node.
///
/// ```text
/// offset size field
///   0     8   block      first block of the 16 KiB node
///   8     4   checksum   crc32c of the node's 16 KiB
///  12     8   modify_tid largest tid of anything beneath (= tid that wrote the node)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockRef {
    pub block: u64,
    pub checksum: u32,
    pub modify_tid: Tid,
}

impl BlockRef {
    pub const ENCODED_BYTES: usize = 20;

    pub fn encode(&self, out: &mut [u8]) {
        out[0..8].copy_from_slice(&self.block.to_le_bytes());
        out[8..12].copy_from_slice(&self.checksum.to_le_bytes());
        out[12..20].copy_from_slice(&self.modify_tid.0.to_le_bytes());
    }

    pub fn decode(b: &[u8]) -> Option<BlockRef> {
        if b.len() < Self::ENCODED_BYTES {
            return None;
        }
        Some(BlockRef {
            block: le_u64(&b[0..8]),
            checksum: le_u32(&b[8..12]),
            modify_tid: Tid(le_u64(&b[12..20])),
        })
    }
}

/// A run of data blocks referenced by a record; shared copy-on-write between trees.
///
/// ```text
/// offset size field
///   0     8   block   first block
///   8     4   blocks  number of 4 KiB blocks
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Extent {
    pub block: u64,
    pub blocks: u32,
}

impl Extent {
    pub const ENCODED_BYTES: usize = 12;

    pub fn encode(&self, out: &mut [u8]) {
        out[0..8].copy_from_slice(&self.block.to_le_bytes());
        out[8..12].copy_from_slice(&self.blocks.to_le_bytes());
    }

    pub fn decode(b: &[u8]) -> Option<Extent> {
        if b.len() < Self::ENCODED_BYTES {
            return None;
        }
        Some(Extent {
            block: le_u64(&b[0..8]),
            blocks: le_u32(&b[8..12]),
        })
    }

    /// Length in bytes.
    pub fn bytes(&self) -> u64 {
        u64::from(self.blocks) * crate::layout::BLOCK_BYTES as u64
    }
}

/// The root tree's record for one tree.
///
/// ```text
/// offset size field
///   0    20   root        BlockRef of the root node (block 0 = empty tree)
///  20     1   root_level  level of the root node (0 = leaf)
///  21     1   flags       bit 0: read-only
///  22     8   created_tid tid of the transaction that created the tree
///  30     8   origin      tree this one was snapshotted or cloned from (u64::MAX = none)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeInfo {
    pub root: Option<BlockRef>,
    pub root_level: u8,
    pub read_only: bool,
    pub created_tid: Tid,
    pub origin: Option<TreeId>,
}

impl TreeInfo {
    pub const ENCODED_BYTES: usize = 38;
    const FLAG_READ_ONLY: u8 = 1;

    pub fn encode(&self) -> [u8; Self::ENCODED_BYTES] {
        let mut out = [0u8; Self::ENCODED_BYTES];
        let root = self.root.unwrap_or(BlockRef {
            block: 0,
            checksum: 0,
            modify_tid: Tid(0),
        });
        root.encode(&mut out[0..20]);
        out[20] = self.root_level;
        out[21] = if self.read_only {
            Self::FLAG_READ_ONLY
        } else {
            0
        };
        out[22..30].copy_from_slice(&self.created_tid.0.to_le_bytes());
        let origin = self.origin.map_or(u64::MAX, |t| t.0);
        out[30..38].copy_from_slice(&origin.to_le_bytes());
        out
    }

    pub fn decode(b: &[u8]) -> Result<TreeInfo, String> {
        if b.len() != Self::ENCODED_BYTES {
            return Err(format!(
                "tree record of {} bytes, expected {}",
                b.len(),
                Self::ENCODED_BYTES
            ));
        }
        let root = BlockRef::decode(&b[0..20]).expect("length checked");
        if b[21] & !Self::FLAG_READ_ONLY != 0 {
            return Err(format!("unknown tree flags {:#x}", b[21]));
        }
        let origin = le_u64(&b[30..38]);
        Ok(TreeInfo {
            root: (root.block != 0).then_some(root),
            root_level: b[20],
            read_only: b[21] & Self::FLAG_READ_ONLY != 0,
            created_tid: Tid(le_u64(&b[22..30])),
            origin: (origin != u64::MAX).then_some(TreeId(origin)),
        })
    }
}

pub(crate) fn le_u64(b: &[u8]) -> u64 {
    u64::from_le_bytes(b[..8].try_into().expect("8 bytes"))
}

pub(crate) fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes(b[..4].try_into().expect("4 bytes"))
}

pub(crate) fn le_u16(b: &[u8]) -> u16 {
    u16::from_le_bytes(b[..2].try_into().expect("2 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_info_round_trips_and_pins_its_bytes() {
        let info = TreeInfo {
            root: Some(BlockRef {
                block: 0x0102,
                checksum: 0xaabbccdd,
                modify_tid: Tid(7),
            }),
            root_level: 2,
            read_only: true,
            created_tid: Tid(5),
            origin: Some(TreeId(3)),
        };
        let bytes = info.encode();
        assert_eq!(
            &bytes[0..12],
            &[2, 1, 0, 0, 0, 0, 0, 0, 0xdd, 0xcc, 0xbb, 0xaa]
        );
        assert_eq!(bytes[20], 2);
        assert_eq!(bytes[21], 1);
        assert_eq!(TreeInfo::decode(&bytes).unwrap(), info);
        let empty = TreeInfo {
            root: None,
            origin: None,
            ..info
        };
        assert_eq!(TreeInfo::decode(&empty.encode()).unwrap(), empty);
    }
}
