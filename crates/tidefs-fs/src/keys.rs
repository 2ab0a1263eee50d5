//! Keys of the records of one subvolume tree (FORMAT.md has the full byte tables).
//!
//! Every key starts with a big-endian object id and a one-byte kind, so that all records
//! of one inode are adjacent and in this order:
//!
//! ```text
//! key                                          value
//! (0,   0x01 HEADER,      0)                   subvolume header (ino allocator, counts)
//! (0,   0x02 ORPHAN,      ino)                 empty: ino has nlink 0 but is still open
//! (ino, 0x10 INODE,       0)                   inode item (inode.rs)
//! (ino, 0x20 BACKREF,     parent, name…)       dir index of the entry parent/name → ino
//! (dir, 0x30 DIRENT_HASH, fnv1a64(name))       one or more entries whose names share the hash
//! (dir, 0x31 DIRENT_INDEX, index)              the entry with that readdir index
//! (ino, 0x40 XATTR,       name…)               value, or a chunk count for big values
//! (ino, 0x41 XATTR_CHUNK, name…, 0x00, u32 i)  chunk i of a big xattr value
//! (ino, 0x50 SYMLINK,     chunk)               chunk of the symlink target
//! (ino, 0x60 DATA,        file offset)         inline bytes, or an extent reference
//! ```
//!
//! Numbers in keys are big-endian (byte order = numeric order); numbers in values are
//! little-endian.

use tidefs_store::{key3, KeyBuf};

pub(crate) const KIND_HEADER: u8 = 0x01;
pub(crate) const KIND_ORPHAN: u8 = 0x02;
pub const KIND_INODE: u8 = 0x10;
pub const KIND_BACKREF: u8 = 0x20;
pub const KIND_DIRENT_HASH: u8 = 0x30;
pub const KIND_DIRENT_INDEX: u8 = 0x31;
pub const KIND_XATTR: u8 = 0x40;
pub const KIND_XATTR_CHUNK: u8 = 0x41;
pub const KIND_SYMLINK: u8 = 0x50;
pub const KIND_DATA: u8 = 0x60;

/// Object id of the records that belong to the subvolume rather than to an inode.
pub const SUBVOL_OBJECT: u64 = 0;

pub(crate) fn header_key() -> Vec<u8> {
    key3(SUBVOL_OBJECT, KIND_HEADER, 0)
}

pub(crate) fn orphan_key(ino: u64) -> Vec<u8> {
    key3(SUBVOL_OBJECT, KIND_ORPHAN, ino)
}

pub(crate) fn orphan_prefix() -> Vec<u8> {
    KeyBuf::new().u64(SUBVOL_OBJECT).u8(KIND_ORPHAN).build()
}

pub(crate) fn inode_key(ino: u64) -> Vec<u8> {
    key3(ino, KIND_INODE, 0)
}

pub(crate) fn object_prefix(ino: u64) -> Vec<u8> {
    KeyBuf::new().u64(ino).build()
}

pub(crate) fn kind_prefix(ino: u64, kind: u8) -> Vec<u8> {
    KeyBuf::new().u64(ino).u8(kind).build()
}

pub(crate) fn backref_key(ino: u64, parent: u64, name: &[u8]) -> Vec<u8> {
    KeyBuf::new()
        .u64(ino)
        .u8(KIND_BACKREF)
        .u64(parent)
        .bytes(name)
        .build()
}

pub(crate) fn dirent_hash_key(dir: u64, hash: u64) -> Vec<u8> {
    key3(dir, KIND_DIRENT_HASH, hash)
}

pub(crate) fn dirent_index_key(dir: u64, index: u64) -> Vec<u8> {
    key3(dir, KIND_DIRENT_INDEX, index)
}

pub(crate) fn xattr_key(ino: u64, name: &[u8]) -> Vec<u8> {
    KeyBuf::new().u64(ino).u8(KIND_XATTR).bytes(name).build()
}

pub(crate) fn xattr_chunk_key(ino: u64, name: &[u8], chunk: u32) -> Vec<u8> {
    // Names never hold NUL, so the 0x00 separator keeps (name, chunk) unambiguous.
    KeyBuf::new()
        .u64(ino)
        .u8(KIND_XATTR_CHUNK)
        .bytes(name)
        .u8(0)
        .u32(chunk)
        .build()
}

pub(crate) fn symlink_key(ino: u64, chunk: u64) -> Vec<u8> {
    key3(ino, KIND_SYMLINK, chunk)
}

pub(crate) fn data_key(ino: u64, offset: u64) -> Vec<u8> {
    key3(ino, KIND_DATA, offset)
}

/// The name in an XATTR or XATTR_CHUNK key (the inverse of [`xattr_key`] and
/// [`xattr_chunk_key`]).
pub(crate) fn xattr_name_of_key(key: &[u8]) -> Option<&[u8]> {
    match *key.get(8)? {
        KIND_XATTR => Some(&key[9..]),
        // name, 0x00, u32 chunk index
        KIND_XATTR_CHUNK if key.len() >= 9 + 5 => Some(&key[9..key.len() - 5]),
        _ => None,
    }
}

/// What a record kind is called in messages.
pub(crate) fn kind_name(kind: u8) -> &'static str {
    match kind {
        KIND_HEADER => "header",
        KIND_ORPHAN => "orphan",
        KIND_INODE => "inode",
        KIND_BACKREF => "back-reference",
        KIND_DIRENT_HASH => "dirent-hash",
        KIND_DIRENT_INDEX => "dirent-index",
        KIND_XATTR => "xattr",
        KIND_XATTR_CHUNK => "xattr-chunk",
        KIND_SYMLINK => "symlink",
        KIND_DATA => "data",
        _ => "unknown",
    }
}

/// Object id and kind of any key of a subvolume tree.
pub(crate) fn split_key(key: &[u8]) -> Option<(u64, u8)> {
    if key.len() < 9 {
        return None;
    }
    Some((u64::from_be_bytes(key[0..8].try_into().ok()?), key[8]))
}

/// The big-endian u64 at `at` of a key.
pub(crate) fn key_u64(key: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(key.get(at..at + 8)?.try_into().ok()?))
}

/// Little-endian readers for values (callers check lengths first).
pub(crate) fn le_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("length checked"))
}

pub(crate) fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("length checked"))
}

pub(crate) fn le_i64(b: &[u8], at: usize) -> i64 {
    i64::from_le_bytes(b[at..at + 8].try_into().expect("length checked"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_of_one_inode_sort_together_in_kind_order() {
        let keys = [
            inode_key(300),
            backref_key(300, 256, b"zz"),
            dirent_hash_key(300, u64::MAX),
            dirent_index_key(300, 0),
            xattr_key(300, b"user.a"),
            xattr_chunk_key(300, b"user.a", 0),
            symlink_key(300, 0),
            data_key(300, u64::MAX),
            inode_key(301),
        ];
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(split_key(&keys[1]), Some((300, KIND_BACKREF)));
        assert_eq!(key_u64(&keys[1], 9), Some(256));
        assert!(header_key() < orphan_key(0) && orphan_key(u64::MAX) < inode_key(1));
        assert_eq!(xattr_name_of_key(&keys[4]), Some(&b"user.a"[..]));
        assert_eq!(xattr_name_of_key(&keys[5]), Some(&b"user.a"[..]));
        assert_eq!(xattr_name_of_key(&keys[0]), None);
    }
}
