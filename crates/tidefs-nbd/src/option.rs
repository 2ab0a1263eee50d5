//! Parsers for the payloads of handshake options. Pure functions over bytes; the
//! handshake state machine decides what to answer.

use crate::error::OptionPayloadError;
use crate::limits::{META_CONTEXT_QUERIES_MAX, STRING_BYTES_MAX};

/// Payload of `NBD_OPT_INFO` and `NBD_OPT_GO`.
///
/// ```text
/// 0      4          4+n   6+n           6+n+2k
/// | name length n (u32) | name | k (u16) | k × info type (u16) |
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InfoRequest {
    pub name: String,
    pub info_types: Vec<u16>,
}

/// Payload of `NBD_OPT_LIST_META_CONTEXT` and `NBD_OPT_SET_META_CONTEXT`.
///
/// ```text
/// | name length n (u32) | name | query count k (u32) | k × (length m (u32) | query) |
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetaContextRequest {
    pub export_name: String,
    pub queries: Vec<String>,
}

pub fn parse_info_request(payload: &[u8]) -> Result<InfoRequest, OptionPayloadError> {
    let mut cursor = Cursor::new(payload);
    let name = cursor.string_u32("export name")?;
    let count = cursor.u16("information request count")?;
    let mut info_types = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        info_types.push(cursor.u16("information request")?);
    }
    cursor.finish()?;
    Ok(InfoRequest { name, info_types })
}

pub fn parse_meta_context_request(
    payload: &[u8],
) -> Result<MetaContextRequest, OptionPayloadError> {
    let mut cursor = Cursor::new(payload);
    let export_name = cursor.string_u32("export name")?;
    let count = cursor.u32("query count")?;
    if count > META_CONTEXT_QUERIES_MAX {
        return Err(OptionPayloadError::TooManyQueries {
            count,
            max: META_CONTEXT_QUERIES_MAX,
        });
    }
    let mut queries = Vec::with_capacity(count as usize);
    for _ in 0..count {
        queries.push(cursor.string_u32("query")?);
    }
    cursor.finish()?;
    Ok(MetaContextRequest {
        export_name,
        queries,
    })
}

/// `NBD_OPT_EXPORT_NAME`: the whole payload is the name.
pub fn parse_export_name(payload: &[u8]) -> Result<String, OptionPayloadError> {
    check_string(payload, "export name")
}

fn check_string(bytes: &[u8], field: &'static str) -> Result<String, OptionPayloadError> {
    if bytes.len() > STRING_BYTES_MAX {
        return Err(OptionPayloadError::StringTooLong {
            field,
            len: bytes.len(),
            max_bytes: STRING_BYTES_MAX,
        });
    }
    match std::str::from_utf8(bytes) {
        Ok(text) if !text.contains('\0') => Ok(text.to_owned()),
        _ => Err(OptionPayloadError::BadString { field }),
    }
}

/// Reads big-endian fields off the front of a payload.
struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    fn take(&mut self, len: usize, field: &'static str) -> Result<&'a [u8], OptionPayloadError> {
        if self.rest.len() < len {
            return Err(OptionPayloadError::Truncated { field });
        }
        let (head, tail) = self.rest.split_at(len);
        self.rest = tail;
        Ok(head)
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, OptionPayloadError> {
        let bytes = self.take(2, field)?;
        Ok(u16::from_be_bytes([bytes[0], bytes[1]]))
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, OptionPayloadError> {
        let bytes = self.take(4, field)?;
        Ok(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    /// A string preceded by its 32-bit length.
    fn string_u32(&mut self, field: &'static str) -> Result<String, OptionPayloadError> {
        let len = self.u32(field)?;
        let len = usize::try_from(len).map_err(|_| OptionPayloadError::Truncated { field })?;
        check_string(self.take(len, field)?, field)
    }

    fn finish(self) -> Result<(), OptionPayloadError> {
        if self.rest.is_empty() {
            return Ok(());
        }
        Err(OptionPayloadError::TrailingBytes {
            count: self.rest.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info_payload(name: &[u8], infos: &[u16]) -> Vec<u8> {
        let mut p = (name.len() as u32).to_be_bytes().to_vec();
        p.extend_from_slice(name);
        p.extend_from_slice(&(infos.len() as u16).to_be_bytes());
        for i in infos {
            p.extend_from_slice(&i.to_be_bytes());
        }
        p
    }

    #[test]
    fn info_request_round_trips() {
        let parsed = parse_info_request(&info_payload(b"vol", &[3, 1])).unwrap();
        assert_eq!(
            parsed,
            InfoRequest {
                name: "vol".into(),
                info_types: vec![3, 1]
            }
        );
    }

    #[test]
    fn info_request_truncated_or_trailing_is_invalid() {
        let full = info_payload(b"vol", &[3]);
        for cut in 0..full.len() {
            assert!(
                matches!(
                    parse_info_request(&full[..cut]),
                    Err(OptionPayloadError::Truncated { .. })
                ),
                "cut at {cut}"
            );
        }
        let mut long = full.clone();
        long.push(0);
        assert_eq!(
            parse_info_request(&long),
            Err(OptionPayloadError::TrailingBytes { count: 1 })
        );
    }

    #[test]
    fn name_length_beyond_payload_is_truncated() {
        let mut p = 1000u32.to_be_bytes().to_vec();
        p.extend_from_slice(b"abc\0\0");
        assert!(matches!(
            parse_info_request(&p),
            Err(OptionPayloadError::Truncated { .. })
        ));
    }

    #[test]
    fn bad_strings_are_refused() {
        assert!(matches!(
            parse_export_name(&[0xff, 0xfe]),
            Err(OptionPayloadError::BadString { .. })
        ));
        assert!(matches!(
            parse_export_name(b"a\0b"),
            Err(OptionPayloadError::BadString { .. })
        ));
        assert!(matches!(
            parse_export_name(&vec![b'a'; STRING_BYTES_MAX + 1]),
            Err(OptionPayloadError::StringTooLong { .. })
        ));
        assert_eq!(parse_export_name(b"").unwrap(), "");
    }

    #[test]
    fn meta_context_request_parses_queries() {
        let mut p = 3u32.to_be_bytes().to_vec();
        p.extend_from_slice(b"vol");
        p.extend_from_slice(&2u32.to_be_bytes());
        for q in [&b"base:allocation"[..], b"qemu:dirty-bitmap:x"] {
            p.extend_from_slice(&(q.len() as u32).to_be_bytes());
            p.extend_from_slice(q);
        }
        let parsed = parse_meta_context_request(&p).unwrap();
        assert_eq!(parsed.export_name, "vol");
        assert_eq!(parsed.queries, ["base:allocation", "qemu:dirty-bitmap:x"]);
        for cut in 0..p.len() {
            assert!(
                parse_meta_context_request(&p[..cut]).is_err(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn too_many_queries_is_refused_before_reading_them() {
        let mut p = 0u32.to_be_bytes().to_vec();
        p.extend_from_slice(&(META_CONTEXT_QUERIES_MAX + 1).to_be_bytes());
        assert!(matches!(
            parse_meta_context_request(&p),
            Err(OptionPayloadError::TooManyQueries { .. })
        ));
    }
}
