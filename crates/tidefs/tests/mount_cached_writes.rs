//! Writes the kernel still holds: with the writeback cache (the default) written data waits
//! in the kernel's page cache until it is sent in large batches, and writes through a shared
//! mmap wait there on every mount. Snapshots (`mkdir .snap/NAME` and `tidefs snapshot
//! create`) must hold them all the same, and the timed commit must bring them in so that a
//! killed server loses no more than one commit interval.
//!
//! Every write here stays in a file that is still open (or still mapped) and is never
//! fsynced: closing the file would send its pages anyway.

mod mount_common;

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use mount_common::{have, pattern, TestPool};

fn open_new(path: &std::path::Path) -> File {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .unwrap()
}

#[test]
fn snapshots_hold_writes_the_kernel_still_caches() {
    require_fuse!();
    let mut p = TestPool::new();
    let mnt = p.mount("home", "mnt", &[]);
    let mut f = open_new(&mnt.join("open"));
    f.write_all(&pattern(1, 3 << 20)).unwrap();
    fs::create_dir(mnt.join(".snap/one")).unwrap();
    // More, overwriting part of the first and growing the file; then a snapshot through
    // the control socket.
    f.write_all(&pattern(2, 100_000)).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b"overwritten", 4096).unwrap();
    let out = p.tidefs(&["snapshot", "create", "home@two"]);
    assert!(out.status.success(), "{out:?}");
    let one = pattern(1, 3 << 20);
    assert_eq!(fs::read(mnt.join(".snap/one/open")).unwrap(), one);
    let mut two = one;
    two.extend_from_slice(&pattern(2, 100_000));
    two[4096..4107].copy_from_slice(b"overwritten");
    assert_eq!(fs::read(mnt.join(".snap/two/open")).unwrap(), two);
    drop(f);
    p.unmount(&mnt);
    p.fsck_clean();
}

#[test]
fn snapshots_hold_writes_through_a_shared_mapping() {
    require_fuse!();
    if !have("python3") {
        eprintln!("skipped: python3 (used to write through mmap) is not installed");
        return;
    }
    let mut p = TestPool::new();
    // Write-through: without the writeback cache, only mapped writes wait in the kernel.
    let mnt = p.mount("home", "mnt", &["--write-through"]);
    const LEN: usize = 8 << 20;
    fs::write(mnt.join("mapped"), vec![0u8; LEN]).unwrap();
    // The file is closed before the mapping is written (a close would send the pages), and
    // the mapping stays until the snapshot is taken. Every page is written.
    let script = r#"
import mmap, sys
n = int(sys.argv[2])
f = open(sys.argv[1], "r+b")
m = mmap.mmap(f.fileno(), n)
f.close()
m[:] = b"through a map! " * (n // 15) + b"!" * (n % 15)
print("written", flush=True)
sys.stdin.read()
"#;
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(mnt.join("mapped"))
        .arg(LEN.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "written\n");
    fs::create_dir(mnt.join(".snap/mapped")).unwrap();
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    let snap = fs::read(mnt.join(".snap/mapped/mapped")).unwrap();
    let mut want = b"through a map! ".repeat(LEN / 15);
    want.resize(LEN, b'!');
    assert!(
        snap == want,
        "the snapshot misses writes through the mapping"
    );
    p.unmount(&mnt);
    p.fsck_clean();
}

#[test]
fn a_killed_server_loses_at_most_the_commit_interval_of_cached_writes() {
    require_fuse!();
    let mut p = TestPool::new();
    let mnt = p.mount("home", "mnt", &["--commit-interval", "1"]);
    let data = pattern(3, 2 << 20);
    let mut f = open_new(&mnt.join("open"));
    f.write_all(&data).unwrap();
    // The kernel alone would keep these pages for 30 s (dirty_expire_centisecs); the
    // commit thread brings them in within one interval and commits them. Five intervals
    // leave room for a slow machine.
    std::thread::sleep(Duration::from_secs(5));
    p.kill9(&mnt);
    drop(f);
    p.fsck_clean();
    let mnt = p.mount("home", "mnt", &[]);
    assert_eq!(fs::read(mnt.join("open")).unwrap(), data);
    p.unmount(&mnt);
}
