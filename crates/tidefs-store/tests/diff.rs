//! Tree diff and changed-since: exact against a model, and their cost follows the changes.

mod common;

use std::collections::BTreeMap;

use common::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tidefs_store::{Pool, StoreError, Tid, TreeId};

fn pool() -> Pool {
    mem_pool().1
}

type Map = BTreeMap<Vec<u8>, Vec<u8>>;
type Change = (Vec<u8>, Option<Vec<u8>>, Option<Vec<u8>>);

fn edit(
    rng: &mut ChaCha8Rng,
    pool: &Pool,
    tree: TreeId,
    model: &mut Map,
    edits: usize,
    space: u64,
) {
    pool.write(|t| -> Result<(), StoreError> {
        for _ in 0..edits {
            let k = rng.gen_range(0..space).to_be_bytes().to_vec();
            if rng.gen_bool(0.3) {
                t.remove(tree, &k)?;
                model.remove(&k);
            } else {
                let v: Vec<u8> = (0..rng.gen_range(0..120)).map(|_| rng.gen()).collect();
                t.insert(tree, &k, &v)?;
                model.insert(k, v);
            }
        }
        Ok(())
    })
    .unwrap();
}

fn model_diff(a: &Map, b: &Map) -> Vec<Change> {
    let mut keys: Vec<&Vec<u8>> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| ((*k).clone(), a.get(k).cloned(), b.get(k).cloned()))
        .collect()
}

fn run(seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let pool = pool();
    let tree = pool.write(|t| t.create_tree()).unwrap();
    let space = rng.gen_range(10..20_000);
    let mut model = Map::new();
    let n = rng.gen_range(0..5000);
    edit(&mut rng, &pool, tree, &mut model, n, space);
    pool.commit().unwrap();
    let snap = pool.write(|t| t.snapshot_tree(tree, true)).unwrap();
    let before = model.clone();
    let base_tid = pool.commit().unwrap();
    let edits = if rng.gen_bool(0.5) {
        rng.gen_range(0..10)
    } else {
        rng.gen_range(0..3000)
    };
    edit(&mut rng, &pool, tree, &mut model, edits, space);
    if rng.gen_bool(0.5) {
        pool.commit().unwrap();
    }
    let changed: Vec<Vec<u8>> = pool
        .write(|t| -> Result<_, StoreError> {
            let (a, b) = (t.tree(snap)?, t.tree(tree)?);
            let got: Vec<_> = a
                .diff(&b)?
                .map(|e| e.map(|e| (e.key, e.old.map(|r| r.value), e.new.map(|r| r.value))))
                .collect::<Result<_, _>>()?;
            assert!(
                got == model_diff(&before, &model),
                "diff differs from the model"
            );
            // Reverse direction gives the mirror image.
            let back: Vec<_> = b
                .diff(&a)?
                .map(|e| e.map(|e| e.key))
                .collect::<Result<_, _>>()?;
            assert_eq!(back, got.iter().map(|g| g.0.clone()).collect::<Vec<_>>());
            b.changed_since(base_tid)?
                .map(|r| r.map(|r| r.key))
                .collect::<Result<_, _>>()
        })
        .unwrap();
    // changed_since sees exactly the keys written after the base that still exist.
    let want: Vec<Vec<u8>> = model
        .keys()
        .filter(|k| before.get(*k) != model.get(*k))
        .cloned()
        .collect();
    for k in &want {
        assert!(changed.contains(k), "changed_since missed a changed key");
    }
    for k in &changed {
        assert!(
            model.contains_key(k),
            "changed_since returned a removed key"
        );
    }
}

#[test]
fn diff_and_changed_since_match_the_model() {
    for seed in seeds(40) {
        run_seeded("diff_and_changed_since_match_the_model", seed, run);
    }
}

#[test]
fn diff_cost_follows_the_changes_not_the_tree_size() {
    let pool = pool();
    let tree = pool.write(|t| t.create_tree()).unwrap();
    for chunk in 0..10u64 {
        pool.write(|t| -> Result<(), StoreError> {
            for i in chunk * 10_000..(chunk + 1) * 10_000 {
                t.insert(tree, &i.to_be_bytes(), &[7u8; 100])?;
            }
            Ok(())
        })
        .unwrap();
    }
    let snap = pool.write(|t| t.snapshot_tree(tree, true)).unwrap();
    let base = pool.commit().unwrap();
    pool.write(|t| -> Result<(), StoreError> {
        for i in (0..100_000u64).step_by(10_000) {
            t.insert(tree, &i.to_be_bytes(), &[8u8; 100])?;
        }
        Ok(())
    })
    .unwrap();
    pool.commit().unwrap();
    let read = pool.read();
    let (a, b) = (read.tree(snap).unwrap(), read.tree(tree).unwrap());
    let mut diff = a.diff(&b).unwrap();
    let entries: Vec<_> = diff.by_ref().collect::<Result<_, _>>().unwrap();
    assert_eq!(entries.len(), 10);
    // 100k records span ~850 leaves; 10 changes touch at most 10 paths of height 3 per side.
    assert!(
        diff.nodes_read() <= 2 * (10 * 3 + 1),
        "diff opened {} nodes",
        diff.nodes_read()
    );
    let mut changed = b.changed_since(base).unwrap();
    assert_eq!(changed.by_ref().count(), 10);
    assert!(
        changed.nodes_visited() <= 10 * 3 + 1,
        "changed_since opened {} nodes",
        changed.nodes_visited()
    );
    assert_eq!(b.changed_since(Tid(u64::MAX - 1)).unwrap().count(), 0);
}
