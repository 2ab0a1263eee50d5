//! Throughput of encoding and parsing send streams: 100,000 small metadata commands, and
//! 2 GiB of WRITE data in version 1 (48 KiB chunks) and version 2 (128 KiB chunks).
//! Encoding goes to `io::sink()`; parsing reads from memory (the 2 GiB stream is produced
//! on the fly by repeating one encoded megabyte). Prints MB/s (10^6 bytes per second).
//!
//! Run: `cargo bench -p tidefs-stream --bench stream_throughput`

use std::io::{self, Read};
use std::time::Instant;

use tidefs_stream::{Command, SendStreamReader, SendStreamWriter, StreamVersion, Timespec};

const SMALL_COMMANDS: usize = 100_000;
const WRITE_DATA_BYTES: u64 = 2 << 30;
const BLOCK_BYTES: usize = 1 << 20;

fn small_command(i: usize) -> Command {
    let path = format!("dir{}/file-{i}", i % 97).into_bytes();
    match i % 5 {
        0 => Command::Mkfile {
            path,
            ino: i as u64,
        },
        1 => Command::Rename {
            from: path.clone(),
            to: [path.as_slice(), b".new"].concat(),
        },
        2 => Command::Chown {
            path,
            uid: 1000,
            gid: 1000,
        },
        3 => Command::Chmod { path, mode: 0o644 },
        _ => Command::Utimes {
            path,
            atime: Timespec {
                sec: 1_700_000_000,
                nsec: 1,
            },
            mtime: Timespec {
                sec: 1_700_000_000,
                nsec: 2,
            },
            ctime: Timespec {
                sec: 1_700_000_000,
                nsec: 3,
            },
            otime: None,
        },
    }
}

fn report(what: &str, bytes: u64, commands: u64, started: Instant) {
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{what:<44} {:>10.1} MB/s  {:>12.0} commands/s  ({bytes} bytes, {commands} commands, {seconds:.3} s)",
        bytes as f64 / seconds / 1e6,
        commands as f64 / seconds,
    );
}

fn small_commands(version: StreamVersion) {
    let commands: Vec<Command> = (0..SMALL_COMMANDS).map(small_command).collect();

    let started = Instant::now();
    let mut writer = SendStreamWriter::new(io::sink(), version).unwrap();
    for command in &commands {
        writer.write_command(command).unwrap();
    }
    writer.end().unwrap();
    report(
        &format!("encode 100k small commands v{version}"),
        writer.bytes_written(),
        writer.commands_written(),
        started,
    );

    let mut writer = SendStreamWriter::new(Vec::new(), version).unwrap();
    for command in &commands {
        writer.write_command(command).unwrap();
    }
    writer.end().unwrap();
    let bytes = writer.into_inner().unwrap();
    let started = Instant::now();
    let mut count = 0u64;
    for command in SendStreamReader::new(&bytes[..]) {
        command.unwrap();
        count += 1;
    }
    report(
        &format!("parse 100k small commands v{version}"),
        bytes.len() as u64,
        count,
        started,
    );
}

/// Produces `header | body × repeats | tail` without holding it in memory.
struct RepeatingStream {
    parts: Vec<Vec<u8>>,
    repeats: u64,
    part: usize,
    position: usize,
}

impl Read for RepeatingStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some(current) = self.parts.get(self.part) else {
                return Ok(0);
            };
            if self.position < current.len() {
                let n = buf.len().min(current.len() - self.position);
                buf[..n].copy_from_slice(&current[self.position..self.position + n]);
                self.position += n;
                return Ok(n);
            }
            self.position = 0;
            if self.part == 1 && self.repeats > 1 {
                self.repeats -= 1;
            } else {
                self.part += 1;
            }
        }
    }
}

fn write_data(version: StreamVersion) {
    let block: Vec<u8> = (0..BLOCK_BYTES).map(|i| (i * 7) as u8).collect();
    let blocks = WRITE_DATA_BYTES / BLOCK_BYTES as u64;

    let started = Instant::now();
    let mut writer = SendStreamWriter::new(io::sink(), version).unwrap();
    for index in 0..blocks {
        writer
            .write_file_data(b"dir/big file", index * BLOCK_BYTES as u64, &block)
            .unwrap();
    }
    writer.end().unwrap();
    report(
        &format!("encode 2 GiB WRITE data v{version}"),
        writer.bytes_written(),
        writer.commands_written(),
        started,
    );

    // One encoded block, repeated: same bytes per command as the real thing.
    let mut header = SendStreamWriter::new(Vec::new(), version).unwrap();
    let header_bytes = header.bytes_written() as usize;
    header.write_file_data(b"dir/big file", 0, &block).unwrap();
    let encoded = header.into_inner().unwrap();
    let (head, body) = encoded.split_at(header_bytes);
    let mut tail = SendStreamWriter::new(Vec::new(), version).unwrap();
    tail.end().unwrap();
    let tail = tail.into_inner().unwrap()[header_bytes..].to_vec();
    let total = (head.len() + body.len() * blocks as usize + tail.len()) as u64;
    let input = RepeatingStream {
        parts: vec![head.to_vec(), body.to_vec(), tail],
        repeats: blocks,
        part: 0,
        position: 0,
    };
    let started = Instant::now();
    let mut count = 0u64;
    let mut data_bytes = 0u64;
    for command in SendStreamReader::new(input) {
        if let Command::Write { data, .. } = command.unwrap() {
            data_bytes += data.len() as u64;
        }
        count += 1;
    }
    assert_eq!(data_bytes, WRITE_DATA_BYTES);
    report(
        &format!("parse 2 GiB WRITE data v{version}"),
        total,
        count,
        started,
    );
}

fn main() {
    // `cargo test --benches` passes --bench-less arguments; run only under `cargo bench`.
    if std::env::args().any(|arg| arg == "--test") {
        return;
    }
    for version in [StreamVersion::V1, StreamVersion::V2] {
        small_commands(version);
    }
    for version in [StreamVersion::V1, StreamVersion::V2] {
        write_data(version);
    }
}
