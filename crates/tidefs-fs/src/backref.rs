//! Inode back-references: for every directory entry `parent/name → ino` a record
//! `(ino, BACKREF, parent, name) → index` lets the inode find its names. They give hard
//! links their paths, `..` of a directory, and diff its paths without a tree walk.

use tidefs_store::TreeView;

use crate::error::{FsError, Result};
use crate::inode::ROOT_INO;
use crate::keys::{key_u64, kind_prefix, KIND_BACKREF};
use crate::limits::{PATH_BYTES_MAX, PATH_DEPTH_MAX};
use crate::records::RecordError;

/// One name of an inode.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct BackRef {
    pub parent: u64,
    pub name: Vec<u8>,
}

/// The name a back-reference key `(ino, BACKREF, parent, name)` records.
pub(crate) fn backref_of_key(key: &[u8]) -> Result<BackRef, RecordError> {
    let parent = key_u64(key, 9).ok_or_else(|| RecordError::new(key, "no parent in the key"))?;
    Ok(BackRef {
        parent,
        name: key[17..].to_vec(),
    })
}

/// Every name of `ino`, ordered by (parent, name).
pub(crate) fn backrefs(view: &TreeView, ino: u64) -> Result<Vec<BackRef>> {
    let mut out = Vec::new();
    for r in view.prefix(&kind_prefix(ino, KIND_BACKREF))? {
        let r = r?;
        out.push(backref_of_key(&r.key).map_err(|e| FsError::record(view.id(), e))?);
    }
    Ok(out)
}

/// The first name of `ino` (directories have exactly one).
pub(crate) fn first_backref(view: &TreeView, ino: u64) -> Result<Option<BackRef>> {
    match view.prefix(&kind_prefix(ino, KIND_BACKREF))?.next() {
        None => Ok(None),
        Some(r) => backref_of_key(&r?.key)
            .map(Some)
            .map_err(|e| FsError::record(view.id(), e)),
    }
}

/// The parent directory of directory `dir` (the root is its own parent).
pub(crate) fn parent_of_dir(view: &TreeView, dir: u64) -> Result<u64> {
    if dir == ROOT_INO {
        return Ok(ROOT_INO);
    }
    Ok(first_backref(view, dir)?.map_or(ROOT_INO, |b| b.parent))
}

/// The absolute path ("/a/b") of the directory `dir`, by walking back-references to the
/// root. `None` if the walk finds an inode without a name (an orphan).
pub(crate) fn dir_path(view: &TreeView, dir: u64) -> Result<Option<Vec<u8>>> {
    let mut parts: Vec<Vec<u8>> = Vec::new();
    let mut at = dir;
    let mut len = 0usize;
    while at != ROOT_INO {
        let Some(b) = first_backref(view, at)? else {
            return Ok(None);
        };
        len += b.name.len() + 1;
        if parts.len() >= PATH_DEPTH_MAX || len > PATH_BYTES_MAX * 4 {
            return Err(FsError::Loop(format!("path of inode {dir}")));
        }
        parts.push(b.name);
        at = b.parent;
    }
    Ok(Some(join(parts.into_iter().rev())))
}

/// Every path of `ino` (one per hard link), sorted.
pub(crate) fn paths_of(view: &TreeView, ino: u64) -> Result<Vec<Vec<u8>>> {
    if ino == ROOT_INO {
        return Ok(vec![b"/".to_vec()]);
    }
    let mut out = Vec::new();
    for b in backrefs(view, ino)? {
        if let Some(mut p) = dir_path(view, b.parent)? {
            if p != b"/" {
                p.push(b'/');
            }
            p.extend_from_slice(&b.name);
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

fn join(parts: impl Iterator<Item = Vec<u8>>) -> Vec<u8> {
    let mut p = Vec::new();
    for part in parts {
        p.push(b'/');
        p.extend_from_slice(&part);
    }
    if p.is_empty() {
        p.push(b'/');
    }
    p
}
