//! Helpers shared by the volume tests: pools in memory, seeds, patterns.
#![allow(dead_code)]

use std::sync::Arc;

use tidefs_store::{CreateOptions, MemDevice, OpenOptions, Pool};
use tidefs_volume::{Timestamp, VolumeStore};

pub const B: u64 = 4096;

/// A fresh pool on a memory device, with its volume layer.
pub fn mem_store() -> (Arc<MemDevice>, Arc<VolumeStore>) {
    let device = Arc::new(MemDevice::new());
    let pool = Pool::create(
        device.clone(),
        &CreateOptions::default(),
        &OpenOptions::default(),
    )
    .expect("create pool");
    (
        device,
        Arc::new(VolumeStore::open(pool).expect("open volumes")),
    )
}

/// Reopens the committed state of `device` as a new pool.
pub fn reopen(device: &MemDevice) -> Arc<VolumeStore> {
    let image = Arc::new(MemDevice::from_image(device.image()));
    let pool = Pool::open(image, &OpenOptions::default()).expect("reopen pool");
    Arc::new(VolumeStore::open(pool).expect("open volumes"))
}

pub fn now(secs: i64) -> Timestamp {
    Timestamp { secs, nanos: 0 }
}

/// Seeds to run: `TIDEFS_SEED` alone when set (to replay a failure), else `count` fixed
/// seeds.
pub fn seeds(count: u64) -> Vec<u64> {
    match std::env::var("TIDEFS_SEED") {
        Ok(s) => vec![s.parse().expect("TIDEFS_SEED is a number")],
        Err(_) => (1..=count).map(|i| i * 0x9e37_79b9).collect(),
    }
}

/// Fills `buf` with bytes that depend on `stamp` and on each byte's volume offset, so a
/// block read from the wrong place or the wrong time is told apart.
pub fn pattern(stamp: u64, offset: u64, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        let x = (offset + i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ stamp.wrapping_mul(0xff51_afd7_ed55_8ccd);
        *b = (x >> 29) as u8;
    }
}

pub fn assert_fsck_clean(store: &VolumeStore) {
    let report = tidefs_store::fsck(store.pool(), &mut |_| {}).expect("fsck runs");
    assert!(
        report.is_clean(),
        "fsck found problems: {:?}",
        report.problems
    );
}
