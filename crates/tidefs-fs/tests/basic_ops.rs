//! Proves the single operations: each does what Linux does, fails with Linux's errno, and
//! leaves the namespace consistent.

mod common;

use common::{assert_clean, mem_fs, ROOT};
use tidefs_fs::{
    errno, falloc, rename_flags, xattr_flags, FileKind, SetAttr, TimeSet, Timespec, ROOT_INO,
};

fn e<T: std::fmt::Debug>(r: tidefs_fs::Result<T>) -> i32 {
    r.unwrap_err().errno()
}

#[test]
fn create_lookup_readdir_unlink() {
    let (fs, sub, _) = mem_fs();
    let d = sub.mkdir(ROOT_INO, b"d", 0o755, &ROOT).unwrap();
    let f = sub.create(d.ino, b"f", 0o644, &ROOT).unwrap();
    assert_eq!(sub.lookup(d.ino, b"f").unwrap().ino, f.ino);
    assert_eq!(sub.lookup(d.ino, b"..").unwrap().ino, ROOT_INO);
    assert_eq!(e(sub.create(d.ino, b"f", 0o644, &ROOT)), errno::EEXIST);
    assert_eq!(e(sub.lookup(d.ino, b"nope")), errno::ENOENT);
    assert_eq!(e(sub.lookup(f.ino, b"x")), errno::ENOTDIR);
    assert_eq!(
        e(sub.create(d.ino, &[b'n'; 256], 0o644, &ROOT)),
        errno::ENAMETOOLONG
    );
    assert_eq!(e(sub.create(d.ino, b"a/b", 0o644, &ROOT)), errno::EINVAL);
    assert_eq!(sub.getattr(ROOT_INO).unwrap().nlink, 3);
    let names: Vec<Vec<u8>> = sub
        .readdir(d.ino, 0, 100)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, vec![b".".to_vec(), b"..".to_vec(), b"f".to_vec()]);
    assert_eq!(e(sub.rmdir(ROOT_INO, b"d", &ROOT)), errno::ENOTEMPTY);
    assert_eq!(e(sub.unlink(ROOT_INO, b"d", &ROOT)), errno::EISDIR);
    assert_eq!(e(sub.rmdir(d.ino, b"f", &ROOT)), errno::ENOTDIR);
    sub.unlink(d.ino, b"f", &ROOT).unwrap();
    assert_eq!(e(sub.getattr(f.ino)), errno::ENOENT);
    sub.rmdir(ROOT_INO, b"d", &ROOT).unwrap();
    assert_eq!(sub.getattr(ROOT_INO).unwrap().nlink, 2);
    assert_eq!(sub.getattr(ROOT_INO).unwrap().size, 0);
    assert_clean(&fs);
}

#[test]
fn readdir_cookies_survive_removals() {
    let (fs, sub, _) = mem_fs();
    for i in 0..50 {
        sub.create(ROOT_INO, format!("f{i:02}").as_bytes(), 0o644, &ROOT)
            .unwrap();
    }
    let first = sub.readdir(ROOT_INO, 0, 12).unwrap();
    assert_eq!(first.len(), 12);
    let cookie = first.last().unwrap().next_cookie;
    // Removing entries already listed must not make the listing skip or repeat any.
    for i in 0..10 {
        sub.unlink(ROOT_INO, format!("f{i:02}").as_bytes(), &ROOT)
            .unwrap();
    }
    let mut seen: Vec<Vec<u8>> = first.into_iter().skip(2).map(|e| e.name).collect();
    let mut c = cookie;
    loop {
        let batch = sub.readdir(ROOT_INO, c, 7).unwrap();
        if batch.is_empty() {
            break;
        }
        c = batch.last().unwrap().next_cookie;
        seen.extend(batch.into_iter().map(|e| e.name));
    }
    let want: Vec<Vec<u8>> = (0..50).map(|i| format!("f{i:02}").into_bytes()).collect();
    assert_eq!(seen, want);
    assert_clean(&fs);
}

#[test]
fn write_read_inline_extents_holes_and_truncate() {
    let (fs, sub, _) = mem_fs();
    let f = sub.create(ROOT_INO, b"f", 0o644, &ROOT).unwrap();
    sub.write(f.ino, 0, b"hello", &ROOT).unwrap();
    assert_eq!(sub.read(f.ino, 0, 100).unwrap(), b"hello");
    assert_eq!(
        sub.getattr(f.ino).unwrap().blocks,
        0,
        "small files are inline"
    );
    // Growing past the inline limit moves the data into blocks.
    let big: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    sub.write(f.ino, 3, &big, &ROOT).unwrap();
    let mut want = b"hel".to_vec();
    want.extend_from_slice(&big);
    assert_eq!(sub.read(f.ino, 0, 1 << 20).unwrap(), want);
    assert_eq!(sub.getattr(f.ino).unwrap().blocks, 3);
    // A sparse write far away leaves a hole that reads as zeros.
    sub.write(f.ino, 1 << 30, b"end", &ROOT).unwrap();
    let a = sub.getattr(f.ino).unwrap();
    assert_eq!(a.size, (1 << 30) + 3);
    assert_eq!(a.blocks, 4);
    assert_eq!(sub.read(f.ino, 100_000, 10).unwrap(), vec![0; 10]);
    // Overwrite in the middle of an extent splits it.
    sub.write(f.ino, 5000, b"XYZ", &ROOT).unwrap();
    want[5000..5003].copy_from_slice(b"XYZ");
    assert_eq!(sub.read(f.ino, 0, want.len() as u64).unwrap(), want);
    // Truncate down zeroes the tail of the last block, so growing again shows zeros.
    sub.truncate(f.ino, 4500, &ROOT).unwrap();
    sub.truncate(f.ino, 9000, &ROOT).unwrap();
    let got = sub.read(f.ino, 0, 9000).unwrap();
    assert_eq!(&got[..4500], &want[..4500]);
    assert!(got[4500..].iter().all(|&b| b == 0));
    assert_eq!(e(sub.read(ROOT_INO, 0, 1)), errno::EISDIR);
    assert_eq!(e(sub.truncate(ROOT_INO, 0, &ROOT)), errno::EISDIR);
    assert_clean(&fs);
}

#[test]
fn fallocate_keep_size_and_punch_hole() {
    let (fs, sub, _) = mem_fs();
    let f = sub.create(ROOT_INO, b"f", 0o644, &ROOT).unwrap();
    let data = vec![7u8; 5 * 4096];
    sub.write(f.ino, 0, &data, &ROOT).unwrap();
    sub.fallocate(f.ino, falloc::PUNCH_HOLE | falloc::KEEP_SIZE, 100, 3 * 4096)
        .unwrap();
    let got = sub.read(f.ino, 0, 1 << 20).unwrap();
    assert_eq!(got.len(), 5 * 4096);
    assert!(got[..100].iter().all(|&b| b == 7));
    assert!(got[100..100 + 3 * 4096].iter().all(|&b| b == 0));
    assert!(got[100 + 3 * 4096..].iter().all(|&b| b == 7));
    sub.fallocate(f.ino, falloc::KEEP_SIZE, 0, 10 * 4096)
        .unwrap();
    let a = sub.getattr(f.ino).unwrap();
    assert_eq!(a.size, 5 * 4096);
    assert_eq!(a.blocks, 10);
    sub.fallocate(f.ino, 0, 0, 12 * 4096).unwrap();
    assert_eq!(sub.getattr(f.ino).unwrap().size, 12 * 4096);
    assert_eq!(sub.read(f.ino, 11 * 4096, 10).unwrap(), vec![0; 10]);
    assert_eq!(
        e(sub.fallocate(f.ino, falloc::PUNCH_HOLE, 0, 1)),
        errno::EOPNOTSUPP
    );
    assert_eq!(e(sub.fallocate(f.ino, 0, 0, 0)), errno::EINVAL);
    assert_clean(&fs);
}

#[test]
fn hard_links_symlinks_and_special_files() {
    let (fs, sub, _) = mem_fs();
    let a = sub.mkdir(ROOT_INO, b"a", 0o755, &ROOT).unwrap();
    let b = sub.mkdir(ROOT_INO, b"b", 0o755, &ROOT).unwrap();
    let f = sub.create(a.ino, b"f", 0o644, &ROOT).unwrap();
    sub.link(f.ino, b.ino, b"g").unwrap();
    assert_eq!(sub.getattr(f.ino).unwrap().nlink, 2);
    assert_eq!(
        sub.paths(f.ino).unwrap(),
        vec![b"/a/f".to_vec(), b"/b/g".to_vec()]
    );
    assert_eq!(e(sub.link(a.ino, b.ino, b"x")), errno::EPERM);
    assert_eq!(e(sub.link(f.ino, b.ino, b"g")), errno::EEXIST);
    let target = vec![b't'; 4095];
    let s = sub.symlink(ROOT_INO, b"s", &target, &ROOT).unwrap();
    assert_eq!(sub.readlink(s.ino).unwrap(), target);
    assert_eq!(s.size, 4095);
    assert_eq!(
        e(sub.symlink(ROOT_INO, b"s2", &[b't'; 4096], &ROOT)),
        errno::ENAMETOOLONG
    );
    let fifo = sub.mknod(ROOT_INO, b"p", 0o010644, 0, &ROOT).unwrap();
    assert_eq!(fifo.kind(), FileKind::Fifo);
    let dev = sub.mknod(ROOT_INO, b"c", 0o020600, 0x0501, &ROOT).unwrap();
    assert_eq!((dev.kind(), dev.rdev), (FileKind::CharDevice, 0x0501));
    assert_eq!(
        e(sub.mknod(ROOT_INO, b"d", 0o040755, 0, &ROOT)),
        errno::EPERM
    );
    assert_eq!(sub.resolve(b"/b/g").unwrap(), f.ino);
    assert_eq!(sub.resolve(b"/a/../b/./g").unwrap(), f.ino);
    sub.unlink(a.ino, b"f", &ROOT).unwrap();
    assert_eq!(sub.getattr(f.ino).unwrap().nlink, 1);
    assert_clean(&fs);
}

#[test]
fn rename_semantics() {
    let (fs, sub, _) = mem_fs();
    let a = sub.mkdir(ROOT_INO, b"a", 0o755, &ROOT).unwrap();
    let b = sub.mkdir(a.ino, b"b", 0o755, &ROOT).unwrap();
    let f = sub.create(ROOT_INO, b"f", 0o644, &ROOT).unwrap();
    let g = sub.create(ROOT_INO, b"g", 0o644, &ROOT).unwrap();
    assert_eq!(
        e(sub.rename(ROOT_INO, b"a", b.ino, b"x", 0, &ROOT)),
        errno::EINVAL
    );
    assert_eq!(
        e(sub.rename(ROOT_INO, b"a", a.ino, b"x", 0, &ROOT)),
        errno::EINVAL
    );
    assert_eq!(
        e(sub.rename(b.ino, b"nope", ROOT_INO, b"x", 0, &ROOT)),
        errno::ENOENT
    );
    assert_eq!(
        e(sub.rename(ROOT_INO, b"f", ROOT_INO, b"a", 0, &ROOT)),
        errno::EISDIR
    );
    assert_eq!(
        e(sub.rename(ROOT_INO, b"a", ROOT_INO, b"f", 0, &ROOT)),
        errno::ENOTDIR
    );
    assert_eq!(
        e(sub.rename(
            ROOT_INO,
            b"f",
            ROOT_INO,
            b"g",
            rename_flags::NOREPLACE,
            &ROOT
        )),
        errno::EEXIST
    );
    assert_eq!(
        e(sub.rename(
            ROOT_INO,
            b"f",
            ROOT_INO,
            b"h",
            rename_flags::EXCHANGE,
            &ROOT
        )),
        errno::ENOENT
    );
    assert_eq!(
        e(sub.rename(ROOT_INO, b"f", ROOT_INO, b"g", 3, &ROOT)),
        errno::EINVAL
    );
    // Target directory that is an ancestor of the source: ENOTEMPTY.
    let c = sub.mkdir(ROOT_INO, b"c", 0o755, &ROOT).unwrap();
    assert_eq!(
        e(sub.rename(b.ino, b"..", ROOT_INO, b"c", 0, &ROOT)),
        errno::EBUSY
    );
    sub.create(b.ino, b"in_b", 0o644, &ROOT).unwrap();
    assert_eq!(
        e(sub.rename(ROOT_INO, b"c", a.ino, b"b", 0, &ROOT)),
        errno::ENOTEMPTY
    );
    // Replace a file.
    sub.rename(ROOT_INO, b"f", ROOT_INO, b"g", 0, &ROOT)
        .unwrap();
    assert_eq!(sub.lookup(ROOT_INO, b"g").unwrap().ino, f.ino);
    assert_eq!(e(sub.getattr(g.ino)), errno::ENOENT);
    // Move a directory over an empty one in another parent: link counts follow.
    sub.rename(ROOT_INO, b"c", a.ino, b"c2", 0, &ROOT).unwrap();
    assert_eq!(sub.getattr(a.ino).unwrap().nlink, 4);
    assert_eq!(sub.getattr(ROOT_INO).unwrap().nlink, 3);
    let d = sub.mkdir(ROOT_INO, b"d", 0o755, &ROOT).unwrap();
    sub.rename(ROOT_INO, b"d", a.ino, b"c2", 0, &ROOT).unwrap();
    assert_eq!(e(sub.getattr(c.ino)), errno::ENOENT);
    assert_eq!(sub.lookup(a.ino, b"c2").unwrap().ino, d.ino);
    // Exchange a file and a directory across parents.
    sub.rename(ROOT_INO, b"g", a.ino, b"b", rename_flags::EXCHANGE, &ROOT)
        .unwrap();
    assert_eq!(sub.lookup(ROOT_INO, b"g").unwrap().ino, b.ino);
    assert_eq!(sub.lookup(a.ino, b"b").unwrap().ino, f.ino);
    assert_eq!(sub.lookup(b.ino, b"..").unwrap().ino, ROOT_INO);
    assert_eq!(sub.paths(b.ino).unwrap(), vec![b"/g".to_vec()]);
    // Renaming one hard link onto another of the same inode does nothing.
    sub.link(f.ino, ROOT_INO, b"f2").unwrap();
    sub.rename(ROOT_INO, b"f2", a.ino, b"b", 0, &ROOT).unwrap();
    assert_eq!(sub.getattr(f.ino).unwrap().nlink, 2);
    assert_clean(&fs);
}

#[test]
fn xattrs() {
    let (fs, sub, _) = mem_fs();
    let f = sub.create(ROOT_INO, b"f", 0o644, &ROOT).unwrap();
    sub.setxattr(f.ino, b"user.a", b"1", 0).unwrap();
    let big: Vec<u8> = (0..65536u32).map(|i| i as u8).collect();
    sub.setxattr(f.ino, b"trusted.big", &big, 0).unwrap();
    assert_eq!(sub.getxattr(f.ino, b"trusted.big").unwrap(), big);
    assert_eq!(
        e(sub.setxattr(f.ino, b"user.a", b"2", xattr_flags::CREATE)),
        errno::EEXIST
    );
    assert_eq!(
        e(sub.setxattr(f.ino, b"user.b", b"2", xattr_flags::REPLACE)),
        errno::ENODATA
    );
    assert_eq!(
        e(sub.setxattr(f.ino, b"user.c", &[0; 65537], 0)),
        errno::E2BIG
    );
    assert_eq!(e(sub.setxattr(f.ino, b"os2.x", b"", 0)), errno::EOPNOTSUPP);
    assert_eq!(e(sub.getxattr(f.ino, b"user.none")), errno::ENODATA);
    sub.setxattr(f.ino, b"trusted.big", b"small now", 0)
        .unwrap();
    assert_eq!(sub.getxattr(f.ino, b"trusted.big").unwrap(), b"small now");
    assert_eq!(
        sub.listxattr(f.ino).unwrap(),
        vec![b"trusted.big".to_vec(), b"user.a".to_vec()]
    );
    sub.removexattr(f.ino, b"user.a").unwrap();
    assert_eq!(e(sub.removexattr(f.ino, b"user.a")), errno::ENODATA);
    let s = sub.symlink(ROOT_INO, b"s", b"f", &ROOT).unwrap();
    assert_eq!(e(sub.setxattr(s.ino, b"user.a", b"1", 0)), errno::EPERM);
    sub.setxattr(s.ino, b"trusted.a", b"1", 0).unwrap();
    assert_clean(&fs);
}

#[test]
fn writes_truncates_clones_and_chown_drop_file_capabilities() {
    // As Linux: a changed program loses the privileges granted to the old one, even when
    // root changes it; reads, chmod and other xattrs leave them.
    let (fs, sub, _) = mem_fs();
    let caps: &[u8] = b"caps";
    let with_caps = |name: &[u8]| {
        let f = sub.create(ROOT_INO, name, 0o755, &ROOT).unwrap();
        sub.write(f.ino, 0, &[7u8; 8192], &ROOT).unwrap();
        sub.setxattr(f.ino, b"security.capability", caps, 0)
            .unwrap();
        sub.setxattr(f.ino, b"user.keep", b"k", 0).unwrap();
        f.ino
    };
    let has_caps = |ino: u64| sub.getxattr(ino, b"security.capability").is_ok();
    let w = with_caps(b"w");
    sub.write(w, 3, b"x", &ROOT).unwrap();
    assert!(!has_caps(w), "write");
    assert_eq!(sub.getxattr(w, b"user.keep").unwrap(), b"k");
    let t = with_caps(b"t");
    sub.truncate(t, 8192, &ROOT).unwrap();
    assert!(!has_caps(t), "truncate, even to the same size");
    let c = with_caps(b"c");
    let chown = SetAttr {
        uid: Some(5),
        ..Default::default()
    };
    sub.setattr(c, &chown, &ROOT).unwrap();
    assert!(!has_caps(c), "chown");
    let k = with_caps(b"k");
    let chmod = SetAttr {
        mode: Some(0o700),
        ..Default::default()
    };
    sub.setattr(k, &chmod, &ROOT).unwrap();
    sub.read(k, 0, 100).unwrap();
    assert!(has_caps(k), "chmod and read keep them");
    sub.clone_range(&sub, w, 0, k, 0, 4096, &ROOT).unwrap();
    assert!(!has_caps(k), "a clone into the file");
    assert_clean(&fs);
}

#[test]
fn setattr_times_and_setid_rules() {
    let (fs, sub, clock) = mem_fs();
    let user = tidefs_fs::Caller::new(1000, 1000);
    let f = sub.create(ROOT_INO, b"f", 0o6755, &user).unwrap();
    assert_eq!((f.uid, f.gid), (1000, 1000));
    clock.advance_nanos(1_500);
    sub.write(f.ino, 0, b"x", &user).unwrap();
    let a = sub.getattr(f.ino).unwrap();
    assert_eq!(
        a.mode & 0o7777,
        0o0755,
        "a write by a non-root user clears setuid and setgid"
    );
    assert_eq!(a.mtime, Timespec::new(1_700_000_000, 1_500));
    sub.setattr(
        f.ino,
        &SetAttr {
            mode: Some(0o4755),
            ..Default::default()
        },
        &user,
    )
    .unwrap();
    sub.setattr(
        f.ino,
        &SetAttr {
            uid: Some(7),
            ..Default::default()
        },
        &ROOT,
    )
    .unwrap();
    assert_eq!(
        sub.getattr(f.ino).unwrap().mode & 0o7777,
        0o755,
        "chown clears setuid, even by root"
    );
    let t = Timespec::new(12, 345_678_901);
    let a = sub
        .setattr(
            f.ino,
            &SetAttr {
                atime: Some(TimeSet::At(t)),
                mtime: Some(TimeSet::Now),
                ..Default::default()
            },
            &ROOT,
        )
        .unwrap();
    assert_eq!(
        (a.atime, a.mtime, a.ctime),
        (t, clock_now(&clock), clock_now(&clock))
    );
    // mkdir ignores setgid in its mode (only chmod sets it); setgid directories hand
    // down their group and the bit.
    let d = sub.mkdir(ROOT_INO, b"d", 0o2775, &ROOT).unwrap();
    assert_eq!(d.mode & 0o7777, 0o775);
    sub.setattr(
        d.ino,
        &SetAttr {
            gid: Some(50),
            mode: Some(0o2775),
            ..Default::default()
        },
        &ROOT,
    )
    .unwrap();
    let sd = sub.mkdir(d.ino, b"sd", 0o755, &user).unwrap();
    assert_eq!((sd.gid, sd.mode & 0o7777), (50, 0o2755));
    // Sticky directories: only owners remove.
    let t = sub.mkdir(ROOT_INO, b"t", 0o1777, &ROOT).unwrap();
    sub.create(t.ino, b"root_file", 0o644, &ROOT).unwrap();
    assert_eq!(e(sub.unlink(t.ino, b"root_file", &user)), errno::EPERM);
    sub.create(t.ino, b"mine", 0o644, &user).unwrap();
    sub.unlink(t.ino, b"mine", &user).unwrap();
    assert_clean(&fs);
}

fn clock_now(c: &tidefs_fs::ManualClock) -> Timespec {
    use tidefs_fs::Clock;
    c.now()
}

#[test]
fn open_unlinked_files_live_until_release_or_remount() {
    let (fs, sub, _) = mem_fs();
    let f = sub.create(ROOT_INO, b"f", 0o644, &ROOT).unwrap();
    sub.write(f.ino, 0, &vec![1u8; 10_000], &ROOT).unwrap();
    sub.open(f.ino).unwrap();
    sub.unlink(ROOT_INO, b"f", &ROOT).unwrap();
    assert_eq!(sub.getattr(f.ino).unwrap().nlink, 0);
    assert_eq!(sub.read(f.ino, 9_990, 100).unwrap(), vec![1u8; 10]);
    assert_clean(&fs);
    sub.release(f.ino).unwrap();
    assert_eq!(e(sub.getattr(f.ino)), errno::ENOENT);
    // An orphan left by a process that stopped is freed when the pool is opened again.
    let g = sub.create(ROOT_INO, b"g", 0o644, &ROOT).unwrap();
    sub.open(g.ino).unwrap();
    sub.unlink(ROOT_INO, b"g", &ROOT).unwrap();
    fs.fsync().unwrap();
    let reopened = tidefs_fs::Fs::open(
        fs.pool().clone(),
        std::sync::Arc::new(tidefs_fs::SystemClock),
    )
    .unwrap();
    let sub2 = reopened.subvolume("main").unwrap();
    assert_eq!(e(sub2.getattr(g.ino)), errno::ENOENT);
    assert_clean(&reopened);
}

#[test]
fn data_corruption_is_an_eio_naming_inode_and_offset() {
    use std::sync::Arc;
    use tidefs_store::{BlockDevice, CreateOptions, MemDevice, OpenOptions, Pool};
    let device = Arc::new(MemDevice::new());
    let pool = Pool::create(
        device.clone(),
        &CreateOptions::default(),
        &OpenOptions::default(),
    )
    .unwrap();
    let fs = tidefs_fs::Fs::format(pool, Arc::new(tidefs_fs::SystemClock)).unwrap();
    fs.create_subvolume("main", &ROOT).unwrap();
    let sub = fs.subvolume("main").unwrap();
    let f = sub.create(ROOT_INO, b"f", 0o644, &ROOT).unwrap();
    sub.write(f.ino, 0, &vec![9u8; 3 * 4096], &ROOT).unwrap();
    fs.fsync().unwrap();
    let ext = match &sub.extents(f.ino).unwrap()[0].kind {
        tidefs_fs::ExtentKind::Data { extent, .. } => *extent,
        other => panic!("{other:?}"),
    };
    // Flip one byte of the file's second block behind the store's back.
    device
        .write_at(ext.block * 4096 + 4096 + 17, &[0x55])
        .unwrap();
    let err = sub.read(f.ino, 0, 3 * 4096).unwrap_err();
    assert_eq!(err.errno(), errno::EIO);
    match err {
        tidefs_fs::FsError::DataCorrupt { ino, offset, .. } => {
            assert_eq!((ino, offset), (f.ino, 4096))
        }
        other => panic!("{other}"),
    }
    // The undamaged blocks still read.
    assert_eq!(sub.read(f.ino, 8192, 4096).unwrap(), vec![9u8; 4096]);
    assert!(
        !fs.fsck(true).unwrap().is_empty(),
        "fsck with data verification reports the damage"
    );
}
