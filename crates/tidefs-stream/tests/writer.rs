//! Proves the writer's contract: chunked writes, counters, stream framing, and refusal of
//! commands a reader would refuse.

mod support;

use tidefs_stream::{
    AttributeType, Command, CommandType, PathProblem, SendStreamReader, SendStreamWriter,
    StreamVersion, WriteError, WRITE_CHUNK_BYTES_MAX, WRITE_CHUNK_BYTES_MAX_V1,
};

fn read_all(bytes: &[u8]) -> Vec<Command> {
    SendStreamReader::new(bytes)
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn large_v1_write_is_split_into_48_kib_commands() {
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 31) as u8).collect();
    let mut writer = SendStreamWriter::new(Vec::new(), StreamVersion::V1).unwrap();
    writer.write_file_data(b"big", 1000, &data).unwrap();
    writer.end().unwrap();
    let commands = read_all(&writer.into_inner().unwrap());
    let writes: Vec<(u64, usize)> = commands
        .iter()
        .filter_map(|c| match c {
            Command::Write { offset, data, .. } => Some((*offset, data.len())),
            _ => None,
        })
        .collect();
    assert_eq!(
        writes,
        vec![
            (1000, 49_152),
            (50_152, 49_152),
            (99_304, 49_152),
            (148_456, 49_152),
            (197_608, 3_392)
        ]
    );
    let joined: Vec<u8> = commands
        .iter()
        .filter_map(|c| match c {
            Command::Write { data, .. } => Some(data.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(joined, data);
}

#[test]
fn v2_writes_use_128_kib_by_default_and_up_to_1_mib() {
    let data = vec![7u8; 300_000];
    let mut writer = SendStreamWriter::new(Vec::new(), StreamVersion::V2).unwrap();
    assert_eq!(writer.write_chunk_bytes(), 131_072);
    writer.write_file_data(b"f", 0, &data).unwrap();
    assert_eq!(writer.commands_written(), 3);
    writer.set_write_chunk_bytes(WRITE_CHUNK_BYTES_MAX).unwrap();
    writer
        .write_file_data(b"f", 0, &vec![1u8; 2 << 20])
        .unwrap();
    assert_eq!(writer.commands_written(), 5);
    assert!(matches!(
        writer.set_write_chunk_bytes(WRITE_CHUNK_BYTES_MAX + 1),
        Err(WriteError::ChunkSize { .. })
    ));
    assert!(matches!(
        writer.set_write_chunk_bytes(0),
        Err(WriteError::ChunkSize { .. })
    ));
}

#[test]
fn v1_chunk_size_cannot_exceed_48_kib() {
    let mut writer = SendStreamWriter::new(Vec::new(), StreamVersion::V1).unwrap();
    assert!(writer
        .set_write_chunk_bytes(WRITE_CHUNK_BYTES_MAX_V1)
        .is_ok());
    assert!(matches!(
        writer.set_write_chunk_bytes(WRITE_CHUNK_BYTES_MAX_V1 + 1),
        Err(WriteError::ChunkSize {
            bytes: 49_153,
            version: StreamVersion::V1
        })
    ));
}

#[test]
fn counters_track_bytes_and_commands() {
    let mut writer = SendStreamWriter::new(Vec::new(), StreamVersion::V1).unwrap();
    assert_eq!((writer.bytes_written(), writer.commands_written()), (17, 0));
    writer
        .write_command(&Command::Unlink {
            path: b"ab".to_vec(),
        })
        .unwrap();
    assert_eq!(
        (writer.bytes_written(), writer.commands_written()),
        (17 + 10 + 6, 1)
    );
    writer.end().unwrap();
    assert_eq!(
        (writer.bytes_written(), writer.commands_written()),
        (17 + 16 + 10, 2)
    );
    let bytes = writer.into_inner().unwrap();
    assert_eq!(bytes.len(), 43);
}

#[test]
fn v1_data_longer_than_a_tlv_is_refused() {
    let mut writer = SendStreamWriter::new(Vec::new(), StreamVersion::V1).unwrap();
    let too_long = Command::Write {
        path: b"f".to_vec(),
        offset: 0,
        data: vec![0; 65_536],
    };
    assert!(matches!(
        writer.write_command(&too_long),
        Err(WriteError::AttributeTooLong {
            attribute: AttributeType::Data,
            bytes: 65_536,
            ..
        })
    ));
    assert_eq!(
        writer.bytes_written(),
        17,
        "nothing written for a refused command"
    );
}

#[test]
fn paths_a_reader_would_refuse_are_not_written() {
    let mut writer = SendStreamWriter::new(Vec::new(), StreamVersion::V1).unwrap();
    let cases = [
        (
            Command::Unlink {
                path: b"/abs".to_vec(),
            },
            AttributeType::Path,
            PathProblem::Absolute,
        ),
        (
            Command::Rename {
                from: b"a".to_vec(),
                to: b"../b".to_vec(),
            },
            AttributeType::PathTo,
            PathProblem::ParentComponent,
        ),
        (
            Command::Rmdir {
                path: b"a\0".to_vec(),
            },
            AttributeType::Path,
            PathProblem::NulByte,
        ),
        (
            Command::RemoveXattr {
                path: b"a".to_vec(),
                name: b"user.\0".to_vec(),
            },
            AttributeType::XattrName,
            PathProblem::NulByte,
        ),
    ];
    for (command, attribute, problem) in cases {
        match writer.write_command(&command) {
            Err(WriteError::InvalidPath {
                attribute: a,
                problem: p,
                ..
            }) => {
                assert_eq!((a, p), (attribute, problem), "{command:?}");
            }
            other => panic!("{command:?}: {other:?}"),
        }
    }
    assert_eq!(writer.commands_written(), 0);
}

#[test]
fn version_two_commands_are_refused_in_version_one() {
    let mut writer = SendStreamWriter::new(Vec::new(), StreamVersion::V1).unwrap();
    let command = Command::Fileattr {
        path: b"f".to_vec(),
        fileattr: 1,
    };
    assert!(matches!(
        writer.write_command(&command),
        Err(WriteError::CommandNotInVersion {
            command: CommandType::Fileattr,
            version: StreamVersion::V1
        })
    ));
}

#[test]
fn commands_after_end_need_a_new_stream() {
    let mut writer = SendStreamWriter::new(Vec::new(), StreamVersion::V1).unwrap();
    assert!(matches!(
        writer.begin_next_stream(StreamVersion::V2),
        Err(WriteError::StreamNotEnded)
    ));
    writer.end().unwrap();
    assert!(matches!(
        writer.write_command(&Command::Unlink {
            path: b"x".to_vec()
        }),
        Err(WriteError::AfterEnd {
            command: CommandType::Unlink
        })
    ));
    writer.begin_next_stream(StreamVersion::V2).unwrap();
    assert_eq!(writer.version(), StreamVersion::V2);
    writer
        .write_command(&Command::Fileattr {
            path: b"x".to_vec(),
            fileattr: 3,
        })
        .unwrap();
    writer.end().unwrap();
    let streams = support::parse_streams(&writer.into_inner().unwrap()).unwrap();
    assert_eq!(streams.len(), 2);
    assert_eq!(streams[1].0, StreamVersion::V2);
}
