//! Helpers shared by the mount tests: a fresh pool mounted through the built `tidefs`
//! binary in a temporary directory, unmounted on drop (also when a test fails).
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub const TIDEFS: &str = env!("CARGO_BIN_EXE_tidefs");

/// Why FUSE mounts cannot run here, if they cannot.
pub fn fuse_missing() -> Option<String> {
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .is_err()
    {
        return Some("/dev/fuse cannot be opened".into());
    }
    if Command::new("fusermount3").arg("-V").output().is_err() {
        return Some("fusermount3 is not installed (apt-get install fuse3)".into());
    }
    None
}

/// Returns from the test, saying why, when FUSE is unavailable.
#[macro_export]
macro_rules! require_fuse {
    () => {
        if let Some(why) = $crate::mount_common::fuse_missing() {
            eprintln!("skipped: {why}");
            return;
        }
    };
}

/// Whether `tool` can be run (for tests that need an everyday tool).
pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs a command, failing the test with its output if it does not succeed.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn sh(script: &str) -> Output {
    run(Command::new("sh").arg("-c").arg(script))
}

/// One pool in a temporary directory and the mounts made from it.
pub struct TestPool {
    pub dir: tempfile::TempDir,
    pub pool: PathBuf,
    /// Mount points this pool is mounted on, with the serving process.
    mounts: Vec<(PathBuf, u32)>,
    /// What the last `tidefs mount` printed.
    pub last_mount_message: String,
}

impl TestPool {
    pub fn new() -> TestPool {
        let dir = tempfile::Builder::new()
            .prefix("tidefs-mount-")
            .tempdir()
            .unwrap();
        // Other users must be able to reach the mount points (the permission tests).
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let pool = dir.path().join("pool");
        TestPool {
            dir,
            pool,
            mounts: Vec::new(),
            last_mount_message: String::new(),
        }
    }

    /// A new empty directory in the pool's temporary directory.
    pub fn mkdir(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::create_dir_all(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    pub fn tidefs(&self, args: &[&str]) -> Output {
        Command::new(TIDEFS)
            .arg("--pool")
            .arg(&self.pool)
            .args(args)
            .output()
            .unwrap()
    }

    /// `tidefs mount --background TARGET DIR EXTRA..`; returns the mount point.
    pub fn mount(&mut self, target: &str, dir: &str, extra: &[&str]) -> PathBuf {
        self.mount_with_env(target, dir, extra, &[])
    }

    /// [`TestPool::mount`] with extra environment variables for the serving process.
    pub fn mount_with_env(
        &mut self,
        target: &str,
        dir: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> PathBuf {
        let mnt = self.mkdir(dir);
        let mut args = vec!["mount", "--background", target, mnt.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = Command::new(TIDEFS)
            .arg("--pool")
            .arg(&self.pool)
            .args(&args)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount {target} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // "mounted NAME at DIR over TRANSPORT (pid N)"
        let text = String::from_utf8_lossy(&out.stdout);
        let pid = text
            .rsplit("(pid ")
            .next()
            .and_then(|s| s.trim().trim_end_matches(')').parse().ok())
            .unwrap_or_else(|| panic!("no pid in {text:?}"));
        self.mounts.push((mnt.clone(), pid));
        self.last_mount_message = text.trim().to_string();
        mnt
    }

    pub fn pid(&self, mnt: &Path) -> u32 {
        self.mounts
            .iter()
            .find(|(m, _)| m == mnt)
            .expect("mounted here")
            .1
    }

    /// `tidefs umount`, which returns once the server has committed and exited.
    pub fn unmount(&mut self, mnt: &Path) {
        let out = Command::new(TIDEFS)
            .arg("umount")
            .arg(mnt)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "umount: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.mounts.retain(|(m, _)| m != mnt);
    }

    /// Kills the server with SIGKILL and clears the dead mount, as an operator would.
    pub fn kill9(&mut self, mnt: &Path) {
        let pid = self.pid(mnt);
        run(Command::new("kill").arg("-9").arg(pid.to_string()));
        wait_gone(pid);
        run(Command::new("fusermount3").arg("-u").arg("-z").arg(mnt));
        self.mounts.retain(|(m, _)| m != mnt);
    }

    /// Forgets a mount whose server ended by itself (after a signal, say).
    pub fn forget_mount(&mut self, mnt: &Path) {
        self.mounts.retain(|(m, _)| m != mnt);
    }

    pub fn fsck_clean(&self) {
        let out = self.tidefs(&["fsck"]);
        assert!(
            out.status.success(),
            "fsck found problems:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for TestPool {
    fn drop(&mut self) {
        for (mnt, pid) in std::mem::take(&mut self.mounts) {
            let ok = Command::new(TIDEFS)
                .arg("umount")
                .arg(&mnt)
                .output()
                .is_ok_and(|o| o.status.success());
            if !ok {
                // Busy or broken: detach it and stop the server so nothing outlives the test.
                let _ = Command::new("fusermount3")
                    .arg("-u")
                    .arg("-z")
                    .arg(&mnt)
                    .output();
                let _ = Command::new("kill").arg("-9").arg(pid.to_string()).output();
                wait_gone(pid);
            }
        }
    }
}

/// Waits until process `pid` has exited (a zombie counts as exited).
pub fn wait_gone(pid: u32) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return,
            Ok(s)
                if s.rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z')) =>
            {
                return
            }
            Ok(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    panic!("process {pid} did not exit");
}

/// Deterministic pseudo-random bytes (xorshift), so tests need no extra crates.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
