//! A read view of one subvolume tree for the sender, frozen when it is opened: raw records
//! (decoded by `tidefs_fs::records`), lookups, data reads with checksum checks.
//!
//! Working on the frozen tree (not on a live `Subvol` handle) lets the same code read a
//! snapshot, or a writable subvolume as it was at one moment (receive's rollback).

use tidefs_fs::records::{
    decode_backref_key, decode_data, decode_dirent_hash, decode_inode, dirent_hash_key, inode_key,
    kind_prefix, xattr_key, xattr_name_of_key, xattr_value, DataRecord, RecordError, KIND_BACKREF,
    KIND_DATA, KIND_DIRENT_INDEX, KIND_SYMLINK, KIND_XATTR,
};
use tidefs_fs::{Fs, Inode, SubvolInfo, ROOT_INO};
use tidefs_store::{Extent, Pool, Record, TreeView};

use crate::data::BLOCK_BYTES;
use crate::error::{SendError, SendResult};

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

    fn record(&self, source: RecordError) -> SendError {
        SendError::Record {
            tree: self.view.id().0,
            source,
        }
    }

    pub fn inode(&self, ino: u64) -> SendResult<Option<Inode>> {
        match self.view.get(&inode_key(ino))? {
            None => Ok(None),
            Some(r) => decode_inode(&r).map(Some).map_err(|e| self.record(e)),
        }
    }

    /// Every name of `ino` as (parent, name), ordered.
    pub fn backrefs(&self, ino: u64) -> SendResult<Vec<(u64, Vec<u8>)>> {
        let mut out = Vec::new();
        for r in self.view.prefix(&kind_prefix(ino, KIND_BACKREF))? {
            let b = decode_backref_key(&r?.key).map_err(|e| self.record(e))?;
            out.push((b.parent, b.name));
        }
        Ok(out)
    }

    /// The inode named `name` in directory `dir`.
    pub fn lookup(&self, dir: u64, name: &[u8]) -> SendResult<Option<u64>> {
        let Some(r) = self.view.get(&dirent_hash_key(dir, name))? else {
            return Ok(None);
        };
        Ok(decode_dirent_hash(&r)
            .map_err(|e| self.record(e))?
            .into_iter()
            .find(|e| e.name == name)
            .map(|e| e.ino))
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
        match self.view.get(&xattr_key(ino, name))? {
            None => Ok(None),
            Some(r) => self.xattr_value(&r).map(Some),
        }
    }

    /// The full value of XATTR record `r` (reading its chunks if it has them).
    pub fn xattr_value(&self, r: &Record) -> SendResult<Vec<u8>> {
        xattr_value(r, |k| {
            Ok::<_, SendError>(self.view.get(k)?.map(|c| c.value))
        })?
        .map_err(|e| self.record(e))
    }

    /// Every xattr of `ino`, ordered by name.
    pub fn xattrs(&self, ino: u64) -> SendResult<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        for r in self.view.prefix(&kind_prefix(ino, KIND_XATTR))? {
            let r = r?;
            let name = xattr_name_of_key(&r.key).map_err(|e| self.record(e))?;
            out.push((name.to_vec(), self.xattr_value(&r)?));
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
            out.push(decode_data(&r).map_err(|e| self.record(e))?);
        }
        Ok(out)
    }

    /// Reads whole blocks `[ext_block, ext_block + crcs.len())` of `extent`, checking each
    /// block's crc32c, and returns bytes `[skip, skip + len)` of them.
    /// Hints that `blocks` blocks of `extent` from `ext_block` on will be read soon.
    pub fn prefetch_blocks(&self, extent: Extent, ext_block: u64, blocks: u64) {
        self.pool
            .read()
            .prefetch_extent(extent, ext_block * BLOCK_BYTES, blocks * BLOCK_BYTES);
    }

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
        // In place: a second buffer of the same size would be one more allocation and
        // copy per piece.
        buf.truncate((skip + len) as usize);
        if skip > 0 {
            buf.drain(..skip as usize);
        }
        Ok(buf)
    }
}
