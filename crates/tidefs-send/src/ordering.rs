//! The ordering engine: turns per-inode changes, in ascending inode number, into name
//! operations a receiver can apply one by one to its copy of the parent snapshot.
//!
//! Rules (DESIGN.md §5), and how this engine keeps them:
//!
//! * **Inodes in ascending number.** [`Engine::process`] is called once per changed inode,
//!   in order; an inode's names, then its content, then its attributes are sent.
//! * **New names before removed names.** A non-directory first gets its new names (a
//!   RENAME consumes one name that goes away, otherwise a LINK), then loses the rest.
//! * **Orphan an inode whose name is taken.** A target name still held by another inode
//!   is freed first: a directory, or a non-directory for which it is the last name and
//!   that lives on, is renamed to its orphan name `o<ino>-<gen>-<seq>` in the root;
//!   otherwise that name is unlinked.
//! * **A directory moves only after its new parent exists**: a parent that does not
//!   exist yet is created early under its orphan name. A move that would put a directory
//!   inside itself waits ("pending move") and is retried whenever a directory moved; the
//!   directory that breaks the cycle is always a later one (the new tree has no cycles).
//! * **A directory is removed only once empty**: a deleted directory is remembered and
//!   removed the moment its last entry has gone.
//! * **Attributes and times last**: per inode after its names and data; directories'
//!   times at the very end, because later inodes add and remove their entries.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use tidefs_fs::records::{parse_key, KIND_SYMLINK};
use tidefs_fs::{FileKind, Inode, ROOT_INO};
use tidefs_store::DiffEntry;
use tidefs_stream::Command;

use crate::clone_src::CloneSources;
use crate::error::{SendError, SendResult};
use crate::paths::{Lino, Loc, ReceiverModel};
use crate::rdev::rdev_to_stream;
use crate::sink::CommandSink;
use crate::snap::SnapView;

/// One changed inode number: its version in the parent snapshot and in the snapshot sent.
pub struct InodeChange {
    pub ino: u64,
    /// The version the receiver has (`None`: absent, or without any name).
    pub old: Option<Inode>,
    /// The version to send (`None`: deleted, or without any name).
    pub new: Option<Inode>,
    /// Names of the new version, as (parent, name), ordered.
    pub new_names: Vec<(u64, Vec<u8>)>,
    /// Records of this number that differ; when `complete`, every record of the new
    /// version (a new inode, or a full send).
    pub records: Vec<DiffEntry>,
    pub complete: bool,
}

impl InodeChange {
    /// Concatenated values of the new version's records of one kind (symlink target).
    pub fn new_bytes_of_kind(&self, kind: u8) -> Vec<u8> {
        let mut out = Vec::new();
        for d in &self.records {
            if let (Ok(k), Some(r)) = (parse_key(&d.key), &d.new) {
                if k.kind == kind {
                    out.extend_from_slice(&r.value);
                }
            }
        }
        out
    }
}

/// Counts of what the engine sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub inodes: u64,
    pub orphanized: u64,
    pub delayed_moves: u64,
}

pub struct Engine<'a> {
    pub(crate) parent: Option<&'a SnapView>,
    pub(crate) snap: &'a SnapView,
    pub(crate) sink: &'a mut dyn CommandSink,
    pub(crate) model: ReceiverModel<'a>,
    pub(crate) clones: &'a CloneSources,
    /// Directories whose times are sent at the end.
    pub(crate) dir_utimes: BTreeSet<Lino>,
    /// Directories waiting for a move that would put them inside themselves now.
    pending_moves: BTreeMap<Lino, Loc>,
    /// Deleted directories that still hold entries.
    pending_rmdir: BTreeSet<Lino>,
    orphan_names: HashMap<Lino, Vec<u8>>,
    is_dir_cache: HashMap<Lino, bool>,
    snap_gens: HashMap<u64, Option<u64>>,
    /// Directory moves so far (pending moves are retried only after one).
    dir_moves: u64,
    dir_moves_at_retry: u64,
    pub stats: EngineStats,
}

impl<'a> Engine<'a> {
    pub fn new(
        parent: Option<&'a SnapView>,
        snap: &'a SnapView,
        sink: &'a mut dyn CommandSink,
        clones: &'a CloneSources,
    ) -> Self {
        Engine {
            parent,
            snap,
            sink,
            model: ReceiverModel::new(parent),
            clones,
            dir_utimes: BTreeSet::new(),
            pending_moves: BTreeMap::new(),
            pending_rmdir: BTreeSet::new(),
            orphan_names: HashMap::new(),
            is_dir_cache: HashMap::new(),
            snap_gens: HashMap::new(),
            dir_moves: 0,
            dir_moves_at_retry: 0,
            stats: EngineStats::default(),
        }
    }

    pub(crate) fn emit(&mut self, c: Command) -> SendResult<()> {
        self.sink.emit(c)
    }

    /// Generation of `ino` in the snapshot sent (`None`: absent or nameless).
    fn snap_gen(&mut self, ino: u64) -> SendResult<Option<u64>> {
        if ino == ROOT_INO {
            return Ok(Some(0));
        }
        if let Some(g) = self.snap_gens.get(&ino) {
            return Ok(*g);
        }
        let g = match self.snap.inode(ino)? {
            Some(i) if i.nlink > 0 => Some(i.generation),
            _ => None,
        };
        self.snap_gens.insert(ino, g);
        Ok(g)
    }

    fn snap_lino(&mut self, ino: u64) -> SendResult<Lino> {
        let g = self.snap_gen(ino)?.ok_or_else(|| {
            SendError::Internal(format!("inode {ino} is named but not in the snapshot"))
        })?;
        Ok(Lino::new(ino, g))
    }

    /// Whether `l` is part of the snapshot sent.
    fn survives(&mut self, l: Lino) -> SendResult<bool> {
        Ok(self.snap_gen(l.ino)?.map(|g| Lino::new(l.ino, g)) == Some(l))
    }

    fn is_dir(&mut self, l: Lino) -> SendResult<bool> {
        if l == Lino::ROOT {
            return Ok(true);
        }
        if let Some(d) = self.is_dir_cache.get(&l) {
            return Ok(*d);
        }
        let item = if self.model.in_parent(l)? {
            self.parent.expect("in parent").inode(l.ino)?
        } else {
            self.snap.inode(l.ino)?
        };
        let d = item
            .ok_or_else(|| SendError::Internal(format!("inode {} vanished", l.ino)))?
            .is_dir();
        self.is_dir_cache.insert(l, d);
        Ok(d)
    }

    /// The orphan name of `l`: `o<ino>-<gen>-<seq>`, unused in the root of both snapshots.
    pub(crate) fn orphan_name(&mut self, l: Lino) -> SendResult<Vec<u8>> {
        if let Some(n) = self.orphan_names.get(&l) {
            return Ok(n.clone());
        }
        let mut seq = 0u64;
        let name = loop {
            let name = format!("o{}-{}-{}", l.ino, l.gen, seq).into_bytes();
            let in_snap = self.snap.lookup(ROOT_INO, &name)?.is_some();
            let in_parent = match self.parent {
                Some(p) => p.lookup(ROOT_INO, &name)?.is_some(),
                None => false,
            };
            if !in_snap && !in_parent {
                break name;
            }
            seq += 1;
        };
        self.orphan_names.insert(l, name.clone());
        Ok(name)
    }

    fn orphan_loc(&mut self, l: Lino) -> SendResult<Loc> {
        Ok(Loc {
            parent: Lino::ROOT,
            name: self.orphan_name(l)?,
        })
    }

    fn touch_dir(&mut self, d: Lino) {
        self.dir_utimes.insert(d);
    }

    /// Sends the changes of one inode number. Numbers must come in ascending order.
    pub fn process(&mut self, ch: &InodeChange) -> SendResult<()> {
        self.stats.inodes += 1;
        let old_l = ch.old.as_ref().map(|i| Lino::new(ch.ino, i.generation));
        let new_l = ch.new.as_ref().map(|i| Lino::new(ch.ino, i.generation));
        let same = old_l.is_some() && old_l == new_l;
        if let (Some(o), false) = (old_l, same) {
            let is_dir = ch.old.as_ref().expect("old").is_dir();
            self.is_dir_cache.insert(o, is_dir);
            self.delete_old(o, is_dir)?;
        }
        if let (Some(n), Some(item)) = (new_l, ch.new.as_ref()) {
            self.is_dir_cache.insert(n, item.is_dir());
            if n != Lino::ROOT {
                let mut targets = Vec::with_capacity(ch.new_names.len());
                for (parent, name) in &ch.new_names {
                    targets.push(Loc {
                        parent: self.snap_lino(*parent)?,
                        name: name.clone(),
                    });
                }
                if item.is_dir() {
                    let t = targets
                        .first()
                        .ok_or_else(|| {
                            SendError::Internal(format!("directory {} has no name", ch.ino))
                        })?
                        .clone();
                    self.place_dir(n, item, t)?;
                } else {
                    self.place_nondir(n, item, ch, &targets)?;
                }
            }
            crate::content::send_content(self, ch, n, same)?;
            if !item.is_dir() {
                self.model.forget(n);
            }
        }
        self.retry_pending_moves()
    }

    /// Ends the stream's name work: remaining moves and removals, then directory times.
    pub fn finish(&mut self) -> SendResult<()> {
        self.dir_moves_at_retry = u64::MAX;
        self.retry_pending_moves()?;
        if let Some((l, _)) = self.pending_moves.iter().next() {
            return Err(SendError::Internal(format!(
                "directory {} could not be moved",
                l.ino
            )));
        }
        if let Some(l) = self.pending_rmdir.iter().next() {
            return Err(SendError::Internal(format!(
                "deleted directory {} never became empty",
                l.ino
            )));
        }
        let dirs: Vec<Lino> = std::mem::take(&mut self.dir_utimes).into_iter().collect();
        for d in dirs {
            if !self.survives(d)? {
                continue;
            }
            let item = self
                .snap
                .inode(d.ino)?
                .ok_or_else(|| SendError::Internal(format!("directory {} vanished", d.ino)))?;
            let path = self.model.path(d)?;
            let c = crate::content::utimes(path, &item, self.sink.version());
            self.emit(c)?;
        }
        Ok(())
    }

    fn delete_old(&mut self, o: Lino, is_dir: bool) -> SendResult<()> {
        if is_dir {
            self.pending_rmdir.insert(o);
            return self.maybe_rmdir(o);
        }
        for loc in self.model.names_of(o)? {
            let path = self.model.path_of(&loc)?;
            self.emit(Command::Unlink { path })?;
            self.model.remove_name(o, &loc, false)?;
            self.touch_dir(loc.parent);
            self.maybe_rmdir(loc.parent)?;
        }
        Ok(())
    }

    /// Removes `d` if it is a deleted directory that has just become empty (and so on up).
    fn maybe_rmdir(&mut self, mut d: Lino) -> SendResult<()> {
        while self.pending_rmdir.contains(&d) && self.model.entry_count(d)? == 0 {
            let loc = self.model.names_of(d)?.into_iter().next().ok_or_else(|| {
                SendError::Internal(format!("deleted directory {} has no name", d.ino))
            })?;
            let path = self.model.path_of(&loc)?;
            self.emit(Command::Rmdir { path })?;
            self.model.remove_name(d, &loc, true)?;
            self.pending_rmdir.remove(&d);
            self.touch_dir(loc.parent);
            d = loc.parent;
        }
        Ok(())
    }

    /// Creates `n` (not yet at the receiver) at `loc`.
    fn create_at(
        &mut self,
        n: Lino,
        item: &Inode,
        ch: Option<&InodeChange>,
        loc: Loc,
    ) -> SendResult<()> {
        let path = self.model.path_of(&loc)?;
        let ino = n.ino;
        let c = match item.kind() {
            FileKind::Regular => Command::Mkfile { path, ino },
            FileKind::Directory => Command::Mkdir { path, ino },
            FileKind::Symlink => {
                let target = match ch {
                    Some(ch) if ch.complete => ch.new_bytes_of_kind(KIND_SYMLINK),
                    _ => self.snap.symlink_target(ino)?,
                };
                Command::Symlink { path, ino, target }
            }
            FileKind::CharDevice | FileKind::BlockDevice => Command::Mknod {
                path,
                ino,
                rdev: rdev_to_stream(item.rdev),
                mode: u64::from(item.mode),
            },
            FileKind::Fifo => Command::Mkfifo {
                path,
                ino,
                rdev: Some(0),
                mode: Some(u64::from(item.mode)),
            },
            FileKind::Socket => Command::Mksock {
                path,
                ino,
                rdev: Some(0),
                mode: Some(u64::from(item.mode)),
            },
        };
        self.emit(c)?;
        self.model.mark_created(n);
        self.touch_dir(loc.parent);
        self.model.add_name(n, loc, item.is_dir())
    }

    /// Makes sure directory `q` (of the snapshot sent) exists at the receiver, creating it
    /// early under its orphan name if its turn has not come yet.
    fn ensure_exists(&mut self, q: Lino) -> SendResult<()> {
        if self.model.exists(q)? {
            return Ok(());
        }
        let item = self.snap.inode(q.ino)?.ok_or_else(|| {
            SendError::Internal(format!("parent directory {} is not in the snapshot", q.ino))
        })?;
        let loc = self.orphan_loc(q)?;
        self.create_at(q, &item, None, loc)
    }

    /// Frees `loc` of its current holder `y`.
    fn step_aside(&mut self, y: Lino, loc: &Loc) -> SendResult<()> {
        let y_dir = self.is_dir(y)?;
        let last_name = self.model.names_of(y)?.len() == 1;
        if y_dir || (last_name && self.survives(y)?) {
            let orphan = self.orphan_loc(y)?;
            let from = self.model.path_of(loc)?;
            let to = self.model.path_of(&orphan)?;
            self.emit(Command::Rename { from, to })?;
            self.model.remove_name(y, loc, y_dir)?;
            self.model.add_name(y, orphan, y_dir)?;
            self.stats.orphanized += 1;
            if y_dir {
                self.dir_moves += 1;
            }
            self.touch_dir(loc.parent);
            self.touch_dir(Lino::ROOT);
        } else {
            let path = self.model.path_of(loc)?;
            self.emit(Command::Unlink { path })?;
            self.model.remove_name(y, loc, false)?;
            self.touch_dir(loc.parent);
            self.maybe_rmdir(loc.parent)?;
        }
        Ok(())
    }

    /// Makes `t` placeable: its directory exists and nobody else holds the name.
    fn prepare_target(&mut self, t: &Loc) -> SendResult<()> {
        self.ensure_exists(t.parent)?;
        if let Some(y) = self.model.occupant(t.parent, &t.name)? {
            self.step_aside(y, t)?;
        }
        Ok(())
    }

    fn place_nondir(
        &mut self,
        n: Lino,
        item: &Inode,
        ch: &InodeChange,
        targets: &[Loc],
    ) -> SendResult<()> {
        let current = self.model.names_of(n)?;
        // Names that go away; orphan names first, as they are the natural rename sources.
        let mut to_remove: Vec<Loc> = current
            .iter()
            .filter(|c| !targets.contains(c))
            .cloned()
            .collect();
        to_remove.sort_by_key(|l| {
            (
                l.parent != Lino::ROOT || self.orphan_names.get(&n).is_none_or(|o| *o != l.name),
                l.clone(),
            )
        });
        let mut to_remove = std::collections::VecDeque::from(to_remove);
        for t in targets.iter().filter(|t| !current.contains(t)) {
            self.prepare_target(t)?;
            if !self.model.exists(n)? {
                self.create_at(n, item, Some(ch), t.clone())?;
                continue;
            }
            if let Some(r) = to_remove.pop_front() {
                let from = self.model.path_of(&r)?;
                let to = self.model.path_of(t)?;
                self.emit(Command::Rename { from, to })?;
                self.model.remove_name(n, &r, false)?;
                self.model.add_name(n, t.clone(), false)?;
                self.touch_dir(r.parent);
                self.touch_dir(t.parent);
                self.maybe_rmdir(r.parent)?;
            } else {
                let existing = self.model.path(n)?;
                let path = self.model.path_of(t)?;
                self.emit(Command::Link { path, existing })?;
                self.model.add_name(n, t.clone(), false)?;
                self.touch_dir(t.parent);
            }
        }
        for r in to_remove {
            let path = self.model.path_of(&r)?;
            self.emit(Command::Unlink { path })?;
            self.model.remove_name(n, &r, false)?;
            self.touch_dir(r.parent);
            self.maybe_rmdir(r.parent)?;
        }
        Ok(())
    }

    fn place_dir(&mut self, n: Lino, item: &Inode, t: Loc) -> SendResult<()> {
        if self.model.names_of(n)?.first() == Some(&t) {
            return Ok(());
        }
        if !self.try_move_dir(n, item, &t)? {
            if !self.model.exists(n)? {
                let loc = self.orphan_loc(n)?;
                self.create_at(n, item, None, loc)?;
            }
            self.stats.delayed_moves += 1;
            self.pending_moves.insert(n, t);
        }
        Ok(())
    }

    /// Moves (or creates) directory `n` to `t` unless that would put it inside itself now.
    fn try_move_dir(&mut self, n: Lino, item: &Inode, t: &Loc) -> SendResult<bool> {
        self.prepare_target(t)?;
        if !self.model.exists(n)? {
            self.create_at(n, item, None, t.clone())?;
            return Ok(true);
        }
        if self.model.is_under(t.parent, n)? {
            return Ok(false);
        }
        let from_loc = self
            .model
            .names_of(n)?
            .into_iter()
            .next()
            .ok_or_else(|| SendError::Internal(format!("directory {} has no name", n.ino)))?;
        let from = self.model.path_of(&from_loc)?;
        let to = self.model.path_of(t)?;
        self.emit(Command::Rename { from, to })?;
        self.model.remove_name(n, &from_loc, true)?;
        self.model.add_name(n, t.clone(), true)?;
        self.dir_moves += 1;
        self.touch_dir(from_loc.parent);
        self.touch_dir(t.parent);
        self.touch_dir(n);
        self.maybe_rmdir(from_loc.parent)?;
        Ok(true)
    }

    fn retry_pending_moves(&mut self) -> SendResult<()> {
        while !self.pending_moves.is_empty() && self.dir_moves != self.dir_moves_at_retry {
            self.dir_moves_at_retry = self.dir_moves;
            let waiting: Vec<(Lino, Loc)> = self
                .pending_moves
                .iter()
                .map(|(l, t)| (*l, t.clone()))
                .collect();
            for (n, t) in waiting {
                let item = self
                    .snap
                    .inode(n.ino)?
                    .ok_or_else(|| SendError::Internal(format!("directory {} vanished", n.ino)))?;
                if self.try_move_dir(n, &item, &t)? {
                    self.pending_moves.remove(&n);
                }
            }
        }
        Ok(())
    }
}
