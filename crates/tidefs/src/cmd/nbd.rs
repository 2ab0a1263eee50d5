//! `tidefs nbd serve`: serve the pool's volumes and snapshots over NBD in the foreground
//! until SIGINT or SIGTERM, then commit and exit.
//!
//! While it runs, the server holds the pool; `tidefs volume list` and the snapshot
//! commands reach it through `control.sock` in the pool directory.

use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use tidefs_nbd::{serve, ListenAddress, Listener, ServeOptions};
use tidefs_store::{CommitPolicy, GroupCommitter};
use tidefs_volume::control::{handle, ControlReply, ControlRequest};
use tidefs_volume::{VolumeExports, VolumeRef, VolumeStore};

use crate::control::{ControlServer, ControlService};

/// Where `tidefs nbd serve` listens when told nothing: the NBD port, this machine only.
const DEFAULT_LISTEN: &str = "127.0.0.1:10809";

/// Uncommitted bytes that trigger a commit between flushes. A commit holds the writer
/// while it syncs the device, so committing often stalls every client for no gain in
/// safety (only FLUSH and FUA promise durability); uncommitted data waits in the page
/// cache, and only the edited map nodes (about 1% of the data) wait in memory.
const COMMIT_DIRTY_BYTES_MAX: u64 = 2 << 30;

#[derive(Subcommand)]
pub enum NbdCommand {
    /// Serve volumes (NAME) and snapshots (NAME@SNAP) until SIGINT or SIGTERM.
    Serve(ServeArgs),
}

#[derive(Args)]
pub struct ServeArgs {
    /// TCP address to listen on (port 0 picks a free port) [default: 127.0.0.1:10809].
    #[arg(long, value_name = "ADDR:PORT", conflicts_with = "socket")]
    listen: Option<SocketAddr>,
    /// Unix socket to listen on instead of TCP.
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Export only these (repeatable); default: every volume and snapshot.
    #[arg(long = "export", value_name = "NAME[@SNAP]")]
    exports: Vec<String>,
    /// Let clients write to snapshot exports.
    #[arg(long)]
    writable_snapshots: bool,
    /// Commit at least this often, in seconds (FLUSH and FUA commit at once).
    #[arg(long, default_value_t = 5)]
    commit_interval: u64,
}

pub fn run(pool_path: &Path, cmd: NbdCommand) -> Result<ExitCode> {
    match cmd {
        NbdCommand::Serve(args) => serve_until_signalled(pool_path, args),
    }
}

fn serve_until_signalled(pool_path: &Path, args: ServeArgs) -> Result<ExitCode> {
    let only = if args.exports.is_empty() {
        None
    } else {
        Some(
            args.exports
                .iter()
                .map(|e| VolumeRef::parse(e))
                .collect::<Result<Vec<_>, _>>()?,
        )
    };
    let pool = crate::pool_arg::open_or_create(pool_path)?;
    let store = Arc::new(VolumeStore::open(pool.clone()).context("opening the volume catalog")?);
    for target in only.iter().flatten() {
        store
            .info(target)
            .with_context(|| format!("cannot export {target}"))?;
    }
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .context("installing signal handlers")?;

    let committer = GroupCommitter::spawn(
        pool.clone(),
        CommitPolicy {
            interval: Duration::from_secs(args.commit_interval.max(1)),
            dirty_bytes_max: COMMIT_DIRTY_BYTES_MAX,
        },
        |e| eprintln!("tidefs: background commit failed: {e}"),
    );
    let control = ControlServer::start(pool_path, "tidefs nbd", VolumeService(store.clone()))?;
    let provider = Arc::new(VolumeExports::new(
        store.clone(),
        only,
        args.writable_snapshots,
    ));
    let (listener, unix_path): (Listener, Option<PathBuf>) = match &args.socket {
        Some(path) => {
            remove_stale_socket(path)?;
            let l = UnixListener::bind(path)
                .with_context(|| format!("listening on {}", path.display()))?;
            (l.into(), Some(path.clone()))
        }
        None => {
            let addr = args
                .listen
                .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid default"));
            let l = TcpListener::bind(addr).with_context(|| format!("listening on {addr}"))?;
            (l.into(), None)
        }
    };
    let server = serve(listener, provider, ServeOptions::default()).context("starting NBD")?;
    let shown = match server.address() {
        ListenAddress::Tcp(a) => a.to_string(),
        ListenAddress::Unix(p) => format!("unix:{}", p.display()),
    };
    eprintln!(
        "tidefs nbd: pid {} serving {}; listening on {shown}",
        std::process::id(),
        pool_path.display()
    );

    // Block until SIGINT or SIGTERM.
    let _ = signals.forever().next();
    server.stop();
    if let Some(c) = control {
        c.stop();
    }
    drop(committer);
    let tid = store.commit().context("committing before exit")?;
    if let Some(p) = unix_path {
        let _ = std::fs::remove_file(p);
    }
    eprintln!("tidefs nbd: stopped; everything written is committed (tid {tid})");
    Ok(ExitCode::SUCCESS)
}

/// A Unix socket file left by a server that died: nobody answers on it, so it goes.
fn remove_stale_socket(path: &Path) -> Result<()> {
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            bail!("{} is in use by another server", path.display());
        }
        std::fs::remove_file(path)
            .with_context(|| format!("removing the stale socket {}", path.display()))?;
    }
    Ok(())
}

/// What `nbd serve` answers on the pool's control socket: the volume messages.
struct VolumeService(Arc<VolumeStore>);

impl ControlService for VolumeService {
    type Request = ControlRequest;
    type Reply = ControlReply;

    fn handle(&self, request: ControlRequest) -> ControlReply {
        handle(&self.0, request, super::volume::now(), std::process::id())
    }

    fn malformed(&self, message: String) -> ControlReply {
        ControlReply::Error { message }
    }
}
