//! FUSE inode numbers of one mount, and what each one stands for.
//!
//! The kernel names inodes by one 64-bit number per mount, but a mount of a subvolume shows
//! two kinds of trees: the mounted tree itself and, under `.snap`, its snapshots, whose
//! inodes carry the same tidefs numbers as the live ones. The space is split by the top bit:
//!
//! ```text
//! bit 63   bits 62..40        bits 39..0
//!   0      tidefs inode number (the mounted tree; its root 256 is FUSE's root 1)
//!   1      snapshot id (23 bits)  tidefs inode number inside that snapshot (40 bits)
//!   1      0                      0: the `.snap` directory itself
//! ```
//!
//! Every number is a pure function of (snapshot id, tidefs inode), both of which are stable
//! on disk, so FUSE inode numbers stay the same across remounts. Snapshot ids are tree ids,
//! which a pool never reuses, so a deleted-and-recreated snapshot gets new numbers.

use tidefs_fs::{SubvolId, ROOT_INO};

/// FUSE's number for the root of the mount.
pub const FUSE_ROOT_INO: u64 = 1;
const SNAP_BIT: u64 = 1 << 63;
const SNAP_INO_BITS: u32 = 40;
/// Largest tidefs inode number a snapshot inode may have to get a FUSE number.
pub const SNAP_INO_MAX: u64 = (1 << SNAP_INO_BITS) - 1;
/// Largest snapshot id that fits beside it.
pub const SNAP_ID_MAX: u64 = (1 << (63 - SNAP_INO_BITS)) - 1;
/// The `.snap` directory at the root of a mounted subvolume.
pub const SNAP_DIR_INO: u64 = SNAP_BIT;

/// What a FUSE inode number refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Node {
    /// An inode of the mounted tree (subvolume or snapshot).
    Mounted(u64),
    /// The virtual `.snap` directory.
    SnapDir,
    /// An inode of a snapshot seen through `.snap`.
    InSnapshot { snap: SubvolId, ino: u64 },
}

impl Node {
    /// The FUSE number of this node; `None` when it does not fit the layout above (the
    /// caller answers EOVERFLOW rather than hand out a number that could clash).
    pub fn to_fuse(self) -> Option<u64> {
        match self {
            Node::Mounted(ROOT_INO) => Some(FUSE_ROOT_INO),
            // A tidefs inode number is never 1 (numbers start at ROOT_INO = 256), so the root's
            // FUSE number cannot clash with a real inode.
            Node::Mounted(ino) if ino & SNAP_BIT == 0 && ino != FUSE_ROOT_INO => Some(ino),
            Node::Mounted(_) => None,
            Node::SnapDir => Some(SNAP_DIR_INO),
            Node::InSnapshot { snap, ino } => {
                if snap.0 == 0 || snap.0 > SNAP_ID_MAX || ino == 0 || ino > SNAP_INO_MAX {
                    return None;
                }
                Some(SNAP_BIT | snap.0 << SNAP_INO_BITS | ino)
            }
        }
    }

    /// The node a FUSE number stands for; `None` for numbers this mount never hands out.
    pub fn from_fuse(fuse: u64) -> Option<Node> {
        if fuse == FUSE_ROOT_INO {
            return Some(Node::Mounted(ROOT_INO));
        }
        if fuse == SNAP_DIR_INO {
            return Some(Node::SnapDir);
        }
        if fuse & SNAP_BIT == 0 {
            return (fuse != ROOT_INO && fuse != 0).then_some(Node::Mounted(fuse));
        }
        let snap = (fuse & !SNAP_BIT) >> SNAP_INO_BITS;
        let ino = fuse & SNAP_INO_MAX;
        (snap != 0 && ino != 0).then_some(Node::InSnapshot {
            snap: SubvolId(snap),
            ino,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip_and_never_clash() {
        let nodes = [
            Node::Mounted(ROOT_INO),
            Node::Mounted(257),
            Node::Mounted(SNAP_BIT - 1),
            Node::SnapDir,
            Node::InSnapshot {
                snap: SubvolId(2),
                ino: ROOT_INO,
            },
            Node::InSnapshot {
                snap: SubvolId(2),
                ino: 257,
            },
            Node::InSnapshot {
                snap: SubvolId(3),
                ino: 257,
            },
            Node::InSnapshot {
                snap: SubvolId(SNAP_ID_MAX),
                ino: SNAP_INO_MAX,
            },
        ];
        let mut seen = std::collections::HashSet::new();
        for n in nodes {
            let f = n.to_fuse().unwrap();
            assert!(seen.insert(f), "{n:?} clashes");
            assert_eq!(Node::from_fuse(f), Some(n));
        }
        assert_eq!(Node::Mounted(ROOT_INO).to_fuse(), Some(1));
        // Pinned: snapshot 2's root.
        assert_eq!(
            Node::InSnapshot {
                snap: SubvolId(2),
                ino: ROOT_INO
            }
            .to_fuse(),
            Some(0x8000_0200_0000_0100)
        );
    }

    #[test]
    fn numbers_outside_the_layout_are_refused() {
        assert_eq!(Node::Mounted(SNAP_BIT | 5).to_fuse(), None);
        assert_eq!(Node::Mounted(1).to_fuse(), None);
        assert_eq!(
            Node::InSnapshot {
                snap: SubvolId(SNAP_ID_MAX + 1),
                ino: 300
            }
            .to_fuse(),
            None
        );
        assert_eq!(
            Node::InSnapshot {
                snap: SubvolId(2),
                ino: SNAP_INO_MAX + 1
            }
            .to_fuse(),
            None
        );
        assert_eq!(Node::from_fuse(0), None);
        assert_eq!(Node::from_fuse(ROOT_INO), None);
        assert_eq!(Node::from_fuse(SNAP_BIT | 7), None);
    }
}
