//! tidefs file system layer: the POSIX namespace over the store.
//!
//! A [`Fs`] lives in a pool: the tree registered as `fs.catalog` is its catalog of subvolumes and snapshots, and each
//! subvolume or snapshot is one store tree of inodes, directory entries, back-references,
//! xattrs, symlink targets and file extents. [`Subvol`] handles carry the operations by
//! inode number (shaped for FUSE); import, export and diff work on whole trees.
//! The record layout is specified in `FORMAT.md` and in the doc comments of `keys.rs`,
//! `inode.rs`, `dir.rs`, `file_data.rs`, `xattr.rs` and `catalog.rs`; [`records`] decodes
//! it for readers of raw subvolume trees (send).

mod backref;
mod caller;
mod catalog;
mod clock;
mod clone_range;
mod create;
mod cx;
mod diff;
mod dir;
mod error;
mod export;
mod file_data;
mod fs;
mod fsck;
mod host;
mod import;
mod inode;
mod keys;
pub mod limits;
pub mod records;
mod remove;
mod rename;
mod setattr;
mod subvol;
mod symlink;
mod xattr;

pub use backref::BackRef;
pub use caller::Caller;
pub use catalog::{check_catalog_name, SubvolId, SubvolInfo, SubvolKind};
pub use clock::{Clock, ManualClock, SystemClock, Timespec};
pub use diff::{diff, Change};
pub use dir::{DirEntry, ReaddirEntry};
pub use error::{errno, FsError, Result};
pub use export::export;
pub use file_data::{falloc, ExtentKind, FileExtent};
pub use fs::{Fs, SnapshotOptions, StatFs};
pub use fsck::{fsck_subvol, FsProblem};
pub use import::{import, import_into, CopyStats, Progress};
pub use inode::{FileKind, Inode, ROOT_INO};
pub use rename::rename_flags;
pub use setattr::{SetAttr, TimeSet};
pub use subvol::Subvol;
pub use uuid::Uuid;
pub use xattr::xattr_flags;
