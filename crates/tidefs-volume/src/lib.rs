//! tidefs block volumes: fixed-size sparse block devices stored in a pool, with O(1)
//! snapshots and clones that share blocks copy-on-write, a changed-block diff computed
//! from the store's tree diff, and NBD exports.
//!
//! One concept per file:
//! - [`catalog`](crate::catalog): names, sizes, snapshot and clone records;
//! - `block_map`: the record per 4 KiB block that maps a volume onto store extents;
//! - [`volume`](crate::Volume): reads, copy-on-write writes, trim, write-zeroes, block status;
//! - [`store`](crate::VolumeStore): the catalog operations and I/O handles of one pool;
//! - `diff`: changed blocks between two volumes or snapshots;
//! - `export`: the NBD export provider;
//! - [`control`]: the messages the CLI sends to a running server.

mod block_map;
mod catalog;
pub mod control;
mod diff;
mod error;
mod export;
pub mod limits;
mod name;
mod store;
mod volume;

pub use catalog::{EntryKind, Timestamp, CATALOG_TREE_NAME};
pub use diff::{ChangedRange, VolumeDiff};
pub use error::{Result, VolumeError};
pub use export::{export_error, VolumeExport, VolumeExports, VOLUME_BLOCK_SIZE};
pub use name::{check_name, VolumeRef};
pub use store::{VolumeInfo, VolumeStore};
pub use volume::{Allocation, BlockState, Volume};
