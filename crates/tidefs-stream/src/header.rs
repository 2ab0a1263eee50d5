//! Stream header and command header layouts.
//!
//! Stream header, once at the start of each stream (17 bytes):
//!
//! ```text
//! offset  size  field
//! 0       13    magic    "btrfs-stream\0" (the NUL is part of the magic)
//! 13      4     version  u32 LE: 1 or 2 (3 exists only in experimental kernels)
//! ```
//!
//! Command header, before every command (10 bytes), followed by `len` payload bytes:
//!
//! ```text
//! offset  size  field
//! 0       4     len  u32 LE: payload bytes, excluding this header
//! 4       2     cmd  u16 LE: `CommandType` id
//! 6       4     crc  u32 LE: CRC32C (seed 0, no final xor) over this header with crc = 0,
//!                    then the payload
//! ```

use std::fmt;

/// The 13-byte magic, NUL included.
pub const STREAM_MAGIC: [u8; 13] = *b"btrfs-stream\0";

/// Size of the stream header.
pub const STREAM_HEADER_BYTES: usize = 17;

/// Size of the command header.
pub const COMMAND_HEADER_BYTES: usize = 10;

/// Offset of the `cmd` field inside the command header.
pub const COMMAND_HEADER_CMD_OFFSET: usize = 4;

/// Offset of the `crc` field inside the command header.
pub const COMMAND_HEADER_CRC_OFFSET: usize = 6;

/// Offset of the version field inside the stream header.
pub const STREAM_HEADER_VERSION_OFFSET: usize = 13;

/// Send stream protocol versions this crate reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StreamVersion {
    /// The default of `btrfs send`: WRITE data at most 48 KiB, DATA is an ordinary TLV.
    V1 = 1,
    /// Linux 6.0+: adds FALLOCATE, FILEATTR, ENCODED_WRITE, OTIME; DATA has no length field.
    V2 = 2,
}

impl StreamVersion {
    /// Maps the header's version number; `None` for versions this crate does not speak.
    pub fn from_u32(version: u32) -> Option<Self> {
        match version {
            1 => Some(StreamVersion::V1),
            2 => Some(StreamVersion::V2),
            _ => None,
        }
    }

    /// The number written in the header.
    pub fn as_u32(self) -> u32 {
        self as u32
    }
}

impl fmt::Display for StreamVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_u32())
    }
}

/// Encodes the 17-byte stream header.
pub fn encode_stream_header(version: StreamVersion) -> [u8; STREAM_HEADER_BYTES] {
    let mut bytes = [0u8; STREAM_HEADER_BYTES];
    bytes[..STREAM_MAGIC.len()].copy_from_slice(&STREAM_MAGIC);
    bytes[STREAM_HEADER_VERSION_OFFSET..].copy_from_slice(&version.as_u32().to_le_bytes());
    bytes
}

/// The fields of a command header as read from the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandHeader {
    /// Payload length in bytes.
    pub len: u32,
    /// Raw command id (not necessarily known).
    pub cmd: u16,
    /// Stored CRC.
    pub crc: u32,
}

impl CommandHeader {
    /// Decodes the 10-byte header.
    pub fn from_le_bytes(bytes: [u8; COMMAND_HEADER_BYTES]) -> Self {
        CommandHeader {
            len: u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
            cmd: u16::from_le_bytes([bytes[4], bytes[5]]),
            crc: u32::from_le_bytes([bytes[6], bytes[7], bytes[8], bytes[9]]),
        }
    }

    /// Encodes the 10-byte header.
    pub fn to_le_bytes(self) -> [u8; COMMAND_HEADER_BYTES] {
        let mut bytes = [0u8; COMMAND_HEADER_BYTES];
        bytes[..4].copy_from_slice(&self.len.to_le_bytes());
        bytes[4..6].copy_from_slice(&self.cmd.to_le_bytes());
        bytes[6..].copy_from_slice(&self.crc.to_le_bytes());
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_header_is_magic_with_nul_then_version_le() {
        let bytes = encode_stream_header(StreamVersion::V2);
        assert_eq!(&bytes[..13], b"btrfs-stream\0");
        assert_eq!(&bytes[13..], &[2, 0, 0, 0]);
    }

    #[test]
    fn command_header_round_trips_little_endian() {
        let header = CommandHeader {
            len: 0x29,
            cmd: 1,
            crc: 0x8a0f_9857,
        };
        let bytes = header.to_le_bytes();
        assert_eq!(bytes, [0x29, 0, 0, 0, 1, 0, 0x57, 0x98, 0x0f, 0x8a]);
        assert_eq!(CommandHeader::from_le_bytes(bytes), header);
    }
}
