//! Proves that the fs-level fsck finds each kind of damage it promises to (wrong link
//! counts, missing back-references or entries, wrong directory sizes, lost orphans),
//! by damaging records through the store with the layout FORMAT.md documents.

mod common;

use common::{mem_fs, ROOT};
use tidefs_fs::{Fs, Subvol, ROOT_INO};
use tidefs_store::{key3, KeyBuf};

const INODE: u8 = 0x10;
const BACKREF: u8 = 0x20;
const DIRENT_INDEX: u8 = 0x31;

fn setup() -> (Fs, Subvol, u64, u64) {
    let (fs, sub, _) = mem_fs();
    let d = sub.mkdir(ROOT_INO, b"d", 0o755, &ROOT).unwrap();
    let f = sub.create(d.ino, b"f", 0o644, &ROOT).unwrap();
    assert!(fs.fsck(true).unwrap().is_empty());
    (fs, sub, d.ino, f.ino)
}

/// Rewrites one record of the subvolume's tree behind the file system's back.
fn tamper(
    fs: &Fs,
    sub: &Subvol,
    f: impl FnOnce(&mut tidefs_store::WriteTxn<'_>, tidefs_store::TreeId),
) {
    let tree = sub.info().tree;
    fs.pool()
        .write(|t| {
            f(t, tree);
            Ok::<_, tidefs_store::StoreError>(())
        })
        .unwrap();
}

fn messages(fs: &Fs) -> String {
    fs.fsck(false)
        .unwrap()
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn wrong_link_count_is_found() {
    let (fs, sub, _, f) = setup();
    tamper(&fs, &sub, |t, tree| {
        let key = key3(f, INODE, 0);
        let mut v = t.get(tree, &key).unwrap().unwrap().value;
        v[16] = 2; // nlink, offset 16
        t.insert(tree, &key, &v).unwrap();
    });
    let m = messages(&fs);
    assert!(
        m.contains(&format!("inode {f}: nlink 2 but 1 names")),
        "{m}"
    );
}

#[test]
fn missing_back_reference_is_found() {
    let (fs, sub, d, f) = setup();
    tamper(&fs, &sub, |t, tree| {
        let key = KeyBuf::new().u64(f).u8(BACKREF).u64(d).bytes(b"f").build();
        assert!(t.remove(tree, &key).unwrap());
    });
    let m = messages(&fs);
    assert!(m.contains("has no back-reference"), "{m}");
}

#[test]
fn missing_index_entry_and_wrong_directory_size_are_found() {
    let (fs, sub, d, _) = setup();
    tamper(&fs, &sub, |t, tree| {
        assert!(t.remove(tree, &key3(d, DIRENT_INDEX, 2)).unwrap());
    });
    let m = messages(&fs);
    assert!(m.contains("has no index record"), "{m}");
    assert!(
        m.contains("directory size 2 but entries add up to 0"),
        "{m}"
    );
}

#[test]
fn unlinked_inode_off_the_orphan_list_is_found() {
    let (fs, sub, _, f) = setup();
    sub.open(f).unwrap();
    let d = sub.resolve(b"/d").unwrap();
    sub.unlink(d, b"f", &ROOT).unwrap();
    assert!(fs.fsck(false).unwrap().is_empty(), "an open orphan is fine");
    tamper(&fs, &sub, |t, tree| {
        assert!(t.remove(tree, &key3(0, 0x02, f)).unwrap());
    });
    let m = messages(&fs);
    assert!(m.contains("nlink 0 but orphan list entry false"), "{m}");
}
