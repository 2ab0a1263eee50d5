//! tidefs FUSE adapter: mounts a subvolume (read-write, with its snapshots under a hidden
//! `.snap`) or a snapshot (read-only) with Linux semantics.
//!
//! The adapter is thin: [`ops`] translates each FUSE request into one call of the
//! file-system crate and maps its error with `FsError::errno`; what is FUSE-specific lives
//! beside it: FUSE inode numbers ([`inode_map`]), the `.snap` directory ([`snap_dir`]),
//! open-file handles ([`handles`]), SEEK_DATA/SEEK_HOLE ([`seek`]) and the mount's life
//! ([`session`]).

mod attr;
mod busy_poll;
mod error;
mod handles;
pub mod inode_map;
mod ops;
mod page_flush;
mod read_ahead;
mod seek;
mod session;
mod snap_control;
mod snap_dir;
mod tree;

pub use error::MountError;
pub use read_ahead::ReadAheadError;
pub use session::{lazy_unmount, mount, unmount, MountConfig, MountTarget, Mounted, Unmounter};
pub use snap_control::SnapshotControl;
pub use snap_dir::SNAP_DIR_NAME;
