//! The file system over a pool: the catalog of subvolumes and snapshots, handles on them,
//! statfs and fsync, and the orphan cleanup at mount.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use tidefs_store::{Pool, Tid, TreeId, WriteTxn};
use uuid::Uuid;

use crate::caller::Caller;
use crate::catalog::{check_catalog_name, Catalog, SubvolId, SubvolInfo, SubvolKind};
use crate::clock::{Clock, Timespec};
use crate::cx::Cx;
use crate::error::{FsError, Result};
use crate::inode::{FileKind, Inode, SubvolHeader, FIRST_DIR_INDEX, ROOT_INO, S_IFDIR};
use crate::keys::{key_u64, orphan_prefix};
use crate::limits::NAME_BYTES_MAX;
use crate::subvol::Subvol;

/// State shared by the file system and all its handles.
pub(crate) struct Shared {
    pub pool: Pool,
    pub clock: Arc<dyn Clock>,
    /// Open counts per (tree, inode): unlinked inodes live while they are open.
    pub opens: Mutex<HashMap<(TreeId, u64), u32>>,
}

/// `statfs` figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatFs {
    pub block_bytes: u64,
    pub blocks: u64,
    pub blocks_free: u64,
    pub blocks_available: u64,
    /// Live inodes of the subvolume asked about.
    pub files: u64,
    pub files_free: u64,
    pub name_bytes_max: u64,
}

/// Extra properties of a new snapshot.
#[derive(Debug, Clone, Default)]
pub struct SnapshotOptions {
    /// Set when the snapshot is made by receive: the uuid of the sender's snapshot.
    pub received_uuid: Option<Uuid>,
    /// Key/value metadata (the mirror stores the primary's snapshot id here).
    pub metadata: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// A tidefs file system in a pool.
#[derive(Clone)]
pub struct Fs {
    pub(crate) shared: Arc<Shared>,
}

impl Fs {
    /// Makes a pool without a file system one (creates and registers the catalog) and commits.
    pub fn format(pool: Pool, clock: Arc<dyn Clock>) -> Result<Fs> {
        pool.write(|t| Catalog::new(t).format())?;
        pool.commit()?;
        Ok(Fs::new(pool, clock))
    }

    /// Opens the file system of a pool, freeing inodes that were unlinked while open
    /// when the last process stopped (nobody can hold them any more).
    pub fn open(pool: Pool, clock: Arc<dyn Clock>) -> Result<Fs> {
        pool.write(|t| Catalog::new(t).check())?;
        let fs = Fs::new(pool, clock);
        let now = fs.now();
        let reaped = fs.shared.pool.write(|t| {
            let mut n = 0;
            for info in Catalog::new(t).subvolumes()? {
                n += reap_orphans(t, info.tree, now)?;
            }
            Ok::<_, FsError>(n)
        })?;
        if reaped > 0 {
            fs.shared.pool.commit()?;
        }
        Ok(fs)
    }

    fn new(pool: Pool, clock: Arc<dyn Clock>) -> Fs {
        Fs {
            shared: Arc::new(Shared {
                pool,
                clock,
                opens: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn pool(&self) -> &Pool {
        &self.shared.pool
    }

    pub(crate) fn now(&self) -> Timespec {
        self.shared.clock.now()
    }

    fn catalog<T>(&self, f: impl FnOnce(&mut Catalog<'_, '_>) -> Result<T>) -> Result<T> {
        self.shared.pool.write(|t| f(&mut Catalog::new(t)))
    }

    fn handle(&self, info: SubvolInfo) -> Subvol {
        Subvol::new(self.shared.clone(), info)
    }

    /// Creates an empty subvolume whose root directory belongs to `caller` (mode 0755).
    pub fn create_subvolume(&self, name: &str, caller: &Caller) -> Result<SubvolInfo> {
        check_catalog_name(name, true)?;
        let now = self.now();
        self.catalog(|c| {
            if c.name_taken(0, name)? {
                return Err(FsError::SubvolumeExists(name.to_string()));
            }
            let tree = c.t.create_tree()?;
            init_subvol_tree(c.t, tree, now, caller)?;
            let info = SubvolInfo {
                id: SubvolId(tree.0),
                kind: SubvolKind::Subvolume,
                name: name.to_string(),
                tree,
                parent: None,
                uuid: Uuid::new_v4(),
                parent_uuid: None,
                received_uuid: None,
                tid: c.t.tid(),
                created: now,
                metadata: BTreeMap::new(),
            };
            c.put(&info, 0)?;
            Ok(info)
        })
    }

    /// Writable subvolumes (including clones), by name.
    pub fn list_subvolumes(&self) -> Result<Vec<SubvolInfo>> {
        self.catalog(|c| c.subvolumes())
    }

    /// Deletes a subvolume and its tree. Fails with `HasSnapshots` while it has snapshots.
    pub fn delete_subvolume(&self, name: &str) -> Result<()> {
        self.catalog(|c| {
            let info = c.subvolume(name)?;
            let count = c.count_named(info.id.0)?;
            if count > 0 {
                return Err(FsError::HasSnapshots {
                    name: name.to_string(),
                    count,
                });
            }
            c.remove(&info, 0)?;
            c.t.delete_tree(info.tree)?;
            Ok(())
        })
    }

    pub fn rename_subvolume(&self, old: &str, new: &str) -> Result<()> {
        check_catalog_name(new, true)?;
        self.catalog(|c| {
            let mut info = c.subvolume(old)?;
            if old == new {
                return Ok(());
            }
            if c.name_taken(0, new)? {
                return Err(FsError::SubvolumeExists(new.to_string()));
            }
            c.remove(&info, 0)?;
            info.name = new.to_string();
            c.put(&info, 0)
        })
    }

    /// Takes a read-only snapshot `subvol@snap` of the subvolume as it is now (including
    /// changes not yet committed). O(1): it shares every block.
    pub fn create_snapshot(&self, subvol: &str, snap: &str) -> Result<SubvolInfo> {
        self.create_snapshot_with(subvol, snap, SnapshotOptions::default())
    }

    pub fn create_snapshot_with(
        &self,
        subvol: &str,
        snap: &str,
        opts: SnapshotOptions,
    ) -> Result<SubvolInfo> {
        check_catalog_name(snap, false)?;
        let now = self.now();
        self.catalog(|c| {
            let sv = c.subvolume(subvol)?;
            if c.name_taken(sv.id.0, snap)? {
                return Err(FsError::SnapshotExists(format!("{subvol}@{snap}")));
            }
            let tree = c.t.snapshot_tree(sv.tree, true)?;
            let info = SubvolInfo {
                id: SubvolId(tree.0),
                kind: SubvolKind::Snapshot,
                name: snap.to_string(),
                tree,
                parent: Some(sv.id),
                uuid: Uuid::new_v4(),
                parent_uuid: Some(sv.uuid),
                received_uuid: opts.received_uuid,
                tid: c.t.tid(),
                created: now,
                metadata: opts.metadata,
            };
            c.put(&info, sv.id.0)?;
            Ok(info)
        })
    }

    pub fn list_snapshots(&self, subvol: &str) -> Result<Vec<SubvolInfo>> {
        self.catalog(|c| c.snapshots(subvol))
    }

    pub fn delete_snapshot(&self, subvol: &str, snap: &str) -> Result<()> {
        self.catalog(|c| {
            let info = c.snapshot(subvol, snap)?;
            let parent = info.parent.map_or(0, |p| p.0);
            c.remove(&info, parent)?;
            c.t.delete_tree(info.tree)?;
            Ok(())
        })
    }

    pub fn rename_snapshot(&self, subvol: &str, old: &str, new: &str) -> Result<()> {
        check_catalog_name(new, false)?;
        self.catalog(|c| {
            let mut info = c.snapshot(subvol, old)?;
            if old == new {
                return Ok(());
            }
            let parent = info.parent.map_or(0, |p| p.0);
            if c.name_taken(parent, new)? {
                return Err(FsError::SnapshotExists(format!("{subvol}@{new}")));
            }
            c.remove(&info, parent)?;
            info.name = new.to_string();
            c.put(&info, parent)
        })
    }

    /// Makes a writable subvolume `new_subvol` from snapshot `subvol@snap`.
    pub fn clone_snapshot(&self, subvol: &str, snap: &str, new_subvol: &str) -> Result<SubvolInfo> {
        check_catalog_name(new_subvol, true)?;
        let now = self.now();
        self.catalog(|c| {
            let src = c.snapshot(subvol, snap)?;
            if c.name_taken(0, new_subvol)? {
                return Err(FsError::SubvolumeExists(new_subvol.to_string()));
            }
            let tree = c.t.snapshot_tree(src.tree, false)?;
            // Inodes that were open-but-unlinked when the snapshot was taken are nobody's
            // in the clone.
            reap_orphans(c.t, tree, now)?;
            let info = SubvolInfo {
                id: SubvolId(tree.0),
                kind: SubvolKind::Subvolume,
                name: new_subvol.to_string(),
                tree,
                parent: Some(src.id),
                uuid: Uuid::new_v4(),
                parent_uuid: Some(src.uuid),
                received_uuid: None,
                tid: c.t.tid(),
                created: now,
                metadata: BTreeMap::new(),
            };
            c.put(&info, 0)?;
            Ok(info)
        })
    }

    /// Sets (`Some`) or removes (`None`) one metadata key of a subvolume or snapshot.
    /// Catalog metadata stays changeable on read-only snapshots.
    pub fn set_metadata(&self, id: SubvolId, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        if key.is_empty() || key.len() > NAME_BYTES_MAX {
            return Err(FsError::Invalid(format!(
                "metadata key of {} bytes",
                key.len()
            )));
        }
        self.catalog(|c| {
            c.entry(id)?
                .ok_or_else(|| FsError::SubvolumeNotFound(format!("id {}", id.0)))?;
            c.set_metadata(id, key, value)
        })
    }

    /// Records which sent snapshot a received one came from.
    pub fn set_received_uuid(&self, id: SubvolId, received: Option<Uuid>) -> Result<()> {
        self.catalog(|c| {
            let mut info = c
                .entry(id)?
                .ok_or_else(|| FsError::SubvolumeNotFound(format!("id {}", id.0)))?;
            let parent = match info.kind {
                SubvolKind::Snapshot => info.parent.map_or(0, |p| p.0),
                SubvolKind::Subvolume => 0,
            };
            c.remove(&info, parent)?;
            info.received_uuid = received;
            c.put(&info, parent)
        })
    }

    pub fn info(&self, id: SubvolId) -> Result<SubvolInfo> {
        self.catalog(|c| {
            c.entry(id)?
                .ok_or_else(|| FsError::SubvolumeNotFound(format!("id {}", id.0)))
        })
    }

    pub fn find_by_uuid(&self, u: &Uuid) -> Result<Option<SubvolInfo>> {
        self.catalog(|c| c.by_uuid(u))
    }

    pub fn find_by_received_uuid(&self, u: &Uuid) -> Result<Vec<SubvolInfo>> {
        self.catalog(|c| c.by_received_uuid(u))
    }

    /// A handle on a writable subvolume.
    pub fn subvolume(&self, name: &str) -> Result<Subvol> {
        Ok(self.handle(self.catalog(|c| c.subvolume(name))?))
    }

    /// A handle on a snapshot (read-only: changes fail with EROFS).
    pub fn snapshot(&self, subvol: &str, snap: &str) -> Result<Subvol> {
        Ok(self.handle(self.catalog(|c| c.snapshot(subvol, snap))?))
    }

    pub fn open_id(&self, id: SubvolId) -> Result<Subvol> {
        Ok(self.handle(self.info(id)?))
    }

    /// Makes everything done so far durable.
    pub fn fsync(&self) -> Result<Tid> {
        Ok(self.shared.pool.commit()?)
    }

    /// Renames across two handles: EXDEV unless both are the same subvolume.
    #[allow(clippy::too_many_arguments)]
    pub fn rename_between(
        &self,
        from: &Subvol,
        parent: u64,
        name: &[u8],
        to: &Subvol,
        new_parent: u64,
        new_name: &[u8],
        flags: u32,
        caller: &Caller,
    ) -> Result<()> {
        if from.info().tree != to.info().tree {
            return Err(FsError::CrossDevice(format!(
                "rename from {} to {}",
                from.info().name,
                to.info().name
            )));
        }
        from.rename(parent, name, new_parent, new_name, flags, caller)
    }

    /// Hard-links across two handles: EXDEV unless both are the same subvolume.
    pub fn link_between(
        &self,
        from: &Subvol,
        ino: u64,
        to: &Subvol,
        new_parent: u64,
        new_name: &[u8],
    ) -> Result<Inode> {
        if from.info().tree != to.info().tree {
            return Err(FsError::CrossDevice(format!(
                "link from {} to {}",
                from.info().name,
                to.info().name
            )));
        }
        from.link(ino, new_parent, new_name)
    }
}

/// Writes the header and root directory of a new subvolume tree.
pub(crate) fn init_subvol_tree(
    t: &mut WriteTxn<'_>,
    tree: TreeId,
    now: Timespec,
    caller: &Caller,
) -> Result<()> {
    let mut cx = Cx::new(t, tree, now);
    cx.put_header(&SubvolHeader::fresh())?;
    let mut root = cx.new_inode(crate::inode::NewInode {
        mode: S_IFDIR | 0o755,
        uid: caller.uid,
        gid: caller.gid,
        rdev: 0,
    })?;
    debug_assert_eq!(root.ino, ROOT_INO);
    root.nlink = 2;
    root.next_index = FIRST_DIR_INDEX;
    cx.put_inode(&root)?;
    debug_assert_eq!(root.kind(), FileKind::Directory);
    Ok(())
}

/// Frees every orphan of a writable tree; returns how many.
pub(crate) fn reap_orphans(t: &mut WriteTxn<'_>, tree: TreeId, now: Timespec) -> Result<u64> {
    let mut cx = Cx::new(t, tree, now);
    let keys = cx.keys_with_prefix(&orphan_prefix())?;
    for key in &keys {
        let ino = key_u64(key, 9).ok_or_else(|| FsError::corrupt(tree, "bad orphan key"))?;
        cx.reap_orphan(ino)?;
    }
    Ok(keys.len() as u64)
}
