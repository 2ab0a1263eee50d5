//! Errors of reading and writing send streams.
//!
//! A read error always says where: which stream of a concatenated input (1-based), which
//! command in it (1-based; 0 is the stream header) and the byte offset in the whole input
//! of the structure that is wrong (the command header, the TLV, or the field).

use std::io;
use std::sync::Arc;

use thiserror::Error;

use crate::attribute::AttributeType;
use crate::command::CommandType;
use crate::header::StreamVersion;
use crate::path::PathProblem;

/// A send stream was refused while reading.
#[derive(Debug, Clone, Error)]
#[error("send stream {stream}, command {command}, byte offset {offset}: {kind}")]
pub struct StreamError {
    /// Which stream of a concatenated input, 1-based.
    pub stream: u64,
    /// Which command of that stream, 1-based; 0 is the stream header.
    pub command: u64,
    /// Byte offset, from the start of the input, of the structure that is wrong.
    pub offset: u64,
    /// What is wrong.
    #[source]
    pub kind: StreamErrorKind,
}

/// What is wrong with a stream.
#[derive(Debug, Clone, Error)]
pub enum StreamErrorKind {
    /// The input holds no byte at all (btrfs-progs: "empty stream is not considered valid").
    #[error("empty stream")]
    EmptyStream,
    /// The first 13 bytes are not `btrfs-stream\0`.
    #[error("bad magic {found:02x?}, expected \"btrfs-stream\\0\"")]
    BadMagic { found: [u8; 13] },
    /// The header names a version this crate does not speak.
    #[error("unsupported stream version {version} (supported: 1, 2)")]
    UnsupportedVersion { version: u32 },
    /// The input ends inside a stream header.
    #[error("truncated stream header: {available} of 17 bytes")]
    TruncatedStreamHeader { available: u64 },
    /// The input ends before the END command.
    #[error("stream ends without an END command")]
    MissingEnd,
    /// The input ends inside a command header.
    #[error("truncated command header: {available} of 10 bytes")]
    TruncatedCommandHeader { available: u64 },
    /// The command header announces more payload than the input holds.
    #[error("truncated command payload: {available} of {needed} bytes")]
    TruncatedPayload { needed: u64, available: u64 },
    /// The command is longer than the reader's `stream_command_bytes_max`.
    #[error("command of {bytes} bytes exceeds stream_command_bytes_max = {max}")]
    CommandTooLong { bytes: u64, max: u64 },
    /// The stored CRC does not match the command's bytes.
    #[error("crc32c mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    /// The command id is unknown (or UNSPEC, or a version 3 command).
    #[error("unknown command id {id}")]
    UnknownCommand { id: u16 },
    /// The command is newer than the stream's version.
    #[error("command {command} is not allowed in a version {version} stream")]
    CommandNotInVersion {
        command: CommandType,
        version: StreamVersion,
    },
    /// A TLV type is 0 or above the highest known attribute id.
    #[error("unknown attribute type {id}")]
    UnknownAttribute { id: u16 },
    /// A TLV header or value runs past the end of the command.
    #[error("truncated attribute: needs {needed} bytes, {available} left in the command")]
    TruncatedAttribute { needed: u64, available: u64 },
    /// A fixed-size attribute has the wrong length.
    #[error("attribute {attribute} has {actual} bytes, expected {expected}")]
    AttributeSize {
        attribute: AttributeType,
        expected: u64,
        actual: u64,
    },
    /// A required attribute is absent.
    #[error("command {command} lacks required attribute {attribute}")]
    MissingAttribute {
        command: CommandType,
        attribute: AttributeType,
    },
    /// The same attribute appears twice in one command.
    #[error("attribute {attribute} appears twice")]
    DuplicateAttribute { attribute: AttributeType },
    /// A known attribute that this command does not carry.
    #[error("command {command} does not carry attribute {attribute}")]
    UnexpectedAttribute {
        command: CommandType,
        attribute: AttributeType,
    },
    /// A path or name attribute that could escape the subvolume or be misread.
    #[error("attribute {attribute} refused: {problem}")]
    InvalidPath {
        attribute: AttributeType,
        problem: PathProblem,
    },
    /// Reading the input failed.
    #[error("read failed: {0}")]
    Io(#[source] Arc<io::Error>),
}

/// A command could not be written.
#[derive(Debug, Error)]
pub enum WriteError {
    /// Writing to the output failed. The output may hold a partial command.
    #[error("write failed: {0}")]
    Io(#[from] io::Error),
    /// The command is newer than the stream's version.
    #[error("command {command} is not allowed in a version {version} stream")]
    CommandNotInVersion {
        command: CommandType,
        version: StreamVersion,
    },
    /// An attribute value does not fit its u16 length field.
    #[error("attribute {attribute} of command {command} has {bytes} bytes, more than 65535")]
    AttributeTooLong {
        command: CommandType,
        attribute: AttributeType,
        bytes: u64,
    },
    /// The payload does not fit the u32 length field.
    #[error("command {command} payload of {bytes} bytes does not fit a u32 length")]
    CommandTooLong { command: CommandType, bytes: u64 },
    /// A path or name that a reader would refuse.
    #[error("command {command} attribute {attribute} refused: {problem}")]
    InvalidPath {
        command: CommandType,
        attribute: AttributeType,
        problem: PathProblem,
    },
    /// A command after END: start the next stream first.
    #[error("command {command} written after END; call begin_next_stream first")]
    AfterEnd { command: CommandType },
    /// `begin_next_stream` before the current stream was ended.
    #[error("the current stream has not been ended with END")]
    StreamNotEnded,
    /// A write chunk size of zero or one that does not fit the stream version.
    #[error("write chunk of {bytes} bytes is not allowed in a version {version} stream")]
    ChunkSize {
        bytes: usize,
        version: StreamVersion,
    },
}
