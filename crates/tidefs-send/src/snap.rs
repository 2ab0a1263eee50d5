//! A read view of one subvolume tree for the sender, frozen when it is opened: raw records
//! (decoded per FORMAT.md in `records`), lookups, data reads with checksum checks.
//!
//! Working on the frozen tree (not on a live `Subvol` handle) lets the same code read a
//! snapshot, or a writable subvolume as it was at one moment (receive's rollback).

use tidefs_fs::{Fs, SubvolInfo, ROOT_INO};
use tidefs_store::{Extent, Pool, TreeView};

use crate::error::{SendError, SendResult};
use crate::records::{
    backref_of_key, decode_xattr, find_in_dirent_hash, inode_key, kind_prefix, name_hash,
    xattr_chunk_key, DataRecord, InodeItem, XattrValue, BLOCK_BYTES, KIND_BACKREF, KIND_DATA,
    KIND_DIRENT_HASH, KIND_DIRENT_INDEX, KIND_SYMLINK, KIND_XATTR,
};

/// Directory depth beyond which a path walk is taken as a loop.
const PATH_DEPTH_MAX: usize = 2048;

/// One subvolume tree as the sender reads it.
#[derive(Clone)]
pub struct SnapView {
    pub info: SubvolInfo,
    pub view: TreeView,
    pool: Pool,
}

impl SnapView {
    /// The tree of `info` as it is now (including uncommitted changes).
    pub fn open(fs: &Fs, info: &SubvolInfo) -> SendResult<SnapView> {
        let tree = info.tree;
        let view = fs.pool().write(|t| t.tree(tree))?;
        Ok(SnapView {
            info: info.clone(),
            view,
            pool: fs.pool().clone(),
        })
    }

    fn corrupt(&self, what: String) -> SendError {
        SendError::Corrupt {
            tree: self.view.id().0,
            what,
        }
    }

    pub fn inode(&self, ino: u64) -> SendResult<Option<InodeItem>> {
        match self.view.get(&inode_key(ino))? {
            None => Ok(None),
            Some(r) => InodeItem::decode(ino, &r.value)
                .map(Some)
                .ok_or_else(|| self.corrupt(format!("inode {ino} does not decode"))),
        }
    }

    /// Every name of `ino` as (parent, name), ordered.
    pub fn backrefs(&self, ino: u64) -> SendResult<Vec<(u64, Vec<u8>)>> {
        let mut out = Vec::new();
        for r in self.view.prefix(&kind_prefix(ino, KIND_BACKREF))? {
            let r = r?;
            out.push(
                backref_of_key(&r.key)
                    .ok_or_else(|| self.corrupt(format!("inode {ino}: bad back-reference")))?,
            );
        }
        Ok(out)
    }

    /// The inode named `name` in directory `dir`.
    pub fn lookup(&self, dir: u64, name: &[u8]) -> SendResult<Option<u64>> {
        let key = tidefs_store::key3(dir, KIND_DIRENT_HASH, name_hash(name));
        Ok(self
            .view
            .get(&key)?
            .and_then(|r| find_in_dirent_hash(&r.value, name)))
    }

    /// The first path of `ino` relative to the root ("a/b"), `None` if it has no name.
    pub fn path(&self, ino: u64) -> SendResult<Option<Vec<u8>>> {
        let mut parts: Vec<Vec<u8>> = Vec::new();
        let mut at = ino;
        while at != ROOT_INO {
            if parts.len() > PATH_DEPTH_MAX {
                return Err(self.corrupt(format!("inode {ino}: path loops")));
            }
            let Some((parent, name)) = self.backrefs(at)?.into_iter().next() else {
                return Ok(None);
            };
            parts.push(name);
            at = parent;
        }
        parts.reverse();
        Ok(Some(parts.join(&b'/')))
    }

    /// How many entries directory `dir` holds.
    pub fn entry_count(&self, dir: u64) -> SendResult<u64> {
        let mut n = 0;
        for r in self.view.prefix(&kind_prefix(dir, KIND_DIRENT_INDEX))? {
            r?;
            n += 1;
        }
        Ok(n)
    }

    pub fn xattr(&self, ino: u64, name: &[u8]) -> SendResult<Option<Vec<u8>>> {
        let mut key = kind_prefix(ino, KIND_XATTR);
        key.extend_from_slice(name);
        match self.view.get(&key)? {
            None => Ok(None),
            Some(r) => self.xattr_value(ino, name, &r.value).map(Some),
        }
    }

    /// The full value of an XATTR record (reading its chunks if it has them).
    pub fn xattr_value(&self, ino: u64, name: &[u8], record: &[u8]) -> SendResult<Vec<u8>> {
        match decode_xattr(record) {
            Some(XattrValue::Small(v)) => Ok(v),
            Some(XattrValue::Chunked { len, chunks }) => {
                let mut out = Vec::with_capacity(len);
                for i in 0..chunks {
                    let c = self
                        .view
                        .get(&xattr_chunk_key(ino, name, i))?
                        .ok_or_else(|| {
                            self.corrupt(format!("inode {ino}: xattr chunk {i} missing"))
                        })?;
                    out.extend_from_slice(&c.value);
                }
                if out.len() != len {
                    return Err(self.corrupt(format!("inode {ino}: xattr length mismatch")));
                }
                Ok(out)
            }
            None => Err(self.corrupt(format!("inode {ino}: xattr record does not decode"))),
        }
    }

    /// Every xattr of `ino`, ordered by name.
    pub fn xattrs(&self, ino: u64) -> SendResult<Vec<(Vec<u8>, Vec<u8>)>> {
        let prefix = kind_prefix(ino, KIND_XATTR);
        let mut out = Vec::new();
        for r in self.view.prefix(&prefix)? {
            let r = r?;
            let name = r.key[prefix.len()..].to_vec();
            let value = self.xattr_value(ino, &name, &r.value)?;
            out.push((name, value));
        }
        Ok(out)
    }

    pub fn symlink_target(&self, ino: u64) -> SendResult<Vec<u8>> {
        let mut out = Vec::new();
        for r in self.view.prefix(&kind_prefix(ino, KIND_SYMLINK))? {
            out.extend_from_slice(&r?.value);
        }
        Ok(out)
    }

    pub fn data_records(&self, ino: u64) -> SendResult<Vec<DataRecord>> {
        let mut out = Vec::new();
        for r in self.view.prefix(&kind_prefix(ino, KIND_DATA))? {
            let r = r?;
            out.push(DataRecord::decode(&r).ok_or_else(|| {
                self.corrupt(format!("inode {ino}: data record does not decode"))
            })?);
        }
        Ok(out)
    }

    /// Reads whole blocks `[ext_block, ext_block + crcs.len())` of `extent`, checking each
    /// block's crc32c, and returns bytes `[skip, skip + len)` of them.
    pub fn read_blocks(
        &self,
        ino: u64,
        extent: Extent,
        ext_block: u64,
        crcs: &[u32],
        skip: u64,
        len: u64,
    ) -> SendResult<Vec<u8>> {
        let mut buf = vec![0u8; crcs.len() * BLOCK_BYTES as usize];
        self.pool
            .read()
            .read_extent(extent, ext_block * BLOCK_BYTES, &mut buf)?;
        for (i, (block, crc)) in buf.chunks(BLOCK_BYTES as usize).zip(crcs).enumerate() {
            if crc32c::crc32c(block) != *crc {
                return Err(self.corrupt(format!(
                    "inode {ino}: data block {} of extent at {} fails its checksum",
                    ext_block + i as u64,
                    extent.block
                )));
            }
        }
        Ok(buf[skip as usize..(skip + len) as usize].to_vec())
    }
}
