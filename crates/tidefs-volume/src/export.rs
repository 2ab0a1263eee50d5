//! Volumes as NBD exports: `NAME` is a volume, `NAME@SNAP` a snapshot (read-only unless
//! the provider allows writable snapshots). Volume errors become NBD errors here and
//! nowhere else.

use std::sync::Arc;

use tidefs_nbd::{
    BlockExport, BlockSizeConstraints, BlockStatusExtent, ExportError, ExportInfo, ExportProvider,
};

use crate::error::VolumeError;
use crate::name::VolumeRef;
use crate::store::VolumeStore;
use crate::volume::{BlockState, Volume};

/// Any alignment is served (partial blocks are read, merged and rewritten), 4 KiB is what
/// the block map is made of, and one request may carry up to 32 MiB.
pub const VOLUME_BLOCK_SIZE: BlockSizeConstraints =
    BlockSizeConstraints::new(1, 4096, 32 * 1024 * 1024);

/// The exports of a pool's volumes.
pub struct VolumeExports {
    store: Arc<VolumeStore>,
    /// Only these (from `--export`); `None`: every volume and snapshot, as they are when
    /// a client asks (snapshots taken while serving appear at once).
    only: Option<Vec<VolumeRef>>,
    writable_snapshots: bool,
}

impl VolumeExports {
    pub fn new(
        store: Arc<VolumeStore>,
        only: Option<Vec<VolumeRef>>,
        writable_snapshots: bool,
    ) -> VolumeExports {
        VolumeExports {
            store,
            only,
            writable_snapshots,
        }
    }

    fn describe(&self, target: &VolumeRef) -> Option<ExportInfo> {
        let info = self.store.info(target).ok()?;
        let what = if info.snapshot.is_some() {
            if self.writable_snapshots {
                "snapshot (writable)"
            } else {
                "snapshot (read-only)"
            }
        } else {
            "volume"
        };
        Some(ExportInfo {
            name: target.to_string(),
            description: format!("tidefs {what}, {} bytes", info.size_bytes),
        })
    }

    /// Every export name, volumes each followed by their snapshots.
    fn all(&self) -> Vec<VolumeRef> {
        if let Some(only) = &self.only {
            return only.clone();
        }
        let mut out = Vec::new();
        for v in self.store.list().unwrap_or_default() {
            out.push(VolumeRef::volume(&v.volume));
            for s in self.store.snapshots(&v.volume).unwrap_or_default() {
                if let Some(name) = s.snapshot {
                    out.push(VolumeRef::snapshot(&v.volume, &name));
                }
            }
        }
        out
    }
}

impl ExportProvider for VolumeExports {
    fn list(&self) -> Vec<ExportInfo> {
        self.all().iter().filter_map(|r| self.describe(r)).collect()
    }

    fn open(&self, name: &str) -> Result<Arc<dyn BlockExport>, ExportError> {
        let not_found = || ExportError::NotFound {
            name: name.to_string(),
        };
        let target = match (name, &self.only) {
            // The empty name opens the first export named on the command line.
            ("", Some(only)) => only.first().cloned().ok_or_else(not_found)?,
            _ => VolumeRef::parse(name).map_err(|_| not_found())?,
        };
        if let Some(only) = &self.only {
            if !only.contains(&target) {
                return Err(not_found());
            }
        }
        let volume = self
            .store
            .open_volume(&target, self.writable_snapshots)
            .map_err(|e| match e {
                VolumeError::NoSuchVolume(_) | VolumeError::NoSuchSnapshot { .. } => not_found(),
                e => export_error(e, 0, 0),
            })?;
        Ok(Arc::new(VolumeExport::new(volume)))
    }
}

/// One open volume or snapshot, as one client connection sees it.
pub struct VolumeExport {
    volume: Volume,
    /// Fixed for the life of the connection, as NBD requires; a resize is seen by
    /// connections made after it.
    size: u64,
}

impl VolumeExport {
    pub fn new(volume: Volume) -> VolumeExport {
        let size = volume.size();
        VolumeExport { volume, size }
    }
}

/// The one place where volume errors become NBD errors.
pub fn export_error(error: VolumeError, offset: u64, len: u64) -> ExportError {
    if error.is_no_space() {
        return ExportError::NoSpace { offset, len };
    }
    match error {
        VolumeError::ReadOnly(_) => ExportError::ReadOnly,
        VolumeError::OutOfRange { size, .. } => ExportError::OutOfRange { offset, len, size },
        VolumeError::Deleted(_) => ExportError::Io {
            offset,
            source: std::io::Error::other(error.to_string()),
        },
        e => ExportError::Io {
            offset,
            source: std::io::Error::other(e.to_string()),
        },
    }
}

impl BlockExport for VolumeExport {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_only(&self) -> bool {
        self.volume.read_only()
    }

    fn block_size(&self) -> BlockSizeConstraints {
        VOLUME_BLOCK_SIZE
    }

    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), ExportError> {
        let len = buf.len() as u64;
        self.volume
            .read(offset, buf)
            .map_err(|e| export_error(e, offset, len))
    }

    fn write(&self, offset: u64, data: &[u8], fua: bool) -> Result<(), ExportError> {
        let len = data.len() as u64;
        let tid = self
            .volume
            .write(offset, data)
            .map_err(|e| export_error(e, offset, len))?;
        if fua {
            self.volume
                .flush_through(tid)
                .map_err(|e| export_error(e, offset, len))?;
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), ExportError> {
        self.volume
            .flush()
            .map(|_| ())
            .map_err(|e| export_error(e, 0, 0))
    }

    fn trim(&self, offset: u64, len: u64) -> Result<(), ExportError> {
        self.volume
            .trim(offset, len)
            .map(|_| ())
            .map_err(|e| export_error(e, offset, len))
    }

    fn write_zeroes(
        &self,
        offset: u64,
        len: u64,
        may_punch_hole: bool,
        fua: bool,
    ) -> Result<(), ExportError> {
        let tid = self
            .volume
            .write_zeroes(offset, len, may_punch_hole)
            .map_err(|e| export_error(e, offset, len))?;
        if fua {
            self.volume
                .flush_through(tid)
                .map_err(|e| export_error(e, offset, len))?;
        }
        Ok(())
    }

    fn block_status(&self, offset: u64, len: u64) -> Result<Vec<BlockStatusExtent>, ExportError> {
        let runs = self
            .volume
            .block_status(offset, len)
            .map_err(|e| export_error(e, offset, len))?;
        Ok(runs
            .into_iter()
            .map(|run| BlockStatusExtent {
                len: run.len,
                hole: run.state == BlockState::Hole,
                zero: run.state != BlockState::Data,
            })
            .collect())
    }
}
