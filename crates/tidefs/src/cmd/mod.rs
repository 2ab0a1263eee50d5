//! One module per subcommand.

pub mod fsck;
pub mod init;
pub mod nbd;
pub mod volume;
