//! Directory entries. Each entry is stored twice, so that both access patterns are one
//! lookup: by name hash for `lookup`, and by a per-directory insertion index for `readdir`,
//! whose cookies must stay valid while entries come and go.
//!
//! ```text
//! (dir, DIRENT_HASH, fnv1a64(name)) → repeated { ino u64, index u64, dtype u8,
//!                                               name_len u8, name }
//!     (names whose hashes collide share one record)
//! (dir, DIRENT_INDEX, index)        → ino u64, dtype u8, name
//! ```
//!
//! Readdir cookies: 0 starts a listing; "." is followed by cookie 1, ".." by cookie 2, and
//! the entry with index `i` (always ≥ 2) by cookie `i + 1`. A directory's size is twice the
//! sum of its entries' name lengths (btrfs's convention), which fsck checks.

use crate::cx::Cx;
use crate::error::{FsError, Result};
use crate::inode::{FileKind, Inode};
use crate::keys::{
    backref_key, dirent_hash_key, dirent_index_key, key_u64, kind_prefix, le_u64, KIND_DIRENT_INDEX,
};
use crate::limits::NAME_BYTES_MAX;
use crate::records::RecordError;

/// 64-bit FNV-1a: stable across builds (it is part of the on-disk format) and cheap.
/// Collisions are harmless: entries sharing a hash share one record.
pub(crate) fn name_hash(name: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in name {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Rejects names that can never be a directory entry.
pub(crate) fn check_name(name: &[u8]) -> Result<()> {
    if name.len() > NAME_BYTES_MAX {
        return Err(FsError::NameTooLong {
            len: name.len(),
            max: NAME_BYTES_MAX,
        });
    }
    if name.is_empty() {
        return Err(FsError::NotFound("empty name".into()));
    }
    if name.contains(&b'/') || name.contains(&0) {
        return Err(FsError::Invalid(format!(
            "name {:?} contains '/' or NUL",
            String::from_utf8_lossy(name)
        )));
    }
    Ok(())
}

pub(crate) fn is_dot_or_dotdot(name: &[u8]) -> bool {
    name == b"." || name == b".."
}

/// One entry of a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: Vec<u8>,
    pub ino: u64,
    pub kind: FileKind,
    /// Position in readdir order.
    pub index: u64,
}

/// One readdir result: the entry and the cookie that continues after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaddirEntry {
    pub name: Vec<u8>,
    pub ino: u64,
    pub kind: FileKind,
    pub next_cookie: u64,
}

/// The entries of the DIRENT_HASH record `(key, v)`.
pub(crate) fn decode_hash_record(key: &[u8], mut v: &[u8]) -> Result<Vec<DirEntry>, RecordError> {
    let mut out = Vec::new();
    while !v.is_empty() {
        if v.len() < 18 || v.len() < 18 + v[17] as usize {
            return Err(RecordError::new(key, "directory hash record is truncated"));
        }
        let len = v[17] as usize;
        let kind = FileKind::from_dtype(v[16])
            .ok_or_else(|| RecordError::new(key, format!("bad entry type {}", v[16])))?;
        out.push(DirEntry {
            ino: le_u64(v, 0),
            index: le_u64(v, 8),
            kind,
            name: v[18..18 + len].to_vec(),
        });
        v = &v[18 + len..];
    }
    Ok(out)
}

pub(crate) fn encode_hash_record(entries: &[DirEntry]) -> Vec<u8> {
    let mut v = Vec::new();
    for e in entries {
        v.extend_from_slice(&e.ino.to_le_bytes());
        v.extend_from_slice(&e.index.to_le_bytes());
        v.push(e.kind.dtype());
        v.push(e.name.len() as u8);
        v.extend_from_slice(&e.name);
    }
    v
}

/// The entry of the DIRENT_INDEX record `(key, v)`; the key holds its readdir index.
pub(crate) fn decode_index_record(key: &[u8], v: &[u8]) -> Result<DirEntry, RecordError> {
    let index = key_u64(key, 9).ok_or_else(|| RecordError::new(key, "bad index key"))?;
    if v.len() < 9 {
        return Err(RecordError::new(key, "directory index record is truncated"));
    }
    Ok(DirEntry {
        ino: le_u64(v, 0),
        kind: FileKind::from_dtype(v[8])
            .ok_or_else(|| RecordError::new(key, format!("bad entry type {}", v[8])))?,
        index,
        name: v[9..].to_vec(),
    })
}

impl Cx<'_, '_> {
    /// The directory `dir`, or ENOENT / ENOTDIR.
    pub fn dir_inode(&mut self, dir: u64) -> Result<Inode> {
        let inode = self.inode(dir)?;
        if !inode.is_dir() {
            return Err(FsError::NotDir(format!("inode {dir}")));
        }
        Ok(inode)
    }

    /// The entry `name` of directory `dir`.
    pub fn find_entry(&mut self, dir: u64, name: &[u8]) -> Result<Option<DirEntry>> {
        let tree = self.tree;
        let Some(r) = self.get(&dirent_hash_key(dir, name_hash(name)))? else {
            return Ok(None);
        };
        Ok(decode_hash_record(&r.key, &r.value)
            .map_err(|e| FsError::record(tree, e))?
            .into_iter()
            .find(|e| e.name == name))
    }

    /// Adds `name → ino` to `dir` (the caller saves `dir` afterwards) and the back-reference.
    pub fn add_entry(
        &mut self,
        dir: &mut Inode,
        name: &[u8],
        ino: u64,
        kind: FileKind,
    ) -> Result<()> {
        let tree = self.tree;
        let index = dir.next_index;
        dir.next_index += 1;
        let hkey = dirent_hash_key(dir.ino, name_hash(name));
        let mut entries = match self.get(&hkey)? {
            Some(r) => {
                decode_hash_record(&r.key, &r.value).map_err(|e| FsError::record(tree, e))?
            }
            None => Vec::new(),
        };
        entries.push(DirEntry {
            name: name.to_vec(),
            ino,
            kind,
            index,
        });
        self.put(&hkey, &encode_hash_record(&entries))?;
        let mut iv = Vec::with_capacity(9 + name.len());
        iv.extend_from_slice(&ino.to_le_bytes());
        iv.push(kind.dtype());
        iv.extend_from_slice(name);
        self.put(&dirent_index_key(dir.ino, index), &iv)?;
        self.put(&backref_key(ino, dir.ino, name), &index.to_le_bytes())?;
        dir.size += 2 * name.len() as u64;
        Ok(())
    }

    /// Removes the entry `name` from `dir` and its back-reference; returns what it was.
    pub fn remove_entry(&mut self, dir: &mut Inode, name: &[u8]) -> Result<DirEntry> {
        let tree = self.tree;
        let hkey = dirent_hash_key(dir.ino, name_hash(name));
        let mut entries = match self.get(&hkey)? {
            Some(r) => {
                decode_hash_record(&r.key, &r.value).map_err(|e| FsError::record(tree, e))?
            }
            None => Vec::new(),
        };
        let pos = entries
            .iter()
            .position(|e| e.name == name)
            .ok_or_else(|| FsError::NotFound(String::from_utf8_lossy(name).into_owned()))?;
        let entry = entries.remove(pos);
        if entries.is_empty() {
            self.del(&hkey)?;
        } else {
            self.put(&hkey, &encode_hash_record(&entries))?;
        }
        self.del(&dirent_index_key(dir.ino, entry.index))?;
        self.del(&backref_key(entry.ino, dir.ino, name))?;
        dir.size -= 2 * name.len() as u64;
        Ok(entry)
    }

    /// Points the existing entry `name` of `dir` at another inode (rename over a target,
    /// exchange), keeping its readdir index.
    pub fn repoint_entry(
        &mut self,
        dir: u64,
        name: &[u8],
        ino: u64,
        kind: FileKind,
    ) -> Result<DirEntry> {
        let tree = self.tree;
        let hkey = dirent_hash_key(dir, name_hash(name));
        let mut entries = match self.get(&hkey)? {
            Some(r) => {
                decode_hash_record(&r.key, &r.value).map_err(|e| FsError::record(tree, e))?
            }
            None => Vec::new(),
        };
        let e = entries
            .iter_mut()
            .find(|e| e.name == name)
            .ok_or_else(|| FsError::NotFound(String::from_utf8_lossy(name).into_owned()))?;
        let old = e.clone();
        e.ino = ino;
        e.kind = kind;
        let index = e.index;
        self.put(&hkey, &encode_hash_record(&entries))?;
        let mut iv = Vec::with_capacity(9 + name.len());
        iv.extend_from_slice(&ino.to_le_bytes());
        iv.push(kind.dtype());
        iv.extend_from_slice(name);
        self.put(&dirent_index_key(dir, index), &iv)?;
        self.del(&backref_key(old.ino, dir, name))?;
        self.put(&backref_key(ino, dir, name), &index.to_le_bytes())?;
        Ok(old)
    }

    pub fn dir_is_empty(&mut self, dir: u64) -> Result<bool> {
        Ok(self
            .view()?
            .prefix(&kind_prefix(dir, KIND_DIRENT_INDEX))?
            .next()
            .is_none())
    }

    /// Up to `max` entries of `dir` after `cookie` (see the module doc for cookies).
    pub fn readdir(
        &mut self,
        dir: &Inode,
        parent: u64,
        cookie: u64,
        max: usize,
    ) -> Result<Vec<ReaddirEntry>> {
        let tree = self.tree;
        let mut out = Vec::new();
        if cookie == 0 && out.len() < max {
            out.push(ReaddirEntry {
                name: b".".to_vec(),
                ino: dir.ino,
                kind: FileKind::Directory,
                next_cookie: 1,
            });
        }
        if cookie <= 1 && out.len() < max {
            out.push(ReaddirEntry {
                name: b"..".to_vec(),
                ino: parent,
                kind: FileKind::Directory,
                next_cookie: 2,
            });
        }
        if out.len() >= max {
            return Ok(out);
        }
        let lo = dirent_index_key(dir.ino, cookie.max(2));
        let hi = dirent_index_key(dir.ino, u64::MAX);
        for r in self.view()?.range(lo.as_slice()..=hi.as_slice())? {
            let r = r?;
            let e = decode_index_record(&r.key, &r.value).map_err(|e| FsError::record(tree, e))?;
            out.push(ReaddirEntry {
                name: e.name,
                ino: e.ino,
                kind: e.kind,
                next_cookie: e.index + 1,
            });
            if out.len() >= max {
                break;
            }
        }
        Ok(out)
    }

    /// Every entry of `dir` in readdir order.
    pub fn dir_entries(&mut self, dir: u64) -> Result<Vec<DirEntry>> {
        let tree = self.tree;
        let mut out = Vec::new();
        for r in self.view()?.prefix(&kind_prefix(dir, KIND_DIRENT_INDEX))? {
            let r = r?;
            out.push(decode_index_record(&r.key, &r.value).map_err(|e| FsError::record(tree, e))?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_reference_values() {
        assert_eq!(name_hash(b""), 0xcbf29ce484222325);
        assert_eq!(name_hash(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(name_hash(b"foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn colliding_names_share_one_record() {
        let entries = vec![
            DirEntry {
                name: b"x".to_vec(),
                ino: 300,
                kind: FileKind::Regular,
                index: 2,
            },
            DirEntry {
                name: vec![b'y'; 255],
                ino: 301,
                kind: FileKind::Directory,
                index: 3,
            },
        ];
        let v = encode_hash_record(&entries);
        let key = dirent_hash_key(256, name_hash(b"x"));
        assert_eq!(decode_hash_record(&key, &v).unwrap(), entries);
        assert!(decode_hash_record(&key, &v[..v.len() - 1]).is_err());
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name(b"ok name\n\xff").is_ok());
        assert_eq!(
            check_name(b"a/b").unwrap_err().errno(),
            crate::error::errno::EINVAL
        );
        assert_eq!(
            check_name(&[b'a'; 256]).unwrap_err().errno(),
            crate::error::errno::ENAMETOOLONG
        );
        assert!(check_name(&[b'a'; 255]).is_ok());
    }
}
