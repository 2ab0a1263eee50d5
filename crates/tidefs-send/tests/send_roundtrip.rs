//! Round-trip property: random trees and random change sequences of every kind (creations,
//! deletions, renames and exchanges of files and directories, hard links, type changes at
//! one name, data writes, holes, truncation, preallocation, xattrs, chmod/chown/utimes,
//! symlinks, special files) are sent full, then incrementally twice, into a second pool;
//! every received snapshot must equal its source in every respect. `TIDEFS_SEED` replays
//! one seed; `TIDEFS_SEND_CASES` sets how many seeds run.

mod support;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use support::{
    assert_same_tree, mem_fs, receive_bytes, run_seeded, seeds, send_bytes, source, Ops,
};
use tidefs_stream::StreamVersion;

const NAMES: [&str; 6] = ["a", "b", "c", "d", "e", "f"];

/// Every path of the tree now (directories first come from the walk order).
fn paths(o: &Ops) -> (Vec<String>, Vec<String>) {
    let tree = support::snapshot_tree(o.sub);
    let mut dirs = Vec::new();
    let mut files = Vec::new();
    for (p, n) in tree {
        let p = String::from_utf8(p).unwrap();
        if n.kind == tidefs_fs::FileKind::Directory {
            dirs.push(p);
        } else {
            files.push(p);
        }
    }
    (dirs, files)
}

fn child(dir: &str, name: &str) -> String {
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// One random operation; ones the file system refuses (a name taken, a move into itself,
/// a non-empty rmdir) are simply skipped.
fn random_op(o: &Ops, rng: &mut ChaCha8Rng) {
    let (dirs, files) = paths(o);
    let all: Vec<&String> = dirs.iter().skip(1).chain(files.iter()).collect();
    let dir = &dirs[rng.gen_range(0..dirs.len())];
    let name = NAMES[rng.gen_range(0..NAMES.len())];
    let new_path = child(dir, name);
    let sub = o.sub;
    let root = &support::ROOT;
    let pick_file = |rng: &mut ChaCha8Rng| {
        (!files.is_empty()).then(|| files[rng.gen_range(0..files.len())].clone())
    };
    let regular = |p: &str| {
        sub.getattr(sub.resolve(p.as_bytes()).unwrap())
            .unwrap()
            .kind()
            == tidefs_fs::FileKind::Regular
    };
    let exists = sub.resolve(new_path.as_bytes()).is_ok();
    match rng.gen_range(0..22) {
        0..=2 if !exists => {
            let len = [0usize, 10, 3000, 9000, 70_000][rng.gen_range(0..5)];
            let data: Vec<u8> = (0..len)
                .map(|i| (i as u8).wrapping_mul(rng.gen::<u8>() | 1))
                .collect();
            o.file(&new_path, &data);
        }
        3 | 4 if !exists => {
            o.mkdir(&new_path);
        }
        5 | 6 => {
            if let Some(f) = pick_file(rng).filter(|f| regular(f)) {
                let off = [0u64, 100, 4096, 5000, 65_536, 300_000][rng.gen_range(0..6)];
                let len = rng.gen_range(1..9000);
                o.write(&f, off, &vec![rng.gen::<u8>(); len]);
            }
        }
        7 => {
            if let Some(f) = pick_file(rng).filter(|f| regular(f)) {
                o.truncate(&f, [0u64, 5, 4096, 10_000, 200_000][rng.gen_range(0..5)]);
            }
        }
        8 => {
            if let Some(f) = pick_file(rng).filter(|f| regular(f)) {
                let ino = o.ino(&f);
                let mode = if rng.gen_bool(0.5) { 3 } else { 1 };
                let _ = sub.fallocate(ino, mode, rng.gen_range(0..3) * 4096, 8192);
            }
        }
        9..=11 if !all.is_empty() => {
            let from = all[rng.gen_range(0..all.len())];
            let (fd, fname) = from.rsplit_once('/').unwrap();
            let fd = if fd.is_empty() { "/" } else { fd };
            let (d1, d2) = (o.ino(fd), o.ino(dir));
            let flags = if rng.gen_bool(0.2) {
                tidefs_fs::rename_flags::EXCHANGE
            } else {
                0
            };
            let _ = sub.rename(d1, fname.as_bytes(), d2, name.as_bytes(), flags, root);
        }
        12 if !exists => {
            if let Some(f) = pick_file(rng) {
                let _ = sub.link(o.ino(&f), o.ino(dir), name.as_bytes());
            }
        }
        13 | 14 => {
            if let Some(f) = pick_file(rng) {
                o.rm(&f);
            }
        }
        15 if dirs.len() > 1 => {
            let d = &dirs[rng.gen_range(1..dirs.len())];
            let (pd, n) = d.rsplit_once('/').unwrap();
            let pd = if pd.is_empty() { "/" } else { pd };
            let _ = sub.rmdir(o.ino(pd), n.as_bytes(), root);
        }
        16 if !exists => match rng.gen_range(0..3) {
            0 => o.symlink(&new_path, &format!("../target-{}", rng.gen::<u16>())),
            1 => o.mknod(&new_path, 0o010644, 0),
            _ => o.mknod(&new_path, 0o020600, (1 << 8) | rng.gen_range(0..8)),
        },
        17 if !all.is_empty() => {
            let p = all[rng.gen_range(0..all.len())];
            if sub.getattr(o.ino(p)).unwrap().kind() != tidefs_fs::FileKind::Symlink {
                o.chmod(p, rng.gen_range(0..0o7777));
            }
        }
        18 if !all.is_empty() => {
            let p = all[rng.gen_range(0..all.len())];
            o.chown(p, rng.gen_range(0..3), rng.gen_range(0..3));
        }
        19 => {
            let p = &dirs[rng.gen_range(0..dirs.len())];
            o.utimes(p, rng.gen_range(1_000_000..2_000_000_000));
        }
        20 if !all.is_empty() => {
            let p = all[rng.gen_range(0..all.len())];
            let ino = o.ino(p);
            let name = ["user.k1", "user.k2", "trusted.t"][rng.gen_range(0..3)];
            if rng.gen_bool(0.7) {
                let _ = sub.setxattr(ino, name.as_bytes(), &vec![b'x'; rng.gen_range(0..3000)], 0);
            } else {
                let _ = sub.removexattr(ino, name.as_bytes());
            }
        }
        _ => {
            if let Some(f) = pick_file(rng).filter(|f| regular(f)) {
                o.utimes(&f, rng.gen_range(1_000_000..2_000_000_000));
            }
        }
    }
}

fn round_trip(seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (fs, sub, clock) = source();
    let o = Ops {
        sub: &sub,
        clock: &clock,
    };
    let version = if rng.gen_bool(0.75) {
        StreamVersion::V2
    } else {
        StreamVersion::V1
    };
    let steps = [
        rng.gen_range(5..25),
        rng.gen_range(1..15),
        rng.gen_range(1..15),
    ];
    let (dst, _) = mem_fs();
    let mut prev: Option<tidefs_fs::Subvol> = None;
    for (i, n) in steps.iter().enumerate() {
        for _ in 0..*n {
            random_op(&o, &mut rng);
        }
        let name = format!("s{i}");
        fs.create_snapshot("src", &name).unwrap();
        let snap = fs.snapshot("src", &name).unwrap();
        let stream = send_bytes(&fs, &snap, prev.as_ref(), &[], version);
        if std::env::var("TIDEFS_SEND_DEBUG").is_ok() {
            for c in tidefs_stream::SendStreamReader::new(&stream[..]) {
                let c = format!("{:?}", c.unwrap());
                eprintln!("{}", &c[..c.len().min(200)]);
            }
        }
        let got = receive_bytes(&dst, "dst", &stream);
        assert_same_tree(&snap, &got, version == StreamVersion::V2);
        prev = Some(snap);
    }
    let problems = dst.fsck(true).unwrap();
    assert!(problems.is_empty(), "fsck: {problems:?}");
}

#[test]
fn random_trees_and_changes_round_trip() {
    let cases = std::env::var("TIDEFS_SEND_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    for seed in seeds(cases) {
        run_seeded("random_trees_and_changes_round_trip", seed, round_trip);
    }
}
