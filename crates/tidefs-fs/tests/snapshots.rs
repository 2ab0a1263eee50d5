//! Proves snapshots and clones: a snapshot keeps the state it was taken at while the head
//! changes, clones are independent of their source and of the snapshot, snapshots refuse
//! writes with EROFS, deletion works in every order, fsck stays clean after every step and
//! the space comes back once everything sharing it is gone.

mod common;

use common::{assert_clean, mem_fs, ROOT};
use tidefs_fs::{errno, Fs, SnapshotOptions, Subvol, ROOT_INO};

fn read_path(sub: &Subvol, path: &[u8]) -> Vec<u8> {
    let ino = sub.resolve(path).unwrap();
    sub.read(ino, 0, u64::MAX / 2).unwrap()
}

fn populate(sub: &Subvol) {
    let d = sub.mkdir(ROOT_INO, b"d", 0o755, &ROOT).unwrap();
    let f = sub.create(d.ino, b"f", 0o644, &ROOT).unwrap();
    sub.write(f.ino, 0, &vec![1u8; 300_000], &ROOT).unwrap();
    let s = sub.create(ROOT_INO, b"small", 0o644, &ROOT).unwrap();
    sub.write(s.ino, 0, b"v1", &ROOT).unwrap();
}

fn used(fs: &Fs) -> u64 {
    fs.fsync().unwrap();
    fs.pool().usage().used_blocks
}

#[test]
fn snapshot_keeps_old_state_while_head_changes() {
    let (fs, sub, _) = mem_fs();
    populate(&sub);
    let info = fs.create_snapshot("main", "s1").unwrap();
    assert!(info.is_snapshot());
    assert_eq!(info.parent_uuid, Some(sub.info().uuid));
    let snap = fs.snapshot("main", "s1").unwrap();
    // Change the head in every way.
    let f = sub.resolve(b"/d/f").unwrap();
    sub.write(f, 1000, b"changed", &ROOT).unwrap();
    sub.unlink(ROOT_INO, b"small", &ROOT).unwrap();
    sub.rename(ROOT_INO, b"d", ROOT_INO, b"e", 0, &ROOT)
        .unwrap();
    sub.setxattr(f, b"user.x", b"1", 0).unwrap();
    assert_clean(&fs);
    assert_eq!(read_path(&snap, b"/d/f"), vec![1u8; 300_000]);
    assert_eq!(read_path(&snap, b"/small"), b"v1");
    assert_eq!(
        snap.getxattr(f, b"user.x").unwrap_err().errno(),
        errno::ENODATA
    );
    // Snapshots refuse every change.
    assert_eq!(
        snap.create(ROOT_INO, b"n", 0o644, &ROOT)
            .unwrap_err()
            .errno(),
        errno::EROFS
    );
    assert_eq!(
        snap.write(f, 0, b"x", &ROOT).unwrap_err().errno(),
        errno::EROFS
    );
    assert_eq!(
        snap.unlink(ROOT_INO, b"small", &ROOT).unwrap_err().errno(),
        errno::EROFS
    );
    assert_eq!(
        snap.setxattr(f, b"user.y", b"", 0).unwrap_err().errno(),
        errno::EROFS
    );
    // Across subvolumes: EXDEV.
    let err = fs
        .rename_between(&sub, ROOT_INO, b"e", &snap, ROOT_INO, b"z", 0, &ROOT)
        .unwrap_err();
    assert_eq!(err.errno(), errno::EXDEV);
    assert_clean(&fs);
}

#[test]
fn clones_are_independent() {
    let (fs, sub, _) = mem_fs();
    populate(&sub);
    fs.create_snapshot("main", "s1").unwrap();
    let c = fs.clone_snapshot("main", "s1", "work").unwrap();
    assert!(!c.is_snapshot());
    let clone = fs.subvolume("work").unwrap();
    let snap = fs.snapshot("main", "s1").unwrap();
    let f = clone.resolve(b"/d/f").unwrap();
    clone.write(f, 0, b"clone", &ROOT).unwrap();
    clone
        .create(ROOT_INO, b"only-in-clone", 0o644, &ROOT)
        .unwrap();
    sub.write(sub.resolve(b"/small").unwrap(), 0, b"v2", &ROOT)
        .unwrap();
    assert_eq!(&read_path(&clone, b"/d/f")[..6], b"clone\x01");
    assert_eq!(read_path(&sub, b"/d/f"), vec![1u8; 300_000]);
    assert_eq!(read_path(&snap, b"/d/f"), vec![1u8; 300_000]);
    assert_eq!(read_path(&clone, b"/small"), b"v1");
    assert_eq!(read_path(&snap, b"/small"), b"v1");
    assert_eq!(
        sub.resolve(b"/only-in-clone").unwrap_err().errno(),
        errno::ENOENT
    );
    assert_clean(&fs);
}

#[test]
fn catalog_records_names_uuids_tids_and_metadata() {
    let (fs, sub, clock) = mem_fs();
    populate(&sub);
    clock.advance_nanos(5_000_000_000);
    let mut metadata = std::collections::BTreeMap::new();
    metadata.insert(b"primary-snapshot-id".to_vec(), b"42".to_vec());
    let received = tidefs_fs::Uuid::from_u128(7);
    let info = fs
        .create_snapshot_with(
            "main",
            "r",
            SnapshotOptions {
                received_uuid: Some(received),
                metadata,
            },
        )
        .unwrap();
    assert_eq!(info.created.sec, 1_700_000_005);
    assert!(info.tid.0 > 0);
    let listed = fs.list_snapshots("main").unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0]
            .metadata
            .get(b"primary-snapshot-id".as_slice())
            .unwrap(),
        b"42"
    );
    assert_eq!(fs.find_by_uuid(&info.uuid).unwrap().unwrap().name, "r");
    assert_eq!(fs.find_by_received_uuid(&received).unwrap()[0].id, info.id);
    fs.set_metadata(info.id, b"k", Some(b"v")).unwrap();
    fs.set_metadata(info.id, b"primary-snapshot-id", None)
        .unwrap();
    let again = fs.info(info.id).unwrap();
    assert_eq!(again.metadata.len(), 1);
    fs.rename_snapshot("main", "r", "r2").unwrap();
    assert_eq!(fs.snapshot("main", "r").unwrap_err().errno(), errno::ENOENT);
    assert_eq!(fs.snapshot("main", "r2").unwrap().info().uuid, info.uuid);
    assert_eq!(
        fs.create_snapshot("main", "r2").unwrap_err().errno(),
        errno::EEXIST
    );
    assert_eq!(
        fs.create_snapshot("nope", "x").unwrap_err().errno(),
        errno::ENOENT
    );
    // The catalog survives a commit and reopen.
    fs.fsync().unwrap();
    let reopened = Fs::open(
        fs.pool().clone(),
        std::sync::Arc::new(tidefs_fs::SystemClock),
    )
    .unwrap();
    assert_eq!(reopened.list_snapshots("main").unwrap()[0].name, "r2");
    assert_clean(&reopened);
}

/// Creates main with data, a snapshot and a clone that diverges; returns the baseline
/// usage of the empty file system.
fn setup_three(fs: &Fs, sub: &Subvol) {
    populate(sub);
    fs.create_snapshot("main", "s").unwrap();
    fs.clone_snapshot("main", "s", "c").unwrap();
    let c = fs.subvolume("c").unwrap();
    let f = c.resolve(b"/d/f").unwrap();
    c.write(f, 0, &vec![2u8; 200_000], &ROOT).unwrap();
    sub.write(
        sub.resolve(b"/d/f").unwrap(),
        100_000,
        &vec![3u8; 100_000],
        &ROOT,
    )
    .unwrap();
}

#[test]
fn delete_in_every_order_returns_the_space() {
    type Step = fn(&Fs) -> tidefs_fs::Result<()>;
    let del_main: Step = |fs| fs.delete_subvolume("main");
    let del_snap: Step = |fs| fs.delete_snapshot("main", "s");
    let del_clone: Step = |fs| fs.delete_subvolume("c");
    let orders: [[Step; 3]; 6] = [
        [del_main, del_snap, del_clone],
        [del_main, del_clone, del_snap],
        [del_snap, del_main, del_clone],
        [del_snap, del_clone, del_main],
        [del_clone, del_main, del_snap],
        [del_clone, del_snap, del_main],
    ];
    for order in orders {
        let (fs, sub, _) = mem_fs();
        fs.delete_subvolume("main").unwrap();
        let empty = used(&fs);
        fs.create_subvolume("main", &ROOT).unwrap();
        let sub2 = fs.subvolume("main").unwrap();
        drop(sub);
        setup_three(&fs, &sub2);
        assert_clean(&fs);
        let mut remaining: Vec<Step> = order.to_vec();
        while !remaining.is_empty() {
            let step = remaining.remove(0);
            match step(&fs) {
                Ok(()) => {}
                Err(e) => {
                    // A subvolume with snapshots cannot go: try again after the others.
                    assert_eq!(e.errno(), errno::ENOTEMPTY, "{e}");
                    assert!(matches!(e, tidefs_fs::FsError::HasSnapshots { .. }));
                    remaining.push(step);
                }
            }
            assert_clean(&fs);
        }
        assert!(fs.list_subvolumes().unwrap().is_empty());
        assert_eq!(
            used(&fs),
            empty,
            "all space shared by the three trees came back"
        );
    }
}

#[test]
fn handles_on_deleted_subvolumes_say_enoent() {
    let (fs, sub, _) = mem_fs();
    populate(&sub);
    fs.create_snapshot("main", "s").unwrap();
    let snap = fs.snapshot("main", "s").unwrap();
    fs.delete_snapshot("main", "s").unwrap();
    assert_eq!(snap.getattr(ROOT_INO).unwrap_err().errno(), errno::ENOENT);
    assert_eq!(fs.snapshot("main", "s").unwrap_err().errno(), errno::ENOENT);
    assert_clean(&fs);
}
