//! The send stream's CRC32C variant.
//!
//! The kernel calls `crc32c(0, buf, len)`: the Castagnoli polynomial (reflected 0x82F63B78)
//! with the register seeded with 0 and no final inversion. The standard CRC-32C seeds with
//! `!0` and inverts at the end, so with a standard implementation that continues from a
//! finished value: `raw(prev, data) = !standard_append(!prev, data)`.

/// Continues the raw (seed 0, no final xor) CRC32C `crc` over `data`.
pub fn crc32c_raw_append(crc: u32, data: &[u8]) -> u32 {
    !crc32c::crc32c_append(!crc, data)
}

/// The raw CRC32C of `data` with seed 0, as the send stream stores it.
pub fn crc32c_raw(data: &[u8]) -> u32 {
    crc32c_raw_append(0, data)
}

/// Rewrites the CRC of every command whose bytes are all present in `bytes`, walking the
/// framing (stream headers, command headers). For fuzzing and tests: lets mutated streams
/// get past the CRC check and reach the decoders.
pub fn repair_crcs(bytes: &mut [u8]) {
    let magic = &crate::header::STREAM_MAGIC;
    let mut pos = 0usize;
    while pos < bytes.len() {
        if bytes[pos..].starts_with(magic) {
            pos += magic.len() + 4; // magic and version
            continue;
        }
        if bytes.len() - pos < 10 {
            return;
        }
        let len = u32::from_le_bytes([bytes[pos], bytes[pos + 1], bytes[pos + 2], bytes[pos + 3]]);
        let Some(end) = pos
            .checked_add(10 + len as usize)
            .filter(|end| *end <= bytes.len())
        else {
            return;
        };
        bytes[pos + 6..pos + 10].copy_from_slice(&[0; 4]);
        let crc = crc32c_raw(&bytes[pos..end]);
        bytes[pos + 6..pos + 10].copy_from_slice(&crc.to_le_bytes());
        pos = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repaired_crcs_make_a_damaged_stream_read_again() {
        let mut good = Vec::new();
        let mut w = crate::SendStreamWriter::new(&mut good, crate::StreamVersion::V1).unwrap();
        w.write_command(&crate::Command::Mkdir {
            path: b"dir".to_vec(),
            ino: 257,
        })
        .unwrap();
        w.end().unwrap();
        drop(w);
        let mut bad = good.clone();
        let last = bad.len() - 11; // a byte of the MKDIR payload
        bad[last] ^= 0x20;
        let read_all = |b: &[u8]| {
            let mut r = crate::SendStreamReader::new(b);
            while r.next_command()?.is_some() {}
            Ok::<(), crate::StreamError>(())
        };
        assert!(read_all(&good).is_ok());
        assert!(read_all(&bad).is_err(), "the flipped byte breaks the CRC");
        repair_crcs(&mut bad);
        read_all(&bad).unwrap();
        assert_ne!(
            bad, good,
            "the payload change stays; only CRCs are rewritten"
        );
    }

    #[test]
    fn standard_check_value_holds_for_the_underlying_crc() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn end_command_test_vector_from_the_reference() {
        // END with len 0 and crc field zeroed: 00 00 00 00 15 00 00 00 00 00 -> 0x9dc96c50.
        let header = [0u8, 0, 0, 0, 0x15, 0, 0, 0, 0, 0];
        assert_eq!(crc32c_raw(&header), 0x9dc9_6c50);
    }

    #[test]
    fn appending_in_chunks_equals_one_pass() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
        let whole = crc32c_raw(&data);
        let split = crc32c_raw_append(crc32c_raw(&data[..333]), &data[333..]);
        assert_eq!(whole, split);
        assert_eq!(
            crc32c_raw(&[]),
            0,
            "seed 0 and no inversion: empty input gives 0"
        );
    }
}
