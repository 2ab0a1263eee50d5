//! The pool's control socket: while a server (`tidefs nbd serve`, `tidefs mount`) holds the
//! pool, other commands reach it through `control.sock` in the pool directory. One JSON
//! request line in, one JSON reply line out; each layer defines its own messages
//! (`tidefs_volume::control` for volumes, [`fs_protocol`] for subvolumes and snapshots).

pub mod client;
pub mod fs_protocol;
pub mod fs_service;
pub mod server;

pub use client::{ask, socket_of, PoolAccess};
pub use server::{ControlServer, ControlService};
