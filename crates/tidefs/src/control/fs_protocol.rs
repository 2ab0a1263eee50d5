//! File-system messages on the control socket: what `tidefs snapshot` and `tidefs subvol
//! list` ask a mount that holds the pool. The listings are built here for both paths (direct
//! and through the socket), so their JSON is the same whichever served it.
//!
//! ```text
//! → {"op":"subvol_hello"}                                            ← {"reply":"hello","pid":1234}
//! → {"op":"subvol_list"}                                             ← {"reply":"subvolumes","subvolumes":[…]}
//! → {"op":"subvol_snapshot_create","subvolume":"home","snapshot":"s"}        ← {"reply":"done"}
//! → {"op":"subvol_snapshot_list","subvolume":"home"}  (subvolume optional)   ← {"reply":"snapshots","snapshots":[…]}
//! → {"op":"subvol_snapshot_delete","subvolume":"home","snapshot":"s"}        ← {"reply":"done"}
//! → {"op":"subvol_snapshot_rename","subvolume":"home","from":"a","to":"b"}   ← {"reply":"done"}
//! any failure                                                        ← {"reply":"error","message":"…"}
//! ```
//!
//! The ops are named apart from the volume messages (`snapshot_list`, …) so that a server
//! of the other kind answers "unknown op" instead of reading a request of the wrong layer.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tidefs_fs::{Fs, FsError, SubvolInfo};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op")]
pub enum FsRequest {
    #[serde(rename = "subvol_hello")]
    Hello,
    #[serde(rename = "subvol_list")]
    SubvolList,
    #[serde(rename = "subvol_snapshot_create")]
    SnapshotCreate { subvolume: String, snapshot: String },
    #[serde(rename = "subvol_snapshot_list")]
    SnapshotList { subvolume: Option<String> },
    #[serde(rename = "subvol_snapshot_delete")]
    SnapshotDelete { subvolume: String, snapshot: String },
    #[serde(rename = "subvol_snapshot_rename")]
    SnapshotRename {
        subvolume: String,
        from: String,
        to: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum FsReply {
    Hello { pid: u32 },
    Subvolumes { subvolumes: Vec<SubvolRow> },
    Snapshots { snapshots: Vec<SnapshotRow> },
    Done,
    Error { message: String },
}

/// One line of `tidefs snapshot list` (its `--json` objects are these, field for field).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRow {
    pub subvolume: String,
    pub name: String,
    pub uuid: String,
    pub received_uuid: Option<String>,
    pub tid: u64,
    pub created: i64,
    pub created_nsec: u32,
    pub metadata: BTreeMap<String, String>,
}

/// One line of `tidefs subvol list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubvolRow {
    pub name: String,
    pub uuid: String,
    pub tid: u64,
    pub created: i64,
    pub snapshots: usize,
}

impl SnapshotRow {
    fn new(subvolume: &str, s: &SubvolInfo) -> SnapshotRow {
        SnapshotRow {
            subvolume: subvolume.to_string(),
            name: s.name.clone(),
            uuid: s.uuid.to_string(),
            received_uuid: s.received_uuid.map(|u| u.to_string()),
            tid: s.tid.0,
            created: s.created.sec,
            created_nsec: s.created.nsec,
            metadata: s
                .metadata
                .iter()
                .map(|(k, v)| {
                    (
                        String::from_utf8_lossy(k).into_owned(),
                        String::from_utf8_lossy(v).into_owned(),
                    )
                })
                .collect(),
        }
    }
}

/// The snapshots of `subvolume`, or of every subvolume, in catalog order.
pub fn snapshot_rows(fs: &Fs, subvolume: Option<&str>) -> Result<Vec<SnapshotRow>, FsError> {
    let subvols: Vec<String> = match subvolume {
        Some(n) => vec![n.to_string()],
        None => fs.list_subvolumes()?.into_iter().map(|s| s.name).collect(),
    };
    let mut rows = Vec::new();
    for sv in &subvols {
        for s in fs.list_snapshots(sv)? {
            rows.push(SnapshotRow::new(sv, &s));
        }
    }
    Ok(rows)
}

pub fn subvol_rows(fs: &Fs) -> Result<Vec<SubvolRow>, FsError> {
    fs.list_subvolumes()?
        .into_iter()
        .map(|s| {
            Ok(SubvolRow {
                snapshots: fs.list_snapshots(&s.name).map(|v| v.len()).unwrap_or(0),
                name: s.name,
                uuid: s.uuid.to_string(),
                tid: s.tid.0,
                created: s.created.sec,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidefs_volume::control::{decode_line, encode_line};

    #[test]
    fn messages_have_the_documented_shape() {
        let line = encode_line(&FsRequest::SnapshotCreate {
            subvolume: "home".into(),
            snapshot: "s".into(),
        });
        assert_eq!(
            line,
            b"{\"op\":\"subvol_snapshot_create\",\"subvolume\":\"home\",\"snapshot\":\"s\"}\n"
        );
        let all: FsRequest = decode_line(b"{\"op\":\"subvol_snapshot_list\"}").unwrap();
        assert_eq!(all, FsRequest::SnapshotList { subvolume: None });
        // A volume request is not an fs request, so a mount answers it with an error.
        assert!(decode_line::<FsRequest>(b"{\"op\":\"snapshot_list\",\"volume\":\"v\"}").is_err());
    }
}
