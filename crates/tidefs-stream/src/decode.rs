//! Payload bytes → `Command`, with strict validation.
//!
//! The payload is a sequence of TLVs (layout in `attribute`). Checks, in the order they
//! are made, each failing with the offset of the TLV at fault (or of the command header
//! for a missing attribute):
//!
//! 1. every TLV header and value lies inside the command ("truncated attribute");
//! 2. the type is 1..=35 ("unknown attribute"), appears once, and belongs to the command;
//! 3. in the kernel's order: required attributes are present, fixed-size values have their
//!    exact size, path and name values pass `path`'s rules.

use std::ops::Range;

use crate::attribute::{
    AttributeType, Timespec, Uuid, ATTRIBUTE_ID_MAX, TIMESPEC_BYTES, TLV_DATA_V2_HEADER_BYTES,
    TLV_HEADER_BYTES, UUID_BYTES,
};
use crate::command::{Command, CommandType};
use crate::error::StreamErrorKind;
use crate::header::StreamVersion;
use crate::path::{check_no_nul, check_subvolume_path};
use crate::schema::{attribute_spec, ValueCheck};

/// A decoding failure and the input offset it refers to.
#[derive(Debug)]
pub(crate) struct DecodeFailure {
    pub offset: u64,
    pub kind: StreamErrorKind,
}

/// Where one attribute sits.
#[derive(Debug, Clone)]
struct Slot {
    /// Input offset of the TLV header.
    tlv_offset: u64,
    /// Value bytes within the payload.
    value: Range<usize>,
}

/// The attributes of one command, indexed by id.
struct Attributes<'p> {
    command: CommandType,
    payload: &'p [u8],
    command_offset: u64,
    slots: [Option<Slot>; ATTRIBUTE_ID_MAX as usize + 1],
}

/// Decodes a command whose header said `command_type` and whose payload is `payload`.
/// `command_offset` is the input offset of the command header, `payload` starts right
/// after it.
pub(crate) fn decode_command(
    command_type: CommandType,
    version: StreamVersion,
    payload: &[u8],
    command_offset: u64,
) -> Result<Command, DecodeFailure> {
    let attributes = parse_tlvs(command_type, version, payload, command_offset)?;
    attributes.build()
}

fn parse_tlvs(
    command: CommandType,
    version: StreamVersion,
    payload: &[u8],
    command_offset: u64,
) -> Result<Attributes<'_>, DecodeFailure> {
    let payload_offset = command_offset + crate::header::COMMAND_HEADER_BYTES as u64;
    let mut attributes = Attributes {
        command,
        payload,
        command_offset,
        slots: std::array::from_fn(|_| None),
    };
    let mut pos = 0usize;
    while pos < payload.len() {
        let tlv_offset = payload_offset + pos as u64;
        let left = payload.len() - pos;
        let fail = |kind| DecodeFailure {
            offset: tlv_offset,
            kind,
        };
        if left < TLV_DATA_V2_HEADER_BYTES {
            return Err(fail(StreamErrorKind::TruncatedAttribute {
                needed: TLV_DATA_V2_HEADER_BYTES as u64,
                available: left as u64,
            }));
        }
        let id = u16::from_le_bytes([payload[pos], payload[pos + 1]]);
        let attribute = AttributeType::from_id(id)
            .ok_or_else(|| fail(StreamErrorKind::UnknownAttribute { id }))?;
        let value = if version >= StreamVersion::V2 && attribute == AttributeType::Data {
            // Version 2 DATA: no length, the value runs to the end of the command.
            pos + TLV_DATA_V2_HEADER_BYTES..payload.len()
        } else {
            if left < TLV_HEADER_BYTES {
                return Err(fail(StreamErrorKind::TruncatedAttribute {
                    needed: TLV_HEADER_BYTES as u64,
                    available: left as u64,
                }));
            }
            let len = usize::from(u16::from_le_bytes([payload[pos + 2], payload[pos + 3]]));
            if left - TLV_HEADER_BYTES < len {
                return Err(fail(StreamErrorKind::TruncatedAttribute {
                    needed: (TLV_HEADER_BYTES + len) as u64,
                    available: left as u64,
                }));
            }
            pos + TLV_HEADER_BYTES..pos + TLV_HEADER_BYTES + len
        };
        let slot = &mut attributes.slots[usize::from(id)];
        if slot.is_some() {
            return Err(fail(StreamErrorKind::DuplicateAttribute { attribute }));
        }
        if attribute_spec(command, attribute).is_none() {
            return Err(fail(StreamErrorKind::UnexpectedAttribute {
                command,
                attribute,
            }));
        }
        pos = value.end;
        *slot = Some(Slot { tlv_offset, value });
    }
    Ok(attributes)
}

impl<'p> Attributes<'p> {
    fn optional(&self, attribute: AttributeType) -> Option<(&'p [u8], u64)> {
        self.slots[usize::from(attribute.id())]
            .as_ref()
            .map(|slot| (&self.payload[slot.value.clone()], slot.tlv_offset))
    }

    fn required(&self, attribute: AttributeType) -> Result<(&'p [u8], u64), DecodeFailure> {
        self.optional(attribute).ok_or(DecodeFailure {
            offset: self.command_offset,
            kind: StreamErrorKind::MissingAttribute {
                command: self.command,
                attribute,
            },
        })
    }

    fn fixed<const N: usize>(
        attribute: AttributeType,
        (value, tlv_offset): (&[u8], u64),
    ) -> Result<[u8; N], DecodeFailure> {
        value.try_into().map_err(|_| DecodeFailure {
            offset: tlv_offset,
            kind: StreamErrorKind::AttributeSize {
                attribute,
                expected: N as u64,
                actual: value.len() as u64,
            },
        })
    }

    fn u64(&self, attribute: AttributeType) -> Result<u64, DecodeFailure> {
        let found = self.required(attribute)?;
        Ok(u64::from_le_bytes(Self::fixed::<8>(attribute, found)?))
    }

    fn u64_optional(&self, attribute: AttributeType) -> Result<Option<u64>, DecodeFailure> {
        self.optional(attribute)
            .map(|found| Ok(u64::from_le_bytes(Self::fixed::<8>(attribute, found)?)))
            .transpose()
    }

    fn u32(&self, attribute: AttributeType) -> Result<u32, DecodeFailure> {
        let found = self.required(attribute)?;
        Ok(u32::from_le_bytes(Self::fixed::<4>(attribute, found)?))
    }

    fn u32_optional(&self, attribute: AttributeType) -> Result<Option<u32>, DecodeFailure> {
        self.optional(attribute)
            .map(|found| Ok(u32::from_le_bytes(Self::fixed::<4>(attribute, found)?)))
            .transpose()
    }

    fn uuid(&self, attribute: AttributeType) -> Result<Uuid, DecodeFailure> {
        let found = self.required(attribute)?;
        Self::fixed::<UUID_BYTES>(attribute, found)
    }

    fn timespec(&self, attribute: AttributeType) -> Result<Timespec, DecodeFailure> {
        let found = self.required(attribute)?;
        Ok(Timespec::from_le_bytes(Self::fixed::<TIMESPEC_BYTES>(
            attribute, found,
        )?))
    }

    fn timespec_optional(
        &self,
        attribute: AttributeType,
    ) -> Result<Option<Timespec>, DecodeFailure> {
        self.optional(attribute)
            .map(|found| {
                Ok(Timespec::from_le_bytes(Self::fixed::<TIMESPEC_BYTES>(
                    attribute, found,
                )?))
            })
            .transpose()
    }

    /// A string or binary attribute, checked by the schema's rule for this command.
    fn bytes(&self, attribute: AttributeType) -> Result<Vec<u8>, DecodeFailure> {
        let (value, tlv_offset) = self.required(attribute)?;
        let check = attribute_spec(self.command, attribute).map(|spec| spec.check);
        let verdict = match check {
            Some(ValueCheck::SubvolumePath) => check_subvolume_path(value),
            Some(ValueCheck::NoNul) => check_no_nul(value),
            Some(ValueCheck::None) | None => Ok(()),
        };
        verdict.map_err(|problem| DecodeFailure {
            offset: tlv_offset,
            kind: StreamErrorKind::InvalidPath { attribute, problem },
        })?;
        Ok(value.to_vec())
    }

    fn build(&self) -> Result<Command, DecodeFailure> {
        use AttributeType as A;
        // Each arm reads the attributes in the kernel's emission order, so that among
        // several faults the first one on the wire is reported.
        let command = match self.command {
            CommandType::Subvol => Command::Subvol {
                path: self.bytes(A::Path)?,
                uuid: self.uuid(A::Uuid)?,
                ctransid: self.u64(A::Ctransid)?,
            },
            CommandType::Snapshot => Command::Snapshot {
                path: self.bytes(A::Path)?,
                uuid: self.uuid(A::Uuid)?,
                ctransid: self.u64(A::Ctransid)?,
                clone_uuid: self.uuid(A::CloneUuid)?,
                clone_ctransid: self.u64(A::CloneCtransid)?,
            },
            CommandType::Mkfile => Command::Mkfile {
                path: self.bytes(A::Path)?,
                ino: self.u64(A::Ino)?,
            },
            CommandType::Mkdir => Command::Mkdir {
                path: self.bytes(A::Path)?,
                ino: self.u64(A::Ino)?,
            },
            CommandType::Mknod => Command::Mknod {
                path: self.bytes(A::Path)?,
                ino: self.u64(A::Ino)?,
                rdev: self.u64(A::Rdev)?,
                mode: self.u64(A::Mode)?,
            },
            CommandType::Mkfifo => Command::Mkfifo {
                path: self.bytes(A::Path)?,
                ino: self.u64(A::Ino)?,
                rdev: self.u64_optional(A::Rdev)?,
                mode: self.u64_optional(A::Mode)?,
            },
            CommandType::Mksock => Command::Mksock {
                path: self.bytes(A::Path)?,
                ino: self.u64(A::Ino)?,
                rdev: self.u64_optional(A::Rdev)?,
                mode: self.u64_optional(A::Mode)?,
            },
            CommandType::Symlink => Command::Symlink {
                path: self.bytes(A::Path)?,
                ino: self.u64(A::Ino)?,
                target: self.bytes(A::PathLink)?,
            },
            CommandType::Rename => Command::Rename {
                from: self.bytes(A::Path)?,
                to: self.bytes(A::PathTo)?,
            },
            CommandType::Link => Command::Link {
                path: self.bytes(A::Path)?,
                existing: self.bytes(A::PathLink)?,
            },
            CommandType::Unlink => Command::Unlink {
                path: self.bytes(A::Path)?,
            },
            CommandType::Rmdir => Command::Rmdir {
                path: self.bytes(A::Path)?,
            },
            CommandType::SetXattr => Command::SetXattr {
                path: self.bytes(A::Path)?,
                name: self.bytes(A::XattrName)?,
                data: self.bytes(A::XattrData)?,
            },
            CommandType::RemoveXattr => Command::RemoveXattr {
                path: self.bytes(A::Path)?,
                name: self.bytes(A::XattrName)?,
            },
            CommandType::Write => Command::Write {
                path: self.bytes(A::Path)?,
                offset: self.u64(A::FileOffset)?,
                data: self.bytes(A::Data)?,
            },
            CommandType::Clone => {
                let offset = self.u64(A::FileOffset)?;
                let len = self.u64(A::CloneLen)?;
                Command::Clone {
                    path: self.bytes(A::Path)?,
                    offset,
                    len,
                    clone_uuid: self.uuid(A::CloneUuid)?,
                    clone_ctransid: self.u64(A::CloneCtransid)?,
                    clone_path: self.bytes(A::ClonePath)?,
                    clone_offset: self.u64(A::CloneOffset)?,
                }
            }
            CommandType::Truncate => Command::Truncate {
                path: self.bytes(A::Path)?,
                size: self.u64(A::Size)?,
            },
            CommandType::Chmod => Command::Chmod {
                path: self.bytes(A::Path)?,
                mode: self.u64(A::Mode)?,
            },
            CommandType::Chown => Command::Chown {
                path: self.bytes(A::Path)?,
                uid: self.u64(A::Uid)?,
                gid: self.u64(A::Gid)?,
            },
            CommandType::Utimes => Command::Utimes {
                path: self.bytes(A::Path)?,
                atime: self.timespec(A::Atime)?,
                mtime: self.timespec(A::Mtime)?,
                ctime: self.timespec(A::Ctime)?,
                otime: self.timespec_optional(A::Otime)?,
            },
            CommandType::End => Command::End,
            CommandType::UpdateExtent => Command::UpdateExtent {
                path: self.bytes(A::Path)?,
                offset: self.u64(A::FileOffset)?,
                len: self.u64(A::Size)?,
            },
            CommandType::Fallocate => Command::Fallocate {
                path: self.bytes(A::Path)?,
                mode: self.u32(A::FallocateMode)?,
                offset: self.u64(A::FileOffset)?,
                len: self.u64(A::Size)?,
            },
            CommandType::Fileattr => Command::Fileattr {
                path: self.bytes(A::Path)?,
                fileattr: self.u64(A::Fileattr)?,
            },
            CommandType::EncodedWrite => Command::EncodedWrite {
                path: self.bytes(A::Path)?,
                offset: self.u64(A::FileOffset)?,
                unencoded_file_len: self.u64(A::UnencodedFileLen)?,
                unencoded_len: self.u64(A::UnencodedLen)?,
                unencoded_offset: self.u64(A::UnencodedOffset)?,
                compression: self.u32_optional(A::Compression)?,
                encryption: self.u32_optional(A::Encryption)?,
                data: self.bytes(A::Data)?,
            },
        };
        Ok(command)
    }
}
