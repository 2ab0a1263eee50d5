//! `lseek` with SEEK_DATA / SEEK_HOLE over a file's stored ranges. Preallocated ranges read
//! as zeros and count as holes, as on ext4 (unwritten extents).

use tidefs_fs::{ExtentKind, FileExtent};

/// Which boundary to find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seek {
    Data,
    Hole,
}

/// The offset `lseek(fd, offset, whence)` returns for a file of `size` bytes whose stored
/// ranges are `extents` (sorted, non-overlapping); `None` means ENXIO.
pub fn seek(extents: &[FileExtent], size: u64, offset: u64, whence: Seek) -> Option<u64> {
    if offset >= size {
        return None;
    }
    let data = extents
        .iter()
        .filter(|e| e.kind != ExtentKind::Prealloc && e.len > 0)
        .map(|e| (e.offset, (e.offset + e.len).min(size)));
    match whence {
        Seek::Data => data
            .filter(|&(_, end)| end > offset)
            .map(|(start, _)| start.max(offset))
            .next(),
        Seek::Hole => {
            let mut at = offset;
            for (start, end) in data {
                if end <= at {
                    continue;
                }
                if start > at {
                    break;
                }
                at = end;
            }
            // The end of the file counts as a hole.
            Some(at.min(size))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(offset: u64, len: u64, kind: ExtentKind) -> FileExtent {
        FileExtent { offset, len, kind }
    }

    #[test]
    fn data_and_holes_of_a_sparse_file() {
        // data [0,4096), hole [4096,8192), prealloc [8192,12288), data [12288,16384), size 20000
        let d = || ExtentKind::Inline;
        let e = vec![
            ext(0, 4096, d()),
            ext(8192, 4096, ExtentKind::Prealloc),
            ext(12288, 4096, d()),
        ];
        assert_eq!(seek(&e, 20000, 0, Seek::Data), Some(0));
        assert_eq!(seek(&e, 20000, 0, Seek::Hole), Some(4096));
        assert_eq!(seek(&e, 20000, 5000, Seek::Data), Some(12288));
        assert_eq!(seek(&e, 20000, 5000, Seek::Hole), Some(5000));
        assert_eq!(seek(&e, 20000, 12300, Seek::Hole), Some(16384));
        assert_eq!(seek(&e, 20000, 16384, Seek::Data), None);
        assert_eq!(seek(&e, 20000, 19999, Seek::Hole), Some(19999));
        assert_eq!(seek(&e, 20000, 20000, Seek::Hole), None);
        assert_eq!(seek(&e, 20000, 20000, Seek::Data), None);
    }

    #[test]
    fn data_past_the_end_of_file_is_cut_at_the_size() {
        let e = vec![ext(0, 4096, ExtentKind::Inline)];
        assert_eq!(seek(&e, 100, 0, Seek::Hole), Some(100));
        assert_eq!(seek(&[], 100, 0, Seek::Hole), Some(0));
        assert_eq!(seek(&[], 100, 0, Seek::Data), None);
    }
}
