//! One mount's life: mount, serve with several threads while a background committer makes
//! changes durable at the commit interval, unmount, final commit.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use fuser::{Config, MountOption, Session, SessionACL, SessionUnmounter};
use parking_lot::Mutex;
use tidefs_fs::Fs;
use tidefs_store::{CommitPolicy, GroupCommitter};

use crate::busy_poll::BusyPoll;
use crate::error::MountError;
use crate::handles::Handles;
use crate::ops::TideFuse;
use crate::page_flush::PageFlusher;
use crate::read_ahead::ReadAheadError;
use crate::snap_control::SnapshotControl;
use crate::snap_dir::SnapDir;
use crate::tree::Tree;

/// How much written data the kernel may hold for the mount before it makes writers wait
/// (the backing device's `max_bytes`). FUSE mounts start at 1% of the machine's dirty
/// allowance (45 MB here), which held writers back: a 4 GiB write ran 19–33% faster with
/// 256 MiB in three interleaved pairs. What the kernel holds is brought in at least every
/// commit interval and before every snapshot (`page_flush`), so more of it is no risk.
const DIRTY_BYTES_MAX: u64 = 256 << 20;

/// What to mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountTarget {
    /// A writable subvolume, with its snapshots under `.snap`.
    Subvolume(String),
    /// A snapshot, read-only.
    Snapshot { subvol: String, snap: String },
}

/// Default busy-polling window: long enough to span the gap between a process's
/// requests (tens of microseconds), short enough that a finished burst stops at once.
pub const BUSY_POLL_DEFAULT: Duration = Duration::from_millis(2);

/// How to mount.
#[derive(Debug, Clone)]
pub struct MountConfig {
    pub mountpoint: PathBuf,
    /// Threads serving requests (they share the pool's single writer, but overlap the
    /// kernel round trips and the device I/O of reads). More threads than CPUs only
    /// contend for the kernel's request queue: one per CPU, at least two, by default.
    pub threads: usize,
    /// Let users other than the mounting one in (FUSE's `allow_other`).
    pub allow_other: bool,
    /// How long the kernel caches attributes and names.
    pub cache_ttl: Duration,
    /// When the background committer commits.
    pub commit: CommitPolicy,
    /// Shown as the source in /proc/self/mountinfo.
    pub fs_name: String,
    /// Ask for FUSE's writeback cache (see `TideFuse::new`); on by default. The kernel's
    /// cached writes are brought in before every snapshot and every timed commit
    /// (`page_flush.rs`), so they are in snapshots and a killed server loses no more than
    /// without the cache: at most one commit interval.
    pub writeback_cache: bool,
    /// How long to poll for the next request after one, instead of sleeping: the /dev/fuse
    /// channel (see `busy_poll.rs`), or over io_uring each queue's thread; zero: never. On
    /// by default where there is more than one CPU: a single CPU would spend its time
    /// polling instead of running the process that makes the requests.
    pub busy_poll: Duration,
    /// Ask the kernel to send requests through io_uring queues, one per CPU, each served by
    /// a thread on that CPU (Linux 6.14+ with the fuse module's `enable_uring` parameter
    /// set; elsewhere requests come through /dev/fuse as before). The channel is then not
    /// polled: the queues' threads poll for requests themselves (for `busy_poll`).
    pub io_uring: bool,
    /// The kernel's readahead window for the mount, in KiB (see `read_ahead.rs`); zero
    /// leaves the kernel's default. Setting it needs root; without, the default stays.
    pub read_ahead_kib: u32,
}

impl MountConfig {
    pub fn new(mountpoint: PathBuf) -> MountConfig {
        MountConfig {
            mountpoint,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get().max(2)),
            allow_other: false,
            cache_ttl: Duration::from_secs(60),
            commit: CommitPolicy::default(),
            fs_name: "tidefs".into(),
            writeback_cache: true,
            busy_poll: if std::thread::available_parallelism().map_or(1, |n| n.get()) > 1 {
                BUSY_POLL_DEFAULT
            } else {
                Duration::ZERO
            },
            io_uring: true,
            read_ahead_kib: crate::read_ahead::READ_AHEAD_DEFAULT_KIB,
        }
    }
}

/// A mounted file system, not serving yet.
pub struct Mounted {
    session: Session<TideFuse>,
    busy: Arc<BusyPoll>,
    fs: Fs,
    mountpoint: PathBuf,
    commit: CommitPolicy,
    unmounter: Unmounter,
    snapshot_control: Option<SnapshotControl>,
    read_ahead: Result<(), ReadAheadError>,
    flusher: Option<PageFlusher>,
}

/// Unmounts a [`Mounted`] from another thread (a signal handler, say).
#[derive(Clone)]
pub struct Unmounter {
    inner: Arc<Mutex<SessionUnmounter>>,
    mountpoint: PathBuf,
}

impl Unmounter {
    /// Unmounts; if files are still open there (EBUSY), detaches the mount lazily so that
    /// it ends as soon as the last one is closed.
    pub fn unmount(&self) -> Result<(), MountError> {
        match self.inner.lock().unmount() {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => lazy_unmount(&self.mountpoint),
            Err(e) => Err(MountError::Unmount {
                mountpoint: self.mountpoint.clone(),
                detail: e.to_string(),
            }),
        }
    }
}

/// Mounts `target` of `fs` at `config.mountpoint`. When this returns the kernel has
/// accepted the mount; requests are served once [`Mounted::serve`] runs.
pub fn mount(fs: &Fs, target: &MountTarget, config: &MountConfig) -> Result<Mounted, MountError> {
    // Resolved before mounting: the mount table names it so, and once mounted, looking
    // at the path would ask this very server, which is not serving yet.
    let canonical = std::fs::canonicalize(&config.mountpoint);
    let flusher = PageFlusher::new(
        canonical
            .as_ref()
            .map_or_else(|_| config.mountpoint.clone(), Clone::clone),
        Arc::new(Handles::default()),
    );
    let (sv, snaps) = match target {
        MountTarget::Subvolume(name) => {
            let sv = fs.subvolume(name)?;
            let snaps = SnapDir::new(fs.clone(), sv.info().clone(), flusher.clone());
            (sv, Some(snaps))
        }
        MountTarget::Snapshot { subvol, snap } => (fs.snapshot(subvol, snap)?, None),
    };
    let read_only = sv.is_read_only();
    let mounted = Tree {
        sv: Arc::new(sv),
        via_snap_dir: None,
    };
    let mut options = vec![
        MountOption::FSName(config.fs_name.clone()),
        MountOption::Subtype("tidefs".into()),
        // The kernel checks mode bits, sticky directories and ownership itself.
        MountOption::DefaultPermissions,
        // tidefs does not record access times (FUSE would otherwise send a setattr per read).
        MountOption::NoAtime,
        MountOption::Dev,
        MountOption::Suid,
    ];
    options.push(if read_only {
        MountOption::RO
    } else {
        MountOption::RW
    });
    let mut fuse_config = Config::default();
    fuse_config.mount_options = options;
    fuse_config.acl = if config.allow_other {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    fuse_config.n_threads = Some(config.threads.max(1));
    fuse_config.clone_fd = true;
    fuse_config.io_uring_poll = config.busy_poll;
    // The control socket changes `.snap` beside the mount, through the same cache.
    let control_snaps = snaps.clone();
    let busy = Arc::new(BusyPoll::new(config.busy_poll));
    let filesystem = TideFuse::new(
        mounted,
        snaps,
        flusher.clone(),
        config.cache_ttl,
        config.writeback_cache && !read_only,
        config.io_uring,
        busy.clone(),
    );
    let mut session =
        Session::new(filesystem, &config.mountpoint, &fuse_config).map_err(|source| {
            MountError::Mount {
                mountpoint: config.mountpoint.clone(),
                source,
            }
        })?;
    let channel = session
        .as_fd()
        .try_clone_to_owned()
        .map_err(|source| MountError::Mount {
            mountpoint: config.mountpoint.clone(),
            source,
        })?;
    if session.uses_io_uring() {
        busy.turn_off();
    } else {
        busy.attach(channel);
    }
    let unmounter = Unmounter {
        inner: Arc::new(Mutex::new(session.unmount_callable())),
        mountpoint: config.mountpoint.clone(),
    };
    flusher.set_notifier(session.notifier());
    let snapshot_control = control_snaps.map(|s| SnapshotControl::new(s, session.notifier()));
    if let (true, Ok(path)) = (config.writeback_cache && !read_only, &canonical) {
        // Best effort, as root only: without it the kernel's allowance stays.
        let _ = crate::read_ahead::set_knob(path, "max_bytes", DIRTY_BYTES_MAX);
    }
    let read_ahead = match (config.read_ahead_kib, canonical) {
        (0, _) => Ok(()),
        (kib, Ok(path)) => crate::read_ahead::set(&path, kib),
        (_, Err(source)) => Err(ReadAheadError::Resolve {
            path: config.mountpoint.clone(),
            source,
        }),
    };
    Ok(Mounted {
        session,
        busy,
        fs: fs.clone(),
        mountpoint: config.mountpoint.clone(),
        commit: config.commit,
        unmounter,
        snapshot_control,
        read_ahead,
        // A read-only mount has nothing cached to write.
        flusher: (!read_only).then_some(flusher),
    })
}

impl Mounted {
    /// Whether requests come through io_uring queues (see [`MountConfig::io_uring`]).
    pub fn uses_io_uring(&self) -> bool {
        self.session.uses_io_uring()
    }

    /// Why the readahead window could not be set (`MountConfig::read_ahead_kib`), if so.
    pub fn read_ahead_error(&self) -> Option<&ReadAheadError> {
        self.read_ahead.as_ref().err()
    }

    pub fn unmounter(&self) -> Unmounter {
        self.unmounter.clone()
    }

    /// Snapshot operations on the mounted subvolume that keep the mount's `.snap` current;
    /// `None` when a snapshot is mounted (it has no `.snap`).
    pub fn snapshot_control(&self) -> Option<SnapshotControl> {
        self.snapshot_control.clone()
    }

    /// Serves requests until the file system is unmounted, committing by the policy
    /// meanwhile, and commits once more at the end.
    pub fn serve(self) -> Result<(), MountError> {
        // Each timed commit first brings in the kernel's cached writes (the commit thread
        // serves no requests), so that a killed server loses at most one interval's writes.
        let flusher = self.flusher.clone();
        let committer = GroupCommitter::spawn_flushing(
            self.fs.pool().clone(),
            self.commit,
            move || {
                if let Some(Err(e)) = flusher.as_ref().map(PageFlusher::flush) {
                    eprintln!("tidefs mount: {e}");
                }
            },
            |e| {
                eprintln!(
                    "tidefs mount: background commit failed (the pool stops taking changes): {e}"
                );
            },
        );
        // Over io_uring the queues' threads poll themselves; the channel's watcher is idle.
        let watcher = if self.session.uses_io_uring() {
            None
        } else {
            let busy = self.busy.clone();
            let thread = std::thread::Builder::new()
                .name("tidefs-busy-poll".into())
                .spawn(move || busy.watch())
                .map_err(|source| MountError::Serve {
                    mountpoint: self.mountpoint.clone(),
                    source,
                })?;
            Some(thread)
        };
        let served = self.session.run().map_err(|source| MountError::Serve {
            mountpoint: self.mountpoint.clone(),
            source,
        });
        self.busy.stop();
        if let Some(watcher) = watcher {
            let _ = watcher.join();
        }
        drop(committer);
        self.fs.fsync()?;
        served
    }
}

/// Detaches a mount that is busy (`umount -l`): it disappears from the namespace now and
/// ends when its last user leaves.
pub fn lazy_unmount(mountpoint: &Path) -> Result<(), MountError> {
    run_unmount_tool(mountpoint, true)
}

/// Unmounts a FUSE mount from any process of the owner (or root), as `fusermount3 -u`.
/// Files closed just before still hold the mount until the kernel's asynchronous RELEASE
/// requests are answered, so "busy" is retried for a short while before it is reported.
pub fn unmount(mountpoint: &Path) -> Result<(), MountError> {
    let mut attempts = 0;
    loop {
        match run_unmount_tool(mountpoint, false) {
            Err(MountError::Unmount { detail, .. })
                if detail.contains("busy") && attempts < UNMOUNT_BUSY_RETRIES =>
            {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            r => return r,
        }
    }
}

/// Retries of an unmount refused as busy (50 ms apart).
const UNMOUNT_BUSY_RETRIES: u32 = 20;

fn run_unmount_tool(mountpoint: &Path, lazy: bool) -> Result<(), MountError> {
    let mut errors = Vec::new();
    // fusermount3 works for the mount's owner without privileges; umount is the fallback
    // where FUSE's tools are missing (root only).
    for (tool, args) in [
        (
            "fusermount3",
            if lazy { vec!["-u", "-z"] } else { vec!["-u"] },
        ),
        (
            "fusermount",
            if lazy { vec!["-u", "-z"] } else { vec!["-u"] },
        ),
        ("umount", if lazy { vec!["-l"] } else { vec![] }),
    ] {
        match Command::new(tool).args(&args).arg(mountpoint).output() {
            Ok(out) if out.status.success() => return Ok(()),
            Ok(out) => errors.push(String::from_utf8_lossy(&out.stderr).trim().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => errors.push(format!("{tool}: {e}")),
        }
        // A tool that ran and failed has said why; a second one would only repeat it.
        break;
    }
    Err(MountError::Unmount {
        mountpoint: mountpoint.to_path_buf(),
        detail: if errors.is_empty() {
            "neither fusermount3, fusermount nor umount is installed".into()
        } else {
            errors.join("; ")
        },
    })
}
