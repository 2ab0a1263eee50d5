//! Serves one export over NBD until killed; used by `bench/compare.sh` and for trying
//! clients by hand.
//!
//! ```text
//! nbd_serve (--tcp ADDR | --unix PATH) (--memory SIZE | --file PATH) [--name NAME] [--read-only]
//! ```
//! SIZE takes a K, M or G suffix (powers of 1024).

use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::exit;
use std::sync::Arc;

use tidefs_nbd::{serve, BlockExport, ExportMap, FileExport, Listener, MemoryExport, ServeOptions};

fn usage(problem: &str) -> ! {
    eprintln!("nbd_serve: {problem}");
    eprintln!(
        "usage: nbd_serve (--tcp ADDR | --unix PATH) (--memory SIZE | --file PATH) \
         [--name NAME] [--read-only]"
    );
    exit(2)
}

fn parse_size(text: &str) -> u64 {
    let (digits, unit) = match text.chars().last() {
        Some('K' | 'k') => (&text[..text.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&text[..text.len() - 1], 1 << 20),
        Some('G' | 'g') => (&text[..text.len() - 1], 1 << 30),
        _ => (text, 1),
    };
    match digits.parse::<u64>() {
        Ok(n) => n * unit,
        Err(_) => usage(&format!("bad size {text:?}")),
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut listener, mut export): (Option<Listener>, Option<Arc<dyn BlockExport>>) = (None, None);
    let mut name = String::from("disk");
    let mut read_only = false;
    let mut memory_size = None;
    let mut file = None;
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| usage(&format!("{arg} needs a value")))
        };
        match arg.as_str() {
            "--tcp" => {
                let address = value();
                let bound = TcpListener::bind(&address)
                    .unwrap_or_else(|e| usage(&format!("cannot listen on {address}: {e}")));
                listener = Some(bound.into());
            }
            "--unix" => {
                let path = PathBuf::from(value());
                let bound = UnixListener::bind(&path)
                    .unwrap_or_else(|e| usage(&format!("cannot listen on {path:?}: {e}")));
                listener = Some(bound.into());
            }
            "--memory" => memory_size = Some(parse_size(&value())),
            "--file" => file = Some(PathBuf::from(value())),
            "--name" => name = value(),
            "--read-only" => read_only = true,
            other => usage(&format!("unknown argument {other:?}")),
        }
    }
    if let Some(size) = memory_size {
        export = Some(Arc::new(MemoryExport::new(size).with_read_only(read_only)));
    }
    if let Some(path) = file {
        let opened = FileExport::open(&path, read_only)
            .unwrap_or_else(|e| usage(&format!("cannot open {path:?}: {e}")));
        export = Some(Arc::new(opened));
    }
    let listener = listener.unwrap_or_else(|| usage("give --tcp or --unix"));
    let export = export.unwrap_or_else(|| usage("give --memory or --file"));
    let provider = ExportMap::new()
        .with_export(&name, "served by nbd_serve", export)
        .with_default(&name);
    let server = serve(listener, Arc::new(provider), ServeOptions::default())
        .unwrap_or_else(|e| usage(&format!("cannot serve: {e}")));
    eprintln!("nbd_serve: serving {name:?} on {:?}", server.address());
    server.wait();
}
