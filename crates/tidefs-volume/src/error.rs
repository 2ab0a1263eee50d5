//! The volume layer's errors. The binary shows them as they are; the NBD export maps them
//! to NBD error codes in one place (`export.rs`).

use tidefs_store::{ErrorKind, StoreError};

/// What went wrong in the volume layer.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("invalid name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("volume {0:?} does not exist")]
    NoSuchVolume(String),
    #[error("snapshot {volume}@{snapshot} does not exist")]
    NoSuchSnapshot { volume: String, snapshot: String },
    #[error("{0} already exists")]
    Exists(String),
    #[error("invalid size {size}: {reason}")]
    InvalidSize { size: u64, reason: String },
    #[error(
        "volume {volume:?} has {count} snapshot(s); delete them first (or delete recursively)"
    )]
    HasSnapshots { volume: String, count: usize },
    #[error("range {offset}+{len} lies outside {volume} ({size} bytes)")]
    OutOfRange {
        volume: String,
        offset: u64,
        len: u64,
        size: u64,
    },
    #[error("{0} is read-only")]
    ReadOnly(String),
    #[error("{0} was deleted while in use")]
    Deleted(String),
    #[error("checksum mismatch in {volume} at byte offset {offset} (extent block {block}): expected {expected:#010x}, found {found:#010x}")]
    Checksum {
        volume: String,
        offset: u64,
        block: u64,
        expected: u32,
        found: u32,
    },
    #[error("corrupt {what} in {volume}: {detail}")]
    Corrupt {
        volume: String,
        what: &'static str,
        detail: String,
    },
    #[error("the volume catalog is corrupt: {0}")]
    CorruptCatalog(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl VolumeError {
    /// True when the pool ran out of space.
    pub fn is_no_space(&self) -> bool {
        matches!(self, VolumeError::Store(e) if e.kind() == ErrorKind::NoSpace)
    }
}

pub type Result<T, E = VolumeError> = std::result::Result<T, E>;
