//! The CLI contract for pools, subvolumes, snapshots, clones and direct file access:
//! names and forms, one-line errors with exit 1, usage errors with exit 2.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Pool {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Pool {
    fn new() -> Pool {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pool");
        Pool { _dir: dir, path }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_tidefs"))
            .arg("--pool")
            .arg(&self.path)
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs a command that must succeed; returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "tidefs {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs a command that must fail with exit 1 and one line on stderr; returns that line.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "tidefs {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "error is not one line: {err:?}"
        );
        err
    }

    fn fsck_clean(&self) {
        self.ok(&["fsck"]);
    }
}

fn host_file(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn init_is_idempotent_and_a_missing_pool_says_how_to_create_it() {
    let pool = Pool::new();
    let err = pool.fails(&["subvol", "list"]);
    assert!(err.contains("no pool at") && err.contains("init"), "{err}");
    assert!(pool.ok(&["init"]).contains("created pool"));
    assert!(pool.ok(&["init"]).contains("already exists"));
    pool.fsck_clean();
}

#[test]
fn usage_errors_exit_2() {
    let pool = Pool::new();
    assert_eq!(pool.run(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(pool.run(&["snapshot", "create"]).status.code(), Some(2));
}

#[test]
fn snapshots_and_clones_keep_their_contents() {
    let pool = Pool::new();
    let tmp = tempfile::tempdir().unwrap();
    pool.ok(&["init"]);
    pool.ok(&["subvol", "create", "home"]);
    pool.ok(&["mkdir", "-p", "home:/docs/deep"]);
    pool.ok(&[
        "put",
        &host_file(tmp.path(), "a", b"first\n"),
        "home:/docs/deep/a.txt",
    ]);
    pool.ok(&["snapshot", "create", "home@one"]);
    pool.ok(&[
        "put",
        &host_file(tmp.path(), "b", b"second\n"),
        "home:/docs/deep/a.txt",
    ]);
    assert_eq!(pool.ok(&["cat", "home@one:/docs/deep/a.txt"]), "first\n");
    assert_eq!(pool.ok(&["cat", "home:/docs/deep/a.txt"]), "second\n");
    // A clone is writable and independent of its snapshot and of the head.
    pool.ok(&["clone", "home@one", "work"]);
    pool.ok(&[
        "put",
        &host_file(tmp.path(), "c", b"third\n"),
        "work:/docs/deep/a.txt",
    ]);
    assert_eq!(pool.ok(&["cat", "work:/docs/deep/a.txt"]), "third\n");
    assert_eq!(pool.ok(&["cat", "home@one:/docs/deep/a.txt"]), "first\n");
    assert_eq!(pool.ok(&["cat", "home:/docs/deep/a.txt"]), "second\n");
    // Snapshots are read-only.
    let err = pool.fails(&["put", &host_file(tmp.path(), "d", b"x"), "home@one:/x"]);
    assert!(err.contains("read-only"), "{err}");
    let err = pool.fails(&["mkdir", "home@one:/x"]);
    assert!(err.to_lowercase().contains("read-only"), "{err}");
    // Listing, renaming, JSON.
    let list: serde_json::Value =
        serde_json::from_str(&pool.ok(&["snapshot", "list", "home", "--json"])).unwrap();
    assert_eq!(list[0]["name"], "one");
    assert!(list[0]["uuid"].as_str().unwrap().len() == 36);
    pool.ok(&["snapshot", "rename", "home@one", "home@uno"]);
    assert!(pool.ok(&["snapshot", "list", "home"]).contains("home@uno"));
    let subvols: serde_json::Value =
        serde_json::from_str(&pool.ok(&["subvol", "list", "--json"])).unwrap();
    let names: Vec<&str> = subvols
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["home", "work"]);
    pool.fsck_clean();
    // Delete in an order that frees everything; space returns.
    let df: serde_json::Value = serde_json::from_str(&pool.ok(&["df", "--json"])).unwrap();
    let used_before = df["used_bytes"].as_u64().unwrap();
    pool.ok(&["subvol", "delete", "work"]);
    pool.ok(&["snapshot", "delete", "home@uno"]);
    pool.ok(&["subvol", "delete", "home"]);
    pool.fsck_clean();
    let df: serde_json::Value = serde_json::from_str(&pool.ok(&["df", "--json"])).unwrap();
    assert!(df["used_bytes"].as_u64().unwrap() < used_before);
    assert_eq!(df["subvolumes"].as_array().unwrap().len(), 0);
}

#[test]
fn files_can_be_listed_moved_statted_and_removed_without_a_mount() {
    let pool = Pool::new();
    let tmp = tempfile::tempdir().unwrap();
    pool.ok(&["init"]);
    pool.ok(&["subvol", "create", "s"]);
    pool.ok(&["mkdir", "s:/d"]);
    pool.ok(&[
        "put",
        &host_file(tmp.path(), "f", &vec![7u8; 300_000]),
        "s:/d/f",
    ]);
    let ls = pool.ok(&["ls", "s:/d"]);
    assert!(ls.contains(" f\n") && ls.contains("300000"), "{ls}");
    pool.ok(&["mv", "s:/d/f", "s:/g"]);
    let stat: serde_json::Value =
        serde_json::from_str(&pool.ok(&["stat", "s:/g", "--json"])).unwrap();
    assert_eq!(stat["size"], 300_000);
    assert_eq!(stat["type"], "regular");
    assert_eq!(stat["nlink"], 1);
    let err = pool.fails(&["cat", "s:/d/f"]);
    assert!(err.contains("s:/d/f"), "{err}");
    let err = pool.fails(&["rm", "s:/d"]);
    assert!(err.contains("directory"), "{err}");
    pool.ok(&["rm", "s:/g"]);
    pool.ok(&["rm", "-r", "s:/d"]);
    assert_eq!(pool.ok(&["ls", "s:/"]), "");
    pool.fsck_clean();
}

#[test]
fn bad_names_are_refused_and_change_nothing() {
    let pool = Pool::new();
    pool.ok(&["init"]);
    pool.ok(&["subvol", "create", "home"]);
    pool.ok(&["snapshot", "create", "home@a"]);
    let long = "x".repeat(256);
    for args in [
        vec!["subvol", "create", "a/b"],
        vec!["subvol", "create", long.as_str()],
        vec!["subvol", "create", "home"],
        vec!["snapshot", "create", "home@"],
        vec!["snapshot", "create", "home@a"],
        vec!["snapshot", "create", "nothere@a"],
        vec!["snapshot", "delete", "home@nope"],
        vec!["clone", "home@nope", "x"],
        vec!["clone", "home@a", "home"],
        vec!["subvol", "delete", "home"],
        vec!["subvol", "delete", "nothere"],
        vec!["cat", "home:/missing"],
        vec!["cat", "nothere:/x"],
    ] {
        pool.fails(&args);
    }
    let list: serde_json::Value =
        serde_json::from_str(&pool.ok(&["subvol", "list", "--json"])).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(pool.ok(&["snapshot", "list", "home"]).lines().count() == 1);
    pool.fsck_clean();
}

#[test]
fn a_full_pool_refuses_data_cleanly_and_stays_consistent() {
    let pool = Pool::new();
    let tmp = tempfile::tempdir().unwrap();
    pool.ok(&["init", "--max-size", "24M"]);
    pool.ok(&["subvol", "create", "s"]);
    let big = host_file(tmp.path(), "big", &vec![1u8; 40 << 20]);
    let err = pool.fails(&["put", &big, "s:/big"]);
    assert!(
        err.to_lowercase().contains("space") || err.contains("full"),
        "{err}"
    );
    // Nothing half-written is left behind.
    assert_eq!(pool.ok(&["ls", "s:/"]), "");
    pool.fsck_clean();
    pool.ok(&["put", &host_file(tmp.path(), "small", b"ok"), "s:/small"]);
    assert_eq!(pool.ok(&["cat", "s:/small"]), "ok");
    pool.fsck_clean();
}
