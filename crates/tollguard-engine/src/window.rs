//! Counting windows: calendar periods in the account's zone, and rolling windows in steps.
//!
//! Amounts are integers in ten-thousandths of the currency (exact: costs have four decimals).
//! A calendar window resets exactly when the local period changes; a rolling window drops a
//! step once it is older than the window.

use crate::policy::WindowKind;
#[cfg(test)]
use jiff::civil::DateTime;
use jiff::Timestamp;

/// 16 bytes: the step number fits 32 bits, since steps are 300 s or more and every timestamp
/// lies between -3.8e11 and 2.6e11 s of 1970: steps from -1.26e9 to 8.5e8 (a limit state's
/// memory is most of an account's).
#[derive(Clone, Copy, Debug, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct Bucket {
    step: i32,
    calls: u32,
    spend: i64,
}

/// The step number of `now` in steps of `step_s` seconds (300 or more).
fn step_of(now: Timestamp, step_s: i64) -> i32 {
    debug_assert!(step_s >= 300);
    now.as_second().div_euclid(step_s) as i32
}

/// One window's running totals.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum Window {
    /// Calendar period: the current period's key and totals.
    Calendar {
        /// Which period.
        kind: WindowKind,
        /// The current period (e.g. local days since 1970).
        key: i64,
        /// Spend of ended calls in it.
        spend: i64,
        /// Calls in it.
        calls: u32,
    },
    /// Rolling: `steps` buckets of `step_s` seconds.
    Rolling {
        /// Seconds per step.
        step_s: i64,
        /// Buckets (12 or 24), indexed by step number modulo their count.
        ring: Box<[Bucket]>,
    },
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
pub(crate) fn days_since_epoch(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A local time as seconds since 1970-01-01 00:00 on the local clock: the instant plus the
/// zone's offset then. Windows, the baseline and the night rule need only its day, hour and
/// weekday, which are divisions of it (a calendar date is worked out only for months).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Local {
    secs: i64,
}

impl Local {
    /// `now` on a clock `offset` from UTC.
    pub(crate) fn at(now: Timestamp, offset: jiff::tz::Offset) -> Local {
        // Whole seconds, rounded down (before 1970 a fraction makes the second negative).
        let secs = now.as_second() - i64::from(now.subsec_nanosecond() < 0);
        Local { secs: secs + i64::from(offset.seconds()) }
    }

    /// A local date and time (for tests).
    #[cfg(test)]
    pub(crate) fn new(dt: DateTime) -> Local {
        let days = days_since_epoch(dt.year() as i64, dt.month() as i64, dt.day() as i64);
        Local { secs: days * 86_400 + dt.hour() as i64 * 3600 + dt.minute() as i64 * 60 + dt.second() as i64 }
    }

    /// Days since 1970-01-01 (local date).
    pub(crate) fn day(&self) -> i64 {
        self.secs.div_euclid(86_400)
    }

    /// The hour of the day, 0-23.
    pub(crate) fn hour(&self) -> i64 {
        self.secs.rem_euclid(86_400) / 3600
    }

    /// The minute of the day, 0-1439.
    pub(crate) fn minute_of_day(&self) -> i64 {
        self.secs.rem_euclid(86_400) / 60
    }

    /// Hours since 1970-01-01 00:00 local.
    pub(crate) fn hour_number(&self) -> i64 {
        self.secs.div_euclid(3600)
    }

    /// 0 on Monday, 6 on Sunday (1970-01-01 was a Thursday).
    pub(crate) fn weekday(&self) -> i64 {
        (self.day() + 3).rem_euclid(7)
    }

    /// The local date's month as `year x 12 + month - 1` (a month window's key).
    fn month_number(&self) -> i64 {
        // Howard Hinnant's `civil_from_days`, year and month only.
        let z = self.day() + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        year * 12 + month - 1
    }
}

/// The calendar key of a local time for a window kind.
fn calendar_key(kind: WindowKind, local: Local) -> i64 {
    match kind {
        WindowKind::Hour => local.hour_number(),
        WindowKind::Day => local.day(),
        WindowKind::Week => local.day() - local.weekday(),
        WindowKind::Month => local.month_number(),
        _ => 0,
    }
}

impl Window {
    /// A fresh window.
    pub fn new(kind: WindowKind) -> Window {
        let (step_s, steps) = match kind {
            WindowKind::Rolling1h => (300, 12),
            WindowKind::Rolling24h => (3600, 24),
            WindowKind::Rolling72h => (3 * 3600, 24),
            WindowKind::Rolling7d => (7 * 3600, 24),
            _ => return Window::Calendar { kind, key: i64::MIN, spend: 0, calls: 0 },
        };
        Window::Rolling { step_s, ring: vec![Bucket::default(); steps].into_boxed_slice() }
    }

    /// Moves to the period of `local`; never back (a time before the current period, e.g. a
    /// request's own time in the past, reads the current period).
    /// Returns false when `local` is before the current period.
    fn roll(&mut self, local: Local) -> bool {
        if let Window::Calendar { kind, key, spend, calls } = self {
            let k = calendar_key(*kind, local);
            if k < *key {
                return false;
            }
            if k > *key {
                *key = k;
                *spend = 0;
                *calls = 0;
            }
        }
        true
    }

    /// Adds spend and calls at `now` (`local` is `now` in the account's zone). A time before
    /// the window's current period or span (a late record) is ignored: it no longer counts.
    pub(crate) fn add(&mut self, now: Timestamp, local: Local, spend: i64, calls: u32) {
        if !self.roll(local) {
            return;
        }
        match self {
            Window::Calendar { spend: s, calls: c, .. } => {
                *s += spend;
                *c += calls;
            }
            Window::Rolling { step_s, ring } => {
                let step = step_of(now, *step_s);
                let n = ring.len() as i32;
                let b = &mut ring[step.rem_euclid(n) as usize];
                if b.step > step {
                    return;
                }
                if b.step != step {
                    *b = Bucket { step, spend: 0, calls: 0 };
                }
                b.spend += spend;
                b.calls += calls;
            }
        }
    }

    /// The calendar period the window is in (`None`: a rolling window).
    pub(crate) fn period(&self) -> Option<i64> {
        match self {
            Window::Calendar { key, .. } => Some(*key),
            Window::Rolling { .. } => None,
        }
    }

    /// Totals (spend, calls) inside the window at `now`.
    pub(crate) fn totals(&mut self, now: Timestamp, local: Local) -> (i64, u32) {
        self.roll(local);
        match self {
            Window::Calendar { spend, calls, .. } => (*spend, *calls),
            Window::Rolling { step_s, ring } => {
                let step = step_of(now, *step_s);
                let oldest = step - ring.len() as i32 + 1;
                ring.iter()
                    .filter(|b| b.step >= oldest && b.step <= step)
                    .fold((0, 0), |(s, c), b| (s + b.spend, c + b.calls))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::tz::TimeZone;
    use proptest::prelude::*;

    fn at(s: &str) -> (Timestamp, Local) {
        let t: Timestamp = s.parse().unwrap();
        (t, Local::new(TimeZone::get("Europe/Amsterdam").unwrap().to_datetime(t)))
    }

    #[test]
    fn a_day_resets_exactly_at_local_midnight() {
        let mut w = Window::new(WindowKind::Day);
        let (t, l) = at("2011-06-11T21:59:59Z"); // 23:59:59 CEST
        w.add(t, l, 100, 1);
        assert_eq!(w.totals(t, l), (100, 1));
        let (t, l) = at("2011-06-11T22:00:00Z"); // 00:00:00 CEST, next day
        assert_eq!(w.totals(t, l), (0, 0));
    }

    #[test]
    fn weeks_start_on_monday_and_months_on_the_first() {
        let mut w = Window::new(WindowKind::Week);
        let (t, l) = at("2011-06-12T20:00:00Z"); // Sunday 22:00 CEST
        w.add(t, l, 5, 1);
        let (t, l) = at("2011-06-12T22:00:00Z"); // Monday 00:00 CEST
        assert_eq!(w.totals(t, l), (0, 0));
        let mut m = Window::new(WindowKind::Month);
        let (t, l) = at("2011-06-30T21:00:00Z"); // 23:00 CEST, 30 June
        m.add(t, l, 7, 1);
        let (t2, l2) = at("2011-06-30T21:59:59Z");
        assert_eq!(m.totals(t2, l2), (7, 1));
        let (t, l) = at("2011-06-30T22:00:00Z"); // 1 July
        assert_eq!(m.totals(t, l), (0, 0));
    }

    #[test]
    fn a_rolling_hour_forgets_after_an_hour() {
        let mut w = Window::new(WindowKind::Rolling1h);
        let (t, l) = at("2011-06-11T21:00:00Z");
        w.add(t, l, 100, 1);
        let (t, l) = at("2011-06-11T21:59:59Z");
        assert_eq!(w.totals(t, l), (100, 1));
        let (t, l) = at("2011-06-11T22:00:00Z");
        assert_eq!(w.totals(t, l), (0, 0));
    }

    #[test]
    fn a_late_addition_counts_only_inside_the_window() {
        let mut w = Window::new(WindowKind::Rolling1h);
        let (t, l) = at("2011-06-11T21:00:00Z");
        w.add(t, l, 100, 1);
        let (t2, l2) = at("2011-06-11T20:30:00Z");
        w.add(t2, l2, 5, 0);
        assert_eq!(w.totals(t, l), (105, 1), "half an hour late: still inside");
        let (t3, l3) = at("2011-06-11T22:10:00Z");
        w.add(t3, l3, 1, 0);
        let (t4, l4) = at("2011-06-11T21:05:00Z");
        w.add(t4, l4, 1000, 0);
        assert_eq!(w.totals(t3, l3), (1, 0), "more than an hour before 22:10: not counted");
        let (t5, l5) = at("2011-06-11T21:10:00Z");
        w.add(t5, l5, 1000, 0);
        assert_eq!(w.totals(t3, l3), (1, 0), "the step of 21:10 shares its bucket with 22:10's: untouched");
        let mut d = Window::new(WindowKind::Day);
        let (t, l) = at("2011-06-12T08:00:00Z");
        d.add(t, l, 7, 1);
        let (y, yl) = at("2011-06-11T08:00:00Z");
        d.add(y, yl, 50, 1);
        assert_eq!(d.totals(t, l), (7, 1), "yesterday's record does not count today");
    }

    proptest! {
        /// The day count agrees with jiff's calendar arithmetic.
        #[test]
        fn days_since_epoch_matches_jiff(days in -800_000i64..800_000) {
            let date = jiff::civil::date(1970, 1, 1).checked_add(jiff::Span::new().days(days)).unwrap();
            prop_assert_eq!(days_since_epoch(date.year() as i64, date.month() as i64, date.day() as i64), days);
        }

        /// A local time's day, weekday, hour and month agree with jiff's calendar: in zones ahead
        /// of UTC, behind it, and off the hour, from year -9970 to 9990.
        #[test]
        fn local_agrees_with_jiff(
            secs in -377_000_000_000i64..253_000_000_000,
            nanos in -999_999_999i32..1_000_000_000,
            zone in proptest::sample::select(vec!["Europe/Amsterdam", "America/New_York", "Asia/Kolkata", "Pacific/Chatham", "UTC"]),
        ) {
            let nanos = if secs > 0 { nanos.abs() } else if secs < 0 { -nanos.abs() } else { nanos };
            let tz = TimeZone::get(zone).unwrap();
            let t = Timestamp::new(secs, nanos).unwrap();
            let dt = tz.to_datetime(t);
            let l = Local::at(t, tz.to_offset(t));
            prop_assert_eq!(l, Local::new(dt));
            let days = (dt.date() - jiff::civil::date(1970, 1, 1)).get_days() as i64;
            prop_assert_eq!(l.day(), days);
            prop_assert_eq!(l.hour(), dt.hour() as i64);
            prop_assert_eq!(l.weekday(), dt.weekday().to_monday_zero_offset() as i64);
            prop_assert_eq!(l.hour_number(), days * 24 + dt.hour() as i64);
            prop_assert_eq!(l.month_number(), dt.year() as i64 * 12 + dt.month() as i64 - 1);
        }

        /// Totals are never negative and a rolling window equals a naive sum over its span.
        #[test]
        fn rolling_matches_a_naive_sum(adds in proptest::collection::vec((0i64..20_000, 0i64..1000), 1..60)) {
            let tz = TimeZone::UTC;
            let mut w = Window::new(WindowKind::Rolling1h);
            let mut t0 = 1_300_000_000i64;
            let mut log: Vec<(i64, i64)> = vec![];
            for (gap, amount) in adds {
                t0 += gap;
                let t = Timestamp::from_second(t0).unwrap();
                w.add(t, Local::new(tz.to_datetime(t)), amount, 1);
                log.push((t0, amount));
                let step = t0.div_euclid(300);
                let want: i64 = log.iter().filter(|(s, _)| s.div_euclid(300) > step - 12).map(|(_, a)| a).sum();
                let (got, _) = w.totals(t, Local::new(tz.to_datetime(t)));
                prop_assert!(got >= 0);
                prop_assert_eq!(got, want);
            }
        }
    }
}
