//! The volume catalog: the tree that names volumes and their snapshots. The store finds
//! it by its tree name, [`CATALOG_TREE_NAME`].
//!
//! Keys start with a kind byte:
//!
//! ```text
//! (0x01 HEADER)                        "TDVOLCAT", version u32 LE (1)
//! (0x10 ENTRY, id u64 BE)              a volume or snapshot record (below)
//! (0x11 NAME, parent u64 BE, name)     id u64 LE. parent 0 names volumes; parent = a
//!                                      volume's id names that volume's snapshots
//! ```
//!
//! Entry record, little-endian:
//!
//! ```text
//!   0   1  version (1)
//!   1   1  kind: 0 volume, 1 snapshot
//!   2   6  reserved (0)
//!   8   8  tree id: the block map (see block_map.rs)
//!  16   8  size in bytes (a snapshot keeps its volume's size at the time it was taken)
//!  24   8  parent id: a snapshot's volume; a clone's origin snapshot (0 = none)
//!  32  16  uuid
//!  48  16  origin uuid: a clone's snapshot (zero = none); survives that snapshot's deletion
//!  64   8  tid of the transaction that created it
//!  72   8  creation time, seconds since the epoch (i64)
//!  80   4  creation time, nanoseconds
//!  84   4  reserved (0)
//!  88   …  name
//! ```
//!
//! The id of an entry is its tree id (tree 0 is the store's root tree, so 0 never names an
//! entry). Snapshots are named under their volume, so a volume with snapshots cannot be
//! deleted without them; clones are volumes of their own and keep only the uuid of their
//! origin, so a snapshot with clones can be deleted (blocks are reference counted).

use serde::{Deserialize, Serialize};
use tidefs_store::{KeyBuf, Tid, TreeId, WriteTxn};
use uuid::Uuid;

use crate::error::{Result, VolumeError};

/// The store tree name of the catalog.
pub const CATALOG_TREE_NAME: &str = "volumes";

const MAGIC: &[u8; 8] = b"TDVOLCAT";
const CATALOG_VERSION: u32 = 1;
const ENTRY_VERSION: u8 = 1;
const K_HEADER: u8 = 0x01;
const K_ENTRY: u8 = 0x10;
const K_NAME: u8 = 0x11;
const ENTRY_FIXED_BYTES: usize = 88;

/// A point in time: seconds and nanoseconds since the Unix epoch. Passed in by the caller,
/// so nothing in this crate reads the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
pub struct Timestamp {
    pub secs: i64,
    pub nanos: u32,
}

/// Whether an entry is a volume (writable) or a snapshot (read-only, named under its volume).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    Volume,
    Snapshot,
}

/// One catalog record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub kind: EntryKind,
    pub tree: TreeId,
    pub size: u64,
    pub parent: u64,
    pub uuid: Uuid,
    pub origin_uuid: Option<Uuid>,
    pub created_tid: Tid,
    pub created: Timestamp,
    pub name: String,
}

impl Entry {
    pub fn id(&self) -> u64 {
        self.tree.0
    }

    fn encode(&self) -> Vec<u8> {
        let mut v = vec![0u8; ENTRY_FIXED_BYTES];
        v[0] = ENTRY_VERSION;
        v[1] = match self.kind {
            EntryKind::Volume => 0,
            EntryKind::Snapshot => 1,
        };
        v[8..16].copy_from_slice(&self.tree.0.to_le_bytes());
        v[16..24].copy_from_slice(&self.size.to_le_bytes());
        v[24..32].copy_from_slice(&self.parent.to_le_bytes());
        v[32..48].copy_from_slice(self.uuid.as_bytes());
        v[48..64].copy_from_slice(self.origin_uuid.unwrap_or(Uuid::nil()).as_bytes());
        v[64..72].copy_from_slice(&self.created_tid.0.to_le_bytes());
        v[72..80].copy_from_slice(&self.created.secs.to_le_bytes());
        v[80..84].copy_from_slice(&self.created.nanos.to_le_bytes());
        v.extend_from_slice(self.name.as_bytes());
        v
    }

    fn decode(v: &[u8]) -> Result<Entry, String> {
        if v.len() <= ENTRY_FIXED_BYTES || v[0] != ENTRY_VERSION {
            return Err(format!(
                "entry of {} bytes, version {:?}",
                v.len(),
                v.first()
            ));
        }
        let u64_at = |at: usize| u64::from_le_bytes(v[at..at + 8].try_into().expect("8 bytes"));
        let uuid_at = |at: usize| Uuid::from_slice(&v[at..at + 16]).expect("16 bytes");
        let kind = match v[1] {
            0 => EntryKind::Volume,
            1 => EntryKind::Snapshot,
            k => return Err(format!("unknown entry kind {k}")),
        };
        let origin = uuid_at(48);
        Ok(Entry {
            kind,
            tree: TreeId(u64_at(8)),
            size: u64_at(16),
            parent: u64_at(24),
            uuid: uuid_at(32),
            origin_uuid: (!origin.is_nil()).then_some(origin),
            created_tid: Tid(u64_at(64)),
            created: Timestamp {
                secs: u64_at(72) as i64,
                nanos: u32::from_le_bytes(v[80..84].try_into().expect("4 bytes")),
            },
            name: String::from_utf8(v[ENTRY_FIXED_BYTES..].to_vec())
                .map_err(|_| "name is not UTF-8".to_string())?,
        })
    }
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

/// The catalog tree inside one transaction.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Catalog {
    pub tree: TreeId,
}

impl Catalog {
    /// Finds the catalog, creating it (and its header) on first use.
    pub fn open_or_create(t: &mut WriteTxn<'_>) -> Result<Catalog> {
        if let Some(tree) = t.named_tree(CATALOG_TREE_NAME)? {
            let header = t
                .get(tree, &[K_HEADER])?
                .ok_or_else(|| VolumeError::CorruptCatalog("the catalog has no header".into()))?;
            let v = &header.value;
            if v.len() != 12 || &v[..8] != MAGIC {
                return Err(VolumeError::CorruptCatalog("bad catalog header".into()));
            }
            let version = u32::from_le_bytes(v[8..12].try_into().expect("4 bytes"));
            if version != CATALOG_VERSION {
                return Err(VolumeError::CorruptCatalog(format!(
                    "catalog version {version} is not supported (this build reads {CATALOG_VERSION})"
                )));
            }
            return Ok(Catalog { tree });
        }
        let tree = t.create_tree()?;
        let mut header = MAGIC.to_vec();
        header.extend_from_slice(&CATALOG_VERSION.to_le_bytes());
        t.insert(tree, &[K_HEADER], &header)?;
        t.set_named_tree(CATALOG_TREE_NAME, Some(tree))?;
        Ok(Catalog { tree })
    }

    pub fn get(&self, t: &mut WriteTxn<'_>, id: u64) -> Result<Option<Entry>> {
        match t.get(self.tree, &entry_key(id))? {
            Some(r) => Entry::decode(&r.value)
                .map(Some)
                .map_err(|e| VolumeError::CorruptCatalog(format!("entry {id}: {e}"))),
            None => Ok(None),
        }
    }

    /// The entry named `name` under `parent` (0: volumes).
    pub fn lookup(&self, t: &mut WriteTxn<'_>, parent: u64, name: &str) -> Result<Option<Entry>> {
        let Some(r) = t.get(self.tree, &name_key(parent, name))? else {
            return Ok(None);
        };
        let id = decode_id(&r.value)?;
        match self.get(t, id)? {
            Some(e) => Ok(Some(e)),
            None => Err(VolumeError::CorruptCatalog(format!(
                "name {name:?} points at missing entry {id}"
            ))),
        }
    }

    /// Every entry named under `parent`, in name order.
    pub fn children(&self, t: &mut WriteTxn<'_>, parent: u64) -> Result<Vec<Entry>> {
        let prefix = KeyBuf::new().u8(K_NAME).u64(parent).build();
        let mut ids = Vec::new();
        for r in t.tree(self.tree)?.prefix(&prefix)? {
            ids.push(decode_id(&r?.value)?);
        }
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(self.get(t, id)?.ok_or_else(|| {
                VolumeError::CorruptCatalog(format!("a name points at missing entry {id}"))
            })?);
        }
        Ok(out)
    }

    /// Adds or rewrites an entry and its name.
    pub fn put(&self, t: &mut WriteTxn<'_>, entry: &Entry) -> Result<()> {
        t.insert(self.tree, &entry_key(entry.id()), &entry.encode())?;
        let parent = match entry.kind {
            EntryKind::Volume => 0,
            EntryKind::Snapshot => entry.parent,
        };
        t.insert(
            self.tree,
            &name_key(parent, &entry.name),
            &entry.id().to_le_bytes(),
        )?;
        Ok(())
    }

    /// Removes an entry and its name.
    pub fn remove(&self, t: &mut WriteTxn<'_>, entry: &Entry) -> Result<()> {
        t.remove(self.tree, &entry_key(entry.id()))?;
        t.remove(self.tree, &name_key(name_parent(entry), &entry.name))?;
        Ok(())
    }

    /// Renames an entry under the same parent.
    pub fn rename(&self, t: &mut WriteTxn<'_>, entry: &Entry, new_name: &str) -> Result<()> {
        t.remove(self.tree, &name_key(name_parent(entry), &entry.name))?;
        let renamed = Entry {
            name: new_name.to_string(),
            ..entry.clone()
        };
        self.put(t, &renamed)
    }
}

fn name_parent(entry: &Entry) -> u64 {
    match entry.kind {
        EntryKind::Volume => 0,
        EntryKind::Snapshot => entry.parent,
    }
}

fn decode_id(v: &[u8]) -> Result<u64> {
    Ok(u64::from_le_bytes(v.try_into().map_err(|_| {
        VolumeError::CorruptCatalog(format!("name record of {} bytes", v.len()))
    })?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_with_pinned_layout() {
        let e = Entry {
            kind: EntryKind::Snapshot,
            tree: TreeId(7),
            size: 1 << 30,
            parent: 3,
            uuid: Uuid::from_bytes([1; 16]),
            origin_uuid: None,
            created_tid: Tid(42),
            created: Timestamp {
                secs: 1_700_000_000,
                nanos: 5,
            },
            name: "monday".into(),
        };
        let bytes = e.encode();
        assert_eq!(bytes.len(), ENTRY_FIXED_BYTES + 6);
        assert_eq!(&bytes[0..2], &[1, 1]);
        assert_eq!(&bytes[8..16], &7u64.to_le_bytes());
        assert_eq!(&bytes[48..64], &[0; 16], "no origin is the nil uuid");
        assert_eq!(&bytes[88..], b"monday");
        assert_eq!(Entry::decode(&bytes), Ok(e));
        assert!(Entry::decode(&bytes[..40]).is_err());
    }
}
