//! Regressions found by the receive fuzz target (crates/tidefs-send/fuzz): each stream
//! once broke an invariant of receive. A failed receive must leave the pool reading as
//! before, and fsck must stay clean.

mod support;

use support::{assert_clean, mem_fs};
use tidefs_fs::Fs;
use tidefs_send::receive::{receive, ReceiveOptions};
use tidefs_stream::{Command, SendStreamWriter, StreamVersion};

fn stream(commands: &[Command]) -> Vec<u8> {
    let mut w = SendStreamWriter::new(Vec::new(), StreamVersion::V2).unwrap();
    for c in commands {
        w.write_command(c).unwrap();
    }
    w.end().unwrap();
    w.into_inner().unwrap()
}

fn subvol(name: &[u8]) -> Command {
    Command::Subvol {
        path: name.to_vec(),
        uuid: [1; 16],
        ctransid: 7,
    }
}

/// Fails, says `what`, and leaves no subvolume "dst" behind.
fn refused(fs: &Fs, s: &[u8], what: &str) {
    let e = receive(fs, "dst", s, &ReceiveOptions::default(), &mut |_| {})
        .expect_err("the receive must fail")
        .to_string();
    assert!(e.contains(what), "{e} does not say {what}");
    assert!(fs.subvolume("dst").is_err(), "a failed receive left dst");
    assert_clean(fs);
}

/// The stream's subvolume name became the snapshot name only after the whole body was
/// applied; a name no snapshot can take failed there and left the new subvolume behind.
#[test]
fn stream_name_no_snapshot_can_take_is_refused_up_front() {
    let (fs, _) = mem_fs();
    for name in [&b""[..], b"a/b", b"."] {
        let body = [
            subvol(name),
            Command::Mkfile {
                path: b"f".to_vec(),
                ino: 257,
            },
        ];
        refused(&fs, &stream(&body), "cannot name a snapshot");
    }
}

/// A resumable incremental receive commits checkpoints marked partial; when a later
/// command failed (not a cut-off stream), the receive was undone but the partial mark
/// stayed, so the subvolume claimed a receive to resume.
#[test]
fn failed_resumable_receive_leaves_no_partial_mark() {
    let (fs, _) = mem_fs();
    fs.create_subvolume("src", &tidefs_fs::Caller::ROOT)
        .unwrap();
    let base = fs.create_snapshot("src", "base").unwrap();
    let body = [
        Command::Snapshot {
            path: b"next".to_vec(),
            uuid: [1; 16],
            ctransid: 9,
            clone_uuid: *base.uuid.as_bytes(),
            clone_ctransid: base.tid.0,
        },
        Command::Mkfile {
            path: b"b".to_vec(),
            ino: 257,
        },
        Command::Mkdir {
            path: b"d".to_vec(),
            ino: 258,
        },
        Command::Rename {
            from: b"d".to_vec(),
            to: b"b/x".to_vec(),
        },
    ];
    let opts = ReceiveOptions {
        resumable: true,
        checkpoint_commands: 1,
        ..ReceiveOptions::default()
    };
    let e = receive(&fs, "src", &stream(&body)[..], &opts, &mut |_| {})
        .expect_err("renaming into a file fails")
        .to_string();
    assert!(e.contains("rename"), "{e}");
    let src = fs.subvolume("src").unwrap();
    assert!(src.info().metadata.is_empty(), "{:?}", src.info().metadata);
    assert_eq!(
        tidefs_send::receive::partial_token(&fs, "src").unwrap(),
        None
    );
    assert!(src.lookup(tidefs_fs::ROOT_INO, b"b").is_err());
    assert!(fs.snapshot("src", "next").is_err());
    assert_clean(&fs);
}

/// A CHMOD naming a symlink set the symlink's own mode bits (e.g. 0127777), which no
/// send can carry: undoing a failed incremental receive could not restore them, and a
/// received snapshot held a mode its sender never had. Now it changes nothing.
#[test]
fn chmod_of_a_symlink_changes_nothing() {
    let (fs, _) = mem_fs();
    let root = tidefs_fs::Caller::ROOT;
    fs.create_subvolume("src", &root).unwrap();
    let src = fs.subvolume("src").unwrap();
    src.symlink(tidefs_fs::ROOT_INO, b"sym", b"target", &root)
        .unwrap();
    let base = fs.create_snapshot("src", "base").unwrap();
    let head = |name: &[u8]| Command::Snapshot {
        path: name.to_vec(),
        uuid: [1; 16],
        ctransid: 9,
        clone_uuid: *base.uuid.as_bytes(),
        clone_ctransid: base.tid.0,
    };
    let chmod = |path: &[u8]| Command::Chmod {
        path: path.to_vec(),
        mode: 0o7777,
    };
    let sym_mode = |fs: &Fs| {
        let s = fs.subvolume("src").unwrap();
        let ino = s.resolve(b"/sym").unwrap();
        s.getattr(ino).unwrap().mode
    };

    // Failing after the CHMOD: the pool reads as before.
    let failing = [
        head(b"next"),
        chmod(b"sym"),
        Command::Unlink {
            path: b"missing".to_vec(),
        },
    ];
    receive(
        &fs,
        "src",
        &stream(&failing)[..],
        &ReceiveOptions::default(),
        &mut |_| {},
    )
    .expect_err("unlinking a missing name fails");
    assert_eq!(sym_mode(&fs), 0o120777);
    assert_clean(&fs);

    // Succeeding: the symlink keeps its mode, and other files still get theirs.
    let ok = [
        head(b"next"),
        chmod(b"sym"),
        Command::Mkfile {
            path: b"f".to_vec(),
            ino: 300,
        },
        chmod(b"f"),
    ];
    let s = receive(
        &fs,
        "src",
        &stream(&ok)[..],
        &ReceiveOptions::default(),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(sym_mode(&fs), 0o120777);
    let next = fs.open_id(s.snapshot.id).unwrap();
    let f = next.resolve(b"/f").unwrap();
    assert_eq!(next.getattr(f).unwrap().mode, 0o107777);
    assert_clean(&fs);
}
