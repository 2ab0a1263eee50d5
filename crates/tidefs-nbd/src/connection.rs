//! One client connection, both phases, with no I/O: the runtime (or a test, or the fuzz
//! target) reads exactly what [`Connection::want`] asks for, passes it to
//! [`Connection::receive`] and sends what was appended to `out`.

use std::sync::Arc;

use crate::error::ProtocolError;
use crate::export::ExportProvider;
use crate::handshake::{Handshake, HandshakeStep};
use crate::limits::NBD_REQUEST_BYTES_MAX;
use crate::request::{RequestHeader, REQUEST_HEADER_BYTES};
use crate::transmission::{Flow, Transmission};

/// What the connection needs next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    /// Exactly this many bytes (never 0).
    Bytes(usize),
    /// Nothing: send what is pending and close.
    Close,
}

enum Phase {
    Handshake(Handshake),
    /// Waiting for a request header.
    Transmission(Transmission),
    /// A write's header is in; its payload comes next.
    Payload(Transmission, RequestHeader),
    Closed,
}

pub struct Connection {
    phase: Phase,
}

impl Connection {
    /// Starts a connection and appends the server's greeting to `out`.
    pub fn new(provider: Arc<dyn ExportProvider>, out: &mut Vec<u8>) -> Self {
        out.extend_from_slice(&Handshake::greeting());
        Self {
            phase: Phase::Handshake(Handshake::new(provider)),
        }
    }

    pub fn want(&self) -> Want {
        match &self.phase {
            Phase::Handshake(handshake) => match handshake.bytes_wanted() {
                0 => Want::Close,
                n => Want::Bytes(n),
            },
            Phase::Transmission(_) => Want::Bytes(REQUEST_HEADER_BYTES),
            Phase::Payload(_, header) => Want::Bytes(header.payload_bytes() as usize),
            Phase::Closed => Want::Close,
        }
    }

    /// True once the handshake is over and requests are being served.
    pub fn is_transmitting(&self) -> bool {
        matches!(self.phase, Phase::Transmission(_) | Phase::Payload(..))
    }

    /// Consumes exactly the bytes [`Connection::want`] asked for. An error means the peer
    /// broke the protocol: close without sending anything more than `out` already holds.
    pub fn receive(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), ProtocolError> {
        let result = self.step(input, out);
        if result.is_err() {
            self.phase = Phase::Closed;
        }
        result
    }

    fn step(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), ProtocolError> {
        match std::mem::replace(&mut self.phase, Phase::Closed) {
            Phase::Handshake(mut handshake) => {
                self.phase = match handshake.receive(input, out)? {
                    HandshakeStep::Continue => Phase::Handshake(handshake),
                    HandshakeStep::Aborted => Phase::Closed,
                    HandshakeStep::Ready(negotiated) => {
                        Phase::Transmission(Transmission::new(*negotiated))
                    }
                };
            }
            Phase::Transmission(session) => {
                let bytes: &[u8; REQUEST_HEADER_BYTES] =
                    input.try_into().expect("caller must frame input");
                let header = RequestHeader::decode(bytes)?;
                let payload_bytes = header.payload_bytes();
                // Larger payloads cannot be buffered, and skipping them would mean
                // reading unbounded data; the protocol allows hanging up instead.
                if payload_bytes > NBD_REQUEST_BYTES_MAX {
                    return Err(ProtocolError::WritePayloadTooLarge {
                        len: payload_bytes,
                        max_bytes: NBD_REQUEST_BYTES_MAX,
                    });
                }
                self.phase = if payload_bytes == 0 {
                    execute(session, &header, &[], out)
                } else {
                    Phase::Payload(session, header)
                };
            }
            Phase::Payload(session, header) => {
                self.phase = execute(session, &header, input, out);
            }
            Phase::Closed => unreachable!("want() is Close once closed"),
        }
        Ok(())
    }
}

fn execute(
    session: Transmission,
    header: &RequestHeader,
    payload: &[u8],
    out: &mut Vec<u8>,
) -> Phase {
    match session.handle(header, payload, out) {
        Flow::Continue => Phase::Transmission(session),
        Flow::Disconnect => Phase::Closed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export_map::ExportMap;
    use crate::memory_export::MemoryExport;
    use crate::wire;

    fn connection(out: &mut Vec<u8>) -> Connection {
        let provider = ExportMap::new().with_export("d", "", Arc::new(MemoryExport::new(4096)));
        Connection::new(Arc::new(provider), out)
    }

    fn feed(connection: &mut Connection, mut bytes: &[u8], out: &mut Vec<u8>) {
        while !bytes.is_empty() {
            let Want::Bytes(n) = connection.want() else {
                panic!("connection closed with input left");
            };
            let (now, rest) = bytes.split_at(n);
            connection.receive(now, out).unwrap();
            bytes = rest;
        }
    }

    fn export_name_bytes() -> Vec<u8> {
        let mut bytes = wire::FLAG_C_FIXED_NEWSTYLE.to_be_bytes().to_vec();
        bytes.extend_from_slice(&wire::IHAVEOPT.to_be_bytes());
        bytes.extend_from_slice(&wire::OPT_EXPORT_NAME.to_be_bytes());
        bytes.extend_from_slice(&1u32.to_be_bytes());
        bytes.push(b'd');
        bytes
    }

    #[test]
    fn runs_handshake_then_requests_then_disconnect() {
        let mut out = Vec::new();
        let mut connection = connection(&mut out);
        assert_eq!(out.len(), 18, "greeting");
        feed(&mut connection, &export_name_bytes(), &mut out);
        assert!(connection.is_transmitting());
        out.clear();
        let write = RequestHeader {
            flags: 0,
            command: wire::CMD_WRITE,
            handle: 1,
            offset: 0,
            length: 4,
        };
        let mut bytes = write.encode().to_vec();
        bytes.extend_from_slice(b"data");
        feed(&mut connection, &bytes, &mut out);
        assert_eq!(out.len(), 16, "one simple reply");
        let disc = RequestHeader {
            command: wire::CMD_DISC,
            length: 0,
            ..write
        };
        feed(&mut connection, &disc.encode(), &mut out);
        assert_eq!(connection.want(), Want::Close);
    }

    #[test]
    fn oversize_write_payload_closes_the_connection() {
        let mut out = Vec::new();
        let mut connection = connection(&mut out);
        feed(&mut connection, &export_name_bytes(), &mut out);
        let write = RequestHeader {
            flags: 0,
            command: wire::CMD_WRITE,
            handle: 1,
            offset: 0,
            length: NBD_REQUEST_BYTES_MAX + 1,
        };
        let result = connection.receive(&write.encode(), &mut out);
        assert!(matches!(
            result,
            Err(ProtocolError::WritePayloadTooLarge { .. })
        ));
        assert_eq!(connection.want(), Want::Close);
    }

    #[test]
    fn garbage_instead_of_a_request_closes_the_connection() {
        let mut out = Vec::new();
        let mut connection = connection(&mut out);
        feed(&mut connection, &export_name_bytes(), &mut out);
        let result = connection.receive(&[0xee; REQUEST_HEADER_BYTES], &mut out);
        assert!(matches!(result, Err(ProtocolError::BadRequestMagic { .. })));
        assert_eq!(connection.want(), Want::Close);
    }
}
