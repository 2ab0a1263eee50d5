//! Applies the body commands of a stream (everything between SUBVOL/SNAPSHOT and END) to
//! a writable subvolume, through `tidefs_fs::Subvol` operations.
//!
//! Paths are resolved through a mirror of the directory entries this applier has looked
//! up or made, keyed by parent inode, so renames never invalidate it. Consecutive WRITEs to
//! one file are joined into one write call, and consecutive attribute commands of one path
//! (TRUNCATE, CHOWN, CHMOD, UTIMES in that order) into one setattr, with the same result
//! as applying them one by one.

use std::collections::HashMap;

use tidefs_fs::{Caller, FileKind, Fs, FsError, SetAttr, Subvol, TimeSet, Timespec, ROOT_INO};
use tidefs_stream::{Command, Timespec as WireTime, Uuid};

use crate::encoded::{self, Compression, DecodeError};
use crate::rdev::rdev_from_stream;

const S_IFIFO: u32 = 0o010000;
const S_IFSOCK: u32 = 0o140000;
/// Bytes of consecutive WRITE data joined into one write call.
const WRITE_JOIN_BYTES_MAX: usize = 8 << 20;
/// Bytes copied at a time for a CLONE that cannot share blocks (unaligned ranges).
const CLONE_COPY_BYTES: u64 = 4 << 20;

/// Why one command could not be applied.
#[derive(Debug)]
pub struct ApplyError(pub String);

impl From<FsError> for ApplyError {
    fn from(e: FsError) -> Self {
        ApplyError(e.to_string())
    }
}

type ApplyResult<T> = Result<T, ApplyError>;

struct PendingWrite {
    path: Vec<u8>,
    ino: u64,
    offset: u64,
    data: Vec<u8>,
}

struct PendingAttr {
    path: Vec<u8>,
    ino: u64,
    attr: SetAttr,
    /// Stage of the last command merged: 0 truncate, 1 chown, 2 chmod, 3 utimes.
    stage: u8,
}

pub struct Applier<'a> {
    fs: &'a Fs,
    sub: Subvol,
    /// uuid of the stream being applied (a CLONE naming it clones from this subvolume).
    stream_uuid: Uuid,
    entries: HashMap<(u64, Vec<u8>), u64>,
    /// Whether an inode is a symlink, for the inodes made or asked about so far.
    symlinks: HashMap<u64, bool>,
    write: Option<PendingWrite>,
    attr: Option<PendingAttr>,
}

fn time(t: WireTime) -> Timespec {
    Timespec::new(t.sec as i64, t.nsec)
}

fn split(path: &[u8]) -> ApplyResult<(&[u8], &[u8])> {
    let path = path.strip_suffix(b"/").unwrap_or(path);
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => Ok((&path[..i], &path[i + 1..])),
        None if path.is_empty() => Err(ApplyError("the subvolume root has no name".into())),
        None => Ok((&[][..], path)),
    }
}

impl<'a> Applier<'a> {
    pub fn new(fs: &'a Fs, sub: Subvol, stream_uuid: Uuid) -> Self {
        Applier {
            fs,
            sub,
            stream_uuid,
            entries: HashMap::new(),
            symlinks: HashMap::new(),
            write: None,
            attr: None,
        }
    }

    fn lookup(&mut self, dir: u64, name: &[u8]) -> ApplyResult<u64> {
        if let Some(ino) = self.entries.get(&(dir, name.to_vec())) {
            return Ok(*ino);
        }
        let ino = self.sub.lookup(dir, name)?.ino;
        self.entries.insert((dir, name.to_vec()), ino);
        Ok(ino)
    }

    fn resolve(&mut self, path: &[u8]) -> ApplyResult<u64> {
        let mut at = ROOT_INO;
        for part in path.split(|&b| b == b'/') {
            if part.is_empty() || part == b"." {
                continue;
            }
            at = self
                .lookup(at, part)
                .map_err(|e| ApplyError(format!("{}: {}", String::from_utf8_lossy(path), e.0)))?;
        }
        Ok(at)
    }

    fn resolve_parent<'p>(&mut self, path: &'p [u8]) -> ApplyResult<(u64, &'p [u8])> {
        let (dir, name) = split(path)?;
        Ok((self.resolve(dir)?, name))
    }

    fn is_symlink(&mut self, path: &[u8]) -> ApplyResult<bool> {
        let ino = self.resolve(path)?;
        if let Some(s) = self.symlinks.get(&ino) {
            return Ok(*s);
        }
        let s = self.sub.getattr(ino)?.kind() == FileKind::Symlink;
        self.symlinks.insert(ino, s);
        Ok(s)
    }

    /// Applies everything held back (joined writes, merged attributes).
    pub fn flush(&mut self) -> ApplyResult<()> {
        if let Some(w) = self.write.take() {
            self.sub.write(w.ino, w.offset, &w.data, &Caller::ROOT)?;
        }
        if let Some(a) = self.attr.take() {
            self.sub.setattr(a.ino, &a.attr, &Caller::ROOT)?;
        }
        Ok(())
    }

    fn merge_attr(
        &mut self,
        path: &[u8],
        stage: u8,
        f: impl FnOnce(&mut SetAttr),
    ) -> ApplyResult<()> {
        if let Some(w) = &self.write {
            if w.path != path {
                self.flush()?;
            }
        }
        if let Some(w) = self.write.take() {
            self.sub.write(w.ino, w.offset, &w.data, &Caller::ROOT)?;
        }
        let joinable = self
            .attr
            .as_ref()
            .is_some_and(|a| a.path == path && a.stage < stage);
        if !joinable {
            self.flush()?;
            let ino = self.resolve(path)?;
            self.attr = Some(PendingAttr {
                path: path.to_vec(),
                ino,
                attr: SetAttr::default(),
                stage,
            });
        }
        let a = self.attr.as_mut().expect("set above");
        a.stage = stage;
        f(&mut a.attr);
        Ok(())
    }

    /// Applies one body command.
    pub fn apply(&mut self, c: Command) -> ApplyResult<()> {
        match c {
            Command::Write { path, offset, data } => return self.write(path, offset, data),
            Command::Truncate { path, size } => {
                return self.merge_attr(&path, 0, |a| a.size = Some(size))
            }
            Command::Chown { path, uid, gid } => {
                let (uid, gid) = (u32::try_from(uid), u32::try_from(gid));
                let (Ok(uid), Ok(gid)) = (uid, gid) else {
                    return Err(ApplyError("owner id does not fit 32 bits".into()));
                };
                return self.merge_attr(&path, 1, |a| {
                    a.uid = Some(uid);
                    a.gid = Some(gid);
                });
            }
            Command::Chmod { path, mode } => {
                // A symlink has no mode of its own on Linux (chmod follows it, lchmod
                // does not exist) and the kernel never sends one: such a CHMOD changes
                // nothing, as it could not be sent or undone either.
                if self.is_symlink(&path)? {
                    return Ok(());
                }
                return self.merge_attr(&path, 2, |a| a.mode = Some(mode as u32 & 0o7777));
            }
            Command::Utimes {
                path,
                atime,
                mtime,
                ctime,
                ..
            } => {
                return self.merge_attr(&path, 3, |a| {
                    a.atime = Some(TimeSet::At(time(atime)));
                    a.mtime = Some(TimeSet::At(time(mtime)));
                    a.ctime = Some(time(ctime));
                })
            }
            _ => {}
        }
        self.flush()?;
        let root = Caller::ROOT;
        let is_fifo = matches!(c, Command::Mkfifo { .. });
        match c {
            Command::Mkfile { path, .. } => {
                let (dir, name) = self.resolve_parent(&path)?;
                let i = self.sub.create(dir, name, 0o600, &root)?;
                self.entries.insert((dir, name.to_vec()), i.ino);
                self.symlinks.insert(i.ino, false);
            }
            Command::Mkdir { path, .. } => {
                let (dir, name) = self.resolve_parent(&path)?;
                let i = self.sub.mkdir(dir, name, 0o700, &root)?;
                self.entries.insert((dir, name.to_vec()), i.ino);
                self.symlinks.insert(i.ino, false);
            }
            Command::Mknod {
                path, rdev, mode, ..
            } => {
                let (dir, name) = self.resolve_parent(&path)?;
                let mode =
                    u32::try_from(mode).map_err(|_| ApplyError(format!("mode {mode:#o}")))?;
                let i = self
                    .sub
                    .mknod(dir, name, mode, rdev_from_stream(rdev), &root)?;
                self.entries.insert((dir, name.to_vec()), i.ino);
            }
            Command::Mkfifo { path, .. } | Command::Mksock { path, .. } => {
                let kind = if is_fifo { S_IFIFO } else { S_IFSOCK };
                let (dir, name) = self.resolve_parent(&path)?;
                let i = self.sub.mknod(dir, name, kind | 0o600, 0, &root)?;
                self.entries.insert((dir, name.to_vec()), i.ino);
            }
            Command::Symlink { path, target, .. } => {
                let (dir, name) = self.resolve_parent(&path)?;
                let i = self.sub.symlink(dir, name, &target, &root)?;
                self.entries.insert((dir, name.to_vec()), i.ino);
                self.symlinks.insert(i.ino, true);
            }
            Command::Rename { from, to } => {
                let (d1, n1) = self.resolve_parent(&from)?;
                let ino = self.lookup(d1, n1)?;
                let (d2, n2) = self.resolve_parent(&to)?;
                self.sub.rename(d1, n1, d2, n2, 0, &root)?;
                self.entries.remove(&(d1, n1.to_vec()));
                self.entries.insert((d2, n2.to_vec()), ino);
            }
            Command::Link { path, existing } => {
                let ino = self.resolve(&existing)?;
                let (dir, name) = self.resolve_parent(&path)?;
                self.sub.link(ino, dir, name)?;
                self.entries.insert((dir, name.to_vec()), ino);
            }
            Command::Unlink { path } => {
                let (dir, name) = self.resolve_parent(&path)?;
                self.sub.unlink(dir, name, &root)?;
                self.entries.remove(&(dir, name.to_vec()));
            }
            Command::Rmdir { path } => {
                let (dir, name) = self.resolve_parent(&path)?;
                self.sub.rmdir(dir, name, &root)?;
                self.entries.remove(&(dir, name.to_vec()));
            }
            Command::SetXattr { path, name, data } => {
                let ino = self.resolve(&path)?;
                self.sub.setxattr(ino, &name, &data, 0)?;
            }
            Command::RemoveXattr { path, name } => {
                let ino = self.resolve(&path)?;
                self.sub.removexattr(ino, &name)?;
            }
            Command::Clone {
                path,
                offset,
                len,
                clone_uuid,
                clone_path,
                clone_offset,
                ..
            } => self.clone_range(&path, offset, len, clone_uuid, &clone_path, clone_offset)?,
            Command::Fallocate {
                path,
                mode,
                offset,
                len,
            } => {
                let ino = self.resolve(&path)?;
                self.sub.fallocate(ino, mode, offset, len)?;
            }
            Command::EncodedWrite {
                path,
                offset,
                unencoded_file_len,
                unencoded_len,
                unencoded_offset,
                compression,
                encryption,
                data,
            } => {
                let encryption = encryption.unwrap_or(0);
                if encryption != 0 {
                    return Err(ApplyError(DecodeError::Encrypted(encryption).to_string()));
                }
                let compression = Compression::from_wire(compression.unwrap_or(0))
                    .map_err(|e| ApplyError(e.to_string()))?;
                let range = unencoded_offset
                    .checked_add(unencoded_file_len)
                    .filter(|end| *end <= unencoded_len)
                    .map(|end| unencoded_offset as usize..end as usize)
                    .ok_or_else(|| {
                        ApplyError(format!(
                            "encoded write range {unencoded_offset}+{unencoded_file_len} outside its unencoded length {unencoded_len}"
                        ))
                    })?;
                let bytes = if compression == Compression::None {
                    // The data is the extent itself: no copy of the whole extent.
                    if range.end > data.len() {
                        return Err(ApplyError("encoded write range outside its data".into()));
                    }
                    data[range].to_vec()
                } else {
                    let mut plain = encoded::decode(compression, &data, unencoded_len)
                        .map_err(|e| ApplyError(e.to_string()))?;
                    plain.truncate(range.end);
                    plain.drain(..range.start);
                    plain
                };
                self.write(path, offset, bytes)?;
            }
            // Not replicated (as btrfs receive): inode flags; no data for UPDATE_EXTENT.
            Command::Fileattr { .. } | Command::UpdateExtent { .. } => {}
            Command::Subvol { .. } | Command::Snapshot { .. } | Command::End => {
                return Err(ApplyError("unexpected command inside a stream".into()));
            }
            Command::Write { .. }
            | Command::Truncate { .. }
            | Command::Chown { .. }
            | Command::Chmod { .. }
            | Command::Utimes { .. } => unreachable!("handled above"),
        }
        Ok(())
    }

    fn write(&mut self, path: Vec<u8>, offset: u64, data: Vec<u8>) -> ApplyResult<()> {
        if self.attr.is_some() {
            self.flush()?;
        }
        if let Some(w) = &mut self.write {
            if w.path == path
                && w.offset + w.data.len() as u64 == offset
                && w.data.len() + data.len() <= WRITE_JOIN_BYTES_MAX
            {
                w.data.extend_from_slice(&data);
                return Ok(());
            }
        }
        self.flush()?;
        let ino = self.resolve(&path)?;
        self.write = Some(PendingWrite {
            path,
            ino,
            offset,
            data,
        });
        Ok(())
    }

    fn clone_source(&self, uuid: Uuid) -> ApplyResult<Subvol> {
        if uuid == self.stream_uuid {
            return Ok(self.sub.clone());
        }
        let u = uuid::Uuid::from_bytes(uuid);
        if let Some(info) = self.fs.find_by_received_uuid(&u)?.into_iter().next() {
            return Ok(self.fs.open_id(info.id)?);
        }
        if let Some(info) = self.fs.find_by_uuid(&u)? {
            return Ok(self.fs.open_id(info.id)?);
        }
        Err(ApplyError(format!("clone source {u} is not in this pool")))
    }

    fn clone_range(
        &mut self,
        path: &[u8],
        offset: u64,
        len: u64,
        uuid: Uuid,
        src_path: &[u8],
        src_offset: u64,
    ) -> ApplyResult<()> {
        let src = self.clone_source(uuid)?;
        let mut abs = b"/".to_vec();
        abs.extend_from_slice(src_path);
        let src_ino = if uuid == self.stream_uuid {
            self.resolve(src_path)?
        } else {
            src.resolve(&abs)?
        };
        let dst = self.resolve(path)?;
        if len == 0 {
            // `clone_range` reads length 0 as "to the end of file"; the stream means nothing.
            return Ok(());
        }
        // Share the source's blocks when the range obeys the reflink rules (block aligned,
        // or ending at the source's end of file). A refused clone changes nothing, and
        // copying the bytes gives the same file, only without sharing.
        match self
            .sub
            .clone_range(&src, src_ino, src_offset, dst, offset, len, &Caller::ROOT)
        {
            Ok(_) => return Ok(()),
            Err(FsError::Invalid(_) | FsError::CrossDevice(_) | FsError::NotSupported(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let mut done = 0;
        while done < len {
            let n = (len - done).min(CLONE_COPY_BYTES);
            let data = src.read(src_ino, src_offset + done, n)?;
            if data.len() as u64 != n {
                return Err(ApplyError("clone source range past its end of file".into()));
            }
            self.sub.write(dst, offset + done, &data, &Caller::ROOT)?;
            done += n;
        }
        Ok(())
    }
}
