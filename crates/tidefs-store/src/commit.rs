//! Commits, in two halves (crash argument in docs/commit.md).
//!
//! *Writing out*, under the writer lock: every edited node goes to blocks free in both the
//! last landed state and the commit in flight; then, once the commit before has landed,
//! the changed space-map pages go into their spare slots. The writer starts the next
//! transaction at once.
//!
//! *Landing*, without the writer lock: flush, write the superblock into pair `tid % 2`,
//! flush. Only now is the commit durable, acknowledged and shown to readers, and only now
//! may blocks it freed be reused (once no reader needs them).
//!
//! So writers keep working while a commit's flushes run, and one thread can overlap a
//! commit's landing with the next transaction ([`Pool::start_commit`]). At most one commit
//! is in flight: the next one lands it before writing its own space-map pages, because
//! those go into the slots that still hold the landed state's copies.
//!
//! A write error anywhere in a commit stops the pool (fail-stop): the in-memory state no
//! longer matches anything on disk, so it refuses further work until reopened, and the
//! reopened pool is exactly a landed state.

use std::sync::Arc;

use crate::btree::root::Root;
use crate::error::{Result, StoreError};
use crate::ids::Tid;
use crate::pool::{Pool, Writer};
use crate::read_txn::Committed;
use crate::superblock::Superblock;
use crate::txn::{TxnState, WriteTxn};

/// New data from which a commit flushes once before taking the writer.
const PRE_FLUSH_BYTES: u64 = 64 << 20;

/// A commit written out whose superblock has not landed yet.
pub(crate) struct Flight {
    sb: Superblock,
    root_tree: Root,
}

/// A commit written out by [`Pool::start_commit`]. It is durable once [`Landing::land`]
/// returns; any later commit also lands it first, and dropping the value does not undo it.
#[must_use = "a commit is durable only once it has landed"]
pub struct Landing {
    pool: Pool,
    tid: Tid,
}

impl Landing {
    /// The tid this commit will have.
    pub fn tid(&self) -> Tid {
        self.tid
    }

    /// Waits until the commit is durable (landing it here unless another thread already
    /// is) and returns its tid.
    pub fn land(self) -> Result<Tid> {
        self.pool.land_flight()?;
        self.pool.release_after_landing();
        if self.pool.committed_tid() >= self.tid {
            Ok(self.tid)
        } else {
            self.pool.check_failed()?;
            Err(StoreError::Invalid(format!(
                "commit of tid {} did not land",
                self.tid
            )))
        }
    }
}

impl Pool {
    /// Commits the open transaction now: when this returns, everything written before it is
    /// durable. Returns the committed tid (the last landed one if there was nothing new).
    /// Other threads' writes go on while the commit's flushes run.
    pub fn commit(&self) -> Result<Tid> {
        match self.start_commit()? {
            Some(landing) => landing.land(),
            None => {
                self.land_flight()?;
                self.release_after_landing();
                Ok(self.committed_tid())
            }
        }
    }

    /// Commits only if the changes of transaction `tid` are not durable yet.
    pub fn commit_through(&self, tid: Tid) -> Result<Tid> {
        let committed = self.committed_tid();
        if committed >= tid {
            return Ok(committed);
        }
        self.commit()
    }

    /// Writes out the open transaction as a commit and starts the next transaction, but
    /// leaves the commit's flushes to [`Landing::land`], which may run on another thread
    /// while this one goes on writing. `None` if there was nothing to commit. A commit
    /// still in flight is landed first, so this may wait for its flushes.
    pub fn start_commit(&self) -> Result<Option<Landing>> {
        self.check_failed()?;
        // Much new data waiting: push it to the disk before taking the writer, so writers
        // keep going meanwhile and the landing's flush finds little left. Durability still
        // comes from that flush.
        let fresh = self.shared.lock_writer().borrow().txn.fresh_bytes;
        if fresh >= PRE_FLUSH_BYTES {
            self.shared
                .io
                .device
                .flush()
                .map_err(|e| StoreError::io("flushing data before a commit", 0, e))?;
        }
        let guard = self.shared.lock_writer();
        let mut cell = guard.borrow_mut();
        let w = &mut *cell;
        if w.batch.is_some() {
            return Err(StoreError::Invalid(
                "commit inside a batch (the batch would no longer be atomic)".into(),
            ));
        }
        Self::close_checkpoint(w);
        if !w.txn.changed {
            return Ok(None);
        }
        self.release_pending(w);
        let needed = w.txn.commit_blocks_estimate();
        let free = w.space.allocatable_blocks();
        if needed > free {
            return Err(StoreError::NoSpace {
                needed_blocks: needed,
                free_blocks: free,
            });
        }
        let tid = w.txn.tid;
        match self.write_out(w) {
            Ok(()) => Ok(Some(Landing {
                pool: self.clone(),
                tid,
            })),
            Err(e) => {
                self.fail(format!("commit of tid {tid} failed: {e}"));
                Err(e)
            }
        }
    }

    /// The first half of a commit: nodes, then (after the commit before has landed) space
    /// pages; the superblock to land is left in flight and the next transaction opened.
    fn write_out(&self, w: &mut Writer) -> Result<()> {
        let tid = w.txn.tid;
        let root_tree = WriteTxn {
            state: &mut w.txn,
            space: &mut w.space,
            io: &self.shared.io,
        }
        .write_out_all()?;
        // The spare slots of the pages about to be written hold the landed state's copies
        // until the commit in flight lands.
        self.land_flight()?;
        self.release_pending(w);
        let dir_crcs = w.space.write_dirty(tid)?;
        let (root_ref, root_level) = match &root_tree {
            Root::Clean { bref, level } => (Some(*bref), *level),
            _ => (None, 0),
        };
        let sb = Superblock {
            pool_uuid: w.sb.pool_uuid,
            tid,
            root_tree: root_ref,
            root_tree_level: root_level,
            total_pages: w.space.total_pages(),
            max_pages: w.space.max_pages(),
            used_blocks: w.space.used_blocks(),
            next_tree_id: w.txn.next_tree_id,
            dir_crcs,
        };
        w.sb = sb.clone();
        // Blocks this commit freed stay pending until it has landed (see release_pending).
        let freed = std::mem::take(&mut w.txn.freed);
        w.pending.extend(freed);
        w.txn = TxnState::new(Tid(tid.0 + 1), root_tree.clone(), w.txn.next_tree_id);
        *self.shared.flight.lock() = Some(Flight { sb, root_tree });
        Ok(())
    }

    /// The second half of a commit: lands the commit in flight, if any. Holds the flight
    /// lock throughout, so concurrent callers wait for the one landing it.
    pub(crate) fn land_flight(&self) -> Result<()> {
        let mut flight = self.shared.flight.lock();
        let Some(f) = flight.take() else {
            return self.check_failed();
        };
        self.check_failed()?;
        let tid = f.sb.tid;
        let device = &self.shared.io.device;
        let landed = device
            .flush()
            .map_err(|e| StoreError::io("flushing before the superblock", 0, e))
            .and_then(|()| f.sb.write(&**device))
            .and_then(|()| {
                device
                    .flush()
                    .map_err(|e| StoreError::io("flushing the superblock", 0, e))
            });
        if let Err(e) = landed {
            self.fail(format!("commit of tid {tid} failed: {e}"));
            return Err(e);
        }
        *self.shared.committed.write() = Arc::new(Committed {
            tid,
            root_tree: f.root_tree,
            overlay: Default::default(),
        });
        Ok(())
    }

    /// Frees what the landed commit made reusable, unless the writer is busy (then the
    /// next commit does it).
    fn release_after_landing(&self) {
        if let Some(guard) = self.shared.writer_try_lock() {
            if let Ok(mut w) = guard.try_borrow_mut() {
                self.release_pending(&mut w);
            }
        }
    }

    /// Makes blocks freed by landed commits reusable once no reader can see them. Blocks
    /// must not become free under an open write checkpoint: undoing a failed write makes
    /// the writes since the checkpoint again, and they must allocate exactly as they did
    /// the first time (their extents hold data). No write runs here, so what is done is
    /// kept and the checkpoint closed first (the next write opens one); inside a batch,
    /// the next commit frees.
    fn release_pending(&self, w: &mut Writer) {
        if w.batch.is_some() {
            return;
        }
        Self::close_checkpoint(w);
        let oldest_reader = self.shared.readers.lock().keys().next().copied();
        let landed = self.committed_tid();
        let io = &self.shared.io;
        let space = &mut w.space;
        w.pending.retain(|run| {
            let visible =
                run.freed_tid > landed || oldest_reader.is_some_and(|r| r < run.freed_tid);
            if visible {
                return true;
            }
            io.forget(run.block);
            space.release(*run).is_err()
        });
    }
}
