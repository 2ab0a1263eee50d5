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

/// One change, as made through [`crate::WriteTxn`].
pub(crate) enum Redo {
    Put {
        tree: TreeId,
        key: Vec<u8>,
        value: Vec<u8>,
        kind: EntryKind,
    },
    Remove {
        tree: TreeId,
        key: Vec<u8>,
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
    /// Writes kept since the checkpoint.
    pub writes: usize,
    /// Where the running write's changes start in `entries`.
    pub write_start: usize,
    /// The running write has attempted a change (even one that failed half-way).
    pub write_dirty: bool,
}

impl RedoLog {
    pub fn new(checkpoint: Savepoint) -> RedoLog {
        RedoLog {
            checkpoint,
            entries: Vec::new(),
            writes: 0,
            write_start: 0,
            write_dirty: false,
        }
    }

    pub fn start_write(&mut self) {
        self.write_start = self.entries.len();
        self.write_dirty = false;
    }
}
