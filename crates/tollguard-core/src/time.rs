//! Local wall-clock times in a zone, read fast and resolved deterministically.
//!
//! PBXs write local time without an offset (Asterisk's `2023-07-26 01:51:32`). Converting each
//! such string through the zone database costs more than parsing the rest of the row, so
//! [`LocalTimes`] remembers the offsets of the hours it resolved: the common case (rows in time
//! order, no DST change within the hour) is a few integer operations.
//!
//! ## DST gaps and overlaps
//!
//! A local time that falls in a **gap** (clocks jump forward, e.g. 02:30 on the last Sunday of
//! March in Europe/Amsterdam) does not exist; it is read with the offset in force *before* the
//! gap, which moves it forward by the gap's length (02:30 is read as 03:30 CEST). A local time in
//! an **overlap** (clocks go back, 02:30 happens twice) is read as the *first* occurrence (the
//! earlier instant, still on summer time). This is the "compatible" rule of RFC 5545 and jiff;
//! it is fixed, so the same file always gives the same instants.

use jiff::civil::DateTime;
use jiff::tz::{Disambiguation, TimeZone};
use jiff::{SignedDuration, Timestamp};

/// A broken-down local date and time, as read from a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalDateTime {
    /// Year, e.g. 2011.
    pub year: i16,
    /// Month 1-12.
    pub month: i8,
    /// Day 1-31.
    pub day: i8,
    /// Hour 0-23.
    pub hour: i8,
    /// Minute 0-59.
    pub minute: i8,
    /// Second 0-59 (60 is read as 59).
    pub second: i8,
}

impl LocalDateTime {
    /// Parses `YYYY-MM-DD HH:MM:SS` (also with `T` between date and time, and with an optional
    /// fraction of a second, which is dropped). Returns `None` for anything else.
    pub fn parse(s: &[u8]) -> Option<LocalDateTime> {
        if s.len() < 19 {
            return None;
        }
        if s[4] != b'-' || s[7] != b'-' || (s[10] != b' ' && s[10] != b'T') || s[13] != b':' || s[16] != b':'
        {
            return None;
        }
        if s.len() > 19 && (s[19] != b'.' || !s[20..].iter().all(u8::is_ascii_digit)) {
            // Only a fraction of a second may follow.
            return None;
        }
        // Every other byte of the first 19 must be a digit.
        let mut all_digits = true;
        for &i in &[0usize, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18] {
            all_digits &= s[i].is_ascii_digit();
        }
        if !all_digits {
            return None;
        }
        let two = |i: usize| (s[i] - b'0') as i32 * 10 + (s[i + 1] - b'0') as i32;
        let year = two(0) * 100 + two(2);
        let month = two(5);
        let day = two(8);
        let hour = two(11);
        let minute = two(14);
        let second = two(17).min(59);
        if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
            return None;
        }
        Some(LocalDateTime {
            year: year as i16,
            month: month as i8,
            day: day as i8,
            hour: hour as i8,
            minute: minute as i8,
            second: second as i8,
        })
    }

    fn hour_key(&self) -> i64 {
        ((self.year as i64 * 16 + self.month as i64) * 32 + self.day as i64) * 24 + self.hour as i64
    }

    fn civil(&self) -> Option<DateTime> {
        DateTime::new(self.year, self.month, self.day, self.hour, self.minute, self.second, 0).ok()
    }
}

/// Slots of the hour cache (direct-mapped by local hour).
const CACHE_SLOTS: usize = 64;

/// Converts local times in one zone to instants, with a cache of recently seen local hours.
#[derive(Clone, Debug)]
pub struct LocalTimes {
    tz: TimeZone,
    /// (hour key, UTC instant of that local hour's start in seconds) of unambiguous hours,
    /// direct-mapped by hour key: rows from a few interleaved days still hit.
    cache: [(i64, i64); CACHE_SLOTS],
    /// The text up to the minutes (`YYYY-MM-DD HH:`) of the last time [`LocalTimes::read`] took
    /// from the cache, and that hour's start: a record's start, answer and end, and the next
    /// record's, mostly share it.
    last: Option<([u8; 14], i64)>,
}

impl LocalTimes {
    /// Local times in `tz`.
    pub fn new(tz: TimeZone) -> LocalTimes {
        LocalTimes { tz, cache: [(i64::MIN, 0); CACHE_SLOTS], last: None }
    }

    /// [`LocalDateTime::parse`] then [`LocalTimes::resolve`]; `None` when either fails. A time
    /// in the same unambiguous hour as the last one read costs a comparison and four digits.
    pub fn read(&mut self, s: &[u8]) -> Option<Timestamp> {
        if let (19, Some((prefix, base))) = (s.len(), self.last) {
            if s[..14] == prefix && s[16] == b':' {
                let d = |i: usize| s[i].wrapping_sub(b'0') as i64;
                let (m1, m2, s1, s2) = (d(14), d(15), d(17), d(18));
                if m1 < 6 && m2 < 10 && s1 < 10 && s2 < 10 {
                    let within = (m1 * 10 + m2) * 60 + (s1 * 10 + s2).min(59);
                    return Timestamp::from_second(base + within).ok();
                }
            }
        }
        let t = LocalDateTime::parse(s)?;
        let ts = self.resolve(&t)?;
        let key = t.hour_key();
        let (k, base) = self.cache[key.rem_euclid(CACHE_SLOTS as i64) as usize];
        if k == key && s.len() == 19 {
            let mut prefix = [0; 14];
            prefix.copy_from_slice(&s[..14]);
            self.last = Some((prefix, base));
        }
        Some(ts)
    }

    /// The zone.
    pub fn zone(&self) -> &TimeZone {
        &self.tz
    }

    /// The instant of a local time, with gaps and overlaps resolved as the module says.
    /// `None` when the date does not exist (e.g. 31 February).
    pub fn resolve(&mut self, t: &LocalDateTime) -> Option<Timestamp> {
        let key = t.hour_key();
        let within = t.minute as i64 * 60 + t.second as i64;
        let slot = key.rem_euclid(CACHE_SLOTS as i64) as usize;
        let (k, base) = self.cache[slot];
        if k == key {
            return Timestamp::from_second(base + within).ok();
        }
        let civil = t.civil()?;
        let hour_start = civil.with().minute(0).second(0).build().ok()?;
        let hour_end = civil.with().minute(59).second(59).build().ok()?;
        let start = self.tz.to_ambiguous_timestamp(hour_start);
        let end = self.tz.to_ambiguous_timestamp(hour_end);
        let ts = self.tz.to_ambiguous_timestamp(civil).disambiguate(Disambiguation::Compatible).ok()?;
        if start.is_ambiguous() || end.is_ambiguous() {
            return Some(ts);
        }
        let s = start.unambiguous().ok()?;
        let e = end.unambiguous().ok()?;
        if e.duration_since(s) == SignedDuration::from_secs(3599) {
            self.cache[slot] = (key, s.as_second());
        }
        Some(ts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(tz: &str, s: &str) -> String {
        let mut lt = LocalTimes::new(TimeZone::get(tz).unwrap());
        lt.resolve(&LocalDateTime::parse(s.as_bytes()).unwrap()).unwrap().to_string()
    }

    #[test]
    fn parses_asterisk_times() {
        let t = LocalDateTime::parse(b"2023-07-26 01:51:32").unwrap();
        assert_eq!((t.year, t.month, t.day, t.hour, t.minute, t.second), (2023, 7, 26, 1, 51, 32));
        assert!(LocalDateTime::parse(b"2020/2/10 22:41").is_none());
        assert!(LocalDateTime::parse(b"2023-13-26 01:51:32").is_none());
        assert!(LocalDateTime::parse(b"2023-07-26 01:51:32.125").is_some());
        assert!(LocalDateTime::parse(b"2023-07-26 01:51:32x").is_none());
        // found by fuzzing: a blank where a digit belongs (overflowed in debug builds)
        assert!(LocalDateTime::parse(b"2009-04-23 1 :16:52").is_none());
    }

    #[test]
    fn read_agrees_with_parse_then_resolve_across_dst_and_bad_text() {
        let tz = TimeZone::get("Europe/Amsterdam").unwrap();
        let (mut fast, mut slow) = (LocalTimes::new(tz.clone()), LocalTimes::new(tz));
        let mut texts = vec![];
        // every 7 minutes 13 seconds across the night clocks go back, and the one they go forward
        for day in ["2024-10-26", "2024-10-27", "2024-03-31"] {
            for k in 0..200 {
                let s = k * 433 % 86_400;
                texts.push(format!("{day} {:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60));
            }
        }
        // before any time was read there is no prefix to match (a field of NULs once matched one)
        assert_eq!(fast.read(b"\0\0\0\0\0\0\0\0\0\0\0\0\0\x0012:34"), None);
        let odd = [
            "2024-10-27 02:6x:00",
            "2024-10-27 02:60:00",
            "2024-10-27 02:59:60",
            "2024-10-27 02:5",
            "2024-10-27T02:10:00",
            "2024-10-27 02:10:00.5",
            "2024-02-30 02:10:00",
        ];
        for (i, t) in odd.iter().enumerate() {
            texts.insert(40 * i + 1, t.to_string());
        }
        for t in &texts {
            let want = LocalDateTime::parse(t.as_bytes()).and_then(|l| slow.resolve(&l));
            assert_eq!(fast.read(t.as_bytes()), want, "{t}");
        }
    }

    #[test]
    fn ordinary_times_use_the_zone_offset() {
        assert_eq!(at("Europe/Amsterdam", "2011-06-11 23:10:00"), "2011-06-11T21:10:00Z");
        assert_eq!(at("UTC", "2011-06-11 23:10:00"), "2011-06-11T23:10:00Z");
    }

    #[test]
    fn gap_moves_forward_and_overlap_takes_the_first() {
        // 2011-03-27 02:30 does not exist in Amsterdam: read as 03:30 CEST = 01:30Z.
        assert_eq!(at("Europe/Amsterdam", "2011-03-27 02:30:00"), "2011-03-27T01:30:00Z");
        // 2011-10-30 02:30 happens twice: the first (CEST, +02) is taken = 00:30Z.
        assert_eq!(at("Europe/Amsterdam", "2011-10-30 02:30:00"), "2011-10-30T00:30:00Z");
    }

    #[test]
    fn the_cache_agrees_with_the_zone_database() {
        let tz = TimeZone::get("Europe/Amsterdam").unwrap();
        let mut lt = LocalTimes::new(tz.clone());
        for day in [26, 27, 28] {
            for hour in 0..24 {
                for minute in [0, 29, 59] {
                    let s = format!("2011-03-{day:02} {hour:02}:{minute:02}:07");
                    let t = LocalDateTime::parse(s.as_bytes()).unwrap();
                    let fast = lt.resolve(&t).unwrap();
                    let slow = tz
                        .to_ambiguous_timestamp(t.civil().unwrap())
                        .disambiguate(Disambiguation::Compatible)
                        .unwrap();
                    assert_eq!(fast, slow, "{s}");
                }
            }
        }
    }
}
