//! tidefs send and receive: snapshot differences as btrfs send streams, and streams
//! applied into a pool.
//!
//! Send: [`changes`] walks the store's tree diff by inode (cost follows the changes),
//! [`ordering`] decides the order of name operations with [`paths`]' model of the
//! receiver, [`content`] and [`data`] add xattrs, data (WRITE / CLONE / FALLOCATE /
//! TRUNCATE) and attributes, and a [`sink`] encodes the commands (tidefs-stream's
//! encoder). Receive: [`apply`] maps each command onto `tidefs_fs::Subvol` operations,
//! [`receive`] finds the parent, keeps the whole receive atomic or resumable, and makes
//! the received snapshot. [`resume`] is the token that lets a cut-off transfer continue.

pub mod apply;
pub mod changes;
pub mod clone_src;
pub mod content;
pub mod data;
pub mod encoded;
pub mod error;
pub mod ordering;
pub mod paths;
mod rdev;
pub mod receive;
pub mod resume;
pub mod send;
pub mod sink;
pub mod snap;

pub use error::{ReceiveError, SendError};
pub use receive::{receive, ReceiveOptions, ReceiveSummary};
pub use resume::ResumeToken;
pub use send::{generate, send_stream, stream_uuid, SendRequest, SendSummary};
pub use sink::{CommandSink, StreamProgress, VecSink};
pub use tidefs_stream;
