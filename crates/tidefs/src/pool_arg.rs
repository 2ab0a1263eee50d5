//! Opening the pool named by `--pool`, with the errors a user needs to fix things.

use std::path::Path;

use anyhow::{bail, Context, Result};
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
    Pool::open_at(path, &OpenOptions::default()).with_context(|| format!("opening pool {}", path.display()))
}

/// Opens the pool, creating it first if it does not exist (commands that start a service
/// on the embedded default pool).
pub fn open_or_create(path: &Path) -> Result<Pool> {
    if Pool::exists(path) {
        return open(path);
    }
    create(path, &CreateOptions::default())
}

/// Creates a new pool at `path`.
pub fn create(path: &Path, opts: &CreateOptions) -> Result<Pool> {
    let pool = Pool::create_at(path, opts, &OpenOptions::default())
        .with_context(|| format!("creating pool {}", path.display()))?;
    Ok(pool)
}
