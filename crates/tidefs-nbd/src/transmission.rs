//! The transmission phase with no I/O: one validated request in, its complete reply
//! appended to `out`. A reply is built whole before any of it is sent, so a backend error
//! half-way through a read still produces a clean error reply and replies never interleave.

use std::sync::Arc;

use tracing::debug;

use crate::errno::NbdErrno;
use crate::error::ExportError;
use crate::export::{BlockExport, BlockStatusExtent};
use crate::handshake::Negotiated;
use crate::limits::BLOCK_STATUS_EXTENTS_MAX;
use crate::reply::{self, StatusDescriptor};
use crate::request::{validate, Command, RequestContext, RequestHeader};
use crate::wire;

/// Whether the connection goes on after a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// `NBD_CMD_DISC`: close without a reply.
    Disconnect,
}

pub struct Transmission {
    export: Arc<dyn BlockExport>,
    context: RequestContext,
    base_allocation_context: Option<u32>,
}

impl Transmission {
    pub fn new(negotiated: Negotiated) -> Self {
        Self {
            context: negotiated.request_context(),
            export: negotiated.export,
            base_allocation_context: negotiated.base_allocation_context,
        }
    }

    /// Executes one request. `payload` is the data that followed the header (empty unless
    /// it is a write), already read in full even when the request is going to be refused.
    pub fn handle(&self, header: &RequestHeader, payload: &[u8], out: &mut Vec<u8>) -> Flow {
        assert_eq!(payload.len(), header.payload_bytes() as usize);
        let handle = header.handle;
        let command = match validate(header, &self.context) {
            Ok(command) => command,
            Err(rejection) => {
                debug!(handle, %rejection, "request refused");
                self.put_error(
                    out,
                    handle,
                    NbdErrno::from(&rejection),
                    &rejection.to_string(),
                );
                return Flow::Continue;
            }
        };
        let export = self.export.as_ref();
        let result = match command {
            Command::Disconnect => return Flow::Disconnect,
            Command::Read {
                offset,
                len,
                dont_fragment,
            } => {
                self.read(out, handle, offset, len, dont_fragment);
                return Flow::Continue;
            }
            Command::BlockStatus {
                offset,
                len,
                req_one,
            } => {
                self.block_status(out, handle, offset, len, req_one);
                return Flow::Continue;
            }
            Command::Write { len: 0, .. }
            | Command::Trim { len: 0, .. }
            | Command::WriteZeroes { len: 0, .. } => Ok(()),
            Command::Write { offset, fua, .. } => export.write(offset, payload, fua),
            Command::Flush => export.flush(),
            Command::Trim { offset, len, fua } => export
                .trim(offset, u64::from(len))
                .and_then(|()| if fua { export.flush() } else { Ok(()) }),
            // Caching is a hint with no effect on what later requests return.
            Command::Cache { .. } => Ok(()),
            Command::WriteZeroes {
                offset,
                len,
                may_punch_hole,
                fua,
            } => export.write_zeroes(offset, u64::from(len), may_punch_hole, fua),
        };
        match result {
            Ok(()) => reply::put_simple(out, handle, 0),
            Err(error) => self.put_export_error(out, handle, &error),
        }
        Flow::Continue
    }

    fn read(&self, out: &mut Vec<u8>, handle: u64, offset: u64, len: u32, dont_fragment: bool) {
        let start = out.len();
        let result = if !self.context.structured_replies {
            let range = reply::put_simple_with_data(out, handle, len as usize);
            self.export.read(offset, &mut out[range])
        } else if len == 0 {
            reply::put_none(out, handle);
            Ok(())
        } else if dont_fragment {
            let range = reply::put_offset_data(out, wire::REPLY_FLAG_DONE, handle, offset, len);
            self.export.read(offset, &mut out[range])
        } else {
            self.read_chunked(out, handle, offset, len)
        };
        if let Err(error) = result {
            out.truncate(start);
            self.put_export_error(out, handle, &error);
        }
    }

    /// A structured read: runs that the backend knows to be zero go out as
    /// `OFFSET_HOLE` chunks, everything else as `OFFSET_DATA`.
    fn read_chunked(
        &self,
        out: &mut Vec<u8>,
        handle: u64,
        offset: u64,
        len: u32,
    ) -> Result<(), ExportError> {
        // Allocation is only an optimisation here: if the backend cannot say, read it all.
        let extents = self
            .export
            .block_status(offset, u64::from(len))
            .unwrap_or_default();
        let mut position = offset;
        let end = offset + u64::from(len);
        let mut last_chunk = out.len();
        for run in zero_runs(&extents, end - offset) {
            last_chunk = out.len();
            let run_len = u32::try_from(run.len).expect("runs are clipped to the request");
            if run.zero {
                reply::put_offset_hole(out, 0, handle, position, run_len);
            } else {
                let range = reply::put_offset_data(out, 0, handle, position, run_len);
                self.export.read(position, &mut out[range])?;
            }
            position += run.len;
        }
        assert_eq!(position, end, "runs cover the whole request");
        // Mark the last chunk final instead of sending an extra NONE chunk; safe because
        // the whole reply is built before any of it is sent.
        let flags_at = last_chunk + 4;
        out[flags_at + 1] |= wire::REPLY_FLAG_DONE as u8;
        Ok(())
    }

    fn block_status(&self, out: &mut Vec<u8>, handle: u64, offset: u64, len: u32, req_one: bool) {
        let context_id = self
            .base_allocation_context
            .expect("validate refuses BLOCK_STATUS without a context");
        let extents = match self.export.block_status(offset, u64::from(len)) {
            Ok(extents) => extents,
            Err(error) => return self.put_export_error(out, handle, &error),
        };
        let limit = if req_one { 1 } else { BLOCK_STATUS_EXTENTS_MAX };
        let descriptors = status_descriptors(&extents, len, limit);
        if descriptors.is_empty() {
            let message = "backend reported no extents";
            return self.put_error(out, handle, NbdErrno::Io, message);
        }
        reply::put_block_status(out, wire::REPLY_FLAG_DONE, handle, context_id, &descriptors);
    }

    fn put_export_error(&self, out: &mut Vec<u8>, handle: u64, error: &ExportError) {
        debug!(handle, %error, "request failed");
        self.put_error(out, handle, NbdErrno::from(error), &error.to_string());
    }

    /// Errors go in a structured error chunk (with a message a person can read) when
    /// structured replies were negotiated, else in a simple reply.
    fn put_error(&self, out: &mut Vec<u8>, handle: u64, errno: NbdErrno, message: &str) {
        if self.context.structured_replies {
            reply::put_error(out, wire::REPLY_FLAG_DONE, handle, errno.code(), message);
        } else {
            reply::put_simple(out, handle, errno.code());
        }
    }
}

/// A run of a read: either known zeroes or data to read.
#[derive(Debug, PartialEq, Eq)]
struct ReadRun {
    len: u64,
    zero: bool,
}

/// Splits `len` bytes into alternating zero / data runs from the backend's extents.
/// Whatever the extents do not cover is data.
fn zero_runs(extents: &[BlockStatusExtent], len: u64) -> Vec<ReadRun> {
    let mut runs: Vec<ReadRun> = Vec::new();
    let mut covered = 0u64;
    let mut push = |run_len: u64, zero: bool| match runs.last_mut() {
        Some(last) if last.zero == zero => last.len += run_len,
        _ => runs.push(ReadRun { len: run_len, zero }),
    };
    for extent in extents {
        let take = extent.len.min(len - covered);
        if take == 0 {
            break;
        }
        push(take, extent.zero);
        covered += take;
    }
    if covered < len {
        push(len - covered, false);
    }
    runs
}

/// The `base:allocation` descriptors for a request of `len` bytes: clipped so their sum
/// stays within the request, merged where neighbours share flags, at most `limit`.
fn status_descriptors(
    extents: &[BlockStatusExtent],
    len: u32,
    limit: usize,
) -> Vec<StatusDescriptor> {
    let mut descriptors: Vec<StatusDescriptor> = Vec::new();
    let mut covered = 0u32;
    for extent in extents {
        let take = extent.len.min(u64::from(len - covered)) as u32;
        if take == 0 {
            if covered == len {
                break;
            }
            continue;
        }
        let flags = (if extent.hole { wire::STATE_HOLE } else { 0 })
            | (if extent.zero { wire::STATE_ZERO } else { 0 });
        let full = descriptors.len() == limit;
        match descriptors.last_mut() {
            Some(last) if last.flags == flags => last.len += take,
            _ if full => break,
            _ => descriptors.push(StatusDescriptor { len: take, flags }),
        }
        covered += take;
    }
    descriptors
}

#[cfg(test)]
#[path = "transmission_tests.rs"]
mod tests;
