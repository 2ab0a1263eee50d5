//! The CLI's side of the control socket: decide whether the pool is ours to open or held by
//! a server, and send that server one request.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tidefs_store::StoreError;
use tidefs_volume::control::{
    decode_line, encode_line, CONTROL_LINE_BYTES_MAX, CONTROL_SOCKET_NAME,
};

/// How long the CLI waits for a reply: a snapshot of a busy pool waits for the writer.
const CONTROL_REPLY_WAIT_MAX: Duration = Duration::from_secs(60);

/// The control socket of the pool at `pool_path`.
pub fn socket_of(pool_path: &Path) -> PathBuf {
    pool_path.join(CONTROL_SOCKET_NAME)
}

/// How this process reaches a pool.
pub enum PoolAccess<T> {
    /// We opened it.
    Direct(T),
    /// Another process holds it and serves a control socket; `holder` says who.
    Held { socket: PathBuf, holder: String },
}

impl<T> PoolAccess<T> {
    /// Opens the pool with `open`; when a server holds it and listens on its control socket,
    /// says so instead. Any other failure, including a holder without a socket (a `tidefs
    /// send`, say), is `open`'s error, which names the holder.
    pub fn open(pool_path: &Path, open: impl FnOnce() -> Result<T>) -> Result<PoolAccess<T>> {
        let e = match open() {
            Ok(t) => return Ok(PoolAccess::Direct(t)),
            Err(e) => e,
        };
        let socket = socket_of(pool_path);
        match e.downcast_ref::<StoreError>() {
            Some(StoreError::Locked { holder, .. }) if socket.exists() => Ok(PoolAccess::Held {
                socket,
                holder: holder.clone(),
            }),
            _ => Err(e),
        }
    }
}

/// Sends one request to the server holding the pool and returns its reply.
pub fn ask<Req: Serialize, Rep: DeserializeOwned>(
    socket: &Path,
    holder: &str,
    request: &Req,
) -> Result<Rep> {
    let unreachable = || {
        format!(
            "the pool is held by {holder}, which does not answer on {}",
            socket.display()
        )
    };
    let mut stream = UnixStream::connect(socket).with_context(unreachable)?;
    stream.set_read_timeout(Some(CONTROL_REPLY_WAIT_MAX))?;
    stream
        .write_all(&encode_line(request))
        .with_context(unreachable)?;
    let mut line = Vec::new();
    BufReader::new(stream)
        .take(CONTROL_LINE_BYTES_MAX as u64 + 1)
        .read_until(b'\n', &mut line)
        .with_context(unreachable)?;
    if line.last() == Some(&b'\n') {
        line.pop();
    }
    decode_line::<Rep>(&line).map_err(|e| anyhow!("{}: {e}", unreachable()))
}
