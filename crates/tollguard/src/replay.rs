//! `tollguard replay`: the engine driven by CDR files in event time.
//!
//! Each CDR becomes a call attempt at its start, an answer, and an end; time passes between
//! events as ticks (every [`TICK_S`] seconds while calls run). The attempt carries only what a
//! switch knows before it routes a call (ids, account, extension, dialled number, channels,
//! context): never the call's duration, cost or outcome. A denied call never happens; a capped
//! call ends at its cap; a cut call ends when it is cut.
//!
//! CDR files are written when calls end, not when they start, so the whole input is read before
//! the replay and the attempts are ordered by start time (memory grows with the input: about
//! 300 bytes per CDR).

use crate::config::Setup;
use crate::rate::setup;
use crate::InputArgs;
use anyhow::{anyhow, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget};
use jiff::{SignedDuration, Timestamp};
use rust_decimal::Decimal;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tollguard_core::cdr::Cdr;
use tollguard_core::money::Currency;
use tollguard_core::rater::Rater;
use tollguard_engine::policy::Policy;
use tollguard_engine::{Attempt, Effect, Engine, Event, Severity};
use tollguard_ingest::{ReadError, ReadOptions};

/// Seconds of event time between ticks while calls run.
pub const TICK_S: i64 = 5;

/// Arguments of `tollguard replay`.
#[derive(clap::Args, Debug)]
pub struct ReplayArgs {
    #[command(flatten)]
    input: InputArgs,
    /// Report-only learning until this time (RFC 3339, or `YYYY-MM-DD[ HH:MM:SS]` in the --tz
    /// zone): earlier calls update state and may raise alerts, but are always allowed uncapped.
    #[arg(long)]
    learn_until: Option<String>,
    /// Write one alert per line here (JSON).
    #[arg(long)]
    alerts_out: Option<PathBuf>,
    /// Write one decision per CDR here (JSON).
    #[arg(long)]
    decisions_out: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    // At equal times: ends first (free the channel), then answers, then new attempts.
    End,
    Answer,
    Attempt,
}

/// What became of one CDR in the replayed world.
pub struct Outcome {
    /// Allowed at its start.
    pub allowed: bool,
    /// The cap given at its start.
    pub cap: Option<u32>,
    /// Rules of the decision.
    pub rules: Vec<String>,
    /// Talk time the call had when it was cut.
    pub cut_at: Option<u32>,
    /// When it was cut.
    pub cut_time: Option<Timestamp>,
    ended: bool,
    /// Talk time in the replayed world.
    pub talk: u32,
    /// When it was decided (its start).
    pub decided_at: Timestamp,
}

fn parse_learn_until(s: &str, setup: &Setup) -> Result<Timestamp> {
    if let Ok(t) = s.parse::<Timestamp>() {
        return Ok(t);
    }
    let civil: jiff::civil::DateTime = s
        .parse::<jiff::civil::DateTime>()
        .or_else(|_| s.parse::<jiff::civil::Date>().map(|d| d.to_datetime(jiff::civil::Time::midnight())))
        .map_err(|_| anyhow!("--learn-until must be RFC 3339 or YYYY-MM-DD[ HH:MM:SS], found {s:?}"))?;
    setup.cdr_tz.to_timestamp(civil).map_err(|e| anyhow!("--learn-until {s:?}: {e}"))
}

/// Reads every CDR of the inputs; malformed rows are reported and counted.
pub fn read_cdrs(input: &InputArgs, options: &ReadOptions) -> Result<(Vec<Cdr>, u64)> {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_message("reading CDRs");
    let mut cdrs: Vec<Cdr> = Vec::new();
    let mut malformed = 0u64;
    let mut cdr = Cdr::default();
    for path in &input.cdr {
        let mut reader = tollguard_ingest::open(input.format, path, options)?;
        loop {
            match reader.read_into(&mut cdr) {
                Ok(true) => cdrs.push(cdr.clone()),
                Ok(false) => break,
                Err(ReadError::Row(bad)) => {
                    malformed += 1;
                    if malformed <= 1000 {
                        bar.suspend(|| eprintln!("warning: skipped malformed row: {bad}"));
                    }
                }
                Err(e) => return Err(e.into()),
            }
            if cdrs.len() % 65_536 == 0 {
                bar.set_position(cdrs.len() as u64);
            }
        }
    }
    bar.finish_and_clear();
    Ok((cdrs, malformed))
}

/// What the replay did: one outcome per CDR (same order) and the alerts raised.
pub struct Replayed {
    /// Per CDR.
    pub outcomes: Vec<Outcome>,
    /// In the order raised.
    pub alerts: Vec<tollguard_engine::Alert>,
    /// Accounts with state at the end, and the bytes of that state.
    pub state: (usize, usize),
}

/// Drives a fresh engine through the CDRs in event time.
pub fn drive(rater: Arc<Rater>, policy: Policy, learn_until: Option<Timestamp>, cdrs: &[Cdr]) -> Replayed {
    let mut engine = Engine::new(rater, policy);
    engine.set_learn_until(learn_until);

    let mut queue: BinaryHeap<Reverse<(Timestamp, Kind, usize)>> = BinaryHeap::new();
    for (i, c) in cdrs.iter().enumerate() {
        queue.push(Reverse((c.start, Kind::Attempt, i)));
    }
    let by_id: std::collections::HashMap<&str, usize> =
        cdrs.iter().enumerate().map(|(i, c)| (c.call_id.as_str(), i)).collect();
    let mut outcomes: Vec<Option<Outcome>> = (0..cdrs.len()).map(|_| None).collect();
    let mut alerts = Vec::new();
    let mut effects = Vec::new();
    let mut last_tick: Option<Timestamp> = None;
    let tick = SignedDuration::from_secs(TICK_S);

    while let Some(Reverse((t, kind, i))) = queue.pop() {
        // Time passes: ticks while calls run.
        if engine.running_calls() > 0 {
            let mut next = match last_tick {
                Some(l) => l + tick,
                None => t,
            };
            while next < t {
                engine.handle(Event::Tick, next, &mut effects);
                apply(&mut effects, next, cdrs, &by_id, &mut outcomes, &mut queue, &mut alerts);
                last_tick = Some(next);
                next += tick;
            }
        } else {
            last_tick = Some(t);
        }
        let c = &cdrs[i];
        match kind {
            Kind::Attempt => {
                let a = Attempt {
                    call_id: c.call_id.clone(),
                    account: c.account.clone(),
                    extension: c.source.clone(),
                    dialled: c.dialled.clone(),
                    channel: c.channel.clone(),
                    dst_channel: c.dst_channel.clone(),
                    context: c.context.clone(),
                };
                engine.handle(Event::Attempt(a), t, &mut effects);
                // The decision decides what of the CDR happens.
                for e in &effects {
                    if let Effect::Decision(d) = e {
                        if d.call_id != c.call_id {
                            continue;
                        }
                        let talk = match d.max_duration_s {
                            Some(cap) => c.billsec.min(cap),
                            None => c.billsec,
                        };
                        outcomes[i] = Some(Outcome {
                            allowed: d.allowed,
                            cap: d.max_duration_s,
                            rules: d.rules.clone(),
                            cut_at: None,
                            cut_time: None,
                            ended: !d.allowed,
                            talk: if d.allowed { talk } else { 0 },
                            decided_at: t,
                        });
                        if d.allowed {
                            match c.answer {
                                Some(ans) if c.billsec > 0 => {
                                    queue.push(Reverse((ans.max(t), Kind::Answer, i)));
                                    let end = ans.max(t) + SignedDuration::from_secs(talk as i64);
                                    queue.push(Reverse((end, Kind::End, i)));
                                }
                                _ => {
                                    let end = c.end.unwrap_or(t).max(t);
                                    queue.push(Reverse((end, Kind::End, i)));
                                }
                            }
                        }
                    }
                }
                apply(&mut effects, t, cdrs, &by_id, &mut outcomes, &mut queue, &mut alerts);
            }
            Kind::Answer => {
                if outcomes[i].as_ref().is_some_and(|o| !o.ended) {
                    engine.handle(Event::Answer { call_id: c.call_id.clone() }, t, &mut effects);
                    apply(&mut effects, t, cdrs, &by_id, &mut outcomes, &mut queue, &mut alerts);
                }
            }
            Kind::End => {
                if let Some(o) = outcomes[i].as_mut() {
                    if !o.ended {
                        o.ended = true;
                        let billsec = o.talk;
                        engine.handle(
                            Event::End { call_id: c.call_id.clone(), billsec: Some(billsec) },
                            t,
                            &mut effects,
                        );
                        apply(&mut effects, t, cdrs, &by_id, &mut outcomes, &mut queue, &mut alerts);
                    }
                }
            }
        }
    }
    let outcomes: Vec<Outcome> = outcomes.into_iter().map(|o| o.expect("every CDR was attempted")).collect();
    Replayed { outcomes, alerts, state: engine.account_state_bytes() }
}

pub fn run(args: ReplayArgs) -> Result<ExitCode> {
    let setup = setup(&args.input)?;
    let learn_until = args.learn_until.as_deref().map(|s| parse_learn_until(s, &setup)).transpose()?;
    let options = ReadOptions { tz: setup.cdr_tz.clone(), generic: setup.generic.clone() };
    let (cdrs, malformed) = read_cdrs(&args.input, &options)?;
    let rater = Arc::new(setup.rater.clone());
    let Replayed { outcomes, alerts, .. } = drive(rater.clone(), setup.policy.clone(), learn_until, &cdrs);

    // Outputs and summary.
    let mut summary = Summary { calls: cdrs.len() as u64, malformed, ..Summary::default() };
    let mut decisions = match &args.decisions_out {
        Some(p) => Some(BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => None,
    };
    for (c, o) in cdrs.iter().zip(&outcomes) {
        let r = rater.rate(c);
        if r.is_unrated() {
            summary.unrated += 1;
        }
        if let Some(row) = r.rows[0] {
            *summary.exposure.entry(row.currency).or_default() += row.cost(c.billsec);
            if o.allowed {
                *summary.cost.entry(row.currency).or_default() += row.cost(o.talk);
            }
        }
        if !o.allowed {
            summary.denied += 1;
        }
        if o.cut_at.is_some() {
            summary.cut += 1;
        } else if o.cap.is_some_and(|cap| c.billsec > cap) && o.allowed {
            summary.capped += 1;
        }
        if let Some(w) = decisions.as_mut() {
            let max = o.cut_at.or(o.cap);
            let line = serde_json::json!({
                "call_id": c.call_id,
                "allowed": o.allowed,
                "max_duration_s": max,
                "rules": o.rules,
            });
            writeln!(w, "{line}")?;
        }
    }
    if let Some(mut w) = decisions {
        w.flush()?;
    }
    if let Some(p) = &args.alerts_out {
        let mut w = BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        );
        for a in &alerts {
            writeln!(w, "{}", serde_json::to_string(a)?)?;
        }
        w.flush()?;
    }
    for a in &alerts {
        match a.severity {
            Severity::Critical => summary.critical += 1,
            Severity::Warning => summary.warning += 1,
            Severity::Info => {}
        }
    }
    summary.print();
    Ok(ExitCode::SUCCESS)
}

/// Carries out effects in the replayed world: cuts end calls now; alerts are kept.
#[allow(clippy::too_many_arguments)]
fn apply(
    effects: &mut Vec<Effect>,
    now: Timestamp,
    cdrs: &[Cdr],
    by_id: &std::collections::HashMap<&str, usize>,
    outcomes: &mut [Option<Outcome>],
    queue: &mut BinaryHeap<Reverse<(Timestamp, Kind, usize)>>,
    alerts: &mut Vec<tollguard_engine::Alert>,
) {
    for e in effects.drain(..) {
        match e {
            Effect::Alert(a) => alerts.push(a),
            Effect::Cut { call_id, .. } => {
                let Some(&i) = by_id.get(call_id.as_str()) else { continue };
                let Some(o) = outcomes[i].as_mut() else { continue };
                if o.ended {
                    continue;
                }
                let c = &cdrs[i];
                let talk = match c.answer {
                    Some(ans) if now > ans => (now.duration_since(ans).as_secs().max(0) as u32).min(o.talk),
                    _ => 0,
                };
                o.talk = talk;
                o.cut_at = Some(talk);
                o.cut_time = Some(now);
                queue.push(Reverse((now, Kind::End, i)));
            }
            _ => {}
        }
    }
}

#[derive(Default)]
struct Summary {
    calls: u64,
    malformed: u64,
    unrated: u64,
    denied: u64,
    capped: u64,
    cut: u64,
    critical: u64,
    warning: u64,
    exposure: BTreeMap<Currency, Decimal>,
    cost: BTreeMap<Currency, Decimal>,
}

impl Summary {
    fn print(&self) {
        let money = |m: &BTreeMap<Currency, Decimal>| {
            if m.is_empty() {
                "0".to_string()
            } else {
                m.iter().map(|(c, v)| format!("{c} {v:.4}")).collect::<Vec<_>>().join(", ")
            }
        };
        eprintln!("replayed {} calls", self.calls);
        eprintln!("  cost as recorded {}  cost with tollguard {}", money(&self.exposure), money(&self.cost));
        eprintln!(
            "  denied {}  capped {}  cut {}  alerts {} critical, {} warning  unrated {}  malformed {}",
            self.denied, self.capped, self.cut, self.critical, self.warning, self.unrated, self.malformed
        );
    }
}
