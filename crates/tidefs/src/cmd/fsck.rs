//! `tidefs fsck`: check the whole pool; exit 0 only when it is clean.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use serde_json::json;

use crate::output::{print_json, progress};

#[derive(Args)]
pub struct FsckArgs {
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(pool: &Path, args: FsckArgs) -> Result<ExitCode> {
    let pool = crate::pool_arg::open(pool)?;
    let bar = progress(None, "checking");
    let report = tidefs_store::fsck(&pool, &mut |n| {
        if n % 256 == 0 {
            bar.set_position(n);
        }
    })?;
    bar.finish_and_clear();
    if args.json {
        print_json(&json!({
            "clean": report.is_clean(),
            "tid": report.tid.0,
            "trees": report.trees,
            "nodes": report.nodes,
            "records": report.records,
            "extents": report.extents,
            "used_blocks": report.used_blocks,
            "problems": report.problems.iter().map(|p| json!({
                "block": p.block,
                "tree": p.tree.map(|t| t.0),
                "key": p.key.as_ref().map(|k| k.iter().map(|b| format!("{b:02x}")).collect::<String>()),
                "message": p.message,
            })).collect::<Vec<_>>(),
        }));
    } else {
        for p in &report.problems {
            println!("{p}");
        }
        println!(
            "tid {}: {} trees, {} nodes, {} records, {} extents, {} blocks used: {}",
            report.tid,
            report.trees,
            report.nodes,
            report.records,
            report.extents,
            report.used_blocks,
            if report.is_clean() {
                "clean".to_string()
            } else {
                format!("{} problems", report.problems.len())
            }
        );
    }
    Ok(if report.is_clean() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
