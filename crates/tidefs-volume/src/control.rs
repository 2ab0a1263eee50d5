//! The control protocol: how the CLI reaches a pool that a running server holds. The
//! server listens on a local socket (`control.sock` in the pool directory); each request
//! is one JSON line, answered by one JSON line. This file has the messages and the
//! dispatcher, no sockets: the binary owns those.
//!
//! ```text
//! → {"op":"hello"}                                   ← {"reply":"hello","pid":1234}
//! → {"op":"list"}                                    ← {"reply":"volumes","volumes":[…]}
//! → {"op":"snapshot","volume":"v","snapshot":"s"}    ← {"reply":"volumes","volumes":[…]}
//! → {"op":"snapshot_list","volume":"v"}              ← {"reply":"volumes","volumes":[…]}
//! → {"op":"snapshot_delete","volume":"v","snapshot":"s"}          ← {"reply":"done"}
//! → {"op":"snapshot_rename","volume":"v","from":"a","to":"b"}     ← {"reply":"done"}
//! any failure                                        ← {"reply":"error","message":"…"}
//! ```

use serde::{Deserialize, Serialize};

use crate::catalog::Timestamp;
use crate::store::{VolumeInfo, VolumeStore};

/// Longest request or reply line accepted.
pub const CONTROL_LINE_BYTES_MAX: usize = 1 << 20;

/// File name of the control socket inside a pool directory.
pub const CONTROL_SOCKET_NAME: &str = "control.sock";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ControlRequest {
    Hello,
    List,
    Snapshot {
        volume: String,
        snapshot: String,
    },
    SnapshotList {
        volume: String,
    },
    SnapshotDelete {
        volume: String,
        snapshot: String,
    },
    SnapshotRename {
        volume: String,
        from: String,
        to: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum ControlReply {
    Hello { pid: u32 },
    Volumes { volumes: Vec<VolumeInfo> },
    Done,
    Error { message: String },
}

/// Serves one request. `pid` is the server's, `now` the time a snapshot is stamped with.
pub fn handle(
    store: &VolumeStore,
    request: ControlRequest,
    now: Timestamp,
    pid: u32,
) -> ControlReply {
    let result = match request {
        ControlRequest::Hello => return ControlReply::Hello { pid },
        ControlRequest::List => store
            .list()
            .map(|volumes| ControlReply::Volumes { volumes }),
        ControlRequest::Snapshot { volume, snapshot } => store
            .snapshot(&volume, &snapshot, now)
            .map(|info| ControlReply::Volumes {
                volumes: vec![info],
            }),
        ControlRequest::SnapshotList { volume } => store
            .snapshots(&volume)
            .map(|volumes| ControlReply::Volumes { volumes }),
        ControlRequest::SnapshotDelete { volume, snapshot } => store
            .delete_snapshot(&volume, &snapshot)
            .map(|()| ControlReply::Done),
        ControlRequest::SnapshotRename { volume, from, to } => store
            .rename_snapshot(&volume, &from, &to)
            .map(|()| ControlReply::Done),
    };
    result.unwrap_or_else(|e| ControlReply::Error {
        message: e.to_string(),
    })
}

/// One message as a line.
pub fn encode_line<T: Serialize>(message: &T) -> Vec<u8> {
    let mut line = serde_json::to_vec(message).expect("control messages serialize");
    line.push(b'\n');
    line
}

/// Parses one line (without its newline).
pub fn decode_line<T: for<'de> Deserialize<'de>>(line: &[u8]) -> Result<T, String> {
    if line.len() > CONTROL_LINE_BYTES_MAX {
        return Err(format!(
            "control message of {} bytes is over the {CONTROL_LINE_BYTES_MAX}-byte limit",
            line.len()
        ));
    }
    serde_json::from_slice(line).map_err(|e| format!("malformed control message: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_have_the_documented_shape() {
        let line = encode_line(&ControlRequest::Snapshot {
            volume: "v".into(),
            snapshot: "s".into(),
        });
        assert_eq!(
            line,
            b"{\"op\":\"snapshot\",\"volume\":\"v\",\"snapshot\":\"s\"}\n"
        );
        let reply: ControlReply = decode_line(b"{\"reply\":\"hello\",\"pid\":7}").unwrap();
        assert_eq!(reply, ControlReply::Hello { pid: 7 });
        assert!(decode_line::<ControlRequest>(b"{\"op\":\"format_disk\"}").is_err());
    }
}
