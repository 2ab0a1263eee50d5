//! File-system benchmarks, printed as a table (run: `cargo bench -p tidefs-fs`):
//! import and export of T100k (100 dirs × 10 subdirs × 100 files of 100 random bytes)
//! against `rsync -a` of the same tree in the same run, snapshot creation at 100k files,
//! diff of two snapshots that differ in 12 paths, and 2 GiB file import/export throughput.
//! `TIDEFS_BENCH_1M=1` adds the diff at 1M files; `TIDEFS_BENCH_BIG_GIB` sets the big
//! file's size; `TIDEFS_BENCH_ONLY_BIG=1` runs only the big file. Pools live on disk (a temporary directory), commits included in timings.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use tidefs_fs::{Caller, Fs, Subvol, SystemClock, ROOT_INO};
use tidefs_store::{CreateOptions, OpenOptions, Pool};

/// Wall time and this process's CPU time (all threads) of one step. The machine is
/// shared, so CPU time is the steadier figure; rsync's is not measured (another process).
#[derive(Clone, Copy)]
struct Took {
    wall: Duration,
    cpu: Option<Duration>,
}

fn cpu_now() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Took) {
    let (t, c) = (Instant::now(), cpu_now());
    let v = f();
    let took = Took {
        wall: t.elapsed(),
        cpu: Some(cpu_now() - c),
    };
    (v, took)
}

fn row(what: &str, d: Took, note: &str) {
    let cpu = d
        .cpu
        .map_or(String::from("-"), |c| format!("{:.3} s", c.as_secs_f64()));
    println!(
        "{what:<52} {:>9.3} s {cpu:>10}  {note}",
        d.wall.as_secs_f64()
    );
}

fn make_t100k(root: &Path) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(100_000);
    let mut data = [0u8; 100];
    for d in 0..100 {
        for s in 0..10 {
            let dir = root.join(format!("d{d:03}/s{s}"));
            std::fs::create_dir_all(&dir).unwrap();
            for f in 0..100 {
                rng.fill(&mut data[..]);
                std::fs::write(dir.join(format!("f{f:03}")), data).unwrap();
            }
        }
    }
}

fn rsync(src: &Path, dst: &Path) -> Took {
    let (status, d) = timed(|| {
        Command::new("rsync")
            .arg("-a")
            .arg(format!("{}/", src.display()))
            .arg(dst)
            .status()
    });
    match status {
        Ok(s) if s.success() => Took {
            wall: d.wall,
            cpu: None,
        },
        _ => {
            println!("rsync is not available (apt-get install rsync); no comparison");
            Took {
                wall: Duration::ZERO,
                cpu: None,
            }
        }
    }
}

fn new_fs(dir: &Path) -> (Fs, Subvol) {
    let pool = Pool::create_at(dir, &CreateOptions::default(), &OpenOptions::default()).unwrap();
    let fs = Fs::format(pool, Arc::new(SystemClock)).unwrap();
    fs.create_subvolume("main", &Caller::ROOT).unwrap();
    let sub = fs.subvolume("main").unwrap();
    (fs, sub)
}

/// Twelve path changes of every kind.
fn twelve_changes(sub: &Subvol, prefix: &str) {
    let root = Caller::ROOT;
    for i in 0..4 {
        let d = sub
            .resolve(format!("{prefix}/d{i:03}/s0").as_bytes())
            .unwrap();
        sub.create(d, b"new-file", 0o644, &root).unwrap();
        let f = sub
            .resolve(format!("{prefix}/d{:03}/s1/f000", i + 10).as_bytes())
            .unwrap();
        sub.write(f, 0, b"modified", &root).unwrap();
    }
    for i in 0..2 {
        let d = sub
            .resolve(format!("{prefix}/d{:03}/s2", i + 20).as_bytes())
            .unwrap();
        sub.rename(d, b"f000", d, b"renamed", 0, &root).unwrap();
        let d = sub
            .resolve(format!("{prefix}/d{:03}/s3", i + 30).as_bytes())
            .unwrap();
        sub.unlink(d, b"f000", &root).unwrap();
    }
}

fn diff_bench(fs: &Fs, sub: &Subvol, prefix: &str, files: &str) {
    fs.create_snapshot("main", "a").unwrap();
    twelve_changes(sub, prefix);
    fs.create_snapshot("main", "b").unwrap();
    fs.fsync().unwrap();
    let a = fs.snapshot("main", "a").unwrap();
    let b = fs.snapshot("main", "b").unwrap();
    let (lines, d) = timed(|| tidefs_fs::diff(&a, &b).unwrap());
    assert_eq!(lines.len(), 12, "{lines:?}");
    row(
        &format!("diff of two snapshots, 12 changed paths, {files}"),
        d,
        "",
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for a list; there is nothing to test.
    }
    let work = tempfile::tempdir_in(
        std::env::var("TIDEFS_BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into()),
    )
    .unwrap();
    println!("{:<52} {:>11} {:>10}", "step", "wall", "cpu");
    if std::env::var("TIDEFS_BENCH_ONLY_BIG").is_ok() {
        big_file(work.path());
        return;
    }
    let src = work.path().join("t100k");
    let (_, d) = timed(|| make_t100k(&src));
    row("generate T100k on the host", d, "(setup)");

    let dst = work.path().join("rsync-copy");
    let rs = rsync(&src, &dst);
    row("rsync -a T100k", rs, "(reference)");

    let (fs, sub) = new_fs(&work.path().join("pool"));
    let (stats, d) = timed(|| {
        let s = tidefs_fs::import(&sub, &src, &mut |_| {}).unwrap();
        fs.fsync().unwrap();
        s
    });
    assert_eq!(stats.files, 100_000);
    row("tidefs import T100k (commit included)", d, &ratio(d, rs));

    let out = work.path().join("export");
    let (_, d) = timed(|| tidefs_fs::export(&sub, &out, &mut |_| {}).unwrap());
    row("tidefs export T100k", d, &ratio(d, rs));

    let (_, d) = timed(|| {
        fs.create_snapshot("main", "snap").unwrap();
        fs.fsync().unwrap();
    });
    row("snapshot create at 100k files (commit included)", d, "");
    diff_bench(&fs, &sub, "", "100k files");
    drop(sub);
    drop(fs);
    std::fs::remove_dir_all(&dst).ok();
    std::fs::remove_dir_all(&out).ok();

    if std::env::var("TIDEFS_BENCH_1M").is_ok() {
        let (fs, sub) = new_fs(&work.path().join("pool-1m"));
        let (_, d) = timed(|| {
            for i in 0..10 {
                let dir = sub
                    .mkdir(ROOT_INO, format!("r{i}").as_bytes(), 0o755, &Caller::ROOT)
                    .unwrap();
                tidefs_fs::import_into(&sub, dir.ino, &src, &mut |_| {}).unwrap();
            }
            fs.fsync().unwrap();
        });
        row("tidefs import of T100k ten times (1M files)", d, "(setup)");
        diff_bench(&fs, &sub, "/r3", "1M files");
    }

    big_file(work.path());
}

fn ratio(d: Took, reference: Took) -> String {
    if reference.wall.is_zero() {
        String::new()
    } else {
        format!(
            "{:.2}× rsync (wall)",
            d.wall.as_secs_f64() / reference.wall.as_secs_f64()
        )
    }
}

fn big_file(work: &Path) {
    let gib: u64 = std::env::var("TIDEFS_BENCH_BIG_GIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let dir = work.join("big");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("file");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let mut chunk = vec![0u8; 1 << 20];
        for _ in 0..gib * 1024 {
            rng.fill(&mut chunk[..]);
            f.write_all(&chunk).unwrap();
        }
        f.into_inner().unwrap().sync_all().unwrap();
    }
    let bytes = (gib << 30) as f64;
    let (fs, sub) = new_fs(&work.join("pool-big"));
    let (_, d) = timed(|| {
        tidefs_fs::import(&sub, &dir, &mut |_| {}).unwrap();
        fs.fsync().unwrap();
    });
    row(
        &format!("import of a {gib} GiB file (commit included)"),
        d,
        &format!("{:.0} MB/s", bytes / d.wall.as_secs_f64() / 1e6),
    );
    std::fs::remove_file(&path).unwrap();
    let out = work.join("big-out");
    let (_, d) = timed(|| tidefs_fs::export(&sub, &out, &mut |_| {}).unwrap());
    row(
        &format!("export of a {gib} GiB file"),
        d,
        &format!("{:.0} MB/s", bytes / d.wall.as_secs_f64() / 1e6),
    );
    let ino = sub.resolve(b"/file").unwrap();
    assert_eq!(sub.getattr(ino).unwrap().size, gib << 30);
    // The data just imported is still in the page cache; read it cold too where the page
    // cache can be dropped (as root).
    std::fs::remove_dir_all(&out).unwrap();
    let dropped = Command::new("sync").status().is_ok_and(|s| s.success())
        && std::fs::write("/proc/sys/vm/drop_caches", "3\n").is_ok();
    if dropped {
        let (_, d) = timed(|| tidefs_fs::export(&sub, &out, &mut |_| {}).unwrap());
        row(
            &format!("export of a {gib} GiB file, page cache dropped"),
            d,
            &format!("{:.0} MB/s", bytes / d.wall.as_secs_f64() / 1e6),
        );
    } else {
        println!("(export with the page cache dropped: skipped, needs root)");
    }
}
