//! Transmission-phase requests: decoding the fixed header and checking a request against
//! what the handshake negotiated, before anything reaches the backend.
//!
//! Request header (28 bytes), followed by `length` bytes of data for `NBD_CMD_WRITE` only:
//!
//! ```text
//! 0          4          6         8                16               24          28
//! | magic u32 | flags u16 | type u16 | handle u64    | offset u64      | length u32 |
//!   0x25609513
//! ```

use crate::error::{ProtocolError, RequestRejection};
use crate::export::BlockSizeConstraints;
use crate::reply::{be_u32, be_u64};
use crate::wire;

pub const REQUEST_HEADER_BYTES: usize = 28;

/// A request header as it came off the wire (only the magic has been checked).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestHeader {
    pub flags: u16,
    pub command: u16,
    pub handle: u64,
    pub offset: u64,
    pub length: u32,
}

impl RequestHeader {
    /// A wrong magic means the stream is out of step; nothing after it can be trusted.
    pub fn decode(bytes: &[u8; REQUEST_HEADER_BYTES]) -> Result<Self, ProtocolError> {
        let magic = be_u32(&bytes[0..4]);
        if magic != wire::REQUEST_MAGIC {
            return Err(ProtocolError::BadRequestMagic { magic });
        }
        Ok(Self {
            flags: u16::from_be_bytes([bytes[4], bytes[5]]),
            command: u16::from_be_bytes([bytes[6], bytes[7]]),
            handle: be_u64(&bytes[8..16]),
            offset: be_u64(&bytes[16..24]),
            length: be_u32(&bytes[24..28]),
        })
    }

    pub fn encode(&self) -> [u8; REQUEST_HEADER_BYTES] {
        let mut bytes = [0u8; REQUEST_HEADER_BYTES];
        bytes[0..4].copy_from_slice(&wire::REQUEST_MAGIC.to_be_bytes());
        bytes[4..6].copy_from_slice(&self.flags.to_be_bytes());
        bytes[6..8].copy_from_slice(&self.command.to_be_bytes());
        bytes[8..16].copy_from_slice(&self.handle.to_be_bytes());
        bytes[16..24].copy_from_slice(&self.offset.to_be_bytes());
        bytes[24..28].copy_from_slice(&self.length.to_be_bytes());
        bytes
    }

    /// Bytes of data that follow the header on the wire. Only writes carry data, and the
    /// data follows even when the request is going to be refused.
    pub fn payload_bytes(&self) -> u32 {
        if self.command == wire::CMD_WRITE {
            self.length
        } else {
            0
        }
    }
}

/// A request that passed every check: in range, aligned, allowed on this export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Read {
        offset: u64,
        len: u32,
        dont_fragment: bool,
    },
    Write {
        offset: u64,
        len: u32,
        fua: bool,
    },
    Disconnect,
    Flush,
    Trim {
        offset: u64,
        len: u32,
        fua: bool,
    },
    Cache {
        offset: u64,
        len: u32,
    },
    WriteZeroes {
        offset: u64,
        len: u32,
        may_punch_hole: bool,
        fua: bool,
    },
    BlockStatus {
        offset: u64,
        len: u32,
        req_one: bool,
    },
}

/// What requests are checked against: the export and what the handshake agreed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestContext {
    pub export_size: u64,
    pub read_only: bool,
    pub structured_replies: bool,
    /// `base:allocation` was selected, so `NBD_CMD_BLOCK_STATUS` is allowed.
    pub block_status: bool,
    /// As advertised (the maximum already capped at the server's request limit).
    pub constraints: BlockSizeConstraints,
}

/// Flags each command accepts. FUA is valid on every command once `NBD_FLAG_SEND_FUA` is
/// advertised (which this server always does); the server may then ignore it.
fn allowed_flags(command: u16, context: &RequestContext) -> Option<u16> {
    let flags = match command {
        wire::CMD_READ if context.structured_replies => wire::CMD_FLAG_FUA | wire::CMD_FLAG_DF,
        wire::CMD_READ => wire::CMD_FLAG_FUA,
        wire::CMD_WRITE | wire::CMD_FLUSH | wire::CMD_TRIM | wire::CMD_CACHE => wire::CMD_FLAG_FUA,
        wire::CMD_WRITE_ZEROES => wire::CMD_FLAG_FUA | wire::CMD_FLAG_NO_HOLE,
        wire::CMD_BLOCK_STATUS => wire::CMD_FLAG_FUA | wire::CMD_FLAG_REQ_ONE,
        wire::CMD_DISC => u16::MAX,
        _ => return None,
    };
    Some(flags)
}

/// Checks a request in the order that gives the most useful error: unknown command,
/// bad flags, read-only, not negotiated, reserved fields, length, alignment, range.
pub fn validate(
    header: &RequestHeader,
    context: &RequestContext,
) -> Result<Command, RequestRejection> {
    let command = header.command;
    let allowed =
        allowed_flags(command, context).ok_or(RequestRejection::UnknownCommand { command })?;
    if header.flags & !allowed != 0 {
        return Err(RequestRejection::InvalidFlags {
            command,
            flags: header.flags,
        });
    }
    let is_write = matches!(
        command,
        wire::CMD_WRITE | wire::CMD_TRIM | wire::CMD_WRITE_ZEROES
    );
    if is_write && context.read_only {
        return Err(RequestRejection::ReadOnly);
    }
    match command {
        wire::CMD_DISC => return Ok(Command::Disconnect),
        wire::CMD_FLUSH if header.offset != 0 || header.length != 0 => {
            return Err(RequestRejection::ReservedFieldsSet { command });
        }
        wire::CMD_FLUSH => return Ok(Command::Flush),
        wire::CMD_BLOCK_STATUS if !context.block_status => {
            return Err(RequestRejection::NotNegotiated {
                what: "the base:allocation metadata context",
            });
        }
        _ => {}
    }
    check_extent(header, context)?;
    let (offset, len) = (header.offset, header.length);
    let has = |flag| header.flags & flag != 0;
    Ok(match command {
        wire::CMD_READ => Command::Read {
            offset,
            len,
            dont_fragment: has(wire::CMD_FLAG_DF),
        },
        wire::CMD_WRITE => Command::Write {
            offset,
            len,
            fua: has(wire::CMD_FLAG_FUA),
        },
        wire::CMD_TRIM => Command::Trim {
            offset,
            len,
            fua: has(wire::CMD_FLAG_FUA),
        },
        wire::CMD_CACHE => Command::Cache { offset, len },
        wire::CMD_WRITE_ZEROES => Command::WriteZeroes {
            offset,
            len,
            may_punch_hole: !has(wire::CMD_FLAG_NO_HOLE),
            fua: has(wire::CMD_FLAG_FUA),
        },
        wire::CMD_BLOCK_STATUS if len == 0 => return Err(RequestRejection::EmptyBlockStatus),
        wire::CMD_BLOCK_STATUS => Command::BlockStatus {
            offset,
            len,
            req_one: has(wire::CMD_FLAG_REQ_ONE),
        },
        _ => unreachable!("allowed_flags accepted only the commands above"),
    })
}

/// Length, alignment and range checks for commands that address a byte range.
fn check_extent(header: &RequestHeader, context: &RequestContext) -> Result<(), RequestRejection> {
    let (offset, len) = (header.offset, header.length);
    let constraints = context.constraints;
    // The maximum guards the payload buffers, so only data-carrying commands obey it.
    // qemu sends trim and write-zeroes of up to 2 GiB whatever maximum is advertised,
    // and the server handles those without buffering.
    let carries_data = matches!(header.command, wire::CMD_READ | wire::CMD_WRITE);
    if carries_data && len > constraints.maximum_bytes() {
        return Err(RequestRejection::TooLong {
            len,
            max_bytes: constraints.maximum_bytes(),
        });
    }
    let min = u64::from(constraints.minimum_bytes());
    if offset % min != 0 || u64::from(len) % min != 0 {
        return Err(RequestRejection::Misaligned {
            offset,
            len,
            min_bytes: constraints.minimum_bytes(),
        });
    }
    let in_range = offset
        .checked_add(u64::from(len))
        .is_some_and(|end| end <= context.export_size);
    if !in_range {
        return Err(RequestRejection::OutOfRange {
            offset,
            len,
            size: context.export_size,
            is_write: matches!(header.command, wire::CMD_WRITE | wire::CMD_WRITE_ZEROES),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZE: u64 = 1 << 20;

    fn context() -> RequestContext {
        RequestContext {
            export_size: SIZE,
            read_only: false,
            structured_replies: true,
            block_status: true,
            constraints: BlockSizeConstraints::new(512, 4096, 1 << 16),
        }
    }

    fn header(command: u16, flags: u16, offset: u64, length: u32) -> RequestHeader {
        RequestHeader {
            flags,
            command,
            handle: 42,
            offset,
            length,
        }
    }

    #[test]
    fn header_bytes_are_pinned_and_round_trip() {
        let h = header(wire::CMD_WRITE, wire::CMD_FLAG_FUA, 0x200, 0x1000);
        #[rustfmt::skip]
        let expected = [
            0x25, 0x60, 0x95, 0x13, 0, 1, 0, 1,
            0, 0, 0, 0, 0, 0, 0, 42,
            0, 0, 0, 0, 0, 0, 2, 0,
            0, 0, 0x10, 0,
        ];
        assert_eq!(h.encode(), expected);
        assert_eq!(RequestHeader::decode(&expected).unwrap(), h);
        assert_eq!(h.payload_bytes(), 0x1000);
        assert_eq!(header(wire::CMD_READ, 0, 0, 10).payload_bytes(), 0);
    }

    #[test]
    fn bad_magic_is_a_protocol_error() {
        let mut bytes = header(wire::CMD_READ, 0, 0, 512).encode();
        bytes[0] = 0x26;
        assert_eq!(
            RequestHeader::decode(&bytes),
            Err(ProtocolError::BadRequestMagic { magic: 0x2660_9513 })
        );
    }

    #[test]
    fn every_command_validates() {
        let ctx = context();
        let ok = |h| validate(&h, &ctx).unwrap();
        assert_eq!(
            ok(header(wire::CMD_READ, wire::CMD_FLAG_DF, 512, 1024)),
            Command::Read {
                offset: 512,
                len: 1024,
                dont_fragment: true
            }
        );
        assert_eq!(
            ok(header(wire::CMD_WRITE, wire::CMD_FLAG_FUA, 0, 512)),
            Command::Write {
                offset: 0,
                len: 512,
                fua: true
            }
        );
        assert_eq!(ok(header(wire::CMD_DISC, 0, 0, 0)), Command::Disconnect);
        assert_eq!(ok(header(wire::CMD_FLUSH, 0, 0, 0)), Command::Flush);
        assert_eq!(
            ok(header(wire::CMD_TRIM, 0, 0, 1 << 19)),
            Command::Trim {
                offset: 0,
                len: 1 << 19,
                fua: false
            }
        );
        assert_eq!(
            ok(header(wire::CMD_CACHE, 0, 0, 512)),
            Command::Cache {
                offset: 0,
                len: 512
            }
        );
        assert_eq!(
            ok(header(
                wire::CMD_WRITE_ZEROES,
                wire::CMD_FLAG_NO_HOLE,
                0,
                1 << 19
            )),
            Command::WriteZeroes {
                offset: 0,
                len: 1 << 19,
                may_punch_hole: false,
                fua: false
            }
        );
        assert_eq!(
            ok(header(
                wire::CMD_BLOCK_STATUS,
                wire::CMD_FLAG_REQ_ONE,
                0,
                512
            )),
            Command::BlockStatus {
                offset: 0,
                len: 512,
                req_one: true
            }
        );
    }

    #[test]
    fn unknown_command_and_flags_are_einval() {
        let ctx = context();
        assert_eq!(
            validate(&header(9, 0, 0, 0), &ctx),
            Err(RequestRejection::UnknownCommand { command: 9 })
        );
        assert_eq!(
            validate(&header(wire::CMD_WRITE, wire::CMD_FLAG_DF, 0, 512), &ctx),
            Err(RequestRejection::InvalidFlags {
                command: wire::CMD_WRITE,
                flags: wire::CMD_FLAG_DF
            })
        );
        assert!(matches!(
            validate(
                &header(wire::CMD_WRITE_ZEROES, wire::CMD_FLAG_FAST_ZERO, 0, 512),
                &ctx
            ),
            Err(RequestRejection::InvalidFlags { .. })
        ));
        assert!(matches!(
            validate(&header(wire::CMD_READ, 1 << 15, 0, 512), &ctx),
            Err(RequestRejection::InvalidFlags { .. })
        ));
    }

    #[test]
    fn dont_fragment_needs_structured_replies() {
        let ctx = RequestContext {
            structured_replies: false,
            ..context()
        };
        assert!(matches!(
            validate(&header(wire::CMD_READ, wire::CMD_FLAG_DF, 0, 512), &ctx),
            Err(RequestRejection::InvalidFlags { .. })
        ));
    }

    #[test]
    fn read_only_refuses_every_write_kind() {
        let ctx = RequestContext {
            read_only: true,
            ..context()
        };
        for command in [wire::CMD_WRITE, wire::CMD_TRIM, wire::CMD_WRITE_ZEROES] {
            assert_eq!(
                validate(&header(command, 0, 0, 512), &ctx),
                Err(RequestRejection::ReadOnly)
            );
        }
        assert!(validate(&header(wire::CMD_READ, 0, 0, 512), &ctx).is_ok());
        assert!(validate(&header(wire::CMD_FLUSH, 0, 0, 0), &ctx).is_ok());
    }

    #[test]
    fn block_status_needs_a_context_and_a_length() {
        let ctx = RequestContext {
            block_status: false,
            ..context()
        };
        assert!(matches!(
            validate(&header(wire::CMD_BLOCK_STATUS, 0, 0, 512), &ctx),
            Err(RequestRejection::NotNegotiated { .. })
        ));
        assert_eq!(
            validate(&header(wire::CMD_BLOCK_STATUS, 0, 0, 0), &context()),
            Err(RequestRejection::EmptyBlockStatus)
        );
    }

    #[test]
    fn flush_with_offset_or_length_is_refused() {
        assert!(matches!(
            validate(&header(wire::CMD_FLUSH, 0, 512, 0), &context()),
            Err(RequestRejection::ReservedFieldsSet { .. })
        ));
        assert!(matches!(
            validate(&header(wire::CMD_FLUSH, 0, 0, 512), &context()),
            Err(RequestRejection::ReservedFieldsSet { .. })
        ));
    }

    #[test]
    fn oversize_reads_and_writes_are_refused_but_trim_is_not() {
        let ctx = context();
        for command in [wire::CMD_READ, wire::CMD_WRITE] {
            assert_eq!(
                validate(&header(command, 0, 0, (1 << 16) + 512), &ctx),
                Err(RequestRejection::TooLong {
                    len: (1 << 16) + 512,
                    max_bytes: 1 << 16
                })
            );
        }
        assert!(validate(&header(wire::CMD_TRIM, 0, 0, 1 << 20), &ctx).is_ok());
        assert!(validate(&header(wire::CMD_WRITE_ZEROES, 0, 0, 1 << 20), &ctx).is_ok());
    }

    #[test]
    fn misaligned_offset_or_length_is_refused() {
        let ctx = context();
        for (offset, len) in [(1, 512), (512, 100), (4095, 4096)] {
            for command in [wire::CMD_READ, wire::CMD_WRITE, wire::CMD_TRIM] {
                assert!(
                    matches!(
                        validate(&header(command, 0, offset, len), &ctx),
                        Err(RequestRejection::Misaligned { .. })
                    ),
                    "command {command} at {offset}+{len}"
                );
            }
        }
    }

    #[test]
    fn out_of_range_is_enospc_for_writes_einval_otherwise() {
        let ctx = context();
        let past_end = |command, offset| validate(&header(command, 0, offset, 1024), &ctx);
        assert!(matches!(
            past_end(wire::CMD_WRITE, SIZE - 512),
            Err(RequestRejection::OutOfRange { is_write: true, .. })
        ));
        assert!(matches!(
            past_end(wire::CMD_WRITE_ZEROES, SIZE),
            Err(RequestRejection::OutOfRange { is_write: true, .. })
        ));
        for command in [
            wire::CMD_READ,
            wire::CMD_TRIM,
            wire::CMD_BLOCK_STATUS,
            wire::CMD_CACHE,
        ] {
            assert!(matches!(
                past_end(command, SIZE - 512),
                Err(RequestRejection::OutOfRange {
                    is_write: false,
                    ..
                })
            ));
        }
        // An offset near u64::MAX must not wrap around into range.
        let near_max = u64::MAX - 511;
        assert!(matches!(
            past_end(wire::CMD_READ, near_max),
            Err(RequestRejection::OutOfRange { .. })
        ));
        assert!(validate(&header(wire::CMD_READ, 0, SIZE - 1024, 1024), &ctx).is_ok());
        assert!(validate(&header(wire::CMD_READ, 0, SIZE, 0), &ctx).is_ok());
    }
}
