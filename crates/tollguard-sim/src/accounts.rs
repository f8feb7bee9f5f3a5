//! Accounts and their honest traffic: kinds, extensions, address books, diurnal and weekly
//! patterns, and the per-extension scheduling that keeps one person in one call at a time.

use crate::model::{Call, Clock, Dir, Disp};
use crate::numbers::{self, Country, Num};
use crate::rng::{cumulative, Rng64};
use std::fmt;

/// What kind of customer an account is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AccountKind {
    /// 2-10 extensions, office hours, a few foreign countries.
    SmallOffice,
    /// 20-80 extensions, office hours, more international traffic.
    MidCompany,
    /// 10-40 agents, outbound heavy, short calls, many unanswered; Saturdays at a quarter.
    CallCentre,
    /// International trader: regular calls to Nigeria, India, Morocco, China, the US.
    Trader,
    /// Shift operation: nights and weekends like weekdays.
    ShiftOperation,
}

impl AccountKind {
    /// Every kind.
    pub const ALL: [AccountKind; 5] = [
        AccountKind::SmallOffice,
        AccountKind::MidCompany,
        AccountKind::CallCentre,
        AccountKind::Trader,
        AccountKind::ShiftOperation,
    ];

    /// The name used in outputs.
    pub fn name(self) -> &'static str {
        match self {
            AccountKind::SmallOffice => "small_office",
            AccountKind::MidCompany => "mid_company",
            AccountKind::CallCentre => "call_centre",
            AccountKind::Trader => "trader",
            AccountKind::ShiftOperation => "shift_operation",
        }
    }
}

impl fmt::Display for AccountKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Parameters of a kind.
struct KindParams {
    exts: (u32, u32),
    /// Calls per extension on an ordinary weekday (all directions).
    per_ext: (f64, f64),
    p_out: f64,
    p_in: f64,
    intl: (f64, f64),
    countries: (u32, u32),
    answer_p: f64,
    median_s: f64,
    sigma: f64,
    /// Volume of Saturday and Sunday relative to a weekday.
    weekend: (f64, f64),
}

fn params(kind: AccountKind) -> KindParams {
    match kind {
        AccountKind::SmallOffice => KindParams {
            exts: (2, 10),
            per_ext: (5.0, 8.0),
            p_out: 0.50,
            p_in: 0.38,
            intl: (0.04, 0.12),
            countries: (1, 3),
            answer_p: 0.76,
            median_s: 90.0,
            sigma: 1.05,
            weekend: (0.05, 0.02),
        },
        AccountKind::MidCompany => KindParams {
            exts: (20, 80),
            per_ext: (4.0, 6.0),
            p_out: 0.50,
            p_in: 0.35,
            intl: (0.06, 0.14),
            countries: (3, 6),
            answer_p: 0.75,
            median_s: 95.0,
            sigma: 1.05,
            weekend: (0.06, 0.03),
        },
        AccountKind::CallCentre => KindParams {
            exts: (10, 40),
            per_ext: (35.0, 55.0),
            p_out: 0.90,
            p_in: 0.08,
            intl: (0.01, 0.03),
            countries: (1, 2),
            answer_p: 0.66,
            median_s: 70.0,
            sigma: 0.95,
            weekend: (0.25, 0.0),
        },
        AccountKind::Trader => KindParams {
            exts: (3, 15),
            per_ext: (5.0, 8.0),
            p_out: 0.55,
            p_in: 0.35,
            intl: (0.35, 0.50),
            countries: (1, 2),
            answer_p: 0.72,
            median_s: 110.0,
            sigma: 1.1,
            weekend: (0.10, 0.04),
        },
        AccountKind::ShiftOperation => KindParams {
            exts: (20, 60),
            per_ext: (3.0, 5.0),
            p_out: 0.45,
            p_in: 0.40,
            intl: (0.02, 0.05),
            countries: (1, 2),
            answer_p: 0.78,
            median_s: 80.0,
            sigma: 1.0,
            weekend: (0.95, 0.92),
        },
    }
}

/// Relative volume per local hour on a working day: office hours, a lunch dip, quiet nights.
const OFFICE_DAY: [f64; 24] = [
    0.15, 0.08, 0.06, 0.05, 0.05, 0.1, 0.4, 1.8, 6.0, 10.0, 11.0, 10.5, 5.5, 8.0, 10.5, 10.0, 8.0, 4.5, 2.0,
    1.1, 0.7, 0.5, 0.35, 0.25,
];
/// Weekends of offices: a little, spread over the day.
const OFFICE_WEEKEND: [f64; 24] = [
    0.3, 0.2, 0.1, 0.1, 0.1, 0.1, 0.3, 0.8, 2.0, 3.5, 4.5, 4.5, 3.5, 3.0, 3.0, 3.0, 2.5, 2.0, 1.5, 1.2, 1.0,
    0.8, 0.6, 0.4,
];
/// Call centres dial 08:00-21:00.
const CALL_CENTRE: [f64; 24] = [
    0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.4, 6.0, 10.0, 10.0, 10.0, 7.0, 9.0, 10.0, 10.0, 9.0, 8.0, 6.0, 5.0,
    3.0, 0.4, 0.0, 0.0,
];
/// Shift operations: three shifts, nights at about a third of the day.
const SHIFT: [f64; 24] = [
    3.0, 3.0, 2.6, 2.4, 2.4, 3.0, 5.0, 7.0, 8.0, 8.0, 8.0, 8.0, 6.0, 8.0, 8.0, 8.0, 7.0, 7.0, 6.0, 5.0, 5.0,
    4.0, 4.0, 3.5,
];
/// Monday to Friday relative to an ordinary weekday.
const WEEKDAY_FACTOR: [f64; 5] = [1.0, 1.04, 1.0, 0.98, 0.85];

/// How a scenario changes one account's day.
#[derive(Clone, Debug)]
pub(crate) enum Override {
    /// The whole day at `factor` times a weekday's volume (a weekday's even on a weekend), every
    /// call labelled `label`.
    Volume { label: u16, factor: f64 },
    /// About `lambda` more outbound calls between `hours.0` and `hours.1`, to `book` (with
    /// probability `p_book`) or to new numbers of `fresh`, labelled `label`.
    Extra {
        label: u16,
        lambda: f64,
        hours: (u32, u32),
        book: Vec<Num>,
        fresh: Vec<&'static Country>,
        p_book: f64,
    },
    /// One answered outbound call at `at` to `number` lasting `billsec`.
    Fixed { label: u16, at: i64, number: Num, billsec: u32 },
}

/// What an account's user wants to do at a moment; the extension is chosen when it is placed.
enum What {
    Base,
    To { number: Num },
    Fixed { number: Num, billsec: u32 },
}

struct Demand {
    t: i64,
    label: u16,
    what: What,
}

/// One customer of the simulated operator.
pub(crate) struct Account {
    pub id: String,
    pub kind: AccountKind,
    pub exts: Vec<u16>,
    ext_cum: Vec<f64>,
    per_ext: f64,
    p_out: f64,
    p_in: f64,
    intl_share: f64,
    /// Foreign countries the account calls in its baseline.
    pub countries: Vec<&'static Country>,
    country_cum: Vec<f64>,
    book: Vec<Num>,
    book_cum: Vec<f64>,
    callers: Vec<Num>,
    callers_cum: Vec<f64>,
    answer_p: f64,
    median_s: f64,
    sigma: f64,
    weekend: (f64, f64),
    /// When each extension is free again (epoch seconds).
    busy: Vec<i64>,
}

/// Topic of the stream that builds accounts.
const TOPIC_ACCOUNT: u64 = 1;
/// Topic of the streams of baseline days.
const TOPIC_DAY: u64 = 2;

/// The kinds of `n` accounts: about half small offices, a fifth mid companies, a tenth each of
/// call centres, traders and shift operations (at least one of each from 5 accounts), shuffled.
pub(crate) fn kinds(seed: u64, n: usize) -> Vec<AccountKind> {
    use AccountKind::*;
    let mut kinds = Vec::with_capacity(n);
    if n < 5 {
        kinds.extend([SmallOffice, MidCompany, CallCentre, Trader, ShiftOperation].into_iter().take(n));
    } else {
        let share = |f: f64| ((n as f64 * f).round() as usize).max(1);
        for (k, f) in [(MidCompany, 0.2), (CallCentre, 0.1), (Trader, 0.1), (ShiftOperation, 0.1)] {
            kinds.extend(std::iter::repeat_n(k, share(f)));
        }
        kinds.truncate(n - 1);
        kinds.resize(n, SmallOffice);
    }
    let mut rng = Rng64::new(seed, TOPIC_ACCOUNT, u64::MAX);
    for i in (1..kinds.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        kinds.swap(i, j);
    }
    kinds
}

impl Account {
    /// Account number `idx` (0-based) of kind `kind`.
    pub(crate) fn new(seed: u64, idx: usize, kind: AccountKind) -> Account {
        let mut rng = Rng64::new(seed, TOPIC_ACCOUNT, idx as u64);
        let p = params(kind);
        let n_ext = rng.range32(p.exts.0, p.exts.1) as u16;
        let exts: Vec<u16> = (0..n_ext).map(|i| 201 + i).collect();
        let ext_sigma = if kind == AccountKind::CallCentre { 0.15 } else { 0.7 };
        let ext_cum = cumulative((0..n_ext).map(|_| rng.lognormal(1.0, ext_sigma)));
        let n_countries = rng.range32(p.countries.0, p.countries.1) as usize;
        let (countries, weights): (Vec<&'static Country>, Vec<f64>) = match kind {
            AccountKind::Trader => {
                let mut c: Vec<(&'static Country, f64)> =
                    numbers::TRADER.iter().map(|c| (*c, rng.uniform(0.8, 1.4))).collect();
                let eu: Vec<&'static Country> =
                    numbers::EUROPE_US.iter().copied().filter(|c| c.iso != "US").collect();
                for i in rng.sample(eu.len(), n_countries) {
                    c.push((eu[i], rng.uniform(0.2, 0.5)));
                }
                c.into_iter().unzip()
            }
            AccountKind::CallCentre => {
                let near = [&numbers::BE, &numbers::DE];
                rng.sample(near.len(), n_countries).into_iter().map(|i| (near[i], 1.0)).unzip()
            }
            _ => rng
                .sample(numbers::EUROPE_US.len(), n_countries)
                .into_iter()
                .map(|i| (numbers::EUROPE_US[i], rng.uniform(0.5, 2.0)))
                .unzip(),
        };
        let mut a = Account {
            id: account_id(idx),
            kind,
            busy: vec![i64::MIN; exts.len()],
            exts,
            ext_cum,
            per_ext: rng.uniform(p.per_ext.0, p.per_ext.1),
            p_out: p.p_out,
            p_in: p.p_in,
            intl_share: rng.uniform(p.intl.0, p.intl.1),
            countries,
            country_cum: cumulative(weights),
            book: Vec::new(),
            book_cum: Vec::new(),
            callers: Vec::new(),
            callers_cum: Vec::new(),
            answer_p: p.answer_p,
            median_s: p.median_s,
            sigma: p.sigma,
            weekend: p.weekend,
        };
        let size = (15 + 4 * a.exts.len()).min(300);
        a.book = (0..size).map(|_| a.fresh_number(&mut rng)).collect();
        a.book_cum = cumulative((0..size).map(|r| 1.0 / ((r + 1) as f64).powf(0.9)));
        a.callers = (0..size).map(|_| a.fresh_caller(&mut rng)).collect();
        a.callers_cum = a.book_cum.clone();
        a
    }

    /// Numbers of the address book in `countries`.
    pub(crate) fn book_in(&self, countries: &[&Country]) -> Vec<Num> {
        let prefixes: Vec<String> = countries.iter().map(|c| format!("00{}", c.cc)).collect();
        self.book.iter().copied().filter(|n| prefixes.iter().any(|p| n.starts_with(p))).collect()
    }

    /// Expected outbound calls a weekday to Nigeria, India and Morocco.
    pub(crate) fn diaspora_daily(&self) -> f64 {
        let total = self.country_cum.last().copied().unwrap_or(0.0);
        if total <= 0.0 {
            return 0.0;
        }
        let mut share = 0.0;
        for (i, c) in self.countries.iter().enumerate() {
            let w = self.country_cum[i] - if i == 0 { 0.0 } else { self.country_cum[i - 1] };
            if numbers::DIASPORA.iter().any(|d| d.cc == c.cc) {
                share += w / total;
            }
        }
        self.per_ext * self.exts.len() as f64 * self.p_out * self.intl_share * share
    }

    /// Weighted draw of one of the account's extensions (index).
    pub(crate) fn pick_ext(&self, rng: &mut Rng64) -> usize {
        rng.pick_cum(&self.ext_cum)
    }

    /// A number the account has not necessarily called before.
    fn fresh_number(&self, rng: &mut Rng64) -> Num {
        if !self.countries.is_empty() && rng.chance(self.intl_share) {
            let c = self.countries[rng.pick_cum(&self.country_cum)];
            return numbers::in_country(rng, c, 0.55);
        }
        let u = rng.unit();
        let blocks = if u < 0.47 {
            numbers::NL_FIXED
        } else if u < 0.90 {
            numbers::NL_MOBILE
        } else if u < 0.94 {
            numbers::NL_BUSINESS
        } else if u < 0.995 {
            numbers::NL_TOLL_FREE
        } else {
            numbers::NL_0900
        };
        numbers::national(rng, blocks)
    }

    /// A caller the trunk presents.
    fn fresh_caller(&self, rng: &mut Rng64) -> Num {
        let u = rng.unit();
        if u < 0.01 {
            Num::new("anonymous")
        } else if u < 0.46 {
            numbers::national(rng, numbers::NL_FIXED)
        } else if u < 0.92 || self.countries.is_empty() {
            numbers::national(rng, numbers::NL_MOBILE)
        } else {
            let c = self.countries[rng.pick_cum(&self.country_cum)];
            numbers::in_country(rng, c, 0.5)
        }
    }

    fn dial(&self, rng: &mut Rng64) -> Num {
        if rng.chance(0.00025) {
            return Num::new("112");
        }
        if rng.chance(0.6) {
            return self.book[rng.pick_cum(&self.book_cum)];
        }
        self.fresh_number(rng)
    }

    fn caller(&self, rng: &mut Rng64) -> Num {
        if rng.chance(0.5) {
            return self.callers[rng.pick_cum(&self.callers_cum)];
        }
        self.fresh_caller(rng)
    }

    /// An extension free at `t`, or the one free soonest and the moment it is.
    fn free_ext(&self, rng: &mut Rng64, t: i64) -> (usize, i64) {
        for _ in 0..4 {
            let i = self.pick_ext(rng);
            if self.busy[i] <= t {
                return (i, t);
            }
        }
        let (i, b) = self.busy.iter().copied().enumerate().min_by_key(|&(_, b)| b).unwrap_or((0, t));
        if b <= t {
            (i, t)
        } else {
            (i, b + rng.range(5, 90))
        }
    }

    fn unanswered(rng: &mut Rng64) -> (Disp, u32) {
        let u = rng.unit();
        if u < 0.65 {
            (Disp::NoAnswer, rng.range32(12, 45))
        } else if u < 0.85 {
            (Disp::Busy, rng.range32(1, 8))
        } else {
            (Disp::Failed, rng.range32(0, 3))
        }
    }

    fn talk(&self, rng: &mut Rng64, median: f64) -> (u32, u32) {
        let ring = rng.lognormal(7.0, 0.45).clamp(2.0, 40.0) as u32;
        let billsec = rng.lognormal(median, self.sigma).clamp(3.0, 9000.0) as u32;
        (ring, billsec)
    }

    /// The honest calls of day `day`, appended to `out`.
    pub(crate) fn day(
        &mut self,
        seed: u64,
        acct: u32,
        day: u32,
        clock: &Clock,
        overrides: &[Override],
        out: &mut Vec<Call>,
    ) {
        let mut rng = Rng64::sub(seed, TOPIC_DAY, acct as u64, day as u64);
        let mut label = 0u16;
        let mut factor = 1.0;
        let mut weekday_like = false;
        for o in overrides {
            if let Override::Volume { label: l, factor: f } = o {
                label = *l;
                factor = *f;
                weekday_like = true;
            }
        }
        let wd = Clock::weekday(day);
        let weekend = wd >= 5 && !weekday_like;
        let day_factor = match (weekend, wd) {
            (true, 5) => self.weekend.0,
            (true, _) => self.weekend.1,
            (false, w) => WEEKDAY_FACTOR[(w as usize).min(4)],
        };
        let profile: &[f64; 24] = match self.kind {
            AccountKind::CallCentre => &CALL_CENTRE,
            AccountKind::ShiftOperation => &SHIFT,
            _ if weekend => &OFFICE_WEEKEND,
            _ => &OFFICE_DAY,
        };
        let total: f64 = profile.iter().sum();
        let lambda =
            self.per_ext * self.exts.len() as f64 * day_factor * factor * rng.lognormal(1.0, 0.12) / total;
        let mut demands = Vec::new();
        for (h, w) in profile.iter().enumerate() {
            let n = rng.poisson(lambda * w);
            let t0 = clock.at(day, h as u32, 0, 0);
            for _ in 0..n {
                demands.push(Demand { t: t0 + rng.range(0, 3599), label, what: What::Base });
            }
        }
        for o in overrides {
            match o {
                Override::Volume { .. } => {}
                Override::Extra { label, lambda, hours, book, fresh, p_book } => {
                    let n = rng.poisson(*lambda);
                    let t0 = clock.at(day, hours.0, 0, 0);
                    let t1 = clock.at(day, hours.1, 0, 0);
                    for _ in 0..n {
                        let number = if !book.is_empty() && rng.chance(*p_book) {
                            *rng.pick(book)
                        } else {
                            let c = *rng.pick(fresh);
                            numbers::in_country(&mut rng, c, 0.5)
                        };
                        demands.push(Demand {
                            t: rng.range(t0, t1 - 1),
                            label: *label,
                            what: What::To { number },
                        });
                    }
                }
                Override::Fixed { label, at, number, billsec } => {
                    demands.push(Demand {
                        t: *at,
                        label: *label,
                        what: What::Fixed { number: *number, billsec: *billsec },
                    });
                }
            }
        }
        demands.sort_by_key(|d| d.t);
        for d in demands {
            self.place(&mut rng, acct, d, out);
        }
    }

    fn place(&mut self, rng: &mut Rng64, acct: u32, d: Demand, out: &mut Vec<Call>) {
        let mut call = Call {
            start: d.t,
            seq: 0,
            ring: 0,
            billsec: 0,
            account: acct,
            label: d.label,
            ext: 0,
            ext2: 0,
            dir: Dir::Outbound,
            disp: Disp::Answered,
            number: Num::new(""),
        };
        let (number, fixed) = match d.what {
            What::Base => {
                let u = rng.unit();
                if u < self.p_out || self.exts.len() < 2 && u >= self.p_out + self.p_in {
                    (self.dial(rng), None)
                } else if u < self.p_out + self.p_in {
                    return self.place_inbound(rng, call, out);
                } else {
                    return self.place_internal(rng, call, out);
                }
            }
            What::To { number } => (number, None),
            What::Fixed { number, billsec } => (number, Some(billsec)),
        };
        let (i, t) = self.free_ext(rng, d.t);
        call.ext = self.exts[i];
        call.start = t;
        call.number = number;
        if let Some(b) = fixed {
            call.ring = rng.range32(3, 9);
            call.billsec = b;
        } else if number.as_str() == "112" {
            call.ring = rng.range32(1, 4);
            call.billsec = rng.lognormal(120.0, 0.6).clamp(20.0, 1800.0) as u32;
        } else {
            let intl = number.starts_with("00");
            let p = if intl { self.answer_p * 0.9 } else { self.answer_p };
            if rng.chance(p) {
                (call.ring, call.billsec) = self.talk(rng, self.median_s);
            } else {
                (call.disp, call.ring) = Account::unanswered(rng);
            }
        }
        self.busy[i] = call.end();
        out.push(call);
    }

    fn place_inbound(&mut self, rng: &mut Rng64, mut call: Call, out: &mut Vec<Call>) {
        call.dir = Dir::Inbound;
        call.number = self.caller(rng);
        let mut callee = None;
        for _ in 0..3 {
            let i = self.pick_ext(rng);
            if self.busy[i] <= call.start {
                callee = Some(i);
                break;
            }
        }
        match callee {
            None => {
                call.ext = self.exts[self.pick_ext(rng)];
                (call.disp, call.ring) = (Disp::Busy, rng.range32(0, 3));
            }
            Some(i) => {
                call.ext = self.exts[i];
                if rng.chance((self.answer_p + 0.06).min(0.95)) {
                    (call.ring, call.billsec) = self.talk(rng, self.median_s * 1.1);
                    self.busy[i] = call.end();
                } else {
                    (call.disp, call.ring) = (Disp::NoAnswer, rng.range32(15, 40));
                }
            }
        }
        out.push(call);
    }

    fn place_internal(&mut self, rng: &mut Rng64, mut call: Call, out: &mut Vec<Call>) {
        call.dir = Dir::Internal;
        let (i, t) = self.free_ext(rng, call.start);
        call.start = t;
        let mut j = rng.below(self.exts.len() as u64 - 1) as usize;
        if j >= i {
            j += 1;
        }
        call.ext = self.exts[i];
        call.ext2 = self.exts[j];
        if self.busy[j] > t {
            (call.disp, call.ring) = (Disp::Busy, rng.range32(0, 2));
        } else if rng.chance(0.85) {
            call.ring = rng.range32(2, 12);
            call.billsec = rng.lognormal(55.0, 0.9).clamp(3.0, 3600.0) as u32;
            self.busy[j] = call.end();
        } else {
            (call.disp, call.ring) = (Disp::NoAnswer, rng.range32(15, 30));
        }
        self.busy[i] = call.end();
        out.push(call);
    }
}

/// `acct001`, `acct002`, ...
pub(crate) fn account_id(idx: usize) -> String {
    format!("acct{:03}", idx + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_cover_every_kind_from_five_accounts() {
        for n in [5, 13, 40, 150] {
            let k = kinds(1, n);
            assert_eq!(k.len(), n);
            for kind in AccountKind::ALL {
                assert!(k.contains(&kind), "{n} accounts lack {kind}");
            }
        }
        let k = kinds(1, 150);
        assert_eq!(k.iter().filter(|&&x| x == AccountKind::SmallOffice).count(), 75);
        assert_eq!(k.iter().filter(|&&x| x == AccountKind::MidCompany).count(), 30);
    }
}
