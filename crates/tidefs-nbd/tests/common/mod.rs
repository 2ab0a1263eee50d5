//! Helpers shared by the integration tests: servers on random ports, tool detection,
//! seeded randomness.

#![allow(dead_code)] // each test binary uses a different subset

use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use rand::{RngCore, SeedableRng};
use tidefs_nbd::{
    serve, BlockExport, ClientOptions, ExportMap, ListenAddress, MemoryExport, NbdClient,
    ServeOptions, Server,
};

pub const MIB: u64 = 1 << 20;

/// A server on 127.0.0.1:<random port>.
pub fn tcp_server(provider: ExportMap) -> (Server, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = serve(listener, Arc::new(provider), ServeOptions::default()).unwrap();
    let ListenAddress::Tcp(address) = server.address().clone() else {
        unreachable!()
    };
    (server, address)
}

/// A server on a Unix socket in a fresh temporary directory (kept alive by the guard).
pub fn unix_server(provider: ExportMap) -> (Server, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nbd.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let server = serve(listener, Arc::new(provider), ServeOptions::default()).unwrap();
    (server, path, dir)
}

/// One writable memory export named "disk" (also the default export).
pub fn memory_disk(size: u64) -> (ExportMap, Arc<MemoryExport>) {
    let export = Arc::new(MemoryExport::new(size));
    let map = ExportMap::new()
        .with_export(
            "disk",
            "memory disk",
            Arc::clone(&export) as Arc<dyn BlockExport>,
        )
        .with_default("disk");
    (map, export)
}

pub fn client(address: SocketAddr, export: &str) -> NbdClient {
    NbdClient::connect_tcp(address, export, ClientOptions::default()).unwrap()
}

/// True when `tool` runs; otherwise prints why the calling test is skipped.
pub fn have_tool(tool: &str, test: &str) -> bool {
    let found = Command::new(tool).arg("--version").output().is_ok();
    if !found {
        println!("SKIP {test}: {tool} is not installed (apt-get install libnbd-bin qemu-utils)");
    }
    found
}

/// A seeded random source; the seed is printed so a failure can be replayed with
/// `TIDEFS_TEST_SEED=<seed>`.
pub fn seeded_rng(test: &str) -> rand::rngs::StdRng {
    let seed = std::env::var("TIDEFS_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    println!("{test}: seed {seed}");
    rand::rngs::StdRng::seed_from_u64(seed)
}

pub fn random_bytes(rng: &mut impl RngCore, len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    rng.fill_bytes(&mut bytes);
    bytes
}

/// Runs a command and returns its stdout; panics with stderr on failure.
pub fn run(command: &mut Command) -> String {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

pub fn nbd_uri(address: SocketAddr, export: &str) -> String {
    format!("nbd://{address}/{export}")
}
