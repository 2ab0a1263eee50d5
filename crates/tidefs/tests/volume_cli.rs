//! Proves the `tidefs volume` contract: create, list --json, resize, snapshot (create,
//! list, rename, delete), clone, diff and delete do what they say, and bad names, missing
//! volumes and bad sizes fail with one clear line and exit 1 (usage errors exit 2); while a
//! server holds the pool, list and snapshot commands go through it and the others name it.

mod nbd_common;

use nbd_common::*;
use tidefs_nbd::{ClientOptions, NbdClient};

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn one_line(err: &str) -> &str {
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "errors are one line: {err:?}");
    lines[0]
}

#[test]
fn volume_commands_do_what_they_say_and_refuse_bad_input() {
    let pool = TestPool::new();
    pool.ok(&["volume", "create", "vm", "--size", "16M"]);
    pool.ok(&["volume", "create", "small", "--size", "4096"]);
    let list = json(&pool.ok(&["volume", "list", "--json"]));
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["volume"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["small", "vm"]);
    assert_eq!(list[1]["size_bytes"], 16 << 20);
    assert_eq!(list[1]["kind"], "volume");

    for (args, needle) in [
        (
            vec!["volume", "create", "a/b", "--size", "1M"],
            "may not contain",
        ),
        (
            vec!["volume", "create", "a@b", "--size", "1M"],
            "may not contain",
        ),
        (
            vec!["volume", "create", "vm", "--size", "1M"],
            "already exists",
        ),
        (
            vec!["volume", "create", "odd", "--size", "1000"],
            "multiple of 4096",
        ),
        (
            vec!["volume", "create", "zero", "--size", "0"],
            "at least one block",
        ),
        (
            vec!["volume", "resize", "nope", "--size", "1M"],
            "does not exist",
        ),
        (
            vec!["volume", "resize", "vm", "--size", "5000"],
            "multiple of 4096",
        ),
        (vec!["volume", "delete", "nope"], "does not exist"),
        (vec!["volume", "snapshot", "nope@s"], "does not exist"),
        (vec!["volume", "snapshot", "vm"], "NAME@SNAP"),
        (vec!["volume", "clone", "vm@none", "c"], "does not exist"),
        (vec!["volume", "diff", "vm@x", "vm"], "does not exist"),
    ] {
        let (code, err) = pool.fails(&args);
        assert_eq!(code, 1, "{args:?}: {err}");
        let line = one_line(&err);
        assert!(line.contains(needle), "{args:?}: {line}");
    }
    let long = "x".repeat(256);
    let (code, err) = pool.fails(&["volume", "create", &long, "--size", "1M"]);
    assert_eq!(code, 1);
    assert!(one_line(&err).contains("at most 255 bytes"));
    let (code, _) = pool.fails(&["volume", "create", "x", "--size", "12Q"]);
    assert_eq!(code, 2, "a malformed size is a usage error");
    let (code, _) = pool.fails(&["volume", "frobnicate"]);
    assert_eq!(code, 2);

    // Write through a server, snapshot, write more, and diff.
    let server = pool.serve(&[]);
    let mut client =
        NbdClient::connect_tcp(server.address.as_str(), "vm", ClientOptions::default()).unwrap();
    client.write(0, &[1u8; 8192], false).unwrap();
    client.flush().unwrap();
    pool.ok(&["volume", "snapshot", "vm@one"]);
    client.write(1 << 20, &[2u8; 100], false).unwrap();
    client.write(3 << 20, &[3u8; 12288], false).unwrap();
    client.trim(0, 4096).unwrap();
    client.flush().unwrap();
    pool.ok(&["volume", "snapshot", "vm@two"]);
    client.disconnect().unwrap();
    // Not through the control socket: one line naming the server's pid.
    let (code, err) = pool.fails(&["volume", "diff", "vm@one", "vm@two"]);
    assert_eq!(code, 1);
    assert!(
        one_line(&err).contains(&format!("pid {}", server.pid())),
        "{err}"
    );
    let snaps = json(&pool.ok(&["volume", "snapshot", "list", "vm", "--json"]));
    assert_eq!(snaps.as_array().unwrap().len(), 2);
    server.stop();

    let diff = json(&pool.ok(&["volume", "diff", "vm@one", "vm@two", "--json"]));
    let ranges: Vec<(u64, u64)> = diff["ranges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["offset"].as_u64().unwrap(), r["length"].as_u64().unwrap()))
        .collect();
    assert_eq!(ranges, [(0, 4096), (1 << 20, 4096), (3 << 20, 12288)]);
    let text = pool.ok(&["volume", "diff", "vm@two", "vm"]);
    assert!(text.contains("0 B changed in 0 range(s)"), "{text}");

    pool.ok(&["volume", "snapshot", "rename", "vm@one", "first"]);
    pool.ok(&["volume", "clone", "vm@first", "vm2"]);
    let list = json(&pool.ok(&["volume", "list", "--json"]));
    let vm2 = list
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["volume"] == "vm2")
        .unwrap();
    assert_eq!(vm2["origin"], "vm@first");
    let (code, err) = pool.fails(&["volume", "delete", "vm"]);
    assert_eq!(code, 1);
    assert!(one_line(&err).contains("2 snapshot(s)"), "{err}");
    pool.ok(&["volume", "snapshot", "delete", "vm@two"]);
    pool.ok(&["volume", "delete", "-r", "vm"]);
    pool.ok(&["volume", "resize", "vm2", "--size", "8M"]);
    let list = json(&pool.ok(&["volume", "list", "--json"]));
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["volume"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["small", "vm2"]);
    assert_eq!(list[1]["size_bytes"], 8 << 20);
    // The clone kept the data of the snapshot it came from.
    let server = pool.serve(&["--export", "vm2"]);
    let mut client =
        NbdClient::connect_tcp(server.address.as_str(), "vm2", ClientOptions::default()).unwrap();
    let mut got = vec![0u8; 8192];
    client.read(0, &mut got).unwrap();
    assert!(got.iter().all(|&b| b == 1));
    assert_eq!(client.size(), 8 << 20);
    client.disconnect().unwrap();
    server.stop();
    run(&mut pool.tidefs(&["fsck"]));
}

#[test]
fn serving_a_missing_export_fails_at_start() {
    let pool = TestPool::new();
    let (code, err) = pool.fails(&[
        "nbd",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--export",
        "ghost",
    ]);
    assert_eq!(code, 1);
    assert!(one_line(&err).contains("ghost"), "{err}");
}
