//! Commits land without the writer lock: writers keep going while a commit's flushes run,
//! readers see a commit only once it is durable, and a commit started on one thread can be
//! landed on another (or by the next commit).

mod common;

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};

use common::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tidefs_store::{BlockDevice, CreateOptions, MemDevice, OpenOptions, Pool, TreeId};

/// A memory device that runs `before_flush` at the start of every flush.
struct HookDevice {
    inner: MemDevice,
    before_flush: Box<dyn Fn(&MemDevice) + Send + Sync>,
}

impl HookDevice {
    fn new(before_flush: impl Fn(&MemDevice) + Send + Sync + 'static) -> HookDevice {
        HookDevice {
            inner: MemDevice::new(),
            before_flush: Box::new(before_flush),
        }
    }
}

impl BlockDevice for HookDevice {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.inner.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.inner.write_at(offset, buf)
    }
    fn flush(&self) -> io::Result<()> {
        (self.before_flush)(&self.inner);
        self.inner.flush()
    }
    fn size_bytes(&self) -> io::Result<u64> {
        self.inner.size_bytes()
    }
    fn grow(&self, bytes: u64) -> io::Result<()> {
        self.inner.grow(bytes)
    }
}

/// Once armed, each flush announces that it has started and waits for a go-ahead.
struct Gate {
    armed: Arc<AtomicBool>,
    entered: Receiver<()>,
    go: Sender<()>,
}

fn gated_pool() -> (Gate, Pool) {
    let (entered_tx, entered) = channel();
    let (go, go_rx) = channel::<()>();
    let armed = Arc::new(AtomicBool::new(false));
    let (entered_tx, go_rx) = (Mutex::new(entered_tx), Mutex::new(go_rx));
    let device = {
        let armed = armed.clone();
        Arc::new(HookDevice::new(move |_| {
            if armed.load(Ordering::SeqCst) {
                entered_tx.lock().unwrap().send(()).unwrap();
                go_rx.lock().unwrap().recv().unwrap();
            }
        }))
    };
    let pool = Pool::create(device, &CreateOptions::default(), &OpenOptions::default()).unwrap();
    (Gate { armed, entered, go }, pool)
}

fn put(pool: &Pool, tree: TreeId, k: &str, v: &str) {
    pool.write(|t| t.insert(tree, k.as_bytes(), v.as_bytes()))
        .unwrap();
}

fn model(tree: TreeId, records: &[(&str, &str)]) -> Model {
    let mut m = Model::new();
    m.insert(
        tree,
        records
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect(),
    );
    m
}

#[test]
fn writers_go_on_and_readers_wait_while_a_commit_lands() {
    let (gate, pool) = gated_pool();
    let tree = pool.write(|t| t.create_tree()).unwrap();
    put(&pool, tree, "a", "1");
    let first = pool.commit().unwrap();
    put(&pool, tree, "b", "2");

    gate.armed.store(true, Ordering::SeqCst);
    let committer = {
        let pool = pool.clone();
        std::thread::spawn(move || pool.commit().unwrap())
    };
    gate.entered.recv().unwrap(); // the commit is written out and flushing

    // The writer lock is free: a write goes into the next transaction.
    put(&pool, tree, "c", "3");
    // Readers still see the last durable state.
    assert_eq!(pool.committed_tid(), first);
    assert_committed_equals(&pool, &model(tree, &[("a", "1")]));

    gate.armed.store(false, Ordering::SeqCst);
    gate.go.send(()).unwrap(); // the flush before the superblock
    let second = committer.join().unwrap();
    assert!(second > first);
    assert_eq!(pool.committed_tid(), second);
    assert_committed_equals(&pool, &model(tree, &[("a", "1"), ("b", "2")]));

    pool.commit().unwrap();
    assert_committed_equals(&pool, &model(tree, &[("a", "1"), ("b", "2"), ("c", "3")]));
    assert_fsck_clean(&pool);
}

#[test]
fn a_started_commit_lands_on_another_thread_or_with_the_next_commit() {
    let (device, pool) = mem_pool();
    let tree = pool.write(|t| t.create_tree()).unwrap();
    pool.commit().unwrap();
    let landed = pool.committed_tid();

    put(&pool, tree, "a", "1");
    let started = pool.start_commit().unwrap().expect("something to commit");
    assert!(started.tid() > landed);
    assert_eq!(pool.committed_tid(), landed, "not durable before it lands");
    assert_committed_equals(&pool, &model(tree, &[]));
    // A view of the latest state shows the commit in flight.
    assert_view_equals(&pool.read_latest(), &model(tree, &[("a", "1")]));
    // Writes go on into the next transaction meanwhile.
    put(&pool, tree, "b", "2");
    let tid = std::thread::spawn(move || started.land().unwrap())
        .join()
        .unwrap();
    assert_eq!(pool.committed_tid(), tid);
    assert_committed_equals(&pool, &model(tree, &[("a", "1")]));

    // A started commit nobody lands is landed by the next one.
    let unlanded = pool.start_commit().unwrap().expect("b is new");
    drop(unlanded);
    put(&pool, tree, "c", "3");
    let next = pool.start_commit().unwrap().expect("c is new");
    assert_committed_equals(&pool, &model(tree, &[("a", "1"), ("b", "2")]));
    next.land().unwrap();
    assert_committed_equals(&pool, &model(tree, &[("a", "1"), ("b", "2"), ("c", "3")]));

    // Nothing new: `commit` lands what is in flight and reports it.
    put(&pool, tree, "d", "4");
    let in_flight = pool.start_commit().unwrap().unwrap().tid();
    assert_eq!(pool.commit().unwrap(), in_flight);
    assert!(pool.start_commit().unwrap().is_none());

    // A commit still in flight when the pool goes away is simply not there on reopen.
    put(&pool, tree, "e", "5");
    let lost = pool.start_commit().unwrap().unwrap();
    drop(lost);
    drop(pool);
    let pool = Pool::open(device, &OpenOptions::default()).unwrap();
    assert_committed_equals(
        &pool,
        &model(tree, &[("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")]),
    );
    assert_fsck_clean(&pool);
}

/// The next commit writes its nodes while the one before is still landing, so those nodes
/// must avoid every block the last landed state reaches, including blocks the commit in
/// flight freed. A small pool that cannot grow makes the allocator come round to such
/// blocks; a power cut just before the landing's superblock must then open as the last
/// landed state, intact.
const KEYS: usize = 3500;

#[test]
fn a_commit_written_during_a_landing_spares_the_landed_state() {
    // While capturing, each flush keeps the image at its start: what the disk could hold
    // if the power failed there with every write so far landed.
    let capture = Arc::new(AtomicBool::new(false));
    let images = Arc::new(Mutex::new(Vec::new()));
    let device = {
        let (capture, images) = (capture.clone(), images.clone());
        Arc::new(HookDevice::new(move |inner: &MemDevice| {
            if capture.load(Ordering::SeqCst) {
                images.lock().unwrap().push(inner.image());
            }
        }))
    };
    let size = 4 << 20;
    let pool = Pool::create(
        device.clone(),
        &CreateOptions {
            initial_bytes: size,
            max_bytes: Some(size),
        },
        &OpenOptions::default(),
    )
    .unwrap();
    let tree = pool.write(|t| t.create_tree()).unwrap();
    // Each round rewrites a random part of the tree, so the blocks freed by each commit lie
    // scattered and the allocator soon comes round to blocks freed by the commit in flight.
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut records: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut versions: Vec<Model> = Vec::new();
    let mut write_version = |round: usize| {
        let changed: Vec<Vec<u8>> = if round == 0 {
            (0..KEYS)
                .map(|i| format!("key{i:05}").into_bytes())
                .collect()
        } else {
            (0..20)
                .map(|_| format!("key{:05}", rng.gen_range(0..KEYS)).into_bytes())
                .collect()
        };
        pool.write(|t| -> Result<(), tidefs_store::StoreError> {
            for k in &changed {
                t.insert(tree, k, &[round as u8; 100])?;
            }
            Ok(())
        })
        .unwrap();
        for k in changed {
            records.insert(k, vec![round as u8; 100]);
        }
        Model::from([(tree, records.clone())])
    };
    versions.push(write_version(0));
    pool.commit().unwrap();
    versions.push(write_version(1));
    let mut in_flight = pool.start_commit().unwrap().unwrap();
    for round in 2..40 {
        versions.push(write_version(round));
        capture.store(true, Ordering::SeqCst);
        // Writes this round's nodes, then lands round - 1: flush, superblock, flush.
        let next = pool.start_commit().unwrap().unwrap();
        capture.store(false, Ordering::SeqCst);
        let images = std::mem::take(&mut *images.lock().unwrap());
        assert_eq!(images.len(), 2, "round {round}: the landing flushes twice");
        for (image, landed) in images.into_iter().zip([round - 2, round - 1]) {
            let cut = Pool::open(
                Arc::new(MemDevice::from_image(image)),
                &OpenOptions::default(),
            )
            .unwrap_or_else(|e| panic!("round {round}: power cut image does not open: {e}"));
            assert_committed_equals(&cut, &versions[landed]);
            assert_fsck_clean(&cut);
        }
        drop(in_flight);
        in_flight = next;
    }
    in_flight.land().unwrap();
    assert_committed_equals(&pool, &versions[39]);
    assert_fsck_clean(&pool);
}
