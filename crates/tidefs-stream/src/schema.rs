//! Which attributes each command carries, in the order the kernel emits them.
//!
//! The writer emits exactly this order (so our streams are byte-for-byte what the kernel
//! would send for the same command). The reader accepts any order, as btrfs-progs does,
//! but refuses attributes a command does not carry: a receiver that silently ignored them
//! could misread a stream from a sender that relies on them.

use crate::attribute::AttributeType;
use crate::command::CommandType;

/// Whether a command must carry an attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// btrfs-progs fails the command without it ("attribute %d requested but not present").
    Required,
    /// Decoded as `None` when absent.
    Optional,
}

/// Extra checks on a string attribute's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueCheck {
    /// No check beyond size.
    None,
    /// A path inside the subvolume: relative, no `..`, no NUL.
    SubvolumePath,
    /// A C string that is not a subvolume path (symlink target, xattr name): no NUL.
    NoNul,
}

/// One attribute of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttributeSpec {
    pub attribute: AttributeType,
    pub presence: Presence,
    pub check: ValueCheck,
}

const fn req(attribute: AttributeType) -> AttributeSpec {
    AttributeSpec {
        attribute,
        presence: Presence::Required,
        check: ValueCheck::None,
    }
}

const fn opt(attribute: AttributeType) -> AttributeSpec {
    AttributeSpec {
        attribute,
        presence: Presence::Optional,
        check: ValueCheck::None,
    }
}

const fn path(attribute: AttributeType) -> AttributeSpec {
    AttributeSpec {
        attribute,
        presence: Presence::Required,
        check: ValueCheck::SubvolumePath,
    }
}

const fn no_nul(attribute: AttributeType) -> AttributeSpec {
    AttributeSpec {
        attribute,
        presence: Presence::Required,
        check: ValueCheck::NoNul,
    }
}

use AttributeType as A;

const SUBVOL: &[AttributeSpec] = &[path(A::Path), req(A::Uuid), req(A::Ctransid)];
const SNAPSHOT: &[AttributeSpec] = &[
    path(A::Path),
    req(A::Uuid),
    req(A::Ctransid),
    req(A::CloneUuid),
    req(A::CloneCtransid),
];
const MKFILE_MKDIR: &[AttributeSpec] = &[path(A::Path), req(A::Ino)];
const MKNOD: &[AttributeSpec] = &[path(A::Path), req(A::Ino), req(A::Rdev), req(A::Mode)];
const MKFIFO_MKSOCK: &[AttributeSpec] = &[path(A::Path), req(A::Ino), opt(A::Rdev), opt(A::Mode)];
const SYMLINK: &[AttributeSpec] = &[path(A::Path), req(A::Ino), no_nul(A::PathLink)];
const RENAME: &[AttributeSpec] = &[path(A::Path), path(A::PathTo)];
const LINK: &[AttributeSpec] = &[path(A::Path), path(A::PathLink)];
const PATH_ONLY: &[AttributeSpec] = &[path(A::Path)];
const SET_XATTR: &[AttributeSpec] = &[path(A::Path), no_nul(A::XattrName), req(A::XattrData)];
const REMOVE_XATTR: &[AttributeSpec] = &[path(A::Path), no_nul(A::XattrName)];
const WRITE: &[AttributeSpec] = &[path(A::Path), req(A::FileOffset), req(A::Data)];
// The kernel emits offset and length before PATH for CLONE (verified on real streams).
const CLONE: &[AttributeSpec] = &[
    req(A::FileOffset),
    req(A::CloneLen),
    path(A::Path),
    req(A::CloneUuid),
    req(A::CloneCtransid),
    path(A::ClonePath),
    req(A::CloneOffset),
];
const TRUNCATE: &[AttributeSpec] = &[path(A::Path), req(A::Size)];
const CHMOD: &[AttributeSpec] = &[path(A::Path), req(A::Mode)];
const CHOWN: &[AttributeSpec] = &[path(A::Path), req(A::Uid), req(A::Gid)];
const UTIMES: &[AttributeSpec] = &[
    path(A::Path),
    req(A::Atime),
    req(A::Mtime),
    req(A::Ctime),
    opt(A::Otime),
];
const END: &[AttributeSpec] = &[];
const UPDATE_EXTENT: &[AttributeSpec] = &[path(A::Path), req(A::FileOffset), req(A::Size)];
const FALLOCATE: &[AttributeSpec] = &[
    path(A::Path),
    req(A::FallocateMode),
    req(A::FileOffset),
    req(A::Size),
];
const FILEATTR: &[AttributeSpec] = &[path(A::Path), req(A::Fileattr)];
const ENCODED_WRITE: &[AttributeSpec] = &[
    path(A::Path),
    req(A::FileOffset),
    req(A::UnencodedFileLen),
    req(A::UnencodedLen),
    req(A::UnencodedOffset),
    opt(A::Compression),
    opt(A::Encryption),
    req(A::Data),
];

/// The attributes of `command` in kernel emission order.
pub fn command_attributes(command: CommandType) -> &'static [AttributeSpec] {
    match command {
        CommandType::Subvol => SUBVOL,
        CommandType::Snapshot => SNAPSHOT,
        CommandType::Mkfile | CommandType::Mkdir => MKFILE_MKDIR,
        CommandType::Mknod => MKNOD,
        CommandType::Mkfifo | CommandType::Mksock => MKFIFO_MKSOCK,
        CommandType::Symlink => SYMLINK,
        CommandType::Rename => RENAME,
        CommandType::Link => LINK,
        CommandType::Unlink | CommandType::Rmdir => PATH_ONLY,
        CommandType::SetXattr => SET_XATTR,
        CommandType::RemoveXattr => REMOVE_XATTR,
        CommandType::Write => WRITE,
        CommandType::Clone => CLONE,
        CommandType::Truncate => TRUNCATE,
        CommandType::Chmod => CHMOD,
        CommandType::Chown => CHOWN,
        CommandType::Utimes => UTIMES,
        CommandType::End => END,
        CommandType::UpdateExtent => UPDATE_EXTENT,
        CommandType::Fallocate => FALLOCATE,
        CommandType::Fileattr => FILEATTR,
        CommandType::EncodedWrite => ENCODED_WRITE,
    }
}

/// The spec of `attribute` within `command`, if the command carries it.
pub fn attribute_spec(command: CommandType, attribute: AttributeType) -> Option<AttributeSpec> {
    command_attributes(command)
        .iter()
        .copied()
        .find(|spec| spec.attribute == attribute)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_is_always_last_where_present() {
        // Version 2 DATA has no length and runs to the end of the command.
        for command in CommandType::ALL {
            let specs = command_attributes(*command);
            if let Some(position) = specs.iter().position(|s| s.attribute == A::Data) {
                assert_eq!(position, specs.len() - 1, "{command}");
            }
        }
    }

    #[test]
    fn no_command_lists_an_attribute_twice() {
        for command in CommandType::ALL {
            let specs = command_attributes(*command);
            for (i, spec) in specs.iter().enumerate() {
                assert!(
                    specs[i + 1..].iter().all(|s| s.attribute != spec.attribute),
                    "{command} lists {} twice",
                    spec.attribute
                );
            }
        }
    }
}
