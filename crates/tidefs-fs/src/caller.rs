//! Who performs an operation. Permission checks are the kernel's job (FUSE mounts with
//! `default_permissions`); the file system still needs the caller for ownership of new
//! inodes and for the rules the kernel leaves to file systems (setgid inheritance,
//! clearing setuid/setgid, the sticky bit for library callers).

/// The credentials of the process making a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
}

impl Caller {
    pub const ROOT: Caller = Caller { uid: 0, gid: 0 };

    pub fn new(uid: u32, gid: u32) -> Caller {
        Caller { uid, gid }
    }

    /// Root bypasses ownership rules (`CAP_FOWNER`, `CAP_FSETID`).
    pub fn is_root(&self) -> bool {
        self.uid == 0
    }
}
