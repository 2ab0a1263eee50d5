//! `tidefs volume`: placeholder until the volume layer lands; every subcommand reports that.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Subcommand;

#[derive(Subcommand)]
pub enum VolumeCommand {
    /// Not available in this build yet.
    Unavailable,
}

pub fn run(_pool: &Path, _cmd: VolumeCommand) -> Result<ExitCode> {
    bail!("tidefs volume is not available in this build yet")
}
