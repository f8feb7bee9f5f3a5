//! Two sets of records of the same traffic, side by side: the matching behind
//! `tollguard reconcile` and the reconciliation section of the incident report.
//!
//! Matching, in order:
//! 1. **By call id**, where both sides carry the same id (two exports of one system).
//! 2. **By number and time** for the rest: the same dialled number (E.164 where the dialling plan
//!    reads it), start times at most the time tolerance apart (clocks of two systems differ). Of
//!    several candidates the closest in time wins, then the closest in duration. Each record is
//!    matched once.
//!
//! A matched pair whose billed seconds differ by more than the duration tolerance (systems round
//! differently) is `duration_differs`; every other record ends up `matched`, `left_only` or
//! `right_only`. Pure: no I/O.

use jiff::tz::TimeZone;
use jiff::Timestamp;
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap};

/// How a record came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// Both sides agree.
    Matched,
    /// Same call (number and time), durations differ beyond the tolerance.
    DurationDiffers,
    /// Only the left side has it.
    LeftOnly,
    /// Only the right side has it.
    RightOnly,
}

impl Status {
    /// The name used in CSV and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Matched => "matched",
            Status::DurationDiffers => "duration_differs",
            Status::LeftOnly => "left_only",
            Status::RightOnly => "right_only",
        }
    }
}

/// One side's record, as compared.
#[derive(Clone, Debug)]
pub struct Side {
    /// The record's call id.
    pub call_id: String,
    /// File and line.
    pub origin: String,
    /// When the call started.
    pub start: Timestamp,
    /// The number dialled, E.164 with `+` when the plan reads it, else as written.
    pub number: String,
    /// Billed seconds.
    pub billsec: u32,
    /// Its price (None: not priced: unrated, inbound, internal).
    pub cost: Option<Decimal>,
    /// The account the record names (empty: none).
    pub account: String,
}

/// One line of the reconciliation.
#[derive(Clone, Debug)]
pub struct Line {
    /// How it came out.
    pub status: Status,
    /// The left record, if any.
    pub left: Option<Side>,
    /// The right record, if any.
    pub right: Option<Side>,
}

impl Line {
    /// When the call started (the left side's time when both have it).
    pub fn start(&self) -> Timestamp {
        self.left.as_ref().or(self.right.as_ref()).map(|s| s.start).unwrap_or_default()
    }
}

/// Totals of one day (or of all).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Records on each side.
    pub left_calls: u64,
    /// Records on the right.
    pub right_calls: u64,
    /// Matched (agreeing or not on duration).
    pub matched: u64,
    /// With different durations.
    pub duration_differs: u64,
    /// Only on the left.
    pub left_only: u64,
    /// Only on the right.
    pub right_only: u64,
    /// Billed seconds on the left.
    pub left_billsec: u64,
    /// Billed seconds on the right.
    pub right_billsec: u64,
    /// Cost on the left.
    pub left_cost: Decimal,
    /// Cost on the right.
    pub right_cost: Decimal,
}

impl Totals {
    /// Counts one line in.
    pub fn add(&mut self, l: &Line) {
        match l.status {
            Status::Matched => self.matched += 1,
            Status::DurationDiffers => {
                self.matched += 1;
                self.duration_differs += 1
            }
            Status::LeftOnly => self.left_only += 1,
            Status::RightOnly => self.right_only += 1,
        }
        if let Some(s) = &l.left {
            self.left_calls += 1;
            self.left_billsec += s.billsec as u64;
            self.left_cost += s.cost.unwrap_or_default();
        }
        if let Some(s) = &l.right {
            self.right_calls += 1;
            self.right_billsec += s.billsec as u64;
            self.right_cost += s.cost.unwrap_or_default();
        }
    }
}

/// Matches two sides (see the module documentation). Lines come out in start-time order.
pub fn reconcile(left: Vec<Side>, right: Vec<Side>, time_tol_s: u32, duration_tol_s: u32) -> Vec<Line> {
    let mut lines = vec![];
    let mut right_used = vec![false; right.len()];
    let mut left_open = vec![];
    // 1. By call id, where the ids are shared.
    let by_id: HashMap<&str, usize> =
        right.iter().enumerate().map(|(i, s)| (s.call_id.as_str(), i)).collect();
    for (i, l) in left.iter().enumerate() {
        match by_id.get(l.call_id.as_str()) {
            Some(&j) if !l.call_id.is_empty() && !right_used[j] => {
                right_used[j] = true;
                let differs = l.billsec.abs_diff(right[j].billsec) > duration_tol_s;
                lines.push((i, Some(j), if differs { Status::DurationDiffers } else { Status::Matched }));
            }
            _ => left_open.push(i),
        }
    }
    // 2. By number, time and duration.
    let mut by_number: HashMap<&str, Vec<usize>> = HashMap::new();
    for (j, r) in right.iter().enumerate() {
        if !right_used[j] {
            by_number.entry(r.number.as_str()).or_default().push(j);
        }
    }
    for v in by_number.values_mut() {
        v.sort_by_key(|&j| right[j].start);
    }
    left_open.sort_by_key(|&i| left[i].start);
    let tol = jiff::SignedDuration::from_secs(time_tol_s as i64);
    for i in left_open {
        let l = &left[i];
        let best = by_number.get(l.number.as_str()).and_then(|cands| {
            let from = cands.partition_point(|&j| right[j].start < l.start - tol);
            cands[from..]
                .iter()
                .take_while(|&&j| right[j].start <= l.start + tol)
                .filter(|&&j| !right_used[j])
                .min_by_key(|&&j| {
                    let dt = (right[j].start.as_second() - l.start.as_second()).unsigned_abs();
                    (dt, right[j].billsec.abs_diff(l.billsec))
                })
                .copied()
        });
        match best {
            Some(j) => {
                right_used[j] = true;
                let differs = l.billsec.abs_diff(right[j].billsec) > duration_tol_s;
                lines.push((i, Some(j), if differs { Status::DurationDiffers } else { Status::Matched }));
            }
            None => lines.push((i, None, Status::LeftOnly)),
        }
    }
    let mut left: Vec<Option<Side>> = left.into_iter().map(Some).collect();
    let mut right: Vec<Option<Side>> = right.into_iter().map(Some).collect();
    let mut out: Vec<Line> = lines
        .into_iter()
        .map(|(i, j, status)| Line { status, left: left[i].take(), right: j.and_then(|j| right[j].take()) })
        .collect();
    for (j, used) in right_used.into_iter().enumerate() {
        if !used {
            out.push(Line { status: Status::RightOnly, left: None, right: right[j].take() });
        }
    }
    out.sort_by(|a, b| {
        (a.start(), a.left.as_ref().map(|s| &s.call_id), a.right.as_ref().map(|s| &s.call_id)).cmp(&(
            b.start(),
            b.left.as_ref().map(|s| &s.call_id),
            b.right.as_ref().map(|s| &s.call_id),
        ))
    });
    out
}

/// Totals per local day in `tz`, and over all.
pub fn per_day(lines: &[Line], tz: &TimeZone) -> (BTreeMap<jiff::civil::Date, Totals>, Totals) {
    let mut days: BTreeMap<jiff::civil::Date, Totals> = BTreeMap::new();
    let mut all = Totals::default();
    for l in lines {
        days.entry(tz.to_datetime(l.start()).date()).or_default().add(l);
        all.add(l);
    }
    (days, all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::tz::TimeZone;

    fn side(id: &str, at: i64, number: &str, billsec: u32) -> Side {
        Side {
            call_id: id.into(),
            origin: String::new(),
            start: Timestamp::from_second(1_307_800_000 + at).unwrap(),
            number: number.into(),
            billsec,
            cost: Some(Decimal::from(billsec)),
            account: String::new(),
        }
    }

    #[test]
    fn ids_first_then_number_time_and_duration() {
        let left = vec![
            side("a", 0, "+670771", 60),
            side("b", 100, "+670772", 120),
            side("c", 200, "+670773", 30),
            side("d", 300, "+31201", 10),
        ];
        let right = vec![
            side("a", 1, "+670771", 60),     // same id
            side("x1", 103, "+670772", 121), // 3 s later, 1 s longer: the same call
            side("x2", 204, "+670773", 90),  // same call, another duration
            side("x3", 500, "+670774", 45),  // only right
        ];
        let lines = reconcile(left, right, 5, 2);
        let got: Vec<(Status, Option<&str>, Option<&str>)> = lines
            .iter()
            .map(|l| {
                (
                    l.status,
                    l.left.as_ref().map(|s| s.call_id.as_str()),
                    l.right.as_ref().map(|s| s.call_id.as_str()),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (Status::Matched, Some("a"), Some("a")),
                (Status::Matched, Some("b"), Some("x1")),
                (Status::DurationDiffers, Some("c"), Some("x2")),
                (Status::LeftOnly, Some("d"), None),
                (Status::RightOnly, None, Some("x3")),
            ]
        );
        let (days, all) = per_day(&lines, &TimeZone::UTC);
        assert_eq!(days.len(), 1);
        assert_eq!(
            (all.left_calls, all.right_calls, all.matched, all.left_only, all.right_only),
            (4, 4, 3, 1, 1)
        );
        assert_eq!(all.right_cost - all.left_cost, Decimal::from(316 - 220));
    }

    #[test]
    fn each_record_is_matched_once_and_the_closest_wins() {
        let left = vec![side("l1", 0, "+1", 60), side("l2", 2, "+1", 60)];
        let right = vec![side("r1", 3, "+1", 60), side("r2", 9, "+1", 60)];
        let lines = reconcile(left, right, 5, 2);
        // l1 takes r1 (3 s), l2 has only r2 within 7 s: outside 5 s, so both are alone.
        let statuses: Vec<Status> = lines.iter().map(|l| l.status).collect();
        assert_eq!(statuses, [Status::Matched, Status::LeftOnly, Status::RightOnly]);
    }
}
