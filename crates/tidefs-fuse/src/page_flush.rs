//! Bringing in the writes the kernel still holds for the mount.
//!
//! With FUSE's writeback cache (the default) the kernel keeps written data in its page
//! cache and sends it later, in large writes, several at a time; writes through a shared
//! mmap wait there on every mount. Until it is sent, such data is in neither the pool nor
//! a snapshot, and a killed server loses it. So before a snapshot is taken and before each
//! timed commit, the mount asks the kernel for all of it.
//!
//! Two steps, because neither does it alone. syncfs(2) sends every dirty page in large
//! requests, but on a FUSE mount it returns without waiting for the replies (an
//! unprivileged server must not be able to hang sync), so the data may not be here yet
//! when it returns. Then, for each file open for writing (only those can have cached
//! writes: closing a file sends its pages and waits), invalidating its pages waits for the
//! writes in flight and sends, page by page, whatever was written since. The cost is that
//! those files' cached pages are dropped; reading them again asks the server. With no file
//! open for writing there is nothing to do.
//!
//! The kernel sends the pages as WRITE requests to this very server and waits for the
//! replies: a flush must come from a thread that serves no requests and holds nothing a
//! request needs, or the mount deadlocks.

use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use fuser::{INodeNo, Notifier};
use tidefs_fs::FsError;

use crate::handles::Handles;

#[derive(Clone)]
pub(crate) struct PageFlusher {
    inner: Arc<Inner>,
}

struct Inner {
    /// The mount point, resolved before mounting (the daemon may change directory).
    mountpoint: PathBuf,
    /// The mount's open files.
    handles: Arc<Handles>,
    /// Set once the kernel has accepted the mount.
    notifier: OnceLock<Notifier>,
}

impl PageFlusher {
    pub(crate) fn new(mountpoint: PathBuf, handles: Arc<Handles>) -> PageFlusher {
        PageFlusher {
            inner: Arc::new(Inner {
                mountpoint,
                handles,
                notifier: OnceLock::new(),
            }),
        }
    }

    /// The mount's open files.
    pub(crate) fn handles(&self) -> &Arc<Handles> {
        &self.inner.handles
    }

    /// Called once the mount exists; until then nothing can be cached.
    pub(crate) fn set_notifier(&self, notifier: Notifier) {
        let _ = self.inner.notifier.set(notifier);
    }

    /// Returns once every write the kernel held for the mount when called has reached this
    /// server (not yet committed). Never call it on a serving thread.
    pub(crate) fn flush(&self) -> Result<(), FsError> {
        if self.inner.notifier.get().is_none() {
            return Ok(());
        }
        let writing = self.inner.handles.open_for_writing();
        if writing.is_empty() {
            // Nothing can be cached: an idle mount is not woken every commit interval.
            return Ok(());
        }
        // The mount point is opened afresh each time: a descriptor held open would make the
        // mount busy for `umount`. If the mount is gone (or covered by another), this syncs
        // whatever file system is there now, which does no harm.
        File::open(&self.inner.mountpoint)
            .and_then(|dir| rustix::fs::syncfs(&dir).map_err(io::Error::from))
            .map_err(|source| self.error(source))?;
        // The kernel answers ENOENT for an inode it no longer has (fuser passes that as
        // success): nothing of it is cached then.
        writing.into_iter().try_for_each(|ino| self.flush_file(ino))
    }

    /// Brings in what the kernel holds for file `ino` (a FUSE number): its writes in
    /// flight and its dirty pages. Never call it on a serving thread.
    pub(crate) fn flush_file(&self, ino: u64) -> Result<(), FsError> {
        match self.inner.notifier.get() {
            Some(notifier) => notifier
                .inval_inode(INodeNo(ino), 0, 0)
                .map_err(|source| self.error(source)),
            None => Ok(()),
        }
    }

    fn error(&self, source: io::Error) -> FsError {
        FsError::Host {
            op: "bringing in the kernel's cached writes of the mount at",
            path: self.inner.mountpoint.display().to_string(),
            source,
        }
    }
}
