//! Decoding of ENCODED_WRITE data (`btrfs send --compressed-data`): the btrfs encoded-io
//! compression types, so a compressed stream lands as plain file data.
//!
//! The DATA of an ENCODED_WRITE is one compressed btrfs extent as it lies on disk,
//! padded to the sector size. Its decoded form is `unencoded_len` bytes (btrfs's
//! `ram_bytes`); like the kernel and btrfs-progs, bytes past the end of the compressed
//! data read as zeros (the last extent of a file holds only up to i_size, yet its
//! `unencoded_len` is rounded up to the sector). Decoding more than `unencoded_len`, or
//! a compressed stream that does not end, is an error.
//!
//! | value | type | layout |
//! |---|---|---|
//! | 1 | zlib | one zlib stream (with header) |
//! | 2 | zstd | one zstd frame |
//! | 3..=7 | LZO, sector 4K << (value - 3) | LE32 total length (header included), then segments: LE32 length + LZO1X data, each decoding to at most one sector; a segment header never straddles a sector boundary (zero padding up to it) |

use thiserror::Error;

/// Largest `unencoded_len` decoded. The kernel's extents hold at most 128 KiB
/// (`BTRFS_MAX_UNCOMPRESSED`); the bound keeps a hostile stream from making the receiver
/// allocate or inflate without limit.
pub const UNENCODED_LEN_MAX: u64 = 1 << 20;

/// Why the data of an ENCODED_WRITE could not be decoded.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("encryption {0} is not supported (btrfs defines none)")]
    Encrypted(u32),
    #[error("unknown compression type {0}")]
    UnknownCompression(u32),
    #[error("unencoded length {len} is larger than the {max} bytes this receiver decodes")]
    TooLarge { len: u64, max: u64 },
    #[error("{codec} data is corrupt: {what}")]
    Corrupt { codec: &'static str, what: String },
    #[error("{codec} data decodes to more than its unencoded length {unencoded_len}")]
    TooLong {
        codec: &'static str,
        unencoded_len: u64,
    },
}

/// A compression type of btrfs encoded io (`BTRFS_ENCODED_IO_COMPRESSION_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Zlib,
    Zstd,
    /// LZO with segments per sector of this many bytes.
    Lzo {
        sector: usize,
    },
}

impl Compression {
    pub fn from_wire(value: u32) -> Result<Self, DecodeError> {
        Ok(match value {
            0 => Compression::None,
            1 => Compression::Zlib,
            2 => Compression::Zstd,
            3..=7 => Compression::Lzo {
                sector: 4096 << (value - 3),
            },
            v => return Err(DecodeError::UnknownCompression(v)),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "uncompressed",
            Compression::Zlib => "zlib",
            Compression::Zstd => "zstd",
            Compression::Lzo { .. } => "lzo",
        }
    }
}

/// Decodes compressed extent `data` to its `unencoded_len` bytes (zero-padded past the
/// end of the compressed data).
pub fn decode(
    compression: Compression,
    data: &[u8],
    unencoded_len: u64,
) -> Result<Vec<u8>, DecodeError> {
    if unencoded_len > UNENCODED_LEN_MAX {
        return Err(DecodeError::TooLarge {
            len: unencoded_len,
            max: UNENCODED_LEN_MAX,
        });
    }
    let len = unencoded_len as usize;
    let codec = compression.name();
    let corrupt = |what: String| DecodeError::Corrupt { codec, what };
    let too_long = DecodeError::TooLong {
        codec,
        unencoded_len,
    };
    // One byte of room past the end tells "too long" apart from "exactly full".
    let mut out = vec![0u8; len + 1];
    let n = match compression {
        Compression::None => {
            let n = data.len().min(len + 1);
            out[..n].copy_from_slice(&data[..n]);
            n
        }
        Compression::Zlib => zlib(data, &mut out).map_err(corrupt)?,
        Compression::Zstd => zstd(data, &mut out).map_err(corrupt)?,
        Compression::Lzo { sector } => lzo(data, &mut out, sector).map_err(corrupt)?,
    };
    if n > len {
        return Err(too_long);
    }
    out.truncate(len);
    Ok(out)
}

/// One zlib stream; returns the bytes decoded. Padding after the stream's end is ignored.
fn zlib(data: &[u8], out: &mut [u8]) -> Result<usize, String> {
    use flate2::{Decompress, FlushDecompress, Status};
    let mut z = Decompress::new(true);
    let status = z
        .decompress(data, out, FlushDecompress::Finish)
        .map_err(|e| e.to_string())?;
    let n = z.total_out() as usize;
    match status {
        Status::StreamEnd => Ok(n),
        // Output full: more is coming than fits (the caller reports it as too long).
        _ if n == out.len() => Ok(n),
        _ => Err("the zlib stream is truncated".into()),
    }
}

/// One zstd frame; returns the bytes decoded. Padding after the frame is ignored.
fn zstd(data: &[u8], out: &mut [u8]) -> Result<usize, String> {
    use zstd::zstd_safe::{self, DCtx};
    let frame = zstd_safe::find_frame_compressed_size(data)
        .map_err(|c| zstd_safe::get_error_name(c).to_string())?;
    // Single-shot: the output is the window, so a frame cannot make the decoder
    // allocate more than the room given.
    match DCtx::create().decompress(out, &data[..frame]) {
        Ok(n) => Ok(n),
        // Everything decoded so far fit; the frame holds more than the room given.
        Err(c) if zstd_safe::get_error_name(c) == "Destination buffer is too small" => {
            Ok(out.len())
        }
        Err(c) => Err(zstd_safe::get_error_name(c).to_string()),
    }
}

fn le32(data: &[u8], at: usize) -> Option<usize> {
    let b = data.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
}

/// btrfs's LZO layout (see the module table); returns the bytes decoded.
fn lzo(data: &[u8], out: &mut [u8], sector: usize) -> Result<usize, String> {
    const HEADER: usize = 4;
    let total = le32(data, 0).ok_or("the lzo header is truncated")?;
    if total > data.len() || total < HEADER {
        return Err(format!(
            "the lzo header says {total} bytes, but the data holds {}",
            data.len()
        ));
    }
    let mut at = HEADER;
    let mut n = 0;
    while at < total {
        // A segment header never straddles a sector: the rest of the sector is padding.
        let left_in_sector = sector - at % sector;
        if left_in_sector < HEADER {
            if total - at <= left_in_sector {
                break;
            }
            at += left_in_sector;
        }
        let seg = le32(data, at)
            .filter(|_| total - at >= HEADER)
            .ok_or_else(|| format!("segment header at byte {at} is truncated"))?;
        at += HEADER;
        if seg > total - at {
            return Err(format!(
                "segment at byte {} says {seg} bytes, past the end ({total})",
                at - HEADER
            ));
        }
        if n == out.len() {
            // Room is full yet a segment remains: more than the unencoded length.
            return Ok(n);
        }
        // Each segment decodes to at most one sector.
        let room = (out.len() - n).min(sector);
        match lzokay::decompress::decompress(&data[at..at + seg], &mut out[n..n + room]) {
            Ok(k) => n += k,
            // The room left ends before a sector does: the segment holds more than the
            // unencoded length.
            Err(lzokay::Error::OutputOverrun) if room < sector => return Ok(out.len()),
            Err(e) => return Err(format!("segment at byte {}: {e}", at - HEADER)),
        }
        at += seg;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_values_map_to_codecs() {
        assert_eq!(Compression::from_wire(0), Ok(Compression::None));
        assert_eq!(Compression::from_wire(1), Ok(Compression::Zlib));
        assert_eq!(Compression::from_wire(2), Ok(Compression::Zstd));
        assert_eq!(
            Compression::from_wire(3),
            Ok(Compression::Lzo { sector: 4096 })
        );
        assert_eq!(
            Compression::from_wire(7),
            Ok(Compression::Lzo { sector: 65536 })
        );
        assert_eq!(
            Compression::from_wire(8),
            Err(DecodeError::UnknownCompression(8))
        );
    }

    #[test]
    fn oversized_extent_is_refused_before_allocating() {
        let e = decode(Compression::Zstd, &[], u64::MAX).unwrap_err();
        assert!(matches!(e, DecodeError::TooLarge { .. }), "{e}");
    }
}
