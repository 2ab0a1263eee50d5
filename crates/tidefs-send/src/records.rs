//! Decoding of the tidefs-fs records a sender reads, exactly as `tidefs-fs/FORMAT.md`
//! specifies them (keys big-endian, values little-endian):
//!
//! ```text
//! key                                          value
//! (ino, 0x10 INODE,       0)                   inode item, 120 bytes (table below)
//! (ino, 0x20 BACKREF,     parent u64, name)    readdir index u64
//! (ino, 0x40 XATTR,       name)                00 value | 01 len u32 chunks u32
//! (ino, 0x41 XATTR_CHUNK, name, 00, i u32)     bytes [2048·i, 2048·(i+1)) of a big value
//! (ino, 0x50 SYMLINK,     i)                   bytes [2048·i, 2048·(i+1)) of the target
//! (ino, 0x60 DATA,        file offset)         00 inline bytes | 01 data | 02 prealloc
//! ```
//!
//! Inode item: mode u32 @4, uid @8, gid @12, nlink @16, size u64 @24, rdev @32, flags @40,
//! generation @48, blocks @56, next_index @64, atime/mtime/ctime/btime (i64 s + u32 ns)
//! @72/84/96/108. Data record (extent records): type u8, 3 reserved, ext_off u32 (blocks),
//! len u32 (blocks), then per-block crc32c.
//!
//! tidefs-fs keeps its decoders crate-private; this module is the one place the sender
//! depends on the record layout, so it can switch to public decoders when they exist.

use tidefs_fs::{FileKind, Timespec};
use tidefs_store::{Extent, Record};

pub const KIND_INODE: u8 = 0x10;
pub const KIND_BACKREF: u8 = 0x20;
pub const KIND_DIRENT_HASH: u8 = 0x30;
pub const KIND_DIRENT_INDEX: u8 = 0x31;
pub const KIND_XATTR: u8 = 0x40;
pub const KIND_XATTR_CHUNK: u8 = 0x41;
pub const KIND_SYMLINK: u8 = 0x50;
pub const KIND_DATA: u8 = 0x60;

/// Object id of the records that belong to the subvolume, not to an inode.
pub const SUBVOL_OBJECT: u64 = 0;
/// Bytes of one data block.
pub const BLOCK_BYTES: u64 = 4096;

const INODE_ITEM_BYTES: usize = 120;
const INODE_ITEM_VERSION: u8 = 1;
const XATTR_SMALL: u8 = 0;
const XATTR_CHUNKED: u8 = 1;
const DATA_INLINE: u8 = 0;
const DATA_BLOCKS: u8 = 1;
const DATA_PREALLOC: u8 = 2;

/// The fields of an inode item a sender needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InodeItem {
    pub ino: u64,
    pub generation: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub size: u64,
    pub rdev: u64,
    pub flags: u64,
    pub atime: Timespec,
    pub mtime: Timespec,
    pub ctime: Timespec,
    pub btime: Timespec,
}

impl InodeItem {
    pub fn decode(ino: u64, b: &[u8]) -> Option<InodeItem> {
        if b.len() != INODE_ITEM_BYTES || b[0] != INODE_ITEM_VERSION {
            return None;
        }
        let u32_at = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"));
        let u64_at = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
        let time_at = |at: usize| Timespec::new(u64_at(at) as i64, u32_at(at + 8));
        Some(InodeItem {
            ino,
            mode: u32_at(4),
            uid: u32_at(8),
            gid: u32_at(12),
            nlink: u32_at(16),
            size: u64_at(24),
            rdev: u64_at(32),
            flags: u64_at(40),
            generation: u64_at(48),
            atime: time_at(72),
            mtime: time_at(84),
            ctime: time_at(96),
            btime: time_at(108),
        })
    }

    pub fn kind(&self) -> FileKind {
        FileKind::from_mode(self.mode).unwrap_or(FileKind::Regular)
    }

    pub fn is_dir(&self) -> bool {
        self.kind() == FileKind::Directory
    }

    /// Permission bits (what CHMOD carries).
    pub fn perm(&self) -> u32 {
        self.mode & 0o7777
    }
}

/// Object id and kind of a subvolume-tree key.
pub fn split_key(key: &[u8]) -> Option<(u64, u8)> {
    if key.len() < 9 {
        return None;
    }
    Some((u64::from_be_bytes(key[0..8].try_into().ok()?), key[8]))
}

/// The key of an inode item.
pub fn inode_key(ino: u64) -> Vec<u8> {
    tidefs_store::key3(ino, KIND_INODE, 0)
}

/// Prefix of every record of `ino` of one kind.
pub fn kind_prefix(ino: u64, kind: u8) -> Vec<u8> {
    let mut k = ino.to_be_bytes().to_vec();
    k.push(kind);
    k
}

/// Prefix of every record of `ino`.
pub fn object_prefix(ino: u64) -> Vec<u8> {
    ino.to_be_bytes().to_vec()
}

/// `(parent, name)` of a back-reference key.
pub fn backref_of_key(key: &[u8]) -> Option<(u64, Vec<u8>)> {
    if key.len() < 17 || key[8] != KIND_BACKREF {
        return None;
    }
    let parent = u64::from_be_bytes(key[9..17].try_into().ok()?);
    Some((parent, key[17..].to_vec()))
}

/// The xattr name of an XATTR or XATTR_CHUNK key.
pub fn xattr_name_of_key(key: &[u8]) -> Option<Vec<u8>> {
    match *key.get(8)? {
        KIND_XATTR => Some(key[9..].to_vec()),
        // name, 0x00, u32 chunk index
        KIND_XATTR_CHUNK if key.len() >= 9 + 5 => Some(key[9..key.len() - 5].to_vec()),
        _ => None,
    }
}

/// How an XATTR record stores its value.
pub enum XattrValue {
    Small(Vec<u8>),
    Chunked { len: usize, chunks: u32 },
}

pub fn decode_xattr(value: &[u8]) -> Option<XattrValue> {
    match *value.first()? {
        XATTR_SMALL => Some(XattrValue::Small(value[1..].to_vec())),
        XATTR_CHUNKED if value.len() == 9 => Some(XattrValue::Chunked {
            len: u32::from_le_bytes(value[1..5].try_into().ok()?) as usize,
            chunks: u32::from_le_bytes(value[5..9].try_into().ok()?),
        }),
        _ => None,
    }
}

/// Key of chunk `i` of a big xattr value.
pub fn xattr_chunk_key(ino: u64, name: &[u8], i: u32) -> Vec<u8> {
    let mut k = kind_prefix(ino, KIND_XATTR_CHUNK);
    k.extend_from_slice(name);
    k.push(0);
    k.extend_from_slice(&i.to_be_bytes());
    k
}

/// One data record of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataRecord {
    /// The file's first bytes, stored in the record.
    Inline(Vec<u8>),
    /// File blocks `[start, start + len)` mapped onto blocks `[ext_off, ext_off + len)` of
    /// `extent`; `prealloc` blocks read as zeros.
    Blocks {
        start: u64,
        len: u64,
        extent: Extent,
        ext_off: u64,
        prealloc: bool,
        /// crc32c of each block (empty for prealloc).
        crcs: Vec<u32>,
    },
}

impl DataRecord {
    pub fn decode(r: &Record) -> Option<DataRecord> {
        let offset = tidefs_store::parse_key3(&r.key)?.2;
        let v = &r.value;
        match (v.first().copied()?, r.extent) {
            (DATA_INLINE, None) if offset == 0 => Some(DataRecord::Inline(v[1..].to_vec())),
            (t @ (DATA_BLOCKS | DATA_PREALLOC), Some(extent))
                if v.len() >= 12 && offset % BLOCK_BYTES == 0 =>
            {
                let ext_off = u64::from(u32::from_le_bytes(v[4..8].try_into().ok()?));
                let len = u64::from(u32::from_le_bytes(v[8..12].try_into().ok()?));
                if len == 0 {
                    return None;
                }
                let prealloc = t == DATA_PREALLOC;
                let crcs = if prealloc {
                    Vec::new()
                } else {
                    if v.len() != 12 + 4 * len as usize {
                        return None;
                    }
                    v[12..]
                        .chunks(4)
                        .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
                        .collect()
                };
                Some(DataRecord::Blocks {
                    start: offset / BLOCK_BYTES,
                    len,
                    extent,
                    ext_off,
                    prealloc,
                    crcs,
                })
            }
            _ => None,
        }
    }
}

/// 64-bit FNV-1a of a name: the key of its DIRENT_HASH record.
pub fn name_hash(name: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in name {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The inode a DIRENT_HASH record names `name` (entries: ino u64, index u64, dtype u8,
/// name_len u8, name; repeated).
pub fn find_in_dirent_hash(value: &[u8], name: &[u8]) -> Option<u64> {
    let mut at = 0;
    while at + 18 <= value.len() {
        let ino = u64::from_le_bytes(value[at..at + 8].try_into().ok()?);
        let len = value[at + 17] as usize;
        let n = value.get(at + 18..at + 18 + len)?;
        if n == name {
            return Some(ino);
        }
        at += 18 + len;
    }
    None
}

/// Linux `dev_t` as stat reports it (glibc encoding) → the kernel's `new_encode_dev`
/// form that send streams carry. Equal for majors below 4096.
pub fn rdev_to_stream(rdev: u64) -> u64 {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12)
}

/// The stream's `new_encode_dev` form → glibc `dev_t`.
pub fn rdev_from_stream(dev: u64) -> u64 {
    let dev = dev & 0xffff_ffff;
    let major = (dev & 0xfff00) >> 8;
    let minor = (dev & 0xff) | ((dev >> 12) & 0xfff00);
    (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12) | ((major & !0xfff) << 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_numbers_convert_both_ways() {
        // 1:3 (/dev/null) is 0x103 in both encodings; 259:70000 needs the high minor bits.
        assert_eq!(rdev_to_stream(0x103), 0x103);
        for (major, minor) in [(1u64, 3u64), (8, 1), (259, 70000), (4095, 0xfffff)] {
            let glibc = (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12);
            let stream = rdev_to_stream(glibc);
            assert_eq!(
                stream,
                (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
            );
            assert_eq!(rdev_from_stream(stream), glibc);
        }
    }

    #[test]
    fn keys_split_into_their_parts() {
        let mut k = kind_prefix(300, KIND_BACKREF);
        k.extend_from_slice(&256u64.to_be_bytes());
        k.extend_from_slice(b"name");
        assert_eq!(split_key(&k), Some((300, KIND_BACKREF)));
        assert_eq!(backref_of_key(&k), Some((256, b"name".to_vec())));
        let c = xattr_chunk_key(300, b"user.big", 3);
        assert_eq!(xattr_name_of_key(&c), Some(b"user.big".to_vec()));
        assert_eq!(name_hash(b"a"), 0xaf63dc4c8601ec8c);
    }
}
