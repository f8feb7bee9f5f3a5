//! CGRateS's own rating assertions (../shared/fixtures/cgrates/rating_cases.csv) against the
//! tariff plans beside them: every case priced, cost matched to the last decimal.

use jiff::Timestamp;
use rust_decimal::Decimal;
use std::path::PathBuf;
use tollguard_core::cgrates::Plan;

fn fixtures() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/cgrates");
    if p.is_dir() {
        Some(p)
    } else {
        eprintln!("skipped: {} not found (../shared/fixtures is beside the project in CI)", p.display());
        None
    }
}

/// Cases that need more than a tariff plan, with the reason.
const OUT_OF_SCOPE: [(&str, &str); 1] = [(
    "T25",
    "the account holds a 60 s *voice balance that pays the first minute: balances are account state \
     in CGRateS, not part of a tariff plan (T26, the same call once the balance is used up, is priced)",
)];

/// `*now` in the cases: a fixed ordinary Wednesday noon, so the run does not depend on the day
/// (T8 would fail on 1 January, where the NEW_YEAR timing wins, as it does in CGRateS).
const NOW: &str = "2024-05-15T12:00:00Z";

/// Usage as CGRateS reads it: a Go duration, or a plain count of units (`2048 (units)`).
fn usage_ns(s: &str) -> u64 {
    let s = s.split(" (").next().unwrap().trim();
    tollguard_core::cgrates::parse_duration(s).unwrap_or_else(|e| panic!("usage {s:?}: {e}"))
}

#[test]
fn every_rating_case_of_cgrates() {
    let Some(dir) = fixtures() else { return };
    let mut rd = csv::Reader::from_path(dir.join("rating_cases.csv")).unwrap();
    let (mut passed, mut skipped, mut failures) = (vec![], vec![], vec![]);
    for rec in rd.records() {
        let r = rec.unwrap();
        let line = r.position().unwrap().line();
        let id = &r[0];
        if let Some((_, why)) = OUT_OF_SCOPE.iter().find(|(c, _)| *c == id) {
            eprintln!("{id}: out of scope: {why}");
            skipped.push(id.to_string());
            continue;
        }
        let (tp, category, subject, destination, at, usage, expected) =
            (&r[3], &r[4], &r[5], &r[6], &r[7], &r[8], &r[9]);
        let folder = tp.split(" (").next().unwrap().replace('/', "_");
        let plan = Plan::load(&dir.join("tariffplans").join(&folder)).unwrap_or_else(|e| panic!("{id}: {e}"));
        let start: Timestamp =
            if at.starts_with('*') || at.starts_with('(') { NOW } else { at }.parse().unwrap();
        let destination = if destination == "(none)" { "" } else { destination };
        let tariff = if let Some(list) = tp.split("RatingPlanIDs ").nth(1) {
            let names: Vec<&str> = list.trim_end_matches(')').split(';').collect();
            plan.tariff_in_plans(&names, destination, start)
        } else {
            plan.tariff("cgrates.org", category, subject, destination, start)
        };
        let got = tariff.and_then(|t| plan.cost(&t, start, usage_ns(usage)));
        let ok = match (&got, expected.strip_prefix("ERROR ")) {
            (Err(e), Some(code)) => e.code() == code,
            (Ok(c), None) => *c == expected.parse::<Decimal>().unwrap(),
            _ => false,
        };
        if ok {
            passed.push(id.to_string());
        } else {
            failures.push(format!("rating_cases.csv:{line}: {id} ({tp}, {subject} -> {destination}, {usage}): expected {expected}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(skipped, ["T25"], "only the balance case is out of scope");
    assert_eq!(passed.len(), 30, "all other cases priced: {passed:?}");
}

#[test]
fn a_broken_plan_names_file_and_line() {
    let dir = std::env::temp_dir().join(format!("tg-cgr-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("Rates.csv"),
        "#Id,ConnectFee,Rate,RateUnit,RateIncrement,GroupIntervalStart\nRT_1,0,0.1,60s,60s,0s\n",
    )
    .unwrap();
    std::fs::write(dir.join("DestinationRates.csv"), "DR_1,DST_X,RT_1,*up,4,0,\n").unwrap();
    std::fs::write(dir.join("RatingPlans.csv"), "RP_1,DR_1,*any,10\n").unwrap();
    std::fs::write(dir.join("RatingProfiles.csv"), "cgrates.org,call,*any,2014-01-01T00:00:00Z,RP_1,\n")
        .unwrap();
    let e = Plan::load(&dir).unwrap_err();
    assert_eq!(e.line, 1);
    assert!(
        e.to_string().contains("DestinationRates.csv:1: destination DST_X is not in Destinations.csv"),
        "{e}"
    );
    std::fs::write(dir.join("Rates.csv"), "RT_1,0,0.1,60x,60s,0s\n").unwrap();
    let e = Plan::load(&dir).unwrap_err();
    assert!(e.to_string().contains("Rates.csv:1: rate unit: not a duration"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
