//! The walk that feeds the engine: changed inode numbers in ascending order, each with its
//! old and new version and the records that differ.
//!
//! Incremental: the store's tree diff of parent → snapshot yields only records that differ,
//! in key order, which is inode order; cost follows the changes. Full: every record of the
//! snapshot, in one sequential scan.

use tidefs_fs::records::{
    decode_backref_key, decode_inode, object_prefix, parse_key, RecordKey, KIND_BACKREF,
    KIND_INODE, SUBVOL_OBJECT,
};
use tidefs_fs::{Inode, ROOT_INO};
use tidefs_store::{DiffEntry, Record};

use crate::error::{SendError, SendResult};
use crate::ordering::InodeChange;
use crate::snap::SnapView;

fn live(item: Option<Inode>) -> Option<Inode> {
    item.filter(|i| i.nlink > 0 || i.ino == ROOT_INO)
}

fn names_in(records: &[DiffEntry]) -> Vec<(u64, Vec<u8>)> {
    records
        .iter()
        .filter(|d| d.new.is_some() && parse_key(&d.key).map(|k| k.kind) == Ok(KIND_BACKREF))
        .filter_map(|d| decode_backref_key(&d.key).ok())
        .map(|b| (b.parent, b.name))
        .collect()
}

fn as_new(r: Record) -> DiffEntry {
    DiffEntry {
        key: r.key.clone(),
        old: None,
        new: Some(r),
    }
}

/// Every record of `ino` in `snap`, as additions.
fn all_records(snap: &SnapView, ino: u64) -> SendResult<Vec<DiffEntry>> {
    let mut out = Vec::new();
    for r in snap.view.prefix(&object_prefix(ino))? {
        out.push(as_new(r?));
    }
    Ok(out)
}

fn change_of(
    parent: &SnapView,
    snap: &SnapView,
    ino: u64,
    entries: Vec<DiffEntry>,
) -> SendResult<Option<InodeChange>> {
    let old = live(parent.inode(ino)?);
    let new = live(snap.inode(ino)?);
    if old.is_none() && new.is_none() {
        return Ok(None);
    }
    let same = matches!((&old, &new), (Some(o), Some(n)) if o.generation == n.generation);
    if new.is_some() && !same {
        let records = all_records(snap, ino)?;
        return Ok(Some(InodeChange {
            ino,
            old,
            new,
            new_names: names_in(&records),
            records,
            complete: true,
        }));
    }
    let new_names = if new.is_some() {
        snap.backrefs(ino)?
    } else {
        Vec::new()
    };
    Ok(Some(InodeChange {
        ino,
        old,
        new,
        new_names,
        records: entries,
        complete: false,
    }))
}

/// Calls `f` for every inode number whose records differ between `parent` and `snap`.
pub fn walk_incremental(
    parent: &SnapView,
    snap: &SnapView,
    f: &mut dyn FnMut(&InodeChange) -> SendResult<()>,
) -> SendResult<()> {
    let mut group: Vec<DiffEntry> = Vec::new();
    let mut group_ino = None;
    for d in parent.view.diff(&snap.view)? {
        let d = d?;
        let obj = parse_key(&d.key)
            .map_err(|source| SendError::Record {
                tree: snap.view.id().0,
                source,
            })?
            .object;
        if obj == SUBVOL_OBJECT {
            continue;
        }
        if group_ino != Some(obj) {
            if let Some(ino) = group_ino {
                if let Some(ch) = change_of(parent, snap, ino, std::mem::take(&mut group))? {
                    f(&ch)?;
                }
            }
            group_ino = Some(obj);
        }
        group.push(d);
    }
    if let Some(ino) = group_ino {
        if let Some(ch) = change_of(parent, snap, ino, group)? {
            f(&ch)?;
        }
    }
    Ok(())
}

/// Calls `f` for every inode of `snap`, with all its records.
pub fn walk_full(
    snap: &SnapView,
    f: &mut dyn FnMut(&InodeChange) -> SendResult<()>,
) -> SendResult<()> {
    let mut group: Vec<DiffEntry> = Vec::new();
    let mut group_ino = None;
    let flush =
        |ino: u64, records: Vec<DiffEntry>, f: &mut dyn FnMut(&InodeChange) -> SendResult<()>| {
            let item = records
                .iter()
                .find(|d| parse_key(&d.key).map(|k| k.kind) == Ok(KIND_INODE))
                .and_then(|d| d.new.as_ref())
                .map(|r| {
                    decode_inode(r).map_err(|source| SendError::Record {
                        tree: snap.view.id().0,
                        source,
                    })
                })
                .transpose()?;
            let Some(item) = live(item) else {
                return Ok(());
            };
            let ch = InodeChange {
                ino,
                old: None,
                new: Some(item),
                new_names: names_in(&records),
                records,
                complete: true,
            };
            f(&ch)
        };
    for r in snap.view.range::<std::ops::RangeFull>(..)? {
        let r = r?;
        let Ok(RecordKey { object: obj, .. }) = parse_key(&r.key) else {
            continue;
        };
        if obj == SUBVOL_OBJECT {
            continue;
        }
        if group_ino != Some(obj) {
            if let Some(ino) = group_ino {
                flush(ino, std::mem::take(&mut group), f)?;
            }
            group_ino = Some(obj);
        }
        group.push(as_new(r));
    }
    if let Some(ino) = group_ino {
        flush(ino, group, f)?;
    }
    Ok(())
}
