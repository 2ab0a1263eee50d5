//! Where generated commands go: a byte stream (with counters, progress and resume
//! skipping) or a list in memory.
//!
//! A resumed stream is the original stream with commands 2..=N left out and a marker in
//! their place, so the receiver can check it continues exactly where it stopped:
//!
//! ```text
//! | header | SUBVOL or SNAPSHOT | SET_XATTR "" tidefs.resume=<N> | command N+1 | ... | END |
//! ```

use std::io::Write;

use tidefs_stream::header::encode_stream_header;
use tidefs_stream::{encode_command, Command, StreamVersion, WriteError};

use crate::error::SendResult;

/// xattr name of the resume marker (a namespace no file system accepts, so a receiver
/// that does not know it fails instead of applying a partial stream).
pub const RESUME_MARKER_XATTR: &[u8] = b"tidefs.resume";

/// Receives the commands of a stream, in order.
pub trait CommandSink {
    fn emit(&mut self, command: Command) -> SendResult<()>;
    /// Data bytes per WRITE command.
    fn write_chunk_bytes(&self) -> usize;
    fn version(&self) -> StreamVersion;
}

/// Counts of a stream being written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamProgress {
    /// Commands generated (skipped ones included when resuming).
    pub commands: u64,
    /// Bytes written to the output.
    pub bytes: u64,
    /// File data bytes generated (WRITE payloads).
    pub data_bytes: u64,
}

/// Encodes commands onto a `Write`.
pub struct StreamSink<'p, W: Write> {
    out: W,
    version: StreamVersion,
    write_chunk_bytes: usize,
    buf: Vec<u8>,
    /// Commands 2..=skip_through are generated but not written (resume).
    skip_through: u64,
    progress: StreamProgress,
    on_progress: Option<&'p mut dyn FnMut(StreamProgress)>,
}

impl<'p, W: Write> StreamSink<'p, W> {
    pub fn new(mut out: W, version: StreamVersion, write_chunk_bytes: usize) -> SendResult<Self> {
        let header = encode_stream_header(version);
        out.write_all(&header).map_err(WriteError::from)?;
        Ok(StreamSink {
            out,
            version,
            write_chunk_bytes,
            buf: Vec::with_capacity(64 * 1024),
            skip_through: 0,
            progress: StreamProgress {
                bytes: header.len() as u64,
                ..StreamProgress::default()
            },
            on_progress: None,
        })
    }

    /// Leaves out commands 2..=`applied` and writes the resume marker after command 1.
    pub fn resume_after(&mut self, applied: u64) {
        self.skip_through = applied;
    }

    pub fn on_progress(&mut self, f: &'p mut dyn FnMut(StreamProgress)) {
        self.on_progress = Some(f);
    }

    pub fn progress(&self) -> StreamProgress {
        self.progress
    }

    pub fn into_inner(mut self) -> SendResult<W> {
        self.out.flush().map_err(WriteError::from)?;
        Ok(self.out)
    }

    fn write_encoded(&mut self, command: &Command) -> SendResult<()> {
        let tail = encode_command(command, self.version, &mut self.buf)?;
        self.out.write_all(&self.buf).map_err(WriteError::from)?;
        if !tail.is_empty() {
            self.out.write_all(tail).map_err(WriteError::from)?;
        }
        self.progress.bytes += (self.buf.len() + tail.len()) as u64;
        Ok(())
    }
}

impl<W: Write> CommandSink for StreamSink<'_, W> {
    fn emit(&mut self, command: Command) -> SendResult<()> {
        self.progress.commands += 1;
        if let Command::Write { data, .. } = &command {
            self.progress.data_bytes += data.len() as u64;
        }
        let n = self.progress.commands;
        if n == 1 || n > self.skip_through || command == Command::End {
            self.write_encoded(&command)?;
        }
        if n == 1 && self.skip_through > 0 {
            let marker = Command::SetXattr {
                path: Vec::new(),
                name: RESUME_MARKER_XATTR.to_vec(),
                data: self.skip_through.to_string().into_bytes(),
            };
            self.write_encoded(&marker)?;
        }
        if n.is_multiple_of(1024) || command == Command::End {
            let p = self.progress;
            if let Some(f) = self.on_progress.as_mut() {
                f(p);
            }
        }
        Ok(())
    }

    fn write_chunk_bytes(&self) -> usize {
        self.write_chunk_bytes
    }

    fn version(&self) -> StreamVersion {
        self.version
    }
}

/// Collects commands in memory (tests, and receive's in-place resets).
pub struct VecSink {
    pub commands: Vec<Command>,
    pub version: StreamVersion,
}

impl VecSink {
    pub fn new(version: StreamVersion) -> Self {
        VecSink {
            commands: Vec::new(),
            version,
        }
    }
}

impl CommandSink for VecSink {
    fn emit(&mut self, command: Command) -> SendResult<()> {
        self.commands.push(command);
        Ok(())
    }

    fn write_chunk_bytes(&self) -> usize {
        1 << 20
    }

    fn version(&self) -> StreamVersion {
        self.version
    }
}
