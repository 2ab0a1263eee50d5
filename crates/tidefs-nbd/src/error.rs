//! Errors of the NBD layer. Which NBD error code each one becomes is decided in one
//! place, [`crate::errno`].

use std::io;

/// What a backend reports. The server turns it into an NBD error code for the client.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("export {name:?} does not exist")]
    NotFound { name: String },
    #[error("export is read-only")]
    ReadOnly,
    #[error("no space left to write {len} bytes at offset {offset}")]
    NoSpace { offset: u64, len: u64 },
    #[error("range {offset}+{len} lies outside the export of {size} bytes")]
    OutOfRange { offset: u64, len: u64, size: u64 },
    #[error("{operation} is not supported by this export")]
    Unsupported { operation: &'static str },
    #[error("I/O error at offset {offset}: {source}")]
    Io {
        offset: u64,
        #[source]
        source: io::Error,
    },
    #[error("export is shutting down")]
    ShuttingDown,
}

/// Why a request was refused before it reached the backend. Each becomes an NBD error
/// reply; the connection goes on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestRejection {
    #[error("unknown command type {command}")]
    UnknownCommand { command: u16 },
    #[error("flags {flags:#x} are not valid for command {command}")]
    InvalidFlags { command: u16, flags: u16 },
    #[error("export is read-only")]
    ReadOnly,
    #[error("{what} was not negotiated")]
    NotNegotiated { what: &'static str },
    #[error("offset and length must be zero for command {command}")]
    ReservedFieldsSet { command: u16 },
    #[error("length {len} exceeds the maximum block size {max_bytes}")]
    TooLong { len: u32, max_bytes: u32 },
    #[error(
        "offset {offset} or length {len} is not a multiple of the minimum block size {min_bytes}"
    )]
    Misaligned {
        offset: u64,
        len: u32,
        min_bytes: u32,
    },
    #[error("range {offset}+{len} lies outside the export of {size} bytes")]
    OutOfRange {
        offset: u64,
        len: u32,
        size: u64,
        /// Writes past the end are `NBD_ENOSPC`, everything else `NBD_EINVAL`.
        is_write: bool,
    },
    #[error("block status with zero length")]
    EmptyBlockStatus,
}

/// Why an option's payload could not be parsed. Answered with `NBD_REP_ERR_INVALID`
/// (or `NBD_REP_ERR_TOO_BIG`); the handshake goes on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OptionPayloadError {
    #[error("payload ends before its {field}")]
    Truncated { field: &'static str },
    #[error("{count} unexpected bytes after the payload")]
    TrailingBytes { count: usize },
    #[error("{field} is not valid UTF-8 or contains NUL")]
    BadString { field: &'static str },
    #[error("{field} is {len} bytes, over the {max_bytes}-byte string limit")]
    StringTooLong {
        field: &'static str,
        len: usize,
        max_bytes: usize,
    },
    #[error("{count} queries, over the limit of {max}")]
    TooManyQueries { count: u32, max: u32 },
}

/// A peer broke the protocol so that the connection cannot go on: the server hangs up.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("client flags {flags:#x} contain bits the server did not offer")]
    UnknownClientFlags { flags: u32 },
    #[error("option magic {magic:#x} is not IHAVEOPT")]
    BadOptionMagic { magic: u64 },
    #[error("option {option} declares a {len}-byte payload, over the {max_bytes}-byte limit")]
    OptionTooLarge {
        option: u32,
        len: u32,
        max_bytes: u32,
    },
    #[error("more than {max} options during the handshake")]
    TooManyOptions { max: u32 },
    #[error("NBD_OPT_EXPORT_NAME for {name:?} cannot be served: {reason}")]
    ExportNameRefused { name: String, reason: String },
    #[error("request magic {magic:#x} is not NBD_REQUEST_MAGIC")]
    BadRequestMagic { magic: u32 },
    #[error("write payload of {len} bytes exceeds the {max_bytes}-byte request limit")]
    WritePayloadTooLarge { len: u32, max_bytes: u32 },
}

/// Errors of the server runtime.
#[derive(Debug, thiserror::Error)]
pub enum NbdError {
    #[error("socket error: {0}")]
    Io(#[from] io::Error),
    #[error("protocol violation: {0}")]
    Protocol(#[from] ProtocolError),
}

/// Errors of the bundled client ([`crate::client::NbdClient`]).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("socket error: {0}")]
    Io(#[from] io::Error),
    #[error("server broke the protocol: {0}")]
    Protocol(String),
    #[error("server refused option {option} with reply {reply:#x}: {message}")]
    OptionRefused {
        option: u32,
        reply: u32,
        message: String,
    },
    #[error("command failed with NBD error {errno}: {message}")]
    CommandFailed { errno: u32, message: String },
}
