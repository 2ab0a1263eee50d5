//! NBD server for tidefs block volumes.
//!
//! Serves fixed-size block devices over the Network Block Device protocol so that
//! unmodified clients (qemu-img, qemu-io, nbdcopy, nbdinfo, the Linux kernel client)
//! can use them: fixed newstyle handshake with `NBD_OPT_GO`, structured replies,
//! `base:allocation` block status, flush / FUA, trim, write-zeroes, and
//! `NBD_FLAG_CAN_MULTI_CONN`.
//!
//! Layers, each in its own file:
//! - [`export`]: the backend traits ([`ExportProvider`], [`BlockExport`]); the volume
//!   store implements them. [`MemoryExport`] and [`FileExport`] are bundled backends.
//! - [`handshake`], [`option`], [`request`], [`reply`], [`transmission`],
//!   [`connection`]: the protocol with no I/O inside, testable and fuzzable on bytes.
//! - [`server`]: threads and sockets ([`serve`]).
//! - [`client`]: a small client for tests and the load driver.
//!
//! Every NBD error code is chosen in [`errno`]; every limit is in [`limits`].

pub mod client;
pub mod connection;
pub mod errno;
mod error;
pub mod export;
mod export_map;
mod file_export;
pub mod handshake;
pub mod limits;
mod memory_export;
pub mod option;
pub mod reply;
pub mod request;
pub mod server;
mod stream;
pub mod transmission;
pub mod wire;

pub use client::{ClientOptions, NbdClient};
pub use error::{
    ClientError, ExportError, NbdError, OptionPayloadError, ProtocolError, RequestRejection,
};
pub use export::{
    BlockExport, BlockSizeConstraints, BlockStatusExtent, ExportInfo, ExportProvider,
};
pub use export_map::ExportMap;
pub use file_export::FileExport;
pub use memory_export::{MemoryExport, MEMORY_BLOCK_BYTES};
pub use server::{serve, ListenAddress, Listener, ServeOptions, Server, StopHandle};
