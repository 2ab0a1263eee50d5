//! Random operation sequences through real system calls give the same results (values and
//! errno) and the same final tree on a tidefs mount as on a host directory. The seed is
//! printed on failure; `TIDEFS_SEED=N` replays one.

mod mount_common;

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use mount_common::{pattern, TestPool};

/// Operations per seed.
const OPS_PER_SEED: usize = 400;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }

    /// A path of up to two directory names ("a", "b") and a leaf, so that operations
    /// collide often and most of them find their parents.
    fn path(&mut self) -> String {
        self.path_with_leaf(&["a", "b", "x", "y", "z"])
    }

    /// A path whose leaf is usually a file name (sometimes a directory's, to collide).
    fn file_path(&mut self) -> String {
        self.path_with_leaf(&["x", "y", "z", "x", "y", "z", "x", "y", "z", "a"])
    }

    /// A path whose last name is one directories are usually made under.
    fn dir_path(&mut self) -> String {
        self.path_with_leaf(&["a", "b"])
    }

    fn path_with_leaf(&mut self, leaves: &[&str]) -> String {
        let depth = [0, 0, 1, 1, 2][self.below(5) as usize];
        let mut parts: Vec<&str> = (0..depth).map(|_| self.pick(&["a", "b"])).collect();
        parts.push(self.pick(leaves));
        parts.join("/")
    }
}

#[derive(Debug)]
enum Op {
    Create {
        path: String,
        len: usize,
        mode: u32,
    },
    WriteAt {
        path: String,
        offset: u64,
        len: usize,
    },
    Append {
        path: String,
        len: usize,
    },
    Truncate {
        path: String,
        size: u64,
    },
    Read {
        path: String,
    },
    Mkdir {
        path: String,
        mode: u32,
    },
    Rmdir {
        path: String,
    },
    Unlink {
        path: String,
    },
    Rename {
        from: String,
        to: String,
        flags: u32,
    },
    Link {
        from: String,
        to: String,
    },
    Symlink {
        target: String,
        path: String,
    },
    Readlink {
        path: String,
    },
    Chmod {
        path: String,
        mode: u32,
    },
    Stat {
        path: String,
    },
    Readdir {
        path: String,
    },
}

fn random_op(r: &mut Rng) -> Op {
    match r.below(100) {
        0..=14 => Op::Create {
            path: r.file_path(),
            len: [0, 10, 3000, 5000, 70_000][r.below(5) as usize],
            mode: [0o644, 0o600, 0o755][r.below(3) as usize],
        },
        15..=24 => Op::WriteAt {
            path: r.path(),
            offset: [0, 100, 4095, 4096, 9000, 200_000][r.below(6) as usize],
            len: [1, 100, 4096, 10_000][r.below(4) as usize],
        },
        25..=27 => Op::Append {
            path: r.path(),
            len: 1 + r.below(5000) as usize,
        },
        28..=33 => Op::Truncate {
            path: r.path(),
            size: [0, 1, 4096, 5000, 100_000][r.below(5) as usize],
        },
        34..=43 => Op::Read { path: r.path() },
        44..=53 => Op::Mkdir {
            path: r.dir_path(),
            mode: [0o755, 0o700, 0o1777][r.below(3) as usize],
        },
        54..=58 => Op::Rmdir { path: r.dir_path() },
        59..=65 => Op::Unlink { path: r.path() },
        66..=75 => Op::Rename {
            from: r.path(),
            to: r.path(),
            flags: [0, 0, 0, 1, 2][r.below(5) as usize],
        },
        76..=79 => Op::Link {
            from: r.path(),
            to: r.file_path(),
        },
        80..=82 => Op::Symlink {
            target: r.path(),
            path: r.file_path(),
        },
        83..=84 => Op::Readlink { path: r.path() },
        85..=87 => Op::Chmod {
            path: r.path(),
            mode: [0o644, 0o700, 0o4755, 0o2755][r.below(4) as usize],
        },
        88..=95 => Op::Stat { path: r.path() },
        _ => Op::Readdir { path: r.dir_path() },
    }
}

type Outcome = Result<String, i32>;

fn errno(e: std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(-1)
}

fn describe(m: &fs::Metadata) -> String {
    let ft = m.file_type();
    let kind = if ft.is_dir() {
        "dir"
    } else if ft.is_symlink() {
        "symlink"
    } else {
        "file"
    };
    // Directory sizes are file-system specific (ext4 counts blocks, tidefs name bytes).
    let size = if ft.is_dir() { 0 } else { m.len() };
    format!(
        "{kind} mode {:o} size {size} nlink {}",
        m.mode() & 0o7777,
        m.nlink()
    )
}

fn apply(root: &Path, op: &Op, seed: u64) -> Outcome {
    let p = |s: &str| root.join(s);
    let r: std::io::Result<String> = (|| match op {
        Op::Create { path, len, mode } => {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(*mode)
                .open(p(path))?;
            f.write_all(&pattern(seed ^ *len as u64, *len))?;
            Ok(String::new())
        }
        Op::WriteAt { path, offset, len } => {
            let f = OpenOptions::new().write(true).open(p(path))?;
            std::os::unix::fs::FileExt::write_all_at(&f, &pattern(seed ^ offset, *len), *offset)?;
            Ok(String::new())
        }
        Op::Append { path, len } => {
            let mut f = OpenOptions::new().append(true).open(p(path))?;
            f.write_all(&pattern(seed, *len))?;
            Ok(String::new())
        }
        Op::Truncate { path, size } => {
            OpenOptions::new()
                .write(true)
                .open(p(path))?
                .set_len(*size)?;
            Ok(String::new())
        }
        Op::Read { path } => {
            let data = fs::read(p(path))?;
            Ok(format!("{} bytes, crc {:08x}", data.len(), crc(&data)))
        }
        Op::Mkdir { path, mode } => {
            fs::create_dir(p(path))?;
            fs::set_permissions(p(path), fs::Permissions::from_mode(*mode))?;
            Ok(String::new())
        }
        Op::Rmdir { path } => fs::remove_dir(p(path)).map(|_| String::new()),
        Op::Unlink { path } => fs::remove_file(p(path)).map(|_| String::new()),
        Op::Rename { from, to, flags } => {
            let cwd = rustix::fs::CWD;
            rustix::fs::renameat_with(
                cwd,
                p(from),
                cwd,
                p(to),
                rustix::fs::RenameFlags::from_bits_retain(*flags),
            )
            .map_err(|e| std::io::Error::from_raw_os_error(e.raw_os_error()))?;
            Ok(String::new())
        }
        Op::Link { from, to } => fs::hard_link(p(from), p(to)).map(|_| String::new()),
        Op::Symlink { target, path } => {
            std::os::unix::fs::symlink(target, p(path)).map(|_| String::new())
        }
        Op::Readlink { path } => Ok(fs::read_link(p(path))?.display().to_string()),
        Op::Chmod { path, mode } => {
            fs::set_permissions(p(path), fs::Permissions::from_mode(*mode))?;
            Ok(String::new())
        }
        Op::Stat { path } => Ok(describe(&fs::symlink_metadata(p(path))?)),
        Op::Readdir { path } => {
            let mut names: Vec<String> = fs::read_dir(p(path))?
                .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect::<Result<_, _>>()?;
            names.sort();
            Ok(names.join(","))
        }
    })();
    r.map_err(errno)
}

fn crc(data: &[u8]) -> u32 {
    // FNV-1a folded to 32 bits: enough to tell contents apart in a message.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    (h ^ (h >> 32)) as u32
}

/// Everything observable about a tree: per path, type, mode, size, links, contents.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, rel: &str, out: &mut BTreeMap<String, String>) {
        for e in fs::read_dir(root.join(rel)).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            let rel = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let m = fs::symlink_metadata(root.join(&rel)).unwrap();
            let mut d = describe(&m);
            if m.file_type().is_symlink() {
                d += &format!(" -> {}", fs::read_link(root.join(&rel)).unwrap().display());
            } else if m.is_file() {
                d += &format!(" crc {:08x}", crc(&fs::read(root.join(&rel)).unwrap()));
            }
            out.insert(rel.clone(), d);
            if m.is_dir() {
                walk(root, &rel, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, "", &mut out);
    out
}

/// The mount's extra arguments for a transport: "uring" (the default: FUSE over io_uring
/// where the kernel offers it) or "dev" (/dev/fuse reads).
fn transport_args(transport: &str) -> &'static [&'static str] {
    match transport {
        "dev" => &["--no-io-uring"],
        _ => &[],
    }
}

fn run_seed(seed: u64, transport: &str) {
    let mut p = TestPool::new();
    let host = p.mkdir("host");
    let mnt = p.mount("home", "mnt", transport_args(transport));
    let mut rng = Rng(seed);
    let mut errnos = BTreeMap::new();
    // Start from a populated tree so that random operations mostly find what they name.
    let mut ops: Vec<Op> = Vec::new();
    for d in ["a", "b", "a/a", "a/b", "b/a", "b/b"] {
        ops.push(Op::Mkdir {
            path: d.into(),
            mode: 0o755,
        });
        for f in ["x", "y"] {
            ops.push(Op::Create {
                path: format!("{d}/{f}"),
                len: 3000,
                mode: 0o644,
            });
        }
    }
    ops.extend((0..OPS_PER_SEED).map(|_| random_op(&mut rng)));
    for (i, op) in ops.into_iter().enumerate() {
        let want = apply(&host, &op, seed);
        let got = apply(&mnt, &op, seed);
        assert_eq!(
            got, want,
            "seed {seed}, op {i}: {op:?} (left: tidefs, right: host)"
        );
        *errnos.entry(want.err().unwrap_or(0)).or_insert(0usize) += 1;
    }
    // The sequence must exercise both paths: many successes and several distinct errors.
    eprintln!("seed {seed} ({transport}): outcomes by errno (0 = success): {errnos:?}");
    assert!(
        errnos.get(&0).copied().unwrap_or(0) >= OPS_PER_SEED / 5,
        "{errnos:?}"
    );
    assert!(errnos.len() >= 4, "{errnos:?}");
    assert_eq!(
        snapshot(&mnt),
        snapshot(&host),
        "seed {seed}: final trees differ"
    );
    // The same tree after a remount (so nothing was only in the kernel's caches).
    p.unmount(&mnt);
    p.fsck_clean();
    let mnt = p.mount("home", "mnt", transport_args(transport));
    assert_eq!(
        snapshot(&mnt),
        snapshot(&host),
        "seed {seed}: tree differs after remount"
    );
}

#[test]
fn random_operations_match_the_host_file_system() {
    require_fuse!();
    // Both ways requests reach the server: io_uring queues (where the kernel offers them;
    // otherwise /dev/fuse again) and /dev/fuse reads.
    let runs: Vec<(u64, String)> = match std::env::var("TIDEFS_SEED") {
        Ok(s) => vec![(
            s.parse().expect("TIDEFS_SEED must be a number"),
            std::env::var("TIDEFS_TRANSPORT").unwrap_or_else(|_| "uring".into()),
        )],
        Err(_) => {
            let base = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64;
            (0..4)
                .map(|i| {
                    let transport = if i % 2 == 0 { "uring" } else { "dev" };
                    (base.wrapping_add(i), transport.to_string())
                })
                .collect()
        }
    };
    for (seed, transport) in runs {
        if let Err(e) = std::panic::catch_unwind(|| run_seed(seed, &transport)) {
            eprintln!(
                "\nmount model test failed with seed {seed}; replay with TIDEFS_SEED={seed} \
                 TIDEFS_TRANSPORT={transport}\n"
            );
            std::panic::resume_unwind(e);
        }
    }
}
