//! `tidefs diff NAME@A NAME@B` (or `NAME@A NAME` for the live head): one line per change,
//! `+`, `-`, `M`, `R old -> new`, tab-separated and sorted by path, as `zfs diff` prints.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Result};
use serde_json::json;
use tidefs_fs::Change;

use crate::cmd::files::open_subvol;
use crate::output::print_json;
use crate::pool_arg::open_fs;
use crate::spec::SubvolSpec;

pub fn run(pool: &Path, from: &str, to: &str, as_json: bool) -> Result<ExitCode> {
    let (a, b) = (SubvolSpec::parse(from)?, SubvolSpec::parse(to)?);
    if a.name != b.name {
        bail!("{a} and {b}: diff compares two states of one subvolume");
    }
    let fs = open_fs(pool)?;
    let (sa, sb) = (open_subvol(&fs, &a)?, open_subvol(&fs, &b)?);
    let mut changes = tidefs_fs::diff(&sa, &sb)?;
    changes.sort_by(|x, y| x.path().cmp(y.path()));
    if as_json {
        let s = |p: &[u8]| String::from_utf8_lossy(p).into_owned();
        print_json(&json!(changes
            .iter()
            .map(|c| match c {
                Change::Added(p) => json!({"change": "added", "path": s(p)}),
                Change::Removed(p) => json!({"change": "removed", "path": s(p)}),
                Change::Modified(p) => json!({"change": "modified", "path": s(p)}),
                Change::Renamed { from, to } =>
                    json!({"change": "renamed", "path": s(from), "to": s(to)}),
            })
            .collect::<Vec<_>>()));
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = std::io::stdout().lock();
    for c in &changes {
        // Paths are written as raw bytes: names need not be UTF-8.
        match c {
            Change::Added(p) => out.write_all(&[b"+\t", p.as_slice(), b"\n"].concat())?,
            Change::Removed(p) => out.write_all(&[b"-\t", p.as_slice(), b"\n"].concat())?,
            Change::Modified(p) => out.write_all(&[b"M\t", p.as_slice(), b"\n"].concat())?,
            Change::Renamed { from, to } => {
                out.write_all(&[b"R\t", from.as_slice(), b" -> ", to.as_slice(), b"\n"].concat())?
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
