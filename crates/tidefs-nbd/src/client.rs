//! A small blocking NBD client: fixed-newstyle handshake with `NBD_OPT_GO`, structured
//! replies and `base:allocation`, and the transmission commands. It exists for tests and
//! for the load driver that benchmarks the server; it is not a general-purpose client
//! (no TLS, no `NBD_OPT_EXPORT_NAME` fallback, replies expected in request order when
//! using the one-shot methods).

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::Path;

use crate::error::ClientError;
use crate::limits::{NBD_REQUEST_BYTES_MAX, STRING_BYTES_MAX};
use crate::reply::{
    be_u32, be_u64, ChunkHeader, SimpleReplyHeader, CHUNK_HEADER_BYTES, SIMPLE_REPLY_BYTES,
};
use crate::request::RequestHeader;
use crate::stream::Stream;
use crate::wire;

/// What to negotiate.
#[derive(Clone, Copy, Debug)]
pub struct ClientOptions {
    pub structured_replies: bool,
    /// Select `base:allocation` (needs structured replies).
    pub base_allocation: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            structured_replies: true,
            base_allocation: true,
        }
    }
}

/// One extent of a block-status reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    pub len: u32,
    pub flags: u32,
}

/// A reply to one request, read off the wire.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// A simple reply; `error` is 0 on success.
    Simple { handle: u64, error: u32 },
    /// A structured reply chunk.
    Chunk {
        header: ChunkHeader,
        payload: Vec<u8>,
    },
}

pub struct NbdClient {
    reader: BufReader<Stream>,
    writer: BufWriter<Stream>,
    size: u64,
    transmission_flags: u16,
    minimum_block_bytes: u32,
    structured_replies: bool,
    context_id: Option<u32>,
    next_handle: u64,
}

impl NbdClient {
    pub fn connect_tcp(
        address: impl ToSocketAddrs,
        export: &str,
        options: ClientOptions,
    ) -> Result<Self, ClientError> {
        let stream = TcpStream::connect(address)?;
        stream.set_nodelay(true)?;
        Self::handshake(Stream::Tcp(stream), export, options)
    }

    pub fn connect_unix(
        path: &Path,
        export: &str,
        options: ClientOptions,
    ) -> Result<Self, ClientError> {
        Self::handshake(Stream::Unix(UnixStream::connect(path)?), export, options)
    }

    fn handshake(
        stream: Stream,
        export: &str,
        options: ClientOptions,
    ) -> Result<Self, ClientError> {
        let mut client = Self {
            reader: BufReader::new(stream.try_clone()?),
            writer: BufWriter::new(stream),
            size: 0,
            transmission_flags: 0,
            minimum_block_bytes: 1,
            structured_replies: false,
            context_id: None,
            next_handle: 1,
        };
        let mut greeting = [0u8; 18];
        client.reader.read_exact(&mut greeting)?;
        let fixed = u16::from_be_bytes([greeting[16], greeting[17]]) & wire::FLAG_FIXED_NEWSTYLE;
        if be_u64(&greeting[0..8]) != wire::NBD_MAGIC
            || be_u64(&greeting[8..16]) != wire::IHAVEOPT
            || fixed == 0
        {
            return Err(protocol("server does not speak fixed newstyle"));
        }
        let flags = wire::FLAG_C_FIXED_NEWSTYLE | wire::FLAG_C_NO_ZEROES;
        client.writer.write_all(&flags.to_be_bytes())?;
        if options.structured_replies {
            client.send_option(wire::OPT_STRUCTURED_REPLY, &[])?;
            client.expect_ack(wire::OPT_STRUCTURED_REPLY)?;
            client.structured_replies = true;
        }
        if options.structured_replies && options.base_allocation {
            let mut payload = string_u32(export);
            payload.extend_from_slice(&1u32.to_be_bytes());
            payload.extend_from_slice(&string_u32(wire::CONTEXT_BASE_ALLOCATION));
            client.send_option(wire::OPT_SET_META_CONTEXT, &payload)?;
            client.read_set_meta_context()?;
        }
        let mut payload = string_u32(export);
        payload.extend_from_slice(&1u16.to_be_bytes());
        payload.extend_from_slice(&wire::INFO_BLOCK_SIZE.to_be_bytes());
        client.send_option(wire::OPT_GO, &payload)?;
        client.read_go()?;
        Ok(client)
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn transmission_flags(&self) -> u16 {
        self.transmission_flags
    }

    pub fn minimum_block_bytes(&self) -> u32 {
        self.minimum_block_bytes
    }

    fn send_option(&mut self, option: u32, payload: &[u8]) -> io::Result<()> {
        self.writer.write_all(&wire::IHAVEOPT.to_be_bytes())?;
        self.writer.write_all(&option.to_be_bytes())?;
        self.writer
            .write_all(&(payload.len() as u32).to_be_bytes())?;
        self.writer.write_all(payload)?;
        self.writer.flush()
    }

    /// Reads one option reply: (reply type, data).
    fn read_option_reply(&mut self, option: u32) -> Result<(u32, Vec<u8>), ClientError> {
        let mut header = [0u8; 20];
        self.reader.read_exact(&mut header)?;
        if be_u64(&header[0..8]) != wire::OPTION_REPLY_MAGIC || be_u32(&header[8..12]) != option {
            return Err(protocol("bad option reply header"));
        }
        let len = be_u32(&header[16..20]) as usize;
        if len > 4 * STRING_BYTES_MAX + 64 {
            return Err(protocol("option reply too long"));
        }
        let mut data = vec![0u8; len];
        self.reader.read_exact(&mut data)?;
        let reply_type = be_u32(&header[12..16]);
        if reply_type & 0x8000_0000 != 0 {
            return Err(ClientError::OptionRefused {
                option,
                reply: reply_type,
                message: String::from_utf8_lossy(&data).into_owned(),
            });
        }
        Ok((reply_type, data))
    }

    fn expect_ack(&mut self, option: u32) -> Result<(), ClientError> {
        match self.read_option_reply(option)? {
            (wire::REP_ACK, _) => Ok(()),
            _ => Err(protocol("expected NBD_REP_ACK")),
        }
    }

    fn read_set_meta_context(&mut self) -> Result<(), ClientError> {
        loop {
            match self.read_option_reply(wire::OPT_SET_META_CONTEXT)? {
                (wire::REP_ACK, _) => return Ok(()),
                (wire::REP_META_CONTEXT, data) if data.len() >= 4 => {
                    if &data[4..] == wire::CONTEXT_BASE_ALLOCATION.as_bytes() {
                        self.context_id = Some(be_u32(&data[0..4]));
                    }
                }
                _ => return Err(protocol("unexpected meta context reply")),
            }
        }
    }

    fn read_go(&mut self) -> Result<(), ClientError> {
        let mut saw_export = false;
        loop {
            let (reply_type, data) = self.read_option_reply(wire::OPT_GO)?;
            match reply_type {
                wire::REP_ACK if saw_export => return Ok(()),
                wire::REP_INFO if data.len() >= 2 => {
                    let info = u16::from_be_bytes([data[0], data[1]]);
                    if info == wire::INFO_EXPORT && data.len() == 12 {
                        self.size = be_u64(&data[2..10]);
                        self.transmission_flags = u16::from_be_bytes([data[10], data[11]]);
                        saw_export = true;
                    } else if info == wire::INFO_BLOCK_SIZE && data.len() == 14 {
                        self.minimum_block_bytes = be_u32(&data[2..6]);
                    }
                }
                _ => return Err(protocol("unexpected reply to NBD_OPT_GO")),
            }
        }
    }

    /// Queues a request without waiting for its reply; returns its handle. Call
    /// [`NbdClient::flush_requests`] to push queued requests onto the wire.
    pub fn send_request(
        &mut self,
        command: u16,
        flags: u16,
        offset: u64,
        length: u32,
        payload: &[u8],
    ) -> io::Result<u64> {
        let handle = self.next_handle;
        self.next_handle += 1;
        let header = RequestHeader {
            flags,
            command,
            handle,
            offset,
            length,
        };
        self.writer.write_all(&header.encode())?;
        self.writer.write_all(payload)?;
        Ok(handle)
    }

    pub fn flush_requests(&mut self) -> io::Result<()> {
        self.writer.flush()
    }

    /// Reads the next simple reply or structured chunk. The data of a successful simple
    /// read reply is left on the wire for [`NbdClient::read_data`].
    pub fn receive_reply(&mut self) -> Result<Reply, ClientError> {
        let mut magic = [0u8; 4];
        self.reader.read_exact(&mut magic)?;
        match be_u32(&magic) {
            wire::SIMPLE_REPLY_MAGIC => {
                let mut bytes = [0u8; SIMPLE_REPLY_BYTES];
                bytes[..4].copy_from_slice(&magic);
                self.reader.read_exact(&mut bytes[4..])?;
                let header = SimpleReplyHeader::decode(&bytes).expect("magic checked");
                Ok(Reply::Simple {
                    handle: header.handle,
                    error: header.error,
                })
            }
            wire::STRUCTURED_REPLY_MAGIC => {
                let mut bytes = [0u8; CHUNK_HEADER_BYTES];
                bytes[..4].copy_from_slice(&magic);
                self.reader.read_exact(&mut bytes[4..])?;
                let header = ChunkHeader::decode(&bytes).expect("magic checked");
                if header.length > NBD_REQUEST_BYTES_MAX + 8 {
                    return Err(protocol("reply chunk too long"));
                }
                let mut payload = vec![0u8; header.length as usize];
                self.reader.read_exact(&mut payload)?;
                Ok(Reply::Chunk { header, payload })
            }
            other => Err(protocol(&format!("bad reply magic {other:#x}"))),
        }
    }

    /// Reads the data that follows a successful simple read reply.
    pub fn read_data(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.reader.read_exact(buf)
    }

    /// Sends one request and reads its whole reply. Read data lands in `read_into`;
    /// block-status extents are returned.
    fn round_trip(
        &mut self,
        command: u16,
        flags: u16,
        offset: u64,
        length: u32,
        payload: &[u8],
        mut read_into: Option<&mut [u8]>,
    ) -> Result<Vec<Extent>, ClientError> {
        let handle = self.send_request(command, flags, offset, length, payload)?;
        self.flush_requests()?;
        let mut extents = Vec::new();
        let mut failure = None;
        loop {
            let reply = self.receive_reply()?;
            let done = match reply {
                Reply::Simple { handle: h, error } => {
                    if h != handle {
                        return Err(protocol("reply for another handle"));
                    }
                    if error != 0 {
                        failure = Some((error, String::new()));
                    } else if let Some(buf) = read_into.as_deref_mut() {
                        self.read_data(buf)?;
                    }
                    true
                }
                Reply::Chunk { header, payload } => {
                    if header.handle != handle {
                        return Err(protocol("reply for another handle"));
                    }
                    let buf = read_into.as_deref_mut();
                    apply_chunk(&header, &payload, offset, buf, &mut extents, &mut failure)?;
                    header.is_done()
                }
            };
            if done {
                break;
            }
        }
        match failure {
            Some((errno, message)) => Err(ClientError::CommandFailed { errno, message }),
            None => Ok(extents),
        }
    }

    pub fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), ClientError> {
        let len = buf.len() as u32;
        self.round_trip(wire::CMD_READ, 0, offset, len, &[], Some(buf))
            .map(drop)
    }

    pub fn write(&mut self, offset: u64, data: &[u8], fua: bool) -> Result<(), ClientError> {
        let flags = if fua { wire::CMD_FLAG_FUA } else { 0 };
        self.round_trip(
            wire::CMD_WRITE,
            flags,
            offset,
            data.len() as u32,
            data,
            None,
        )
        .map(drop)
    }

    pub fn flush(&mut self) -> Result<(), ClientError> {
        self.round_trip(wire::CMD_FLUSH, 0, 0, 0, &[], None)
            .map(drop)
    }

    pub fn trim(&mut self, offset: u64, len: u32) -> Result<(), ClientError> {
        self.round_trip(wire::CMD_TRIM, 0, offset, len, &[], None)
            .map(drop)
    }

    pub fn write_zeroes(
        &mut self,
        offset: u64,
        len: u32,
        no_hole: bool,
    ) -> Result<(), ClientError> {
        let flags = if no_hole { wire::CMD_FLAG_NO_HOLE } else { 0 };
        self.round_trip(wire::CMD_WRITE_ZEROES, flags, offset, len, &[], None)
            .map(drop)
    }

    /// `base:allocation` extents from `offset`; needs the context to have been selected.
    pub fn block_status(&mut self, offset: u64, len: u32) -> Result<Vec<Extent>, ClientError> {
        if self.context_id.is_none() {
            return Err(protocol("base:allocation was not negotiated"));
        }
        self.round_trip(wire::CMD_BLOCK_STATUS, 0, offset, len, &[], None)
    }

    /// Any request, for tests that send what a well-behaved client would not.
    pub fn raw_command(
        &mut self,
        command: u16,
        flags: u16,
        offset: u64,
        length: u32,
        payload: &[u8],
    ) -> Result<(), ClientError> {
        self.round_trip(command, flags, offset, length, payload, None)
            .map(drop)
    }

    /// Sends `NBD_CMD_DISC` and closes.
    pub fn disconnect(mut self) -> io::Result<()> {
        self.send_request(wire::CMD_DISC, 0, 0, 0, &[])?;
        self.flush_requests()
    }
}

/// Folds one structured chunk into the reply being assembled.
fn apply_chunk(
    header: &ChunkHeader,
    payload: &[u8],
    request_offset: u64,
    read_into: Option<&mut [u8]>,
    extents: &mut Vec<Extent>,
    failure: &mut Option<(u32, String)>,
) -> Result<(), ClientError> {
    let target = |buf_len: usize, offset: u64, len: usize| {
        let start = offset
            .checked_sub(request_offset)
            .map(|s| s as usize)
            .filter(|s| s + len <= buf_len)
            .ok_or_else(|| protocol("chunk outside the request"))?;
        Ok::<_, ClientError>(start..start + len)
    };
    match header.kind {
        wire::REPLY_TYPE_NONE => {}
        wire::REPLY_TYPE_OFFSET_DATA if payload.len() > 8 => {
            let buf = read_into.ok_or_else(|| protocol("data chunk for a non-read"))?;
            let range = target(buf.len(), be_u64(&payload[0..8]), payload.len() - 8)?;
            buf[range].copy_from_slice(&payload[8..]);
        }
        wire::REPLY_TYPE_OFFSET_HOLE if payload.len() == 12 => {
            let buf = read_into.ok_or_else(|| protocol("hole chunk for a non-read"))?;
            let len = be_u32(&payload[8..12]) as usize;
            let range = target(buf.len(), be_u64(&payload[0..8]), len)?;
            buf[range].fill(0);
        }
        wire::REPLY_TYPE_BLOCK_STATUS if payload.len() >= 12 && payload.len() % 8 == 4 => {
            extents.extend(payload[4..].chunks(8).map(|d| Extent {
                len: be_u32(&d[0..4]),
                flags: be_u32(&d[4..8]),
            }));
        }
        kind if kind & 0x8000 != 0 && payload.len() >= 6 => {
            let message_len = u16::from_be_bytes([payload[4], payload[5]]) as usize;
            let message = payload.get(6..6 + message_len).unwrap_or_default();
            *failure = Some((
                be_u32(&payload[0..4]),
                String::from_utf8_lossy(message).into_owned(),
            ));
        }
        _ => return Err(protocol("malformed reply chunk")),
    }
    Ok(())
}

fn string_u32(text: &str) -> Vec<u8> {
    let mut bytes = (text.len() as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(text.as_bytes());
    bytes
}

fn protocol(message: &str) -> ClientError {
    ClientError::Protocol(message.to_owned())
}
