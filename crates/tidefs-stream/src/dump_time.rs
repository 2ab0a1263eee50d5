//! Timestamps as `btrfs receive --dump` (btrfs-progs 6.2) prints them.
//!
//! progs formats each time with `localtime_r()` and `strftime("%FT%T%z")`, so the output
//! depends on the `TZ` environment variable of the process (or `/etc/localtime` when `TZ`
//! is unset), has no nanoseconds, and mirrors glibc's quirks:
//!
//! * the wire's u64 seconds are cast to `time_t` (i64): `u64::MAX` is one second before
//!   the epoch;
//! * `%Y` prints the year without padding or sign for years 0..: `0-01-01`, `-1-12-31`,
//!   `10000-01-01`; glibc computes it as `tm_year + 1900` in a C int, so it wraps;
//! * `localtime_r` fails when `year - 1900` does not fit a C int; progs then fails the
//!   whole dump ("failed to convert time");
//! * `%z` is `±hhmm` of the UTC offset truncated to minutes (LMT offsets have seconds).
//!
//! * a `TZ` that is a POSIX rule (`EST5EDT,M3.2.0,M11.1.0`) rather than a zone file: glibc
//!   computes the rule's change times for years before 1970 as if in 1970 (`compute_change`
//!   starts from the epoch), so every earlier instant gets the offset in force at the
//!   epoch: standard time for northern rules, daylight time for southern ones;
//! * the same function counts the days to January 1st of the year in a C int, which wraps
//!   from the year 5,881,581 on: there the rule's change times land millions of years away
//!   and the instant gets the offset of early January (standard time for northern rules,
//!   daylight time for southern ones). This applies wherever the rule does: POSIX `TZ`
//!   values and the footer rule of zone files after their last transition.
//!
//! The offset rules come from jiff, which reads the same TZif files and POSIX `TZ` strings
//! as glibc. jiff covers the years -9999..=9999; outside that range the instant is moved by
//! whole 400-year Gregorian cycles (which repeat dates and weekdays exactly) into range,
//! which gives the offset glibc's POSIX footer rule gives.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use jiff::tz::TimeZone;
use jiff::Timestamp;

/// Seconds in 400 Gregorian years (146097 days).
const GREGORIAN_CYCLE_SECONDS: i128 = 146_097 * 86_400;

/// 9600-01-01T00:00:00Z: an instant governed by a zone's long-term rule (after every
/// transition of any zone file), at the start of a year, in jiff's range.
const RULE_JANUARY_SECONDS: i64 = 240_779_520_000;

/// glibc's default zone file when `TZ` is unset.
const LOCALTIME_PATH: &str = "/etc/localtime";

/// glibc's default zoneinfo directory when `TZDIR` is unset.
const ZONEINFO_DIR: &str = "/usr/share/zoneinfo";

/// The time zone the dump prints times in.
#[derive(Debug, Clone)]
pub struct DumpTimeZone {
    zone: TimeZone,
    /// The zone came from a POSIX rule string: instants before the epoch use the epoch's
    /// offset, as glibc's `compute_change` does.
    posix_rule: bool,
}

/// A time that glibc's `localtime_r` cannot convert (the year does not fit a C int).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeOutOfRange;

impl DumpTimeZone {
    /// Coordinated Universal Time.
    pub fn utc() -> Self {
        DumpTimeZone {
            zone: TimeZone::UTC,
            posix_rule: false,
        }
    }

    /// The zone glibc would use for this process: `TZ`, else `/etc/localtime`.
    pub fn from_environment() -> Self {
        let tz = std::env::var_os("TZ");
        let tzdir = std::env::var_os("TZDIR");
        Self::from_tz_value(tz.as_deref(), tzdir.as_deref())
    }

    /// The zone glibc's `tzset()` picks for a `TZ` value (`None` = unset) and a `TZDIR`
    /// value: empty means UTC; a leading `:` is dropped; an absolute name is a TZif file,
    /// a relative one a file under `TZDIR` (default `/usr/share/zoneinfo`); otherwise a
    /// POSIX rule such as `EST5EDT,M3.2.0,M11.1.0`; failing all of that, UTC.
    pub fn from_tz_value(tz: Option<&OsStr>, tzdir: Option<&OsStr>) -> Self {
        let file_zone = |zone: Option<TimeZone>| zone.map(|zone| (zone, false));
        let zone = match tz.map(OsStr::as_bytes) {
            None => file_zone(load_tzif(Path::new(LOCALTIME_PATH))),
            Some(b"") => Some((TimeZone::UTC, false)),
            Some(value) => {
                let name = value.strip_prefix(b":").unwrap_or(value);
                let name_os = OsStr::from_bytes(name);
                let file = if name.first() == Some(&b'/') {
                    PathBuf::from(name_os)
                } else {
                    let dir = tzdir
                        .filter(|dir| !dir.is_empty())
                        .unwrap_or(OsStr::new(ZONEINFO_DIR));
                    Path::new(dir).join(name_os)
                };
                file_zone(load_tzif(&file)).or_else(|| {
                    std::str::from_utf8(name)
                        .ok()
                        .and_then(|rule| TimeZone::posix(rule).ok())
                        .map(|zone| (zone, true))
                })
            }
        };
        let (zone, posix_rule) = zone.unwrap_or((TimeZone::UTC, false));
        DumpTimeZone { zone, posix_rule }
    }

    /// A zone from a TZif file's bytes.
    pub fn from_tzif(bytes: &[u8]) -> Option<Self> {
        TimeZone::tzif("dump", bytes).ok().map(|zone| DumpTimeZone {
            zone,
            posix_rule: false,
        })
    }

    /// UTC offset in seconds at `time` seconds since the epoch.
    pub fn offset_seconds(&self, time: i64) -> i32 {
        let min = i128::from(Timestamp::MIN.as_second());
        let max = i128::from(Timestamp::MAX.as_second());
        let time = if self.posix_rule && time < 0 {
            0
        } else if rule_days_wrap(time) {
            RULE_JANUARY_SECONDS
        } else {
            time
        };
        let mut shifted = i128::from(time);
        if shifted > max {
            let cycles = (shifted - max + GREGORIAN_CYCLE_SECONDS - 1) / GREGORIAN_CYCLE_SECONDS;
            shifted -= cycles * GREGORIAN_CYCLE_SECONDS;
        } else if shifted < min {
            let cycles = (min - shifted + GREGORIAN_CYCLE_SECONDS - 1) / GREGORIAN_CYCLE_SECONDS;
            shifted += cycles * GREGORIAN_CYCLE_SECONDS;
        }
        // In range by construction; fall back to UTC rather than panic if jiff disagrees.
        i64::try_from(shifted)
            .ok()
            .and_then(|second| Timestamp::from_second(second).ok())
            .map(|timestamp| self.zone.to_offset(timestamp).seconds())
            .unwrap_or(0)
    }
}

/// Whether glibc's `compute_change` overflows its C int day count for the UTC year of
/// `time` (days from 1970-01-01 to January 1st of that year above `i32::MAX`).
fn rule_days_wrap(time: i64) -> bool {
    let (year, _, _) = civil_from_days(i128::from(time).div_euclid(86_400));
    days_from_civil(year, 1, 1) > i128::from(i32::MAX)
}

fn load_tzif(path: &Path) -> Option<TimeZone> {
    let bytes = fs::read(path).ok()?;
    TimeZone::tzif(&path.to_string_lossy(), &bytes).ok()
}

/// Formats a wire timestamp (seconds) as `strftime("%FT%T%z")` of `localtime_r()` does.
pub fn format_dump_time(seconds: u64, zone: &DumpTimeZone) -> Result<String, TimeOutOfRange> {
    // progs stores the u64 in a time_t.
    let time = seconds as i64;
    let offset = zone.offset_seconds(time);
    let local = i128::from(time) + i128::from(offset);
    let days = local.div_euclid(86_400);
    let second_of_day = local.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let tm_year = i32::try_from(year - 1900).map_err(|_| TimeOutOfRange)?;
    let printed_year = tm_year.wrapping_add(1900);
    let sign = if offset < 0 { '-' } else { '+' };
    let offset_minutes = offset.unsigned_abs() / 60;
    Ok(format!(
        "{printed_year}-{month:02}-{day:02}T{:02}:{:02}:{:02}{sign}{:02}{:02}",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60,
        offset_minutes / 60,
        offset_minutes % 60,
    ))
}

/// Proleptic Gregorian date of a day number (days since 1970-01-01), after Howard
/// Hinnant's `civil_from_days`, in i128 so no input can overflow.
fn civil_from_days(days: i128) -> (i128, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i128::from(month <= 2);
    (year, month, day)
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i128, month: u32, day: u32) -> i128 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month = i128::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i128::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(seconds: u64) -> String {
        format_dump_time(seconds, &DumpTimeZone::utc()).unwrap()
    }

    // Expected strings were produced by glibc 2.36 (`localtime_r` + `strftime`) with TZ=UTC.
    #[test]
    fn utc_matches_glibc_including_odd_years() {
        assert_eq!(utc(0), "1970-01-01T00:00:00+0000");
        assert_eq!(utc(1_700_000_000), "2023-11-14T22:13:20+0000");
        assert_eq!(utc(u64::MAX), "1969-12-31T23:59:59+0000");
        assert_eq!(utc((-62_135_596_801i64) as u64), "0-12-31T23:59:59+0000");
        assert_eq!(utc((-62_167_219_201i64) as u64), "-1-12-31T23:59:59+0000");
        assert_eq!(
            utc((-100_000_000_000i64) as u64),
            "-1199-02-15T14:13:20+0000"
        );
        assert_eq!(utc(253_402_300_800), "10000-01-01T00:00:00+0000");
        assert_eq!(
            utc(67_767_976_233_532_799),
            "2147483647-12-31T23:59:59+0000"
        );
        assert_eq!(
            utc(67_767_976_233_532_800),
            "-2147483648-01-01T00:00:00+0000"
        );
        assert_eq!(
            utc((-67_768_040_609_740_800i64) as u64),
            "-2147481748-01-01T00:00:00+0000"
        );
    }

    #[test]
    fn years_beyond_a_c_int_fail_like_localtime_r() {
        let zone = DumpTimeZone::utc();
        assert_eq!(
            format_dump_time((-67_768_040_609_740_801i64) as u64, &zone),
            Err(TimeOutOfRange)
        );
        assert_eq!(
            format_dump_time(i64::MIN as u64, &zone),
            Err(TimeOutOfRange)
        );
    }

    #[test]
    fn posix_rule_zones_apply_dst_and_negative_offsets() {
        let zone = DumpTimeZone::from_tz_value(Some(OsStr::new("EST5EDT,M3.2.0,M11.1.0")), None);
        // glibc 2.36, TZ='EST5EDT,M3.2.0,M11.1.0'.
        assert_eq!(
            format_dump_time(1_700_000_000, &zone).unwrap(),
            "2023-11-14T17:13:20-0500"
        );
        assert_eq!(
            format_dump_time(1_690_000_000, &zone).unwrap(),
            "2023-07-22T00:26:40-0400"
        );
    }

    #[test]
    fn posix_rules_before_1970_use_the_epoch_offset_like_glibc() {
        // glibc 2.36: TZ='EST5EDT,M3.2.0,M11.1.0' prints 945-08-13T18:26:06-0500 for this
        // August instant (no DST), and a southern rule is in DST all year before 1970.
        let north = DumpTimeZone::from_tz_value(Some(OsStr::new("EST5EDT,M3.2.0,M11.1.0")), None);
        let august_945 = -32_326_389_234i64;
        assert_eq!(north.offset_seconds(august_945), -5 * 3600);
        let south =
            DumpTimeZone::from_tz_value(Some(OsStr::new("AEST-10AEDT,M10.1.0,M4.1.0/3")), None);
        assert_eq!(
            south.offset_seconds(-15_000_000),
            11 * 3600,
            "1969-07: DST as at the epoch"
        );
        assert_eq!(
            south.offset_seconds(15_000_000),
            10 * 3600,
            "1970-06: standard time"
        );
    }

    #[test]
    fn years_past_the_c_int_day_count_use_january_offsets_like_glibc() {
        // glibc 2.36, TZ=America/St_Johns: 71358665-06-19T10:24:08-0330 (June, yet NST).
        let zone = DumpTimeZone::from_tz_value(Some(OsStr::new("America/St_Johns")), None);
        if zone.offset_seconds(1_690_000_000) == 0 {
            return; // no tzdata installed
        }
        let seconds = 2_251_799_813_685_248u64;
        assert_eq!(
            format_dump_time(seconds, &zone).unwrap(),
            "71358665-06-19T10:24:08-0330"
        );
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert!(!rule_days_wrap(253_402_300_800));
    }

    #[test]
    fn empty_and_garbage_tz_mean_utc() {
        for value in ["", "NoSuchZone"] {
            let zone = DumpTimeZone::from_tz_value(Some(OsStr::new(value)), None);
            assert_eq!(zone.offset_seconds(1_700_000_000), 0, "{value:?}");
        }
    }

    #[test]
    fn far_future_offset_follows_the_rule_of_the_equivalent_year() {
        let zone = DumpTimeZone::from_tz_value(Some(OsStr::new("EST5EDT,M3.2.0,M11.1.0")), None);
        // 400 Gregorian years later the same date has the same weekday, so the same offset.
        let july = 1_690_000_000i64;
        let far = july + 25 * GREGORIAN_CYCLE_SECONDS as i64;
        assert_eq!(zone.offset_seconds(far), zone.offset_seconds(july));
        assert_eq!(zone.offset_seconds(far), -4 * 3600);
    }
}
