//! Proves that diff reports exactly the scripted changes between two snapshots, and
//! between a snapshot and the live subvolume, one line per change, sorted by path.

mod common;

use common::{assert_clean, mem_fs, ROOT};
use tidefs_fs::{diff, Fs, SetAttr, Subvol, ROOT_INO};

fn mk(sub: &Subvol, path: &[u8], data: &[u8]) -> u64 {
    let (dir, name) = path.split_at(path.iter().rposition(|&b| b == b'/').unwrap());
    let parent = sub
        .resolve(if dir.is_empty() { b"/" } else { dir })
        .unwrap();
    let f = sub.create(parent, &name[1..], 0o644, &ROOT).unwrap();
    sub.write(f.ino, 0, data, &ROOT).unwrap();
    f.ino
}

fn lines(a: &Subvol, b: &Subvol) -> Vec<String> {
    diff(a, b)
        .unwrap()
        .into_iter()
        .map(|c| c.to_string())
        .collect()
}

fn scripted() -> (Fs, Subvol) {
    let (fs, sub, _) = mem_fs();
    for d in [b"a".as_slice(), b"b", b"dir"] {
        sub.mkdir(ROOT_INO, d, 0o755, &ROOT).unwrap();
    }
    let dir = sub.resolve(b"/dir").unwrap();
    let s = sub.mkdir(dir, b"sub", 0o755, &ROOT).unwrap();
    sub.create(s.ino, b"x", 0o644, &ROOT).unwrap();
    mk(&sub, b"/a/f1", &vec![5u8; 50_000]);
    mk(&sub, b"/a/f2", b"two");
    mk(&sub, b"/b/g", b"gone soon");
    let h = mk(&sub, b"/h", b"h");
    let k = mk(&sub, b"/k", b"k");
    sub.link(k, sub.resolve(b"/a").unwrap(), b"hl").unwrap();
    mk(&sub, b"/attr", b"attr");
    mk(&sub, b"/mv", b"mv");
    fs.create_snapshot("main", "s1").unwrap();

    let a = sub.resolve(b"/a").unwrap();
    let b = sub.resolve(b"/b").unwrap();
    mk(&sub, b"/a/new", b"new");
    sub.unlink(b, b"g", &ROOT).unwrap();
    sub.write(sub.resolve(b"/a/f1").unwrap(), 40_000, b"changed", &ROOT)
        .unwrap();
    let attr = sub.resolve(b"/attr").unwrap();
    sub.setattr(
        attr,
        &SetAttr {
            mode: Some(0o600),
            ..Default::default()
        },
        &ROOT,
    )
    .unwrap();
    sub.rename(a, b"f2", a, b"f2r", 0, &ROOT).unwrap();
    sub.rename(ROOT_INO, b"dir", ROOT_INO, b"dir2", 0, &ROOT)
        .unwrap();
    sub.rename(ROOT_INO, b"mv", b, b"mv", 0, &ROOT).unwrap();
    sub.link(h, b, b"h2").unwrap();
    sub.unlink(a, b"hl", &ROOT).unwrap();
    (fs, sub)
}

const EXPECTED: [&str; 9] = [
    "M /a/f1",
    "R /a/f2 -> /a/f2r",
    "- /a/hl",
    "+ /a/new",
    "M /attr",
    "- /b/g",
    "+ /b/h2",
    "R /dir -> /dir2",
    "R /mv -> /b/mv",
];

#[test]
fn diff_between_snapshots_lists_exactly_the_changes() {
    let (fs, _sub) = scripted();
    fs.create_snapshot("main", "s2").unwrap();
    let s1 = fs.snapshot("main", "s1").unwrap();
    let s2 = fs.snapshot("main", "s2").unwrap();
    assert_eq!(lines(&s1, &s2), EXPECTED);
    assert!(lines(&s2, &s2).is_empty());
    assert_clean(&fs);
}

#[test]
fn diff_against_the_live_subvolume_and_backwards() {
    let (fs, sub) = scripted();
    let s1 = fs.snapshot("main", "s1").unwrap();
    assert_eq!(lines(&s1, &sub), EXPECTED);
    let back = lines(&sub, &s1);
    assert_eq!(
        back,
        [
            "M /a/f1",
            "R /a/f2r -> /a/f2",
            "+ /a/hl",
            "- /a/new",
            "M /attr",
            "+ /b/g",
            "- /b/h2",
            "R /b/mv -> /mv",
            "R /dir2 -> /dir",
        ]
    );
}

#[test]
fn new_directory_trees_and_removed_ones_list_every_path() {
    let (fs, sub, _) = mem_fs();
    fs.create_snapshot("main", "empty").unwrap();
    let d = sub.mkdir(ROOT_INO, b"d", 0o755, &ROOT).unwrap();
    sub.create(d.ino, b"name with space\nand newline", 0o644, &ROOT)
        .unwrap();
    sub.symlink(d.ino, b"s", b"target", &ROOT).unwrap();
    let empty = fs.snapshot("main", "empty").unwrap();
    assert_eq!(
        lines(&empty, &sub),
        ["+ /d", "+ /d/name with space\nand newline", "+ /d/s"]
    );
    fs.create_snapshot("main", "full").unwrap();
    let full = fs.snapshot("main", "full").unwrap();
    assert_eq!(
        lines(&full, &empty),
        ["- /d", "- /d/name with space\nand newline", "- /d/s"]
    );
}
