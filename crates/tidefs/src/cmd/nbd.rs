//! `tidefs nbd serve`: serve the pool's volumes and snapshots over NBD in the foreground
//! until SIGINT or SIGTERM, then commit and exit.
//!
//! While it runs, the server holds the pool; `tidefs volume list` and the snapshot
//! commands reach it through `control.sock` in the pool directory.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use tidefs_nbd::{serve, ListenAddress, Listener, ServeOptions};
use tidefs_store::{CommitPolicy, GroupCommitter};
use tidefs_volume::control::{
    decode_line, encode_line, handle, ControlReply, ControlRequest, CONTROL_LINE_BYTES_MAX,
    CONTROL_SOCKET_NAME,
};
use tidefs_volume::{VolumeExports, VolumeRef, VolumeStore};

/// Where `tidefs nbd serve` listens when told nothing: the NBD port, this machine only.
const DEFAULT_LISTEN: &str = "127.0.0.1:10809";

/// Uncommitted bytes that trigger a commit between flushes. A commit holds the writer
/// while it syncs the device, so committing often stalls every client for no gain in
/// safety (only FLUSH and FUA promise durability); uncommitted data waits in the page
/// cache, and only the edited map nodes (about 1% of the data) wait in memory.
const COMMIT_DIRTY_BYTES_MAX: u64 = 2 << 30;

/// How often the control socket's accept loop looks for a stop request.
const CONTROL_POLL_INTERVAL: Duration = Duration::from_millis(20);

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
    let control = ControlServer::start(pool_path, store.clone())?;
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

/// The pool's control socket: one JSON request line in, one reply line out.
struct ControlServer {
    path: PathBuf,
    stopping: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl ControlServer {
    /// Starts listening in the pool directory; a pool on a block device has no directory
    /// to hold the socket, so it gets none.
    fn start(pool_path: &Path, store: Arc<VolumeStore>) -> Result<Option<ControlServer>> {
        if !pool_path.is_dir() {
            eprintln!(
                "tidefs nbd: {} is not a directory; no control socket (other commands cannot reach the pool while serving)",
                pool_path.display()
            );
            return Ok(None);
        }
        let path = pool_path.join(CONTROL_SOCKET_NAME);
        // We hold the pool lock, so a socket file here was left by a server that died.
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)
            .with_context(|| format!("creating the control socket {}", path.display()))?;
        listener.set_nonblocking(true)?;
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = stopping.clone();
        let thread = std::thread::Builder::new()
            .name("tidefs-control".into())
            .spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            if let Err(e) = serve_control(stream, &store) {
                                eprintln!("tidefs nbd: control connection: {e}");
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            std::thread::sleep(CONTROL_POLL_INTERVAL)
                        }
                        Err(e) => {
                            eprintln!("tidefs nbd: control socket: {e}");
                            std::thread::sleep(CONTROL_POLL_INTERVAL);
                        }
                    }
                }
            })
            .context("starting the control thread")?;
        Ok(Some(ControlServer {
            path,
            stopping,
            thread,
        }))
    }

    fn stop(self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = self.thread.join();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Answers the requests of one control connection, one line each, until it closes.
fn serve_control(stream: UnixStream, store: &VolumeStore) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream).take(CONTROL_LINE_BYTES_MAX as u64 + 1);
    loop {
        let mut line = Vec::new();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        reader.set_limit(CONTROL_LINE_BYTES_MAX as u64 + 1);
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        let reply = match decode_line::<ControlRequest>(&line) {
            Ok(request) => handle(store, request, super::volume::now(), std::process::id()),
            Err(message) => ControlReply::Error { message },
        };
        writer.write_all(&encode_line(&reply))?;
    }
}
