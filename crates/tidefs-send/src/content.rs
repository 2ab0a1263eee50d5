//! What follows an inode's names: xattrs, data, owner, mode, capabilities, times.
//!
//! Order per inode (as the kernel sends it): xattrs, data, TRUNCATE, CHOWN, CHMOD (not for
//! symlinks), `security.capability` again (a chown clears it at the receiver), UTIMES.
//! Directories' UTIMES wait until the end of the stream (see `ordering`).

use std::collections::BTreeSet;

use tidefs_fs::records::{parse_key, xattr_name_of_key, RecordKey, KIND_XATTR};
use tidefs_fs::{FileKind, Inode};
use tidefs_stream::{Command, StreamVersion, Timespec as WireTime};

use crate::error::SendResult;
use crate::ordering::{Engine, InodeChange};
use crate::paths::Lino;

const CAPABILITY_XATTR: &[u8] = b"security.capability";

fn wire(t: tidefs_fs::Timespec) -> WireTime {
    WireTime {
        sec: t.sec as u64,
        nsec: t.nsec,
    }
}

/// The UTIMES command for an inode (OTIME only in version 2).
pub(crate) fn utimes(path: Vec<u8>, item: &Inode, version: StreamVersion) -> Command {
    Command::Utimes {
        path,
        atime: wire(item.atime),
        mtime: wire(item.mtime),
        ctime: wire(item.ctime),
        otime: (version >= StreamVersion::V2).then(|| wire(item.btime)),
    }
}

/// xattrs to set (name, value) and names to remove.
type XattrChanges = (Vec<(Vec<u8>, Vec<u8>)>, Vec<Vec<u8>>);

/// xattrs to set and remove for this change.
fn xattr_changes(e: &Engine<'_>, ch: &InodeChange, same: bool) -> SendResult<XattrChanges> {
    let ino = ch.ino;
    if !same {
        if ch.complete {
            let mut set = Vec::new();
            for d in &ch.records {
                if let (
                    Ok(RecordKey {
                        kind: KIND_XATTR,
                        rest: name,
                        ..
                    }),
                    Some(r),
                ) = (parse_key(&d.key), &d.new)
                {
                    set.push((name.to_vec(), e.snap.xattr_value(r)?));
                }
            }
            return Ok((set, Vec::new()));
        }
        return Ok((e.snap.xattrs(ino)?, Vec::new()));
    }
    let mut names = BTreeSet::new();
    for d in &ch.records {
        // Only XATTR and XATTR_CHUNK keys have an xattr name.
        if let Ok(n) = xattr_name_of_key(&d.key) {
            names.insert(n.to_vec());
        }
    }
    let mut set = Vec::new();
    let mut removed = Vec::new();
    for name in names {
        match e.snap.xattr(ino, &name)? {
            Some(v) => set.push((name, v)),
            None => removed.push(name),
        }
    }
    Ok((set, removed))
}

/// Sends everything of inode version `n` but its names.
pub(crate) fn send_content(
    e: &mut Engine<'_>,
    ch: &InodeChange,
    n: Lino,
    same: bool,
) -> SendResult<()> {
    let item = ch.new.as_ref().expect("content of a new version");
    let path = e.model.path(n)?;
    let old = if same { ch.old.as_ref() } else { None };

    let (set, removed) = xattr_changes(e, ch, same)?;
    let mut capability = None;
    for (name, data) in set {
        if name == CAPABILITY_XATTR {
            capability = Some(data);
            continue;
        }
        e.emit(Command::SetXattr {
            path: path.clone(),
            name,
            data,
        })?;
    }
    for name in removed {
        e.emit(Command::RemoveXattr {
            path: path.clone(),
            name,
        })?;
    }

    if item.kind() == FileKind::Regular {
        crate::data::send_data(e, ch, n, same, &path)?;
    }

    let chown = old.is_none_or(|o| o.uid != item.uid || o.gid != item.gid);
    if chown {
        e.emit(Command::Chown {
            path: path.clone(),
            uid: u64::from(item.uid),
            gid: u64::from(item.gid),
        })?;
    }
    if item.kind() != FileKind::Symlink && old.is_none_or(|o| o.perm() != item.perm()) {
        e.emit(Command::Chmod {
            path: path.clone(),
            mode: u64::from(item.perm()),
        })?;
    }
    if capability.is_none() && chown && same {
        capability = e.snap.xattr(ch.ino, CAPABILITY_XATTR)?;
    }
    if let Some(data) = capability {
        e.emit(Command::SetXattr {
            path: path.clone(),
            name: CAPABILITY_XATTR.to_vec(),
            data,
        })?;
    }
    if item.is_dir() {
        e.dir_utimes.insert(n);
    } else {
        let c = utimes(path, item, e.sink.version());
        e.emit(c)?;
    }
    Ok(())
}
