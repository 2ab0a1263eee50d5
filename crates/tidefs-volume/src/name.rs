//! Names of volumes and snapshots, and the `NAME[@SNAP]` form the CLI and NBD export
//! names use.

use std::fmt;

use crate::error::{Result, VolumeError};
use crate::limits::NAME_BYTES_MAX;

/// Checks a volume or snapshot name: 1–255 bytes, no '/', '@' or NUL, not "." or "..".
pub fn check_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("a name needs at least one byte")
    } else if name.len() > NAME_BYTES_MAX {
        Some("a name has at most 255 bytes")
    } else if name.contains(['/', '@', '\0']) {
        Some("a name may not contain '/', '@' or NUL")
    } else if name == "." || name == ".." {
        Some("\".\" and \"..\" are not names")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(VolumeError::InvalidName {
            name: name.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

/// A volume or one of its snapshots: `NAME` or `NAME@SNAP`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VolumeRef {
    pub volume: String,
    pub snapshot: Option<String>,
}

impl VolumeRef {
    /// Parses `NAME` or `NAME@SNAP`, checking both names.
    pub fn parse(text: &str) -> Result<VolumeRef> {
        let (volume, snapshot) = match text.split_once('@') {
            Some((v, s)) => (v, Some(s)),
            None => (text, None),
        };
        check_name(volume)?;
        if let Some(s) = snapshot {
            check_name(s)?;
        }
        Ok(VolumeRef {
            volume: volume.to_string(),
            snapshot: snapshot.map(str::to_string),
        })
    }

    pub fn volume(name: &str) -> VolumeRef {
        VolumeRef {
            volume: name.to_string(),
            snapshot: None,
        }
    }

    pub fn snapshot(volume: &str, snapshot: &str) -> VolumeRef {
        VolumeRef {
            volume: volume.to_string(),
            snapshot: Some(snapshot.to_string()),
        }
    }
}

impl fmt::Display for VolumeRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.snapshot {
            Some(s) => write!(f, "{}@{s}", self.volume),
            None => f.write_str(&self.volume),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rules() {
        assert!(check_name("vm-disk.0").is_ok());
        assert!(check_name(&"x".repeat(255)).is_ok());
        for bad in ["", "a/b", "a@b", "a\0b", ".", ".."] {
            assert!(check_name(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_name(&"x".repeat(256)).is_err());
    }

    #[test]
    fn refs_parse_and_print() {
        let r = VolumeRef::parse("disk@monday").unwrap();
        assert_eq!(r, VolumeRef::snapshot("disk", "monday"));
        assert_eq!(r.to_string(), "disk@monday");
        assert_eq!(VolumeRef::parse("disk").unwrap(), VolumeRef::volume("disk"));
        assert!(VolumeRef::parse("disk@").is_err());
        assert!(VolumeRef::parse("@s").is_err());
        assert!(VolumeRef::parse("a@b@c").is_err());
    }
}
