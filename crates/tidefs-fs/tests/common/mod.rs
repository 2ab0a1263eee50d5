//! Helpers shared by the fs integration tests.
#![allow(dead_code)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use tidefs_fs::{Caller, Fs, ManualClock, Subvol, Timespec};
use tidefs_store::{CreateOptions, MemDevice, OpenOptions, Pool};

pub const ROOT: Caller = Caller::ROOT;

/// A file system on an in-memory pool with one subvolume "main", and its clock.
pub fn mem_fs() -> (Fs, Subvol, Arc<ManualClock>) {
    mem_fs_with(CreateOptions::default())
}

pub fn mem_fs_with(opts: CreateOptions) -> (Fs, Subvol, Arc<ManualClock>) {
    let pool = Pool::create(Arc::new(MemDevice::new()), &opts, &OpenOptions::default()).unwrap();
    let clock = Arc::new(ManualClock::new(Timespec::new(1_700_000_000, 0)));
    let fs = Fs::format(pool, clock.clone()).unwrap();
    fs.create_subvolume("main", &ROOT).unwrap();
    let sub = fs.subvolume("main").unwrap();
    (fs, sub, clock)
}

/// Runs both fsck levels and fails with what they find.
pub fn assert_clean(fs: &Fs) {
    let problems = fs.fsck(true).unwrap();
    assert!(
        problems.is_empty(),
        "fs fsck:\n{}",
        problems
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
    fs.fsync().unwrap();
    let report = tidefs_store::fsck(fs.pool(), &mut |_| {}).unwrap();
    assert!(
        report.is_clean(),
        "store fsck:\n{}",
        report
            .problems
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The seeds a randomized test runs: `TIDEFS_SEED` replays one, otherwise `count` fresh ones.
pub fn seeds(count: u64) -> Vec<u64> {
    match std::env::var("TIDEFS_SEED") {
        Ok(s) => vec![s.parse().expect("TIDEFS_SEED must be a number")],
        Err(_) => {
            let base = u64::from(rand::random::<u32>());
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
