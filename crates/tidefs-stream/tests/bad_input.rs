//! Proves that every kind of malformed stream is refused with the right error kind,
//! command number (1-based, stream header = 0) and byte offset.

mod support;

use std::io::{self, Read};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tidefs_stream::{
    crc32c_raw, AttributeType, Command, CommandType, PathProblem, ReaderLimits, SendStreamReader,
    StreamError, StreamErrorKind, StreamVersion, STREAM_COMMAND_BYTES_MAX,
};

const HEADER_BYTES: u64 = 17;

fn header(version: u32) -> Vec<u8> {
    let mut bytes = b"btrfs-stream\0".to_vec();
    bytes.extend_from_slice(&version.to_le_bytes());
    bytes
}

fn tlv(attribute: u16, value: &[u8]) -> Vec<u8> {
    let mut bytes = attribute.to_le_bytes().to_vec();
    bytes.extend_from_slice(&(value.len() as u16).to_le_bytes());
    bytes.extend_from_slice(value);
    bytes
}

/// A command with a correct CRC around an arbitrary payload.
fn raw_command(cmd: u16, payload: &[u8]) -> Vec<u8> {
    let mut bytes = (payload.len() as u32).to_le_bytes().to_vec();
    bytes.extend_from_slice(&cmd.to_le_bytes());
    bytes.extend_from_slice(&[0; 4]);
    bytes.extend_from_slice(payload);
    let crc = crc32c_raw(&bytes);
    bytes[6..10].copy_from_slice(&crc.to_le_bytes());
    bytes
}

fn subvol_payload() -> Vec<u8> {
    [tlv(15, b"s"), tlv(1, &[7; 16]), tlv(2, &9u64.to_le_bytes())].concat()
}

/// SUBVOL "s": 10 + 5 + 20 + 12 = 47 bytes.
fn subvol() -> Vec<u8> {
    raw_command(1, &subvol_payload())
}

fn end() -> Vec<u8> {
    raw_command(21, &[])
}

/// Reads until the first error; panics if the input is accepted.
fn first_error(bytes: &[u8]) -> StreamError {
    let mut reader = SendStreamReader::new(bytes);
    loop {
        match reader.next_command() {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("stream was accepted"),
            Err(error) => return error,
        }
    }
}

/// Asserts where an error points; returns its kind for the caller to match.
fn located(error: StreamError, stream: u64, command: u64, offset: u64) -> StreamErrorKind {
    assert_eq!(
        (error.stream, error.command, error.offset),
        (stream, command, offset),
        "wrong location in: {error}"
    );
    error.kind
}

#[test]
fn empty_input_is_an_empty_stream() {
    let kind = located(first_error(b""), 1, 0, 0);
    assert!(matches!(kind, StreamErrorKind::EmptyStream), "{kind:?}");
}

#[test]
fn bad_magic_points_at_the_header() {
    let mut bytes = header(1);
    bytes[11] = b'X';
    let kind = located(first_error(&bytes), 1, 0, 0);
    assert!(
        matches!(kind, StreamErrorKind::BadMagic { found } if &found[..12] == b"btrfs-streaX"),
        "{kind:?}"
    );
}

#[test]
fn magic_without_its_nul_is_bad() {
    let mut bytes = header(1);
    bytes[12] = b' ';
    let kind = located(first_error(&bytes), 1, 0, 0);
    assert!(matches!(kind, StreamErrorKind::BadMagic { .. }), "{kind:?}");
}

#[test]
fn unsupported_versions_point_at_the_version_field() {
    for version in [0u32, 3, 0xffff_ffff] {
        let bytes = [header(version), subvol(), end()].concat();
        let kind = located(first_error(&bytes), 1, 0, 13);
        assert!(
            matches!(kind, StreamErrorKind::UnsupportedVersion { version: v } if v == version),
            "{kind:?}"
        );
    }
}

#[test]
fn truncated_stream_header() {
    let kind = located(first_error(&header(1)[..10]), 1, 0, 0);
    assert!(
        matches!(
            kind,
            StreamErrorKind::TruncatedStreamHeader { available: 10 }
        ),
        "{kind:?}"
    );
}

#[test]
fn truncated_command_header() {
    let bytes = [header(1), subvol()[..5].to_vec()].concat();
    let kind = located(first_error(&bytes), 1, 1, HEADER_BYTES);
    assert!(
        matches!(
            kind,
            StreamErrorKind::TruncatedCommandHeader { available: 5 }
        ),
        "{kind:?}"
    );
}

#[test]
fn truncated_payload_points_at_the_payload() {
    let bytes = [header(1), subvol()[..30].to_vec()].concat();
    let kind = located(first_error(&bytes), 1, 1, HEADER_BYTES + 10);
    assert!(
        matches!(
            kind,
            StreamErrorKind::TruncatedPayload {
                needed: 37,
                available: 20
            }
        ),
        "{kind:?}"
    );
}

#[test]
fn stream_without_end_is_refused() {
    let bytes = [header(1), subvol()].concat();
    let kind = located(first_error(&bytes), 1, 2, HEADER_BYTES + 47);
    assert!(matches!(kind, StreamErrorKind::MissingEnd), "{kind:?}");
}

#[test]
fn crc_mismatch_points_at_the_command() {
    let mut second = raw_command(3, &[tlv(15, b"f"), tlv(3, &257u64.to_le_bytes())].concat());
    second[12] ^= 0x01; // a byte of the PATH TLV
    let bytes = [header(1), subvol(), second, end()].concat();
    let kind = located(first_error(&bytes), 1, 2, HEADER_BYTES + 47);
    assert!(
        matches!(kind, StreamErrorKind::CrcMismatch { stored, computed } if stored != computed),
        "{kind:?}"
    );
}

#[test]
fn crc_covers_the_header_fields() {
    let mut second = end();
    second[4] = 20; // END -> UTIMES id without fixing the CRC
    let bytes = [header(1), subvol(), second].concat();
    let kind = located(first_error(&bytes), 1, 2, HEADER_BYTES + 47);
    assert!(
        matches!(kind, StreamErrorKind::CrcMismatch { .. }),
        "{kind:?}"
    );
}

#[test]
fn unknown_command_ids_point_at_the_cmd_field() {
    for id in [0u16, 26, 27, 0xffff] {
        let bytes = [header(2), subvol(), raw_command(id, &[]), end()].concat();
        let kind = located(first_error(&bytes), 1, 2, HEADER_BYTES + 47 + 4);
        assert!(
            matches!(kind, StreamErrorKind::UnknownCommand { id: i } if i == id),
            "{kind:?}"
        );
    }
}

#[test]
fn version_two_command_in_a_version_one_stream() {
    let payload = [tlv(15, b"f"), tlv(26, &0u64.to_le_bytes())].concat();
    let bytes = [header(1), subvol(), raw_command(24, &payload), end()].concat();
    let kind = located(first_error(&bytes), 1, 2, HEADER_BYTES + 47 + 4);
    assert!(
        matches!(
            kind,
            StreamErrorKind::CommandNotInVersion {
                command: CommandType::Fileattr,
                version: StreamVersion::V1
            }
        ),
        "{kind:?}"
    );
}

#[test]
fn zero_attribute_type_is_unknown() {
    let payload = [tlv(15, b"f"), tlv(0, b"x")].concat();
    let bytes = [header(1), subvol(), raw_command(11, &payload), end()].concat();
    let kind = located(first_error(&bytes), 1, 2, HEADER_BYTES + 47 + 10 + 5);
    assert!(
        matches!(kind, StreamErrorKind::UnknownAttribute { id: 0 }),
        "{kind:?}"
    );
}

#[test]
fn attribute_type_above_the_maximum_is_unknown() {
    let payload = [tlv(36, b"x"), tlv(15, b"f")].concat();
    let bytes = [header(1), subvol(), raw_command(11, &payload), end()].concat();
    let kind = located(first_error(&bytes), 1, 2, HEADER_BYTES + 47 + 10);
    assert!(
        matches!(kind, StreamErrorKind::UnknownAttribute { id: 36 }),
        "{kind:?}"
    );
}

#[test]
fn tlv_value_running_past_the_command_is_truncated() {
    let mut payload = tlv(15, b"file");
    payload[2] = 9; // claims 9 bytes, 4 present
    let bytes = [header(1), subvol(), raw_command(11, &payload), end()].concat();
    let kind = located(first_error(&bytes), 1, 2, HEADER_BYTES + 47 + 10);
    assert!(
        matches!(
            kind,
            StreamErrorKind::TruncatedAttribute {
                needed: 13,
                available: 8
            }
        ),
        "{kind:?}"
    );
}

#[test]
fn tlv_header_cut_by_the_command_end_is_truncated() {
    let payload = [tlv(15, b"f"), vec![0x0f, 0x00, 0x01]].concat();
    let bytes = [header(1), subvol(), raw_command(11, &payload), end()].concat();
    let kind = located(first_error(&bytes), 1, 2, HEADER_BYTES + 47 + 10 + 5);
    assert!(
        matches!(
            kind,
            StreamErrorKind::TruncatedAttribute {
                needed: 4,
                available: 3
            }
        ),
        "{kind:?}"
    );
    let payload = [tlv(15, b"f"), vec![0x0f]].concat();
    let bytes = [header(1), subvol(), raw_command(11, &payload), end()].concat();
    let kind = located(first_error(&bytes), 1, 2, HEADER_BYTES + 47 + 10 + 5);
    assert!(
        matches!(
            kind,
            StreamErrorKind::TruncatedAttribute {
                needed: 2,
                available: 1
            }
        ),
        "{kind:?}"
    );
}

#[test]
fn fixed_size_attribute_of_wrong_size() {
    let payload = [tlv(15, b"s"), tlv(1, &[7; 16]), tlv(2, &9u32.to_le_bytes())].concat();
    let bytes = [header(1), raw_command(1, &payload), end()].concat();
    let kind = located(first_error(&bytes), 1, 1, HEADER_BYTES + 10 + 5 + 20);
    assert!(
        matches!(
            kind,
            StreamErrorKind::AttributeSize {
                attribute: AttributeType::Ctransid,
                expected: 8,
                actual: 4
            }
        ),
        "{kind:?}"
    );
}

#[test]
fn timespec_of_wrong_size() {
    let payload = [
        tlv(15, b"f"),
        tlv(11, &[0; 12]),
        tlv(10, &[0; 16]),
        tlv(9, &[0; 12]),
    ]
    .concat();
    let bytes = [header(1), subvol(), raw_command(20, &payload), end()].concat();
    let kind = located(first_error(&bytes), 1, 2, HEADER_BYTES + 47 + 10 + 5 + 16);
    assert!(
        matches!(
            kind,
            StreamErrorKind::AttributeSize {
                attribute: AttributeType::Mtime,
                expected: 12,
                actual: 16
            }
        ),
        "{kind:?}"
    );
}

#[test]
fn missing_required_attribute_points_at_the_command() {
    let payload = [tlv(15, b"s"), tlv(2, &9u64.to_le_bytes())].concat();
    let bytes = [header(1), raw_command(1, &payload), end()].concat();
    let kind = located(first_error(&bytes), 1, 1, HEADER_BYTES);
    assert!(
        matches!(
            kind,
            StreamErrorKind::MissingAttribute {
                command: CommandType::Subvol,
                attribute: AttributeType::Uuid
            }
        ),
        "{kind:?}"
    );
}

#[test]
fn duplicate_attribute_is_refused() {
    let payload = [tlv(15, b"a"), tlv(15, b"b")].concat();
    let bytes = [header(1), subvol(), raw_command(11, &payload), end()].concat();
    let kind = located(first_error(&bytes), 1, 2, HEADER_BYTES + 47 + 10 + 5);
    assert!(
        matches!(
            kind,
            StreamErrorKind::DuplicateAttribute {
                attribute: AttributeType::Path
            }
        ),
        "{kind:?}"
    );
}

#[test]
fn attribute_foreign_to_the_command_is_refused() {
    let payload = [tlv(15, b"a"), tlv(3, &1u64.to_le_bytes())].concat();
    let bytes = [header(1), subvol(), raw_command(11, &payload), end()].concat();
    let kind = located(first_error(&bytes), 1, 2, HEADER_BYTES + 47 + 10 + 5);
    assert!(
        matches!(
            kind,
            StreamErrorKind::UnexpectedAttribute {
                command: CommandType::Unlink,
                attribute: AttributeType::Ino
            }
        ),
        "{kind:?}"
    );
}

#[test]
fn command_over_the_limit_is_refused_before_reading_its_payload() {
    // Announces 4 GiB and holds nothing: the limit must trip, not a short read or an
    // attempt to allocate 4 GiB.
    let mut huge = raw_command(15, &[]);
    huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
    let bytes = [header(2), subvol(), huge].concat();
    let kind = located(first_error(&bytes), 1, 2, HEADER_BYTES + 47);
    assert!(
        matches!(
            kind,
            StreamErrorKind::CommandTooLong { bytes, max }
                if bytes == 10 + u64::from(u32::MAX) && max == STREAM_COMMAND_BYTES_MAX
        ),
        "{kind:?}"
    );
}

#[test]
fn command_limit_counts_the_header_and_is_configurable() {
    let bytes = [header(1), subvol(), end()].concat();
    let limits = ReaderLimits {
        stream_command_bytes_max: 46,
    };
    let error = SendStreamReader::with_limits(&bytes[..], limits)
        .next()
        .unwrap()
        .unwrap_err();
    let kind = located(error, 1, 1, HEADER_BYTES);
    assert!(
        matches!(kind, StreamErrorKind::CommandTooLong { bytes: 47, max: 46 }),
        "{kind:?}"
    );
    let limits = ReaderLimits {
        stream_command_bytes_max: 47,
    };
    let commands: Result<Vec<_>, _> = SendStreamReader::with_limits(&bytes[..], limits).collect();
    assert_eq!(commands.unwrap().len(), 2);
}

fn path_error(cmd: u16, payload: Vec<u8>, tlv_at: u64) -> StreamErrorKind {
    let bytes = [header(1), subvol(), raw_command(cmd, &payload), end()].concat();
    located(first_error(&bytes), 1, 2, HEADER_BYTES + 47 + 10 + tlv_at)
}

#[test]
fn absolute_path_is_refused() {
    let kind = path_error(11, tlv(15, b"/etc/passwd"), 0);
    assert!(
        matches!(
            kind,
            StreamErrorKind::InvalidPath {
                attribute: AttributeType::Path,
                problem: PathProblem::Absolute
            }
        ),
        "{kind:?}"
    );
}

#[test]
fn parent_component_in_rename_target_is_refused() {
    let kind = path_error(9, [tlv(15, b"a"), tlv(16, b"x/../../b")].concat(), 5);
    assert!(
        matches!(
            kind,
            StreamErrorKind::InvalidPath {
                attribute: AttributeType::PathTo,
                problem: PathProblem::ParentComponent
            }
        ),
        "{kind:?}"
    );
}

#[test]
fn parent_component_in_link_source_is_refused() {
    let kind = path_error(10, [tlv(15, b"a"), tlv(17, b"..")].concat(), 5);
    assert!(
        matches!(
            kind,
            StreamErrorKind::InvalidPath {
                attribute: AttributeType::PathLink,
                problem: PathProblem::ParentComponent
            }
        ),
        "{kind:?}"
    );
}

#[test]
fn nul_byte_in_path_is_refused() {
    let kind = path_error(12, tlv(15, b"a\0b"), 0);
    assert!(
        matches!(
            kind,
            StreamErrorKind::InvalidPath {
                attribute: AttributeType::Path,
                problem: PathProblem::NulByte
            }
        ),
        "{kind:?}"
    );
}

#[test]
fn escaping_clone_source_is_refused() {
    let payload = [
        tlv(18, &0u64.to_le_bytes()),
        tlv(24, &1u64.to_le_bytes()),
        tlv(15, b"dst"),
        tlv(20, &[1; 16]),
        tlv(21, &1u64.to_le_bytes()),
        tlv(22, b"/abs"),
        tlv(23, &0u64.to_le_bytes()),
    ]
    .concat();
    let kind = path_error(16, payload, 12 + 12 + 7 + 20 + 12);
    assert!(
        matches!(
            kind,
            StreamErrorKind::InvalidPath {
                attribute: AttributeType::ClonePath,
                problem: PathProblem::Absolute
            }
        ),
        "{kind:?}"
    );
}

#[test]
fn nul_in_xattr_name_is_refused() {
    let kind = path_error(14, [tlv(15, b"f"), tlv(13, b"user.a\0b")].concat(), 5);
    assert!(
        matches!(
            kind,
            StreamErrorKind::InvalidPath {
                attribute: AttributeType::XattrName,
                problem: PathProblem::NulByte
            }
        ),
        "{kind:?}"
    );
}

#[test]
fn symlink_targets_may_be_absolute_or_climb() {
    let payload = [
        tlv(15, b"l"),
        tlv(3, &5u64.to_le_bytes()),
        tlv(17, b"/../x"),
    ]
    .concat();
    let bytes = [header(1), subvol(), raw_command(8, &payload), end()].concat();
    let commands: Vec<Command> = SendStreamReader::new(&bytes[..])
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        commands[1],
        Command::Symlink {
            path: b"l".to_vec(),
            ino: 5,
            target: b"/../x".to_vec()
        }
    );
}

#[test]
fn concatenated_streams_are_read_and_errors_name_the_stream() {
    let good = [header(1), subvol(), end(), header(2), subvol(), end()].concat();
    let mut reader = SendStreamReader::new(&good[..]);
    let mut versions = Vec::new();
    while let Some(command) = reader.next_command().unwrap() {
        versions.push((
            reader.stream_number(),
            reader.version(),
            command.command_type(),
        ));
    }
    assert_eq!(
        versions,
        vec![
            (1, Some(StreamVersion::V1), CommandType::Subvol),
            (1, Some(StreamVersion::V1), CommandType::End),
            (2, Some(StreamVersion::V2), CommandType::Subvol),
            (2, Some(StreamVersion::V2), CommandType::End),
        ]
    );
    assert_eq!(reader.bytes_read(), good.len() as u64);

    let mut bad_second = [header(1), subvol(), end(), header(1), subvol()].concat();
    let crc_byte = bad_second.len() - 3;
    bad_second[crc_byte] ^= 0xff;
    let kind = located(
        first_error(&bad_second),
        2,
        1,
        HEADER_BYTES + 47 + 10 + HEADER_BYTES,
    );
    assert!(
        matches!(kind, StreamErrorKind::CrcMismatch { .. }),
        "{kind:?}"
    );
}

#[test]
fn garbage_after_end_is_a_bad_second_header() {
    let bytes = [header(1), subvol(), end(), b"junk".to_vec()].concat();
    let kind = located(first_error(&bytes), 2, 0, HEADER_BYTES + 47 + 10);
    assert!(
        matches!(
            kind,
            StreamErrorKind::TruncatedStreamHeader { available: 4 }
        ),
        "{kind:?}"
    );
}

#[test]
fn reader_stays_stopped_after_an_error() {
    let bytes = [header(1), subvol()].concat();
    let mut reader = SendStreamReader::new(&bytes[..]);
    assert!(reader.next_command().unwrap().is_some());
    let first = reader.next_command().unwrap_err();
    let again = reader.next_command().unwrap_err();
    assert_eq!(first.to_string(), again.to_string());
    let mut iterator = SendStreamReader::new(&bytes[..]);
    assert!(iterator.next().unwrap().is_ok());
    assert!(iterator.next().unwrap().is_err());
    assert!(
        iterator.next().is_none(),
        "the iterator yields the error once"
    );
}

struct FailingReader {
    data: Vec<u8>,
}

impl Read for FailingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.data.is_empty() {
            return Err(io::Error::other("disk on fire"));
        }
        let n = buf.len().min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data.drain(..n);
        Ok(n)
    }
}

#[test]
fn read_errors_are_reported_with_their_offset() {
    let data = [header(1), subvol()].concat();
    let mut reader = SendStreamReader::new(FailingReader { data });
    assert!(reader.next_command().unwrap().is_some());
    let error = reader.next_command().unwrap_err();
    let kind = located(error, 1, 2, HEADER_BYTES + 47);
    assert!(matches!(kind, StreamErrorKind::Io(_)), "{kind:?}");
}

#[test]
fn error_messages_name_stream_command_and_offset() {
    let bytes = [header(1), subvol()].concat();
    let text = first_error(&bytes).to_string();
    assert_eq!(
        text,
        "send stream 1, command 2, byte offset 64: stream ends without an END command"
    );
}

/// Mutates valid streams at random; the reader must return (never panic) and any stream it
/// accepts must round-trip. Prints its seed; set TIDEFS_TEST_SEED to replay.
#[test]
fn random_corruption_never_panics() {
    let seed: u64 = std::env::var("TIDEFS_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().gen());
    println!("random_corruption_never_panics: seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    for round in 0..300u32 {
        let version = if round.is_multiple_of(2) {
            StreamVersion::V1
        } else {
            StreamVersion::V2
        };
        let commands = support::stream_commands(rng.gen(), version, 8, false);
        let mut bytes = support::encode_stream(version, &commands);
        for _ in 0..rng.gen_range(1..4) {
            let at = rng.gen_range(0..bytes.len());
            match rng.gen_range(0..3) {
                0 => bytes[at] ^= 1 << rng.gen_range(0..8),
                1 => bytes.truncate(at),
                _ => bytes.insert(at, rng.gen()),
            }
            if bytes.is_empty() {
                break;
            }
        }
        match support::parse_streams(&bytes) {
            Err(error) => {
                assert!(
                    error.offset <= bytes.len() as u64,
                    "seed {seed}: offset past the input: {error}"
                );
            }
            Ok(streams) => {
                let again = support::parse_streams(&support::encode_streams(&streams));
                assert_eq!(
                    again.ok(),
                    Some(streams),
                    "seed {seed}: accepted stream does not round-trip"
                );
            }
        }
    }
}
