//! Proves that bad input gets a clear typed error with the right errno and changes
//! nothing: bad and too-long names, existing snapshot names, deleting a subvolume that has
//! snapshots, and a full pool (the failed operation leaves no trace, fsck stays clean, and
//! deleting files gives the space back).

mod common;

use common::{assert_clean, mem_fs, mem_fs_with, ROOT};
use tidefs_fs::{errno, limits, FsError, ROOT_INO};
use tidefs_store::CreateOptions;

#[test]
fn bad_names_are_refused() {
    let (fs, sub, _) = mem_fs();
    let long = vec![b'x'; limits::NAME_BYTES_MAX + 1];
    assert_eq!(
        sub.mkdir(ROOT_INO, &long, 0o755, &ROOT)
            .unwrap_err()
            .errno(),
        errno::ENAMETOOLONG
    );
    assert_eq!(
        sub.mkdir(ROOT_INO, b"a/b", 0o755, &ROOT)
            .unwrap_err()
            .errno(),
        errno::EINVAL
    );
    assert_eq!(
        sub.mkdir(ROOT_INO, b"", 0o755, &ROOT).unwrap_err().errno(),
        errno::ENOENT
    );
    assert_eq!(
        sub.mkdir(ROOT_INO, b".", 0o755, &ROOT).unwrap_err().errno(),
        errno::EEXIST
    );
    let mut path = Vec::new();
    while path.len() < limits::PATH_BYTES_MAX {
        path.extend_from_slice(b"/aaaaaaa");
    }
    assert_eq!(sub.resolve(&path).unwrap_err().errno(), errno::ENAMETOOLONG);
    for bad in ["", ".", "..", "a/b", "x@y"] {
        let e = fs.create_subvolume(bad, &ROOT).unwrap_err();
        assert!(matches!(e, FsError::BadName { .. }), "{bad:?}: {e}");
        assert_eq!(e.errno(), errno::EINVAL);
    }
    let e = fs.create_subvolume(&"n".repeat(256), &ROOT).unwrap_err();
    assert_eq!(e.errno(), errno::ENAMETOOLONG);
    assert_eq!(
        fs.create_subvolume("main", &ROOT).unwrap_err().errno(),
        errno::EEXIST
    );
    fs.create_snapshot("main", "snap").unwrap();
    let e = fs.create_snapshot("main", "snap").unwrap_err();
    assert!(matches!(e, FsError::SnapshotExists(_)), "{e}");
    assert_eq!(
        fs.create_snapshot("main", "a/b").unwrap_err().errno(),
        errno::EINVAL
    );
    assert_eq!(
        fs.rename_snapshot("main", "snap", "..")
            .unwrap_err()
            .errno(),
        errno::EINVAL
    );
    let e = fs.delete_subvolume("main").unwrap_err();
    assert!(matches!(e, FsError::HasSnapshots { count: 1, .. }), "{e}");
    assert_eq!(
        fs.delete_snapshot("main", "nope").unwrap_err().errno(),
        errno::ENOENT
    );
    assert_eq!(fs.list_snapshots("main").unwrap().len(), 1);
    assert_eq!(fs.list_subvolumes().unwrap().len(), 1);
    assert_clean(&fs);
}

#[test]
fn full_pool_fails_cleanly_and_recovers() {
    let (fs, sub, _) = mem_fs_with(CreateOptions {
        initial_bytes: 16 << 20,
        max_bytes: Some(16 << 20),
    });
    let f = sub.create(ROOT_INO, b"big", 0o644, &ROOT).unwrap();
    fs.fsync().unwrap();
    let chunk = vec![0x5au8; 1 << 20];
    let mut written = 0u64;
    let err = loop {
        match sub.write(f.ino, written, &chunk, &ROOT) {
            Ok(n) => written += n as u64,
            Err(e) => break e,
        }
        assert!(written < 64 << 20, "a 16 MiB pool cannot take 64 MiB");
    };
    assert_eq!(err.errno(), errno::ENOSPC, "{err}");
    // The failed write left nothing behind: the size is what succeeded, data intact.
    let a = sub.getattr(f.ino).unwrap();
    assert_eq!(a.size, written);
    assert_eq!(
        sub.read(f.ino, written - 10, 100).unwrap(),
        vec![0x5au8; 10]
    );
    assert_clean(&fs);
    // Other allocations fail the same way, metadata edits still work.
    let e = sub.fallocate(f.ino, 0, written, 8 << 20).unwrap_err();
    assert_eq!(e.errno(), errno::ENOSPC);
    assert_eq!(sub.getattr(f.ino).unwrap().size, written);
    sub.setxattr(f.ino, b"user.still", b"works", 0).unwrap();
    // Deleting the file gives the space back.
    sub.unlink(ROOT_INO, b"big", &ROOT).unwrap();
    assert_clean(&fs);
    let g = sub.create(ROOT_INO, b"again", 0o644, &ROOT).unwrap();
    sub.write(g.ino, 0, &chunk, &ROOT).unwrap();
    assert_clean(&fs);
}

#[test]
fn limits_are_enforced() {
    let (fs, sub, _) = mem_fs();
    let f = sub.create(ROOT_INO, b"f", 0o644, &ROOT).unwrap();
    let e = sub
        .write(f.ino, limits::FILE_BYTES_MAX, b"x", &ROOT)
        .unwrap_err();
    assert_eq!(e.errno(), errno::EFBIG);
    let e = sub
        .truncate(f.ino, limits::FILE_BYTES_MAX + 1, &ROOT)
        .unwrap_err();
    assert_eq!(e.errno(), errno::EFBIG);
    let e = sub.setxattr(f.ino, &[b'u'; 256], b"", 0).unwrap_err();
    assert_eq!(e.errno(), errno::ERANGE);
    let e = sub.setxattr(f.ino, b"user.", b"", 0).unwrap_err();
    assert_eq!(e.errno(), errno::EINVAL);
    // A file can be truncated to the largest size and reads back zeros at the end.
    sub.truncate(f.ino, limits::FILE_BYTES_MAX, &ROOT).unwrap();
    assert_eq!(
        sub.read(f.ino, limits::FILE_BYTES_MAX - 3, 10).unwrap(),
        vec![0; 3]
    );
    assert_clean(&fs);
}
