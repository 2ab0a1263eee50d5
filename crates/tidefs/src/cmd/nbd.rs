//! `tidefs nbd`: placeholder until the nbd layer lands; every subcommand reports that.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Subcommand;

#[derive(Subcommand)]
pub enum NbdCommand {
    /// Not available in this build yet.
    Unavailable,
}

pub fn run(_pool: &Path, _cmd: NbdCommand) -> Result<ExitCode> {
    bail!("tidefs nbd is not available in this build yet")
}
