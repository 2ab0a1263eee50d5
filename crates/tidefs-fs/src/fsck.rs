//! fs-level fsck: checks what the store cannot know, namely that the records of a
//! subvolume tree form a consistent POSIX namespace.
//!
//! Invariants checked, per tree:
//! * every record decodes; the header's inode count equals the number of inodes;
//! * every directory entry has both its hash record and its index record, agreeing on
//!   inode, type and index, and its back-reference; every back-reference has its entry;
//! * entry types match the inodes' modes; entries point at existing inodes;
//! * link counts: a non-directory has one link per back-reference; a directory has one
//!   back-reference (none for the root) and 2 + its subdirectories links;
//! * an inode has nlink 0 exactly when it is on the orphan list;
//! * directory sizes are 2 × the sum of entry name lengths; readdir indexes are below the
//!   directory's next index;
//! * every directory's ancestors lead to the root (no cycles, no detached subtrees);
//! * file data: inline only alone and within the size, block records aligned and
//!   disjoint, their block count equals the inode's; symlink targets as long as the size;
//!   with `verify_data`, every data block's crc32c.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use tidefs_store::TreeId;

use crate::catalog::SubvolInfo;
use crate::cx::Cx;
use crate::dir::{decode_index_record, name_hash};
use crate::error::Result;
use crate::fs::Fs;
use crate::inode::{FileKind, Inode, ROOT_INO};
use crate::keys::*;
use crate::limits::DATA_BLOCK_BYTES;
use crate::subvol::Subvol;

/// One inconsistency, located by tree and inode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsProblem {
    pub tree: TreeId,
    pub ino: Option<u64>,
    pub message: String,
}

impl fmt::Display for FsProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tree {}", self.tree)?;
        if let Some(ino) = self.ino {
            write!(f, " inode {ino}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// One file's data records: inline length, block records as (first block, blocks).
type FileData = (Option<u64>, Vec<(u64, u64)>);

#[derive(Default)]
struct Seen {
    inodes: BTreeMap<u64, Inode>,
    /// (ino, parent, name) → index
    backrefs: BTreeMap<(u64, u64, Vec<u8>), u64>,
    /// (dir, name) → (ino, dtype, index) from index records
    by_index: BTreeMap<(u64, Vec<u8>), (u64, u8, u64)>,
    /// (dir, name) → (ino, dtype, index) from hash records
    by_hash: BTreeMap<(u64, Vec<u8>), (u64, u8, u64)>,
    orphans: BTreeSet<u64>,
    /// ino → (inline length, block records (start, len))
    data: HashMap<u64, FileData>,
    symlink_bytes: HashMap<u64, u64>,
    header_count: Option<u64>,
}

struct Checker {
    tree: TreeId,
    problems: Vec<FsProblem>,
}

impl Checker {
    fn problem(&mut self, ino: Option<u64>, message: String) {
        self.problems.push(FsProblem {
            tree: self.tree,
            ino,
            message,
        });
    }
}

/// Checks one subvolume or snapshot; returns its problems (empty when consistent).
pub fn fsck_subvol(sub: &Subvol, verify_data: bool) -> Result<Vec<FsProblem>> {
    sub.op(|cx| check_tree(cx, verify_data))
}

impl Fs {
    /// Checks every subvolume and snapshot of the file system.
    pub fn fsck(&self, verify_data: bool) -> Result<Vec<FsProblem>> {
        let mut all: Vec<SubvolInfo> = self.list_subvolumes()?;
        for sv in self.list_subvolumes()? {
            all.extend(self.list_snapshots(&sv.name)?);
        }
        let mut problems = Vec::new();
        for info in all {
            problems.extend(fsck_subvol(&self.open_id(info.id)?, verify_data)?);
        }
        Ok(problems)
    }
}

fn check_tree(cx: &mut Cx<'_, '_>, verify_data: bool) -> Result<Vec<FsProblem>> {
    let tree = cx.tree;
    let mut c = Checker {
        tree,
        problems: Vec::new(),
    };
    let mut s = Seen::default();
    let view = cx.view()?;
    for r in view.range::<std::ops::RangeFull>(..)? {
        let r = r?;
        collect(&mut c, &mut s, &r)?;
    }
    check_entries(&mut c, &s);
    check_links(&mut c, &s);
    check_ancestry(&mut c, &s);
    check_data(&mut c, &s);
    if verify_data {
        let inodes: Vec<Inode> = s
            .inodes
            .values()
            .filter(|i| i.kind() == FileKind::Regular)
            .cloned()
            .collect();
        for inode in inodes {
            // Only stored ranges: a sparse file may be exabytes of holes.
            'file: for ext in cx.file_extents(&inode)? {
                let end = (ext.offset + ext.len).min(inode.size);
                let mut at = ext.offset;
                while at < end {
                    let n = (end - at).min(1 << 22);
                    if let Err(e) = cx.read_data(&inode, at, n) {
                        c.problem(Some(inode.ino), e.to_string());
                        break 'file;
                    }
                    at += n;
                }
            }
        }
    }
    Ok(c.problems)
}

fn collect(c: &mut Checker, s: &mut Seen, r: &tidefs_store::Record) -> Result<()> {
    let Some((obj, kind)) = split_key(&r.key) else {
        c.problem(None, format!("key of {} bytes", r.key.len()));
        return Ok(());
    };
    let ino = Some(obj);
    match kind {
        KIND_HEADER => s.header_count = Some(le_u64(&r.value, 32)),
        KIND_ORPHAN => {
            s.orphans.insert(key_u64(&r.key, 9).unwrap_or(0));
        }
        KIND_INODE => match Inode::decode(obj, &r.value) {
            Some(i) => {
                s.inodes.insert(obj, i);
            }
            None => c.problem(ino, "inode item does not decode".into()),
        },
        KIND_BACKREF => {
            let parent = key_u64(&r.key, 9).unwrap_or(0);
            let index = if r.value.len() == 8 {
                le_u64(&r.value, 0)
            } else {
                u64::MAX
            };
            s.backrefs
                .insert((obj, parent, r.key[17..].to_vec()), index);
        }
        KIND_DIRENT_INDEX => match decode_index_record(&r.key, &r.value) {
            Ok(e) => {
                s.by_index
                    .insert((obj, e.name), (e.ino, e.kind.dtype(), e.index));
            }
            Err(e) => c.problem(ino, e.to_string()),
        },
        KIND_DIRENT_HASH => {
            let hash = key_u64(&r.key, 9).unwrap_or(0);
            let mut v = r.value.as_slice();
            while !v.is_empty() {
                if v.len() < 18 || v.len() < 18 + v[17] as usize {
                    c.problem(ino, "truncated directory hash record".into());
                    break;
                }
                let name = v[18..18 + v[17] as usize].to_vec();
                if name_hash(&name) != hash {
                    c.problem(
                        ino,
                        format!(
                            "entry {:?} filed under the wrong hash",
                            String::from_utf8_lossy(&name)
                        ),
                    );
                }
                s.by_hash
                    .insert((obj, name), (le_u64(v, 0), v[16], le_u64(v, 8)));
                v = &v[18 + v[17] as usize..];
            }
        }
        KIND_XATTR | KIND_XATTR_CHUNK => {}
        KIND_SYMLINK => *s.symlink_bytes.entry(obj).or_default() += r.value.len() as u64,
        KIND_DATA => {
            let offset = key_u64(&r.key, 9).unwrap_or(0);
            let e = s.data.entry(obj).or_default();
            match (r.extent, r.value.first()) {
                (None, Some(0)) => e.0 = Some(r.value.len() as u64 - 1),
                (Some(_), Some(1 | 2)) if r.value.len() >= 12 => {
                    let len = u64::from(le_u32(&r.value, 8));
                    if !offset.is_multiple_of(DATA_BLOCK_BYTES as u64) {
                        c.problem(ino, format!("data record at unaligned offset {offset}"));
                    }
                    e.1.push((offset / DATA_BLOCK_BYTES as u64, len));
                }
                _ => c.problem(ino, format!("data record at {offset} does not decode")),
            }
        }
        _ => c.problem(ino, format!("record of unknown kind {kind:#x}")),
    }
    Ok(())
}

fn check_entries(c: &mut Checker, s: &Seen) {
    for ((dir, name), (ino, dtype, index)) in &s.by_index {
        let shown = String::from_utf8_lossy(name);
        match s.by_hash.get(&(*dir, name.clone())) {
            Some(h) if h == &(*ino, *dtype, *index) => {}
            Some(_) => c.problem(
                Some(*dir),
                format!("entry {shown:?}: hash and index records disagree"),
            ),
            None => c.problem(Some(*dir), format!("entry {shown:?} has no hash record")),
        }
        match s.backrefs.get(&(*ino, *dir, name.clone())) {
            Some(i) if i == index => {}
            Some(_) => c.problem(
                Some(*ino),
                format!("back-reference {dir}/{shown:?} has the wrong index"),
            ),
            None => c.problem(
                Some(*ino),
                format!("entry {dir}/{shown:?} has no back-reference"),
            ),
        }
        match s.inodes.get(ino) {
            Some(i) if i.kind().dtype() == *dtype => {}
            Some(_) => c.problem(
                Some(*ino),
                format!("entry {dir}/{shown:?} has the wrong type"),
            ),
            None => c.problem(
                Some(*dir),
                format!("entry {shown:?} points at missing inode {ino}"),
            ),
        }
        if s.inodes.get(dir).is_some_and(|d| *index >= d.next_index) {
            c.problem(
                Some(*dir),
                format!("entry {shown:?} has index {index} past the next index"),
            );
        }
    }
    for (dir, name) in s.by_hash.keys() {
        if !s.by_index.contains_key(&(*dir, name.clone())) {
            c.problem(
                Some(*dir),
                format!(
                    "entry {:?} has no index record",
                    String::from_utf8_lossy(name)
                ),
            );
        }
    }
    for (ino, parent, name) in s.backrefs.keys() {
        if !s.by_index.contains_key(&(*parent, name.clone())) {
            c.problem(
                Some(*ino),
                format!(
                    "back-reference {parent}/{:?} has no entry",
                    String::from_utf8_lossy(name)
                ),
            );
        }
    }
}

fn check_links(c: &mut Checker, s: &Seen) {
    let mut names: HashMap<u64, u32> = HashMap::new();
    for (ino, _, _) in s.backrefs.keys() {
        *names.entry(*ino).or_default() += 1;
    }
    let mut subdirs: HashMap<u64, u32> = HashMap::new();
    let mut sizes: HashMap<u64, u64> = HashMap::new();
    for ((dir, name), (_, dtype, _)) in &s.by_index {
        if *dtype == FileKind::Directory.dtype() {
            *subdirs.entry(*dir).or_default() += 1;
        }
        *sizes.entry(*dir).or_default() += 2 * name.len() as u64;
    }
    if s.header_count != Some(s.inodes.len() as u64) {
        c.problem(
            None,
            format!(
                "header counts {:?} inodes, tree holds {}",
                s.header_count,
                s.inodes.len()
            ),
        );
    }
    for (ino, inode) in &s.inodes {
        let n = names.get(ino).copied().unwrap_or(0);
        let orphan = s.orphans.contains(ino);
        if (inode.nlink == 0) != orphan {
            c.problem(
                Some(*ino),
                format!("nlink {} but orphan list entry {}", inode.nlink, orphan),
            );
        }
        if inode.is_dir() {
            let want_names = u32::from(*ino != ROOT_INO && inode.nlink > 0);
            if n != want_names {
                c.problem(Some(*ino), format!("directory has {n} names"));
            }
            let want = if inode.nlink == 0 {
                0
            } else {
                2 + subdirs.get(ino).copied().unwrap_or(0)
            };
            if inode.nlink != want {
                c.problem(
                    Some(*ino),
                    format!("directory nlink {} but {} expected", inode.nlink, want),
                );
            }
            let size = sizes.get(ino).copied().unwrap_or(0);
            if inode.size != size {
                c.problem(
                    Some(*ino),
                    format!("directory size {} but entries add up to {size}", inode.size),
                );
            }
        } else if inode.nlink != n {
            c.problem(Some(*ino), format!("nlink {} but {n} names", inode.nlink));
        }
    }
    for o in &s.orphans {
        if !s.inodes.contains_key(o) {
            c.problem(Some(*o), "orphan list names a missing inode".into());
        }
    }
}

fn check_ancestry(c: &mut Checker, s: &Seen) {
    let parent: HashMap<u64, u64> = s
        .backrefs
        .keys()
        .filter(|(ino, _, _)| s.inodes.get(ino).is_some_and(Inode::is_dir))
        .map(|(ino, p, _)| (*ino, *p))
        .collect();
    for (ino, inode) in &s.inodes {
        if !inode.is_dir() || inode.nlink == 0 {
            continue;
        }
        let mut at = *ino;
        let mut steps = 0;
        while at != ROOT_INO {
            match parent.get(&at) {
                Some(p) if steps < s.inodes.len() => {
                    at = *p;
                    steps += 1;
                }
                _ => {
                    c.problem(Some(*ino), "directory does not lead to the root".into());
                    break;
                }
            }
        }
    }
}

fn check_data(c: &mut Checker, s: &Seen) {
    for (ino, inode) in &s.inodes {
        let (inline, blocks) = s.data.get(ino).cloned().unwrap_or_default();
        match inode.kind() {
            FileKind::Regular => {}
            FileKind::Symlink => {
                if s.symlink_bytes.get(ino).copied().unwrap_or(0) != inode.size {
                    c.problem(
                        Some(*ino),
                        "symlink target length differs from the size".into(),
                    );
                }
                continue;
            }
            _ => {
                if inline.is_some() || !blocks.is_empty() {
                    c.problem(Some(*ino), "data records on a non-regular inode".into());
                }
                continue;
            }
        }
        if let Some(len) = inline {
            if !blocks.is_empty() {
                c.problem(Some(*ino), "inline data and block records together".into());
            }
            if len > inode.size {
                c.problem(
                    Some(*ino),
                    format!("inline data of {len} bytes past the size {}", inode.size),
                );
            }
        }
        let mut end = 0;
        let mut total = 0;
        for (start, len) in &blocks {
            if *start < end {
                c.problem(
                    Some(*ino),
                    format!("block records overlap at block {start}"),
                );
            }
            end = start + len;
            total += len;
        }
        if total != inode.blocks {
            c.problem(
                Some(*ino),
                format!("inode counts {} blocks, records hold {total}", inode.blocks),
            );
        }
    }
    for ino in s.data.keys().chain(s.symlink_bytes.keys()) {
        if !s.inodes.contains_key(ino) {
            c.problem(Some(*ino), "records of a missing inode".into());
        }
    }
}
