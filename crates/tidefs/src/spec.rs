//! Parsing the names users type: `NAME`, `NAME@SNAP`, `NAME[@SNAP]:/path`.

use anyhow::{bail, Result};

/// A subvolume, or one of its snapshots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubvolSpec {
    pub name: String,
    pub snapshot: Option<String>,
}

impl SubvolSpec {
    pub fn parse(s: &str) -> Result<SubvolSpec> {
        let (name, snapshot) = match s.split_once('@') {
            Some((n, snap)) => {
                if snap.is_empty() {
                    bail!("{s:?}: nothing after '@' (write NAME@SNAPSHOT)");
                }
                (n, Some(snap.to_string()))
            }
            None => (s, None),
        };
        if name.is_empty() {
            bail!("{s:?}: missing subvolume name");
        }
        Ok(SubvolSpec {
            name: name.to_string(),
            snapshot,
        })
    }

    /// Like [`SubvolSpec::parse`] but the snapshot part is required.
    pub fn parse_snapshot(s: &str) -> Result<(String, String)> {
        let spec = SubvolSpec::parse(s)?;
        match spec.snapshot {
            Some(snap) => Ok((spec.name, snap)),
            None => bail!("{s:?}: expected NAME@SNAPSHOT"),
        }
    }
}

impl std::fmt::Display for SubvolSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.snapshot {
            Some(s) => write!(f, "{}@{}", self.name, s),
            None => write!(f, "{}", self.name),
        }
    }
}

/// `NAME[@SNAP]:/path` — a path inside a subvolume or snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathSpec {
    pub subvol: SubvolSpec,
    pub path: Vec<u8>,
}

impl PathSpec {
    pub fn parse(s: &str) -> Result<PathSpec> {
        let Some((sv, path)) = s.split_once(':') else {
            bail!("{s:?}: expected NAME[@SNAP]:/path");
        };
        if !path.starts_with('/') {
            bail!("{s:?}: the path after ':' must start with '/'");
        }
        Ok(PathSpec {
            subvol: SubvolSpec::parse(sv)?,
            path: path.as_bytes().to_vec(),
        })
    }

    /// The parent directory and the last component; fails for "/".
    pub fn split_last(&self) -> Result<(Vec<u8>, Vec<u8>)> {
        let trimmed: &[u8] = {
            let mut p = self.path.as_slice();
            while p.len() > 1 && p.ends_with(b"/") {
                p = &p[..p.len() - 1];
            }
            p
        };
        let Some(cut) = trimmed.iter().rposition(|&b| b == b'/') else {
            bail!(
                "{}: not an absolute path",
                String::from_utf8_lossy(&self.path)
            );
        };
        let name = trimmed[cut + 1..].to_vec();
        if name.is_empty() {
            bail!(
                "{}: the root directory has no name",
                String::from_utf8_lossy(&self.path)
            );
        }
        let parent = if cut == 0 {
            b"/".to_vec()
        } else {
            trimmed[..cut].to_vec()
        };
        Ok((parent, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_bad_ones_are_refused() {
        assert_eq!(SubvolSpec::parse("home").unwrap().snapshot, None);
        assert_eq!(
            SubvolSpec::parse("home@mon").unwrap().snapshot.as_deref(),
            Some("mon")
        );
        assert!(SubvolSpec::parse("home@").is_err());
        assert!(SubvolSpec::parse("@x").is_err());
        let p = PathSpec::parse("home@mon:/a/b/").unwrap();
        assert_eq!(p.split_last().unwrap(), (b"/a".to_vec(), b"b".to_vec()));
        assert_eq!(
            PathSpec::parse("h:/x").unwrap().split_last().unwrap(),
            (b"/".to_vec(), b"x".to_vec())
        );
        assert!(PathSpec::parse("h:/").unwrap().split_last().is_err());
        assert!(PathSpec::parse("h:rel").is_err());
        assert!(PathSpec::parse("h").is_err());
    }
}
