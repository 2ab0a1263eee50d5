//! Proves snapshot isolation and exact space accounting: readers of snapshots never see
//! writes made to the origin after the snapshot, even while writers run on other threads;
//! a thousand snapshots each read back exactly; deleting them in any order frees exactly
//! the space they held; and a damaged block is an error naming the volume and offset.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::*;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tidefs_store::BlockDevice;
use tidefs_volume::{VolumeError, VolumeRef};

/// Every write covers one 8-block group with one stamp, so an atomic write shows up as a
/// group whose blocks agree.
const GROUP_BLOCKS: u64 = 8;
const GROUPS: u64 = 64;

fn group_stamps(bytes: &[u8]) -> Vec<u64> {
    (0..GROUPS)
        .map(|g| {
            let at = (g * GROUP_BLOCKS * B) as usize;
            let stamp = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
            let mut expected = vec![0u8; (GROUP_BLOCKS * B) as usize];
            stamped_group(stamp, g, &mut expected);
            assert!(
                bytes[at..at + expected.len()] == expected[..],
                "group {g} is torn or foreign (stamp {stamp})"
            );
            stamp
        })
        .collect()
}

fn stamped_group(stamp: u64, group: u64, buf: &mut [u8]) {
    if stamp == 0 {
        buf.fill(0);
        return;
    }
    pattern(stamp, group * GROUP_BLOCKS * B, buf);
    buf[..8].copy_from_slice(&stamp.to_le_bytes());
}

#[test]
fn snapshot_readers_never_see_later_writes_while_writers_run() {
    let seed = seeds(1)[0];
    println!("seed {seed}");
    let (_device, store) = mem_store();
    store
        .create("origin", GROUPS * GROUP_BLOCKS * B, now(0))
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..3u64)
        .map(|w| {
            let (store, stop) = (store.clone(), stop.clone());
            std::thread::spawn(move || {
                let vol = store
                    .open_volume(&VolumeRef::volume("origin"), false)
                    .unwrap();
                let mut rng = ChaCha8Rng::seed_from_u64(seed + w);
                let mut n = 0u64;
                let mut buf = vec![0u8; (GROUP_BLOCKS * B) as usize];
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let group = rng.gen_range(0..GROUPS);
                    stamped_group((w << 32) | n, group, &mut buf);
                    vol.write(group * GROUP_BLOCKS * B, &buf).unwrap();
                    if n.is_multiple_of(50) {
                        vol.flush().unwrap();
                    }
                }
                n
            })
        })
        .collect();
    let mut taken = Vec::new();
    for i in 0..12 {
        std::thread::sleep(std::time::Duration::from_millis(5));
        store.snapshot("origin", &format!("s{i}"), now(i)).unwrap();
        let snap = store
            .open_volume(&VolumeRef::snapshot("origin", &format!("s{i}")), false)
            .unwrap();
        let mut first = vec![0u8; snap.size() as usize];
        snap.read(0, &mut first).unwrap();
        // Each group holds one whole write: snapshots are crash-consistent points.
        group_stamps(&first);
        taken.push((snap, first));
    }
    // Re-read every snapshot from several threads while the writers go on.
    let taken = Arc::new(taken);
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let taken = taken.clone();
            std::thread::spawn(move || {
                for _ in 0..5 {
                    for (snap, first) in taken.iter() {
                        let mut again = vec![0u8; first.len()];
                        snap.read(0, &mut again).unwrap();
                        assert!(
                            &again == first,
                            "{} changed after it was taken",
                            snap.label()
                        );
                    }
                }
            })
        })
        .collect();
    for r in readers {
        r.join().unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    let writes: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
    assert!(writes > 0);
    // The origin moved on: it differs from the first snapshot somewhere.
    let origin = store
        .open_volume(&VolumeRef::volume("origin"), false)
        .unwrap();
    let mut now_bytes = vec![0u8; origin.size() as usize];
    origin.read(0, &mut now_bytes).unwrap();
    group_stamps(&now_bytes);
    assert!(now_bytes != taken[0].1, "the writers changed the origin");
    store.commit().unwrap();
    assert_fsck_clean(&store);
}

#[test]
fn a_thousand_snapshots_read_back_and_deleting_them_frees_exactly_their_space() {
    const BLOCKS: u64 = 64;
    const SNAPSHOTS: usize = 1000;
    let seed = seeds(1)[0];
    println!("seed {seed}");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (_device, store) = mem_store();
    store.commit().unwrap();
    let empty = store.pool().usage().used_blocks;
    store.create("v", BLOCKS * B, now(0)).unwrap();
    let vol = store.open_volume(&VolumeRef::volume("v"), false).unwrap();
    // stamps[i][b]: the stamp of block b in snapshot i (0 = never written).
    let mut live = vec![0u64; BLOCKS as usize];
    let mut stamps = Vec::with_capacity(SNAPSHOTS);
    let mut block = vec![0u8; B as usize];
    for i in 0..SNAPSHOTS {
        for _ in 0..rng.gen_range(1..=3) {
            let b = rng.gen_range(0..BLOCKS);
            let stamp = (i as u64 + 1) << 8 | b;
            pattern(stamp, b * B, &mut block);
            vol.write(b * B, &block).unwrap();
            live[b as usize] = stamp;
        }
        store
            .snapshot("v", &format!("s{i}"), now(i as i64))
            .unwrap();
        stamps.push(live.clone());
    }
    let check = |i: usize| {
        let snap = store
            .open_volume(&VolumeRef::snapshot("v", &format!("s{i}")), false)
            .unwrap();
        let mut bytes = vec![0u8; (BLOCKS * B) as usize];
        snap.read(0, &mut bytes).unwrap();
        let mut expected = vec![0u8; B as usize];
        for b in 0..BLOCKS {
            let stamp = stamps[i][b as usize];
            if stamp == 0 {
                expected.fill(0);
            } else {
                pattern(stamp, b * B, &mut expected);
            }
            assert!(
                bytes[(b * B) as usize..((b + 1) * B) as usize] == expected[..],
                "snapshot s{i} block {b}"
            );
        }
    };
    for i in 0..SNAPSHOTS {
        check(i);
    }
    assert_eq!(store.snapshots("v").unwrap().len(), SNAPSHOTS);
    let mut order: Vec<usize> = (0..SNAPSHOTS).collect();
    order.shuffle(&mut rng);
    for (n, &i) in order.iter().enumerate() {
        store.delete_snapshot("v", &format!("s{i}")).unwrap();
        if n % 100 == 0 {
            // The survivors still read what they held.
            for &j in &order[n + 1..(n + 4).min(SNAPSHOTS)] {
                check(j);
            }
            assert_fsck_clean(&store);
        }
    }
    assert_fsck_clean(&store);
    // The live volume is intact; deleting it gives back every block.
    let mut bytes = vec![0u8; (BLOCKS * B) as usize];
    vol.read(0, &mut bytes).unwrap();
    for b in 0..BLOCKS {
        let mut expected = vec![0u8; B as usize];
        if live[b as usize] != 0 {
            pattern(live[b as usize], b * B, &mut expected);
        }
        assert!(bytes[(b * B) as usize..((b + 1) * B) as usize] == expected[..]);
    }
    drop(vol);
    store.delete("v", false).unwrap();
    store.commit().unwrap();
    assert_eq!(
        store.pool().usage().used_blocks,
        empty,
        "space back to empty"
    );
    assert_fsck_clean(&store);
}

#[test]
fn a_damaged_data_block_is_an_error_naming_volume_and_offset() {
    let (device, store) = mem_store();
    store.create("d", 8 * B, now(0)).unwrap();
    let vol = store.open_volume(&VolumeRef::volume("d"), false).unwrap();
    let mut block = vec![0u8; B as usize];
    pattern(0xfeed, 3 * B, &mut block);
    vol.write(3 * B, &block).unwrap();
    store.commit().unwrap();
    let image = device.image();
    let at = image
        .windows(64)
        .position(|w| w == &block[..64])
        .expect("the block is on the device") as u64;
    device.write_at(at + 10, &[block[10] ^ 0xff]).unwrap();
    let mut buf = vec![0u8; 100];
    match vol.read(3 * B + 5, &mut buf) {
        Err(e @ VolumeError::Checksum { offset, .. }) => {
            assert_eq!(offset, 3 * B);
            assert!(e.to_string().contains("in d at byte offset 12288"), "{e}");
        }
        other => panic!("expected a checksum error, got {other:?}"),
    }
    // Other blocks still read.
    vol.read(0, &mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == 0));
}

#[test]
fn catalog_operations_refuse_bad_input_clearly() {
    let (_device, store) = mem_store();
    store.create("a", 4 * B, now(0)).unwrap();
    for (name, size) in [("b/c", B), ("", B), ("x@y", B), ("ok", 0), ("ok", 100)] {
        let e = store.create(name, size, now(0)).unwrap_err();
        assert!(
            matches!(
                e,
                VolumeError::InvalidName { .. } | VolumeError::InvalidSize { .. }
            ),
            "{e}"
        );
    }
    assert!(matches!(
        store.create("a", B, now(0)),
        Err(VolumeError::Exists(_))
    ));
    assert!(matches!(
        store.resize("nope", B),
        Err(VolumeError::NoSuchVolume(_))
    ));
    store.snapshot("a", "s", now(1)).unwrap();
    assert!(matches!(
        store.snapshot("a", "s", now(1)),
        Err(VolumeError::Exists(_))
    ));
    assert!(matches!(
        store.delete_snapshot("a", "t"),
        Err(VolumeError::NoSuchSnapshot { .. })
    ));
    assert!(matches!(
        store.delete("a", false),
        Err(VolumeError::HasSnapshots { count: 1, .. })
    ));
    let snap = store
        .open_volume(&VolumeRef::snapshot("a", "s"), false)
        .unwrap();
    assert!(matches!(snap.write(0, &[1]), Err(VolumeError::ReadOnly(_))));
    let vol = store.open_volume(&VolumeRef::volume("a"), false).unwrap();
    assert!(matches!(
        vol.write(4 * B - 1, &[1, 2]),
        Err(VolumeError::OutOfRange { .. })
    ));
    store.rename_snapshot("a", "s", "t").unwrap();
    assert_eq!(
        store.snapshots("a").unwrap()[0].snapshot.as_deref(),
        Some("t")
    );
    let clone = store.clone_snapshot("a", "t", "c", now(2)).unwrap();
    assert_eq!(clone.origin.as_deref(), Some("a@t"));
    store.delete("a", true).unwrap();
    assert!(
        snap.read(0, &mut [0u8; 1]).is_err(),
        "a deleted snapshot is not read"
    );
    let clone = store.info(&VolumeRef::volume("c")).unwrap();
    assert_eq!(clone.origin, None, "the origin is gone");
    assert!(clone.origin_uuid.is_some(), "but its uuid is kept");
    // A writable snapshot export writes into the snapshot only.
    store.snapshot("c", "w", now(3)).unwrap();
    let w = store
        .open_volume(&VolumeRef::snapshot("c", "w"), true)
        .unwrap();
    w.write(0, &[5; 10]).unwrap();
    let mut got = [0u8; 10];
    store
        .open_volume(&VolumeRef::volume("c"), false)
        .unwrap()
        .read(0, &mut got)
        .unwrap();
    assert_eq!(got, [0; 10]);
    w.read(0, &mut got).unwrap();
    assert_eq!(got, [5; 10]);
}
