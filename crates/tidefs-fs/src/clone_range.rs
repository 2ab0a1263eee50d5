//! Reflink: `clone_range` makes a range of one file share the extents of a range of
//! another (or the same) file, as Linux FICLONERANGE does on btrfs. Nothing is copied
//! except inline bytes, which live inside their record; the store reference-counts the
//! shared extents, so later writes to either file copy on write and leave the other alone.
//!
//! Rules (those of the Linux VFS `generic_remap_file_range_prep`):
//! - offsets are 4 KiB aligned; so is the length, unless the range ends at the source's
//!   end of file — then the destination range must end at or past the destination's end
//!   of file, since the source's last block carries zeros past its end;
//! - the source range lies inside the source file; length 0 means "to the source's end";
//! - both inodes are regular files in one pool; the source may be a snapshot, the
//!   destination must be writable (EROFS);
//! - source and destination ranges of one file must not overlap (EINVAL).

use crate::caller::Caller;
use crate::cx::Cx;
use crate::error::{FsError, Result};
use crate::file_data::CloneSource;
use crate::limits::{DATA_BLOCK_BYTES, FILE_BYTES_MAX};
use crate::setattr::kill_suid_sgid;
use crate::subvol::Subvol;

const B: u64 = DATA_BLOCK_BYTES as u64;

/// What the source side of a clone resolved to, before the destination is touched.
struct SourceRange {
    len: u64,
    data: CloneSource,
}

impl Subvol {
    /// Makes bytes `[dst_off, dst_off + len)` of `dst_ino` (in this subvolume) share the
    /// storage of bytes `[src_off, src_off + len)` of `src_ino` in `src`; returns the
    /// bytes cloned. One operation: it happens entirely or not at all. See the module
    /// documentation for the rules.
    #[allow(clippy::too_many_arguments)]
    pub fn clone_range(
        &self,
        src: &Subvol,
        src_ino: u64,
        src_off: u64,
        dst_ino: u64,
        dst_off: u64,
        len: u64,
        caller: &Caller,
    ) -> Result<u64> {
        if !self.shares_pool_with(src) {
            return Err(FsError::CrossDevice(format!(
                "clone from {} into {} (different pools)",
                src.info().name,
                self.info().name
            )));
        }
        if !src_off.is_multiple_of(B) || !dst_off.is_multiple_of(B) {
            return Err(FsError::Invalid(format!(
                "clone offsets {src_off} and {dst_off} must be multiples of {B}"
            )));
        }
        let src_tree = src.info().tree;
        let dst_tree = self.info().tree;
        self.op_across(|t, now| {
            let source = {
                let mut cx = Cx::new(t, src_tree, now);
                let inode = Subvol::regular(&mut cx, src_ino)?;
                let len = check_source(inode.size, src_off, len)?;
                let data = cx.clone_source(&inode, src_off, len)?;
                SourceRange { len, data }
            };
            let len = source.len;
            if len == 0 {
                return Ok(0);
            }
            if dst_off
                .checked_add(len)
                .is_none_or(|end| end > FILE_BYTES_MAX)
            {
                return Err(FsError::FileTooBig {
                    ino: dst_ino,
                    offset: dst_off,
                    max: FILE_BYTES_MAX,
                });
            }
            if src_tree == dst_tree
                && src_ino == dst_ino
                && src_off < dst_off + len
                && dst_off < src_off + len
            {
                return Err(FsError::Invalid(format!(
                    "inode {src_ino}: clone ranges at {src_off} and {dst_off} of {len} bytes overlap"
                )));
            }
            let mut cx = Cx::new(t, dst_tree, now);
            let mut inode = Subvol::regular(&mut cx, dst_ino)?;
            if !len.is_multiple_of(B) && dst_off + len < inode.size {
                // The source's partial last block would zero destination bytes after the
                // range.
                return Err(FsError::Invalid(format!(
                    "inode {dst_ino}: a clone ending in a partial block must end at or past \
                     the end of file ({} bytes), not at {}",
                    inode.size,
                    dst_off + len
                )));
            }
            cx.clone_into(&mut inode, dst_off, len, source.data)?;
            inode.mtime = cx.now;
            inode.ctime = cx.now;
            if !caller.is_root() {
                kill_suid_sgid(&mut inode);
            }
            cx.drop_file_capabilities(dst_ino)?;
            cx.put_inode(&inode)?;
            Ok(len)
        })
    }
}

/// The length to clone from a source of `size` bytes: `len` (0 = to the end of file) if
/// the range lies inside the file and ends on a block boundary or at the end of file.
fn check_source(size: u64, src_off: u64, len: u64) -> Result<u64> {
    if src_off > size {
        return Err(FsError::Invalid(format!(
            "clone source offset {src_off} is past the end of file ({size} bytes)"
        )));
    }
    let len = if len == 0 { size - src_off } else { len };
    let end = src_off
        .checked_add(len)
        .filter(|&end| end <= size)
        .ok_or_else(|| {
            FsError::Invalid(format!(
                "clone source range of {len} bytes at {src_off} is past the end of file \
                 ({size} bytes)"
            ))
        })?;
    if !len.is_multiple_of(B) && end != size {
        return Err(FsError::Invalid(format!(
            "clone length {len} must be a multiple of {B} unless the range ends at the \
             source's end of file ({size} bytes)"
        )));
    }
    Ok(len)
}
