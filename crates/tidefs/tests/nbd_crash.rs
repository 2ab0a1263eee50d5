//! Proves that `kill -9` of the server in the middle of writes loses nothing that a FLUSH
//! acknowledged, never shows a torn write, and leaves a pool that `tidefs fsck` passes.

mod nbd_common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nbd_common::*;
use tidefs_nbd::{ClientOptions, NbdClient};

const CHUNK: u64 = 64 * 1024;
const CHUNKS: u64 = 64;

/// Per chunk: the generation a FLUSH made durable, and the ones written after it.
#[derive(Default, Clone)]
struct Ledger {
    durable: BTreeMap<u64, u64>,
    since_flush: BTreeMap<u64, Vec<u64>>,
    flushes: u64,
}

fn chunk_bytes(chunk: u64, generation: u64) -> Vec<u8> {
    let mut buf = vec![0u8; CHUNK as usize];
    if generation != 0 {
        pattern(generation, chunk * CHUNK, &mut buf);
    }
    buf
}

#[test]
fn kill_9_during_writes_keeps_every_flushed_write() {
    let seed = std::env::var("TIDEFS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_u64);
    println!("seed {seed}");
    let pool = TestPool::new();
    pool.ok(&[
        "volume",
        "create",
        "disk",
        "--size",
        &(CHUNK * CHUNKS).to_string(),
    ]);
    let mut server = pool.serve(&["--commit-interval", "3600"]);
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let writer = {
        let (ledger, address) = (ledger.clone(), server.address.clone());
        std::thread::spawn(move || {
            let mut client =
                NbdClient::connect_tcp(address.as_str(), "disk", ClientOptions::default()).unwrap();
            let mut rng = seed | 1;
            for generation in 1u64.. {
                // xorshift64: the whole run follows from the seed.
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let chunk = rng % CHUNKS;
                if client
                    .write(chunk * CHUNK, &chunk_bytes(chunk, generation), false)
                    .is_err()
                {
                    return;
                }
                ledger
                    .lock()
                    .unwrap()
                    .since_flush
                    .entry(chunk)
                    .or_default()
                    .push(generation);
                if generation % 7 == 0 {
                    if client.flush().is_err() {
                        return;
                    }
                    let mut l = ledger.lock().unwrap();
                    let pending = std::mem::take(&mut l.since_flush);
                    for (chunk, gens) in pending {
                        l.durable.insert(chunk, *gens.last().unwrap());
                    }
                    l.flushes += 1;
                }
            }
        })
    };
    // Let the writer get well into its work, then kill the server without warning.
    let mut waited = 0;
    while ledger.lock().unwrap().flushes < 40 && waited < 600 {
        std::thread::sleep(Duration::from_millis(50));
        waited += 1;
    }
    let status = server.signal_and_wait("KILL");
    assert!(!status.success());
    writer.join().unwrap();
    let ledger = ledger.lock().unwrap().clone();
    assert!(
        ledger.flushes >= 40,
        "the writer made progress before the kill"
    );

    // The pool is consistent as it was left.
    run(&mut pool.tidefs(&["fsck"]));
    let server = pool.serve(&[]);
    let mut client =
        NbdClient::connect_tcp(server.address.as_str(), "disk", ClientOptions::default()).unwrap();
    let mut got = vec![0u8; CHUNK as usize];
    for chunk in 0..CHUNKS {
        client.read(chunk * CHUNK, &mut got).unwrap();
        let durable = ledger.durable.get(&chunk).copied().unwrap_or(0);
        let mut allowed = vec![durable];
        allowed.extend(
            ledger
                .since_flush
                .get(&chunk)
                .into_iter()
                .flatten()
                .copied(),
        );
        assert!(
            allowed.iter().any(|&g| got == chunk_bytes(chunk, g)),
            "chunk {chunk}: neither the flushed generation {durable} nor a later write"
        );
    }
    client.disconnect().unwrap();
    server.stop();
    run(&mut pool.tidefs(&["fsck"]));
}
