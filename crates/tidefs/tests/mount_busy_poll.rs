//! The mount busy-polls its FUSE channel only while requests keep coming: during a burst the
//! main channel is non-blocking, and once the mount is idle every channel is blocking again,
//! so an idle mount spends no CPU. Read from the server's `/proc/PID/fdinfo`. Polling applies
//! to requests read from /dev/fuse, so these mounts do not ask for io_uring queues.

mod mount_common;

use std::fs;
use std::path::Path;

use mount_common::TestPool;

/// The O_NONBLOCK flag of each of the server's /dev/fuse descriptors.
fn channel_nonblocking(pid: u32) -> Vec<bool> {
    let mut flags = Vec::new();
    for fd in fs::read_dir(format!("/proc/{pid}/fd")).unwrap() {
        let fd = fd.unwrap();
        if fs::read_link(fd.path()).ok().as_deref() != Some(Path::new("/dev/fuse")) {
            continue;
        }
        let name = fd.file_name();
        let Ok(info) = fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", name.to_string_lossy()))
        else {
            continue;
        };
        let octal = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .expect("fdinfo has flags")
            .trim();
        let bits = u32::from_str_radix(octal, 8).unwrap();
        flags.push(bits & rustix::fs::OFlags::NONBLOCK.bits() != 0);
    }
    flags
}

/// Waits until `cond` holds, giving up after a minute so a broken switch fails.
fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..6000 {
        if cond() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    false
}

#[test]
fn polling_follows_requests_and_stops_when_idle() {
    require_fuse!();
    let mut p = TestPool::new();
    // A long window (10 s), so the burst below is sure to be seen polling.
    let mnt = p.mount(
        "home",
        "mnt",
        &["--busy-poll-us", "10000000", "--no-io-uring"],
    );
    let pid = p.pid(&mnt);
    assert!(
        !channel_nonblocking(pid).is_empty(),
        "the server holds /dev/fuse"
    );
    for i in 0..50 {
        fs::write(mnt.join(format!("f{i}")), b"x").unwrap();
    }
    assert!(
        channel_nonblocking(pid).iter().any(|&nb| nb),
        "a burst of requests turns polling on"
    );
    assert!(
        eventually(|| channel_nonblocking(pid).iter().all(|&nb| !nb)),
        "an idle mount stops polling"
    );
    // Everything written while polling is there.
    for i in 0..50 {
        assert_eq!(fs::read(mnt.join(format!("f{i}"))).unwrap(), b"x");
    }
    p.unmount(&mnt);
}

#[test]
fn polling_can_be_turned_off() {
    require_fuse!();
    let mut p = TestPool::new();
    let mnt = p.mount("home", "mnt", &["--busy-poll-us", "0", "--no-io-uring"]);
    let pid = p.pid(&mnt);
    for i in 0..50 {
        fs::write(mnt.join(format!("f{i}")), b"y").unwrap();
    }
    assert!(channel_nonblocking(pid).iter().all(|&nb| !nb));
    assert_eq!(fs::read(mnt.join("f49")).unwrap(), b"y");
    p.unmount(&mnt);
}
