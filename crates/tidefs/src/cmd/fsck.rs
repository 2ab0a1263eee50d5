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
    /// Also read every data block and verify its checksum.
    #[arg(long)]
    verify_data: bool,
}

pub fn run(pool: &Path, args: FsckArgs) -> Result<ExitCode> {
    let fs = crate::pool_arg::open_fs(pool)?;
    let pool = fs.pool().clone();
    let bar = progress(None, "checking");
    let report = tidefs_store::fsck(&pool, &mut |n| {
        if n % 256 == 0 {
            bar.set_position(n);
        }
    })?;
    bar.set_message("checking files");
    // File-system checks on top: link counts, back-references, directory sizes, orphans,
    // and (with --verify-data) every data block's checksum.
    let fs_problems = fs.fsck(args.verify_data)?;
    bar.finish_and_clear();
    let clean = report.is_clean() && fs_problems.is_empty();
    if args.json {
        print_json(&json!({
            "clean": clean,
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
            "fs_problems": fs_problems.iter().map(|p| json!({
                "tree": p.tree.0,
                "ino": p.ino,
                "message": p.message,
            })).collect::<Vec<_>>(),
        }));
    } else {
        for p in &report.problems {
            println!("{p}");
        }
        for p in &fs_problems {
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
            if clean {
                "clean".to_string()
            } else {
                format!("{} problems", report.problems.len() + fs_problems.len())
            }
        );
    }
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
