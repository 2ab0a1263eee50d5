//! Fuzzes the sans-I/O NBD connection (handshake, option parsing, request parsing and
//! validation, command execution) against small memory exports.
//!
//! The first input byte picks how the rest is used, so that the fuzzer reaches deep
//! states without having to guess magics:
//! 0: raw bytes from the first client byte on (handshake framing itself);
//! 1: framed options (the harness inserts IHAVEOPT; input gives option, length, payload);
//! 2: canned EXPORT_NAME handshake, then raw transmission bytes;
//! 3: canned structured-reply + base:allocation + GO handshake, then raw bytes;
//! 4: canned handshake (structured or not), then framed requests (the harness inserts the
//!    request magic), where every reply is checked to be exactly one well-formed reply.

#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use tidefs_nbd::connection::{Connection, Want};
use tidefs_nbd::reply::{ChunkHeader, SimpleReplyHeader, CHUNK_HEADER_BYTES, SIMPLE_REPLY_BYTES};
use tidefs_nbd::request::RequestHeader;
use tidefs_nbd::{wire, BlockSizeConstraints, ExportMap, MemoryExport};

const EXPORT_BYTES: u64 = 256 * 1024;

fn provider() -> Arc<ExportMap> {
    Arc::new(
        ExportMap::new()
            .with_export("d", "disk", Arc::new(MemoryExport::new(EXPORT_BYTES)))
            .with_export(
                "ro",
                "read-only",
                Arc::new(MemoryExport::new(EXPORT_BYTES).with_read_only(true)),
            )
            .with_export(
                "a",
                "aligned",
                Arc::new(
                    MemoryExport::new(EXPORT_BYTES)
                        .with_block_size(BlockSizeConstraints::new(512, 4096, 65536)),
                ),
            )
            .with_default("d"),
    )
}

fn option(code: u32, payload: &[u8]) -> Vec<u8> {
    let mut bytes = wire::IHAVEOPT.to_be_bytes().to_vec();
    bytes.extend_from_slice(&code.to_be_bytes());
    bytes.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

fn string_u32(text: &str) -> Vec<u8> {
    let mut bytes = (text.len() as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(text.as_bytes());
    bytes
}

fn canned_handshake(structured: bool, export: &str) -> Vec<u8> {
    let mut bytes = wire::FLAG_C_FIXED_NEWSTYLE.to_be_bytes().to_vec();
    if structured {
        bytes.extend(option(wire::OPT_STRUCTURED_REPLY, &[]));
        let mut meta = string_u32(export);
        meta.extend_from_slice(&1u32.to_be_bytes());
        meta.extend(string_u32("base:allocation"));
        bytes.extend(option(wire::OPT_SET_META_CONTEXT, &meta));
    }
    let mut go = string_u32(export);
    go.extend_from_slice(&1u16.to_be_bytes());
    go.extend_from_slice(&wire::INFO_BLOCK_SIZE.to_be_bytes());
    bytes.extend(option(wire::OPT_GO, &go));
    bytes
}

/// Feeds `bytes` as the connection asks for them; stops at the end of input or close.
fn feed(connection: &mut Connection, mut bytes: &[u8], out: &mut Vec<u8>) -> bool {
    loop {
        let Want::Bytes(n) = connection.want() else {
            return false;
        };
        if bytes.len() < n {
            return true;
        }
        let (now, rest) = bytes.split_at(n);
        if connection.receive(now, out).is_err() {
            assert_eq!(connection.want(), Want::Close);
            return false;
        }
        bytes = rest;
    }
}

fn be_u32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes(bytes[..4].try_into().unwrap())
}

/// Checks that `out` is exactly one complete reply to `header`.
fn check_one_reply(header: &RequestHeader, structured: bool, out: &[u8]) {
    if header.command == wire::CMD_DISC {
        return;
    }
    assert!(out.len() >= 4, "every request but DISC gets a reply");
    if be_u32(out) == wire::SIMPLE_REPLY_MAGIC {
        let reply =
            SimpleReplyHeader::decode(out[..SIMPLE_REPLY_BYTES].try_into().unwrap()).unwrap();
        assert_eq!(reply.handle, header.handle);
        let data = if header.command == wire::CMD_READ && reply.error == 0 {
            assert!(!structured, "structured reads never use simple replies");
            header.length as usize
        } else {
            0
        };
        assert_eq!(out.len(), SIMPLE_REPLY_BYTES + data);
        return;
    }
    assert!(structured, "chunks only after NBD_OPT_STRUCTURED_REPLY");
    let mut rest = out;
    let mut covered = 0u64;
    loop {
        let chunk = ChunkHeader::decode(rest[..CHUNK_HEADER_BYTES].try_into().unwrap())
            .expect("chunk magic");
        assert_eq!(chunk.handle, header.handle);
        let end = CHUNK_HEADER_BYTES + chunk.length as usize;
        let payload = &rest[CHUNK_HEADER_BYTES..end];
        match chunk.kind {
            wire::REPLY_TYPE_OFFSET_DATA => covered += payload.len() as u64 - 8,
            wire::REPLY_TYPE_OFFSET_HOLE => covered += u64::from(be_u32(&payload[8..])),
            wire::REPLY_TYPE_ERROR => covered = u64::from(header.length),
            _ => {}
        }
        rest = &rest[end..];
        if chunk.is_done() {
            assert!(rest.is_empty(), "nothing after the DONE chunk");
            break;
        }
    }
    if header.command == wire::CMD_READ {
        assert_eq!(
            covered,
            u64::from(header.length),
            "a read covers its whole range"
        );
    }
}

fn framed_requests(connection: &mut Connection, structured: bool, mut input: &[u8]) {
    let mut out = Vec::new();
    while input.len() >= 24 && connection.want() != Want::Close {
        let field = |at: usize, len: usize| &input[at..at + len];
        let command = u16::from_be_bytes(field(2, 2).try_into().unwrap()) % 10;
        let mut length = be_u32(field(20, 4));
        let mut offset = u64::from_be_bytes(field(12, 8).try_into().unwrap());
        // Mostly in-range requests, so that commands reach the backend.
        if input[0] & 1 == 0 {
            offset %= EXPORT_BYTES + 1;
            length %= 70_000;
        }
        if command == wire::CMD_WRITE {
            length %= 70_000;
        }
        let header = RequestHeader {
            flags: u16::from_be_bytes(field(0, 2).try_into().unwrap()) & 0x1f,
            command,
            handle: u64::from_be_bytes(field(4, 8).try_into().unwrap()),
            offset,
            length,
        };
        input = &input[24..];
        let mut bytes = header.encode().to_vec();
        let payload_len = header.payload_bytes() as usize;
        let take = payload_len.min(input.len());
        bytes.extend_from_slice(&input[..take]);
        bytes.resize(28 + payload_len, 0xa5);
        input = &input[take..];
        out.clear();
        for piece in [&bytes[..28], &bytes[28..]] {
            if piece.is_empty() {
                continue;
            }
            let Want::Bytes(n) = connection.want() else {
                return;
            };
            assert_eq!(n, piece.len());
            connection
                .receive(piece, &mut out)
                .expect("framed requests are well-formed");
        }
        check_one_reply(&header, structured, &out);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut out = Vec::new();
    let mut connection = Connection::new(provider(), &mut out);
    match mode % 5 {
        0 => {
            feed(&mut connection, rest, &mut out);
        }
        1 => {
            let mut bytes = wire::FLAG_C_FIXED_NEWSTYLE.to_be_bytes().to_vec();
            let mut input = rest;
            while input.len() >= 6 {
                let code = u32::from(input[0] % 16);
                let len = usize::from(u16::from_be_bytes([input[1], input[2]]) % 512);
                let payload = &input[3..3 + len.min(input.len() - 3)];
                bytes.extend(option(code, payload));
                input = &input[3 + payload.len()..];
            }
            feed(&mut connection, &bytes, &mut out);
        }
        2 => {
            let mut bytes = wire::FLAG_C_FIXED_NEWSTYLE.to_be_bytes().to_vec();
            bytes.extend(option(wire::OPT_EXPORT_NAME, b"d"));
            bytes.extend_from_slice(rest);
            feed(&mut connection, &bytes, &mut out);
        }
        3 => {
            let mut bytes = canned_handshake(true, "d");
            bytes.extend_from_slice(rest);
            feed(&mut connection, &bytes, &mut out);
        }
        _ => {
            let structured = mode & 0x10 != 0;
            let export = ["d", "ro", "a"][usize::from(mode >> 5) % 3];
            assert!(feed(
                &mut connection,
                &canned_handshake(structured, export),
                &mut out
            ));
            assert!(connection.is_transmitting());
            framed_requests(&mut connection, structured, rest);
        }
    }
});
