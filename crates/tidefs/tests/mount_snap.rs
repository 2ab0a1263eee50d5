//! `.snap` on a mounted subvolume: mkdir takes a snapshot, the snapshot keeps the old
//! content while the live tree changes, rename and rmdir manage snapshots, snapshots are
//! read-only (EROFS), and NAME@SNAP mounts a snapshot read-only. While mounted, other
//! commands that need the pool say which process holds it.

mod mount_common;

use std::fs::{self, OpenOptions};

use mount_common::{pattern, TestPool};
use rustix::io::Errno as E;

fn errno<T: std::fmt::Debug>(r: std::io::Result<T>) -> i32 {
    r.expect_err("expected an error").raw_os_error().unwrap()
}

fn names(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn snapshots_through_dot_snap() {
    require_fuse!();
    let mut p = TestPool::new();
    let mnt = p.mount("home", "mnt", &[]);
    let snap = mnt.join(".snap");
    // Hidden from the root's listing, but there.
    fs::write(mnt.join("file"), b"version 1").unwrap();
    fs::create_dir(mnt.join("dir")).unwrap();
    fs::write(mnt.join("dir/big"), pattern(1, 300_000)).unwrap();
    assert_eq!(names(&mnt), ["dir", "file"]);
    assert!(snap.is_dir());
    assert!(names(&snap).is_empty());
    fs::create_dir(snap.join("one")).unwrap();
    // Change everything in the live tree.
    fs::write(mnt.join("file"), b"version 2").unwrap();
    fs::write(mnt.join("dir/big"), pattern(2, 1000)).unwrap();
    fs::write(mnt.join("new"), b"n").unwrap();
    fs::create_dir(snap.join("two")).unwrap();
    fs::remove_dir_all(mnt.join("dir")).unwrap();
    assert_eq!(names(&snap), ["one", "two"]);
    assert_eq!(fs::read(snap.join("one/file")).unwrap(), b"version 1");
    assert_eq!(
        fs::read(snap.join("one/dir/big")).unwrap(),
        pattern(1, 300_000)
    );
    assert_eq!(names(&snap.join("one")), ["dir", "file"]);
    assert_eq!(fs::read(snap.join("two/file")).unwrap(), b"version 2");
    assert_eq!(
        fs::read(snap.join("two/dir/big")).unwrap(),
        pattern(2, 1000)
    );
    // Read-only: every kind of change fails with EROFS.
    let rofs = E::ROFS.raw_os_error();
    assert_eq!(errno(fs::write(snap.join("one/file"), b"x")), rofs);
    assert_eq!(errno(fs::write(snap.join("one/newfile"), b"x")), rofs);
    assert_eq!(errno(fs::remove_file(snap.join("one/file"))), rofs);
    assert_eq!(errno(fs::create_dir(snap.join("one/d"))), rofs);
    assert_eq!(
        errno(fs::rename(snap.join("one/file"), snap.join("one/f2"))),
        rofs
    );
    assert_eq!(
        errno(fs::set_permissions(
            snap.join("one/file"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600)
        )),
        rofs
    );
    assert_eq!(
        errno(OpenOptions::new().write(true).open(snap.join("one/file"))),
        rofs
    );
    assert_eq!(errno(fs::write(snap.join("plainfile"), b"x")), rofs);
    // Moving things between a snapshot and the live tree crosses trees.
    assert_eq!(
        errno(fs::rename(snap.join("one/file"), mnt.join("moved"))),
        E::XDEV.raw_os_error()
    );
    assert_eq!(
        errno(fs::hard_link(snap.join("one/file"), mnt.join("linked"))),
        E::XDEV.raw_os_error()
    );
    // Rename and delete snapshots.
    fs::rename(snap.join("one"), snap.join("first")).unwrap();
    assert_eq!(names(&snap), ["first", "two"]);
    assert_eq!(fs::read(snap.join("first/file")).unwrap(), b"version 1");
    assert_eq!(
        errno(fs::rename(snap.join("first"), snap.join("two"))),
        E::EXIST.raw_os_error()
    );
    assert_eq!(
        errno(fs::create_dir(snap.join("two"))),
        E::EXIST.raw_os_error()
    );
    fs::remove_dir(snap.join("two")).unwrap();
    assert_eq!(names(&snap), ["first"]);
    assert_eq!(
        errno(fs::metadata(snap.join("two"))),
        E::NOENT.raw_os_error()
    );
    // The name .snap is taken at the root.
    assert_eq!(
        errno(fs::write(mnt.join(".snap"), b"x")),
        E::ISDIR.raw_os_error()
    );
    assert_eq!(
        errno(fs::create_dir(mnt.join(".snap"))),
        E::EXIST.raw_os_error()
    );
    assert_eq!(
        errno(fs::rename(mnt.join("file"), mnt.join(".snap"))),
        E::ISDIR.raw_os_error()
    );
    assert_eq!(
        errno(fs::remove_dir(mnt.join(".snap"))),
        E::BUSY.raw_os_error()
    );
    // Snapshots outlive the mount; the pool stays consistent.
    p.unmount(&mnt);
    p.fsck_clean();
    let list = p.tidefs(&["snapshot", "list", "home"]);
    assert!(
        String::from_utf8_lossy(&list.stdout).contains("first"),
        "{list:?}"
    );
    let mnt = p.mount("home", "mnt", &[]);
    assert_eq!(
        fs::read(mnt.join(".snap/first/file")).unwrap(),
        b"version 1"
    );
    assert_eq!(fs::read(mnt.join("file")).unwrap(), b"version 2");
}

#[test]
fn a_snapshot_mounts_read_only_and_the_pool_names_its_holder() {
    require_fuse!();
    let mut p = TestPool::new();
    let mnt = p.mount("home", "mnt", &[]);
    fs::write(mnt.join("f"), b"old").unwrap();
    fs::create_dir(mnt.join(".snap/mon")).unwrap();
    fs::write(mnt.join("f"), b"new").unwrap();
    // While mounted, a command that opens the pool says who holds it, in one line.
    let out = p.tidefs(&["fsck"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains(&format!("pid {}", p.pid(&mnt))), "{err}");
    p.unmount(&mnt);
    let ro = p.mount("home@mon", "ro", &[]);
    assert_eq!(fs::read(ro.join("f")).unwrap(), b"old");
    assert_eq!(errno(fs::write(ro.join("f"), b"x")), E::ROFS.raw_os_error());
    assert_eq!(errno(fs::create_dir(ro.join("d"))), E::ROFS.raw_os_error());
    // A snapshot mount has no .snap of its own.
    assert_eq!(
        errno(fs::metadata(ro.join(".snap"))),
        E::NOENT.raw_os_error()
    );
    p.unmount(&ro);
    // Mounting creates the subvolume only when asked (the pool has one now).
    let other = p.mkdir("other");
    let out = p.tidefs(&["mount", "--background", "typo", other.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--create"),
        "{out:?}"
    );
    let mnt = p.mount("second", "other", &["--create"]);
    assert!(fs::read_dir(&mnt).unwrap().next().is_none());
}
