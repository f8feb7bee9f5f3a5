//! Benchmarks of the Asterisk `cdr_csv` reader (divan).
//!
//! ```sh
//! cargo bench -p tollguard-ingest --bench parse
//! ```
//!
//! - `asterisk_parse`: N rows of an 18-column Master.csv, from an in-memory buffer, read with
//!   `from_reader(Format::Asterisk, ..)` in Europe/Amsterdam into one reused `Cdr`; counts bytes
//!   and rows;
//! - `asterisk_parse_and_rate`: the same plus `Rater::rate` per row (NL plan, a 500-row deck):
//!   what `tollguard rate` does per row, less writing the output CSV.
//!
//! The rows (built before timing) look like those of `bench/gen-asterisk.py`: 40 accounts, local
//! times in order over March 2024, ~25% unanswered (empty unquoted `answer`), national, `00`
//! international, extensions, inbound from the trunk, a few 112 and `*97`.

use divan::counter::{BytesCount, ItemsCount};
use divan::{black_box, Bencher};
use jiff::tz::TimeZone;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Cursor;
use std::sync::Arc;
use tollguard_core::cdr::Cdr;
use tollguard_core::money::Currency;
use tollguard_core::numbering::{DialPlan, Numbering};
use tollguard_core::rater::{AccountSetup, DirectionRules, Rater};
use tollguard_core::rating::{RateDeck, TimeBands};
use tollguard_ingest::{from_reader, Format, ReadError, ReadOptions};

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

const NATIONAL: &[(&str, usize)] = &[
    ("061", 7),
    ("062", 7),
    ("063", 7),
    ("064", 7),
    ("065", 7),
    ("020", 7),
    ("010", 7),
    ("030", 7),
    ("070", 7),
    ("040", 7),
    ("0113", 6),
    ("085", 7),
    ("088", 7),
    ("0800", 4),
    ("0900", 7),
];
const INTERNATIONAL: &[(&str, usize)] = &[
    ("004930", 8),
    ("0049151", 8),
    ("00322", 7),
    ("003247", 7),
    ("004420", 8),
    ("00447", 9),
    ("00336", 8),
    ("00346", 8),
    ("00393", 9),
    ("001212", 7),
    ("00485", 8),
    ("00905", 9),
    ("002126", 8),
    ("005978", 6),
    ("0059999", 7),
    ("00535", 7),
    ("002207", 6),
    ("0067077", 6),
    ("008816", 8),
    ("0037190", 6),
];
const NAMES: [&str; 8] = [
    "Jan de Jong",
    "Anna Jansen",
    "Pieter de Vries",
    "Sanne Bakker",
    "Mohamed El Amrani",
    "Emma Visser",
    "Daan Smit",
    "Noor Yilmaz",
];

fn two(s: &mut String, v: u64) {
    let _ = write!(s, "{v:02}");
}

/// Local `YYYY-MM-DD HH:MM:SS` for `t` seconds after 2024-03-01 00:00.
fn local(s: &mut String, t: u64) {
    let (day, sec) = (t / 86_400, t % 86_400);
    let (y, m, d) = if day < 31 { (2024, 3, day + 1) } else { (2024, 4, day - 30) };
    let _ = write!(s, "{y}-");
    two(s, m);
    s.push('-');
    two(s, d);
    s.push(' ');
    two(s, sec / 3600);
    s.push(':');
    two(s, sec / 60 % 60);
    s.push(':');
    two(s, sec % 60);
}

/// `n` rows of an 18-column Asterisk Master.csv.
fn master_csv(n: usize) -> Vec<u8> {
    let mut rng = Rng(0x0a57_e415);
    let mut out = String::with_capacity(n * 260);
    let month = 31 * 86_400u64;
    for i in 0..n {
        let start = i as u64 * month / n as u64 + rng.below(60);
        let account = format!("klant{:04}", rng.below(40));
        let ext = 200 + rng.below(50);
        let mut dst = String::new();
        let mut context = "from-internal";
        let mut src = ext.to_string();
        let mut clid = format!("\"\"{}\"\" <{ext}>", rng.pick(&NAMES));
        let r = rng.below(1000);
        if r < 450 {
            let (p, k) = rng.pick(NATIONAL);
            dst.push_str(p);
            rng.digits(&mut dst, *k);
        } else if r < 670 {
            let (p, k) = rng.pick(INTERNATIONAL);
            dst.push_str(p);
            rng.digits(&mut dst, *k);
        } else if r < 820 {
            let _ = write!(dst, "{}", 200 + rng.below(50));
        } else if r < 996 {
            context = "from-trunk";
            src = "06".into();
            rng.digits(&mut src, 8);
            clid = format!("\"\"{src}\"\" <{src}>");
            let _ = write!(dst, "{ext}");
        } else if r < 998 {
            dst.push_str("112");
        } else {
            dst.push_str("*97");
        }
        let ring = 2 + rng.below(25);
        let answered = rng.below(4) != 0;
        let billsec = if answered { 1 + rng.below(300) + rng.below(300) } else { 0 };
        let duration = ring + billsec;
        let _ = write!(
            out,
            "\"{account}\",\"{src}\",\"{dst}\",\"{context}\",\"{clid}\",\"PJSIP/{ext}-{:08x}\",\"PJSIP/trunk-kpn-{:08x}\",\"Dial\",\"PJSIP/{dst}@trunk-kpn,60,tT\",\"",
            rng.next() as u32,
            rng.next() as u32
        );
        local(&mut out, start);
        out.push_str("\",");
        if answered {
            out.push('"');
            local(&mut out, start + ring);
            out.push('"');
        }
        out.push_str(",\"");
        local(&mut out, start + duration);
        let _ = writeln!(
            out,
            "\",{duration},{billsec},\"{}\",\"DOCUMENTATION\",\"{}.{i}\",\"\"",
            if answered { "ANSWERED" } else { ["NO ANSWER", "BUSY", "FAILED"][i % 3] },
            1_709_247_600 + start
        );
    }
    out.into_bytes()
}

fn options() -> ReadOptions {
    ReadOptions { tz: TimeZone::get("Europe/Amsterdam").unwrap(), ..ReadOptions::default() }
}

/// Reads every row of `bytes` and hands each to `each`; returns the number of rows.
fn read_all(bytes: &'static [u8], options: &ReadOptions, mut each: impl FnMut(&Cdr)) -> usize {
    let mut reader =
        from_reader(Format::Asterisk, Arc::from("bench.csv"), Box::new(Cursor::new(bytes)), options).unwrap();
    let mut cdr = Cdr::default();
    let mut rows = 0;
    loop {
        match reader.read_into(&mut cdr) {
            Ok(true) => {
                rows += 1;
                each(&cdr);
            }
            Ok(false) => break,
            Err(ReadError::Row(e)) => panic!("bench rows are valid: {e}"),
            Err(e) => panic!("{e}"),
        }
    }
    rows
}

const ROWS: usize = 100_000;

#[divan::bench(sample_count = 20)]
fn asterisk_parse(bencher: Bencher) {
    let bytes: &'static [u8] = master_csv(ROWS).leak();
    let options = options();
    assert_eq!(read_all(bytes, &options, |_| {}), ROWS);
    bencher.counter(BytesCount::new(bytes.len())).counter(ItemsCount::new(ROWS)).bench_local(|| {
        let mut billsec = 0u64;
        read_all(black_box(bytes), &options, |cdr| billsec += cdr.billsec as u64);
        billsec
    });
}

/// A deck like `bench/gen-asterisk.py`'s in shape: 500 rows, prefixes of 1 to 6 digits.
fn deck() -> RateDeck {
    let mut rng = Rng(0xdec4);
    let mut prefixes: Vec<String> = (1..=999)
        .map(|cc| cc.to_string())
        .filter(|cc| tollguard_core::numbering::metadata::is_calling_code(cc.parse().unwrap()))
        .collect();
    for p in [
        "316", "3120", "3110", "3185", "3188", "31800", "31900", "4915", "3247", "447", "4420", "336", "346",
        "393", "1212", "485", "905", "2126", "5978", "5999", "535", "2207", "67077", "8816", "37190",
    ] {
        if !prefixes.iter().any(|q| q == p) {
            prefixes.push(p.to_string());
        }
    }
    while prefixes.len() < 500 {
        let base = *rng.pick(&["316", "4915", "447", "336", "346", "393", "3247", "485", "905"]);
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
    for p in prefixes.iter().take(500) {
        let rate = 50 + rng.below(35_000);
        let (ini, sub) = *rng.pick(&[(60, 60), (30, 6), (1, 1)]);
        let _ =
            writeln!(csv, "{p},Destination {p},{}.{:04},0.0000,{ini},{sub}", rate / 10_000, rate % 10_000);
    }
    RateDeck::parse("bench.csv", "bench", csv.as_bytes(), &TimeBands::default(), Currency::EUR).unwrap()
}

#[divan::bench(sample_count = 20)]
fn asterisk_parse_and_rate(bencher: Bencher) {
    let bytes: &'static [u8] = master_csv(ROWS).leak();
    let options = options();
    let rater = Rater::new(
        Arc::new(Numbering::builtin().clone()),
        vec![deck()],
        TimeBands::default(),
        HashMap::new(),
        AccountSetup { plan: Arc::new(DialPlan::for_country("NL").unwrap()), tz: options.tz.clone() },
        DirectionRules::default(),
    )
    .unwrap();
    bencher.counter(BytesCount::new(bytes.len())).counter(ItemsCount::new(ROWS)).bench_local(|| {
        let mut priced = 0usize;
        read_all(black_box(bytes), &options, |cdr| priced += rater.rate(cdr).costs[0].is_some() as usize);
        priced
    });
}
