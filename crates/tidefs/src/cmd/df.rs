//! `tidefs df`: pool size, used, free; per subvolume and snapshot exclusive and shared bytes.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use serde_json::json;
use tidefs_store::BLOCK_BYTES;

use crate::output::{human_bytes, print_json};
use crate::pool_arg::open_fs;

pub fn run(pool: &Path, as_json: bool) -> Result<ExitCode> {
    let fs = open_fs(pool)?;
    let usage = fs.pool().usage();
    let b = BLOCK_BYTES as u64;
    let size = usage.max_blocks.max(usage.total_blocks) * b;
    let used = (usage.used_blocks + usage.reserved_blocks) * b;
    let mut rows = Vec::new();
    for sv in fs.list_subvolumes()? {
        let space = fs.pool().tree_space(sv.tree)?;
        rows.push((sv.name.clone(), space));
        for snap in fs.list_snapshots(&sv.name)? {
            let space = fs.pool().tree_space(snap.tree)?;
            rows.push((format!("{}@{}", sv.name, snap.name), space));
        }
    }
    if as_json {
        print_json(&json!({
            "pool_bytes": size,
            "allocated_bytes": usage.total_blocks * b,
            "used_bytes": used,
            "free_bytes": size.saturating_sub(used),
            "metadata_overhead_bytes": usage.reserved_blocks * b,
            "subvolumes": rows.iter().map(|(name, s)| json!({
                "name": name,
                "exclusive_bytes": s.exclusive_blocks * b,
                "shared_bytes": s.shared_blocks * b,
            })).collect::<Vec<_>>(),
        }));
    } else {
        println!(
            "pool  size {}  used {}  free {}",
            human_bytes(size),
            human_bytes(used),
            human_bytes(size.saturating_sub(used))
        );
        println!("{:<40} {:>12} {:>12}", "NAME", "EXCLUSIVE", "SHARED");
        for (name, s) in rows {
            println!(
                "{:<40} {:>12} {:>12}",
                name,
                human_bytes(s.exclusive_blocks * b),
                human_bytes(s.shared_blocks * b)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
