//! Which blocks differ between two volumes or snapshots, from the store's tree diff:
//! identical subtrees are skipped, so the cost follows the changed blocks.

use serde::{Deserialize, Serialize};
use tidefs_store::TreeView;

use crate::block_map;
use crate::error::{Result, VolumeError};
use crate::limits::VOLUME_BLOCK_BYTES;
use crate::name::VolumeRef;

/// A run of changed bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangedRange {
    pub offset: u64,
    pub length: u64,
}

/// The result of [`crate::VolumeStore::diff`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeDiff {
    pub from: String,
    pub to: String,
    pub from_size_bytes: u64,
    pub to_size_bytes: u64,
    /// Changed ranges in offset order, adjacent ranges merged.
    pub ranges: Vec<ChangedRange>,
    pub changed_bytes: u64,
}

impl VolumeDiff {
    pub(crate) fn new(
        from: &VolumeRef,
        to: &VolumeRef,
        from_size_bytes: u64,
        to_size_bytes: u64,
        block_ranges: Vec<(u64, u64)>,
    ) -> VolumeDiff {
        let ranges: Vec<ChangedRange> = block_ranges
            .into_iter()
            .map(|(first, count)| ChangedRange {
                offset: first * VOLUME_BLOCK_BYTES,
                length: count * VOLUME_BLOCK_BYTES,
            })
            .collect();
        VolumeDiff {
            from: from.to_string(),
            to: to.to_string(),
            from_size_bytes,
            to_size_bytes,
            changed_bytes: ranges.iter().map(|r| r.length).sum(),
            ranges,
        }
    }
}

/// Changed blocks as `(first block, count)` runs, merged, in order. A block counts as
/// changed when its map record differs: written (even with the same bytes), trimmed,
/// zeroed, or discarded by a resize.
pub(crate) fn diff_views(from: &TreeView, to: &TreeView) -> Result<Vec<(u64, u64)>> {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for entry in from.diff(to)? {
        let entry = entry?;
        let block = block_map::block_of(&entry.key).ok_or_else(|| VolumeError::Corrupt {
            volume: "diff".into(),
            what: "block map key",
            detail: format!("{} bytes", entry.key.len()),
        })?;
        match runs.last_mut() {
            Some((first, count)) if *first + *count == block => *count += 1,
            _ => runs.push((block, 1)),
        }
    }
    Ok(runs)
}
