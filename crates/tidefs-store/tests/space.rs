//! Exact space accounting: shared blocks are freed exactly when the last tree reaching them
//! goes, and a pool returns to its empty size.

mod common;

use std::sync::Arc;

use common::*;
use tidefs_store::{CreateOptions, MemDevice, OpenOptions, Pool, StoreError};

#[test]
fn snapshots_with_changes_between_then_delete_everything_returns_all_space() {
    let (_, pool) = mem_pool();
    pool.commit().unwrap();
    let empty_used = pool.usage().used_blocks;
    let tree = pool.write(|t| t.create_tree()).unwrap();
    pool.write(|t| -> Result<(), StoreError> {
        for i in 0..100_000u64 {
            t.insert(tree, &i.to_be_bytes(), &[1u8; 100])?;
        }
        Ok(())
    })
    .unwrap();
    pool.commit().unwrap();
    let mut snaps = Vec::new();
    for round in 0..10u64 {
        snaps.push(pool.write(|t| t.snapshot_tree(tree, true)).unwrap());
        pool.write(|t| -> Result<(), StoreError> {
            for i in (round..100_000).step_by(97) {
                t.insert(tree, &i.to_be_bytes(), &[round as u8 + 2; 100])?;
            }
            for i in (round * 1000..round * 1000 + 500).step_by(3) {
                t.remove(tree, &i.to_be_bytes())?;
            }
            Ok(())
        })
        .unwrap();
        pool.commit().unwrap();
        assert_fsck_clean(&pool);
    }
    // Each snapshot still reads its own state.
    let read = pool.read();
    let first = read.tree(snaps[0]).unwrap();
    assert_eq!(
        first.get(&0u64.to_be_bytes()).unwrap().unwrap().value,
        vec![1u8; 100]
    );
    drop(read);
    // Delete snapshots in a scrambled order, then every record.
    for i in [3, 0, 9, 5, 1, 8, 2, 7, 4, 6] {
        pool.write(|t| t.delete_tree(snaps[i])).unwrap();
        pool.commit().unwrap();
        assert_fsck_clean(&pool);
    }
    pool.write(|t| -> Result<(), StoreError> {
        for i in 0..100_000u64 {
            t.remove(tree, &i.to_be_bytes())?;
        }
        Ok(())
    })
    .unwrap();
    pool.commit().unwrap();
    assert_fsck_clean(&pool);
    pool.write(|t| t.delete_tree(tree)).unwrap();
    pool.commit().unwrap();
    assert_fsck_clean(&pool);
    assert_eq!(pool.usage().used_blocks, empty_used);
}

#[test]
fn freed_blocks_are_not_reused_while_a_reader_can_reach_them() {
    let (_, pool) = mem_pool();
    let tree = pool.write(|t| t.create_tree()).unwrap();
    let fill = |v: u8| {
        pool.write(|t| -> Result<(), StoreError> {
            for i in 0..5_000u64 {
                t.insert(tree, &i.to_be_bytes(), &[v; 100])?;
            }
            Ok(())
        })
        .unwrap();
        pool.commit().unwrap();
    };
    fill(1);
    let reader = pool.read();
    // Rewrite everything several times: the old nodes are freed, but the reader holds them.
    for v in 2..6 {
        fill(v);
    }
    let view = reader.tree(tree).unwrap();
    for r in view.range::<std::ops::RangeFull>(..).unwrap() {
        assert_eq!(r.unwrap().value, vec![1u8; 100]);
    }
    drop(view);
    drop(reader);
    fill(9);
    assert_fsck_clean(&pool);
}

#[test]
fn extents_shared_by_records_and_snapshots_are_freed_with_the_last_reference() {
    let (_, pool) = mem_pool();
    let tree = pool.write(|t| t.create_tree()).unwrap();
    let extent = pool
        .write(|t| -> Result<_, StoreError> {
            let e = t.alloc_extent(8)?;
            t.write_extent(e, 0, &[0xab; 8 * 4096])?;
            t.insert_with_extent(tree, b"a", e, b"payload")?;
            t.insert_with_extent(tree, b"b", e, b"reflink")?;
            // A fresh extent nobody references is freed at commit.
            let _ = t.alloc_extent(4)?;
            Ok(e)
        })
        .unwrap();
    pool.commit().unwrap();
    assert_fsck_clean(&pool);
    let snap = pool.write(|t| t.snapshot_tree(tree, true)).unwrap();
    pool.write(|t| t.remove(tree, b"a")).unwrap();
    pool.write(|t| t.remove(tree, b"b")).unwrap();
    pool.commit().unwrap();
    assert_fsck_clean(&pool);
    let read = pool.read();
    let rec = read.tree(snap).unwrap().get(b"a").unwrap().unwrap();
    assert_eq!(rec.extent, Some(extent));
    assert_eq!(rec.value, b"payload");
    let mut buf = vec![0u8; 4096];
    read.read_extent(extent, 4096, &mut buf).unwrap();
    assert_eq!(buf, vec![0xab; 4096]);
    drop(read);
    let used = pool.usage().used_blocks;
    pool.write(|t| t.delete_tree(snap)).unwrap();
    pool.commit().unwrap();
    assert_fsck_clean(&pool);
    assert!(
        pool.usage().used_blocks <= used - 8,
        "the extent was not freed"
    );
}

#[test]
fn a_full_pool_refuses_new_data_but_still_deletes_and_commits() {
    let opts = CreateOptions {
        initial_bytes: 8 << 20,
        max_bytes: Some(16 << 20),
    };
    let pool = Pool::create(Arc::new(MemDevice::new()), &opts, &OpenOptions::default()).unwrap();
    let tree = pool.write(|t| t.create_tree()).unwrap();
    let mut n = 0u64;
    let err = loop {
        let r = pool.write(|t| -> Result<(), StoreError> {
            let e = t.alloc_extent(16)?;
            t.insert_with_extent(tree, &n.to_be_bytes(), e, b"")?;
            Ok(())
        });
        match r {
            Ok(()) => n += 1,
            Err(e) => break e,
        }
        if n.is_multiple_of(50) {
            pool.commit().unwrap();
        }
    };
    assert!(matches!(err, StoreError::NoSpace { .. }), "{err}");
    assert!(n > 10);
    pool.commit().unwrap();
    assert_fsck_clean(&pool);
    // Deleting still works on a full pool, and gives the space back.
    pool.write(|t| -> Result<(), StoreError> {
        for i in 0..n {
            t.remove(tree, &i.to_be_bytes())?;
        }
        Ok(())
    })
    .unwrap();
    pool.commit().unwrap();
    assert_fsck_clean(&pool);
    pool.write(|t| t.alloc_extent(16).map(|_| ())).unwrap();
}

#[test]
fn named_trees_are_found_again_after_reopening_and_do_not_show_as_trees() {
    let (device, pool) = mem_pool();
    let id = pool
        .write(|t| -> Result<_, StoreError> {
            let id = t.create_tree()?;
            t.set_named_tree("volumes", Some(id))?;
            assert_eq!(t.named_tree("volumes")?, Some(id));
            assert_eq!(t.named_tree("other")?, None);
            Ok(id)
        })
        .unwrap();
    pool.commit().unwrap();
    drop(pool);
    let pool = Pool::open(device, &OpenOptions::default()).unwrap();
    assert_eq!(pool.read().named_tree("volumes").unwrap(), Some(id));
    assert_eq!(pool.read().list_trees().unwrap().len(), 1);
    assert_fsck_clean(&pool);
    pool.write(|t| t.set_named_tree("volumes", None)).unwrap();
    assert_eq!(pool.write(|t| t.named_tree("volumes")).unwrap(), None);
}

#[test]
fn tree_space_splits_exclusive_from_shared_and_exclusive_is_what_delete_frees() {
    let (_, pool) = mem_pool();
    let tree = pool.write(|t| t.create_tree()).unwrap();
    pool.write(|t| -> Result<(), StoreError> {
        for i in 0..20_000u64 {
            t.insert(tree, &i.to_be_bytes(), &[1u8; 100])?;
        }
        let e = t.alloc_extent(10)?;
        t.insert_with_extent(tree, b"\xffdata", e, b"")?;
        Ok(())
    })
    .unwrap();
    let alone = pool.tree_space(tree).unwrap();
    assert_eq!(alone.shared_blocks, 0);
    // Everything in the pool but the root tree's single node (4 blocks) is this tree's.
    assert_eq!(alone.exclusive_blocks + 4, pool.usage().used_blocks);
    let snap = pool.write(|t| t.snapshot_tree(tree, true)).unwrap();
    pool.write(|t| -> Result<(), StoreError> {
        for i in 0..2_000u64 {
            t.insert(tree, &i.to_be_bytes(), &[2u8; 100])?;
        }
        Ok(())
    })
    .unwrap();
    let head = pool.tree_space(tree).unwrap();
    let old = pool.tree_space(snap).unwrap();
    assert!(
        head.exclusive_blocks > 0 && head.shared_blocks > 0,
        "{head:?}"
    );
    assert!(old.exclusive_blocks > 0 && old.shared_blocks > 0, "{old:?}");
    let before = pool.usage().used_blocks;
    pool.write(|t| t.delete_tree(snap)).unwrap();
    pool.commit().unwrap();
    assert_eq!(before - pool.usage().used_blocks, old.exclusive_blocks);
    assert_fsck_clean(&pool);
}

#[test]
fn a_latest_view_sees_uncommitted_changes_and_keeps_its_blocks_while_the_writer_moves_on() {
    let (_, pool) = mem_pool();
    let tree = pool.write(|t| t.create_tree()).unwrap();
    let fill = |v: u8| {
        pool.write(|t| -> Result<(), StoreError> {
            for i in 0..3_000u64 {
                t.insert(tree, &i.to_be_bytes(), &[v; 100])?;
            }
            let e = t.alloc_extent(2)?;
            t.write_extent(e, 0, &[v; 8192])?;
            t.insert_with_extent(tree, b"\xffdata", e, b"")?;
            Ok(())
        })
        .unwrap();
    };
    fill(1);
    pool.commit().unwrap();
    fill(2); // not committed
    let latest = pool.read_latest();
    assert!(latest.includes_uncommitted());
    assert_eq!(
        pool.read()
            .tree(tree)
            .unwrap()
            .get(&5u64.to_be_bytes())
            .unwrap()
            .unwrap()
            .value,
        vec![1u8; 100]
    );
    // The writer rewrites and commits several times; the view's blocks must survive.
    for v in 3..7 {
        fill(v);
        pool.commit().unwrap();
    }
    let view = latest.tree(tree).unwrap();
    for r in view.range::<std::ops::RangeFull>(..).unwrap() {
        let r = r.unwrap();
        if let Some(e) = r.extent {
            let mut buf = vec![0u8; 8192];
            latest.read_extent(e, 0, &mut buf).unwrap();
            assert_eq!(buf, vec![2u8; 8192]);
        } else {
            assert_eq!(r.value, vec![2u8; 100]);
        }
    }
    drop(view);
    drop(latest);
    fill(9);
    pool.commit().unwrap();
    assert_fsck_clean(&pool);
}
