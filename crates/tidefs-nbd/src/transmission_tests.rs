//! Proves every command reaches the backend with the right arguments and produces the
//! reply the protocol prescribes, including the error paths.

use parking_lot::Mutex;

use super::*;
use crate::export::BlockSizeConstraints;
use crate::handshake::{transmission_flags, BASE_ALLOCATION_CONTEXT_ID};
use crate::limits::NBD_REQUEST_BYTES_MAX;
use crate::memory_export::MemoryExport;
use crate::reply::{ChunkHeader, SimpleReplyHeader, CHUNK_HEADER_BYTES, SIMPLE_REPLY_BYTES};

const SIZE: u64 = 64 * 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Call {
    Read(u64, usize),
    Write(u64, usize, bool),
    Flush,
    Trim(u64, u64),
    WriteZeroes(u64, u64, bool, bool),
    BlockStatus(u64, u64),
}

/// A memory export that records calls and can be told to fail reads.
struct RecordingExport {
    inner: MemoryExport,
    calls: Mutex<Vec<Call>>,
    fail_reads: bool,
}

impl RecordingExport {
    fn new(inner: MemoryExport) -> Arc<Self> {
        Arc::new(Self {
            inner,
            calls: Mutex::new(Vec::new()),
            fail_reads: false,
        })
    }

    fn failing_reads() -> Arc<Self> {
        Arc::new(Self {
            inner: MemoryExport::new(SIZE),
            calls: Mutex::new(Vec::new()),
            fail_reads: true,
        })
    }

    fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut *self.calls.lock())
    }
}

impl BlockExport for RecordingExport {
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn read_only(&self) -> bool {
        self.inner.read_only()
    }
    fn block_size(&self) -> BlockSizeConstraints {
        self.inner.block_size()
    }
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), ExportError> {
        self.calls.lock().push(Call::Read(offset, buf.len()));
        if self.fail_reads {
            return Err(ExportError::Io {
                offset,
                source: std::io::Error::other("media error"),
            });
        }
        self.inner.read(offset, buf)
    }
    fn write(&self, offset: u64, data: &[u8], fua: bool) -> Result<(), ExportError> {
        self.calls.lock().push(Call::Write(offset, data.len(), fua));
        self.inner.write(offset, data, fua)
    }
    fn flush(&self) -> Result<(), ExportError> {
        self.calls.lock().push(Call::Flush);
        self.inner.flush()
    }
    fn trim(&self, offset: u64, len: u64) -> Result<(), ExportError> {
        self.calls.lock().push(Call::Trim(offset, len));
        self.inner.trim(offset, len)
    }
    fn write_zeroes(
        &self,
        offset: u64,
        len: u64,
        may_punch_hole: bool,
        fua: bool,
    ) -> Result<(), ExportError> {
        self.calls
            .lock()
            .push(Call::WriteZeroes(offset, len, may_punch_hole, fua));
        self.inner.write_zeroes(offset, len, may_punch_hole, fua)
    }
    fn block_status(&self, offset: u64, len: u64) -> Result<Vec<BlockStatusExtent>, ExportError> {
        self.calls.lock().push(Call::BlockStatus(offset, len));
        self.inner.block_status(offset, len)
    }
}

fn session(export: Arc<RecordingExport>, structured: bool) -> Transmission {
    let negotiated = Negotiated {
        export_name: "disk".into(),
        transmission_flags: transmission_flags(export.as_ref(), structured),
        constraints: export
            .block_size()
            .with_maximum_capped(NBD_REQUEST_BYTES_MAX),
        export,
        structured_replies: structured,
        base_allocation_context: structured.then_some(BASE_ALLOCATION_CONTEXT_ID),
    };
    Transmission::new(negotiated)
}

fn request(command: u16, flags: u16, offset: u64, length: u32) -> RequestHeader {
    RequestHeader {
        flags,
        command,
        handle: 0xabcd,
        offset,
        length,
    }
}

fn run(session: &Transmission, header: RequestHeader, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    assert_eq!(session.handle(&header, payload, &mut out), Flow::Continue);
    out
}

fn simple(out: &[u8]) -> (SimpleReplyHeader, &[u8]) {
    let header = SimpleReplyHeader::decode(out[..SIMPLE_REPLY_BYTES].try_into().unwrap())
        .expect("simple reply magic");
    assert_eq!(header.handle, 0xabcd);
    (header, &out[SIMPLE_REPLY_BYTES..])
}

fn parse_chunks(mut out: &[u8]) -> Vec<(ChunkHeader, Vec<u8>)> {
    let mut chunks = Vec::new();
    while !out.is_empty() {
        let header = ChunkHeader::decode(out[..CHUNK_HEADER_BYTES].try_into().unwrap())
            .expect("structured reply magic");
        assert_eq!(header.handle, 0xabcd);
        let end = CHUNK_HEADER_BYTES + header.length as usize;
        chunks.push((header, out[CHUNK_HEADER_BYTES..end].to_vec()));
        out = &out[end..];
    }
    let done: Vec<bool> = chunks.iter().map(|(h, _)| h.is_done()).collect();
    assert_eq!(
        done.iter().filter(|d| **d).count(),
        1,
        "exactly one DONE chunk"
    );
    assert!(done.last().unwrap(), "DONE comes last");
    chunks
}

fn error_chunk(out: &[u8]) -> u32 {
    let chunks = parse_chunks(out);
    assert_eq!(chunks.len(), 1);
    let (header, payload) = &chunks[0];
    assert_eq!(header.kind, wire::REPLY_TYPE_ERROR);
    let message_len = u16::from_be_bytes([payload[4], payload[5]]) as usize;
    assert_eq!(payload.len(), 6 + message_len);
    assert!(message_len > 0, "errors carry a message");
    reply::be_u32(&payload[0..4])
}

#[test]
fn simple_read_returns_written_data() {
    let export = RecordingExport::new(MemoryExport::new(SIZE));
    let session = session(Arc::clone(&export), false);
    let data: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
    let out = run(&session, request(wire::CMD_WRITE, 0, 100, 1000), &data);
    assert_eq!(simple(&out).0.error, 0);
    let out = run(&session, request(wire::CMD_READ, 0, 100, 1000), &[]);
    let (header, body) = simple(&out);
    assert_eq!(header.error, 0);
    assert_eq!(body, data);
    assert_eq!(
        export.take_calls(),
        [Call::Write(100, 1000, false), Call::Read(100, 1000)]
    );
}

#[test]
fn simple_read_error_has_no_payload() {
    let session = session(RecordingExport::failing_reads(), false);
    let out = run(&session, request(wire::CMD_READ, 0, 0, 4096), &[]);
    let (header, body) = simple(&out);
    assert_eq!(header.error, NbdErrno::Io.code());
    assert!(body.is_empty());
}

#[test]
fn out_of_range_read_is_einval_without_touching_the_backend() {
    let export = RecordingExport::new(MemoryExport::new(SIZE));
    let session = session(Arc::clone(&export), false);
    let out = run(&session, request(wire::CMD_READ, 0, SIZE - 10, 20), &[]);
    let (header, body) = simple(&out);
    assert_eq!(header.error, NbdErrno::Inval.code());
    assert!(body.is_empty());
    assert!(export.take_calls().is_empty());
}

#[test]
fn structured_read_sends_holes_as_holes() {
    let export = RecordingExport::new(MemoryExport::new(SIZE));
    let session = session(Arc::clone(&export), true);
    run(
        &session,
        request(wire::CMD_WRITE, 0, 8192, 4096),
        &[7u8; 4096],
    );
    let out = run(&session, request(wire::CMD_READ, 0, 4096, 12288), &[]);
    let chunks = parse_chunks(&out);
    let kinds: Vec<u16> = chunks.iter().map(|(h, _)| h.kind).collect();
    assert_eq!(
        kinds,
        [
            wire::REPLY_TYPE_OFFSET_HOLE,
            wire::REPLY_TYPE_OFFSET_DATA,
            wire::REPLY_TYPE_OFFSET_HOLE
        ]
    );
    assert_eq!(reply::be_u64(&chunks[0].1[0..8]), 4096);
    assert_eq!(reply::be_u32(&chunks[0].1[8..12]), 4096);
    assert_eq!(reply::be_u64(&chunks[1].1[0..8]), 8192);
    assert!(chunks[1].1[8..].iter().all(|&b| b == 7));
    assert_eq!(chunks[1].1.len(), 8 + 4096);
    assert_eq!(reply::be_u64(&chunks[2].1[0..8]), 12288);
}

#[test]
fn structured_read_with_dont_fragment_is_one_data_chunk() {
    let export = RecordingExport::new(MemoryExport::new(SIZE));
    let session = session(Arc::clone(&export), true);
    let out = run(
        &session,
        request(wire::CMD_READ, wire::CMD_FLAG_DF, 0, 8192),
        &[],
    );
    let chunks = parse_chunks(&out);
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].0.kind, wire::REPLY_TYPE_OFFSET_DATA);
    assert_eq!(chunks[0].1.len(), 8 + 8192);
}

#[test]
fn structured_read_error_is_a_lone_error_chunk() {
    let session = session(RecordingExport::failing_reads(), true);
    let out = run(
        &session,
        request(wire::CMD_READ, wire::CMD_FLAG_DF, 0, 4096),
        &[],
    );
    assert_eq!(error_chunk(&out), NbdErrno::Io.code());
}

#[test]
fn structured_zero_length_read_is_a_none_chunk() {
    let session = session(RecordingExport::new(MemoryExport::new(SIZE)), true);
    let out = run(&session, request(wire::CMD_READ, 0, 0, 0), &[]);
    let chunks = parse_chunks(&out);
    assert_eq!(chunks[0].0.kind, wire::REPLY_TYPE_NONE);
}

#[test]
fn write_passes_fua_and_zero_length_skips_the_backend() {
    let export = RecordingExport::new(MemoryExport::new(SIZE));
    let session = session(Arc::clone(&export), false);
    run(
        &session,
        request(wire::CMD_WRITE, wire::CMD_FLAG_FUA, 0, 3),
        b"abc",
    );
    run(&session, request(wire::CMD_WRITE, 0, 0, 0), &[]);
    assert_eq!(export.take_calls(), [Call::Write(0, 3, true)]);
}

#[test]
fn read_only_export_refuses_writes_with_eperm() {
    let export = RecordingExport::new(MemoryExport::new(SIZE).with_read_only(true));
    let plain = session(Arc::clone(&export), false);
    for (command, payload) in [
        (wire::CMD_WRITE, &[1u8; 512][..]),
        (wire::CMD_TRIM, &[][..]),
        (wire::CMD_WRITE_ZEROES, &[][..]),
    ] {
        let out = run(&plain, request(command, 0, 0, 512), payload);
        assert_eq!(
            simple(&out).0.error,
            NbdErrno::Perm.code(),
            "command {command}"
        );
    }
    let structured = session(Arc::clone(&export), true);
    let out = run(
        &structured,
        request(wire::CMD_WRITE, 0, 0, 512),
        &[1u8; 512],
    );
    assert_eq!(error_chunk(&out), NbdErrno::Perm.code());
    assert!(export.take_calls().is_empty());
}

#[test]
fn flush_trim_and_write_zeroes_reach_the_backend() {
    let export = RecordingExport::new(MemoryExport::new(SIZE));
    let session = session(Arc::clone(&export), false);
    for header in [
        request(wire::CMD_FLUSH, 0, 0, 0),
        request(wire::CMD_TRIM, wire::CMD_FLAG_FUA, 4096, 8192),
        request(wire::CMD_WRITE_ZEROES, wire::CMD_FLAG_NO_HOLE, 0, 4096),
        request(wire::CMD_WRITE_ZEROES, wire::CMD_FLAG_FUA, 0, 4096),
        request(wire::CMD_CACHE, 0, 0, 4096),
    ] {
        let out = run(&session, header, &[]);
        assert_eq!(simple(&out).0.error, 0);
    }
    assert_eq!(
        export.take_calls(),
        [
            Call::Flush,
            Call::Trim(4096, 8192),
            Call::Flush,
            Call::WriteZeroes(0, 4096, false, false),
            Call::WriteZeroes(0, 4096, true, true),
        ]
    );
}

#[test]
fn write_past_the_end_is_enospc() {
    let session = session(RecordingExport::new(MemoryExport::new(SIZE)), false);
    let out = run(&session, request(wire::CMD_WRITE, 0, SIZE - 1, 2), b"xy");
    assert_eq!(simple(&out).0.error, NbdErrno::NoSpc.code());
}

#[test]
fn block_status_reports_holes_and_data() {
    let export = RecordingExport::new(MemoryExport::new(SIZE));
    let session = session(Arc::clone(&export), true);
    run(
        &session,
        request(wire::CMD_WRITE, 0, 4096, 4096),
        &[1u8; 4096],
    );
    let out = run(&session, request(wire::CMD_BLOCK_STATUS, 0, 0, 16384), &[]);
    let chunks = parse_chunks(&out);
    assert_eq!(chunks.len(), 1);
    let (header, payload) = &chunks[0];
    assert_eq!(header.kind, wire::REPLY_TYPE_BLOCK_STATUS);
    assert_eq!(reply::be_u32(&payload[0..4]), BASE_ALLOCATION_CONTEXT_ID);
    let descriptors: Vec<(u32, u32)> = payload[4..]
        .chunks(8)
        .map(|d| (reply::be_u32(&d[0..4]), reply::be_u32(&d[4..8])))
        .collect();
    let hole = wire::STATE_HOLE | wire::STATE_ZERO;
    assert_eq!(descriptors, [(4096, hole), (4096, 0), (8192, hole)]);

    let out = run(
        &session,
        request(wire::CMD_BLOCK_STATUS, wire::CMD_FLAG_REQ_ONE, 0, 16384),
        &[],
    );
    let chunks = parse_chunks(&out);
    assert_eq!(chunks[0].1.len(), 4 + 8, "REQ_ONE gives one descriptor");
}

#[test]
fn block_status_without_context_is_einval() {
    let session = session(RecordingExport::new(MemoryExport::new(SIZE)), false);
    let out = run(&session, request(wire::CMD_BLOCK_STATUS, 0, 0, 4096), &[]);
    assert_eq!(simple(&out).0.error, NbdErrno::Inval.code());
}

#[test]
fn unknown_command_is_einval_and_the_session_goes_on() {
    let session = session(RecordingExport::new(MemoryExport::new(SIZE)), true);
    let out = run(&session, request(42, 0, 0, 0), &[]);
    assert_eq!(error_chunk(&out), NbdErrno::Inval.code());
    let out = run(&session, request(wire::CMD_FLUSH, 0, 0, 0), &[]);
    assert_eq!(simple(&out).0.error, 0);
}

#[test]
fn disconnect_ends_without_a_reply() {
    let session = session(RecordingExport::new(MemoryExport::new(SIZE)), false);
    let mut out = Vec::new();
    let flow = session.handle(&request(wire::CMD_DISC, 0, 0, 0), &[], &mut out);
    assert_eq!(flow, Flow::Disconnect);
    assert!(out.is_empty());
}

#[test]
fn descriptors_are_clipped_merged_and_limited() {
    let extent = |len, hole, zero| BlockStatusExtent { len, hole, zero };
    let extents = [
        extent(100, true, true),
        extent(0, false, false),
        extent(50, true, true),
        extent(200, false, false),
        extent(1000, true, false),
    ];
    assert_eq!(
        status_descriptors(&extents, 300, 16),
        [
            StatusDescriptor { len: 150, flags: 3 },
            StatusDescriptor { len: 150, flags: 0 }
        ]
    );
    assert_eq!(
        status_descriptors(&extents, 1000, 2),
        [
            StatusDescriptor { len: 150, flags: 3 },
            StatusDescriptor { len: 200, flags: 0 }
        ]
    );
    assert_eq!(status_descriptors(&[], 10, 16), []);
}

#[test]
fn zero_runs_fill_uncovered_tail_with_data() {
    let extents = [BlockStatusExtent {
        len: 10,
        hole: true,
        zero: true,
    }];
    assert_eq!(
        zero_runs(&extents, 30),
        [
            ReadRun {
                len: 10,
                zero: true
            },
            ReadRun {
                len: 20,
                zero: false
            }
        ]
    );
}
