//! Command → bytes, in the kernel's attribute order (see `schema`).
//!
//! A command on the wire (layouts in `header` and `attribute`):
//!
//! ```text
//! | len u32 | cmd u16 | crc u32 | TLV | TLV | ... | [v2: 19 u16 | data to the end] |
//! ```
//!
//! The version 2 DATA value is not copied: the encoder returns it as a separate tail so a
//! writer can send a large WRITE without moving its data twice. The CRC covers the tail too,
//! computed in two pieces as the kernel does for ENCODED_WRITE.

use crate::attribute::{AttributeType, Timespec, Uuid};
use crate::command::{Command, CommandType};
use crate::crc::{crc32c_raw, crc32c_raw_append};
use crate::error::WriteError;
use crate::header::{
    CommandHeader, StreamVersion, COMMAND_HEADER_BYTES, COMMAND_HEADER_CRC_OFFSET,
};
use crate::path::{check_no_nul, check_subvolume_path};
use crate::schema::{attribute_spec, ValueCheck};

/// Appends TLVs of one command to a buffer, checking lengths and path rules.
struct TlvWriter<'b> {
    buf: &'b mut Vec<u8>,
    command: CommandType,
}

impl TlvWriter<'_> {
    fn header(&mut self, attribute: AttributeType, len: usize) -> Result<(), WriteError> {
        let len = u16::try_from(len).map_err(|_| WriteError::AttributeTooLong {
            command: self.command,
            attribute,
            bytes: len as u64,
        })?;
        self.buf.extend_from_slice(&attribute.id().to_le_bytes());
        self.buf.extend_from_slice(&len.to_le_bytes());
        Ok(())
    }

    fn u64(&mut self, attribute: AttributeType, value: u64) -> Result<(), WriteError> {
        self.header(attribute, 8)?;
        self.buf.extend_from_slice(&value.to_le_bytes());
        Ok(())
    }

    fn u32(&mut self, attribute: AttributeType, value: u32) -> Result<(), WriteError> {
        self.header(attribute, 4)?;
        self.buf.extend_from_slice(&value.to_le_bytes());
        Ok(())
    }

    fn uuid(&mut self, attribute: AttributeType, value: &Uuid) -> Result<(), WriteError> {
        self.header(attribute, value.len())?;
        self.buf.extend_from_slice(value);
        Ok(())
    }

    fn timespec(&mut self, attribute: AttributeType, value: Timespec) -> Result<(), WriteError> {
        let bytes = value.to_le_bytes();
        self.header(attribute, bytes.len())?;
        self.buf.extend_from_slice(&bytes);
        Ok(())
    }

    /// A string or binary attribute; applies the schema's path rule so that we never write
    /// what our own reader would refuse.
    fn bytes(&mut self, attribute: AttributeType, value: &[u8]) -> Result<(), WriteError> {
        let check = attribute_spec(self.command, attribute).map(|spec| spec.check);
        let verdict = match check {
            Some(ValueCheck::SubvolumePath) => check_subvolume_path(value),
            Some(ValueCheck::NoNul) => check_no_nul(value),
            Some(ValueCheck::None) | None => Ok(()),
        };
        verdict.map_err(|problem| WriteError::InvalidPath {
            command: self.command,
            attribute,
            problem,
        })?;
        self.header(attribute, value.len())?;
        self.buf.extend_from_slice(value);
        Ok(())
    }

    /// DATA: an ordinary TLV in version 1; in version 2 only the type, and the value is
    /// returned to be sent after the buffer.
    fn data<'d>(
        &mut self,
        version: StreamVersion,
        value: &'d [u8],
    ) -> Result<&'d [u8], WriteError> {
        match version {
            StreamVersion::V1 => {
                self.bytes(AttributeType::Data, value)?;
                Ok(&[])
            }
            StreamVersion::V2 => {
                self.buf
                    .extend_from_slice(&AttributeType::Data.id().to_le_bytes());
                Ok(value)
            }
        }
    }
}

/// Encodes `command` for a stream of `version` into `buf` (cleared first): the command
/// header with its CRC, then the TLVs. Returns the bytes that must follow `buf` on the wire
/// (the version 2 DATA value; empty otherwise).
pub fn encode_command<'c>(
    command: &'c Command,
    version: StreamVersion,
    buf: &mut Vec<u8>,
) -> Result<&'c [u8], WriteError> {
    let command_type = command.command_type();
    if !command_type.allowed_in(version) {
        return Err(WriteError::CommandNotInVersion {
            command: command_type,
            version,
        });
    }
    buf.clear();
    buf.extend_from_slice(&[0u8; COMMAND_HEADER_BYTES]);
    let mut tlv = TlvWriter {
        buf,
        command: command_type,
    };
    let tail = encode_attributes(command, version, &mut tlv)?;

    let payload_bytes = (buf.len() - COMMAND_HEADER_BYTES) as u64 + tail.len() as u64;
    let len = u32::try_from(payload_bytes).map_err(|_| WriteError::CommandTooLong {
        command: command_type,
        bytes: payload_bytes,
    })?;
    let header = CommandHeader {
        len,
        cmd: command_type.id(),
        crc: 0,
    };
    buf[..COMMAND_HEADER_BYTES].copy_from_slice(&header.to_le_bytes());
    let crc = crc32c_raw_append(crc32c_raw(buf), tail);
    buf[COMMAND_HEADER_CRC_OFFSET..COMMAND_HEADER_BYTES].copy_from_slice(&crc.to_le_bytes());
    Ok(tail)
}

/// Encodes `command` into one contiguous byte vector (header, TLVs and data).
pub fn encode_command_to_vec(
    command: &Command,
    version: StreamVersion,
) -> Result<Vec<u8>, WriteError> {
    let mut buf = Vec::new();
    let tail = encode_command(command, version, &mut buf)?;
    buf.extend_from_slice(tail);
    Ok(buf)
}

fn encode_attributes<'c>(
    command: &'c Command,
    version: StreamVersion,
    tlv: &mut TlvWriter<'_>,
) -> Result<&'c [u8], WriteError> {
    use AttributeType as A;
    match command {
        Command::Subvol {
            path,
            uuid,
            ctransid,
        } => {
            tlv.bytes(A::Path, path)?;
            tlv.uuid(A::Uuid, uuid)?;
            tlv.u64(A::Ctransid, *ctransid)?;
        }
        Command::Snapshot {
            path,
            uuid,
            ctransid,
            clone_uuid,
            clone_ctransid,
        } => {
            tlv.bytes(A::Path, path)?;
            tlv.uuid(A::Uuid, uuid)?;
            tlv.u64(A::Ctransid, *ctransid)?;
            tlv.uuid(A::CloneUuid, clone_uuid)?;
            tlv.u64(A::CloneCtransid, *clone_ctransid)?;
        }
        Command::Mkfile { path, ino } | Command::Mkdir { path, ino } => {
            tlv.bytes(A::Path, path)?;
            tlv.u64(A::Ino, *ino)?;
        }
        Command::Mknod {
            path,
            ino,
            rdev,
            mode,
        } => {
            tlv.bytes(A::Path, path)?;
            tlv.u64(A::Ino, *ino)?;
            tlv.u64(A::Rdev, *rdev)?;
            tlv.u64(A::Mode, *mode)?;
        }
        Command::Mkfifo {
            path,
            ino,
            rdev,
            mode,
        }
        | Command::Mksock {
            path,
            ino,
            rdev,
            mode,
        } => {
            tlv.bytes(A::Path, path)?;
            tlv.u64(A::Ino, *ino)?;
            if let Some(rdev) = rdev {
                tlv.u64(A::Rdev, *rdev)?;
            }
            if let Some(mode) = mode {
                tlv.u64(A::Mode, *mode)?;
            }
        }
        Command::Symlink { path, ino, target } => {
            tlv.bytes(A::Path, path)?;
            tlv.u64(A::Ino, *ino)?;
            tlv.bytes(A::PathLink, target)?;
        }
        Command::Rename { from, to } => {
            tlv.bytes(A::Path, from)?;
            tlv.bytes(A::PathTo, to)?;
        }
        Command::Link { path, existing } => {
            tlv.bytes(A::Path, path)?;
            tlv.bytes(A::PathLink, existing)?;
        }
        Command::Unlink { path } | Command::Rmdir { path } => {
            tlv.bytes(A::Path, path)?;
        }
        Command::SetXattr { path, name, data } => {
            tlv.bytes(A::Path, path)?;
            tlv.bytes(A::XattrName, name)?;
            tlv.bytes(A::XattrData, data)?;
        }
        Command::RemoveXattr { path, name } => {
            tlv.bytes(A::Path, path)?;
            tlv.bytes(A::XattrName, name)?;
        }
        Command::Write { path, offset, data } => {
            tlv.bytes(A::Path, path)?;
            tlv.u64(A::FileOffset, *offset)?;
            return tlv.data(version, data);
        }
        Command::Clone {
            path,
            offset,
            len,
            clone_uuid,
            clone_ctransid,
            clone_path,
            clone_offset,
        } => {
            tlv.u64(A::FileOffset, *offset)?;
            tlv.u64(A::CloneLen, *len)?;
            tlv.bytes(A::Path, path)?;
            tlv.uuid(A::CloneUuid, clone_uuid)?;
            tlv.u64(A::CloneCtransid, *clone_ctransid)?;
            tlv.bytes(A::ClonePath, clone_path)?;
            tlv.u64(A::CloneOffset, *clone_offset)?;
        }
        Command::Truncate { path, size } => {
            tlv.bytes(A::Path, path)?;
            tlv.u64(A::Size, *size)?;
        }
        Command::Chmod { path, mode } => {
            tlv.bytes(A::Path, path)?;
            tlv.u64(A::Mode, *mode)?;
        }
        Command::Chown { path, uid, gid } => {
            tlv.bytes(A::Path, path)?;
            tlv.u64(A::Uid, *uid)?;
            tlv.u64(A::Gid, *gid)?;
        }
        Command::Utimes {
            path,
            atime,
            mtime,
            ctime,
            otime,
        } => {
            tlv.bytes(A::Path, path)?;
            tlv.timespec(A::Atime, *atime)?;
            tlv.timespec(A::Mtime, *mtime)?;
            tlv.timespec(A::Ctime, *ctime)?;
            if let Some(otime) = otime {
                tlv.timespec(A::Otime, *otime)?;
            }
        }
        Command::End => {}
        Command::UpdateExtent { path, offset, len } => {
            tlv.bytes(A::Path, path)?;
            tlv.u64(A::FileOffset, *offset)?;
            tlv.u64(A::Size, *len)?;
        }
        Command::Fallocate {
            path,
            mode,
            offset,
            len,
        } => {
            tlv.bytes(A::Path, path)?;
            tlv.u32(A::FallocateMode, *mode)?;
            tlv.u64(A::FileOffset, *offset)?;
            tlv.u64(A::Size, *len)?;
        }
        Command::Fileattr { path, fileattr } => {
            tlv.bytes(A::Path, path)?;
            tlv.u64(A::Fileattr, *fileattr)?;
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
            tlv.bytes(A::Path, path)?;
            tlv.u64(A::FileOffset, *offset)?;
            tlv.u64(A::UnencodedFileLen, *unencoded_file_len)?;
            tlv.u64(A::UnencodedLen, *unencoded_len)?;
            tlv.u64(A::UnencodedOffset, *unencoded_offset)?;
            if let Some(compression) = compression {
                tlv.u32(A::Compression, *compression)?;
            }
            if let Some(encryption) = encryption {
                tlv.u32(A::Encryption, *encryption)?;
            }
            return tlv.data(version, data);
        }
    }
    Ok(&[])
}
