//! The fixed-newstyle handshake as a state machine with no I/O: the caller reads exactly
//! [`Handshake::bytes_wanted`] bytes, hands them to [`Handshake::receive`], and sends
//! whatever it appended to `out`.
//!
//! Messages, all big-endian:
//!
//! ```text
//! S: greeting      | "NBDMAGIC" u64 | "IHAVEOPT" u64 | handshake flags u16 |       (18 bytes)
//! C: client flags  | u32 |
//! C: option        | "IHAVEOPT" u64 | option u32 | length u32 | payload… |
//! S: option reply  | 0x3e889045565a9 u64 | option u32 | reply type u32 | length u32 | data… |
//! S: EXPORT_NAME   | size u64 | transmission flags u16 | 124 zero bytes unless NO_ZEROES |
//! ```
//!
//! States: `ClientFlags` → (`OptionHeader` ⇄ `OptionPayload`)* → `Finished`, which is
//! reached by `NBD_OPT_ABORT`, a successful `NBD_OPT_GO` or `NBD_OPT_EXPORT_NAME`.
//! Anything the protocol lets the server answer with an error reply is answered and the
//! handshake goes on; only violations that leave the stream unreadable (bad magic,
//! unknown client flags, oversize payloads) or an `NBD_OPT_EXPORT_NAME` that cannot be
//! served (it has no error reply) end the connection.

use std::sync::Arc;

use crate::errno::option_reply_for_open_error;
use crate::error::{OptionPayloadError, ProtocolError};
use crate::export::{BlockExport, BlockSizeConstraints, ExportProvider};
use crate::limits::{
    HANDSHAKE_OPTIONS_MAX, NBD_REQUEST_BYTES_MAX, OPTION_PAYLOAD_BYTES_MAX, STRING_BYTES_MAX,
};
use crate::option::{parse_export_name, parse_info_request, parse_meta_context_request};
use crate::reply::{be_u32, be_u64, truncate_on_char_boundary};
use crate::request::RequestContext;
use crate::wire;

pub const GREETING_BYTES: usize = 18;
const CLIENT_FLAGS_BYTES: usize = 4;
const OPTION_HEADER_BYTES: usize = 16;
/// Zero padding after the `NBD_OPT_EXPORT_NAME` reply, unless `NBD_FLAG_C_NO_ZEROES`.
const EXPORT_NAME_PADDING_BYTES: usize = 124;

/// The id under which `base:allocation` is selected. Any value works; clients echo it.
pub const BASE_ALLOCATION_CONTEXT_ID: u32 = 1;

/// What the handshake agreed, handed to the transmission phase.
pub struct Negotiated {
    pub export_name: String,
    pub export: Arc<dyn BlockExport>,
    pub structured_replies: bool,
    /// `Some(id)` when `base:allocation` was selected for this export.
    pub base_allocation_context: Option<u32>,
    pub transmission_flags: u16,
    /// As advertised: the export's constraints with the maximum capped at
    /// [`NBD_REQUEST_BYTES_MAX`].
    pub constraints: BlockSizeConstraints,
}

impl Negotiated {
    pub fn request_context(&self) -> RequestContext {
        RequestContext {
            export_size: self.export.size(),
            read_only: self.transmission_flags & wire::FLAG_READ_ONLY != 0,
            structured_replies: self.structured_replies,
            block_status: self.base_allocation_context.is_some(),
            constraints: self.constraints,
        }
    }
}

/// What happened after a message was received.
pub enum HandshakeStep {
    /// Keep reading: more options may follow.
    Continue,
    /// The client sent `NBD_OPT_ABORT`; close after sending `out`.
    Aborted,
    /// Transmission starts right after `out` is sent.
    Ready(Box<Negotiated>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    ClientFlags,
    OptionHeader,
    OptionPayload { option: u32, len: u32 },
    Finished,
}

pub struct Handshake {
    provider: Arc<dyn ExportProvider>,
    state: State,
    no_zeroes: bool,
    structured_replies: bool,
    /// The export named by the last `NBD_OPT_SET_META_CONTEXT` that selected
    /// `base:allocation`; the context only applies if the client goes to that export.
    meta_context_export: Option<String>,
    options_received: u32,
}

impl Handshake {
    /// Starts a handshake; the caller sends [`Handshake::greeting`] first.
    pub fn new(provider: Arc<dyn ExportProvider>) -> Self {
        Self {
            provider,
            state: State::ClientFlags,
            no_zeroes: false,
            structured_replies: false,
            meta_context_export: None,
            options_received: 0,
        }
    }

    /// The first bytes the server sends: it speaks fixed newstyle and can omit zeroes.
    pub fn greeting() -> [u8; GREETING_BYTES] {
        let mut bytes = [0u8; GREETING_BYTES];
        bytes[0..8].copy_from_slice(&wire::NBD_MAGIC.to_be_bytes());
        bytes[8..16].copy_from_slice(&wire::IHAVEOPT.to_be_bytes());
        let flags = wire::FLAG_FIXED_NEWSTYLE | wire::FLAG_NO_ZEROES;
        bytes[16..18].copy_from_slice(&flags.to_be_bytes());
        bytes
    }

    /// Exactly how many bytes [`Handshake::receive`] takes next; 0 once finished.
    pub fn bytes_wanted(&self) -> usize {
        match self.state {
            State::ClientFlags => CLIENT_FLAGS_BYTES,
            State::OptionHeader => OPTION_HEADER_BYTES,
            State::OptionPayload { len, .. } => len as usize,
            State::Finished => 0,
        }
    }

    /// Consumes the next message part (exactly `bytes_wanted()` bytes) and appends any
    /// reply to `out`. An error means: hang up without sending more.
    pub fn receive(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<HandshakeStep, ProtocolError> {
        assert_eq!(input.len(), self.bytes_wanted(), "caller must frame input");
        match self.state {
            State::ClientFlags => self.receive_client_flags(be_u32(input)),
            State::OptionHeader => self.receive_option_header(input, out),
            State::OptionPayload { option, .. } => {
                self.state = State::OptionHeader;
                self.receive_option(option, input, out)
            }
            State::Finished => unreachable!("bytes_wanted is 0 once finished"),
        }
    }

    fn receive_client_flags(&mut self, flags: u32) -> Result<HandshakeStep, ProtocolError> {
        let known = wire::FLAG_C_FIXED_NEWSTYLE | wire::FLAG_C_NO_ZEROES;
        if flags & !known != 0 {
            return Err(ProtocolError::UnknownClientFlags { flags });
        }
        // A client without FIXED_NEWSTYLE is still served: it can only send EXPORT_NAME,
        // which fixed newstyle answers exactly as plain newstyle does.
        self.no_zeroes = flags & wire::FLAG_C_NO_ZEROES != 0;
        self.state = State::OptionHeader;
        Ok(HandshakeStep::Continue)
    }

    fn receive_option_header(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<HandshakeStep, ProtocolError> {
        let magic = be_u64(&input[0..8]);
        if magic != wire::IHAVEOPT {
            return Err(ProtocolError::BadOptionMagic { magic });
        }
        let option = be_u32(&input[8..12]);
        let len = be_u32(&input[12..16]);
        self.options_received += 1;
        if self.options_received > HANDSHAKE_OPTIONS_MAX {
            return Err(ProtocolError::TooManyOptions {
                max: HANDSHAKE_OPTIONS_MAX,
            });
        }
        if len > OPTION_PAYLOAD_BYTES_MAX {
            return Err(ProtocolError::OptionTooLarge {
                option,
                len,
                max_bytes: OPTION_PAYLOAD_BYTES_MAX,
            });
        }
        if len == 0 {
            return self.receive_option(option, &[], out);
        }
        self.state = State::OptionPayload { option, len };
        Ok(HandshakeStep::Continue)
    }

    fn receive_option(
        &mut self,
        option: u32,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<HandshakeStep, ProtocolError> {
        match option {
            wire::OPT_EXPORT_NAME => self.export_name(payload, out),
            wire::OPT_ABORT => {
                // Any payload is ignored, as the protocol asks.
                put_option_reply(out, option, wire::REP_ACK, &[]);
                self.state = State::Finished;
                Ok(HandshakeStep::Aborted)
            }
            wire::OPT_LIST => {
                self.list(payload, out);
                Ok(HandshakeStep::Continue)
            }
            wire::OPT_INFO | wire::OPT_GO => Ok(self.info_or_go(option, payload, out)),
            wire::OPT_STRUCTURED_REPLY => {
                self.structured_reply(payload, out);
                Ok(HandshakeStep::Continue)
            }
            wire::OPT_LIST_META_CONTEXT | wire::OPT_SET_META_CONTEXT => {
                self.meta_context(option, payload, out);
                Ok(HandshakeStep::Continue)
            }
            wire::OPT_STARTTLS => {
                put_option_error(out, option, wire::REP_ERR_UNSUP, "TLS is not supported");
                Ok(HandshakeStep::Continue)
            }
            _ => {
                let message = format!("option {option} is not supported");
                put_option_error(out, option, wire::REP_ERR_UNSUP, &message);
                Ok(HandshakeStep::Continue)
            }
        }
    }

    /// `NBD_OPT_EXPORT_NAME` has no error reply: a name that cannot be served ends the
    /// connection, as the protocol requires.
    fn export_name(
        &mut self,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<HandshakeStep, ProtocolError> {
        let refused = |reason: String| ProtocolError::ExportNameRefused {
            name: String::from_utf8_lossy(&payload[..payload.len().min(STRING_BYTES_MAX)])
                .into_owned(),
            reason,
        };
        let name = parse_export_name(payload).map_err(|e| refused(e.to_string()))?;
        let export = self
            .provider
            .open(&name)
            .map_err(|e| refused(e.to_string()))?;
        let negotiated = self.negotiate(name, export);
        out.extend_from_slice(&negotiated.export.size().to_be_bytes());
        out.extend_from_slice(&negotiated.transmission_flags.to_be_bytes());
        if !self.no_zeroes {
            out.extend_from_slice(&[0u8; EXPORT_NAME_PADDING_BYTES]);
        }
        self.state = State::Finished;
        Ok(HandshakeStep::Ready(Box::new(negotiated)))
    }

    fn list(&self, payload: &[u8], out: &mut Vec<u8>) {
        if !payload.is_empty() {
            let message = "NBD_OPT_LIST takes no payload";
            put_option_error(out, wire::OPT_LIST, wire::REP_ERR_INVALID, message);
            return;
        }
        for info in self.provider.list() {
            // A name longer than the protocol allows could never be opened; skip it.
            if info.name.len() > STRING_BYTES_MAX {
                continue;
            }
            let description = truncate_on_char_boundary(&info.description, STRING_BYTES_MAX);
            let mut data = Vec::with_capacity(4 + info.name.len() + description.len());
            data.extend_from_slice(&(info.name.len() as u32).to_be_bytes());
            data.extend_from_slice(info.name.as_bytes());
            data.extend_from_slice(description.as_bytes());
            put_option_reply(out, wire::OPT_LIST, wire::REP_SERVER, &data);
        }
        put_option_reply(out, wire::OPT_LIST, wire::REP_ACK, &[]);
    }

    fn info_or_go(&mut self, option: u32, payload: &[u8], out: &mut Vec<u8>) -> HandshakeStep {
        let request = match parse_info_request(payload) {
            Ok(request) => request,
            Err(error) => {
                put_payload_error(out, option, &error);
                return HandshakeStep::Continue;
            }
        };
        let export = match self.provider.open(&request.name) {
            Ok(export) => export,
            Err(error) => {
                let reply = option_reply_for_open_error(&error);
                put_option_error(out, option, reply, &error.to_string());
                return HandshakeStep::Continue;
            }
        };
        let negotiated = self.negotiate(request.name, export);
        let requested = |info: u16| request.info_types.contains(&info);

        let mut export_info = wire::INFO_EXPORT.to_be_bytes().to_vec();
        export_info.extend_from_slice(&negotiated.export.size().to_be_bytes());
        export_info.extend_from_slice(&negotiated.transmission_flags.to_be_bytes());
        put_option_reply(out, option, wire::REP_INFO, &export_info);
        if requested(wire::INFO_NAME) {
            put_info_string(out, option, wire::INFO_NAME, &negotiated.export_name);
        }
        if requested(wire::INFO_DESCRIPTION) {
            let description = self.description_of(&negotiated.export_name);
            if !description.is_empty() {
                put_info_string(out, option, wire::INFO_DESCRIPTION, &description);
            }
        }
        // Sent even when not asked for: clients that do not understand it ignore it, and
        // it saves a round trip before NBD_REP_ERR_BLOCK_SIZE_REQD.
        let constraints = negotiated.constraints;
        let mut block_size = wire::INFO_BLOCK_SIZE.to_be_bytes().to_vec();
        block_size.extend_from_slice(&constraints.minimum_bytes().to_be_bytes());
        block_size.extend_from_slice(&constraints.preferred_bytes().to_be_bytes());
        block_size.extend_from_slice(&constraints.maximum_bytes().to_be_bytes());
        put_option_reply(out, option, wire::REP_INFO, &block_size);

        // Only GO commits the client to the constraints, so only GO is refused.
        if option == wire::OPT_GO
            && !requested(wire::INFO_BLOCK_SIZE)
            && !constraints.is_default_compatible()
        {
            let message = format!(
                "export needs {}-byte aligned requests; ask for NBD_INFO_BLOCK_SIZE",
                constraints.minimum_bytes()
            );
            put_option_error(out, option, wire::REP_ERR_BLOCK_SIZE_REQD, &message);
            return HandshakeStep::Continue;
        }
        put_option_reply(out, option, wire::REP_ACK, &[]);
        if option == wire::OPT_INFO {
            return HandshakeStep::Continue;
        }
        self.state = State::Finished;
        HandshakeStep::Ready(Box::new(negotiated))
    }

    fn structured_reply(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        let option = wire::OPT_STRUCTURED_REPLY;
        if !payload.is_empty() {
            let message = "NBD_OPT_STRUCTURED_REPLY takes no payload";
            put_option_error(out, option, wire::REP_ERR_INVALID, message);
        } else if self.structured_replies {
            let message = "structured replies are already negotiated";
            put_option_error(out, option, wire::REP_ERR_INVALID, message);
        } else {
            self.structured_replies = true;
            put_option_reply(out, option, wire::REP_ACK, &[]);
        }
    }

    fn meta_context(&mut self, option: u32, payload: &[u8], out: &mut Vec<u8>) {
        let is_set = option == wire::OPT_SET_META_CONTEXT;
        if is_set {
            // SET replaces the selection even when it fails.
            self.meta_context_export = None;
        }
        if !self.structured_replies {
            let message = "negotiate NBD_OPT_STRUCTURED_REPLY first";
            put_option_error(out, option, wire::REP_ERR_INVALID, message);
            return;
        }
        let request = match parse_meta_context_request(payload) {
            Ok(request) => request,
            Err(error) => {
                put_payload_error(out, option, &error);
                return;
            }
        };
        if let Err(error) = self.provider.open(&request.export_name) {
            let reply = option_reply_for_open_error(&error);
            put_option_error(out, option, reply, &error.to_string());
            return;
        }
        let mut selects_allocation = request.queries.is_empty() && !is_set;
        for query in &request.queries {
            let Some((namespace, leaf)) = query.split_once(':') else {
                let message = format!("query {query:?} has no namespace");
                put_option_error(out, option, wire::REP_ERR_INVALID, &message);
                return;
            };
            // Unknown namespaces and unknown `base:` leaves are ignored, as the protocol
            // asks; the bare `base:` wildcard lists but never selects.
            selects_allocation |=
                namespace == "base" && (leaf == "allocation" || (leaf.is_empty() && !is_set));
        }
        if selects_allocation {
            // Context ids in LIST replies are reserved and must be zero.
            let id = if is_set {
                BASE_ALLOCATION_CONTEXT_ID
            } else {
                0
            };
            let mut data = id.to_be_bytes().to_vec();
            data.extend_from_slice(wire::CONTEXT_BASE_ALLOCATION.as_bytes());
            put_option_reply(out, option, wire::REP_META_CONTEXT, &data);
            if is_set {
                self.meta_context_export = Some(request.export_name);
            }
        }
        put_option_reply(out, option, wire::REP_ACK, &[]);
    }

    /// Everything transmission needs to know about `export`. Deterministic, so an
    /// `NBD_OPT_INFO` and a following `NBD_OPT_GO` report the same flags, as required.
    fn negotiate(&self, export_name: String, export: Arc<dyn BlockExport>) -> Negotiated {
        let base_allocation_context = (self.structured_replies
            && self.meta_context_export.as_deref() == Some(export_name.as_str()))
        .then_some(BASE_ALLOCATION_CONTEXT_ID);
        Negotiated {
            transmission_flags: transmission_flags(export.as_ref(), self.structured_replies),
            constraints: export
                .block_size()
                .with_maximum_capped(NBD_REQUEST_BYTES_MAX),
            export_name,
            export,
            structured_replies: self.structured_replies,
            base_allocation_context,
        }
    }

    fn description_of(&self, name: &str) -> String {
        self.provider
            .list()
            .into_iter()
            .find(|info| info.name == name)
            .map(|info| info.description)
            .unwrap_or_default()
    }
}

/// The transmission flags for an export. `NBD_FLAG_CAN_MULTI_CONN` is always set: the
/// [`BlockExport`] contract makes `flush` cover writes from every connection.
pub fn transmission_flags(export: &dyn BlockExport, structured_replies: bool) -> u16 {
    let mut flags = wire::FLAG_HAS_FLAGS
        | wire::FLAG_SEND_FLUSH
        | wire::FLAG_SEND_FUA
        | wire::FLAG_CAN_MULTI_CONN
        | wire::FLAG_SEND_CACHE;
    if export.read_only() {
        flags |= wire::FLAG_READ_ONLY;
    } else {
        flags |= wire::FLAG_SEND_TRIM | wire::FLAG_SEND_WRITE_ZEROES;
    }
    if structured_replies {
        flags |= wire::FLAG_SEND_DF;
    }
    flags
}

fn put_option_reply(out: &mut Vec<u8>, option: u32, reply_type: u32, data: &[u8]) {
    out.extend_from_slice(&wire::OPTION_REPLY_MAGIC.to_be_bytes());
    out.extend_from_slice(&option.to_be_bytes());
    out.extend_from_slice(&reply_type.to_be_bytes());
    let len = u32::try_from(data.len()).expect("option replies are small");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(data);
}

/// An error reply carries a message for the user.
fn put_option_error(out: &mut Vec<u8>, option: u32, reply_type: u32, message: &str) {
    debug_assert!(
        reply_type & 0x8000_0000 != 0,
        "error replies have bit 31 set"
    );
    let message = truncate_on_char_boundary(message, STRING_BYTES_MAX);
    put_option_reply(out, option, reply_type, message.as_bytes());
}

fn put_payload_error(out: &mut Vec<u8>, option: u32, error: &OptionPayloadError) {
    let reply = match error {
        OptionPayloadError::TooManyQueries { .. } => wire::REP_ERR_TOO_BIG,
        _ => wire::REP_ERR_INVALID,
    };
    put_option_error(out, option, reply, &error.to_string());
}

fn put_info_string(out: &mut Vec<u8>, option: u32, info: u16, text: &str) {
    let text = truncate_on_char_boundary(text, STRING_BYTES_MAX);
    let mut data = info.to_be_bytes().to_vec();
    data.extend_from_slice(text.as_bytes());
    put_option_reply(out, option, wire::REP_INFO, &data);
}

#[cfg(test)]
#[path = "handshake_tests.rs"]
mod tests;
