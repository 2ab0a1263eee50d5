//! `SendStreamReader`: a streaming, strictly validating parser of btrfs send streams.
//!
//! Input is one or more complete streams back to back, as `btrfs send A B C` writes them:
//!
//! ```text
//! | stream header | command | ... | END | stream header | command | ... | END |
//! ```
//!
//! Layouts are in `header` (stream and command headers) and `attribute` (TLVs). After an
//! END the reader expects either the end of input (a clean finish) or another stream
//! header. The input must hold at least one stream. Every command is bounded by
//! `stream_command_bytes_max` before any memory is reserved for it, so a hostile length
//! field cannot make the reader allocate more than the limit.

use std::io::{self, BufReader, Read};
use std::sync::Arc;

use crate::command::{Command, CommandType};
use crate::crc::{crc32c_raw, crc32c_raw_append};
use crate::decode::decode_command;
use crate::error::{StreamError, StreamErrorKind};
use crate::header::{
    CommandHeader, StreamVersion, COMMAND_HEADER_BYTES, COMMAND_HEADER_CMD_OFFSET,
    STREAM_HEADER_BYTES, STREAM_HEADER_VERSION_OFFSET, STREAM_MAGIC,
};

/// Default bound on one command, header included: 2 MiB.
///
/// The kernel never builds a command larger than its send buffer (64 KiB in version 1,
/// at most 192 KiB in version 2 on 64 KiB pages) and `SendStreamWriter` caps WRITE data at
/// `WRITE_CHUNK_BYTES_MAX` (1 MiB), so every stream either produces fits with room to spare.
pub const STREAM_COMMAND_BYTES_MAX: u64 = 2 * 1024 * 1024;

/// Size of the internal read buffer.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// Limits the reader enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReaderLimits {
    /// Largest command accepted, 10-byte header included.
    pub stream_command_bytes_max: u64,
}

impl Default for ReaderLimits {
    fn default() -> Self {
        ReaderLimits {
            stream_command_bytes_max: STREAM_COMMAND_BYTES_MAX,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before a stream header (at the start, or after an END).
    ExpectHeader,
    /// Inside a stream of this version, before a command header.
    InStream(StreamVersion),
    /// The input ended cleanly after an END.
    Finished,
}

/// Reads `Command`s from a byte stream.
///
/// After the first error the reader is stopped: every later call returns the same error
/// (the iterator yields it once, then ends).
pub struct SendStreamReader<R: Read> {
    input: BufReader<R>,
    limits: ReaderLimits,
    state: State,
    /// Bytes consumed from the input so far.
    offset: u64,
    /// 1-based number of the current stream; 0 before the first header.
    stream: u64,
    /// 1-based number of the last command read in the current stream; 0 at its header.
    command: u64,
    version: Option<StreamVersion>,
    payload: Vec<u8>,
    failure: Option<StreamError>,
    failure_yielded: bool,
}

impl<R: Read> SendStreamReader<R> {
    /// A reader with the default limits. The input is buffered internally.
    pub fn new(input: R) -> Self {
        Self::with_limits(input, ReaderLimits::default())
    }

    /// A reader with explicit limits.
    pub fn with_limits(input: R, limits: ReaderLimits) -> Self {
        SendStreamReader {
            input: BufReader::with_capacity(READ_BUFFER_BYTES, input),
            limits,
            state: State::ExpectHeader,
            offset: 0,
            stream: 0,
            command: 0,
            version: None,
            payload: Vec::new(),
            failure: None,
            failure_yielded: false,
        }
    }

    /// The version of the current stream (`None` before the first header).
    pub fn version(&self) -> Option<StreamVersion> {
        self.version
    }

    /// 1-based number of the current stream (0 before the first header).
    pub fn stream_number(&self) -> u64 {
        self.stream
    }

    /// 1-based number of the last command returned within the current stream.
    pub fn command_number(&self) -> u64 {
        self.command
    }

    /// Bytes consumed from the input so far.
    pub fn bytes_read(&self) -> u64 {
        self.offset
    }

    /// The limits in force.
    pub fn limits(&self) -> ReaderLimits {
        self.limits
    }

    /// The next command; `Ok(None)` once the input has ended cleanly after an END.
    pub fn next_command(&mut self) -> Result<Option<Command>, StreamError> {
        if let Some(failure) = &self.failure {
            return Err(failure.clone());
        }
        let result = self.step();
        if let Err(failure) = &result {
            self.failure = Some(failure.clone());
        }
        result
    }

    fn step(&mut self) -> Result<Option<Command>, StreamError> {
        loop {
            match self.state {
                State::Finished => return Ok(None),
                State::ExpectHeader => match self.read_stream_header()? {
                    Some(version) => self.state = State::InStream(version),
                    None => {
                        self.state = State::Finished;
                        return Ok(None);
                    }
                },
                State::InStream(version) => {
                    let command = self.read_command(version)?;
                    if command == Command::End {
                        self.state = State::ExpectHeader;
                    }
                    return Ok(Some(command));
                }
            }
        }
    }

    fn error(&self, offset: u64, kind: StreamErrorKind) -> StreamError {
        StreamError {
            stream: self.stream.max(1),
            command: self.command,
            offset,
            kind,
        }
    }

    /// Reads as many bytes as `buf` holds or until EOF; returns how many were read.
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize, StreamError> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.input.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let offset = self.offset + filled as u64;
                    return Err(self.error(offset, StreamErrorKind::Io(Arc::new(e))));
                }
            }
        }
        self.offset += filled as u64;
        Ok(filled)
    }

    /// Reads a stream header. `Ok(None)` means a clean end of input after a finished stream.
    fn read_stream_header(&mut self) -> Result<Option<StreamVersion>, StreamError> {
        let header_offset = self.offset;
        let mut header = [0u8; STREAM_HEADER_BYTES];
        let filled = self.fill(&mut header)?;
        if filled == 0 {
            if self.stream == 0 {
                return Err(self.error(header_offset, StreamErrorKind::EmptyStream));
            }
            return Ok(None);
        }
        // Errors in this header belong to the next stream, command 0.
        self.stream += 1;
        self.command = 0;
        self.version = None;
        if filled < STREAM_HEADER_BYTES {
            return Err(self.error(
                header_offset,
                StreamErrorKind::TruncatedStreamHeader {
                    available: filled as u64,
                },
            ));
        }
        let mut magic = [0u8; 13];
        magic.copy_from_slice(&header[..STREAM_MAGIC.len()]);
        if magic != STREAM_MAGIC {
            return Err(self.error(header_offset, StreamErrorKind::BadMagic { found: magic }));
        }
        let version = u32::from_le_bytes([header[13], header[14], header[15], header[16]]);
        let version = StreamVersion::from_u32(version).ok_or_else(|| {
            self.error(
                header_offset + STREAM_HEADER_VERSION_OFFSET as u64,
                StreamErrorKind::UnsupportedVersion { version },
            )
        })?;
        self.version = Some(version);
        Ok(Some(version))
    }

    fn read_command(&mut self, version: StreamVersion) -> Result<Command, StreamError> {
        self.command += 1;
        let command_offset = self.offset;

        let mut header_bytes = [0u8; COMMAND_HEADER_BYTES];
        let filled = self.fill(&mut header_bytes)?;
        if filled == 0 {
            return Err(self.error(command_offset, StreamErrorKind::MissingEnd));
        }
        if filled < COMMAND_HEADER_BYTES {
            return Err(self.error(
                command_offset,
                StreamErrorKind::TruncatedCommandHeader {
                    available: filled as u64,
                },
            ));
        }
        let header = CommandHeader::from_le_bytes(header_bytes);

        // Check the announced size before reserving memory for it.
        let command_bytes = COMMAND_HEADER_BYTES as u64 + u64::from(header.len);
        if command_bytes > self.limits.stream_command_bytes_max {
            return Err(self.error(
                command_offset,
                StreamErrorKind::CommandTooLong {
                    bytes: command_bytes,
                    max: self.limits.stream_command_bytes_max,
                },
            ));
        }
        self.read_payload(u64::from(header.len), command_offset)?;

        let mut zeroed = header;
        zeroed.crc = 0;
        let computed = crc32c_raw_append(crc32c_raw(&zeroed.to_le_bytes()), &self.payload);
        if computed != header.crc {
            return Err(self.error(
                command_offset,
                StreamErrorKind::CrcMismatch {
                    stored: header.crc,
                    computed,
                },
            ));
        }

        let cmd_field_offset = command_offset + COMMAND_HEADER_CMD_OFFSET as u64;
        let command_type = CommandType::from_id(header.cmd).ok_or_else(|| {
            self.error(
                cmd_field_offset,
                StreamErrorKind::UnknownCommand { id: header.cmd },
            )
        })?;
        if !command_type.allowed_in(version) {
            return Err(self.error(
                cmd_field_offset,
                StreamErrorKind::CommandNotInVersion {
                    command: command_type,
                    version,
                },
            ));
        }
        decode_command(command_type, version, &self.payload, command_offset)
            .map_err(|failure| self.error(failure.offset, failure.kind))
    }

    fn read_payload(&mut self, len: u64, command_offset: u64) -> Result<(), StreamError> {
        self.payload.clear();
        // `len` is bounded by the limit the caller checked, so this reservation is too.
        self.payload.reserve(len as usize);
        // read_to_end retries on Interrupted and stops at `len` or at end of input.
        let result = (&mut self.input).take(len).read_to_end(&mut self.payload);
        let filled = self.payload.len() as u64;
        self.offset += filled;
        if let Err(e) = result {
            return Err(self.error(self.offset, StreamErrorKind::Io(Arc::new(e))));
        }
        if filled < len {
            return Err(self.error(
                command_offset + COMMAND_HEADER_BYTES as u64,
                StreamErrorKind::TruncatedPayload {
                    needed: len,
                    available: filled,
                },
            ));
        }
        Ok(())
    }
}

impl<R: Read> Iterator for SendStreamReader<R> {
    type Item = Result<Command, StreamError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failure.is_some() {
            if self.failure_yielded {
                return None;
            }
            self.failure_yielded = true;
            return self.failure.clone().map(Err);
        }
        match self.next_command() {
            Ok(command) => command.map(Ok),
            Err(failure) => {
                self.failure_yielded = true;
                Some(Err(failure))
            }
        }
    }
}
