//! Benchmarks of the per-call path of tollguard-core (divan).
//!
//! ```sh
//! cargo bench -p tollguard-core --bench core
//! ```
//!
//! - `normalise`: `DialPlan::for_country("NL").normalise` on a mix of dialled strings (national,
//!   `00` international, `+`, formatted, `sip:` URIs, extensions, emergency, feature codes);
//! - `classify`: `Numbering::builtin().classify` over 10 000 E.164 numbers in ~60 countries,
//!   high-risk ranges included;
//! - `deck_find_and_cost`: `RateDeck::find` + `RateRow::cost` on a 500-row deck parsed from CSV;
//! - `rater_rate`: the whole `Rater::rate` per CDR (normalise, direction, classify, find, cost);
//! - `cgrates_price`: `cgrates::Plan::tariff` + `Plan::cost` per call on a 10,000-destination
//!   CGRateS plan (peak and off-peak timings on a quarter of it), calls starting across the peak
//!   boundary and midnight, 0 to 400 s; `deck_find_and_cost` is the same work on an A-Z deck.
//!
//! Every input is built before the timed closure; each benchmark runs over a batch of inputs and
//! counts items, so divan reports throughput (items/s) next to the time per batch.

use divan::counter::ItemsCount;
use divan::{black_box, Bencher};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use tollguard_core::cdr::Cdr;
use tollguard_core::money::Currency;
use tollguard_core::numbering::{DialPlan, Dialled, Numbering, E164};
use tollguard_core::rater::{AccountSetup, DirectionRules, Rater};
use tollguard_core::rating::{RateDeck, TimeBands};

#[path = "../tests/common/cgrates_plan.rs"]
mod cgrates_plan;

fn main() {
    divan::main();
}

/// xorshift64*: deterministic inputs without a dependency.
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
    fn digits(&mut self, out: &mut String, n: usize) {
        for _ in 0..n {
            out.push((b'0' + self.below(10) as u8) as char);
        }
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// (country code, [(leading digits, digits after)]): numbers as dialled from the Netherlands.
const WORLD: &[(&str, &[(&str, usize)])] = &[
    ("31", &[("6", 8), ("20", 7), ("10", 7), ("30", 7), ("85", 7), ("800", 4), ("900", 7)]),
    ("49", &[("30", 8), ("89", 8), ("151", 8), ("176", 8), ("900", 7)]),
    ("32", &[("2", 7), ("47", 7), ("48", 7), ("90", 6)]),
    ("44", &[("20", 8), ("7", 9), ("70", 8), ("909", 7), ("845", 7)]),
    ("33", &[("1", 8), ("6", 8), ("89", 7)]),
    ("34", &[("6", 8), ("91", 7), ("803", 6)]),
    ("39", &[("3", 9), ("06", 8)]),
    ("1", &[("212", 7), ("415", 7), ("900", 7), ("876", 7), ("268", 7), ("649", 7), ("809", 7)]),
    ("7", &[("9", 9), ("495", 7)]),
    ("48", &[("5", 8), ("22", 7)]),
    ("90", &[("5", 9), ("212", 7)]),
    ("212", &[("6", 8)]),
    ("597", &[("8", 6)]),
    ("5999", &[("", 7)]),
    ("62", &[("81", 9)]),
    ("86", &[("13", 9), ("10", 8)]),
    ("91", &[("9", 9)]),
    ("41", &[("7", 8), ("900", 6)]),
    ("43", &[("66", 8)]),
    ("46", &[("7", 8)]),
    ("47", &[("9", 7)]),
    ("351", &[("9", 8)]),
    ("353", &[("8", 8)]),
    ("30", &[("69", 8)]),
    ("20", &[("1", 9)]),
    ("27", &[("8", 8)]),
    ("55", &[("11", 9)]),
    ("61", &[("4", 8), ("1900", 6)]),
    ("234", &[("80", 8)]),
    ("971", &[("5", 8)]),
    ("380", &[("6", 8)]),
    ("420", &[("6", 8)]),
    ("81", &[("90", 8)]),
    ("82", &[("10", 8)]),
    ("852", &[("9", 7)]),
    ("60", &[("12", 7)]),
    ("63", &[("917", 7)]),
    ("92", &[("300", 7)]),
    ("880", &[("17", 8)]),
    // high risk
    ("53", &[("5", 7), ("7", 7)]),
    ("220", &[("7", 6)]),
    ("224", &[("62", 7)]),
    ("231", &[("77", 7)]),
    ("232", &[("76", 6)]),
    ("239", &[("99", 5)]),
    ("245", &[("95", 6)]),
    ("247", &[("6", 4)]),
    ("252", &[("61", 7)]),
    ("670", &[("77", 6)]),
    ("675", &[("7", 7)]),
    ("677", &[("7", 6)]),
    ("678", &[("5", 6)]),
    ("682", &[("5", 4)]),
    ("683", &[("4", 3)]),
    ("686", &[("7", 7)]),
    ("688", &[("90", 4)]),
    ("371", &[("2", 7), ("90", 6)]),
    ("870", &[("7", 8)]),
    ("881", &[("6", 8), ("7", 8)]),
    ("882", &[("16", 7)]),
    ("883", &[("5", 9)]),
    ("979", &[("", 8)]),
];

/// `n` E.164 numbers spread over [`WORLD`].
fn numbers(n: usize, seed: u64) -> Vec<E164> {
    let mut rng = Rng(seed);
    let mut s = String::new();
    (0..n)
        .map(|_| {
            let (cc, subs) = rng.pick(WORLD);
            let (lead, rest) = rng.pick(subs);
            s.clear();
            s.push_str(cc);
            s.push_str(lead);
            rng.digits(&mut s, *rest);
            E164::from_digits(s.as_bytes()).expect("generated numbers are valid")
        })
        .collect()
}

/// `n` dialled strings as users of a Dutch PBX type them.
fn dialled(n: usize, seed: u64) -> Vec<String> {
    let mut rng = Rng(seed);
    (0..n)
        .map(|_| {
            let mut s = String::new();
            match rng.below(100) {
                // national: mobile and geographic
                0..=24 => {
                    s.push_str("06");
                    rng.digits(&mut s, 8);
                }
                25..=44 => {
                    const AREAS: [&str; 7] = ["020", "010", "030", "070", "040", "085", "0113"];
                    let area = *rng.pick(&AREAS);
                    s.push_str(area);
                    rng.digits(&mut s, 7 - (area.len() == 4) as usize);
                }
                // 00 international
                45..=64 => {
                    let (cc, subs) = rng.pick(WORLD);
                    let (lead, rest) = rng.pick(subs);
                    s.push_str("00");
                    s.push_str(cc);
                    s.push_str(lead);
                    rng.digits(&mut s, *rest);
                }
                // + international, sometimes formatted
                65..=72 => {
                    let (cc, subs) = rng.pick(WORLD);
                    let (lead, rest) = rng.pick(subs);
                    s.push('+');
                    s.push_str(cc);
                    s.push(' ');
                    s.push_str(lead);
                    s.push(' ');
                    rng.digits(&mut s, *rest);
                }
                // formatted national
                73..=76 => {
                    s.push_str("020-");
                    rng.digits(&mut s, 3);
                    s.push(' ');
                    rng.digits(&mut s, 4);
                }
                // SIP URI from a softphone
                77..=78 => {
                    s.push_str("sip:+316");
                    rng.digits(&mut s, 8);
                    s.push_str("@pbx.example.nl;user=phone");
                }
                // extensions
                79..=95 => {
                    let _ = write!(s, "{}", 200 + rng.below(60));
                }
                // emergency and feature codes
                96..=97 => s.push_str("112"),
                98 => s.push_str("*97"),
                _ => s.push_str("0900-8844"),
            }
            s
        })
        .collect()
}

/// The 500-row deck: a row per country code, sub-prefixes for mobile and special ranges, and
/// more ranges of the busy destinations, prefixes of 1 to 6 digits.
fn deck_csv() -> String {
    const CODES: &str =
        "1 7 20 27 30 31 32 33 34 36 39 40 41 43 44 45 46 47 48 49 51 52 53 54 55 56 57 58 60 61 62 63 \
        64 65 66 81 82 84 86 90 91 92 93 94 95 98 211 212 213 216 218 220 221 222 223 224 225 226 \
        227 228 229 230 231 232 233 234 235 236 237 238 239 240 241 242 243 244 245 246 247 248 249 \
        250 251 252 253 254 255 256 257 258 260 261 262 263 264 265 266 267 268 269 290 291 297 298 \
        299 350 351 352 353 354 355 356 357 358 359 370 371 372 373 374 375 376 377 378 380 381 382 \
        383 385 386 387 389 420 421 423 500 501 502 503 504 505 506 507 508 509 590 591 592 593 594 \
        595 596 597 598 599 670 672 673 674 675 676 677 678 679 680 681 682 683 685 686 687 688 689 \
        690 691 692 850 852 853 855 856 870 880 881 882 883 886 960 961 962 963 964 965 966 967 968 \
        970 971 972 973 974 975 976 977 992 993 994 995 996 998";
    const SPECIAL: &str = "316 3185 3188 31800 31900 31906 31909 3120 3110 3197 4915 4916 4917 4930 4989 \
        3247 3248 3249 447 4470 449 4420 336 337 346 347 393 485 486 905 2126 2127 5978 5999 628 861 \
        919 918 417 4366 467 479 474 3519 3538 3069 79 77 201 278 5511 614 23480 9715 3806 4206 407 \
        535 2207 22462 23276 25261 67077 6757 37190 3712 8707 8816 8817 88216 8835 1876 1268 1649 \
        1284 1809 1829 1849 1416 1212";
    const SPLIT: [&str; 12] =
        ["316", "4915", "4917", "447", "336", "346", "393", "3247", "485", "905", "1212", "79"];
    let mut prefixes: Vec<String> =
        CODES.split_whitespace().chain(SPECIAL.split_whitespace()).map(String::from).collect();
    let mut rng = Rng(0x5eed_dec4);
    while prefixes.len() < 500 {
        let base = *rng.pick(&SPLIT);
        let mut p = base.to_string();
        let extra = 1 + rng.below((6 - base.len()) as u64) as usize;
        rng.digits(&mut p, extra);
        if !prefixes.contains(&p) {
            prefixes.push(p);
        }
    }
    let mut csv = String::from(
        "prefix,destination,rate_per_minute,connection_fee,initial_increment_s,subsequent_increment_s\n",
    );
    for p in &prefixes {
        let rate = 50 + rng.below(35_000); // 0.0050 .. 3.5050
        let fee = if rng.below(5) == 0 { 150 } else { 0 };
        let (ini, sub) = *rng.pick(&[(60, 60), (30, 6), (1, 1)]);
        let _ = writeln!(
            csv,
            "{p},Destination {p},{}.{:04},{}.{:04},{ini},{sub}",
            rate / 10_000,
            rate % 10_000,
            fee / 10_000,
            fee % 10_000
        );
    }
    csv
}

fn deck() -> RateDeck {
    let csv = deck_csv();
    let deck = RateDeck::parse("bench.csv", "bench", csv.as_bytes(), &TimeBands::default(), Currency::EUR)
        .expect("the bench deck is valid");
    assert_eq!(deck.rows().len(), 500);
    deck
}

const BATCH: usize = 10_000;

#[divan::bench]
fn normalise(bencher: Bencher) {
    let plan = DialPlan::for_country("NL").unwrap();
    let inputs = dialled(BATCH, 1);
    bencher.counter(ItemsCount::new(inputs.len())).bench_local(|| {
        let mut e164 = 0usize;
        for d in &inputs {
            if let Dialled::E164(_) = plan.normalise(black_box(d)) {
                e164 += 1;
            }
        }
        e164
    });
}

#[divan::bench]
fn classify(bencher: Bencher) {
    let numbering = Numbering::builtin();
    let inputs = numbers(BATCH, 2);
    bencher.counter(ItemsCount::new(inputs.len())).bench_local(|| {
        let mut acc = 0u32;
        for n in &inputs {
            let c = numbering.classify(black_box(n));
            acc = acc.wrapping_add(c.region as u32 + c.risk as u32);
        }
        acc
    });
}

#[divan::bench]
fn deck_find_and_cost(bencher: Bencher) {
    let deck = deck();
    let inputs = numbers(BATCH, 3);
    let start: Timestamp = "2024-03-12T10:00:00Z".parse().unwrap();
    let mut rng = Rng(4);
    let billsec: Vec<u32> = (0..BATCH).map(|_| rng.below(600) as u32).collect();
    bencher.counter(ItemsCount::new(inputs.len())).bench_local(|| {
        let mut total = rust_decimal::Decimal::ZERO;
        for (n, &b) in inputs.iter().zip(&billsec) {
            if let Some(row) = deck.find(black_box(n), start, 0) {
                total += row.cost(b);
            }
        }
        total
    });
}

#[divan::bench]
fn rater_rate(bencher: Bencher) {
    let tz = TimeZone::get("Europe/Amsterdam").unwrap();
    let default = AccountSetup { plan: Arc::new(DialPlan::for_country("NL").unwrap()), tz };
    let rater = Rater::new(
        Arc::new(Numbering::builtin().clone()),
        vec![deck()],
        TimeBands::default(),
        HashMap::new(),
        default,
        DirectionRules::default(),
    )
    .unwrap();
    let mut rng = Rng(5);
    let t0: Timestamp = "2024-03-01T00:00:00Z".parse().unwrap();
    let cdrs: Vec<Cdr> = dialled(BATCH, 6)
        .into_iter()
        .enumerate()
        .map(|(i, d)| {
            let answered = rng.below(4) != 0;
            let billsec = if answered { 1 + rng.below(600) as u32 } else { 0 };
            let inbound = rng.below(6) == 0;
            Cdr {
                call_id: format!("1709251200.{i}"),
                account: "acme".into(),
                source: if inbound { "0612345678".into() } else { format!("{}", 200 + i % 50) },
                dialled: d,
                context: if inbound { "from-trunk".into() } else { "from-internal".into() },
                channel: format!("PJSIP/{}-{:08x}", 200 + i % 50, i),
                dst_channel: format!("PJSIP/trunk-kpn-{:08x}", i),
                start: t0 + jiff::SignedDuration::from_secs(i as i64 * 250),
                answer: None,
                end: None,
                duration_s: billsec + 10,
                billsec,
                ..Cdr::default()
            }
        })
        .collect();
    bencher.counter(ItemsCount::new(cdrs.len())).bench_local(|| {
        let mut priced = 0usize;
        for cdr in &cdrs {
            let r = rater.rate(black_box(cdr));
            priced += r.costs[0].is_some() as usize;
        }
        priced
    });
}

#[divan::bench]
fn cgrates_price(bencher: Bencher) {
    let dir = std::env::temp_dir().join(format!("tg-cgr-bench-{}", std::process::id()));
    let numbers = cgrates_plan::write(&dir, 10_000, BATCH);
    let plan = tollguard_core::cgrates::Plan::load(&dir).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let starts: Vec<Timestamp> =
        ["2024-05-13T07:59:30Z", "2024-05-13T11:00:00Z", "2024-05-13T23:59:00Z", "2024-05-18T12:00:00Z"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
    let calls: Vec<(&str, Timestamp, u64)> = numbers
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), starts[i % starts.len()], (i as u64 * 7919) % 401 * 1_000_000_000))
        .collect();
    bencher.counter(ItemsCount::new(calls.len())).bench_local(|| {
        let mut acc = rust_decimal::Decimal::ZERO;
        for (n, at, usage) in &calls {
            let t = plan.tariff("cgrates.org", "call", "acme", black_box(n), *at).unwrap();
            acc += plan.cost(&t, *at, *usage).unwrap();
        }
        acc
    });
}
