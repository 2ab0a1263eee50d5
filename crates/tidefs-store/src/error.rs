//! The store's error type. Corruption and I/O errors name the block (and the tree and key
//! where they are known), so an operator can find what is damaged.

use crate::ids::TreeId;

/// What went wrong inside the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("I/O error while {op} at byte {offset}: {source}")]
    Io {
        op: &'static str,
        offset: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("checksum mismatch in {what} at block {block}: expected {expected:#010x}, found {found:#010x}")]
    ChecksumMismatch {
        what: &'static str,
        block: u64,
        expected: u32,
        found: u32,
    },
    #[error("corrupt {what} at block {block}: {detail}")]
    Corrupt {
        what: &'static str,
        block: u64,
        detail: String,
    },
    #[error("not a tidefs pool: no superblock copy verifies ({detail})")]
    NoValidSuperblock { detail: String },
    #[error(
        "pool format version {found} is not supported by this build (it reads version {supported})"
    )]
    UnsupportedVersion { found: u32, supported: u32 },
    #[error("pool is full: {needed_blocks} blocks needed, {free_blocks} free")]
    NoSpace {
        needed_blocks: u64,
        free_blocks: u64,
    },
    #[error("tree {0} does not exist")]
    NoSuchTree(TreeId),
    #[error("tree {0} is read-only")]
    ReadOnlyTree(TreeId),
    #[error("key of {len} bytes is longer than the limit of {max} bytes")]
    KeyTooLong { len: usize, max: usize },
    #[error("value of {len} bytes is longer than the limit of {max} bytes")]
    ValueTooLong { len: usize, max: usize },
    #[error("pool {path} is in use by another process ({holder})")]
    Locked { path: String, holder: String },
    #[error("pool stopped after a failed write and must be reopened: {0}")]
    Failed(String),
    #[error("invalid request: {0}")]
    Invalid(String),
}

impl StoreError {
    pub(crate) fn io(op: &'static str, offset: u64, source: std::io::Error) -> Self {
        StoreError::Io { op, offset, source }
    }

    pub(crate) fn corrupt(what: &'static str, block: u64, detail: impl Into<String>) -> Self {
        StoreError::Corrupt {
            what,
            block,
            detail: detail.into(),
        }
    }

    /// What a caller should do about this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::Io { .. } | StoreError::Failed(_) => ErrorKind::Io,
            StoreError::ChecksumMismatch { .. }
            | StoreError::Corrupt { .. }
            | StoreError::NoValidSuperblock { .. } => ErrorKind::Corrupt,
            StoreError::NoSpace { .. } => ErrorKind::NoSpace,
            StoreError::UnsupportedVersion { .. }
            | StoreError::NoSuchTree(_)
            | StoreError::ReadOnlyTree(_)
            | StoreError::KeyTooLong { .. }
            | StoreError::ValueTooLong { .. }
            | StoreError::Locked { .. }
            | StoreError::Invalid(_) => ErrorKind::Input,
        }
    }
}

/// The small public classification of errors: what the caller can do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The device failed; retrying after reopening may help.
    Io,
    /// Stored data does not verify.
    Corrupt,
    /// The pool is full.
    NoSpace,
    /// The request itself is wrong.
    Input,
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
