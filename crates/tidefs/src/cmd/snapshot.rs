//! `tidefs snapshot create|list|delete|rename` and `tidefs clone`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use serde_json::json;
use tidefs_fs::SubvolInfo;

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

fn snapshot_json(s: &SubvolInfo, subvol: &str) -> serde_json::Value {
    json!({
        "subvolume": subvol,
        "name": s.name,
        "uuid": s.uuid.to_string(),
        "received_uuid": s.received_uuid.map(|u| u.to_string()),
        "tid": s.tid.0,
        "created": s.created.sec,
        "created_nsec": s.created.nsec,
        "metadata": s.metadata.iter().map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), String::from_utf8_lossy(v).into_owned())).collect::<std::collections::BTreeMap<_, _>>(),
    })
}

pub fn run(pool: &Path, cmd: SnapshotCommand) -> Result<ExitCode> {
    let fs = open_fs(pool)?;
    match cmd {
        SnapshotCommand::Create { spec } => {
            let (name, snap) = SubvolSpec::parse_snapshot(&spec)?;
            fs.create_snapshot(&name, &snap)?;
            fs.fsync()?;
            println!("created snapshot {name}@{snap}");
        }
        SnapshotCommand::List { name, json } => {
            let subvols: Vec<String> = match name {
                Some(n) => vec![n],
                None => fs.list_subvolumes()?.into_iter().map(|s| s.name).collect(),
            };
            let mut rows = Vec::new();
            for sv in &subvols {
                for s in fs.list_snapshots(sv)? {
                    rows.push((sv.clone(), s));
                }
            }
            if json {
                print_json(&json!(rows
                    .iter()
                    .map(|(sv, s)| snapshot_json(s, sv))
                    .collect::<Vec<_>>()));
            } else {
                for (sv, s) in rows {
                    println!("{sv}@{}\t{}\ttid {}", s.name, s.uuid, s.tid);
                }
            }
        }
        SnapshotCommand::Delete { spec } => {
            let (name, snap) = SubvolSpec::parse_snapshot(&spec)?;
            fs.delete_snapshot(&name, &snap)?;
            fs.fsync()?;
            println!("deleted snapshot {name}@{snap}");
        }
        SnapshotCommand::Rename { from, to } => {
            let (name, old) = SubvolSpec::parse_snapshot(&from)?;
            let (name2, new) = SubvolSpec::parse_snapshot(&to)?;
            if name != name2 {
                anyhow::bail!("a snapshot stays with its subvolume: {from} and {to} name different subvolumes");
            }
            fs.rename_snapshot(&name, &old, &new)?;
            fs.fsync()?;
            println!("renamed snapshot {name}@{old} to {name}@{new}");
        }
    }
    Ok(ExitCode::SUCCESS)
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
