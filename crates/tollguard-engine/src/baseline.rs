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

use crate::window::Local;

/// Earlier weeks kept.
pub const WEEKS: usize = 3;

/// Earlier weeks with traffic needed before the rule speaks.
pub const MIN_WEEKS: usize = 2;

/// The learned level is never below this, in ten-thousandths (EUR 40).
pub const FLOOR_UNITS: i64 = 40 * 10_000;

const SLOTS: usize = 168;
const UNUSED: i64 = i64::MIN;

/// One account's hourly spend history.
#[derive(Clone, Debug)]
pub struct Baseline {
    /// Spend per hour-of-week in cents, one row per week (the current one included).
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
}

/// The usual level of an hour, as learned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
}
