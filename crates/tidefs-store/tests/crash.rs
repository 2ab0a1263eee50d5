//! Crash test: a fault-injecting device cuts the power at a random operation; whatever a
//! disk could hold afterwards (any subset of unflushed writes, reordered, one torn) must
//! open as exactly one committed state no older than the last acknowledged commit, with a
//! clean fsck. Then the pool keeps working across a second crash.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tidefs_store::{CreateOptions, FaultDevice, MemDevice, OpenOptions, Pool, StoreError, TreeId};

fn small() -> CreateOptions {
    CreateOptions {
        initial_bytes: 4 << 20,
        max_bytes: None,
    }
}

/// One batch of random changes, applied to the pool and the model together.
fn batch(rng: &mut ChaCha8Rng, pool: &Pool, model: &mut Model) -> Result<(), StoreError> {
    let trees: Vec<TreeId> = model.keys().copied().collect();
    let action = rng.gen_range(0..10);
    pool.write(|t| -> Result<(), StoreError> {
        match action {
            0 if model.len() < 6 => {
                let src = trees[rng.gen_range(0..trees.len())];
                let id = t.snapshot_tree(src, false)?;
                let copy = model[&src].clone();
                model.insert(id, copy);
            }
            1 if model.len() > 1 => {
                let id = trees[rng.gen_range(0..trees.len())];
                t.delete_tree(id)?;
                model.remove(&id);
            }
            _ => {
                let id = trees[rng.gen_range(0..trees.len())];
                let m = model.get_mut(&id).unwrap();
                for _ in 0..rng.gen_range(1..400) {
                    let k = rng.gen_range(0..3000u64).to_be_bytes().to_vec();
                    if rng.gen_bool(0.25) {
                        t.remove(id, &k)?;
                        m.remove(&k);
                    } else {
                        let v = vec![rng.gen::<u8>(); rng.gen_range(0..150)];
                        t.insert(id, &k, &v)?;
                        m.insert(k, v);
                    }
                }
            }
        }
        Ok(())
    })
}

/// Returns whether the recovered state was the commit that was in flight at the crash.
fn run(seed: u64) -> bool {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let device = Arc::new(FaultDevice::new());
    let pool = Pool::create(device.clone(), &small(), &OpenOptions::default()).unwrap();
    let mut model: Model = BTreeMap::new();
    model.insert(pool.write(|t| t.create_tree()).unwrap(), BTreeMap::new());
    pool.commit().unwrap();
    // A few commits before the fault is armed, so the crash lands in a pool with history.
    let mut acked = model.clone();
    for _ in 0..rng.gen_range(0..4) {
        batch(&mut rng, &pool, &mut model).unwrap();
        pool.commit().unwrap();
        acked = model.clone();
    }
    device.fail_after_ops(rng.gen_range(0..60));
    let mut in_flight = None;
    for _ in 0..40 {
        if batch(&mut rng, &pool, &mut model).is_err() {
            break;
        }
        match pool.commit() {
            Ok(_) => acked = model.clone(),
            Err(_) => {
                in_flight = Some(model.clone());
                break;
            }
        }
    }
    drop(pool);
    let image = device.crash_image(&mut rng);
    let reopened = Arc::new(MemDevice::from_image(image));
    let pool = Pool::open(reopened.clone(), &OpenOptions::default()).unwrap();
    let (state, landed) = if committed_equals(&pool, &acked) {
        (acked, false)
    } else if in_flight
        .as_ref()
        .is_some_and(|m| committed_equals(&pool, m))
    {
        (in_flight.unwrap(), true)
    } else {
        panic!("reopened pool matches neither the last acknowledged commit nor the one in flight");
    };
    assert_fsck_clean(&pool);
    // Keep working on the recovered pool, then lose power again without faults.
    let mut model = state;
    for _ in 0..rng.gen_range(1..5) {
        batch(&mut rng, &pool, &mut model).unwrap();
        pool.commit().unwrap();
    }
    drop(pool);
    let pool = Pool::open(
        Arc::new(MemDevice::from_image(reopened.image())),
        &OpenOptions::default(),
    )
    .unwrap();
    assert_committed_equals(&pool, &model);
    assert_fsck_clean(&pool);
    landed
}

#[test]
fn every_crash_point_recovers_a_committed_state() {
    let count = std::env::var("TIDEFS_CRASH_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1500);
    let mut landed = 0;
    let seeds = seeds(count);
    for &seed in &seeds {
        run_seeded("every_crash_point_recovers_a_committed_state", seed, |s| {
            landed += usize::from(run(s))
        });
    }
    // Both outcomes must occur, or the crash points are not where the commits are.
    if seeds.len() >= 200 {
        assert!(
            landed > 0 && landed < seeds.len(),
            "{landed} of {} crashes kept the commit in flight",
            seeds.len()
        );
    }
    eprintln!(
        "{} crash points, {landed} kept the commit in flight",
        seeds.len()
    );
}
