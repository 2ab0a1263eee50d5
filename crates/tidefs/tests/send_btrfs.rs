//! Interop with real btrfs (loop-mounted image; skipped with a printed reason where that is
//! not possible): tidefs streams received by `btrfs receive` give the same tree as the
//! tidefs snapshot, and `btrfs send` streams received by `tidefs receive` give the same
//! tree as the btrfs snapshot (names, types, modes, owners, sizes, mtimes, contents).

mod send_common;

use std::path::{Path, PathBuf};
use std::process::Command;

use send_common::{change, populate, Pool};

fn sh(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .status()
        .is_ok_and(|s| s.success())
}

fn must(cmd: &str) {
    let out = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A mounted btrfs image, unmounted and detached on drop.
struct Btrfs {
    _dir: tempfile::TempDir,
    mnt: PathBuf,
}

impl Btrfs {
    fn mount() -> Option<Btrfs> {
        if !sh("command -v mkfs.btrfs >/dev/null && [ $(id -u) -eq 0 ]") {
            eprintln!("skipping: needs root and btrfs-progs for a loop-mounted btrfs");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("btrfs.img");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let ok = sh(&format!(
            "truncate -s 512M {0} && mkfs.btrfs -q -f {0} && mount -o loop {0} {1}",
            img.display(),
            mnt.display()
        ));
        if !ok {
            eprintln!("skipping: loop mount of a btrfs image is not possible here");
            return None;
        }
        Some(Btrfs { _dir: dir, mnt })
    }
}

impl Drop for Btrfs {
    fn drop(&mut self) {
        // umount -d also detaches the loop device.
        let _ = sh(&format!("umount -d {} 2>/dev/null", self.mnt.display()));
    }
}

/// One line per entry: path, type, mode, owner, group, mtime, and size and checksum of
/// files and symlink targets.
fn listing(root: &Path) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cd {} && find . -mindepth 1 -printf '%P %y %m %U %G %T@ %l\\n' | sort && find . -type f -printf '%P %s\\n' | sort && find . -type f -exec md5sum {{}} + | sort",
            root.display()
        ))
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn tidefs_streams_received_by_btrfs_give_the_same_tree() {
    let Some(b) = Btrfs::mount() else { return };
    let a = Pool::new();
    populate(&a);
    a.ok(&["mkdir", "home:/more"]);
    a.ok(&["snapshot", "create", "home@s1b"]);
    change(&a);
    let recv = b.mnt.join("recv");
    std::fs::create_dir(&recv).unwrap();
    for (snap, parent, name) in [("home@s1", None, "s1"), ("home@s2", Some("home@s1"), "s2")] {
        let stream = a.send(snap, parent, &format!("{name}.stream"));
        must(&format!(
            "btrfs receive -q -f {} {}",
            stream.display(),
            recv.display()
        ));
        let export = a.file(&format!("export-{name}"));
        a.ok(&["export", snap, export.to_str().unwrap()]);
        assert_eq!(listing(&export), listing(&recv.join(name)), "{snap}");
    }
}

/// Receives btrfs's full stream of s1 and incremental one of s2 into subvolume "dst",
/// checks fsck, and compares each received snapshot with btrfs's (`what` names the case).
fn receive_and_compare(p: &Pool, streams: [&Path; 2], btrfs_mnt: &Path, what: &str) {
    for stream in streams {
        p.ok(&["receive", "dst", "-f", stream.to_str().unwrap()]);
    }
    p.fsck_clean();
    for snap in ["s1", "s2"] {
        let export = p.file(&format!("export-{snap}"));
        p.ok(&["export", &format!("dst@{snap}"), export.to_str().unwrap()]);
        assert_eq!(
            listing(&btrfs_mnt.join(snap)),
            listing(&export),
            "{what} {snap}"
        );
    }
}

#[test]
fn btrfs_streams_received_by_tidefs_give_the_same_tree() {
    let Some(b) = Btrfs::mount() else { return };
    let m = b.mnt.display();
    must(&format!(
        "btrfs -q subvolume create {m}/src && cd {m}/src && mkdir -p a/b c && echo hello > a/f && \
         head -c 300000 /dev/urandom > a/b/big && ln a/f c/hard && ln -s ../a/f c/sym && mkfifo fifo && \
         truncate -s 1M sparse && echo end >> sparse && chmod 640 a/f && chown 12:34 c && \
         setfattr -n user.k -v v a/b 2>/dev/null; btrfs -q subvolume snapshot -r {m}/src {m}/s1"
    ));
    must(&format!(
        "cd {m}/src && mv a/b b && mv a b/a && rm c/hard && echo changed > b/a/f && mkdir a && \
         dd if=/dev/urandom of=b/big bs=4096 seek=10 count=2 conv=notrunc 2>/dev/null && \
         btrfs -q subvolume snapshot -r {m}/src {m}/s2"
    ));
    let p = Pool::new();
    let s1 = p.file("s1.stream");
    let s2 = p.file("s2.stream");
    must(&format!("btrfs -q send -f {} {m}/s1", s1.display()));
    must(&format!(
        "btrfs -q send -f {} -p {m}/s1 {m}/s2",
        s2.display()
    ));
    receive_and_compare(&p, [&s1, &s2], &b.mnt, "");
}

/// `btrfs send --compressed-data` streams carry compressed extents as ENCODED_WRITE;
/// `tidefs receive` decodes zlib, zstd and lzo ones to the same tree: whole extents,
/// inline ones, a file tail shorter than its extent, and extents split by a later
/// overwrite (so they land from an offset inside the decoded data).
#[test]
fn compressed_btrfs_streams_received_by_tidefs_give_the_same_tree() {
    for (algorithm, compression) in [("zlib", 1), ("zstd", 2), ("lzo", 3)] {
        let Some(b) = Btrfs::mount() else { return };
        let m = b.mnt.display();
        must(&format!("mount -o remount,compress-force={algorithm} {m}"));
        must(&format!(
            "btrfs -q subvolume create {m}/src && cd {m}/src && mkdir d && \
             seq 1 60000 > seq.txt && yes 'tidefs compressed interop' | head -c 3000 > small && \
             head -c 200000 /dev/zero | tr '\\0' x > d/tail && seq 1 30000 > patched && sync && \
             dd if=/dev/urandom of=patched bs=4096 seek=5 count=1 conv=notrunc 2>/dev/null && \
             truncate -s 2M sparse && seq 1 20000 | dd of=sparse bs=4096 seek=256 conv=notrunc 2>/dev/null && \
             sync && btrfs -q subvolume snapshot -r {m}/src {m}/s1"
        ));
        must(&format!(
            "cd {m}/src && seq 60001 70000 >> seq.txt && seq 1 999 | dd of=d/tail bs=1 seek=70000 conv=notrunc 2>/dev/null && \
             yes 'a new compressible file' | head -c 150000 > d/new && sync && \
             btrfs -q subvolume snapshot -r {m}/src {m}/s2"
        ));
        let p = Pool::new();
        let s1 = p.file("s1.stream");
        let s2 = p.file("s2.stream");
        must(&format!(
            "btrfs -q send --proto 2 --compressed-data -f {} {m}/s1",
            s1.display()
        ));
        must(&format!(
            "btrfs -q send --proto 2 --compressed-data -f {} -p {m}/s1 {m}/s2",
            s2.display()
        ));
        for stream in [&s1, &s2] {
            let dump = p.ok(&["receive", "--dump", "-f", stream.to_str().unwrap()]);
            assert!(
                dump.contains(&format!("compression={compression}")),
                "{algorithm}: the stream has no encoded write of compression {compression}:\n{dump}"
            );
        }
        receive_and_compare(&p, [&s1, &s2], &b.mnt, algorithm);
    }
}
