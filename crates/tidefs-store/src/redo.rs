//! Cheap atomicity for single writes: a checkpoint plus a redo log.
//!
//! A write that fails must leave no trace. Taking a full savepoint per write is simple but
//! costly: the savepoint shares the transaction's edited nodes, so the write's first change
//! copies its whole root-to-leaf path. Instead, a checkpoint (an ordinary savepoint) is
//! taken once per [`CHECKPOINT_WRITES`] writes, and every change a successful write makes is
//! logged at record level. A failed write that changed nothing (the common case: EEXIST,
//! ENOENT and the like are found before any change) costs nothing; one that changed
//! something rolls back to the checkpoint and replays the log of the writes after it.
//! Replaying is deterministic (the same changes from the same state, the space map's
//! allocation cursor included), and replayed allocations are checked to land where they
//! did the first time.

use crate::bref::Extent;
use crate::ids::TreeId;
use crate::node::EntryKind;
use crate::txn::Savepoint;

/// Writes between checkpoints. Each checkpoint makes the next change of each tree copy its
/// path once; each rollback replays at most this many writes.
pub(crate) const CHECKPOINT_WRITES: usize = 64;

/// Bytes of logged keys and values after which the checkpoint is renewed at the end of a
/// write, so the log stays small however big the writes are.
pub(crate) const REDO_BYTES_MAX: usize = 4 << 20;

/// One change, as made through [`crate::WriteTxn`]. Keys and values live in the log's
/// arena (one buffer, so logging a record costs a copy, not two allocations).
pub(crate) enum Redo {
    Put {
        tree: TreeId,
        key_len: u32,
        value_len: u32,
        kind: EntryKind,
    },
    Remove {
        tree: TreeId,
        key_len: u32,
    },
    AllocExtent(Extent),
    CreateTree(TreeId),
    SnapshotTree {
        source: TreeId,
        read_only: bool,
        id: TreeId,
    },
    DeleteTree(TreeId),
    SetReadOnly(TreeId, bool),
    SetNamedTree(String, Option<TreeId>),
}

/// The open checkpoint and what happened since.
pub(crate) struct RedoLog {
    pub checkpoint: Savepoint,
    /// Changes of the writes since the checkpoint, in order.
    pub entries: Vec<Redo>,
    /// Keys and values of `entries`, in order.
    pub arena: Vec<u8>,
    /// Where the running write's bytes start in `arena`.
    pub arena_start: usize,
    /// Writes kept since the checkpoint.
    pub writes: usize,
    /// Where the running write's changes start in `entries`.
    pub write_start: usize,
    /// The running write has attempted a change (even one that failed half-way).
    pub write_dirty: bool,
    /// The running write logged more than [`REDO_BYTES_MAX`] and stopped logging: undoing
    /// it still works (it replays only the writes before it), but once it is kept the log
    /// no longer describes the transaction, so the next write needs a new checkpoint.
    pub running_unlogged: bool,
}

impl RedoLog {
    pub fn new(checkpoint: Savepoint) -> RedoLog {
        RedoLog {
            checkpoint,
            entries: Vec::new(),
            arena: Vec::new(),
            arena_start: 0,
            writes: 0,
            write_start: 0,
            write_dirty: false,
            running_unlogged: false,
        }
    }

    pub fn start_write(&mut self) {
        self.write_start = self.entries.len();
        self.arena_start = self.arena.len();
        self.write_dirty = false;
    }

    /// Forgets the running write's changes (it is being undone).
    pub fn drop_running_write(&mut self) {
        self.entries.truncate(self.write_start);
        self.arena.truncate(self.arena_start);
    }

    /// Whether the next write should start from a new checkpoint.
    pub fn is_due(&self) -> bool {
        self.writes >= CHECKPOINT_WRITES
            || self.arena.len() >= REDO_BYTES_MAX
            || self.running_unlogged
    }

    /// Logs one change of the running write, unless the write has grown too big to log
    /// (a bulk load would otherwise copy every record once more for nothing).
    pub fn log(&mut self, redo: impl FnOnce() -> Redo) {
        if !self.running_unlogged {
            self.entries.push(redo());
        }
    }

    fn stop_logging_if_big(&mut self) -> bool {
        if !self.running_unlogged && self.arena.len() - self.arena_start > REDO_BYTES_MAX {
            self.drop_running_write();
            self.running_unlogged = true;
        }
        self.running_unlogged
    }

    pub fn log_put(&mut self, tree: TreeId, key: &[u8], value: &[u8], kind: EntryKind) {
        if self.stop_logging_if_big() {
            return;
        }
        self.arena.extend_from_slice(key);
        self.arena.extend_from_slice(value);
        self.entries.push(Redo::Put {
            tree,
            key_len: key.len() as u32,
            value_len: value.len() as u32,
            kind,
        });
    }

    pub fn log_remove(&mut self, tree: TreeId, key: &[u8]) {
        if self.stop_logging_if_big() {
            return;
        }
        self.arena.extend_from_slice(key);
        self.entries.push(Redo::Remove {
            tree,
            key_len: key.len() as u32,
        });
    }
}
