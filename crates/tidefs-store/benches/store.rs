//! Store benchmark: prints the figures issue 2 asks for, side by side with redb where the
//! workload is the same. Run with `cargo bench -p tidefs-store --bench store`.
//! `TIDEFS_BENCH_RECORDS` changes the record count (default 1,000,000). The allocator is
//! mimalloc, as in the `tidefs` binary. `TIDEFS_BENCH_ONLY_INSERTS=1` stops after the inserts
//! (for profiling them); `=many` runs only `insert_many` with pipelined commits.
//! `TIDEFS_BENCH_ONLY_LOOKUPS=1` fills the tree and times lookups only.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use redb::TableDefinition;
use tidefs_store::{BlockDevice, CreateOptions, FileDevice, OpenOptions, Pool, StoreError, TreeId};

const BATCH: usize = 100_000;
const VALUE: [u8; 100] = [0x5a; 100];
const TABLE: TableDefinition<u64, &[u8]> = TableDefinition::new("bench");

/// The pool file without flushes: to time a commit excluding the flush itself.
struct NoFlush(FileDevice);

impl BlockDevice for NoFlush {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.0.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.0.write_at(offset, buf)
    }
    fn flush(&self) -> io::Result<()> {
        Ok(())
    }
    fn size_bytes(&self) -> io::Result<u64> {
        self.0.size_bytes()
    }
    fn grow(&self, bytes: u64) -> io::Result<()> {
        self.0.grow(bytes)
    }
}

fn per_sec(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// How [`fill`] hands a batch to the store.
#[derive(Clone, Copy, PartialEq)]
enum Insert {
    /// `WriteTxn::insert` per record, in the order given.
    OneByOne,
    /// `WriteTxn::insert_many` per batch (applied in key order).
    Many,
}

/// How [`fill`] commits each batch.
#[derive(Clone, Copy, PartialEq)]
enum Commit {
    /// `Pool::commit`: the batch is durable before the next one starts.
    Wait,
    /// `Pool::start_commit`: the commit lands on a second thread while the next batch goes
    /// in; the last one is waited for, so every batch is durable when the time is taken.
    Pipelined,
}

/// Inserts `keys` in transactions of `batch` records, committing each; returns the time
/// spent inside the transactions and the total.
fn fill(
    pool: &Pool,
    tree: TreeId,
    keys: &[u64],
    batch: usize,
    how: Insert,
    commit: Commit,
) -> (Duration, Duration) {
    let mut in_memory = Duration::ZERO;
    let mut landing: Option<std::thread::JoinHandle<()>> = None;
    let start = Instant::now();
    for chunk in keys.chunks(batch) {
        let t = Instant::now();
        pool.write(|w| -> Result<(), StoreError> {
            match how {
                Insert::OneByOne => {
                    for k in chunk {
                        w.insert(tree, &k.to_be_bytes(), &VALUE)?;
                    }
                }
                Insert::Many => {
                    let records: Vec<([u8; 8], &[u8])> = chunk
                        .iter()
                        .map(|k| (k.to_be_bytes(), &VALUE[..]))
                        .collect();
                    w.insert_many(tree, &records)?;
                }
            }
            Ok(())
        })
        .unwrap();
        in_memory += t.elapsed();
        if commit == Commit::Pipelined {
            // Lands the commit before, if its thread has not yet.
            let started = pool
                .start_commit()
                .unwrap()
                .expect("a batch changed something");
            if let Some(t) = landing.take() {
                t.join().unwrap();
            }
            landing = Some(std::thread::spawn(move || {
                started.land().unwrap();
            }));
        } else {
            pool.commit().unwrap();
        }
    }
    if let Some(t) = landing.take() {
        t.join().unwrap();
    }
    (in_memory, start.elapsed())
}

fn redb_fill(db: &redb::Database, keys: &[u64], batch: usize) -> Duration {
    let start = Instant::now();
    for chunk in keys.chunks(batch) {
        let txn = db.begin_write().unwrap();
        {
            let mut table = txn.open_table(TABLE).unwrap();
            for k in chunk {
                table.insert(k, VALUE.as_slice()).unwrap();
            }
        }
        txn.commit().unwrap();
    }
    start.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let records: usize = std::env::var("TIDEFS_BENCH_RECORDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir_in(
        std::env::var("TIDEFS_BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into()),
    )
    .unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut keys: Vec<u64> = (0..records as u64)
        .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .collect();
    keys.shuffle(&mut rng);
    println!("tidefs-store benchmark: {records} records, 8-byte keys, 100-byte values, batches of {BATCH}, files in {}", dir.path().display());

    // Inserts.
    let path = dir.path().join("pool.img");
    let device = Arc::new(FileDevice::open(&path, true).unwrap());
    let pool = Pool::create(device, &CreateOptions::default(), &OpenOptions::default()).unwrap();
    let tree = pool.write(|w| w.create_tree()).unwrap();
    pool.commit().unwrap();
    if std::env::var("TIDEFS_BENCH_ONLY_LOOKUPS").is_ok() {
        // For profiling lookups: fill, then look up at random five times over.
        fill(&pool, tree, &keys, BATCH, Insert::Many, Commit::Pipelined);
        let read = pool.read();
        let view = read.tree(tree).unwrap();
        for _ in 0..5 {
            let start = Instant::now();
            for _ in 0..records {
                let k = keys[rng.gen_range(0..keys.len())];
                std::hint::black_box(view.get_with(&k.to_be_bytes(), |v| v.len()).unwrap());
            }
            println!(
                "lookup tidefs {:>12.0} /s",
                per_sec(records, start.elapsed())
            );
        }
        return;
    }
    if std::env::var("TIDEFS_BENCH_ONLY_INSERTS").as_deref() == Ok("many") {
        // For profiling insert_many alone.
        let (mem, total) = fill(&pool, tree, &keys, BATCH, Insert::Many, Commit::Pipelined);
        println!(
            "insert_many (random), pipelined tidefs {:>9.0} rec/s with commits ({:.0} rec/s in-memory part)",
            per_sec(records, total),
            per_sec(records, mem)
        );
        return;
    }
    let (mem, total) = fill(&pool, tree, &keys, BATCH, Insert::OneByOne, Commit::Wait);
    let tidefs_insert = per_sec(records, total);
    println!(
        "insert (random)   tidefs {:>12.0} rec/s with commits ({:.0} rec/s in-memory part)",
        tidefs_insert,
        per_sec(records, mem)
    );
    let seq_tree = pool.write(|w| w.create_tree()).unwrap();
    let seq_keys: Vec<u64> = (0..records as u64).collect();
    let (seq_mem, seq_total) = fill(
        &pool,
        seq_tree,
        &seq_keys,
        BATCH,
        Insert::OneByOne,
        Commit::Wait,
    );
    println!(
        "insert (in order) tidefs {:>12.0} rec/s with commits ({:.0} rec/s in-memory part)",
        per_sec(records, seq_total),
        per_sec(records, seq_mem)
    );
    pool.write(|w| w.delete_tree(seq_tree)).unwrap();
    pool.commit().unwrap();
    for (label, how, commit) in [
        (
            "insert (random), pipelined commits",
            Insert::OneByOne,
            Commit::Pipelined,
        ),
        (
            "insert_many (random)              ",
            Insert::Many,
            Commit::Wait,
        ),
        (
            "insert_many (random), pipelined   ",
            Insert::Many,
            Commit::Pipelined,
        ),
    ] {
        let t = pool.write(|w| w.create_tree()).unwrap();
        let (mem, total) = fill(&pool, t, &keys, BATCH, how, commit);
        println!(
            "{label} tidefs {:>9.0} rec/s with commits ({:.0} rec/s in-memory part)",
            per_sec(records, total),
            per_sec(records, mem)
        );
        pool.write(|w| w.delete_tree(t)).unwrap();
        pool.commit().unwrap();
    }
    let bulk_tree = pool.write(|w| w.create_tree()).unwrap();
    let (_, bulk_total) = fill(
        &pool,
        bulk_tree,
        &keys,
        records,
        Insert::OneByOne,
        Commit::Wait,
    );
    pool.write(|w| w.delete_tree(bulk_tree)).unwrap();
    pool.commit().unwrap();

    let redb_path = dir.path().join("redb.db");
    let db = redb::Database::create(&redb_path).unwrap();
    let redb_insert = per_sec(records, redb_fill(&db, &keys, BATCH));
    println!(
        "insert (random)   redb   {:>12.0} rec/s with commits   ratio tidefs/redb {:.2}",
        redb_insert,
        tidefs_insert / redb_insert
    );
    let bulk_path = dir.path().join("redb-bulk.db");
    let bulk_db = redb::Database::create(&bulk_path).unwrap();
    let redb_bulk = per_sec(records, redb_fill(&bulk_db, &keys, records));
    drop(bulk_db);
    std::fs::remove_file(&bulk_path).ok();
    println!(
        "insert (random), one transaction of all: tidefs {:.0} rec/s, redb {:.0} rec/s, ratio {:.2}",
        per_sec(records, bulk_total),
        redb_bulk,
        per_sec(records, bulk_total) / redb_bulk
    );
    if std::env::var("TIDEFS_BENCH_ONLY_INSERTS").is_ok() {
        return; // for profiling the insert path alone
    }

    // Random point lookups from cache.
    let probes: Vec<u64> = (0..records)
        .map(|_| keys[rng.gen_range(0..keys.len())])
        .collect();
    let read = pool.read();
    let view = read.tree(tree).unwrap();
    for k in probes.iter().take(records / 4) {
        view.get(&k.to_be_bytes()).unwrap().unwrap(); // warm
    }
    let start = Instant::now();
    for k in &probes {
        std::hint::black_box(view.get(&k.to_be_bytes()).unwrap().unwrap());
    }
    let tidefs_get_copy = per_sec(probes.len(), start.elapsed());
    // As redb's lookup below: the value read where it lies.
    let start = Instant::now();
    for k in &probes {
        std::hint::black_box(
            view.get_with(&k.to_be_bytes(), |v| v.len())
                .unwrap()
                .unwrap(),
        );
    }
    let tidefs_get = per_sec(probes.len(), start.elapsed());
    // Readers never block each other: the same lookups split over two threads.
    let start = Instant::now();
    std::thread::scope(|s| {
        for half in probes.chunks(probes.len().div_ceil(2)) {
            let view = view.clone();
            s.spawn(move || {
                for k in half {
                    std::hint::black_box(
                        view.get_with(&k.to_be_bytes(), |v| v.len())
                            .unwrap()
                            .unwrap(),
                    );
                }
            });
        }
    });
    let tidefs_get2 = per_sec(probes.len(), start.elapsed());
    drop(view);
    drop(read);
    let rtxn = db.begin_read().unwrap();
    let table = rtxn.open_table(TABLE).unwrap();
    for k in probes.iter().take(records / 4) {
        table.get(k).unwrap().unwrap();
    }
    let start = Instant::now();
    for k in &probes {
        std::hint::black_box(table.get(k).unwrap().unwrap().value().len());
    }
    let redb_get = per_sec(probes.len(), start.elapsed());
    println!(
        "lookup            tidefs {:>12.0} /s   redb {:>12.0} /s   ratio {:.2}   (both read the value in place)",
        tidefs_get,
        redb_get,
        tidefs_get / redb_get
    );
    println!("lookup, copying the record (get) tidefs {tidefs_get_copy:>9.0} /s");
    println!("lookup, 2 threads tidefs {tidefs_get2:>12.0} /s");
    drop(table);
    drop(rtxn);
    drop(db);

    // Commit of 10 changed records, with and without the flush.
    let commit10 = |pool: &Pool| {
        let mut times = Vec::new();
        for round in 0..50u8 {
            pool.write(|w| -> Result<(), StoreError> {
                for k in keys.iter().skip(round as usize * 10).take(10) {
                    w.insert(tree, &k.to_be_bytes(), &[round; 100])?;
                }
                Ok(())
            })
            .unwrap();
            let t = Instant::now();
            pool.commit().unwrap();
            times.push(t.elapsed());
        }
        median(times)
    };
    let with_flush = commit10(&pool);
    drop(pool);
    let noflush = Pool::open(
        Arc::new(NoFlush(FileDevice::open(&path, false).unwrap())),
        &OpenOptions::default(),
    )
    .unwrap();
    let without_flush = commit10(&noflush);
    println!(
        "commit 10 records {:.3} ms without flush, {:.3} ms with flush (median of 50)",
        ms(without_flush),
        ms(with_flush)
    );
    drop(noflush);

    // Snapshot and diff at this size and at 10k records.
    let pool = Pool::open(
        Arc::new(FileDevice::open(&path, false).unwrap()),
        &OpenOptions::default(),
    )
    .unwrap();
    let small = pool.write(|w| w.create_tree()).unwrap();
    fill(
        &pool,
        small,
        &keys[..10_000],
        BATCH,
        Insert::OneByOne,
        Commit::Wait,
    );
    for (name, t) in [("10k", small), ("full", tree)] {
        let start = Instant::now();
        let snap_a = pool.write(|w| w.snapshot_tree(t, true)).unwrap();
        let snap_op = start.elapsed();
        pool.commit().unwrap();
        let snap_total = start.elapsed();
        pool.write(|w| -> Result<(), StoreError> {
            for k in keys.iter().take(10) {
                w.insert(t, &k.to_be_bytes(), &[9u8; 100])?;
            }
            Ok(())
        })
        .unwrap();
        let snap_b = pool.write(|w| w.snapshot_tree(t, true)).unwrap();
        pool.commit().unwrap();
        let read = pool.read();
        let (a, b) = (read.tree(snap_a).unwrap(), read.tree(snap_b).unwrap());
        let mut times = Vec::new();
        let mut found = 0;
        for _ in 0..20 {
            let start = Instant::now();
            found = a.diff(&b).unwrap().count();
            times.push(start.elapsed());
        }
        println!(
            "snapshot ({name:>4})   {:.3} ms (+ commit with flush: {:.3} ms); diff of 10 changes: {:.3} ms ({found} entries)",
            ms(snap_op),
            ms(snap_total),
            ms(median(times))
        );
    }
    drop(pool);

    // fsck of everything (the full tree, the 10k tree and four snapshots).
    let pool = Pool::open(
        Arc::new(FileDevice::open(&path, false).unwrap()),
        &OpenOptions::default(),
    )
    .unwrap();
    let start = Instant::now();
    let report = tidefs_store::fsck(&pool, &mut |_| {}).unwrap();
    println!(
        "fsck              {:.3} s for {} nodes, {} records, clean: {}",
        start.elapsed().as_secs_f64(),
        report.nodes,
        report.records,
        report.is_clean()
    );
}
