//! Typed send stream commands: the public surface the rest of tidefs builds and consumes.
//!
//! One `Command` variant per btrfs send command of stream versions 1 and 2, with named
//! fields. Paths are raw bytes (a Linux file name is any byte string without `/` and NUL),
//! always relative to the root of the subvolume being received; the empty path is that root.

use std::fmt;

use crate::attribute::{Timespec, Uuid};
use crate::header::StreamVersion;

macro_rules! command_types {
    ($($variant:ident = $id:literal, $name:literal, $version:ident;)*) => {
        /// Command ids (`BTRFS_SEND_C_*`) this crate understands.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u16)]
        pub enum CommandType {
            $($variant = $id,)*
        }

        impl CommandType {
            /// Every supported command, ascending by id.
            pub const ALL: &'static [CommandType] = &[$(CommandType::$variant,)*];

            /// Maps a wire id to a command; `None` for UNSPEC (0), ENABLE_VERITY (26, version 3
            /// only) and anything unknown.
            pub fn from_id(id: u16) -> Option<Self> {
                match id {
                    $($id => Some(CommandType::$variant),)*
                    _ => None,
                }
            }

            /// The name `btrfs receive --dump` prints (lowercase, no prefix).
            pub fn name(self) -> &'static str {
                match self {
                    $(CommandType::$variant => $name,)*
                }
            }

            /// The first stream version that may carry this command (the kernel's
            /// `proto_cmd_ok()`).
            pub fn version_min(self) -> StreamVersion {
                match self {
                    $(CommandType::$variant => StreamVersion::$version,)*
                }
            }
        }
    };
}

command_types! {
    Subvol = 1, "subvol", V1;
    Snapshot = 2, "snapshot", V1;
    Mkfile = 3, "mkfile", V1;
    Mkdir = 4, "mkdir", V1;
    Mknod = 5, "mknod", V1;
    Mkfifo = 6, "mkfifo", V1;
    Mksock = 7, "mksock", V1;
    Symlink = 8, "symlink", V1;
    Rename = 9, "rename", V1;
    Link = 10, "link", V1;
    Unlink = 11, "unlink", V1;
    Rmdir = 12, "rmdir", V1;
    SetXattr = 13, "set_xattr", V1;
    RemoveXattr = 14, "remove_xattr", V1;
    Write = 15, "write", V1;
    Clone = 16, "clone", V1;
    Truncate = 17, "truncate", V1;
    Chmod = 18, "chmod", V1;
    Chown = 19, "chown", V1;
    Utimes = 20, "utimes", V1;
    End = 21, "end", V1;
    UpdateExtent = 22, "update_extent", V1;
    Fallocate = 23, "fallocate", V2;
    Fileattr = 24, "fileattr", V2;
    EncodedWrite = 25, "encoded_write", V2;
}

impl CommandType {
    /// The wire id.
    pub fn id(self) -> u16 {
        self as u16
    }

    /// Whether a stream of `version` may carry this command.
    pub fn allowed_in(self, version: StreamVersion) -> bool {
        version >= self.version_min()
    }
}

impl fmt::Display for CommandType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.id())
    }
}

/// One send stream command.
///
/// Field names follow what the value means at the receiver; the doc of each field names the
/// wire attribute it travels in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Command {
    /// Start of a full stream: create an empty subvolume.
    Subvol {
        /// PATH: name of the new subvolume in the receive directory.
        path: Vec<u8>,
        /// UUID: the sent subvolume's received_uuid, or its uuid if never received.
        uuid: Uuid,
        /// CTRANSID: the sent subvolume's ctransid.
        ctransid: u64,
    },
    /// Start of an incremental stream: snapshot the parent, then apply the rest.
    Snapshot {
        /// PATH: name of the new subvolume in the receive directory.
        path: Vec<u8>,
        /// UUID.
        uuid: Uuid,
        /// CTRANSID.
        ctransid: u64,
        /// CLONE_UUID: the parent subvolume to snapshot.
        clone_uuid: Uuid,
        /// CLONE_CTRANSID: the parent's ctransid.
        clone_ctransid: u64,
    },
    /// Create a regular file.
    Mkfile {
        /// PATH.
        path: Vec<u8>,
        /// INO: inode number in the sent snapshot (informational).
        ino: u64,
    },
    /// Create a directory.
    Mkdir {
        /// PATH.
        path: Vec<u8>,
        /// INO.
        ino: u64,
    },
    /// Create a device node.
    Mknod {
        /// PATH.
        path: Vec<u8>,
        /// INO.
        ino: u64,
        /// RDEV: `new_encode_dev()` form of the device number.
        rdev: u64,
        /// MODE: full st_mode including the file type bits.
        mode: u64,
    },
    /// Create a fifo. The kernel sends RDEV and MODE too; other senders may omit them.
    Mkfifo {
        /// PATH.
        path: Vec<u8>,
        /// INO.
        ino: u64,
        /// RDEV, when present (0 from the kernel).
        rdev: Option<u64>,
        /// MODE, when present.
        mode: Option<u64>,
    },
    /// Create a unix socket. The kernel sends RDEV and MODE too; other senders may omit them.
    Mksock {
        /// PATH.
        path: Vec<u8>,
        /// INO.
        ino: u64,
        /// RDEV, when present (0 from the kernel).
        rdev: Option<u64>,
        /// MODE, when present.
        mode: Option<u64>,
    },
    /// Create a symbolic link.
    Symlink {
        /// PATH: where the link is created.
        path: Vec<u8>,
        /// INO.
        ino: u64,
        /// PATH_LINK: the literal link target, never resolved (may be absolute or use `..`).
        target: Vec<u8>,
    },
    /// Rename, replacing the destination as rename(2) does.
    Rename {
        /// PATH.
        from: Vec<u8>,
        /// PATH_TO.
        to: Vec<u8>,
    },
    /// Create a hard link.
    Link {
        /// PATH: the new name to create.
        path: Vec<u8>,
        /// PATH_LINK: an existing name of the inode.
        existing: Vec<u8>,
    },
    /// Remove a non-directory name.
    Unlink {
        /// PATH.
        path: Vec<u8>,
    },
    /// Remove an empty directory.
    Rmdir {
        /// PATH.
        path: Vec<u8>,
    },
    /// Set an extended attribute.
    SetXattr {
        /// PATH.
        path: Vec<u8>,
        /// XATTR_NAME, e.g. `user.key`.
        name: Vec<u8>,
        /// XATTR_DATA.
        data: Vec<u8>,
    },
    /// Remove an extended attribute.
    RemoveXattr {
        /// PATH.
        path: Vec<u8>,
        /// XATTR_NAME.
        name: Vec<u8>,
    },
    /// Write file data.
    Write {
        /// PATH.
        path: Vec<u8>,
        /// FILE_OFFSET.
        offset: u64,
        /// DATA.
        data: Vec<u8>,
    },
    /// Share a range of another file (reflink).
    Clone {
        /// PATH: the destination file.
        path: Vec<u8>,
        /// FILE_OFFSET: destination offset.
        offset: u64,
        /// CLONE_LEN: bytes to clone.
        len: u64,
        /// CLONE_UUID: subvolume holding the source.
        clone_uuid: Uuid,
        /// CLONE_CTRANSID.
        clone_ctransid: u64,
        /// CLONE_PATH: source file, relative to the source subvolume.
        clone_path: Vec<u8>,
        /// CLONE_OFFSET: source offset.
        clone_offset: u64,
    },
    /// Set the file size.
    Truncate {
        /// PATH.
        path: Vec<u8>,
        /// SIZE.
        size: u64,
    },
    /// Set permission bits.
    Chmod {
        /// PATH.
        path: Vec<u8>,
        /// MODE: `mode & 07777`.
        mode: u64,
    },
    /// Set numeric owner and group.
    Chown {
        /// PATH.
        path: Vec<u8>,
        /// UID.
        uid: u64,
        /// GID.
        gid: u64,
    },
    /// Set inode times (receivers can set only atime and mtime).
    Utimes {
        /// PATH.
        path: Vec<u8>,
        /// ATIME.
        atime: Timespec,
        /// MTIME.
        mtime: Timespec,
        /// CTIME.
        ctime: Timespec,
        /// OTIME (creation time), sent by the kernel only in version 2 and later.
        otime: Option<Timespec>,
    },
    /// End of one stream.
    End,
    /// A range changed but its data is not sent (`send --no-data`).
    UpdateExtent {
        /// PATH.
        path: Vec<u8>,
        /// FILE_OFFSET.
        offset: u64,
        /// SIZE: length of the range.
        len: u64,
    },
    /// Version 2: fallocate(2) a range (the kernel sends only punch-hole | keep-size = 3).
    Fallocate {
        /// PATH.
        path: Vec<u8>,
        /// FALLOCATE_MODE: Linux `FALLOC_FL_*` bits.
        mode: u32,
        /// FILE_OFFSET.
        offset: u64,
        /// SIZE: length of the range.
        len: u64,
    },
    /// Version 2: raw btrfs inode flags (`BTRFS_INODE_*`).
    Fileattr {
        /// PATH.
        path: Vec<u8>,
        /// FILEATTR.
        fileattr: u64,
    },
    /// Version 2: write an extent in its encoded (compressed) form.
    EncodedWrite {
        /// PATH.
        path: Vec<u8>,
        /// FILE_OFFSET: where the unencoded range lands in the file.
        offset: u64,
        /// UNENCODED_FILE_LEN: length of the range that lands in the file.
        unencoded_file_len: u64,
        /// UNENCODED_LEN: full length of the decoded extent.
        unencoded_len: u64,
        /// UNENCODED_OFFSET: where in the decoded extent the file range starts.
        unencoded_offset: u64,
        /// COMPRESSION (`BTRFS_ENCODED_IO_COMPRESSION_*`); absent means none (0).
        compression: Option<u32>,
        /// ENCRYPTION; absent means none (0). The kernel omits it for inline extents.
        encryption: Option<u32>,
        /// DATA: the encoded bytes.
        data: Vec<u8>,
    },
}

impl Command {
    /// The command id this variant travels as.
    pub fn command_type(&self) -> CommandType {
        match self {
            Command::Subvol { .. } => CommandType::Subvol,
            Command::Snapshot { .. } => CommandType::Snapshot,
            Command::Mkfile { .. } => CommandType::Mkfile,
            Command::Mkdir { .. } => CommandType::Mkdir,
            Command::Mknod { .. } => CommandType::Mknod,
            Command::Mkfifo { .. } => CommandType::Mkfifo,
            Command::Mksock { .. } => CommandType::Mksock,
            Command::Symlink { .. } => CommandType::Symlink,
            Command::Rename { .. } => CommandType::Rename,
            Command::Link { .. } => CommandType::Link,
            Command::Unlink { .. } => CommandType::Unlink,
            Command::Rmdir { .. } => CommandType::Rmdir,
            Command::SetXattr { .. } => CommandType::SetXattr,
            Command::RemoveXattr { .. } => CommandType::RemoveXattr,
            Command::Write { .. } => CommandType::Write,
            Command::Clone { .. } => CommandType::Clone,
            Command::Truncate { .. } => CommandType::Truncate,
            Command::Chmod { .. } => CommandType::Chmod,
            Command::Chown { .. } => CommandType::Chown,
            Command::Utimes { .. } => CommandType::Utimes,
            Command::End => CommandType::End,
            Command::UpdateExtent { .. } => CommandType::UpdateExtent,
            Command::Fallocate { .. } => CommandType::Fallocate,
            Command::Fileattr { .. } => CommandType::Fileattr,
            Command::EncodedWrite { .. } => CommandType::EncodedWrite,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_match_the_kernel_table() {
        for (index, command) in CommandType::ALL.iter().enumerate() {
            assert_eq!(usize::from(command.id()), index + 1);
            assert_eq!(CommandType::from_id(command.id()), Some(*command));
        }
        assert_eq!(CommandType::from_id(0), None, "UNSPEC is not a command");
        assert_eq!(CommandType::from_id(26), None, "ENABLE_VERITY is version 3");
        assert_eq!(CommandType::End.id(), 21);
        assert_eq!(CommandType::EncodedWrite.id(), 25);
    }

    #[test]
    fn version_two_commands_are_not_allowed_in_version_one() {
        for command in CommandType::ALL {
            let v2_only = command.id() >= 23;
            assert_eq!(command.allowed_in(StreamVersion::V1), !v2_only, "{command}");
            assert!(command.allowed_in(StreamVersion::V2), "{command}");
        }
    }
}
