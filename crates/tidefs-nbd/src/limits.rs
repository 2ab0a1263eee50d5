//! Every limit the NBD layer enforces, in one place, each named with its unit last.
//!
//! A peer that exceeds a limit gets the error the protocol prescribes where one exists
//! (`NBD_EINVAL`, `NBD_REP_ERR_INVALID`, `NBD_REP_ERR_TOO_BIG`), and a hard disconnect
//! only where the stream cannot be resynchronised without buffering unbounded data.

/// Largest `NBD_CMD_READ` / `NBD_CMD_WRITE` payload accepted in one request.
///
/// 32 MiB is the size the protocol says no peer should treat as a denial of service, and
/// the largest that qemu and libnbd clients send; it bounds the per-connection buffer.
pub const NBD_REQUEST_BYTES_MAX: u32 = 32 * 1024 * 1024;

/// Largest option payload read during the handshake. An option that declares more is a
/// denial-of-service attempt (the longest legal payload is a few 4 KiB strings) and ends
/// the connection, since skipping it would mean reading unbounded data.
pub const OPTION_PAYLOAD_BYTES_MAX: u32 = 64 * 1024;

/// Longest string the protocol allows (export names, descriptions, context names,
/// error messages).
pub const STRING_BYTES_MAX: usize = 4096;

/// Most metadata-context queries accepted in one `NBD_OPT_{LIST,SET}_META_CONTEXT`.
pub const META_CONTEXT_QUERIES_MAX: u32 = 128;

/// Most options one client may send before entering transmission. `nbdinfo --list`
/// sends a handful per export; a client looping forever is cut off.
pub const HANDSHAKE_OPTIONS_MAX: u32 = 4096;

/// Most descriptors in one `NBD_REPLY_TYPE_BLOCK_STATUS` chunk. The protocol lets a server
/// answer a block-status query with fewer extents than the range needs; clients ask again
/// from where the reply stopped.
pub const BLOCK_STATUS_EXTENTS_MAX: usize = 64 * 1024;

/// Replies are gathered and written to the socket in one call when this much is pending
/// or when the next read would block, whichever comes first.
pub const REPLY_BATCH_BYTES_MAX: usize = 256 * 1024;

/// Size of each connection's input buffer.
pub const INPUT_BUFFER_BYTES: usize = 256 * 1024;
