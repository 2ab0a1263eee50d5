//! Page-aligned byte buffers, so file data can go to the device with direct I/O (no copy
//! through the page cache) straight from the buffer it was read into.

use std::ops::{Deref, DerefMut};

/// Alignment direct I/O needs for memory, offsets and lengths.
pub const DIRECT_IO_ALIGN: usize = 4096;

// bytemuck (not `unsafe`) views the pages as bytes: a page is a plain byte array.
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C, align(4096))]
struct Page([u8; DIRECT_IO_ALIGN]);

/// A zero-initialised byte buffer whose start is aligned to [`DIRECT_IO_ALIGN`].
pub struct AlignedBuf {
    pages: Vec<Page>,
    len: usize,
}

impl AlignedBuf {
    /// `len` zero bytes.
    pub fn new(len: usize) -> AlignedBuf {
        AlignedBuf {
            pages: vec![Page([0; DIRECT_IO_ALIGN]); len.div_ceil(DIRECT_IO_ALIGN)],
            len,
        }
    }
}

impl Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &bytemuck::cast_slice(&self.pages)[..self.len]
    }
}

impl DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut bytemuck::cast_slice_mut(&mut self.pages)[..self.len]
    }
}

/// Whether `buf` starts at an address direct I/O accepts.
pub fn is_aligned(buf: &[u8]) -> bool {
    (buf.as_ptr() as usize).is_multiple_of(DIRECT_IO_ALIGN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_aligned_zeroed_and_exactly_as_long_as_asked() {
        for len in [0, 1, 4095, 4096, 4097, 1 << 20] {
            let mut b = AlignedBuf::new(len);
            assert_eq!(b.len(), len);
            assert!(b.iter().all(|&x| x == 0));
            if len > 0 {
                assert!(is_aligned(&b));
                b[len - 1] = 7;
                assert_eq!(b[len - 1], 7);
            }
        }
    }
}
