//! Validation of path and name attributes.
//!
//! btrfs-progs does not sanitise paths: a stream can name `../../etc/passwd` and the
//! receiver follows it. tidefs refuses anything that could reach outside the subvolume
//! being received, on reading (input is untrusted) and on writing (so we never produce
//! a stream we would refuse).

use thiserror::Error;

/// Why a path or name attribute was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PathProblem {
    /// Starts with `/`: it would escape the receive directory.
    #[error("path is absolute")]
    Absolute,
    /// Has a `..` component: it could climb out of the subvolume.
    #[error("path has a '..' component")]
    ParentComponent,
    /// Contains a NUL byte: C receivers would cut the name there and act on another file.
    #[error("contains a NUL byte")]
    NulByte,
}

/// Checks a path inside the subvolume (PATH, PATH_TO, LINK's PATH_LINK, CLONE_PATH).
/// The empty path is the subvolume root and is valid.
pub fn check_subvolume_path(path: &[u8]) -> Result<(), PathProblem> {
    check_no_nul(path)?;
    if path.first() == Some(&b'/') {
        return Err(PathProblem::Absolute);
    }
    if path.split(|&byte| byte == b'/').any(|part| part == b"..") {
        return Err(PathProblem::ParentComponent);
    }
    Ok(())
}

/// Checks a byte string that is handed to the kernel as a C string but is not a path in
/// the subvolume (a symlink target, which may be absolute or use `..`; an xattr name).
pub fn check_no_nul(bytes: &[u8]) -> Result<(), PathProblem> {
    if bytes.contains(&0) {
        return Err(PathProblem::NulByte);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_relative_paths_and_the_root() {
        for path in [
            &b""[..],
            b"a",
            b"a/b",
            b"o257-9-0",
            b"..a/b..",
            b"./x",
            b"a/./b",
            b"\xff\n \\",
        ] {
            assert_eq!(check_subvolume_path(path), Ok(()), "{path:?}");
        }
    }

    #[test]
    fn refuses_escapes_and_nul() {
        assert_eq!(check_subvolume_path(b"/etc"), Err(PathProblem::Absolute));
        assert_eq!(
            check_subvolume_path(b".."),
            Err(PathProblem::ParentComponent)
        );
        assert_eq!(
            check_subvolume_path(b"a/../../b"),
            Err(PathProblem::ParentComponent)
        );
        assert_eq!(
            check_subvolume_path(b"a/.."),
            Err(PathProblem::ParentComponent)
        );
        assert_eq!(check_subvolume_path(b"a\0b"), Err(PathProblem::NulByte));
        assert_eq!(check_no_nul(b"/abs/../ok-for-symlink"), Ok(()));
        assert_eq!(check_no_nul(b"user.\0x"), Err(PathProblem::NulByte));
    }
}
