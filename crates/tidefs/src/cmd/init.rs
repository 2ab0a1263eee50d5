//! `tidefs init`: create the pool; an existing pool is left alone and reported.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use tidefs_store::{CreateOptions, Pool};

use crate::output::parse_size;

#[derive(Args)]
pub struct InitArgs {
    /// Largest size the pool may grow to (e.g. 10G); default: as far as the disk allows.
    #[arg(long, value_parser = parse_size)]
    max_size: Option<u64>,
}

pub fn run(pool: &Path, args: InitArgs) -> Result<ExitCode> {
    if Pool::exists(pool) {
        println!("pool {} already exists; left unchanged", pool.display());
        return Ok(ExitCode::SUCCESS);
    }
    let opts = CreateOptions {
        max_bytes: args.max_size,
        ..CreateOptions::default()
    };
    let p = crate::pool_arg::create(pool, &opts)?;
    p.commit()?;
    println!("created pool {}", pool.display());
    Ok(ExitCode::SUCCESS)
}
