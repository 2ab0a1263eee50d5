//! One module per subcommand.

pub mod copy;
pub mod df;
pub mod diff;
pub mod files;
pub mod fsck;
pub mod init;
pub mod mount;
pub mod nbd;
pub mod receive;
pub mod send;
pub mod snapshot;
pub mod subvol;
pub mod volume;
