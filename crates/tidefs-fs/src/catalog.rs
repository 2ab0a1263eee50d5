//! The catalog: the tree that names subvolumes and snapshots.
//!
//! The catalog is the tree the pool's root tree names `fs.catalog`: `Fs::format` creates and
//! registers it, and `Fs::open` finds it by that name and checks its header. Keys start with
//! a kind byte:
//!
//! ```text
//! (0x01 HEADER)                        "TDFSCAT1", version u32 (1)
//! (0x10 ENTRY, id u64)                 subvolume or snapshot record (below)
//! (0x11 NAME, parent u64, name)        id u64: parent 0 names subvolumes; parent = a
//!                                      subvolume's id names that subvolume's snapshots
//! (0x12 META, id u64, key)             value: a snapshot's key/value metadata
//! (0x13 UUID, uuid[16])                id u64
//! (0x14 RECEIVED, uuid[16], id u64)    empty: snapshots received from uuid
//! ```
//!
//! Entry record, little-endian:
//!
//! ```text
//!   0   1  version (1)
//!   1   1  kind: 0 subvolume, 1 snapshot
//!   2   6  reserved
//!   8   8  tree id
//!  16   8  parent id: a snapshot's subvolume, a clone's snapshot (0 = none)
//!  24  16  uuid
//!  40  16  parent uuid (zero = none); survives deletion of the parent
//!  56  16  received uuid (zero = none)
//!  72   8  tid the snapshot was taken at / the subvolume created at
//!  80   8  creation time, seconds
//!  88   4  creation time, nanoseconds
//!  92   4  reserved
//!  96   …  name
//! ```
//!
//! The id of an entry is its tree id. Rules: names are 1–255 bytes without '/' or NUL
//! and are not "." or ".."; subvolume names also have no '@' (the CLI writes snapshots as
//! `subvol@snapshot`). A subvolume with snapshots cannot be deleted (its snapshots are
//! named under it); a snapshot with clones can (a clone keeps its origin's uuid as its
//! parent uuid, and shared blocks are reference counted).

use std::collections::BTreeMap;

use tidefs_store::{KeyBuf, Tid, TreeId, WriteTxn};
use uuid::Uuid;

use crate::clock::Timespec;
use crate::error::{FsError, Result};
use crate::keys::{le_i64, le_u32, le_u64};
use crate::limits::NAME_BYTES_MAX;

/// The name under which the pool's root tree registers the catalog (see the store's named
/// trees), so other layers (volumes) can keep their own trees in the same pool.
pub(crate) const CATALOG_NAME: &str = "fs.catalog";
const MAGIC: &[u8; 8] = b"TDFSCAT1";
const CATALOG_VERSION: u32 = 1;
const K_HEADER: u8 = 0x01;
const K_ENTRY: u8 = 0x10;
const K_NAME: u8 = 0x11;
const K_META: u8 = 0x12;
const K_UUID: u8 = 0x13;
const K_RECEIVED: u8 = 0x14;
const ENTRY_FIXED_BYTES: usize = 96;

/// Identifies a subvolume or snapshot (equal to its tree id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SubvolId(pub u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubvolKind {
    /// Writable: a subvolume or a clone.
    Subvolume,
    /// Read-only, named under its subvolume.
    Snapshot,
}

/// Everything the catalog knows about a subvolume or snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubvolInfo {
    pub id: SubvolId,
    pub kind: SubvolKind,
    pub name: String,
    pub tree: TreeId,
    /// A snapshot's subvolume; a clone's snapshot.
    pub parent: Option<SubvolId>,
    pub uuid: Uuid,
    pub parent_uuid: Option<Uuid>,
    pub received_uuid: Option<Uuid>,
    /// The tid a snapshot was taken at (for a subvolume: created at).
    pub tid: Tid,
    pub created: Timespec,
    pub metadata: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl SubvolInfo {
    pub fn is_snapshot(&self) -> bool {
        self.kind == SubvolKind::Snapshot
    }

    fn encode(&self) -> Vec<u8> {
        let mut v = vec![0u8; ENTRY_FIXED_BYTES];
        v[0] = 1;
        v[1] = match self.kind {
            SubvolKind::Subvolume => 0,
            SubvolKind::Snapshot => 1,
        };
        v[8..16].copy_from_slice(&self.tree.0.to_le_bytes());
        v[16..24].copy_from_slice(&self.parent.map_or(0, |p| p.0).to_le_bytes());
        v[24..40].copy_from_slice(self.uuid.as_bytes());
        v[40..56].copy_from_slice(self.parent_uuid.unwrap_or(Uuid::nil()).as_bytes());
        v[56..72].copy_from_slice(self.received_uuid.unwrap_or(Uuid::nil()).as_bytes());
        v[72..80].copy_from_slice(&self.tid.0.to_le_bytes());
        v[80..88].copy_from_slice(&self.created.sec.to_le_bytes());
        v[88..92].copy_from_slice(&self.created.nsec.to_le_bytes());
        v.extend_from_slice(self.name.as_bytes());
        v
    }

    fn decode(id: u64, v: &[u8]) -> Option<SubvolInfo> {
        if v.len() < ENTRY_FIXED_BYTES || v[0] != 1 {
            return None;
        }
        let uuid_at = |at: usize| {
            let u = Uuid::from_slice(&v[at..at + 16]).ok()?;
            Some((!u.is_nil()).then_some(u))
        };
        Some(SubvolInfo {
            id: SubvolId(id),
            kind: match v[1] {
                0 => SubvolKind::Subvolume,
                1 => SubvolKind::Snapshot,
                _ => return None,
            },
            tree: TreeId(le_u64(v, 8)),
            parent: Some(le_u64(v, 16)).filter(|&p| p != 0).map(SubvolId),
            uuid: Uuid::from_slice(&v[24..40]).ok()?,
            parent_uuid: uuid_at(40)?,
            received_uuid: uuid_at(56)?,
            tid: Tid(le_u64(v, 72)),
            created: Timespec::new(le_i64(v, 80), le_u32(v, 88)),
            name: String::from_utf8(v[96..].to_vec()).ok()?,
            metadata: BTreeMap::new(),
        })
    }
}

/// Checks a subvolume or snapshot name.
pub fn check_catalog_name(name: &str, subvolume: bool) -> Result<()> {
    let bad = |why| {
        Err(FsError::BadName {
            name: name.to_string(),
            why,
        })
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > NAME_BYTES_MAX {
        return Err(FsError::NameTooLong {
            len: name.len(),
            max: NAME_BYTES_MAX,
        });
    }
    if name == "." || name == ".." {
        return bad("\".\" and \"..\" are reserved");
    }
    if name.contains('/') || name.contains('\0') {
        return bad("contains '/' or NUL");
    }
    if subvolume && name.contains('@') {
        return bad("subvolume names cannot contain '@' (it separates snapshot names)");
    }
    Ok(())
}

fn entry_key(id: u64) -> Vec<u8> {
    KeyBuf::new().u8(K_ENTRY).u64(id).build()
}

fn name_key(parent: u64, name: &str) -> Vec<u8> {
    KeyBuf::new()
        .u8(K_NAME)
        .u64(parent)
        .bytes(name.as_bytes())
        .build()
}

fn name_prefix(parent: u64) -> Vec<u8> {
    KeyBuf::new().u8(K_NAME).u64(parent).build()
}

fn meta_key(id: u64, key: &[u8]) -> Vec<u8> {
    KeyBuf::new().u8(K_META).u64(id).bytes(key).build()
}

fn uuid_key(u: &Uuid) -> Vec<u8> {
    KeyBuf::new().u8(K_UUID).bytes(u.as_bytes()).build()
}

fn received_key(u: &Uuid, id: u64) -> Vec<u8> {
    KeyBuf::new()
        .u8(K_RECEIVED)
        .bytes(u.as_bytes())
        .u64(id)
        .build()
}

/// Catalog access inside one store transaction.
pub(crate) struct Catalog<'t, 'a> {
    pub t: &'t mut WriteTxn<'a>,
    /// The catalog's tree (an id no tree has when the pool holds no file system).
    tree: TreeId,
}

impl<'t, 'a> Catalog<'t, 'a> {
    pub fn new(t: &'t mut WriteTxn<'a>) -> Self {
        let tree = t
            .named_tree(CATALOG_NAME)
            .ok()
            .flatten()
            .unwrap_or(TreeId(u64::MAX));
        Catalog { t, tree }
    }

    /// Creates the catalog in an empty pool.
    pub fn format(&mut self) -> Result<()> {
        if self.t.named_tree(CATALOG_NAME)?.is_some() {
            return Err(FsError::Invalid(
                "the pool already holds a file system".into(),
            ));
        }
        let id = self.t.create_tree()?;
        self.t.set_named_tree(CATALOG_NAME, Some(id))?;
        self.tree = id;
        let mut header = MAGIC.to_vec();
        header.extend_from_slice(&CATALOG_VERSION.to_le_bytes());
        self.t.insert(self.tree, &[K_HEADER], &header)?;
        Ok(())
    }

    /// Checks that the pool holds a catalog of a version this build reads.
    pub fn check(&mut self) -> Result<()> {
        let header = match self.t.get(self.tree, &[K_HEADER]) {
            Ok(Some(r)) => r.value,
            Ok(None) | Err(tidefs_store::StoreError::NoSuchTree(_)) => {
                return Err(FsError::NotFormatted(
                    "the pool holds no file-system catalog".into(),
                ))
            }
            Err(e) => return Err(e.into()),
        };
        if header.len() != 12 || &header[..8] != MAGIC {
            return Err(FsError::NotFormatted(
                "catalog header does not match".into(),
            ));
        }
        let version = le_u32(&header, 8);
        if version != CATALOG_VERSION {
            return Err(FsError::NotFormatted(format!(
                "catalog version {version}, this build reads {CATALOG_VERSION}"
            )));
        }
        Ok(())
    }

    pub fn entry(&mut self, id: SubvolId) -> Result<Option<SubvolInfo>> {
        let Some(r) = self.t.get(self.tree, &entry_key(id.0))? else {
            return Ok(None);
        };
        let mut info = SubvolInfo::decode(id.0, &r.value).ok_or_else(|| {
            FsError::corrupt(self.tree, format!("entry {} does not decode", id.0))
        })?;
        let prefix = KeyBuf::new().u8(K_META).u64(id.0).build();
        for m in self.t.tree(self.tree)?.prefix(&prefix)? {
            let m = m?;
            info.metadata.insert(m.key[9..].to_vec(), m.value);
        }
        Ok(Some(info))
    }

    fn lookup_name(&mut self, parent: u64, name: &str) -> Result<Option<SubvolId>> {
        Ok(self
            .t
            .get(self.tree, &name_key(parent, name))?
            .map(|r| SubvolId(le_u64(&r.value, 0))))
    }

    fn named(&mut self, parent: u64) -> Result<Vec<SubvolInfo>> {
        let mut ids = Vec::new();
        for r in self.t.tree(self.tree)?.prefix(&name_prefix(parent))? {
            ids.push(SubvolId(le_u64(&r?.value, 0)));
        }
        let mut out = Vec::new();
        for id in ids {
            out.push(self.entry(id)?.ok_or_else(|| {
                FsError::corrupt(self.tree, format!("name points at missing entry {}", id.0))
            })?);
        }
        Ok(out)
    }

    pub fn subvolume(&mut self, name: &str) -> Result<SubvolInfo> {
        let id = self
            .lookup_name(0, name)?
            .ok_or_else(|| FsError::SubvolumeNotFound(name.to_string()))?;
        self.entry(id)?
            .ok_or_else(|| FsError::corrupt(self.tree, format!("missing entry {}", id.0)))
    }

    pub fn snapshot(&mut self, subvol: &str, snap: &str) -> Result<SubvolInfo> {
        let sv = self.subvolume(subvol)?;
        let id = self
            .lookup_name(sv.id.0, snap)?
            .ok_or_else(|| FsError::SnapshotNotFound(format!("{subvol}@{snap}")))?;
        self.entry(id)?
            .ok_or_else(|| FsError::corrupt(self.tree, format!("missing entry {}", id.0)))
    }

    pub fn subvolumes(&mut self) -> Result<Vec<SubvolInfo>> {
        self.named(0)
    }

    pub fn snapshots(&mut self, subvol: &str) -> Result<Vec<SubvolInfo>> {
        let sv = self.subvolume(subvol)?;
        self.named(sv.id.0)
    }

    pub fn by_uuid(&mut self, u: &Uuid) -> Result<Option<SubvolInfo>> {
        match self.t.get(self.tree, &uuid_key(u))? {
            Some(r) => self.entry(SubvolId(le_u64(&r.value, 0))),
            None => Ok(None),
        }
    }

    pub fn by_received_uuid(&mut self, u: &Uuid) -> Result<Vec<SubvolInfo>> {
        let prefix = KeyBuf::new().u8(K_RECEIVED).bytes(u.as_bytes()).build();
        let mut ids = Vec::new();
        for r in self.t.tree(self.tree)?.prefix(&prefix)? {
            let r = r?;
            ids.push(SubvolId(u64::from_be_bytes(
                r.key[17..25].try_into().expect("8"),
            )));
        }
        let mut out = Vec::new();
        for id in ids {
            out.extend(self.entry(id)?);
        }
        Ok(out)
    }

    /// Writes an entry and its indexes.
    pub fn put(&mut self, info: &SubvolInfo, name_parent: u64) -> Result<()> {
        self.t
            .insert(self.tree, &entry_key(info.id.0), &info.encode())?;
        self.t.insert(
            self.tree,
            &name_key(name_parent, &info.name),
            &info.id.0.to_le_bytes(),
        )?;
        self.t
            .insert(self.tree, &uuid_key(&info.uuid), &info.id.0.to_le_bytes())?;
        if let Some(r) = info.received_uuid {
            self.t
                .insert(self.tree, &received_key(&r, info.id.0), &[])?;
        }
        for (k, v) in &info.metadata {
            self.t.insert(self.tree, &meta_key(info.id.0, k), v)?;
        }
        Ok(())
    }

    /// Removes an entry and its indexes (not its tree).
    pub fn remove(&mut self, info: &SubvolInfo, name_parent: u64) -> Result<()> {
        self.t.remove(self.tree, &entry_key(info.id.0))?;
        self.t
            .remove(self.tree, &name_key(name_parent, &info.name))?;
        self.t.remove(self.tree, &uuid_key(&info.uuid))?;
        if let Some(r) = info.received_uuid {
            self.t.remove(self.tree, &received_key(&r, info.id.0))?;
        }
        for k in info.metadata.keys() {
            self.t.remove(self.tree, &meta_key(info.id.0, k))?;
        }
        Ok(())
    }

    pub fn name_taken(&mut self, parent: u64, name: &str) -> Result<bool> {
        Ok(self.lookup_name(parent, name)?.is_some())
    }

    pub fn count_named(&mut self, parent: u64) -> Result<usize> {
        Ok(self
            .t
            .tree(self.tree)?
            .prefix(&name_prefix(parent))?
            .count())
    }

    pub fn set_metadata(&mut self, id: SubvolId, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        match value {
            Some(v) => {
                self.t.insert(self.tree, &meta_key(id.0, key), v)?;
            }
            None => {
                self.t.remove(self.tree, &meta_key(id.0, key))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_round_trips() {
        let info = SubvolInfo {
            id: SubvolId(7),
            kind: SubvolKind::Snapshot,
            name: "monday".into(),
            tree: TreeId(7),
            parent: Some(SubvolId(2)),
            uuid: Uuid::from_u128(0x1234),
            parent_uuid: Some(Uuid::from_u128(0x99)),
            received_uuid: None,
            tid: Tid(42),
            created: Timespec::new(1_700_000_000, 5),
            metadata: BTreeMap::new(),
        };
        let v = info.encode();
        assert_eq!(v[1], 1);
        assert_eq!(&v[96..], b"monday");
        assert_eq!(SubvolInfo::decode(7, &v), Some(info));
    }

    #[test]
    fn names_are_checked() {
        assert!(check_catalog_name("home", true).is_ok());
        assert!(check_catalog_name("a@b", false).is_ok());
        for bad in ["", ".", "..", "a/b", "a@b"] {
            assert!(check_catalog_name(bad, true).is_err(), "{bad:?}");
        }
        assert_eq!(
            check_catalog_name(&"x".repeat(256), false)
                .unwrap_err()
                .errno(),
            crate::error::errno::ENAMETOOLONG
        );
    }
}
