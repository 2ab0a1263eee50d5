//! FUSE over io_uring. Where the kernel offers it (Linux 6.14+ with the fuse module's
//! `enable_uring` parameter set), a mount's requests are served by one thread per CPU
//! (`fuser-ring-N`), and large reads and writes and fsyncs by workers (`fuser-worker-N`).
//! Checked from the server's threads in /proc, with data written through both paths read back
//! after a remount (so the reads reach the server).

mod mount_common;

use std::fs;
use std::io::Write;

use mount_common::{pattern, TestPool};

/// Why the kernel will not use io_uring queues here, if it will not.
fn uring_missing() -> Option<String> {
    match fs::read_to_string("/sys/module/fuse/parameters/enable_uring") {
        Ok(s) if s.trim() == "Y" => None,
        Ok(_) => Some(
            "the fuse module's enable_uring parameter is off \
             (echo Y > /sys/module/fuse/parameters/enable_uring)"
                .into(),
        ),
        Err(_) => Some("this kernel's fuse module has no io_uring support (Linux 6.14+)".into()),
    }
}

/// Returns from the test, saying why, when FUSE or its io_uring transport is unavailable.
macro_rules! require_uring {
    () => {
        require_fuse!();
        if let Some(why) = uring_missing() {
            eprintln!("skipped: {why}");
            return;
        }
    };
}

/// How many of the server's threads have a name starting with `prefix`, and the CPU time
/// they have used so far (nanoseconds, from schedstat).
fn threads(pid: u32, prefix: &str) -> (usize, u64) {
    let mut count = 0;
    let mut cpu_ns = 0;
    for task in fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap().path();
        let Ok(comm) = fs::read_to_string(task.join("comm")) else {
            continue;
        };
        if !comm.trim().starts_with(prefix) {
            continue;
        }
        count += 1;
        let schedstat = fs::read_to_string(task.join("schedstat")).unwrap_or_default();
        cpu_ns += schedstat
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
    }
    (count, cpu_ns)
}

#[test]
fn requests_go_through_per_cpu_queues() {
    require_uring!();
    let mut p = TestPool::new();
    let mnt = p.mount("home", "mnt", &[]);
    assert!(
        p.last_mount_message.contains(" over io_uring (pid "),
        "{}",
        p.last_mount_message
    );
    let pid = p.pid(&mnt);
    // The serving threads start just after the mount is reported ready.
    let mut waited = 0;
    while threads(pid, "fuser-ring-").0 == 0 && waited < 6000 {
        std::thread::sleep(std::time::Duration::from_millis(10));
        waited += 1;
    }
    let (rings, ring_cpu_before) = threads(pid, "fuser-ring-");
    assert!(rings >= 1, "a thread per CPU serves its queue");

    // Small requests, served by the queues' threads.
    fs::create_dir(mnt.join("small")).unwrap();
    for i in 0..200 {
        fs::write(mnt.join(format!("small/f{i}")), format!("file {i}")).unwrap();
    }
    let (_, ring_cpu_after) = threads(pid, "fuser-ring-");
    assert!(
        ring_cpu_after > ring_cpu_before,
        "the queues' threads served the small requests"
    );

    // Large writes and an fsync, handed to the workers.
    let (workers, worker_cpu_before) = threads(pid, "fuser-worker-");
    assert!(workers >= 1);
    let big = pattern(7, 8 << 20);
    let mut f = fs::File::create(mnt.join("big")).unwrap();
    for chunk in big.chunks(1 << 20) {
        f.write_all(chunk).unwrap();
    }
    f.sync_all().unwrap();
    drop(f);
    let (_, worker_cpu_after) = threads(pid, "fuser-worker-");
    assert!(
        worker_cpu_after > worker_cpu_before,
        "the workers served the large writes and the fsync"
    );

    // After a remount the kernel has nothing cached: every byte comes back through READs.
    p.unmount(&mnt);
    let mnt = p.mount("home", "mnt", &[]);
    let pid = p.pid(&mnt);
    let (_, worker_cpu_before) = threads(pid, "fuser-worker-");
    assert_eq!(fs::read(mnt.join("big")).unwrap(), big);
    let (_, worker_cpu_after) = threads(pid, "fuser-worker-");
    assert!(
        worker_cpu_after > worker_cpu_before,
        "the workers served the large reads"
    );
    for i in 0..200 {
        assert_eq!(
            fs::read_to_string(mnt.join(format!("small/f{i}"))).unwrap(),
            format!("file {i}")
        );
    }
    p.unmount(&mnt);
    p.fsck_clean();
}

#[test]
fn no_io_uring_keeps_to_dev_fuse() {
    require_fuse!();
    let mut p = TestPool::new();
    let mnt = p.mount("home", "mnt", &["--no-io-uring"]);
    assert!(
        p.last_mount_message.contains(" over /dev/fuse (pid "),
        "{}",
        p.last_mount_message
    );
    let pid = p.pid(&mnt);
    fs::write(mnt.join("f"), b"through /dev/fuse").unwrap();
    assert_eq!(threads(pid, "fuser-ring-").0, 0);
    assert_eq!(threads(pid, "fuser-worker-").0, 0);
    assert_eq!(fs::read(mnt.join("f")).unwrap(), b"through /dev/fuse");
    p.unmount(&mnt);
}

#[test]
fn a_queue_that_cannot_register_leaves_the_mount_on_dev_fuse() {
    require_uring!();
    // The kernel was told to use io_uring, but no queue registers: it must be made to fall
    // back, or every request would wait for ever. The I/O runs on a thread so that a hang
    // fails the test instead of stopping it.
    let mut p = TestPool::new();
    let mnt = p.mount_with_env(
        "home",
        "mnt",
        &[],
        &[("FUSER_IO_URING_FAILPOINT", "register")],
    );
    let dir = mnt.clone();
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for i in 0..20 {
            fs::write(dir.join(format!("f{i}")), format!("{i}")).unwrap();
        }
        let back: Vec<String> = (0..20)
            .map(|i| fs::read_to_string(dir.join(format!("f{i}"))).unwrap())
            .collect();
        let _ = done.send(back);
    });
    let back = finished
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("requests are served over /dev/fuse after io_uring could not start");
    assert_eq!(back, (0..20).map(|i| i.to_string()).collect::<Vec<_>>());
    p.unmount(&mnt);
    p.fsck_clean();
}
