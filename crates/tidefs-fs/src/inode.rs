//! Inode items and the subvolume header that hands out inode numbers.
//!
//! Inode item, key `(ino, INODE, 0)`, 120 bytes, little-endian:
//!
//! ```text
//! offset size field
//!   0     1   version (1)
//!   1     3   reserved, zero
//!   4     4   mode        file type and permission bits (S_IFMT | 07777)
//!   8     4   uid
//!  12     4   gid
//!  16     4   nlink
//!  20     4   reserved, zero
//!  24     8   size        bytes (directories: 2 × the sum of their entry name lengths)
//!  32     8   rdev        device number of character and block devices
//!  40     8   flags       inode flags (FS_IOC_GETFLAGS), kept for the caller
//!  48     8   generation  tid that created the inode
//!  56     8   blocks      4 KiB data blocks the file references (st_blocks / 8)
//!  64     8   next_index  directories: readdir index the next entry gets
//!  72    12   atime       i64 seconds, u32 nanoseconds
//!  84    12   mtime
//!  96    12   ctime
//! 108    12   btime       birth time
//! ```
//!
//! Subvolume header, key `(0, HEADER, 0)`, 40 bytes:
//!
//! ```text
//!   0     4   version (1)
//!   4     4   reserved
//!   8     8   next_ino     next number of the current range
//!  16     8   range_end    end (exclusive) of the current range
//!  24     8   next_range   first number of the next range to take
//!  32     8   inode_count  live inodes (for statfs)
//! ```
//!
//! Numbers are handed out from ranges of [`INO_RANGE_LEN`] so that several allocators
//! (metadata ranks, later) can each own a range without clashing, and are never reused
//! inside a subvolume; the generation (creating tid) tells apart equal numbers of
//! different subvolumes' histories.

use crate::clock::Timespec;
use crate::cx::Cx;
use crate::error::{FsError, Result};
use crate::keys::{header_key, inode_key, le_i64, le_u32, le_u64, object_prefix};
use crate::limits::INO_RANGE_LEN;

/// Inode number of every subvolume's root directory (as in btrfs).
pub const ROOT_INO: u64 = 256;

pub(crate) const S_IFMT: u32 = 0o170000;
pub(crate) const S_IFSOCK: u32 = 0o140000;
pub(crate) const S_IFLNK: u32 = 0o120000;
pub(crate) const S_IFREG: u32 = 0o100000;
pub(crate) const S_IFBLK: u32 = 0o060000;
pub(crate) const S_IFDIR: u32 = 0o040000;
pub(crate) const S_IFCHR: u32 = 0o020000;
pub(crate) const S_IFIFO: u32 = 0o010000;
pub(crate) const S_ISUID: u32 = 0o4000;
pub(crate) const S_ISGID: u32 = 0o2000;
pub(crate) const S_ISVTX: u32 = 0o1000;
pub(crate) const S_IXGRP: u32 = 0o010;
/// Permission bits a caller may set.
pub(crate) const MODE_PERM_BITS: u32 = 0o7777;

/// The type of an inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileKind {
    Regular,
    Directory,
    Symlink,
    CharDevice,
    BlockDevice,
    Fifo,
    Socket,
}

impl FileKind {
    pub fn from_mode(mode: u32) -> Option<FileKind> {
        Some(match mode & S_IFMT {
            S_IFREG => FileKind::Regular,
            S_IFDIR => FileKind::Directory,
            S_IFLNK => FileKind::Symlink,
            S_IFCHR => FileKind::CharDevice,
            S_IFBLK => FileKind::BlockDevice,
            S_IFIFO => FileKind::Fifo,
            S_IFSOCK => FileKind::Socket,
            _ => return None,
        })
    }

    /// The `S_IFMT` bits of this type.
    pub fn mode_bits(self) -> u32 {
        match self {
            FileKind::Regular => S_IFREG,
            FileKind::Directory => S_IFDIR,
            FileKind::Symlink => S_IFLNK,
            FileKind::CharDevice => S_IFCHR,
            FileKind::BlockDevice => S_IFBLK,
            FileKind::Fifo => S_IFIFO,
            FileKind::Socket => S_IFSOCK,
        }
    }

    /// The `d_type` value readdir reports (`DT_*`), which is also what directory entries
    /// store.
    pub fn dtype(self) -> u8 {
        match self {
            FileKind::Fifo => 1,
            FileKind::CharDevice => 2,
            FileKind::Directory => 4,
            FileKind::BlockDevice => 6,
            FileKind::Regular => 8,
            FileKind::Symlink => 10,
            FileKind::Socket => 12,
        }
    }

    pub fn from_dtype(d: u8) -> Option<FileKind> {
        Some(match d {
            1 => FileKind::Fifo,
            2 => FileKind::CharDevice,
            4 => FileKind::Directory,
            6 => FileKind::BlockDevice,
            8 => FileKind::Regular,
            10 => FileKind::Symlink,
            12 => FileKind::Socket,
            _ => return None,
        })
    }
}

/// One inode's attributes: what `stat` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inode {
    pub ino: u64,
    pub generation: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub size: u64,
    pub rdev: u64,
    pub flags: u64,
    /// 4 KiB data blocks referenced (shared blocks count in every file sharing them).
    pub blocks: u64,
    pub atime: Timespec,
    pub mtime: Timespec,
    pub ctime: Timespec,
    pub btime: Timespec,
    /// Directories: the readdir index the next entry gets.
    pub(crate) next_index: u64,
}

/// First readdir index of a directory's entries: cookies 1 and 2 belong to "." and "..".
pub(crate) const FIRST_DIR_INDEX: u64 = 2;

const INODE_VERSION: u8 = 1;
const INODE_BYTES: usize = 120;

impl Inode {
    pub fn kind(&self) -> FileKind {
        FileKind::from_mode(self.mode).unwrap_or(FileKind::Regular)
    }

    pub fn is_dir(&self) -> bool {
        self.mode & S_IFMT == S_IFDIR
    }

    /// The permission bits of the mode (what chmod sets).
    pub fn perm(&self) -> u32 {
        self.mode & MODE_PERM_BITS
    }

    /// `st_blocks`: 512-byte units.
    pub fn st_blocks(&self) -> u64 {
        self.blocks * 8
    }

    pub(crate) fn encode(&self) -> [u8; INODE_BYTES] {
        let mut b = [0u8; INODE_BYTES];
        b[0] = INODE_VERSION;
        b[4..8].copy_from_slice(&self.mode.to_le_bytes());
        b[8..12].copy_from_slice(&self.uid.to_le_bytes());
        b[12..16].copy_from_slice(&self.gid.to_le_bytes());
        b[16..20].copy_from_slice(&self.nlink.to_le_bytes());
        b[24..32].copy_from_slice(&self.size.to_le_bytes());
        b[32..40].copy_from_slice(&self.rdev.to_le_bytes());
        b[40..48].copy_from_slice(&self.flags.to_le_bytes());
        b[48..56].copy_from_slice(&self.generation.to_le_bytes());
        b[56..64].copy_from_slice(&self.blocks.to_le_bytes());
        b[64..72].copy_from_slice(&self.next_index.to_le_bytes());
        for (i, t) in [self.atime, self.mtime, self.ctime, self.btime]
            .iter()
            .enumerate()
        {
            let at = 72 + 12 * i;
            b[at..at + 8].copy_from_slice(&t.sec.to_le_bytes());
            b[at + 8..at + 12].copy_from_slice(&t.nsec.to_le_bytes());
        }
        b
    }

    pub(crate) fn decode(ino: u64, b: &[u8]) -> Option<Inode> {
        if b.len() != INODE_BYTES || b[0] != INODE_VERSION {
            return None;
        }
        let t = |i: usize| {
            let at = 72 + 12 * i;
            Timespec::new(le_i64(b, at), le_u32(b, at + 8))
        };
        Some(Inode {
            ino,
            mode: le_u32(b, 4),
            uid: le_u32(b, 8),
            gid: le_u32(b, 12),
            nlink: le_u32(b, 16),
            size: le_u64(b, 24),
            rdev: le_u64(b, 32),
            flags: le_u64(b, 40),
            generation: le_u64(b, 48),
            blocks: le_u64(b, 56),
            next_index: le_u64(b, 64),
            atime: t(0),
            mtime: t(1),
            ctime: t(2),
            btime: t(3),
        })
    }
}

/// The per-subvolume header: inode allocator state and counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SubvolHeader {
    pub next_ino: u64,
    pub range_end: u64,
    pub next_range: u64,
    pub inode_count: u64,
}

const HEADER_VERSION: u32 = 1;
const HEADER_BYTES: usize = 40;

impl SubvolHeader {
    pub fn fresh() -> SubvolHeader {
        SubvolHeader {
            next_ino: ROOT_INO,
            range_end: ROOT_INO,
            next_range: ROOT_INO,
            inode_count: 0,
        }
    }

    fn encode(&self) -> [u8; HEADER_BYTES] {
        let mut b = [0u8; HEADER_BYTES];
        b[0..4].copy_from_slice(&HEADER_VERSION.to_le_bytes());
        b[8..16].copy_from_slice(&self.next_ino.to_le_bytes());
        b[16..24].copy_from_slice(&self.range_end.to_le_bytes());
        b[24..32].copy_from_slice(&self.next_range.to_le_bytes());
        b[32..40].copy_from_slice(&self.inode_count.to_le_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<SubvolHeader> {
        if b.len() != HEADER_BYTES || le_u32(b, 0) != HEADER_VERSION {
            return None;
        }
        Some(SubvolHeader {
            next_ino: le_u64(b, 8),
            range_end: le_u64(b, 16),
            next_range: le_u64(b, 24),
            inode_count: le_u64(b, 32),
        })
    }
}

/// What a new inode starts as.
pub(crate) struct NewInode {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u64,
}

impl Cx<'_, '_> {
    pub fn header(&mut self) -> Result<SubvolHeader> {
        let tree = self.tree;
        let r = self
            .get(&header_key())?
            .ok_or_else(|| FsError::corrupt(tree, "subvolume header is missing"))?;
        SubvolHeader::decode(&r.value)
            .ok_or_else(|| FsError::corrupt(tree, "subvolume header does not decode"))
    }

    pub fn put_header(&mut self, h: &SubvolHeader) -> Result<()> {
        self.put(&header_key(), &h.encode())
    }

    /// The inode `ino`, or ENOENT.
    pub fn inode(&mut self, ino: u64) -> Result<Inode> {
        self.try_inode(ino)?
            .ok_or_else(|| FsError::NotFound(format!("inode {ino}")))
    }

    pub fn try_inode(&mut self, ino: u64) -> Result<Option<Inode>> {
        let tree = self.tree;
        match self.get(&inode_key(ino))? {
            None => Ok(None),
            Some(r) => Inode::decode(ino, &r.value)
                .map(Some)
                .ok_or_else(|| FsError::corrupt(tree, format!("inode {ino} does not decode"))),
        }
    }

    pub fn put_inode(&mut self, inode: &Inode) -> Result<()> {
        self.put(&inode_key(inode.ino), &inode.encode())
    }

    /// Allocates a number and writes a new inode with nlink 0 (the caller links it).
    pub fn new_inode(&mut self, n: NewInode) -> Result<Inode> {
        let mut h = self.header()?;
        let inode = self.alloc_inode(&mut h, n);
        self.put_header(&h)?;
        self.put_inode(&inode)?;
        Ok(inode)
    }

    /// A new inode numbered from the header held by the caller, not stored yet (bulk
    /// creation stores the header once and each inode once, with its final attributes).
    pub fn alloc_inode(&mut self, h: &mut SubvolHeader, n: NewInode) -> Inode {
        if h.next_ino == h.range_end {
            h.next_ino = h.next_range;
            h.range_end = h.next_range + INO_RANGE_LEN;
            h.next_range = h.range_end;
        }
        let ino = h.next_ino;
        h.next_ino += 1;
        h.inode_count += 1;
        let now = self.now;
        Inode {
            ino,
            generation: self.t.tid().0,
            mode: n.mode,
            uid: n.uid,
            gid: n.gid,
            nlink: 0,
            size: 0,
            rdev: n.rdev,
            flags: 0,
            blocks: 0,
            atime: now,
            mtime: now,
            ctime: now,
            btime: now,
            next_index: FIRST_DIR_INDEX,
        }
    }

    /// Removes every record of `ino` (its data references are dropped with them).
    pub fn free_inode(&mut self, ino: u64) -> Result<()> {
        for key in self.keys_with_prefix(&object_prefix(ino))? {
            self.del(&key)?;
        }
        let mut h = self.header()?;
        h.inode_count = h.inode_count.saturating_sub(1);
        self.put_header(&h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inode_round_trips_and_pins_its_bytes() {
        let inode = Inode {
            ino: 300,
            generation: 9,
            mode: S_IFREG | 0o644,
            uid: 1000,
            gid: 100,
            nlink: 2,
            size: 0x0102,
            rdev: 0,
            flags: 0,
            blocks: 1,
            atime: Timespec::new(1, 2),
            mtime: Timespec::new(-3, 4),
            ctime: Timespec::new(5, 999_999_999),
            btime: Timespec::new(7, 8),
            next_index: 2,
        };
        let b = inode.encode();
        assert_eq!(b[0], 1);
        assert_eq!(&b[4..8], &(0o100644u32).to_le_bytes());
        assert_eq!(&b[24..26], &[2, 1]);
        assert_eq!(Inode::decode(300, &b), Some(inode));
        assert_eq!(Inode::decode(300, &b[1..]), None);
        let h = SubvolHeader {
            next_ino: 257,
            range_end: 4352,
            next_range: 4352,
            inode_count: 1,
        };
        assert_eq!(SubvolHeader::decode(&h.encode()), Some(h));
    }
}
