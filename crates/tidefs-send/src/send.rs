//! `send`: a snapshot (and optionally its parent and clone sources) → a btrfs send stream.
//!
//! ```text
//! SUBVOL (full) or SNAPSHOT (incremental: names the parent by uuid and ctransid)
//! per changed inode, ascending: names, xattrs, data, chown, chmod, utimes
//! directory utimes
//! END
//! ```
//!
//! The stream is deterministic: the same snapshots give the same bytes, which is what
//! makes resuming by command count possible.

use std::io::Write;

use tidefs_fs::{Fs, Subvol, SubvolInfo};
use tidefs_stream::{
    Command, StreamVersion, Uuid, WRITE_CHUNK_BYTES_DEFAULT_V2, WRITE_CHUNK_BYTES_MAX_V1,
};

use crate::changes::{walk_full, walk_incremental};
use crate::clone_src::{CloneSource, CloneSources};
use crate::error::{SendError, SendResult};
use crate::ordering::{Engine, EngineStats};
use crate::sink::{CommandSink, StreamProgress, StreamSink};
use crate::snap::SnapView;

/// The uuid a stream uses for a snapshot: the one it was received from, if any (as the
/// kernel does), else its own.
pub fn stream_uuid(info: &SubvolInfo) -> Uuid {
    *info.received_uuid.unwrap_or(info.uuid).as_bytes()
}

/// What to send.
pub struct SendRequest<'a> {
    pub fs: &'a Fs,
    /// The snapshot to send.
    pub snapshot: Subvol,
    /// The snapshot the receiver already has (incremental send).
    pub parent: Option<Subvol>,
    /// Further snapshots the receiver has, whose data may be cloned.
    pub clone_sources: Vec<Subvol>,
    pub version: StreamVersion,
}

/// What a send did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendSummary {
    pub progress: StreamProgress,
    pub engine: EngineStats,
}

fn require_snapshot(s: &Subvol, role: &str) -> SendResult<()> {
    if !s.info().is_snapshot() {
        return Err(SendError::Invalid(format!(
            "{role} {} is not a snapshot: send needs read-only snapshots",
            s.info().name
        )));
    }
    Ok(())
}

/// Generates every command of the stream into `sink`, header command to END.
pub fn generate(req: &SendRequest<'_>, sink: &mut dyn CommandSink) -> SendResult<EngineStats> {
    require_snapshot(&req.snapshot, "snapshot")?;
    let snap = SnapView::open(req.fs, req.snapshot.info())?;
    let info = req.snapshot.info();
    let parent = match &req.parent {
        Some(p) => {
            require_snapshot(p, "parent")?;
            Some(SnapView::open(req.fs, p.info())?)
        }
        None => None,
    };
    let mut clones = CloneSources::default();
    for c in &req.clone_sources {
        require_snapshot(c, "clone source")?;
        clones.sources.push(CloneSource {
            view: SnapView::open(req.fs, c.info())?,
            uuid: stream_uuid(c.info()),
            ctransid: c.info().tid.0,
        });
    }
    let first = match &parent {
        None => Command::Subvol {
            path: info.name.as_bytes().to_vec(),
            uuid: stream_uuid(info),
            ctransid: info.tid.0,
        },
        Some(p) => Command::Snapshot {
            path: info.name.as_bytes().to_vec(),
            uuid: stream_uuid(info),
            ctransid: info.tid.0,
            clone_uuid: stream_uuid(&p.info),
            clone_ctransid: p.info.tid.0,
        },
    };
    sink.emit(first)?;
    let mut engine = Engine::new(parent.as_ref(), &snap, sink, &clones);
    match &parent {
        Some(p) => walk_incremental(p, &snap, &mut |ch| engine.process(ch))?,
        None => walk_full(&snap, &mut |ch| engine.process(ch))?,
    }
    engine.finish()?;
    let stats = engine.stats;
    sink.emit(Command::End)?;
    Ok(stats)
}

/// Writes the stream to `out`. With `resume_after = Some(n)`, commands 2..=n (already
/// applied by an interrupted receive) are left out and a resume marker takes their place.
pub fn send_stream<W: Write>(
    req: &SendRequest<'_>,
    out: W,
    resume_after: Option<u64>,
    on_progress: Option<&mut dyn FnMut(StreamProgress)>,
) -> SendResult<(SendSummary, W)> {
    let chunk = match req.version {
        StreamVersion::V1 => WRITE_CHUNK_BYTES_MAX_V1,
        StreamVersion::V2 => WRITE_CHUNK_BYTES_DEFAULT_V2,
    };
    let mut sink = StreamSink::new(out, req.version, chunk)?;
    if let Some(n) = resume_after {
        sink.resume_after(n);
    }
    if let Some(f) = on_progress {
        sink.on_progress(f);
    }
    let engine = generate(req, &mut sink)?;
    let progress = sink.progress();
    let out = sink.into_inner()?;
    Ok((SendSummary { progress, engine }, out))
}
