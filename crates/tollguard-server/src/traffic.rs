//! The whole service's traffic, for the dashboard's overview: attempts per second over the last
//! minute, and spend per hour over the last four weeks, so that each hour of the last day can
//! be drawn against the same hour of the three weeks before (the usual band).
//!
//! Fed with every decision and every charge as they happen (and from the event log on start),
//! kept in fixed rings: reading it costs the same with ten accounts or ten thousand.

use jiff::Timestamp;
use tollguard_engine::Effect;

/// Seconds of attempts kept.
const SECONDS: usize = 60;
/// Hours of spend kept: four weeks and a day.
pub const HOURS: usize = 4 * 168 + 24;

/// The service's traffic figures.
#[derive(Clone, Debug)]
pub struct Traffic {
    /// (second since the epoch, attempts, denied) per slot.
    seconds: [(i64, u32, u32); SECONDS],
    /// (hour since the epoch, spend in ten-thousandths) per slot.
    hours: Box<[(i64, i64); HOURS]>,
    /// The first hour with any traffic: hours before it are unknown, not quiet.
    first_hour: Option<i64>,
}

/// In a snapshot: the rings as sequences (serde's arrays stop at 32).
impl serde::Serialize for Traffic {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (self.seconds.as_slice(), self.hours.as_slice(), self.first_hour).serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for Traffic {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Traffic, D::Error> {
        type Parts = (Vec<(i64, u32, u32)>, Vec<(i64, i64)>, Option<i64>);
        let (seconds, hours, first_hour) = Parts::deserialize(d)?;
        let wrong = |what: &str, n: usize| serde::de::Error::custom(format!("traffic of {n} {what}"));
        Ok(Traffic {
            seconds: seconds.as_slice().try_into().map_err(|_| wrong("seconds", seconds.len()))?,
            hours: hours.into_boxed_slice().try_into().map_err(|h: Box<[_]>| wrong("hours", h.len()))?,
            first_hour,
        })
    }
}

impl Default for Traffic {
    fn default() -> Traffic {
        Traffic {
            seconds: [(i64::MIN, 0, 0); SECONDS],
            hours: Box::new([(i64::MIN, 0); HOURS]),
            first_hour: None,
        }
    }
}

/// One hour of the overview's chart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hour {
    /// Its start.
    pub start: Timestamp,
    /// Spend of calls that ended in it, ten-thousandths.
    pub spend: i64,
    /// The same hour one, two and three weeks before: (lowest, median, highest); `None` until two
    /// earlier weeks are known.
    pub band: Option<(i64, i64, i64)>,
}

fn hour_of(t: Timestamp) -> i64 {
    t.as_second().div_euclid(3600)
}

impl Traffic {
    fn touch_hour(&mut self, h: i64) -> &mut (i64, i64) {
        self.first_hour = Some(self.first_hour.map_or(h, |f| f.min(h)));
        let slot = &mut self.hours[h.rem_euclid(HOURS as i64) as usize];
        if slot.0 != h {
            *slot = (h, 0);
        }
        slot
    }

    /// An authorization answered at `now`.
    pub fn attempt(&mut self, now: Timestamp, allowed: bool) {
        let s = now.as_second();
        let slot = &mut self.seconds[s.rem_euclid(SECONDS as i64) as usize];
        if slot.0 != s {
            *slot = (s, 0, 0);
        }
        slot.1 += 1;
        slot.2 += u32::from(!allowed);
        self.touch_hour(hour_of(now));
    }

    /// Spend counted at `now` (negative: a correction down).
    pub fn charged(&mut self, now: Timestamp, units: i64) {
        self.touch_hour(hour_of(now)).1 += units;
    }

    /// What `effects`, produced at `now`, add: their charges.
    pub fn effects(&mut self, now: Timestamp, effects: &[Effect]) {
        let units: i64 =
            effects.iter().map(|e| if let Effect::Charged { units, .. } = e { *units } else { 0 }).sum();
        if units != 0 {
            self.charged(now, units);
        }
    }

    /// Attempts and denials per second, averaged over the minute before `now` (the current,
    /// unfinished second excluded).
    pub fn per_second(&self, now: Timestamp) -> (f64, f64) {
        let s = now.as_second();
        let (mut attempts, mut denied) = (0u64, 0u64);
        for &(at, a, d) in &self.seconds {
            if at < s && at >= s - SECONDS as i64 {
                attempts += a as u64;
                denied += d as u64;
            }
        }
        (attempts as f64 / SECONDS as f64, denied as f64 / SECONDS as f64)
    }

    /// Spend in hour number `h`: `None` before the first known hour or beyond what is kept.
    fn spend_in(&self, h: i64, now_hour: i64) -> Option<i64> {
        if self.first_hour.is_none_or(|f| h < f) || h > now_hour || now_hour - h >= HOURS as i64 {
            return None;
        }
        let slot = self.hours[h.rem_euclid(HOURS as i64) as usize];
        Some(if slot.0 == h { slot.1 } else { 0 })
    }

    /// The last `n` hours up to the one holding `now`, oldest first, each with its band.
    pub fn last_hours(&self, now: Timestamp, n: usize) -> Vec<Hour> {
        let now_hour = hour_of(now);
        (0..n as i64)
            .rev()
            .map(|back| {
                let h = now_hour - back;
                let earlier: Vec<i64> =
                    (1..=3).filter_map(|w| self.spend_in(h - 168 * w, now_hour)).collect();
                let band = (earlier.len() >= 2).then(|| {
                    let mut e = earlier.clone();
                    e.sort_unstable();
                    (e[0], e[(e.len() - 1) / 2], e[e.len() - 1])
                });
                Hour {
                    start: Timestamp::from_second(h * 3600).unwrap_or(Timestamp::UNIX_EPOCH),
                    spend: self.spend_in(h, now_hour).unwrap_or(0),
                    band,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn attempts_per_second_over_the_last_full_minute() {
        let mut tr = Traffic::default();
        for i in 0..120 {
            tr.attempt(t("2026-12-01T10:00:00Z") + jiff::SignedDuration::from_millis(i * 500), i % 4 != 0);
        }
        // 2 per second for the minute before 10:01:00; a quarter denied.
        assert_eq!(tr.per_second(t("2026-12-01T10:01:00Z")), (2.0, 0.5));
        // An hour later the minute is empty: the ring does not show old seconds.
        assert_eq!(tr.per_second(t("2026-12-01T11:01:00Z")), (0.0, 0.0));
    }

    #[test]
    fn hours_against_the_same_hour_of_earlier_weeks() {
        let mut tr = Traffic::default();
        // Tuesdays 14:xx: EUR 10, 30, 20 in three weeks, then EUR 500 this week.
        for (day, eur) in [("2026-11-10", 10), ("2026-11-17", 30), ("2026-11-24", 20), ("2026-12-01", 500)] {
            tr.charged(t(&format!("{day}T14:20:00Z")), eur * 10_000);
        }
        let hours = tr.last_hours(t("2026-12-01T15:05:00Z"), 3);
        assert_eq!(hours.len(), 3);
        assert_eq!(hours[1].start, t("2026-12-01T14:00:00Z"));
        assert_eq!(hours[1].spend, 500 * 10_000);
        assert_eq!(hours[1].band, Some((100_000, 200_000, 300_000)));
        // 13:00 had nothing in any week: a band of zeros, known since the first week.
        assert_eq!(hours[0].band, Some((0, 0, 0)));
        // The week before the first traffic is unknown: one known earlier week is not a band.
        let early = tr.last_hours(t("2026-11-17T14:30:00Z"), 1);
        assert_eq!((early[0].spend, early[0].band), (30 * 10_000, None));
    }

    #[test]
    fn corrections_down_and_ring_reuse() {
        let mut tr = Traffic::default();
        tr.charged(t("2026-12-01T09:10:00Z"), 50_000);
        tr.charged(t("2026-12-01T09:50:00Z"), -20_000);
        assert_eq!(tr.last_hours(t("2026-12-01T09:59:00Z"), 1)[0].spend, 30_000);
        // The same slot, HOURS later, starts from zero.
        let later = t("2026-12-01T09:10:00Z") + jiff::SignedDuration::from_hours(HOURS as i64);
        tr.charged(later, 10_000);
        assert_eq!(tr.last_hours(later, 1)[0].spend, 10_000);
    }
}
