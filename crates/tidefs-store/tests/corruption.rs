//! Corruption: damaged blocks on disk give errors naming the block, never wrong data or a
//! panic, and fsck reports them.

mod common;

use std::os::unix::fs::FileExt;
use std::path::Path;

use tidefs_store::{
    CreateOptions, OpenOptions, Pool, StoreError, TreeId, BLOCK_BYTES, POOL_FILE_NAME,
};

fn flip(pool_dir: &Path, offset: u64) {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(pool_dir.join(POOL_FILE_NAME))
        .unwrap();
    let mut b = [0u8; 1];
    file.read_exact_at(&mut b, offset).unwrap();
    b[0] ^= 0x5a;
    file.write_all_at(&b, offset).unwrap();
    file.sync_all().unwrap();
}

fn make_pool(dir: &Path, records: u64) -> (TreeId, u64) {
    let pool = Pool::create_at(dir, &CreateOptions::default(), &OpenOptions::default()).unwrap();
    let tree = pool.write(|t| t.create_tree()).unwrap();
    pool.write(|t| -> Result<(), StoreError> {
        for i in 0..records {
            t.insert(tree, &i.to_be_bytes(), &[3u8; 100])?;
        }
        Ok(())
    })
    .unwrap();
    pool.commit().unwrap();
    let root = pool.read().tree_info(tree).unwrap().root.unwrap().block;
    (tree, root)
}

#[test]
fn a_flipped_byte_in_a_node_is_an_error_naming_the_block_and_fsck_reports_it() {
    for records in [10u64, 20_000] {
        let dir = tempfile::tempdir().unwrap();
        let (tree, root) = make_pool(dir.path(), records);
        flip(dir.path(), root * BLOCK_BYTES as u64 + 200);
        let pool = Pool::open_at(dir.path(), &OpenOptions::default()).unwrap();
        let read = pool.read();
        let err = read
            .tree(tree)
            .unwrap()
            .get(&5u64.to_be_bytes())
            .unwrap_err();
        assert!(
            matches!(err, StoreError::ChecksumMismatch { block, .. } if block == root),
            "{err}"
        );
        assert!(err.to_string().contains(&format!("block {root}")), "{err}");
        drop(read);
        let report = tidefs_store::fsck(&pool, &mut |_| {}).unwrap();
        assert!(!report.is_clean());
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.block == Some(root) && p.tree == Some(tree)),
            "{:?}",
            report.problems
        );
    }
}

#[test]
fn a_damaged_leaf_below_the_root_fails_only_reads_that_reach_it() {
    let dir = tempfile::tempdir().unwrap();
    let (tree, _) = make_pool(dir.path(), 20_000);
    // Find a leaf: scan the file for node headers of level 0 other than the root's subtree top.
    let pool = Pool::open_at(dir.path(), &OpenOptions::default()).unwrap();
    let report = tidefs_store::fsck(&pool, &mut |_| {}).unwrap();
    assert!(report.is_clean());
    drop(pool);
    let data = std::fs::read(dir.path().join(POOL_FILE_NAME)).unwrap();
    let leaf = (0..data.len() / BLOCK_BYTES)
        .find(|&b| {
            let h = &data[b * BLOCK_BYTES..];
            h[0..4] == 0x444e_4454u32.to_le_bytes()
                && h[4] == 0
                && u64::from_le_bytes(h[16..24].try_into().unwrap()) == tree.0
        })
        .unwrap() as u64;
    // Read the first key of that leaf, then damage the leaf.
    let first_key = {
        let h = &data[leaf as usize * BLOCK_BYTES + 32..];
        let klen = u16::from_le_bytes([h[0], h[1]]) as usize;
        h[13..13 + klen].to_vec()
    };
    flip(dir.path(), leaf * BLOCK_BYTES as u64 + 1000);
    let pool = Pool::open_at(dir.path(), &OpenOptions::default()).unwrap();
    let read = pool.read();
    let view = read.tree(tree).unwrap();
    let err = view.get(&first_key).unwrap_err();
    assert!(err.to_string().contains(&format!("block {leaf}")), "{err}");
    // A scan stops with the error instead of skipping or inventing records.
    match view.range::<std::ops::RangeFull>(..) {
        Err(e) => assert!(e.to_string().contains(&format!("block {leaf}")), "{e}"),
        Ok(scan) => {
            let results: Vec<_> = scan.collect();
            let err = results
                .iter()
                .find_map(|r| r.as_ref().err())
                .expect("the scan must fail");
            assert!(err.to_string().contains(&format!("block {leaf}")), "{err}");
        }
    }
    drop(view);
    drop(read);
    let report = tidefs_store::fsck(&pool, &mut |_| {}).unwrap();
    assert!(
        report.problems.iter().any(|p| p.block == Some(leaf)),
        "{:?}",
        report.problems
    );
}

#[test]
fn a_torn_superblock_copy_falls_back_to_another() {
    let dir = tempfile::tempdir().unwrap();
    let (tree, _) = make_pool(dir.path(), 100);
    // The newest commit's pair is slots 2,3 or 4,5 (blocks 4..8); damage one block of each pair.
    for block in [4u64, 6] {
        flip(dir.path(), block * BLOCK_BYTES as u64 + 40);
    }
    let pool = Pool::open_at(dir.path(), &OpenOptions::default()).unwrap();
    assert_eq!(
        pool.read()
            .tree(tree)
            .unwrap()
            .get(&7u64.to_be_bytes())
            .unwrap()
            .unwrap()
            .value,
        vec![3u8; 100]
    );
}

#[test]
fn a_pool_with_every_superblock_damaged_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    make_pool(dir.path(), 10);
    for block in 4u64..8 {
        flip(dir.path(), block * BLOCK_BYTES as u64 + 16);
    }
    let err = Pool::open_at(dir.path(), &OpenOptions::default())
        .err()
        .unwrap();
    assert!(matches!(err, StoreError::NoValidSuperblock { .. }), "{err}");
    assert!(err.to_string().contains("block 4"), "{err}");
}

#[test]
fn a_second_process_is_told_who_holds_the_pool() {
    let dir = tempfile::tempdir().unwrap();
    let pool = Pool::create_at(
        dir.path(),
        &CreateOptions::default(),
        &OpenOptions::default(),
    )
    .unwrap();
    let err = Pool::open_at(dir.path(), &OpenOptions::default())
        .err()
        .unwrap();
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
    drop(pool);
    Pool::open_at(dir.path(), &OpenOptions::default()).unwrap();
}
