//! The sender's model of the receiver's namespace while a stream is being generated.
//!
//! The receiver starts as a copy of the parent snapshot (or an empty root for a full
//! send). Every name operation the engine emits is mirrored here, so the path of any
//! inode *as it is at the receiver at this moment* can be built: names that were never
//! touched are read from the parent snapshot, touched ones from the overlay. Inodes are
//! identified by [`Lino`] (number and generation), because a number reused with a new
//! generation is a different inode that may coexist with the old one for a while.

use std::collections::{HashMap, HashSet};

use tidefs_fs::ROOT_INO;

use crate::error::{SendError, SendResult};
use crate::snap::SnapView;

/// One inode version: number and generation. The root is always `(256, 0)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Lino {
    pub ino: u64,
    pub gen: u64,
}

impl Lino {
    pub const ROOT: Lino = Lino {
        ino: ROOT_INO,
        gen: 0,
    };

    pub fn new(ino: u64, gen: u64) -> Lino {
        if ino == ROOT_INO {
            Lino::ROOT
        } else {
            Lino { ino, gen }
        }
    }
}

/// One name: an entry `name` in directory `parent`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Loc {
    pub parent: Lino,
    pub name: Vec<u8>,
}

/// Path depth beyond which a parent walk is taken as a loop (a bug or a corrupt tree).
const PATH_DEPTH_MAX: usize = 4096;

/// The receiver's namespace as the stream has shaped it so far.
pub struct ReceiverModel<'a> {
    parent_snap: Option<&'a SnapView>,
    /// Current names of inode versions whose names differ from the parent snapshot's.
    names: HashMap<Lino, Vec<Loc>>,
    /// Entries added (`Some`) or removed (`None`) relative to the parent snapshot.
    dirents: HashMap<(Lino, Vec<u8>), Option<Lino>>,
    /// Change of each directory's entry count relative to the parent snapshot.
    count_delta: HashMap<Lino, i64>,
    /// Inode versions created by the stream so far.
    created: HashSet<Lino>,
    /// Generations in the parent snapshot, by number (cache).
    parent_gens: HashMap<u64, Option<u64>>,
    /// Paths of directories (cache, dropped whenever a directory moves).
    dir_paths: HashMap<Lino, Vec<u8>>,
    /// Whether name clashes can happen at all (false for a full send into an empty root).
    track_dirents: bool,
}

impl<'a> ReceiverModel<'a> {
    pub fn new(parent_snap: Option<&'a SnapView>) -> Self {
        ReceiverModel {
            parent_snap,
            names: HashMap::new(),
            dirents: HashMap::new(),
            count_delta: HashMap::new(),
            created: HashSet::new(),
            parent_gens: HashMap::new(),
            dir_paths: HashMap::new(),
            track_dirents: parent_snap.is_some(),
        }
    }

    /// The generation of `ino` in the parent snapshot (`None`: not there).
    pub fn parent_gen(&mut self, ino: u64) -> SendResult<Option<u64>> {
        if ino == ROOT_INO {
            return Ok(Some(0));
        }
        let Some(p) = self.parent_snap else {
            return Ok(None);
        };
        if let Some(g) = self.parent_gens.get(&ino) {
            return Ok(*g);
        }
        let g = match p.inode(ino)? {
            Some(item) if item.nlink > 0 => Some(item.generation),
            _ => None,
        };
        self.parent_gens.insert(ino, g);
        Ok(g)
    }

    /// Whether `l` is in the parent snapshot (so the receiver had it from the start).
    pub fn in_parent(&mut self, l: Lino) -> SendResult<bool> {
        Ok(self.parent_gen(l.ino)? == Some(l.gen))
    }

    /// Whether `l` exists at the receiver: it came with the parent or was created. (An
    /// inode of the parent that the stream deleted is not asked about.)
    pub fn exists(&mut self, l: Lino) -> SendResult<bool> {
        Ok(self.created.contains(&l) || self.in_parent(l)?)
    }

    pub fn mark_created(&mut self, l: Lino) {
        self.created.insert(l);
    }

    pub fn is_created(&self, l: Lino) -> bool {
        self.created.contains(&l)
    }

    /// The current names of `l`.
    pub fn names_of(&mut self, l: Lino) -> SendResult<Vec<Loc>> {
        if l == Lino::ROOT {
            return Ok(Vec::new());
        }
        if let Some(n) = self.names.get(&l) {
            return Ok(n.clone());
        }
        if !self.in_parent(l)? {
            return Ok(Vec::new());
        }
        let p = self
            .parent_snap
            .expect("in_parent implies a parent snapshot");
        let mut out = Vec::new();
        for (parent, name) in p.backrefs(l.ino)? {
            let g = self.parent_gen(parent)?.ok_or_else(|| {
                SendError::Internal(format!(
                    "inode {} names a parent {parent} the parent snapshot lacks",
                    l.ino
                ))
            })?;
            out.push(Loc {
                parent: Lino::new(parent, g),
                name,
            });
        }
        Ok(out)
    }

    fn names_mut(&mut self, l: Lino) -> SendResult<&mut Vec<Loc>> {
        if !self.names.contains_key(&l) {
            let n = self.names_of(l)?;
            self.names.insert(l, n);
        }
        Ok(self.names.get_mut(&l).expect("inserted"))
    }

    /// Who holds `name` in `dir` at the receiver now.
    pub fn occupant(&mut self, dir: Lino, name: &[u8]) -> SendResult<Option<Lino>> {
        if !self.track_dirents {
            return Ok(None);
        }
        if let Some(o) = self.dirents.get(&(dir, name.to_vec())) {
            return Ok(*o);
        }
        if !self.in_parent(dir)? {
            return Ok(None);
        }
        let p = self
            .parent_snap
            .expect("in_parent implies a parent snapshot");
        match p.lookup(dir.ino, name)? {
            None => Ok(None),
            Some(ino) => {
                let g = self.parent_gen(ino)?.ok_or_else(|| {
                    SendError::Internal(format!("entry for inode {ino} without inode"))
                })?;
                Ok(Some(Lino::new(ino, g)))
            }
        }
    }

    /// Entries of directory `dir` at the receiver now.
    pub fn entry_count(&mut self, dir: Lino) -> SendResult<i64> {
        let base = if self.in_parent(dir)? {
            self.parent_snap.expect("parent").entry_count(dir.ino)? as i64
        } else {
            0
        };
        Ok(base + self.count_delta.get(&dir).copied().unwrap_or(0))
    }

    /// Records that `l` gained the name `loc`.
    pub fn add_name(&mut self, l: Lino, loc: Loc, is_dir: bool) -> SendResult<()> {
        if is_dir {
            self.dir_paths.clear();
        }
        *self.count_delta.entry(loc.parent).or_default() += 1;
        if self.track_dirents {
            self.dirents.insert((loc.parent, loc.name.clone()), Some(l));
        }
        self.names_mut(l)?.push(loc);
        Ok(())
    }

    /// Records that `l` lost the name `loc`.
    pub fn remove_name(&mut self, l: Lino, loc: &Loc, is_dir: bool) -> SendResult<()> {
        if is_dir {
            self.dir_paths.clear();
        }
        *self.count_delta.entry(loc.parent).or_default() -= 1;
        if self.track_dirents {
            self.dirents.insert((loc.parent, loc.name.clone()), None);
        }
        let names = self.names_mut(l)?;
        let before = names.len();
        names.retain(|n| n != loc);
        if names.len() + 1 != before {
            return Err(SendError::Internal(format!(
                "inode {} did not hold the name it loses",
                l.ino
            )));
        }
        Ok(())
    }

    /// Forgets the names of a finished non-directory (full sends only: nothing will ask
    /// for them again), keeping memory proportional to the directories.
    pub fn forget(&mut self, l: Lino) {
        if !self.track_dirents {
            self.names.remove(&l);
        }
    }

    /// The path of `l` at the receiver now ("" for the root), through its first name.
    pub fn path(&mut self, l: Lino) -> SendResult<Vec<u8>> {
        if l == Lino::ROOT {
            return Ok(Vec::new());
        }
        let names = self.names_of(l)?;
        let first = names
            .first()
            .ok_or_else(|| {
                SendError::Internal(format!("inode {} has no name at the receiver", l.ino))
            })?
            .clone();
        self.path_of(&first)
    }

    /// The path of the name `loc`.
    pub fn path_of(&mut self, loc: &Loc) -> SendResult<Vec<u8>> {
        let mut p = self.dir_path(loc.parent)?;
        if !p.is_empty() {
            p.push(b'/');
        }
        p.extend_from_slice(&loc.name);
        Ok(p)
    }

    fn dir_path(&mut self, dir: Lino) -> SendResult<Vec<u8>> {
        if dir == Lino::ROOT {
            return Ok(Vec::new());
        }
        if let Some(p) = self.dir_paths.get(&dir) {
            return Ok(p.clone());
        }
        let mut parts: Vec<Vec<u8>> = Vec::new();
        let mut at = dir;
        while at != Lino::ROOT {
            if parts.len() > PATH_DEPTH_MAX {
                return Err(SendError::Internal(format!(
                    "directory {} is inside itself",
                    dir.ino
                )));
            }
            let first = self.names_of(at)?.into_iter().next().ok_or_else(|| {
                SendError::Internal(format!("directory {} has no name at the receiver", at.ino))
            })?;
            parts.push(first.name);
            at = first.parent;
        }
        let mut p = Vec::new();
        for part in parts.iter().rev() {
            if !p.is_empty() {
                p.push(b'/');
            }
            p.extend_from_slice(part);
        }
        self.dir_paths.insert(dir, p.clone());
        Ok(p)
    }

    /// Whether `dir` is `ancestor` or lies below it at the receiver now.
    pub fn is_under(&mut self, dir: Lino, ancestor: Lino) -> SendResult<bool> {
        let mut at = dir;
        for _ in 0..=PATH_DEPTH_MAX {
            if at == ancestor {
                return Ok(true);
            }
            if at == Lino::ROOT {
                return Ok(false);
            }
            match self.names_of(at)?.into_iter().next() {
                Some(first) => at = first.parent,
                None => return Ok(false),
            }
        }
        Err(SendError::Internal(format!(
            "directory {} is inside itself",
            dir.ino
        )))
    }
}
