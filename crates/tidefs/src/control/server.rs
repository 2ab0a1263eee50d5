//! The accept loop of the control socket, shared by every server that holds a pool. It knows
//! lines, not messages: a [`ControlService`] turns one request into one reply.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tidefs_volume::control::{decode_line, encode_line, CONTROL_LINE_BYTES_MAX};

/// How often the accept loop looks for a stop request.
const CONTROL_POLL_INTERVAL: Duration = Duration::from_millis(20);
/// How long a connected client may take to send its next line: a stalled client must not
/// block the (single) control thread for long.
const CONTROL_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// What a server answers on its control socket.
pub trait ControlService: Send + 'static {
    type Request: DeserializeOwned;
    type Reply: Serialize;
    fn handle(&self, request: Self::Request) -> Self::Reply;
    /// The reply to a line that is no request of this service.
    fn malformed(&self, message: String) -> Self::Reply;
}

/// A listening control socket and the thread that answers it.
pub struct ControlServer {
    path: PathBuf,
    stopping: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl ControlServer {
    /// Starts listening in the pool directory. A pool on a block device has no directory to
    /// hold the socket, so it gets none (`who` prefixes the notice, e.g. "tidefs nbd").
    pub fn start<S: ControlService>(
        pool_path: &Path,
        who: &'static str,
        service: S,
    ) -> Result<Option<ControlServer>> {
        if !pool_path.is_dir() {
            eprintln!(
                "{who}: {} is not a directory; no control socket (other commands cannot reach the pool while serving)",
                pool_path.display()
            );
            return Ok(None);
        }
        let path = super::socket_of(pool_path);
        // We hold the pool lock, so a socket file here was left by a server that died.
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)
            .with_context(|| format!("creating the control socket {}", path.display()))?;
        listener.set_nonblocking(true)?;
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = stopping.clone();
        let thread = std::thread::Builder::new()
            .name("tidefs-control".into())
            .spawn(move || accept_until_stopped(&listener, &stop, who, &service))
            .context("starting the control thread")?;
        Ok(Some(ControlServer {
            path,
            stopping,
            thread,
        }))
    }

    /// Stops answering (after the request in progress) and removes the socket file.
    pub fn stop(self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = self.thread.join();
        let _ = std::fs::remove_file(&self.path);
    }
}

fn accept_until_stopped<S: ControlService>(
    listener: &UnixListener,
    stop: &AtomicBool,
    who: &str,
    service: &S,
) {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                if let Err(e) = serve_connection(stream, service) {
                    eprintln!("{who}: control connection: {e}");
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(CONTROL_POLL_INTERVAL)
            }
            Err(e) => {
                eprintln!("{who}: control socket: {e}");
                std::thread::sleep(CONTROL_POLL_INTERVAL);
            }
        }
    }
}

/// Answers the requests of one connection, one line each, until it closes.
fn serve_connection<S: ControlService>(stream: UnixStream, service: &S) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(CONTROL_READ_TIMEOUT))?;
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
        let reply = match decode_line::<S::Request>(&line) {
            Ok(request) => service.handle(request),
            Err(message) => service.malformed(message),
        };
        writer.write_all(&encode_line(&reply))?;
    }
}
