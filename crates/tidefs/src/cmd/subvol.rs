//! `tidefs subvol create|list|delete`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use serde_json::json;

use crate::output::print_json;
use crate::pool_arg::{caller, open_fs};

#[derive(Subcommand)]
pub enum SubvolCommand {
    /// Create an empty subvolume.
    Create { name: String },
    /// List subvolumes.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Delete a subvolume (its snapshots and clones must be deleted first).
    Delete { name: String },
}

pub fn run(pool: &Path, cmd: SubvolCommand) -> Result<ExitCode> {
    let fs = open_fs(pool)?;
    match cmd {
        SubvolCommand::Create { name } => {
            fs.create_subvolume(&name, &caller())?;
            fs.fsync()?;
            println!("created subvolume {name}");
        }
        SubvolCommand::List { json } => {
            let subvols = fs.list_subvolumes()?;
            if json {
                print_json(&json!(subvols
                    .iter()
                    .map(|s| json!({
                        "name": s.name,
                        "uuid": s.uuid.to_string(),
                        "tid": s.tid.0,
                        "created": s.created.sec,
                        "snapshots": fs.list_snapshots(&s.name).map(|v| v.len()).unwrap_or(0),
                    }))
                    .collect::<Vec<_>>()));
            } else {
                for s in subvols {
                    println!("{}", s.name);
                }
            }
        }
        SubvolCommand::Delete { name } => {
            fs.delete_subvolume(&name)?;
            fs.fsync()?;
            println!("deleted subvolume {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
