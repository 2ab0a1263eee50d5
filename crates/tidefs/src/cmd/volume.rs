//! `tidefs volume`: block volumes — create, list, resize, delete, snapshot (create, list,
//! delete, rename), clone, diff.
//!
//! When a running server (`tidefs nbd serve`) holds the pool, the commands it can serve
//! (list and the snapshot commands) go through its control socket in the pool directory;
//! the others say in one line which process holds the pool.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use tidefs_store::StoreError;
use tidefs_volume::control::{ControlReply, ControlRequest, CONTROL_SOCKET_NAME};
use tidefs_volume::{Timestamp, VolumeInfo, VolumeRef, VolumeStore};

use crate::output::{human_bytes, parse_size, print_json};

#[derive(Subcommand)]
pub enum VolumeCommand {
    /// Create a sparse volume: NAME --size SIZE (a multiple of 4 KiB).
    Create {
        name: String,
        #[arg(long, value_parser = parse_size)]
        size: u64,
    },
    /// List volumes.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Change a volume's size (shrinking discards the blocks past the new end).
    Resize {
        name: String,
        #[arg(long, value_parser = parse_size)]
        size: u64,
    },
    /// Delete a volume (with -r, its snapshots too).
    Delete {
        name: String,
        #[arg(short, long)]
        recursive: bool,
    },
    /// Take a snapshot NAME@SNAP, or list / delete / rename snapshots.
    Snapshot(SnapshotArgs),
    /// Make a writable volume from a snapshot: NAME@SNAP NEWNAME.
    Clone { snapshot: String, new_name: String },
    /// Changed block ranges between NAME@A and NAME@B (or NAME@A and the live NAME).
    Diff {
        from: String,
        to: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct SnapshotArgs {
    #[command(subcommand)]
    action: Option<SnapshotAction>,
    /// The snapshot to take: NAME@SNAP.
    #[arg(required = true)]
    target: Option<String>,
}

#[derive(Subcommand)]
enum SnapshotAction {
    /// List the snapshots of a volume.
    List {
        volume: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete a snapshot: NAME@SNAP.
    Delete { target: String },
    /// Rename a snapshot: NAME@SNAP NEWSNAP.
    Rename { target: String, new_name: String },
}

/// How this process reaches the pool.
enum Access {
    Direct(Arc<VolumeStore>),
    /// Another process holds the pool; `holder` says who.
    Held {
        socket: PathBuf,
        holder: String,
    },
}

fn access(pool: &Path) -> Result<Access> {
    match crate::pool_arg::open(pool) {
        Ok(p) => Ok(Access::Direct(Arc::new(
            VolumeStore::open(p).context("opening the volume catalog")?,
        ))),
        Err(e) => match e.downcast_ref::<StoreError>() {
            Some(StoreError::Locked { holder, .. }) => Ok(Access::Held {
                socket: pool.join(CONTROL_SOCKET_NAME),
                holder: holder.clone(),
            }),
            _ => Err(e),
        },
    }
}

/// The wall clock, for creation times.
pub fn now() -> Timestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp {
        secs: d.as_secs() as i64,
        nanos: d.subsec_nanos(),
    }
}

/// Sends one request to the server holding the pool.
fn ask(socket: &Path, holder: &str, request: &ControlRequest) -> Result<ControlReply> {
    match crate::control::ask(socket, holder, request)? {
        ControlReply::Error { message } => Err(anyhow!("{message}")),
        reply => Ok(reply),
    }
}

fn volumes_of(reply: ControlReply) -> Result<Vec<VolumeInfo>> {
    match reply {
        ControlReply::Volumes { volumes } => Ok(volumes),
        other => bail!("unexpected reply from the server: {other:?}"),
    }
}

fn held(pool: &Path, holder: &str, what: &str) -> anyhow::Error {
    anyhow!(
        "pool {} is held by {holder}; `tidefs volume {what}` cannot go through its control socket (stop that process first)",
        pool.display()
    )
}

fn snapshot_ref(text: &str) -> Result<(String, String)> {
    let r = VolumeRef::parse(text)?;
    match r.snapshot {
        Some(s) => Ok((r.volume, s)),
        None => bail!("{text:?} names a volume; a snapshot is written NAME@SNAP"),
    }
}

pub fn run(pool: &Path, cmd: VolumeCommand) -> Result<ExitCode> {
    // Check what can be checked before touching the pool.
    if let VolumeCommand::Create { name, .. } = &cmd {
        tidefs_volume::check_name(name)?;
    }
    let access = access(pool)?;
    match cmd {
        VolumeCommand::List { json } => {
            let volumes = match &access {
                Access::Direct(store) => store.list()?,
                Access::Held { socket, holder } => {
                    volumes_of(ask(socket, holder, &ControlRequest::List)?)?
                }
            };
            print_list(&volumes, json, "volumes");
        }
        VolumeCommand::Snapshot(args) => snapshot(&access, args)?,
        other => {
            let store = match access {
                Access::Direct(store) => store,
                Access::Held { holder, .. } => {
                    return Err(held(pool, &holder, command_name(&other)));
                }
            };
            direct(&store, other)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn command_name(cmd: &VolumeCommand) -> &'static str {
    match cmd {
        VolumeCommand::Create { .. } => "create",
        VolumeCommand::List { .. } => "list",
        VolumeCommand::Resize { .. } => "resize",
        VolumeCommand::Delete { .. } => "delete",
        VolumeCommand::Snapshot(_) => "snapshot",
        VolumeCommand::Clone { .. } => "clone",
        VolumeCommand::Diff { .. } => "diff",
    }
}

/// The commands that need the pool to themselves.
fn direct(store: &VolumeStore, cmd: VolumeCommand) -> Result<()> {
    match cmd {
        VolumeCommand::Create { name, size } => {
            store.create(&name, size, now())?;
            println!("created volume {name} ({})", human_bytes(size));
        }
        VolumeCommand::Resize { name, size } => {
            store.resize(&name, size)?;
            println!("resized volume {name} to {}", human_bytes(size));
        }
        VolumeCommand::Delete { name, recursive } => {
            store.delete(&name, recursive)?;
            println!("deleted volume {name}");
        }
        VolumeCommand::Clone { snapshot, new_name } => {
            let (volume, snap) = snapshot_ref(&snapshot)?;
            store.clone_snapshot(&volume, &snap, &new_name, now())?;
            println!("cloned {snapshot} to volume {new_name}");
        }
        VolumeCommand::Diff { from, to, json } => {
            let diff = store.diff(&VolumeRef::parse(&from)?, &VolumeRef::parse(&to)?)?;
            if json {
                print_json(&serde_json::to_value(&diff)?);
            } else {
                for r in &diff.ranges {
                    println!("{} {}", r.offset, r.length);
                }
                println!(
                    "{} changed in {} range(s) from {from} to {to}",
                    human_bytes(diff.changed_bytes),
                    diff.ranges.len()
                );
            }
        }
        VolumeCommand::List { .. } | VolumeCommand::Snapshot(_) => {
            unreachable!("served by run()")
        }
    }
    Ok(())
}

fn snapshot(access: &Access, args: SnapshotArgs) -> Result<()> {
    let request = match (args.action, args.target) {
        (Some(SnapshotAction::List { volume, json }), _) => {
            let snapshots = match access {
                Access::Direct(store) => store.snapshots(&volume)?,
                Access::Held { socket, holder } => volumes_of(ask(
                    socket,
                    holder,
                    &ControlRequest::SnapshotList { volume },
                )?)?,
            };
            print_list(&snapshots, json, "snapshots");
            return Ok(());
        }
        (Some(SnapshotAction::Delete { target }), _) => {
            let (volume, snapshot) = snapshot_ref(&target)?;
            ControlRequest::SnapshotDelete { volume, snapshot }
        }
        (Some(SnapshotAction::Rename { target, new_name }), _) => {
            let (volume, from) = snapshot_ref(&target)?;
            tidefs_volume::check_name(&new_name)?;
            ControlRequest::SnapshotRename {
                volume,
                from,
                to: new_name,
            }
        }
        (None, Some(target)) => {
            let (volume, snapshot) = snapshot_ref(&target)?;
            ControlRequest::Snapshot { volume, snapshot }
        }
        (None, None) => bail!("name the snapshot to take: NAME@SNAP"),
    };
    match access {
        Access::Direct(store) => {
            let reply =
                tidefs_volume::control::handle(store, request.clone(), now(), std::process::id());
            if let ControlReply::Error { message } = reply {
                bail!("{message}");
            }
        }
        Access::Held { socket, holder } => {
            ask(socket, holder, &request)?;
        }
    }
    match request {
        ControlRequest::Snapshot { volume, snapshot } => {
            println!("created snapshot {volume}@{snapshot}")
        }
        ControlRequest::SnapshotDelete { volume, snapshot } => {
            println!("deleted snapshot {volume}@{snapshot}")
        }
        ControlRequest::SnapshotRename { volume, from, to } => {
            println!("renamed snapshot {volume}@{from} to {volume}@{to}")
        }
        _ => {}
    }
    Ok(())
}

fn print_list(items: &[VolumeInfo], as_json: bool, what: &str) {
    if as_json {
        print_json(&serde_json::to_value(items).expect("volume info serializes"));
        return;
    }
    if items.is_empty() {
        println!("no {what}");
        return;
    }
    println!(
        "{:<32} {:>10} {:>9}  {:<24} ORIGIN",
        "NAME", "SIZE", "SNAPSHOTS", "CREATED"
    );
    for v in items {
        let created = jiff::Timestamp::new(v.created.secs, v.created.nanos as i32)
            .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_else(|_| v.created.secs.to_string());
        println!(
            "{:<32} {:>10} {:>9}  {:<24} {}",
            v.label(),
            human_bytes(v.size_bytes),
            if v.snapshot.is_some() {
                "-".to_string()
            } else {
                v.snapshots.to_string()
            },
            created,
            v.origin.as_deref().unwrap_or("-")
        );
    }
}
