//! A pool: one device, its superblocks, space map and trees; the single writer and the
//! readers. Commits are in `commit.rs`.

use std::cell::{RefCell, RefMut};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, ReentrantMutex, ReentrantMutexGuard, RwLock};

use crate::btree::root::Root;
use crate::commit::Flight;
use crate::device::{BlockDevice, FileDevice};
use crate::error::{Result, StoreError};
use crate::ids::Tid;
use crate::layout::{BLOCK_BYTES, PAGE_BLOCKS, POOL_PAGES_MAX};
use crate::node_io::{NodeIo, NODE_CACHE_BYTES_DEFAULT};
use crate::read_txn::{Committed, ReadTxn};
use crate::redo::RedoLog;
use crate::space_map::{FreedRun, SpaceMap, SpaceUsage};
use crate::superblock::Superblock;
use crate::txn::{Savepoint, TxnState, WriteTxn};

/// Name of the data file inside a pool directory.
pub const POOL_FILE_NAME: &str = "pool.img";
/// Name of the lock file inside a pool directory.
pub const LOCK_FILE_NAME: &str = "lock";

const PAGE_BYTES: u64 = PAGE_BLOCKS * BLOCK_BYTES as u64;

/// How a new pool is laid out.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    /// Size the pool starts with (it grows on demand).
    pub initial_bytes: u64,
    /// Size the pool may never exceed (`None`: as far as the device allows).
    pub max_bytes: Option<u64>,
}

impl Default for CreateOptions {
    fn default() -> Self {
        CreateOptions {
            initial_bytes: 64 << 20,
            max_bytes: None,
        }
    }
}

/// How a pool is opened.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// Bytes of decoded nodes kept in memory.
    pub cache_bytes: u64,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            cache_bytes: NODE_CACHE_BYTES_DEFAULT,
        }
    }
}

pub(crate) struct Writer {
    pub txn: TxnState,
    pub space: SpaceMap,
    /// Runs freed by committed transactions, waiting for their commit to land and for
    /// readers to move on.
    pub pending: Vec<FreedRun>,
    /// The superblock of the last commit written out (landed or in flight).
    pub sb: Superblock,
    /// Set while [`Pool::batch`] runs.
    pub batch: Option<OpenBatch>,
}

/// A batch in progress: one savepoint for all of its changes.
pub(crate) struct OpenBatch {
    saved: Savepoint,
    /// An operation of the batch failed (its half-done changes are still in the
    /// transaction), so the batch can only be rolled back.
    failed: bool,
}

/// The writer's state behind a re-entrant lock: the operations inside a [`Pool::batch`]
/// run on the batch's thread and take the lock again. The `RefCell` is only ever
/// borrowed by one call at a time on that thread (no write closure calls back into the
/// writer's own methods).
type WriterCell = ReentrantMutex<RefCell<Writer>>;

pub(crate) struct Shared {
    pub io: Arc<NodeIo>,
    writer: WriterCell,
    /// The last commit that landed (is durable): what readers see.
    pub committed: RwLock<Arc<Committed>>,
    /// The commit written out whose superblock has not landed yet. Held while landing it,
    /// so whoever needs it landed waits here.
    pub flight: Mutex<Option<Flight>>,
    pub readers: Mutex<BTreeMap<Tid, usize>>,
    failed: Mutex<Option<String>>,
    _lock: Option<File>,
}

impl Shared {
    /// Runs `f` on the writer's space map, locked (the writer waits meanwhile).
    pub(crate) fn with_writer_space<T>(&self, f: impl FnOnce(&mut SpaceMap) -> T) -> T {
        let guard = self.writer.lock();
        let mut w = guard.borrow_mut();
        f(&mut w.space)
    }

    pub(crate) fn lock_writer(&self) -> ReentrantMutexGuard<'_, RefCell<Writer>> {
        self.writer.lock()
    }

    pub(crate) fn writer_try_lock(&self) -> Option<ReentrantMutexGuard<'_, RefCell<Writer>>> {
        self.writer.try_lock()
    }

    pub(crate) fn unregister_reader(&self, tid: Tid) {
        let mut readers = self.readers.lock();
        if let Some(n) = readers.get_mut(&tid) {
            *n -= 1;
            if *n == 0 {
                readers.remove(&tid);
            }
        }
    }
}

/// An open pool. Cheap to clone; all clones share one writer and one cache.
#[derive(Clone)]
pub struct Pool {
    pub(crate) shared: Arc<Shared>,
}

impl Pool {
    /// Formats `device` as a new, empty pool and opens it.
    pub fn create(
        device: Arc<dyn BlockDevice>,
        create: &CreateOptions,
        open: &OpenOptions,
    ) -> Result<Pool> {
        Self::format(&*device, create)?;
        Self::open_with_lock(device, open, None)
    }

    fn format(device: &dyn BlockDevice, opts: &CreateOptions) -> Result<()> {
        let mut max_pages = opts.max_bytes.map_or(0, |b| b / PAGE_BYTES);
        if let Some(cap) = device.capacity_bytes() {
            let cap_pages = cap / PAGE_BYTES;
            max_pages = if max_pages == 0 {
                cap_pages
            } else {
                max_pages.min(cap_pages)
            };
        }
        if (opts.max_bytes.is_some() || device.capacity_bytes().is_some()) && max_pages < 1 {
            return Err(StoreError::Invalid(format!(
                "a pool needs at least {PAGE_BYTES} bytes"
            )));
        }
        max_pages = max_pages.min(POOL_PAGES_MAX);
        let mut total_pages = opts.initial_bytes.div_ceil(PAGE_BYTES).max(1);
        if max_pages != 0 {
            total_pages = total_pages.min(max_pages);
        }
        if device.capacity_bytes().is_some() {
            total_pages = max_pages; // a block device is used whole from the start
        }
        device
            .grow(total_pages * PAGE_BYTES)
            .map_err(|e| StoreError::io("sizing the pool", total_pages * PAGE_BYTES, e))?;
        // Wipe all superblock slots so nothing of an earlier pool on the device survives.
        let zeros = vec![0u8; BLOCK_BYTES];
        for block in crate::layout::SUPERBLOCK_BLOCKS {
            let at = crate::layout::block_offset(block);
            device
                .write_at(at, &zeros)
                .map_err(|e| StoreError::io("formatting the pool", at, e))?;
        }
        let sb = Superblock {
            pool_uuid: *uuid::Uuid::new_v4().as_bytes(),
            tid: Tid(1),
            root_tree: None,
            root_tree_level: 0,
            total_pages,
            max_pages,
            used_blocks: 0,
            next_tree_id: 1,
            dir_crcs: vec![0; total_pages.div_ceil(crate::layout::DIR_PAGES) as usize],
        };
        device
            .flush()
            .map_err(|e| StoreError::io("flushing", 0, e))?;
        sb.write(device)?;
        device
            .flush()
            .map_err(|e| StoreError::io("flushing", 0, e))?;
        Ok(())
    }

    /// Opens an existing pool on `device`.
    pub fn open(device: Arc<dyn BlockDevice>, opts: &OpenOptions) -> Result<Pool> {
        Self::open_with_lock(device, opts, None)
    }

    fn open_with_lock(
        device: Arc<dyn BlockDevice>,
        opts: &OpenOptions,
        lock: Option<File>,
    ) -> Result<Pool> {
        let sb = Superblock::read_newest(&*device)?;
        let space = SpaceMap::open(
            device.clone(),
            sb.total_pages,
            sb.max_pages,
            sb.dir_crcs.clone(),
            sb.used_blocks,
        )?;
        let root_tree = Root::from_ref(sb.root_tree, sb.root_tree_level);
        let committed = Committed {
            tid: sb.tid,
            root_tree: root_tree.clone(),
            overlay: Default::default(),
        };
        let writer = Writer {
            txn: TxnState::new(Tid(sb.tid.0 + 1), root_tree, sb.next_tree_id),
            space,
            pending: Vec::new(),
            sb,
            batch: None,
        };
        Ok(Pool {
            shared: Arc::new(Shared {
                io: Arc::new(NodeIo::new(device, opts.cache_bytes)),
                writer: ReentrantMutex::new(RefCell::new(writer)),
                committed: RwLock::new(Arc::new(committed)),
                flight: Mutex::new(None),
                readers: Mutex::new(BTreeMap::new()),
                failed: Mutex::new(None),
                _lock: lock,
            }),
        })
    }

    /// Whether `path` holds a pool (a pool directory or a device with a pool on it).
    pub fn exists(path: &Path) -> bool {
        if is_block_device(path) {
            return FileDevice::open(path, false)
                .ok()
                .is_some_and(|d| Superblock::read_newest(&d).is_ok());
        }
        path.join(POOL_FILE_NAME).is_file()
    }

    /// Creates a pool in directory `path` (created if missing), or on the block device `path`.
    pub fn create_at(path: &Path, create: &CreateOptions, open: &OpenOptions) -> Result<Pool> {
        let (data, lock) = Self::paths(path);
        if !is_block_device(path) {
            if data.exists() {
                return Err(StoreError::Invalid(format!(
                    "{} already holds a pool",
                    path.display()
                )));
            }
            std::fs::create_dir_all(path)
                .map_err(|e| StoreError::io("creating the pool directory", 0, e))?;
        }
        let lock = take_lock(&lock, path)?;
        let device = FileDevice::open(&data, true)
            .map_err(|e| StoreError::io("creating the pool file", 0, e))?;
        Self::format(&device, create)?;
        device
            .flush()
            .map_err(|e| StoreError::io("flushing", 0, e))?;
        Self::open_with_lock(Arc::new(device), open, Some(lock))
    }

    /// Opens the pool in directory `path` (or on the block device `path`), taking the
    /// pool's lock for the life of the returned value.
    pub fn open_at(path: &Path, open: &OpenOptions) -> Result<Pool> {
        let (data, lock) = Self::paths(path);
        if !data.exists() {
            return Err(StoreError::Invalid(format!(
                "no pool at {}",
                path.display()
            )));
        }
        let lock = take_lock(&lock, path)?;
        let device = FileDevice::open(&data, false)
            .map_err(|e| StoreError::io("opening the pool file", 0, e))?;
        Self::open_with_lock(Arc::new(device), open, Some(lock))
    }

    fn paths(path: &Path) -> (PathBuf, PathBuf) {
        if is_block_device(path) {
            (path.to_path_buf(), path.to_path_buf())
        } else {
            (path.join(POOL_FILE_NAME), path.join(LOCK_FILE_NAME))
        }
    }

    pub(crate) fn check_failed(&self) -> Result<()> {
        match &*self.shared.failed.lock() {
            Some(why) => Err(StoreError::Failed(why.clone())),
            None => Ok(()),
        }
    }

    pub(crate) fn fail(&self, why: String) {
        self.shared.failed.lock().get_or_insert(why);
    }

    /// Runs `f` as part of the open transaction. If `f` fails, every change it made is
    /// undone and the error returned; nothing of it will ever commit.
    pub fn write<T, E>(
        &self,
        f: impl FnOnce(&mut WriteTxn<'_>) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E>
    where
        E: From<StoreError>,
    {
        self.check_failed()?;
        let guard = self.shared.lock_writer();
        let mut cell = guard.borrow_mut();
        let w = &mut *cell;
        if w.batch.is_some() {
            return self.write_in_batch(w, f);
        }
        if w.txn.redo.as_ref().is_none_or(|log| log.is_due()) {
            Self::close_checkpoint(w);
            let checkpoint = w.txn.savepoint();
            w.space.begin_savepoint();
            w.txn.redo = Some(RedoLog::new(checkpoint));
        }
        let log = w.txn.redo.as_mut().expect("checkpoint open");
        log.start_write();
        let mut result = {
            let mut txn = WriteTxn {
                state: &mut w.txn,
                space: &mut w.space,
                io: &self.shared.io,
            };
            f(&mut txn)
        };
        if result.is_ok() {
            let needed = w.txn.commit_blocks_estimate();
            let free = w.space.allocatable_blocks();
            if needed > free {
                result = Err(StoreError::NoSpace {
                    needed_blocks: needed,
                    free_blocks: free,
                }
                .into());
            }
        }
        let log = w.txn.redo.as_mut().expect("checkpoint open");
        if result.is_ok() {
            log.writes += 1;
        } else if log.write_dirty {
            self.undo_write(w);
        }
        result
    }

    /// Keeps everything done under the open checkpoint, if any, and closes it.
    pub(crate) fn close_checkpoint(w: &mut Writer) {
        if w.txn.redo.take().is_some() {
            w.space.end_savepoint();
            w.txn.keep();
        }
    }

    /// Undoes the running write: back to the checkpoint, then the writes kept since it
    /// are made again. If that fails the pool stops (fail-stop, as for a failed commit).
    fn undo_write(&self, w: &mut Writer) {
        let mut log = w.txn.redo.take().expect("checkpoint open");
        log.drop_running_write();
        let undone = w.space.rollback();
        w.txn.rollback(log.checkpoint);
        let replayed = undone.and_then(|()| {
            WriteTxn {
                state: &mut w.txn,
                space: &mut w.space,
                io: &self.shared.io,
            }
            .replay(log.entries, &log.arena)
        });
        if let Err(e) = replayed {
            self.fail(format!("undoing a failed change: {e}"));
        }
        // A fresh checkpoint opens with the next write.
    }

    /// One operation of a batch: no savepoint of its own (that is what makes a batch
    /// cheap: the first change of each operation no longer copies the dirty node path).
    /// A failure leaves its half-done changes behind, so it fails the batch.
    fn write_in_batch<T, E>(
        &self,
        w: &mut Writer,
        f: impl FnOnce(&mut WriteTxn<'_>) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E>
    where
        E: From<StoreError>,
    {
        let batch = w.batch.as_mut().expect("inside a batch");
        if batch.failed {
            return Err(StoreError::Invalid(
                "an earlier operation of this batch failed; the batch will be rolled back".into(),
            )
            .into());
        }
        let result = f(&mut WriteTxn {
            state: &mut w.txn,
            space: &mut w.space,
            io: &self.shared.io,
        });
        if result.is_err() {
            w.batch.as_mut().expect("inside a batch").failed = true;
        }
        result
    }

    /// Runs `f`, whose [`Pool::write`] calls (on this thread) form one all-or-nothing unit
    /// sharing a single savepoint: if `f` or any of them fails, every change of the batch
    /// is undone. Much cheaper than separate writes for long runs of small changes
    /// (receive, import). Other threads' writes and commits wait until the batch ends;
    /// [`Pool::commit`] inside a batch is refused. A batch inside a batch joins it.
    pub fn batch<T, E>(
        &self,
        f: impl FnOnce() -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E>
    where
        E: From<StoreError>,
    {
        self.check_failed()?;
        let guard = self.shared.lock_writer();
        {
            let mut w = guard.borrow_mut();
            if w.batch.is_some() {
                drop(w);
                return f();
            }
            Self::close_checkpoint(&mut w);
            let saved = w.txn.savepoint();
            w.space.begin_savepoint();
            w.batch = Some(OpenBatch {
                saved,
                failed: false,
            });
        }
        // Rolls the batch back if `f` panics, so the writer is never left inside a batch.
        struct Unwind<'a> {
            pool: &'a Pool,
            cell: &'a RefCell<Writer>,
            armed: bool,
        }
        impl Drop for Unwind<'_> {
            fn drop(&mut self) {
                if self.armed {
                    let _ = self.pool.end_batch(&mut self.cell.borrow_mut(), false);
                }
            }
        }
        let mut unwind = Unwind {
            pool: self,
            cell: &guard,
            armed: true,
        };
        let result = f();
        unwind.armed = false;
        let mut w = guard.borrow_mut();
        match result {
            Ok(v) => match self.end_batch(&mut w, true) {
                Ok(()) => Ok(v),
                Err(e) => Err(e.into()),
            },
            Err(e) => {
                let _ = self.end_batch(&mut w, false);
                Err(e)
            }
        }
    }

    /// Ends the open batch: keeps it if `keep` and nothing in it failed and the pool has
    /// room for its commit; otherwise undoes all of it.
    fn end_batch(&self, w: &mut RefMut<'_, Writer>, keep: bool) -> Result<()> {
        let batch = w.batch.take().expect("inside a batch");
        let mut outcome = Ok(());
        if batch.failed {
            outcome = Err(StoreError::Invalid(
                "an operation of the batch failed, so the batch was rolled back".into(),
            ));
        } else if keep {
            let needed = w.txn.commit_blocks_estimate();
            let free = w.space.allocatable_blocks();
            if needed > free {
                outcome = Err(StoreError::NoSpace {
                    needed_blocks: needed,
                    free_blocks: free,
                });
            }
        }
        if keep && outcome.is_ok() {
            w.space.end_savepoint();
            w.txn.keep();
            return Ok(());
        }
        if let Err(undo) = w.space.rollback() {
            self.fail(format!("undoing a failed batch: {undo}"));
        }
        w.txn.rollback(batch.saved);
        if !keep {
            return Ok(());
        }
        outcome
    }

    /// A consistent view of the last committed state.
    pub fn read(&self) -> ReadTxn {
        let mut readers = self.shared.readers.lock();
        let committed = self.shared.committed.read().clone();
        *readers.entry(committed.tid).or_default() += 1;
        ReadTxn {
            shared: self.shared.clone(),
            committed,
        }
    }

    /// A view of everything written so far, committed or not, that reads without holding
    /// the writer lock (so reads run in parallel with writes). Like [`Pool::read`] it keeps
    /// every block it can reach from being reused while it lives. It does not see changes
    /// made after it was taken. Data written into an extent of the open transaction after
    /// the view was taken is the one thing it can observe changing; layers above never
    /// rewrite such extents in place.
    pub fn read_latest(&self) -> ReadTxn {
        let guard = self.shared.lock_writer();
        let w = guard.borrow();
        // Nothing new since the last commit written out: if that one has landed, it is
        // what `read` gives; if it is still in flight, the view below shows it.
        if !w.txn.changed && self.committed_tid().0 + 1 == w.txn.tid.0 {
            drop(w);
            drop(guard);
            return self.read();
        }
        let overlay = w
            .txn
            .trees
            .iter()
            .map(|(id, ts)| (*id, (ts.root.clone(), ts.info)))
            .collect();
        let mut readers = self.shared.readers.lock();
        // Registered at the last commit: blocks freed by the open transaction stay pending
        // until this view is gone, like those freed by any later commit.
        let tid = Tid(w.txn.tid.0 - 1);
        *readers.entry(tid).or_default() += 1;
        let root_tree = w.txn.root_tree.clone();
        drop(readers);
        drop(w);
        drop(guard);
        ReadTxn {
            shared: self.shared.clone(),
            committed: Arc::new(Committed {
                tid,
                root_tree,
                overlay,
            }),
        }
    }

    /// The tid of the last commit.
    pub fn committed_tid(&self) -> Tid {
        self.shared.committed.read().tid
    }

    /// Whether the open transaction holds changes.
    pub fn has_uncommitted(&self) -> bool {
        self.shared.lock_writer().borrow().txn.changed
    }

    /// About how many bytes the next commit will write.
    pub fn uncommitted_bytes(&self) -> u64 {
        let guard = self.shared.lock_writer();
        let w = guard.borrow();
        w.txn.dirty_nodes * crate::layout::NODE_BYTES as u64 + w.txn.fresh_bytes
    }

    /// Space figures as of the open transaction.
    pub fn usage(&self) -> SpaceUsage {
        self.shared.lock_writer().borrow().space.usage()
    }

    /// The pool's UUID.
    pub fn uuid(&self) -> [u8; 16] {
        self.shared.lock_writer().borrow().sb.pool_uuid
    }

    /// Why the pool stopped, if a write failed.
    pub fn failure(&self) -> Option<String> {
        self.shared.failed.lock().clone()
    }
}

fn is_block_device(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device())
}

/// Takes the pool's lock, or says who holds it.
fn take_lock(lock_path: &Path, pool: &Path) -> Result<File> {
    use std::io::{Read, Seek, Write};
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(!is_block_device(lock_path))
        .truncate(false)
        .open(lock_path)
        .map_err(|e| StoreError::io("opening the pool lock", 0, e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(StoreError::Locked {
                path: pool.display().to_string(),
                holder: if holder.is_empty() {
                    "another process".to_string()
                } else {
                    holder.to_string()
                },
            });
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(StoreError::io("locking the pool", 0, e))
        }
    }
    if !is_block_device(lock_path) {
        let who = format!(
            "pid {} ({})",
            std::process::id(),
            std::env::args().collect::<Vec<_>>().join(" ")
        );
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = file.write_all(who.as_bytes());
    }
    Ok(file)
}
