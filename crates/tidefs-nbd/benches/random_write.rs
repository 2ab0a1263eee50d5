//! Random-write load driver: N NBD connections, each keeping Q requests of 4 KiB (by
//! default) in flight at random aligned offsets, for a fixed time; prints IOPS.
//!
//! Without `--tcp`/`--unix` it starts this crate's server in-process on a memory export.
//! With them it drives any NBD server (qemu-nbd, say), which is what `bench/compare.sh`
//! does. Run with `cargo bench -p tidefs-nbd --bench random_write -- [options]`:
//!
//! ```text
//! --tcp HOST:PORT | --unix PATH   server to drive (default: in-process memory export)
//! --export NAME                   export name (default "disk")
//! --connections N                 default 4
//! --queue-depth Q                 requests in flight per connection, default 16
//! --block BYTES                   write size, default 4096
//! --seconds S                     duration, default 10
//! --size BYTES                    in-process export size, default 1 GiB
//! --seed N                        offset sequence seed (printed when not given)
//! ```

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::exit;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use tidefs_nbd::client::Reply;
use tidefs_nbd::{serve, wire, ClientOptions, ExportMap, MemoryExport, NbdClient, ServeOptions};

#[derive(Clone)]
enum Target {
    Tcp(String),
    Unix(PathBuf),
}

#[derive(Clone)]
struct Settings {
    target: Option<Target>,
    export: String,
    connections: usize,
    queue_depth: usize,
    block_bytes: u32,
    duration: Duration,
    size_bytes: u64,
    seed: u64,
}

fn usage(problem: &str) -> ! {
    eprintln!("random_write: {problem} (see the doc comment in benches/random_write.rs)");
    exit(2)
}

fn parse_settings() -> Settings {
    let mut settings = Settings {
        target: None,
        export: "disk".into(),
        connections: 4,
        queue_depth: 16,
        block_bytes: 4096,
        duration: Duration::from_secs(10),
        size_bytes: 1 << 30,
        seed: rand::random(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        // `cargo bench` passes --bench to every bench binary.
        if arg == "--bench" {
            continue;
        }
        let value = args
            .next()
            .unwrap_or_else(|| usage(&format!("{arg} needs a value")));
        let number = || {
            value
                .parse::<u64>()
                .unwrap_or_else(|_| usage(&format!("{arg} needs a number")))
        };
        match arg.as_str() {
            "--tcp" => settings.target = Some(Target::Tcp(value.clone())),
            "--unix" => settings.target = Some(Target::Unix(PathBuf::from(&value))),
            "--export" => settings.export = value.clone(),
            "--connections" => settings.connections = number() as usize,
            "--queue-depth" => settings.queue_depth = number() as usize,
            "--block" => settings.block_bytes = number() as u32,
            "--seconds" => settings.duration = Duration::from_secs(number()),
            "--size" => settings.size_bytes = number(),
            "--seed" => settings.seed = number(),
            other => usage(&format!("unknown argument {other:?}")),
        }
    }
    settings
}

fn connect(target: &Target, export: &str) -> NbdClient {
    // Plain simple replies: a write's reply is 16 bytes either way.
    let options = ClientOptions {
        structured_replies: false,
        base_allocation: false,
    };
    let client = match target {
        Target::Tcp(address) => NbdClient::connect_tcp(address.as_str(), export, options),
        Target::Unix(path) => NbdClient::connect_unix(path, export, options),
    };
    client.unwrap_or_else(|e| usage(&format!("cannot connect: {e}")))
}

/// One connection's loop; returns the number of completed writes.
fn drive(mut client: NbdClient, settings: &Settings, seed: u64, deadline: Instant) -> u64 {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let block = u64::from(settings.block_bytes);
    let blocks = client.size() / block;
    assert!(blocks > 0, "export smaller than one block");
    let mut data = vec![0u8; settings.block_bytes as usize];
    rng.fill(&mut data[..]);
    let mut send = |client: &mut NbdClient, rng: &mut rand::rngs::StdRng| {
        let offset = rng.gen_range(0..blocks) * block;
        data[..8].copy_from_slice(&offset.to_le_bytes());
        client
            .send_request(wire::CMD_WRITE, 0, offset, settings.block_bytes, &data)
            .expect("send");
    };
    for _ in 0..settings.queue_depth {
        send(&mut client, &mut rng);
    }
    client.flush_requests().expect("send");
    let mut in_flight = settings.queue_depth;
    let mut completed = 0;
    while in_flight > 0 {
        match client.receive_reply().expect("reply") {
            Reply::Simple { error: 0, .. } => {}
            other => panic!("write failed: {other:?}"),
        }
        in_flight -= 1;
        completed += 1;
        if Instant::now() < deadline {
            send(&mut client, &mut rng);
            client.flush_requests().expect("send");
            in_flight += 1;
        }
    }
    let _ = client.disconnect();
    completed
}

fn main() {
    let settings = parse_settings();
    let mut _server = None;
    let target = match &settings.target {
        Some(target) => target.clone(),
        None => {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let address = listener.local_addr().unwrap();
            let export = MemoryExport::new(settings.size_bytes);
            let provider = ExportMap::new().with_export(&settings.export, "", Arc::new(export));
            _server = Some(serve(listener, Arc::new(provider), ServeOptions::default()).unwrap());
            Target::Tcp(address.to_string())
        }
    };
    println!(
        "random_write: seed {} connections {} queue depth {} block {} B",
        settings.seed, settings.connections, settings.queue_depth, settings.block_bytes
    );
    let clients: Vec<NbdClient> = (0..settings.connections)
        .map(|_| connect(&target, &settings.export))
        .collect();
    let start = Instant::now();
    let deadline = start + settings.duration;
    let threads: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, client)| {
            let settings = settings.clone();
            let seed = settings.seed.wrapping_add(i as u64);
            thread::spawn(move || drive(client, &settings, seed, deadline))
        })
        .collect();
    let completed: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let elapsed = start.elapsed().as_secs_f64();
    let iops = completed as f64 / elapsed;
    let mib_per_s = iops * f64::from(settings.block_bytes) / f64::from(1 << 20);
    println!(
        "random_write: {completed} writes in {elapsed:.2} s: {iops:.0} IOPS ({mib_per_s:.1} MiB/s)"
    );
}
