//! Proves that unmodified NBD clients (qemu-img, qemu-io, nbdinfo, nbdcopy) work against
//! `tidefs nbd serve`: data round-trips exactly, holes are reported as holes, snapshot
//! exports keep their data while several clients write the origin, and bad requests get
//! the right NBD error without disturbing other clients.

mod nbd_common;

use std::process::Command;

use nbd_common::*;
use tidefs_nbd::{ClientError, ClientOptions, NbdClient};

const MIB: u64 = 1 << 20;

/// A raw image with data, zero runs and a partly written tail.
fn random_image(seed: u64, size: u64) -> Vec<u8> {
    println!("image seed {seed}");
    let mut image = vec![0u8; size as usize];
    pattern(seed, 0, &mut image);
    // Holes the copy can skip, at odd places.
    for (start, len) in [
        (MIB, 3 * MIB / 2),
        (5 * MIB + 4096, 8192),
        (size - 300_000, 200_000),
    ] {
        image[start as usize..(start + len) as usize].fill(0);
    }
    image
}

#[test]
fn qemu_img_converts_an_image_in_and_compares_equal() {
    require_tools!("qemu-img");
    let pool = TestPool::new();
    let size = 8 * MIB;
    pool.ok(&["volume", "create", "disk", "--size", "8M"]);
    let image = random_image(11, size);
    let img = write_file(pool.dir.path(), "in.raw", &image);
    let server = pool.serve(&[]);
    let uri = server.uri("disk");
    run(Command::new("qemu-img")
        .args(["convert", "-n", "-f", "raw", "-O", "raw"])
        .arg(&img)
        .arg(&uri));
    run(Command::new("qemu-img")
        .args(["compare", "-f", "raw", "-F", "raw"])
        .arg(&img)
        .arg(&uri));
    // The comparison is real: one changed byte makes it fail.
    let mut other = image.clone();
    other[4 * MIB as usize + 17] ^= 1;
    let other = write_file(pool.dir.path(), "other.raw", &other);
    let out = Command::new("qemu-img")
        .args(["compare", "-f", "raw", "-F", "raw"])
        .arg(&other)
        .arg(&uri)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    server.stop();
}

#[test]
fn qemu_io_patterns_verify_aligned_and_unaligned() {
    require_tools!("qemu-io");
    let pool = TestPool::new();
    pool.ok(&["volume", "create", "disk", "--size", "16M"]);
    let server = pool.serve(&[]);
    let uri = server.uri("disk");
    let qemu_io = |commands: &[&str]| {
        let mut cmd = Command::new("qemu-io");
        cmd.args(["-f", "raw"]);
        for c in commands {
            cmd.arg("-c").arg(c);
        }
        stdout(&run(cmd.arg(&uri)))
    };
    let out = qemu_io(&[
        "write -P 0xa1 0 1M",
        "write -P 0xb2 2101249 12345",
        "write -P 0xc3 8M 4M",
        "write -z 8M 4096",
        "write -P 0xd4 1048575 2",
        "aio_flush",
        "read -P 0xa1 0 1048575",
        "read -P 0xd4 1048575 2",
        "read -P 0x00 1048577 3519",
        "read -P 0xb2 2101249 12345",
        "read -P 0x00 8M 4096",
        "read -P 0xc3 8392704 4190208",
        "read -P 0x00 12M 4M",
    ]);
    assert!(!out.contains("failed"), "{out}");
    assert_eq!(out.matches("read ").count(), 7, "{out}");
    // And verification is real: a wrong pattern is caught.
    let out = Command::new("qemu-io")
        .args(["-f", "raw", "-c", "read -P 0xee 0 4096"])
        .arg(&uri)
        .output()
        .unwrap();
    assert!(
        stdout(&out).contains("Pattern verification failed"),
        "{}",
        stdout(&out)
    );
    server.stop();
}

#[test]
fn nbdinfo_reports_size_contexts_holes_and_exports() {
    require_tools!("nbdinfo", "qemu-io");
    let pool = TestPool::new();
    pool.ok(&["volume", "create", "disk", "--size", "64M"]);
    pool.ok(&["volume", "create", "other", "--size", "4M"]);
    let server = pool.serve(&[]);
    let uri = server.uri("disk");
    run(Command::new("qemu-io")
        .args([
            "-f",
            "raw",
            "-c",
            "write -P 1 1M 64k",
            "-c",
            "write -z 2M 8k",
        ])
        .arg(&uri));
    let size = stdout(&run(Command::new("nbdinfo").arg("--size").arg(&uri)));
    assert_eq!(size.trim(), (64 * MIB).to_string());
    let json = stdout(&run(Command::new("nbdinfo").arg("--json").arg(&uri)));
    assert!(json.contains("base:allocation"), "{json}");
    assert!(json.contains("\"can_multi_conn\": true"), "{json}");
    assert!(json.contains("\"block_size_preferred\": 4096"), "{json}");
    let map = stdout(&run(Command::new("nbdinfo").arg("--map").arg(&uri)));
    let rows: Vec<Vec<String>> = map
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect();
    let row = |offset: u64| {
        rows.iter()
            .find(|r| r[0] == offset.to_string())
            .unwrap_or_else(|| panic!("no map row at {offset}:\n{map}"))
            .clone()
    };
    assert_eq!(row(0)[1], MIB.to_string());
    assert!(row(0)[3].starts_with("hole"), "{map}");
    assert_eq!(row(MIB)[1], (64 * 1024).to_string());
    assert_eq!(row(MIB)[3], "data", "{map}");
    assert_eq!(
        row(2 * MIB)[3],
        "zero",
        "allocated zeroes are not holes:\n{map}"
    );
    pool.ok(&["volume", "snapshot", "disk@s1"]);
    let list = stdout(&run(Command::new("nbdinfo")
        .arg("--list")
        .arg(format!("nbd://{}", server.address))));
    for name in ["export=\"disk\"", "export=\"other\"", "export=\"disk@s1\""] {
        assert!(list.contains(name), "{name} missing from:\n{list}");
    }
    let out = Command::new("nbdinfo")
        .arg(server.uri("nope"))
        .output()
        .unwrap();
    assert!(!out.status.success(), "an unknown export is refused");
    server.stop();
}

#[test]
fn nbdcopy_copies_in_and_out_exactly() {
    require_tools!("nbdcopy");
    let pool = TestPool::new();
    pool.ok(&["volume", "create", "disk", "--size", "12M"]);
    let image = random_image(23, 12 * MIB);
    let input = write_file(pool.dir.path(), "in.raw", &image);
    let output = pool.dir.path().join("out.raw");
    let server = pool.serve(&[]);
    run(Command::new("nbdcopy").arg(&input).arg(server.uri("disk")));
    run(Command::new("nbdcopy").arg(server.uri("disk")).arg(&output));
    let copied = std::fs::read(&output).unwrap();
    assert!(copied == image, "nbdcopy out differs from what went in");
    server.stop();
}

#[test]
fn writers_on_the_origin_never_disturb_readers_of_a_snapshot() {
    require_tools!("qemu-io");
    let pool = TestPool::new();
    pool.ok(&["volume", "create", "disk", "--size", "24M"]);
    let server = pool.serve(&[]);
    let origin = server.uri("disk");
    run(Command::new("qemu-io")
        .args(["-f", "raw", "-c", "write -P 0x11 0 24M", "-c", "flush"])
        .arg(&origin));
    // Through the control socket: the server holds the pool.
    pool.ok(&["volume", "snapshot", "disk@before"]);
    let snapshot = server.uri("disk@before");
    let writers: Vec<_> = (0..3u64)
        .map(|w| {
            let mut cmd = Command::new("qemu-io");
            cmd.args(["-f", "raw"]);
            for i in 0..16u64 {
                let offset = (w * 8 + i / 2) * MIB + (i % 2) * 512 * 1024;
                cmd.arg("-c").arg(format!("write -P 0x22 {offset} 512k"));
                if i % 4 == 3 {
                    cmd.arg("-c").arg("flush");
                }
            }
            cmd.arg(&origin)
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let readers: Vec<_> = (0..2)
        .map(|_| {
            Command::new("qemu-io")
                .args(["-r", "-f", "raw"])
                .args([
                    "-c",
                    "read -P 0x11 0 24M",
                    "-c",
                    "read -P 0x11 0 24M",
                    "-c",
                    "read -P 0x11 0 24M",
                ])
                .arg(&snapshot)
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for w in writers {
        assert!(w.wait_with_output().unwrap().status.success());
    }
    for r in readers {
        let out = r.wait_with_output().unwrap();
        assert!(out.status.success());
        let text = stdout(&out);
        assert!(
            !text.contains("failed"),
            "snapshot read saw origin writes: {text}"
        );
        assert_eq!(text.matches("read 25165824/25165824").count(), 3, "{text}");
    }
    let out = stdout(&run(Command::new("qemu-io")
        .args(["-r", "-f", "raw", "-c", "read -P 0x22 0 24M"])
        .arg(&origin)));
    assert!(
        !out.contains("failed"),
        "the origin holds the new data: {out}"
    );
    let listed = pool.ok(&["volume", "snapshot", "list", "disk", "--json"]);
    assert!(listed.contains("\"before\""), "{listed}");
    server.stop();
    // The snapshot records what it held, and diff says the whole volume changed since.
    let diff = pool.ok(&["volume", "diff", "disk@before", "disk", "--json"]);
    assert!(diff.contains("\"changed_bytes\": 25165824"), "{diff}");
}

fn connect(server: &Server, export: &str) -> Result<NbdClient, ClientError> {
    NbdClient::connect_tcp(server.address.as_str(), export, ClientOptions::default())
}

fn errno(result: Result<(), ClientError>) -> u32 {
    match result {
        Err(ClientError::CommandFailed { errno, .. }) => errno,
        other => panic!("expected an NBD error, got {other:?}"),
    }
}

#[test]
fn bad_requests_get_nbd_errors_and_other_clients_carry_on() {
    let pool = TestPool::new();
    pool.ok(&["volume", "create", "disk", "--size", "1M"]);
    let server = pool.serve(&[]);
    let mut a = connect(&server, "disk").unwrap();
    let mut data = vec![0u8; 8192];
    pattern(5, 0, &mut data);
    a.write(0, &data, true).unwrap();
    pool.ok(&["volume", "snapshot", "disk@s"]);

    // Snapshot exports are read-only: EPERM.
    let mut s = connect(&server, "disk@s").unwrap();
    assert_eq!(errno(s.write(0, &[1], false)), 1);
    // Out of range: EINVAL for reads, ENOSPC for writes.
    let mut buf = [0u8; 2];
    assert_eq!(errno(a.read(MIB - 1, &mut buf)), 22);
    assert_eq!(errno(a.write(MIB - 1, &[1, 2], false)), 28);
    // An unknown command: EINVAL, and the connection goes on.
    assert_eq!(errno(a.raw_command(0x77, 0, 0, 0, &[])), 22);
    // An export that does not exist is refused during the handshake.
    assert!(matches!(
        connect(&server, "missing"),
        Err(ClientError::OptionRefused { .. })
    ));
    // A client that hangs up in the middle of a write: the write never happens.
    let mut c = connect(&server, "disk").unwrap();
    c.send_request(tidefs_nbd::wire::CMD_WRITE, 0, 0, 4096, &[0xff; 100])
        .unwrap();
    c.flush_requests().unwrap();
    drop(c);
    // Trim and write-zeroes; the others still see consistent data.
    a.trim(4096, 4096).unwrap();
    let mut got = vec![0u8; 8192];
    a.read(0, &mut got).unwrap();
    assert_eq!(got[..4096], data[..4096]);
    assert!(got[4096..].iter().all(|&b| b == 0));
    let mut snap = vec![0u8; 8192];
    s.read(0, &mut snap).unwrap();
    assert!(snap == data, "the snapshot keeps what it had");
    a.write_zeroes(0, 100, true).unwrap();
    a.read(0, &mut got[..200]).unwrap();
    assert!(got[..100].iter().all(|&b| b == 0));
    assert_eq!(got[100..200], data[100..200]);
    let extents = a.block_status(0, MIB as u32).unwrap();
    assert_eq!(extents[0].flags, 0, "block 0 holds data");
    assert_eq!(extents[1].flags & 1, 1, "block 1 is a hole again");
    a.flush().unwrap();
    a.disconnect().unwrap();
    s.disconnect().unwrap();
    server.stop();
    run(&mut pool.tidefs(&["fsck"]));
}

#[test]
fn writable_snapshots_and_snapshot_commands_through_the_server() {
    let pool = TestPool::new();
    pool.ok(&["volume", "create", "disk", "--size", "1M"]);
    let server = pool.serve(&["--writable-snapshots", "--export", "disk"]);
    let mut a = connect(&server, "disk").unwrap();
    a.write(0, &[7u8; 4096], true).unwrap();
    pool.ok(&["volume", "snapshot", "disk@s"]);
    // Exports were fixed with --export: the new snapshot is not served.
    assert!(connect(&server, "disk@s").is_err());
    // The default export is the first one named.
    let mut d = connect(&server, "").unwrap();
    let mut got = [0u8; 4];
    d.read(0, &mut got).unwrap();
    assert_eq!(got, [7; 4]);
    pool.ok(&["volume", "snapshot", "rename", "disk@s", "t"]);
    let listed = pool.ok(&["volume", "snapshot", "list", "disk", "--json"]);
    assert!(
        listed.contains("\"t\"") && !listed.contains("\"s\""),
        "{listed}"
    );
    a.disconnect().unwrap();
    d.disconnect().unwrap();
    server.stop();

    let server = pool.serve(&["--writable-snapshots"]);
    let mut s = connect(&server, "disk@t").unwrap();
    s.write(0, &[9u8; 4096], false).unwrap();
    s.flush().unwrap();
    let mut got = [0u8; 4];
    s.read(0, &mut got).unwrap();
    assert_eq!(got, [9; 4], "a writable snapshot takes writes");
    let mut a = connect(&server, "disk").unwrap();
    a.read(0, &mut got).unwrap();
    assert_eq!(got, [7; 4], "its volume does not see them");
    pool.ok(&["volume", "snapshot", "delete", "disk@t"]);
    assert!(
        s.read(0, &mut got).is_err(),
        "a deleted snapshot fails cleanly"
    );
    a.read(0, &mut got).unwrap();
    assert_eq!(got, [7; 4], "other clients carry on");
    let listed = pool.ok(&["volume", "snapshot", "list", "disk"]);
    assert!(listed.contains("no snapshots"), "{listed}");
    a.disconnect().unwrap();
    server.stop();
    run(&mut pool.tidefs(&["fsck"]));
}
