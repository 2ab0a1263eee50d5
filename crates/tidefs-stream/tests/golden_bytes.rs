//! Pins the exact bytes of encoded commands against streams the kernel produced.

use tidefs_stream::{
    encode_command_to_vec, Command, SendStreamReader, SendStreamWriter, StreamVersion,
};

/// UUID of the reference doc's verified full send (`sv_s1`, transid 9).
const SV_S1_UUID: [u8; 16] = [
    0x4f, 0x76, 0x75, 0x94, 0x36, 0xb6, 0x8d, 0x4b, 0xb4, 0x92, 0x71, 0xbd, 0xac, 0xdd, 0xaa, 0x80,
];

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn subvol_matches_the_kernel_bytes() {
    let command = Command::Subvol {
        path: b"sv_s1".to_vec(),
        uuid: SV_S1_UUID,
        ctransid: 9,
    };
    let mut expected = vec![0x29, 0, 0, 0, 0x01, 0, 0x57, 0x98, 0x0f, 0x8a];
    expected.extend_from_slice(&[0x0f, 0, 0x05, 0]);
    expected.extend_from_slice(b"sv_s1");
    expected.extend_from_slice(&[0x01, 0, 0x10, 0]);
    expected.extend_from_slice(&SV_S1_UUID);
    expected.extend_from_slice(&[0x02, 0, 0x08, 0, 0x09, 0, 0, 0, 0, 0, 0, 0]);
    for version in [StreamVersion::V1, StreamVersion::V2] {
        let bytes = encode_command_to_vec(&command, version).unwrap();
        assert_eq!(hex(&bytes), hex(&expected), "version {version}");
    }
}

#[test]
fn end_matches_the_reference_test_vector() {
    let bytes = encode_command_to_vec(&Command::End, StreamVersion::V1).unwrap();
    assert_eq!(hex(&bytes), "00 00 00 00 15 00 50 6c c9 9d");
}

#[test]
fn v1_write_data_is_an_ordinary_tlv() {
    let command = Command::Write {
        path: b"f".to_vec(),
        offset: 0x10,
        data: b"hello\n".to_vec(),
    };
    let bytes = encode_command_to_vec(&command, StreamVersion::V1).unwrap();
    // payload: PATH tlv (4+1) + FILE_OFFSET tlv (4+8) + DATA tlv (4+6) = 27 = 0x1b
    assert_eq!(
        hex(&bytes[..6]),
        "1b 00 00 00 0f 00",
        "len 27, cmd WRITE (15)"
    );
    assert_eq!(
        hex(&bytes[10..]),
        "0f 00 01 00 66 12 00 08 00 10 00 00 00 00 00 00 00 13 00 06 00 68 65 6c 6c 6f 0a"
    );
}

#[test]
fn v2_write_data_has_no_length_and_runs_to_the_end() {
    let command = Command::Write {
        path: b"f".to_vec(),
        offset: 0x10,
        data: b"hello\n".to_vec(),
    };
    let bytes = encode_command_to_vec(&command, StreamVersion::V2).unwrap();
    assert_eq!(
        hex(&bytes[..6]),
        "19 00 00 00 0f 00",
        "len 25, cmd WRITE (15)"
    );
    assert_eq!(
        hex(&bytes[10..]),
        "0f 00 01 00 66 12 00 08 00 10 00 00 00 00 00 00 00 13 00 68 65 6c 6c 6f 0a"
    );
}

#[test]
fn clone_puts_offset_and_length_before_path() {
    let command = Command::Clone {
        path: b"d".to_vec(),
        offset: 1,
        len: 2,
        clone_uuid: [0xaa; 16],
        clone_ctransid: 3,
        clone_path: b"s".to_vec(),
        clone_offset: 4,
    };
    let bytes = encode_command_to_vec(&command, StreamVersion::V1).unwrap();
    let types: Vec<u16> = tlv_types(&bytes[10..]);
    assert_eq!(types, vec![18, 24, 15, 20, 21, 22, 23]);
}

#[test]
fn whole_stream_starts_with_the_header_and_parses_back() {
    let mut writer = SendStreamWriter::new(Vec::new(), StreamVersion::V1).unwrap();
    writer
        .write_command(&Command::Subvol {
            path: b"sv_s1".to_vec(),
            uuid: SV_S1_UUID,
            ctransid: 9,
        })
        .unwrap();
    writer.end().unwrap();
    let bytes = writer.into_inner().unwrap();
    assert_eq!(&bytes[..17], b"btrfs-stream\0\x01\0\0\0");
    assert_eq!(
        hex(&bytes[bytes.len() - 10..]),
        "00 00 00 00 15 00 50 6c c9 9d"
    );
    let commands: Vec<Command> = SendStreamReader::new(&bytes[..])
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(commands.len(), 2);
}

fn tlv_types(mut payload: &[u8]) -> Vec<u16> {
    let mut types = Vec::new();
    while payload.len() >= 4 {
        types.push(u16::from_le_bytes([payload[0], payload[1]]));
        let len = usize::from(u16::from_le_bytes([payload[2], payload[3]]));
        payload = &payload[4 + len..];
    }
    types
}
