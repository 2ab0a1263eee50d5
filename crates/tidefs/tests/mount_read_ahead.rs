//! The mount sets the kernel's readahead window for itself (FUSE mounts start at 128 KiB,
//! which cuts sequential reads into small requests): 4 MiB by default, `--read-ahead-kib`
//! otherwise, 0 to leave the kernel's. Read back from sysfs; setting it needs root.

mod mount_common;

use std::path::Path;
use std::process::Command;

use mount_common::{pattern, run, TestPool};

/// The mount's readahead window in KiB, from sysfs.
fn read_ahead_kib(mnt: &Path) -> u32 {
    let out = run(Command::new("mountpoint").arg("-d").arg(mnt));
    let device = String::from_utf8(out.stdout).unwrap();
    let knob = format!("/sys/class/bdi/{}/read_ahead_kb", device.trim());
    std::fs::read_to_string(&knob)
        .unwrap_or_else(|e| panic!("reading {knob}: {e}"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn the_mount_sets_its_read_ahead_window() {
    require_fuse!();
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: only root may set a mount's readahead window");
        return;
    }
    let mut p = TestPool::new();
    let mnt = p.mount("home", "default", &[]);
    assert_eq!(read_ahead_kib(&mnt), 4096);
    // Sequential reads through the wide window return what was written.
    let data = pattern(7, 9 << 20);
    std::fs::write(mnt.join("big"), &data).unwrap();
    p.unmount(&mnt);
    let mnt = p.mount("home", "default", &["--read-ahead-kib", "512"]);
    assert_eq!(read_ahead_kib(&mnt), 512);
    assert!(std::fs::read(mnt.join("big")).unwrap() == data);
    p.unmount(&mnt);
    let mnt = p.mount("home", "default", &["--read-ahead-kib", "0"]);
    let kernel_default = read_ahead_kib(&mnt);
    assert!(
        kernel_default != 512 && kernel_default != 4096,
        "--read-ahead-kib 0 should leave the kernel's window, found {kernel_default} KiB"
    );
    p.unmount(&mnt);
    p.fsck_clean();
}
