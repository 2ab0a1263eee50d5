//! What the NBD server serves: a provider of named exports, each a fixed-size block device.
//!
//! The server knows nothing about how a volume is stored. The volume store implements
//! these two traits; this crate ships [`crate::MemoryExport`] and [`crate::FileExport`]
//! for tests and benchmarks.

use std::sync::Arc;

use crate::error::ExportError;

/// The set of exports a server offers. Called from every connection's thread.
pub trait ExportProvider: Send + Sync {
    /// Exports to show in `NBD_OPT_LIST`. Exports left out may still be opened by name.
    fn list(&self) -> Vec<ExportInfo>;

    /// Opens an export by the name the client sent; the empty name means "the default
    /// export", if the provider has one. Returns [`ExportError::NotFound`] for an unknown
    /// name. Connections that open the same name must see the same data: the server
    /// advertises `NBD_FLAG_CAN_MULTI_CONN` on that promise.
    fn open(&self, name: &str) -> Result<Arc<dyn BlockExport>, ExportError>;
}

/// A name and a human-readable description, as listed by `NBD_OPT_LIST`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportInfo {
    pub name: String,
    pub description: String,
}

/// One block device. Offsets and lengths given to these methods have been checked by
/// the server: they lie inside `0..size()` and obey [`BlockExport::block_size`].
///
/// Durability contract: a write is durable once `flush` returns, or once `write` /
/// `write_zeroes` with `fua == true` returns. `flush` must make durable every write that
/// returned before it was called, through *any* handle to the same export (other
/// connections included); this is what makes advertising `NBD_FLAG_CAN_MULTI_CONN` honest.
pub trait BlockExport: Send + Sync {
    /// Size in bytes; fixed for the life of the handle.
    fn size(&self) -> u64;

    /// True when writes must be refused (`NBD_EPERM`); e.g. a snapshot.
    fn read_only(&self) -> bool;

    /// The alignment and length constraints requests must obey.
    fn block_size(&self) -> BlockSizeConstraints;

    /// Fills `buf` with the bytes at `offset`. Holes read as zeroes.
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), ExportError>;

    /// Writes `data` at `offset`; durable before returning when `fua`.
    fn write(&self, offset: u64, data: &[u8], fua: bool) -> Result<(), ExportError>;

    /// Makes every write that returned before this call durable (see the trait doc).
    fn flush(&self) -> Result<(), ExportError>;

    /// A hint that `len` bytes at `offset` are no longer needed. The export may discard
    /// any part of the range (reads then return zeroes there) or ignore the hint.
    fn trim(&self, offset: u64, len: u64) -> Result<(), ExportError>;

    /// Makes `len` bytes at `offset` read as zeroes. With `may_punch_hole` the export may
    /// deallocate the range; without it the range must stay allocated (`NBD_CMD_FLAG_NO_HOLE`).
    fn write_zeroes(
        &self,
        offset: u64,
        len: u64,
        may_punch_hole: bool,
        fua: bool,
    ) -> Result<(), ExportError>;

    /// Describes the allocation of the range starting at `offset`, as consecutive extents.
    /// Must return at least one extent of non-zero length; may cover less than `len` (the
    /// client asks again for the rest) or more (the server trims the excess). Extent
    /// lengths must be multiples of the minimum block size except at the export's end.
    fn block_status(&self, offset: u64, len: u64) -> Result<Vec<BlockStatusExtent>, ExportError>;
}

/// One run of bytes with the same allocation state (`base:allocation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockStatusExtent {
    pub len: u64,
    /// Not allocated in the backing store (`NBD_STATE_HOLE`).
    pub hole: bool,
    /// Known to read as zeroes (`NBD_STATE_ZERO`).
    pub zero: bool,
}

/// Block size constraints as `NBD_INFO_BLOCK_SIZE` advertises them. Construct with
/// [`BlockSizeConstraints::new`], which enforces the protocol's rules so the server can
/// send the values as they are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockSizeConstraints {
    minimum_bytes: u32,
    preferred_bytes: u32,
    maximum_bytes: u32,
}

/// The protocol's largest legal minimum block size.
const MINIMUM_BLOCK_BYTES_MAX: u32 = 64 * 1024;

impl BlockSizeConstraints {
    /// The protocol's defaults: any alignment, 4 KiB preferred, no inherent maximum.
    /// A server with these constraints must not refuse clients that never asked for them.
    pub const DEFAULT: Self = Self::new(1, 4096, u32::MAX);

    /// Panics when the values break the protocol's rules: `minimum` and `preferred` are
    /// powers of two, `minimum <= 64 KiB`, `preferred >= max(minimum, 512)`,
    /// `maximum >= preferred`, and `maximum` is a multiple of `minimum` (or `u32::MAX`).
    /// A backend with such constraints has a bug, so this is an assertion, not an error.
    pub const fn new(minimum_bytes: u32, preferred_bytes: u32, maximum_bytes: u32) -> Self {
        assert!(minimum_bytes.is_power_of_two() && minimum_bytes <= MINIMUM_BLOCK_BYTES_MAX);
        assert!(preferred_bytes.is_power_of_two());
        assert!(preferred_bytes >= minimum_bytes && preferred_bytes >= 512);
        assert!(maximum_bytes >= preferred_bytes);
        assert!(maximum_bytes == u32::MAX || maximum_bytes.is_multiple_of(minimum_bytes));
        Self {
            minimum_bytes,
            preferred_bytes,
            maximum_bytes,
        }
    }

    pub const fn minimum_bytes(&self) -> u32 {
        self.minimum_bytes
    }

    pub const fn preferred_bytes(&self) -> u32 {
        self.preferred_bytes
    }

    pub const fn maximum_bytes(&self) -> u32 {
        self.maximum_bytes
    }

    /// True when a client that never asked for constraints can be served.
    pub const fn is_default_compatible(&self) -> bool {
        self.minimum_bytes == 1
    }

    /// The same constraints with the maximum lowered to `cap` (rounded down to a multiple
    /// of the minimum). The server caps what it advertises at its own request limit.
    pub const fn with_maximum_capped(self, cap: u32) -> Self {
        let capped = cap - cap % self.minimum_bytes;
        if self.maximum_bytes <= capped {
            return self;
        }
        let preferred = if self.preferred_bytes > capped {
            capped
        } else {
            self.preferred_bytes
        };
        Self::new(self.minimum_bytes, preferred, capped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_default_compatible() {
        assert!(BlockSizeConstraints::DEFAULT.is_default_compatible());
        assert!(!BlockSizeConstraints::new(512, 4096, 1 << 20).is_default_compatible());
    }

    #[test]
    fn capping_keeps_multiple_of_minimum() {
        let c = BlockSizeConstraints::new(4096, 4096, u32::MAX).with_maximum_capped(32 << 20);
        assert_eq!(c.maximum_bytes(), 32 << 20);
        let c = BlockSizeConstraints::new(1, 4096, 1 << 20).with_maximum_capped(32 << 20);
        assert_eq!(c.maximum_bytes(), 1 << 20, "a smaller maximum is kept");
    }

    #[test]
    #[should_panic]
    fn non_power_of_two_minimum_panics() {
        let _ = BlockSizeConstraints::new(3, 4096, 4096);
    }

    #[test]
    #[should_panic]
    fn preferred_below_512_panics() {
        let _ = BlockSizeConstraints::new(1, 256, 4096);
    }

    #[test]
    #[should_panic]
    fn maximum_not_multiple_of_minimum_panics() {
        let _ = BlockSizeConstraints::new(4096, 4096, 4096 * 3 + 1);
    }
}
