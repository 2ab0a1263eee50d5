//! Proves that streams made by the kernel's `btrfs send` (fixtures from
//! tests/fixtures/make-fixtures.sh: a full and an incremental send with renames, hard links,
//! xattrs, a sparse file, clones, symlinks, a fifo, a device; a compressed send with
//! ENCODED_WRITE) parse, dump exactly as `btrfs receive --dump` printed them (TZ=UTC), and
//! re-encode to the very same bytes.

mod support;

use std::path::PathBuf;

use tidefs_stream::{dump_stream, CommandType, DumpTimeZone, StreamVersion};

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn check(name: &str, version: StreamVersion, first: CommandType) {
    let stream = fixture(&format!("{name}.stream"));
    let expected_dump = fixture(&format!("{name}.dump"));

    let streams = support::parse_streams(&stream).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(streams.len(), 1, "{name}: one stream");
    let (read_version, commands) = &streams[0];
    assert_eq!(*read_version, version, "{name}");
    assert_eq!(commands[0].command_type(), first, "{name}");
    assert_eq!(
        commands.last().map(|c| c.command_type()),
        Some(CommandType::End),
        "{name}"
    );

    let mut dump = Vec::new();
    dump_stream(&stream[..], &mut dump, DumpTimeZone::utc()).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&dump),
        String::from_utf8_lossy(&expected_dump),
        "{name}: dump differs from btrfs receive --dump"
    );
    assert_eq!(dump, expected_dump, "{name}: dump bytes differ");

    let reencoded = support::encode_streams(&streams);
    assert!(
        reencoded == stream,
        "{name}: re-encoding differs from the kernel's bytes"
    );
}

fn kinds(name: &str) -> Vec<CommandType> {
    let streams = support::parse_streams(&fixture(&format!("{name}.stream"))).unwrap();
    streams[0].1.iter().map(|c| c.command_type()).collect()
}

#[test]
fn full_v1_send_matches_btrfs() {
    check("full-v1", StreamVersion::V1, CommandType::Subvol);
    let kinds = kinds("full-v1");
    for expected in [
        CommandType::Mkdir,
        CommandType::Mkfile,
        CommandType::Link,
        CommandType::Symlink,
        CommandType::Mkfifo,
        CommandType::Mknod,
        CommandType::SetXattr,
        CommandType::Write,
        CommandType::Truncate,
        CommandType::Utimes,
    ] {
        assert!(kinds.contains(&expected), "full send lacks {expected}");
    }
}

#[test]
fn incremental_v1_send_matches_btrfs() {
    check("incremental-v1", StreamVersion::V1, CommandType::Snapshot);
    let kinds = kinds("incremental-v1");
    for expected in [
        CommandType::Rename,
        CommandType::Link,
        CommandType::Unlink,
        CommandType::Rmdir,
        CommandType::RemoveXattr,
        CommandType::Clone,
    ] {
        assert!(
            kinds.contains(&expected),
            "incremental send lacks {expected}"
        );
    }
}

#[test]
fn incremental_v2_send_matches_btrfs() {
    check("incremental-v2", StreamVersion::V2, CommandType::Snapshot);
}

#[test]
fn compressed_v2_send_with_encoded_writes_matches_btrfs() {
    check("compressed-v2", StreamVersion::V2, CommandType::Subvol);
    let kinds = kinds("compressed-v2");
    assert!(
        kinds.contains(&CommandType::EncodedWrite),
        "no ENCODED_WRITE in {kinds:?}"
    );
}
