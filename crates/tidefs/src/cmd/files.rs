//! Direct access to files without a mount: `ls`, `cat`, `put`, `rm`, `mkdir`, `mv`, `stat`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use serde_json::json;
use tidefs_fs::{FileKind, Fs, Inode, Subvol};

use crate::output::print_json;
use crate::pool_arg::{caller, open_fs};
use crate::spec::{PathSpec, SubvolSpec};

/// Bytes moved per read or write call.
const IO_CHUNK_BYTES: usize = 1 << 20;

pub fn open_subvol(fs: &Fs, spec: &SubvolSpec) -> Result<Subvol> {
    Ok(match &spec.snapshot {
        Some(s) => fs.snapshot(&spec.name, s)?,
        None => fs.subvolume(&spec.name)?,
    })
}

fn resolve(sv: &Subvol, spec: &PathSpec) -> Result<u64> {
    sv.resolve(&spec.path)
        .with_context(|| format!("{}:{}", spec.subvol, String::from_utf8_lossy(&spec.path)))
}

fn type_char(kind: FileKind) -> char {
    match kind {
        FileKind::Regular => '-',
        FileKind::Directory => 'd',
        FileKind::Symlink => 'l',
        FileKind::CharDevice => 'c',
        FileKind::BlockDevice => 'b',
        FileKind::Fifo => 'p',
        FileKind::Socket => 's',
    }
}

fn mode_string(inode: &Inode) -> String {
    let mut s = String::new();
    s.push(type_char(inode.kind()));
    let m = inode.mode;
    for (bit, c) in [
        (0o400, 'r'),
        (0o200, 'w'),
        (0o100, 'x'),
        (0o040, 'r'),
        (0o020, 'w'),
        (0o010, 'x'),
        (0o004, 'r'),
        (0o002, 'w'),
        (0o001, 'x'),
    ] {
        s.push(if m & bit != 0 { c } else { '-' });
    }
    s
}

pub fn ls(pool: &Path, spec: &str) -> Result<ExitCode> {
    let spec = PathSpec::parse(spec)?;
    let fs = open_fs(pool)?;
    let sv = open_subvol(&fs, &spec.subvol)?;
    let ino = resolve(&sv, &spec)?;
    let inode = sv.getattr(ino)?;
    let mut out = std::io::stdout().lock();
    let print = |out: &mut std::io::StdoutLock, name: &[u8], i: &Inode| -> std::io::Result<()> {
        let when = jiff::Timestamp::from_second(i.mtime.sec)
            .map(|t| t.strftime("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_else(|_| i.mtime.sec.to_string());
        write!(
            out,
            "{} {:>3} {:>5} {:>5} {:>12} {} ",
            mode_string(i),
            i.nlink,
            i.uid,
            i.gid,
            i.size,
            when
        )?;
        out.write_all(name)?;
        writeln!(out)
    };
    if inode.kind() != FileKind::Directory {
        print(&mut out, &spec.path, &inode)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut cookie = 0;
    loop {
        let entries = sv.readdir(ino, cookie, 1024)?;
        let Some(last) = entries.last() else { break };
        cookie = last.next_cookie;
        for e in &entries {
            if e.name == b"." || e.name == b".." {
                continue;
            }
            let child = sv.getattr(e.ino)?;
            print(&mut out, &e.name, &child)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn cat(pool: &Path, spec: &str) -> Result<ExitCode> {
    let spec = PathSpec::parse(spec)?;
    let fs = open_fs(pool)?;
    let sv = open_subvol(&fs, &spec.subvol)?;
    let ino = resolve(&sv, &spec)?;
    let inode = sv.getattr(ino)?;
    if inode.kind() == FileKind::Directory {
        bail!(
            "{}:{}: is a directory",
            spec.subvol,
            String::from_utf8_lossy(&spec.path)
        );
    }
    let mut out = std::io::stdout().lock();
    let mut off = 0;
    while off < inode.size {
        let data = sv.read(ino, off, IO_CHUNK_BYTES as u64)?;
        if data.is_empty() {
            break;
        }
        out.write_all(&data)?;
        off += data.len() as u64;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn put(pool: &Path, host: &PathBuf, spec: &str) -> Result<ExitCode> {
    let spec = PathSpec::parse(spec)?;
    if spec.subvol.snapshot.is_some() {
        bail!("{}: snapshots are read-only", spec.subvol);
    }
    let mut file =
        std::fs::File::open(host).with_context(|| format!("opening {}", host.display()))?;
    let fs = open_fs(pool)?;
    let sv = open_subvol(&fs, &spec.subvol)?;
    let (parent, name) = spec.split_last()?;
    let dir = sv.resolve(&parent)?;
    let who = caller();
    if let Ok(existing) = sv.lookup(dir, &name) {
        if existing.kind() != FileKind::Regular {
            bail!(
                "{}:{}: exists and is not a regular file",
                spec.subvol,
                String::from_utf8_lossy(&spec.path)
            );
        }
    }
    // Write under a temporary name and rename over the target at the end, so a failure
    // (a full pool, a read error) never leaves a half-written file under the real name.
    let temp = [b".tidefs-put-".as_slice(), &name].concat();
    let ino = sv.create(dir, &temp, 0o644, &who)?.ino;
    let copied = (|| -> Result<()> {
        let mut buf = vec![0u8; IO_CHUNK_BYTES];
        let mut off = 0u64;
        loop {
            let n = file
                .read(&mut buf)
                .with_context(|| format!("reading {}", host.display()))?;
            if n == 0 {
                return Ok(());
            }
            sv.write(ino, off, &buf[..n], &who)?;
            off += n as u64;
        }
    })();
    match copied.and_then(|()| Ok(sv.rename(dir, &temp, dir, &name, 0, &who)?)) {
        Ok(()) => {
            fs.fsync()?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            let _ = sv.unlink(dir, &temp, &who);
            let _ = fs.fsync();
            Err(e)
        }
    }
}

pub fn rm(pool: &Path, spec: &str, recursive: bool) -> Result<ExitCode> {
    let spec = PathSpec::parse(spec)?;
    let fs = open_fs(pool)?;
    let sv = open_subvol(&fs, &spec.subvol)?;
    let (parent, name) = spec.split_last()?;
    let dir = sv.resolve(&parent)?;
    let target = sv.lookup(dir, &name)?;
    if target.kind() == FileKind::Directory {
        if !recursive {
            bail!(
                "{}:{}: is a directory (use -r)",
                spec.subvol,
                String::from_utf8_lossy(&spec.path)
            );
        }
        remove_tree(&sv, dir, &name)?;
    } else {
        sv.unlink(dir, &name, &caller())?;
    }
    fs.fsync()?;
    Ok(ExitCode::SUCCESS)
}

fn remove_tree(sv: &Subvol, parent: u64, name: &[u8]) -> Result<()> {
    let who = caller();
    let dir = sv.lookup(parent, name)?;
    loop {
        let entries: Vec<_> = sv
            .readdir(dir.ino, 0, 1024)?
            .into_iter()
            .filter(|e| e.name != b"." && e.name != b"..")
            .collect();
        if entries.is_empty() {
            break;
        }
        for e in entries {
            if e.kind == FileKind::Directory {
                remove_tree(sv, dir.ino, &e.name)?;
            } else {
                sv.unlink(dir.ino, &e.name, &who)?;
            }
        }
    }
    sv.rmdir(parent, name, &who)?;
    Ok(())
}

pub fn mkdir(pool: &Path, spec: &str, parents: bool) -> Result<ExitCode> {
    let spec = PathSpec::parse(spec)?;
    let fs = open_fs(pool)?;
    let sv = open_subvol(&fs, &spec.subvol)?;
    let who = caller();
    if parents {
        let mut cur = sv.root();
        for part in spec.path.split(|&b| b == b'/').filter(|p| !p.is_empty()) {
            cur = match sv.lookup(cur, part) {
                Ok(i) if i.kind() == FileKind::Directory => i.ino,
                Ok(_) => bail!(
                    "{}: {} is not a directory",
                    spec.subvol,
                    String::from_utf8_lossy(part)
                ),
                Err(_) => sv.mkdir(cur, part, 0o755, &who)?.ino,
            };
        }
    } else {
        let (parent, name) = spec.split_last()?;
        let dir = sv.resolve(&parent)?;
        sv.mkdir(dir, &name, 0o755, &who)?;
    }
    fs.fsync()?;
    Ok(ExitCode::SUCCESS)
}

pub fn mv(pool: &Path, from: &str, to: &str) -> Result<ExitCode> {
    let from = PathSpec::parse(from)?;
    let to = PathSpec::parse(to)?;
    if from.subvol != to.subvol {
        bail!(
            "{} and {}: cannot move between subvolumes (EXDEV)",
            from.subvol,
            to.subvol
        );
    }
    let fs = open_fs(pool)?;
    let sv = open_subvol(&fs, &from.subvol)?;
    let (fp, fname) = from.split_last()?;
    let (tp, tname) = to.split_last()?;
    let (fdir, tdir) = (sv.resolve(&fp)?, sv.resolve(&tp)?);
    sv.rename(fdir, &fname, tdir, &tname, 0, &caller())?;
    fs.fsync()?;
    Ok(ExitCode::SUCCESS)
}

pub fn stat(pool: &Path, spec: &str, as_json: bool) -> Result<ExitCode> {
    let spec = PathSpec::parse(spec)?;
    let fs = open_fs(pool)?;
    let sv = open_subvol(&fs, &spec.subvol)?;
    let ino = resolve(&sv, &spec)?;
    let i = sv.getattr(ino)?;
    let ts = |t: tidefs_fs::Timespec| json!({"sec": t.sec, "nsec": t.nsec});
    let value = json!({
        "path": String::from_utf8_lossy(&spec.path),
        "ino": i.ino,
        "generation": i.generation,
        "type": format!("{:?}", i.kind()).to_lowercase(),
        "mode": format!("{:o}", i.mode & 0o7777),
        "uid": i.uid,
        "gid": i.gid,
        "nlink": i.nlink,
        "size": i.size,
        "blocks": i.blocks,
        "rdev": i.rdev,
        "atime": ts(i.atime),
        "mtime": ts(i.mtime),
        "ctime": ts(i.ctime),
        "btime": ts(i.btime),
    });
    if as_json {
        print_json(&value);
    } else {
        for (k, v) in value.as_object().expect("object") {
            let shown = match v {
                serde_json::Value::Object(o) => {
                    format!("{}.{:09}", o["sec"], o["nsec"].as_u64().unwrap_or(0))
                }
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            println!("{k}: {shown}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
