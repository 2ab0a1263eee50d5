//! Helpers of the send/receive CLI tests: pools driven through the `tidefs` binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Pool {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl Pool {
    pub fn new() -> Pool {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pool");
        let p = Pool { dir, path };
        p.ok(&["init"]);
        p
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_tidefs"))
            .arg("--pool")
            .arg(&self.path)
            .args(args)
            .env("TZ", "UTC")
            .output()
            .unwrap()
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "tidefs {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// A command that must fail with exit 1 and one line on stderr; returns that line.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(1), "tidefs {args:?}: {err}");
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "error is not one line: {err:?}"
        );
        err
    }

    pub fn fsck_clean(&self) {
        self.ok(&["fsck"]);
    }

    /// Copies host file `content` into NAME:/path.
    pub fn put(&self, content: &[u8], dest: &str) {
        let f = self.file("put.tmp");
        std::fs::write(&f, content).unwrap();
        self.ok(&["put", f.to_str().unwrap(), dest]);
    }

    /// Sends NAME@SNAP (incremental from `parent`) into a file; returns its path.
    pub fn send(&self, snap: &str, parent: Option<&str>, out: &str) -> PathBuf {
        let f = self.file(out);
        let mut args = vec!["send", snap, "-f", f.to_str().unwrap(), "--quiet"];
        if let Some(p) = parent {
            args.extend(["-p", p]);
        }
        self.ok(&args);
        f
    }
}

/// `btrfs receive --dump` of a stream, if btrfs-progs is installed.
pub fn btrfs_dump(stream: &Path) -> Option<String> {
    let out = Command::new("btrfs")
        .args(["receive", "--dump", "-f"])
        .arg(stream)
        .env("TZ", "UTC")
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "btrfs receive --dump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Asserts `tidefs receive --dump` prints exactly what `btrfs receive --dump` prints.
pub fn assert_dump_matches_btrfs(pool: &Pool, stream: &Path) {
    let ours = pool.ok(&["receive", "--dump", "-f", stream.to_str().unwrap()]);
    match btrfs_dump(stream) {
        Some(theirs) => assert_eq!(ours, theirs, "dump of {}", stream.display()),
        None => eprintln!("skipping the btrfs --dump comparison: btrfs-progs is not installed"),
    }
}

/// A small tree with every kind of file, in subvolume `home`, snapshot home@s1.
pub fn populate(p: &Pool) {
    p.ok(&["subvol", "create", "home"]);
    p.ok(&["mkdir", "home:/docs"]);
    p.ok(&["mkdir", "home:/docs/deep"]);
    p.put(b"hello\n", "home:/docs/hello.txt");
    p.put(&vec![b'z'; 200_000], "home:/docs/deep/big.bin");
    for i in 0..40 {
        p.put(
            format!("file {i}\n").as_bytes(),
            &format!("home:/docs/f{i}"),
        );
    }
    p.ok(&["snapshot", "create", "home@s1"]);
}

/// Changes to home after s1, snapshot home@s2.
pub fn change(p: &Pool) {
    p.ok(&["mv", "home:/docs/hello.txt", "home:/hello.txt"]);
    p.ok(&["mv", "home:/docs/deep", "home:/deep"]);
    p.ok(&["rm", "home:/docs/f3"]);
    p.put(b"new content", "home:/docs/f4");
    p.ok(&["mkdir", "home:/docs/f3"]);
    p.ok(&["snapshot", "create", "home@s2"]);
}
