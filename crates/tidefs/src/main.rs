//! `tidefs`: the command-line tool. Each subcommand lives in its own module under `cmd/`;
//! this file only parses arguments and turns errors into one line on stderr.

mod cmd;
mod output;
mod pool_arg;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// tidefs — snapshot-native file system: pools, subvolumes, snapshots, volumes.
#[derive(Parser)]
#[command(name = "tidefs", version, about, propagate_version = true)]
pub struct Cli {
    /// The pool directory (or block device).
    #[arg(long, global = true, env = "TIDEFS_POOL", default_value = "./tidefs-pool")]
    pool: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the pool (an existing pool is left alone and reported).
    Init(cmd::init::InitArgs),
    /// Check the whole pool; exits 0 only when it is clean.
    Fsck(cmd::fsck::FsckArgs),
    /// Block volumes: create, list, resize, delete, snapshot, clone, diff.
    #[command(subcommand)]
    Volume(cmd::volume::VolumeCommand),
    /// Serve volumes over NBD.
    #[command(subcommand)]
    Nbd(cmd::nbd::NbdCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Init(args) => cmd::init::run(&cli.pool, args),
        Command::Fsck(args) => cmd::fsck::run(&cli.pool, args),
        Command::Volume(c) => cmd::volume::run(&cli.pool, c),
        Command::Nbd(c) => cmd::nbd::run(&cli.pool, c),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // One line: what failed and why (the chain of causes, joined).
            let msg: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            eprintln!("tidefs: {}", msg.join(": "));
            ExitCode::from(1)
        }
    }
}
