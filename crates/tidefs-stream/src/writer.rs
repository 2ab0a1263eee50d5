//! `SendStreamWriter`: encodes commands into a btrfs send stream.
//!
//! ```text
//! | stream header (17) | command | command | ... | END | [next stream header | ... | END] |
//! ```
//!
//! Commands are encoded by `encode` (kernel attribute order, CRC32C per command). The
//! writer refuses what a reader would refuse (paths escaping the subvolume, commands newer
//! than the stream version, values too long for their length fields), so tidefs never
//! emits a stream it would not accept itself.

use std::io::Write;

use crate::command::Command;
use crate::encode::encode_command;
use crate::error::WriteError;
use crate::header::{encode_stream_header, StreamVersion};

/// Largest WRITE data per command in a version 1 stream: the kernel's 64 KiB send buffer
/// less 16 KiB of room for the header and path (`BTRFS_SEND_READ_SIZE`). btrfs-progs
/// accepts up to the u16 TLV limit, but 48 KiB is what every v1 receiver has seen.
pub const WRITE_CHUNK_BYTES_MAX_V1: usize = 48 * 1024;

/// Default WRITE data per command in a version 2 stream: what the kernel sends
/// (`BTRFS_MAX_COMPRESSED`, 128 KiB).
pub const WRITE_CHUNK_BYTES_DEFAULT_V2: usize = 128 * 1024;

/// Largest WRITE data per command the writer will produce in a version 2 stream. Version 2
/// DATA has no u16 length, so only receiver buffers bound it; 1 MiB plus the largest path
/// still fits `STREAM_COMMAND_BYTES_MAX` of our reader.
pub const WRITE_CHUNK_BYTES_MAX: usize = 1024 * 1024;

/// Writes send streams to `W`. Buffer `W` yourself if it is unbuffered: each command is
/// written with one or two `write_all` calls.
pub struct SendStreamWriter<W: Write> {
    output: W,
    version: StreamVersion,
    write_chunk_bytes: usize,
    /// The current stream has been ended with END.
    ended: bool,
    bytes_written: u64,
    commands_written: u64,
    /// Reused encoding buffer.
    buf: Vec<u8>,
}

impl<W: Write> SendStreamWriter<W> {
    /// Writes the stream header for `version` and returns the writer.
    pub fn new(mut output: W, version: StreamVersion) -> Result<Self, WriteError> {
        let header = encode_stream_header(version);
        output.write_all(&header)?;
        Ok(SendStreamWriter {
            output,
            version,
            write_chunk_bytes: default_write_chunk_bytes(version),
            ended: false,
            bytes_written: header.len() as u64,
            commands_written: 0,
            buf: Vec::new(),
        })
    }

    /// The version of the current stream.
    pub fn version(&self) -> StreamVersion {
        self.version
    }

    /// Bytes written so far, headers included.
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    /// Commands written so far (END included, stream headers not).
    pub fn commands_written(&self) -> u64 {
        self.commands_written
    }

    /// Data bytes per WRITE command used by `write_file_data`.
    pub fn write_chunk_bytes(&self) -> usize {
        self.write_chunk_bytes
    }

    /// Sets the data bytes per WRITE command used by `write_file_data`: 1 to
    /// `WRITE_CHUNK_BYTES_MAX_V1` in version 1, 1 to `WRITE_CHUNK_BYTES_MAX` in version 2.
    pub fn set_write_chunk_bytes(&mut self, bytes: usize) -> Result<(), WriteError> {
        let max = match self.version {
            StreamVersion::V1 => WRITE_CHUNK_BYTES_MAX_V1,
            StreamVersion::V2 => WRITE_CHUNK_BYTES_MAX,
        };
        if bytes == 0 || bytes > max {
            return Err(WriteError::ChunkSize {
                bytes,
                version: self.version,
            });
        }
        self.write_chunk_bytes = bytes;
        Ok(())
    }

    /// Encodes and writes one command. After END only `begin_next_stream` is allowed.
    pub fn write_command(&mut self, command: &Command) -> Result<(), WriteError> {
        if self.ended {
            return Err(WriteError::AfterEnd {
                command: command.command_type(),
            });
        }
        let tail = encode_command(command, self.version, &mut self.buf)?;
        self.output.write_all(&self.buf)?;
        if !tail.is_empty() {
            self.output.write_all(tail)?;
        }
        self.bytes_written += (self.buf.len() + tail.len()) as u64;
        self.commands_written += 1;
        if *command == Command::End {
            self.ended = true;
        }
        Ok(())
    }

    /// Writes `data` at `offset` of `path` as WRITE commands of at most
    /// `write_chunk_bytes()` each. Empty data writes nothing.
    pub fn write_file_data(
        &mut self,
        path: &[u8],
        offset: u64,
        data: &[u8],
    ) -> Result<(), WriteError> {
        let mut chunk_offset = offset;
        for chunk in data.chunks(self.write_chunk_bytes) {
            self.write_command(&Command::Write {
                path: path.to_vec(),
                offset: chunk_offset,
                data: chunk.to_vec(),
            })?;
            chunk_offset += chunk.len() as u64;
        }
        Ok(())
    }

    /// Writes END, ending the current stream.
    pub fn end(&mut self) -> Result<(), WriteError> {
        self.write_command(&Command::End)
    }

    /// Starts another stream in the same output (as `btrfs send A B` does) after the
    /// current one has been ended.
    pub fn begin_next_stream(&mut self, version: StreamVersion) -> Result<(), WriteError> {
        if !self.ended {
            return Err(WriteError::StreamNotEnded);
        }
        let header = encode_stream_header(version);
        self.output.write_all(&header)?;
        self.bytes_written += header.len() as u64;
        self.version = version;
        self.write_chunk_bytes = default_write_chunk_bytes(version);
        self.ended = false;
        Ok(())
    }

    /// Flushes the output.
    pub fn flush(&mut self) -> Result<(), WriteError> {
        self.output.flush()?;
        Ok(())
    }

    /// The output, for inspection.
    pub fn get_ref(&self) -> &W {
        &self.output
    }

    /// Flushes and returns the output. Does not write END.
    pub fn into_inner(mut self) -> Result<W, WriteError> {
        self.output.flush()?;
        Ok(self.output)
    }
}

fn default_write_chunk_bytes(version: StreamVersion) -> usize {
    match version {
        StreamVersion::V1 => WRITE_CHUNK_BYTES_MAX_V1,
        StreamVersion::V2 => WRITE_CHUNK_BYTES_DEFAULT_V2,
    }
}
