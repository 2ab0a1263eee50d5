//! `tidefs`: the command-line tool. Each subcommand lives in its own module under `cmd/`;
//! this file only parses arguments and turns errors into one line on stderr.

mod cmd;
mod control;
mod output;
mod pool_arg;
mod spec;

/// Transactions copy many nodes and free them at commit; glibc's malloc handed those pages
/// back to the kernel after every commit and took page faults to get them again.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// tidefs — snapshot-native file system: pools, subvolumes, snapshots, volumes.
#[derive(Parser)]
#[command(name = "tidefs", version, about, propagate_version = true)]
pub struct Cli {
    /// The pool directory (or block device).
    #[arg(
        long,
        global = true,
        env = "TIDEFS_POOL",
        default_value = "./tidefs-pool"
    )]
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
    /// Subvolumes: create, list, delete.
    #[command(subcommand)]
    Subvol(cmd::subvol::SubvolCommand),
    /// Snapshots: create, list, delete, rename.
    #[command(subcommand)]
    Snapshot(cmd::snapshot::SnapshotCommand),
    /// Make a writable subvolume from a snapshot: NAME@SNAP NEWNAME.
    Clone { snapshot: String, new_name: String },
    /// List a directory: NAME[@SNAP]:/path.
    Ls { path: String },
    /// Print a file: NAME[@SNAP]:/path.
    Cat { path: String },
    /// Copy a host file in: HOSTFILE NAME:/path.
    Put {
        host_file: std::path::PathBuf,
        path: String,
    },
    /// Remove a file (or, with -r, a directory tree): NAME:/path.
    Rm {
        path: String,
        #[arg(short, long)]
        recursive: bool,
    },
    /// Make a directory: NAME:/path.
    Mkdir {
        path: String,
        #[arg(short, long)]
        parents: bool,
    },
    /// Rename or move: NAME:/a NAME:/b.
    Mv { from: String, to: String },
    /// Show an inode's attributes: NAME[@SNAP]:/path.
    Stat {
        path: String,
        #[arg(long)]
        json: bool,
    },
    /// Copy a host directory into a new subvolume: SRC_DIR NAME.
    Import { src: PathBuf, name: String },
    /// Copy a subvolume or snapshot out to a host directory: NAME[@SNAP] DEST_DIR.
    Export { spec: String, dest: PathBuf },
    /// What changed between two snapshots (or a snapshot and the head): NAME@A NAME@B.
    Diff {
        from: String,
        to: String,
        #[arg(long)]
        json: bool,
    },
    /// Pool size, used, free, and space per subvolume and snapshot.
    Df {
        #[arg(long)]
        json: bool,
    },
    /// Block volumes: create, list, resize, delete, snapshot, clone, diff.
    #[command(subcommand)]
    Volume(cmd::volume::VolumeCommand),
    /// Serve volumes over NBD.
    #[command(subcommand)]
    Nbd(cmd::nbd::NbdCommand),
    /// Write a btrfs send stream of snapshot NAME@SNAP (incremental with -p NAME@PARENT).
    Send(cmd::send::SendArgs),
    /// Apply a send stream (tidefs or btrfs) into subvolume NAME; --dump prints it.
    Receive(cmd::receive::ReceiveArgs),
    /// Mount subvolume NAME (read-write) or snapshot NAME@SNAP (read-only) with FUSE.
    Mount(cmd::mount::MountArgs),
    /// Unmount a tidefs mount and wait until its server has committed and exited.
    Umount(cmd::mount::UmountArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Init(args) => cmd::init::run(&cli.pool, args),
        Command::Fsck(args) => cmd::fsck::run(&cli.pool, args),
        Command::Subvol(c) => cmd::subvol::run(&cli.pool, c),
        Command::Snapshot(c) => cmd::snapshot::run(&cli.pool, c),
        Command::Clone { snapshot, new_name } => {
            cmd::snapshot::clone(&cli.pool, &snapshot, &new_name)
        }
        Command::Ls { path } => cmd::files::ls(&cli.pool, &path),
        Command::Cat { path } => cmd::files::cat(&cli.pool, &path),
        Command::Put { host_file, path } => cmd::files::put(&cli.pool, &host_file, &path),
        Command::Rm { path, recursive } => cmd::files::rm(&cli.pool, &path, recursive),
        Command::Mkdir { path, parents } => cmd::files::mkdir(&cli.pool, &path, parents),
        Command::Mv { from, to } => cmd::files::mv(&cli.pool, &from, &to),
        Command::Stat { path, json } => cmd::files::stat(&cli.pool, &path, json),
        Command::Df { json } => cmd::df::run(&cli.pool, json),
        Command::Import { src, name } => cmd::copy::import(&cli.pool, &src, &name),
        Command::Export { spec, dest } => cmd::copy::export(&cli.pool, &spec, &dest),
        Command::Diff { from, to, json } => cmd::diff::run(&cli.pool, &from, &to, json),
        Command::Volume(c) => cmd::volume::run(&cli.pool, c),
        Command::Nbd(c) => cmd::nbd::run(&cli.pool, c),
        Command::Send(args) => cmd::send::run(&cli.pool, args),
        Command::Receive(args) => cmd::receive::run(&cli.pool, args),
        Command::Mount(args) => cmd::mount::run(&cli.pool, args),
        Command::Umount(args) => cmd::mount::run_umount(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tidefs: {}", one_line(&e));
            ExitCode::from(1)
        }
    }
}

/// What failed and why, on one line: the chain of causes joined, except that a cause its
/// error's own message already ends with is not said twice.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain().map(|c| c.to_string()) {
        if !line.ends_with(&cause) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&cause);
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn causes_are_joined_and_not_repeated() {
        let io = || std::io::Error::from_raw_os_error(13);
        let plain = anyhow::Error::new(io()).context("opening the pool");
        assert_eq!(
            one_line(&plain),
            "opening the pool: Permission denied (os error 13)"
        );
        // An error whose message names its source already, as thiserror types here do.
        let mount = tidefs_fuse::MountError::Mount {
            mountpoint: "/m".into(),
            source: io(),
        };
        assert_eq!(
            one_line(&anyhow::Error::new(mount)),
            "mounting on /m: Permission denied (os error 13)"
        );
    }
}
