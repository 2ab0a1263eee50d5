//! The mount sets the kernel's readahead window for itself (FUSE mounts start at 128 KiB,
//! which cuts sequential reads into small requests): 4 MiB by default, `--read-ahead-kib`
//! otherwise, 0 to leave the kernel's. With the writeback cache it also lets the kernel hold
//! 256 MiB of written data (FUSE mounts start at 1% of the dirty allowance). Read back from
//! sysfs; setting them needs root.

mod mount_common;

use std::path::Path;
use std::process::Command;

use mount_common::{pattern, run, TestPool};

/// Setting `name` of the mount's backing device, from sysfs.
fn bdi_knob(mnt: &Path, name: &str) -> u64 {
    let out = run(Command::new("mountpoint").arg("-d").arg(mnt));
    let device = String::from_utf8(out.stdout).unwrap();
    let knob = format!("/sys/class/bdi/{}/{name}", device.trim());
    std::fs::read_to_string(&knob)
        .unwrap_or_else(|e| panic!("reading {knob}: {e}"))
        .trim()
        .parse()
        .unwrap()
}

/// The mount's readahead window in KiB.
fn read_ahead_kib(mnt: &Path) -> u64 {
    bdi_knob(mnt, "read_ahead_kb")
}

/// How much written data the kernel may hold for the mount, in MiB. The kernel keeps it as a
/// fraction of its allowance, so it reads back a little off what was written.
fn dirty_max_mib(mnt: &Path) -> u64 {
    (bdi_knob(mnt, "max_bytes") + (1 << 19)) >> 20
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
    assert_eq!(dirty_max_mib(&mnt), 256);
    // Sequential reads through the wide window return what was written.
    let data = pattern(7, 9 << 20);
    std::fs::write(mnt.join("big"), &data).unwrap();
    p.unmount(&mnt);
    let mnt = p.mount("home", "default", &["--read-ahead-kib", "512"]);
    assert_eq!(read_ahead_kib(&mnt), 512);
    assert!(std::fs::read(mnt.join("big")).unwrap() == data);
    p.unmount(&mnt);
    let mnt = p.mount(
        "home",
        "default",
        &["--read-ahead-kib", "0", "--write-through"],
    );
    let kernel_default = read_ahead_kib(&mnt);
    // Without the writeback cache only shared mappings leave data with the kernel.
    assert!(dirty_max_mib(&mnt) < 256);
    assert!(
        kernel_default != 512 && kernel_default != 4096,
        "--read-ahead-kib 0 should leave the kernel's window, found {kernel_default} KiB"
    );
    p.unmount(&mnt);
    p.fsck_clean();
}
