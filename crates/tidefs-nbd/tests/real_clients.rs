//! Proves unmodified NBD clients (qemu-img, qemu-io, nbdinfo, nbdcopy) work against the
//! server. Each test prints SKIP and passes when its tool is missing
//! (`apt-get install libnbd-bin qemu-utils`).

mod common;

use std::fs;
use std::process::Command;
use std::sync::Arc;
use std::thread;

use common::*;
use rand::Rng;
use tidefs_nbd::{BlockExport, ExportMap, MemoryExport, MEMORY_BLOCK_BYTES};

/// Writes a raw image of `size` bytes with random data in random places and holes in
/// between; returns its bytes.
fn random_sparse_image(path: &std::path::Path, size: u64, rng: &mut impl Rng) -> Vec<u8> {
    let mut image = vec![0u8; size as usize];
    let mut offset = 0u64;
    while offset < size {
        let run = rng.gen_range(1..=64u64) * 64 * 1024;
        let end = (offset + run).min(size);
        if rng.gen_bool(0.5) {
            rng.fill(&mut image[offset as usize..end as usize]);
        }
        offset = end;
    }
    fs::write(path, &image).unwrap();
    image
}

fn read_all(export: &dyn BlockExport) -> Vec<u8> {
    let mut image = vec![0u8; export.size() as usize];
    export.read(0, &mut image).unwrap();
    image
}

#[test]
fn qemu_img_convert_in_and_compare_back() {
    if !have_tool("qemu-img", "qemu_img_convert_in_and_compare_back") {
        return;
    }
    let mut rng = seeded_rng("qemu_img_convert_in_and_compare_back");
    let size = 24 * MIB;
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.raw");
    let image = random_sparse_image(&source, size, &mut rng);
    let (map, export) = memory_disk(size);
    let (_server, address) = tcp_server(map);
    let uri = nbd_uri(address, "disk");
    let source_arg = source.to_str().unwrap();

    run(Command::new("qemu-img")
        .args(["convert", "-n", "-f", "raw", "-O", "raw", source_arg, &uri]));
    assert!(
        read_all(export.as_ref()) == image,
        "export differs from the source"
    );
    let out =
        run(Command::new("qemu-img").args(["compare", "-f", "raw", "-F", "raw", source_arg, &uri]));
    assert!(out.contains("Images are identical"), "{out}");

    // qemu-img compare must notice a difference, or the check above proves nothing.
    export.write(size / 2, b"changed", false).unwrap();
    let status = Command::new("qemu-img")
        .args(["compare", "-q", "-f", "raw", "-F", "raw", source_arg, &uri])
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(1), "compare should report a difference");
}

#[test]
fn qemu_io_patterns_over_tcp_and_unix() {
    if !have_tool("qemu-io", "qemu_io_patterns_over_tcp_and_unix") {
        return;
    }
    let (map, export) = memory_disk(16 * MIB);
    let (_server, address) = tcp_server(map);
    let tcp = nbd_uri(address, "disk");
    let out = run(Command::new("qemu-io").args([
        "-f",
        "raw",
        "-c",
        "write -P 0xab 0 1M",
        "-c",
        "read -P 0xab 0 1M",
        &tcp,
    ]));
    assert!(
        out.contains("read 1048576/1048576 bytes at offset 0"),
        "{out}"
    );
    let mut buf = vec![0u8; MIB as usize];
    export.read(0, &mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == 0xab));

    // A wrong pattern must be caught, or the read check above proves nothing.
    let out = Command::new("qemu-io")
        .args(["-f", "raw", "-c", "read -P 0xcd 0 1M", &tcp])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("Pattern verification failed"), "{text}");

    let (map, export) = memory_disk(16 * MIB);
    let (_server, path, _dir) = unix_server(map);
    let unix = format!("nbd+unix:///disk?socket={}", path.display());
    run(Command::new("qemu-io").args([
        "-f",
        "raw",
        "-c",
        "write -P 0x5a 1M 2M",
        "-c",
        "write -z 1536K 64K",
        "-c",
        "discard 2M 1M",
        "-c",
        "flush",
        "-c",
        "read -P 0x5a 1M 512K",
        "-c",
        "read -P 0 1536K 64K",
        &unix,
    ]));
    let mut buf = vec![0u8; 64 * 1024];
    export.read(1536 * 1024, &mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == 0));
    export.read(MIB, &mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == 0x5a));
}

#[test]
fn qemu_io_cannot_write_a_read_only_export() {
    if !have_tool("qemu-io", "qemu_io_cannot_write_a_read_only_export") {
        return;
    }
    let export = Arc::new(MemoryExport::new(MIB).with_read_only(true));
    let map = ExportMap::new().with_export("snap", "", export);
    let (_server, address) = tcp_server(map);
    let uri = nbd_uri(address, "snap");
    let out = Command::new("qemu-io")
        .args(["-f", "raw", "-c", "write -P 1 0 4k", &uri])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(!text.contains("wrote 4096/4096"), "{text}");
    // qemu sees NBD_FLAG_READ_ONLY and refuses to open the export for writing.
    assert!(text.contains("Permission denied"), "{text}");
    let out = run(Command::new("qemu-io").args(["-r", "-f", "raw", "-c", "read -P 0 0 4k", &uri]));
    assert!(out.contains("read 4096/4096"), "{out}");
}

#[test]
fn nbdinfo_list_shows_every_export_with_size_and_description() {
    if !have_tool(
        "nbdinfo",
        "nbdinfo_list_shows_every_export_with_size_and_description",
    ) {
        return;
    }
    let map = ExportMap::new()
        .with_export(
            "alpha",
            "first volume",
            Arc::new(MemoryExport::new(3 * MIB)),
        )
        .with_export(
            "beta",
            "a snapshot",
            Arc::new(MemoryExport::new(5 * MIB).with_read_only(true)),
        );
    let (_server, address) = tcp_server(map);
    let out = run(Command::new("nbdinfo").args(["--list", &format!("nbd://{address}")]));
    for expected in [
        "export=\"alpha\"",
        "description: first volume",
        "export-size: 3145728",
        "export=\"beta\"",
        "description: a snapshot",
        "export-size: 5242880",
        "is_read_only: true",
        "base:allocation",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
}

/// Parses `nbdinfo --map` lines: (offset, length, type).
fn parse_map(out: &str) -> Vec<(u64, u64, u32)> {
    out.lines()
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (
                fields[0].parse().unwrap(),
                fields[1].parse().unwrap(),
                fields[2].parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn nbdinfo_map_shows_holes_as_holes() {
    if !have_tool("nbdinfo", "nbdinfo_map_shows_holes_as_holes") {
        return;
    }
    let (map, export) = memory_disk(8 * MIB);
    export.write(MIB, &[1u8; 65536], false).unwrap();
    export.write(4 * MIB, &[2u8; 4096], false).unwrap();
    export.write_zeroes(6 * MIB, MIB, false, false).unwrap();
    let (_server, address) = tcp_server(map);
    let out = run(Command::new("nbdinfo").args(["--map", &nbd_uri(address, "disk")]));
    let hole = 3; // NBD_STATE_HOLE | NBD_STATE_ZERO
    assert_eq!(
        parse_map(&out),
        [
            (0, MIB, hole),
            (MIB, 65536, 0),
            (MIB + 65536, 3 * MIB - 65536, hole),
            (4 * MIB, 4096, 0),
            (4 * MIB + 4096, 2 * MIB - 4096, hole),
            (6 * MIB, MIB, 2), // allocated zeroes
            (7 * MIB, MIB, hole),
        ],
        "{out}"
    );
}

#[test]
fn nbdinfo_json_reports_contexts_and_flags() {
    if !have_tool("nbdinfo", "nbdinfo_json_reports_contexts_and_flags") {
        return;
    }
    let (map, _export) = memory_disk(2 * MIB);
    let (_server, address) = tcp_server(map);
    let out = run(Command::new("nbdinfo").args(["--json", &nbd_uri(address, "disk")]));
    for expected in [
        "\"protocol\": \"newstyle-fixed\"",
        "\"structured\": true",
        "\"base:allocation\"",
        "\"can_multi_conn\": true",
        "\"can_flush\": true",
        "\"can_fua\": true",
        "\"can_trim\": true",
        "\"can_zero\": true",
        "\"is_read_only\": false",
        "\"export-size\": 2097152",
        "\"block_size_minimum\": 1",
    ] {
        assert!(out.contains(expected), "missing {expected} in:\n{out}");
    }
}

#[test]
fn nbdcopy_in_and_out() {
    if !have_tool("nbdcopy", "nbdcopy_in_and_out") {
        return;
    }
    let mut rng = seeded_rng("nbdcopy_in_and_out");
    let size = 32 * MIB;
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("in.raw");
    let copied = dir.path().join("out.raw");
    let image = random_sparse_image(&source, size, &mut rng);
    let (map, export) = memory_disk(size);
    let (_server, address) = tcp_server(map);
    let uri = nbd_uri(address, "disk");
    run(Command::new("nbdcopy").args([source.to_str().unwrap(), &uri]));
    assert!(
        read_all(export.as_ref()) == image,
        "export differs after copy in"
    );
    run(Command::new("nbdcopy").args([&uri, copied.to_str().unwrap()]));
    assert!(fs::read(&copied).unwrap() == image, "copy out differs");
    let written_blocks = image
        .chunks(MEMORY_BLOCK_BYTES as usize)
        .filter(|block| block.iter().any(|&b| b != 0))
        .count();
    assert!(
        export.allocated_blocks() <= written_blocks + 1,
        "nbdcopy skips source holes, so they stay holes: {} allocated, {} with data",
        export.allocated_blocks(),
        written_blocks
    );
}

#[test]
fn nbdcopy_over_unix_socket_with_many_connections() {
    if !have_tool("nbdcopy", "nbdcopy_over_unix_socket_with_many_connections") {
        return;
    }
    let mut rng = seeded_rng("nbdcopy_over_unix_socket_with_many_connections");
    let size = 16 * MIB;
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("in.raw");
    let image = random_sparse_image(&source, size, &mut rng);
    let (map, export) = memory_disk(size);
    let (_server, path, _sock_dir) = unix_server(map);
    let uri = format!("nbd+unix:///disk?socket={}", path.display());
    run(Command::new("nbdcopy").args([
        "--connections=4",
        "--requests=16",
        source.to_str().unwrap(),
        &uri,
    ]));
    assert!(read_all(export.as_ref()) == image);
}

#[test]
fn several_real_clients_at_once() {
    if !have_tool("qemu-io", "several_real_clients_at_once") {
        return;
    }
    let (map, export) = memory_disk(8 * MIB);
    let (_server, address) = tcp_server(map);
    let uri = nbd_uri(address, "disk");
    let writers: Vec<_> = (0..6u8)
        .map(|i| {
            let uri = uri.clone();
            thread::spawn(move || {
                let start = u64::from(i) * MIB;
                let pattern = format!("write -P {} {start} 1M", 0x10 + i);
                let check = format!("read -P {} {start} 1M", 0x10 + i);
                run(Command::new("qemu-io").args(["-f", "raw", "-c", &pattern, "-c", &check, &uri]))
            })
        })
        .collect();
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let uri = uri.clone();
            thread::spawn(move || run(Command::new("nbdinfo").args(["--map", &uri])))
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    for reader in readers {
        reader.join().unwrap();
    }
    let mut buf = vec![0u8; MIB as usize];
    for i in 0..6u8 {
        export.read(u64::from(i) * MIB, &mut buf).unwrap();
        assert!(buf.iter().all(|&b| b == 0x10 + i), "region {i}");
    }
}
