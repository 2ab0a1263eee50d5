//! Attribute ids and the fixed-size attribute value types of the btrfs send stream.
//!
//! Every command payload is a sequence of TLV attributes:
//!
//! ```text
//! offset  size  field
//! 0       2     type   u16 LE, an `AttributeType` id (1..=35)
//! 2       2     len    u16 LE, length of `value` (not counting this 4-byte header)
//! 4       len   value
//! ```
//!
//! Exception (stream version 2 and later): `DATA` (19) has only the 2-byte type; its value
//! runs to the end of the command, so it is always the last attribute.
//!
//! Fixed-size values:
//!
//! ```text
//! u64        8 bytes LE
//! u32        4 bytes LE
//! uuid      16 raw bytes
//! timespec  12 bytes: sec u64 LE | nsec u32 LE   (struct btrfs_timespec)
//! ```

use std::fmt;

/// Highest attribute id any btrfs-progs knows (`BTRFS_SEND_A_MAX`, version 3). Ids above
/// this, and id 0, are "invalid tlv" for every receiver.
pub const ATTRIBUTE_ID_MAX: u16 = 35;

/// Size of the TLV header of an ordinary attribute: type u16 + len u16.
pub const TLV_HEADER_BYTES: usize = 4;

/// Size of the header of the version 2 `DATA` attribute: type u16 only.
pub const TLV_DATA_V2_HEADER_BYTES: usize = 2;

/// Largest value an ordinary TLV can carry: its length field is a u16.
pub const TLV_VALUE_BYTES_MAX: usize = u16::MAX as usize;

/// Size of an encoded `Timespec`.
pub const TIMESPEC_BYTES: usize = 12;

/// Size of a subvolume UUID.
pub const UUID_BYTES: usize = 16;

/// A subvolume UUID as the stream carries it: 16 raw bytes, printed in the usual
/// 8-4-4-4-12 lowercase form.
pub type Uuid = [u8; UUID_BYTES];

/// An inode time as the stream carries it (`struct btrfs_timespec`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Timespec {
    /// Seconds since the Unix epoch. The wire type is unsigned; receivers cast it to `time_t`.
    pub sec: u64,
    /// Nanoseconds. Not range-checked: the kernel copies the inode field verbatim.
    pub nsec: u32,
}

impl Timespec {
    /// Encodes as 12 bytes: sec u64 LE, nsec u32 LE.
    pub fn to_le_bytes(self) -> [u8; TIMESPEC_BYTES] {
        let mut bytes = [0u8; TIMESPEC_BYTES];
        bytes[..8].copy_from_slice(&self.sec.to_le_bytes());
        bytes[8..].copy_from_slice(&self.nsec.to_le_bytes());
        bytes
    }

    /// Decodes the 12-byte wire form.
    pub fn from_le_bytes(bytes: [u8; TIMESPEC_BYTES]) -> Self {
        let mut sec = [0u8; 8];
        sec.copy_from_slice(&bytes[..8]);
        let mut nsec = [0u8; 4];
        nsec.copy_from_slice(&bytes[8..]);
        Timespec {
            sec: u64::from_le_bytes(sec),
            nsec: u32::from_le_bytes(nsec),
        }
    }
}

/// What an attribute's value must look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttributeShape {
    U32,
    U64,
    Uuid,
    Timespec,
    /// Path-like byte string without a terminating NUL.
    String,
    /// Arbitrary bytes.
    Binary,
    /// Version 3 only: a single byte. No command this crate supports uses it.
    U8,
}

impl AttributeShape {
    /// The exact value size for fixed-size shapes.
    pub fn fixed_bytes(self) -> Option<usize> {
        match self {
            AttributeShape::U8 => Some(1),
            AttributeShape::U32 => Some(4),
            AttributeShape::U64 => Some(8),
            AttributeShape::Uuid => Some(UUID_BYTES),
            AttributeShape::Timespec => Some(TIMESPEC_BYTES),
            AttributeShape::String | AttributeShape::Binary => None,
        }
    }
}

macro_rules! attribute_types {
    ($($variant:ident = $id:literal, $name:literal, $shape:ident;)*) => {
        /// Attribute ids (`BTRFS_SEND_A_*`), all versions.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u16)]
        pub enum AttributeType {
            $($variant = $id,)*
        }

        impl AttributeType {
            /// Every attribute id, ascending.
            pub const ALL: &'static [AttributeType] = &[$(AttributeType::$variant,)*];

            /// Maps a wire id to the attribute, `None` for 0 and ids above `ATTRIBUTE_ID_MAX`.
            pub fn from_id(id: u16) -> Option<Self> {
                match id {
                    $($id => Some(AttributeType::$variant),)*
                    _ => None,
                }
            }

            /// The kernel's name without the `BTRFS_SEND_A_` prefix.
            pub fn name(self) -> &'static str {
                match self {
                    $(AttributeType::$variant => $name,)*
                }
            }

            /// What the value must look like.
            pub fn shape(self) -> AttributeShape {
                match self {
                    $(AttributeType::$variant => AttributeShape::$shape,)*
                }
            }
        }
    };
}

attribute_types! {
    Uuid = 1, "UUID", Uuid;
    Ctransid = 2, "CTRANSID", U64;
    Ino = 3, "INO", U64;
    Size = 4, "SIZE", U64;
    Mode = 5, "MODE", U64;
    Uid = 6, "UID", U64;
    Gid = 7, "GID", U64;
    Rdev = 8, "RDEV", U64;
    Ctime = 9, "CTIME", Timespec;
    Mtime = 10, "MTIME", Timespec;
    Atime = 11, "ATIME", Timespec;
    Otime = 12, "OTIME", Timespec;
    XattrName = 13, "XATTR_NAME", String;
    XattrData = 14, "XATTR_DATA", Binary;
    Path = 15, "PATH", String;
    PathTo = 16, "PATH_TO", String;
    PathLink = 17, "PATH_LINK", String;
    FileOffset = 18, "FILE_OFFSET", U64;
    Data = 19, "DATA", Binary;
    CloneUuid = 20, "CLONE_UUID", Uuid;
    CloneCtransid = 21, "CLONE_CTRANSID", U64;
    ClonePath = 22, "CLONE_PATH", String;
    CloneOffset = 23, "CLONE_OFFSET", U64;
    CloneLen = 24, "CLONE_LEN", U64;
    FallocateMode = 25, "FALLOCATE_MODE", U32;
    Fileattr = 26, "FILEATTR", U64;
    UnencodedFileLen = 27, "UNENCODED_FILE_LEN", U64;
    UnencodedLen = 28, "UNENCODED_LEN", U64;
    UnencodedOffset = 29, "UNENCODED_OFFSET", U64;
    Compression = 30, "COMPRESSION", U32;
    Encryption = 31, "ENCRYPTION", U32;
    VerityAlgorithm = 32, "VERITY_ALGORITHM", U8;
    VerityBlockSize = 33, "VERITY_BLOCK_SIZE", U32;
    VeritySaltData = 34, "VERITY_SALT_DATA", Binary;
    VeritySigData = 35, "VERITY_SIG_DATA", Binary;
}

impl AttributeType {
    /// The wire id.
    pub fn id(self) -> u16 {
        self as u16
    }
}

impl fmt::Display for AttributeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_dense_from_one_to_max() {
        for (index, attribute) in AttributeType::ALL.iter().enumerate() {
            assert_eq!(usize::from(attribute.id()), index + 1);
            assert_eq!(AttributeType::from_id(attribute.id()), Some(*attribute));
        }
        assert_eq!(AttributeType::ALL.len(), usize::from(ATTRIBUTE_ID_MAX));
        assert_eq!(AttributeType::from_id(0), None);
        assert_eq!(AttributeType::from_id(ATTRIBUTE_ID_MAX + 1), None);
    }

    #[test]
    fn timespec_layout_is_sec_then_nsec_little_endian() {
        let time = Timespec {
            sec: 0x0102_0304_0506_0708,
            nsec: 0x0a0b_0c0d,
        };
        let bytes = time.to_le_bytes();
        assert_eq!(
            bytes,
            [8, 7, 6, 5, 4, 3, 2, 1, 0x0d, 0x0c, 0x0b, 0x0a],
            "timespec must be sec u64 LE then nsec u32 LE"
        );
        assert_eq!(Timespec::from_le_bytes(bytes), time);
    }
}
