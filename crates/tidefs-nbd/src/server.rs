//! The runtime: accepts TCP or Unix-socket connections and runs each on its own thread
//! with blocking I/O, driving the sans-I/O [`Connection`]. Requests on one connection are
//! served in order, so replies never interleave; clients get parallelism from several
//! connections (`NBD_FLAG_CAN_MULTI_CONN`).
//!
//! Replies are batched: they are written when the next read would have to wait for the
//! client, or when [`REPLY_BATCH_BYTES_MAX`] is pending. A client that pipelines many
//! requests thus gets its replies in few system calls, and one that waits for each reply
//! gets it at once.

use std::collections::HashMap;
use std::io::{self, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tracing::{debug, info, warn};

use crate::connection::{Connection, Want};
use crate::error::NbdError;
use crate::export::ExportProvider;
use crate::limits::{INPUT_BUFFER_BYTES, REPLY_BATCH_BYTES_MAX};
use crate::stream::Stream;

/// A socket to accept NBD clients on.
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl From<TcpListener> for Listener {
    fn from(listener: TcpListener) -> Self {
        Listener::Tcp(listener)
    }
}

impl From<UnixListener> for Listener {
    fn from(listener: UnixListener) -> Self {
        Listener::Unix(listener)
    }
}

/// Where a server listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenAddress {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Connections served at once; more are accepted and closed at once.
    pub connections_max: usize,
    /// How long a client may take over the whole handshake. Transmission has no timeout:
    /// an idle block device (a kernel client, say) may stay connected for days.
    pub handshake_time_max: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            connections_max: 1024,
            handshake_time_max: Duration::from_secs(60),
        }
    }
}

/// Starts serving on `listener` in background threads and returns at once.
pub fn serve(
    listener: impl Into<Listener>,
    provider: Arc<dyn ExportProvider>,
    options: ServeOptions,
) -> Result<Server, NbdError> {
    let listener = listener.into();
    match &listener {
        Listener::Tcp(l) => l.set_nonblocking(true)?,
        Listener::Unix(l) => l.set_nonblocking(true)?,
    }
    let address = match &listener {
        Listener::Tcp(l) => ListenAddress::Tcp(l.local_addr()?),
        Listener::Unix(l) => {
            let path = l.local_addr()?.as_pathname().map(PathBuf::from);
            let path = path.ok_or_else(|| {
                io::Error::new(ErrorKind::InvalidInput, "unix listener has no path")
            })?;
            ListenAddress::Unix(path)
        }
    };
    let shared = Arc::new(Shared {
        address: address.clone(),
        stopping: AtomicBool::new(false),
        registry: Mutex::new(Registry::default()),
    });
    let accept_shared = Arc::clone(&shared);
    let accept_thread = thread::Builder::new()
        .name("nbd-accept".into())
        .spawn(move || accept_loop(listener, accept_shared, provider, options))?;
    info!(?address, "NBD server listening");
    Ok(Server {
        shared,
        accept_thread: Some(accept_thread),
    })
}

/// A running server. Dropping it stops it.
pub struct Server {
    shared: Arc<Shared>,
    accept_thread: Option<JoinHandle<()>>,
}

/// Stops a server from another thread (a signal handler's helper thread, say).
#[derive(Clone)]
pub struct StopHandle(Arc<Shared>);

impl StopHandle {
    /// Stops accepting, lets every connection finish the request it is serving, closes
    /// them all. Returns at once; [`Server::wait`] returns when it is done.
    pub fn stop(&self) {
        self.0.stop();
    }
}

impl Server {
    pub fn address(&self) -> &ListenAddress {
        &self.shared.address
    }

    pub fn stop_handle(&self) -> StopHandle {
        StopHandle(Arc::clone(&self.shared))
    }

    /// Connections currently open.
    pub fn connection_count(&self) -> usize {
        self.shared.registry.lock().open.len()
    }

    /// Stops and waits until every connection thread has finished.
    pub fn stop(mut self) {
        self.shared.stop();
        self.join();
    }

    /// Waits until someone calls [`StopHandle::stop`] and the server has wound down.
    pub fn wait(mut self) {
        self.join();
    }

    fn join(&mut self) {
        if let Some(thread) = self.accept_thread.take() {
            if thread.join().is_err() {
                warn!("NBD accept thread panicked");
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shared.stop();
        self.join();
    }
}

struct Shared {
    address: ListenAddress,
    stopping: AtomicBool,
    registry: Mutex<Registry>,
}

#[derive(Default)]
struct Registry {
    next_id: u64,
    /// A handle on each open connection's socket, to shut it down on stop.
    open: HashMap<u64, Stream>,
    threads: Vec<JoinHandle<()>>,
}

impl Shared {
    fn stop(&self) {
        if self.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        // Shutting down the read side ends each connection after the request it is
        // serving: its reply still goes out, then the next read sees end-of-file.
        for stream in self.registry.lock().open.values() {
            let _ = stream.shutdown(Shutdown::Read);
        }
    }
}

/// How often the accept loop looks for new connections and for a stop request. std
/// offers no way to interrupt a blocking accept(), and waking it with a connection of
/// our own fails once a Unix socket's file is gone, so the listener is polled.
const ACCEPT_POLL_INTERVAL: Duration = Duration::from_millis(10);

fn accept_loop(
    listener: Listener,
    shared: Arc<Shared>,
    provider: Arc<dyn ExportProvider>,
    options: ServeOptions,
) {
    loop {
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        let accepted = match &listener {
            Listener::Tcp(l) => l.accept().map(|(s, _)| Stream::Tcp(s)),
            Listener::Unix(l) => l.accept().map(|(s, _)| Stream::Unix(s)),
        };
        let stream = match accepted.and_then(|s| s.set_nonblocking(false).map(|()| s)) {
            Ok(stream) => stream,
            Err(error) => {
                if error.kind() != ErrorKind::WouldBlock {
                    warn!(%error, "accept failed");
                }
                thread::sleep(ACCEPT_POLL_INTERVAL);
                continue;
            }
        };
        // Checked under the registry lock, which `stop` takes after raising the flag: a
        // connection is either refused here or registered before `stop` shuts them all.
        let mut registry = shared.registry.lock();
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        registry.threads.retain(|thread| !thread.is_finished());
        if registry.open.len() >= options.connections_max {
            warn!(
                max = options.connections_max,
                "too many connections; refusing one"
            );
            continue;
        }
        if let Err(error) = spawn_connection(&mut registry, &shared, stream, &provider, &options) {
            warn!(%error, "could not start a connection thread");
        }
    }
    let threads = std::mem::take(&mut shared.registry.lock().threads);
    for thread in threads {
        if thread.join().is_err() {
            warn!("NBD connection thread panicked");
        }
    }
    info!(address = ?shared.address, "NBD server stopped");
}

fn spawn_connection(
    registry: &mut Registry,
    shared: &Arc<Shared>,
    stream: Stream,
    provider: &Arc<dyn ExportProvider>,
    options: &ServeOptions,
) -> io::Result<()> {
    let id = registry.next_id;
    registry.next_id += 1;
    registry.open.insert(id, stream.try_clone()?);
    let shared = Arc::clone(shared);
    let provider = Arc::clone(provider);
    let options = options.clone();
    let spawned = thread::Builder::new()
        .name(format!("nbd-conn-{id}"))
        .spawn(move || {
            match serve_connection(stream, provider, &options) {
                Ok(()) => debug!(id, "connection closed"),
                Err(error) => info!(id, %error, "connection ended"),
            }
            shared.registry.lock().open.remove(&id);
        });
    match spawned {
        Ok(thread) => {
            registry.threads.push(thread);
            Ok(())
        }
        Err(error) => {
            registry.open.remove(&id);
            Err(error)
        }
    }
}

fn serve_connection(
    stream: Stream,
    provider: Arc<dyn ExportProvider>,
    options: &ServeOptions,
) -> Result<(), NbdError> {
    stream.set_nodelay()?;
    // The handshake as a whole must finish by this deadline; each read waits at most
    // for what is left of it, so a client trickling bytes cannot hold a thread forever.
    let handshake_deadline = Instant::now() + options.handshake_time_max;
    let mut reader = BufReader::with_capacity(INPUT_BUFFER_BYTES, stream.try_clone()?);
    let mut writer = stream;
    let mut out = Vec::with_capacity(REPLY_BATCH_BYTES_MAX);
    let mut input = Vec::new();
    let mut connection = Connection::new(provider, &mut out);
    let mut handshake_timeout_armed = false;
    while let Want::Bytes(n) = connection.want() {
        if reader.buffer().len() < n || out.len() >= REPLY_BATCH_BYTES_MAX {
            writer.write_all(&out)?;
            out.clear();
        }
        if !connection.is_transmitting() {
            let left = handshake_deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(ErrorKind::TimedOut, "handshake took too long").into());
            }
            writer.set_read_timeout(Some(left))?;
            handshake_timeout_armed = true;
        } else if handshake_timeout_armed {
            // Transmission has no timeout: an idle block device may stay open for days.
            writer.set_read_timeout(None)?;
            handshake_timeout_armed = false;
        }
        input.resize(n, 0);
        match reader.read_exact(&mut input[..n]) {
            Ok(()) => {}
            // The client went away (or the server is stopping): nothing left to answer.
            Err(error) if error.kind() == ErrorKind::UnexpectedEof => return Ok(()),
            Err(error) => return Err(error.into()),
        }
        if let Err(error) = connection.receive(&input[..n], &mut out) {
            // Replies to earlier requests are still owed; send them, then hang up.
            let _ = writer.write_all(&out);
            return Err(error.into());
        }
    }
    writer.write_all(&out)?;
    Ok(())
}
