//! Conversions between tidefs attributes and FUSE's: inode → `FileAttr`, FUSE times →
//! [`Timespec`], errors → errno.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{Errno, FileAttr, FileType, INodeNo, TimeOrNow};
use tidefs_fs::{FileKind, FsError, Inode, TimeSet, Timespec};

/// `st_blksize`: the unit tidefs stores data in (and the best I/O size hint below 1 MiB).
const BLOCK_SIZE_BYTES: u32 = tidefs_fs::limits::DATA_BLOCK_BYTES as u32;

pub fn file_type(kind: FileKind) -> FileType {
    match kind {
        FileKind::Regular => FileType::RegularFile,
        FileKind::Directory => FileType::Directory,
        FileKind::Symlink => FileType::Symlink,
        FileKind::CharDevice => FileType::CharDevice,
        FileKind::BlockDevice => FileType::BlockDevice,
        FileKind::Fifo => FileType::NamedPipe,
        FileKind::Socket => FileType::Socket,
    }
}

pub fn system_time(t: Timespec) -> SystemTime {
    if t.sec >= 0 {
        UNIX_EPOCH + Duration::new(t.sec as u64, t.nsec)
    } else {
        // -1.25 s is stored as sec -2, nsec 750_000_000.
        UNIX_EPOCH - Duration::from_secs(t.sec.unsigned_abs())
            + Duration::from_nanos(u64::from(t.nsec))
    }
}

pub fn timespec(t: SystemTime) -> Timespec {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => Timespec::new(d.as_secs() as i64, d.subsec_nanos()),
        Err(e) => {
            let d = e.duration();
            let (sec, nsec) = (-(d.as_secs() as i64), d.subsec_nanos());
            if nsec == 0 {
                Timespec::new(sec, 0)
            } else {
                Timespec::new(sec - 1, 1_000_000_000 - nsec)
            }
        }
    }
}

pub fn time_set(t: TimeOrNow) -> TimeSet {
    match t {
        TimeOrNow::Now => TimeSet::Now,
        TimeOrNow::SpecificTime(t) => TimeSet::At(timespec(t)),
    }
}

/// What `stat` shows for `inode` under FUSE number `fuse_ino`.
pub fn file_attr(fuse_ino: u64, inode: &Inode) -> FileAttr {
    FileAttr {
        ino: INodeNo(fuse_ino),
        size: inode.size,
        blocks: inode.st_blocks(),
        atime: system_time(inode.atime),
        mtime: system_time(inode.mtime),
        ctime: system_time(inode.ctime),
        crtime: system_time(inode.btime),
        kind: file_type(inode.kind()),
        perm: (inode.mode & 0o7777) as u16,
        nlink: inode.nlink,
        uid: inode.uid,
        gid: inode.gid,
        // FUSE carries a 32-bit dev_t (new_encode_dev), which holds every Linux device number.
        rdev: inode.rdev as u32,
        blksize: BLOCK_SIZE_BYTES,
        flags: 0,
    }
}

/// The errno for `e`. Errors that mean damage or a failed device lose their detail in an
/// errno, so they are also written to stderr, where the operator finds what and where.
pub fn errno(e: &FsError) -> Errno {
    let code = e.errno();
    if code == libc::EIO {
        eprintln!("tidefs mount: {e}");
    }
    Errno::from_i32(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_including_before_the_epoch() {
        for t in [
            Timespec::new(0, 0),
            Timespec::new(1_700_000_000, 123_456_789),
            Timespec::new(-1, 0),
            Timespec::new(-2, 750_000_000),
        ] {
            assert_eq!(timespec(system_time(t)), t, "{t:?}");
        }
    }
}
