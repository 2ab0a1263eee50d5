//! A handle on one subvolume or snapshot: the POSIX operations, by inode number, shaped
//! for a FUSE adapter. Every operation is one store write call, so it happens entirely
//! or not at all; `fsync` makes everything so far durable.

use std::sync::Arc;

use tidefs_store::Tid;

use crate::backref::{parent_of_dir, paths_of};
use crate::caller::Caller;
use crate::catalog::SubvolInfo;
use crate::create::NodeSpec;
use crate::cx::Cx;
use crate::dir::{check_name, ReaddirEntry};
use crate::error::{FsError, Result};
use crate::file_data::{falloc, FileExtent};
use crate::fs::{Shared, StatFs};
use crate::inode::{FileKind, Inode, ROOT_INO, S_IFMT};
use crate::limits::{DATA_BLOCK_BYTES, FILE_BYTES_MAX, NAME_BYTES_MAX, PATH_BYTES_MAX};
use crate::setattr::{kill_suid_sgid, SetAttr};
use crate::xattr::check_xattr_name;

/// A subvolume or snapshot of a [`crate::Fs`].
#[derive(Clone)]
pub struct Subvol {
    shared: Arc<Shared>,
    info: SubvolInfo,
}

impl std::fmt::Debug for Subvol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subvol").field("info", &self.info).finish()
    }
}

impl Subvol {
    pub(crate) fn new(shared: Arc<Shared>, info: SubvolInfo) -> Subvol {
        Subvol { shared, info }
    }

    pub fn info(&self) -> &SubvolInfo {
        &self.info
    }

    pub fn is_read_only(&self) -> bool {
        self.info.is_snapshot()
    }

    /// The root directory's inode number.
    pub fn root(&self) -> u64 {
        ROOT_INO
    }

    /// Runs `f` as one operation (one store write call; rolled back if it fails).
    pub(crate) fn op<T>(&self, f: impl FnOnce(&mut Cx<'_, '_>) -> Result<T>) -> Result<T> {
        let now = self.shared.clock.now();
        let tree = self.info.tree;
        self.shared.pool.write(|t| f(&mut Cx::new(t, tree, now)))
    }

    /// Runs an operation that only reads, on the latest state (uncommitted changes
    /// included) without taking the writer lock.
    pub(crate) fn look<T>(&self, f: impl FnOnce(&mut Cx<'_, '_>) -> Result<T>) -> Result<T> {
        let now = self.shared.clock.now();
        let read = self.shared.pool.read_latest();
        f(&mut Cx::reading(&read, self.info.tree, now))
    }

    /// Like [`Self::op`] for operations that change something: EROFS on snapshots.
    pub(crate) fn change<T>(&self, f: impl FnOnce(&mut Cx<'_, '_>) -> Result<T>) -> Result<T> {
        if self.is_read_only() {
            return Err(FsError::ReadOnly(format!("snapshot {}", self.info.name)));
        }
        self.op(f)
    }

    /// Runs `f` as one operation on the raw write transaction, for operations that read
    /// one tree and change another (clone_range); `f` gets the operation's time.
    pub(crate) fn op_across<T>(
        &self,
        f: impl FnOnce(&mut tidefs_store::WriteTxn<'_>, crate::clock::Timespec) -> Result<T>,
    ) -> Result<T> {
        if self.is_read_only() {
            return Err(FsError::ReadOnly(format!("snapshot {}", self.info.name)));
        }
        let now = self.shared.clock.now();
        self.shared.pool.write(|t| f(t, now))
    }

    /// Whether both handles work on one pool (so extents can be shared between them).
    pub(crate) fn shares_pool_with(&self, other: &Subvol) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// Whether an inode is open. Asked inside the operation (writer lock, then open table;
    /// nothing takes them the other way round), so the table is never copied.
    fn is_open_fn(&self) -> impl Fn(u64) -> bool + '_ {
        let tree = self.info.tree;
        move |ino| {
            let opens = self.shared.opens.lock().expect("open table");
            opens.get(&(tree, ino)).is_some_and(|&n| n > 0)
        }
    }

    pub fn lookup(&self, parent: u64, name: &[u8]) -> Result<Inode> {
        self.look(|cx| {
            if name.len() > NAME_BYTES_MAX {
                return Err(FsError::NameTooLong {
                    len: name.len(),
                    max: NAME_BYTES_MAX,
                });
            }
            let dir = cx.dir_inode(parent)?;
            match name {
                b"." => return Ok(dir),
                b".." => {
                    let view = cx.view()?;
                    let p = parent_of_dir(&view, parent)?;
                    return cx.inode(p);
                }
                _ => {}
            }
            check_name(name)?;
            let e = cx
                .find_entry(parent, name)?
                .ok_or_else(|| FsError::NotFound(String::from_utf8_lossy(name).into_owned()))?;
            cx.inode(e.ino)
        })
    }

    pub fn getattr(&self, ino: u64) -> Result<Inode> {
        self.look(|cx| cx.inode(ino))
    }

    pub fn setattr(&self, ino: u64, attr: &SetAttr, caller: &Caller) -> Result<Inode> {
        self.change(|cx| cx.setattr(ino, attr, caller))
    }

    /// Creates a regular file (EEXIST if the name is taken). `mode`: permission bits.
    pub fn create(&self, parent: u64, name: &[u8], mode: u32, caller: &Caller) -> Result<Inode> {
        self.mknod(
            parent,
            name,
            crate::inode::S_IFREG | (mode & 0o7777),
            0,
            caller,
        )
    }

    pub fn mkdir(&self, parent: u64, name: &[u8], mode: u32, caller: &Caller) -> Result<Inode> {
        self.change(|cx| {
            let spec = NodeSpec {
                kind: FileKind::Directory,
                perm: mode,
                rdev: 0,
                symlink_target: None,
            };
            cx.make_node(parent, name, spec, caller)
        })
    }

    /// mknod: `mode` holds the type (regular, fifo, socket, char or block device; type 0
    /// means regular) and the permission bits.
    pub fn mknod(
        &self,
        parent: u64,
        name: &[u8],
        mode: u32,
        rdev: u64,
        caller: &Caller,
    ) -> Result<Inode> {
        let kind = match mode & S_IFMT {
            0 => FileKind::Regular,
            t => match FileKind::from_mode(t) {
                Some(FileKind::Directory) => {
                    return Err(FsError::NotPermitted("mknod of a directory".into()))
                }
                Some(FileKind::Symlink) | None => {
                    return Err(FsError::Invalid(format!("mknod type {t:#o}")))
                }
                Some(k) => k,
            },
        };
        self.change(|cx| {
            let spec = NodeSpec {
                kind,
                perm: mode,
                rdev,
                symlink_target: None,
            };
            cx.make_node(parent, name, spec, caller)
        })
    }

    pub fn symlink(
        &self,
        parent: u64,
        name: &[u8],
        target: &[u8],
        caller: &Caller,
    ) -> Result<Inode> {
        self.change(|cx| {
            let spec = NodeSpec {
                kind: FileKind::Symlink,
                perm: 0o777,
                rdev: 0,
                symlink_target: Some(target),
            };
            cx.make_node(parent, name, spec, caller)
        })
    }

    pub fn readlink(&self, ino: u64) -> Result<Vec<u8>> {
        self.look(|cx| {
            let inode = cx.inode(ino)?;
            if inode.kind() != FileKind::Symlink {
                return Err(FsError::Invalid(format!("inode {ino} is not a symlink")));
            }
            cx.read_symlink_target(ino)
        })
    }

    pub fn link(&self, ino: u64, new_parent: u64, new_name: &[u8]) -> Result<Inode> {
        self.change(|cx| cx.link(ino, new_parent, new_name))
    }

    pub fn unlink(&self, parent: u64, name: &[u8], caller: &Caller) -> Result<()> {
        let is_open = self.is_open_fn();
        self.change(|cx| cx.unlink(parent, name, caller, &is_open))
    }

    pub fn rmdir(&self, parent: u64, name: &[u8], caller: &Caller) -> Result<()> {
        let is_open = self.is_open_fn();
        self.change(|cx| cx.rmdir(parent, name, caller, &is_open))
    }

    /// renameat2 with `flags` from [`crate::rename_flags`].
    pub fn rename(
        &self,
        parent: u64,
        name: &[u8],
        new_parent: u64,
        new_name: &[u8],
        flags: u32,
        caller: &Caller,
    ) -> Result<()> {
        let is_open = self.is_open_fn();
        self.change(|cx| cx.rename(parent, name, new_parent, new_name, flags, caller, &is_open))
    }

    pub(crate) fn regular(cx: &mut Cx<'_, '_>, ino: u64) -> Result<Inode> {
        let inode = cx.inode(ino)?;
        match inode.kind() {
            FileKind::Regular => Ok(inode),
            FileKind::Directory => Err(FsError::IsDir(format!("inode {ino}"))),
            _ => Err(FsError::Invalid(format!(
                "inode {ino} is not a regular file"
            ))),
        }
    }

    /// Up to `len` bytes at `offset` (fewer at the end of the file). Does not update atime
    /// (tidefs behaves as mounted `noatime`).
    pub fn read(&self, ino: u64, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.look(|cx| {
            let inode = Self::regular(cx, ino)?;
            cx.read_data(&inode, offset, len)
        })
    }

    /// Reads up to `buf.len()` bytes at `offset` into `buf` (fewer at end of file); returns
    /// how many.
    pub fn read_into(&self, ino: u64, offset: u64, buf: &mut [u8]) -> Result<usize> {
        self.look(|cx| {
            let inode = Self::regular(cx, ino)?;
            cx.read_data_into(&inode, offset, buf)
        })
    }

    /// Hints that bytes `[offset, offset + len)` of a file will be read soon, so cold
    /// data can be on its way from the disk meanwhile (sequential readers ask for the
    /// next piece before reading this one).
    pub fn prefetch(&self, ino: u64, offset: u64, len: u64) -> Result<()> {
        self.look(|cx| cx.prefetch_data(ino, offset, len))
    }

    /// Writes `data` at `offset`; returns the bytes written.
    pub fn write(&self, ino: u64, offset: u64, data: &[u8], caller: &Caller) -> Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        if offset
            .checked_add(data.len() as u64)
            .is_none_or(|end| end > FILE_BYTES_MAX)
        {
            return Err(FsError::FileTooBig {
                ino,
                offset,
                max: FILE_BYTES_MAX,
            });
        }
        self.change(|cx| {
            let mut inode = Self::regular(cx, ino)?;
            cx.write_data(&mut inode, offset, data)?;
            inode.mtime = cx.now;
            inode.ctime = cx.now;
            if !caller.is_root() {
                kill_suid_sgid(&mut inode);
            }
            cx.drop_file_capabilities(ino)?;
            cx.put_inode(&inode)?;
            Ok(data.len())
        })
    }

    pub fn truncate(&self, ino: u64, size: u64, caller: &Caller) -> Result<Inode> {
        let attr = SetAttr {
            size: Some(size),
            ..SetAttr::default()
        };
        self.setattr(ino, &attr, caller)
    }

    /// fallocate with `mode` from [`crate::falloc`]: 0 or KEEP_SIZE preallocate,
    /// PUNCH_HOLE|KEEP_SIZE punches, ZERO_RANGE zeroes.
    pub fn fallocate(&self, ino: u64, mode: u32, offset: u64, len: u64) -> Result<()> {
        use falloc::{KEEP_SIZE, PUNCH_HOLE, ZERO_RANGE};
        if mode & !(KEEP_SIZE | PUNCH_HOLE | ZERO_RANGE) != 0 {
            return Err(FsError::NotSupported(format!("fallocate mode {mode:#x}")));
        }
        if mode & PUNCH_HOLE != 0 && (mode & KEEP_SIZE == 0 || mode & ZERO_RANGE != 0) {
            return Err(FsError::NotSupported(format!("fallocate mode {mode:#x}")));
        }
        if len == 0 {
            return Err(FsError::Invalid("fallocate of 0 bytes".into()));
        }
        if offset
            .checked_add(len)
            .is_none_or(|end| end > FILE_BYTES_MAX)
        {
            return Err(FsError::FileTooBig {
                ino,
                offset,
                max: FILE_BYTES_MAX,
            });
        }
        self.change(|cx| {
            let mut inode = Self::regular(cx, ino)?;
            let before = (inode.size, inode.blocks);
            cx.fallocate_data(&mut inode, mode, offset, len)?;
            if mode & (PUNCH_HOLE | ZERO_RANGE) != 0 || inode.size != before.0 {
                inode.mtime = cx.now;
            }
            inode.ctime = cx.now;
            cx.put_inode(&inode)
        })
    }

    /// Stored ranges of a file (inline, shared extents, preallocated); holes between.
    pub fn extents(&self, ino: u64) -> Result<Vec<FileExtent>> {
        self.look(|cx| {
            let inode = Self::regular(cx, ino)?;
            cx.file_extents(&inode)
        })
    }

    pub fn getxattr(&self, ino: u64, name: &[u8]) -> Result<Vec<u8>> {
        self.look(|cx| {
            let inode = cx.inode(ino)?;
            check_xattr_name(&inode, name, false)?;
            cx.get_xattr(ino, name)?
                .ok_or_else(|| FsError::NoAttr(String::from_utf8_lossy(name).into_owned()))
        })
    }

    /// setxattr with `flags` from [`crate::xattr_flags`].
    pub fn setxattr(&self, ino: u64, name: &[u8], value: &[u8], flags: u32) -> Result<()> {
        self.change(|cx| {
            let mut inode = cx.inode(ino)?;
            check_xattr_name(&inode, name, true)?;
            cx.set_xattr(ino, name, value, flags)?;
            inode.ctime = cx.now;
            cx.put_inode(&inode)
        })
    }

    pub fn listxattr(&self, ino: u64) -> Result<Vec<Vec<u8>>> {
        self.look(|cx| {
            cx.inode(ino)?;
            cx.list_xattrs(ino)
        })
    }

    pub fn removexattr(&self, ino: u64, name: &[u8]) -> Result<()> {
        self.change(|cx| {
            let mut inode = cx.inode(ino)?;
            check_xattr_name(&inode, name, true)?;
            cx.remove_xattr(ino, name)?;
            inode.ctime = cx.now;
            cx.put_inode(&inode)
        })
    }

    /// Up to `max` entries after `cookie` (0 = from the start, "." and ".." first).
    pub fn readdir(&self, ino: u64, cookie: u64, max: usize) -> Result<Vec<ReaddirEntry>> {
        self.look(|cx| {
            let dir = cx.dir_inode(ino)?;
            let view = cx.view()?;
            let parent = parent_of_dir(&view, ino)?;
            cx.readdir(&dir, parent, cookie, max)
        })
    }

    /// Notes that a caller opened `ino`: if it is unlinked meanwhile, it lives on (as an
    /// orphan) until the matching [`Self::release`].
    pub fn open(&self, ino: u64) -> Result<()> {
        self.getattr(ino)?;
        *self
            .shared
            .opens
            .lock()
            .expect("open table")
            .entry((self.info.tree, ino))
            .or_default() += 1;
        Ok(())
    }

    /// The caller closed `ino`; an unlinked inode is freed with its last release.
    pub fn release(&self, ino: u64) -> Result<()> {
        let last = {
            let mut opens = self.shared.opens.lock().expect("open table");
            let key = (self.info.tree, ino);
            match opens.get_mut(&key) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    false
                }
                Some(_) => {
                    opens.remove(&key);
                    true
                }
                None => {
                    return Err(FsError::Invalid(format!(
                        "release of inode {ino} that is not open"
                    )))
                }
            }
        };
        if last && !self.is_read_only() {
            self.op(|cx| cx.reap_orphan(ino))?;
        }
        Ok(())
    }

    pub fn statfs(&self) -> Result<StatFs> {
        let usage = self.shared.pool.usage();
        let files = self.look(|cx| cx.header())?.inode_count;
        let blocks = usage.max_blocks.max(usage.total_blocks) - usage.reserved_blocks;
        let free = blocks.saturating_sub(usage.used_blocks);
        Ok(StatFs {
            block_bytes: DATA_BLOCK_BYTES as u64,
            blocks,
            blocks_free: free,
            blocks_available: free,
            files,
            files_free: u64::MAX / 2 - files,
            name_bytes_max: NAME_BYTES_MAX as u64,
        })
    }

    /// Makes everything done so far (in any subvolume) durable.
    pub fn fsync(&self) -> Result<Tid> {
        Ok(self.shared.pool.commit()?)
    }

    /// The inode at absolute `path` ("/a/b"). Components are looked up literally:
    /// symlinks are not followed, "." and ".." are.
    pub fn resolve(&self, path: &[u8]) -> Result<u64> {
        if path.len() >= PATH_BYTES_MAX {
            return Err(FsError::NameTooLong {
                len: path.len(),
                max: PATH_BYTES_MAX - 1,
            });
        }
        self.look(|cx| {
            let view = cx.view()?;
            let mut at = ROOT_INO;
            for part in path.split(|&b| b == b'/').filter(|p| !p.is_empty()) {
                cx.dir_inode(at)?;
                at = match part {
                    b"." => at,
                    b".." => parent_of_dir(&view, at)?,
                    name => {
                        check_name(name)?;
                        cx.find_entry(at, name)?
                            .ok_or_else(|| {
                                FsError::NotFound(String::from_utf8_lossy(path).into_owned())
                            })?
                            .ino
                    }
                };
            }
            Ok(at)
        })
    }

    /// Every path of `ino` (one per hard link), sorted; empty for an orphan.
    pub fn paths(&self, ino: u64) -> Result<Vec<Vec<u8>>> {
        // The view is used inside `look`, while the reader that keeps its blocks lives.
        self.look(|cx| paths_of(&cx.view()?, ino))
    }
}
