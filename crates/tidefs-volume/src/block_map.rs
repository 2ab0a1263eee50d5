//! The block map: one store record per written 4 KiB block of a volume, in the volume's
//! own tree. Blocks without a record are holes (they read as zeroes and use no space).
//!
//! Key: the block index, u64 big-endian (byte order = block order, so a range of blocks is
//! a range of keys).
//!
//! Value, little-endian:
//!
//! ```text
//! data   (record referencing a store extent)   0x01, index u16, crc32c u32
//! zero   (plain record)                        0x02
//! ```
//!
//! A data record maps the block to block `index` of its extent; `crc32c` covers those
//! 4096 bytes, so every read verifies what it returns. A zero record is an allocated
//! block that reads as zeroes (`NBD_CMD_WRITE_ZEROES` with `NO_HOLE`): block status
//! reports it as data that reads as zero, not as a hole.
//!
//! Every record of one extent holds its own reference on the extent (the store counts
//! them), so overwriting or trimming some blocks of an extent frees it exactly when its
//! last block is gone, and snapshots that still map a block keep the extent alive.

use tidefs_store::{Extent, Record};

use crate::limits::{EXTENT_BLOCKS_MAX, VOLUME_BLOCK_BYTES};

const KIND_DATA: u8 = 0x01;
const KIND_ZERO: u8 = 0x02;

/// Bytes of a data record's payload (after the store's extent reference).
pub(crate) const DATA_PAYLOAD_BYTES: usize = 7;
/// The whole value of a zero record.
pub(crate) const ZERO_VALUE: [u8; 1] = [KIND_ZERO];

const _: () = assert!(EXTENT_BLOCKS_MAX <= u16::MAX as u64 + 1);

/// What the map says about one block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mapping {
    /// Block `index` of `extent`, whose bytes have checksum `crc`.
    Data {
        extent: Extent,
        index: u16,
        crc: u32,
    },
    /// Allocated, reads as zeroes.
    Zero,
}

impl Mapping {
    /// Byte offset of the block inside its extent.
    pub fn extent_offset(index: u16) -> u64 {
        u64::from(index) * VOLUME_BLOCK_BYTES
    }
}

/// The key of block `block`.
pub(crate) fn key(block: u64) -> [u8; 8] {
    block.to_be_bytes()
}

/// The block index of a key; `None` if the key is not a block-map key.
pub(crate) fn block_of(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}

/// The payload of a data record.
pub(crate) fn data_payload(index: u16, crc: u32) -> [u8; DATA_PAYLOAD_BYTES] {
    let mut out = [0u8; DATA_PAYLOAD_BYTES];
    out[0] = KIND_DATA;
    out[1..3].copy_from_slice(&index.to_le_bytes());
    out[3..7].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes a record of the map; the error says what is wrong with it.
pub(crate) fn decode(record: &Record) -> Result<(u64, Mapping), String> {
    let block = block_of(&record.key)
        .ok_or_else(|| format!("map key of {} bytes (expected 8)", record.key.len()))?;
    let v = &record.value;
    let mapping = match (v.first(), record.extent) {
        (Some(&KIND_DATA), Some(extent)) if v.len() == DATA_PAYLOAD_BYTES => {
            let index = u16::from_le_bytes([v[1], v[2]]);
            if u64::from(index) >= u64::from(extent.blocks) {
                return Err(format!(
                    "block {block} maps to index {index} of a {}-block extent",
                    extent.blocks
                ));
            }
            Mapping::Data {
                extent,
                index,
                crc: u32::from_le_bytes([v[3], v[4], v[5], v[6]]),
            }
        }
        (Some(&KIND_ZERO), None) if v.len() == 1 => Mapping::Zero,
        _ => {
            return Err(format!(
                "block {block}: unknown map record ({} value bytes, extent {:?})",
                v.len(),
                record.extent
            ))
        }
    };
    Ok((block, mapping))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidefs_store::Tid;

    #[test]
    fn records_round_trip_and_bytes_are_pinned() {
        assert_eq!(
            data_payload(3, 0xdead_beef),
            [1, 3, 0, 0xef, 0xbe, 0xad, 0xde]
        );
        assert_eq!(key(0x0102), [0, 0, 0, 0, 0, 0, 1, 2]);
        let extent = Extent {
            block: 77,
            blocks: 4,
        };
        let record = Record {
            key: key(9).to_vec(),
            value: data_payload(3, 42).to_vec(),
            extent: Some(extent),
            tid: Tid(1),
        };
        assert_eq!(
            decode(&record),
            Ok((
                9,
                Mapping::Data {
                    extent,
                    index: 3,
                    crc: 42
                }
            ))
        );
        let zero = Record {
            key: key(5).to_vec(),
            value: ZERO_VALUE.to_vec(),
            extent: None,
            tid: Tid(1),
        };
        assert_eq!(decode(&zero), Ok((5, Mapping::Zero)));
    }

    #[test]
    fn malformed_records_are_refused() {
        let extent = Extent {
            block: 77,
            blocks: 4,
        };
        let past_end = Record {
            key: key(1).to_vec(),
            value: data_payload(4, 0).to_vec(),
            extent: Some(extent),
            tid: Tid(1),
        };
        assert!(decode(&past_end).is_err());
        let short_key = Record {
            key: vec![1, 2],
            value: ZERO_VALUE.to_vec(),
            extent: None,
            tid: Tid(1),
        };
        assert!(decode(&short_key).is_err());
    }
}
