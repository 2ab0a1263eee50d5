//! The btrfs send stream wire format (versions 1 and 2).
//!
//! This crate knows nothing about the tidefs file system: it turns typed [`Command`]s into
//! bytes ([`SendStreamWriter`]), bytes into commands with strict validation
//! ([`SendStreamReader`]), and commands into the lines `btrfs receive --dump` prints
//! ([`DumpFormatter`], [`dump_stream`]). The format reference is
//! `shared/btrfs-send-stream.md`; the byte layouts are drawn beside each codec.

pub mod attribute;
pub mod command;
mod crc;
mod decode;
pub mod dump;
pub mod dump_time;
pub mod encode;
pub mod error;
pub mod header;
pub mod path;
pub mod reader;
pub mod schema;
pub mod writer;

pub use attribute::{AttributeType, Timespec, Uuid};
pub use command::{Command, CommandType};
pub use crc::{crc32c_raw, crc32c_raw_append, repair_crcs};
pub use dump::{dump_stream, DumpError, DumpFormatter};
pub use dump_time::DumpTimeZone;
pub use encode::{encode_command, encode_command_to_vec};
pub use error::{StreamError, StreamErrorKind, WriteError};
pub use header::StreamVersion;
pub use path::PathProblem;
pub use reader::{ReaderLimits, SendStreamReader, STREAM_COMMAND_BYTES_MAX};
pub use writer::{
    SendStreamWriter, WRITE_CHUNK_BYTES_DEFAULT_V2, WRITE_CHUNK_BYTES_MAX, WRITE_CHUNK_BYTES_MAX_V1,
};
