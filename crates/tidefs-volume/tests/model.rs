//! Proves that random reads, writes (aligned or not), trims, write-zeroes, snapshots,
//! clones, resizes and snapshot deletions give exactly what an in-memory model gives, that
//! block status and diff agree with it, and that everything committed survives a reopen.

mod common;

use std::collections::BTreeMap;

use common::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tidefs_volume::{BlockState, VolumeRef, VolumeStore};

/// What the model knows about a block: the store's map record, abstractly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rec {
    Hole,
    Zero,
    /// Written by operation number n (every write makes new records).
    Data(u64),
}

#[derive(Clone)]
struct ModelVolume {
    bytes: Vec<u8>,
    recs: Vec<Rec>,
}

impl ModelVolume {
    fn new(size: u64) -> Self {
        ModelVolume {
            bytes: vec![0; size as usize],
            recs: vec![Rec::Hole; (size / B) as usize],
        }
    }

    fn size(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn write(&mut self, offset: u64, data: &[u8], op: u64) {
        self.bytes[offset as usize..offset as usize + data.len()].copy_from_slice(data);
        let end = offset + data.len() as u64;
        for b in offset / B..end.div_ceil(B) {
            self.recs[b as usize] = Rec::Data(op);
        }
    }

    fn trim(&mut self, offset: u64, len: u64) {
        for b in offset.div_ceil(B)..(offset + len) / B {
            self.recs[b as usize] = Rec::Hole;
            self.bytes[(b * B) as usize..((b + 1) * B) as usize].fill(0);
        }
    }

    fn write_zeroes(&mut self, offset: u64, len: u64, punch: bool, op: u64) {
        let end = offset + len;
        for b in offset / B..end.div_ceil(B) {
            let (lo, hi) = ((b * B).max(offset), (b * B + B).min(end));
            let whole = lo == b * B && hi == b * B + B;
            let rec = &mut self.recs[b as usize];
            if whole {
                *rec = if punch { Rec::Hole } else { Rec::Zero };
            } else if matches!(rec, Rec::Data(_)) {
                *rec = Rec::Data(op);
            }
            self.bytes[lo as usize..hi as usize].fill(0);
        }
    }

    fn resize(&mut self, size: u64) {
        self.bytes.resize(size as usize, 0);
        self.recs.resize((size / B) as usize, Rec::Hole);
    }

    fn state(&self, block: u64) -> BlockState {
        match self.recs.get(block as usize) {
            None | Some(Rec::Hole) => BlockState::Hole,
            Some(Rec::Zero) => BlockState::Zero,
            Some(Rec::Data(_)) => BlockState::Data,
        }
    }
}

/// Changed block runs between two model states, as the store's diff reports them.
fn model_diff(a: &ModelVolume, b: &ModelVolume) -> Vec<(u64, u64)> {
    let blocks = a.recs.len().max(b.recs.len());
    let rec = |m: &ModelVolume, i: usize| m.recs.get(i).copied().unwrap_or(Rec::Hole);
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for i in 0..blocks {
        if rec(a, i) != rec(b, i) {
            let i = i as u64;
            match runs.last_mut() {
                Some((first, count)) if *first + *count == i => *count += 1,
                _ => runs.push((i, 1)),
            }
        }
    }
    runs.into_iter().map(|(f, c)| (f * B, c * B)).collect()
}

struct Harness {
    rng: ChaCha8Rng,
    store: std::sync::Arc<VolumeStore>,
    /// Live volumes and snapshots by label.
    model: BTreeMap<String, ModelVolume>,
    op: u64,
}

const VOLUME_BLOCKS_MAX: u64 = 700;

impl Harness {
    fn random_range(&mut self, size: u64) -> (u64, u64) {
        let aligned = self.rng.gen_bool(0.5);
        let max_len = if self.rng.gen_bool(0.1) {
            size // large: crosses the 256-block extent split
        } else {
            24 * B
        };
        let mut offset = self.rng.gen_range(0..size);
        let mut len = self.rng.gen_range(1..=max_len.min(size - offset));
        if aligned {
            offset -= offset % B;
            len = len.div_ceil(B) * B;
            len = len.min(size - offset);
        }
        (offset, len)
    }

    fn volumes(&self) -> Vec<String> {
        self.model
            .keys()
            .filter(|k| !k.contains('@'))
            .cloned()
            .collect()
    }

    fn snapshots(&self) -> Vec<String> {
        self.model
            .keys()
            .filter(|k| k.contains('@'))
            .cloned()
            .collect()
    }

    fn pick(&mut self, from: Vec<String>) -> Option<String> {
        if from.is_empty() {
            return None;
        }
        let i = self.rng.gen_range(0..from.len());
        Some(from[i].clone())
    }

    fn check_read(&mut self, label: &str) {
        let m = &self.model[label];
        let size = m.size();
        let (offset, len) = self.random_range(size);
        let vol = self
            .store
            .open_volume(&VolumeRef::parse(label).unwrap(), false)
            .unwrap();
        let mut buf = vec![0xaau8; len as usize];
        vol.read(offset, &mut buf).unwrap();
        let m = &self.model[label];
        assert!(
            buf == m.bytes[offset as usize..(offset + len) as usize],
            "{label}: read {offset}+{len} differs from the model"
        );
        // Block status agrees with the model's records.
        let runs = vol.block_status(offset, len).unwrap();
        let mut at = offset;
        for run in &runs {
            for byte in [at, at + run.len - 1] {
                assert_eq!(
                    run.state,
                    m.state(byte / B),
                    "{label}: block status at {byte}"
                );
            }
            at += run.len;
        }
        assert_eq!(at, offset + len, "{label}: block status covers the range");
        for w in runs.windows(2) {
            assert_ne!(w[0].state, w[1].state, "runs are merged");
        }
    }

    fn step(&mut self) {
        self.op += 1;
        let op = self.op;
        let choice = self.rng.gen_range(0..100);
        match choice {
            0..=29 => {
                let Some(v) = self.pick(self.volumes()) else {
                    return;
                };
                let (offset, len) = self.random_range(self.model[&v].size());
                let mut data = vec![0u8; len as usize];
                pattern(op, offset, &mut data);
                let vol = self
                    .store
                    .open_volume(&VolumeRef::volume(&v), false)
                    .unwrap();
                vol.write(offset, &data).unwrap();
                self.model.get_mut(&v).unwrap().write(offset, &data, op);
            }
            30..=49 => {
                let all: Vec<String> = self.model.keys().cloned().collect();
                let Some(label) = self.pick(all) else { return };
                self.check_read(&label);
            }
            50..=57 => {
                let Some(v) = self.pick(self.volumes()) else {
                    return;
                };
                let (offset, len) = self.random_range(self.model[&v].size());
                let vol = self
                    .store
                    .open_volume(&VolumeRef::volume(&v), false)
                    .unwrap();
                vol.trim(offset, len).unwrap();
                self.model.get_mut(&v).unwrap().trim(offset, len);
            }
            58..=65 => {
                let Some(v) = self.pick(self.volumes()) else {
                    return;
                };
                let (offset, len) = self.random_range(self.model[&v].size());
                let punch = self.rng.gen_bool(0.5);
                let vol = self
                    .store
                    .open_volume(&VolumeRef::volume(&v), false)
                    .unwrap();
                vol.write_zeroes(offset, len, punch).unwrap();
                self.model
                    .get_mut(&v)
                    .unwrap()
                    .write_zeroes(offset, len, punch, op);
            }
            66..=73 => {
                let Some(v) = self.pick(self.volumes()) else {
                    return;
                };
                let name = format!("s{op}");
                self.store.snapshot(&v, &name, now(op as i64)).unwrap();
                let copy = self.model[&v].clone();
                self.model.insert(format!("{v}@{name}"), copy);
            }
            74..=77 => {
                let Some(s) = self.pick(self.snapshots()) else {
                    return;
                };
                let (v, snap) = s.split_once('@').unwrap();
                let name = format!("c{op}");
                self.store
                    .clone_snapshot(v, snap, &name, now(op as i64))
                    .unwrap();
                let copy = self.model[&s].clone();
                self.model.insert(name, copy);
            }
            78..=82 => {
                let Some(v) = self.pick(self.volumes()) else {
                    return;
                };
                let size = self.rng.gen_range(1..=VOLUME_BLOCKS_MAX) * B;
                self.store.resize(&v, size).unwrap();
                self.model.get_mut(&v).unwrap().resize(size);
            }
            83..=86 => {
                let Some(s) = self.pick(self.snapshots()) else {
                    return;
                };
                let (v, snap) = s.split_once('@').unwrap();
                self.store.delete_snapshot(v, snap).unwrap();
                self.model.remove(&s);
            }
            87..=94 => self.check_diff(),
            95..=96 => {
                self.store.commit().unwrap();
            }
            _ => {
                // A new volume now and then, and a writable clone of nothing in particular.
                let name = format!("v{op}");
                let size = self.rng.gen_range(1..=VOLUME_BLOCKS_MAX) * B;
                self.store.create(&name, size, now(0)).unwrap();
                self.model.insert(name, ModelVolume::new(size));
            }
        }
    }

    fn check_diff(&mut self) {
        let Some(s) = self.pick(self.snapshots()) else {
            return;
        };
        let (v, _) = s.split_once('@').unwrap();
        let v = v.to_string();
        // Against another snapshot of the same volume, or the live volume.
        let others: Vec<String> = self
            .model
            .keys()
            .filter(|k| *k != &s && (*k == &v || k.starts_with(&format!("{v}@"))))
            .cloned()
            .collect();
        let other = self.pick(others).unwrap();
        let diff = self
            .store
            .diff(
                &VolumeRef::parse(&s).unwrap(),
                &VolumeRef::parse(&other).unwrap(),
            )
            .unwrap();
        let got: Vec<(u64, u64)> = diff.ranges.iter().map(|r| (r.offset, r.length)).collect();
        assert_eq!(
            got,
            model_diff(&self.model[&s], &self.model[&other]),
            "diff {s} {other}"
        );
    }

    fn check_everything(&mut self, store: &VolumeStore) {
        for (label, m) in &self.model {
            let vol = store
                .open_volume(&VolumeRef::parse(label).unwrap(), false)
                .unwrap();
            assert_eq!(vol.size(), m.size(), "{label}: size");
            let mut buf = vec![0u8; m.bytes.len()];
            vol.read(0, &mut buf).unwrap();
            assert!(buf == m.bytes, "{label}: contents differ from the model");
        }
    }
}

fn run(seed: u64, steps: usize) {
    println!("seed {seed}");
    let (device, store) = mem_store();
    let mut h = Harness {
        rng: ChaCha8Rng::seed_from_u64(seed),
        store,
        model: BTreeMap::new(),
        op: 0,
    };
    h.store.create("disk", 512 * B, now(0)).unwrap();
    h.model.insert("disk".into(), ModelVolume::new(512 * B));
    for _ in 0..steps {
        h.step();
    }
    let store = h.store.clone();
    h.check_everything(&store);
    store.commit().unwrap();
    assert_fsck_clean(&store);
    let reopened = reopen(&device);
    h.check_everything(&reopened);
}

#[test]
fn random_operations_match_the_model() {
    for seed in seeds(6) {
        run(seed, 600);
    }
}

#[test]
fn unaligned_writes_merge_with_their_neighbours() {
    let (_device, store) = mem_store();
    store.create("d", 16 * B, now(0)).unwrap();
    let vol = store.open_volume(&VolumeRef::volume("d"), false).unwrap();
    let mut a = vec![0u8; (3 * B) as usize];
    pattern(1, 0, &mut a);
    vol.write(0, &a).unwrap();
    vol.write(B + 100, &[7u8; 10]).unwrap();
    vol.write(3 * B - 1, &[9u8; 2]).unwrap();
    let mut expected = a.clone();
    expected[(B + 100) as usize..(B + 110) as usize].fill(7);
    expected[(3 * B - 1) as usize] = 9;
    expected.push(9);
    let mut got = vec![0u8; expected.len()];
    vol.read(0, &mut got).unwrap();
    assert!(got == expected);
    let mut one = [0u8; 3];
    vol.read(B + 99, &mut one).unwrap();
    assert_eq!(one, [a[(B + 99) as usize], 7, 7]);
}
