//! Opening the pool named by `--pool`, with the errors a user needs to fix things.

use std::path::Path;

use std::sync::Arc;

use anyhow::{bail, Context, Result};
use tidefs_fs::{Caller, Fs, SystemClock};
use tidefs_store::{CreateOptions, OpenOptions, Pool};

/// Opens an existing pool, or says how to create one.
pub fn open(path: &Path) -> Result<Pool> {
    if !Pool::exists(path) {
        bail!(
            "no pool at {}; create one with `tidefs --pool {} init`",
            path.display(),
            path.display()
        );
    }
    Pool::open_at(path, &OpenOptions::default())
        .with_context(|| format!("opening pool {}", path.display()))
}

/// Opens the pool, creating it first if it does not exist (commands that start a service
/// on the embedded default pool).
pub fn open_or_create(path: &Path) -> Result<Pool> {
    if Pool::exists(path) {
        return open(path);
    }
    create(path, &CreateOptions::default())
}

/// Creates a new pool at `path`, with an empty file system in it.
pub fn create(path: &Path, opts: &CreateOptions) -> Result<Pool> {
    let pool = Pool::create_at(path, opts, &OpenOptions::default())
        .with_context(|| format!("creating pool {}", path.display()))?;
    // Every pool holds a file system; volumes live beside it under their own name.
    Fs::format(pool.clone(), Arc::new(SystemClock)).context("formatting the file system")?;
    Ok(pool)
}

/// Opens the file system of an existing pool.
pub fn open_fs(path: &Path) -> Result<Fs> {
    let pool = open(path)?;
    Fs::open(pool, Arc::new(SystemClock))
        .with_context(|| format!("opening the file system in {}", path.display()))
}

/// The credentials of this process, for ownership of what it creates.
pub fn caller() -> Caller {
    Caller::new(current_uid(), current_gid())
}

// /proc/self belongs to the process's effective uid and gid; this avoids unsafe libc calls.
fn current_uid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap_or(0)
}

fn current_gid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::gid(&m))
        .unwrap_or(0)
}
