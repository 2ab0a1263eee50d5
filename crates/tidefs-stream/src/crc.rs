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

#[cfg(test)]
mod tests {
    use super::*;

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
