//! Keys are byte strings ordered bytewise. Tuples such as `(object id, kind, offset)` are
//! encoded big-endian so that byte order equals tuple order.

/// Builds an ordered key from tuple parts.
#[derive(Debug, Default, Clone)]
pub struct KeyBuf(Vec<u8>);

impl KeyBuf {
    pub fn new() -> KeyBuf {
        KeyBuf(Vec::with_capacity(24))
    }
    pub fn u64(mut self, v: u64) -> KeyBuf {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn u32(mut self, v: u32) -> KeyBuf {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn u8(mut self, v: u8) -> KeyBuf {
        self.0.push(v);
        self
    }
    pub fn bytes(mut self, v: &[u8]) -> KeyBuf {
        self.0.extend_from_slice(v);
        self
    }
    pub fn build(self) -> Vec<u8> {
        self.0
    }
}

/// The common three-part key `(object id, kind, offset)`.
pub fn key3(object: u64, kind: u8, offset: u64) -> Vec<u8> {
    KeyBuf::new().u64(object).u8(kind).u64(offset).build()
}

/// Splits a key made by [`key3`].
pub fn parse_key3(key: &[u8]) -> Option<(u64, u8, u64)> {
    if key.len() != 17 {
        return None;
    }
    let object = u64::from_be_bytes(key[0..8].try_into().ok()?);
    let offset = u64::from_be_bytes(key[9..17].try_into().ok()?);
    Some((object, key[8], offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_order_is_tuple_order() {
        let a = key3(1, 2, u64::MAX);
        let b = key3(1, 3, 0);
        let c = key3(2, 0, 0);
        assert!(a < b && b < c);
        assert_eq!(parse_key3(&a), Some((1, 2, u64::MAX)));
    }
}
