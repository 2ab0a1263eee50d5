//! A block device backed by a regular file, for benchmarks against `qemu-nbd` serving
//! the same file. Positional reads and writes (`pread`/`pwrite`) make it safe to share
//! between connections without a lock.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::error::ExportError;
use crate::export::{BlockExport, BlockSizeConstraints, BlockStatusExtent};

/// Bytes of zeroes written per call by `write_zeroes`.
const ZERO_CHUNK_BYTES: usize = 256 * 1024;

/// A file served as a block device of the file's current size.
pub struct FileExport {
    file: File,
    size: u64,
    read_only: bool,
}

impl FileExport {
    pub fn open(path: &Path, read_only: bool) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(!read_only).open(path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            file,
            size,
            read_only,
        })
    }

    fn sync(&self, offset: u64) -> Result<(), ExportError> {
        self.file
            .sync_data()
            .map_err(|source| ExportError::Io { offset, source })
    }
}

impl BlockExport for FileExport {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn block_size(&self) -> BlockSizeConstraints {
        BlockSizeConstraints::DEFAULT
    }

    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), ExportError> {
        self.file
            .read_exact_at(buf, offset)
            .map_err(|source| ExportError::Io { offset, source })
    }

    fn write(&self, offset: u64, data: &[u8], fua: bool) -> Result<(), ExportError> {
        if self.read_only {
            return Err(ExportError::ReadOnly);
        }
        self.file
            .write_all_at(data, offset)
            .map_err(|source| ExportError::Io { offset, source })?;
        if fua {
            self.sync(offset)?;
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), ExportError> {
        // fdatasync covers every write made through any descriptor of the file, so a
        // flush on one connection makes all connections' acknowledged writes durable.
        self.sync(0)
    }

    fn trim(&self, _offset: u64, _len: u64) -> Result<(), ExportError> {
        // Trim is a hint; punching holes needs fallocate, which std does not expose.
        if self.read_only {
            return Err(ExportError::ReadOnly);
        }
        Ok(())
    }

    fn write_zeroes(
        &self,
        offset: u64,
        len: u64,
        _may_punch_hole: bool,
        fua: bool,
    ) -> Result<(), ExportError> {
        if self.read_only {
            return Err(ExportError::ReadOnly);
        }
        let zeroes = vec![0u8; ZERO_CHUNK_BYTES];
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(ZERO_CHUNK_BYTES as u64) as usize;
            self.write(offset + done, &zeroes[..n], false)?;
            done += n as u64;
        }
        if fua {
            self.sync(offset)?;
        }
        Ok(())
    }

    fn block_status(&self, _offset: u64, len: u64) -> Result<Vec<BlockStatusExtent>, ExportError> {
        // Without SEEK_DATA/SEEK_HOLE everything is reported allocated, which the
        // protocol allows ("status 0" is always safe).
        Ok(vec![BlockStatusExtent {
            len,
            hole: false,
            zero: false,
        }])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_read_back_and_zeroes_clear() {
        let file = tempfile::NamedTempFile::new().unwrap();
        file.as_file().set_len(1 << 20).unwrap();
        let export = FileExport::open(file.path(), false).unwrap();
        assert_eq!(export.size(), 1 << 20);
        export.write(1000, &[0xab; 5000], true).unwrap();
        let mut buf = vec![0u8; 5000];
        export.read(1000, &mut buf).unwrap();
        assert!(buf.iter().all(|&b| b == 0xab));
        export.write_zeroes(2000, 1000, true, false).unwrap();
        export.flush().unwrap();
        export.read(1000, &mut buf).unwrap();
        assert!(buf[..1000].iter().all(|&b| b == 0xab));
        assert!(buf[1000..2000].iter().all(|&b| b == 0));
        assert!(buf[2000..].iter().all(|&b| b == 0xab));
    }

    #[test]
    fn read_only_file_refuses_writes() {
        let file = tempfile::NamedTempFile::new().unwrap();
        file.as_file().set_len(4096).unwrap();
        let export = FileExport::open(file.path(), true).unwrap();
        assert!(matches!(
            export.write(0, &[1], false),
            Err(ExportError::ReadOnly)
        ));
    }
}
