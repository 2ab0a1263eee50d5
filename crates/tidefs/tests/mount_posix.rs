//! POSIX behaviour through a real mount: permissions for a non-root user, the sticky bit,
//! rename rules and flags, hard links, symlink loops, name limits, open-unlinked files,
//! SEEK_DATA/SEEK_HOLE, xattrs, fallocate, and inode numbers that survive a remount.

mod mount_common;

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use mount_common::{have, pattern, TestPool};
use rustix::io::Errno;

fn errno_of(e: std::io::Error) -> i32 {
    e.raw_os_error()
        .unwrap_or_else(|| panic!("not an OS error: {e}"))
}

fn expect_errno<T: std::fmt::Debug>(r: std::io::Result<T>, want: Errno, what: &str) {
    match r {
        Ok(v) => panic!("{what}: succeeded with {v:?}, expected {want:?}"),
        Err(e) => assert_eq!(errno_of(e), want.raw_os_error(), "{what}"),
    }
}

/// Runs `script` as user and group 65534 (nobody) and returns its combined output.
fn as_nobody(script: &str) -> String {
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "sh",
            "-c",
            script,
        ])
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn permissions_and_sticky_bit_for_a_non_root_user() {
    require_fuse!();
    if !have("setpriv") || rustix::process::getuid().as_raw() != 0 {
        eprintln!("skipped: needs root and setpriv to act as another user");
        return;
    }
    let mut p = TestPool::new();
    let mnt = p.mount("home", "mnt", &["--allow-other"]);
    fs::create_dir(mnt.join("private")).unwrap();
    fs::write(mnt.join("private/secret"), b"s").unwrap();
    fs::set_permissions(mnt.join("private"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::write(mnt.join("readonly"), b"r").unwrap();
    fs::set_permissions(mnt.join("readonly"), fs::Permissions::from_mode(0o444)).unwrap();
    fs::create_dir(mnt.join("tmp")).unwrap();
    fs::set_permissions(mnt.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::write(mnt.join("tmp/roots"), b"x").unwrap();
    fs::set_permissions(mnt.join("tmp/roots"), fs::Permissions::from_mode(0o666)).unwrap();
    let m = mnt.display();
    let out = as_nobody(&format!(
        "cat {m}/private/secret; echo rc=$?; \
         echo y > {m}/readonly; echo rc=$?; \
         touch {m}/newfile; echo rc=$?; \
         rm -f {m}/tmp/roots; echo rc=$?; \
         echo mine > {m}/tmp/mine && rm {m}/tmp/mine; echo rc=$?; \
         echo append >> {m}/tmp/roots; echo rc=$?; \
         chmod 777 {m}/readonly; echo rc=$?"
    ));
    // Exit codes differ between a failed command (1) and a failed redirection (2).
    let ok: Vec<bool> = out
        .lines()
        .filter_map(|l| l.strip_prefix("rc="))
        .map(|rc| rc == "0")
        .collect();
    assert_eq!(
        ok,
        [false, false, false, false, true, true, false],
        "output as nobody:\n{out}"
    );
    assert!(out.contains("Permission denied"), "{out}");
    assert!(out.contains("Operation not permitted"), "{out}");
    // What nobody created is nobody's.
    let out = as_nobody(&format!("mkdir {m}/tmp/d && stat -c %u:%g {m}/tmp/d"));
    assert_eq!(out.trim(), "65534:65534");
    assert_eq!(fs::read(mnt.join("tmp/roots")).unwrap(), b"xappend\n");
}

#[test]
fn rename_link_symlink_and_name_rules() {
    require_fuse!();
    let mut p = TestPool::new();
    let mnt = p.mount("home", "mnt", &[]);
    let at = |s: &str| mnt.join(s);
    fs::create_dir_all(at("a/sub")).unwrap();
    fs::create_dir(at("empty")).unwrap();
    fs::create_dir(at("full")).unwrap();
    fs::write(at("full/x"), b"x").unwrap();
    fs::write(at("file"), b"f").unwrap();
    // rename over directories: an empty one is replaced, a full one is not.
    expect_errno(
        fs::rename(at("a"), at("full")),
        Errno::NOTEMPTY,
        "dir over non-empty dir",
    );
    expect_errno(
        fs::rename(at("file"), at("empty")),
        Errno::ISDIR,
        "file over dir",
    );
    expect_errno(
        fs::rename(at("a"), at("file")),
        Errno::NOTDIR,
        "dir over file",
    );
    expect_errno(
        fs::rename(at("a"), at("a/sub/inside")),
        Errno::INVAL,
        "dir into itself",
    );
    fs::rename(at("a"), at("empty")).unwrap();
    assert!(at("empty/sub").is_dir() && !at("a").exists());
    // renameat2 flags.
    let cwd = rustix::fs::CWD;
    let r = rustix::fs::renameat_with(
        cwd,
        at("file"),
        cwd,
        at("full/x"),
        rustix::fs::RenameFlags::NOREPLACE,
    );
    assert_eq!(r, Err(Errno::EXIST));
    rustix::fs::renameat_with(
        cwd,
        at("file"),
        cwd,
        at("full/x"),
        rustix::fs::RenameFlags::EXCHANGE,
    )
    .unwrap();
    assert_eq!(fs::read(at("file")).unwrap(), b"x");
    assert_eq!(fs::read(at("full/x")).unwrap(), b"f");
    // Hard links: one inode, link count, survives removal of the other name.
    fs::hard_link(at("file"), at("empty/link")).unwrap();
    let (a, b) = (
        fs::metadata(at("file")).unwrap(),
        fs::metadata(at("empty/link")).unwrap(),
    );
    assert_eq!((a.ino(), a.nlink()), (b.ino(), 2));
    fs::remove_file(at("file")).unwrap();
    assert_eq!(fs::metadata(at("empty/link")).unwrap().nlink(), 1);
    assert_eq!(fs::read(at("empty/link")).unwrap(), b"x");
    expect_errno(
        fs::hard_link(at("empty"), at("dirlink")),
        Errno::PERM,
        "hard link to a directory",
    );
    // Symlink loops.
    std::os::unix::fs::symlink("loop2", at("loop1")).unwrap();
    std::os::unix::fs::symlink("loop1", at("loop2")).unwrap();
    expect_errno(File::open(at("loop1")), Errno::LOOP, "symlink loop");
    assert_eq!(fs::read_link(at("loop1")).unwrap(), Path::new("loop2"));
    // Name limits: 255 bytes work, 256 do not.
    let ok = "n".repeat(255);
    fs::write(at(&ok), b"long").unwrap();
    assert_eq!(fs::read(at(&ok)).unwrap(), b"long");
    let long = "n".repeat(256);
    expect_errno(
        fs::write(at(&long), b""),
        Errno::NAMETOOLONG,
        "create a 256-byte name",
    );
    expect_errno(
        fs::metadata(at(&long)),
        Errno::NAMETOOLONG,
        "stat a 256-byte name",
    );
    // Other types.
    rustix::fs::mknodat(
        cwd,
        at("fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o640),
        0,
    )
    .unwrap();
    let m = fs::symlink_metadata(at("fifo")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(&m.file_type()));
    assert_eq!(m.mode() & 0o7777, 0o640);
    // O_APPEND writes at the end whatever the offset.
    let mut f = OpenOptions::new()
        .append(true)
        .open(at("empty/link"))
        .unwrap();
    f.write_all(b"yz").unwrap();
    drop(f);
    assert_eq!(fs::read(at("empty/link")).unwrap(), b"xyz");
    p.unmount(&mnt);
    p.fsck_clean();
}

#[test]
fn open_unlinked_files_live_until_the_last_close() {
    require_fuse!();
    let mut p = TestPool::new();
    let mnt = p.mount("home", "mnt", &[]);
    let path = mnt.join("tmpfile");
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .unwrap();
    f.write_all(&pattern(1, 200_000)).unwrap();
    let mut second = File::open(&path).unwrap();
    fs::remove_file(&path).unwrap();
    assert!(!path.exists());
    // Still readable and writable through both descriptors.
    f.write_all(b"more").unwrap();
    assert_eq!(f.metadata().unwrap().nlink(), 0);
    let mut all = Vec::new();
    second.read_to_end(&mut all).unwrap();
    assert_eq!(all.len(), 200_004);
    assert_eq!(&all[..200_000], &pattern(1, 200_000)[..]);
    assert_eq!(&all[200_000..], b"more");
    drop(f);
    second.seek(SeekFrom::Start(0)).unwrap();
    let mut again = Vec::new();
    second.read_to_end(&mut again).unwrap();
    assert_eq!(again, all);
    // A new file under the old name is a different inode.
    fs::write(&path, b"new").unwrap();
    assert_ne!(
        fs::metadata(&path).unwrap().ino(),
        second.metadata().unwrap().ino()
    );
    drop(second);
    p.unmount(&mnt);
    p.fsck_clean();
}

#[test]
fn sparse_files_xattrs_and_fallocate() {
    require_fuse!();
    let mut p = TestPool::new();
    let mnt = p.mount("home", "mnt", &[]);
    let path = mnt.join("sparse");
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .unwrap();
    rustix::io::pwrite(&f, &[1u8; 4096], 0).unwrap();
    rustix::io::pwrite(&f, &[2u8; 8192], 1 << 20).unwrap();
    use rustix::fs::SeekFrom as S;
    assert_eq!(rustix::fs::seek(&f, S::Data(0)).unwrap(), 0);
    assert_eq!(rustix::fs::seek(&f, S::Hole(0)).unwrap(), 4096);
    assert_eq!(rustix::fs::seek(&f, S::Data(4096)).unwrap(), 1 << 20);
    assert_eq!(
        rustix::fs::seek(&f, S::Hole(1 << 20)).unwrap(),
        (1 << 20) + 8192
    );
    assert_eq!(
        rustix::fs::seek(&f, S::Data((1 << 20) + 8192)),
        Err(Errno::NXIO)
    );
    // Punch a hole in the second range; it reads as zeros and SEEK_DATA skips it.
    rustix::fs::fallocate(
        &f,
        rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE,
        1 << 20,
        4096,
    )
    .unwrap();
    assert_eq!(
        rustix::fs::seek(&f, S::Data(4096)).unwrap(),
        (1 << 20) + 4096
    );
    let mut buf = [9u8; 4096];
    rustix::io::pread(&f, &mut buf, 1 << 20).unwrap();
    assert!(buf.iter().all(|&b| b == 0));
    // Preallocation grows the file without data.
    rustix::fs::fallocate(&f, rustix::fs::FallocateFlags::empty(), 4 << 20, 4096).unwrap();
    assert_eq!(f.metadata().unwrap().len(), (4 << 20) + 4096);
    // xattrs: set, list, replace rules, remove, ERANGE for a small buffer.
    rustix::fs::fsetxattr(&f, "user.k", b"value", rustix::fs::XattrFlags::CREATE).unwrap();
    assert_eq!(
        rustix::fs::fsetxattr(&f, "user.k", b"v2", rustix::fs::XattrFlags::CREATE),
        Err(Errno::EXIST)
    );
    assert_eq!(
        rustix::fs::fsetxattr(&f, "user.none", b"v", rustix::fs::XattrFlags::REPLACE),
        Err(Errno::NODATA)
    );
    let mut v = [0u8; 16];
    let n = rustix::fs::fgetxattr(&f, "user.k", &mut v).unwrap();
    assert_eq!(&v[..n], b"value");
    let mut small = [0u8; 2];
    assert_eq!(
        rustix::fs::fgetxattr(&f, "user.k", &mut small),
        Err(Errno::RANGE)
    );
    let mut names = [0u8; 64];
    let n = rustix::fs::flistxattr(&f, &mut names).unwrap();
    assert_eq!(&names[..n], b"user.k\0");
    rustix::fs::fremovexattr(&f, "user.k").unwrap();
    assert_eq!(
        rustix::fs::fgetxattr(&f, "user.k", &mut v),
        Err(Errno::NODATA)
    );
    drop(f);
    p.unmount(&mnt);
    p.fsck_clean();
}

#[test]
fn inode_numbers_and_contents_are_stable_across_remounts() {
    require_fuse!();
    let mut p = TestPool::new();
    let mnt = p.mount("home", "mnt", &[]);
    fs::create_dir_all(mnt.join("d/e")).unwrap();
    for i in 0..50 {
        fs::write(mnt.join(format!("d/e/f{i}")), pattern(i, 10_000)).unwrap();
    }
    fs::create_dir(mnt.join(".snap/s")).unwrap();
    let inos = |mnt: &Path| -> Vec<(String, u64)> {
        let mut v = vec![
            ("root".to_string(), fs::metadata(mnt).unwrap().ino()),
            (
                "snapdir".to_string(),
                fs::metadata(mnt.join(".snap")).unwrap().ino(),
            ),
            (
                "snap".to_string(),
                fs::metadata(mnt.join(".snap/s")).unwrap().ino(),
            ),
            (
                "snapfile".to_string(),
                fs::metadata(mnt.join(".snap/s/d/e/f3")).unwrap().ino(),
            ),
        ];
        for i in 0..50 {
            v.push((
                format!("f{i}"),
                fs::metadata(mnt.join(format!("d/e/f{i}"))).unwrap().ino(),
            ));
        }
        v
    };
    let before = inos(&mnt);
    assert_eq!(before[0].1, 1, "the root is FUSE's inode 1");
    assert_ne!(
        before[3].1, before[4].1,
        "a snapshot's inode differs from the live one"
    );
    p.unmount(&mnt);
    let mnt = p.mount("home", "mnt", &[]);
    assert_eq!(inos(&mnt), before);
    for i in 0..50 {
        assert_eq!(
            fs::read(mnt.join(format!("d/e/f{i}"))).unwrap(),
            pattern(i, 10_000)
        );
    }
}

/// A valid `security.capability` value (revision 2, effective, cap_net_raw permitted).
const FILE_CAPS: [u8; 20] = [
    0x01, 0, 0, 0x02, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

fn file_caps(path: &Path) -> Option<Vec<u8>> {
    let mut v = [0u8; 64];
    match rustix::fs::getxattr(path, "security.capability", &mut v) {
        Ok(n) => Some(v[..n].to_vec()),
        Err(Errno::NODATA) => None,
        Err(e) => panic!("getxattr {}: {e}", path.display()),
    }
}

#[test]
fn writes_truncates_and_chown_drop_privileges_as_linux_does() {
    // The mount asks for FUSE_HANDLE_KILLPRIV_V2, so dropping setuid and setgid is left to
    // tidefs. File capabilities the kernel still removes itself (it reads
    // security.capability once per inode and sends REMOVEXATTR); tidefs-fs drops them too,
    // tested in its own crate. What a user sees must be what Linux does.
    require_fuse!();
    if !have("setpriv") || rustix::process::getuid().as_raw() != 0 {
        eprintln!("skipped: needs root (file capabilities) and setpriv");
        return;
    }
    let mut p = TestPool::new();
    let mnt = p.mount("home", "mnt", &["--allow-other"]);
    type Change = fn(&Path);
    let changes: [(&str, Change); 4] = [
        ("write", |f| {
            OpenOptions::new()
                .append(true)
                .open(f)
                .unwrap()
                .write_all(b"more")
                .unwrap()
        }),
        ("truncate", |f| {
            File::options()
                .write(true)
                .open(f)
                .unwrap()
                .set_len(2)
                .unwrap()
        }),
        ("truncate to the same size", |f| {
            let len = fs::metadata(f).unwrap().len();
            File::options()
                .write(true)
                .open(f)
                .unwrap()
                .set_len(len)
                .unwrap()
        }),
        ("chown", |f| {
            std::os::unix::fs::chown(f, Some(1), Some(1)).unwrap()
        }),
    ];
    for (what, change) in changes {
        let f = mnt.join(format!("caps-{}", what.replace(' ', "-")));
        fs::write(&f, b"program").unwrap();
        rustix::fs::setxattr(
            &f,
            "security.capability",
            &FILE_CAPS,
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
        assert_eq!(
            file_caps(&f).as_deref(),
            Some(&FILE_CAPS[..]),
            "{what}: set"
        );
        change(&f);
        assert_eq!(file_caps(&f), None, "{what} drops file capabilities");
    }
    // A read or a chmod keeps them.
    let kept = mnt.join("caps-kept");
    fs::write(&kept, b"program").unwrap();
    rustix::fs::setxattr(
        &kept,
        "security.capability",
        &FILE_CAPS,
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    fs::read(&kept).unwrap();
    fs::set_permissions(&kept, fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(file_caps(&kept).as_deref(), Some(&FILE_CAPS[..]));

    // setuid and setgid: gone after a write by a user without CAP_FSETID, every time;
    // kept after root's write.
    let s = mnt.join("setuid");
    fs::write(&s, b"x").unwrap();
    for round in 0..2 {
        fs::set_permissions(&s, fs::Permissions::from_mode(0o6777)).unwrap();
        let out = as_nobody(&format!("printf y >> '{}'", s.display()));
        assert!(out.is_empty(), "round {round}: {out}");
        let mode = fs::metadata(&s).unwrap().mode() & 0o7777;
        assert_eq!(
            mode, 0o0777,
            "round {round}: a non-root write clears setuid and setgid"
        );
    }
    fs::set_permissions(&s, fs::Permissions::from_mode(0o4755)).unwrap();
    OpenOptions::new()
        .append(true)
        .open(&s)
        .unwrap()
        .write_all(b"z")
        .unwrap();
    assert_eq!(
        fs::metadata(&s).unwrap().mode() & 0o7777,
        0o4755,
        "root keeps setuid"
    );
    assert_eq!(fs::read(&s).unwrap(), b"xyyz");
}
