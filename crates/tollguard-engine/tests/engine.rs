//! The engine with an injected clock: every limit and rule, on events we write by hand.

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use std::collections::HashMap;
use std::sync::Arc;
use tollguard_core::money::Currency;
use tollguard_core::numbering::{DialPlan, Numbering};
use tollguard_core::rater::{AccountSetup, DirectionRules, Rater};
use tollguard_core::rating::{RateDeck, TimeBands};
use tollguard_engine::policy::{Policy, PolicySpec};
use tollguard_engine::{Attempt, Command, Decision, Effect, Engine, Event, Unblocker};

const DECK: &str =
    "prefix,destination,rate_per_minute,connection_fee,initial_increment_s,subsequent_increment_s
31,Netherlands,0.0120,0,60,60
1,USA,0.0150,0,6,6
670,East Timor,1.4500,0,60,60
234,Nigeria,0.2100,0,60,60
49,Germany,0.9000,0,1,1
";

fn rater() -> Arc<Rater> {
    let deck =
        RateDeck::parse("deck.csv", "deck", DECK.as_bytes(), &TimeBands::default(), Currency::EUR).unwrap();
    let default = AccountSetup {
        plan: Arc::new(DialPlan::for_country("NL").unwrap()),
        tz: TimeZone::get("Europe/Amsterdam").unwrap(),
    };
    Arc::new(
        Rater::new(
            Arc::new(Numbering::builtin().clone()),
            vec![deck],
            TimeBands::default(),
            HashMap::new(),
            default,
            DirectionRules::default(),
        )
        .unwrap(),
    )
}

fn engine(policy_toml: &str) -> Engine {
    let spec: PolicySpec = toml::from_str(policy_toml).unwrap();
    Engine::new(rater(), Policy::from_spec(&spec).unwrap())
}

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn attempt(e: &mut Engine, id: &str, ext: &str, to: &str, now: Timestamp) -> (Decision, Vec<Effect>) {
    let mut out = vec![];
    let a = Attempt { call_id: id, account: "acme", extension: ext, dialled: to, ..Attempt::default() };
    e.handle(Event::Attempt(a), now, &mut out);
    let d = out
        .iter()
        .find_map(|x| match x {
            Effect::Decision(d) => Some(d.clone()),
            _ => None,
        })
        .unwrap();
    (d, out)
}

fn answer(e: &mut Engine, id: &str, now: Timestamp) {
    e.handle(Event::Answer { call_id: id }, now, &mut vec![]);
}

/// The switch's end of a call after `billsec` of talk; what the engine did then.
fn end(e: &mut Engine, id: &str, billsec: u32, now: Timestamp) -> Vec<Effect> {
    let mut out = vec![];
    e.handle(Event::End { call_id: id, billsec: Some(billsec) }, now, &mut out);
    out
}

fn ticks(e: &mut Engine, from: Timestamp, to: Timestamp) -> Vec<(Timestamp, Effect)> {
    let mut all = vec![];
    let mut now = from;
    while now <= to {
        let mut out = vec![];
        e.handle(Event::Tick, now, &mut out);
        all.extend(out.into_iter().map(|x| (now, x)));
        now += SignedDuration::from_secs(5);
    }
    all
}

const DAILY_10: &str = r#"
defaults = false
[[limit]]
name = "acme.daily"
metric = "spend"
window = "day"
max = "10.00"
warning_percent = 80
"#;

#[test]
fn spend_counts_calls_still_running_and_cuts_them() {
    let mut e = engine(DAILY_10);
    let start = t("2011-06-13T10:00:00Z");
    for i in 0..4 {
        let (d, _) = attempt(&mut e, &format!("c{i}"), "210", "0067077123456", start);
        assert!(d.allowed, "{d:?}");
        answer(&mut e, &format!("c{i}"), start);
    }
    // Four calls at 1.45/min: 5.80 a minute; 10.00 is reached in the second minute (60/60
    // increments bill 2 minutes from 61 s on: 4 x 2.90 = 11.60).
    let effects = ticks(&mut e, start, start + SignedDuration::from_secs(120));
    let cuts: Vec<_> = effects.iter().filter(|(_, x)| matches!(x, Effect::Cut { .. })).collect();
    assert_eq!(cuts.len(), 4, "{effects:?}");
    assert_eq!(cuts[0].0, start + SignedDuration::from_secs(65), "cut on the first tick past 60 s");
    let alerts: Vec<String> = effects
        .iter()
        .filter_map(|(_, x)| match x {
            Effect::Alert(a) => Some(format!("{:?} {}", a.severity, a.message)),
            _ => None,
        })
        .collect();
    assert_eq!(
        alerts,
        ["Critical spend day reached 11.60 with 4 calls running (limit 10.00): running calls cut"]
    );
}

#[test]
fn the_cap_is_the_budget_left_shared_by_running_calls() {
    let mut e = engine(DAILY_10);
    let now = t("2011-06-13T10:00:00Z");
    let (d, _) = attempt(&mut e, "a", "210", "0067077123456", now);
    // 10.00 at 1.45/min = 413 s, in whole minutes (the deck bills 60/60): 360 s, EUR 8.70;
    // 420 s would be billed 7 minutes, EUR 10.15
    assert_eq!(d.max_duration_s, Some(360));
    assert_eq!(d.rules, ["acme.daily"]);
    answer(&mut e, "a", now);
    let (d, _) = attempt(&mut e, "b", "211", "0067077123457", now + SignedDuration::from_secs(30));
    // 30 s of the first call already cost 1.45 (60 s increment): 8.55 left for two calls at
    // 2.90/min = 176 s: 120 s in whole minutes
    assert_eq!(d.max_duration_s, Some(120));
    // A cheap call shares with both (the second is allowed, so it counts before it answers):
    // 8.55 / (1.45 + 1.45 + 0.012) per minute = 176 s: 120 s
    let (d, _) = attempt(&mut e, "c", "212", "0201234567", now + SignedDuration::from_secs(30));
    assert_eq!(d.max_duration_s, Some(120));
    // When they have ended (the first after 60 s: 1.45), a new call has the rest to itself
    end(&mut e, "a", 60, now + SignedDuration::from_secs(60));
    end(&mut e, "b", 0, now + SignedDuration::from_secs(60));
    end(&mut e, "c", 0, now + SignedDuration::from_secs(60));
    let (d, _) = attempt(&mut e, "d", "212", "0201234567", now + SignedDuration::from_secs(61));
    // 8.55 left at 0.012/min would be 42,750 s: more than the 4-hour horizon, so no cap (ticks
    // still cut the call if the day's budget runs out while it runs)
    assert_eq!(d.max_duration_s, None);
    let (d, _) = attempt(&mut e, "e", "213", "0067077123458", now + SignedDuration::from_secs(61));
    // and the dear call shares it: 8.55 at (0.012 + 1.45)/min = 350 s: 300 s
    assert_eq!(d.max_duration_s, Some(300));
    // Less than a minute's worth left for a call billed by the minute: no budget for it.
    let mut e = engine(DAILY_10);
    let (d, _) = attempt(&mut e, "f", "210", "0067077123456", now);
    answer(&mut e, "f", now);
    end(&mut e, "f", 360, now + SignedDuration::from_secs(360));
    let (d2, _) = attempt(&mut e, "g", "210", "0067077123456", now + SignedDuration::from_secs(400));
    assert_eq!(d.max_duration_s, Some(360));
    // 10.00 - 8.70 = 1.30 left: 53 s at 1.45/min, not a whole minute
    assert!(!d2.allowed, "{d2:?}");
    assert!(d2.explanation.iter().any(|x| x.contains("no budget left")), "{d2:?}");
}

#[test]
fn a_spent_budget_denies_and_resets_at_local_midnight() {
    let mut e = engine(DAILY_10);
    let now = t("2011-06-13T19:00:00Z"); // 21:00 CEST
    let (d, _) = attempt(&mut e, "a", "210", "0067077123456", now);
    assert!(d.allowed);
    answer(&mut e, "a", now);
    // 7 min = 10.15: it talked past the 6 minutes its budget gave (the switch did not end it).
    let out = end(&mut e, "a", 420, now + SignedDuration::from_secs(420));
    assert!(out.iter().any(|x| matches!(x, Effect::Alert(a) if a.rule == "acme.daily")), "{out:?}");
    let (d, _) = attempt(&mut e, "b", "210", "0201234567", now + SignedDuration::from_secs(600));
    assert!(!d.allowed);
    assert_eq!(d.rules, ["acme.daily"]);
    // 23:59:59 local: still denied; 00:00:00 local: a new day
    let (d, _) = attempt(&mut e, "c", "210", "0201234567", t("2011-06-13T21:59:59Z"));
    assert!(!d.allowed);
    let (d, _) = attempt(&mut e, "d", "210", "0201234567", t("2011-06-13T22:00:00Z"));
    assert!(d.allowed, "{d:?}");
}

#[test]
fn emergency_numbers_are_never_denied() {
    let mut e = engine(DAILY_10);
    let now = t("2011-06-13T10:00:00Z");
    e.handle(
        Event::Command(Command::Block {
            account: "acme".into(),
            extension: None,
            until: None,
            reason: "test".into(),
            destinations: None,
        }),
        now,
        &mut vec![],
    );
    let (d, _) = attempt(&mut e, "x", "210", "0201234567", now);
    assert!(!d.allowed);
    assert_eq!(d.rules, ["operator.block: test"]);
    for n in ["112", "911", "999"] {
        let (d, _) = attempt(&mut e, n, "210", n, now);
        assert!(d.allowed && d.max_duration_s.is_none(), "{n}: {d:?}");
        assert_eq!(d.rules, ["emergency"]);
    }
    let mut out = vec![];
    e.handle(
        Event::Command(Command::Unblock { account: "acme".into(), extension: None, by: Unblocker::Operator }),
        now,
        &mut out,
    );
    assert!(matches!(&out[0], Effect::Unblock { .. }));
    let (d, _) = attempt(&mut e, "y", "210", "0201234567", now);
    assert!(d.allowed);
}

#[test]
fn concurrency_and_call_counts() {
    let mut e = engine(
        r#"
defaults = false
[[limit]]
name = "channels"
metric = "concurrent"
max = "2"
[[limit]]
name = "calls.hour"
metric = "calls"
window = "hour"
max = "3"
"#,
    );
    let now = t("2011-06-13T10:00:00Z");
    assert!(attempt(&mut e, "a", "1", "0201234567", now).0.allowed);
    assert!(attempt(&mut e, "b", "1", "0201234567", now).0.allowed);
    let (d, _) = attempt(&mut e, "c", "1", "0201234567", now);
    assert_eq!((d.allowed, d.rules.clone()), (false, vec!["channels".to_string()]));
    end(&mut e, "a", 0, now + SignedDuration::from_secs(10));
    assert!(attempt(&mut e, "d", "1", "0201234567", now + SignedDuration::from_secs(20)).0.allowed);
    end(&mut e, "b", 0, now + SignedDuration::from_secs(30));
    end(&mut e, "d", 0, now + SignedDuration::from_secs(30));
    // three calls allowed this hour: the fourth is refused, the next hour starts over
    let (d, _) = attempt(&mut e, "e", "1", "0201234567", now + SignedDuration::from_secs(40));
    assert_eq!((d.allowed, d.rules.clone()), (false, vec!["calls.hour".to_string()]));
    assert!(attempt(&mut e, "f", "1", "0201234567", t("2011-06-13T11:00:00Z")).0.allowed);
}

#[test]
fn default_policy_stops_a_night_pbx_hack_and_passes_honest_calls() {
    let mut e = engine("");
    // Saturday 11 June 2011, 23:10 in Amsterdam
    let night = t("2011-06-11T21:10:00Z");
    let (d, out) = attempt(&mut e, "tl1", "210", "0067077123456", night);
    assert!(!d.allowed);
    assert_eq!(d.rules, ["default.new_critical_destination_night"]);
    assert_eq!(out.iter().filter(|x| matches!(x, Effect::Alert(_))).count(), 1);
    let (d, out) = attempt(&mut e, "tl2", "210", "0067077123457", night + SignedDuration::from_secs(60));
    assert!(!d.allowed);
    assert_eq!(
        out.iter().filter(|x| matches!(x, Effect::Alert(_))).count(),
        0,
        "one alert, not one per attempt"
    );
    // honest: a US conference call, Nigeria in office hours
    let (d, _) = attempt(&mut e, "us", "201", "0012125551234", night);
    assert!(d.allowed && d.max_duration_s.is_none(), "{d:?}");
    let (d, _) = attempt(&mut e, "ng", "201", "002348031234567", t("2011-06-13T09:00:00Z"));
    assert!(d.allowed && d.max_duration_s.is_none(), "{d:?}");
}

/// Alerts of a rule among effects.
fn alerts_of<'a>(out: &'a [Effect], rule: &str) -> Vec<&'a tollguard_engine::Alert> {
    out.iter()
        .filter_map(|x| match x {
            Effect::Alert(a) if a.rule == rule => Some(a),
            _ => None,
        })
        .collect()
}

#[test]
fn spend_far_above_the_learned_hour_of_week_alerts_after_warm_up() {
    let mut e = engine("");
    let rule = "default.unusual_hourly_spend";
    // Three Mondays of one EUR 9 call at 14:00 (Amsterdam) to Germany, an ordinary destination.
    let mondays = ["2026-01-05T13:00:00Z", "2026-01-12T13:00:00Z", "2026-01-19T13:00:00Z"];
    for (i, m) in mondays.iter().enumerate() {
        let start = t(m);
        let id = format!("usual{i}");
        let (d, out) = attempt(&mut e, &id, "201", "0049301234567", start);
        assert!(d.allowed && alerts_of(&out, rule).is_empty());
        answer(&mut e, &id, start);
        let out = end(&mut e, &id, 600, start + SignedDuration::from_secs(600));
        assert!(alerts_of(&out, rule).is_empty(), "EUR 9 is usual");
    }
    // The fourth Monday: eight parallel calls to Germany from 14:00, each EUR 0.90 a minute.
    let start = t("2026-01-26T13:00:00Z");
    for i in 0..8 {
        let id = format!("burst{i}");
        let (d, out) = attempt(&mut e, &id, "201", "0049301234567", start + SignedDuration::from_secs(i));
        assert!(d.allowed, "an alert, not a denial: {d:?}");
        assert!(alerts_of(&out, rule).is_empty(), "nothing spent yet");
        answer(&mut e, &id, start + SignedDuration::from_secs(i));
    }
    // Six minutes later: 8 x 6 x 0.90 = EUR 43 running, over the EUR 40 floor: a warning.
    let (d, out) = attempt(&mut e, "next1", "201", "0049301234567", start + SignedDuration::from_secs(366));
    let warned = alerts_of(&out, rule);
    assert_eq!(warned.len(), 1, "{out:?}");
    assert_eq!(warned[0].severity, tollguard_engine::Severity::Warning);
    assert!(warned[0].message.contains("learned level 40.00"), "{}", warned[0].message);
    assert!(d.rules.contains(&rule.to_string()), "{d:?}");
    // Twelve minutes: EUR 86, twice the level: critical, once.
    let (_, out) = attempt(&mut e, "next2", "201", "0049301234567", start + SignedDuration::from_secs(726));
    let critical = alerts_of(&out, rule);
    assert_eq!(critical.len(), 1);
    assert_eq!(critical[0].severity, tollguard_engine::Severity::Critical);
    let (_, out) = attempt(&mut e, "next3", "201", "0049301234567", start + SignedDuration::from_secs(800));
    assert!(alerts_of(&out, rule).is_empty(), "one alert per level and hour");
}

#[test]
fn more_calls_at_once_than_on_the_accounts_busy_days_warn_once_a_day() {
    let mut e = engine("");
    let rule = "default.unusual_concurrency";
    // Ten days of two calls at once to Germany at 10:00 in Amsterdam.
    for day in 5..15 {
        let start = t(&format!("2026-01-{day:02}T09:00:00Z"));
        for i in 0..2 {
            let id = format!("d{day}c{i}");
            let (d, out) = attempt(&mut e, &id, "201", "0049301234567", start);
            assert!(d.allowed && alerts_of(&out, rule).is_empty(), "{d:?}");
            answer(&mut e, &id, start);
        }
        for i in 0..2 {
            end(&mut e, &format!("d{day}c{i}"), 60, start + SignedDuration::from_secs(60));
        }
    }
    // The eleventh day: the fifth call at once is above the learned level of 4 (twice the usual
    // 2): a warning, and the decision says why; the call goes ahead.
    let start = t("2026-01-15T09:00:00Z");
    for i in 0..4 {
        let (d, out) = attempt(&mut e, &format!("b{i}"), "201", "0049301234567", start);
        assert!(d.allowed && !d.rules.contains(&rule.to_string()) && alerts_of(&out, rule).is_empty());
        answer(&mut e, &format!("b{i}"), start);
    }
    let (d, out) = attempt(&mut e, "b4", "202", "0049301234567", start);
    assert!(d.allowed && d.rules == [rule], "{d:?}");
    let warned = alerts_of(&out, rule);
    assert_eq!(warned.len(), 1, "{out:?}");
    assert_eq!(warned[0].severity, tollguard_engine::Severity::Warning);
    assert!(
        warned[0].message.starts_with("5 calls at once in office hours: usual peak 2"),
        "{}",
        warned[0].message
    );
    assert!(warned[0].message.ends_with("learned level 4"), "{}", warned[0].message);
    // The sixth is named too, with no second alert that day.
    answer(&mut e, "b4", start);
    let (d, out) = attempt(&mut e, "b5", "201", "0049301234567", start);
    assert!(d.allowed && d.rules == [rule] && alerts_of(&out, rule).is_empty(), "{d:?}");
}

#[test]
fn a_first_call_to_an_unassigned_high_risk_range_in_office_hours_is_capped_and_critical() {
    let mut e = engine("");
    // Monday 10:00 in Amsterdam; +370 9 is a Lithuanian premium range that the plan does not
    // know as any number type.
    let (d, out) = attempt(&mut e, "lt1", "206", "0037090717234", t("2026-01-19T09:00:00Z"));
    assert!(d.allowed);
    assert_eq!(d.max_duration_s, Some(300));
    let a = alerts_of(&out, "default.new_high_risk_destination");
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].severity, tollguard_engine::Severity::Critical, "{}", a[0].message);
}

#[test]
fn learning_mode_allows_everything_and_alerts_on_limits_not_on_first_calls() {
    let mut e = engine("");
    e.set_learn_until(Some(t("2011-06-12T00:00:00Z")));
    let at = t("2011-06-11T21:10:00Z");
    let (d, out) = attempt(&mut e, "tl1", "210", "0067077123456", at);
    assert!(d.allowed && d.max_duration_s.is_none());
    assert_eq!(d.rules, ["default.new_critical_destination_night (learning)"]);
    // Learning is how an account's destinations become known: a first call raises no alert.
    assert!(!out.iter().any(|x| matches!(x, Effect::Alert(_))), "{out:?}");
    answer(&mut e, "tl1", at);
    // A limit reached while learning alerts (report only): four channels to East Timor.
    let mut alerts = vec![];
    for i in 2..=4 {
        let (d, out) = attempt(&mut e, &format!("tl{i}"), "210", "0067077123456", at);
        assert!(d.allowed && d.max_duration_s.is_none(), "{d:?}");
        alerts.extend(alerts_of(&out, "default.high_risk_concurrency").into_iter().cloned());
    }
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].severity, tollguard_engine::Severity::Critical);
}

#[test]
fn the_same_events_give_the_same_effects() {
    let run = || {
        let mut e = engine("");
        let mut all = vec![];
        let base = t("2011-06-13T09:00:00Z");
        for i in 0..40 {
            let now = base + SignedDuration::from_secs(i * 37);
            let to = ["0067077123456", "0201234567", "0012125551234", "00881612345678"][i as usize % 4];
            let (_, out) = attempt(&mut e, &format!("c{i}"), &format!("{}", 200 + i % 3), to, now);
            all.extend(out);
            answer(&mut e, &format!("c{i}"), now);
            all.extend(ticks(&mut e, now, now + SignedDuration::from_secs(30)).into_iter().map(|x| x.1));
        }
        format!("{all:?}")
    };
    assert_eq!(run(), run());
}

#[test]
fn calling_back_a_high_risk_number_that_rang_in_is_wangiri() {
    let mut e = engine("");
    let morning = t("2011-06-14T08:00:00Z"); // Tuesday 10:00 CEST
    let mut out = vec![];
    let inbound = Attempt {
        call_id: "in1",
        account: "acme",
        extension: "+67677123456",
        dialled: "201",
        context: "from-trunk",
        ..Attempt::default()
    };
    e.handle(Event::Attempt(inbound), morning, &mut out);
    // It rings once and hangs up.
    end(&mut e, "in1", 0, morning + SignedDuration::from_secs(3));
    let wangiri = |out: &[Effect]| -> Vec<tollguard_engine::Severity> {
        out.iter()
            .filter_map(|x| match x {
                Effect::Alert(a) if a.rule == "default.wangiri_callback" => Some(a.severity),
                _ => None,
            })
            .collect()
    };
    let (d, out) = attempt(&mut e, "cb1", "201", "0067677123456", morning + SignedDuration::from_secs(600));
    assert!(!d.allowed);
    assert_eq!(d.rules, ["default.wangiri_callback"]);
    // One callback denied: a warning (it costs nothing, and may be a missed call from abroad).
    assert_eq!(wangiri(&out), [tollguard_engine::Severity::Warning]);
    // A colleague calls back too: denied, and now it is the pattern: critical.
    let (d, out) = attempt(&mut e, "cb2", "202", "0067677123456", morning + SignedDuration::from_secs(900));
    assert!(!d.allowed);
    assert_eq!(wangiri(&out), [tollguard_engine::Severity::Critical]);
    assert!(d.explanation.iter().any(|x| x.contains("staff are calling back one-ring numbers")), "{d:?}");
    // A third: denied, no alert (one per number, one critical a day).
    let (d, out) = attempt(&mut e, "cb3", "203", "0067677123456", morning + SignedDuration::from_secs(1200));
    assert!(!d.allowed && wangiri(&out).is_empty(), "{out:?}");
    // an ordinary foreign caller can be called back
    let inbound = Attempt {
        call_id: "in2",
        account: "acme",
        extension: "+2348031234567",
        dialled: "201",
        context: "from-trunk",
        ..Attempt::default()
    };
    e.handle(Event::Attempt(inbound), morning, &mut vec![]);
    let (d, _) = attempt(&mut e, "cb3", "201", "002348031234567", morning + SignedDuration::from_secs(60));
    assert!(d.allowed && d.rules.is_empty(), "{d:?}");
}

/// EUR 5 an hour to East Timor; crossed, the account is blocked for two hours.
const TL_HOUR_BLOCKS_2H: &str = r#"
defaults = false
[[limit]]
name = "tl.hour"
metric = "spend"
window = "rolling_1h"
max = "5.00"
countries = ["TL"]
on_critical = ["alert", "deny", "cut", "block"]
block_for = "2h"
"#;

#[test]
fn a_second_block_within_a_week_lasts_until_released() {
    let mut e = engine(TL_HOUR_BLOCKS_2H);
    let mut blocks = vec![];
    let mut now = t("2011-06-13T10:00:00Z");
    for round in 0..2 {
        let id = format!("r{round}");
        assert!(attempt(&mut e, &id, "213", "0067077123456", now).0.allowed, "round {round}");
        answer(&mut e, &id, now);
        for (at, x) in ticks(&mut e, now, now + SignedDuration::from_secs(400)) {
            if let Effect::Block { until, .. } = x {
                blocks.push((at, until));
            }
        }
        end(&mut e, &id, 240, now + SignedDuration::from_secs(240));
        // blocked for TL, not for the rest
        assert!(
            !attempt(&mut e, &format!("{id}b"), "213", "0067077123457", now + SignedDuration::from_secs(600))
                .0
                .allowed
        );
        assert!(
            attempt(&mut e, &format!("{id}nl"), "213", "0201234567", now + SignedDuration::from_secs(600))
                .0
                .allowed
        );
        now += SignedDuration::from_hours(3);
    }
    assert_eq!(blocks.len(), 2, "{blocks:?}");
    assert_eq!(blocks[0].1, Some(blocks[0].0 + SignedDuration::from_hours(2)));
    assert_eq!(blocks[1].1, None, "the second block is until released");
    // The block in force that a limit set first: the second (the first has run out), until
    // released whatever the time; an operator's block does not count (it is a command, kept).
    let later = now + SignedDuration::from_hours(24 * 365);
    assert_eq!(e.oldest_limit_block(later), Some(("acme", blocks[1].0)));
    let operator = Command::Block {
        account: "acme".into(),
        extension: None,
        until: None,
        reason: "noc".into(),
        destinations: None,
    };
    e.handle(Event::Command(operator), now - SignedDuration::from_hours(1), &mut vec![]);
    assert_eq!(e.oldest_limit_block(later), Some(("acme", blocks[1].0)));
    let fresh = engine("defaults = false\n");
    assert_eq!(fresh.oldest_limit_block(later), None);
}

#[test]
fn an_expired_block_is_reported_even_when_an_attempt_comes_first() {
    let mut e = engine(DAILY_10);
    let now = t("2011-06-13T10:00:00Z");
    let until = now + SignedDuration::from_hours(1);
    e.handle(
        Event::Command(Command::Block {
            account: "acme".into(),
            extension: None,
            until: Some(until),
            reason: "test".into(),
            destinations: None,
        }),
        now,
        &mut vec![],
    );
    assert!(!attempt(&mut e, "a", "210", "0201234567", now).0.allowed);
    // after the expiry an attempt goes through, and the next tick still reports the Unblock
    assert!(attempt(&mut e, "b", "210", "0201234567", until).0.allowed);
    let mut out = vec![];
    e.handle(Event::Tick, until, &mut out);
    assert!(
        out.iter().any(|x| matches!(x, Effect::Unblock { rule, .. } if rule == "operator.block: test")),
        "{out:?}"
    );
}

fn record(call_id: &str, dialled: &str, start: &str, billsec: u32) -> tollguard_core::cdr::Cdr {
    let start = t(start);
    tollguard_core::cdr::Cdr {
        call_id: call_id.into(),
        account: "acme".into(),
        source: "201".into(),
        dialled: dialled.into(),
        start,
        answer: Some(start),
        end: Some(start + SignedDuration::from_secs(billsec as i64)),
        billsec,
        duration_s: billsec,
        ..Default::default()
    }
}

#[test]
fn records_alone_are_counted_and_checked() {
    // An integration that sends only call records (a CDR file tail): the engine counts each
    // call where it ended and alerts when a limit is reached.
    let mut e = engine(DAILY_10);
    let mut out = vec![];
    // 330 s to East Timor at 1.45 a minute in whole minutes: EUR 8.70, over the EUR 8 warning.
    let c = record("r1", "0067077123456", "2026-01-19T09:00:00Z", 330);
    e.handle(Event::Record(&c), t("2026-01-19T09:07:00Z"), &mut out);
    let warnings: Vec<_> = out
        .iter()
        .filter_map(|x| match x {
            Effect::Alert(a) if a.rule == "acme.daily" => Some(a.severity),
            _ => None,
        })
        .collect();
    assert_eq!(warnings, [tollguard_engine::Severity::Warning], "{out:?}");
    let report = e.account_report("acme", t("2026-01-19T09:08:00Z")).unwrap();
    let daily = report.limits.iter().find(|l| l.limit == "acme.daily").unwrap();
    assert_eq!((daily.used.as_str(), daily.max.as_str(), daily.percent), ("8.70", "10.00", 87));
    // The next record passes the limit: critical.
    out.clear();
    let c2 = record("r2", "0067077123456", "2026-01-19T09:10:00Z", 60);
    e.handle(Event::Record(&c2), t("2026-01-19T09:11:30Z"), &mut out);
    assert!(out
        .iter()
        .any(|x| matches!(x, Effect::Alert(a) if a.severity == tollguard_engine::Severity::Critical)));
}

#[test]
fn a_late_record_corrects_the_cost_of_an_ended_call_and_is_not_counted_twice() {
    let mut e = engine(DAILY_10);
    e.set_record_grace(Some(SignedDuration::from_mins(10)));
    let now = t("2026-01-19T09:00:00Z");
    let (d, _) = attempt(&mut e, "c1", "201", "0067077123456", now);
    assert!(d.allowed);
    answer(&mut e, "c1", now);
    // The switch reported 60 s at the end; its record says 240 s: the record wins.
    end(&mut e, "c1", 60, now + SignedDuration::from_secs(60));
    let used = |e: &mut Engine| {
        let r = e.account_report("acme", t("2026-01-19T09:09:00Z")).unwrap();
        r.limits.iter().find(|l| l.limit == "acme.daily").unwrap().used.clone()
    };
    assert_eq!(used(&mut e), "1.45");
    let c = record("c1", "0067077123456", "2026-01-19T09:00:00Z", 240);
    e.handle(Event::Record(&c), t("2026-01-19T09:02:00Z"), &mut vec![]);
    assert_eq!(used(&mut e), "5.80");
    // The same record again changes nothing.
    e.handle(Event::Record(&c), t("2026-01-19T09:03:00Z"), &mut vec![]);
    assert_eq!(used(&mut e), "5.80");
    // A record for a call still running ends it with the record's talk time.
    let (d, _) = attempt(&mut e, "c2", "201", "0067077123456", t("2026-01-19T09:04:00Z"));
    assert!(d.allowed);
    answer(&mut e, "c2", t("2026-01-19T09:04:00Z"));
    let c2 = record("c2", "0067077123456", "2026-01-19T09:04:00Z", 60);
    e.handle(Event::Record(&c2), t("2026-01-19T09:05:00Z"), &mut vec![]);
    assert_eq!(e.running_calls(), 0);
    assert_eq!(used(&mut e), "7.25");
}

#[test]
fn each_leg_of_a_failover_under_one_id_counts() {
    // Two `Dial`s of one Asterisk channel (a failover to another carrier, or a dialplan that
    // goes on after the first conversation): two records under the call's `uniqueid`, each
    // with its own destination channel.
    let mut e = engine(DAILY_10);
    e.set_record_grace(Some(SignedDuration::from_mins(10)));
    let used = |e: &mut Engine| {
        let r = e.account_report("acme", t("2026-01-19T09:30:00Z")).unwrap();
        r.limits.iter().find(|l| l.limit == "acme.daily").unwrap().used.clone()
    };
    let leg = |id: &str, dst: &str, start: &str, billsec: u32| {
        let mut c = record(id, "0067077123456", start, billsec);
        c.dst_channel = dst.into();
        c
    };
    // Records alone (a CDR file tail): 60 s, then 180 s on the second `Dial`.
    let first = leg("u1", "PJSIP/carrier1-00000001", "2026-01-19T09:00:00Z", 60);
    let second = leg("u1", "PJSIP/carrier2-00000002", "2026-01-19T09:01:00Z", 180);
    e.handle(Event::Record(&first), t("2026-01-19T09:04:30Z"), &mut vec![]);
    e.handle(Event::Record(&second), t("2026-01-19T09:04:31Z"), &mut vec![]);
    assert_eq!(used(&mut e), "5.80");
    // A leg's record read again (a file read again after a crash) replaces, it does not add.
    e.handle(Event::Record(&second), t("2026-01-19T09:05:00Z"), &mut vec![]);
    assert_eq!(used(&mut e), "5.80");
    // Authorized, answered and ended (60 s, the talk of the last leg), then both records of a
    // failover: the failed leg's record replaces the end's count, the second leg's adds to it.
    let now = t("2026-01-19T09:10:00Z");
    let (d, _) = attempt(&mut e, "u2", "201", "0067077123456", now);
    assert!(d.allowed);
    answer(&mut e, "u2", now + SignedDuration::from_secs(20));
    end(&mut e, "u2", 60, now + SignedDuration::from_secs(80));
    assert_eq!(used(&mut e), "7.25");
    let first = leg("u2", "PJSIP/carrier1-00000003", "2026-01-19T09:10:00Z", 0);
    let second = leg("u2", "PJSIP/carrier2-00000004", "2026-01-19T09:10:20Z", 60);
    e.handle(Event::Record(&first), t("2026-01-19T09:11:30Z"), &mut vec![]);
    assert_eq!(used(&mut e), "5.80");
    e.handle(Event::Record(&second), t("2026-01-19T09:11:31Z"), &mut vec![]);
    assert_eq!(used(&mut e), "7.25");
    // The failed leg's record comes while the answered leg still talks: the call runs on, and
    // ends with the answered leg's record.
    let now = t("2026-01-19T09:20:00Z");
    let (d, _) = attempt(&mut e, "u3", "201", "0067077123456", now);
    assert!(d.allowed);
    answer(&mut e, "u3", now + SignedDuration::from_secs(20));
    let first = leg("u3", "PJSIP/carrier1-00000005", "2026-01-19T09:20:00Z", 0);
    e.handle(Event::Record(&first), now + SignedDuration::from_secs(30), &mut vec![]);
    assert_eq!(e.running_calls(), 1, "the answered leg talks on");
    let second = leg("u3", "PJSIP/carrier2-00000006", "2026-01-19T09:20:20Z", 60);
    e.handle(Event::Record(&second), now + SignedDuration::from_secs(81), &mut vec![]);
    assert_eq!(e.running_calls(), 0);
    assert_eq!(used(&mut e), "8.70");
}

#[test]
fn a_later_legs_cost_counts_where_it_ended_and_is_checked_at_once() {
    // Records only: the first carrier failed at 09:00, the second leg talked 90 minutes from
    // 09:00:20; both records are read at 10:30:21. The second leg counts in the last hour
    // (where it ended, not where the failed leg did) and its limits are checked at once: no
    // call is running, so no tick would come for them.
    let policy = r#"
defaults = false
[[limit]]
name = "acme.hour"
metric = "spend"
window = "rolling_1h"
max = "10.00"
"#;
    let mut e = engine(policy);
    e.set_record_grace(Some(SignedDuration::from_mins(2)));
    let leg = |dst: &str, start: &str, billsec: u32| {
        let mut c = record("u1", "0067077123456", start, billsec);
        c.dst_channel = dst.into();
        c
    };
    let read = t("2026-01-19T10:30:21Z");
    let mut out = vec![];
    e.handle(Event::Record(&leg("PJSIP/c1-01", "2026-01-19T09:00:00Z", 0)), read, &mut out);
    e.handle(Event::Record(&leg("PJSIP/c2-02", "2026-01-19T09:00:20Z", 5400)), read, &mut out);
    let critical = alerts_of(&out, "acme.hour");
    assert_eq!(critical.len(), 1, "{out:?}");
    assert_eq!(critical[0].severity, tollguard_engine::Severity::Critical);
    let r = e.account_report("acme", read).unwrap();
    assert_eq!(r.limits[0].used, "130.50", "{:?}", r.limits);
}

#[test]
fn an_operator_blocks_destinations_and_a_customer_cannot_lift_it() {
    use tollguard_engine::Destinations;
    let mut e = engine("");
    let now = t("2026-01-19T09:00:00Z");
    let block = |countries: &[&str], prefixes: &[&str]| {
        Event::Command(Command::Block {
            account: "acme".into(),
            extension: None,
            until: None,
            reason: "fraud seen elsewhere".into(),
            destinations: Some(Destinations {
                countries: countries.iter().map(|c| c.to_string()).collect(),
                risks: vec![],
                prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
            }),
        })
    };
    e.handle(block(&["TL"], &["4930"]), now, &mut vec![]);
    let (d, _) = attempt(&mut e, "a", "210", "0067077123456", now);
    assert!(!d.allowed);
    assert_eq!(d.rules, ["operator.block (TL, +4930): fraud seen elsewhere"]);
    let (d, _) = attempt(&mut e, "b", "210", "004930123456", now);
    assert!(!d.allowed, "Berlin by prefix");
    let (d, _) = attempt(&mut e, "c", "210", "004989123456", now);
    assert!(d.allowed, "Munich is not blocked: {d:?}");
    let (d, _) = attempt(&mut e, "d", "210", "112", now);
    assert!(d.allowed, "emergency");
    // A customer's unblock lifts only the blocks of its own limits: the operator's block stays.
    let mut out = vec![];
    e.handle(
        Event::Command(Command::Unblock { account: "acme".into(), extension: None, by: Unblocker::Customer }),
        now,
        &mut out,
    );
    assert!(out.is_empty(), "{out:?}");
    let (d, _) = attempt(&mut e, "e", "210", "0067077123456", now);
    assert!(!d.allowed);
    e.handle(
        Event::Command(Command::Unblock { account: "acme".into(), extension: None, by: Unblocker::Operator }),
        now,
        &mut out,
    );
    assert_eq!(out.len(), 1);
}

#[test]
fn a_block_of_the_whole_account_stops_calls_that_are_not_numbers() {
    use tollguard_engine::Destinations;
    let mut e = engine("");
    let now = t("2026-01-19T09:00:00Z");
    // Not blocked: a service code or a string that is not a number goes through (no limit can
    // count it).
    let (d, _) = attempt(&mut e, "a", "210", "*672125551234", now);
    assert!(d.allowed && d.rules.is_empty(), "{d:?}");
    let block = |destinations: Option<Destinations>| {
        Event::Command(Command::Block {
            account: "acme".into(),
            extension: None,
            until: None,
            reason: "PBX hacked".into(),
            destinations,
        })
    };
    // A block of some destinations says nothing of a call that is not a number.
    let some = Destinations { countries: vec!["TL".into()], risks: vec![], prefixes: vec![] };
    e.handle(block(Some(some)), now, &mut vec![]);
    let (d, _) = attempt(&mut e, "b", "210", "*672125551234", now);
    assert!(d.allowed, "{d:?}");
    // A block of everything stops it, whatever it dials but an emergency number or an extension.
    e.handle(block(None), now, &mut vec![]);
    for (id, to) in [("c", "*672125551234"), ("d", "#31#0612345678"), ("e", "lcr/439"), ("f", "*97")] {
        let (d, _) = attempt(&mut e, id, "210", to, now);
        assert!(!d.allowed, "{to}: {d:?}");
        assert_eq!(d.rules, ["operator.block: PBX hacked"], "{to}");
        assert!(d.explanation[0].contains("is not a number, and every call of the account stops"), "{d:?}");
    }
    let (d, _) = attempt(&mut e, "g", "210", "0067077123456", now);
    assert!(!d.allowed, "a number, as before");
    let (d, _) = attempt(&mut e, "h", "210", "112", now);
    assert!(d.allowed, "emergency");
    let (d, _) = attempt(&mut e, "i", "210", "201", now);
    assert!(d.allowed, "an extension: {d:?}");
    let mut out = vec![];
    e.handle(
        Event::Command(Command::Unblock { account: "acme".into(), extension: None, by: Unblocker::Operator }),
        now,
        &mut out,
    );
    let (d, _) = attempt(&mut e, "j", "210", "*672125551234", now);
    assert!(d.allowed, "unblocked: {d:?}");
}

#[test]
fn limits_set_while_calls_run_count_those_calls() {
    use tollguard_engine::policy::LimitSpec;
    use tollguard_engine::{Limit, LimitOwner};
    let mut e = engine("");
    let now = t("2026-01-19T09:00:00Z");
    for (id, ext, to) in
        [("c1", "201", "0201234567"), ("c2", "202", "0201234567"), ("c3", "202", "004930123456")]
    {
        assert!(attempt(&mut e, id, ext, to, now).0.allowed);
        answer(&mut e, id, now);
    }
    // An emergency call runs too: no limit counts it.
    assert!(attempt(&mut e, "sos", "203", "112", now).0.allowed);
    // The operator sets 3 channels, and EUR 2 of German calls per extension, ten minutes in.
    let limit = |toml_text: &str| Limit::from_spec(&toml::from_str::<LimitSpec>(toml_text).unwrap()).unwrap();
    let limits = vec![
        limit("name = 'noc.channels'\nmetric = 'concurrent'\nmax = '3'\non_critical = ['alert', 'deny']"),
        limit("name = 'noc.de'\nmetric = 'spend'\nscope = 'extension'\ncountries = ['DE']\nwindow = 'day'\nmax = '2.00'"),
    ];
    let later = now + SignedDuration::from_mins(10);
    let cmd = Command::SetLimits { account: "acme".into(), owner: LimitOwner::Operator, limits };
    e.handle(Event::Command(cmd), later, &mut vec![]);
    let r = e.account_report("acme", later).unwrap();
    let channels = r.limits.iter().find(|l| l.limit == "noc.channels").unwrap();
    assert_eq!((channels.used.as_str(), channels.running_calls), ("3", 3));
    // The German call's ten minutes so far (EUR 0.90 a minute) count for extension 202 only.
    let de: Vec<_> = r.limits.iter().filter(|l| l.limit == "noc.de").collect();
    assert_eq!(de.len(), 1, "{de:?}");
    assert_eq!((de[0].extension.as_deref(), de[0].used.as_str()), (Some("202"), "9.00"));
    // At a glance (the dashboard's lists): the limit most used, 450% of EUR 2.
    let g = e.account_glance("acme", later).unwrap();
    assert_eq!((g.top_percent, g.running_calls, g.blocked), (450, 3, false));
    // The fourth channel is refused.
    let (d, _) = attempt(&mut e, "c4", "204", "0201234567", later);
    assert!(!d.allowed && d.rules == ["noc.channels"], "{d:?}");
    // When a call ends it leaves the limit: a channel is free again.
    end(&mut e, "c1", 600, later);
    assert!(attempt(&mut e, "c5", "204", "0201234567", later).0.allowed);
}

#[test]
fn the_ends_of_time_do_not_overflow() {
    // A request's own time can be anything a timestamp holds.
    let mut e = engine(DAILY_10);
    for now in [Timestamp::MAX, Timestamp::MIN, Timestamp::MAX, t("2026-01-19T09:00:00Z")] {
        let (d, _) = attempt(&mut e, "edge", "201", "0201234567", now);
        assert!(d.allowed, "{d:?}");
        end(&mut e, "edge", 60, now);
        assert!(e.account_report("acme", now).is_some());
    }
    // Answered high-risk calls (deadlines, blocks, caps) and ticks at the ends of time too.
    let mut e = engine("");
    for (i, now) in [Timestamp::MAX, Timestamp::MIN, Timestamp::MAX].into_iter().enumerate() {
        for c in 0..5 {
            let id = format!("x{i}{c}");
            attempt(&mut e, &id, "201", "0067077123456", now);
            answer(&mut e, &id, now);
        }
        e.handle(Event::Tick, now, &mut vec![]);
        while let Some(d) = e.next_deadline().filter(|d| *d <= now) {
            e.handle(Event::Tick, d, &mut vec![]);
            if d == now {
                break;
            }
        }
    }
}

/// A one-channel attack on a country the account already calls: each call is capped to the
/// hourly high-risk budget, so spend stays just under the limit; the next call, which the
/// budget cannot pay, reaches it: critical alert, block, not just a quiet denial.
#[test]
fn an_exhausted_budget_is_a_reached_limit() {
    let mut e = engine("");
    // East Timor in office hours, in the account's first week: the kind is known from then on
    // (not a new destination with its own small budget).
    let (d, _) = attempt(&mut e, "day", "201", "0067077123456", t("2026-01-19T10:00:00Z"));
    assert!(d.allowed);
    answer(&mut e, "day", t("2026-01-19T10:00:00Z"));
    end(&mut e, "day", 60, t("2026-01-19T10:01:00Z"));
    // The next evening: EUR 40 an hour of high-risk spend at EUR 1.45 a minute in whole
    // minutes is 27 minutes (EUR 39.15).
    let night = t("2026-01-20T19:00:00Z");
    let (d, _) = attempt(&mut e, "n1", "201", "0067077123456", night);
    assert_eq!((d.allowed, d.max_duration_s), (true, Some(1620)), "{d:?}");
    answer(&mut e, "n1", night);
    // It hangs up 20 s before its cap (27 started minutes: EUR 39.15, as the cap allows).
    let ended = night + SignedDuration::from_secs(1600);
    end(&mut e, "n1", 1600, ended);
    // Redialled at once: EUR 0.85 left cannot pay a minute.
    let (d, out) = attempt(&mut e, "n2", "201", "0067077123456", ended + SignedDuration::from_secs(20));
    assert!(!d.allowed && d.rules == ["default.high_risk_spend_1h"], "{d:?}");
    assert!(d.explanation.iter().any(|x| x.contains("no budget left")), "{d:?}");
    let critical: Vec<_> = out
        .iter()
        .filter_map(|x| match x {
            Effect::Alert(a) if a.severity == tollguard_engine::Severity::Critical => Some(a),
            _ => None,
        })
        .collect();
    assert_eq!(critical.len(), 1, "{out:?}");
    assert_eq!(critical[0].action, tollguard_engine::AlertAction::Block);
    assert!(out
        .iter()
        .any(|x| matches!(x, Effect::Block { rule, .. } if rule == "default.high_risk_spend_1h")));
    // Blocked: the call after is denied by the block, with no new alert.
    let (d, out) = attempt(&mut e, "n3", "201", "0067077123456", ended + SignedDuration::from_secs(600));
    assert!(!d.allowed, "{d:?}");
    assert!(!out.iter().any(|x| matches!(x, Effect::Alert(_))), "{out:?}");
}

/// Two-way traffic with a high-risk number is not wangiri: a conversation (either way) clears
/// it, and a ring from a number the account talks with is not remembered. Records count too.
#[test]
fn a_high_risk_number_the_account_talks_with_can_be_called_back() {
    let mut e = engine("");
    let morning = t("2011-06-14T08:00:00Z"); // Tuesday 10:00 CEST
    let inbound = |id: &'static str| Attempt {
        call_id: id,
        account: "acme",
        extension: "+23276123456",
        dialled: "201",
        context: "from-trunk",
        ..Attempt::default()
    };
    // The field office in Sierra Leone calls and they talk for two minutes.
    e.handle(Event::Attempt(inbound("in1")), morning, &mut vec![]);
    answer(&mut e, "in1", morning);
    end(&mut e, "in1", 120, morning + SignedDuration::from_secs(120));
    // Later it rings once (a dropped line): calling back is allowed.
    let later = morning + SignedDuration::from_hours(2);
    e.handle(Event::Attempt(inbound("in2")), later, &mut vec![]);
    end(&mut e, "in2", 0, later + SignedDuration::from_secs(2));
    let (d, _) = attempt(&mut e, "cb1", "201", "0023276123456", later + SignedDuration::from_secs(60));
    assert!(d.allowed && !d.rules.contains(&"default.wangiri_callback".to_string()), "{d:?}");
    // A one-ring call known only from its record (a CDR file) is remembered as well.
    let mut rec = tollguard_core::cdr::Cdr {
        call_id: "in3".into(),
        account: "acme".into(),
        source: "+67677123456".into(),
        dialled: "201".into(),
        context: "from-trunk".into(),
        start: later,
        end: Some(later + SignedDuration::from_secs(4)),
        duration_s: 4,
        ..Default::default()
    };
    e.handle(Event::Record(&rec), later + SignedDuration::from_secs(30), &mut vec![]);
    let (d, _) = attempt(&mut e, "cb2", "202", "0067677123456", later + SignedDuration::from_secs(90));
    assert!(!d.allowed && d.rules == ["default.wangiri_callback"], "{d:?}");
    // An answered call from another high-risk number, known from its record, clears that one.
    rec.call_id = "in4".into();
    rec.source = "+67677999999".into();
    rec.billsec = 300;
    rec.duration_s = 310;
    e.handle(Event::Record(&rec), later + SignedDuration::from_secs(400), &mut vec![]);
    let (d, _) = attempt(&mut e, "cb3", "202", "0067677999999", later + SignedDuration::from_secs(500));
    assert!(!d.rules.contains(&"default.wangiri_callback".to_string()), "{d:?}");
}

/// A drip of capped calls that stops for the day each time never asks for more than the
/// budget left: a call that talks until the cap its budget gave uses the budget up, and the
/// limit is reached then (critical alert, block); one that hangs up before is nothing.
#[test]
fn a_call_that_talks_until_its_budget_cap_reaches_the_limit() {
    let mut e = engine(
        r#"
defaults = false
[[limit]]
name = "acme.week"
metric = "spend"
window = "week"
max = "10.00"
on_critical = ["alert", "deny", "cap", "block"]
"#,
    );
    let monday = t("2026-01-19T09:00:00Z");
    // EUR 10 at EUR 1.45 a minute in whole minutes: 6 minutes (EUR 8.70).
    let (d, _) = attempt(&mut e, "d1", "201", "0067077123456", monday);
    assert_eq!(d.max_duration_s, Some(360), "{d:?}");
    answer(&mut e, "d1", monday);
    // Hung up after 2 minutes: EUR 2.90 spent, nothing reached.
    let out = end(&mut e, "d1", 120, monday + SignedDuration::from_secs(120));
    assert!(!out.iter().any(|x| matches!(x, Effect::Alert(_) | Effect::Block { .. })), "{out:?}");
    // The next call gets what is left (4 minutes) and talks until the switch ends it there.
    let tuesday = monday + SignedDuration::from_hours(24);
    let (d, _) = attempt(&mut e, "d2", "201", "0067077123456", tuesday);
    assert_eq!(d.max_duration_s, Some(240), "{d:?}");
    answer(&mut e, "d2", tuesday);
    let out = end(&mut e, "d2", 239, tuesday + SignedDuration::from_secs(239));
    let alerts: Vec<_> = out
        .iter()
        .filter_map(|x| match x {
            Effect::Alert(a) => Some(a),
            _ => None,
        })
        .collect();
    assert_eq!(alerts.len(), 1, "{out:?}");
    assert_eq!(
        (alerts[0].severity, alerts[0].action, alerts[0].rule.as_str()),
        (tollguard_engine::Severity::Critical, tollguard_engine::AlertAction::Block, "acme.week")
    );
    assert!(alerts[0].message.contains("used up"), "{}", alerts[0].message);
    assert!(out.iter().any(|x| matches!(x, Effect::Block { .. })));
    let (d, _) = attempt(&mut e, "d3", "201", "0067077123456", tuesday + SignedDuration::from_hours(1));
    assert!(!d.allowed, "blocked: {d:?}");
}

const DAY_10_BLOCK: &str = r#"
defaults = false
[[limit]]
name = "acme.day"
metric = "spend"
window = "day"
max = "10.00"
on_critical = ["alert", "deny", "cap", "block"]
block_for = "2h"
"#;

fn blocks_of(out: &[Effect]) -> usize {
    out.iter().filter(|x| matches!(x, Effect::Block { .. })).count()
}

fn criticals_of(out: &[Effect]) -> usize {
    out.iter()
        .filter(|x| matches!(x, Effect::Alert(a) if a.severity == tollguard_engine::Severity::Critical))
        .count()
}

/// Reviewed edge cases of a reached budget: redials after the block raise nothing new and do
/// not turn a 2-hour block into one until released; nothing is blocked while learning.
#[test]
fn an_exhausted_budget_blocks_once_and_not_while_learning() {
    let mut e = engine(DAY_10_BLOCK);
    let at = t("2026-01-19T09:00:00Z");
    let (_, _) = attempt(&mut e, "a", "201", "0067077123456", at);
    answer(&mut e, "a", at);
    end(&mut e, "a", 300, at + SignedDuration::from_secs(300)); // 5 min: EUR 7.25, hung up early
    let (d, out) = attempt(&mut e, "b", "201", "0067077123456", at + SignedDuration::from_secs(400));
    assert_eq!(d.max_duration_s, Some(60), "EUR 2.75 left: one minute");
    assert_eq!((criticals_of(&out), blocks_of(&out)), (0, 0));
    answer(&mut e, "b", at + SignedDuration::from_secs(400));
    end(&mut e, "b", 30, at + SignedDuration::from_secs(430)); // EUR 8.70, 30 s: not its cap
    let mut all = vec![];
    for k in 0..5 {
        let (d, out) = attempt(
            &mut e,
            &format!("r{k}"),
            "201",
            "0067077123456",
            at + SignedDuration::from_secs(500 + k * 60),
        );
        assert!(!d.allowed, "{d:?}");
        all.extend(out);
    }
    assert_eq!((criticals_of(&all), blocks_of(&all)), (1, 1), "{all:?}");
    let until = all.iter().find_map(|x| match x {
        Effect::Block { until, .. } => *until,
        _ => None,
    });
    assert_eq!(until, Some(at + SignedDuration::from_secs(500) + SignedDuration::from_hours(2)));
    // Learning: the same budget spent, no block.
    let mut e = engine(DAY_10_BLOCK);
    e.set_learn_until(Some(t("2026-02-01T00:00:00Z")));
    let mut all = vec![];
    for k in 0..4 {
        let when = at + SignedDuration::from_secs(k * 400);
        let (d, out) = attempt(&mut e, &format!("l{k}"), "201", "0067077123456", when);
        assert!(d.allowed, "learning allows: {d:?}");
        answer(&mut e, &format!("l{k}"), when);
        end(&mut e, &format!("l{k}"), 300, when + SignedDuration::from_secs(300));
        all.extend(out);
    }
    assert_eq!(blocks_of(&all), 0, "{all:?}");
}

/// A call that runs to its cap has not used the budget up when what is left could still pay:
/// the cap was shared with a call that hung up early, or the calendar day began anew.
#[test]
fn a_call_at_its_cap_uses_the_budget_up_only_when_nothing_is_left() {
    let week = r#"
defaults = false
[[limit]]
name = "acme.week"
metric = "spend"
window = "week"
max = "10.00"
on_critical = ["alert", "deny", "cap", "block"]
"#;
    let mut e = engine(week);
    let at = t("2026-01-20T09:00:00Z");
    let (a, _) = attempt(&mut e, "a", "201", "0067077123456", at);
    answer(&mut e, "a", at);
    let (b, _) = attempt(&mut e, "b", "202", "0067077123456", at);
    answer(&mut e, "b", at);
    assert_eq!((a.max_duration_s, b.max_duration_s), (Some(360), Some(180)));
    end(&mut e, "a", 60, at + SignedDuration::from_secs(60));
    let out = end(&mut e, "b", 180, at + SignedDuration::from_secs(180));
    assert_eq!((criticals_of(&out), blocks_of(&out)), (0, 0), "EUR 5.80 of 10 spent: {out:?}");
    // Sunday 23:59 local: capped by the old week's budget, ends in a new week.
    let mut e = engine(week);
    let sunday = t("2026-01-25T22:50:00Z");
    let (d, _) = attempt(&mut e, "c", "201", "0067077123456", sunday);
    answer(&mut e, "c", sunday);
    end(&mut e, "c", 300, sunday + SignedDuration::from_secs(300));
    let late = t("2026-01-25T22:59:00Z");
    let (d2, _) = attempt(&mut e, "d", "201", "0067077123456", late);
    assert_eq!((d.max_duration_s, d2.max_duration_s), (Some(360), Some(60)), "{d2:?}");
    answer(&mut e, "d", late);
    let out = end(&mut e, "d", 60, late + SignedDuration::from_secs(60));
    assert_eq!((criticals_of(&out), blocks_of(&out)), (0, 0), "a new week began: {out:?}");
}

/// An inbound call whose end came without talk time (a lost end) says nothing about its
/// number until its record does: a conversation then is not a ring.
#[test]
fn a_lost_inbound_end_waits_for_the_record() {
    let mut e = engine("");
    e.set_record_grace(Some(SignedDuration::from_mins(10)));
    let at = t("2011-06-14T08:00:00Z");
    let inbound = Attempt {
        call_id: "in1",
        account: "acme",
        extension: "+23276123456",
        dialled: "201",
        context: "from-trunk",
        ..Attempt::default()
    };
    e.handle(Event::Attempt(inbound), at, &mut vec![]);
    assert_eq!(e.running_calls(), 0, "followed for the wangiri rule, not a running call");
    e.handle(Event::End { call_id: "in1", billsec: None }, at + SignedDuration::from_secs(400), &mut vec![]);
    let rec = tollguard_core::cdr::Cdr {
        call_id: "in1".into(),
        account: "acme".into(),
        source: "+23276123456".into(),
        dialled: "201".into(),
        context: "from-trunk".into(),
        start: at,
        billsec: 390,
        duration_s: 400,
        ..Default::default()
    };
    e.handle(Event::Record(&rec), at + SignedDuration::from_secs(500), &mut vec![]);
    let (d, _) = attempt(&mut e, "cb", "201", "0023276123456", at + SignedDuration::from_secs(900));
    assert!(!d.rules.contains(&"default.wangiri_callback".to_string()), "{d:?}");
}

/// A drip to a high-risk country first called after the account was learned: each day's calls
/// stay under the hourly and daily budgets, but the new destination's own budget (EUR 20 in 7
/// days) stops it the next day. A country called while learning has no such budget, and an
/// operator's allowance lifts it.
#[test]
fn a_new_high_risk_destination_has_a_small_budget_of_its_own() {
    use tollguard_engine::{AlertAction, Severity};
    let named = |d: &Decision| d.rules.iter().any(|r| r == "default.new_high_risk_spend_7d");
    let mut e = engine("");
    e.set_learn_until(Some(t("2026-01-19T00:00:00Z")));
    attempt(&mut e, "learnt", "201", "002348031234567", t("2026-01-14T10:00:00Z"));
    // Thursday 11:00 local, eight days after the account's first call: the first call to East
    // Timor is capped at 300 s.
    let day1 = t("2026-01-22T10:00:00Z");
    let (d, _) = attempt(&mut e, "d1", "201", "0067077123456", day1);
    assert_eq!(d.max_duration_s, Some(300), "{d:?}");
    answer(&mut e, "d1", day1);
    end(&mut e, "d1", 300, day1 + SignedDuration::from_secs(300));
    // EUR 7.25 spent: EUR 12.75 left of 20 pays 8 whole minutes at EUR 1.45.
    let (d, _) = attempt(&mut e, "d2", "202", "0067077123456", day1 + SignedDuration::from_hours(4));
    assert_eq!(d.max_duration_s, Some(480), "{d:?}");
    assert!(named(&d), "{d:?}");
    answer(&mut e, "d2", day1 + SignedDuration::from_hours(4));
    // It talks until its cap: EUR 1.15 is left, less than a minute: reached, critical, blocked.
    let ended = day1 + SignedDuration::from_secs(4 * 3600 + 480);
    let out = end(&mut e, "d2", 480, ended);
    let alert = out
        .iter()
        .find_map(|x| match x {
            Effect::Alert(a) if a.rule == "default.new_high_risk_spend_7d" => Some(a),
            _ => None,
        })
        .expect("an alert");
    assert_eq!((alert.severity, alert.action), (Severity::Critical, AlertAction::Block));
    assert!(alert.message.contains("destinations first called lately"), "{alert:?}");
    // The account's report names it, with the first call; Nigeria, learnt, is not new.
    let new = |e: &mut Engine, at| -> Vec<(String, &'static str, String, &'static str)> {
        let r = e.account_report("acme", at).expect("known");
        r.new_destinations.into_iter().map(|d| (d.country, d.number_type, d.first_call, d.status)).collect()
    };
    assert_eq!(new(&mut e, ended), [("TL".to_string(), "any", "2026-01-22T10:00:00Z".to_string(), "new")]);
    let day2 = day1 + SignedDuration::from_hours(24);
    let (d, out) = attempt(&mut e, "d3", "201", "0067077123456", day2);
    assert!(!d.allowed && d.rules == ["default.new_high_risk_spend_7d"], "{d:?}");
    assert!(!out.iter().any(|x| matches!(x, Effect::Alert(_))), "{out:?}");
    // Eight days later the budget's window has passed, the block has not; 40 days later East
    // Timor is no longer a new destination, but the block that found it new still covers it.
    for days in [8, 40] {
        let (d, _) =
            attempt(&mut e, "d4", "201", "0067077123456", day2 + SignedDuration::from_hours(days * 24));
        assert!(!d.allowed && d.explanation[0].contains("until released"), "{d:?}");
    }
    let day10 = day2 + SignedDuration::from_hours(8 * 24);
    // The operator confirms East Timor: the budget (and its block) no longer apply to it.
    let allow = Command::Allow { account: "acme".into(), countries: vec!["TL".into()], until: None };
    e.handle(Event::Command(allow), day10, &mut vec![]);
    let (d, _) = attempt(&mut e, "d5", "201", "0067077123456", day10 + SignedDuration::from_secs(60));
    assert!(d.allowed && !named(&d), "{d:?}");
    assert_eq!(new(&mut e, day10)[0].3, "allowed");
    // 30 days after its first call it is no longer listed.
    assert_eq!(new(&mut e, day1 + SignedDuration::from_hours(30 * 24 - 1)).len(), 1);
    assert!(new(&mut e, day1 + SignedDuration::from_hours(30 * 24)).is_empty());

    // The same calls from an account that called East Timor while it was learned (and not in
    // its own first week): no such budget.
    let mut e = engine("");
    e.set_learn_until(Some(t("2026-01-19T00:00:00Z")));
    attempt(&mut e, "early", "201", "0201234567", t("2026-01-01T10:00:00Z"));
    attempt(&mut e, "learnt", "201", "0067077123456", t("2026-01-14T10:00:00Z"));
    for (i, at) in [day1, day1 + SignedDuration::from_hours(4), day2].into_iter().enumerate() {
        let id = format!("k{i}");
        let (d, _) = attempt(&mut e, &id, "201", "0067077123456", at);
        assert!(d.allowed && !named(&d), "{d:?}");
        answer(&mut e, &id, at);
        end(&mut e, &id, 480, at + SignedDuration::from_secs(480));
    }

    // And a country first called more than 30 days ago is no longer new.
    let mut e = engine("");
    // (An account's first week is how its destinations become known: this one calls from 1 December.)
    attempt(&mut e, "national", "201", "0201234567", t("2025-12-01T10:00:00Z"));
    // A call to its own country's premium numbers in its first week: listed, not counted.
    attempt(&mut e, "premium", "201", "0909123456", t("2025-12-02T10:00:00Z"));
    let r = e.account_report("acme", t("2025-12-03T10:00:00Z")).expect("known");
    let listed: Vec<_> =
        r.new_destinations.iter().map(|d| (d.country.as_str(), d.number_type, d.status)).collect();
    assert_eq!(listed, [("NL", "premium", "account_learning"), ("NL", "any", "account_learning")]);
    let first = t("2025-12-10T10:00:00Z");
    attempt(&mut e, "first", "201", "0067077123456", first);
    end(&mut e, "first", 300, first + SignedDuration::from_secs(300));
    let (d, _) = attempt(&mut e, "second", "201", "0067077123456", first + SignedDuration::from_hours(4));
    assert!(named(&d), "{d:?}");
    end(&mut e, "second", 60, first + SignedDuration::from_secs(4 * 3600 + 60));
    let (d, _) = attempt(&mut e, "later", "201", "0067077123456", day1);
    assert!(d.allowed && !named(&d), "{d:?}");
}

/// One callback to a one-ring number is a warning; two a week apart are two warnings, not the
/// pattern (a field office's missed calls, called back now and then).
#[test]
fn a_single_wangiri_callback_now_and_then_is_a_warning() {
    let mut e = engine("");
    let ring = |e: &mut Engine, id: &str, from: &str, at: Timestamp| {
        let a = Attempt {
            call_id: id,
            account: "acme",
            extension: from,
            dialled: "201",
            context: "from-trunk",
            ..Attempt::default()
        };
        e.handle(Event::Attempt(a), at, &mut vec![]);
        end(e, id, 0, at + SignedDuration::from_secs(3));
    };
    let severities = |out: &[Effect]| -> Vec<tollguard_engine::Severity> {
        out.iter()
            .filter_map(|x| match x {
                Effect::Alert(a) if a.rule == "default.wangiri_callback" => Some(a.severity),
                _ => None,
            })
            .collect()
    };
    let monday = t("2026-01-19T09:00:00Z");
    for (week, number) in ["+23276123456", "+23276654321"].into_iter().enumerate() {
        let at = monday + SignedDuration::from_hours(24 * 7 * week as i64);
        ring(&mut e, &format!("in{week}"), number, at);
        let (d, out) = attempt(
            &mut e,
            &format!("cb{week}"),
            "201",
            &format!("00{}", &number[1..]),
            at + SignedDuration::from_mins(30),
        );
        assert!(!d.allowed, "{d:?}");
        assert_eq!(severities(&out), [tollguard_engine::Severity::Warning]);
        // The same extension redials it a minute later: denied, no alert (one person retrying).
        let (d, out) = attempt(
            &mut e,
            &format!("again{week}"),
            "201",
            &format!("00{}", &number[1..]),
            at + SignedDuration::from_mins(31),
        );
        assert!(!d.allowed && severities(&out).is_empty(), "{out:?}");
    }
}

/// The deadline of a spend level comes from a bound that runs ahead of the spend by up to an
/// increment a call. Where the bound has crossed and the spend has not, the next tick comes at
/// the next second of talk time, not a nanosecond later again and again (the service's start,
/// which ticks through its stored history, hung on such a state).
#[test]
fn a_level_the_bound_has_crossed_before_the_spend_is_looked_at_each_second() {
    let mut e = engine("");
    // An account known for more than a week: East Timor is a new destination with its budget.
    attempt(&mut e, "national", "201", "0201234567", t("2026-01-05T09:00:00Z"));
    let t0 = t("2026-01-19T09:00:00Z");
    for i in 0..3 {
        let id = format!("c{i}");
        assert!(attempt(&mut e, &id, "201", "0067077123456", t0).0.allowed);
        answer(&mut e, &id, t0 + SignedDuration::from_secs(5));
    }
    end(&mut e, "c0", 120, t0 + SignedDuration::from_secs(125));
    // c1 and c2 run on past the caps they were given (a switch that does not end them).
    let until = t("2026-01-19T09:06:00Z");
    let (mut n, mut critical_at) = (0, None);
    while let Some(d) = e.next_deadline() {
        if d >= until {
            break;
        }
        n += 1;
        assert!(n < 1000, "still ticking at {d}");
        let mut out = vec![];
        e.handle(Event::Tick, d, &mut out);
        for x in &out {
            if let Effect::Alert(a) = x {
                if a.rule == "default.new_high_risk_spend_7d"
                    && a.severity == tollguard_engine::Severity::Critical
                {
                    critical_at = Some(d);
                    // Cut and blocked: the alert says the block, which lasts.
                    assert_eq!(a.action, tollguard_engine::AlertAction::Block, "{a:?}");
                    assert!(a.message.ends_with("running calls cut, its destinations blocked"), "{a:?}");
                }
            }
        }
    }
    // 2.90 ended + two calls of 6 started minutes at EUR 1.45: EUR 20.30 from 09:05:06.
    assert_eq!(critical_at, Some(t("2026-01-19T09:05:06Z")));
}

/// A CGRateS destination rate that rounds the total up to two decimals charges 0.01 for two
/// seconds at 0.001 a minute: the running call's spend counts as 0.01 at once, so a limit of
/// 0.003 denies the next call (the linear bound the engine reads spend from includes that
/// rounding; without it the limit looked far from reached and the call went ahead).
#[test]
fn a_tariff_rounding_its_total_up_counts_in_the_running_spend() {
    let dir = std::env::temp_dir().join(format!("tg-engine-cgr-round-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (f, text) in [
        ("Destinations.csv", "DST_NL,+31\n"),
        ("Rates.csv", "RT,0,0.001,60s,60s,0s\n"),
        ("DestinationRates.csv", "DR,DST_NL,RT,*up,2,,\n"),
        ("RatingPlans.csv", "RP,DR,*any,10\n"),
        ("RatingProfiles.csv", "cgrates.org,call,*any,2019-03-01T00:00:00Z,RP,\n"),
    ] {
        std::fs::write(dir.join(f), text).unwrap();
    }
    let plan = tollguard_core::cgrates::Plan::load(&dir).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let rater = Arc::try_unwrap(rater())
        .unwrap()
        .with_cgrates(tollguard_core::rater::CgratesPricing {
            plan: Arc::new(plan),
            tenant: "cgrates.org".into(),
            category: "call".into(),
            subjects: Default::default(),
            currency: Currency::EUR,
        })
        .unwrap();
    let spec: PolicySpec = toml::from_str(
        r#"
defaults = false
[[limit]]
name = "acme.tiny"
metric = "spend"
window = "day"
max = "0.003"
on_critical = ["alert", "deny"]
"#,
    )
    .unwrap();
    let mut e = Engine::new(Arc::new(rater), Policy::from_spec(&spec).unwrap());
    let now = t("2026-01-19T10:00:00Z");
    let (d, _) = attempt(&mut e, "a", "210", "0201234567", now);
    assert!(d.allowed, "{d:?}");
    answer(&mut e, "a", now);
    let (d, _) = attempt(&mut e, "b", "210", "0201234567", now + SignedDuration::from_secs(2));
    assert!(!d.allowed, "0.01 is running against 0.003: {d:?}");
    assert_eq!(d.rules, ["acme.tiny"]);
}

/// A `call_duration` limit that alerts without cutting (no `cut`, or `report_only`): each call
/// that talks past it raises the alert once, and keeps running.
#[test]
fn a_call_duration_limit_without_cut_alerts_once_per_long_call() {
    for (extra, tail) in [("", ": still running"), ("\nreport_only = true", ": not cut (report only)")] {
        let cut = if extra.is_empty() { "" } else { ", \"cut\"" };
        let mut e = engine(&format!(
            "defaults = false\n[[limit]]\nname = \"acme.longest\"\nmetric = \"call_duration\"\nmax = \"60\"\n\
             on_critical = [\"alert\"{cut}]{extra}\n"
        ));
        let start = t("2026-01-19T10:00:00Z");
        for (id, at) in [("first", 0), ("second", 30), ("short", 0)] {
            let (d, _) = attempt(&mut e, id, "210", "0201234567", start + SignedDuration::from_secs(at));
            assert!(d.allowed && d.max_duration_s.is_none(), "{d:?}");
            answer(&mut e, id, start + SignedDuration::from_secs(at));
        }
        end(&mut e, "short", 59, start + SignedDuration::from_secs(59));
        let effects = ticks(&mut e, start, start + SignedDuration::from_secs(300));
        assert!(!effects.iter().any(|(_, x)| matches!(x, Effect::Cut { .. })), "{effects:?}");
        let alerts: Vec<_> = effects
            .iter()
            .filter_map(|(at, x)| match x {
                Effect::Alert(a) => Some((*at, a.call_id.as_str(), a.action, a.severity, a.message.clone())),
                _ => None,
            })
            .collect();
        let want = |id, s| {
            (
                start + SignedDuration::from_secs(s),
                id,
                tollguard_engine::AlertAction::Alert,
                tollguard_engine::Severity::Critical,
                format!("call duration reached by a call talking for 60 s (limit 60 s){tail}"),
            )
        };
        assert_eq!(alerts, [want("first", 60), want("second", 90)]);
        assert_eq!(e.next_deadline(), None, "alerted calls are not looked at again");
        // A call in a slot an alerted call left raises the alert in its turn.
        let later = start + SignedDuration::from_secs(400);
        end(&mut e, "first", 400, later);
        let (d, _) = attempt(&mut e, "third", "210", "0201234567", later);
        assert!(d.allowed, "{d:?}");
        answer(&mut e, "third", later);
        let effects = ticks(&mut e, later, later + SignedDuration::from_secs(100));
        let alerted: Vec<_> = effects
            .iter()
            .filter_map(|(at, x)| match x {
                Effect::Alert(a) => Some((*at, a.call_id.as_str())),
                _ => None,
            })
            .collect();
        assert_eq!(alerted, [(later + SignedDuration::from_secs(60), "third")]);
    }
}

/// With `cap` as well, calls are given the limit as their cap: one the switch ends at its cap
/// raises nothing (a tick may come before its end), one still talking past it raises the alert.
#[test]
fn a_call_duration_limit_with_cap_alerts_on_calls_past_their_cap() {
    let mut e = engine(
        "defaults = false\n[[limit]]\nname = \"acme.longest\"\nmetric = \"call_duration\"\nmax = \"60\"\n\
         on_critical = [\"alert\", \"cap\"]\n",
    );
    let start = t("2026-01-19T10:00:00Z");
    for id in ["kept", "ignored"] {
        let (d, _) = attempt(&mut e, id, "210", "0201234567", start);
        assert_eq!(d.max_duration_s, Some(60), "{d:?}");
        answer(&mut e, id, start);
    }
    let mut effects = ticks(&mut e, start, start + SignedDuration::from_secs(60));
    end(&mut e, "kept", 60, start + SignedDuration::from_secs(61));
    effects.extend(ticks(
        &mut e,
        start + SignedDuration::from_secs(65),
        start + SignedDuration::from_secs(120),
    ));
    let alerts: Vec<_> = effects
        .iter()
        .filter_map(|(at, x)| match x {
            Effect::Alert(a) => Some((*at, a.call_id.as_str(), a.message.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(
        alerts,
        [(
            start + SignedDuration::from_secs(65),
            "ignored",
            "call duration reached by a call talking for 65 s (limit 60 s): still running past its cap"
        )]
    );
}

/// A `call_duration` limit with `alert` and `cut`: the call that talks past it is cut, and the
/// alert says which call and how long it had talked (a cut with nothing in the alerts would
/// leave the NOC guessing why a customer's call dropped).
#[test]
fn a_call_cut_for_its_length_raises_the_limits_alert() {
    let mut e = engine(
        r#"
defaults = false
[[limit]]
name = "acme.longest"
metric = "call_duration"
max = "60"
on_critical = ["alert", "cut"]
"#,
    );
    let start = t("2026-01-19T10:00:00Z");
    for id in ["long", "short"] {
        let (d, _) = attempt(&mut e, id, "210", "0201234567", start);
        assert!(d.allowed && d.max_duration_s.is_none(), "no cap without `cap`: {d:?}");
        answer(&mut e, id, start);
    }
    end(&mut e, "short", 30, start + SignedDuration::from_secs(30));
    let effects = ticks(&mut e, start, start + SignedDuration::from_secs(120));
    let cuts: Vec<_> = effects
        .iter()
        .filter_map(|(at, x)| match x {
            Effect::Cut { call_id, rule } => Some((*at, call_id.as_str(), rule.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(cuts, [(start + SignedDuration::from_secs(60), "long", "acme.longest")]);
    let alerts: Vec<_> = effects
        .iter()
        .filter_map(|(_, x)| match x {
            Effect::Alert(a) => Some((a.call_id.as_str(), a.action, a.severity, a.message.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(
        alerts,
        [(
            "long",
            tollguard_engine::AlertAction::Cut,
            tollguard_engine::Severity::Critical,
            "call duration reached by a call talking for 60 s (limit 60 s): call cut"
        )]
    );
}

/// Calls to East Timor that use up EUR 10 of budget (as above): the limit blocks the account.
fn use_up_ten_euros(e: &mut Engine, t0: Timestamp) {
    let (d, _) = attempt(e, "u1", "201", "0067077123456", t0);
    assert_eq!(d.max_duration_s, Some(360), "{d:?}");
    answer(e, "u1", t0);
    end(e, "u1", 120, t0 + SignedDuration::from_secs(120));
    let t1 = t0 + SignedDuration::from_secs(600);
    let (d, _) = attempt(e, "u2", "201", "0067077123456", t1);
    assert_eq!(d.max_duration_s, Some(240), "{d:?}");
    answer(e, "u2", t1);
    let out = end(e, "u2", 239, t1 + SignedDuration::from_secs(239));
    assert_eq!(blocks_of(&out), 1, "{out:?}");
}

#[test]
fn a_customer_lifts_the_blocks_of_its_own_limits_only() {
    use tollguard_engine::policy::LimitSpec;
    use tollguard_engine::{Limit, LimitOwner};
    let t0 = t("2026-01-19T09:00:00Z");
    let unblock = |e: &mut Engine, by: Unblocker, now: Timestamp| {
        let mut out = vec![];
        e.handle(
            Event::Command(Command::Unblock { account: "acme".into(), extension: None, by }),
            now,
            &mut out,
        );
        out.iter().filter(|x| matches!(x, Effect::Unblock { .. })).count()
    };
    // The policy's limit blocked: the carrier's to lift, not the customer's.
    let mut e = engine(DAY_10_BLOCK);
    use_up_ten_euros(&mut e, t0);
    let later = t0 + SignedDuration::from_mins(20);
    assert_eq!(unblock(&mut e, Unblocker::Customer, later), 0);
    assert!(!attempt(&mut e, "x1", "201", "0201234567", later).0.allowed, "still blocked");
    // A customer's unblock logged before (it lifted every block a limit set) rebuilds the same.
    assert_eq!(unblock(&mut e, Unblocker::AnyLimit, later), 1);
    assert!(attempt(&mut e, "x2", "201", "0201234567", later).0.allowed);
    // A limit the customer set blocked: the customer may lift it.
    let mut e = engine("defaults = false\n");
    let spec = "name = 'own.day'\nmetric = 'spend'\nwindow = 'day'\nmax = '10.00'\non_critical = ['alert', 'deny', 'cap', 'block']";
    let limits = vec![Limit::from_spec(&toml::from_str::<LimitSpec>(spec).unwrap()).unwrap()];
    let cmd = Command::SetLimits { account: "acme".into(), owner: LimitOwner::Customer, limits };
    e.handle(Event::Command(cmd), t0, &mut vec![]);
    use_up_ten_euros(&mut e, t0);
    // It raises its limit (the one that blocked is replaced): the block is still its own to lift.
    let spec = spec.replace("'10.00'", "'50.00'");
    let limits = vec![Limit::from_spec(&toml::from_str::<LimitSpec>(&spec).unwrap()).unwrap()];
    let cmd = Command::SetLimits { account: "acme".into(), owner: LimitOwner::Customer, limits };
    e.handle(Event::Command(cmd), later, &mut vec![]);
    assert_eq!(unblock(&mut e, Unblocker::Customer, later), 1);
    assert!(attempt(&mut e, "x3", "201", "0201234567", later).0.allowed);
}

#[test]
fn a_high_risk_destination_no_deck_prices_counts_at_the_dearest_price() {
    // Solomon Islands (+677, critical) is not in the deck: counted at its dearest row, East
    // Timor's EUR 1.45 a minute, it gets a cap from the budget and uses it up like a priced call.
    let mut e = engine(DAY_10_BLOCK);
    let t0 = t("2026-01-19T09:00:00Z");
    let (d, _) = attempt(&mut e, "s1", "201", "0067774123456", t0);
    assert!(d.allowed, "{d:?}");
    assert_eq!((d.max_duration_s, d.rate_per_minute_units), (Some(360), Some(14_500)), "{d:?}");
    answer(&mut e, "s1", t0);
    let out = end(&mut e, "s1", 360, t0 + SignedDuration::from_secs(360));
    assert_eq!(blocks_of(&out), 1, "EUR 8.70 of 10 and no budget for another minute: {out:?}");
    // A low-risk destination missing from the deck still counts nothing (France is not priced).
    let mut e = engine(DAY_10_BLOCK);
    let (d, _) = attempt(&mut e, "f1", "201", "0033612345678", t0);
    assert_eq!((d.max_duration_s, d.rate_per_minute_units), (None, None), "{d:?}");
}

/// An engine with `policy_toml`, every account open `hours` with `holidays` off.
fn engine_with_hours(policy_toml: &str, hours: &str, holidays: &[&str]) -> Engine {
    use tollguard_engine::policy::{BusinessHours, Calendars, Holiday, WeeklyHours};
    let spec: PolicySpec = toml::from_str(policy_toml).unwrap();
    let holidays: Vec<Holiday> = holidays.iter().map(|h| Holiday::parse(h).unwrap()).collect();
    let calendars = Calendars {
        default: Some(BusinessHours::new(WeeklyHours::parse(hours).unwrap(), &holidays)),
        ..Calendars::default()
    };
    Engine::new(rater(), Policy::from_spec_with(&spec, calendars).unwrap())
}

/// An attempt of `account`'s extension `ext` with the decision it got.
fn attempt_of(e: &mut Engine, account: &str, ext: &str, id: &str, to: &str, now: Timestamp) -> Decision {
    let mut out = vec![];
    let a = Attempt { call_id: id, account, extension: ext, dialled: to, ..Attempt::default() };
    e.handle(Event::Attempt(a), now, &mut out);
    out.into_iter()
        .find_map(|x| match x {
            Effect::Decision(d) => Some(d),
            _ => None,
        })
        .unwrap()
}

#[test]
fn a_deny_list_denies_by_country_with_one_alert_a_day() {
    let mut e = engine(
        r#"
defaults = false
[[destinations]]
name = "acme.no_timor"
accounts = ["acme"]
deny = { countries = ["TL"] }
"#,
    );
    let now = t("2026-01-12T10:00:00Z");
    let (d, out) = attempt(&mut e, "c1", "201", "0067077123456", now);
    assert!(!d.allowed && d.rules == ["acme.no_timor"], "{d:?}");
    assert_eq!(
        d.explanation,
        ["acme.no_timor: +67077123456 (TL, critical risk) is among the denied destinations (TL): denied"]
    );
    let alerts = alerts_of(&out, "acme.no_timor");
    assert_eq!(alerts.len(), 1, "{out:?}");
    assert_eq!(alerts[0].severity, tollguard_engine::Severity::Warning);
    assert_eq!(alerts[0].action, tollguard_engine::AlertAction::Deny);
    assert_eq!(alerts[0].message, d.explanation[0]);
    // The next denials within a day say nothing new: no alert each call.
    let (d, out) = attempt(&mut e, "c2", "202", "0067077123457", now + SignedDuration::from_hours(23));
    assert!(!d.allowed && alerts_of(&out, "acme.no_timor").is_empty(), "{out:?}");
    let (_, out) = attempt(&mut e, "c3", "202", "0067077123457", now + SignedDuration::from_hours(24));
    assert_eq!(alerts_of(&out, "acme.no_timor").len(), 1, "{out:?}");
    // Other destinations, other accounts, and calls coming in are not touched.
    assert!(attempt(&mut e, "c4", "201", "0201234567", now).0.allowed);
    assert!(attempt_of(&mut e, "other", "201", "c5", "0067077123456", now).allowed);
    let mut out = vec![];
    let inbound = Attempt {
        call_id: "in1",
        account: "acme",
        extension: "+67077123456",
        dialled: "201",
        context: "from-trunk",
        ..Attempt::default()
    };
    e.handle(Event::Attempt(inbound), now, &mut out);
    assert!(matches!(&out[..], [Effect::Decision(d)] if d.allowed), "{out:?}");
}

#[test]
fn a_deny_list_denies_by_prefix_and_by_risk_tier_for_some_extensions() {
    let mut e = engine(
        r#"
defaults = false
[[destinations]]
name = "no_german_mobiles"
deny = { prefixes = ["+4915", "4917"] }
[[destinations]]
name = "lobby.no_critical"
extensions = ["100"]
deny = { risk = ["critical"] }
"#,
    );
    let now = t("2026-01-12T10:00:00Z");
    let (d, _) = attempt(&mut e, "c1", "201", "004915112345678", now);
    assert!(!d.allowed && d.rules == ["no_german_mobiles"], "{d:?}");
    assert!(
        d.explanation[0].contains("+4915112345678") && d.explanation[0].contains("(+4915, +4917)"),
        "{d:?}"
    );
    assert!(!attempt(&mut e, "c2", "201", "004917012345678", now).0.allowed);
    assert!(attempt(&mut e, "c3", "201", "00493012345678", now).0.allowed, "a Berlin number is not a mobile");
    // Critical-risk destinations (Cuba, East Timor) are denied to the lobby phone only.
    let (d, _) = attempt(&mut e, "c4", "100", "005371234567", now);
    assert!(!d.allowed && d.rules == ["lobby.no_critical"], "{d:?}");
    assert!(d.explanation[0].contains("(CU, critical risk)") && d.explanation[0].contains("(critical risk)"));
    assert!(!attempt(&mut e, "c5", "100", "0067077123456", now).0.allowed);
    assert!(attempt(&mut e, "c6", "100", "0201234567", now).0.allowed);
    assert!(attempt(&mut e, "c7", "201", "005371234567", now).0.allowed);
}

#[test]
fn allow_only_denies_everything_else_but_emergency_numbers() {
    let mut e = engine(
        r#"
defaults = false
[[destinations]]
name = "acme.home_only"
accounts = ["acme"]
allow_only = { countries = ["NL", "BE"], prefixes = ["+1212"] }
"#,
    );
    let now = t("2026-01-12T10:00:00Z");
    for (to, allowed) in [
        ("0201234567", true),
        ("003225551234", true),
        ("0012125550100", true),
        ("0014155550100", false),
        ("00493012345678", false),
        ("0067077123456", false),
        ("112", true),
        ("911", true),
        ("205", true),
    ] {
        let (d, _) = attempt(&mut e, to, "201", to, now);
        assert_eq!(d.allowed, allowed, "{to}: {d:?}");
        if !allowed {
            assert_eq!(d.rules, ["acme.home_only"], "{to}");
            assert!(
                d.explanation[0].contains("is not among the allowed destinations (NL, BE, +1212)"),
                "{d:?}"
            );
        }
    }
    let (d, _) = attempt(&mut e, "e", "201", "112", now);
    assert_eq!(d.rules, ["emergency"]);
}

#[test]
fn emergency_numbers_pass_a_rule_that_denies_everything() {
    let mut e = engine(
        r#"
defaults = false
[[destinations]]
name = "deny_all"
deny = { risk = ["low", "medium", "high", "critical"] }
allow_only = { prefixes = ["+999999"] }
"#,
    );
    let now = t("2026-01-10T03:00:00Z");
    for n in ["112", "911", "999"] {
        let (d, _) = attempt(&mut e, n, "201", n, now);
        assert!(d.allowed && d.rules == ["emergency"] && d.max_duration_s.is_none(), "{n}: {d:?}");
    }
    for n in ["0201234567", "0012125550100", "0067077123456"] {
        let (d, _) = attempt(&mut e, n, "201", n, now);
        assert!(!d.allowed && d.rules == ["deny_all"], "{n}: {d:?}");
    }
}

const NO_INTERNATIONAL_AT_NIGHT: &str = r#"
defaults = false
[[destinations]]
name = "acme.no_international_after_hours"
accounts = ["acme"]
allow_only = { countries = ["NL"] }
when = "outside_business_hours"
"#;

#[test]
fn business_hours_are_local_time_across_daylight_saving_with_weekends_and_holidays() {
    let mut e =
        engine_with_hours(NO_INTERNATIONAL_AT_NIGHT, "Mon-Fri 08:00-12:30, 13:00-18:00", &["2026-01-14"]);
    let us = "0012125550100";
    let mut n = 0;
    let mut call = |e: &mut Engine, at: &str| {
        n += 1;
        attempt(e, &format!("c{n}"), "201", us, t(at)).0
    };
    // Monday 12 January (CET, UTC+1) and Monday 13 July (CEST, UTC+2): the same local hours.
    for (at, open) in [
        ("2026-01-12T06:59:59Z", false), // 07:59:59 CET
        ("2026-01-12T07:00:00Z", true),  // 08:00 CET
        ("2026-01-12T11:45:00Z", false), // 12:45 CET: lunch
        ("2026-01-12T16:59:00Z", true),  // 17:59 CET
        ("2026-01-12T17:00:00Z", false), // 18:00 CET
        ("2026-07-13T06:30:00Z", true),  // 08:30 CEST (07:30 in winter)
        ("2026-07-13T16:30:00Z", false), // 18:30 CEST (17:30 in winter)
        ("2026-03-29T09:00:00Z", false), // Sunday, the day the clocks go forward
        ("2026-03-30T06:30:00Z", true),  // Monday 08:30 CEST
        ("2026-01-10T10:00:00Z", false), // Saturday
        ("2026-01-14T10:00:00Z", false), // Wednesday, a holiday
        ("2026-01-13T16:59:59Z", true),  // 17:59:59 the day before it
        ("2026-01-15T07:00:00Z", true),  // 08:00 the day after it
    ] {
        let d = call(&mut e, at);
        assert_eq!(d.allowed, open, "{at}: {d:?}");
        if !open {
            assert_eq!(d.rules, ["acme.no_international_after_hours"]);
            assert!(d.explanation[0].ends_with(" outside business hours: denied"), "{d:?}");
        }
    }
    // Calls at home are allowed at any time.
    assert!(call_home(&mut e, "2026-01-10T03:00:00Z"));
}

fn call_home(e: &mut Engine, at: &str) -> bool {
    attempt(e, "home", "201", "0201234567", t(at)).0.allowed
}

#[test]
fn a_rule_for_business_hours_applies_only_then() {
    let mut e = engine_with_hours(
        &NO_INTERNATIONAL_AT_NIGHT.replace("outside_business_hours", "business_hours"),
        "Mon-Fri 08:00-18:00",
        &[],
    );
    assert!(!attempt(&mut e, "a", "201", "0012125550100", t("2026-01-12T09:00:00Z")).0.allowed);
    assert!(attempt(&mut e, "b", "201", "0012125550100", t("2026-01-12T19:00:00Z")).0.allowed);
}

#[test]
fn a_spend_limit_outside_business_hours_counts_only_calls_made_then() {
    let mut e = engine_with_hours(
        r#"
defaults = false
[[limit]]
name = "acme.after_hours_spend"
metric = "spend"
window = "day"
max = "3.00"
when = "outside_business_hours"
"#,
        "Mon-Fri 08:00-18:00",
        &[],
    );
    // Ten minutes to East Timor (EUR 1.45 a minute) in business hours: no cap, not counted.
    let day = t("2026-01-12T09:00:00Z");
    let (d, _) = attempt(&mut e, "day1", "201", "0067077123456", day);
    assert!(d.allowed && d.max_duration_s.is_none() && d.rules.is_empty(), "{d:?}");
    answer(&mut e, "day1", day);
    end(&mut e, "day1", 600, day + SignedDuration::from_secs(600));
    // At 19:00 the whole EUR 3.00 is left: two whole minutes.
    let evening = t("2026-01-12T18:00:00Z");
    let (d, _) = attempt(&mut e, "eve1", "201", "0067077123456", evening);
    assert!(d.allowed && d.max_duration_s == Some(120) && d.rules == ["acme.after_hours_spend"], "{d:?}");
    assert!(d.explanation[0].starts_with("spend outside business hours: 3.00 left of 3.00"), "{d:?}");
    answer(&mut e, "eve1", evening);
    end(&mut e, "eve1", 120, evening + SignedDuration::from_secs(120));
    // EUR 0.10 left cannot pay a minute: denied.
    let (d, _) = attempt(&mut e, "eve2", "201", "0067077123456", evening + SignedDuration::from_mins(10));
    assert!(!d.allowed && d.rules == ["acme.after_hours_spend"], "{d:?}");
}

#[test]
fn a_rule_with_when_needs_business_hours_and_bad_ones_are_named() {
    use tollguard_engine::policy::{Holiday, WeeklyHours};
    let spec: PolicySpec = toml::from_str(NO_INTERNATIONAL_AT_NIGHT).unwrap();
    assert_eq!(
        Policy::from_spec(&spec).unwrap_err(),
        "destinations 1 (\"acme.no_international_after_hours\"): when = \"outside_business_hours\" needs \
         business hours for account \"acme\": set business_hours in [accounts.acme] or [defaults]"
    );
    for (text, says) in [
        ("Mon-Fry 08:00-18:00", "\"Fry\" is not a day (Mon, Tue, Wed, Thu, Fri, Sat, Sun)"),
        ("Mon-Fri 8-18", "\"8-18\" is not a range HH:MM-HH:MM"),
        ("Mon-Fri 08:00-24:30", "\"08:00-24:30\" is not a range"),
        ("Mon-Fri 08:00-08:00", "\"08:00-08:00\" is an empty range"),
        ("Mon-Fri", "\"Mon-Fri\" is not days then times"),
        ("Mon-Fri 08:00-18:00;", "\"\" is not days then times"),
    ] {
        let e = WeeklyHours::parse(text).unwrap_err();
        assert!(e.starts_with(&format!("business hours {text:?}: ")) && e.contains(says), "{text}: {e}");
    }
    assert!(WeeklyHours::parse("mon,wed,friday 09:00-12:00 13:00-17:00; Sat-Sun 22:00-02:00").is_ok());
    let e = Holiday::parse("2026-02-30").unwrap_err();
    assert!(e.starts_with("holiday \"2026-02-30\" is not a date YYYY-MM-DD"), "{e}");
    assert!(Holiday::parse("25-12-2026").is_err());
    let e = toml::from_str::<PolicySpec>(
        "[[destinations]]\nname = \"x\"\ndeny = { countries = [\"CU\"] }\nwhen = \"nights\"\n",
    )
    .unwrap_err();
    assert!(e.to_string().contains("unknown variant `nights`"), "{e}");
    for (rule, says) in [
        ("deny = { countries = [\"Cuba\"] }", "deny: countries: \"Cuba\" is not an ISO 3166 alpha-2 code"),
        ("deny = { prefixes = [\"+49-15\"] }", "deny: prefixes: \"+49-15\" is not an E.164 prefix"),
        ("deny = { risk = [\"severe\"] }", "deny: risk: \"severe\" is not a risk tier"),
        ("allow_only = { risk = [\"low\"] }", "allow_only: takes countries and prefixes, not risk tiers"),
        ("deny = {}", "deny: it lists no countries, risk tiers or prefixes"),
        ("", "give deny, allow_only or both"),
    ] {
        let spec: PolicySpec = toml::from_str(&format!("[[destinations]]\nname = \"r\"\n{rule}\n")).unwrap();
        let e = Policy::from_spec(&spec).unwrap_err();
        assert!(e.starts_with("destinations 1 (\"r\"): ") && e.contains(says), "{rule}: {e}");
    }
}

#[test]
fn warning_levels_take_only_alert() {
    let spec: PolicySpec = toml::from_str(
        "defaults = false\n[[limit]]\nname = \"acme.daily\"\nmetric = \"spend\"\nwindow = \"day\"\nmax = \"10\"\n\
         warning_percent = 80\non_warning = [\"alert\", \"deny\"]\n",
    )
    .unwrap();
    assert_eq!(
        Policy::from_spec(&spec).unwrap_err(),
        "limit 1 (\"acme.daily\"): on_warning: \"deny\" is not supported at the warning level, only \"alert\" \
         is (put \"deny\" in on_critical)"
    );
    let ok: PolicySpec = toml::from_str(
        "defaults = false\n[[limit]]\nname = \"acme.daily\"\nmetric = \"spend\"\nwindow = \"day\"\nmax = \"10\"\n\
         warning_percent = 80\non_warning = [\"alert\"]\non_critical = [\"alert\", \"deny\"]\n",
    )
    .unwrap();
    assert!(Policy::from_spec(&ok).is_ok());
}

#[test]
fn a_daily_limit_reached_again_the_next_day_alerts_again() {
    // A warning at 10%: the calls running over midnight keep the new day's spend above it, so
    // the episode never "falls back below its first level"; the new day starts a new one.
    let mut e = engine(
        "defaults = false\n[[limit]]\nname = \"acme.daily\"\nmetric = \"spend\"\nwindow = \"day\"\n\
         max = \"10.00\"\nwarning_percent = 10\non_critical = [\"alert\", \"deny\"]\n",
    );
    let criticals = |out: &[Effect]| {
        alerts_of(out, "acme.daily")
            .iter()
            .filter(|a| a.severity == tollguard_engine::Severity::Critical)
            .count()
    };
    // Monday 23:30 local (22:30Z): two calls to East Timor, running past midnight.
    let night = t("2026-01-19T22:30:00Z");
    for id in ["n1", "n2"] {
        assert!(attempt(&mut e, id, "201", "0067077123456", night).0.allowed);
        answer(&mut e, id, night);
    }
    // 23:50: EUR 58 so far: denied, critical.
    let (d, out) = attempt(&mut e, "m1", "201", "0067077123456", t("2026-01-19T22:50:00Z"));
    assert!(!d.allowed, "{d:?}");
    assert_eq!(criticals(&out), 1, "{out:?}");
    // Tuesday 00:30: still running (they count in the new day): denied again, and said again.
    let (d, out) = attempt(&mut e, "t1", "201", "0067077123456", t("2026-01-19T23:30:00Z"));
    assert!(!d.allowed, "{d:?}");
    assert_eq!(criticals(&out), 1, "a new day, a new alert: {out:?}");
    // The same day again: nothing new.
    let (_, out) = attempt(&mut e, "t2", "201", "0067077123456", t("2026-01-19T23:40:00Z"));
    assert_eq!(criticals(&out), 0, "{out:?}");
}

#[test]
fn a_per_trunk_limit_counts_each_trunk_on_its_own() {
    let mut e = engine(
        "defaults = false\n[[limit]]\nname = \"acme.trunk_channels\"\nscope = \"trunk\"\nmetric = \"concurrent\"\n\
         max = \"1\"\non_critical = [\"alert\", \"deny\"]\n\n[[limit]]\nname = \"acme.trunk_hour\"\nscope = \"trunk\"\n\
         metric = \"spend\"\nwindow = \"hour\"\nmax = \"1.00\"\non_critical = [\"alert\", \"deny\", \"block\"]\nblock_for = \"1h\"\n",
    );
    let now = t("2026-01-19T09:00:00Z");
    let via = |e: &mut Engine, id: &str, to: &str, channel: &str| {
        let mut out = vec![];
        let a = Attempt {
            call_id: id,
            account: "acme",
            extension: "201",
            dialled: to,
            dst_channel: channel,
            ..Attempt::default()
        };
        e.handle(Event::Attempt(a), now, &mut out);
        out.into_iter()
            .find_map(|x| match x {
                Effect::Decision(d) => Some(d),
                _ => None,
            })
            .unwrap()
    };
    // The trunk is the channel's peer (Asterisk adds a sequence number) or the name as given.
    assert!(via(&mut e, "k1", "0201234567", "SIP/kpn-000005a2").allowed);
    let d = via(&mut e, "k2", "0201234567", "PJSIP/kpn-00000012");
    assert!(!d.allowed && d.rules == ["acme.trunk_channels"], "kpn has its one channel in use: {d:?}");
    assert!(via(&mut e, "z1", "0201234567", "ziggo").allowed, "another trunk");
    assert!(via(&mut e, "n1", "0201234567", "").allowed, "no trunk known: not counted");
    let r = e.account_report("acme", now).unwrap();
    let channels: Vec<_> = r
        .limits
        .iter()
        .filter(|l| l.limit == "acme.trunk_channels")
        .map(|l| (l.trunk.clone(), l.used.clone()))
        .collect();
    assert_eq!(channels, [(Some("kpn".into()), "1".into()), (Some("ziggo".into()), "1".into())]);
    // A per-trunk block blocks that trunk only: EUR 1.45 to East Timor on ziggo reaches its hour.
    end(&mut e, "z1", 0, now);
    let d = via(&mut e, "z2", "0067077123456", "sofia/gateway/ziggo/0067077123456");
    assert_eq!(d.max_duration_s, None, "{d:?}");
    let d = via(&mut e, "z2b", "0067077123456", "ziggo");
    assert!(!d.allowed, "{d:?}");
    answer(&mut e, "z2", now);
    // A tick finds the hour's EUR 1.00 reached while it talks.
    let out = ticks(&mut e, now, now + SignedDuration::from_secs(120));
    let block = out.iter().find_map(|(_, x)| match x {
        Effect::Block { trunk, .. } => Some(trunk.clone()),
        _ => None,
    });
    assert_eq!(block, Some(Some("ziggo".to_string())), "{out:?}");
    end(&mut e, "z2", 120, now + SignedDuration::from_secs(120));
    end(&mut e, "k1", 10, now);
    let later = now + SignedDuration::from_secs(180);
    assert!(!via(&mut e, "z3", "0201234567", "ziggo").allowed, "ziggo is blocked");
    let mut out = vec![];
    let a = Attempt {
        call_id: "k3",
        account: "acme",
        extension: "201",
        dialled: "0201234567",
        dst_channel: "kpn",
        ..Attempt::default()
    };
    e.handle(Event::Attempt(a), later, &mut out);
    assert!(matches!(&out[..], [Effect::Decision(d)] if d.allowed), "kpn is not: {out:?}");
    let r = e.account_report("acme", later).unwrap();
    assert_eq!(r.blocks.iter().map(|b| b.trunk.clone()).collect::<Vec<_>>(), [Some("ziggo".to_string())]);
    // kpn reaching the same limit gets its own block (ziggo's does not stand for it).
    end(&mut e, "k3", 10, later);
    let mut out = vec![];
    let a = Attempt {
        call_id: "k4",
        account: "acme",
        extension: "201",
        dialled: "0067077123456",
        dst_channel: "kpn",
        ..Attempt::default()
    };
    e.handle(Event::Attempt(a), later, &mut out);
    assert!(matches!(&out[..], [Effect::Decision(d)] if d.allowed), "{out:?}");
    answer(&mut e, "k4", later);
    let out = ticks(&mut e, later, later + SignedDuration::from_secs(120));
    let block = out.iter().find_map(|(_, x)| match x {
        Effect::Block { trunk, .. } => Some(trunk.clone()),
        _ => None,
    });
    assert_eq!(block, Some(Some("kpn".to_string())), "{out:?}");
    // What names a trunk, and what does not.
    use tollguard_engine::trunk_of;
    assert_eq!(trunk_of("sofia/external/0031201234567@sip.kpn.net:5060"), "sip.kpn.net");
    assert_eq!(trunk_of("sofia/internal/1001"), "");
    assert_eq!(trunk_of("Local/201@from-internal-00000012;1"), "");
    assert_eq!(trunk_of("SIP/provider-out"), "provider-out", "not a sequence number: kept");
}

#[test]
fn a_second_trunk_over_a_block_only_limit_is_blocked_while_its_call_runs() {
    // Block only (no alert, no cut): only the block makes a tick due. Another trunk's block
    // must not stand for this one's.
    let mut e = engine(
        "defaults = false\n[[limit]]\nname = \"acme.trunk_hour\"\nscope = \"trunk\"\nmetric = \"spend\"\n\
         window = \"hour\"\nmax = \"1.00\"\non_critical = [\"block\"]\n",
    );
    let now = t("2026-01-19T09:00:00Z");
    let run = |e: &mut Engine, id: &str, trunk: &str, at: Timestamp| {
        let a = Attempt {
            call_id: id,
            account: "acme",
            extension: "201",
            dialled: "0067077123456",
            dst_channel: trunk,
            ..Attempt::default()
        };
        e.handle(Event::Attempt(a), at, &mut vec![]);
        answer(e, id, at);
        ticks(e, at, at + SignedDuration::from_secs(120))
            .into_iter()
            .filter_map(|(_, x)| match x {
                Effect::Block { trunk, .. } => trunk,
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(run(&mut e, "z1", "ziggo", now), ["ziggo"]);
    assert_eq!(run(&mut e, "k1", "kpn", now + SignedDuration::from_secs(300)), ["kpn"]);
}

#[test]
fn the_engine_says_which_attempts_it_follows_to_their_end() {
    // The default rules, and Timor denied for acme.
    let mut e = engine(
        r#"
[[destinations]]
name = "acme.no_timor"
accounts = ["acme"]
deny = { countries = ["TL"] }
"#,
    );
    let now = t("2026-01-12T10:00:00Z");
    let mut follows = |id: &str, account: &str, from: &str, to: &str, context: &str| {
        let a = Attempt { call_id: id, account, extension: from, dialled: to, context, ..Attempt::default() };
        let mut out = vec![];
        e.handle(Event::Attempt(a), now, &mut out);
        let followed = e.follows_last_attempt();
        // The answer and end of a call not followed change nothing.
        let mut after = vec![];
        e.handle(Event::Answer { call_id: id }, now + SignedDuration::from_secs(5), &mut after);
        e.handle(
            Event::End { call_id: id, billsec: Some(60) },
            now + SignedDuration::from_secs(65),
            &mut after,
        );
        assert!(followed || after.is_empty(), "{id}: {after:?}");
        followed
    };
    assert!(follows("out", "acme", "201", "0201234567", ""), "an allowed outbound call");
    assert!(follows("sos", "acme", "201", "112", ""), "an emergency call");
    assert!(!follows("timor", "acme", "201", "0067077123456", ""), "a denied call");
    assert!(!follows("int", "acme", "201", "202", ""), "an internal call");
    assert!(!follows("in", "acme", "+31201234567", "201", "from-trunk"), "an inbound call");
    assert!(
        follows("wangiri", "acme", "+67077123456", "201", "from-trunk"),
        "inbound from a high-risk number"
    );
}

#[test]
fn what_an_account_knew_before_a_time_seeds_another_engine() {
    // A log pruned before a time loses the first calls before it: the memory kept then gives
    // a rebuild the destinations the account had called, and its first call.
    let mut e = engine("");
    let (d, _) = attempt(&mut e, "tl", "201", "0067077123456", t("2026-01-05T10:00:00Z"));
    assert!(d.allowed, "a first call to East Timor by day: capped, {d:?}");
    let (d, _) = attempt(&mut e, "nl", "201", "0201234567", t("2026-03-05T10:00:00Z"));
    assert!(d.allowed);
    let seeds = e.memory_before(t("2026-02-01T00:00:00Z"));
    assert_eq!(seeds.len(), 1, "{seeds:?}");
    let (account, seed) = &seeds[0];
    assert_eq!((account.as_str(), seed.since), ("acme", Some(t("2026-01-05T10:00:00Z"))));
    assert_eq!(
        seed.seen,
        [("TL+670/any".to_string(), t("2026-01-05T10:00:00Z").as_second())],
        "NL came later"
    );
    assert!(e.memory_before(t("2026-01-01T00:00:00Z")).is_empty(), "nothing before the first call");

    // At night, months later: a first call to East Timor is denied; a known one is not.
    let night = t("2026-04-14T21:00:00Z");
    let (d, _) = attempt(&mut engine(""), "n1", "201", "0067077123456", night);
    assert!(!d.allowed, "{d:?}");
    let mut f = engine("");
    f.seed_memory(account, seed);
    let (d, _) = attempt(&mut f, "n2", "201", "0067077123456", night);
    assert!(d.allowed, "{d:?}");
    // An unknown kind (another build's numbering) is left out; what is known stays.
    let odd = tollguard_engine::MemorySeed { seen: vec![("XX+999/any".into(), 0)], ..Default::default() };
    f.seed_memory(account, &odd);
    assert_eq!(f.memory_before(night)[0].1.seen.len(), 1);
}

#[test]
fn the_oldest_block_a_limit_set_is_the_one_retention_waits_for() {
    let mut e = engine(TL_HOUR_BLOCKS_2H);
    let start = t("2011-06-13T10:00:00Z");
    for (k, account) in ["beta", "acme"].iter().enumerate() {
        let at = start + SignedDuration::from_mins(30 * k as i64);
        let id = format!("{account}-tl");
        assert!(attempt_of(&mut e, account, "213", &id, "0067077123456", at).allowed);
        answer(&mut e, &id, at);
    }
    let blocks: Vec<(Timestamp, String)> = ticks(&mut e, start, start + SignedDuration::from_hours(1))
        .into_iter()
        .filter_map(|(at, x)| match x {
            Effect::Block { account, .. } => Some((at, account)),
            _ => None,
        })
        .collect();
    assert_eq!(blocks.len(), 2, "{blocks:?}");
    let now = start + SignedDuration::from_hours(1);
    assert_eq!(e.oldest_limit_block(now), Some(("beta", blocks[0].0)), "{blocks:?}");
    // Once the first has run out, the other.
    let later = blocks[0].0 + SignedDuration::from_hours(2);
    assert_eq!(e.oldest_limit_block(later), Some(("acme", blocks[1].0)));
}

#[test]
fn the_memory_kept_counts_first_calls_to_the_second_and_first_call_alerts_that_stand() {
    let night = t("2026-04-14T21:00:00Z");
    let alerts = |out: &[Effect]| out.iter().filter(|x| matches!(x, Effect::Alert(_))).count();
    // Denied at night, alerted; the account has no call that went through.
    let mut e = engine("");
    let (d, out) = attempt(&mut e, "n1", "201", "0067077123456", night);
    assert!(!d.allowed && alerts(&out) == 1, "{d:?} {out:?}");
    let later = night + SignedDuration::from_hours(1);
    let seeds = e.memory_before(later);
    assert_eq!(seeds.len(), 1, "an account with a standing alert only: {seeds:?}");
    assert_eq!((seeds[0].1.since, seeds[0].1.seen.len()), (None, 0));
    assert_eq!(seeds[0].1.alerted, ["TL+670/any"]);
    // Given it, another engine does not raise that alert again; without, it does.
    let mut f = engine("");
    f.seed_memory("acme", &seeds[0].1);
    let (d, out) = attempt(&mut f, "n2", "201", "0067077123456", later);
    assert!(!d.allowed && alerts(&out) == 0, "{d:?} {out:?}");
    let (_, out) = attempt(&mut engine(""), "n3", "201", "0067077123456", later);
    assert_eq!(alerts(&out), 1);

    // A first call in the second of the time is counted before it; one at the time is not.
    let day = t("2026-04-15T10:00:00Z");
    let mut g = engine("");
    assert!(attempt(&mut g, "d1", "201", "0201234567", day).0.allowed);
    let kinds = |at: Timestamp| g.memory_before(at).first().map_or(0, |(_, m)| m.seen.len());
    assert_eq!(kinds(day), 0);
    assert_eq!(kinds(day + SignedDuration::from_millis(500)), 1);
    // A premium range's kind comes back as itself.
    let mut h = engine("");
    let seed = tollguard_engine::MemorySeed {
        seen: vec![("GB+44/premium".into(), 0), ("GB+44/any".into(), 0)],
        ..Default::default()
    };
    h.seed_memory("acme", &seed);
    let mut kept = h.memory_before(day)[0].1.seen.clone();
    kept.sort();
    assert_eq!(kept, [("GB+44/any".to_string(), 0), ("GB+44/premium".to_string(), 0)]);
}
