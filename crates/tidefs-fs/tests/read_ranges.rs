//! Reads of any range, into a caller's buffer or a new one, return exactly the file's
//! bytes: random files built from writes, holes, preallocated ranges, punched holes and
//! truncations, against a byte vector. `TIDEFS_SEED=n` replays one seed.

mod common;

use common::{assert_clean, mem_fs, run_seeded, seeds, ROOT};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tidefs_fs::{falloc, ROOT_INO};

const SEEDS: u64 = 20;

fn run(seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (fs, sub, _) = mem_fs();
    let f = sub.create(ROOT_INO, b"f", 0o644, &ROOT).unwrap();
    let mut model: Vec<u8> = Vec::new();
    for step in 0..60 {
        // Shape the file: mostly writes (small ones stay inline at first), then some
        // preallocation, hole punching and truncation.
        match rng.gen_range(0..10) {
            0..=5 => {
                let at = rng.gen_range(0..(model.len() as u64 + 40_000));
                let len = if rng.gen_bool(0.5) {
                    rng.gen_range(1..200)
                } else {
                    rng.gen_range(1..70_000)
                };
                let data: Vec<u8> = (0..len).map(|_| rng.gen_range(1..=255)).collect();
                sub.write(f.ino, at, &data, &ROOT).unwrap();
                let end = at as usize + data.len();
                if model.len() < end {
                    model.resize(end, 0);
                }
                model[at as usize..end].copy_from_slice(&data);
            }
            6 => {
                let at = rng.gen_range(0..(model.len() as u64 + 20_000));
                let len = rng.gen_range(1..50_000);
                sub.fallocate(f.ino, 0, at, len).unwrap();
                model.resize(model.len().max((at + len) as usize), 0);
            }
            7 if !model.is_empty() => {
                let at = rng.gen_range(0..model.len() as u64);
                let len = rng.gen_range(1..30_000);
                sub.fallocate(f.ino, falloc::PUNCH_HOLE | falloc::KEEP_SIZE, at, len)
                    .unwrap();
                let end = model.len().min((at + len) as usize);
                model[at as usize..end].fill(0);
            }
            8 => {
                let size = rng.gen_range(0..(model.len() as u64 + 10_000));
                let attr = tidefs_fs::SetAttr {
                    size: Some(size),
                    ..Default::default()
                };
                sub.setattr(f.ino, &attr, &ROOT).unwrap();
                model.resize(size as usize, 0);
            }
            _ => {}
        }
        let len = model.len() as u64;
        for _ in 0..20 {
            let offset = match rng.gen_range(0..4) {
                0 => rng.gen_range(0..len + 10) / 4096 * 4096,
                _ => rng.gen_range(0..len + 10),
            };
            let want_len = match rng.gen_range(0..4) {
                0 => rng.gen_range(0..16),
                1 => rng.gen_range(1..5) * 4096,
                _ => rng.gen_range(0..len + 9000),
            };
            let end = (offset + want_len).min(len).max(offset);
            let expected = model.get(offset as usize..end as usize).unwrap_or(&[]);
            let got = sub.read(f.ino, offset, want_len).unwrap();
            assert!(
                got == expected,
                "step {step}: read {want_len} at {offset} of {len} differs"
            );
            // A buffer full of garbage: holes must come back as zeros.
            let mut buf = vec![0xee; want_len as usize];
            let n = sub.read_into(f.ino, offset, &mut buf).unwrap();
            assert_eq!(n, expected.len(), "step {step}: read_into length");
            assert!(
                &buf[..n] == expected,
                "step {step}: read_into {want_len} at {offset} of {len} differs"
            );
        }
    }
    assert_clean(&fs);
}

#[test]
fn reads_of_any_range_match_the_bytes_written() {
    for seed in seeds(SEEDS) {
        run_seeded("reads_of_any_range_match_the_bytes_written", seed, run);
    }
}
