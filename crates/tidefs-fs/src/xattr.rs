//! Extended attributes in the user, trusted and security namespaces.
//!
//! ```text
//! (ino, XATTR, name)                  0x00, value               (value ≤ 2048 bytes)
//!                                     0x01, len u32, chunks u32 (bigger values)
//! (ino, XATTR_CHUNK, name, 0x00, i)   bytes [2048·i, 2048·(i+1)) of a big value
//! ```
//!
//! Big values (Linux allows 64 KiB) are split because a record value holds at most 3 KiB.

use tidefs_store::Record;

use crate::cx::Cx;
use crate::error::{FsError, Result};
use crate::inode::{FileKind, Inode};
use crate::keys::{kind_prefix, split_key, xattr_chunk_key, xattr_key, KIND_XATTR};
use crate::limits::{VALUE_CHUNK_BYTES, XATTR_NAME_BYTES_MAX, XATTR_VALUE_BYTES_MAX};
use crate::records::RecordError;

/// `setxattr` flags (Linux values).
pub mod xattr_flags {
    pub const CREATE: u32 = 1;
    pub const REPLACE: u32 = 2;
}

const SMALL: u8 = 0;
const CHUNKED: u8 = 1;
const NAMESPACES: [&[u8]; 3] = [b"user.", b"trusted.", b"security."];

/// What an XATTR record holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XattrValue {
    /// The whole value.
    Small(Vec<u8>),
    /// A value of `len` bytes kept in XATTR_CHUNK records `0..chunks`.
    Chunked { len: usize, chunks: u32 },
}

/// Decodes the XATTR record `(key, v)`.
pub(crate) fn decode_xattr_record(key: &[u8], v: &[u8]) -> Result<XattrValue, RecordError> {
    match v.first() {
        Some(&SMALL) => Ok(XattrValue::Small(v[1..].to_vec())),
        Some(&CHUNKED) if v.len() == 9 => Ok(XattrValue::Chunked {
            len: u32::from_le_bytes(v[1..5].try_into().expect("4")) as usize,
            chunks: u32::from_le_bytes(v[5..9].try_into().expect("4")),
        }),
        _ => Err(RecordError::new(key, "xattr record does not decode")),
    }
}

/// The whole value of the xattr whose XATTR record is `r`, reading the chunks of a big
/// value through `chunk` (by key). Generic over the reader so that an operation (through
/// its transaction) and send (through a frozen tree) share it.
pub(crate) fn xattr_value<E>(
    r: &Record,
    mut chunk: impl FnMut(&[u8]) -> Result<Option<Vec<u8>>, E>,
) -> Result<Result<Vec<u8>, RecordError>, E> {
    let (len, chunks) = match decode_xattr_record(&r.key, &r.value) {
        Ok(XattrValue::Small(v)) => return Ok(Ok(v)),
        Ok(XattrValue::Chunked { len, chunks }) => (len, chunks),
        Err(e) => return Ok(Err(e)),
    };
    let (Some((ino, _)), Some(name)) = (split_key(&r.key), r.key.get(9..)) else {
        return Ok(Err(RecordError::new(&r.key, "bad xattr key")));
    };
    // `len` comes from disk: reserve no more than a valid value can hold.
    let mut out = Vec::with_capacity(len.min(XATTR_VALUE_BYTES_MAX));
    for i in 0..chunks {
        match chunk(&xattr_chunk_key(ino, name, i))? {
            Some(c) => out.extend_from_slice(&c),
            None => {
                return Ok(Err(RecordError::new(
                    &r.key,
                    format!("xattr chunk {i} of {chunks} missing"),
                )))
            }
        }
    }
    if out.len() != len {
        return Ok(Err(RecordError::new(
            &r.key,
            format!("xattr chunks hold {} bytes, not {len}", out.len()),
        )));
    }
    Ok(Ok(out))
}

/// Checks an xattr name as the VFS does, and whether this inode may carry it.
pub(crate) fn check_xattr_name(inode: &Inode, name: &[u8], writing: bool) -> Result<()> {
    let shown = || String::from_utf8_lossy(name).into_owned();
    if name.is_empty() || name.len() > XATTR_NAME_BYTES_MAX {
        return Err(FsError::Range(format!(
            "xattr name of {} bytes",
            name.len()
        )));
    }
    if name.contains(&0) {
        return Err(FsError::Invalid(format!(
            "xattr name {:?} contains NUL",
            shown()
        )));
    }
    let Some(prefix) = NAMESPACES.iter().find(|p| name.starts_with(p)) else {
        return Err(FsError::NotSupported(format!(
            "xattr namespace of {:?}",
            shown()
        )));
    };
    if name.len() == prefix.len() {
        return Err(FsError::Invalid(format!(
            "xattr name {:?} has nothing after its namespace",
            shown()
        )));
    }
    // Linux allows user.* only on regular files and directories (xattr_permission).
    if *prefix == b"user." && !matches!(inode.kind(), FileKind::Regular | FileKind::Directory) {
        return Err(if writing {
            FsError::NotPermitted(format!("user xattr on inode {}", inode.ino))
        } else {
            FsError::NoAttr(shown())
        });
    }
    Ok(())
}

/// Where Linux keeps a file's capabilities.
const FILE_CAPABILITIES_XATTR: &[u8] = b"security.capability";

impl Cx<'_, '_> {
    pub fn get_xattr(&mut self, ino: u64, name: &[u8]) -> Result<Option<Vec<u8>>> {
        let tree = self.tree;
        let Some(r) = self.get(&xattr_key(ino, name))? else {
            return Ok(None);
        };
        xattr_value(&r, |k| Ok::<_, FsError>(self.get(k)?.map(|c| c.value)))?
            .map(Some)
            .map_err(|e| FsError::record(tree, e))
    }

    fn remove_xattr_records(&mut self, ino: u64, name: &[u8]) -> Result<bool> {
        let key = xattr_key(ino, name);
        let Some(r) = self.get(&key)? else {
            return Ok(false);
        };
        if let Ok(XattrValue::Chunked { chunks, .. }) = decode_xattr_record(&key, &r.value) {
            for i in 0..chunks {
                self.del(&xattr_chunk_key(ino, name, i))?;
            }
        }
        self.del(&key)?;
        Ok(true)
    }

    /// Sets an xattr honouring `XATTR_CREATE` / `XATTR_REPLACE`.
    pub fn set_xattr(&mut self, ino: u64, name: &[u8], value: &[u8], flags: u32) -> Result<()> {
        if flags & !(xattr_flags::CREATE | xattr_flags::REPLACE) != 0 {
            return Err(FsError::Invalid(format!("xattr flags {flags:#x}")));
        }
        if value.len() > XATTR_VALUE_BYTES_MAX {
            return Err(FsError::AttrTooBig {
                len: value.len(),
                max: XATTR_VALUE_BYTES_MAX,
            });
        }
        let exists = self.get(&xattr_key(ino, name))?.is_some();
        if exists && flags & xattr_flags::CREATE != 0 {
            return Err(FsError::Exists(format!(
                "xattr {}",
                String::from_utf8_lossy(name)
            )));
        }
        if !exists && flags & xattr_flags::REPLACE != 0 {
            return Err(FsError::NoAttr(String::from_utf8_lossy(name).into_owned()));
        }
        self.remove_xattr_records(ino, name)?;
        if value.len() <= VALUE_CHUNK_BYTES {
            let mut v = Vec::with_capacity(1 + value.len());
            v.push(SMALL);
            v.extend_from_slice(value);
            self.put(&xattr_key(ino, name), &v)
        } else {
            let chunks = value.chunks(VALUE_CHUNK_BYTES);
            let n = chunks.len() as u32;
            for (i, c) in chunks.enumerate() {
                self.put(&xattr_chunk_key(ino, name, i as u32), c)?;
            }
            let mut v = vec![CHUNKED];
            v.extend_from_slice(&(value.len() as u32).to_le_bytes());
            v.extend_from_slice(&n.to_le_bytes());
            self.put(&xattr_key(ino, name), &v)
        }
    }

    /// Drops the file capabilities (`security.capability`) of a regular file, as Linux does
    /// whenever one is written, truncated or changes owner (even by root): a changed
    /// program must not keep the privileges granted to the old one.
    pub fn drop_file_capabilities(&mut self, ino: u64) -> Result<()> {
        self.remove_xattr_records(ino, FILE_CAPABILITIES_XATTR)
            .map(|_| ())
    }

    pub fn remove_xattr(&mut self, ino: u64, name: &[u8]) -> Result<()> {
        if !self.remove_xattr_records(ino, name)? {
            return Err(FsError::NoAttr(String::from_utf8_lossy(name).into_owned()));
        }
        Ok(())
    }

    /// Names of all xattrs of `ino`, in byte order.
    pub fn list_xattrs(&mut self, ino: u64) -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        for r in self.view()?.prefix(&kind_prefix(ino, KIND_XATTR))? {
            out.push(r?.key[9..].to_vec());
        }
        Ok(out)
    }
}
