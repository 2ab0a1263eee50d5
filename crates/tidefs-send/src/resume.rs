//! Resume tokens: what a cut-off receive has applied, so the sender can send the rest.
//!
//! A token is one printable word:
//!
//! ```text
//! 1-<uuid hex32>-<ctransid>-<parent uuid hex32 | 0>-<parent ctransid>-<version>-<applied>-<snapshot name hex>
//! ```
//!
//! `uuid`/`ctransid` are the stream's (the SUBVOL or SNAPSHOT command), the parent those of
//! an incremental stream's parent, `applied` the number of commands applied (the first
//! one, SUBVOL or SNAPSHOT, included). The sender finds the snapshots by uuid, regenerates
//! the same deterministic stream and leaves out commands 2..=applied.

use std::fmt;

use crate::error::SendError;

const TOKEN_VERSION: &str = "1";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeToken {
    pub uuid: [u8; 16],
    pub ctransid: u64,
    pub parent: Option<([u8; 16], u64)>,
    pub version: u32,
    pub applied: u64,
    pub snapshot_name: String,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

impl fmt::Display for ResumeToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (pu, pc) = match &self.parent {
            Some((u, c)) => (hex(u), *c),
            None => ("0".to_string(), 0),
        };
        write!(
            f,
            "{TOKEN_VERSION}-{}-{}-{pu}-{pc}-{}-{}-{}",
            hex(&self.uuid),
            self.ctransid,
            self.version,
            self.applied,
            hex(self.snapshot_name.as_bytes())
        )
    }
}

impl std::str::FromStr for ResumeToken {
    type Err = SendError;

    fn from_str(s: &str) -> Result<Self, SendError> {
        let bad = || SendError::Resume(format!("{s:?} is not a tidefs resume token"));
        let parts: Vec<&str> = s.trim().split('-').collect();
        if parts.len() != 8 || parts[0] != TOKEN_VERSION {
            return Err(bad());
        }
        let uuid: [u8; 16] = unhex(parts[1])
            .and_then(|v| v.try_into().ok())
            .ok_or_else(bad)?;
        let num = |p: &str| p.parse::<u64>().map_err(|_| bad());
        let parent = if parts[3] == "0" {
            None
        } else {
            let u: [u8; 16] = unhex(parts[3])
                .and_then(|v| v.try_into().ok())
                .ok_or_else(bad)?;
            Some((u, num(parts[4])?))
        };
        Ok(ResumeToken {
            uuid,
            ctransid: num(parts[2])?,
            parent,
            version: u32::try_from(num(parts[5])?).map_err(|_| bad())?,
            applied: num(parts[6])?,
            snapshot_name: String::from_utf8(unhex(parts[7]).ok_or_else(bad)?)
                .map_err(|_| bad())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        let t = ResumeToken {
            uuid: [7; 16],
            ctransid: 42,
            parent: Some(([9; 16], 40)),
            version: 2,
            applied: 1234,
            snapshot_name: "s-2".into(),
        };
        assert_eq!(t.to_string().parse::<ResumeToken>().unwrap(), t);
        let full = ResumeToken { parent: None, ..t };
        assert_eq!(full.to_string().parse::<ResumeToken>().unwrap(), full);
        assert!("1-zz".parse::<ResumeToken>().is_err());
        assert!("".parse::<ResumeToken>().is_err());
    }
}
