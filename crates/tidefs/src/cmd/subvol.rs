//! `tidefs subvol create|list|delete`.
//!
//! When a mount holds the pool, `list` goes through its control socket; `create` and
//! `delete` need the pool to themselves and fail with the lock error naming the holder.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Subcommand;

use crate::cmd::snapshot::ask_fs;
use crate::control::fs_protocol::{subvol_rows, FsReply, FsRequest};
use crate::control::PoolAccess;
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
    if let SubvolCommand::List { json } = cmd {
        return list(pool, json);
    }
    let fs = open_fs(pool)?;
    match cmd {
        SubvolCommand::Create { name } => {
            fs.create_subvolume(&name, &caller())?;
            fs.fsync()?;
            println!("created subvolume {name}");
        }
        SubvolCommand::Delete { name } => {
            fs.delete_subvolume(&name)?;
            fs.fsync()?;
            println!("deleted subvolume {name}");
        }
        SubvolCommand::List { .. } => unreachable!("listed above"),
    }
    Ok(ExitCode::SUCCESS)
}

fn list(pool: &Path, json: bool) -> Result<ExitCode> {
    let rows = match PoolAccess::open(pool, || open_fs(pool))? {
        PoolAccess::Direct(fs) => subvol_rows(&fs)?,
        PoolAccess::Held { socket, holder } => {
            match ask_fs(&socket, &holder, &FsRequest::SubvolList)? {
                FsReply::Subvolumes { subvolumes } => subvolumes,
                other => bail!("unexpected reply from {holder}: {other:?}"),
            }
        }
    };
    if json {
        print_json(&serde_json::to_value(&rows).expect("subvolume rows serialize"));
    } else {
        for s in rows {
            println!("{}", s.name);
        }
    }
    Ok(ExitCode::SUCCESS)
}
