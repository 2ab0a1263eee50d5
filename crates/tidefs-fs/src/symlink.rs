//! Symlink targets: `(ino, SYMLINK, i)` holds bytes `[2048·i, 2048·(i+1))` of the target
//! (targets may be 4095 bytes, more than one record value holds).

use crate::cx::Cx;
use crate::error::{FsError, Result};
use crate::keys::{kind_prefix, symlink_key, KIND_SYMLINK};
use crate::limits::VALUE_CHUNK_BYTES;

impl Cx<'_, '_> {
    pub fn write_symlink_target(&mut self, ino: u64, target: &[u8]) -> Result<()> {
        for (i, c) in target.chunks(VALUE_CHUNK_BYTES).enumerate() {
            self.put(&symlink_key(ino, i as u64), c)?;
        }
        Ok(())
    }

    pub fn read_symlink_target(&mut self, ino: u64) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        for r in self.view()?.prefix(&kind_prefix(ino, KIND_SYMLINK))? {
            out.extend_from_slice(&r?.value);
        }
        if out.is_empty() {
            return Err(FsError::corrupt(
                self.tree,
                format!("symlink {ino} has no target"),
            ));
        }
        Ok(out)
    }
}
