//! What a mount answers on the pool's control socket: [`FsRequest`]s served with the mount's
//! own `Fs` handle. Snapshots of the mounted subvolume go through the mount's `.snap`
//! (`SnapshotControl`), so the mount sees them at once; other subvolumes' go to `Fs`.
//!
//! Each change is committed before the reply, as the CLI does on an idle pool. A snapshot
//! taken here holds every write that returned before the request, also those the kernel
//! still caches for the mount (`SnapshotControl::create` brings them in first).

use tidefs_fs::{Fs, FsError};
use tidefs_fuse::SnapshotControl;

use super::fs_protocol::{snapshot_rows, subvol_rows, FsReply, FsRequest};
use super::ControlService;

pub struct FsService {
    pub fs: Fs,
    /// `None` when a snapshot is mounted (no `.snap` to keep current).
    pub mounted: Option<SnapshotControl>,
}

impl FsService {
    /// The mount's `.snap` when `subvolume` is the mounted one.
    fn snap_dir_of(&self, subvolume: &str) -> Option<&SnapshotControl> {
        self.mounted.as_ref().filter(|m| m.subvolume() == subvolume)
    }

    fn serve(&self, request: FsRequest) -> Result<FsReply, FsError> {
        let changed = match request {
            FsRequest::Hello => {
                return Ok(FsReply::Hello {
                    pid: std::process::id(),
                })
            }
            FsRequest::SubvolList => {
                return Ok(FsReply::Subvolumes {
                    subvolumes: subvol_rows(&self.fs)?,
                })
            }
            FsRequest::SnapshotList { subvolume } => {
                return Ok(FsReply::Snapshots {
                    snapshots: snapshot_rows(&self.fs, subvolume.as_deref())?,
                })
            }
            FsRequest::SnapshotCreate {
                subvolume,
                snapshot,
            } => match self.snap_dir_of(&subvolume) {
                Some(snaps) => snaps.create(&snapshot).map(drop),
                None => self.fs.create_snapshot(&subvolume, &snapshot).map(drop),
            },
            FsRequest::SnapshotDelete {
                subvolume,
                snapshot,
            } => match self.snap_dir_of(&subvolume) {
                Some(snaps) => snaps.delete(&snapshot),
                None => self.fs.delete_snapshot(&subvolume, &snapshot),
            },
            FsRequest::SnapshotRename {
                subvolume,
                from,
                to,
            } => match self.snap_dir_of(&subvolume) {
                Some(snaps) => snaps.rename(&from, &to),
                None => self.fs.rename_snapshot(&subvolume, &from, &to),
            },
        };
        changed?;
        self.fs.fsync()?;
        Ok(FsReply::Done)
    }
}

impl ControlService for FsService {
    type Request = FsRequest;
    type Reply = FsReply;

    fn handle(&self, request: FsRequest) -> FsReply {
        self.serve(request).unwrap_or_else(|e| FsReply::Error {
            message: e.to_string(),
        })
    }

    fn malformed(&self, message: String) -> FsReply {
        FsReply::Error {
            message: format!(
                "a tidefs mount serves subvolume and snapshot commands only: {message}"
            ),
        }
    }
}
