//! While a mount holds the pool, `tidefs snapshot` and `tidefs subvol list` work through its
//! control socket as on an idle pool (same output, `.snap` current at once), and commands it
//! cannot serve fail in one line naming the holder.

mod mount_common;

use std::fs;
use std::path::Path;
use std::process::Output;

use mount_common::{pattern, TestPool};

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn snapshot_commands_reach_a_mounted_pool() {
    require_fuse!();
    let mut p = TestPool::new();
    let mnt = p.mount("home", "mnt", &[]);
    let snap = mnt.join(".snap");
    let big = pattern(7, 200_000);
    fs::write(mnt.join("file"), b"before").unwrap();
    fs::create_dir(mnt.join("dir")).unwrap();
    fs::write(mnt.join("dir/big"), &big).unwrap();
    // Cache `.snap` in the kernel (its listing, and a failed lookup of the new name), so a
    // stale view would show below.
    assert!(names(&snap).is_empty());
    assert!(fs::metadata(snap.join("x")).is_err());

    let out = ok(p.tidefs(&["snapshot", "create", "home@x"]));
    assert_eq!(out, "created snapshot home@x\n");
    assert!(
        p.pool.join("control.sock").exists(),
        "the mount serves no control socket"
    );
    // The live tree moves on; the snapshot keeps what was written before it.
    fs::write(mnt.join("file"), b"after").unwrap();
    assert_eq!(names(&snap), ["x"]);
    assert_eq!(fs::read(snap.join("x/file")).unwrap(), b"before");
    assert_eq!(fs::read(snap.join("x/dir/big")).unwrap(), big);

    let listed = ok(p.tidefs(&["snapshot", "list", "--json"]));
    let text_listed = ok(p.tidefs(&["snapshot", "list", "home"]));
    let subvols = ok(p.tidefs(&["subvol", "list", "--json"]));
    assert!(text_listed.starts_with("home@x\t"), "{text_listed}");

    // Rename and delete, each visible in `.snap` at once (the kernel's entries invalidated).
    ok(p.tidefs(&["snapshot", "create", "home@y"]));
    ok(p.tidefs(&["snapshot", "rename", "home@y", "home@z"]));
    assert_eq!(names(&snap), ["x", "z"]);
    assert!(fs::metadata(snap.join("y")).is_err());
    assert!(fs::metadata(snap.join("z")).unwrap().is_dir());
    let out = ok(p.tidefs(&["snapshot", "delete", "home@z"]));
    assert_eq!(out, "deleted snapshot home@z\n");
    assert!(fs::metadata(snap.join("z")).is_err());
    assert_eq!(names(&snap), ["x"]);

    // Errors from the mount come back as ours.
    let out = p.tidefs(&["snapshot", "create", "home@x"]);
    assert!(!out.status.success());

    // What it cannot serve fails in one line naming the holder.
    let out = p.tidefs(&["subvol", "create", "other"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&format!("pid {}", p.pid(&mnt))), "{err}");

    p.unmount(&mnt);
    assert!(!p.pool.join("control.sock").exists());
    // The same listings from the idle pool are byte for byte what the mount answered.
    assert_eq!(ok(p.tidefs(&["snapshot", "list", "--json"])), listed);
    assert_eq!(ok(p.tidefs(&["snapshot", "list", "home"])), text_listed);
    assert_eq!(ok(p.tidefs(&["subvol", "list", "--json"])), subvols);
    assert_eq!(ok(p.tidefs(&["cat", "home@x:/file"])), "before");
    p.fsck_clean();
}
