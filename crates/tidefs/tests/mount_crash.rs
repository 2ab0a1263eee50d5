//! Durability through the mount: what was fsynced survives `kill -9` of the server, the
//! pool is consistent afterwards, and Ctrl-C/SIGTERM unmount cleanly and commit.

mod mount_common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::process::Command;

use mount_common::{pattern, run, wait_gone, TestPool};

#[test]
fn fsynced_data_survives_kill_9() {
    require_fuse!();
    let mut p = TestPool::new();
    // A long commit interval: only fsync can have made the data durable.
    let mnt = p.mount("home", "mnt", &["--commit-interval", "3600"]);
    fs::create_dir(mnt.join("dir")).unwrap();
    let mut synced = Vec::new();
    for i in 0..20u64 {
        let path = mnt.join(format!("dir/f{i}"));
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        let data = pattern(i, 1000 + i as usize * 37_000);
        f.write_all(&data).unwrap();
        f.sync_all().unwrap();
        synced.push((path.file_name().unwrap().to_owned(), data));
    }
    // Unsynced work after the last fsync: may or may not survive, but must not damage.
    fs::write(mnt.join("dir/late"), pattern(99, 50_000)).unwrap();
    fs::remove_file(mnt.join("dir/f0")).unwrap();
    p.kill9(&mnt);
    p.fsck_clean();
    let mnt = p.mount("home", "mnt", &[]);
    for (name, data) in &synced[1..] {
        assert_eq!(
            &fs::read(mnt.join("dir").join(name)).unwrap(),
            data,
            "{name:?}"
        );
    }
    // f0 was unlinked after the last fsync: either outcome is consistent, never half.
    if let Ok(d) = fs::read(mnt.join("dir/f0")) {
        assert_eq!(d, synced[0].1);
    }
    if let Ok(d) = fs::read(mnt.join("dir/late")) {
        assert_eq!(d, pattern(99, 50_000));
    }
    p.unmount(&mnt);
    p.fsck_clean();
}

#[test]
fn sigterm_and_sigint_unmount_and_commit() {
    require_fuse!();
    for signal in ["-TERM", "-INT"] {
        let mut p = TestPool::new();
        let mnt = p.mount("home", "mnt", &["--commit-interval", "3600"]);
        fs::write(mnt.join("f"), b"kept").unwrap();
        let pid = p.pid(&mnt);
        run(Command::new("kill").arg(signal).arg(pid.to_string()));
        wait_gone(pid);
        let mounted = fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            !mounted.contains(mnt.to_str().unwrap()),
            "{signal}: still mounted"
        );
        p.forget_mount(&mnt);
        p.fsck_clean();
        let mnt = p.mount("home", "mnt", &[]);
        assert_eq!(fs::read(mnt.join("f")).unwrap(), b"kept", "{signal}");
    }
}
