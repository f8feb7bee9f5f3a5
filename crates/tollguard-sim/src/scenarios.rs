//! Scenarios: fraud incidents and honest look-alikes, each placed on its own account after the
//! learning week.

use crate::accounts::{Account, AccountKind, Override};
use crate::model::{Call, Clock, Dir, Disp};
use crate::numbers::{self, Num};
use crate::rng::Rng64;
use std::collections::BTreeMap;
use std::fmt;
use std::io;

/// Days at the start of a run without any scenario: the learning week.
pub const LEARNING_DAYS: u32 = 7;

/// A scenario the simulator can place on an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scenario {
    /// Fraud: one extension, several parallel 20-60 min calls to East Timor, 22:00-06:00, three
    /// nights in a row (about EUR 400 an hour, as in 2011), after a few short test calls.
    PbxHackNight,
    /// Fraud: a Saturday burst of 8-15 parallel channels to satellite and international networks.
    SatelliteWeekend,
    /// Fraud: 2-4 calls a working day of 10-25 min to premium numbers, office hours, several
    /// extensions, for 12-14 days.
    SlowDrip,
    /// Fraud: 40-150 short, mostly failing calls across a contiguous block within an hour, then a
    /// burst of long answered calls to a few numbers of that block.
    NumberScan,
    /// Fraud: one-ring inbound calls from Pacific or African numbers, then 5-15 extensions call
    /// those numbers back (1-5 min each) within hours.
    WangiriCallback,
    /// Fraud: office-hours calls to premium numbers of a country the account never calls.
    OfficePremiumNewCountry,
    /// Fraud: 3-6 extensions at night, one channel each, 30-60 min calls to Cuba, Somalia, Guinea.
    MultiExtNightCuba,
    /// Fraud: a daytime burst of 10-30 calls to Pacific island numbers within 90 minutes.
    PacificDaytimeBurst,
    /// Honest: a call-centre day at 5-6 times its normal volume, ordinary destinations.
    CampaignDay,
    /// Honest: an account starts calling a new ordinary country (Poland or Brazil) and keeps on.
    NewPartnerCountry,
    /// Honest: one 3-hour call to the United States.
    LongConference,
    /// Honest: a weekend with a weekday's volume.
    WeekendShift,
    /// Honest: a trader's busier week to Nigeria, India and Morocco (already in its baseline).
    DiasporaTraffic,
}

impl Scenario {
    /// Every scenario, fraud first.
    pub const ALL: [Scenario; 13] = [
        Scenario::PbxHackNight,
        Scenario::SatelliteWeekend,
        Scenario::SlowDrip,
        Scenario::NumberScan,
        Scenario::WangiriCallback,
        Scenario::OfficePremiumNewCountry,
        Scenario::MultiExtNightCuba,
        Scenario::PacificDaytimeBurst,
        Scenario::CampaignDay,
        Scenario::NewPartnerCountry,
        Scenario::LongConference,
        Scenario::WeekendShift,
        Scenario::DiasporaTraffic,
    ];

    /// The name used on the command line and in `labels.csv`.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::PbxHackNight => "pbx_hack_night",
            Scenario::SatelliteWeekend => "satellite_weekend",
            Scenario::SlowDrip => "slow_drip",
            Scenario::NumberScan => "number_scan",
            Scenario::WangiriCallback => "wangiri_callback",
            Scenario::OfficePremiumNewCountry => "office_premium_new_country",
            Scenario::MultiExtNightCuba => "multi_ext_night_cuba",
            Scenario::PacificDaytimeBurst => "pacific_daytime_burst",
            Scenario::CampaignDay => "campaign_day",
            Scenario::NewPartnerCountry => "new_partner_country",
            Scenario::LongConference => "long_conference",
            Scenario::WeekendShift => "weekend_shift",
            Scenario::DiasporaTraffic => "diaspora_traffic",
        }
    }

    /// Parses [`Scenario::name`].
    pub fn parse(s: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|x| x.name() == s)
    }

    /// True for fraud, false for honest look-alikes.
    pub fn is_fraud(self) -> bool {
        !matches!(
            self,
            Scenario::CampaignDay
                | Scenario::NewPartnerCountry
                | Scenario::LongConference
                | Scenario::WeekendShift
                | Scenario::DiasporaTraffic
        )
    }

    /// `all`, `none`, or names separated by commas (each once; order does not matter).
    pub fn parse_list(s: &str) -> Result<Vec<Scenario>, String> {
        match s.trim() {
            "all" => return Ok(Scenario::ALL.to_vec()),
            "none" | "" => return Ok(Vec::new()),
            _ => {}
        }
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let sc = Scenario::parse(part).ok_or_else(|| {
                let names: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
                format!("unknown scenario {part:?}; known: all, none, {}", names.join(", "))
            })?;
            if !out.contains(&sc) {
                out.push(sc);
            }
        }
        out.sort();
        Ok(out)
    }

    /// The fewest days a run needs for this scenario (learning week included).
    pub fn min_days(self) -> u32 {
        match self {
            Scenario::PbxHackNight => 11,
            Scenario::SatelliteWeekend | Scenario::WeekendShift | Scenario::DiasporaTraffic => 14,
            Scenario::SlowDrip => 19,
            Scenario::NumberScan => 9,
            Scenario::NewPartnerCountry => 12,
            _ => LEARNING_DAYS + 1,
        }
    }

    /// Accounts the scenario can be placed on.
    fn suits(self, a: &Account) -> bool {
        use AccountKind::*;
        let office = matches!(a.kind, SmallOffice | MidCompany | Trader);
        let n = a.exts.len();
        match self {
            Scenario::PbxHackNight
            | Scenario::SatelliteWeekend
            | Scenario::OfficePremiumNewCountry
            | Scenario::NewPartnerCountry
            | Scenario::LongConference => office,
            Scenario::PacificDaytimeBurst => office && n >= 2,
            Scenario::SlowDrip => office && n >= 4,
            Scenario::MultiExtNightCuba => office && n >= 3,
            Scenario::NumberScan => a.kind != CallCentre,
            Scenario::WangiriCallback => matches!(a.kind, MidCompany | ShiftOperation) && n >= 15,
            Scenario::CampaignDay => a.kind == CallCentre,
            Scenario::WeekendShift => matches!(a.kind, SmallOffice | MidCompany),
            Scenario::DiasporaTraffic => a.kind == Trader,
        }
    }

    /// Tie-break of the placement order (pickiest first).
    fn rank(self) -> u8 {
        match self {
            Scenario::CampaignDay => 0,
            Scenario::DiasporaTraffic => 1,
            Scenario::WangiriCallback => 2,
            Scenario::WeekendShift => 3,
            Scenario::SlowDrip => 4,
            Scenario::MultiExtNightCuba => 5,
            Scenario::PacificDaytimeBurst => 6,
            _ => 7,
        }
    }

    fn needs(self) -> &'static str {
        match self {
            Scenario::CampaignDay => "a call_centre account",
            Scenario::DiasporaTraffic => "a trader account",
            Scenario::WangiriCallback => "a mid_company or shift_operation account with 15+ extensions",
            Scenario::WeekendShift => "a small_office or mid_company account",
            Scenario::NumberScan => "an account that is not a call centre",
            _ => "a small_office, mid_company or trader account",
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A row of the label table: what `labels.csv` says about a call.
pub(crate) struct Label {
    pub scenario: &'static str,
    pub fraud: bool,
    pub incident: String,
}

/// A scenario placed on an account.
pub(crate) struct Placed {
    pub scenario: Scenario,
    pub account: usize,
    pub label: u16,
    pub detail: String,
}

/// Everything the scenarios add to a run.
pub(crate) struct Plan {
    pub labels: Vec<Label>,
    pub placed: Vec<Placed>,
    /// Changes to honest days, by (account, day).
    pub overrides: BTreeMap<(u32, u32), Vec<Override>>,
    /// Fraud calls, written as they are.
    pub calls: Vec<Call>,
}

const TOPIC_PLACE: u64 = 3;
const TOPIC_SCENARIO: u64 = 4;

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Places `scenarios` on distinct accounts and builds their calls.
pub(crate) fn plan(
    seed: u64,
    accounts: &[Account],
    clock: &Clock,
    scenarios: &[Scenario],
) -> io::Result<Plan> {
    let mut p = Plan {
        labels: vec![Label { scenario: "baseline", fraud: false, incident: String::new() }],
        placed: Vec::new(),
        overrides: BTreeMap::new(),
        calls: Vec::new(),
    };
    let mut order: Vec<Scenario> = scenarios.to_vec();
    order.sort();
    order.dedup();
    // Every scenario that needs more days, at once (not one per try).
    let short: Vec<String> = order
        .iter()
        .filter(|s| clock.days < s.min_days())
        .map(|s| format!("{s} needs at least {} days", s.min_days()))
        .collect();
    if !short.is_empty() {
        return Err(invalid(format!(
            "--days is {}: scenario {} (each a learning week of {LEARNING_DAYS} first)",
            clock.days,
            short.join(", ")
        )));
    }
    // Most constrained first, at random among the suitable accounts; a few fresh tries when a
    // draw leaves a scenario without an account.
    let mut chosen = Vec::new();
    let mut failure = None;
    for attempt in 0..32 {
        let mut rng = Rng64::new(seed, TOPIC_PLACE, attempt);
        match place(&mut rng, accounts, &order) {
            Ok(c) => {
                chosen = c;
                failure = None;
                break;
            }
            Err(s) => failure = failure.or(Some(s)),
        }
    }
    if let Some(s) = failure {
        return Err(invalid(format!(
            "scenario {s} needs {} not used by another scenario; give more --accounts (one per scenario \
             at least: {})",
            s.needs(),
            order.len()
        )));
    }
    chosen.sort();
    for (s, i) in chosen {
        let a = &accounts[i];
        let label = p.labels.len() as u16;
        p.labels.push(Label {
            scenario: s.name(),
            fraud: s.is_fraud(),
            incident: if s.is_fraud() { format!("{}-{}", s.name(), a.id) } else { String::new() },
        });
        let mut g = Gen {
            rng: Rng64::new(seed, TOPIC_SCENARIO, s as u64),
            clock,
            acct: i as u32,
            a,
            label,
            calls: &mut p.calls,
            overrides: &mut p.overrides,
        };
        let detail = g.run(s);
        p.placed.push(Placed { scenario: s, account: i, label, detail });
    }
    Ok(p)
}

/// One try at giving every scenario its own suitable account: the scenario with the fewest
/// candidates left goes first. `Err` names a scenario left without one.
fn place(
    rng: &mut Rng64,
    accounts: &[Account],
    order: &[Scenario],
) -> Result<Vec<(Scenario, usize)>, Scenario> {
    let mut used = vec![false; accounts.len()];
    let mut left: Vec<Scenario> = order.to_vec();
    let mut chosen = Vec::new();
    while !left.is_empty() {
        let fits = |s: Scenario, used: &[bool]| -> Vec<usize> {
            (0..accounts.len()).filter(|&i| !used[i] && s.suits(&accounts[i])).collect()
        };
        let (k, cands) = left
            .iter()
            .enumerate()
            .map(|(k, &s)| (k, fits(s, &used)))
            .min_by_key(|(k, c)| (c.len(), left[*k].rank(), left[*k]))
            .unwrap_or_default();
        let s = left.remove(k);
        if cands.is_empty() {
            return Err(s);
        }
        let i = cands[rng.below(cands.len() as u64) as usize];
        used[i] = true;
        chosen.push((s, i));
    }
    Ok(chosen)
}

/// Builds one scenario's calls or overrides.
struct Gen<'a> {
    rng: Rng64,
    clock: &'a Clock,
    acct: u32,
    a: &'a Account,
    label: u16,
    calls: &'a mut Vec<Call>,
    overrides: &'a mut BTreeMap<(u32, u32), Vec<Override>>,
}

impl Gen<'_> {
    /// A random day in `lo..=hi` for which `ok` holds (the caller made sure one exists).
    fn day(&mut self, lo: u32, hi: u32, ok: impl Fn(u32) -> bool) -> u32 {
        let days: Vec<u32> = (lo..=hi).filter(|&d| ok(d)).collect();
        if days.is_empty() {
            return lo;
        }
        *self.rng.pick(&days)
    }

    fn weekday(&mut self) -> u32 {
        let last = self.clock.days - 1;
        self.day(LEARNING_DAYS, last, |d| !Clock::is_weekend(d))
    }

    /// `k` distinct extensions (numbers).
    fn exts(&mut self, k: usize) -> Vec<u16> {
        let n = self.a.exts.len();
        self.rng.sample(n, k.clamp(1, n)).into_iter().map(|i| self.a.exts[i]).collect()
    }

    fn date(&self, day: u32) -> String {
        self.clock.date(day).to_string()
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        ext: u16,
        dir: Dir,
        number: Num,
        start: i64,
        ring: u32,
        billsec: u32,
        disp: Disp,
    ) -> i64 {
        let c = Call {
            start,
            seq: 0,
            ring,
            billsec: if disp == Disp::Answered { billsec.max(1) } else { 0 },
            account: self.acct,
            label: self.label,
            ext,
            ext2: 0,
            dir,
            disp,
            number,
        };
        self.calls.push(c);
        c.end()
    }

    /// An answered outbound call; returns its end.
    fn talk(&mut self, ext: u16, number: Num, start: i64, billsec: u32) -> i64 {
        let ring = self.rng.range32(3, 9);
        self.push(ext, Dir::Outbound, number, start, ring, billsec, Disp::Answered)
    }

    fn over(&mut self, day: u32, o: Override) {
        self.overrides.entry((self.acct, day)).or_default().push(o);
    }

    fn run(&mut self, s: Scenario) -> String {
        match s {
            Scenario::PbxHackNight => self.pbx_hack_night(),
            Scenario::SatelliteWeekend => self.satellite_weekend(),
            Scenario::SlowDrip => self.slow_drip(),
            Scenario::NumberScan => self.number_scan(),
            Scenario::WangiriCallback => self.wangiri_callback(),
            Scenario::OfficePremiumNewCountry => self.office_premium_new_country(),
            Scenario::MultiExtNightCuba => self.multi_ext_night_cuba(),
            Scenario::PacificDaytimeBurst => self.pacific_daytime_burst(),
            Scenario::CampaignDay => self.campaign_day(),
            Scenario::NewPartnerCountry => self.new_partner_country(),
            Scenario::LongConference => self.long_conference(),
            Scenario::WeekendShift => self.weekend_shift(),
            Scenario::DiasporaTraffic => self.diaspora_traffic(),
        }
    }

    fn pbx_hack_night(&mut self) -> String {
        let d = self.day(LEARNING_DAYS, self.clock.days - 4, |_| true);
        let n = self.a.exts.len();
        // A little-used extension: hacked SIP credentials.
        let ext = self.a.exts[n - 1 - self.rng.below(n.min(3) as u64) as usize];
        let k = self.rng.range(3, 8) as usize;
        let targets: Vec<Num> =
            (0..k).map(|_| numbers::intl(&mut self.rng, numbers::TIMOR.cc, numbers::TIMOR.blocks)).collect();
        let channels = self.rng.range(4, 6) as usize;
        let first = self.clock.at(d, 22, 0, 0) + self.rng.range(0, 9000);
        // Test calls 30 min to 6 h before the attack.
        for _ in 0..self.rng.range(2, 3) {
            let t = first - self.rng.range(1800, 6 * 3600);
            let number = *self.rng.pick(&targets);
            let billsec = self.rng.range32(10, 90);
            self.talk(ext, number, t, billsec);
        }
        for night in 0..3 {
            let begin =
                if night == 0 { first } else { self.clock.at(d + night, 22, 0, 0) + self.rng.range(0, 9000) };
            // Hard end 06:00; the last calls start by 05:00-05:40.
            let hard_end = self.clock.at(d + night, 24 + 6, 0, 0);
            let stop = hard_end - self.rng.range(1200, 3600);
            for _ in 0..channels {
                let mut t = begin + self.rng.range(0, 900);
                while t < stop {
                    let number = *self.rng.pick(&targets);
                    if self.rng.chance(0.08) {
                        let ring = self.rng.range32(15, 40);
                        let end = self.push(ext, Dir::Outbound, number, t, ring, 0, Disp::NoAnswer);
                        t = end + self.rng.range(5, 30);
                        continue;
                    }
                    let billsec = self.rng.range32(1200, 3600).min((hard_end - t - 10).max(60) as u32);
                    let end = self.talk(ext, number, t, billsec);
                    t = end + self.rng.range(5, 90);
                }
            }
        }
        format!("ext {ext}, {channels} channels to +670, nights from {} 22:00", self.date(d))
    }

    fn satellite_weekend(&mut self) -> String {
        let d = self.day(LEARNING_DAYS, self.clock.days - 2, |d| Clock::weekday(d) == 5);
        let begin = self.clock.at(d, self.rng.range32(1, 16), self.rng.range32(0, 59), 0);
        let end = begin + self.rng.range(2 * 3600, 5 * 3600);
        let channels = self.rng.range(8, 15) as usize;
        let k = self.rng.range(1, 3) as usize;
        let exts = self.exts(k);
        let n_targets = self.rng.range(4, 10) as usize;
        let targets: Vec<Num> = (0..n_targets)
            .map(|_| {
                let dest = self.rng.pick(numbers::SATELLITE);
                numbers::intl(&mut self.rng, dest.cc, dest.blocks)
            })
            .collect();
        for c in 0..channels {
            let ext = exts[c % exts.len()];
            let mut t = begin + self.rng.range(0, 600);
            while t < end {
                let number = *self.rng.pick(&targets);
                let billsec = self.rng.range32(180, 1500);
                t = self.talk(ext, number, t, billsec) + self.rng.range(5, 60);
            }
        }
        format!(
            "{channels} channels from {} extension(s) to satellite, Saturday {}",
            exts.len(),
            self.date(d)
        )
    }

    fn slow_drip(&mut self) -> String {
        let span = self.rng.range32(12, 14);
        let last_start = self.clock.days.saturating_sub(12).max(LEARNING_DAYS);
        let d0 = self.day(LEARNING_DAYS, last_start, |_| true);
        let span = span.min(self.clock.days - d0);
        let mut targets: Vec<Num> =
            (0..2).map(|_| numbers::national(&mut self.rng, numbers::NL_0906_0909)).collect();
        targets.push(numbers::intl(&mut self.rng, numbers::UK_PERSONAL.cc, numbers::UK_PERSONAL.blocks));
        let k = self.rng.range(3, 6) as usize;
        let exts = self.exts(k);
        for day in d0..d0 + span {
            if Clock::is_weekend(day) {
                continue;
            }
            for _ in 0..self.rng.range(2, 4) {
                let t = self.clock.at(
                    day,
                    self.rng.range32(9, 16),
                    self.rng.range32(0, 59),
                    self.rng.range32(0, 59),
                );
                let ext = *self.rng.pick(&exts);
                let number = *self.rng.pick(&targets);
                let billsec = self.rng.range32(600, 1500);
                self.talk(ext, number, t, billsec);
            }
        }
        format!("{span} days from {}, {} extensions, 0906/0909 and +44 70", self.date(d0), exts.len())
    }

    fn number_scan(&mut self) -> String {
        let d = self.day(LEARNING_DAYS, self.clock.days - 2, |_| true);
        let &(cc, prefix, mid_len) = self.rng.pick(numbers::SCAN_RANGES);
        let middle = numbers::digits(&mut self.rng, mid_len);
        let n = self.rng.range(40, 150) as u32;
        let c0 = self.rng.range32(0, 999 - n);
        let ext = self.a.exts[self.a.pick_ext(&mut self.rng)];
        let mut t =
            self.clock.at(d, self.rng.range32(0, 23), self.rng.range32(0, 20), self.rng.range32(0, 59));
        let max_gap = (3000 / n as i64).max(7);
        let mut hits = Vec::new();
        for k in 0..n {
            let number = numbers::sequential(cc, prefix, &middle, c0 + k);
            let u = self.rng.unit();
            let end = if u < 0.45 {
                let ring = self.rng.range32(0, 2);
                self.push(ext, Dir::Outbound, number, t, ring, 0, Disp::Failed)
            } else if u < 0.75 {
                let ring = self.rng.range32(3, 9);
                self.push(ext, Dir::Outbound, number, t, ring, 0, Disp::NoAnswer)
            } else if u < 0.87 {
                let ring = self.rng.range32(1, 3);
                self.push(ext, Dir::Outbound, number, t, ring, 0, Disp::Busy)
            } else {
                hits.push(number);
                let ring = self.rng.range32(2, 5);
                let billsec = self.rng.range32(3, 12);
                self.push(ext, Dir::Outbound, number, t, ring, billsec, Disp::Answered)
            };
            t = t.max(end) + self.rng.range(6, max_gap);
        }
        while hits.len() < 2 {
            let k = self.rng.range32(0, n - 1);
            hits.push(numbers::sequential(cc, prefix, &middle, c0 + k));
        }
        hits.truncate(self.rng.range(2, 4) as usize);
        let begin = t + self.rng.range(1800, 6 * 3600);
        let end = begin + self.rng.range(3600, 3 * 3600);
        let channels = self.rng.range(4, 8);
        for _ in 0..channels {
            let mut t = begin + self.rng.range(0, 300);
            while t < end {
                let number = *self.rng.pick(&hits);
                let billsec = self.rng.range32(600, 2700);
                t = self.talk(ext, number, t, billsec) + self.rng.range(5, 60);
            }
        }
        format!(
            "ext {ext}, {n} numbers of +{cc} {prefix}{middle}xxx on {}, then {channels} channels",
            self.date(d)
        )
    }

    fn wangiri_callback(&mut self) -> String {
        let d = self.weekday();
        let k = self.rng.range(5, 15) as usize;
        let exts = self.exts(k);
        let m = self.rng.range(2, 5) as usize;
        let sources: Vec<Num> = (0..m)
            .map(|_| {
                let dest = self.rng.pick(numbers::WANGIRI);
                numbers::intl(&mut self.rng, dest.cc, dest.blocks)
            })
            .collect();
        let base = self.clock.at(d, self.rng.range32(9, 11), self.rng.range32(0, 59), 0);
        for &ext in &exts {
            let number = *self.rng.pick(&sources);
            let missed = base + self.rng.range(0, 2 * 3600);
            let ring = self.rng.range32(1, 4);
            let end = self.push(ext, Dir::Inbound, number, missed, ring, 0, Disp::NoAnswer);
            let mut t = end + self.rng.range(300, 4 * 3600);
            for _ in 0..if self.rng.chance(0.2) { 2 } else { 1 } {
                let billsec = self.rng.range32(60, 300);
                t = self.talk(ext, number, t, billsec) + self.rng.range(600, 3600);
            }
        }
        // A few more one-ring calls nobody returns.
        for _ in 0..self.rng.range(1, 3) {
            let ext = self.a.exts[self.a.pick_ext(&mut self.rng)];
            let number = *self.rng.pick(&sources);
            let t = base + self.rng.range(0, 2 * 3600);
            let ring = self.rng.range32(1, 4);
            self.push(ext, Dir::Inbound, number, t, ring, 0, Disp::NoAnswer);
        }
        format!("{m} foreign numbers rang, {} extensions called back on {}", exts.len(), self.date(d))
    }

    fn office_premium_new_country(&mut self) -> String {
        let a = self.a;
        let families: Vec<&numbers::PremiumFamily> =
            numbers::FOREIGN_PREMIUM.iter().filter(|f| !a.countries.iter().any(|c| c.cc == f.cc)).collect();
        let fam = *self.rng.pick(&families);
        let d = self.weekday();
        let n_targets = self.rng.range(1, 3) as usize;
        let targets: Vec<Num> =
            (0..n_targets).map(|_| numbers::intl(&mut self.rng, fam.cc, fam.blocks)).collect();
        let k = self.rng.range(1, 3) as usize;
        let exts = self.exts(k);
        let calls = self.rng.range(4, 10);
        for _ in 0..calls {
            let t =
                self.clock.at(d, self.rng.range32(9, 16), self.rng.range32(0, 59), self.rng.range32(0, 59));
            let ext = *self.rng.pick(&exts);
            let number = *self.rng.pick(&targets);
            let billsec = self.rng.range32(300, 1500);
            self.talk(ext, number, t, billsec);
        }
        format!("{calls} calls to {} (+{}) on {}", fam.name, fam.cc, self.date(d))
    }

    fn multi_ext_night_cuba(&mut self) -> String {
        let d = self.day(LEARNING_DAYS, self.clock.days - 1, |_| true);
        let k = self.rng.range(3, 6) as usize;
        let exts = self.exts(k);
        let stop = self.clock.at(d, 5, 30, 0);
        for &ext in &exts {
            let dest = self.rng.pick(numbers::NIGHT_IRSF);
            let targets: Vec<Num> = (0..self.rng.range(1, 2))
                .map(|_| numbers::intl(&mut self.rng, dest.cc, dest.blocks))
                .collect();
            let mut t = self.clock.at(d, 0, self.rng.range32(15, 59), self.rng.range32(0, 59));
            while t + 1800 + 10 <= stop {
                let number = *self.rng.pick(&targets);
                let billsec = self.rng.range32(1800, 3600).min((stop - t - 10) as u32);
                t = self.talk(ext, number, t, billsec) + self.rng.range(10, 120);
            }
        }
        format!("{} extensions, one channel each, night of {}", exts.len(), self.date(d))
    }

    fn pacific_daytime_burst(&mut self) -> String {
        let d = self.weekday();
        let begin = self.clock.at(d, self.rng.range32(10, 13), self.rng.range32(0, 59), 0);
        let n = self.rng.range(10, 30);
        let n_countries = self.rng.range(1, 3) as usize;
        let countries: Vec<&numbers::Dest> = self
            .rng
            .sample(numbers::PACIFIC.len(), n_countries)
            .into_iter()
            .map(|i| &numbers::PACIFIC[i])
            .collect();
        let n_targets = self.rng.range(3, 8) as usize;
        let targets: Vec<Num> = (0..n_targets)
            .map(|_| {
                let dest = *self.rng.pick(&countries);
                numbers::intl(&mut self.rng, dest.cc, dest.blocks)
            })
            .collect();
        let k = self.rng.range(2, 6) as usize;
        let exts = self.exts(k);
        for _ in 0..n {
            let t = begin + self.rng.range(0, 90 * 60);
            let ext = *self.rng.pick(&exts);
            let number = *self.rng.pick(&targets);
            if self.rng.chance(0.85) {
                let billsec = self.rng.range32(120, 1200);
                self.talk(ext, number, t, billsec);
            } else {
                let ring = self.rng.range32(15, 40);
                self.push(ext, Dir::Outbound, number, t, ring, 0, Disp::NoAnswer);
            }
        }
        let ccs: Vec<String> = countries.iter().map(|c| format!("+{}", c.cc)).collect();
        format!("{n} calls to {} from {} extensions on {}", ccs.join("/"), exts.len(), self.date(d))
    }

    fn campaign_day(&mut self) -> String {
        let d = self.weekday();
        let factor = self.rng.uniform(5.0, 6.0);
        self.over(d, Override::Volume { label: self.label, factor });
        format!("{factor:.1}x volume on {}", self.date(d))
    }

    fn new_partner_country(&mut self) -> String {
        let country = *self.rng.pick(numbers::NEW_PARTNERS);
        let latest = LEARNING_DAYS + (self.clock.days - LEARNING_DAYS - 5) / 2;
        let d0 = self.day(LEARNING_DAYS, latest, |d| !Clock::is_weekend(d));
        let n_book = self.rng.range(3, 6) as usize;
        let book: Vec<Num> = (0..n_book).map(|_| numbers::in_country(&mut self.rng, country, 0.4)).collect();
        for day in d0..self.clock.days {
            if Clock::is_weekend(day) {
                continue;
            }
            let lambda = self.rng.uniform(2.0, 4.0);
            let o = Override::Extra {
                label: self.label,
                lambda,
                hours: (9, 17),
                book: book.clone(),
                fresh: vec![country],
                p_book: 0.85,
            };
            self.over(day, o);
        }
        format!("+{} ({}) from {}", country.cc, country.iso, self.date(d0))
    }

    fn long_conference(&mut self) -> String {
        let d = self.weekday();
        let at = self.clock.at(d, self.rng.range32(14, 15), self.rng.range32(0, 59), 0);
        let number = numbers::intl(&mut self.rng, numbers::US.cc, numbers::US.fixed);
        let billsec = self.rng.range32(10_500, 11_100);
        self.over(d, Override::Fixed { label: self.label, at, number, billsec });
        format!("{}s to +{} on {}", billsec, &number.as_str()[2..], self.date(d))
    }

    fn weekend_shift(&mut self) -> String {
        let d = self.day(LEARNING_DAYS, self.clock.days - 2, |d| Clock::weekday(d) == 5);
        self.over(d, Override::Volume { label: self.label, factor: 1.0 });
        self.over(d + 1, Override::Volume { label: self.label, factor: 1.0 });
        format!("weekday volume on {} and {}", self.date(d), self.date(d + 1))
    }

    fn diaspora_traffic(&mut self) -> String {
        let w = self.day(LEARNING_DAYS, self.clock.days - 7, |d| Clock::weekday(d) == 0);
        let book = self.a.book_in(numbers::DIASPORA);
        let daily = self.a.diaspora_daily();
        let boost = self.rng.uniform(1.5, 2.5);
        for day in w..w + 7 {
            let lambda = daily * boost * if Clock::is_weekend(day) { 0.3 } else { 1.0 };
            let o = Override::Extra {
                label: self.label,
                lambda,
                hours: (8, 20),
                book: book.clone(),
                fresh: numbers::DIASPORA.to_vec(),
                p_book: 0.6,
            };
            self.over(day, o);
        }
        format!("{:.0}% more calls to NG/IN/MA the week of {}", boost * 100.0, self.date(w))
    }
}
