//! Device numbers: tidefs stores `dev_t` as stat reports it (glibc encoding); send streams
//! carry the kernel's `new_encode_dev` form.

/// glibc `dev_t` → the stream's `new_encode_dev` form. Equal for majors below 4096.
pub(crate) fn rdev_to_stream(rdev: u64) -> u64 {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12)
}

/// The stream's `new_encode_dev` form → glibc `dev_t`.
pub(crate) fn rdev_from_stream(dev: u64) -> u64 {
    let dev = dev & 0xffff_ffff;
    let major = (dev & 0xfff00) >> 8;
    let minor = (dev & 0xff) | ((dev >> 12) & 0xfff00);
    (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12) | ((major & !0xfff) << 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_numbers_convert_both_ways() {
        // 1:3 (/dev/null) is 0x103 in both encodings; 259:70000 needs the high minor bits.
        assert_eq!(rdev_to_stream(0x103), 0x103);
        for (major, minor) in [(1u64, 3u64), (8, 1), (259, 70000), (4095, 0xfffff)] {
            let glibc = (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12);
            let stream = rdev_to_stream(glibc);
            assert_eq!(
                stream,
                (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
            );
            assert_eq!(rdev_from_stream(stream), glibc);
        }
    }
}
