//! Errors of send and receive.
//!
//! [`SendError`] and [`ReceiveError`] say what failed and where; [`ReceiveError`] keeps the
//! stream position (command number and byte offset) of the command that could not be
//! applied, so a user sees one line naming it.

use thiserror::Error;
use tidefs_fs::records::RecordError;
use tidefs_fs::FsError;
use tidefs_store::StoreError;
use tidefs_stream::{StreamError, WriteError};

/// Why a send failed.
#[derive(Debug, Error)]
pub enum SendError {
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("writing the stream: {0}")]
    Write(#[from] WriteError),
    /// A record of the snapshot does not decode (tidefs-fs says which and why).
    #[error("snapshot tree {tree}: {source}")]
    Record {
        tree: u64,
        #[source]
        source: RecordError,
    },
    /// The snapshot's records decode but do not fit together (a path loop, a data block
    /// that fails its checksum).
    #[error("snapshot tree {tree}: {what}")]
    Corrupt { tree: u64, what: String },
    /// The caller asked for something that cannot be sent.
    #[error("{0}")]
    Invalid(String),
    /// The engine reached a state its invariants forbid (a bug).
    #[error("send engine invariant broken: {0}")]
    Internal(String),
    /// The resume token does not match what this pool would send.
    #[error("resume token refused: {0}")]
    Resume(String),
}

/// Why a receive failed. Errors while applying a command carry its position.
#[derive(Debug, Error)]
pub enum ReceiveError {
    /// The stream itself is malformed (the reader's error names command and offset).
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// A command could not be applied.
    #[error("send stream {stream}, command {command} ({name}), byte offset {offset}: {what}")]
    Apply {
        stream: u64,
        command: u64,
        name: &'static str,
        offset: u64,
        what: String,
    },
    /// The stream's parent snapshot is not among the target's snapshots.
    #[error("cannot find parent snapshot: {0}")]
    MissingParent(String),
    /// The target subvolume is not in a state this stream can be applied to.
    #[error("{0}")]
    Target(String),
    /// The stream was cut off; with resume enabled the partial state was kept.
    #[error("stream interrupted after command {applied}: {cause}; resume with `tidefs send --resume {token}`")]
    Interrupted {
        applied: u64,
        token: String,
        cause: String,
    },
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Send(#[from] SendError),
}

pub type SendResult<T> = std::result::Result<T, SendError>;
