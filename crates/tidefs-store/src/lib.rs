//! tidefs pool store: copy-on-write B+trees over a block device, with a tid in every record
//! and bref, checksummed blocks, atomic commits, O(1) snapshots and clones, tree diff,
//! exact space accounting by reference counts, and fsck.
//!
//! The on-disk format is specified in `docs/format.md`, the commit protocol and its crash
//! argument in `docs/commit.md`.

mod bref;
mod btree;
mod commit;
mod device;
mod error;
mod fault_device;
mod fsck;
mod group_commit;
mod ids;
mod key;
mod layout;
mod node;
mod node_io;
mod pool;
mod read_txn;
mod record;
mod redo;
mod space_map;
mod superblock;
mod tracked_set;
mod tree_space;
mod tree_view;
mod txn;

pub use bref::{BlockRef, Extent, TreeInfo};
pub use btree::changed::ChangedSince;
pub use btree::cursor::RangeIter;
pub use btree::diff::{DiffEntry, TreeDiff};
pub use commit::Landing;
pub use device::{BlockDevice, FileDevice, MemDevice};
pub use error::{ErrorKind, Result, StoreError};
pub use fault_device::FaultDevice;
pub use fsck::{fsck, FsckProblem, FsckReport};
pub use group_commit::{CommitPolicy, GroupCommitter};
pub use ids::{Tid, TreeId};
pub use key::{key3, parse_key3, KeyBuf};
pub use layout::{BLOCK_BYTES, EXTENT_BLOCKS_PACKED, KEY_BYTES_MAX, NODE_BYTES, VALUE_BYTES_MAX};
pub use pool::{CreateOptions, OpenOptions, Pool, LOCK_FILE_NAME, POOL_FILE_NAME};
pub use read_txn::ReadTxn;
pub use record::Record;
pub use space_map::SpaceUsage;
pub use superblock::FORMAT_VERSION;
pub use tree_space::TreeSpace;
pub use tree_view::{prefix_successor, TreeView};
pub use txn::WriteTxn;
