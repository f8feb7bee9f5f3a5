//! A seeded, reproducible traffic generator: a month of a Dutch operator's PBX customers as
//! Asterisk writes it (`Master.csv`, 18 columns, local times in Europe/Amsterdam, rows in the
//! order calls end), with fraud incidents and honest look-alikes placed on their own accounts
//! after a learning week, and a label for every call.
//!
//! Same [`SimConfig`] → byte-identical output: every random draw comes from a ChaCha8 stream
//! keyed by the seed and by what it is for (account, day, scenario), and nothing is iterated in
//! hash order. See `docs/simulator.md` for the account kinds, the scenarios and the label file.
//!
//! ```no_run
//! let cfg = tollguard_sim::SimConfig::default();
//! let summary = tollguard_sim::simulate(&cfg, std::io::sink(), std::io::sink()).unwrap();
//! println!("{summary}");
//! ```

mod accounts;
mod model;
mod numbers;
mod output;
mod rng;
mod scenarios;

pub use accounts::AccountKind;
pub use scenarios::{Scenario, LEARNING_DAYS};

use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ZonedDateTime};
use model::{Clock, Dir, Disp};
use rust_decimal::Decimal;
use std::fmt;
use std::io::{self, BufWriter, Write};
use tollguard_core::money::Currency;
use tollguard_core::numbering::{DialPlan, Dialled};
use tollguard_core::rating::{RateDeck, TimeBands};

/// The zone of the simulated PBXs: `Master.csv` times are local to it.
pub const TIMEZONE: &str = "Europe/Amsterdam";

/// The deck that prices every destination the simulator dials (`examples/sim/rates.csv`).
pub const DECK_CSV: &str = include_str!("../../../examples/sim/rates.csv");

/// A `tollguard.toml` for the simulated traffic: Dutch dialling, Amsterdam time, the deck above
/// beside it as `rates.csv`.
pub const CONFIG_TOML: &str =
    "[defaults]\ncountry = \"NL\"\ntimezone = \"Europe/Amsterdam\"\n\n[[decks]]\npath = \"rates.csv\"\n";

/// What to simulate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimConfig {
    /// Seed of every random draw.
    pub seed: u64,
    /// Number of accounts (`acct001`, ...).
    pub accounts: usize,
    /// Number of days.
    pub days: u32,
    /// The first day: a Monday.
    pub start: Date,
    /// Scenarios to place, each on its own account.
    pub scenarios: Vec<Scenario>,
}

impl Default for SimConfig {
    /// Seed 42, 150 accounts, 30 days from Monday 2026-01-05, every scenario.
    fn default() -> SimConfig {
        SimConfig {
            seed: 42,
            accounts: 150,
            days: 30,
            start: jiff::civil::date(2026, 1, 5),
            scenarios: Scenario::ALL.to_vec(),
        }
    }
}

/// One placed scenario and what it produced.
#[derive(Clone, Debug)]
pub struct Incident {
    /// The scenario.
    pub scenario: Scenario,
    /// The account it was placed on.
    pub account: String,
    /// That account's kind.
    pub account_kind: AccountKind,
    /// The incident id in `labels.csv` (`pbx_hack_night-acct017`); empty for honest scenarios.
    pub incident: String,
    /// What was placed, in words (extensions, days, destinations).
    pub detail: String,
    /// Calls labelled with the scenario.
    pub calls: u64,
    /// Start of the first of them, local time.
    pub first_start: Option<ZonedDateTime>,
    /// End of the last of them, local time.
    pub last_end: Option<ZonedDateTime>,
    /// What the outbound ones cost in the shipped deck (EUR).
    pub cost: Decimal,
}

/// What a run wrote.
#[derive(Clone, Debug)]
pub struct Summary {
    /// The configuration.
    pub config: SimConfig,
    /// Rows written.
    pub calls: u64,
    /// Calls labelled `honest` (baseline and look-alikes).
    pub honest_calls: u64,
    /// Calls labelled `fraud`.
    pub fraud_calls: u64,
    /// Outbound calls (emergency included).
    pub outbound: u64,
    /// Inbound calls from the trunk.
    pub inbound: u64,
    /// Extension-to-extension calls.
    pub internal: u64,
    /// Calls not answered.
    pub unanswered: u64,
    /// Calls to 112.
    pub emergency: u64,
    /// Accounts per kind, every kind listed.
    pub accounts_by_kind: Vec<(AccountKind, usize)>,
    /// Every account and its kind, in id order.
    pub accounts: Vec<(String, AccountKind)>,
    /// The scenarios placed, in [`Scenario::ALL`] order.
    pub scenarios: Vec<Incident>,
}

impl Summary {
    /// Calls labelled with `s` (0 when not placed).
    pub fn calls_of(&self, s: Scenario) -> u64 {
        self.scenarios.iter().filter(|i| i.scenario == s).map(|i| i.calls).sum()
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        let pct = |n: u64| if self.calls == 0 { 0.0 } else { 100.0 * n as f64 / self.calls as f64 };
        writeln!(
            f,
            "simulated {} accounts x {} days from {} ({TIMEZONE}), seed {}",
            c.accounts, c.days, c.start, c.seed
        )?;
        writeln!(
            f,
            "calls: {} (honest {}, fraud {}); outbound {}, inbound {}, internal {}, emergency {}; unanswered {:.1}%",
            self.calls,
            self.honest_calls,
            self.fraud_calls,
            self.outbound,
            self.inbound,
            self.internal,
            self.emergency,
            pct(self.unanswered)
        )?;
        let kinds: Vec<String> = self.accounts_by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect();
        writeln!(f, "accounts: {}", kinds.join(", "))?;
        if self.scenarios.is_empty() {
            return writeln!(f, "scenarios: none");
        }
        writeln!(f, "scenarios:")?;
        for i in &self.scenarios {
            let kind = if i.scenario.is_fraud() { "fraud" } else { "honest" };
            let from =
                i.first_start.as_ref().map(|z| z.strftime("%Y-%m-%d %H:%M").to_string()).unwrap_or_default();
            writeln!(
                f,
                "  {:<27} {:<6} {} ({:<15}) {:>6} calls  EUR {:>10.2}  from {}  {}",
                i.scenario.name(),
                kind,
                i.account,
                i.account_kind.name(),
                i.calls,
                i.cost,
                from,
                i.detail
            )?;
        }
        Ok(())
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

impl SimConfig {
    /// Checks the configuration without simulating: what [`simulate`] would refuse.
    pub fn check(&self) -> io::Result<()> {
        self.prepare().map(|_| ())
    }

    fn prepare(&self) -> io::Result<Prepared> {
        if self.accounts == 0 || self.days == 0 {
            return Err(invalid("need at least one account and one day".into()));
        }
        if self.start.weekday() != Weekday::Monday {
            return Err(invalid(format!(
                "the start must be a Monday; {} is a {:?}",
                self.start,
                self.start.weekday()
            )));
        }
        let tz = TimeZone::get(TIMEZONE).map_err(|e| invalid(e.to_string()))?;
        let clock = Clock::new(&tz, self.start, self.days)?;
        let kinds = accounts::kinds(self.seed, self.accounts);
        let accounts: Vec<accounts::Account> =
            kinds.iter().enumerate().map(|(i, &k)| accounts::Account::new(self.seed, i, k)).collect();
        let plan = scenarios::plan(self.seed, &accounts, &clock, &self.scenarios)?;
        Ok(Prepared { tz, clock, kinds, accounts, plan })
    }
}

struct Prepared {
    tz: TimeZone,
    clock: Clock,
    kinds: Vec<AccountKind>,
    accounts: Vec<accounts::Account>,
    plan: scenarios::Plan,
}

/// Simulates `cfg`: writes `Master.csv` rows to `cdr_out` and `labels.csv` (with its header) to
/// `labels_out`, both buffered here, and returns what was written.
///
/// Refused (`InvalidInput`): a start that is not a Monday, no accounts or days, a scenario that
/// needs more days than given or finds no suitable account left.
pub fn simulate(cfg: &SimConfig, cdr_out: impl Write, labels_out: impl Write) -> io::Result<Summary> {
    let Prepared { tz, clock, kinds, mut accounts, plan } = cfg.prepare()?;

    let mut calls = Vec::new();
    for (i, a) in accounts.iter_mut().enumerate() {
        for day in 0..cfg.days {
            let o = plan.overrides.get(&(i as u32, day)).map(Vec::as_slice).unwrap_or(&[]);
            a.day(cfg.seed, i as u32, day, &clock, o, &mut calls);
        }
    }
    calls.extend_from_slice(&plan.calls);
    // Channels are numbered as they are created; rows are written as calls end.
    calls.sort_by_key(|c| c.start);
    for (i, c) in calls.iter_mut().enumerate() {
        c.seq = i as u32 + 1;
    }
    calls.sort_unstable_by_key(|c| (c.end(), c.start, c.seq));

    let (from, to) = clock.span();
    let first = calls.first().map_or(from, |c| c.start.min(from));
    let last = calls.last().map_or(to, |c| c.end().max(to));
    let fmt = output::LocalFmt::new(tz.clone(), first - 86_400, last + 86_400);
    let plan_nl = DialPlan::for_country("NL").map_err(invalid)?;
    let deck =
        RateDeck::parse("rates.csv", "rates", DECK_CSV.as_bytes(), &TimeBands::default(), Currency::EUR)
            .map_err(|e| invalid(e.to_string()))?;

    let mut per_label: Vec<(u64, i64, i64, Decimal)> =
        vec![(0, i64::MAX, i64::MIN, Decimal::ZERO); plan.labels.len()];
    let mut s = Summary {
        config: cfg.clone(),
        calls: 0,
        honest_calls: 0,
        fraud_calls: 0,
        outbound: 0,
        inbound: 0,
        internal: 0,
        unanswered: 0,
        emergency: 0,
        accounts_by_kind: AccountKind::ALL
            .iter()
            .map(|&k| (k, kinds.iter().filter(|&&x| x == k).count()))
            .collect(),
        accounts: accounts.iter().map(|a| (a.id.clone(), a.kind)).collect(),
        scenarios: Vec::new(),
    };
    let mut cdr = BufWriter::with_capacity(1 << 17, cdr_out);
    let mut lab = BufWriter::with_capacity(1 << 16, labels_out);
    lab.write_all(b"call_id,account,extension,scenario,kind,incident\n")?;
    let mut line = Vec::with_capacity(512);
    for c in &calls {
        let account = &accounts[c.account as usize].id;
        line.clear();
        output::push_row(&mut line, &fmt, account, c);
        cdr.write_all(&line)?;

        let label = &plan.labels[c.label as usize];
        line.clear();
        output::push_call_id(&mut line, c);
        line.push(b',');
        line.extend_from_slice(account.as_bytes());
        line.push(b',');
        line.extend_from_slice(c.ext.to_string().as_bytes());
        line.push(b',');
        line.extend_from_slice(label.scenario.as_bytes());
        line.extend_from_slice(if label.fraud { b",fraud," } else { b",honest," });
        line.extend_from_slice(label.incident.as_bytes());
        line.push(b'\n');
        lab.write_all(&line)?;

        s.calls += 1;
        if label.fraud {
            s.fraud_calls += 1;
        } else {
            s.honest_calls += 1;
        }
        match c.dir {
            Dir::Outbound => s.outbound += 1,
            Dir::Inbound => s.inbound += 1,
            Dir::Internal => s.internal += 1,
        }
        if c.disp != Disp::Answered {
            s.unanswered += 1;
        }
        if c.dir == Dir::Outbound && c.number.as_str() == "112" {
            s.emergency += 1;
        }
        if c.label != 0 {
            let e = &mut per_label[c.label as usize];
            e.0 += 1;
            e.1 = e.1.min(c.start);
            e.2 = e.2.max(c.end());
            if c.dir == Dir::Outbound && c.billsec > 0 {
                if let (Dialled::E164(n), Ok(ts)) =
                    (plan_nl.normalise(c.number.as_str()), Timestamp::from_second(c.start))
                {
                    if let Some(row) = deck.find(&n, ts, 0) {
                        e.3 += row.cost(c.billsec);
                    }
                }
            }
        }
    }
    cdr.flush()?;
    lab.flush()?;

    let zoned = |t: i64| Timestamp::from_second(t).ok().map(|t| t.to_zoned_datetime(tz.clone()));
    for p in &plan.placed {
        let (calls, first, last, cost) = per_label[p.label as usize];
        let a = &accounts[p.account];
        s.scenarios.push(Incident {
            scenario: p.scenario,
            account: a.id.clone(),
            account_kind: a.kind,
            incident: plan.labels[p.label as usize].incident.clone(),
            detail: p.detail.clone(),
            calls,
            first_start: if calls > 0 { zoned(first) } else { None },
            last_end: if calls > 0 { zoned(last) } else { None },
            cost,
        });
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_lists() {
        assert_eq!(Scenario::parse_list("all").unwrap().len(), 13);
        assert!(Scenario::parse_list("none").unwrap().is_empty());
        assert_eq!(
            Scenario::parse_list("slow_drip, pbx_hack_night,slow_drip").unwrap(),
            [Scenario::PbxHackNight, Scenario::SlowDrip]
        );
        let e = Scenario::parse_list("pbx_hack").unwrap_err();
        assert!(e.starts_with("unknown scenario \"pbx_hack\"; known: all, none, pbx_hack_night,"), "{e}");
        for s in Scenario::ALL {
            assert_eq!(Scenario::parse(s.name()), Some(s));
        }
        assert_eq!(Scenario::ALL.iter().filter(|s| s.is_fraud()).count(), 8);
    }

    #[test]
    fn the_embedded_deck_parses() {
        let deck =
            RateDeck::parse("rates.csv", "rates", DECK_CSV.as_bytes(), &TimeBands::default(), Currency::EUR);
        assert!(deck.is_ok(), "{:?}", deck.err());
    }
}
