//! Open files: the number the kernel passes back with every read, write and release, and
//! what it stands for. Keeping the tree in the handle lets a file opened in a snapshot be
//! read and released even after the snapshot's name is gone from `.snap`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::tree::Tree;

pub struct OpenFile {
    pub tree: Tree,
    pub ino: u64,
    /// Opened for writing (the kernel may hold cached writes for it, see `page_flush`).
    pub writes: bool,
}

#[derive(Default)]
pub struct Handles {
    next: AtomicU64,
    open: Mutex<HashMap<u64, Arc<OpenFile>>>,
}

impl Handles {
    pub fn insert(&self, file: OpenFile) -> u64 {
        // Handle 0 is left unused so that a zero from the kernel can never name a file.
        let fh = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        self.open.lock().insert(fh, Arc::new(file));
        fh
    }

    pub fn get(&self, fh: u64) -> Option<Arc<OpenFile>> {
        self.open.lock().get(&fh).cloned()
    }

    pub fn remove(&self, fh: u64) -> Option<Arc<OpenFile>> {
        self.open.lock().remove(&fh)
    }

    /// FUSE numbers of the files open for writing (each once).
    pub fn open_for_writing(&self) -> Vec<u64> {
        let mut inos: Vec<u64> = self
            .open
            .lock()
            .values()
            .filter(|f| f.writes)
            .filter_map(|f| f.tree.fuse_ino(f.ino).ok())
            .collect();
        inos.sort_unstable();
        inos.dedup();
        inos
    }

    /// Whether file `fuse_ino` (a FUSE number) is open for writing.
    pub fn is_open_for_writing(&self, fuse_ino: u64) -> bool {
        self.open
            .lock()
            .values()
            .any(|f| f.writes && f.tree.fuse_ino(f.ino) == Ok(fuse_ino))
    }

    /// Whether any open file belongs to snapshot tree `tree`.
    pub fn any_in(&self, tree: tidefs_store::TreeId) -> bool {
        self.open
            .lock()
            .values()
            .any(|f| f.tree.sv.info().tree == tree)
    }
}
