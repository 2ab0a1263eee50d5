//! `tidefs snapshot create|list|delete|rename` and `tidefs clone`.
//!
//! When a mount holds the pool, the snapshot commands go through its control socket and
//! print what they print on an idle pool; `clone` needs the pool to itself.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Result};
use clap::Subcommand;
use tidefs_fs::Fs;

use crate::control::fs_protocol::{snapshot_rows, FsReply, FsRequest, SnapshotRow};
use crate::control::{ask, PoolAccess};
use crate::output::print_json;
use crate::pool_arg::open_fs;
use crate::spec::SubvolSpec;

#[derive(Subcommand)]
pub enum SnapshotCommand {
    /// Take a read-only snapshot: NAME@SNAP.
    Create { spec: String },
    /// List snapshots (of one subvolume, or all).
    List {
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Delete a snapshot: NAME@SNAP.
    Delete { spec: String },
    /// Rename a snapshot: NAME@OLD NAME@NEW.
    Rename { from: String, to: String },
}

pub fn run(pool: &Path, cmd: SnapshotCommand) -> Result<ExitCode> {
    // Parse before touching the pool, so a typo fails the same way on either path.
    let request = request_of(cmd)?;
    let access = PoolAccess::open(pool, || open_fs(pool))?;
    match request {
        (FsRequest::SnapshotList { subvolume }, json) => {
            let rows = match &access {
                PoolAccess::Direct(fs) => snapshot_rows(fs, subvolume.as_deref())?,
                PoolAccess::Held { socket, holder } => {
                    match ask_fs(socket, holder, &FsRequest::SnapshotList { subvolume })? {
                        FsReply::Snapshots { snapshots } => snapshots,
                        other => bail!("unexpected reply from {holder}: {other:?}"),
                    }
                }
            };
            print_rows(&rows, json);
        }
        (change, _) => {
            match &access {
                PoolAccess::Direct(fs) => change_directly(fs, &change)?,
                PoolAccess::Held { socket, holder } => {
                    ask_fs(socket, holder, &change)?;
                }
            }
            println!("{}", done_line(&change));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The request a command makes, and for `list` whether it wants JSON.
fn request_of(cmd: SnapshotCommand) -> Result<(FsRequest, bool)> {
    Ok(match cmd {
        SnapshotCommand::Create { spec } => {
            let (subvolume, snapshot) = SubvolSpec::parse_snapshot(&spec)?;
            (
                FsRequest::SnapshotCreate {
                    subvolume,
                    snapshot,
                },
                false,
            )
        }
        SnapshotCommand::List { name, json } => (FsRequest::SnapshotList { subvolume: name }, json),
        SnapshotCommand::Delete { spec } => {
            let (subvolume, snapshot) = SubvolSpec::parse_snapshot(&spec)?;
            (
                FsRequest::SnapshotDelete {
                    subvolume,
                    snapshot,
                },
                false,
            )
        }
        SnapshotCommand::Rename { from, to } => {
            let (subvolume, old) = SubvolSpec::parse_snapshot(&from)?;
            let (subvolume2, new) = SubvolSpec::parse_snapshot(&to)?;
            if subvolume != subvolume2 {
                bail!("a snapshot stays with its subvolume: {from} and {to} name different subvolumes");
            }
            (
                FsRequest::SnapshotRename {
                    subvolume,
                    from: old,
                    to: new,
                },
                false,
            )
        }
    })
}

/// Makes a change on a pool this process opened, committing it before returning.
fn change_directly(fs: &Fs, change: &FsRequest) -> Result<()> {
    match change {
        FsRequest::SnapshotCreate {
            subvolume,
            snapshot,
        } => drop(fs.create_snapshot(subvolume, snapshot)?),
        FsRequest::SnapshotDelete {
            subvolume,
            snapshot,
        } => fs.delete_snapshot(subvolume, snapshot)?,
        FsRequest::SnapshotRename {
            subvolume,
            from,
            to,
        } => fs.rename_snapshot(subvolume, from, to)?,
        other => unreachable!("{other:?} is not a snapshot change"),
    }
    fs.fsync()?;
    Ok(())
}

fn done_line(change: &FsRequest) -> String {
    match change {
        FsRequest::SnapshotCreate {
            subvolume,
            snapshot,
        } => format!("created snapshot {subvolume}@{snapshot}"),
        FsRequest::SnapshotDelete {
            subvolume,
            snapshot,
        } => format!("deleted snapshot {subvolume}@{snapshot}"),
        FsRequest::SnapshotRename {
            subvolume,
            from,
            to,
        } => format!("renamed snapshot {subvolume}@{from} to {subvolume}@{to}"),
        other => unreachable!("{other:?} is not a snapshot change"),
    }
}

fn print_rows(rows: &[SnapshotRow], json: bool) {
    if json {
        print_json(&serde_json::to_value(rows).expect("snapshot rows serialize"));
    } else {
        for s in rows {
            println!("{}@{}\t{}\ttid {}", s.subvolume, s.name, s.uuid, s.tid);
        }
    }
}

/// Asks the mount holding the pool; its error replies become ours.
pub fn ask_fs(socket: &Path, holder: &str, request: &FsRequest) -> Result<FsReply> {
    match ask(socket, holder, request)? {
        // A holder of another kind (`tidefs nbd serve`) does not know fs requests; say who.
        FsReply::Error { message } if message.starts_with("malformed control message") => Err(
            anyhow!("the pool is held by {holder}, which does not serve this command: {message}"),
        ),
        FsReply::Error { message } => Err(anyhow!("{message}")),
        reply => Ok(reply),
    }
}

/// `tidefs clone NAME@SNAP NEWNAME`.
pub fn clone(pool: &Path, spec: &str, new_name: &str) -> Result<ExitCode> {
    let fs = open_fs(pool)?;
    let (name, snap) = SubvolSpec::parse_snapshot(spec)?;
    fs.clone_snapshot(&name, &snap, new_name)?;
    fs.fsync()?;
    println!("cloned {name}@{snap} as {new_name}");
    Ok(ExitCode::SUCCESS)
}
