//! Wall-clock timestamps of the request path (`X-Proxy-Received-At`, `X-Proxy-First-Response-At`,
//! the log line's `timestamp`), formatted as RFC 3339 UTC into a stack buffer.
//!
//! Several are formatted per request; chrono's generic formatter allocates and goes through
//! `fmt` machinery for each, which showed in the request path's profile. The output is the same as
//! chrono's `to_rfc3339_opts(SecondsFormat::Nanos | Micros, true)`.

use std::time::{SystemTime, UNIX_EPOCH};

/// Digits of the fraction of a second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    Seconds,
    Micros,
    Nanos,
}

/// `YYYY-MM-DDTHH:MM:SS.fffffffffZ`, at most 30 bytes.
#[derive(Clone, Copy)]
pub struct Rfc3339 {
    bytes: [u8; 30],
    len: usize,
}

impl Rfc3339 {
    /// The current time.
    pub fn now(precision: Precision) -> Self {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Self::at(since_epoch.as_secs(), since_epoch.subsec_nanos(), precision)
    }

    /// The instant `seconds` + `nanos` after the Unix epoch (years up to 9999).
    pub fn at(seconds: u64, nanos: u32, precision: Precision) -> Self {
        let days = seconds / 86_400;
        let second_of_day = seconds % 86_400;
        let (year, month, day) = civil_from_days(days);
        let mut bytes = [0u8; 30];
        write_digits(&mut bytes[0..4], u64::from(year));
        bytes[4] = b'-';
        write_digits(&mut bytes[5..7], u64::from(month));
        bytes[7] = b'-';
        write_digits(&mut bytes[8..10], u64::from(day));
        bytes[10] = b'T';
        write_digits(&mut bytes[11..13], second_of_day / 3600);
        bytes[13] = b':';
        write_digits(&mut bytes[14..16], second_of_day / 60 % 60);
        bytes[16] = b':';
        write_digits(&mut bytes[17..19], second_of_day % 60);
        bytes[19] = b'.';
        let len = match precision {
            Precision::Seconds => 19,
            Precision::Micros => {
                write_digits(&mut bytes[20..26], u64::from(nanos / 1_000));
                26
            }
            Precision::Nanos => {
                write_digits(&mut bytes[20..29], u64::from(nanos));
                29
            }
        };
        bytes[len] = b'Z';
        Self {
            bytes,
            len: len + 1,
        }
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII digits and separators are ever written.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

impl std::fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Writes `value` as zero-padded decimal filling `out` (higher digits are cut).
fn write_digits(out: &mut [u8], mut value: u64) {
    // Two digits per division: the timestamp is written up to three times per request.
    let mut end = out.len();
    while end >= 2 {
        let pair = usize::try_from(value % 100).unwrap_or_default() * 2;
        out[end - 2..end].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
        value /= 100;
        end -= 2;
    }
    if end == 1 {
        out[0] = b'0' + (value % 10) as u8;
    }
}

/// `"00" "01" … "99"`.
const DIGIT_PAIRS: [u8; 200] = {
    let mut pairs = [0u8; 200];
    let mut n = 0;
    while n < 100 {
        pairs[n * 2] = b'0' + (n / 10) as u8;
        pairs[n * 2 + 1] = b'0' + (n % 10) as u8;
        n += 1;
    }
    pairs
};

fn civil_from_days(days: u64) -> (u32, u32, u32) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (
        u32::try_from(year).unwrap_or(9999).min(9999),
        month as u32,
        day as u32,
    )
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, SecondsFormat};

    use super::*;

    #[test]
    fn matches_chrono_across_leap_years_and_month_ends() {
        let instants: [(u64, u32); 8] = [
            (0, 0),
            (951_782_400, 1),             // 2000-02-29
            (951_868_799, 999_999_999),   // 2000-02-29T23:59:59
            (1_709_251_199, 123_456_789), // 2024-02-29T23:59:59
            (1_735_689_599, 5),           // 2024-12-31T23:59:59
            (4_102_444_800, 42_000),      // 2100-01-01
            (1_798_000_000, 987_654_321),
            (253_402_300_799, 999_999_999), // 9999-12-31T23:59:59
        ];
        for (seconds, nanos) in instants {
            let reference = DateTime::from_timestamp(seconds as i64, nanos).unwrap();
            assert_eq!(
                Rfc3339::at(seconds, nanos, Precision::Nanos).as_str(),
                reference.to_rfc3339_opts(SecondsFormat::Nanos, true)
            );
            assert_eq!(
                Rfc3339::at(seconds, nanos, Precision::Micros).as_str(),
                reference.to_rfc3339_opts(SecondsFormat::Micros, true)
            );
            assert_eq!(
                Rfc3339::at(seconds, nanos, Precision::Seconds).as_str(),
                reference.to_rfc3339_opts(SecondsFormat::Secs, true)
            );
        }
    }

    #[test]
    fn now_is_close_to_chrono_now() {
        let ours = Rfc3339::now(Precision::Micros);
        let parsed = DateTime::parse_from_rfc3339(ours.as_str()).unwrap();
        let skew = chrono::Utc::now().signed_duration_since(parsed);
        assert!(skew.num_seconds().abs() < 5, "{ours}");
    }
}
