//! Reading nodes (verified against their bref, cached) and writing them (coalesced).

use std::sync::Arc;

use parking_lot::Mutex;
use quick_cache::sync::Cache;
use quick_cache::Weighter;

use crate::bref::BlockRef;
use crate::device::BlockDevice;
use crate::error::{Result, StoreError};
use crate::layout::{block_offset, BLOCK_BYTES, NODE_BYTES};
use crate::node::{node_checksum, Node};

#[derive(Clone)]
struct NodeWeight;

impl Weighter<u64, (u32, Arc<Node>)> for NodeWeight {
    fn weight(&self, _key: &u64, val: &(u32, Arc<Node>)) -> u64 {
        (val.1.used_bytes() + 256) as u64
    }
}

/// Verified, cached access to nodes on the device.
pub(crate) struct NodeIo {
    pub device: Arc<dyn BlockDevice>,
    cache: Cache<u64, (u32, Arc<Node>), NodeWeight>,
    spare: Arc<SpareBuffers>,
}

/// Write buffers kept from one commit to the next: a big commit's 8 MiB buffers would
/// otherwise be fresh memory every time, faulted in and zeroed page by page.
#[derive(Default)]
struct SpareBuffers(Mutex<Vec<Vec<u8>>>);

/// Spare buffers kept: one per writing thread of a commit, and one more.
const SPARE_BUFFERS_MAX: usize = 3;

/// Bytes of decoded nodes kept in memory by default.
pub const NODE_CACHE_BYTES_DEFAULT: u64 = 512 << 20;

impl NodeIo {
    pub fn new(device: Arc<dyn BlockDevice>, cache_bytes: u64) -> NodeIo {
        let estimated_items = (cache_bytes / 8192).max(64) as usize;
        NodeIo {
            device,
            cache: Cache::with_weighter(estimated_items, cache_bytes, NodeWeight),
            spare: Arc::default(),
        }
    }

    /// A writer for a commit's nodes.
    pub fn batch_writer(&self) -> BatchWriter {
        let buf = self.spare.0.lock().pop().unwrap_or_default();
        BatchWriter {
            device: self.device.clone(),
            buf,
            used: 0,
            start_block: 0,
            unhinted: Vec::new(),
            unhinted_bytes: 0,
            spare: self.spare.clone(),
        }
    }

    /// Loads the node `r` points at, checking its checksum, its tid and (if given) its level.
    pub fn load(&self, r: BlockRef, level: Option<u8>) -> Result<Arc<Node>> {
        if let Some((crc, node)) = self.cache.get(&r.block) {
            if crc == r.checksum {
                return Ok(node);
            }
        }
        let node = Arc::new(self.read(r, level)?);
        self.cache.insert(r.block, (r.checksum, node.clone()));
        Ok(node)
    }

    /// Reads and checks the node `r` points at from the device (not the cache).
    fn read(&self, r: BlockRef, level: Option<u8>) -> Result<Node> {
        let mut buf = vec![0u8; NODE_BYTES];
        let offset = block_offset(r.block);
        self.device
            .read_at(offset, &mut buf)
            .map_err(|e| StoreError::io("reading a tree node", offset, e))?;
        let found = node_checksum(&buf);
        if found != r.checksum {
            return Err(StoreError::ChecksumMismatch {
                what: "tree node",
                block: r.block,
                expected: r.checksum,
                found,
            });
        }
        let node = Node::decode(r.block, &buf)?;
        if node.tid != r.modify_tid {
            return Err(StoreError::corrupt(
                "tree node",
                r.block,
                format!(
                    "written at tid {} but referenced as tid {}",
                    node.tid, r.modify_tid
                ),
            ));
        }
        if let Some(level) = level {
            if node.level != level {
                return Err(StoreError::corrupt(
                    "tree node",
                    r.block,
                    format!("level {} where level {level} was expected", node.level),
                ));
            }
        }
        Ok(node)
    }

    /// The node `r` points at, to be edited. When the cache holds the only reference to it,
    /// it is taken out and handed over whole: a transaction that rewrites most of a tree
    /// then copies no node (the copies were a fifth of a batch of random inserts). Anyone
    /// reading the block later reads it from the device again, where it stays until it is
    /// freed and no reader can reach it. Otherwise (a reader holds it) it is copied. A node
    /// not in the cache is read for the editor alone.
    pub fn load_for_edit(&self, r: BlockRef, level: Option<u8>) -> Result<Node> {
        if let Some((_, (crc, node))) = self.cache.remove(&r.block) {
            if crc == r.checksum && level.is_none_or(|l| l == node.level) {
                return Ok(match Arc::try_unwrap(node) {
                    Ok(node) => node.into_editable(),
                    Err(shared) => {
                        self.cache.insert(r.block, (crc, shared.clone()));
                        (*shared).clone()
                    }
                });
            }
        }
        Ok(self.read(r, level)?.into_editable())
    }

    /// Remembers a node just written.
    pub fn remember(&self, block: u64, checksum: u32, node: Arc<Node>) {
        self.cache.insert(block, (checksum, node));
    }

    /// Forgets whatever was cached for `block` (it is being reused).
    pub fn forget(&self, block: u64) {
        self.cache.remove(&block);
    }
}

/// Largest single write the batcher issues.
const WRITE_BATCH_BYTES_MAX: usize = 8 << 20;
/// A batch buffer's first size: what a small commit needs.
const SMALL_BATCH_BYTES: usize = 16 * NODE_BYTES;

/// Gathers node writes at consecutive blocks into large writes.
pub(crate) struct BatchWriter {
    device: Arc<dyn BlockDevice>,
    /// Bytes `..used` are the batch; the rest was written before (and is overwritten, not
    /// zeroed again, when the next node is encoded there).
    buf: Vec<u8>,
    used: usize,
    start_block: u64,
    /// Device ranges (start, end) written since the last writeback hint, and their bytes.
    /// The hint goes to exactly these: it also drops clean cached pages in its range, and
    /// one range spanning them all would drop other data's.
    unhinted: Vec<(u64, u64)>,
    unhinted_bytes: usize,
    spare: Arc<SpareBuffers>,
}

impl Drop for BatchWriter {
    fn drop(&mut self) {
        if self.buf.len() > SMALL_BATCH_BYTES {
            let mut spare = self.spare.0.lock();
            if spare.len() < SPARE_BUFFERS_MAX {
                spare.push(std::mem::take(&mut self.buf));
            }
        }
    }
}

impl BatchWriter {
    /// Room for one node at `block`, to encode it in place (no copy into the batch). Every
    /// byte of it must be written: it may hold an earlier batch's node.
    pub fn node_slot(&mut self, block: u64) -> Result<&mut [u8]> {
        let next = self.start_block + (self.used / BLOCK_BYTES) as u64;
        if self.used > 0 && (block != next || self.used >= WRITE_BATCH_BYTES_MAX) {
            self.finish()?;
        }
        if self.used == 0 {
            self.start_block = block;
        }
        if self.buf.len() < self.used + NODE_BYTES {
            // Small commits keep a small buffer; a big one goes to the full batch size at
            // its second growth, instead of doubling (and copying) its way up.
            let len = if self.buf.is_empty() {
                SMALL_BATCH_BYTES
            } else {
                WRITE_BATCH_BYTES_MAX + NODE_BYTES
            };
            self.buf.resize(len.max(self.used + NODE_BYTES), 0);
        }
        let at = self.used;
        self.used += NODE_BYTES;
        Ok(&mut self.buf[at..at + NODE_BYTES])
    }

    pub fn finish(&mut self) -> Result<()> {
        if self.used == 0 {
            return Ok(());
        }
        let offset = block_offset(self.start_block);
        self.device
            .write_at(offset, &self.buf[..self.used])
            .map_err(|e| StoreError::io("writing tree nodes", offset, e))?;
        // A big commit: every 8 MiB written, the disk is asked to start on them while the
        // rest is encoded, so the commit's flush finds less to wait for.
        let end = offset + self.used as u64;
        match self.unhinted.last_mut() {
            Some((_, last_end)) if *last_end == offset => *last_end = end,
            _ => self.unhinted.push((offset, end)),
        }
        self.unhinted_bytes += self.used;
        if self.unhinted_bytes >= WRITE_BATCH_BYTES_MAX {
            for (start, end) in self.unhinted.drain(..) {
                self.device.start_writeback(start, end - start);
            }
            self.unhinted_bytes = 0;
        }
        self.used = 0;
        Ok(())
    }
}
