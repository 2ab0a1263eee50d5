//! Clone sources: snapshots the receiver already holds (`send -c`), whose data a stream
//! may reference with CLONE instead of sending it again.
//!
//! tidefs shares a data extent between trees only through snapshots and clones, and then
//! always at the same inode number and file offset, so a block of the snapshot sent can be
//! cloned from a source when the source's same inode (same generation) maps that block to
//! the very same extent block. Finding that costs one lookup per changed file and source.

use tidefs_fs::records::DataRecord;
use tidefs_store::Extent;
use tidefs_stream::Uuid;

use crate::data::BLOCK_BYTES;
use crate::error::SendResult;
use crate::snap::SnapView;

/// One snapshot the receiver holds.
pub struct CloneSource {
    pub view: SnapView,
    /// What the stream calls it (received uuid if it was received, else its uuid).
    pub uuid: Uuid,
    pub ctransid: u64,
}

/// A file of a clone source that shares blocks with the file being sent.
pub struct CloneFile {
    pub source: usize,
    /// Path of the file in the source, relative to its root.
    pub path: Vec<u8>,
    pub size: u64,
    /// (first block, blocks, extent, extent block) of every data record.
    blocks: Vec<(u64, u64, Extent, u64)>,
}

impl CloneFile {
    /// Whether block `b` maps to extent block (`extent`, `ext_block`) in the source.
    pub fn shares(&self, b: u64, extent: Extent, ext_block: u64) -> bool {
        let i = self.blocks.partition_point(|r| r.0 + r.1 <= b);
        self.blocks.get(i).is_some_and(|&(start, _, e, off)| {
            start <= b && e == extent && off + (b - start) == ext_block
        }) && (b + 1) * BLOCK_BYTES <= self.size
    }
}

#[derive(Default)]
pub struct CloneSources {
    pub sources: Vec<CloneSource>,
}

impl CloneSources {
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// The files of the sources that are inode `ino` of generation `gen`.
    pub fn files(&self, ino: u64, gen: u64) -> SendResult<Vec<CloneFile>> {
        let mut out = Vec::new();
        for (i, s) in self.sources.iter().enumerate() {
            let Some(item) = s.view.inode(ino)? else {
                continue;
            };
            if item.generation != gen || item.nlink == 0 || item.is_dir() {
                continue;
            }
            let Some(path) = s.view.path(ino)? else {
                continue;
            };
            let mut blocks = Vec::new();
            for r in s.view.data_records(ino)? {
                // Preallocated blocks (no checksums) hold no data to clone.
                if let DataRecord::Block(b) = r {
                    if b.crcs.is_some() {
                        blocks.push((b.start, b.len, b.extent, b.ext_off));
                    }
                }
            }
            out.push(CloneFile {
                source: i,
                path,
                size: item.size,
                blocks,
            });
        }
        Ok(out)
    }
}
