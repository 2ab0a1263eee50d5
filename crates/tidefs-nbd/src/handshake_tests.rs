//! Proves the handshake answers every option as the protocol says, byte for byte.

use super::*;
use crate::export_map::ExportMap;
use crate::memory_export::MemoryExport;

const DISK_BYTES: u64 = 1 << 20;

fn provider() -> Arc<dyn ExportProvider> {
    Arc::new(
        ExportMap::new()
            .with_export("disk", "test disk", Arc::new(MemoryExport::new(DISK_BYTES)))
            .with_export(
                "ro",
                "",
                Arc::new(MemoryExport::new(4096).with_read_only(true)),
            )
            .with_export(
                "aligned",
                "needs 512",
                Arc::new(
                    MemoryExport::new(8192).with_block_size(BlockSizeConstraints::new(
                        512,
                        4096,
                        1 << 20,
                    )),
                ),
            )
            .with_default("disk"),
    )
}

/// One option reply as the client sees it.
#[derive(Debug, PartialEq, Eq)]
struct OptionReply {
    option: u32,
    reply_type: u32,
    data: Vec<u8>,
}

fn parse_replies(mut bytes: &[u8]) -> Vec<OptionReply> {
    let mut replies = Vec::new();
    while !bytes.is_empty() {
        assert_eq!(be_u64(&bytes[0..8]), wire::OPTION_REPLY_MAGIC);
        let len = be_u32(&bytes[16..20]) as usize;
        replies.push(OptionReply {
            option: be_u32(&bytes[8..12]),
            reply_type: be_u32(&bytes[12..16]),
            data: bytes[20..20 + len].to_vec(),
        });
        bytes = &bytes[20 + len..];
    }
    replies
}

/// A handshake past the client flags.
fn started(client_flags: u32) -> Handshake {
    let mut handshake = Handshake::new(provider());
    let mut out = Vec::new();
    let step = handshake
        .receive(&client_flags.to_be_bytes(), &mut out)
        .unwrap();
    assert!(matches!(step, HandshakeStep::Continue));
    assert!(out.is_empty());
    handshake
}

fn option_header(option: u32, len: u32) -> Vec<u8> {
    let mut bytes = wire::IHAVEOPT.to_be_bytes().to_vec();
    bytes.extend_from_slice(&option.to_be_bytes());
    bytes.extend_from_slice(&len.to_be_bytes());
    bytes
}

/// Sends one option the way a runtime would frame it; returns the step and raw output.
fn send_raw(
    handshake: &mut Handshake,
    option: u32,
    payload: &[u8],
) -> (Result<HandshakeStep, ProtocolError>, Vec<u8>) {
    let mut out = Vec::new();
    assert_eq!(handshake.bytes_wanted(), 16);
    let header = option_header(option, payload.len() as u32);
    let step = handshake.receive(&header, &mut out);
    if payload.is_empty() || step.is_err() {
        return (step, out);
    }
    assert!(matches!(step, Ok(HandshakeStep::Continue)));
    assert_eq!(handshake.bytes_wanted(), payload.len());
    let step = handshake.receive(payload, &mut out);
    (step, out)
}

fn send(
    handshake: &mut Handshake,
    option: u32,
    payload: &[u8],
) -> (HandshakeStep, Vec<OptionReply>) {
    let (step, out) = send_raw(handshake, option, payload);
    (step.unwrap(), parse_replies(&out))
}

fn info_payload(name: &str, infos: &[u16]) -> Vec<u8> {
    let mut p = (name.len() as u32).to_be_bytes().to_vec();
    p.extend_from_slice(name.as_bytes());
    p.extend_from_slice(&(infos.len() as u16).to_be_bytes());
    for info in infos {
        p.extend_from_slice(&info.to_be_bytes());
    }
    p
}

fn meta_payload(name: &str, queries: &[&str]) -> Vec<u8> {
    let mut p = (name.len() as u32).to_be_bytes().to_vec();
    p.extend_from_slice(name.as_bytes());
    p.extend_from_slice(&(queries.len() as u32).to_be_bytes());
    for query in queries {
        p.extend_from_slice(&(query.len() as u32).to_be_bytes());
        p.extend_from_slice(query.as_bytes());
    }
    p
}

fn reply_types(replies: &[OptionReply]) -> Vec<u32> {
    replies.iter().map(|r| r.reply_type).collect()
}

fn info_of(replies: &[OptionReply], info: u16) -> Option<&[u8]> {
    replies
        .iter()
        .filter(|r| r.reply_type == wire::REP_INFO)
        .find(|r| u16::from_be_bytes([r.data[0], r.data[1]]) == info)
        .map(|r| &r.data[2..])
}

fn ready(step: HandshakeStep) -> Box<Negotiated> {
    match step {
        HandshakeStep::Ready(negotiated) => negotiated,
        _ => panic!("handshake did not finish"),
    }
}

const FIXED: u32 = wire::FLAG_C_FIXED_NEWSTYLE;

#[test]
fn greeting_bytes_are_pinned() {
    #[rustfmt::skip]
    let expected = [
        b'N', b'B', b'D', b'M', b'A', b'G', b'I', b'C',
        b'I', b'H', b'A', b'V', b'E', b'O', b'P', b'T',
        0, 3, // FIXED_NEWSTYLE | NO_ZEROES
    ];
    assert_eq!(Handshake::greeting(), expected);
}

#[test]
fn unknown_client_flags_end_the_connection() {
    let mut handshake = Handshake::new(provider());
    let result = handshake.receive(&4u32.to_be_bytes(), &mut Vec::new());
    assert!(matches!(
        result,
        Err(ProtocolError::UnknownClientFlags { flags: 4 })
    ));
}

#[test]
fn bad_option_magic_ends_the_connection() {
    let mut handshake = started(FIXED);
    let mut header = option_header(wire::OPT_LIST, 0);
    header[0] ^= 1;
    let result = handshake.receive(&header, &mut Vec::new());
    assert!(matches!(result, Err(ProtocolError::BadOptionMagic { .. })));
}

#[test]
fn oversize_option_payload_ends_the_connection() {
    let mut handshake = started(FIXED);
    let header = option_header(999, OPTION_PAYLOAD_BYTES_MAX + 1);
    let result = handshake.receive(&header, &mut Vec::new());
    assert!(matches!(result, Err(ProtocolError::OptionTooLarge { .. })));
}

#[test]
fn endless_options_are_cut_off() {
    let mut handshake = started(FIXED);
    for _ in 0..HANDSHAKE_OPTIONS_MAX {
        let (step, _) = send(&mut handshake, wire::OPT_STARTTLS, &[]);
        assert!(matches!(step, HandshakeStep::Continue));
    }
    let (step, _) = send_raw(&mut handshake, wire::OPT_STARTTLS, &[]);
    assert!(matches!(step, Err(ProtocolError::TooManyOptions { .. })));
}

#[test]
fn export_name_sends_size_flags_and_padding() {
    let mut handshake = started(FIXED);
    let (step, out) = send_raw(&mut handshake, wire::OPT_EXPORT_NAME, b"disk");
    let negotiated = ready(step.unwrap());
    assert_eq!(out.len(), 8 + 2 + 124);
    assert_eq!(be_u64(&out[0..8]), DISK_BYTES);
    let flags = u16::from_be_bytes([out[8], out[9]]);
    assert_eq!(flags, negotiated.transmission_flags);
    assert!(out[10..].iter().all(|&b| b == 0));
    assert_eq!(handshake.bytes_wanted(), 0);
}

#[test]
fn export_name_with_no_zeroes_omits_padding() {
    let mut handshake = started(FIXED | wire::FLAG_C_NO_ZEROES);
    let (step, out) = send_raw(&mut handshake, wire::OPT_EXPORT_NAME, b"");
    let negotiated = ready(step.unwrap());
    assert_eq!(out.len(), 10, "the empty name opens the default export");
    assert_eq!(negotiated.export.size(), DISK_BYTES);
}

#[test]
fn export_name_for_unknown_export_ends_the_connection() {
    let mut handshake = started(FIXED);
    let (step, out) = send_raw(&mut handshake, wire::OPT_EXPORT_NAME, b"nope");
    assert!(matches!(
        step,
        Err(ProtocolError::ExportNameRefused { ref name, .. }) if name == "nope"
    ));
    assert!(out.is_empty());
}

#[test]
fn abort_is_acknowledged() {
    let mut handshake = started(FIXED);
    let (step, replies) = send(&mut handshake, wire::OPT_ABORT, &[]);
    assert!(matches!(step, HandshakeStep::Aborted));
    assert_eq!(
        replies,
        [OptionReply {
            option: wire::OPT_ABORT,
            reply_type: wire::REP_ACK,
            data: vec![]
        }]
    );
    assert_eq!(handshake.bytes_wanted(), 0);
}

#[test]
fn list_names_every_export_then_acks() {
    let mut handshake = started(FIXED);
    let (_, replies) = send(&mut handshake, wire::OPT_LIST, &[]);
    assert_eq!(
        reply_types(&replies),
        [
            wire::REP_SERVER,
            wire::REP_SERVER,
            wire::REP_SERVER,
            wire::REP_ACK
        ]
    );
    let first = &replies[0].data;
    assert_eq!(be_u32(&first[0..4]), 4);
    assert_eq!(&first[4..8], b"disk");
    assert_eq!(&first[8..], b"test disk");
}

#[test]
fn list_with_payload_is_invalid() {
    let mut handshake = started(FIXED);
    let (step, replies) = send(&mut handshake, wire::OPT_LIST, b"x");
    assert!(matches!(step, HandshakeStep::Continue));
    assert_eq!(reply_types(&replies), [wire::REP_ERR_INVALID]);
}

#[test]
fn starttls_is_unsupported() {
    let mut handshake = started(FIXED);
    let (_, replies) = send(&mut handshake, wire::OPT_STARTTLS, &[]);
    assert_eq!(reply_types(&replies), [wire::REP_ERR_UNSUP]);
    assert_eq!(replies[0].option, wire::OPT_STARTTLS);
}

#[test]
fn unknown_options_are_unsupported_and_the_next_option_still_parses() {
    let mut handshake = started(FIXED);
    for option in [4, wire::OPT_EXTENDED_HEADERS, 0x1234_5678] {
        let (_, replies) = send(&mut handshake, option, b"some payload to skip");
        assert_eq!(reply_types(&replies), [wire::REP_ERR_UNSUP]);
        assert_eq!(replies[0].option, option);
    }
    let (_, replies) = send(&mut handshake, wire::OPT_LIST, &[]);
    assert_eq!(replies.last().unwrap().reply_type, wire::REP_ACK);
}

#[test]
fn info_describes_the_export_and_stays_in_the_handshake() {
    let mut handshake = started(FIXED);
    let payload = info_payload(
        "disk",
        &[
            wire::INFO_NAME,
            wire::INFO_DESCRIPTION,
            wire::INFO_BLOCK_SIZE,
        ],
    );
    let (step, replies) = send(&mut handshake, wire::OPT_INFO, &payload);
    assert!(matches!(step, HandshakeStep::Continue));
    assert_eq!(replies.last().unwrap().reply_type, wire::REP_ACK);
    let export = info_of(&replies, wire::INFO_EXPORT).unwrap();
    assert_eq!(export.len(), 10);
    assert_eq!(be_u64(&export[0..8]), DISK_BYTES);
    let flags = u16::from_be_bytes([export[8], export[9]]);
    assert_eq!(
        flags,
        wire::FLAG_HAS_FLAGS
            | wire::FLAG_SEND_FLUSH
            | wire::FLAG_SEND_FUA
            | wire::FLAG_SEND_TRIM
            | wire::FLAG_SEND_WRITE_ZEROES
            | wire::FLAG_CAN_MULTI_CONN
            | wire::FLAG_SEND_CACHE
    );
    assert_eq!(info_of(&replies, wire::INFO_NAME).unwrap(), b"disk");
    assert_eq!(
        info_of(&replies, wire::INFO_DESCRIPTION).unwrap(),
        b"test disk"
    );
    let block_size = info_of(&replies, wire::INFO_BLOCK_SIZE).unwrap();
    assert_eq!(be_u32(&block_size[0..4]), 1);
    assert_eq!(be_u32(&block_size[4..8]), 4096);
    assert_eq!(be_u32(&block_size[8..12]), NBD_REQUEST_BYTES_MAX);
    assert_eq!(handshake.bytes_wanted(), 16, "more options may follow");
}

#[test]
fn info_for_unknown_export_is_err_unknown() {
    let mut handshake = started(FIXED);
    let (_, replies) = send(&mut handshake, wire::OPT_INFO, &info_payload("nope", &[]));
    assert_eq!(reply_types(&replies), [wire::REP_ERR_UNKNOWN]);
    let (_, replies) = send(&mut handshake, wire::OPT_GO, &info_payload("nope", &[]));
    assert_eq!(reply_types(&replies), [wire::REP_ERR_UNKNOWN]);
}

#[test]
fn truncated_info_payload_is_invalid() {
    let mut handshake = started(FIXED);
    let payload = info_payload("disk", &[wire::INFO_NAME]);
    for cut in [1, 4, 8, payload.len() - 1] {
        let (step, replies) = send(&mut handshake, wire::OPT_GO, &payload[..cut]);
        assert!(matches!(step, HandshakeStep::Continue), "cut at {cut}");
        assert_eq!(
            reply_types(&replies),
            [wire::REP_ERR_INVALID],
            "cut at {cut}"
        );
    }
}

#[test]
fn go_enters_transmission() {
    let mut handshake = started(FIXED);
    let (step, replies) = send(&mut handshake, wire::OPT_GO, &info_payload("disk", &[]));
    assert_eq!(replies.last().unwrap().reply_type, wire::REP_ACK);
    assert!(
        info_of(&replies, wire::INFO_NAME).is_none(),
        "not requested"
    );
    let negotiated = ready(step);
    assert_eq!(negotiated.export_name, "disk");
    assert!(!negotiated.structured_replies);
    assert_eq!(negotiated.base_allocation_context, None);
    assert_eq!(handshake.bytes_wanted(), 0);
}

#[test]
fn go_on_read_only_export_flags_it_and_drops_write_features() {
    let mut handshake = started(FIXED);
    let (step, _) = send(&mut handshake, wire::OPT_GO, &info_payload("ro", &[]));
    let flags = ready(step).transmission_flags;
    assert_ne!(flags & wire::FLAG_READ_ONLY, 0);
    assert_eq!(
        flags & (wire::FLAG_SEND_TRIM | wire::FLAG_SEND_WRITE_ZEROES),
        0
    );
}

#[test]
fn go_without_block_size_request_on_aligned_export_is_refused() {
    let mut handshake = started(FIXED);
    let (step, replies) = send(&mut handshake, wire::OPT_GO, &info_payload("aligned", &[]));
    assert!(matches!(step, HandshakeStep::Continue));
    assert_eq!(
        replies.last().unwrap().reply_type,
        wire::REP_ERR_BLOCK_SIZE_REQD
    );
    let block_size = info_of(&replies, wire::INFO_BLOCK_SIZE).expect("sent before the error");
    assert_eq!(be_u32(&block_size[0..4]), 512);

    // INFO commits to nothing, so it is not refused.
    let (_, replies) = send(
        &mut handshake,
        wire::OPT_INFO,
        &info_payload("aligned", &[]),
    );
    assert_eq!(replies.last().unwrap().reply_type, wire::REP_ACK);

    let payload = info_payload("aligned", &[wire::INFO_BLOCK_SIZE]);
    let (step, replies) = send(&mut handshake, wire::OPT_GO, &payload);
    assert_eq!(replies.last().unwrap().reply_type, wire::REP_ACK);
    assert_eq!(ready(step).constraints.minimum_bytes(), 512);
}

#[test]
fn structured_reply_is_acked_once() {
    let mut handshake = started(FIXED);
    let (_, replies) = send(&mut handshake, wire::OPT_STRUCTURED_REPLY, b"x");
    assert_eq!(reply_types(&replies), [wire::REP_ERR_INVALID]);
    let (_, replies) = send(&mut handshake, wire::OPT_STRUCTURED_REPLY, &[]);
    assert_eq!(reply_types(&replies), [wire::REP_ACK]);
    let (_, replies) = send(&mut handshake, wire::OPT_STRUCTURED_REPLY, &[]);
    assert_eq!(reply_types(&replies), [wire::REP_ERR_INVALID]);
    let (step, _) = send(&mut handshake, wire::OPT_GO, &info_payload("disk", &[]));
    let negotiated = ready(step);
    assert!(negotiated.structured_replies);
    assert_ne!(negotiated.transmission_flags & wire::FLAG_SEND_DF, 0);
}

#[test]
fn meta_context_needs_structured_replies() {
    let mut handshake = started(FIXED);
    for option in [wire::OPT_LIST_META_CONTEXT, wire::OPT_SET_META_CONTEXT] {
        let payload = meta_payload("disk", &["base:allocation"]);
        let (_, replies) = send(&mut handshake, option, &payload);
        assert_eq!(reply_types(&replies), [wire::REP_ERR_INVALID]);
    }
}

fn context_names(replies: &[OptionReply]) -> Vec<(u32, String)> {
    replies
        .iter()
        .filter(|r| r.reply_type == wire::REP_META_CONTEXT)
        .map(|r| {
            (
                be_u32(&r.data[0..4]),
                String::from_utf8(r.data[4..].to_vec()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn list_meta_context_answers_queries() {
    let mut handshake = started(FIXED);
    send(&mut handshake, wire::OPT_STRUCTURED_REPLY, &[]);
    let allocation = vec![(0, "base:allocation".to_owned())];
    for (queries, expected) in [
        (&[][..], allocation.clone()),
        (&["base:"][..], allocation.clone()),
        (&["base:allocation"][..], allocation.clone()),
        (&["qemu:dirty-bitmap:a", "base:nope"][..], vec![]),
    ] {
        let (_, replies) = send(
            &mut handshake,
            wire::OPT_LIST_META_CONTEXT,
            &meta_payload("disk", queries),
        );
        assert_eq!(context_names(&replies), expected, "queries {queries:?}");
        assert_eq!(replies.last().unwrap().reply_type, wire::REP_ACK);
    }
}

#[test]
fn malformed_meta_context_requests_are_refused() {
    let mut handshake = started(FIXED);
    send(&mut handshake, wire::OPT_STRUCTURED_REPLY, &[]);
    let option = wire::OPT_SET_META_CONTEXT;
    let (_, replies) = send(&mut handshake, option, &meta_payload("disk", &["nocolon"]));
    assert_eq!(reply_types(&replies), [wire::REP_ERR_INVALID]);
    let payload = meta_payload("disk", &["base:allocation"]);
    let (_, replies) = send(&mut handshake, option, &payload[..payload.len() - 1]);
    assert_eq!(reply_types(&replies), [wire::REP_ERR_INVALID]);
    let (_, replies) = send(&mut handshake, option, &meta_payload("nope", &[]));
    assert_eq!(reply_types(&replies), [wire::REP_ERR_UNKNOWN]);
}

#[test]
fn set_meta_context_selects_base_allocation_for_that_export() {
    let mut handshake = started(FIXED);
    send(&mut handshake, wire::OPT_STRUCTURED_REPLY, &[]);
    let (_, replies) = send(
        &mut handshake,
        wire::OPT_SET_META_CONTEXT,
        &meta_payload("disk", &["base:allocation"]),
    );
    assert_eq!(
        context_names(&replies),
        [(BASE_ALLOCATION_CONTEXT_ID, "base:allocation".to_owned())]
    );
    let (step, _) = send(&mut handshake, wire::OPT_GO, &info_payload("disk", &[]));
    let negotiated = ready(step);
    assert_eq!(
        negotiated.base_allocation_context,
        Some(BASE_ALLOCATION_CONTEXT_ID)
    );
    assert!(negotiated.request_context().block_status);
}

#[test]
fn set_meta_context_for_another_export_does_not_apply() {
    let mut handshake = started(FIXED);
    send(&mut handshake, wire::OPT_STRUCTURED_REPLY, &[]);
    send(
        &mut handshake,
        wire::OPT_SET_META_CONTEXT,
        &meta_payload("ro", &["base:allocation"]),
    );
    let (step, _) = send(&mut handshake, wire::OPT_GO, &info_payload("disk", &[]));
    assert_eq!(ready(step).base_allocation_context, None);
}

#[test]
fn set_meta_context_with_no_match_clears_the_selection() {
    let mut handshake = started(FIXED);
    send(&mut handshake, wire::OPT_STRUCTURED_REPLY, &[]);
    let option = wire::OPT_SET_META_CONTEXT;
    send(
        &mut handshake,
        option,
        &meta_payload("disk", &["base:allocation"]),
    );
    let (_, replies) = send(&mut handshake, option, &meta_payload("disk", &["base:"]));
    assert!(context_names(&replies).is_empty(), "base: never selects");
    let (step, _) = send(&mut handshake, wire::OPT_GO, &info_payload("disk", &[]));
    assert_eq!(ready(step).base_allocation_context, None);
}

#[test]
fn info_then_go_report_the_same_flags() {
    let mut handshake = started(FIXED);
    send(&mut handshake, wire::OPT_STRUCTURED_REPLY, &[]);
    let payload = info_payload("disk", &[wire::INFO_BLOCK_SIZE]);
    let (_, info) = send(&mut handshake, wire::OPT_INFO, &payload);
    let (_, go) = send(&mut handshake, wire::OPT_GO, &payload);
    assert_eq!(
        info,
        go.iter()
            .map(|r| OptionReply {
                option: wire::OPT_INFO,
                reply_type: r.reply_type,
                data: r.data.clone()
            })
            .collect::<Vec<_>>()
    );
}
