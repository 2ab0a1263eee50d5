//! The volume layer of one pool: the catalog operations (create, list, resize, delete,
//! snapshot, clone, rename) and handles for I/O. Every operation is one store change,
//! committed before it returns, so a snapshot is a durable, crash-consistent point: it
//! holds every write acknowledged before it and none after.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tidefs_store::{Pool, Tid, TreeId, WriteTxn};
use uuid::Uuid;

use crate::catalog::{Catalog, Entry, EntryKind, Timestamp};
use crate::diff::{diff_views, VolumeDiff};
use crate::error::{Result, VolumeError};
use crate::limits::{VOLUME_BLOCK_BYTES, VOLUME_BYTES_MAX};
use crate::name::{check_name, VolumeRef};
use crate::volume::{punch, TreeState, Volume};

/// What `list` shows about a volume or snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeInfo {
    /// The volume's name (for a snapshot: its volume's name).
    pub volume: String,
    /// The snapshot's name, for a snapshot.
    pub snapshot: Option<String>,
    pub kind: EntryKind,
    pub size_bytes: u64,
    pub uuid: String,
    /// For a clone: `VOLUME@SNAPSHOT` it was cloned from, while that snapshot exists.
    pub origin: Option<String>,
    /// For a clone: the uuid of the snapshot it was cloned from (kept after its deletion).
    pub origin_uuid: Option<String>,
    pub created_tid: u64,
    pub created: Timestamp,
    /// Number of snapshots (volumes only).
    pub snapshots: usize,
}

impl VolumeInfo {
    /// `NAME` or `NAME@SNAP`.
    pub fn label(&self) -> String {
        match &self.snapshot {
            Some(s) => format!("{}@{s}", self.volume),
            None => self.volume.clone(),
        }
    }
}

/// The volumes of one pool.
pub struct VolumeStore {
    pool: Pool,
    catalog: Catalog,
    /// State shared by every handle of a tree, so that all connections to one export
    /// agree on its size and on whether reads must look at the open transaction. Kept
    /// until the tree is deleted: it remembers the last transaction that wrote the tree
    /// even while no handle is open. Lock order: the store's writer, then this.
    open: Mutex<HashMap<TreeId, Arc<TreeState>>>,
}

fn check_size(size: u64) -> Result<()> {
    let reason = if size == 0 {
        "a volume needs at least one block".to_string()
    } else if !size.is_multiple_of(VOLUME_BLOCK_BYTES) {
        format!("the size must be a multiple of {VOLUME_BLOCK_BYTES} bytes")
    } else if size > VOLUME_BYTES_MAX {
        format!("the largest volume is {VOLUME_BYTES_MAX} bytes")
    } else {
        return Ok(());
    };
    Err(VolumeError::InvalidSize { size, reason })
}

impl VolumeStore {
    /// Opens the volume layer of `pool`, creating its catalog on first use.
    pub fn open(pool: Pool) -> Result<VolumeStore> {
        let catalog = pool.write(Catalog::open_or_create)?;
        if pool.has_uncommitted() {
            pool.commit()?;
        }
        Ok(VolumeStore {
            pool,
            catalog,
            open: Mutex::new(HashMap::new()),
        })
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Commits the open transaction (every write so far becomes durable).
    pub fn commit(&self) -> Result<Tid> {
        Ok(self.pool.commit()?)
    }

    /// Runs `f` as one store change and commits it.
    fn change<T>(&self, f: impl FnOnce(&mut WriteTxn<'_>, Catalog) -> Result<T>) -> Result<T> {
        let catalog = self.catalog;
        let value = self.pool.write(|t| f(t, catalog))?;
        self.pool.commit()?;
        Ok(value)
    }

    /// Reads inside the writer (so it sees the open transaction); commits nothing.
    fn look<T>(&self, f: impl FnOnce(&mut WriteTxn<'_>, Catalog) -> Result<T>) -> Result<T> {
        let catalog = self.catalog;
        self.pool.write(|t| f(t, catalog))
    }

    /// Creates an empty (sparse) volume of `size` bytes.
    pub fn create(&self, name: &str, size: u64, now: Timestamp) -> Result<VolumeInfo> {
        check_name(name)?;
        check_size(size)?;
        self.change(|t, c| {
            if c.lookup(t, 0, name)?.is_some() {
                return Err(VolumeError::Exists(format!("volume {name:?}")));
            }
            let tree = t.create_tree()?;
            let entry = Entry {
                kind: EntryKind::Volume,
                tree,
                size,
                parent: 0,
                uuid: Uuid::new_v4(),
                origin_uuid: None,
                created_tid: t.tid(),
                created: now,
                name: name.to_string(),
            };
            c.put(t, &entry)?;
            info_of(t, c, &entry)
        })
    }

    /// Every volume, in name order.
    pub fn list(&self) -> Result<Vec<VolumeInfo>> {
        self.look(|t, c| c.children(t, 0)?.iter().map(|e| info_of(t, c, e)).collect())
    }

    /// One volume or snapshot.
    pub fn info(&self, target: &VolumeRef) -> Result<VolumeInfo> {
        self.look(|t, c| {
            let e = resolve(t, c, target)?;
            info_of(t, c, &e)
        })
    }

    /// The snapshots of `volume`, in name order.
    pub fn snapshots(&self, volume: &str) -> Result<Vec<VolumeInfo>> {
        self.look(|t, c| {
            let v = resolve(t, c, &VolumeRef::volume(volume))?;
            c.children(t, v.id())?
                .iter()
                .map(|e| info_of(t, c, e))
                .collect()
        })
    }

    /// Changes a volume's size. Shrinking discards the blocks past the new end (its
    /// snapshots keep theirs); growing adds holes.
    pub fn resize(&self, name: &str, size: u64) -> Result<VolumeInfo> {
        check_size(size)?;
        self.change(|t, c| {
            let mut e = resolve(t, c, &VolumeRef::volume(name))?;
            let open = self.open.lock();
            let state = open.get(&e.tree);
            if size < e.size {
                punch(t, e.tree, size / VOLUME_BLOCK_BYTES, u64::MAX)?;
                if let Some(s) = state {
                    s.note_write(t.tid());
                }
            }
            e.size = size;
            c.put(t, &e)?;
            if let Some(s) = state {
                s.size.store(size, Ordering::SeqCst);
            }
            info_of(t, c, &e)
        })
    }

    fn mark_deleted(&self, tree: TreeId) {
        if let Some(s) = self.open.lock().remove(&tree) {
            s.deleted.store(true, Ordering::SeqCst);
        }
    }

    /// Deletes a volume. With snapshots it is refused unless `with_snapshots`, which
    /// deletes them too. Clones of its snapshots are volumes of their own and stay.
    pub fn delete(&self, name: &str, with_snapshots: bool) -> Result<()> {
        let trees = self.change(|t, c| {
            let e = resolve(t, c, &VolumeRef::volume(name))?;
            let snapshots = c.children(t, e.id())?;
            if !snapshots.is_empty() && !with_snapshots {
                return Err(VolumeError::HasSnapshots {
                    volume: name.to_string(),
                    count: snapshots.len(),
                });
            }
            let mut trees = Vec::new();
            for s in snapshots.iter().chain(std::iter::once(&e)) {
                t.delete_tree(s.tree)?;
                c.remove(t, s)?;
                trees.push(s.tree);
            }
            Ok(trees)
        })?;
        for tree in trees {
            self.mark_deleted(tree);
        }
        Ok(())
    }

    /// Takes a read-only snapshot `volume@snapshot`: O(1), sharing every block.
    pub fn snapshot(&self, volume: &str, snapshot: &str, now: Timestamp) -> Result<VolumeInfo> {
        check_name(snapshot)?;
        self.change(|t, c| {
            let v = resolve(t, c, &VolumeRef::volume(volume))?;
            if c.lookup(t, v.id(), snapshot)?.is_some() {
                return Err(VolumeError::Exists(format!("snapshot {volume}@{snapshot}")));
            }
            let tree = t.snapshot_tree(v.tree, true)?;
            let entry = Entry {
                kind: EntryKind::Snapshot,
                tree,
                size: v.size,
                parent: v.id(),
                uuid: Uuid::new_v4(),
                origin_uuid: None,
                created_tid: t.tid(),
                created: now,
                name: snapshot.to_string(),
            };
            c.put(t, &entry)?;
            info_of(t, c, &entry)
        })
    }

    /// Deletes a snapshot; blocks nothing else maps are freed.
    pub fn delete_snapshot(&self, volume: &str, snapshot: &str) -> Result<()> {
        let tree = self.change(|t, c| {
            let s = resolve(t, c, &VolumeRef::snapshot(volume, snapshot))?;
            t.delete_tree(s.tree)?;
            c.remove(t, &s)?;
            Ok(s.tree)
        })?;
        self.mark_deleted(tree);
        Ok(())
    }

    /// Renames a snapshot of `volume`.
    pub fn rename_snapshot(&self, volume: &str, from: &str, to: &str) -> Result<()> {
        check_name(to)?;
        self.change(|t, c| {
            let s = resolve(t, c, &VolumeRef::snapshot(volume, from))?;
            if c.lookup(t, s.parent, to)?.is_some() {
                return Err(VolumeError::Exists(format!("snapshot {volume}@{to}")));
            }
            c.rename(t, &s, to)
        })?;
        // Open handles keep working; only their label (used in messages) is stale.
        Ok(())
    }

    /// Makes a new writable volume from a snapshot: O(1), sharing every block.
    pub fn clone_snapshot(
        &self,
        volume: &str,
        snapshot: &str,
        new_name: &str,
        now: Timestamp,
    ) -> Result<VolumeInfo> {
        check_name(new_name)?;
        self.change(|t, c| {
            let s = resolve(t, c, &VolumeRef::snapshot(volume, snapshot))?;
            if c.lookup(t, 0, new_name)?.is_some() {
                return Err(VolumeError::Exists(format!("volume {new_name:?}")));
            }
            let tree = t.snapshot_tree(s.tree, false)?;
            let entry = Entry {
                kind: EntryKind::Volume,
                tree,
                size: s.size,
                parent: s.id(),
                uuid: Uuid::new_v4(),
                origin_uuid: Some(s.uuid),
                created_tid: t.tid(),
                created: now,
                name: new_name.to_string(),
            };
            c.put(t, &entry)?;
            info_of(t, c, &entry)
        })
    }

    /// A handle for I/O. Snapshots are read-only unless `writable_snapshot`.
    pub fn open_volume(&self, target: &VolumeRef, writable_snapshot: bool) -> Result<Volume> {
        let entry = self.look(|t, c| resolve(t, c, target))?;
        let snapshot = entry.kind == EntryKind::Snapshot;
        let writable = !snapshot || writable_snapshot;
        let state = self
            .open
            .lock()
            .entry(entry.tree)
            .or_insert_with(|| {
                // `open` committed everything that came before this store, and every later
                // change of a map either commits before it returns (catalog operations) or
                // goes through this state (writes), so the state starts out committed.
                Arc::new(TreeState {
                    tree: entry.tree,
                    label: target.to_string(),
                    snapshot,
                    size: AtomicU64::new(entry.size),
                    last_write_tid: AtomicU64::new(0),
                    deleted: AtomicBool::new(false),
                })
            })
            .clone();
        Ok(Volume::new(self.pool.clone(), state, writable))
    }

    /// The block ranges that differ between `from` and `to` (volumes or snapshots, usually
    /// `V@A` and `V@B` or `V@A` and `V`), from the store's tree diff: time follows what
    /// changed, not the size of the volumes.
    pub fn diff(&self, from: &VolumeRef, to: &VolumeRef) -> Result<VolumeDiff> {
        // Registered before the views are taken, so no block they reach is reused while
        // the diff runs (see volume.rs).
        let _guard = self.pool.read();
        let (a, b, va, vb) = self.look(|t, c| {
            let a = resolve(t, c, from)?;
            let b = resolve(t, c, to)?;
            let (va, vb) = (t.tree(a.tree)?, t.tree(b.tree)?);
            Ok((a, b, va, vb))
        })?;
        let ranges = diff_views(&va, &vb)?;
        Ok(VolumeDiff::new(from, to, a.size, b.size, ranges))
    }
}

/// The entry `target` names, or the error that says which part does not exist.
fn resolve(t: &mut WriteTxn<'_>, c: Catalog, target: &VolumeRef) -> Result<Entry> {
    let v = c
        .lookup(t, 0, &target.volume)?
        .ok_or_else(|| VolumeError::NoSuchVolume(target.volume.clone()))?;
    match &target.snapshot {
        None => Ok(v),
        Some(s) => c
            .lookup(t, v.id(), s)?
            .ok_or_else(|| VolumeError::NoSuchSnapshot {
                volume: target.volume.clone(),
                snapshot: s.clone(),
            }),
    }
}

fn info_of(t: &mut WriteTxn<'_>, c: Catalog, e: &Entry) -> Result<VolumeInfo> {
    let (volume, snapshot, snapshots) = match e.kind {
        EntryKind::Volume => (e.name.clone(), None, c.children(t, e.id())?.len()),
        EntryKind::Snapshot => {
            let v = c.get(t, e.parent)?.ok_or_else(|| {
                VolumeError::CorruptCatalog(format!("snapshot {:?} has no volume", e.name))
            })?;
            (v.name, Some(e.name.clone()), 0)
        }
    };
    let mut origin = None;
    if let (EntryKind::Volume, Some(origin_uuid)) = (e.kind, e.origin_uuid) {
        if let Some(s) = c.get(t, e.parent)? {
            if s.uuid == origin_uuid {
                if let Some(v) = c.get(t, s.parent)? {
                    origin = Some(format!("{}@{}", v.name, s.name));
                }
            }
        }
    }
    Ok(VolumeInfo {
        volume,
        snapshot,
        kind: e.kind,
        size_bytes: e.size,
        uuid: e.uuid.to_string(),
        origin,
        origin_uuid: e.origin_uuid.map(|u| u.to_string()),
        created_tid: e.created_tid.0,
        created: e.created,
        snapshots,
    })
}
