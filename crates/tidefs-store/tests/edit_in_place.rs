//! A transaction edits cached nodes in place when nothing else holds them (instead of
//! copying them). Readers of the committed state must not notice: a reader that comes later
//! reads those nodes from the device again, and one holding a node keeps its own.

mod common;

use std::collections::BTreeMap;

use common::{assert_committed_equals, assert_fsck_clean, assert_view_equals, mem_pool, Model};

fn key(i: u64) -> [u8; 8] {
    i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes()
}

#[test]
fn readers_keep_the_committed_state_while_its_nodes_are_edited() {
    let (device, pool) = mem_pool();
    let tree = pool.write(|t| t.create_tree()).unwrap();
    let mut old = BTreeMap::new();
    let records: Vec<([u8; 8], Vec<u8>)> = (0..20_000u64).map(|i| (key(i), vec![1; 60])).collect();
    pool.write(|t| t.insert_many(tree, &records)).unwrap();
    for (k, v) in &records {
        old.insert(k.to_vec(), v.clone());
    }
    // After the commit the cache holds the written nodes, and nothing else does.
    pool.commit().unwrap();
    let old_model: Model = [(tree, old.clone())].into();

    // A reader that has loaded the root and part of the tree, and one that has loaded nothing.
    let holding = pool.read();
    let view = holding.tree(tree).unwrap();
    let mut scan = view.range::<std::ops::RangeFull>(..).unwrap();
    let first: Vec<_> = scan.by_ref().take(100).map(|r| r.unwrap().key).collect();
    let later = pool.read();

    // Rewrite every leaf: every value changes, and as many keys again go in between.
    let mut new = old.clone();
    let updates: Vec<([u8; 8], Vec<u8>)> = (0..40_000u64).map(|i| (key(i), vec![2; 70])).collect();
    pool.write(|t| t.insert_many(tree, &updates)).unwrap();
    for (k, v) in &updates {
        new.insert(k.to_vec(), v.clone());
    }

    // Both readers still see the committed state, before and after the next commit.
    let rest: Vec<_> = scan.map(|r| r.unwrap().key).collect();
    let seen: Vec<Vec<u8>> = first.into_iter().chain(rest).collect();
    assert!(
        seen.iter().eq(old.keys()),
        "a scan in progress sees the old keys"
    );
    assert_view_equals(&later, &old_model);
    pool.commit().unwrap();
    assert_view_equals(&later, &old_model);
    assert_view_equals(&holding, &old_model);
    drop((holding, later, view));

    // The new state is what was written, also after a reopen, and the pool is consistent.
    let new_model: Model = [(tree, new)].into();
    assert_committed_equals(&pool, &new_model);
    assert_fsck_clean(&pool);
    drop(pool);
    let pool = tidefs_store::Pool::open(device, &tidefs_store::OpenOptions::default()).unwrap();
    assert_committed_equals(&pool, &new_model);
    assert_fsck_clean(&pool);
}
