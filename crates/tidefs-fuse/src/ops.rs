//! The FUSE operations. Each one resolves FUSE numbers to a tree and an inode
//! ([`crate::inode_map`]), calls the file-system crate, and translates the answer; `.snap` is
//! handled in [`crate::snap_dir`], open files in [`crate::handles`]. Errors are mapped to
//! errno in one place, `FsError::errno`.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, CopyFileRangeFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, InitFlags, KernelConfig, LockOwner, OpenAccMode, OpenFlags, RenameFlags,
    ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry,
    ReplyLseek, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use tidefs_fs::{rename_flags, Caller, FsError, Inode, SetAttr, ROOT_INO};

use crate::attr::{errno, file_type, time_set, timespec};
use crate::busy_poll::BusyPoll;
use crate::handles::{Handles, OpenFile};
use crate::inode_map::{Node, SNAP_DIR_INO};
use crate::page_flush::PageFlusher;
use crate::seek::{seek, Seek};
use crate::snap_dir::{SnapDir, SNAP_DIR_NAME};
use crate::tree::Tree;

/// Largest request the kernel sends us (its default `max_pages` limit is 256 pages).
const MAX_WRITE_BYTES: u32 = 1 << 20;
/// Entries fetched from the file system per step of one readdir reply.
const READDIR_BATCH_ENTRIES: usize = 128;
/// Most bytes one copy_file_range request copies (the reply's count is 32-bit, and one
/// request should not hold the writer for long); callers loop for the rest.
const COPY_CHUNK_BYTES_MAX: u64 = 64 << 20;
/// Most bytes one copy_file_range request clones: cloning moves no data, only records
/// (about 2 KiB per 2 MiB), so far more fits one request than a copy.
const CLONE_CHUNK_BYTES_MAX: u64 = 1 << 30;
/// Bytes copied per read/write step inside one copy_file_range request.
const COPY_STEP_BYTES: u64 = 1 << 20;
/// Generation reported for the virtual `.snap` directory (it never changes identity).
const SNAP_DIR_GENERATION: u64 = 1;

trait OrErrno<T> {
    fn or_errno(self) -> Result<T, Errno>;
}

impl<T> OrErrno<T> for Result<T, FsError> {
    fn or_errno(self) -> Result<T, Errno> {
        self.map_err(|e| errno(&e))
    }
}

/// SEEK_DATA or SEEK_HOLE from `offset` in file `ino` of `tree`.
fn seek_in(tree: &Tree, ino: u64, offset: u64, how: Seek) -> Result<i64, Errno> {
    let size = tree.sv.getattr(ino).or_errno()?.size;
    let extents = tree.sv.extents(ino).or_errno()?;
    let at = seek(&extents, size, offset, how).ok_or(Errno::ENXIO)?;
    i64::try_from(at).map_err(|_| Errno::EOVERFLOW)
}

/// What a FUSE number resolves to.
enum Target {
    Inode(Tree, u64),
    SnapDir,
}

/// A name's answer to lookup/create: attributes and generation.
struct Entry {
    attr: FileAttr,
    generation: u64,
}

/// Writes up to this size start busy polling (see `write`).
const BUSY_POLL_WRITE_MAX: usize = 64 << 10;

/// The mounted file system, as FUSE sees it.
pub struct TideFuse {
    mounted: Tree,
    /// `Some` when a writable subvolume is mounted: its snapshots under `.snap`.
    snaps: Option<SnapDir>,
    /// Also holds the mount's open files (`handles`).
    flusher: PageFlusher,
    /// How long the kernel may cache attributes and names. Only this process changes the
    /// pool while it is mounted, and every change passes through the kernel, which drops
    /// what it cached about what changed; so the cache can be long-lived.
    ttl: Duration,
    /// The kernel buffers writes and sends them in the background (FUSE_WRITEBACK_CACHE).
    writeback_cache: bool,
    /// Ask for FUSE over io_uring (see `MountConfig::io_uring`).
    io_uring: bool,
    /// Told of every request, to poll the channel while they keep coming.
    busy: Arc<BusyPoll>,
}

fn caller(req: &Request) -> Caller {
    Caller::new(req.uid(), req.gid())
}

fn bytes(name: &OsStr) -> &[u8] {
    name.as_bytes()
}

impl TideFuse {
    /// With `writeback_cache` the kernel keeps written data in its page cache and sends it
    /// in large background writes, several at a time; what it holds is brought in before
    /// every snapshot and every timed commit (see `page_flush`).
    pub fn new(
        mounted: Tree,
        snaps: Option<SnapDir>,
        flusher: PageFlusher,
        ttl: Duration,
        writeback_cache: bool,
        io_uring: bool,
        busy: Arc<BusyPoll>,
    ) -> TideFuse {
        TideFuse {
            mounted,
            snaps,
            flusher,
            ttl,
            writeback_cache,
            io_uring,
            busy,
        }
    }

    fn target(&self, fuse: INodeNo) -> Result<Target, Errno> {
        match (Node::from_fuse(fuse.0), &self.snaps) {
            (Some(Node::Mounted(ino)), _) => Ok(Target::Inode(self.mounted.clone(), ino)),
            (Some(Node::SnapDir), Some(_)) => Ok(Target::SnapDir),
            (Some(Node::InSnapshot { snap, ino }), Some(snaps)) => {
                Ok(Target::Inode(snaps.tree(snap)?, ino))
            }
            _ => Err(Errno::ESTALE),
        }
    }

    /// The tree and inode of `fuse`; `on_snap_dir` is the error when it is `.snap` itself.
    fn inode(&self, fuse: INodeNo, on_snap_dir: Errno) -> Result<(Tree, u64), Errno> {
        match self.target(fuse)? {
            Target::Inode(tree, ino) => Ok((tree, ino)),
            Target::SnapDir => Err(on_snap_dir),
        }
    }

    fn snaps(&self) -> Result<&SnapDir, Errno> {
        self.snaps.as_ref().ok_or(Errno::ESTALE)
    }

    /// Whether `name` in `dir` is the reserved `.snap` at the root of a mounted subvolume.
    fn is_snap_name(&self, tree: &Tree, dir: u64, name: &[u8]) -> bool {
        self.snaps.is_some()
            && tree.via_snap_dir.is_none()
            && dir == ROOT_INO
            && name == SNAP_DIR_NAME
    }

    fn entry(tree: &Tree, inode: &Inode) -> Result<Entry, Errno> {
        Ok(Entry {
            attr: tree.attr(inode)?,
            generation: inode.generation,
        })
    }

    fn snap_dir_entry(&self) -> Result<Entry, Errno> {
        let root = self.mounted.sv.getattr(ROOT_INO).or_errno()?;
        Ok(Entry {
            attr: self.snaps()?.attr(&root),
            generation: SNAP_DIR_GENERATION,
        })
    }

    fn send_entry(&self, reply: ReplyEntry, r: Result<Entry, Errno>) {
        match r {
            Ok(e) => reply.entry(&self.ttl, &e.attr, Generation(e.generation)),
            Err(e) => reply.error(e),
        }
    }

    fn handles(&self) -> &Handles {
        self.flusher.handles()
    }

    /// Runs `work` (which replies) on a thread of its own, for requests that must first
    /// bring in the kernel's cached writes: those come back to this server as requests,
    /// which this thread must go back to serving (see `page_flush`). If no thread can be
    /// started, `work` is dropped with its reply unsent, which answers EIO.
    fn off_serving_thread(what: &str, work: impl FnOnce() + Send + 'static) {
        if let Err(e) = std::thread::Builder::new()
            .name(format!("tidefs-{what}"))
            .spawn(work)
        {
            eprintln!("tidefs mount: starting a thread for {what}: {e}");
        }
    }

    /// `mkdir .snap/NAME`: the snapshot first brings in the kernel's cached writes.
    fn take_snapshot(&self, name: &[u8], reply: ReplyEntry) {
        let snaps = match self.snaps() {
            Ok(snaps) => snaps.clone(),
            Err(e) => return reply.error(e),
        };
        let (name, ttl) = (name.to_vec(), self.ttl);
        Self::off_serving_thread("snapshot", move || {
            let r = snaps.create(&name).or_errno().and_then(|tree| {
                let root = tree.sv.getattr(ROOT_INO).or_errno()?;
                Self::entry(&tree, &root)
            });
            match r {
                Ok(e) => reply.entry(&ttl, &e.attr, Generation(e.generation)),
                Err(e) => reply.error(e),
            }
        });
    }

    fn send_empty(reply: ReplyEmpty, r: Result<(), Errno>) {
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn do_lookup(&self, parent: INodeNo, name: &[u8]) -> Result<Entry, Errno> {
        match self.target(parent)? {
            Target::SnapDir => {
                let tree = self.snaps()?.lookup(name).or_errno()?;
                let root = tree.sv.getattr(ROOT_INO).or_errno()?;
                Self::entry(&tree, &root)
            }
            Target::Inode(tree, dir) => {
                if self.is_snap_name(&tree, dir, name) {
                    return self.snap_dir_entry();
                }
                let inode = tree.sv.lookup(dir, name).or_errno()?;
                Self::entry(&tree, &inode)
            }
        }
    }

    fn do_getattr(&self, ino: INodeNo) -> Result<FileAttr, Errno> {
        match self.target(ino)? {
            Target::SnapDir => Ok(self.snap_dir_entry()?.attr),
            Target::Inode(tree, ino) => tree.attr(&tree.sv.getattr(ino).or_errno()?),
        }
    }

    /// The directory to create `name` in: EROFS inside `.snap` (only mkdir makes things
    /// there), EEXIST for the reserved `.snap` name.
    fn creation_dir(&self, parent: INodeNo, name: &[u8]) -> Result<(Tree, u64), Errno> {
        let (tree, dir) = self.inode(parent, Errno::EROFS)?;
        if self.is_snap_name(&tree, dir, name) {
            return Err(Errno::EEXIST);
        }
        Ok((tree, dir))
    }

    fn do_mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &[u8],
        mode: u32,
    ) -> Result<Entry, Errno> {
        let (tree, dir) = self.creation_dir(parent, name)?;
        let inode = tree
            .sv
            .mkdir(dir, name, mode & 0o7777, &caller(req))
            .or_errno()?;
        Self::entry(&tree, &inode)
    }

    fn do_rmdir(&self, req: &Request, parent: INodeNo, name: &[u8]) -> Result<(), Errno> {
        match self.target(parent)? {
            Target::SnapDir => self
                .snaps()?
                .delete(name, |t| self.handles().any_in(t.sv.info().tree))
                .or_errno(),
            Target::Inode(tree, dir) => {
                if self.is_snap_name(&tree, dir, name) {
                    return Err(Errno::EBUSY);
                }
                tree.sv.rmdir(dir, name, &caller(req)).or_errno()
            }
        }
    }

    fn do_unlink(&self, req: &Request, parent: INodeNo, name: &[u8]) -> Result<(), Errno> {
        let (tree, dir) = self.inode(parent, Errno::EROFS)?;
        if self.is_snap_name(&tree, dir, name) {
            return Err(Errno::EISDIR);
        }
        tree.sv.unlink(dir, name, &caller(req)).or_errno()
    }

    #[allow(clippy::too_many_arguments)]
    fn do_rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &[u8],
        new_parent: INodeNo,
        new_name: &[u8],
        flags: RenameFlags,
    ) -> Result<(), Errno> {
        if flags.contains(RenameFlags::RENAME_WHITEOUT) {
            return Err(Errno::EINVAL);
        }
        match (self.target(parent)?, self.target(new_parent)?) {
            (Target::SnapDir, Target::SnapDir) => {
                if flags.contains(RenameFlags::RENAME_EXCHANGE) {
                    return Err(Errno::EINVAL);
                }
                self.snaps()?.rename(name, new_name).or_errno()
            }
            (Target::Inode(from, dir), Target::Inode(to, new_dir)) => {
                if self.is_snap_name(&from, dir, name) || self.is_snap_name(&to, new_dir, new_name)
                {
                    return Err(Errno::EBUSY);
                }
                if !from.same_tree(&to) {
                    return Err(Errno::EXDEV);
                }
                let mut f = 0;
                if flags.contains(RenameFlags::RENAME_NOREPLACE) {
                    f |= rename_flags::NOREPLACE;
                }
                if flags.contains(RenameFlags::RENAME_EXCHANGE) {
                    f |= rename_flags::EXCHANGE;
                }
                from.sv
                    .rename(dir, name, new_dir, new_name, f, &caller(req))
                    .or_errno()
            }
            _ => Err(Errno::EXDEV),
        }
    }

    fn do_link(&self, ino: INodeNo, new_parent: INodeNo, new_name: &[u8]) -> Result<Entry, Errno> {
        let (tree, ino) = self.inode(ino, Errno::EPERM)?;
        let (to, dir) = self.creation_dir(new_parent, new_name)?;
        if !tree.same_tree(&to) {
            return Err(Errno::EXDEV);
        }
        let inode = tree.sv.link(ino, dir, new_name).or_errno()?;
        Self::entry(&tree, &inode)
    }

    fn open_file(&self, tree: Tree, ino: u64, flags: i32) -> Result<u64, Errno> {
        let writes = OpenFlags(flags).acc_mode() != OpenAccMode::O_RDONLY;
        if writes && tree.sv.is_read_only() {
            return Err(Errno::EROFS);
        }
        tree.sv.open(ino).or_errno()?;
        Ok(self.handles().insert(OpenFile { tree, ino, writes }))
    }

    /// The open file behind `fh`, or (for a handle we did not make) the inode itself.
    fn file(&self, ino: INodeNo, fh: FileHandle) -> Result<(Tree, u64), Errno> {
        match self.handles().get(fh.0) {
            Some(f) => Ok((f.tree.clone(), f.ino)),
            None => self.inode(ino, Errno::EISDIR),
        }
    }

    fn do_setattr(&self, req: &Request, ino: INodeNo, attr: &SetAttr) -> Result<FileAttr, Errno> {
        let (tree, ino) = self.inode(ino, Errno::EPERM)?;
        let inode = tree.sv.setattr(ino, attr, &caller(req)).or_errno()?;
        tree.attr(&inode)
    }

    fn do_create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &[u8],
        mode: u32,
        flags: i32,
    ) -> Result<(Entry, u64), Errno> {
        let (tree, dir) = self.creation_dir(parent, name)?;
        let inode = tree
            .sv
            .create(dir, name, mode & 0o7777, &caller(req))
            .or_errno()?;
        let entry = Self::entry(&tree, &inode)?;
        let fh = self.open_file(tree, inode.ino, flags)?;
        Ok((entry, fh))
    }

    /// Fills a readdir reply from `cookie` on; `add` returns true when the reply is full.
    fn list(
        &self,
        dir: INodeNo,
        cookie: u64,
        mut add: impl FnMut(&Tree, u64, u64, FileType, &[u8]) -> Result<bool, Errno>,
    ) -> Result<(), Errno> {
        match self.target(dir)? {
            Target::SnapDir => {
                // Cookies: "." → 1, ".." → 2, the i-th snapshot → 3 + i.
                let mut names: Vec<(Vec<u8>, u64, u64)> = vec![
                    (b".".to_vec(), SNAP_DIR_INO, 1),
                    (b"..".to_vec(), crate::inode_map::FUSE_ROOT_INO, 2),
                ];
                for (i, (name, id)) in self.snaps()?.list().or_errno()?.into_iter().enumerate() {
                    let ino = Node::InSnapshot {
                        snap: id,
                        ino: ROOT_INO,
                    }
                    .to_fuse()
                    .ok_or(Errno::EOVERFLOW)?;
                    names.push((name.into_bytes(), ino, 3 + i as u64));
                }
                for (name, ino, next) in names.into_iter().skip(cookie as usize) {
                    if add(&self.mounted, ino, next, FileType::Directory, &name)? {
                        break;
                    }
                }
                Ok(())
            }
            Target::Inode(tree, ino) => {
                let mut cookie = cookie;
                loop {
                    let batch = tree
                        .sv
                        .readdir(ino, cookie, READDIR_BATCH_ENTRIES)
                        .or_errno()?;
                    let done = batch.len() < READDIR_BATCH_ENTRIES;
                    for e in batch {
                        // ".." of a snapshot's root is `.snap`; of the mount's root, the root.
                        let fuse = if e.name == b".." && ino == ROOT_INO {
                            if tree.via_snap_dir.is_some() {
                                SNAP_DIR_INO
                            } else {
                                crate::inode_map::FUSE_ROOT_INO
                            }
                        } else {
                            tree.fuse_ino(e.ino)?
                        };
                        if add(&tree, fuse, e.next_cookie, file_type(e.kind), &e.name)? {
                            return Ok(());
                        }
                        cookie = e.next_cookie;
                    }
                    if done {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// The attributes readdirplus hands out with an entry.
    fn plus_entry(&self, tree: &Tree, fuse: u64) -> Result<Entry, Errno> {
        match Node::from_fuse(fuse) {
            Some(Node::SnapDir) => self.snap_dir_entry(),
            Some(Node::Mounted(ino)) => {
                Self::entry(&self.mounted, &self.mounted.sv.getattr(ino).or_errno()?)
            }
            Some(Node::InSnapshot { snap, ino }) => {
                let t = if tree.via_snap_dir == Some(snap) {
                    tree.clone()
                } else {
                    self.snaps()?.tree(snap)?
                };
                Self::entry(&t, &t.sv.getattr(ino).or_errno()?)
            }
            None => Err(Errno::ESTALE),
        }
    }

    /// copy_file_range: the block-aligned middle of the range is cloned (the destination
    /// shares the source's extents, so no data moves), the unaligned head and tail are
    /// copied as data. When source and destination offsets differ within a block nothing
    /// lines up, and the whole range is copied.
    #[allow(clippy::too_many_arguments)]
    fn do_copy_file_range(
        &self,
        req: &Request,
        ino_in: INodeNo,
        fh_in: FileHandle,
        offset_in: u64,
        ino_out: INodeNo,
        fh_out: FileHandle,
        offset_out: u64,
        len: u64,
    ) -> Result<u32, Errno> {
        let (src, src_ino) = self.file(ino_in, fh_in)?;
        let (dst, dst_ino) = self.file(ino_out, fh_out)?;
        if dst.sv.is_read_only() {
            return Err(Errno::EROFS);
        }
        let src_size = src.sv.getattr(src_ino).or_errno()?.size;
        let dst_size = dst.sv.getattr(dst_ino).or_errno()?.size;
        let lines_up = offset_in % COPY_BLOCK_BYTES == offset_out % COPY_BLOCK_BYTES;
        let chunk_max = if lines_up {
            CLONE_CHUNK_BYTES_MAX
        } else {
            COPY_CHUNK_BYTES_MAX
        };
        let len = len.min(src_size.saturating_sub(offset_in)).min(chunk_max);
        if src.same_tree(&dst)
            && src_ino == dst_ino
            && offset_in < offset_out + len
            && offset_out < offset_in + len
        {
            return Err(Errno::EINVAL);
        }
        let who = caller(req);
        let copy = |from: u64, to: u64| -> Result<u64, Errno> {
            copy_data(
                &src, src_ino, &dst, dst_ino, offset_in, offset_out, from, to, &who,
            )
        };
        let (mid_from, mid_to) = if lines_up {
            clone_span(offset_in, offset_out, len, src_size, dst_size)
        } else {
            (0, 0)
        };
        if mid_from >= mid_to {
            return Ok(copy(0, len)? as u32);
        }
        let head = copy(0, mid_from)?;
        if head < mid_from {
            return Ok(head as u32);
        }
        let cloned = dst.sv.clone_range(
            &src.sv,
            src_ino,
            offset_in + mid_from,
            dst_ino,
            offset_out + mid_from,
            mid_to - mid_from,
            &who,
        );
        match cloned {
            Ok(_) => Ok(copy(mid_to, len)? as u32),
            // Refused by the clone rules (or another pool): copying still does the job, in
            // the chunk a copy may take.
            Err(FsError::Invalid(_) | FsError::CrossDevice(_) | FsError::NotSupported(_)) => {
                let to = len.min(mid_from + COPY_CHUNK_BYTES_MAX);
                Ok(copy(mid_from, to)? as u32)
            }
            Err(e) => Err(errno(&e)),
        }
    }
}

/// Block size the clone rules align to.
const COPY_BLOCK_BYTES: u64 = tidefs_fs::limits::DATA_BLOCK_BYTES as u64;

/// The part `[from, to)` of a copy of `len` bytes (relative to its start) that can be
/// cloned, for offsets that lie alike within a block: from the first block boundary to the
/// last one — or to the end of the range when it ends at the source's end of file and at or
/// past the destination's (the source's zero tail may then land in the destination).
fn clone_span(
    offset_in: u64,
    offset_out: u64,
    len: u64,
    src_size: u64,
    dst_size: u64,
) -> (u64, u64) {
    let from = ((COPY_BLOCK_BYTES - offset_in % COPY_BLOCK_BYTES) % COPY_BLOCK_BYTES).min(len);
    let end_in = offset_in + len;
    let to = if end_in == src_size && offset_out + len >= dst_size {
        len
    } else {
        from + (len - from) / COPY_BLOCK_BYTES * COPY_BLOCK_BYTES
    };
    (from, to)
}

/// Copies bytes `[from, to)` of a copy (relative to `offset_in` and `offset_out`) through
/// reads and writes; returns where it stopped (short at the source's end of file).
#[allow(clippy::too_many_arguments)]
fn copy_data(
    src: &Tree,
    src_ino: u64,
    dst: &Tree,
    dst_ino: u64,
    offset_in: u64,
    offset_out: u64,
    from: u64,
    to: u64,
    who: &Caller,
) -> Result<u64, Errno> {
    let mut done = from;
    while done < to {
        let step = (to - done).min(COPY_STEP_BYTES);
        let data = src.sv.read(src_ino, offset_in + done, step).or_errno()?;
        if data.is_empty() {
            break;
        }
        dst.sv
            .write(dst_ino, offset_out + done, &data, who)
            .or_errno()?;
        done += data.len() as u64;
    }
    Ok(done)
}

impl Filesystem for TideFuse {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Each capability is asked for on its own: an older kernel lacking one still mounts.
        for cap in [
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_READDIRPLUS_AUTO,
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_CACHE_SYMLINKS,
            InitFlags::FUSE_ASYNC_DIO,
            // This server drops setuid/setgid on write, truncate and chown itself (tidefs-fs
            // does, as Linux would). In return the kernel marks an inode as having no
            // security.capability after its first look (SB_NOSEC) instead of asking before
            // every write, which saves a round trip per write.
            InitFlags::FUSE_HANDLE_KILLPRIV_V2,
        ] {
            let _ = config.add_capabilities(cap);
        }
        if self.writeback_cache {
            let _ = config.add_capabilities(InitFlags::FUSE_WRITEBACK_CACHE);
        }
        if self.io_uring {
            // Offered by the kernel only where its fuse module allows it (enable_uring).
            let _ = config.add_capabilities(InitFlags::FUSE_OVER_IO_URING);
        }
        let _ = config.set_max_write(MAX_WRITE_BYTES);
        let _ = config.set_max_background(64);
        let _ = config.set_congestion_threshold(48);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.busy.touch();
        match self.do_lookup(parent, bytes(name)) {
            // A negative entry (inode 0) with a timeout lets the kernel remember that the name
            // does not exist; creating it later goes through the kernel, which replaces it.
            Err(e) if e == Errno::ENOENT => reply.entry(&self.ttl, &negative_attr(), Generation(0)),
            r => self.send_entry(reply, r),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.busy.touch();
        match self.do_getattr(ino) {
            Ok(attr) => reply.attr(&self.ttl, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        self.busy.touch();
        let attr = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: atime.map(time_set),
            mtime: mtime.map(time_set),
            ctime: ctime.map(timespec),
            flags: None,
        };
        match self.do_setattr(req, ino, &attr) {
            Ok(attr) => reply.attr(&self.ttl, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        self.busy.touch();
        match self
            .inode(ino, Errno::EINVAL)
            .and_then(|(t, ino)| t.sv.readlink(ino).or_errno())
        {
            Ok(target) => reply.data(&target),
            Err(e) => reply.error(e),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        self.busy.touch();
        let name = bytes(name);
        let r = self.creation_dir(parent, name).and_then(|(tree, dir)| {
            let inode = tree
                .sv
                .mknod(dir, name, mode, u64::from(rdev), &caller(req))
                .or_errno()?;
            Self::entry(&tree, &inode)
        });
        self.send_entry(reply, r);
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        self.busy.touch();
        if let Ok(Target::SnapDir) = self.target(parent) {
            return self.take_snapshot(bytes(name), reply);
        }
        self.send_entry(reply, self.do_mkdir(req, parent, bytes(name), mode));
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.busy.touch();
        Self::send_empty(reply, self.do_unlink(req, parent, bytes(name)));
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.busy.touch();
        Self::send_empty(reply, self.do_rmdir(req, parent, bytes(name)));
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        self.busy.touch();
        let name = bytes(link_name);
        let r = self.creation_dir(parent, name).and_then(|(tree, dir)| {
            let inode = tree
                .sv
                .symlink(dir, name, target.as_os_str().as_bytes(), &caller(req))
                .or_errno()?;
            Self::entry(&tree, &inode)
        });
        self.send_entry(reply, r);
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        self.busy.touch();
        Self::send_empty(
            reply,
            self.do_rename(req, parent, bytes(name), newparent, bytes(newname), flags),
        );
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        self.busy.touch();
        self.send_entry(reply, self.do_link(ino, newparent, bytes(newname)));
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        self.busy.touch();
        match self
            .inode(ino, Errno::EISDIR)
            .and_then(|(tree, ino)| self.open_file(tree, ino, flags.0))
        {
            // Cached pages stay valid across opens: nothing but this mount changes the data.
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        // Reads do not start busy polling: a stream of them comes as readahead batches,
        // several in flight, served while the disk works; a wakeup is cheap beside that,
        // and a polling thread would only take the CPU their copies need.
        match self.file(ino, fh) {
            // Straight into the reply's buffer (over io_uring, the ring's): no second copy.
            Ok((tree, ino)) => reply.data_with(size as usize, |buf| {
                tree.sv.read_into(ino, offset, buf).or_errno()
            }),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        // Only small writes start busy polling: a big one takes long enough to serve that
        // a wakeup is cheap beside it, and a polling thread takes the CPU its checksums
        // and copies need.
        if data.len() <= BUSY_POLL_WRITE_MAX {
            self.busy.touch();
        }
        match self
            .file(ino, fh)
            .and_then(|(tree, ino)| tree.sv.write(ino, offset, data, &caller(req)).or_errno())
        {
            Ok(n) => reply.written(n as u32),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        self.busy.touch();
        // Every write reached the file system before this (with the writeback cache, the
        // kernel sends its cached pages before FLUSH), so there is nothing to push at close;
        // durability is fsync's job. ENOSYS tells the kernel so once: it stops sending
        // FLUSH (one round trip less per close) and close() still succeeds.
        reply.error(Errno::ENOSYS);
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.busy.touch();
        let r = match self.handles().remove(fh.0) {
            Some(f) => f.tree.sv.release(f.ino).or_errno(),
            None => Err(Errno::EBADF),
        };
        Self::send_empty(reply, r);
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.busy.touch();
        // A commit makes everything so far durable, in every file (tidefs has no per-file log).
        Self::send_empty(reply, self.mounted.sv.fsync().map(|_| ()).or_errno());
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.busy.touch();
        match self.target(ino) {
            Ok(_) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        self.busy.touch();
        let r = self.list(ino, offset, |_, fuse, next, kind, name| {
            Ok(reply.add(INodeNo(fuse), next, kind, OsStr::from_bytes(name)))
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        self.busy.touch();
        let ttl = self.ttl;
        let r = self.list(ino, offset, |tree, fuse, next, _, name| {
            let e = self.plus_entry(tree, fuse)?;
            Ok(reply.add(
                INodeNo(fuse),
                next,
                OsStr::from_bytes(name),
                &ttl,
                &e.attr,
                Generation(e.generation),
            ))
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.busy.touch();
        Self::send_empty(reply, self.mounted.sv.fsync().map(|_| ()).or_errno());
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        self.busy.touch();
        match self.mounted.sv.statfs().or_errno() {
            Ok(s) => reply.statfs(
                s.blocks,
                s.blocks_free,
                s.blocks_available,
                s.files,
                s.files_free,
                s.block_bytes as u32,
                s.name_bytes_max as u32,
                s.block_bytes as u32,
            ),
            Err(e) => reply.error(e),
        }
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        position: u32,
        reply: ReplyEmpty,
    ) {
        self.busy.touch();
        let r = if position != 0 {
            Err(Errno::EINVAL)
        } else {
            self.inode(ino, Errno::EROFS).and_then(|(t, ino)| {
                t.sv.setxattr(ino, bytes(name), value, flags as u32)
                    .or_errno()
            })
        };
        Self::send_empty(reply, r);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        self.busy.touch();
        match self
            .inode(ino, Errno::ENODATA)
            .and_then(|(t, ino)| t.sv.getxattr(ino, bytes(name)).or_errno())
        {
            Ok(v) => send_xattr(reply, size, &v),
            Err(e) => reply.error(e),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        self.busy.touch();
        let r = match self.target(ino) {
            Ok(Target::SnapDir) => Ok(Vec::new()),
            Ok(Target::Inode(t, ino)) => t.sv.listxattr(ino).or_errno(),
            Err(e) => Err(e),
        };
        match r {
            Ok(names) => {
                let mut list = Vec::new();
                for n in names {
                    list.extend_from_slice(&n);
                    list.push(0);
                }
                send_xattr(reply, size, &list);
            }
            Err(e) => reply.error(e),
        }
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.busy.touch();
        let r = self
            .inode(ino, Errno::EROFS)
            .and_then(|(t, ino)| t.sv.removexattr(ino, bytes(name)).or_errno());
        Self::send_empty(reply, r);
    }

    fn access(&self, _req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        self.busy.touch();
        // Mode bits are the kernel's job (default_permissions); what is left is existence
        // and the read-only trees.
        let r = match self.target(ino) {
            Ok(Target::SnapDir) => Ok(()),
            Ok(Target::Inode(t, ino)) => t.sv.getattr(ino).or_errno().and_then(|_| {
                if mask.contains(AccessFlags::W_OK) && t.sv.is_read_only() {
                    Err(Errno::EROFS)
                } else {
                    Ok(())
                }
            }),
            Err(e) => Err(e),
        };
        Self::send_empty(reply, r);
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        self.busy.touch();
        match self.do_create(req, parent, bytes(name), mode, flags) {
            Ok((e, fh)) => reply.created(
                &self.ttl,
                &e.attr,
                Generation(e.generation),
                FileHandle(fh),
                FopenFlags::FOPEN_KEEP_CACHE,
            ),
            Err(e) => reply.error(e),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        self.busy.touch();
        let r = self
            .file(ino, fh)
            .and_then(|(t, ino)| t.sv.fallocate(ino, mode as u32, offset, length).or_errno());
        Self::send_empty(reply, r);
    }

    fn lseek(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        self.busy.touch();
        let how = match whence {
            libc::SEEK_DATA => Seek::Data,
            libc::SEEK_HOLE => Seek::Hole,
            // The kernel answers SEEK_SET/CUR/END itself.
            _ => return reply.error(Errno::EINVAL),
        };
        let Ok(offset) = u64::try_from(offset) else {
            return reply.error(Errno::ENXIO);
        };
        let (tree, file) = match self.file(ino, fh) {
            Ok(found) => found,
            Err(e) => return reply.error(e),
        };
        if !self.handles().is_open_for_writing(ino.0) {
            return match seek_in(&tree, file, offset, how) {
                Ok(at) => reply.offset(at),
                Err(e) => reply.error(e),
            };
        }
        // The kernel asks without sending its cached writes first, so they are brought in
        // before the extents are looked at.
        let flusher = self.flusher.clone();
        Self::off_serving_thread("lseek", move || {
            let r = flusher
                .flush_file(ino.0)
                .or_errno()
                .and_then(|()| seek_in(&tree, file, offset, how));
            match r {
                Ok(at) => reply.offset(at),
                Err(e) => reply.error(e),
            }
        });
    }

    fn copy_file_range(
        &self,
        req: &Request,
        ino_in: INodeNo,
        fh_in: FileHandle,
        offset_in: u64,
        ino_out: INodeNo,
        fh_out: FileHandle,
        offset_out: u64,
        len: u64,
        flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        self.busy.touch();
        let r = if !flags.is_empty() {
            Err(Errno::EINVAL)
        } else {
            self.do_copy_file_range(
                req, ino_in, fh_in, offset_in, ino_out, fh_out, offset_out, len,
            )
        };
        match r {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(e),
        }
    }
}

/// getxattr/listxattr answer: the size when asked for it (`size` 0), ERANGE when the
/// caller's buffer is too small, the bytes otherwise.
fn send_xattr(reply: ReplyXattr, size: u32, value: &[u8]) {
    if size == 0 {
        reply.size(value.len() as u32);
    } else if value.len() > size as usize {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(value);
    }
}

/// The attributes of a negative entry: only `ino` 0 matters to the kernel.
fn negative_attr() -> FileAttr {
    FileAttr {
        ino: INodeNo(0),
        size: 0,
        blocks: 0,
        atime: SystemTime::UNIX_EPOCH,
        mtime: SystemTime::UNIX_EPOCH,
        ctime: SystemTime::UNIX_EPOCH,
        crtime: SystemTime::UNIX_EPOCH,
        kind: FileType::RegularFile,
        perm: 0,
        nlink: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 0,
        flags: 0,
    }
}
