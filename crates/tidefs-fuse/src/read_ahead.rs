//! The mount's readahead window.
//!
//! A FUSE mount starts with the kernel's default readahead (128 KiB), whatever INIT asks
//! for: the kernel keeps the smaller of the two. Sequential reads then reach the server as
//! 128 KiB requests, one or two at a time, and a cold 4 GiB read ran at 0.74–0.80 GB/s
//! here; with a 1–4 MiB window the kernel sends 1 MiB requests, several in flight, and the
//! same read ran at 0.80–1.0 GB/s. The window can only be set through sysfs
//! (`/sys/class/bdi/MAJOR:MINOR/read_ahead_kb`), which only root may write.

use std::io;
use std::path::{Path, PathBuf};

/// The default window (KiB).
pub const READ_AHEAD_DEFAULT_KIB: u32 = 4096;

/// Why the window was left as the kernel set it (not fatal to the mount).
#[derive(Debug, thiserror::Error)]
pub enum ReadAheadError {
    #[error("resolving {}: {source}", path.display())]
    Resolve { path: PathBuf, source: io::Error },
    #[error("reading /proc/self/mountinfo: {0}")]
    MountInfo(io::Error),
    #[error("no FUSE mount at {} in /proc/self/mountinfo", .0.display())]
    NotMounted(PathBuf),
    #[error("writing {knob}: {source}")]
    Knob { knob: String, source: io::Error },
}

/// Sets the readahead window of the FUSE mount at `mountpoint` (canonical path) to `kib`.
pub(crate) fn set(mountpoint: &Path, kib: u32) -> Result<(), ReadAheadError> {
    set_knob(mountpoint, "read_ahead_kb", u64::from(kib))
}

/// Writes `value` to the mount's backing-device setting `name` (under /sys/class/bdi).
pub(crate) fn set_knob(mountpoint: &Path, name: &str, value: u64) -> Result<(), ReadAheadError> {
    let mountinfo =
        std::fs::read_to_string("/proc/self/mountinfo").map_err(ReadAheadError::MountInfo)?;
    let device = fuse_mount_device(&mountinfo, mountpoint)
        .ok_or_else(|| ReadAheadError::NotMounted(mountpoint.to_path_buf()))?;
    let knob = format!("/sys/class/bdi/{device}/{name}");
    std::fs::write(&knob, format!("{value}\n"))
        .map_err(|source| ReadAheadError::Knob { knob, source })
}

/// The `MAJOR:MINOR` of the last FUSE mount on `mountpoint` (the one on top) in a
/// `/proc/self/mountinfo` text.
fn fuse_mount_device(mountinfo: &str, mountpoint: &Path) -> Option<String> {
    let wanted = mountpoint.as_os_str().as_encoded_bytes();
    mountinfo
        .lines()
        .filter_map(|line| {
            // ID PARENT MAJOR:MINOR ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE ...
            let fields: Vec<&str> = line.split(' ').collect();
            let fstype = fields
                .iter()
                .position(|&f| f == "-")
                .and_then(|i| fields.get(i + 1))?;
            let is_fuse = *fstype == "fuse" || fstype.starts_with("fuse.");
            (is_fuse && unescape(fields.get(4)?) == wanted).then(|| fields[2].to_string())
        })
        .next_back()
}

/// Undoes mountinfo's octal escapes (`\040` for a space, and so on).
fn unescape(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                let value = d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0'));
                out.push(value as u8);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
36 22 0:39 / /work/m rw,nosuid,nodev,relatime shared:20 - fuse.tidefs tidefs rw,user_id=0
37 22 0:40 / /work/my\\040mount rw,relatime - fuse.tidefs tidefs rw
38 36 0:41 / /work/m rw,relatime shared:21 - fuse.tidefs tidefs rw
39 22 0:42 / /work/plain rw,relatime - fuse sshfs rw
40 22 0:43 / /work/t rw,relatime - tmpfs tmpfs rw
";

    #[test]
    fn finds_the_top_fuse_mount_on_a_path() {
        let dev = |p: &str| fuse_mount_device(MOUNTINFO, Path::new(p));
        assert_eq!(dev("/work/m").as_deref(), Some("0:41"));
        assert_eq!(dev("/work/my mount").as_deref(), Some("0:40"));
        assert_eq!(dev("/work/plain").as_deref(), Some("0:42"));
        // Not FUSE, or not mounted.
        assert_eq!(dev("/work/t"), None);
        assert_eq!(dev("/"), None);
        assert_eq!(dev("/work/my\\040mount"), None);
        assert_eq!(dev("/work/none"), None);
    }

    #[test]
    fn unescapes_octal_and_keeps_other_backslashes() {
        assert_eq!(unescape("a\\040b\\011c\\134d"), b"a b\tc\\d");
        assert_eq!(unescape("a\\9b\\"), b"a\\9b\\");
        assert_eq!(unescape("\\04"), b"\\04");
    }
}
