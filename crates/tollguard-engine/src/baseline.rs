//! Learned baselines: what an account usually spends in each hour of the week.
//!
//! Every account keeps the outbound spend of each local hour (Monday 00:00 is hour 0 of 168)
//! for the current week and the [`WEEKS`] before it, in cents (saturating at EUR 655.35 an
//! hour, far above any threshold). The usual level of an hour is taken from the same hour and
//! its two neighbours in those earlier weeks — up to 9 samples — with robust statistics: the
//! median `m` and the median absolute deviation `d`, so one unusual week (a campaign, or an
//! earlier attack) does not move it. The learned level is `max(FLOOR, 4 m + 8 d)`; spend in
//! the hour (ended calls plus what running calls have cost so far) above it raises a warning,
//! above twice it a critical alert.
//!
//! Warm-up: until an account has traffic in at least [`MIN_WEEKS`] of those weeks the rule is
//! silent (fixed limits and the risk-tier rules protect it meanwhile).
//!
//! Typical concurrency ([`Peaks`]): the most priced outbound calls an account had running at
//! once on each of the last [`PEAK_DAYS`] local days (today and the 27 before it, which are
//! what is read), in office hours (Monday to Friday,
//! 08:00-18:00 local) and outside them. Its usual peak in a part of the week is the second
//! highest of those days' (one odd day does not move it); the learned level is twice that, and
//! never below [`PEAK_FLOOR`] nor below the usual office-hours peak (a weekend shift at weekday
//! strength is not unusual). A call that takes the account above it raises a warning, once a
//! day and part. Warm-up: silent until [`PEAK_MIN_DAYS`] of those days had calls.

use crate::window::Local;

/// Earlier weeks kept.
pub const WEEKS: usize = 3;

/// Earlier weeks with traffic needed before the rule speaks.
pub const MIN_WEEKS: usize = 2;

/// The learned level is never below this, in ten-thousandths (EUR 40).
pub const FLOOR_UNITS: i64 = 40 * 10_000;

pub(crate) const SLOTS: usize = 168;
const UNUSED: i64 = i64::MIN;

/// One account's hourly spend history.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Baseline {
    /// Spend per hour-of-week in cents, one row per week (the current one included).
    #[serde(with = "crate::snapshot::weeks")]
    rows: [[u16; SLOTS]; WEEKS + 1],
    /// The week number of each row ([`UNUSED`]: none).
    row_week: [i64; WEEKS + 1],
    /// The current local hour (hours since 1970-01-01 00:00 local) and its ended spend.
    hour: i64,
    spend: i64,
    /// Level alerted in the current hour: 0 none, 1 warning, 2 critical.
    pub alerted: u8,
    /// The last [`Baseline::usual`] answer and its hour number (the history it reads changes
    /// only when the hour rolls, which forgets it).
    cached: Option<(i64, Option<Usual>)>,
    /// Daily concurrency peaks.
    pub(crate) peaks: Peaks,
}

/// The usual level of an hour, as learned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Usual {
    /// Median of the samples, ten-thousandths.
    pub median: i64,
    /// Median absolute deviation, ten-thousandths.
    pub mad: i64,
    /// Samples used.
    pub samples: usize,
    /// The learned level (warning); twice it is critical.
    pub level: i64,
}

/// Days of concurrency peaks kept.
pub const PEAK_DAYS: usize = 28;

/// Days with calls needed before the concurrency rule speaks.
pub const PEAK_MIN_DAYS: usize = 7;

/// The learned concurrency level is never below this many calls at once.
pub const PEAK_FLOOR: u32 = 4;

/// One account's daily concurrency peaks.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Peaks {
    /// Most priced outbound calls at once, per local day (day number modulo [`PEAK_DAYS`]), in
    /// office hours (0) and outside them (1).
    peaks: [[u8; 2]; PEAK_DAYS],
    /// The latest day recorded ([`UNUSED`]: none).
    day: i64,
    /// The day each part last alerted.
    alerted: [i64; 2],
    /// The last [`Peaks::usual`] answer, for its day and part (the history it reads changes
    /// only when the day does).
    cached: Option<(i64, usize, Option<UsualPeak>)>,
}

/// The usual concurrency of a part of the week, as learned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UsualPeak {
    /// The usual peak of this part (the second highest day's).
    pub peak: u32,
    /// The usual peak in office hours.
    pub office_peak: u32,
    /// Days with calls among those read.
    pub days: usize,
    /// Calls at once above this are unusual.
    pub level: u32,
}

impl Default for Peaks {
    fn default() -> Peaks {
        Peaks { peaks: [[0; 2]; PEAK_DAYS], day: UNUSED, alerted: [UNUSED; 2], cached: None }
    }
}

impl Peaks {
    /// 0 in office hours (Monday to Friday, 08:00-18:00 local), 1 outside them.
    pub(crate) fn part(local: Local) -> usize {
        usize::from(local.weekday() >= 5 || !(8..18).contains(&local.hour()))
    }

    /// A call starts at `local`, making `running` priced outbound calls at once: kept as the
    /// day's peak. Returns the usual concurrency when `running` is above its level, and whether
    /// that is news today (no warning yet in this part of the day).
    pub(crate) fn start(&mut self, local: Local, running: usize) -> Option<(UsualPeak, bool)> {
        let (day, part) = (local.day(), Peaks::part(local));
        if self.day != UNUSED && day <= self.day - PEAK_DAYS as i64 {
            // Older than every day kept (a clock set back by weeks): its slot is a recent day's.
            return None;
        }
        if self.day == UNUSED || day >= self.day + PEAK_DAYS as i64 {
            self.peaks = [[0; 2]; PEAK_DAYS];
            self.day = day;
        }
        while self.day < day {
            self.day += 1;
            self.peaks[self.day.rem_euclid(PEAK_DAYS as i64) as usize] = [0; 2];
        }
        let usual = self.usual(day, part);
        let n = running.min(u8::MAX as usize) as u8;
        let today = &mut self.peaks[day.rem_euclid(PEAK_DAYS as i64) as usize][part];
        *today = (*today).max(n);
        let usual = usual.filter(|u| running as u32 > u.level)?;
        let news = self.alerted[part] != day;
        self.alerted[part] = day;
        Some((usual, news))
    }

    /// The usual concurrency of `part`, from the days before `day`; `None` in warm-up.
    fn usual(&mut self, day: i64, part: usize) -> Option<UsualPeak> {
        if let Some((d, p, usual)) = self.cached {
            if (d, p) == (day, part) {
                return usual;
            }
        }
        let today = day.rem_euclid(PEAK_DAYS as i64) as usize;
        let (mut days, mut top, mut office) = (0, [0u32; 2], [0u32; 2]);
        let second = |top: &mut [u32; 2], x: u32| {
            if x > top[0] {
                *top = [x, top[0]];
            } else if x > top[1] {
                top[1] = x;
            }
        };
        for (i, p) in self.peaks.iter().enumerate() {
            if i == today || p == &[0, 0] {
                continue;
            }
            days += 1;
            second(&mut top, p[part] as u32);
            second(&mut office, p[0] as u32);
        }
        let usual = (days >= PEAK_MIN_DAYS).then(|| UsualPeak {
            peak: top[1],
            office_peak: office[1],
            days,
            level: (2 * top[1]).max(office[1]).max(PEAK_FLOOR),
        });
        self.cached = Some((day, part, usual));
        usual
    }
}

/// Monday-based week number of an hour number (1970-01-01 was a Thursday).
fn week_of(hour: i64) -> i64 {
    (hour.div_euclid(24) + 3).div_euclid(7)
}

fn slot_of(hour: i64) -> usize {
    ((hour.div_euclid(24) + 3).rem_euclid(7) * 24 + hour.rem_euclid(24)) as usize
}

impl Default for Baseline {
    fn default() -> Baseline {
        Baseline {
            rows: [[0; SLOTS]; WEEKS + 1],
            row_week: [UNUSED; WEEKS + 1],
            hour: UNUSED,
            spend: 0,
            alerted: 0,
            cached: None,
            peaks: Peaks::default(),
        }
    }
}

impl Baseline {
    /// Moves to the hour of `local`, storing the hour that ended.
    fn roll(&mut self, local: Local) {
        let h = local.hour_number();
        if h == self.hour {
            return;
        }
        self.cached = None;
        if self.hour != UNUSED {
            let (hour, spend) = (self.hour, self.spend);
            let w = week_of(hour);
            let r = w.rem_euclid(WEEKS as i64 + 1) as usize;
            if self.row_week[r] != w {
                self.rows[r] = [0; SLOTS];
                self.row_week[r] = w;
            }
            self.rows[r][slot_of(hour)] = (spend / 100).clamp(0, u16::MAX as i64) as u16;
        }
        // The current week has a row from its first hour, so a quiet week counts as a week of
        // no spend once it has had traffic.
        let w = week_of(h);
        let r = w.rem_euclid(WEEKS as i64 + 1) as usize;
        if self.row_week[r] != w {
            self.rows[r] = [0; SLOTS];
            self.row_week[r] = w;
        }
        self.hour = h;
        self.spend = 0;
        self.alerted = 0;
    }

    /// Adds the cost of a call that ended at `local`.
    pub(crate) fn add(&mut self, local: Local, units: i64) {
        self.roll(local);
        self.spend += units;
    }

    /// Ended spend in the hour of `local`.
    pub(crate) fn this_hour(&mut self, local: Local) -> i64 {
        self.roll(local);
        self.spend
    }

    /// The usual level of the hour of `local`; `None` during warm-up.
    pub(crate) fn usual(&mut self, local: Local) -> Option<Usual> {
        let h = local.hour_number();
        if let Some((at, usual)) = self.cached {
            if at == h {
                return usual;
            }
        }
        let usual = self.learned(h);
        self.cached = Some((h, usual));
        usual
    }

    fn learned(&self, h: i64) -> Option<Usual> {
        let w = week_of(h);
        let s = slot_of(h);
        let mut samples = [0i64; WEEKS * 3];
        let (mut n, mut weeks) = (0, 0);
        for (row, &rw) in self.rows.iter().zip(&self.row_week) {
            if rw == UNUSED || rw >= w || rw < w - WEEKS as i64 {
                continue;
            }
            weeks += 1;
            for k in [SLOTS - 1, 0, 1] {
                samples[n] = row[(s + k) % SLOTS] as i64 * 100;
                n += 1;
            }
        }
        if weeks < MIN_WEEKS {
            return None;
        }
        let median = median_of(&mut samples[..n]);
        let mut dev = [0i64; WEEKS * 3];
        for (d, x) in dev.iter_mut().zip(&samples[..n]) {
            *d = (x - median).abs();
        }
        let mad = median_of(&mut dev[..n]);
        let level = (4 * median + 8 * mad).max(FLOOR_UNITS);
        Some(Usual { median, mad, samples: n, level })
    }
}

/// The median (the lower middle value of an even count).
fn median_of(xs: &mut [i64]) -> i64 {
    xs.sort_unstable();
    xs[(xs.len() - 1) / 2]
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn at(y: i16, m: i8, d: i8, h: i8) -> Local {
        Local::new(date(y, m, d).at(h, 30, 0, 0))
    }

    #[test]
    fn weeks_and_slots_start_on_monday_at_midnight() {
        // 2026-01-05 is a Monday.
        assert_eq!(slot_of(at(2026, 1, 5, 0).hour_number()), 0);
        assert_eq!(slot_of(at(2026, 1, 11, 23).hour_number()), 167);
        assert_eq!(week_of(at(2026, 1, 11, 23).hour_number()) + 1, week_of(at(2026, 1, 12, 0).hour_number()));
    }

    #[test]
    fn silent_until_two_earlier_weeks_then_robust_to_one_odd_week() {
        let mut b = Baseline::default();
        // Tuesdays 14:00: EUR 10 in the first week.
        b.add(at(2026, 1, 6, 14), 100_000);
        assert_eq!(b.usual(at(2026, 1, 13, 14)), None, "one earlier week is warm-up");
        // EUR 12 the second week, and a EUR 600 hour the third (a campaign or an attack).
        b.add(at(2026, 1, 13, 14), 120_000);
        b.add(at(2026, 1, 20, 14), 6_000_000);
        b.add(at(2026, 1, 27, 9), 0);
        let u = b.usual(at(2026, 1, 27, 14)).unwrap();
        assert_eq!(u.samples, 9);
        // Samples: 10, 12, 600 and six zero neighbours: median 0, MAD 0 -> the floor.
        assert_eq!((u.median, u.mad, u.level), (0, 0, FLOOR_UNITS));
        // The odd week does not lift the level; the floor protects small accounts.
        assert!(u.level < 600 * 10_000);
    }

    #[test]
    fn a_busy_hour_learns_a_higher_level() {
        let mut b = Baseline::default();
        for (day, spend) in [(5, 50), (12, 60), (19, 70)] {
            for h in 13..16 {
                b.add(at(2026, 1, day, h), spend * 10_000);
            }
        }
        b.add(at(2026, 1, 26, 8), 0);
        let u = b.usual(at(2026, 1, 26, 14)).unwrap();
        assert_eq!((u.median, u.mad), (600_000, 100_000));
        assert_eq!(u.level, 4 * 600_000 + 8 * 100_000);
        // The current hour counts only its own ended spend.
        assert_eq!(b.this_hour(at(2026, 1, 26, 14)), 0);
        b.add(at(2026, 1, 26, 14), 5);
        assert_eq!(b.this_hour(at(2026, 1, 26, 14)), 5);
    }

    #[test]
    fn concurrency_peaks_learn_each_part_of_the_week_and_warn_once_a_day() {
        let mut p = Peaks::default();
        // Two weeks of office days with up to 3 calls at once (one day 9), nights with 1.
        // 2026-01-05 is a Monday.
        for day in 5..19i8 {
            let office = at(2026, 1, day, 10);
            if office.weekday() < 5 {
                for n in 1..=if day == 7 { 9 } else { 3 } {
                    assert_eq!(p.start(office, n), None, "warm-up, then within the level");
                }
            }
            assert_eq!(p.start(at(2026, 1, day, 22), 1), None);
        }
        // At night: twice the usual 1 is below the floor of 4, and the office peak of 3 is
        // usual at night too (a weekend shift).
        let night = at(2026, 1, 19, 23);
        assert_eq!(p.start(night, 4), None);
        let (u, news) = p.start(night, 5).unwrap();
        assert_eq!((u.peak, u.office_peak, u.days, u.level, news), (1, 3, 14, 4, true));
        assert_eq!(p.start(night, 6).map(|(_, news)| news), Some(false), "once a day");
        // The next night warns again: one such night is not yet usual.
        assert_eq!(p.start(at(2026, 1, 20, 23), 5).map(|(_, news)| news), Some(true));
        // The odd office day of 9 does not count: the usual office peak is 3, its level 6.
        let office = at(2026, 1, 21, 11);
        assert_eq!(p.start(office, 6), None);
        let (u, news) = p.start(office, 7).unwrap();
        assert_eq!((u.peak, u.office_peak, u.level, news), (3, 3, 6, true));
        // A time four weeks back is no day kept: not counted, nothing said.
        assert_eq!(p.start(at(2025, 12, 20, 23), 50), None);
        // (Its slot is 17 January's: nights there stay 1, the two last nights' 6 and 5 lead.)
        assert_eq!(p.start(at(2026, 1, 21, 23), 11).map(|(u, _)| u.peak), Some(5), "the ring as it was");
        // Four weeks later every day has gone: warm-up again.
        assert_eq!(p.start(at(2026, 2, 20, 23), 50), None);
    }
}
