//! The send/receive CLI: full and incremental transfers between pools, `--dump` equal to
//! `btrfs receive --dump`, bad streams refused in one line naming command and byte offset
//! with the pool unchanged and fsck clean, and resuming a cut-off transfer.

mod send_common;

use send_common::{assert_dump_matches_btrfs, change, populate, Pool};
use tidefs_send::tidefs_stream::{crc32c_raw, StreamVersion};

fn export_equal(a: &Pool, a_spec: &str, b: &Pool, b_spec: &str) {
    let da = a.file("export-a");
    let db = b.file("export-b");
    let _ = std::fs::remove_dir_all(&da);
    let _ = std::fs::remove_dir_all(&db);
    a.ok(&["export", a_spec, da.to_str().unwrap()]);
    b.ok(&["export", b_spec, db.to_str().unwrap()]);
    let out = std::process::Command::new("diff")
        .arg("-r")
        .arg(&da)
        .arg(&db)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "trees differ: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn full_then_incremental_between_pools_and_dump_matches_btrfs() {
    let a = Pool::new();
    populate(&a);
    change(&a);
    let s1 = a.send("home@s1", None, "s1.stream");
    let s2 = a.send("home@s2", Some("home@s1"), "s2.stream");
    let b = Pool::new();
    let out = b.ok(&["receive", "copy", "-f", s1.to_str().unwrap()]);
    assert!(out.contains("received copy@s1"), "{out}");
    b.ok(&["receive", "copy", "-f", s2.to_str().unwrap()]);
    export_equal(&a, "home@s1", &b, "copy@s1");
    export_equal(&a, "home@s2", &b, "copy@s2");
    b.fsck_clean();
    let list = b.ok(&["snapshot", "list", "copy", "--json"]);
    assert!(
        list.contains("received_uuid") && !list.contains("\"received_uuid\": null"),
        "{list}"
    );
    for s in [&s1, &s2] {
        assert_dump_matches_btrfs(&a, s);
    }
    // Version 1 streams too.
    let v1 = a.file("v1.stream");
    a.ok(&[
        "send",
        "home@s2",
        "-p",
        "home@s1",
        "--proto",
        "1",
        "-f",
        v1.to_str().unwrap(),
    ]);
    assert_dump_matches_btrfs(&a, &v1);
}

/// A valid full stream and the pool it can be received into.
fn valid_stream() -> (Pool, Vec<u8>) {
    let a = Pool::new();
    populate(&a);
    let s = a.send("home@s1", None, "s1.stream");
    (a, std::fs::read(s).unwrap())
}

/// Receives `bytes` into a fresh pool and checks the error and that nothing changed.
fn refused(bytes: &[u8], expect: &[&str]) -> String {
    let b = Pool::new();
    b.ok(&["subvol", "create", "other"]);
    let f = b.file("bad.stream");
    std::fs::write(&f, bytes).unwrap();
    let before = b.ok(&["subvol", "list"]);
    let err = b.fails(&["receive", "dst", "-f", f.to_str().unwrap()]);
    for e in expect {
        assert!(err.contains(e), "{err:?} lacks {e:?}");
    }
    assert_eq!(b.ok(&["subvol", "list"]), before, "the pool changed");
    b.fsck_clean();
    err
}

/// Appends one command with a correct CRC.
fn command(out: &mut Vec<u8>, cmd: u16, payload: &[u8]) {
    let mut c = Vec::new();
    c.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    c.extend_from_slice(&cmd.to_le_bytes());
    c.extend_from_slice(&[0; 4]);
    c.extend_from_slice(payload);
    let crc = crc32c_raw(&c);
    c[6..10].copy_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&c);
}

fn tlv(out: &mut Vec<u8>, t: u16, v: &[u8]) {
    out.extend_from_slice(&t.to_le_bytes());
    out.extend_from_slice(&(v.len() as u16).to_le_bytes());
    out.extend_from_slice(v);
}

/// A stream header and SUBVOL command, then `body`.
fn crafted(body: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut s = b"btrfs-stream\0".to_vec();
    s.extend_from_slice(&StreamVersion::V1.as_u32().to_le_bytes());
    let mut p = Vec::new();
    tlv(&mut p, 15, b"snap");
    tlv(&mut p, 1, &[7; 16]);
    tlv(&mut p, 2, &5u64.to_le_bytes());
    command(&mut s, 1, &p);
    body(&mut s);
    s
}

#[test]
fn truncated_stream_is_refused_and_leaves_nothing() {
    let (_a, s) = valid_stream();
    let err = refused(
        &s[..s.len() * 2 / 3],
        &["command", "byte offset", "truncated"],
    );
    assert!(err.starts_with("tidefs: "), "{err}");
}

#[test]
fn flipped_byte_fails_its_crc() {
    let (_a, mut s) = valid_stream();
    let at = s.len() / 2;
    s[at] ^= 0x40;
    refused(&s, &["command", "byte offset", "crc32c mismatch"]);
}

#[test]
fn unknown_command_is_refused() {
    let s = crafted(|s| command(s, 99, &[]));
    refused(&s, &["command 2", "byte offset", "unknown command id 99"]);
}

#[test]
fn wrong_version_is_refused() {
    let (_a, mut s) = valid_stream();
    s[13] = 9;
    refused(
        &s,
        &[
            "command 0",
            "byte offset 13",
            "unsupported stream version 9",
        ],
    );
}

#[test]
fn attribute_running_past_its_command_is_refused() {
    let s = crafted(|s| {
        let mut p = Vec::new();
        p.extend_from_slice(&15u16.to_le_bytes());
        p.extend_from_slice(&500u16.to_le_bytes());
        p.extend_from_slice(b"short");
        command(s, 3, &p);
    });
    refused(&s, &["command 2", "byte offset", "truncated attribute"]);
}

#[test]
fn path_escaping_the_subvolume_is_refused() {
    let s = crafted(|s| {
        let mut p = Vec::new();
        tlv(&mut p, 15, b"../escape");
        tlv(&mut p, 3, &300u64.to_le_bytes());
        command(s, 3, &p);
        command(s, 21, &[]);
    });
    refused(&s, &["command 2", "byte offset", ".."]);
}

#[test]
fn missing_parent_is_refused_clearly() {
    let a = Pool::new();
    populate(&a);
    change(&a);
    let s2 = a.send("home@s2", Some("home@s1"), "s2.stream");
    let b = Pool::new();
    let err = b.fails(&["receive", "dst", "-f", s2.to_str().unwrap()]);
    assert!(err.contains("cannot find parent snapshot"), "{err}");
    // Parent present under another name's lineage does not count either.
    let s1 = a.send("home@s1", None, "s1.stream");
    b.ok(&["receive", "first", "-f", s1.to_str().unwrap()]);
    let err = b.fails(&["receive", "dst", "-f", s2.to_str().unwrap()]);
    assert!(err.contains("cannot find parent snapshot"), "{err}");
    b.fsck_clean();
}

#[test]
fn failure_after_applying_commands_leaves_the_pool_unchanged() {
    // Valid commands first, then an error: nothing of it may remain.
    let (_a, s) = valid_stream();
    let mut bad = s[..s.len() - 10].to_vec();
    command(&mut bad, 99, &[]);
    refused(&bad, &["unknown command id 99"]);
}

#[test]
fn interrupted_transfer_resumes_where_it_stopped() {
    let a = Pool::new();
    populate(&a);
    let s1 = a.send("home@s1", None, "s1.stream");
    let bytes = std::fs::read(&s1).unwrap();
    let b = Pool::new();
    let cut = b.file("cut.stream");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let err = b.fails(&["receive", "-s", "dst", "-f", cut.to_str().unwrap()]);
    assert!(
        err.contains("interrupted") && err.contains("--resume"),
        "{err}"
    );
    // The partial subvolume is marked and is not a snapshot.
    assert!(!b.ok(&["snapshot", "list", "dst"]).contains("dst@"));
    b.fsck_clean();
    let token = b
        .ok(&["receive", "--resume-token", "dst"])
        .trim()
        .to_string();
    assert!(err.contains(&token), "{err} vs {token}");
    // A fresh full stream is refused while the partial state is there.
    let refused = b.fails(&["receive", "dst", "-f", s1.to_str().unwrap()]);
    assert!(refused.contains("partial receive"), "{refused}");
    let rest = a.file("rest.stream");
    a.ok(&["send", "--resume", &token, "-f", rest.to_str().unwrap()]);
    assert!(std::fs::metadata(&rest).unwrap().len() < bytes.len() as u64);
    b.ok(&["receive", "dst", "-f", rest.to_str().unwrap()]);
    export_equal(&a, "home@s1", &b, "dst@s1");
    b.fsck_clean();
}

#[test]
fn partial_receive_can_be_aborted() {
    let a = Pool::new();
    populate(&a);
    let s1 = a.send("home@s1", None, "s1.stream");
    let bytes = std::fs::read(&s1).unwrap();
    let b = Pool::new();
    let cut = b.file("cut.stream");
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).unwrap();
    b.fails(&["receive", "-s", "dst", "-f", cut.to_str().unwrap()]);
    b.ok(&["receive", "--abort", "dst"]);
    assert!(!b.ok(&["subvol", "list"]).contains("dst"));
    b.ok(&["receive", "dst", "-f", s1.to_str().unwrap()]);
    b.fsck_clean();
}
