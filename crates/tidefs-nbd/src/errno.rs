//! The one place where errors become NBD error codes: transmission-phase errors
//! (`NBD_E*`, sent in replies) and handshake-phase errors (`NBD_REP_ERR_*`).

use crate::error::{ExportError, RequestRejection};
use crate::wire;

/// The error values the protocol allows in a reply. The numbers match Linux errno values
/// so that old clients can print them, but they are protocol constants, not host errnos.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum NbdErrno {
    Perm = 1,
    Io = 5,
    NoMem = 12,
    Inval = 22,
    NoSpc = 28,
    Overflow = 75,
    NotSup = 95,
    Shutdown = 108,
}

impl NbdErrno {
    pub const fn code(self) -> u32 {
        self as u32
    }
}

impl From<&ExportError> for NbdErrno {
    fn from(error: &ExportError) -> Self {
        match error {
            ExportError::ReadOnly => NbdErrno::Perm,
            ExportError::NoSpace { .. } => NbdErrno::NoSpc,
            ExportError::NotFound { .. }
            | ExportError::OutOfRange { .. }
            | ExportError::Unsupported { .. } => NbdErrno::Inval,
            ExportError::Io { .. } => NbdErrno::Io,
            ExportError::ShuttingDown => NbdErrno::Shutdown,
        }
    }
}

impl From<&RequestRejection> for NbdErrno {
    fn from(rejection: &RequestRejection) -> Self {
        match rejection {
            RequestRejection::ReadOnly => NbdErrno::Perm,
            // The protocol asks for ENOSPC on writes past the end (as a full disk would
            // report) and EINVAL on every other out-of-range request.
            RequestRejection::OutOfRange { is_write: true, .. } => NbdErrno::NoSpc,
            RequestRejection::UnknownCommand { .. }
            | RequestRejection::InvalidFlags { .. }
            | RequestRejection::NotNegotiated { .. }
            | RequestRejection::ReservedFieldsSet { .. }
            | RequestRejection::TooLong { .. }
            | RequestRejection::Misaligned { .. }
            | RequestRejection::OutOfRange {
                is_write: false, ..
            }
            | RequestRejection::EmptyBlockStatus => NbdErrno::Inval,
        }
    }
}

/// The option error reply for an export that could not be opened during the handshake.
pub fn option_reply_for_open_error(error: &ExportError) -> u32 {
    match error {
        ExportError::NotFound { .. } => wire::REP_ERR_UNKNOWN,
        ExportError::ShuttingDown => wire::REP_ERR_SHUTDOWN,
        ExportError::ReadOnly
        | ExportError::NoSpace { .. }
        | ExportError::OutOfRange { .. }
        | ExportError::Unsupported { .. }
        | ExportError::Io { .. } => wire::REP_ERR_POLICY,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_protocol_values() {
        let expected = [
            (NbdErrno::Perm, 1),
            (NbdErrno::Io, 5),
            (NbdErrno::NoMem, 12),
            (NbdErrno::Inval, 22),
            (NbdErrno::NoSpc, 28),
            (NbdErrno::Overflow, 75),
            (NbdErrno::NotSup, 95),
            (NbdErrno::Shutdown, 108),
        ];
        for (errno, code) in expected {
            assert_eq!(errno.code(), code, "{errno:?}");
        }
    }

    #[test]
    fn export_errors_map_to_their_codes() {
        let io = ExportError::Io {
            offset: 7,
            source: std::io::Error::other("disk on fire"),
        };
        assert_eq!(NbdErrno::from(&io), NbdErrno::Io);
        assert_eq!(NbdErrno::from(&ExportError::ReadOnly), NbdErrno::Perm);
        assert_eq!(
            NbdErrno::from(&ExportError::NoSpace { offset: 0, len: 1 }),
            NbdErrno::NoSpc
        );
        assert_eq!(
            NbdErrno::from(&ExportError::ShuttingDown),
            NbdErrno::Shutdown
        );
    }

    #[test]
    fn writes_past_the_end_are_enospc_reads_are_einval() {
        let past_end = |is_write| RequestRejection::OutOfRange {
            offset: 10,
            len: 10,
            size: 12,
            is_write,
        };
        assert_eq!(NbdErrno::from(&past_end(true)), NbdErrno::NoSpc);
        assert_eq!(NbdErrno::from(&past_end(false)), NbdErrno::Inval);
    }

    #[test]
    fn open_errors_map_to_option_replies() {
        let not_found = ExportError::NotFound { name: "x".into() };
        assert_eq!(
            option_reply_for_open_error(&not_found),
            wire::REP_ERR_UNKNOWN
        );
        assert_eq!(
            option_reply_for_open_error(&ExportError::ShuttingDown),
            wire::REP_ERR_SHUTDOWN
        );
    }
}
