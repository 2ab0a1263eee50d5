//! Helpers shared by the integration tests: command generators and the `btrfs` tool.

#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command as Process, Output, Stdio};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tidefs_stream::{Command, SendStreamWriter, StreamVersion, Timespec};

/// Bytes that make paths interesting for escaping: space, newline, tab, backslash, DEL,
/// non-UTF-8 bytes, escape, bell.
const PATH_ALPHABET: &[u8] = b"ab.-_ \n\t\\\x7f\xff\xe9\x1b\x07~=%";

/// A random path component that is not `.` or `..` and holds no `/` or NUL.
pub fn component(rng: &mut StdRng) -> Vec<u8> {
    loop {
        let len = rng.gen_range(1..12);
        let name: Vec<u8> = (0..len)
            .map(|_| PATH_ALPHABET[rng.gen_range(0..PATH_ALPHABET.len())])
            .collect();
        if name != b".." {
            return name;
        }
    }
}

/// A random relative path of 0..=3 components (empty = subvolume root).
pub fn path(rng: &mut StdRng) -> Vec<u8> {
    let parts = rng.gen_range(0..4);
    let mut path = Vec::new();
    for i in 0..parts {
        if i > 0 {
            path.push(b'/');
        }
        path.extend_from_slice(&component(rng));
    }
    path
}

/// A random u64 biased towards boundary values.
pub fn number(rng: &mut StdRng) -> u64 {
    match rng.gen_range(0..6) {
        0 => 0,
        1 => u64::MAX,
        2 => rng.gen_range(0..1000),
        3 => 1 << rng.gen_range(0..64),
        4 => u64::from(rng.gen::<u32>()),
        _ => rng.gen(),
    }
}

/// A random timestamp; `printable` keeps seconds where `localtime_r` succeeds.
pub fn timespec(rng: &mut StdRng, printable: bool) -> Timespec {
    let sec = if printable {
        match rng.gen_range(0..4) {
            0 => rng.gen_range(0..4_000_000_000u64),
            1 => (-(rng.gen_range(0..100_000_000_000i64))) as u64,
            2 => rng.gen_range(0..300_000_000_000u64),
            _ => u64::MAX - rng.gen_range(0..1000),
        }
    } else {
        number(rng)
    };
    Timespec {
        sec,
        nsec: rng.gen_range(0..1_000_000_000),
    }
}

pub fn bytes(rng: &mut StdRng, max: usize) -> Vec<u8> {
    let len = rng.gen_range(0..=max);
    (0..len).map(|_| rng.gen()).collect()
}

/// A random non-structural command (not SUBVOL, SNAPSHOT or END) valid in `version`.
pub fn command(rng: &mut StdRng, version: StreamVersion, printable_times: bool) -> Command {
    let kinds = if version == StreamVersion::V2 { 23 } else { 20 };
    let data_max = if version == StreamVersion::V2 {
        70_000
    } else {
        65_535
    };
    let uuid = |rng: &mut StdRng| -> [u8; 16] { rng.gen() };
    let opt = |rng: &mut StdRng| -> Option<u64> { rng.gen_bool(0.8).then(|| number(rng)) };
    match rng.gen_range(0..kinds) {
        0 => Command::Mkfile {
            path: path(rng),
            ino: number(rng),
        },
        1 => Command::Mkdir {
            path: path(rng),
            ino: number(rng),
        },
        2 => Command::Mknod {
            path: path(rng),
            ino: number(rng),
            rdev: number(rng),
            mode: number(rng),
        },
        3 => Command::Mkfifo {
            path: path(rng),
            ino: number(rng),
            rdev: opt(rng),
            mode: opt(rng),
        },
        4 => Command::Mksock {
            path: path(rng),
            ino: number(rng),
            rdev: opt(rng),
            mode: opt(rng),
        },
        5 => {
            // Symlink targets may be absolute and may climb with `..`.
            let mut target = if rng.gen_bool(0.3) {
                b"/../".to_vec()
            } else {
                Vec::new()
            };
            target.extend_from_slice(&path(rng));
            Command::Symlink {
                path: path(rng),
                ino: number(rng),
                target,
            }
        }
        6 => Command::Rename {
            from: path(rng),
            to: path(rng),
        },
        7 => Command::Link {
            path: path(rng),
            existing: path(rng),
        },
        8 => Command::Unlink { path: path(rng) },
        9 => Command::Rmdir { path: path(rng) },
        10 => {
            let mut name = b"user.".to_vec();
            name.extend_from_slice(&component(rng));
            Command::SetXattr {
                path: path(rng),
                name,
                data: bytes(rng, 300),
            }
        }
        11 => Command::RemoveXattr {
            path: path(rng),
            name: component(rng),
        },
        12 => {
            let len = if rng.gen_bool(0.2) { data_max } else { 200 };
            Command::Write {
                path: path(rng),
                offset: number(rng),
                data: bytes(rng, len),
            }
        }
        13 => Command::Clone {
            path: path(rng),
            offset: number(rng),
            len: number(rng),
            clone_uuid: uuid(rng),
            clone_ctransid: number(rng),
            clone_path: path(rng),
            clone_offset: number(rng),
        },
        14 => Command::Truncate {
            path: path(rng),
            size: number(rng),
        },
        15 => Command::Chmod {
            path: path(rng),
            mode: number(rng),
        },
        16 => Command::Chown {
            path: path(rng),
            uid: number(rng),
            gid: number(rng),
        },
        17 => Command::Utimes {
            path: path(rng),
            atime: timespec(rng, printable_times),
            mtime: timespec(rng, printable_times),
            ctime: timespec(rng, printable_times),
            otime: rng.gen_bool(0.5).then(|| timespec(rng, printable_times)),
        },
        18 | 19 => Command::UpdateExtent {
            path: path(rng),
            offset: number(rng),
            len: number(rng),
        },
        20 => Command::Fallocate {
            path: path(rng),
            mode: rng.gen(),
            offset: number(rng),
            len: number(rng),
        },
        21 => Command::Fileattr {
            path: path(rng),
            fileattr: number(rng),
        },
        _ => Command::EncodedWrite {
            path: path(rng),
            offset: number(rng),
            unencoded_file_len: number(rng),
            unencoded_len: number(rng),
            unencoded_offset: number(rng),
            compression: rng.gen_bool(0.7).then(|| rng.gen_range(0..8)),
            encryption: rng.gen_bool(0.5).then_some(0),
            data: bytes(rng, 5000),
        },
    }
}

/// A random well-formed stream: SUBVOL or SNAPSHOT, `count` commands, END.
pub fn stream_commands(
    seed: u64,
    version: StreamVersion,
    count: usize,
    printable_times: bool,
) -> Vec<Command> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut commands = Vec::with_capacity(count + 2);
    let subvol_path = component(&mut rng);
    commands.push(if rng.gen_bool(0.5) {
        Command::Subvol {
            path: subvol_path,
            uuid: rng.gen(),
            ctransid: number(&mut rng),
        }
    } else {
        Command::Snapshot {
            path: subvol_path,
            uuid: rng.gen(),
            ctransid: number(&mut rng),
            clone_uuid: rng.gen(),
            clone_ctransid: number(&mut rng),
        }
    });
    for _ in 0..count {
        commands.push(command(&mut rng, version, printable_times));
    }
    commands.push(Command::End);
    commands
}

/// Encodes commands as one stream.
pub fn encode_stream(version: StreamVersion, commands: &[Command]) -> Vec<u8> {
    let mut writer = SendStreamWriter::new(Vec::new(), version).expect("header");
    for command in commands {
        writer.write_command(command).expect("encodable command");
    }
    writer.into_inner().expect("flush")
}

/// The `btrfs` binary, if installed.
pub fn btrfs_binary() -> Option<PathBuf> {
    [
        "/usr/bin/btrfs",
        "/bin/btrfs",
        "/usr/sbin/btrfs",
        "/sbin/btrfs",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|path| path.exists())
}

/// Runs `btrfs receive --dump` on `stream` with `TZ` set to `tz`.
pub fn btrfs_dump(btrfs: &PathBuf, stream: &[u8], tz: &str) -> Output {
    let mut child = Process::new(btrfs)
        .args(["receive", "--dump"])
        .env("TZ", tz)
        .env("LC_ALL", "C")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn btrfs");
    let mut stdin = child.stdin.take().expect("stdin");
    let stream = stream.to_vec();
    // Feed stdin from a thread: btrfs may stop reading early on a bad stream.
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&stream);
    });
    let output = child.wait_with_output().expect("btrfs output");
    let _ = feeder.join();
    output
}

/// Shows a byte string with non-printable bytes escaped, for assertion messages.
pub fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Parses concatenated streams into (version, commands) per stream.
pub fn parse_streams(
    bytes: &[u8],
) -> Result<Vec<(StreamVersion, Vec<Command>)>, tidefs_stream::StreamError> {
    let mut reader = tidefs_stream::SendStreamReader::new(bytes);
    let mut streams: Vec<(StreamVersion, Vec<Command>)> = Vec::new();
    let mut current_stream = 0;
    while let Some(command) = reader.next_command()? {
        if reader.stream_number() != current_stream {
            current_stream = reader.stream_number();
            let version = reader.version().expect("a command implies a header");
            streams.push((version, Vec::new()));
        }
        streams.last_mut().expect("pushed above").1.push(command);
    }
    Ok(streams)
}

/// Encodes (version, commands) streams back to back.
pub fn encode_streams(streams: &[(StreamVersion, Vec<Command>)]) -> Vec<u8> {
    streams
        .iter()
        .flat_map(|(version, commands)| encode_stream(*version, commands))
        .collect()
}
