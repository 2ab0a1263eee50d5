//! `tidefs receive NAME`: apply a send stream (from tidefs or btrfs) into subvolume NAME,
//! making the snapshot `NAME@<name in the stream>`; `--dump` prints the stream as
//! `btrfs receive --dump` does.

use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;
use tidefs_send::receive::{abort, partial_token, receive, ReceiveOptions, ReceiveProgress};
use tidefs_send::tidefs_stream::{dump_stream, DumpTimeZone};
use tidefs_send::ReceiveError;

use crate::output::{human_bytes, progress};
use crate::pool_arg::open_fs;

#[derive(Args)]
pub struct ReceiveArgs {
    /// The subvolume to receive into (created by a full stream).
    #[arg(required_unless_present = "dump")]
    name: Option<String>,
    /// Read the stream from FILE instead of standard input.
    #[arg(short = 'f', long)]
    file: Option<PathBuf>,
    /// Print the stream's commands as `btrfs receive --dump` does; change nothing.
    #[arg(long)]
    dump: bool,
    /// Keep what was received if the stream is cut off, so it can be resumed.
    #[arg(short = 's', long)]
    resumable: bool,
    /// Discard changes made to NAME since its newest snapshot.
    #[arg(long)]
    force: bool,
    /// Discard a partial (resumable) receive into NAME.
    #[arg(long, conflicts_with_all = ["dump", "resumable", "file"])]
    abort: bool,
    /// Print the resume token of a partial receive into NAME.
    #[arg(long, conflicts_with_all = ["dump", "resumable", "file", "abort"])]
    resume_token: bool,
    /// No progress output.
    #[arg(short, long)]
    quiet: bool,
}

pub fn run(pool: &Path, args: ReceiveArgs) -> Result<ExitCode> {
    let input: Box<dyn Read> = match &args.file {
        Some(f) => {
            Box::new(std::fs::File::open(f).with_context(|| format!("opening {}", f.display()))?)
        }
        None => Box::new(std::io::stdin().lock()),
    };
    let input = BufReader::with_capacity(1 << 20, input);
    if args.dump {
        let stdout = std::io::stdout().lock();
        dump_stream(
            input,
            std::io::BufWriter::new(stdout),
            DumpTimeZone::from_environment(),
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let name = args.name.as_deref().expect("required");
    let fs = open_fs(pool)?;
    if args.abort {
        abort(&fs, name)?;
        fs.fsync()?;
        println!("discarded the partial receive into {name}");
        return Ok(ExitCode::SUCCESS);
    }
    if args.resume_token {
        match partial_token(&fs, name)? {
            Some(t) => println!("{t}"),
            None => bail!("{name} holds no partial receive"),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let opts = ReceiveOptions {
        resumable: args.resumable,
        force: args.force,
        ..ReceiveOptions::default()
    };
    let bar = if args.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        progress(None, "receiving")
    };
    let mut on_progress = |p: ReceiveProgress| {
        bar.set_message(format!(
            "receiving: {} commands, {}",
            p.commands,
            human_bytes(p.bytes)
        ));
        bar.set_position(p.commands);
    };
    let result = receive(&fs, name, input, &opts, &mut on_progress);
    bar.finish_and_clear();
    match result {
        Ok(s) => {
            // The only commit: the receive becomes durable whole, or (on error) not at all.
            fs.fsync()?;
            if !args.quiet {
                println!(
                    "received {name}@{} ({} commands, {})",
                    s.snapshot.name,
                    s.commands,
                    human_bytes(s.bytes)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ ReceiveError::Interrupted { .. }) => {
            // The partial state and its token are committed already.
            Err(e.into())
        }
        // Not committed: the pool stays as it was.
        Err(e) => Err(e.into()),
    }
}
