//! Everyday tools work on a tidefs mount: tar, diff, rsync, git, sqlite3, cp (copy_file_range).

mod mount_common;

use std::path::Path;
use std::process::Command;

use mount_common::{have, pattern, run, sh, TestPool};

/// A tar of this repository's crates/ directory (a real source tree), made for the test.
fn source_tar(into: &Path) -> std::path::PathBuf {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let tar = into.join("src.tar");
    run(Command::new("tar")
        .arg("-cf")
        .arg(&tar)
        .arg("--exclude=target")
        .arg("-C")
        .arg(crates.parent().unwrap())
        .arg("crates"));
    tar
}

#[test]
fn tar_extract_matches_the_source_and_survives_remount() {
    require_fuse!();
    let mut p = TestPool::new();
    let host = p.mkdir("host");
    let tar = source_tar(p.dir.path());
    run(Command::new("tar")
        .arg("-xf")
        .arg(&tar)
        .arg("-C")
        .arg(&host));
    let mnt = p.mount("home", "mnt", &[]);
    run(Command::new("tar")
        .arg("-xpf")
        .arg(&tar)
        .arg("-C")
        .arg(&mnt));
    run(Command::new("diff")
        .arg("-r")
        .arg("--no-dereference")
        .arg(&host)
        .arg(&mnt));
    p.unmount(&mnt);
    p.fsck_clean();
    let mnt = p.mount("home", "mnt", &[]);
    run(Command::new("diff")
        .arg("-r")
        .arg("--no-dereference")
        .arg(&host)
        .arg(&mnt));
    // tar's own view: listing the mount gives back every name of the archive.
    let a = sh(&format!("tar -tf {} | sort", tar.display())).stdout;
    let b = sh(&format!(
        "cd {} && tar -cf - crates | tar -tf - | sort",
        mnt.display()
    ))
    .stdout;
    assert_eq!(String::from_utf8_lossy(&a), String::from_utf8_lossy(&b));
}

#[test]
fn rsync_in_and_out_preserves_everything() {
    require_fuse!();
    if !have("rsync") {
        eprintln!("skipped: rsync is not installed");
        return;
    }
    let mut p = TestPool::new();
    let src = p.mkdir("src");
    run(Command::new("tar")
        .arg("-xf")
        .arg(source_tar(p.dir.path()))
        .arg("-C")
        .arg(&src));
    // Things tar trees rarely have: hard links, symlinks, odd modes, a sparse file, xattrs.
    sh(&format!(
        "cd {} && ln crates/Cargo.toml.hard 2>/dev/null; echo x > plain && ln plain hardlink && \
         ln -s plain symlink && chmod 0741 plain && truncate -s 5M sparse && \
         printf tail >> sparse && mkdir -m 1777 sticky && setfattr -n user.color -v blue plain 2>/dev/null; true",
        src.display()
    ));
    let mnt = p.mount("home", "mnt", &[]);
    let flags = "-aHS --xattrs";
    sh(&format!(
        "rsync {flags} {}/ {}/in/",
        src.display(),
        mnt.display()
    ));
    let out = p.mkdir("out");
    sh(&format!(
        "rsync {flags} {}/in/ {}/",
        mnt.display(),
        out.display()
    ));
    run(Command::new("diff")
        .arg("-r")
        .arg("--no-dereference")
        .arg(&src)
        .arg(&out));
    // A second rsync finds nothing to send: sizes, times and modes came back exactly.
    let again = sh(&format!(
        "rsync {flags} --itemize-changes {}/ {}/in/",
        src.display(),
        mnt.display()
    ));
    assert_eq!(
        String::from_utf8_lossy(&again.stdout).trim(),
        "",
        "rsync found differences"
    );
    let ino = |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
    assert_eq!(ino(&mnt.join("in/plain")), ino(&mnt.join("in/hardlink")));
}

#[test]
fn git_init_commit_branch_and_fsck() {
    require_fuse!();
    if !have("git") {
        eprintln!("skipped: git is not installed");
        return;
    }
    let mut p = TestPool::new();
    let mnt = p.mount("home", "mnt", &[]);
    let repo = mnt.join("repo");
    let git = |args: &str| {
        sh(&format!(
            "cd {} && git -c user.name=t -c user.email=t@e -c init.defaultBranch=main {args}",
            repo.display()
        ))
    };
    std::fs::create_dir(&repo).unwrap();
    git("init -q");
    for i in 0..20 {
        std::fs::write(
            repo.join(format!("f{i}.txt")),
            pattern(i, 3000 + i as usize * 100),
        )
        .unwrap();
    }
    git("add -A && git -c user.name=t -c user.email=t@e commit -q -m one");
    git("checkout -q -b topic");
    std::fs::write(repo.join("f3.txt"), b"changed on topic\n").unwrap();
    std::fs::remove_file(repo.join("f4.txt")).unwrap();
    git("commit -q -am two && git checkout -q main");
    assert_eq!(
        std::fs::read(repo.join("f4.txt")).unwrap(),
        pattern(4, 3400)
    );
    git("merge -q topic");
    git("gc -q");
    git("fsck --strict --full");
    let log = git("log --oneline");
    assert_eq!(String::from_utf8_lossy(&log.stdout).lines().count(), 2);
    p.unmount(&mnt);
    let mnt = p.mount("home", "mnt", &[]);
    sh(&format!(
        "cd {}/repo && git fsck --strict --full && git status --porcelain",
        mnt.display()
    ));
}

#[test]
fn sqlite_database_stays_intact() {
    require_fuse!();
    if !have("sqlite3") {
        eprintln!("skipped: sqlite3 is not installed");
        return;
    }
    let mut p = TestPool::new();
    let mnt = p.mount("home", "mnt", &[]);
    let db = mnt.join("t.db");
    let sql = |q: &str| run(Command::new("sqlite3").arg(&db).arg(q)).stdout;
    sql("PRAGMA journal_mode=WAL; CREATE TABLE t(k INTEGER PRIMARY KEY, v BLOB);");
    sql(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 20000) \
         INSERT INTO t SELECT i, randomblob(100 + i % 300) FROM n;",
    );
    sql("DELETE FROM t WHERE k % 3 = 0; VACUUM;");
    sql("PRAGMA journal_mode=DELETE; UPDATE t SET v = zeroblob(50) WHERE k % 7 = 0;");
    assert_eq!(
        String::from_utf8_lossy(&sql("PRAGMA integrity_check;")).trim(),
        "ok"
    );
    assert_eq!(
        String::from_utf8_lossy(&sql("SELECT count(*) FROM t;")).trim(),
        "13334"
    );
    p.unmount(&mnt);
    let mnt = p.mount("home", "mnt", &[]);
    let db = mnt.join("t.db");
    let out = run(Command::new("sqlite3")
        .arg(&db)
        .arg("PRAGMA integrity_check; SELECT count(*) FROM t;"));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok\n13334");
}

/// Bytes the pool holds, from `tidefs df --json` (the pool must not be mounted).
fn used_bytes(p: &TestPool) -> u64 {
    let out = p.tidefs(&["df", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let df: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    df["used_bytes"].as_u64().unwrap()
}

#[test]
fn copy_file_range_and_cp_copy_whole_files_sharing_their_blocks() {
    require_fuse!();
    let mut p = TestPool::new();
    let mnt = p.mount("home", "mnt", &[]);
    // 24 MiB and a partial block: the copy clones up to the source's end of file.
    let data = pattern(7, (24 << 20) + 1234);
    std::fs::write(mnt.join("src"), &data).unwrap();
    p.unmount(&mnt);
    let used_before = used_bytes(&p);
    let mnt = p.mount("home", "mnt", &[]);
    // copy_file_range(2) between two files of the mount: the kernel hands it to tidefs as one
    // request (FUSE_COPY_FILE_RANGE), including a range in the middle of the target.
    let src = std::fs::File::open(mnt.join("src")).unwrap();
    let dst = std::fs::File::create(mnt.join("dst")).unwrap();
    let (mut off_in, mut off_out) = (0u64, 0u64);
    while off_in < data.len() as u64 {
        let n =
            rustix::fs::copy_file_range(&src, Some(&mut off_in), &dst, Some(&mut off_out), 3 << 20)
                .unwrap();
        assert!(n > 0);
    }
    // Offsets that differ within a block cannot share blocks: copied as data.
    let mut off_in = 1000u64;
    let mut off_out = 30u64 << 20;
    let n = rustix::fs::copy_file_range(&src, Some(&mut off_in), &dst, Some(&mut off_out), 4096)
        .unwrap();
    assert_eq!(n, 4096);
    // Offsets alike within a block: an unaligned head and tail around cloned blocks.
    let mut off_in = 100u64;
    let mut off_out = (40u64 << 20) + 100;
    let n = rustix::fs::copy_file_range(
        &src,
        Some(&mut off_in),
        &dst,
        Some(&mut off_out),
        (1 << 20) + 5000,
    )
    .unwrap();
    assert_eq!(n, (1 << 20) + 5000);
    drop(dst);
    let got = std::fs::read(mnt.join("dst")).unwrap();
    let tail_at = (40usize << 20) + 100;
    assert_eq!(got.len(), tail_at + (1 << 20) + 5000);
    assert_eq!(&got[..data.len()], &data[..]);
    assert!(got[data.len()..30 << 20].iter().all(|&b| b == 0));
    assert_eq!(&got[30 << 20..(30 << 20) + 4096], &data[1000..1000 + 4096]);
    assert!(got[(30 << 20) + 4096..tail_at].iter().all(|&b| b == 0));
    assert_eq!(&got[tail_at..], &data[100..100 + (1 << 20) + 5000]);
    // Copying a range onto itself overlapping is refused, as on Linux file systems.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(mnt.join("src"))
        .unwrap();
    let (mut a, mut b) = (0u64, 100u64);
    let e = rustix::fs::copy_file_range(&f, Some(&mut a), &f, Some(&mut b), 1000).unwrap_err();
    assert_eq!(e, rustix::io::Errno::INVAL);
    drop((f, src));
    // cp uses copy_file_range on coreutils 9 (--reflink=auto); the copy is exact.
    sh(&format!(
        "cp {0}/src {0}/cp-copy && cmp {0}/src {0}/cp-copy",
        mnt.display()
    ));
    p.unmount(&mnt);
    p.fsck_clean();
    // Two whole copies of 24 MiB plus about 1 MiB more: cloned, they hold a few data
    // blocks (heads, tails, the misaligned piece) and metadata, not another 49 MiB.
    let grown = used_bytes(&p) - used_before;
    assert!(grown < 4 << 20, "the copies took {grown} bytes");
}

#[test]
fn write_through_mount_keeps_files_intact() {
    require_fuse!();
    let mut p = TestPool::new();
    let host = p.mkdir("host");
    let tar = source_tar(p.dir.path());
    run(Command::new("tar")
        .arg("-xf")
        .arg(&tar)
        .arg("-C")
        .arg(&host));
    let mnt = p.mount("home", "mnt", &["--write-through"]);
    run(Command::new("tar")
        .arg("-xpf")
        .arg(&tar)
        .arg("-C")
        .arg(&mnt));
    // Appends and overwrites inside a page, then fsync: all of it reaches the pool.
    let path = mnt.join("log");
    let mut data = Vec::new();
    for i in 0..50u64 {
        let chunk = pattern(i, 777);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut f, &chunk).unwrap();
        data.extend_from_slice(&chunk);
    }
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b"OVERWRITE", 5000).unwrap();
    data[5000..5009].copy_from_slice(b"OVERWRITE");
    f.sync_all().unwrap();
    drop(f);
    p.kill9(&mnt);
    p.fsck_clean();
    let mnt = p.mount("home", "mnt", &[]);
    assert_eq!(std::fs::read(mnt.join("log")).unwrap(), data);
    run(Command::new("diff")
        .arg("-r")
        .arg("--no-dereference")
        .arg(host.join("crates"))
        .arg(mnt.join("crates")));
}
