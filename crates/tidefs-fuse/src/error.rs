//! What mounting can fail with.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error(transparent)]
    Fs(#[from] tidefs_fs::FsError),
    #[error("mounting on {}: {source}", mountpoint.display())]
    Mount {
        mountpoint: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("serving {}: {source}", mountpoint.display())]
    Serve {
        mountpoint: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("unmounting {}: {detail}", mountpoint.display())]
    Unmount { mountpoint: PathBuf, detail: String },
}
