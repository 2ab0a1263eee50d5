//! `tidefs import SRC_DIR NAME` and `tidefs export NAME[@SNAP] DEST_DIR`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use tidefs_fs::{CopyStats, Progress};

use crate::cmd::files::open_subvol;
use crate::output::{human_bytes, progress};
use crate::pool_arg::{caller, open_fs};
use crate::spec::SubvolSpec;

fn report(verb: &str, stats: &CopyStats) {
    eprintln!(
        "{verb} {} files, {} directories, {} symlinks, {} special files, {} hard links, {} xattrs, {} of data",
        stats.files,
        stats.dirs,
        stats.symlinks,
        stats.specials,
        stats.hard_links,
        stats.xattrs,
        human_bytes(stats.bytes)
    );
    if stats.xattrs_skipped > 0 {
        eprintln!(
            "left behind {} xattrs outside user., trusted. and security.",
            stats.xattrs_skipped
        );
    }
}

pub fn import(pool: &Path, src: &Path, name: &str) -> Result<ExitCode> {
    let meta = std::fs::metadata(src).with_context(|| format!("reading {}", src.display()))?;
    if !meta.is_dir() {
        bail!("{}: not a directory", src.display());
    }
    let fs = open_fs(pool)?;
    fs.create_subvolume(name, &caller())?;
    let sub = fs.subvolume(name)?;
    let bar = progress(None, "importing");
    let result = tidefs_fs::import(&sub, src, &mut |p: Progress| {
        bar.set_position(p.entries);
        bar.set_message(format!("importing ({})", human_bytes(p.bytes)));
    });
    bar.finish_and_clear();
    match result {
        Ok(stats) => {
            fs.fsync()?;
            report("imported", &stats);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            // Nothing half-made stays behind: the new subvolume goes with the failure.
            let _ = fs.delete_subvolume(name);
            let _ = fs.fsync();
            Err(e).with_context(|| format!("importing {} into {name}", src.display()))
        }
    }
}

pub fn export(pool: &Path, spec: &str, dest: &Path) -> Result<ExitCode> {
    let spec = SubvolSpec::parse(spec)?;
    let fs = open_fs(pool)?;
    let sub = open_subvol(&fs, &spec)?;
    std::fs::create_dir_all(dest).with_context(|| format!("creating {}", dest.display()))?;
    let bar = progress(None, "exporting");
    let stats = tidefs_fs::export(&sub, dest, &mut |p: Progress| {
        bar.set_position(p.entries);
        bar.set_message(format!("exporting ({})", human_bytes(p.bytes)));
    });
    bar.finish_and_clear();
    let stats = stats.with_context(|| format!("exporting {spec} to {}", dest.display()))?;
    report("exported", &stats);
    Ok(ExitCode::SUCCESS)
}
