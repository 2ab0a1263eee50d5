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
/// `pipelined`: commits are started, more changes made, and landed later (or by the next
/// commit), so the next transaction's writes interleave with the landing's.
fn run(seed: u64, pipelined: bool) -> bool {
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
    let mut started: Option<(tidefs_store::Landing, Model)> = None;
    for _ in 0..40 {
        if batch(&mut rng, &pool, &mut model).is_err() {
            break;
        }
        if !pipelined {
            match pool.commit() {
                Ok(_) => acked = model.clone(),
                Err(_) => {
                    in_flight = Some(model.clone());
                    break;
                }
            }
            continue;
        }
        if let Some((landing, m)) = started.take_if(|_| rng.gen_bool(0.3)) {
            match landing.land() {
                Ok(_) => acked = m,
                Err(_) => {
                    in_flight = Some(m);
                    break;
                }
            }
            continue;
        }
        match pool.start_commit() {
            Ok(Some(landing)) => {
                // Starting a commit lands the one before it.
                if let Some((_, m)) = started.replace((landing, model.clone())) {
                    acked = m;
                }
            }
            Ok(None) => {}
            Err(_) => {
                // This commit wrote no superblock; the one before may have landed.
                in_flight = started.take().map(|(_, m)| m);
                break;
            }
        }
    }
    if let Some((_, m)) = started {
        in_flight = Some(m); // started, never landed: a crash may or may not keep it
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
    crash_points("every_crash_point_recovers_a_committed_state", 1500, false);
}

#[test]
fn every_crash_point_of_pipelined_commits_recovers_a_committed_state() {
    crash_points(
        "every_crash_point_of_pipelined_commits_recovers_a_committed_state",
        1000,
        true,
    );
}

fn crash_points(name: &str, default_count: u64, pipelined: bool) {
    let count = std::env::var("TIDEFS_CRASH_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_count);
    let mut landed = 0;
    let seeds = seeds(count);
    for &seed in &seeds {
        run_seeded(name, seed, |s| landed += usize::from(run(s, pipelined)));
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
