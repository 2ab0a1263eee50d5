//! Transmission-phase replies: encoders (server side) and header decoders (client side).
//! Encoders append to a `Vec<u8>`; data-carrying replies reserve the data bytes and
//! return their range, so the backend reads straight into the outgoing buffer.
//!
//! Simple reply (16 bytes, then the data of a successful `NBD_CMD_READ`):
//!
//! ```text
//! 0          4          8                16
//! | magic u32 | error u32 | handle u64    | data…
//!   0x67446698
//! ```
//!
//! Structured reply chunk (20-byte header, then `length` bytes of payload):
//!
//! ```text
//! 0          4          6         8                16           20
//! | magic u32 | flags u16 | type u16 | handle u64    | length u32  | payload…
//!   0x668e33ef
//! ```
//!
//! Chunk payloads used here:
//!
//! ```text
//! OFFSET_DATA  (1):      | offset u64 | data (length - 8 bytes) |
//! OFFSET_HOLE  (2):      | offset u64 | hole size u32 |
//! BLOCK_STATUS (5):      | context id u32 | n × (extent length u32 | status flags u32) |
//! ERROR   (0x8001):      | error u32 | message length u16 | message |
//! NONE         (0):      (empty; always with the DONE flag)
//! ```

use std::ops::Range;

use crate::limits::STRING_BYTES_MAX;
use crate::wire;

pub const SIMPLE_REPLY_BYTES: usize = 16;
pub const CHUNK_HEADER_BYTES: usize = 20;

/// A simple reply with no data (any reply but a successful read).
pub fn put_simple(out: &mut Vec<u8>, handle: u64, error: u32) {
    out.extend_from_slice(&wire::SIMPLE_REPLY_MAGIC.to_be_bytes());
    out.extend_from_slice(&error.to_be_bytes());
    out.extend_from_slice(&handle.to_be_bytes());
}

/// A successful simple read reply; returns where the `len` data bytes go.
pub fn put_simple_with_data(out: &mut Vec<u8>, handle: u64, len: usize) -> Range<usize> {
    put_simple(out, handle, 0);
    reserve(out, len)
}

fn put_chunk_header(out: &mut Vec<u8>, flags: u16, kind: u16, handle: u64, length: u32) {
    out.extend_from_slice(&wire::STRUCTURED_REPLY_MAGIC.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&handle.to_be_bytes());
    out.extend_from_slice(&length.to_be_bytes());
}

/// An `OFFSET_DATA` chunk; returns where the `len` data bytes go.
pub fn put_offset_data(
    out: &mut Vec<u8>,
    flags: u16,
    handle: u64,
    offset: u64,
    len: u32,
) -> Range<usize> {
    let length = len
        .checked_add(8)
        .expect("read lengths are capped far below u32::MAX");
    put_chunk_header(out, flags, wire::REPLY_TYPE_OFFSET_DATA, handle, length);
    out.extend_from_slice(&offset.to_be_bytes());
    reserve(out, len as usize)
}

/// An `OFFSET_HOLE` chunk: `hole_len` bytes at `offset` read as zeroes.
pub fn put_offset_hole(out: &mut Vec<u8>, flags: u16, handle: u64, offset: u64, hole_len: u32) {
    assert!(hole_len > 0, "the protocol forbids empty holes");
    put_chunk_header(out, flags, wire::REPLY_TYPE_OFFSET_HOLE, handle, 12);
    out.extend_from_slice(&offset.to_be_bytes());
    out.extend_from_slice(&hole_len.to_be_bytes());
}

/// One extent of a block status reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusDescriptor {
    pub len: u32,
    pub flags: u32,
}

/// A `BLOCK_STATUS` chunk for one metadata context.
pub fn put_block_status(
    out: &mut Vec<u8>,
    flags: u16,
    handle: u64,
    context_id: u32,
    descriptors: &[StatusDescriptor],
) {
    assert!(
        !descriptors.is_empty(),
        "the protocol requires one descriptor"
    );
    let length = 4 + 8 * descriptors.len();
    let length = u32::try_from(length).expect("descriptor count is capped");
    put_chunk_header(out, flags, wire::REPLY_TYPE_BLOCK_STATUS, handle, length);
    out.extend_from_slice(&context_id.to_be_bytes());
    for descriptor in descriptors {
        assert!(descriptor.len > 0, "the protocol forbids empty extents");
        out.extend_from_slice(&descriptor.len.to_be_bytes());
        out.extend_from_slice(&descriptor.flags.to_be_bytes());
    }
}

/// An `ERROR` chunk with a human-readable message (cut to the protocol's string limit).
pub fn put_error(out: &mut Vec<u8>, flags: u16, handle: u64, error: u32, message: &str) {
    assert!(error != 0, "an error chunk needs a non-zero error");
    let message = truncate_on_char_boundary(message, STRING_BYTES_MAX);
    let message_len = message.len() as u16;
    put_chunk_header(
        out,
        flags,
        wire::REPLY_TYPE_ERROR,
        handle,
        6 + u32::from(message_len),
    );
    out.extend_from_slice(&error.to_be_bytes());
    out.extend_from_slice(&message_len.to_be_bytes());
    out.extend_from_slice(message.as_bytes());
}

/// The final `NONE` chunk that ends a structured reply.
pub fn put_none(out: &mut Vec<u8>, handle: u64) {
    put_chunk_header(out, wire::REPLY_FLAG_DONE, wire::REPLY_TYPE_NONE, handle, 0);
}

fn reserve(out: &mut Vec<u8>, len: usize) -> Range<usize> {
    let start = out.len();
    out.resize(start + len, 0);
    start..start + len
}

pub fn truncate_on_char_boundary(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A decoded simple reply header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimpleReplyHeader {
    pub error: u32,
    pub handle: u64,
}

impl SimpleReplyHeader {
    /// `None` when the magic is not the simple reply magic.
    pub fn decode(bytes: &[u8; SIMPLE_REPLY_BYTES]) -> Option<Self> {
        if be_u32(&bytes[0..4]) != wire::SIMPLE_REPLY_MAGIC {
            return None;
        }
        Some(Self {
            error: be_u32(&bytes[4..8]),
            handle: be_u64(&bytes[8..16]),
        })
    }
}

/// A decoded structured reply chunk header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkHeader {
    pub flags: u16,
    pub kind: u16,
    pub handle: u64,
    pub length: u32,
}

impl ChunkHeader {
    /// `None` when the magic is not the structured reply magic.
    pub fn decode(bytes: &[u8; CHUNK_HEADER_BYTES]) -> Option<Self> {
        if be_u32(&bytes[0..4]) != wire::STRUCTURED_REPLY_MAGIC {
            return None;
        }
        Some(Self {
            flags: u16::from_be_bytes([bytes[4], bytes[5]]),
            kind: u16::from_be_bytes([bytes[6], bytes[7]]),
            handle: be_u64(&bytes[8..16]),
            length: be_u32(&bytes[16..20]),
        })
    }

    pub fn is_done(&self) -> bool {
        self.flags & wire::REPLY_FLAG_DONE != 0
    }
}

pub(crate) fn be_u32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes(bytes.try_into().expect("4 bytes"))
}

pub(crate) fn be_u64(bytes: &[u8]) -> u64 {
    u64::from_be_bytes(bytes.try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_reply_bytes_are_pinned() {
        let mut out = Vec::new();
        put_simple(&mut out, 0x0102_0304_0506_0708, 22);
        assert_eq!(
            out,
            [0x67, 0x44, 0x66, 0x98, 0, 0, 0, 22, 1, 2, 3, 4, 5, 6, 7, 8]
        );
        let header = SimpleReplyHeader::decode(out[..16].try_into().unwrap()).unwrap();
        assert_eq!(header.error, 22);
        assert_eq!(header.handle, 0x0102_0304_0506_0708);
    }

    #[test]
    fn simple_read_reserves_data_after_header() {
        let mut out = Vec::new();
        let range = put_simple_with_data(&mut out, 9, 5);
        assert_eq!(range, 16..21);
        assert_eq!(out.len(), 21);
    }

    #[test]
    fn offset_data_chunk_bytes_are_pinned() {
        let mut out = Vec::new();
        let range = put_offset_data(&mut out, wire::REPLY_FLAG_DONE, 7, 0x1000, 3);
        out[range].copy_from_slice(b"abc");
        #[rustfmt::skip]
        let expected = [
            0x66, 0x8e, 0x33, 0xef, // magic
            0, 1, // flags: DONE
            0, 1, // type: OFFSET_DATA
            0, 0, 0, 0, 0, 0, 0, 7, // handle
            0, 0, 0, 11, // length: 8 + 3
            0, 0, 0, 0, 0, 0, 0x10, 0, // offset
            b'a', b'b', b'c',
        ];
        assert_eq!(out, expected);
        let header = ChunkHeader::decode(out[..20].try_into().unwrap()).unwrap();
        assert!(header.is_done());
        assert_eq!((header.kind, header.length), (1, 11));
    }

    #[test]
    fn offset_hole_chunk_bytes_are_pinned() {
        let mut out = Vec::new();
        put_offset_hole(&mut out, 0, 1, 512, 4096);
        #[rustfmt::skip]
        let expected = [
            0x66, 0x8e, 0x33, 0xef, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 12,
            0, 0, 0, 0, 0, 0, 2, 0, // offset 512
            0, 0, 0x10, 0, // 4096
        ];
        assert_eq!(out, expected);
    }

    #[test]
    fn block_status_chunk_bytes_are_pinned() {
        let mut out = Vec::new();
        let descriptors = [
            StatusDescriptor {
                len: 4096,
                flags: 3,
            },
            StatusDescriptor { len: 512, flags: 0 },
        ];
        put_block_status(&mut out, wire::REPLY_FLAG_DONE, 2, 1, &descriptors);
        #[rustfmt::skip]
        let expected = [
            0x66, 0x8e, 0x33, 0xef, 0, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 20,
            0, 0, 0, 1, // context id
            0, 0, 0x10, 0, 0, 0, 0, 3,
            0, 0, 2, 0, 0, 0, 0, 0,
        ];
        assert_eq!(out, expected);
    }

    #[test]
    fn error_chunk_bytes_are_pinned() {
        let mut out = Vec::new();
        put_error(&mut out, wire::REPLY_FLAG_DONE, 3, 5, "bad");
        #[rustfmt::skip]
        let expected = [
            0x66, 0x8e, 0x33, 0xef, 0, 1, 0x80, 1, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 9,
            0, 0, 0, 5, 0, 3, b'b', b'a', b'd',
        ];
        assert_eq!(out, expected);
    }

    #[test]
    fn error_message_is_cut_on_a_char_boundary() {
        let mut out = Vec::new();
        let long = "é".repeat(STRING_BYTES_MAX);
        put_error(&mut out, 0, 3, 5, &long);
        let message_len = u16::from_be_bytes([out[24], out[25]]) as usize;
        assert!(message_len <= STRING_BYTES_MAX);
        assert!(std::str::from_utf8(&out[26..]).is_ok());
        assert_eq!(out.len(), 26 + message_len);
    }

    #[test]
    fn none_chunk_is_done_and_empty() {
        let mut out = Vec::new();
        put_none(&mut out, 4);
        let header = ChunkHeader::decode(out[..20].try_into().unwrap()).unwrap();
        assert_eq!(out.len(), 20);
        assert!(header.is_done());
        assert_eq!((header.kind, header.length), (wire::REPLY_TYPE_NONE, 0));
    }

    #[test]
    fn decoders_refuse_wrong_magic() {
        assert!(SimpleReplyHeader::decode(&[0; 16]).is_none());
        assert!(ChunkHeader::decode(&[0; 20]).is_none());
    }
}
