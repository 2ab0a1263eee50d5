//! Proves that any sequence of commands written by `SendStreamWriter` reads back identical,
//! in version 1 and version 2, alone and as concatenated streams.

mod support;

use proptest::prelude::*;
use tidefs_stream::{Command, SendStreamReader, StreamVersion};

fn round_trip(version: StreamVersion, seed: u64, count: usize) {
    let commands = support::stream_commands(seed, version, count, false);
    let bytes = support::encode_stream(version, &commands);
    let read: Vec<Command> = SendStreamReader::new(&bytes[..])
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    assert_eq!(read, commands, "seed {seed}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    // The generator is driven by the seed; proptest prints the failing seed.
    #[test]
    fn v1_streams_round_trip(seed in any::<u64>(), count in 0usize..40) {
        round_trip(StreamVersion::V1, seed, count);
    }

    #[test]
    fn v2_streams_round_trip(seed in any::<u64>(), count in 0usize..40) {
        round_trip(StreamVersion::V2, seed, count);
    }

    #[test]
    fn concatenated_streams_round_trip(seeds in proptest::collection::vec(any::<u64>(), 1..4)) {
        let streams: Vec<_> = seeds
            .iter()
            .enumerate()
            .map(|(i, seed)| {
                let version = if (seed ^ i as u64).is_multiple_of(2) { StreamVersion::V1 } else { StreamVersion::V2 };
                (version, support::stream_commands(*seed, version, 10, false))
            })
            .collect();
        let bytes = support::encode_streams(&streams);
        let read = support::parse_streams(&bytes).unwrap_or_else(|e| panic!("seeds {seeds:?}: {e}"));
        prop_assert_eq!(read, streams);
    }
}

#[test]
fn largest_v1_data_tlv_round_trips() {
    let command = Command::Write {
        path: b"f".to_vec(),
        offset: 0,
        data: vec![0xab; 65_535],
    };
    let bytes = support::encode_stream(StreamVersion::V1, &[command.clone(), Command::End]);
    let read: Vec<Command> = SendStreamReader::new(&bytes[..])
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(read[0], command);
}

#[test]
fn megabyte_v2_write_round_trips() {
    let command = Command::Write {
        path: b"f".to_vec(),
        offset: 1,
        data: vec![0xcd; 1 << 20],
    };
    let bytes = support::encode_stream(StreamVersion::V2, &[command.clone(), Command::End]);
    let read: Vec<Command> = SendStreamReader::new(&bytes[..])
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(read[0], command);
}
