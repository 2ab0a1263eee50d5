//! Helpers shared by the store's integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use std::sync::Arc;

use tidefs_store::{CreateOptions, MemDevice, OpenOptions, Pool, ReadTxn, TreeId};

/// The seeds a randomized test runs: `TIDEFS_SEED` replays one, otherwise `count` fresh ones.
pub fn seeds(count: u64) -> Vec<u64> {
    match std::env::var("TIDEFS_SEED") {
        Ok(s) => vec![s.parse().expect("TIDEFS_SEED must be a number")],
        Err(_) => {
            let base: u64 = rand::random::<u32>() as u64;
            (0..count).map(|i| base * 1000 + i).collect()
        }
    }
}

/// Runs `f(seed)`, naming the seed if it panics so the failure can be replayed.
pub fn run_seeded(name: &str, seed: u64, f: impl FnOnce(u64)) {
    if let Err(e) = catch_unwind(AssertUnwindSafe(|| f(seed))) {
        eprintln!("\n{name} failed with seed {seed}; replay with TIDEFS_SEED={seed}\n");
        std::panic::resume_unwind(e);
    }
}

pub type Model = BTreeMap<TreeId, BTreeMap<Vec<u8>, Vec<u8>>>;

/// Whether every tree of the committed state equals the model.
pub fn committed_equals(pool: &Pool, model: &Model) -> bool {
    let read = pool.read();
    let trees: Vec<TreeId> = read
        .list_trees()
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    if !trees.iter().eq(model.keys()) {
        return false;
    }
    model.iter().all(|(id, records)| {
        let got = read
            .tree(*id)
            .unwrap()
            .range::<std::ops::RangeFull>(..)
            .unwrap()
            .map(|r| {
                let r = r.unwrap();
                (r.key, r.value)
            });
        got.eq(records.iter().map(|(k, v)| (k.clone(), v.clone())))
    })
}

/// Asserts that every tree of the committed state equals the model.
pub fn assert_committed_equals(pool: &Pool, model: &Model) {
    assert_view_equals(&pool.read(), model);
}

/// Asserts that every tree `read` shows equals the model.
pub fn assert_view_equals(read: &ReadTxn, model: &Model) {
    let trees: Vec<TreeId> = read
        .list_trees()
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let expected: Vec<TreeId> = model.keys().copied().collect();
    assert_eq!(trees, expected, "set of trees differs");
    for (id, records) in model {
        let got: Vec<(Vec<u8>, Vec<u8>)> = read
            .tree(*id)
            .unwrap()
            .range::<std::ops::RangeFull>(..)
            .unwrap()
            .map(|r| {
                let r = r.unwrap();
                (r.key, r.value)
            })
            .collect();
        let want: Vec<(Vec<u8>, Vec<u8>)> = records
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(got.len(), want.len(), "tree {id}: record count differs");
        assert!(got == want, "tree {id}: records differ");
        // Point lookups, reading values in place, agree with the scan.
        let view = read.tree(*id).unwrap();
        for (k, v) in records.iter().step_by(7) {
            let found = view.get_with(k, |value| value == &v[..]).unwrap();
            assert_eq!(found, Some(true), "tree {id}: get_with of {k:?}");
        }
        let mut missing = records.keys().next_back().cloned().unwrap_or_default();
        missing.push(0);
        assert_eq!(view.get_with(&missing, |_| ()).unwrap(), None);
    }
}

/// Runs fsck and fails with its problems if it finds any.
pub fn assert_fsck_clean(pool: &Pool) {
    let report = tidefs_store::fsck(pool, &mut |_| {}).unwrap();
    assert!(
        report.is_clean(),
        "fsck found problems:\n{}",
        report
            .problems
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// A new pool on a memory device, and the device (to reopen the pool from it).
pub fn mem_pool() -> (Arc<MemDevice>, Pool) {
    let device = Arc::new(MemDevice::new());
    let pool = Pool::create(
        device.clone(),
        &CreateOptions::default(),
        &OpenOptions::default(),
    )
    .unwrap();
    (device, pool)
}
