//! Snapshots: an engine restored from one goes on exactly as the engine it was taken from.
//!
//! Four weeks of generated traffic for three accounts (two time zones, extensions, trunks,
//! national, mobile, international and high-risk numbers, emergency calls, answers, ends, cuts,
//! late records, operator commands, limits set at run time), driven as the server's rebuild
//! drives the engine (ticks at the deadlines it asks for). One engine takes it all; another is
//! snapshotted and restored at two points on the way. Every effect, and every account's report
//! at the end, must be the same.

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use tollguard_core::cdr::{Cdr, Disposition};
use tollguard_core::money::Currency;
use tollguard_core::numbering::{DialPlan, Numbering};
use tollguard_core::rater::{AccountSetup, DirectionRules, Rater};
use tollguard_core::rating::{RateDeck, TimeBands};
use tollguard_engine::policy::{Limit, LimitSpec, Policy, PolicySpec};
use tollguard_engine::{Attempt, Command, Destinations, Effect, Engine, Event, LimitOwner, Unblocker};

const DECK: &str =
    "prefix,destination,rate_per_minute,connection_fee,initial_increment_s,subsequent_increment_s
31,Netherlands,0.0120,0,60,60
316,Netherlands mobile,0.0450,0.0100,1,1
1,USA,0.0150,0,6,6
670,East Timor,1.4500,0,60,60
234,Nigeria,0.2100,0,60,60
49,Germany,0.9000,0,1,1
";

const POLICY: &str = r#"
[[limit]]
name = "daily"
metric = "spend"
window = "day"
max = "30.00"
warning_percent = 80
on_critical = ["alert", "deny", "cut"]

[[limit]]
name = "ext.hourly"
scope = "extension"
metric = "calls"
window = "rolling_1h"
max = "25"

[[limit]]
name = "channels"
metric = "concurrent"
max = "6"

[[limit]]
name = "trunk.week"
scope = "trunk"
metric = "spend"
window = "week"
max = "150.00"
on_critical = ["alert", "block"]
block_for = "2h"

[[destinations]]
name = "no.cuba"
accounts = ["acme", "shop"]
deny = { countries = ["CU"] }
"#;

fn rater() -> Arc<Rater> {
    let deck =
        RateDeck::parse("deck.csv", "deck", DECK.as_bytes(), &TimeBands::default(), Currency::EUR).unwrap();
    let nl = AccountSetup {
        plan: Arc::new(DialPlan::for_country("NL").unwrap()),
        tz: TimeZone::get("Europe/Amsterdam").unwrap(),
    };
    let mut accounts = HashMap::new();
    accounts.insert(
        "newyork".to_string(),
        AccountSetup {
            plan: Arc::new(DialPlan::for_country("NL").unwrap()),
            tz: TimeZone::get("America/New_York").unwrap(),
        },
    );
    Arc::new(
        Rater::new(
            Arc::new(Numbering::builtin().clone()),
            vec![deck],
            TimeBands::default(),
            accounts,
            nl,
            DirectionRules::default(),
        )
        .unwrap(),
    )
}

fn policy() -> Policy {
    let spec: PolicySpec = toml::from_str(POLICY).unwrap();
    Policy::from_spec(&spec).unwrap()
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What the generated world does at a time.
#[derive(Clone, Debug)]
enum Planned {
    Attempt {
        id: String,
        account: &'static str,
        ext: String,
        to: String,
        trunk: String,
        talk: u32,
        ring: u32,
    },
    Answer {
        id: String,
    },
    End {
        id: String,
        talk: u32,
    },
    Record {
        cdr: Box<Cdr>,
    },
    Command(Command),
}

/// Ordinary calls planned (attacks and commands come on top).
const CALLS: u64 = 20_000;

const ACCOUNTS: [&str; 3] = ["acme", "newyork", "shop"];

fn number(rng: &mut Rng) -> String {
    let n = rng.below(1_000_000);
    match rng.below(100) {
        0..=39 => format!("020{:07}", n),
        40..=64 => format!("06{:08}", n),
        65..=74 => format!("001212{:07}", n),
        75..=79 => format!("0049301{:06}", n),
        80..=84 => format!("00234803{:06}", n),
        85..=86 => format!("0067077{:05}", n % 100_000),
        87 => format!("0053555{:05}", n % 100_000),
        88 => "112".to_string(),
        89..=94 => format!("0800{:04}", n % 10_000),
        _ => format!("2{:02}", n % 100),
    }
}

/// Four weeks of the world's plans, by (time, order planned).
fn plans(seed: u64) -> BTreeMap<(Timestamp, u64), Planned> {
    let mut rng = Rng(seed);
    let mut plans = BTreeMap::new();
    let start: Timestamp = "2026-01-05T00:00:00Z".parse().unwrap();
    let mut order = 0u64;
    let mut put = |plans: &mut BTreeMap<_, _>, t: Timestamp, p: Planned| {
        order += 1;
        plans.insert((t, order), p);
    };
    for i in 0..CALLS {
        let t = start + SignedDuration::from_secs((rng.below(28 * 86_400)) as i64);
        let account = ACCOUNTS[rng.below(3) as usize];
        let talk = match rng.below(10) {
            0..=2 => 0,
            3..=7 => rng.below(300) as u32,
            8 => rng.below(3_600) as u32,
            _ => 3_600 + rng.below(7_200) as u32,
        };
        put(
            &mut plans,
            t,
            Planned::Attempt {
                id: format!("call-{i}"),
                account,
                ext: format!("2{:02}", rng.below(12)),
                to: number(&mut rng),
                trunk: ["kpn", "voys", ""][rng.below(3) as usize].to_string(),
                talk,
                ring: 1 + rng.below(20) as u32,
            },
        );
    }
    // A night attack from one extension of acme in the second and fourth weeks.
    for week in [1, 3] {
        let night = start + SignedDuration::from_hours(24 * (7 * week + 5) + 1);
        for j in 0..30 {
            put(
                &mut plans,
                night + SignedDuration::from_secs(j * 40),
                Planned::Attempt {
                    id: format!("attack-{week}-{j}"),
                    account: "acme",
                    ext: "299".into(),
                    to: format!("0067077{:05}", 12_000 + j),
                    trunk: "kpn".into(),
                    talk: 3_000,
                    ring: 3,
                },
            );
        }
    }
    // Operators at work now and then.
    for k in 0..40i64 {
        let t = start + SignedDuration::from_hours(16 * k + 9);
        let account = ACCOUNTS[(k % 3) as usize].to_string();
        let cmd = match k % 5 {
            0 => {
                let spec: LimitSpec = toml::from_str(&format!(
                    "name = \"set.{k}\"\nmetric = \"spend\"\nwindow = \"day\"\nmax = \"{}.00\"\non_critical = [\"alert\", \"deny\"]",
                    5 + k
                ))
                .unwrap();
                let limits: Vec<Limit> = vec![Limit::from_spec(&spec).unwrap()];
                let owner = if k % 2 == 0 { LimitOwner::Operator } else { LimitOwner::Customer };
                Command::SetLimits { account, owner, limits }
            }
            1 => Command::Block {
                account,
                extension: Some("203".into()),
                until: Some(t + SignedDuration::from_hours(5)),
                reason: "operator".into(),
                destinations: Some(Destinations { countries: vec!["NG".into()], ..Destinations::default() }),
            },
            2 => Command::Unblock { account, extension: None, by: Unblocker::Operator },
            3 => Command::Allow {
                account,
                countries: vec!["TL".into()],
                until: Some(t + SignedDuration::from_hours(30)),
            },
            _ => Command::Block {
                account,
                extension: None,
                until: None,
                reason: "pause".into(),
                destinations: None,
            },
        };
        put(&mut plans, t, Planned::Command(cmd));
    }
    plans
}

/// A call ringing or answered: account, extension, number, trunk, start, answer.
type Running = (&'static str, String, String, String, Timestamp, Option<Timestamp>);

/// Drives an engine through the plans, as the server's rebuild does: before each event, ticks at
/// the deadlines the engine asked for. A cut ends the call at once. Each effect is written down
/// (with the step it came at); every `restore_every` steps (0: never) the engine is replaced by one
/// restored from its snapshot.
fn drive(seed: u64, restore_every: usize) -> (Vec<String>, Engine, Vec<usize>) {
    let (rater, policy) = (rater(), policy());
    let mut e = Engine::new(rater.clone(), policy.clone());
    e.set_record_grace(Some(SignedDuration::from_mins(2)));
    let mut plans = plans(seed);
    let mut log = vec![];
    let mut sizes = vec![];
    let mut out = vec![];
    let mut order = u64::MAX / 2;
    let mut calls: HashMap<String, Running> = HashMap::new();
    let mut step = 0usize;
    while let Some(((now, _), plan)) = plans.pop_first() {
        if restore_every > 0 && step > 0 && step % restore_every == 0 {
            let bytes = e.snapshot();
            sizes.push(bytes.len());
            e = Engine::restore(rater.clone(), policy.clone(), &bytes).expect("restores");
            e.set_record_grace(Some(SignedDuration::from_mins(2)));
        }
        step += 1;
        while let Some(d) = e.next_deadline() {
            if d >= now {
                break;
            }
            e.handle(Event::Tick, d, &mut out);
            log.extend(out.drain(..).map(|x| format!("{step} tick {d}: {x:?}")));
        }
        let mut cuts = vec![];
        match plan {
            Planned::Attempt { id, account, ext, to, trunk, talk, ring } => {
                let a = Attempt {
                    call_id: &id,
                    account,
                    extension: &ext,
                    dialled: &to,
                    dst_channel: &trunk,
                    ..Attempt::default()
                };
                e.handle(Event::Attempt(a), now, &mut out);
                let cap = out.iter().find_map(|x| match x {
                    Effect::Decision(d) => Some((d.allowed, d.max_duration_s)),
                    _ => None,
                });
                if let Some((true, cap)) = cap {
                    calls.insert(id.clone(), (account, ext, to, trunk, now, None));
                    let talk = cap.map_or(talk, |c| talk.min(c));
                    order += 1;
                    let answer = now + SignedDuration::from_secs(ring as i64);
                    if talk > 0 {
                        plans.insert((answer, order), Planned::Answer { id: id.clone() });
                    }
                    order += 1;
                    let end = answer + SignedDuration::from_secs(talk as i64);
                    plans.insert((end, order), Planned::End { id: id.clone(), talk });
                }
            }
            Planned::Answer { id } => {
                if let Some(c) = calls.get_mut(&id) {
                    c.5 = Some(now);
                    e.handle(Event::Answer { call_id: &id }, now, &mut out);
                }
            }
            Planned::End { id, talk } => {
                if let Some((account, ext, to, trunk, start, answered)) = calls.remove(&id) {
                    e.handle(Event::End { call_id: &id, billsec: Some(talk) }, now, &mut out);
                    // Every tenth call's record comes 100 s later (within the grace), with a second more.
                    if id.ends_with('5') {
                        let cdr = Cdr {
                            call_id: id,
                            account: account.into(),
                            source: ext,
                            dialled: to,
                            dst_channel: trunk,
                            start,
                            answer: answered,
                            end: Some(now),
                            billsec: talk + u32::from(talk > 0),
                            duration_s: now.duration_since(start).as_secs() as u32,
                            disposition: if talk > 0 { Disposition::Answered } else { Disposition::NoAnswer },
                            ..Cdr::default()
                        };
                        order += 1;
                        plans.insert(
                            (now + SignedDuration::from_secs(100), order),
                            Planned::Record { cdr: Box::new(cdr) },
                        );
                    }
                }
            }
            Planned::Record { cdr } => e.handle(Event::Record(&cdr), now, &mut out),
            Planned::Command(c) => e.handle(Event::Command(c), now, &mut out),
        }
        for x in &out {
            if let Effect::Cut { call_id, .. } = x {
                cuts.push(call_id.clone());
            }
        }
        log.extend(out.drain(..).map(|x| format!("{step} {now}: {x:?}")));
        for id in cuts {
            if let Some(c) = calls.remove(&id) {
                let talk = c.5.map_or(0, |a| now.duration_since(a).as_secs() as u32);
                e.handle(Event::End { call_id: &id, billsec: Some(talk) }, now, &mut out);
                log.extend(out.drain(..).map(|x| format!("{step} cut end {now}: {x:?}")));
            }
        }
    }
    (log, e, sizes)
}

fn reports(e: &mut Engine) -> Vec<String> {
    let now: Timestamp = "2026-02-03T00:00:00Z".parse().unwrap();
    ACCOUNTS.iter().map(|a| format!("{:?}", e.account_report(a, now))).collect()
}

#[test]
fn an_engine_restored_from_its_snapshot_goes_on_as_it_would_have() {
    let (whole, mut a, _) = drive(42, 0);
    // Restored every 100 events: some restore finds each kind of state in flight (ringing and
    // answered calls, ended calls a record may still correct, blocks running out, windows,
    // baselines, alerts' quiet periods).
    let (restored, mut b, sizes) = drive(42, 100);
    // Every attempt, answer, end, record and command is a step: about 26,400 in all, to the end.
    assert!(sizes.len() > 250, "{} restores", sizes.len());
    let kinds = |log: &[String], what: &str| log.iter().filter(|l| l.contains(what)).count();
    // The traffic reaches what a snapshot has to carry.
    for what in [
        "Cut {",
        "Block {",
        "Unblock {",
        "severity: Critical",
        "default.",
        "daily",
        "trunk.week",
        "set.",
        "no.cuba",
    ] {
        assert!(kinds(&whole, what) > 0, "the generated month has no {what}");
    }
    assert_eq!(whole.len(), restored.len(), "as many effects");
    for (i, (x, y)) in whole.iter().zip(&restored).enumerate() {
        assert_eq!(x, y, "effect {i} differs");
    }
    assert_eq!(reports(&mut a), reports(&mut b));
    // Running calls at the end: both engines report the same, and a last round trip too.
    let mut c = Engine::restore(rater(), policy(), &b.snapshot()).unwrap();
    assert_eq!(reports(&mut b), reports(&mut c));
    eprintln!("snapshot sizes {sizes:?}, {} effects", whole.len());
}

#[test]
fn a_snapshot_for_another_policy_or_damaged_is_refused() {
    let (_, e, _) = drive(7, 0);
    let bytes = e.snapshot();
    let fewer = Policy::from_spec(&toml::from_str::<PolicySpec>("defaults = false").unwrap()).unwrap();
    let err = Engine::restore(rater(), fewer, &bytes).err().expect("refused");
    assert!(err.contains("limits"), "{err}");
    for cut in [0, 1, 10, bytes.len() / 2, bytes.len() - 1] {
        assert!(Engine::restore(rater(), policy(), &bytes[..cut]).is_err(), "{cut} bytes of {}", bytes.len());
    }
    let mut other = bytes.clone();
    other[0] = 99;
    let err = Engine::restore(rater(), policy(), &other).err().expect("refused");
    assert!(err.contains("format 99"), "{err}");
}

/// A rater that prices on a small CGRateS plan (the decks follow).
fn plan_rater() -> Arc<Rater> {
    let dir = std::env::temp_dir().join(format!("tg-snapshot-cgr-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (f, text) in [
        ("Destinations.csv", "DST_TL,+670\n"),
        ("Rates.csv", "RT,0.05,1.20,60s,1s,0s\n"),
        ("DestinationRates.csv", "DR,DST_TL,RT,*up,4,,\n"),
        ("RatingPlans.csv", "RP,DR,*any,10\n"),
        ("RatingProfiles.csv", "cgrates.org,call,*any,2019-03-01T00:00:00Z,RP,\n"),
    ] {
        std::fs::write(dir.join(f), text).unwrap();
    }
    let plan = tollguard_core::cgrates::Plan::load(&dir).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let rater = Arc::try_unwrap(rater()).unwrap();
    Arc::new(
        rater
            .with_cgrates(tollguard_core::rater::CgratesPricing {
                plan: Arc::new(plan),
                tenant: "cgrates.org".into(),
                category: "call".into(),
                subjects: Default::default(),
                currency: Currency::EUR,
            })
            .unwrap(),
    )
}

/// Calls running on a CGRateS plan's rates go on being priced by the rater's plan.
#[test]
fn calls_priced_on_a_cgrates_plan_are_restored_with_the_raters_plan() {
    // Only the daily limit (the default rules would deny the first call to East Timor).
    let plain = || {
        let spec: PolicySpec = toml::from_str(
            &POLICY.replace("[[limit]]\nname = \"daily\"", "defaults = false\n[[limit]]\nname = \"daily\""),
        )
        .unwrap();
        Policy::from_spec(&spec).unwrap()
    };
    let start: Timestamp = "2026-01-19T22:00:00Z".parse().unwrap();
    let run = |restore: bool| -> Result<Vec<String>, String> {
        let mut e = Engine::new(plan_rater(), plain());
        let mut out = vec![];
        for i in 0..8 {
            let id = format!("tl-{i}");
            let a = Attempt {
                call_id: &id,
                account: "acme",
                extension: "210",
                dialled: "0067077123456",
                ..Attempt::default()
            };
            let now = start + SignedDuration::from_secs(i * 30);
            e.handle(Event::Attempt(a), now, &mut out);
            e.handle(Event::Answer { call_id: &id }, now, &mut out);
        }
        if restore {
            e = Engine::restore(plan_rater(), plain(), &e.snapshot())?;
        }
        let mut log: Vec<String> = out.drain(..).map(|x| format!("{x:?}")).collect();
        let mut now = start + SignedDuration::from_mins(5);
        while now < start + SignedDuration::from_hours(2) {
            e.handle(Event::Tick, now, &mut out);
            log.extend(out.drain(..).map(|x| format!("{now} {x:?}")));
            now += SignedDuration::from_secs(5);
        }
        assert!(log.iter().any(|l| l.contains("Cut {")), "the plan's prices reach the daily limit: {log:?}");
        Ok(log)
    };
    assert_eq!(run(false).unwrap(), run(true).unwrap());
    // Without the plan, the running calls' prices cannot be read back.
    let mut e = Engine::new(plan_rater(), plain());
    let a = Attempt {
        call_id: "x",
        account: "acme",
        extension: "210",
        dialled: "0067077123456",
        ..Attempt::default()
    };
    e.handle(Event::Attempt(a), start, &mut vec![]);
    let err = Engine::restore(rater(), plain(), &e.snapshot()).err().expect("refused");
    assert!(err.contains("CGRateS"), "{err}");
}
