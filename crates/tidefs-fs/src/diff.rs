//! diff: the path-level changes between two snapshots (or a snapshot and a live
//! subvolume), computed from the store's tree diff so that the cost follows the changes:
//! only inodes with changed records are examined, and their paths come from back-references.
//!
//! Lines, sorted by path (a rename by its old path):
//!
//! ```text
//! + /path              a name that appeared (new inode, or a hard link added)
//! - /path              a name that disappeared
//! M /path              a changed inode: data, xattrs, symlink target, or attributes
//! R /old -> /new       an inode that lost one name and gained another
//! ```
//!
//! Changes that only follow from name changes are not reported as `M`: an inode's ctime
//! and nlink, and a directory's mtime, size and entries (its children's lines show them).
//! The children of a renamed directory are not listed (their records did not change).

use std::collections::BTreeSet;
use std::fmt;
use std::os::unix::ffi::OsStrExt;

use tidefs_store::TreeView;

use crate::backref::paths_of;
use crate::error::{FsError, Result};
use crate::inode::Inode;
use crate::keys::{
    inode_key, split_key, KIND_DATA, KIND_SYMLINK, KIND_XATTR, KIND_XATTR_CHUNK, SUBVOL_OBJECT,
};
use crate::subvol::Subvol;

/// One line of a diff.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    Added(Vec<u8>),
    Removed(Vec<u8>),
    Modified(Vec<u8>),
    Renamed { from: Vec<u8>, to: Vec<u8> },
}

impl Change {
    /// The path a line sorts by.
    pub fn path(&self) -> &[u8] {
        match self {
            Change::Added(p) | Change::Removed(p) | Change::Modified(p) => p,
            Change::Renamed { from, .. } => from,
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |p: &[u8]| {
            std::ffi::OsStr::from_bytes(p)
                .to_string_lossy()
                .into_owned()
        };
        match self {
            Change::Added(p) => write!(f, "+ {}", show(p)),
            Change::Removed(p) => write!(f, "- {}", show(p)),
            Change::Modified(p) => write!(f, "M {}", show(p)),
            Change::Renamed { from, to } => write!(f, "R {} -> {}", show(from), show(to)),
        }
    }
}

/// Which records of one inode differ.
#[derive(Default)]
struct Touched {
    content: bool,
}

fn inode_in(view: &TreeView, ino: u64) -> Result<Option<Inode>> {
    match view.get(&inode_key(ino))? {
        Some(r) => Inode::decode(ino, &r.value)
            .map(Some)
            .ok_or_else(|| FsError::corrupt(view.id(), format!("inode {ino} does not decode"))),
        None => Ok(None),
    }
}

/// Whether two versions of one inode differ in more than what name changes cause.
fn attributes_changed(a: &Inode, b: &Inode) -> bool {
    let mut a = a.clone();
    let mut b = b.clone();
    for i in [&mut a, &mut b] {
        i.ctime = Default::default();
        i.nlink = 0;
        if i.is_dir() {
            i.mtime = Default::default();
            i.size = 0;
            i.next_index = 0;
        }
    }
    a != b
}

/// Path-level changes from `a` to `b` (both handles of one pool).
pub fn diff(a: &Subvol, b: &Subvol) -> Result<Vec<Change>> {
    let tree_b = b.info().tree;
    let mut out = a.op(|cx| {
        let va = cx.view()?;
        let vb = cx.t.tree(tree_b)?;
        // Objects whose records differ, in inode order.
        let mut touched: std::collections::BTreeMap<u64, Touched> = Default::default();
        for d in va.diff(&vb)? {
            let d = d?;
            let Some((obj, kind)) = split_key(&d.key) else {
                continue;
            };
            if obj == SUBVOL_OBJECT {
                continue;
            }
            let t = touched.entry(obj).or_default();
            if matches!(
                kind,
                KIND_DATA | KIND_XATTR | KIND_XATTR_CHUNK | KIND_SYMLINK
            ) {
                t.content = true;
            }
        }
        let mut out = Vec::new();
        for (ino, t) in touched {
            changes_of(&va, &vb, ino, &t, &mut out)?;
        }
        Ok(out)
    })?;
    out.sort_by(|x, y| x.path().cmp(y.path()).then_with(|| x.cmp(y)));
    Ok(out)
}

fn changes_of(
    va: &TreeView,
    vb: &TreeView,
    ino: u64,
    t: &Touched,
    out: &mut Vec<Change>,
) -> Result<()> {
    let old = inode_in(va, ino)?;
    let new = inode_in(vb, ino)?;
    let old_paths = if old.is_some() {
        paths_of(va, ino)?
    } else {
        Vec::new()
    };
    let new_paths = if new.is_some() {
        paths_of(vb, ino)?
    } else {
        Vec::new()
    };
    match (&old, &new) {
        (Some(o), Some(n)) if o.generation == n.generation => {
            let olds: BTreeSet<&Vec<u8>> = old_paths.iter().collect();
            let news: BTreeSet<&Vec<u8>> = new_paths.iter().collect();
            let removed: Vec<&Vec<u8>> = olds.difference(&news).copied().collect();
            let added: Vec<&Vec<u8>> = news.difference(&olds).copied().collect();
            let pairs = removed.len().min(added.len());
            for i in 0..pairs {
                out.push(Change::Renamed {
                    from: removed[i].clone(),
                    to: added[i].clone(),
                });
            }
            out.extend(
                removed[pairs..]
                    .iter()
                    .map(|p| Change::Removed((*p).clone())),
            );
            out.extend(added[pairs..].iter().map(|p| Change::Added((*p).clone())));
            if t.content || attributes_changed(o, n) {
                out.extend(new_paths.iter().map(|p| Change::Modified(p.clone())));
            }
        }
        _ => {
            out.extend(old_paths.into_iter().map(Change::Removed));
            out.extend(new_paths.into_iter().map(Change::Added));
        }
    }
    Ok(())
}
