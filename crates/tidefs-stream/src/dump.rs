//! Prints commands exactly as `btrfs receive --dump` of btrfs-progs 6.2 does.
//!
//! Each line: the command name left-aligned in 16 columns, the full path escaped, then —
//! if the command has arguments — spaces padding the escaped path to 32 columns (at least
//! one), then the arguments:
//!
//! ```text
//! subvol          ./s1                            uuid=4f767594-36b6-8d4b-b492-71bdacddaa80 transid=9
//! mkfile          ./s1/o258-9-0
//! rename          ./s1/o258-9-0                   dest=./s1/hl
//! ```
//!
//! Faithful to 6.2, quirks included (newer progs print some of these differently):
//!
//! * full paths are `<subvol path>/<PATH>` joined like progs' `path_cat_out` (one trailing
//!   `/` of each part dropped), the subvolume path being `./<SUBVOL PATH>`;
//! * paths and the `dest=` of symlink, rename and link are escaped (`\n`, `\ `, `\\`,
//!   octal `\ooo` for bytes outside 0x20..=0x7e); the clone source `from=`, xattr names
//!   and xattr data are printed raw, xattr data up to its first NUL;
//! * numbers: modes in octal, rdev in hex, fileattr as `0x` followed by decimal,
//!   fallocate mode and xattr length as C `int`, clone length through a C `int`;
//! * times through `localtime_r` (see `dump_time`: depends on `TZ`);
//! * END prints nothing, and `dump_stream` stops at the first END as progs does.

use std::io::{self, Read, Write};

use thiserror::Error;

use crate::attribute::Uuid;
use crate::command::{Command, CommandType};
use crate::dump_time::{format_dump_time, DumpTimeZone};
use crate::error::StreamError;
use crate::reader::SendStreamReader;

/// progs' `PATH_MAX`: joined paths of this length or more fail the dump.
pub const DUMP_PATH_BYTES_MAX: usize = 4096;

/// Width of the command name column.
const NAME_COLUMN_BYTES: usize = 16;

/// Width the escaped path is padded to before the arguments.
const PATH_COLUMN_BYTES: usize = 32;

/// Why a dump stopped.
#[derive(Debug, Error)]
pub enum DumpError {
    /// The stream itself was refused.
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// Writing the dump failed.
    #[error("writing the dump failed: {0}")]
    Io(#[from] io::Error),
    /// progs refuses to join paths of `PATH_MAX` bytes or more ("path invalid").
    #[error("{command}: joined path of {bytes} bytes reaches PATH_MAX (4096)")]
    PathTooLong { command: CommandType, bytes: usize },
    /// progs cannot convert this time to local time ("failed to convert time").
    #[error("{command}: time {seconds} cannot be converted to local time")]
    TimeOutOfRange { command: CommandType, seconds: u64 },
}

/// Formats commands one line each, tracking the current subvolume path as progs does.
#[derive(Debug, Clone)]
pub struct DumpFormatter {
    /// `./<subvol>` after SUBVOL or SNAPSHOT; `.` before.
    full_subvol_path: Vec<u8>,
    time_zone: DumpTimeZone,
}

impl DumpFormatter {
    /// A formatter that prints times in `time_zone`.
    pub fn new(time_zone: DumpTimeZone) -> Self {
        DumpFormatter {
            full_subvol_path: b".".to_vec(),
            time_zone,
        }
    }

    /// Writes the dump line of `command` (nothing for END).
    pub fn write_command<W: Write>(
        &mut self,
        command: &Command,
        output: &mut W,
    ) -> Result<(), DumpError> {
        let mut line = Vec::with_capacity(128);
        self.format_command(command, &mut line)?;
        output.write_all(&line)?;
        Ok(())
    }

    /// Appends the dump line of `command` (nothing for END) to `line`.
    pub fn format_command(
        &mut self,
        command: &Command,
        line: &mut Vec<u8>,
    ) -> Result<(), DumpError> {
        let name = command.command_type();
        match command {
            Command::Subvol {
                path,
                uuid,
                ctransid,
            } => {
                self.full_subvol_path = path_cat(name, b".", path)?;
                let subvol = self.full_subvol_path.clone();
                head(line, name, &subvol, true);
                push(
                    line,
                    format!("uuid={} transid={ctransid}", uuid_string(uuid)),
                );
            }
            Command::Snapshot {
                path,
                uuid,
                ctransid,
                clone_uuid,
                clone_ctransid,
            } => {
                self.full_subvol_path = path_cat(name, b".", path)?;
                let subvol = self.full_subvol_path.clone();
                head(line, name, &subvol, true);
                push(
                    line,
                    format!(
                        "uuid={} transid={ctransid} parent_uuid={} parent_transid={clone_ctransid}",
                        uuid_string(uuid),
                        uuid_string(clone_uuid)
                    ),
                );
            }
            Command::Mkfile { path, .. }
            | Command::Mkdir { path, .. }
            | Command::Mkfifo { path, .. }
            | Command::Mksock { path, .. }
            | Command::Unlink { path }
            | Command::Rmdir { path } => {
                let full = self.full_path(name, path)?;
                head(line, name, &full, false);
            }
            Command::Mknod {
                path, rdev, mode, ..
            } => {
                self.with_args(line, name, path, format!("mode={mode:o} dev=0x{rdev:x}"))?;
            }
            Command::Symlink { path, target, .. } => {
                let full = self.full_path(name, path)?;
                head(line, name, &full, true);
                line.extend_from_slice(b"dest=");
                escape_into(line, target);
            }
            Command::Rename { from, to } => {
                let full_to = self.full_path(name, to)?;
                let full_from = self.full_path(name, from)?;
                head(line, name, &full_from, true);
                line.extend_from_slice(b"dest=");
                escape_into(line, &full_to);
            }
            Command::Link { path, existing } => {
                let full = self.full_path(name, path)?;
                head(line, name, &full, true);
                line.extend_from_slice(b"dest=");
                escape_into(line, existing);
            }
            Command::SetXattr {
                path,
                name: xattr,
                data,
            } => {
                let full = self.full_path(name, path)?;
                head(line, name, &full, true);
                line.extend_from_slice(b"name=");
                line.extend_from_slice(c_string(xattr));
                line.extend_from_slice(b" data=");
                // printf("%.*s", len, data): raw bytes, stopping at the first NUL.
                line.extend_from_slice(c_string(data));
                push(line, format!(" len={}", data.len() as i32));
            }
            Command::RemoveXattr { path, name: xattr } => {
                let full = self.full_path(name, path)?;
                head(line, name, &full, true);
                line.extend_from_slice(b"name=");
                line.extend_from_slice(c_string(xattr));
            }
            Command::Write { path, offset, data } => {
                let len = data.len() as i32 as i64 as u64;
                self.with_args(line, name, path, format!("offset={offset} len={len}"))?;
            }
            Command::Clone {
                path,
                offset,
                len,
                clone_path,
                clone_offset,
                ..
            } => {
                let from = self.full_path(name, clone_path)?;
                let full = self.full_path(name, path)?;
                head(line, name, &full, true);
                // progs reads CLONE_LEN into a C int and passes it on as u64.
                let len = *len as u32 as i32 as i64 as u64;
                push(line, format!("offset={offset} len={len} from="));
                line.extend_from_slice(&from);
                push(line, format!(" clone_offset={clone_offset}"));
            }
            Command::Truncate { path, size } => {
                self.with_args(line, name, path, format!("size={size}"))?;
            }
            Command::Chmod { path, mode } => {
                self.with_args(line, name, path, format!("mode={mode:o}"))?;
            }
            Command::Chown { path, uid, gid } => {
                self.with_args(line, name, path, format!("gid={gid} uid={uid}"))?;
            }
            Command::Utimes {
                path,
                atime,
                mtime,
                ctime,
                ..
            } => {
                let time = |seconds: u64| {
                    format_dump_time(seconds, &self.time_zone).map_err(|_| {
                        DumpError::TimeOutOfRange {
                            command: name,
                            seconds,
                        }
                    })
                };
                let args = format!(
                    "atime={} mtime={} ctime={}",
                    time(atime.sec)?,
                    time(mtime.sec)?,
                    time(ctime.sec)?
                );
                self.with_args(line, name, path, args)?;
            }
            Command::End => return Ok(()),
            Command::UpdateExtent { path, offset, len } => {
                self.with_args(line, name, path, format!("offset={offset} len={len}"))?;
            }
            Command::Fallocate {
                path,
                mode,
                offset,
                len,
            } => {
                let mode = *mode as i32;
                self.with_args(
                    line,
                    name,
                    path,
                    format!("mode={mode} offset={offset} len={len}"),
                )?;
            }
            Command::Fileattr { path, fileattr } => {
                // progs 6.2 prints "0x%llu": a hex prefix on a decimal number.
                self.with_args(line, name, path, format!("fileattr=0x{fileattr}"))?;
            }
            Command::EncodedWrite {
                path,
                offset,
                unencoded_file_len,
                unencoded_len,
                unencoded_offset,
                compression,
                encryption,
                data,
            } => {
                let len = data.len() as i32 as i64 as u64;
                let args = format!(
                    "offset={offset} len={len}, unencoded_file_len={unencoded_file_len}, \
                     unencoded_len={unencoded_len}, unencoded_offset={unencoded_offset}, \
                     compression={}, encryption={}",
                    compression.unwrap_or(0),
                    encryption.unwrap_or(0)
                );
                self.with_args(line, name, path, args)?;
            }
        }
        line.push(b'\n');
        Ok(())
    }

    fn full_path(&self, command: CommandType, path: &[u8]) -> Result<Vec<u8>, DumpError> {
        path_cat(command, &self.full_subvol_path, path)
    }

    fn with_args(
        &self,
        line: &mut Vec<u8>,
        command: CommandType,
        path: &[u8],
        args: String,
    ) -> Result<(), DumpError> {
        let full = self.full_path(command, path)?;
        head(line, command, &full, true);
        line.extend_from_slice(args.as_bytes());
        Ok(())
    }
}

/// Dumps `input` as `btrfs receive --dump` does: every command of the first stream up to
/// and including its END (which prints nothing); later concatenated streams are not read.
/// Lines of the commands before a bad one are written before the error is returned.
pub fn dump_stream<R: Read, W: Write>(
    input: R,
    mut output: W,
    time_zone: DumpTimeZone,
) -> Result<(), DumpError> {
    let mut reader = SendStreamReader::new(input);
    let mut formatter = DumpFormatter::new(time_zone);
    while let Some(command) = reader.next_command()? {
        formatter.write_command(&command, &mut output)?;
        if command == Command::End {
            break;
        }
    }
    output.flush()?;
    Ok(())
}

/// `printf("%-16s", name)`, the escaped path, and the padding before arguments.
fn head(line: &mut Vec<u8>, command: CommandType, full_path: &[u8], has_args: bool) {
    let name = command.name().as_bytes();
    line.extend_from_slice(name);
    line.resize(
        line.len() + NAME_COLUMN_BYTES.saturating_sub(name.len()),
        b' ',
    );
    let mut width = escape_into(line, full_path);
    if has_args {
        // do { putchar(' '); } while (++ret < 32);
        loop {
            line.push(b' ');
            width += 1;
            if width >= PATH_COLUMN_BYTES {
                break;
            }
        }
    }
}

fn push(line: &mut Vec<u8>, text: String) {
    line.extend_from_slice(text.as_bytes());
}

/// The bytes a C `%s` would print: up to the first NUL.
fn c_string(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    &bytes[..end]
}

/// progs' `path_cat_out`: drop one trailing `/` from each part, join with `/`, refuse
/// results that would not fit `PATH_MAX`.
fn path_cat(command: CommandType, first: &[u8], second: &[u8]) -> Result<Vec<u8>, DumpError> {
    let first = c_string(first);
    let second = c_string(second);
    if first.len() + second.len() + 2 >= DUMP_PATH_BYTES_MAX {
        return Err(DumpError::PathTooLong {
            command,
            bytes: first.len() + second.len() + 1,
        });
    }
    let first = first.strip_suffix(b"/").unwrap_or(first);
    let second = second.strip_suffix(b"/").unwrap_or(second);
    let mut joined = Vec::with_capacity(first.len() + second.len() + 1);
    joined.extend_from_slice(first);
    joined.push(b'/');
    joined.extend_from_slice(second);
    Ok(joined)
}

/// progs' `print_path_escaped` in the C locale. Returns the printed width.
pub fn escape_into(line: &mut Vec<u8>, bytes: &[u8]) -> usize {
    let start = line.len();
    for &byte in c_string(bytes) {
        match byte {
            0x07 => line.extend_from_slice(b"\\a"),
            0x08 => line.extend_from_slice(b"\\b"),
            0x1b => line.extend_from_slice(b"\\e"),
            0x0c => line.extend_from_slice(b"\\f"),
            b'\n' => line.extend_from_slice(b"\\n"),
            b'\r' => line.extend_from_slice(b"\\r"),
            b'\t' => line.extend_from_slice(b"\\t"),
            0x0b => line.extend_from_slice(b"\\v"),
            b' ' => line.extend_from_slice(b"\\ "),
            b'\\' => line.extend_from_slice(b"\\\\"),
            0x21..=0x7e => line.push(byte),
            _ => line.extend_from_slice(&[
                b'\\',
                b'0' + (byte >> 6),
                b'0' + ((byte >> 3) & 7),
                b'0' + (byte & 7),
            ]),
        }
    }
    line.len() - start
}

/// `uuid_unparse`: lowercase 8-4-4-4-12.
fn uuid_string(uuid: &Uuid) -> String {
    let mut text = String::with_capacity(36);
    for (index, byte) in uuid.iter().enumerate() {
        if matches!(index, 4 | 6 | 8 | 10) {
            text.push('-');
        }
        text.push_str(&format!("{byte:02x}"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_of(formatter: &mut DumpFormatter, command: &Command) -> String {
        let mut line = Vec::new();
        formatter.format_command(command, &mut line).unwrap();
        String::from_utf8(line).unwrap()
    }

    #[test]
    fn columns_match_the_reference_fragment() {
        let mut formatter = DumpFormatter::new(DumpTimeZone::utc());
        let uuid = [
            0x4f, 0x76, 0x75, 0x94, 0x36, 0xb6, 0x8d, 0x4b, 0xb4, 0x92, 0x71, 0xbd, 0xac, 0xdd,
            0xaa, 0x80,
        ];
        let subvol = Command::Subvol {
            path: b"sv_s1".to_vec(),
            uuid,
            ctransid: 9,
        };
        assert_eq!(
            line_of(&mut formatter, &subvol),
            "subvol          ./sv_s1                         uuid=4f767594-36b6-8d4b-b492-71bdacddaa80 transid=9\n"
        );
        let chown = Command::Chown {
            path: Vec::new(),
            uid: 0,
            gid: 0,
        };
        assert_eq!(
            line_of(&mut formatter, &chown),
            "chown           ./sv_s1/                        gid=0 uid=0\n"
        );
        let mknod = Command::Mknod {
            path: b"o261-9-0".to_vec(),
            ino: 261,
            rdev: 0x103,
            mode: 0o20644,
        };
        assert_eq!(
            line_of(&mut formatter, &mknod),
            "mknod           ./sv_s1/o261-9-0                mode=20644 dev=0x103\n"
        );
        let mkfile = Command::Mkfile {
            path: b"o258-9-0".to_vec(),
            ino: 258,
        };
        assert_eq!(
            line_of(&mut formatter, &mkfile),
            "mkfile          ./sv_s1/o258-9-0\n"
        );
    }

    #[test]
    fn escaping_follows_print_path_escaped() {
        let mut line = Vec::new();
        let width = escape_into(&mut line, b"a b\\c\n\t\x07\x1b\x7f\xe9~");
        assert_eq!(line, b"a\\ b\\\\c\\n\\t\\a\\e\\177\\351~".to_vec());
        assert_eq!(width, line.len());
    }

    #[test]
    fn long_paths_get_one_space() {
        let mut formatter = DumpFormatter::new(DumpTimeZone::utc());
        let long = vec![b'x'; 40];
        let text = line_of(
            &mut formatter,
            &Command::Truncate {
                path: long,
                size: 1,
            },
        );
        assert_eq!(
            text,
            format!("truncate        ./{} size=1\n", "x".repeat(40))
        );
    }

    #[test]
    fn path_cat_drops_one_trailing_slash_per_part() {
        let name = CommandType::Mkdir;
        assert_eq!(path_cat(name, b".", b"").unwrap(), b"./".to_vec());
        assert_eq!(path_cat(name, b"./", b"x").unwrap(), b"./x".to_vec());
        assert_eq!(path_cat(name, b"./s", b"a//").unwrap(), b"./s/a/".to_vec());
        assert!(matches!(
            path_cat(name, b"./s", &[b'a'; 4091]),
            Err(DumpError::PathTooLong { .. })
        ));
        assert!(path_cat(name, b"./s", &[b'a'; 4090]).is_ok());
    }
}
