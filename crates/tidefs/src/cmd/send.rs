//! `tidefs send`: write a btrfs send stream of a snapshot (full, or incremental from a
//! parent the receiver has), or the rest of an interrupted one (`--resume TOKEN`).

use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;
use tidefs_fs::{Fs, Subvol};
use tidefs_send::tidefs_stream::StreamVersion;
use tidefs_send::{send_stream, stream_uuid, ResumeToken, SendRequest, StreamProgress};

use crate::output::{human_bytes, progress};
use crate::pool_arg::open_fs;
use crate::spec::SubvolSpec;

#[derive(Args)]
pub struct SendArgs {
    /// The snapshot to send: NAME@SNAP.
    #[arg(required_unless_present = "resume")]
    snapshot: Option<String>,
    /// A snapshot the receiver has: send only the changes from it (NAME@PARENT).
    #[arg(short = 'p', long)]
    parent: Option<String>,
    /// A snapshot the receiver has whose data may be cloned instead of sent (repeatable).
    #[arg(short = 'c', long = "clone-src")]
    clone_sources: Vec<String>,
    /// Write the stream to FILE instead of standard output.
    #[arg(short = 'f', long)]
    file: Option<PathBuf>,
    /// Stream version: 1 (any btrfs receive) or 2 (punch holes, preallocation, larger writes).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=2))]
    proto: u32,
    /// Send what an interrupted receive still lacks (its resume token).
    #[arg(long, conflicts_with_all = ["snapshot", "parent", "proto"])]
    resume: Option<String>,
    /// No progress output.
    #[arg(short, long)]
    quiet: bool,
}

fn snapshot(fs: &Fs, spec: &str) -> Result<Subvol> {
    let (name, snap) = SubvolSpec::parse_snapshot(spec)?;
    fs.snapshot(&name, &snap)
        .with_context(|| format!("snapshot {spec}"))
}

/// The snapshot whose stream identity is (`uuid`, `ctransid`).
fn by_stream_uuid(fs: &Fs, uuid: &[u8; 16], ctransid: u64) -> Result<Subvol> {
    for sv in fs.list_subvolumes()? {
        for s in fs.list_snapshots(&sv.name)? {
            if stream_uuid(&s) == *uuid && s.tid.0 == ctransid {
                return Ok(fs.open_id(s.id)?);
            }
        }
    }
    bail!(
        "no snapshot in this pool has uuid {} and transid {ctransid}",
        tidefs_fs::Uuid::from_bytes(*uuid)
    )
}

pub fn run(pool: &Path, args: SendArgs) -> Result<ExitCode> {
    if args.file.is_none() && std::io::stdout().is_terminal() {
        bail!("not writing a send stream to a terminal; redirect it or use -f FILE");
    }
    let fs = open_fs(pool)?;
    let (snap, parent, version, resume_after) = match &args.resume {
        Some(token) => {
            let t: ResumeToken = token.parse()?;
            let snap = by_stream_uuid(&fs, &t.uuid, t.ctransid).context("resuming")?;
            let parent = match t.parent {
                Some((u, c)) => Some(by_stream_uuid(&fs, &u, c).context("resuming: the parent")?),
                None => None,
            };
            let version = StreamVersion::from_u32(t.version)
                .context("resume token names an unknown stream version")?;
            (snap, parent, version, Some(t.applied))
        }
        None => {
            let snap = snapshot(&fs, args.snapshot.as_deref().expect("required"))?;
            let parent = args
                .parent
                .as_deref()
                .map(|p| snapshot(&fs, p))
                .transpose()?;
            let version = StreamVersion::from_u32(args.proto).expect("range checked");
            (snap, parent, version, None)
        }
    };
    let clone_sources = args
        .clone_sources
        .iter()
        .map(|c| snapshot(&fs, c))
        .collect::<Result<Vec<_>>>()?;
    let req = SendRequest {
        fs: &fs,
        snapshot: snap,
        parent,
        clone_sources,
        version,
    };
    let out: Box<dyn Write> = match &args.file {
        Some(f) => {
            Box::new(std::fs::File::create(f).with_context(|| format!("creating {}", f.display()))?)
        }
        None => Box::new(std::io::stdout().lock()),
    };
    let out = BufWriter::with_capacity(1 << 20, out);
    let bar = if args.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        progress(None, "sending")
    };
    let mut on_progress = |p: StreamProgress| {
        bar.set_message(format!(
            "sending: {} commands, {}",
            p.commands,
            human_bytes(p.bytes)
        ));
        bar.set_position(p.commands);
    };
    let (summary, mut out) = send_stream(&req, out, resume_after, Some(&mut on_progress))?;
    out.flush().context("writing the stream")?;
    bar.finish_and_clear();
    if !args.quiet && args.file.is_some() {
        eprintln!(
            "sent {} commands, {} ({} inodes)",
            summary.progress.commands,
            human_bytes(summary.progress.bytes),
            summary.engine.inodes
        );
    }
    Ok(ExitCode::SUCCESS)
}
