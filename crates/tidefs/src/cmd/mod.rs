//! One module per subcommand.

pub mod df;
pub mod files;
pub mod fsck;
pub mod init;
pub mod mount;
pub mod nbd;
pub mod snapshot;
pub mod subvol;
pub mod volume;
