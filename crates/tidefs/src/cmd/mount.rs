//! `tidefs mount NAME[@SNAP] MOUNTPOINT` and `tidefs umount MOUNTPOINT`.
//!
//! A mount stays in the foreground until it is unmounted (`tidefs umount`, `fusermount3 -u`)
//! or interrupted (Ctrl-C, SIGTERM), which unmounts and commits. `--background` starts the
//! same command as a child process and returns once the child reports the mount ready.
//!
//! First use: mounting creates the pool if there is none and formats its file system if it
//! has none. The subvolume is created when `--create` is given or when the file system has
//! no subvolume at all yet, so `tidefs mount home /mnt/home` works as a first command;
//! otherwise a missing subvolume is an error (a typo should not make an empty subvolume).
//! Snapshots are never created by mounting.
//!
//! While mounted, the serving process holds the pool and answers `tidefs snapshot` and
//! `tidefs subvol list` on the pool's control socket (see `control::fs_service`).

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use tidefs_fs::{Caller, Fs, FsError, SystemClock};
use tidefs_fuse::{MountConfig, MountTarget};
use tidefs_store::{CommitPolicy, Pool, LOCK_FILE_NAME};

use crate::control::fs_service::FsService;
use crate::control::ControlServer;

/// The line the background child prints on stdout once the mount is ready (then a space
/// and how requests reach it: `io_uring` or `/dev/fuse`).
const READY_LINE: &str = "ready";
/// How long `umount` waits for the serving process to commit and let go of the pool.
const UMOUNT_WAIT_MAX: Duration = Duration::from_secs(300);

#[derive(Args)]
pub struct MountArgs {
    /// NAME mounts subvolume NAME read-write; NAME@SNAP mounts one of its snapshots read-only.
    target: String,
    /// An existing directory to mount on.
    mountpoint: PathBuf,
    /// Create the subvolume if it does not exist (done anyway while the pool has none).
    #[arg(long)]
    create: bool,
    /// Return once the mount is ready, serving from a background process.
    #[arg(long)]
    background: bool,
    /// Seconds between commits: changes not fsynced are durable at most this late.
    #[arg(long, default_value = "5", value_parser = parse_seconds)]
    commit_interval: Duration,
    /// Commit early once about this much changed data waits (e.g. 512M).
    #[arg(long, default_value = "1G", value_parser = crate::output::parse_size)]
    commit_dirty_max: u64,
    /// Send every write to the server as it is made, instead of letting the kernel buffer
    /// writes and send them in large batches (FUSE's writeback cache, the default; what it
    /// holds is brought in before every snapshot and every timed commit).
    #[arg(long)]
    write_through: bool,
    /// Let other users in (FUSE allow_other; non-root needs user_allow_other in /etc/fuse.conf).
    #[arg(long)]
    allow_other: bool,
    /// Threads serving requests (default: one per CPU, at least two).
    #[arg(long)]
    threads: Option<usize>,
    /// Microseconds to keep polling for the next request after one arrives, instead of
    /// sleeping (a sleeping server is woken from another CPU, which is slow, above all in a
    /// virtual machine); 0 turns it off. Over io_uring each CPU's queue thread polls, yielding
    /// to anything runnable; over /dev/fuse the channel is polled. Polling spends CPU only
    /// while requests keep coming. Default: 2000, or 0 on a single CPU.
    #[arg(long)]
    busy_poll_us: Option<u64>,
    /// Do not ask for FUSE over io_uring. By default requests come through per-CPU io_uring
    /// queues where the kernel offers them (Linux 6.14+ with
    /// /sys/module/fuse/parameters/enable_uring set to Y), each served on the CPU that made it.
    #[arg(long)]
    no_io_uring: bool,
    /// The kernel's readahead window for the mount in KiB (FUSE mounts start at 128 KiB,
    /// which cuts sequential reads into small requests); 0 keeps the kernel's. Needs root.
    /// Default: 4096.
    #[arg(long)]
    read_ahead_kib: Option<u32>,
    /// With --background: where the serving process writes its errors (default: discarded).
    #[arg(long)]
    log: Option<PathBuf>,
    /// Set by --background for the child it starts: report readiness on stdout.
    #[arg(long, hide = true)]
    daemon_child: bool,
}

#[derive(Args)]
pub struct UmountArgs {
    /// Where a tidefs file system is mounted.
    mountpoint: PathBuf,
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(secs > 0.0 && secs <= 86_400.0) {
        return Err(format!("{s} seconds is outside 0 to 86400"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_target(s: &str) -> Result<MountTarget> {
    match s.split_once('@') {
        None if !s.is_empty() => Ok(MountTarget::Subvolume(s.to_string())),
        Some((subvol, snap)) if !subvol.is_empty() && !snap.is_empty() => {
            Ok(MountTarget::Snapshot {
                subvol: subvol.to_string(),
                snap: snap.to_string(),
            })
        }
        _ => bail!("{s:?} is not NAME or NAME@SNAP"),
    }
}

pub fn run(pool: &Path, args: MountArgs) -> Result<ExitCode> {
    let target = parse_target(&args.target)?;
    if !args.mountpoint.is_dir() {
        bail!(
            "mount point {} is not a directory",
            args.mountpoint.display()
        );
    }
    if args.background && !args.daemon_child {
        return start_background(&args);
    }
    let fs = open_fs(pool, &target, args.create)?;
    let mut config = MountConfig::new(args.mountpoint.clone());
    if let Some(threads) = args.threads {
        config.threads = threads;
    }
    if let Some(us) = args.busy_poll_us {
        config.busy_poll = Duration::from_micros(us);
    }
    config.io_uring = !args.no_io_uring;
    if let Some(kib) = args.read_ahead_kib {
        config.read_ahead_kib = kib;
    }
    config.allow_other = args.allow_other;
    config.commit = CommitPolicy {
        interval: args.commit_interval,
        dirty_bytes_max: args.commit_dirty_max,
    };
    config.writeback_cache = !args.write_through;
    config.fs_name = fs_name(pool);
    let mounted = tidefs_fuse::mount(&fs, &target, &config)?;
    if let (Some(_), Some(why)) = (args.read_ahead_kib, mounted.read_ahead_error()) {
        // Only worth a word when asked for: without root the default quietly stays.
        eprintln!("tidefs: readahead left at the kernel's default: {why}");
    }
    let unmounter = mounted.unmounter();
    // While mounted we hold the pool; `tidefs snapshot` and `tidefs subvol list` reach it here.
    let control = ControlServer::start(
        pool,
        "tidefs mount",
        FsService {
            fs: fs.clone(),
            mounted: mounted.snapshot_control(),
        },
    )?;
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .context("installing signal handlers")?;
    std::thread::Builder::new()
        .name("tidefs-signals".into())
        .spawn(move || {
            for _ in signals.forever() {
                match unmounter.unmount() {
                    Ok(()) => break,
                    Err(e) => eprintln!("tidefs: {e}"),
                }
            }
        })
        .context("starting the signal thread")?;
    // How requests reach the server, for the user to see (io_uring needs the kernel's
    // consent: Linux 6.14+ with the fuse module's enable_uring set).
    let transport = if mounted.uses_io_uring() {
        "io_uring"
    } else {
        "/dev/fuse"
    };
    if args.daemon_child {
        println!("{READY_LINE} {transport}");
        detach_output(args.log.as_deref())?;
    } else {
        eprintln!(
            "tidefs: mounted {} at {} over {transport} (pid {}); Ctrl-C or `tidefs umount {}` unmounts",
            args.target,
            args.mountpoint.display(),
            std::process::id(),
            args.mountpoint.display()
        );
    }
    let served = mounted.serve();
    if let Some(c) = control {
        c.stop();
    }
    served?;
    Ok(ExitCode::SUCCESS)
}

/// Opens the pool and its file system, creating what first use needs (see the module doc).
fn open_fs(path: &Path, target: &MountTarget, create: bool) -> Result<Fs> {
    let pool = crate::pool_arg::open_or_create(path)?;
    let clock = Arc::new(SystemClock);
    // A pool made by an older build (or holding only volumes) may have no file system yet.
    let fs = match Fs::open(pool.clone(), clock.clone()) {
        Ok(fs) => fs,
        Err(FsError::NotFormatted(_)) => {
            Fs::format(pool, clock).context("formatting the file system")?
        }
        Err(e) => {
            return Err(e).with_context(|| format!("opening the file system in {}", path.display()))
        }
    };
    if let MountTarget::Subvolume(name) = target {
        match fs.subvolume(name) {
            Ok(_) => {}
            Err(FsError::SubvolumeNotFound(_)) if create || fs.list_subvolumes()?.is_empty() => {
                let me = Caller::new(
                    rustix::process::getuid().as_raw(),
                    rustix::process::getgid().as_raw(),
                );
                fs.create_subvolume(name, &me)?;
                fs.fsync()?;
            }
            Err(FsError::SubvolumeNotFound(_)) => {
                bail!("subvolume {name} does not exist; `tidefs mount --create {name} MOUNTPOINT` creates it")
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(fs)
}

/// The mount's source in /proc/self/mountinfo: `tidefs:POOL`, so that `umount` can find the
/// pool (and wait for the server to let go of it). Mount options cannot carry commas.
fn fs_name(pool: &Path) -> String {
    let path = std::fs::canonicalize(pool).unwrap_or_else(|_| pool.to_path_buf());
    let s = path.to_string_lossy();
    if s.contains([',', ' ', '\t', '\n', '\\']) {
        "tidefs".into()
    } else {
        format!("tidefs:{s}")
    }
}

/// Starts this command again as a background child and waits for it to report the mount
/// ready (or to fail, whose message becomes ours).
fn start_background(args: &MountArgs) -> Result<ExitCode> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().context("finding the tidefs executable")?;
    let child_args: Vec<_> = std::env::args_os()
        .skip(1)
        .filter(|a| a != "--background")
        .chain(["--daemon-child".into()])
        .collect();
    let mut child = Command::new(exe)
        .args(child_args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group: Ctrl-C in the starting terminal is not meant for it.
        .process_group(0)
        .spawn()
        .context("starting the background mount")?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
    if let Some(transport) = line.trim_end().strip_prefix(READY_LINE) {
        println!(
            "mounted {} at {} over{transport} (pid {})",
            args.target,
            args.mountpoint.display(),
            child.id()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("piped")
        .read_to_string(&mut err)?;
    let status = child.wait()?;
    let err = err.trim().trim_start_matches("tidefs: ");
    if err.is_empty() {
        bail!("the background mount exited with {status} before it was ready");
    }
    bail!("{err}")
}

/// After readiness the starting process is gone: stdout and stderr go to the log (or
/// nowhere) so that later messages cannot fail on a closed pipe.
fn detach_output(log: Option<&Path>) -> Result<()> {
    let sink = match log {
        Some(path) => std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening log {}", path.display()))?,
        None => std::fs::OpenOptions::new().write(true).open("/dev/null")?,
    };
    rustix::stdio::dup2_stdout(&sink)?;
    rustix::stdio::dup2_stderr(&sink)?;
    Ok(())
}

pub fn run_umount(args: UmountArgs) -> Result<ExitCode> {
    let pool = mounted_pool(&args.mountpoint);
    tidefs_fuse::unmount(&args.mountpoint)?;
    // The server commits after the kernel lets go; the pool is free (its lock released)
    // once that commit is done and the process has exited.
    if let Some(pool) = pool {
        let lock = if Pool::exists(&pool) && pool.is_dir() {
            pool.join(LOCK_FILE_NAME)
        } else {
            pool.clone()
        };
        let start = Instant::now();
        while !lock_is_free(&lock) {
            if start.elapsed() > UMOUNT_WAIT_MAX {
                bail!(
                    "unmounted {}, but the server still holds pool {} after {} s",
                    args.mountpoint.display(),
                    pool.display(),
                    UMOUNT_WAIT_MAX.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn lock_is_free(lock: &Path) -> bool {
    match std::fs::File::open(lock) {
        Ok(f) => match f.try_lock() {
            Ok(()) => {
                let _ = f.unlock();
                true
            }
            Err(_) => false,
        },
        Err(_) => true,
    }
}

/// The pool behind a tidefs mount, from /proc/self/mountinfo (see [`fs_name`]).
fn mounted_pool(mountpoint: &Path) -> Option<PathBuf> {
    let want = std::fs::canonicalize(mountpoint).ok()?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().rev().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let point = unescape_mountinfo(left.split(' ').nth(4)?);
        let mut right = right.split(' ');
        let (fstype, source) = (right.next()?, right.next()?);
        // Mounted by root through mount(2) the type is plain "fuse"; through fusermount3,
        // "fuse.tidefs".
        if Path::new(&point) != want || !fstype.starts_with("fuse") {
            return None;
        }
        source.strip_prefix("tidefs:").map(PathBuf::from)
    })
}

/// mountinfo writes space, tab, newline and backslash as octal escapes.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_escapes_parse() {
        assert_eq!(
            parse_target("home").unwrap(),
            MountTarget::Subvolume("home".into())
        );
        assert_eq!(
            parse_target("home@mon").unwrap(),
            MountTarget::Snapshot {
                subvol: "home".into(),
                snap: "mon".into()
            }
        );
        assert!(parse_target("@mon").is_err());
        assert!(parse_target("home@").is_err());
        assert_eq!(unescape_mountinfo("/mnt/a\\040b"), "/mnt/a b");
        assert!(parse_seconds("0").is_err());
        assert_eq!(parse_seconds("0.5").unwrap(), Duration::from_millis(500));
    }
}
