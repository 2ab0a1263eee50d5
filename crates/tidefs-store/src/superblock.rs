//! The superblock: the fixed-place record naming the newest committed root.
//!
//! Four slots (layout::SUPERBLOCK_BLOCKS). Commit `t` writes its superblock into both slots of
//! pair `t % 2`, so the previous commit's pair is untouched while this one is written. Opening
//! reads all four and takes the newest copy that verifies.
//!
//! Layout (4 KiB, little-endian):
//! ```text
//!   0 u64 magic            "TIDEFS\0\x01"
//!   8 u32 format_version   1
//!  12 u32 crc              crc32c of the 4 KiB with this field zero
//!  16 [16] pool uuid
//!  32 u64 tid
//!  40 [20] root tree BlockRef (block 0 = empty)
//!  60 u8  root tree level
//!  61 [3] zero
//!  64 u64 total_pages      pool size in space pages
//!  72 u64 max_pages        growth limit (0 = as far as the device allows)
//!  80 u64 used_blocks
//!  88 u64 next_tree_id
//!  96 u32 dir_count
//! 100 u32 zero
//! 104 dir_count × u32      checksum of each space-map directory page (0 = never written)
//! ```

use crate::bref::{le_u32, le_u64, BlockRef};
use crate::device::BlockDevice;
use crate::error::{Result, StoreError};
use crate::ids::Tid;
use crate::layout::{
    block_offset, BLOCK_BYTES, DIR_PAGES_MAX, SUPERBLOCK_BLOCKS, SUPERBLOCK_HEADER_BYTES,
};

pub(crate) const SUPERBLOCK_MAGIC: u64 = u64::from_le_bytes(*b"TIDEFS\0\x01");
/// The on-disk format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Superblock {
    pub pool_uuid: [u8; 16],
    pub tid: Tid,
    pub root_tree: Option<BlockRef>,
    pub root_tree_level: u8,
    pub total_pages: u64,
    pub max_pages: u64,
    pub used_blocks: u64,
    pub next_tree_id: u64,
    pub dir_crcs: Vec<u32>,
}

impl Superblock {
    pub fn encode(&self) -> Vec<u8> {
        assert!(self.dir_crcs.len() as u64 <= DIR_PAGES_MAX);
        let mut b = vec![0u8; BLOCK_BYTES];
        b[0..8].copy_from_slice(&SUPERBLOCK_MAGIC.to_le_bytes());
        b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[16..32].copy_from_slice(&self.pool_uuid);
        b[32..40].copy_from_slice(&self.tid.0.to_le_bytes());
        if let Some(r) = self.root_tree {
            r.encode(&mut b[40..60]);
        }
        b[60] = self.root_tree_level;
        b[64..72].copy_from_slice(&self.total_pages.to_le_bytes());
        b[72..80].copy_from_slice(&self.max_pages.to_le_bytes());
        b[80..88].copy_from_slice(&self.used_blocks.to_le_bytes());
        b[88..96].copy_from_slice(&self.next_tree_id.to_le_bytes());
        b[96..100].copy_from_slice(&(self.dir_crcs.len() as u32).to_le_bytes());
        for (i, crc) in self.dir_crcs.iter().enumerate() {
            let at = SUPERBLOCK_HEADER_BYTES + 4 * i;
            b[at..at + 4].copy_from_slice(&crc.to_le_bytes());
        }
        let crc = crc32c::crc32c(&b);
        b[12..16].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes one slot; `Err` says why the copy does not verify.
    pub fn decode(b: &[u8]) -> std::result::Result<Superblock, SuperblockReject> {
        if le_u64(&b[0..8]) != SUPERBLOCK_MAGIC {
            return Err(SuperblockReject::Magic);
        }
        let stored = le_u32(&b[12..16]);
        let mut copy = b.to_vec();
        copy[12..16].fill(0);
        let crc = crc32c::crc32c(&copy);
        if crc != stored {
            return Err(SuperblockReject::Checksum { stored, crc });
        }
        let version = le_u32(&b[8..12]);
        if version != FORMAT_VERSION {
            return Err(SuperblockReject::Version(version));
        }
        let dir_count = le_u32(&b[96..100]) as u64;
        if dir_count > DIR_PAGES_MAX {
            return Err(SuperblockReject::Malformed("directory count too large"));
        }
        let root = BlockRef::decode(&b[40..60]).expect("20 bytes");
        Ok(Superblock {
            pool_uuid: b[16..32].try_into().expect("16 bytes"),
            tid: Tid(le_u64(&b[32..40])),
            root_tree: (root.block != 0).then_some(root),
            root_tree_level: b[60],
            total_pages: le_u64(&b[64..72]),
            max_pages: le_u64(&b[72..80]),
            used_blocks: le_u64(&b[80..88]),
            next_tree_id: le_u64(&b[88..96]),
            dir_crcs: (0..dir_count as usize)
                .map(|i| le_u32(&b[SUPERBLOCK_HEADER_BYTES + 4 * i..]))
                .collect(),
        })
    }

    /// Writes this superblock into the pair of slots its tid selects.
    pub fn write(&self, device: &dyn BlockDevice) -> Result<()> {
        let bytes = self.encode();
        let pair = (self.tid.0 % 2) as usize * 2;
        for block in &SUPERBLOCK_BLOCKS[pair..pair + 2] {
            device
                .write_at(block_offset(*block), &bytes)
                .map_err(|e| StoreError::io("writing the superblock", block_offset(*block), e))?;
        }
        Ok(())
    }

    /// Reads every slot and returns the newest copy that verifies.
    pub fn read_newest(device: &dyn BlockDevice) -> Result<Superblock> {
        let mut best: Option<Superblock> = None;
        let mut reasons = Vec::new();
        let mut buf = vec![0u8; BLOCK_BYTES];
        for block in SUPERBLOCK_BLOCKS {
            device
                .read_at(block_offset(block), &mut buf)
                .map_err(|e| StoreError::io("reading the superblock", block_offset(block), e))?;
            match Superblock::decode(&buf) {
                Ok(sb) => {
                    if best.as_ref().is_none_or(|b| sb.tid > b.tid) {
                        best = Some(sb);
                    }
                }
                Err(SuperblockReject::Version(found)) => {
                    return Err(StoreError::UnsupportedVersion {
                        found,
                        supported: FORMAT_VERSION,
                    })
                }
                Err(r) => reasons.push(format!("block {block}: {r}")),
            }
        }
        best.ok_or_else(|| StoreError::NoValidSuperblock {
            detail: reasons.join("; "),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum SuperblockReject {
    #[error("no superblock magic")]
    Magic,
    #[error("checksum {crc:#010x} does not match stored {stored:#010x}")]
    Checksum { stored: u32, crc: u32 },
    #[error("format version {0}")]
    Version(u32),
    #[error("{0}")]
    Malformed(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::MemDevice;

    fn sb(tid: u64) -> Superblock {
        Superblock {
            pool_uuid: [7; 16],
            tid: Tid(tid),
            root_tree: Some(BlockRef {
                block: 12,
                checksum: 34,
                modify_tid: Tid(tid),
            }),
            root_tree_level: 1,
            total_pages: 16,
            max_pages: 0,
            used_blocks: 99,
            next_tree_id: 5,
            dir_crcs: vec![0xdead],
        }
    }

    #[test]
    fn newest_verifying_copy_wins_and_a_torn_one_is_skipped() {
        let dev = MemDevice::new();
        sb(1).write(&dev).unwrap();
        sb(2).write(&dev).unwrap();
        assert_eq!(Superblock::read_newest(&dev).unwrap(), sb(2));
        // Tear both copies of tid 3's pair: tid 2 must still open.
        sb(3).write(&dev).unwrap();
        let block = SUPERBLOCK_BLOCKS[2];
        dev.write_at(block_offset(block) + 100, &[0xff; 8]).unwrap();
        dev.write_at(block_offset(SUPERBLOCK_BLOCKS[3]) + 30, &[0x11; 3])
            .unwrap();
        assert_eq!(Superblock::read_newest(&dev).unwrap().tid, Tid(2));
    }

    #[test]
    fn a_device_without_superblocks_is_refused_clearly() {
        let dev = MemDevice::new();
        dev.grow(1 << 20).unwrap();
        let err = Superblock::read_newest(&dev).unwrap_err();
        assert!(err.to_string().contains("not a tidefs pool"), "{err}");
    }

    #[test]
    fn a_newer_format_is_refused_with_its_version() {
        let dev = MemDevice::new();
        let mut bytes = sb(1).encode();
        bytes[8..12].copy_from_slice(&9u32.to_le_bytes());
        bytes[12..16].fill(0);
        let crc = crc32c::crc32c(&bytes);
        bytes[12..16].copy_from_slice(&crc.to_le_bytes());
        dev.write_at(block_offset(SUPERBLOCK_BLOCKS[0]), &bytes)
            .unwrap();
        let err = Superblock::read_newest(&dev).unwrap_err();
        assert!(
            matches!(err, StoreError::UnsupportedVersion { found: 9, .. }),
            "{err}"
        );
    }
}
