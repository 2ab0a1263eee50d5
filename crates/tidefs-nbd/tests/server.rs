//! Proves the server runtime over real sockets: every command over TCP and Unix, several
//! connections at once, and that misbehaving clients are cut off without disturbing others.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;

use common::*;
use rand::Rng;
use tidefs_nbd::request::RequestHeader;
use tidefs_nbd::{
    serve, wire, BlockExport, BlockSizeConstraints, ClientError, ClientOptions, ExportMap,
    MemoryExport, NbdClient, ServeOptions,
};

/// Reads until the server closes; returns what it sent. Fails if it never closes.
fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut all = Vec::new();
    stream
        .read_to_end(&mut all)
        .expect("server should close the connection");
    all
}

/// Connects and gets through the handshake with NBD_OPT_EXPORT_NAME by hand.
fn raw_export_name(address: std::net::SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(address).unwrap();
    let mut greeting = [0u8; 18];
    stream.read_exact(&mut greeting).unwrap();
    let flags = wire::FLAG_C_FIXED_NEWSTYLE | wire::FLAG_C_NO_ZEROES;
    stream.write_all(&flags.to_be_bytes()).unwrap();
    stream.write_all(&wire::IHAVEOPT.to_be_bytes()).unwrap();
    stream
        .write_all(&wire::OPT_EXPORT_NAME.to_be_bytes())
        .unwrap();
    stream.write_all(&4u32.to_be_bytes()).unwrap();
    stream.write_all(b"disk").unwrap();
    let mut reply = [0u8; 10];
    stream.read_exact(&mut reply).unwrap();
    stream
}

#[test]
fn every_command_round_trips_over_tcp() {
    let (map, export) = memory_disk(4 * MIB);
    let (_server, address) = tcp_server(map);
    let mut client = client(address, "disk");
    assert_eq!(client.size(), 4 * MIB);
    let data: Vec<u8> = (0..65536u32).map(|i| (i * 7) as u8).collect();
    client.write(MIB, &data, false).unwrap();
    client.write(2 * MIB, &data, true).unwrap();
    client.flush().unwrap();
    let mut back = vec![0u8; data.len()];
    client.read(MIB, &mut back).unwrap();
    assert_eq!(back, data);

    let extents = client.block_status(0, 4 * MIB as u32).unwrap();
    let hole = wire::STATE_HOLE | wire::STATE_ZERO;
    let flags: Vec<(u32, u32)> = extents.iter().map(|e| (e.len, e.flags)).collect();
    assert_eq!(
        flags,
        [
            (MIB as u32, hole),
            (65536, 0),
            (MIB as u32 - 65536, hole),
            (65536, 0),
            (2 * MIB as u32 - 65536, hole)
        ]
    );

    client.trim(MIB, 65536).unwrap();
    client.write_zeroes(2 * MIB, 4096, true).unwrap();
    client.write_zeroes(2 * MIB + 4096, 4096, false).unwrap();
    client.read(2 * MIB, &mut back[..8192]).unwrap();
    assert!(back[..8192].iter().all(|&b| b == 0));
    assert_eq!(
        export.allocated_blocks(),
        15,
        "trim freed 16 blocks; NO_HOLE zeroes kept block 1 of the second write"
    );
    client
        .raw_command(wire::CMD_CACHE, 0, 0, 4096, &[])
        .unwrap();
    client.disconnect().unwrap();
}

#[test]
fn every_command_round_trips_over_unix_socket_with_simple_replies() {
    let (map, _export) = memory_disk(MIB);
    let (_server, path, _dir) = unix_server(map);
    let options = ClientOptions {
        structured_replies: false,
        base_allocation: false,
    };
    let mut client = NbdClient::connect_unix(&path, "disk", options).unwrap();
    client.write(512, b"hello", false).unwrap();
    let mut back = [0u8; 5];
    client.read(512, &mut back).unwrap();
    assert_eq!(&back, b"hello");
    client.flush().unwrap();
    client.trim(0, 4096).unwrap();
    client.write_zeroes(0, 4096, false).unwrap();
    let error = client
        .raw_command(wire::CMD_BLOCK_STATUS, 0, 0, 4096, &[])
        .unwrap_err();
    assert!(matches!(
        error,
        ClientError::CommandFailed { errno: 22, .. }
    ));
}

#[test]
fn malformed_requests_get_errors_and_the_connection_goes_on() {
    let (map, _export) = memory_disk(MIB);
    let (_server, address) = tcp_server(map);
    let mut client = client(address, "disk");
    let errno = |result: Result<(), ClientError>| match result {
        Err(ClientError::CommandFailed { errno, message }) => {
            assert!(!message.is_empty(), "structured errors carry a message");
            errno
        }
        other => panic!("expected an NBD error, got {other:?}"),
    };
    assert_eq!(
        errno(client.raw_command(77, 0, 0, 0, &[])),
        22,
        "unknown command"
    );
    assert_eq!(
        errno(client.raw_command(wire::CMD_READ, 0x40, 0, 512, &[])),
        22,
        "unknown flag"
    );
    assert_eq!(
        errno(client.raw_command(wire::CMD_READ, 0, MIB - 256, 512, &[])),
        22,
        "read past the end"
    );
    assert_eq!(
        errno(client.write(MIB - 256, &[1u8; 512], false)),
        28,
        "write past the end"
    );
    assert_eq!(
        errno(client.raw_command(wire::CMD_FLUSH, 0, 4096, 0, &[])),
        22,
        "flush with an offset"
    );
    let mut ok = [0u8; 4];
    client.read(0, &mut ok).unwrap();
}

#[test]
fn misaligned_requests_are_refused_on_an_aligned_export() {
    let export =
        MemoryExport::new(MIB).with_block_size(BlockSizeConstraints::new(512, 4096, 1 << 20));
    let map = ExportMap::new().with_export("disk", "", Arc::new(export));
    let (_server, address) = tcp_server(map);
    let mut client = client(address, "disk");
    assert_eq!(client.minimum_block_bytes(), 512);
    let error = client.write(100, &[1u8; 512], false).unwrap_err();
    assert!(matches!(
        error,
        ClientError::CommandFailed { errno: 22, .. }
    ));
    let error = client
        .raw_command(wire::CMD_READ, 0, 0, 1 << 20 | 512, &[])
        .unwrap_err();
    assert!(matches!(
        error,
        ClientError::CommandFailed { errno: 22, .. }
    ));
    client.write(512, &[1u8; 512], false).unwrap();
}

#[test]
fn go_without_block_size_on_aligned_export_is_refused() {
    // NbdClient always asks for NBD_INFO_BLOCK_SIZE, so this speaks the handshake by hand.
    let export =
        MemoryExport::new(MIB).with_block_size(BlockSizeConstraints::new(4096, 4096, 1 << 20));
    let map = ExportMap::new().with_export("disk", "", Arc::new(export));
    let (_server, address) = tcp_server(map);
    let mut stream = TcpStream::connect(address).unwrap();
    let mut greeting = [0u8; 18];
    stream.read_exact(&mut greeting).unwrap();
    stream.write_all(&1u32.to_be_bytes()).unwrap();
    let mut payload = 4u32.to_be_bytes().to_vec();
    payload.extend_from_slice(b"disk");
    payload.extend_from_slice(&0u16.to_be_bytes());
    stream.write_all(&wire::IHAVEOPT.to_be_bytes()).unwrap();
    stream.write_all(&wire::OPT_GO.to_be_bytes()).unwrap();
    stream
        .write_all(&(payload.len() as u32).to_be_bytes())
        .unwrap();
    stream.write_all(&payload).unwrap();
    let mut last_reply_type = 0;
    while last_reply_type == 0 || last_reply_type == wire::REP_INFO {
        let mut header = [0u8; 20];
        stream.read_exact(&mut header).unwrap();
        last_reply_type = u32::from_be_bytes(header[12..16].try_into().unwrap());
        let len = u32::from_be_bytes(header[16..20].try_into().unwrap());
        let mut data = vec![0u8; len as usize];
        stream.read_exact(&mut data).unwrap();
    }
    assert_eq!(last_reply_type, wire::REP_ERR_BLOCK_SIZE_REQD);
}

#[test]
fn read_only_export_refuses_writes_with_eperm() {
    let export = MemoryExport::new(MIB).with_read_only(true);
    let map = ExportMap::new().with_export("snap", "", Arc::new(export));
    let (_server, address) = tcp_server(map);
    let mut client = client(address, "snap");
    assert_ne!(client.transmission_flags() & wire::FLAG_READ_ONLY, 0);
    for result in [
        client.write(0, &[1u8; 512], false),
        client.trim(0, 4096),
        client.write_zeroes(0, 4096, false),
    ] {
        assert!(matches!(
            result,
            Err(ClientError::CommandFailed { errno: 1, .. })
        ));
    }
    let mut buf = [1u8; 512];
    client.read(0, &mut buf).unwrap();
    assert_eq!(buf, [0u8; 512]);
}

#[test]
fn unknown_export_is_refused_with_err_unknown() {
    let (map, _export) = memory_disk(MIB);
    let (_server, address) = tcp_server(map);
    let error = NbdClient::connect_tcp(address, "nope", ClientOptions::default()).err();
    assert!(matches!(
        error,
        Some(ClientError::OptionRefused { reply, .. }) if reply == wire::REP_ERR_UNKNOWN
    ));
}

#[test]
fn garbage_request_closes_only_that_connection() {
    let (map, _export) = memory_disk(MIB);
    let (server, address) = tcp_server(map);
    let mut good = client(address, "disk");
    good.write(0, b"still here", false).unwrap();

    let mut bad = raw_export_name(address);
    bad.write_all(&[0x5a; 64]).unwrap();
    assert!(read_until_closed(&mut bad).is_empty());

    let mut back = [0u8; 10];
    good.read(0, &mut back).unwrap();
    assert_eq!(&back, b"still here");
    drop(server);
}

#[test]
fn garbage_during_handshake_closes_the_connection() {
    let (map, _export) = memory_disk(MIB);
    let (_server, address) = tcp_server(map);
    // Unknown client flags.
    let mut stream = TcpStream::connect(address).unwrap();
    stream.write_all(&0xffff_ffffu32.to_be_bytes()).unwrap();
    assert_eq!(
        read_until_closed(&mut stream).len(),
        18,
        "only the greeting"
    );
    // Wrong option magic.
    let mut stream = TcpStream::connect(address).unwrap();
    stream.write_all(&1u32.to_be_bytes()).unwrap();
    stream.write_all(&[0x11; 16]).unwrap();
    assert_eq!(read_until_closed(&mut stream).len(), 18);
}

#[test]
fn client_vanishing_mid_request_does_not_disturb_others() {
    let (map, _export) = memory_disk(MIB);
    let (server, address) = tcp_server(map);
    let mut good = client(address, "disk");
    let baseline = server.connection_count();

    // A write header promising 64 KiB, then 100 bytes, then gone.
    let mut vanishing = raw_export_name(address);
    let header = RequestHeader {
        flags: 0,
        command: wire::CMD_WRITE,
        handle: 1,
        offset: 0,
        length: 65536,
    };
    vanishing.write_all(&header.encode()).unwrap();
    vanishing.write_all(&[9u8; 100]).unwrap();
    vanishing.shutdown(Shutdown::Both).unwrap();
    drop(vanishing);

    // A half-sent request header, then gone.
    let mut half = raw_export_name(address);
    half.write_all(&header.encode()[..10]).unwrap();
    drop(half);

    // The server notices both hang-ups; wait (bounded) for their threads to end.
    let mut rounds = 0;
    while server.connection_count() > baseline {
        rounds += 1;
        assert!(rounds < 10_000, "vanished connections were never reaped");
        thread::sleep(std::time::Duration::from_millis(1));
    }
    good.write(0, b"ok", false).unwrap();
    let mut back = [0u8; 2];
    good.read(0, &mut back).unwrap();
    assert_eq!(&back, b"ok", "the partial write was never applied");
}

#[test]
fn oversize_write_closes_the_connection() {
    let (map, _export) = memory_disk(MIB);
    let (_server, address) = tcp_server(map);
    let mut stream = raw_export_name(address);
    let header = RequestHeader {
        flags: 0,
        command: wire::CMD_WRITE,
        handle: 1,
        offset: 0,
        length: u32::MAX,
    };
    stream.write_all(&header.encode()).unwrap();
    assert!(read_until_closed(&mut stream).is_empty());
}

#[test]
fn abort_is_acknowledged_then_closed() {
    let (map, _export) = memory_disk(MIB);
    let (_server, address) = tcp_server(map);
    let mut stream = TcpStream::connect(address).unwrap();
    stream.write_all(&1u32.to_be_bytes()).unwrap();
    stream.write_all(&wire::IHAVEOPT.to_be_bytes()).unwrap();
    stream.write_all(&wire::OPT_ABORT.to_be_bytes()).unwrap();
    stream.write_all(&0u32.to_be_bytes()).unwrap();
    let bytes = read_until_closed(&mut stream);
    assert_eq!(bytes.len(), 18 + 20);
    let reply_type = u32::from_be_bytes(bytes[30..34].try_into().unwrap());
    assert_eq!(reply_type, wire::REP_ACK);
}

#[test]
fn writes_on_one_connection_are_seen_by_others_after_flush() {
    let (map, _export) = memory_disk(MIB);
    let (_server, address) = tcp_server(map);
    let mut writer = client(address, "disk");
    let mut flusher = client(address, "disk");
    let mut reader = client(address, "disk");
    assert_ne!(writer.transmission_flags() & wire::FLAG_CAN_MULTI_CONN, 0);
    writer.write(8192, b"multi-conn", false).unwrap();
    flusher.flush().unwrap();
    let mut back = [0u8; 10];
    reader.read(8192, &mut back).unwrap();
    assert_eq!(&back, b"multi-conn");
}

#[test]
fn random_operations_from_several_connections_match_a_model() {
    let mut rng = seeded_rng("random_operations_from_several_connections_match_a_model");
    const SIZE: u64 = 2 * MIB;
    let (map, _export) = memory_disk(SIZE);
    let (_server, address) = tcp_server(map);
    let mut clients: Vec<NbdClient> = (0..3).map(|_| client(address, "disk")).collect();
    let mut model = vec![0u8; SIZE as usize];
    for step in 0..400 {
        let which = rng.gen_range(0..clients.len());
        let client = &mut clients[which];
        let len = rng.gen_range(1..=65536u64);
        let offset = rng.gen_range(0..=SIZE - len);
        let range = offset as usize..(offset + len) as usize;
        match rng.gen_range(0..4) {
            0 | 1 => {
                let data = random_bytes(&mut rng, len as usize);
                client.write(offset, &data, rng.gen()).unwrap();
                model[range].copy_from_slice(&data);
            }
            2 => {
                client.write_zeroes(offset, len as u32, rng.gen()).unwrap();
                model[range].fill(0);
            }
            _ => {
                let mut back = vec![0u8; len as usize];
                client.read(offset, &mut back).unwrap();
                assert!(
                    back == model[range],
                    "step {step}: read {offset}+{len} differs"
                );
            }
        }
    }
    let mut whole = vec![0u8; SIZE as usize];
    for (i, chunk) in whole.chunks_mut(MIB as usize).enumerate() {
        clients[0].read(i as u64 * MIB, chunk).unwrap();
    }
    assert!(whole == model, "final image differs from the model");
}

#[test]
fn stop_ends_idle_and_busy_connections() {
    let (map, _export) = memory_disk(MIB);
    let (server, address) = tcp_server(map);
    let mut idle = client(address, "disk");
    let mut mid_handshake = TcpStream::connect(address).unwrap();
    let mut greeting = [0u8; 18];
    mid_handshake.read_exact(&mut greeting).unwrap();
    idle.write(0, b"x", false).unwrap();
    server.stop();
    // Both sockets now read end-of-file.
    assert!(idle.flush().is_err());
    let mut rest = Vec::new();
    mid_handshake.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "nothing after the greeting");
    assert!(TcpStream::connect(address).is_err(), "no longer listening");
}

#[test]
fn connections_over_the_limit_are_closed_at_once() {
    let (map, _export) = memory_disk(MIB);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let options = ServeOptions {
        connections_max: 1,
        ..ServeOptions::default()
    };
    let _server = serve(listener, Arc::new(map), options).unwrap();
    let mut first = client(address, "disk");
    let mut second = TcpStream::connect(address).unwrap();
    assert!(read_until_closed(&mut second).is_empty());
    first.write(0, b"first still works", false).unwrap();
}

#[test]
fn silent_client_is_dropped_after_the_handshake_time_limit() {
    let (map, _export) = memory_disk(MIB);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let options = ServeOptions {
        handshake_time_max: std::time::Duration::from_millis(500),
        ..ServeOptions::default()
    };
    let _server = serve(listener, Arc::new(map), options).unwrap();
    let mut silent = TcpStream::connect(address).unwrap();
    assert_eq!(
        read_until_closed(&mut silent).len(),
        18,
        "greeting, then closed"
    );
    // A client that finished its handshake is not subject to the limit.
    let mut patient = client(address, "disk");
    thread::sleep(std::time::Duration::from_millis(700));
    patient.write(0, b"still connected", false).unwrap();
}

#[test]
fn many_clients_in_parallel_write_their_own_regions() {
    let (map, export) = memory_disk(8 * MIB);
    let (_server, address) = tcp_server(map);
    let threads: Vec<_> = (0..8u8)
        .map(|i| {
            thread::spawn(move || {
                let mut client = client(address, "disk");
                let region = u64::from(i) * MIB;
                for block in 0..16u64 {
                    client
                        .write(region + block * 65536, &[i + 1; 65536], false)
                        .unwrap();
                }
                client.flush().unwrap();
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let mut buf = vec![0u8; MIB as usize];
    for i in 0..8u8 {
        export.read(u64::from(i) * MIB, &mut buf).unwrap();
        assert!(buf.iter().all(|&b| b == i + 1), "region {i}");
    }
}
