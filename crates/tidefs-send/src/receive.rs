//! `receive`: applies one send stream into subvolume NAME of a pool and makes the
//! snapshot `NAME@<name in the stream>` with `received_uuid` set.
//!
//! * A full stream creates NAME (it must not exist). An incremental stream needs NAME and,
//!   among NAME's snapshots, its parent: found by uuid (the snapshot's own, or the one it
//!   was received from) and transaction id. NAME is first brought to the parent's content
//!   (if it holds a later snapshot's), then the stream is applied to it.
//! * Atomic: everything happens in the pool's open transaction and the caller commits only
//!   on success. On failure the receive also undoes itself in this process (a created NAME
//!   is deleted; an existing one is brought back to what it held), so the pool reads as
//!   before whether or not the caller commits.
//! * Resumable (`ReceiveOptions::resumable`): progress is committed every
//!   `checkpoint_commands` commands together with a resume token in NAME's catalog
//!   metadata (`tidefs.receive.partial`); a cut-off stream leaves NAME partial but marked,
//!   never as a snapshot. The rest arrives as a resumed stream (see `sink`).

use std::collections::BTreeMap;
use std::io::Read;

use tidefs_fs::{check_catalog_name, Caller, Fs, FsError, SnapshotOptions, Subvol, SubvolInfo};
use tidefs_stream::{Command, SendStreamReader, StreamErrorKind, Uuid};

use crate::apply::Applier;
use crate::changes::walk_incremental;
use crate::clone_src::CloneSources;
use crate::error::{ReceiveError, SendResult};
use crate::ordering::Engine;
use crate::resume::ResumeToken;
use crate::sink::{CommandSink, RESUME_MARKER_XATTR};
use crate::snap::SnapView;

/// Catalog metadata key of a partial receive: its resume token.
pub const PARTIAL_KEY: &[u8] = b"tidefs.receive.partial";
/// Catalog metadata key of a received snapshot: the ctransid its stream carried.
pub const RECEIVED_CTRANSID_KEY: &[u8] = b"tidefs.received.ctransid";

#[derive(Debug, Clone)]
pub struct ReceiveOptions {
    /// Keep (and commit) what was applied when the stream is cut off, for a resume.
    pub resumable: bool,
    /// Discard changes made to NAME since its newest snapshot.
    pub force: bool,
    /// Commands between commits of a resumable receive.
    pub checkpoint_commands: u64,
}

impl Default for ReceiveOptions {
    fn default() -> Self {
        ReceiveOptions {
            resumable: false,
            force: false,
            checkpoint_commands: 20_000,
        }
    }
}

/// Counts while receiving.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceiveProgress {
    pub commands: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone)]
pub struct ReceiveSummary {
    pub snapshot: SubvolInfo,
    /// Commands of the stream (END included); for a resumed stream, of the whole stream.
    pub commands: u64,
    pub bytes: u64,
    /// The command count a resumed receive continued after.
    pub resumed_after: Option<u64>,
}

/// What the stream's first command says.
struct StreamHead {
    snapshot_name: String,
    uuid: Uuid,
    ctransid: u64,
    parent: Option<(Uuid, u64)>,
}

fn target_err(s: impl Into<String>) -> ReceiveError {
    ReceiveError::Target(s.into())
}

fn uuid_str(u: &Uuid) -> String {
    uuid::Uuid::from_bytes(*u).to_string()
}

/// Finds the stream's parent among `name`'s snapshots.
fn find_parent(fs: &Fs, name: &str, uuid: Uuid, ctransid: u64) -> Result<SubvolInfo, ReceiveError> {
    let u = uuid::Uuid::from_bytes(uuid);
    let mut near = Vec::new();
    for s in fs.list_snapshots(name)? {
        let own = s.uuid == u;
        let received = s.received_uuid == Some(u);
        if !own && !received {
            continue;
        }
        let transid = if own {
            Some(s.tid.0)
        } else {
            s.metadata
                .get(RECEIVED_CTRANSID_KEY)
                .and_then(|v| std::str::from_utf8(v).ok()?.parse::<u64>().ok())
        };
        if transid.is_none_or(|t| t == ctransid) {
            return Ok(s);
        }
        near.push(format!(
            "{name}@{} has that uuid but transid {}",
            s.name,
            transid.unwrap_or(0)
        ));
    }
    let mut msg = format!("no snapshot of {name} has uuid {u} with transid {ctransid}");
    if !near.is_empty() {
        msg.push_str(&format!(" ({})", near.join("; ")));
    }
    Err(ReceiveError::MissingParent(msg))
}

/// Applies commands straight to a subvolume (used to bring it to another tree's content).
struct ApplySink<'a, 'b> {
    applier: &'b mut Applier<'a>,
}

impl CommandSink for ApplySink<'_, '_> {
    fn emit(&mut self, c: Command) -> SendResult<()> {
        if matches!(
            c,
            Command::Subvol { .. } | Command::Snapshot { .. } | Command::End
        ) {
            return Ok(());
        }
        self.applier
            .apply(c)
            .map_err(|e| crate::error::SendError::Internal(format!("applying a reset: {}", e.0)))
    }
    fn write_chunk_bytes(&self) -> usize {
        8 << 20
    }
    fn version(&self) -> tidefs_stream::StreamVersion {
        tidefs_stream::StreamVersion::V2
    }
}

/// Makes writable subvolume `target` hold exactly what `to` holds, by applying the
/// difference between them (cost follows the difference).
pub fn reset_to(fs: &Fs, target: &Subvol, to: &SnapView) -> Result<(), ReceiveError> {
    let from = SnapView::open(fs, target.info())?;
    let clones = CloneSources::default();
    let mut applier = Applier::new(fs, target.clone(), [0; 16]);
    {
        let mut sink = ApplySink {
            applier: &mut applier,
        };
        let mut engine = Engine::new(Some(&from), to, &mut sink, &clones);
        walk_incremental(&from, to, &mut |ch| engine.process(ch))?;
        engine.finish()?;
    }
    applier
        .flush()
        .map_err(|e| ReceiveError::Target(format!("resetting {}: {}", target.info().name, e.0)))?;
    Ok(())
}

fn newest_snapshot(fs: &Fs, name: &str) -> Result<Option<SubvolInfo>, ReceiveError> {
    Ok(fs
        .list_snapshots(name)?
        .into_iter()
        .max_by_key(|s| (s.tid, s.id)))
}

/// Whether `sub` differs from the tree `snap`.
fn differs(fs: &Fs, sub: &Subvol, snap: &SubvolInfo) -> Result<bool, ReceiveError> {
    let a = SnapView::open(fs, snap)?;
    let b = SnapView::open(fs, sub.info())?;
    let mut d = a
        .view
        .diff(&b.view)
        .map_err(crate::error::SendError::from)?;
    Ok(d.next().is_some())
}

/// How to undo a receive that failed before it finished.
enum Undo {
    Nothing,
    DeleteSubvolume,
    ResetTo(Box<SnapView>),
}

/// Receives one stream from `input` into subvolume `name`.
pub fn receive<R: Read>(
    fs: &Fs,
    name: &str,
    input: R,
    opts: &ReceiveOptions,
    on_progress: &mut dyn FnMut(ReceiveProgress),
) -> Result<ReceiveSummary, ReceiveError> {
    let mut reader = SendStreamReader::new(input);
    let first = reader
        .next_command()?
        .ok_or_else(|| target_err("the stream holds no command"))?;
    let version = reader.version().map(|v| v.as_u32()).unwrap_or(1);
    let head = match first {
        Command::Subvol {
            path,
            uuid,
            ctransid,
        } => StreamHead {
            snapshot_name: String::from_utf8_lossy(&path).into_owned(),
            uuid,
            ctransid,
            parent: None,
        },
        Command::Snapshot {
            path,
            uuid,
            ctransid,
            clone_uuid,
            clone_ctransid,
        } => StreamHead {
            snapshot_name: String::from_utf8_lossy(&path).into_owned(),
            uuid,
            ctransid,
            parent: Some((clone_uuid, clone_ctransid)),
        },
        other => {
            return Err(ReceiveError::Apply {
                stream: 1,
                command: 1,
                name: other.command_type().name(),
                offset: 17,
                what: "a stream must start with subvol or snapshot".into(),
            })
        }
    };
    // Before anything is made: a name the snapshot cannot take fails only at the end.
    check_catalog_name(&head.snapshot_name, false).map_err(|e| {
        target_err(format!(
            "the stream's subvolume name cannot name a snapshot: {e}"
        ))
    })?;
    let token_of = |applied: u64| ResumeToken {
        uuid: head.uuid,
        ctransid: head.ctransid,
        parent: head.parent,
        version,
        applied,
        snapshot_name: head.snapshot_name.clone(),
    };

    let existing = match fs.subvolume(name) {
        Ok(s) => Some(s),
        Err(FsError::SubvolumeNotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let partial = existing
        .as_ref()
        .and_then(|s| s.info().metadata.get(PARTIAL_KEY))
        .map(|v| String::from_utf8_lossy(v).parse::<ResumeToken>())
        .transpose()?;

    let mut undo = Undo::Nothing;
    let mut applied: u64 = 1;
    let mut resumed_after = None;
    let target = match (&partial, existing) {
        (Some(token), Some(sub)) => {
            let same = token.uuid == head.uuid
                && token.ctransid == head.ctransid
                && token.parent == head.parent;
            if !same {
                return Err(target_err(format!(
                    "{name} holds a partial receive of another stream; resume it with `tidefs send --resume {token}` or discard it with `tidefs receive --abort {name}`"
                )));
            }
            let marker = reader.next_command()?;
            let n = match &marker {
                Some(Command::SetXattr {
                    path,
                    name: x,
                    data,
                }) if path.is_empty() && x == RESUME_MARKER_XATTR => std::str::from_utf8(data)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok()),
                _ => None,
            };
            if n != Some(token.applied) {
                return Err(target_err(format!(
                    "{name} holds a partial receive of this stream after command {}; send the rest with `tidefs send --resume {token}`",
                    token.applied
                )));
            }
            applied = token.applied;
            resumed_after = Some(token.applied);
            sub
        }
        (Some(token), None) => {
            return Err(target_err(format!("inconsistent partial state {token}")))
        }
        (None, existing) => {
            if fs.snapshot(name, &head.snapshot_name).is_ok() {
                return Err(target_err(format!(
                    "snapshot {name}@{} already exists",
                    head.snapshot_name
                )));
            }
            match (head.parent, existing) {
                (None, Some(_)) => {
                    return Err(target_err(format!(
                        "subvolume {name} exists; a full stream creates it (receive into a new name, or send incrementally)"
                    )))
                }
                (None, None) => {
                    fs.create_subvolume(name, &Caller::ROOT)?;
                    undo = Undo::DeleteSubvolume;
                    fs.subvolume(name)?
                }
                (Some((pu, _)), None) => {
                    return Err(ReceiveError::MissingParent(format!(
                        "subvolume {name} does not exist, so it has no snapshot with uuid {}",
                        uuid_str(&pu)
                    )))
                }
                (Some((pu, pc)), Some(sub)) => {
                    let parent = find_parent(fs, name, pu, pc)?;
                    let newest = newest_snapshot(fs, name)?.expect("a parent snapshot exists");
                    if !opts.force && differs(fs, &sub, &newest)? {
                        return Err(target_err(format!(
                            "{name} has changes that are in no snapshot (newest: {name}@{}); snapshot them, or receive with --force to discard them",
                            newest.name
                        )));
                    }
                    undo = Undo::ResetTo(Box::new(SnapView::open(fs, sub.info())?));
                    if differs(fs, &sub, &parent)? {
                        reset_to(fs, &sub, &SnapView::open(fs, &parent)?)?;
                    }
                    sub
                }
            }
        }
    };

    let result = apply_body(
        fs,
        &target,
        &mut reader,
        head.uuid,
        opts,
        &mut applied,
        &token_of,
        on_progress,
    );
    let failure = match result {
        Ok(()) => {
            // Nothing may follow END but the end of input.
            match reader.next_command() {
                Ok(None) => None,
                Ok(Some(c)) => Some(ReceiveError::Apply {
                    stream: reader.stream_number(),
                    command: reader.command_number(),
                    name: c.command_type().name(),
                    offset: reader.bytes_read(),
                    what: "a second stream follows; receive streams one at a time".into(),
                }),
                Err(e) => Some(e.into()),
            }
        }
        Err(e) => Some(e),
    };
    let mut metadata = BTreeMap::new();
    metadata.insert(
        RECEIVED_CTRANSID_KEY.to_vec(),
        head.ctransid.to_string().into_bytes(),
    );
    // Making the snapshot can fail too; then the receive is undone like any other failure.
    let (snapshot, failure) = match failure {
        Some(e) => (None, Some(e)),
        None => match fs.create_snapshot_with(
            name,
            &head.snapshot_name,
            SnapshotOptions {
                received_uuid: Some(uuid::Uuid::from_bytes(head.uuid)),
                metadata,
            },
        ) {
            Ok(s) => (Some(s), None),
            Err(e) => (None, Some(e.into())),
        },
    };
    if let Some(e) = failure {
        let interrupted = matches!(&e, ReceiveError::Stream(s) if matches!(s.kind,
            StreamErrorKind::MissingEnd | StreamErrorKind::TruncatedCommandHeader { .. }
            | StreamErrorKind::TruncatedPayload { .. } | StreamErrorKind::Io(_)));
        if opts.resumable && interrupted && applied > 1 {
            let token = token_of(applied);
            fs.set_metadata(
                target.info().id,
                PARTIAL_KEY,
                Some(token.to_string().as_bytes()),
            )?;
            fs.fsync()?;
            return Err(ReceiveError::Interrupted {
                applied,
                token: token.to_string(),
                cause: e.to_string(),
            });
        }
        if resumed_after.is_none() {
            match undo {
                Undo::Nothing => {}
                Undo::DeleteSubvolume => {
                    let _ = fs.delete_subvolume(name);
                }
                Undo::ResetTo(pre) => {
                    let _ = reset_to(fs, &target, &pre);
                    // A checkpoint of a resumable receive marked it partial; it is no
                    // longer (nothing of it is left to resume).
                    let _ = fs.set_metadata(target.info().id, PARTIAL_KEY, None);
                }
            }
        }
        return Err(e);
    }

    let snapshot = snapshot.expect("made when nothing failed");
    if partial.is_some() {
        fs.set_metadata(target.info().id, PARTIAL_KEY, None)?;
    }
    Ok(ReceiveSummary {
        snapshot,
        commands: applied + 1,
        bytes: reader.bytes_read(),
        resumed_after,
    })
}

/// Stream commands applied per store batch.
const RECEIVE_BATCH_COMMANDS: usize = 4096;

/// Stream bytes (about) read ahead per batch.
const RECEIVE_BATCH_BYTES: usize = 32 << 20;

/// A command read ahead, with where it was in the stream (for error messages).
struct Positioned {
    stream: u64,
    command: u64,
    offset: u64,
    c: Command,
}

/// About how much memory a command read ahead holds.
fn command_bytes(c: &Command) -> usize {
    match c {
        Command::Write { data, .. }
        | Command::EncodedWrite { data, .. }
        | Command::SetXattr { data, .. } => data.len() + 64,
        _ => 64,
    }
}

#[allow(clippy::too_many_arguments)]
fn apply_body<R: Read>(
    fs: &Fs,
    target: &Subvol,
    reader: &mut SendStreamReader<R>,
    uuid: Uuid,
    opts: &ReceiveOptions,
    applied: &mut u64,
    token_of: &dyn Fn(u64) -> ResumeToken,
    on_progress: &mut dyn FnMut(ReceiveProgress),
) -> Result<(), ReceiveError> {
    let mut applier = Applier::new(fs, target.clone(), uuid);
    let mut since_checkpoint = 0u64;
    // Commands are read ahead, then applied in a batch: one savepoint per batch instead
    // of one per file system operation (the receive is all-or-nothing anyway: a failure
    // anywhere makes the caller discard the whole partial subvolume). Reading happens
    // outside the batch, so a slow stream never holds the pool's writer.
    let mut ahead: Vec<Positioned> = Vec::new();
    let mut stream_ended = false;
    // Where the stream broke off; the commands read before it are still applied.
    let mut cut: Option<ReceiveError> = None;
    loop {
        let mut bytes: usize = ahead.iter().map(|p| command_bytes(&p.c)).sum();
        while !stream_ended
            && cut.is_none()
            && ahead.len() < RECEIVE_BATCH_COMMANDS
            && bytes < RECEIVE_BATCH_BYTES
        {
            let offset = reader.bytes_read();
            match reader.next_command() {
                Ok(Some(Command::End)) => stream_ended = true,
                Ok(Some(c)) => {
                    bytes += command_bytes(&c);
                    ahead.push(Positioned {
                        stream: reader.stream_number(),
                        command: reader.command_number(),
                        offset,
                        c,
                    });
                }
                Ok(None) => cut = Some(target_err("the stream ended without END")),
                Err(e) => cut = Some(e.into()),
            }
        }
        let batch = std::mem::take(&mut ahead);
        let broke_off = cut.is_some();
        let checkpoint = fs.pool().batch(|| -> Result<bool, ReceiveError> {
            let mut rest = batch.into_iter();
            while let Some(p) = rest.next() {
                let name = p.c.command_type().name();
                let position = |what: String| ReceiveError::Apply {
                    stream: p.stream,
                    command: p.command,
                    name,
                    offset: p.offset,
                    what,
                };
                if matches!(&p.c, Command::SetXattr { name: x, .. } if x == RESUME_MARKER_XATTR) {
                    return Err(position(
                        "a resumed stream, but this subvolume holds no partial receive of it"
                            .into(),
                    ));
                }
                applier.apply(p.c).map_err(|e| position(e.0))?;
                *applied += 1;
                since_checkpoint += 1;
                if (*applied).is_multiple_of(1024) {
                    on_progress(ReceiveProgress {
                        commands: *applied,
                        bytes: reader.bytes_read(),
                    });
                }
                if opts.resumable && since_checkpoint >= opts.checkpoint_commands {
                    applier.flush().map_err(|e| position(e.0))?;
                    ahead.extend(rest);
                    return Ok(true);
                }
            }
            if broke_off {
                // Keep what the commands before the cut held back.
                applier.flush().map_err(|a| target_err(a.0))?;
            }
            Ok(false)
        })?;
        if checkpoint {
            // Outside the batch: a checkpoint commits.
            let token = token_of(*applied);
            fs.set_metadata(
                target.info().id,
                PARTIAL_KEY,
                Some(token.to_string().as_bytes()),
            )?;
            fs.fsync()?;
            since_checkpoint = 0;
            continue;
        }
        if let Some(e) = cut {
            return Err(e);
        }
        if stream_ended {
            break;
        }
    }
    applier.flush().map_err(|e| target_err(e.0))?;
    on_progress(ReceiveProgress {
        commands: *applied + 1,
        bytes: reader.bytes_read(),
    });
    Ok(())
}

/// Discards a partial receive: NAME goes back to its newest snapshot (or is deleted if it
/// has none, i.e. the partial receive was of a full stream).
pub fn abort(fs: &Fs, name: &str) -> Result<(), ReceiveError> {
    let sub = fs.subvolume(name)?;
    if !sub.info().metadata.contains_key(PARTIAL_KEY) {
        return Err(target_err(format!("{name} holds no partial receive")));
    }
    match newest_snapshot(fs, name)? {
        None => fs.delete_subvolume(name)?,
        Some(newest) => {
            reset_to(fs, &sub, &SnapView::open(fs, &newest)?)?;
            fs.set_metadata(sub.info().id, PARTIAL_KEY, None)?;
        }
    }
    Ok(())
}

/// The resume token of a partial receive into `name`, if there is one.
pub fn partial_token(fs: &Fs, name: &str) -> Result<Option<ResumeToken>, ReceiveError> {
    let sub = fs.subvolume(name)?;
    Ok(sub
        .info()
        .metadata
        .get(PARTIAL_KEY)
        .map(|v| String::from_utf8_lossy(v).parse::<ResumeToken>())
        .transpose()?)
}
