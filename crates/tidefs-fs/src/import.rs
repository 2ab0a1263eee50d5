//! import: copies a host directory tree into a subvolume, keeping modes, owners, times
//! (with nanoseconds), xattrs, hard links, symlinks, fifos, sockets, devices, and holes
//! (found with SEEK_DATA / SEEK_HOLE).
//!
//! Speed comes from two things: a reader thread walks the host tree and reads small files
//! while this thread inserts, and many files go into one store write call (one batch),
//! with the subvolume header and the directories touched by a batch stored once per batch.
//! Directory times are set in a last pass, because adding entries changes them.

use std::collections::HashMap;
use std::os::fd::AsFd;

use rustix::fs::{Mode, OFlags, CWD};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, SyncSender};

use crate::clock::Timespec;
use crate::cx::Cx;
use crate::dir::check_name;
use crate::error::{FsError, Result};
use crate::host::{io_err, lstat, read_small_file, read_xattrs, stat_at, HostMeta, Xattrs};
use crate::inode::{FileKind, Inode, NewInode, ROOT_INO};
use crate::subvol::Subvol;
use crate::xattr::check_xattr_name;

/// Files up to this size are read by the walker and inserted with their batch; bigger
/// ones are streamed with holes preserved.
const SMALL_FILE_BYTES: u64 = 1 << 20;
/// Host entries per store write call.
const BATCH_ITEMS: usize = 2000;
/// Batches the walker may run ahead.
const BATCHES_AHEAD: usize = 4;

/// Counts reported while copying, for a progress bar.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Entries (files, directories, links, …) done.
    pub entries: u64,
    /// File data bytes done.
    pub bytes: u64,
}

/// What an import or export did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyStats {
    pub dirs: u64,
    pub files: u64,
    pub symlinks: u64,
    pub specials: u64,
    /// Names that became hard links to an inode copied before.
    pub hard_links: u64,
    /// Data bytes copied (holes excluded).
    pub bytes: u64,
    pub xattrs: u64,
    /// Xattrs in namespaces tidefs does not keep (system.*), left behind.
    pub xattrs_skipped: u64,
}

enum Body {
    Dir { id: usize },
    SmallFile { data: Vec<u8> },
    BigFile { path: PathBuf },
    Symlink { target: Vec<u8> },
    Special,
}

struct Item {
    /// Walker id of the parent directory (`usize::MAX` for the root itself).
    parent: usize,
    name: Vec<u8>,
    meta: HostMeta,
    xattrs: Xattrs,
    body: Body,
}

fn walk(root: &Path, tx: &SyncSender<Result<Vec<Item>>>) -> Result<()> {
    let mut batch = Vec::with_capacity(BATCH_ITEMS);
    batch.push(Item {
        parent: usize::MAX,
        name: Vec::new(),
        meta: lstat(root)?,
        xattrs: read_xattrs(root)?,
        body: Body::Dir { id: 0 },
    });
    let mut stack = vec![(root.to_path_buf(), 0usize)];
    let mut next_id = 1;
    while let Some((dir, id)) = stack.pop() {
        let dir_fd = rustix::fs::openat(
            CWD,
            &dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io_err("open", &dir))?;
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .map_err(|e| FsError::host("readdir", &dir, e))?
            .map(|e| {
                e.map(|e| e.file_name())
                    .map_err(|e| FsError::host("readdir", &dir, e))
            })
            .collect::<Result<_>>()?;
        names.sort();
        for name in names {
            let path = dir.join(&name);
            let meta = stat_at(dir_fd.as_fd(), &name, &path)?;
            let mut xattrs = None;
            let body = match FileKind::from_mode(meta.mode) {
                Some(FileKind::Directory) => {
                    let child = next_id;
                    next_id += 1;
                    stack.push((path.clone(), child));
                    Body::Dir { id: child }
                }
                Some(FileKind::Regular) if meta.size <= SMALL_FILE_BYTES => {
                    let (data, x) = read_small_file(dir_fd.as_fd(), &name, meta.size, &path)?;
                    xattrs = Some(x);
                    Body::SmallFile { data }
                }
                Some(FileKind::Regular) => Body::BigFile { path: path.clone() },
                Some(FileKind::Symlink) => Body::Symlink {
                    target: std::fs::read_link(&path)
                        .map_err(|e| FsError::host("readlink", &path, e))?
                        .as_os_str()
                        .as_bytes()
                        .to_vec(),
                },
                _ => Body::Special,
            };
            let xattrs = match xattrs {
                Some(x) => x,
                None => read_xattrs(&path)?,
            };
            batch.push(Item {
                parent: id,
                name: name.as_bytes().to_vec(),
                meta,
                xattrs,
                body,
            });
            if batch.len() >= BATCH_ITEMS && tx.send(Ok(std::mem::take(&mut batch))).is_err() {
                return Ok(()); // the importer stopped
            }
        }
    }
    if !batch.is_empty() {
        let _ = tx.send(Ok(batch));
    }
    Ok(())
}

/// State of one import on the inserting side.
struct Importer<'s> {
    sub: &'s Subvol,
    /// Walker directory id → inode.
    dir_inos: Vec<u64>,
    /// (host dev, host ino) → inode, for files with several names.
    links: HashMap<(u64, u64), u64>,
    /// Directories whose times are set last.
    dir_times: Vec<(u64, Timespec, Timespec)>,
    stats: CopyStats,
    progress: Progress,
}

impl Importer<'_> {
    fn set_dir_ino(&mut self, id: usize, ino: u64) {
        if self.dir_inos.len() <= id {
            self.dir_inos.resize(id + 1, 0);
        }
        self.dir_inos[id] = ino;
    }

    fn apply_xattrs(
        &mut self,
        cx: &mut Cx<'_, '_>,
        inode: &Inode,
        xattrs: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<()> {
        for (name, value) in xattrs {
            if check_xattr_name(inode, name, true).is_err() {
                self.stats.xattrs_skipped += 1;
                continue;
            }
            cx.set_xattr(inode.ino, name, value, 0)?;
            self.stats.xattrs += 1;
        }
        Ok(())
    }

    /// Inserts the items of one batch (up to a big file) in one store write call; returns
    /// the inode of the last item and whether it is new (not a further hard link).
    fn insert_batch(&mut self, items: &[Item]) -> Result<Option<(u64, bool)>> {
        if items.is_empty() {
            return Ok(None);
        }
        self.sub.change(|cx| {
            let mut header = cx.header()?;
            let mut dirs: HashMap<u64, Inode> = HashMap::new();
            let mut last = None;
            for item in items {
                last = Some(self.insert_item(cx, &mut header, &mut dirs, item)?);
            }
            for dir in dirs.values() {
                cx.put_inode(dir)?;
            }
            cx.put_header(&header)?;
            Ok(last)
        })
    }

    fn insert_item(
        &mut self,
        cx: &mut Cx<'_, '_>,
        header: &mut crate::inode::SubvolHeader,
        dirs: &mut HashMap<u64, Inode>,
        item: &Item,
    ) -> Result<(u64, bool)> {
        let m = &item.meta;
        if item.parent == usize::MAX {
            // The target directory takes the host directory's attributes.
            let target = self.dir_inos[0];
            let mut root = match dirs.remove(&target) {
                Some(r) => r,
                None => cx.dir_inode(target)?,
            };
            root.mode = m.mode;
            root.uid = m.uid;
            root.gid = m.gid;
            self.apply_xattrs(cx, &root, &item.xattrs)?;
            dirs.insert(target, root);
            self.dir_times.push((target, m.atime, m.mtime));
            return Ok((target, false));
        }
        check_name(&item.name)?;
        let parent_ino = self.dir_inos[item.parent];
        if let std::collections::hash_map::Entry::Vacant(v) = dirs.entry(parent_ino) {
            v.insert(cx.inode(parent_ino)?);
        }
        let kind = FileKind::from_mode(m.mode).unwrap_or(FileKind::Regular);
        if kind != FileKind::Directory && m.nlink > 1 {
            if let Some(&ino) = self.links.get(&(m.dev, m.ino)) {
                let parent = dirs.get_mut(&parent_ino).expect("loaded");
                cx.add_entry(parent, &item.name, ino, kind)?;
                let mut inode = cx.inode(ino)?;
                inode.nlink += 1;
                cx.put_inode(&inode)?;
                self.stats.hard_links += 1;
                self.progress.entries += 1;
                return Ok((ino, false));
            }
        }
        let mut inode = cx.alloc_inode(
            header,
            NewInode {
                mode: m.mode,
                uid: m.uid,
                gid: m.gid,
                rdev: if matches!(kind, FileKind::CharDevice | FileKind::BlockDevice) {
                    m.rdev
                } else {
                    0
                },
            },
        );
        inode.nlink = if kind == FileKind::Directory { 2 } else { 1 };
        inode.atime = m.atime;
        inode.mtime = m.mtime;
        match &item.body {
            Body::Dir { id } => {
                self.set_dir_ino(*id, inode.ino);
                self.dir_times.push((inode.ino, m.atime, m.mtime));
                self.stats.dirs += 1;
            }
            Body::SmallFile { data } => {
                if !data.is_empty() {
                    cx.write_data(&mut inode, 0, data)?;
                }
                inode.size = m.size.max(data.len() as u64);
                self.stats.files += 1;
                self.stats.bytes += data.len() as u64;
                self.progress.bytes += data.len() as u64;
            }
            Body::BigFile { .. } => self.stats.files += 1,
            Body::Symlink { target } => {
                cx.write_symlink_target(inode.ino, target)?;
                inode.size = target.len() as u64;
                self.stats.symlinks += 1;
            }
            Body::Special => self.stats.specials += 1,
        }
        self.apply_xattrs(cx, &inode, &item.xattrs)?;
        let parent = dirs.get_mut(&parent_ino).expect("loaded");
        cx.add_entry(parent, &item.name, inode.ino, kind)?;
        if kind == FileKind::Directory {
            parent.nlink += 1;
            dirs.insert(inode.ino, inode.clone());
        } else {
            cx.put_inode(&inode)?;
        }
        if kind != FileKind::Directory && m.nlink > 1 {
            self.links.insert((m.dev, m.ino), inode.ino);
        }
        self.progress.entries += 1;
        Ok((inode.ino, true))
    }

    /// Streams a big file's data segments (holes stay holes), one store call per chunk.
    /// A reader thread fills the next chunks while this one writes, so reading the host
    /// file overlaps with writing the pool.
    fn copy_big_file(
        &mut self,
        ino: u64,
        path: &Path,
        meta: &HostMeta,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<()> {
        let file = std::fs::File::open(path).map_err(|e| FsError::host("open", path, e))?;
        let (full_tx, full_rx) = sync_channel::<Result<(u64, Vec<u8>, usize)>>(BIG_CHUNKS_AHEAD);
        let (empty_tx, empty_rx) = sync_channel::<Vec<u8>>(BIG_CHUNKS_AHEAD + 2);
        for _ in 0..BIG_CHUNKS_AHEAD + 2 {
            let _ = empty_tx.send(vec![0u8; BIG_CHUNK_BYTES]);
        }
        std::thread::scope(|scope| -> Result<()> {
            scope.spawn(move || {
                if let Err(e) = read_data_segments(&file, path, meta.size, &empty_rx, &full_tx) {
                    let _ = full_tx.send(Err(e));
                }
            });
            for item in full_rx {
                let (off, buf, got) = item?;
                let chunk = &buf[..got];
                self.sub.change(|cx| {
                    let mut inode = cx.inode(ino)?;
                    cx.write_data(&mut inode, off, chunk)?;
                    cx.put_inode(&inode)
                })?;
                self.stats.bytes += got as u64;
                self.progress.bytes += got as u64;
                progress(self.progress);
                let _ = empty_tx.send(buf);
            }
            Ok(())
        })?;
        let (size, atime, mtime) = (meta.size, meta.atime, meta.mtime);
        self.sub.change(|cx| {
            let mut inode = cx.inode(ino)?;
            if inode.size < size {
                cx.truncate_data(&mut inode, size)?;
            }
            inode.atime = atime;
            inode.mtime = mtime;
            cx.put_inode(&inode)
        })
    }

    fn finish_dirs(&mut self) -> Result<()> {
        let times = std::mem::take(&mut self.dir_times);
        self.sub.change(|cx| {
            for (ino, atime, mtime) in &times {
                let mut d = cx.inode(*ino)?;
                d.atime = *atime;
                d.mtime = *mtime;
                cx.put_inode(&d)?;
            }
            Ok(())
        })
    }
}

/// Copies the tree under `host_dir` into the root of `sub` (which should be empty; names
/// that exist already fail with EEXIST). `progress` is called after every batch.
pub fn import(
    sub: &Subvol,
    host_dir: &Path,
    progress: &mut dyn FnMut(Progress),
) -> Result<CopyStats> {
    import_into(sub, ROOT_INO, host_dir, progress)
}

/// [`import`] into the directory `dir` of `sub`, which takes `host_dir`'s attributes.
pub fn import_into(
    sub: &Subvol,
    dir: u64,
    host_dir: &Path,
    progress: &mut dyn FnMut(Progress),
) -> Result<CopyStats> {
    let mut imp = Importer {
        sub,
        dir_inos: vec![dir],
        links: HashMap::new(),
        dir_times: Vec::new(),
        stats: CopyStats::default(),
        progress: Progress::default(),
    };
    std::thread::scope(|scope| {
        let (tx, rx) = sync_channel::<Result<Vec<Item>>>(BATCHES_AHEAD);
        let walker = scope.spawn(move || {
            if let Err(e) = walk(host_dir, &tx) {
                let _ = tx.send(Err(e));
            }
        });
        let result = (|| {
            for batch in rx {
                let batch = batch?;
                let mut from = 0;
                for (i, item) in batch.iter().enumerate() {
                    if let Body::BigFile { path } = &item.body {
                        let created = imp.insert_batch(&batch[from..=i])?;
                        from = i + 1;
                        if let Some((ino, true)) = created {
                            imp.copy_big_file(ino, path, &item.meta, progress)?;
                        }
                    }
                }
                imp.insert_batch(&batch[from..])?;
                progress(imp.progress);
            }
            imp.finish_dirs()
        })();
        // Dropping the receiver (on error) lets the walker stop at its next send.
        walker.join().expect("import walker panicked");
        result
    })?;
    Ok(imp.stats)
}

/// Bytes of a big file per store call: eight whole extents (about 16 MiB), which the
/// store writes in parallel; fewer calls leave the disk idle less often between them.
const BIG_CHUNK_BYTES: usize =
    8 * crate::limits::DATA_EXTENT_BLOCKS as usize * crate::limits::DATA_BLOCK_BYTES;
/// Chunks of a big file read ahead of the writer.
const BIG_CHUNKS_AHEAD: usize = 2;

/// Reads the data segments of `file` (holes skipped) into buffers taken from `empty`,
/// sending `(file offset, buffer, bytes)` to `full`. Stops early if the writer is gone.
fn read_data_segments(
    file: &std::fs::File,
    path: &Path,
    size: u64,
    empty: &std::sync::mpsc::Receiver<Vec<u8>>,
    full: &SyncSender<Result<(u64, Vec<u8>, usize)>>,
) -> Result<()> {
    use rustix::fs::SeekFrom;
    let fd = file.as_fd();
    let mut at = 0u64;
    while at < size {
        let start = match rustix::fs::seek(fd, SeekFrom::Data(at)) {
            Ok(s) => s,
            Err(rustix::io::Errno::NXIO) => break, // only a hole is left
            Err(e) => return Err(io_err("seek data", path)(e)),
        };
        let end = rustix::fs::seek(fd, SeekFrom::Hole(start)).map_err(io_err("seek hole", path))?;
        let mut off = start;
        while off < end {
            let Ok(mut buf) = empty.recv() else {
                return Ok(());
            };
            let n = ((end - off) as usize).min(BIG_CHUNK_BYTES);
            let got = rustix::io::pread(fd, &mut buf[..n], off).map_err(io_err("read", path))?;
            if got == 0 {
                break;
            }
            if full.send(Ok((off, buf, got))).is_err() {
                return Ok(());
            }
            off += got as u64;
        }
        at = end;
    }
    Ok(())
}
