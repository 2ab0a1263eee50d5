//! Read-only access to the records of a subvolume tree, for tools that read the tree
//! directly instead of through [`crate::Subvol`] (send reads frozen snapshot trees and the
//! store's tree diffs).
//!
//! Everything here calls the encoders' own decoders, so this crate stays the one place
//! that knows the layout (`FORMAT.md`). Keys are `(object id, kind, rest)`; see
//! [`parse_key`]. Kinds a reader meets, and what their values decode to:
//!
//! | kind | key rest | decoder |
//! |---|---|---|
//! | [`KIND_INODE`] | `0` | [`decode_inode`] |
//! | [`KIND_BACKREF`] | parent, name | [`decode_backref_key`] (the key holds it all) |
//! | [`KIND_DIRENT_HASH`] | name hash | [`decode_dirent_hash`] |
//! | [`KIND_DIRENT_INDEX`] | readdir index | [`decode_dirent_index`] |
//! | [`KIND_XATTR`] | name | [`decode_xattr`], [`xattr_value`] |
//! | [`KIND_XATTR_CHUNK`] | name, 0, chunk | read through [`xattr_value`] |
//! | [`KIND_SYMLINK`] | chunk | raw bytes: the target is the values concatenated in key order |
//! | [`KIND_DATA`] | file offset | [`decode_data`] |
//!
//! Records of object [`SUBVOL_OBJECT`] belong to the subvolume (header, orphan list), not
//! to an inode.

use tidefs_store::Record;

pub use crate::backref::BackRef;
pub use crate::dir::DirEntry;
pub use crate::file_data::{BlockRecord, DataRecord};
pub use crate::inode::Inode;
pub use crate::keys::{
    KIND_BACKREF, KIND_DATA, KIND_DIRENT_HASH, KIND_DIRENT_INDEX, KIND_INODE, KIND_SYMLINK,
    KIND_XATTR, KIND_XATTR_CHUNK, SUBVOL_OBJECT,
};
pub use crate::xattr::XattrValue;

use crate::keys::{self, kind_name, split_key};

/// A record that does not decode as `FORMAT.md` specifies. Names the record by its key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {detail}", describe_key(.key))]
pub struct RecordError {
    /// The key of the record that failed.
    pub key: Vec<u8>,
    /// What is wrong with it.
    pub detail: String,
}

impl RecordError {
    pub(crate) fn new(key: &[u8], detail: impl Into<String>) -> RecordError {
        RecordError {
            key: key.to_vec(),
            detail: detail.into(),
        }
    }

    /// Object id of the failed record (`None`: the key is too short to hold one).
    pub fn object(&self) -> Option<u64> {
        split_key(&self.key).map(|k| k.0)
    }

    /// Kind of the failed record (`None`: the key is too short to hold one).
    pub fn kind(&self) -> Option<u8> {
        split_key(&self.key).map(|k| k.1)
    }
}

fn describe_key(key: &[u8]) -> String {
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    match split_key(key) {
        Some((object, kind)) => format!(
            "{} record ({kind:#04x}) of object {object}, key {hex}",
            kind_name(kind)
        ),
        None => format!("record key {hex} of {} bytes", key.len()),
    }
}

/// The parts of a subvolume-tree key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordKey<'a> {
    /// Inode number, or [`SUBVOL_OBJECT`].
    pub object: u64,
    /// One of the `KIND_*` constants.
    pub kind: u8,
    /// What follows the kind (see the table in the module doc).
    pub rest: &'a [u8],
}

/// Splits a key into object id, kind and the rest.
pub fn parse_key(key: &[u8]) -> Result<RecordKey<'_>, RecordError> {
    let (object, kind) = split_key(key)
        .ok_or_else(|| RecordError::new(key, "shorter than an object id and a kind"))?;
    Ok(RecordKey {
        object,
        kind,
        rest: &key[9..],
    })
}

/// `Ok` if `key` is of `kind`; every decoder checks this first, so that a record passed to
/// the wrong decoder fails with a message naming what it is.
fn expect_kind(key: &[u8], kind: u8) -> Result<RecordKey<'_>, RecordError> {
    let k = parse_key(key)?;
    if k.kind != kind {
        return Err(RecordError::new(
            key,
            format!("expected a record of kind {}", kind_name(kind)),
        ));
    }
    Ok(k)
}

/// Prefix of every record of inode `ino` (all of them are adjacent).
pub fn object_prefix(ino: u64) -> Vec<u8> {
    keys::object_prefix(ino)
}

/// Prefix of the records of one kind of inode `ino`.
pub fn kind_prefix(ino: u64, kind: u8) -> Vec<u8> {
    keys::kind_prefix(ino, kind)
}

/// Key of the inode item of `ino`.
pub fn inode_key(ino: u64) -> Vec<u8> {
    keys::inode_key(ino)
}

/// Key of the DIRENT_HASH record where directory `dir` files the entry `name`.
pub fn dirent_hash_key(dir: u64, name: &[u8]) -> Vec<u8> {
    keys::dirent_hash_key(dir, crate::dir::name_hash(name))
}

/// Key of the XATTR record of `name` on `ino`.
pub fn xattr_key(ino: u64, name: &[u8]) -> Vec<u8> {
    keys::xattr_key(ino, name)
}

/// The inode item `(ino, INODE, 0)`.
pub fn decode_inode(r: &Record) -> Result<Inode, RecordError> {
    let k = expect_kind(&r.key, KIND_INODE)?;
    Inode::decode(k.object, &r.value).ok_or_else(|| {
        RecordError::new(
            &r.key,
            format!("inode item of {} bytes does not decode", r.value.len()),
        )
    })
}

/// The name `(parent, name)` a BACKREF key records for its inode.
pub fn decode_backref_key(key: &[u8]) -> Result<BackRef, RecordError> {
    expect_kind(key, KIND_BACKREF)?;
    crate::backref::backref_of_key(key)
}

/// The entries of a DIRENT_HASH record (several when names share the hash).
pub fn decode_dirent_hash(r: &Record) -> Result<Vec<DirEntry>, RecordError> {
    expect_kind(&r.key, KIND_DIRENT_HASH)?;
    crate::dir::decode_hash_record(&r.key, &r.value)
}

/// The entry of a DIRENT_INDEX record.
pub fn decode_dirent_index(r: &Record) -> Result<DirEntry, RecordError> {
    expect_kind(&r.key, KIND_DIRENT_INDEX)?;
    crate::dir::decode_index_record(&r.key, &r.value)
}

/// The xattr name of an XATTR or XATTR_CHUNK key.
pub fn xattr_name_of_key(key: &[u8]) -> Result<&[u8], RecordError> {
    keys::xattr_name_of_key(key)
        .ok_or_else(|| RecordError::new(key, "not an xattr or xattr chunk key"))
}

/// What an XATTR record holds: the value, or the shape of a chunked one.
pub fn decode_xattr(r: &Record) -> Result<XattrValue, RecordError> {
    expect_kind(&r.key, KIND_XATTR)?;
    crate::xattr::decode_xattr_record(&r.key, &r.value)
}

/// The whole value of the xattr whose XATTR record is `r`. For a chunked value,
/// `chunk(key)` reads each XATTR_CHUNK record's value (`Ok(None)`: absent). The outer
/// error is `chunk`'s; the inner one says the records do not fit together.
pub fn xattr_value<E>(
    r: &Record,
    chunk: impl FnMut(&[u8]) -> Result<Option<Vec<u8>>, E>,
) -> Result<Result<Vec<u8>, RecordError>, E> {
    if let Err(e) = expect_kind(&r.key, KIND_XATTR) {
        return Ok(Err(e));
    }
    crate::xattr::xattr_value(r, chunk)
}

/// A DATA record: inline bytes, or a range of file blocks mapped onto an extent.
pub fn decode_data(r: &Record) -> Result<DataRecord, RecordError> {
    expect_kind(&r.key, KIND_DATA)?;
    crate::file_data::decode_record(r)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use tidefs_store::{CreateOptions, Extent, MemDevice, OpenOptions, Pool, Tid, TreeView};

    use super::*;
    use crate::clock::{ManualClock, Timespec};
    use crate::dir::{encode_hash_record, name_hash};
    use crate::file_data::ExtentKind;
    use crate::inode::{FileKind, S_IFREG};
    use crate::keys::{backref_key, data_key, dirent_index_key, xattr_chunk_key};
    use crate::{Caller, Fs};

    const ROOT: Caller = Caller::ROOT;

    fn rec(key: Vec<u8>, value: Vec<u8>, extent: Option<Extent>) -> Record {
        Record {
            key,
            value,
            extent,
            tid: Tid(1),
        }
    }

    fn inode(ino: u64) -> Inode {
        Inode {
            ino,
            generation: 9,
            mode: S_IFREG | 0o4755,
            uid: 1000,
            gid: 100,
            nlink: 2,
            size: 5000,
            rdev: 0x0103,
            flags: 0x10,
            blocks: 2,
            atime: Timespec::new(1, 2),
            mtime: Timespec::new(-3, 4),
            ctime: Timespec::new(5, 999_999_999),
            btime: Timespec::new(7, 8),
            next_index: 2,
        }
    }

    #[test]
    fn encoded_records_decode_through_the_public_api() {
        let i = inode(300);
        let r = rec(inode_key(300), i.encode().to_vec(), None);
        assert_eq!(decode_inode(&r).unwrap(), i);
        assert_eq!(decode_inode(&r).unwrap().perm(), 0o4755);

        let k = backref_key(300, 256, b"name");
        assert_eq!(
            decode_backref_key(&k).unwrap(),
            BackRef {
                parent: 256,
                name: b"name".to_vec()
            }
        );
        assert_eq!(
            parse_key(&k).unwrap(),
            RecordKey {
                object: 300,
                kind: KIND_BACKREF,
                rest: &k[9..]
            }
        );

        let entries = vec![
            DirEntry {
                name: b"x".to_vec(),
                ino: 300,
                kind: FileKind::Regular,
                index: 2,
            },
            DirEntry {
                name: b"y".to_vec(),
                ino: 301,
                kind: FileKind::Symlink,
                index: 3,
            },
        ];
        let r = rec(
            dirent_hash_key(256, b"x"),
            encode_hash_record(&entries),
            None,
        );
        assert_eq!(decode_dirent_hash(&r).unwrap(), entries);

        let mut v = 301u64.to_le_bytes().to_vec();
        v.push(FileKind::Symlink.dtype());
        v.extend_from_slice(b"y");
        let r = rec(dirent_index_key(256, 3), v, None);
        assert_eq!(decode_dirent_index(&r).unwrap(), entries[1]);

        assert_eq!(
            xattr_name_of_key(&xattr_chunk_key(300, b"user.big", 7)).unwrap(),
            b"user.big"
        );

        let extent = Extent {
            block: 1000,
            blocks: 8,
        };
        for crcs in [Some(vec![1, 2, 3]), None] {
            let b = BlockRecord {
                start: 4,
                len: 3,
                extent,
                ext_off: 5,
                crcs,
            };
            let r = rec(data_key(300, 4 * 4096), b.payload(), Some(extent));
            assert_eq!(decode_data(&r).unwrap(), DataRecord::Block(b));
        }
        let r = rec(data_key(300, 0), vec![0, b'h', b'i'], None);
        assert_eq!(decode_data(&r).unwrap(), DataRecord::Inline(b"hi".to_vec()));
    }

    /// `chunk` for [`xattr_value`] over a view.
    fn chunk_of(
        view: &TreeView,
    ) -> impl FnMut(&[u8]) -> tidefs_store::Result<Option<Vec<u8>>> + '_ {
        |k| Ok(view.get(k)?.map(|r| r.value))
    }

    /// Every record a real file system writes decodes to what its own operations report.
    #[test]
    fn every_record_of_a_tree_decodes_as_the_fs_reads_it() {
        let pool = Pool::create(
            Arc::new(MemDevice::new()),
            &CreateOptions::default(),
            &OpenOptions::default(),
        )
        .unwrap();
        let fs = Fs::format(pool, Arc::new(ManualClock::new(Timespec::new(1, 0)))).unwrap();
        fs.create_subvolume("main", &ROOT).unwrap();
        let sub = fs.subvolume("main").unwrap();
        let root = crate::ROOT_INO;
        let dir = sub.mkdir(root, b"d", 0o755, &ROOT).unwrap().ino;
        let small = sub.create(dir, b"small", 0o644, &ROOT).unwrap().ino;
        sub.write(small, 0, b"inline bytes", &ROOT).unwrap();
        let big = sub.create(root, b"big", 0o600, &ROOT).unwrap().ino;
        sub.write(big, 4096, &[7u8; 3 * 4096 + 10], &ROOT).unwrap();
        sub.fallocate(big, 0, 8 * 4096, 2 * 4096).unwrap();
        sub.link(big, dir, b"big-link").unwrap();
        sub.setxattr(big, b"user.small", b"v", 0).unwrap();
        let long: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        sub.setxattr(big, b"user.long", &long, 0).unwrap();
        let target = vec![b'a'; 3000];
        let link = sub.symlink(root, b"sym", &target, &ROOT).unwrap().ino;

        let view = fs.pool().write(|t| t.tree(sub.info().tree)).unwrap();
        let mut kinds = BTreeMap::new();
        let mut symlink = Vec::new();
        let mut extents: BTreeMap<u64, Vec<(u64, u64, ExtentKind)>> = BTreeMap::new();
        for r in view.range::<std::ops::RangeFull>(..).unwrap() {
            let r = r.unwrap();
            let k = parse_key(&r.key).unwrap();
            *kinds.entry(k.kind).or_insert(0) += 1;
            match k.kind {
                KIND_INODE => assert_eq!(decode_inode(&r).unwrap(), sub.getattr(k.object).unwrap()),
                KIND_BACKREF => {
                    let b = decode_backref_key(&r.key).unwrap();
                    assert_eq!(sub.lookup(b.parent, &b.name).unwrap().ino, k.object);
                }
                KIND_DIRENT_HASH => {
                    for e in decode_dirent_hash(&r).unwrap() {
                        assert_eq!(
                            view.get(&dirent_hash_key(k.object, &e.name)).unwrap(),
                            Some(r.clone())
                        );
                        let found = sub.lookup(k.object, &e.name).unwrap();
                        assert_eq!((e.ino, e.kind), (found.ino, found.kind()));
                    }
                }
                KIND_DIRENT_INDEX => {
                    let e = decode_dirent_index(&r).unwrap();
                    let listed = sub.readdir(k.object, e.index, 1).unwrap();
                    assert_eq!((&listed[0].name, listed[0].ino), (&e.name, e.ino));
                }
                KIND_XATTR => {
                    let name = xattr_name_of_key(&r.key).unwrap();
                    let value = xattr_value(&r, chunk_of(&view)).unwrap().unwrap();
                    assert_eq!(value, sub.getxattr(k.object, name).unwrap());
                    let chunked = matches!(decode_xattr(&r).unwrap(), XattrValue::Chunked { .. });
                    assert_eq!(chunked, name == b"user.long");
                }
                KIND_XATTR_CHUNK => assert_eq!(xattr_name_of_key(&r.key).unwrap(), b"user.long"),
                KIND_SYMLINK => symlink.extend_from_slice(&r.value),
                KIND_DATA => {
                    let e = extents.entry(k.object).or_default();
                    match decode_data(&r).unwrap() {
                        DataRecord::Inline(b) => e.push((0, b.len() as u64, ExtentKind::Inline)),
                        DataRecord::Block(b) => e.push((
                            b.start * 4096,
                            b.len * 4096,
                            match b.crcs {
                                Some(_) => ExtentKind::Data {
                                    extent: b.extent,
                                    extent_offset: b.ext_off * 4096,
                                },
                                None => ExtentKind::Prealloc,
                            },
                        )),
                    }
                }
                _ => assert_eq!(k.object, SUBVOL_OBJECT),
            }
        }
        assert_eq!(symlink, sub.readlink(link).unwrap());
        for ino in [small, big] {
            let want: Vec<_> = sub
                .extents(ino)
                .unwrap()
                .into_iter()
                .map(|e| (e.offset, e.len, e.kind))
                .collect();
            assert_eq!(extents[&ino], want);
        }
        for kind in [
            KIND_INODE,
            KIND_BACKREF,
            KIND_DIRENT_HASH,
            KIND_DIRENT_INDEX,
            KIND_XATTR,
            KIND_XATTR_CHUNK,
            KIND_SYMLINK,
            KIND_DATA,
        ] {
            assert!(kinds.contains_key(&kind), "no record of kind {kind:#x}");
        }
        assert!(kinds[&KIND_SYMLINK] >= 2 && kinds[&KIND_XATTR_CHUNK] >= 3);
    }

    /// The message of a decoder's error, which must name the record.
    fn fails(r: Result<impl std::fmt::Debug, RecordError>) -> String {
        let e = r.unwrap_err();
        assert_eq!(e.object(), Some(300), "{e}");
        e.to_string()
    }

    #[test]
    fn malformed_records_fail_naming_the_record() {
        let short = parse_key(&[0, 1, 2]).unwrap_err();
        assert_eq!((short.object(), short.kind()), (None, None));
        assert!(short.to_string().contains("000102"), "{short}");

        let i = inode(300).encode();
        let m = fails(decode_inode(&rec(inode_key(300), i[..100].to_vec(), None)));
        assert!(m.starts_with("inode record (0x10) of object 300"), "{m}");
        assert!(m.contains("100 bytes"), "{m}");
        let m = fails(decode_inode(&rec(
            xattr_key(300, b"user.a"),
            i.to_vec(),
            None,
        )));
        assert!(
            m.starts_with("xattr record") && m.contains("expected a record of kind inode"),
            "{m}"
        );

        let mut k = backref_key(300, 256, b"");
        k.truncate(12);
        fails(decode_backref_key(&k));

        let mut v = encode_hash_record(&[DirEntry {
            name: b"x".to_vec(),
            ino: 301,
            kind: FileKind::Regular,
            index: 2,
        }]);
        let h = crate::keys::dirent_hash_key(300, name_hash(b"x"));
        let m = fails(decode_dirent_hash(&rec(
            h.clone(),
            v[..v.len() - 1].to_vec(),
            None,
        )));
        assert!(m.contains("dirent-hash") && m.contains("truncated"), "{m}");
        v[16] = 99;
        let m = fails(decode_dirent_hash(&rec(h, v, None)));
        assert!(m.contains("bad entry type 99"), "{m}");
        fails(decode_dirent_index(&rec(
            dirent_index_key(300, 2),
            vec![1, 2],
            None,
        )));

        let x = xattr_key(300, b"user.a");
        fails(decode_xattr(&rec(x.clone(), vec![1, 0, 0], None)));
        fails(decode_xattr(&rec(x.clone(), vec![], None)));
        // A chunked value whose chunks are missing or too short.
        let mut v = vec![1];
        v.extend_from_slice(&3000u32.to_le_bytes());
        v.extend_from_slice(&2u32.to_le_bytes());
        let r = rec(x.clone(), v, None);
        let none = |_: &[u8]| Ok::<_, ()>(None);
        let m = fails(xattr_value(&r, none).unwrap());
        assert!(m.contains("chunk 0 of 2 missing"), "{m}");
        let want = [
            xattr_chunk_key(300, b"user.a", 0),
            xattr_chunk_key(300, b"user.a", 1),
        ];
        let mut asked = Vec::new();
        let m = fails(
            xattr_value(&r, |k: &[u8]| {
                asked.push(k.to_vec());
                Ok::<_, ()>(Some(vec![0; 10]))
            })
            .unwrap(),
        );
        assert!(m.contains("hold 20 bytes, not 3000"), "{m}");
        assert_eq!(asked, want);
        // The reader's own error comes back as the outer one.
        assert_eq!(
            xattr_value(&r, |_: &[u8]| Err::<Option<Vec<u8>>, _>("io")),
            Err("io")
        );

        let extent = Extent {
            block: 9,
            blocks: 2,
        };
        let b = BlockRecord {
            start: 0,
            len: 2,
            extent,
            ext_off: 0,
            crcs: Some(vec![1, 2]),
        };
        let d = data_key(300, 0);
        let p = b.payload();
        let m = fails(decode_data(&rec(
            d.clone(),
            p[..p.len() - 4].to_vec(),
            Some(extent),
        )));
        assert!(
            m.contains("data record") && m.contains("checksum table"),
            "{m}"
        );
        let small = Extent {
            block: 9,
            blocks: 1,
        };
        fails(decode_data(&rec(d.clone(), p.clone(), Some(small))));
        fails(decode_data(&rec(d.clone(), p, None)));
        fails(decode_data(&rec(data_key(300, 1), vec![0, 1], None)));
        let m = fails(decode_data(&rec(d, vec![7], None)));
        assert!(m.contains("unknown type"), "{m}");
    }
}
