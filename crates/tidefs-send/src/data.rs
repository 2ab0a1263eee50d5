//! File data: which ranges of a file the receiver must write, punch, preallocate or clone,
//! and the commands that do it.
//!
//! A new file sends every stored range. A changed file sends only what its changed data
//! records say: the store diff yields exactly the records that differ, and within those a
//! block whose new record maps it to the same extent block as the old record did is
//! unchanged (a write that split a record re-records the untouched pieces). Blocks that
//! lost their record are holes now: FALLOCATE punch-hole in version 2 streams, zeros in
//! version 1 (which has no punch). Preallocated ranges become FALLOCATE KEEP_SIZE in
//! version 2 and are left as holes in version 1. TRUNCATE follows when the size changed
//! (or, for a new file, when it ends past its last data).

use tidefs_fs::limits::{DATA_BLOCK_BYTES, INLINE_DATA_BYTES_MAX};
use tidefs_fs::records::{decode_data, parse_key, DataRecord, KIND_DATA};
use tidefs_store::Extent;
use tidefs_stream::{Command, StreamVersion};

use crate::clone_src::CloneFile;
use crate::error::SendResult;
use crate::ordering::{Engine, InodeChange};
use crate::paths::Lino;

/// Bytes of one file block (the unit of data records).
pub(crate) const BLOCK_BYTES: u64 = DATA_BLOCK_BYTES as u64;
/// Files up to this size may be stored inline (the receiver is tidefs-fs too).
const INLINE_BYTES_MAX: u64 = INLINE_DATA_BYTES_MAX as u64;
const FALLOC_KEEP_SIZE: u32 = 0x01;
const FALLOC_PUNCH_HOLE: u32 = 0x02;
/// Bytes read from the snapshot at a time.
const READ_BYTES: u64 = 4 << 20;

/// One thing to do to a range of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    /// Send the bytes of `[offset, offset + len)`, stored in blocks `ext_block..` of
    /// `extent` (with their checksums).
    Write {
        offset: u64,
        len: u64,
        extent: Extent,
        ext_block: u64,
        crcs: Vec<u32>,
    },
    /// Send these bytes (inline data).
    Inline { data: Vec<u8> },
    /// Make `[offset, offset + len)` read as zeros without data.
    Hole { offset: u64, len: u64 },
    /// Preallocate (reads as zeros, holds space).
    Prealloc { offset: u64, len: u64 },
}

/// start, len, extent, ext_off, prealloc, crcs
type BlockRange = (u64, u64, Extent, u64, bool, Vec<u32>);

fn records_of(ch: &InodeChange, new_side: bool) -> Vec<DataRecord> {
    let mut out = Vec::new();
    for d in &ch.records {
        if parse_key(&d.key).map(|k| k.kind) != Ok(KIND_DATA) {
            continue;
        }
        let r = if new_side { &d.new } else { &d.old };
        if let Some(r) = r {
            if let Ok(rec) = decode_data(r) {
                out.push(rec);
            }
        }
    }
    out
}

fn ranges(recs: &[DataRecord]) -> (Option<usize>, Vec<BlockRange>) {
    let mut inline = None;
    let mut out = Vec::new();
    for r in recs {
        match r {
            DataRecord::Inline(b) => inline = Some(b.len()),
            DataRecord::Block(b) => out.push((
                b.start,
                b.len,
                b.extent,
                b.ext_off,
                b.crcs.is_none(),
                b.crcs.clone().unwrap_or_default(),
            )),
        }
    }
    out.sort_by_key(|r| r.0);
    (inline, out)
}

fn find(ranges: &[BlockRange], b: u64) -> Option<(Extent, u64, bool)> {
    let i = ranges.partition_point(|r| r.0 + r.1 <= b);
    ranges
        .get(i)
        .filter(|r| r.0 <= b)
        .map(|&(start, _, e, off, pre, _)| (e, off + (b - start), pre))
}

/// Appends a piece, merging it with the previous one when they continue each other.
fn push(pieces: &mut Vec<Piece>, p: Piece) {
    if let Some(last) = pieces.last_mut() {
        match (last, &p) {
            (
                Piece::Write {
                    offset: o1,
                    len: l1,
                    extent: e1,
                    ext_block: b1,
                    crcs: c1,
                },
                Piece::Write {
                    offset: o2,
                    len: l2,
                    extent: e2,
                    ext_block: b2,
                    crcs: c2,
                },
            ) if *o1 + *l1 == *o2
                && *l1 % BLOCK_BYTES == 0
                && e1 == e2
                && *b1 + *l1 / BLOCK_BYTES == *b2 =>
            {
                *l1 += l2;
                c1.extend_from_slice(c2);
                return;
            }
            (
                Piece::Hole {
                    offset: o1,
                    len: l1,
                },
                Piece::Hole {
                    offset: o2,
                    len: l2,
                },
            )
            | (
                Piece::Prealloc {
                    offset: o1,
                    len: l1,
                },
                Piece::Prealloc {
                    offset: o2,
                    len: l2,
                },
            ) if *o1 + *l1 == *o2 => {
                *l1 += l2;
                return;
            }
            _ => {}
        }
    }
    pieces.push(p);
}

/// Clips `[offset, offset + len)` to the file size; `None` if nothing is left.
fn clip(offset: u64, len: u64, size: u64) -> Option<(u64, u64)> {
    (offset < size).then(|| (offset, len.min(size - offset)))
}

fn plan_new(recs: &[DataRecord], size: u64) -> (Vec<Piece>, u64) {
    let mut pieces = Vec::new();
    let mut end = 0;
    for r in recs {
        match r {
            DataRecord::Inline(b) => {
                let n = (b.len() as u64).min(size) as usize;
                if n > 0 {
                    pieces.push(Piece::Inline {
                        data: b[..n].to_vec(),
                    });
                    end = end.max(n as u64);
                }
            }
            DataRecord::Block(b) => match &b.crcs {
                None => push(
                    &mut pieces,
                    Piece::Prealloc {
                        offset: b.start * BLOCK_BYTES,
                        len: b.len * BLOCK_BYTES,
                    },
                ),
                Some(crcs) => {
                    if let Some((o, l)) = clip(b.start * BLOCK_BYTES, b.len * BLOCK_BYTES, size) {
                        push(
                            &mut pieces,
                            Piece::Write {
                                offset: o,
                                len: l,
                                extent: b.extent,
                                ext_block: b.ext_off,
                                crcs: crcs[..l.div_ceil(BLOCK_BYTES) as usize].to_vec(),
                            },
                        );
                        end = end.max(o + l);
                    }
                }
            },
        }
    }
    (pieces, end)
}

fn plan_diff(old: &[DataRecord], new: &[DataRecord], size: u64) -> Vec<Piece> {
    let (old_inline, old_ranges) = ranges(old);
    let (new_inline, new_ranges) = ranges(new);
    let mut pieces = Vec::new();
    // Per block of the file, what the changed records say, in block order.
    let mut events: Vec<(u64, Piece)> = Vec::new();
    for r in new {
        if let DataRecord::Inline(b) = r {
            // The new first bytes, and zeros over whatever the old record held past them.
            let n = (b.len() as u64).min(size) as usize;
            let old_cover = old_inline
                .unwrap_or(0)
                .max(if find(&old_ranges, 0).is_some() {
                    BLOCK_BYTES as usize
                } else {
                    0
                });
            let mut data = b[..n].to_vec();
            data.resize(n.max(old_cover.min(size as usize)), 0);
            if !data.is_empty() {
                events.push((0, Piece::Inline { data }));
            }
        }
    }
    for (start, len, extent, ext_off, prealloc, crcs) in &new_ranges {
        let (start, len, extent, ext_off, prealloc) = (*start, *len, *extent, *ext_off, *prealloc);
        for b in start..start + len {
            let here = (extent, ext_off + (b - start), prealloc);
            let was = find(&old_ranges, b);
            if was == Some(here) {
                continue;
            }
            let offset = b * BLOCK_BYTES;
            if prealloc {
                if was.is_some_and(|w| !w.2) || (b == 0 && old_inline.is_some()) {
                    if let Some((o, l)) = clip(
                        offset,
                        BLOCK_BYTES,
                        size.div_ceil(BLOCK_BYTES) * BLOCK_BYTES,
                    ) {
                        events.push((b, Piece::Hole { offset: o, len: l }));
                    }
                }
                events.push((
                    b,
                    Piece::Prealloc {
                        offset,
                        len: BLOCK_BYTES,
                    },
                ));
            } else if let Some((o, l)) = clip(offset, BLOCK_BYTES, size) {
                events.push((
                    b,
                    Piece::Write {
                        offset: o,
                        len: l,
                        extent,
                        ext_block: ext_off + (b - start),
                        crcs: vec![crcs[(b - start) as usize]],
                    },
                ));
            }
        }
    }
    // Blocks that had a record and have none now are holes.
    let covered = |b: u64| find(&new_ranges, b).is_some() || (b == 0 && new_inline.is_some());
    let mut old_blocks: Vec<u64> = Vec::new();
    if old_inline.is_some() {
        old_blocks.push(0);
    }
    for &(start, len, ..) in old_ranges.iter() {
        old_blocks.extend(start..start + len);
    }
    // Holes cover whole blocks, up to the block the file ends in (a punch of a partial
    // last block would only zero it). Preallocation past the end was sent too (v2), so
    // its removal is: else the receiver would keep it, and a later extension of the file
    // would bring it inside there and not here.
    let block_end = size.div_ceil(BLOCK_BYTES) * BLOCK_BYTES;
    for b in old_blocks {
        if !covered(b) {
            let was_prealloc = find(&old_ranges, b).is_some_and(|w| w.2);
            let end = if was_prealloc { u64::MAX } else { block_end };
            if let Some((o, l)) = clip(b * BLOCK_BYTES, BLOCK_BYTES, end) {
                events.push((b, Piece::Hole { offset: o, len: l }));
            }
        }
    }
    events.sort_by_key(|(b, p)| (*b, matches!(p, Piece::Prealloc { .. })));
    for (_, p) in events {
        push(&mut pieces, p);
    }
    pieces
}

/// Sends the data of regular file `n` (at `path` at the receiver).
/// Data pieces whose blocks are asked for ahead of reading them.
const PREFETCH_WRITES: usize = 4;

pub(crate) fn send_data(
    e: &mut Engine<'_>,
    ch: &InodeChange,
    n: Lino,
    same: bool,
    path: &[u8],
) -> SendResult<()> {
    let item = ch.new.as_ref().expect("new version");
    let size = item.size;
    let mut retruncate = None;
    let (pieces, truncate) = if same {
        let old = ch.old.as_ref().expect("old version");
        let (old_recs, new_recs) = (records_of(ch, false), records_of(ch, true));
        let inline = |recs: &[DataRecord]| recs.iter().any(|r| matches!(r, DataRecord::Inline(_)));
        let diff = plan_diff(&old_recs, &new_recs, size);
        let hole_at_start = diff
            .iter()
            .any(|p| matches!(p, Piece::Hole { offset: 0, .. }));
        // A small file may be stored inline at the receiver (whatever the sender stored),
        // and an inline file keeps its bytes through a punch: when such a file loses its
        // inline data or its first block, start from an empty file and send all of it.
        if (inline(&old_recs) && !inline(&new_recs))
            || (old.size <= INLINE_BYTES_MAX && hole_at_start)
        {
            e.emit(Command::Truncate {
                path: path.to_vec(),
                size: 0,
            })?;
            let (pieces, end) = plan_new(&e.snap.data_records(ch.ino)?, size);
            (pieces, (size > end).then_some(size))
        } else {
            let mut pieces = diff;
            // A hole in the partial block the file ends in cannot be punched (that only
            // zeroes it): cut the file back to that block's start, then regrow it (which
            // also frees whatever lay past the end). Holes wholly past the end (removed
            // preallocation) are punched as they are.
            let cut = size / BLOCK_BYTES * BLOCK_BYTES;
            let block_end = size.div_ceil(BLOCK_BYTES) * BLOCK_BYTES;
            if !size.is_multiple_of(BLOCK_BYTES)
                && pieces.iter().any(|p| {
                    matches!(p, Piece::Hole { offset, len }
                        if *offset < block_end && offset + len > cut)
                })
            {
                pieces.retain_mut(|p| match p {
                    Piece::Hole { offset, .. } if *offset >= cut => false,
                    Piece::Hole { offset, len } => {
                        *len = (*len).min(cut - *offset);
                        true
                    }
                    _ => true,
                });
                retruncate = Some(cut);
            }
            // Writes past the old end already grow the file: a TRUNCATE to the size they
            // reach would be one the source never made, and on the receiver it would drop
            // the blocks preallocated past the end (as truncate does on Linux).
            let grown_to = pieces.iter().fold(old.size, |end, p| match p {
                Piece::Write { offset, len, .. } => end.max(offset + len),
                Piece::Inline { data } => end.max(data.len() as u64),
                _ => end,
            });
            (pieces, (grown_to != size).then_some(size))
        }
    } else {
        let recs = if ch.complete {
            records_of(ch, true)
        } else {
            e.snap.data_records(ch.ino)?
        };
        let (pieces, end) = plan_new(&recs, size);
        (pieces, (size > end).then_some(size))
    };
    let clone_files = if e.clones.is_empty() || pieces.is_empty() {
        Vec::new()
    } else {
        e.clones.files(ch.ino, n.gen)?
    };
    let version = e.sink.version();
    // Data first, then the size, then holes and preallocations: a write that grows an
    // inline file turns its first block into data, and a truncate frees preallocated
    // blocks past the end, so punching and preallocating must come after both.
    let (later, pieces): (Vec<Piece>, Vec<Piece>) = pieces
        .into_iter()
        .partition(|p| matches!(p, Piece::Prealloc { .. } | Piece::Hole { .. }));
    let (holes, preallocs): (Vec<Piece>, Vec<Piece>) = later
        .into_iter()
        .partition(|p| matches!(p, Piece::Hole { .. }));
    let holes_count = holes.len();
    let later: Vec<Piece> = holes.into_iter().chain(preallocs).collect();
    let truncate_at = pieces.len();
    let total = truncate_at + later.len();
    // Cold data is read sequentially: ask for the next extents while this one is read.
    let ahead: Vec<(Extent, u64, u64)> = pieces
        .iter()
        .filter_map(|p| match p {
            Piece::Write {
                len,
                extent,
                ext_block,
                ..
            } => Some((*extent, *ext_block, len.div_ceil(BLOCK_BYTES))),
            _ => None,
        })
        .collect();
    let mut prefetched = 0;
    let mut writes_done = 0;
    for (i, p) in pieces.into_iter().chain(later).enumerate() {
        if matches!(p, Piece::Write { .. }) {
            while prefetched < ahead.len() && prefetched < writes_done + PREFETCH_WRITES {
                let (extent, ext_block, blocks) = ahead[prefetched];
                e.snap.prefetch_blocks(extent, ext_block, blocks);
                prefetched += 1;
            }
            writes_done += 1;
        }
        if i == truncate_at {
            if let Some(size) = truncate {
                e.emit(Command::Truncate {
                    path: path.to_vec(),
                    size,
                })?;
            }
        }
        if i == truncate_at + holes_count {
            if let Some(end) = retruncate {
                for size in [end, size] {
                    e.emit(Command::Truncate {
                        path: path.to_vec(),
                        size,
                    })?;
                }
            }
        }
        match p {
            Piece::Inline { data } => emit_bytes(e, path, 0, &data)?,
            Piece::Write {
                offset,
                len,
                extent,
                ext_block,
                crcs,
            } => {
                send_range(
                    e,
                    ch.ino,
                    path,
                    offset,
                    len,
                    (extent, ext_block, &crcs),
                    &clone_files,
                )?;
            }
            Piece::Hole { offset, len } => {
                if version >= StreamVersion::V2 {
                    e.emit(Command::Fallocate {
                        path: path.to_vec(),
                        mode: FALLOC_PUNCH_HOLE | FALLOC_KEEP_SIZE,
                        offset,
                        len,
                    })?;
                } else if let Some((offset, len)) = clip(offset, len, size) {
                    let zeros = vec![0u8; e.sink.write_chunk_bytes().min(len as usize)];
                    let mut at = offset;
                    while at < offset + len {
                        let n = (offset + len - at).min(zeros.len() as u64) as usize;
                        emit_bytes(e, path, at, &zeros[..n])?;
                        at += n as u64;
                    }
                }
            }
            Piece::Prealloc { offset, len } => {
                if version >= StreamVersion::V2 {
                    e.emit(Command::Fallocate {
                        path: path.to_vec(),
                        mode: FALLOC_KEEP_SIZE,
                        offset,
                        len,
                    })?;
                }
            }
        }
    }
    if truncate_at == total {
        if let Some(size) = truncate {
            e.emit(Command::Truncate {
                path: path.to_vec(),
                size,
            })?;
        }
    }
    if truncate_at + holes_count == total {
        if let Some(end) = retruncate {
            for size in [end, size] {
                e.emit(Command::Truncate {
                    path: path.to_vec(),
                    size,
                })?;
            }
        }
    }
    Ok(())
}

fn emit_bytes(e: &mut Engine<'_>, path: &[u8], offset: u64, data: &[u8]) -> SendResult<()> {
    let chunk = e.sink.write_chunk_bytes();
    let mut at = offset;
    for c in data.chunks(chunk) {
        e.emit(Command::Write {
            path: path.to_vec(),
            offset: at,
            data: c.to_vec(),
        })?;
        at += c.len() as u64;
    }
    Ok(())
}

/// Sends `[offset, offset + len)` of the snapshot's file, stored from block `ext_block`
/// of `extent` on: CLONE for whole blocks a clone source shares, WRITE for the rest.
fn send_range(
    e: &mut Engine<'_>,
    ino: u64,
    path: &[u8],
    offset: u64,
    len: u64,
    (extent, ext_block, crcs): (Extent, u64, &[u32]),
    clone_files: &[CloneFile],
) -> SendResult<()> {
    let end = offset + len;
    let block_of = |pos: u64| ext_block + (pos - offset) / BLOCK_BYTES;
    let shared_by = |f: &CloneFile, pos: u64| {
        pos + BLOCK_BYTES <= end && f.shares(pos / BLOCK_BYTES, extent, block_of(pos))
    };
    let mut at = offset;
    while at < end {
        if let Some(f) = clone_files.iter().find(|f| shared_by(f, at)) {
            let mut run_end = at + BLOCK_BYTES;
            while shared_by(f, run_end) {
                run_end += BLOCK_BYTES;
            }
            let src = &e.clones.sources[f.source];
            let c = Command::Clone {
                path: path.to_vec(),
                offset: at,
                len: run_end - at,
                clone_uuid: src.uuid,
                clone_ctransid: src.ctransid,
                clone_path: f.path.clone(),
                clone_offset: at,
            };
            e.emit(c)?;
            at = run_end;
            continue;
        }
        let mut piece_end = end.min(at + READ_BYTES);
        if !clone_files.is_empty() {
            // Stop before the next block a source shares.
            let mut p = at + BLOCK_BYTES;
            while p < piece_end && !clone_files.iter().any(|f| shared_by(f, p)) {
                p += BLOCK_BYTES;
            }
            piece_end = piece_end.min(p);
        }
        let first = (at - offset) / BLOCK_BYTES;
        let last = (piece_end - offset).div_ceil(BLOCK_BYTES);
        let data = e.snap.read_blocks(
            ino,
            extent,
            ext_block + first,
            &crcs[first as usize..last as usize],
            (at - offset) % BLOCK_BYTES,
            piece_end - at,
        )?;
        emit_bytes(e, path, at, &data)?;
        at = piece_end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use tidefs_fs::records::BlockRecord;

    use super::*;

    fn ext(block: u64) -> Extent {
        Extent { block, blocks: 512 }
    }

    fn rec(start: u64, len: u64, e: u64, off: u64) -> DataRecord {
        DataRecord::Block(BlockRecord {
            start,
            len,
            extent: ext(e),
            ext_off: off,
            crcs: Some((0..len).map(|i| (e + off + i) as u32).collect()),
        })
    }

    #[test]
    fn a_split_record_sends_only_the_rewritten_block() {
        // Old: blocks 0..10 of extent 100. New: head 0..4 (same), block 4 fresh, tail 5..10.
        let old = vec![rec(0, 10, 100, 0)];
        let new = vec![rec(0, 4, 100, 0), rec(4, 1, 200, 0), rec(5, 5, 100, 5)];
        let p = plan_diff(&old, &new, 10 * BLOCK_BYTES);
        assert_eq!(
            p,
            vec![Piece::Write {
                offset: 4 * BLOCK_BYTES,
                len: BLOCK_BYTES,
                extent: ext(200),
                ext_block: 0,
                crcs: vec![200]
            }]
        );
    }

    #[test]
    fn removed_records_become_holes_within_the_new_size() {
        let old = vec![rec(0, 4, 100, 0)];
        let new = vec![rec(0, 1, 100, 0), rec(3, 1, 100, 3)];
        let p = plan_diff(&old, &new, 3 * BLOCK_BYTES + 10);
        assert_eq!(
            p,
            vec![Piece::Hole {
                offset: BLOCK_BYTES,
                len: 2 * BLOCK_BYTES
            }]
        );
    }
}
