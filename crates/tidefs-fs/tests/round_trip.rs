//! Proves that import followed by export reproduces a varied host tree exactly: names
//! (spaces, newlines, non-UTF-8 bytes, 255 bytes), deep nesting, many files, modes with
//! setuid/setgid/sticky, owners, times with nanoseconds (directories and symlinks too),
//! xattrs, hard links across directories, symlinks, fifos, sockets, devices, and a sparse
//! 1 GiB file whose holes stay holes.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{
    self as rfs, AtFlags, FileType, Mode, SeekFrom, Timespec, Timestamps, XattrFlags, CWD,
};

use common::{assert_clean, mem_fs};

fn p(root: &Path, rel: &[u8]) -> PathBuf {
    root.join(OsStr::from_bytes(rel))
}

fn set_times(path: &Path, sec: i64, nsec: i64) {
    let t = Timestamps {
        last_access: Timespec {
            tv_sec: sec - 100,
            tv_nsec: nsec,
        },
        last_modification: Timespec {
            tv_sec: sec,
            tv_nsec: nsec + 1,
        },
    };
    rfs::utimensat(CWD, path, &t, AtFlags::SYMLINK_NOFOLLOW).unwrap();
}

fn build_source(root: &Path) {
    let mkdir = |rel: &[u8]| rfs::mkdirat(CWD, p(root, rel), Mode::from_raw_mode(0o755)).unwrap();
    let write = |rel: &[u8], data: &[u8]| std::fs::write(p(root, rel), data).unwrap();
    // Deep nesting.
    let mut deep = b"deep".to_vec();
    mkdir(&deep);
    for i in 0..30 {
        deep.extend_from_slice(format!("/level{i}").as_bytes());
        mkdir(&deep);
    }
    let mut leaf = deep.clone();
    leaf.extend_from_slice(b"/leaf");
    write(&leaf, b"bottom");
    // Many files (10,000) in fifty directories.
    for d in 0..50 {
        let dir = format!("many{d}");
        mkdir(dir.as_bytes());
        for f in 0..200 {
            let data: Vec<u8> = (0..(f * 37 % 5000)).map(|i| (i * d + f) as u8).collect();
            write(format!("{dir}/file{f}").as_bytes(), &data);
        }
    }
    // Awkward names.
    mkdir(b"names");
    for name in [
        b"with space".as_slice(),
        b"new\nline",
        b"\xff\xfe not utf8 \x80",
        b"tab\there",
        &[b'n'; 255],
    ] {
        let mut rel = b"names/".to_vec();
        rel.extend_from_slice(name);
        write(&rel, name);
    }
    // Hard links across directories, symlinks, specials.
    write(b"many0/shared", b"shared by three names");
    rfs::linkat(
        CWD,
        p(root, b"many0/shared"),
        CWD,
        p(root, b"many1/shared-too"),
        AtFlags::empty(),
    )
    .unwrap();
    rfs::linkat(
        CWD,
        p(root, b"many0/shared"),
        CWD,
        p(root, b"names/third name"),
        AtFlags::empty(),
    )
    .unwrap();
    rfs::symlinkat("many0/file3", CWD, p(root, b"link")).unwrap();
    rfs::symlinkat("/dangling/target", CWD, p(root, b"dangling")).unwrap();
    rfs::symlinkat(OsStr::from_bytes(&[b'x'; 4000]), CWD, p(root, b"long-link")).unwrap();
    rfs::mknodat(
        CWD,
        p(root, b"fifo"),
        FileType::Fifo,
        Mode::from_raw_mode(0o640),
        0,
    )
    .unwrap();
    rfs::mknodat(
        CWD,
        p(root, b"sock"),
        FileType::Socket,
        Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    rfs::mknodat(
        CWD,
        p(root, b"null"),
        FileType::CharacterDevice,
        Mode::from_raw_mode(0o666),
        rfs::makedev(1, 3),
    )
    .unwrap();
    // A sparse 1 GiB file with a few written blocks, and a medium file.
    let sparse = std::fs::File::create(p(root, b"sparse")).unwrap();
    for off in [0u64, 4096 * 1000, 500 << 20, (1 << 30) - 4096] {
        rustix::io::pwrite(&sparse, &[0xabu8; 4096], off).unwrap();
    }
    sparse.set_len(1 << 30).unwrap();
    let medium: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    write(b"medium", &medium);
    // Xattrs, modes, owners.
    rfs::lsetxattr(
        p(root, b"many0/file1"),
        "user.note",
        b"hello",
        XattrFlags::empty(),
    )
    .unwrap();
    rfs::lsetxattr(
        p(root, b"many0/file1"),
        "trusted.big",
        &vec![7u8; 3000],
        XattrFlags::empty(),
    )
    .unwrap();
    rfs::lsetxattr(
        p(root, b"names"),
        "user.dir",
        b"on a directory",
        XattrFlags::empty(),
    )
    .unwrap();
    rfs::lsetxattr(
        p(root, b"link"),
        "trusted.on-symlink",
        b"yes",
        XattrFlags::empty(),
    )
    .unwrap();
    rfs::chownat(
        CWD,
        p(root, b"many1"),
        Some(rfs::Uid::from_raw(1000)),
        Some(rfs::Gid::from_raw(100)),
        AtFlags::empty(),
    )
    .unwrap();
    rfs::chownat(
        CWD,
        p(root, b"link"),
        Some(rfs::Uid::from_raw(1234)),
        Some(rfs::Gid::from_raw(4321)),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
    for (rel, mode) in [
        (b"many0/file2".as_slice(), 0o4755),
        (b"many0/file4", 0o2711),
        (b"many2", 0o1777),
        (b"many3", 0o2750),
        (b"many0/file5", 0o000),
    ] {
        rfs::chmodat(
            CWD,
            p(root, rel),
            Mode::from_raw_mode(mode),
            AtFlags::empty(),
        )
        .unwrap();
    }
    // Times last, children before parents.
    let mut all = Vec::new();
    collect(root, b"", &mut all);
    all.sort_by_key(|r| std::cmp::Reverse(r.iter().filter(|&&b| b == b'/').count()));
    for (i, rel) in all.iter().enumerate() {
        set_times(
            &p(root, rel),
            1_000_000_000 + i as i64,
            (i as i64 * 7919) % 999_999_998,
        );
    }
    set_times(root, 999_999_999, 123_456_789);
}

fn collect(root: &Path, rel: &[u8], out: &mut Vec<Vec<u8>>) {
    for e in std::fs::read_dir(p(root, rel)).unwrap() {
        let e = e.unwrap();
        let mut r = rel.to_vec();
        if !r.is_empty() {
            r.push(b'/');
        }
        r.extend_from_slice(e.file_name().as_bytes());
        out.push(r.clone());
        if e.file_type().unwrap().is_dir() {
            collect(root, &r, out);
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Seen {
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u64,
    size: u64,
    rdev: u64,
    atime: (i64, u32),
    mtime: (i64, u32),
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    content: Vec<u8>,
    /// Data ranges (SEEK_DATA/SEEK_HOLE) of regular files.
    data_map: Vec<(u64, u64)>,
    links: Vec<Vec<u8>>,
}

fn data_map(path: &Path, size: u64) -> Vec<(u64, u64)> {
    let f = std::fs::File::open(path).unwrap();
    let mut out = Vec::new();
    let mut at = 0;
    while at < size {
        let Ok(start) = rfs::seek(f.as_fd(), SeekFrom::Data(at)) else {
            break;
        };
        let end = rfs::seek(f.as_fd(), SeekFrom::Hole(start)).unwrap();
        out.push((start, end));
        at = end;
    }
    out
}

/// Reads a file without moving its atime (other names of it are statted later).
fn read_noatime(path: &Path) -> Vec<u8> {
    let fd = rfs::openat(
        CWD,
        path,
        rfs::OFlags::RDONLY | rfs::OFlags::NOATIME,
        Mode::empty(),
    )
    .unwrap();
    let size = rfs::fstat(&fd).unwrap().st_size as usize;
    let mut buf = vec![0u8; size];
    let mut done = 0;
    while done < size {
        done += rustix::io::pread(&fd, &mut buf[done..], done as u64).unwrap();
    }
    buf
}

/// Everything about a tree that a copy must keep, by relative path.
fn check(root: &Path) -> BTreeMap<Vec<u8>, Seen> {
    let mut out = BTreeMap::new();
    let mut groups: BTreeMap<u64, Vec<Vec<u8>>> = BTreeMap::new();
    // Each entry is statted before it is read or listed: reading moves atimes (relatime).
    let mut pending = vec![Vec::new()];
    while let Some(rel) = pending.pop() {
        let path = if rel.is_empty() {
            root.to_path_buf()
        } else {
            p(root, &rel)
        };
        let st = rfs::statat(CWD, &path, AtFlags::SYMLINK_NOFOLLOW).unwrap();
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            for e in std::fs::read_dir(&path).unwrap() {
                let mut r = rel.clone();
                if !r.is_empty() {
                    r.push(b'/');
                }
                r.extend_from_slice(e.unwrap().file_name().as_bytes());
                pending.push(r);
            }
        }
        let ft = FileType::from_raw_mode(st.st_mode);
        let mut names = vec![0u8; 65536];
        let n = rfs::llistxattr(&path, &mut names[..]).unwrap();
        let mut xattrs = BTreeMap::new();
        for name in names[..n].split(|&b| b == 0).filter(|s| !s.is_empty()) {
            let mut v = vec![0u8; 65536];
            let len = rfs::lgetxattr(&path, OsStr::from_bytes(name), &mut v[..]).unwrap();
            xattrs.insert(name.to_vec(), v[..len].to_vec());
        }
        let (content, map) = match ft {
            FileType::RegularFile if st.st_size < 10 << 20 => {
                (read_noatime(&path), data_map(&path, st.st_size as u64))
            }
            FileType::RegularFile => (Vec::new(), data_map(&path, st.st_size as u64)),
            FileType::Symlink => (
                rfs::readlinkat(CWD, &path, Vec::new())
                    .unwrap()
                    .into_bytes(),
                Vec::new(),
            ),
            _ => (Vec::new(), Vec::new()),
        };
        if ft != FileType::Directory {
            groups.entry(st.st_ino).or_default().push(rel.clone());
        }
        out.insert(
            rel,
            Seen {
                mode: st.st_mode,
                uid: st.st_uid,
                gid: st.st_gid,
                nlink: st.st_nlink,
                size: if ft == FileType::Directory {
                    0
                } else {
                    st.st_size as u64
                },
                rdev: st.st_rdev,
                atime: (st.st_atime, st.st_atime_nsec as u32),
                mtime: (st.st_mtime, st.st_mtime_nsec as u32),
                xattrs,
                content,
                data_map: map,
                links: Vec::new(),
            },
        );
    }
    for mut paths in groups.into_values() {
        paths.sort();
        for path in &paths {
            out.get_mut(path).unwrap().links = paths.clone();
        }
    }
    out
}

#[test]
fn import_then_export_reproduces_everything() {
    let src = tempfile::tempdir().unwrap();
    build_source(src.path());
    // The host is mounted relatime: the first reading pass moves every atime to "now"
    // once; from the second pass on they stay put, so that is the state to compare with.
    check(src.path());
    let before = check(src.path());
    let (fs, sub, _) = mem_fs();
    let mut calls = 0;
    let stats = tidefs_fs::import(&sub, src.path(), &mut |_| calls += 1).unwrap();
    assert!(calls > 0, "progress is reported");
    assert_eq!(stats.hard_links, 2);
    assert_eq!(stats.symlinks, 3);
    assert_eq!(stats.specials, 3);
    // Every inode's data once (hard links are not copied again), holes not at all.
    let data_bytes: u64 = before
        .iter()
        .filter(|(path, s)| {
            s.mode & 0o170000 == 0o100000 && s.links[0] == **path && s.size < 1 << 30
        })
        .map(|(_, s)| s.size)
        .sum();
    assert_eq!(stats.bytes, data_bytes + 4 * 4096);
    assert_clean(&fs);
    let sparse = sub.getattr(sub.resolve(b"/sparse").unwrap()).unwrap();
    assert_eq!((sparse.size, sparse.blocks), (1 << 30, 4));

    let out = tempfile::tempdir().unwrap();
    let dst = out.path().join("copy");
    tidefs_fs::export(&sub, &dst, &mut |_| {}).unwrap();
    let after = check(&dst);
    let keys_b: Vec<_> = before.keys().collect();
    let keys_a: Vec<_> = after.keys().collect();
    assert_eq!(keys_b, keys_a, "same names");
    for (k, v) in &before {
        assert_eq!(Some(v), after.get(k), "{}", String::from_utf8_lossy(k));
    }
    // Export of a snapshot works the same and refuses a non-empty target.
    fs.create_snapshot("main", "s").unwrap();
    let snap = fs.snapshot("main", "s").unwrap();
    let err = tidefs_fs::export(&snap, &dst, &mut |_| {}).unwrap_err();
    assert_eq!(err.errno(), tidefs_fs::errno::EEXIST);
    let dst2 = out.path().join("from-snapshot");
    tidefs_fs::export(&snap, &dst2, &mut |_| {}).unwrap();
    assert_eq!(check(&dst2), before);
}
