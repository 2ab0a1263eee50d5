//! The file system's error type, and the one place that maps errors to errno values.
//!
//! Variants carry what and where (inode, name, offset) so that a message alone tells an
//! operator what failed; [`FsError::errno`] is what the FUSE adapter returns to the kernel.

use tidefs_store::{ErrorKind, StoreError};

/// Everything an operation of this crate can fail with.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("{0}: no such file or directory")]
    NotFound(String),
    #[error("{0}: already exists")]
    Exists(String),
    #[error("{0}: directory not empty")]
    NotEmpty(String),
    #[error("{0}: is a directory")]
    IsDir(String),
    #[error("{0}: not a directory")]
    NotDir(String),
    #[error("invalid argument: {0}")]
    Invalid(String),
    #[error("name of {len} bytes is longer than the limit of {max} bytes")]
    NameTooLong { len: usize, max: usize },
    #[error("{0}: crosses a subvolume boundary")]
    CrossDevice(String),
    #[error("no space left: {0}")]
    NoSpace(String),
    #[error("{0}: read-only (snapshots cannot be changed)")]
    ReadOnly(String),
    #[error("{0}: no such attribute")]
    NoAttr(String),
    #[error("attribute value of {len} bytes is larger than the limit of {max} bytes")]
    AttrTooBig { len: usize, max: usize },
    #[error("{0}: result out of range")]
    Range(String),
    #[error("{0}: operation not permitted")]
    NotPermitted(String),
    #[error("{0}: busy")]
    Busy(String),
    #[error("inode {ino}: would exceed {max} links")]
    TooManyLinks { ino: u64, max: u32 },
    #[error("inode {ino}: offset {offset} is past the largest file size {max}")]
    FileTooBig { ino: u64, offset: u64, max: u64 },
    #[error("{0}: operation not supported")]
    NotSupported(String),
    #[error("{0}: too many levels of directories or symbolic links")]
    Loop(String),
    #[error("inode {ino}: data at offset {offset} does not verify: {detail}")]
    DataCorrupt {
        ino: u64,
        offset: u64,
        detail: String,
    },
    #[error("corrupt file system record in tree {tree}: {detail}")]
    Corrupt { tree: u64, detail: String },
    #[error("{op} {path}: {source}")]
    Host {
        op: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    // Catalog errors: subvolumes and snapshots.
    #[error("subvolume {0}: not found")]
    SubvolumeNotFound(String),
    #[error("snapshot {0}: not found")]
    SnapshotNotFound(String),
    #[error("subvolume {0}: already exists")]
    SubvolumeExists(String),
    #[error("snapshot {0}: already exists")]
    SnapshotExists(String),
    #[error("subvolume {name} still has {count} snapshot(s); delete them first")]
    HasSnapshots { name: String, count: usize },
    #[error("bad name {name:?}: {why}")]
    BadName { name: String, why: &'static str },
    #[error("not a tidefs file system: {0}")]
    NotFormatted(String),
}

pub type Result<T, E = FsError> = std::result::Result<T, E>;

/// Linux errno values (asm-generic), spelled out so this crate needs no libc.
pub mod errno {
    pub const EPERM: i32 = 1;
    pub const ENOENT: i32 = 2;
    pub const EIO: i32 = 5;
    pub const E2BIG: i32 = 7;
    pub const EBUSY: i32 = 16;
    pub const EEXIST: i32 = 17;
    pub const EXDEV: i32 = 18;
    pub const ENOTDIR: i32 = 20;
    pub const EISDIR: i32 = 21;
    pub const EINVAL: i32 = 22;
    pub const EFBIG: i32 = 27;
    pub const ENOSPC: i32 = 28;
    pub const EROFS: i32 = 30;
    pub const EMLINK: i32 = 31;
    pub const ERANGE: i32 = 34;
    pub const ENAMETOOLONG: i32 = 36;
    pub const ENOTEMPTY: i32 = 39;
    pub const ELOOP: i32 = 40;
    pub const ENODATA: i32 = 61;
    pub const EOPNOTSUPP: i32 = 95;
}

impl FsError {
    /// The errno Linux returns for this error. The only errno mapping of the crate.
    pub fn errno(&self) -> i32 {
        use errno::*;
        match self {
            FsError::NotFound(_) | FsError::SubvolumeNotFound(_) | FsError::SnapshotNotFound(_) => {
                ENOENT
            }
            FsError::Exists(_) | FsError::SubvolumeExists(_) | FsError::SnapshotExists(_) => EEXIST,
            FsError::NotEmpty(_) | FsError::HasSnapshots { .. } => ENOTEMPTY,
            FsError::IsDir(_) => EISDIR,
            FsError::NotDir(_) => ENOTDIR,
            FsError::Invalid(_) | FsError::BadName { .. } | FsError::NotFormatted(_) => EINVAL,
            FsError::NameTooLong { .. } => ENAMETOOLONG,
            FsError::CrossDevice(_) => EXDEV,
            FsError::NoSpace(_) => ENOSPC,
            FsError::ReadOnly(_) => EROFS,
            FsError::NoAttr(_) => ENODATA,
            FsError::AttrTooBig { .. } => E2BIG,
            FsError::Range(_) => ERANGE,
            FsError::NotPermitted(_) => EPERM,
            FsError::Busy(_) => EBUSY,
            FsError::TooManyLinks { .. } => EMLINK,
            FsError::FileTooBig { .. } => EFBIG,
            FsError::NotSupported(_) => EOPNOTSUPP,
            FsError::Loop(_) => ELOOP,
            FsError::DataCorrupt { .. } | FsError::Corrupt { .. } => EIO,
            FsError::Host { source, .. } => source.raw_os_error().unwrap_or(EIO),
            FsError::Store(e) => match (e, e.kind()) {
                (StoreError::ReadOnlyTree(_), _) => EROFS,
                // A handle whose subvolume was deleted meanwhile.
                (StoreError::NoSuchTree(_), _) => ENOENT,
                (_, ErrorKind::NoSpace) => ENOSPC,
                (StoreError::KeyTooLong { .. }, _) => ENAMETOOLONG,
                (StoreError::ValueTooLong { .. }, _) => E2BIG,
                _ => EIO,
            },
        }
    }

    pub(crate) fn corrupt(tree: tidefs_store::TreeId, detail: impl Into<String>) -> FsError {
        FsError::Corrupt {
            tree: tree.0,
            detail: detail.into(),
        }
    }

    /// A record of `tree` that does not decode.
    pub(crate) fn record(tree: tidefs_store::TreeId, e: crate::records::RecordError) -> FsError {
        FsError::corrupt(tree, e.to_string())
    }

    pub(crate) fn host(
        op: &'static str,
        path: &std::path::Path,
        source: std::io::Error,
    ) -> FsError {
        FsError::Host {
            op,
            path: path.display().to_string(),
            source,
        }
    }
}
