//! Positioned block I/O. The store talks to its backing storage only through
//! [`BlockDevice`], so tests can swap in a fault-injecting device.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::Path;

use parking_lot::RwLock;

/// Backing storage of a pool: a file, a block device, or a simulated device in tests.
pub trait BlockDevice: Send + Sync + 'static {
    /// Reads exactly `buf.len()` bytes at `offset`. Bytes never written read as zero.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Writes all of `buf` at `offset`. Not durable until [`BlockDevice::flush`] returns.
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()>;
    /// Like [`BlockDevice::write_at`], for bulk file data that nobody will read back soon:
    /// a device may start writing it out at once. Same durability contract.
    fn write_data_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.write_at(offset, buf)
    }
    /// Writes `bufs` one after another from `offset`, as [`BlockDevice::write_data_at`]
    /// would each: one request for the whole run where the device can take it.
    fn write_data_vectored_at(&self, offset: u64, bufs: &[&[u8]]) -> io::Result<()> {
        let mut at = offset;
        for buf in bufs {
            self.write_data_at(at, buf)?;
            at += buf.len() as u64;
        }
        Ok(())
    }
    /// Makes every write that returned before this call durable.
    fn flush(&self) -> io::Result<()>;
    /// Hints that `len` bytes at `offset` will be read soon, so a device may start reading
    /// them in the background. Only a hint: nothing fails.
    fn prefetch(&self, _offset: u64, _len: u64) {}
    /// Hints that `len` bytes just written at `offset` will not be read back through the
    /// device soon, so it may start writing them out now (the next flush then has less to
    /// wait for). Only a hint: nothing fails, and durability still needs a flush.
    fn start_writeback(&self, _offset: u64, _len: u64) {}
    /// Current size in bytes.
    fn size_bytes(&self) -> io::Result<u64>;
    /// Grows the device to `bytes`; devices of fixed size return an error.
    fn grow(&self, bytes: u64) -> io::Result<()>;
    /// The most bytes the device can ever hold, if it has a fixed limit.
    fn capacity_bytes(&self) -> Option<u64> {
        None
    }
}

/// A pool kept in a regular file or on a raw block device.
pub struct FileDevice {
    file: File,
    fixed_size: Option<u64>,
}

/// Bulk data writes at least this long ask the kernel to start writing them out at once.
/// Buffered writes with that hint beat direct I/O here: the caller returns after a copy
/// into the page cache (no wait for the device), the disk works in the background with
/// many requests in flight, the commit's flush finds little left, and data just written
/// reads back from memory. (Direct I/O, tried first, waited for every request.)
const WRITEBACK_HINT_BYTES_MIN: usize = 128 << 10;

impl FileDevice {
    /// Opens (or with `create`, creates) the file or block device at `path`.
    pub fn open(path: &Path, create: bool) -> io::Result<FileDevice> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(path)?;
        let meta = file.metadata()?;
        let fixed_size = if meta.file_type().is_block_device() {
            Some(block_device_size(&file)?)
        } else {
            None
        };
        Ok(FileDevice { file, fixed_size })
    }

    /// The open file, e.g. to take a lock on it.
    pub fn file(&self) -> &File {
        &self.file
    }
}

fn block_device_size(file: &File) -> io::Result<u64> {
    use std::io::{Seek, SeekFrom};
    // Seeking to the end is the portable way to learn a block device's size.
    let mut f = file.try_clone()?;
    f.seek(SeekFrom::End(0))
}

impl BlockDevice for FileDevice {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        match self.file.read_exact_at(buf, offset) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                // A sparse pool file shorter than the pool: the rest reads as zeros.
                let len = self.file.metadata()?.len();
                if offset >= len {
                    buf.fill(0);
                    return Ok(());
                }
                let have = (len - offset) as usize;
                self.file.read_exact_at(&mut buf[..have], offset)?;
                buf[have..].fill(0);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    fn write_data_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.file.write_all_at(buf, offset)?;
        if buf.len() >= WRITEBACK_HINT_BYTES_MIN {
            self.start_writeback(offset, buf.len() as u64);
        }
        Ok(())
    }

    fn write_data_vectored_at(&self, offset: u64, bufs: &[&[u8]]) -> io::Result<()> {
        // One pwritev for the run: fewer system calls, one range for the writeback hint.
        let mut slices: Vec<io::IoSlice<'_>> = bufs.iter().map(|b| io::IoSlice::new(b)).collect();
        let mut rest = &mut slices[..];
        let mut at = offset;
        while !rest.is_empty() {
            // A call writes at most IOV_MAX buffers (rustix passes no more); loop for the rest.
            let n = rustix::io::pwritev(&self.file, rest, at)?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            at += n as u64;
            io::IoSlice::advance_slices(&mut rest, n);
        }
        if (at - offset) as usize >= WRITEBACK_HINT_BYTES_MIN {
            self.start_writeback(offset, at - offset);
        }
        Ok(())
    }

    fn flush(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn prefetch(&self, offset: u64, len: u64) {
        let _ = rustix::fs::fadvise(
            &self.file,
            offset,
            std::num::NonZeroU64::new(len),
            rustix::fs::Advice::WillNeed,
        );
    }

    fn start_writeback(&self, offset: u64, len: u64) {
        // On Linux, DONTNEED starts writeback of the range's dirty pages without waiting
        // for it; pages already clean are dropped, the ones just written stay cached.
        let _ = rustix::fs::fadvise(
            &self.file,
            offset,
            std::num::NonZeroU64::new(len),
            rustix::fs::Advice::DontNeed,
        );
    }

    fn size_bytes(&self) -> io::Result<u64> {
        match self.fixed_size {
            Some(size) => Ok(size),
            None => Ok(self.file.metadata()?.len()),
        }
    }

    fn capacity_bytes(&self) -> Option<u64> {
        self.fixed_size
    }

    fn grow(&self, bytes: u64) -> io::Result<()> {
        match self.fixed_size {
            Some(size) if bytes > size => Err(io::Error::new(
                io::ErrorKind::StorageFull,
                format!("block device holds {size} bytes, {bytes} needed"),
            )),
            Some(_) => Ok(()),
            None => {
                if self.file.metadata()?.len() < bytes {
                    self.file.set_len(bytes)?;
                }
                Ok(())
            }
        }
    }
}

/// A device in memory, for tests and benchmarks.
#[derive(Default)]
pub struct MemDevice {
    bytes: RwLock<Vec<u8>>,
    capacity_bytes_max: Option<u64>,
}

impl MemDevice {
    pub fn new() -> MemDevice {
        MemDevice::default()
    }

    /// A device that refuses to grow past `bytes`.
    pub fn with_capacity_limit(bytes: u64) -> MemDevice {
        MemDevice {
            bytes: RwLock::new(Vec::new()),
            capacity_bytes_max: Some(bytes),
        }
    }

    /// A copy of everything written so far.
    pub fn image(&self) -> Vec<u8> {
        self.bytes.read().clone()
    }

    /// A device holding `image`.
    pub fn from_image(image: Vec<u8>) -> MemDevice {
        MemDevice {
            bytes: RwLock::new(image),
            capacity_bytes_max: None,
        }
    }
}

impl BlockDevice for MemDevice {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let bytes = self.bytes.read();
        copy_out(&bytes, offset, buf);
        Ok(())
    }

    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        let end = offset as usize + buf.len();
        if let Some(max) = self.capacity_bytes_max {
            if end as u64 > max {
                return Err(io::Error::new(io::ErrorKind::StorageFull, "device full"));
            }
        }
        let mut bytes = self.bytes.write();
        if bytes.len() < end {
            bytes.resize(end, 0);
        }
        bytes[offset as usize..end].copy_from_slice(buf);
        Ok(())
    }

    fn flush(&self) -> io::Result<()> {
        Ok(())
    }

    fn size_bytes(&self) -> io::Result<u64> {
        Ok(self.bytes.read().len() as u64)
    }

    fn capacity_bytes(&self) -> Option<u64> {
        self.capacity_bytes_max
    }

    fn grow(&self, bytes: u64) -> io::Result<()> {
        if let Some(max) = self.capacity_bytes_max {
            if bytes > max {
                return Err(io::Error::new(io::ErrorKind::StorageFull, "device full"));
            }
        }
        let mut image = self.bytes.write();
        if (image.len() as u64) < bytes {
            image.resize(bytes as usize, 0);
        }
        Ok(())
    }
}

/// Copies `buf.len()` bytes at `offset` out of `image`, zero past its end.
pub(crate) fn copy_out(image: &[u8], offset: u64, buf: &mut [u8]) {
    let start = (offset as usize).min(image.len());
    let end = (offset as usize + buf.len()).min(image.len());
    let have = end - start;
    buf[..have].copy_from_slice(&image[start..end]);
    buf[have..].fill(0);
}

impl<D: BlockDevice + ?Sized> BlockDevice for std::sync::Arc<D> {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        (**self).read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        (**self).write_at(offset, buf)
    }
    fn write_data_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        (**self).write_data_at(offset, buf)
    }
    fn write_data_vectored_at(&self, offset: u64, bufs: &[&[u8]]) -> io::Result<()> {
        (**self).write_data_vectored_at(offset, bufs)
    }
    fn flush(&self) -> io::Result<()> {
        (**self).flush()
    }
    fn prefetch(&self, offset: u64, len: u64) {
        (**self).prefetch(offset, len)
    }
    fn start_writeback(&self, offset: u64, len: u64) {
        (**self).start_writeback(offset, len)
    }
    fn size_bytes(&self) -> io::Result<u64> {
        (**self).size_bytes()
    }
    fn grow(&self, bytes: u64) -> io::Result<()> {
        (**self).grow(bytes)
    }
    fn capacity_bytes(&self) -> Option<u64> {
        (**self).capacity_bytes()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    /// Counts the calls that have their own default in the trait.
    #[derive(Default)]
    struct Counting {
        inner: MemDevice,
        data_writes: AtomicUsize,
        vectored: AtomicUsize,
        prefetches: AtomicUsize,
        writebacks: AtomicUsize,
    }

    impl BlockDevice for Counting {
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
            self.inner.read_at(offset, buf)
        }
        fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
            self.inner.write_at(offset, buf)
        }
        fn write_data_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
            self.data_writes.fetch_add(1, Ordering::Relaxed);
            self.inner.write_at(offset, buf)
        }
        fn write_data_vectored_at(&self, offset: u64, bufs: &[&[u8]]) -> io::Result<()> {
            self.vectored.fetch_add(1, Ordering::Relaxed);
            self.inner.write_at(offset, &bufs.concat())
        }
        fn flush(&self) -> io::Result<()> {
            Ok(())
        }
        fn prefetch(&self, _offset: u64, _len: u64) {
            self.prefetches.fetch_add(1, Ordering::Relaxed);
        }
        fn start_writeback(&self, _offset: u64, _len: u64) {
            self.writebacks.fetch_add(1, Ordering::Relaxed);
        }
        fn size_bytes(&self) -> io::Result<u64> {
            self.inner.size_bytes()
        }
        fn grow(&self, bytes: u64) -> io::Result<()> {
            self.inner.grow(bytes)
        }
    }

    #[test]
    fn a_vectored_write_of_more_buffers_than_one_call_takes_lands_whole() {
        let dir = tempfile::tempdir().unwrap();
        let device = FileDevice::open(&dir.path().join("pool"), true).unwrap();
        let bufs: Vec<Vec<u8>> = (0..3000u32).map(|i| vec![(i % 251) as u8; 4096]).collect();
        let slices: Vec<&[u8]> = bufs.iter().map(|b| &b[..]).collect();
        device.write_data_vectored_at(8192, &slices).unwrap();
        let mut back = vec![0u8; 3000 * 4096];
        device.read_at(8192, &mut back).unwrap();
        assert!(back
            .chunks(4096)
            .zip(&bufs)
            .all(|(got, want)| got == &want[..]));
    }

    #[test]
    fn an_arc_passes_every_call_to_its_device() {
        // The store holds `Arc<dyn BlockDevice>`, and method calls on it resolve to the
        // `Arc` impl: a call it does not forward silently takes the trait's default.
        let device = Arc::new(Counting::default());
        let shared: Arc<dyn BlockDevice> = device.clone();
        let held = &shared;
        held.grow(1 << 20).unwrap();
        held.write_data_at(0, &[1; 4096]).unwrap();
        held.write_data_vectored_at(4096, &[&[2; 4096], &[3; 4096]])
            .unwrap();
        held.prefetch(0, 4096);
        held.start_writeback(0, 4096);
        assert_eq!(device.data_writes.load(Ordering::Relaxed), 1);
        assert_eq!(device.vectored.load(Ordering::Relaxed), 1);
        assert_eq!(device.prefetches.load(Ordering::Relaxed), 1);
        assert_eq!(device.writebacks.load(Ordering::Relaxed), 1);
        let mut back = vec![0u8; 3 * 4096];
        held.read_at(0, &mut back).unwrap();
        assert!(back[..4096].iter().all(|&b| b == 1) && back[8192..].iter().all(|&b| b == 3));
    }
}
