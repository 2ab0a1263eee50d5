//! Helpers shared by the volume and NBD tests: a pool in a temporary directory, the
//! `tidefs` binary, and `tidefs nbd serve` as a subprocess that is stopped on drop.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub const TIDEFS: &str = env!("CARGO_BIN_EXE_tidefs");
pub const B: u64 = 4096;

/// Whether `tool` can be run.
pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Returns from the test, saying why, when a client tool is missing.
#[macro_export]
macro_rules! require_tools {
    ($($tool:expr),+) => {
        $(
            if !$crate::nbd_common::have($tool) {
                eprintln!("skipped: {} is not installed (apt-get install -y qemu-utils libnbd-bin)", $tool);
                return;
            }
        )+
    };
}

/// Runs a command, failing the test with its output unless it succeeds.
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

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A pool in a temporary directory.
pub struct TestPool {
    pub dir: tempfile::TempDir,
}

impl TestPool {
    pub fn new() -> TestPool {
        let pool = TestPool {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        run(&mut pool.tidefs(&["init"]));
        pool
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("pool")
    }

    /// `tidefs --pool POOL args…`, not yet run.
    pub fn tidefs(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(TIDEFS);
        cmd.arg("--pool").arg(self.path()).args(args);
        cmd
    }

    /// Runs `tidefs` and fails the test unless it succeeds.
    pub fn ok(&self, args: &[&str]) -> String {
        stdout(&run(&mut self.tidefs(args)))
    }

    /// Runs `tidefs`, expecting it to fail; returns (exit code, stderr).
    pub fn fails(&self, args: &[&str]) -> (i32, String) {
        let out = self.tidefs(args).output().expect("run tidefs");
        assert!(
            !out.status.success(),
            "tidefs {args:?} succeeded: {}",
            stdout(&out)
        );
        (out.status.code().unwrap_or(-1), stderr(&out))
    }

    /// Starts `tidefs nbd serve --listen 127.0.0.1:0 extra…` and waits until it listens.
    pub fn serve(&self, extra: &[&str]) -> Server {
        let mut cmd = self.tidefs(&["nbd", "serve", "--listen", "127.0.0.1:0"]);
        cmd.args(extra).stderr(Stdio::piped()).stdout(Stdio::null());
        Server::start(cmd)
    }
}

/// A running `tidefs nbd serve`. Dropping it sends SIGTERM and waits.
pub struct Server {
    pub child: Option<Child>,
    pub address: String,
    pub lines: mpsc::Receiver<String>,
}

impl Server {
    fn start(mut cmd: Command) -> Server {
        let mut child = cmd.spawn().expect("spawn tidefs nbd serve");
        let stderr: ChildStderr = child.stderr.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[server] {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut address = None;
        while let Ok(line) = lines.recv_timeout(Duration::from_secs(30)) {
            if let Some(rest) = line.split("listening on ").nth(1) {
                address = Some(rest.trim().to_string());
                break;
            }
        }
        let address = address.expect("the server says where it listens");
        Server {
            child: Some(child),
            address,
            lines,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// `nbd://ADDR/NAME`.
    pub fn uri(&self, export: &str) -> String {
        format!("nbd://{}/{export}", self.address)
    }

    /// Sends `signal` (e.g. "TERM", "KILL") and waits for the process to end.
    pub fn signal_and_wait(&mut self, signal: &str) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        run(Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string()));
        child.wait().expect("wait for the server")
    }

    /// Stops with SIGTERM; asserts a clean exit.
    pub fn stop(mut self) {
        let status = self.signal_and_wait("TERM");
        assert!(status.success(), "server exited with {status}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.signal_and_wait("TERM");
        }
    }
}

/// Fills `buf` with bytes that depend on `seed` and each byte's offset.
pub fn pattern(seed: u64, offset: u64, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        let x = (offset + i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ seed.wrapping_mul(0xff51_afd7_ed55_8ccd);
        *b = (x >> 29) as u8;
    }
}

/// Writes `bytes` to a file in `dir`.
pub fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write file");
    path
}
