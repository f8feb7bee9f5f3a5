//! A-Z rate decks and the exact cost of a call.
//!
//! ## The deck (CSV, header required)
//!
//! `prefix,destination,rate_per_minute,connection_fee,initial_increment_s,subsequent_increment_s`
//! plus, optionally, `effective_from`, `time_band` and `currency` (any order; unknown columns are
//! refused so a misspelt `effective_form` does not silently do nothing).
//!
//! - `prefix`: E.164 digits (a leading `+` is ignored). The longest matching prefix wins.
//! - `effective_from`: RFC 3339 date-time (`2024-07-01T00:00:00+02:00`) or date (`2024-07-01`,
//!   midnight UTC). The row applies to calls *starting* at or after it; among a prefix's rows the
//!   newest applicable one wins. Empty: always applicable (older than any dated row).
//! - `time_band`: the name of a band from the configuration (`[time_bands.peak]`); the row applies
//!   only to calls starting inside the band, in the account's zone. Empty: any time. At the same
//!   `effective_from`, a row with a band beats one without.
//! - `currency`: ISO 4217 code; empty or absent: the deck's currency (default EUR).
//!
//! When a prefix has rows but none applies (all in the future, or outside their bands), the next
//! shorter prefix is tried. A number with no applicable row at all is **unrated**: reported,
//! never priced at zero.
//!
//! ## Cost (the contract's rule, rounded once)
//!
//! - `billsec == 0`: 0, no connection fee.
//! - billed = `initial` if `billsec <= initial`, else
//!   `initial + ceil((billsec - initial) / subsequent) * subsequent`.
//! - cost = `connection_fee + rate_per_minute * billed / 60`, computed exactly and rounded once
//!   to 4 decimal places, half away from zero ([`crate::money::div_round`]).

use crate::money::{div_round, parse_amount, Currency};
use crate::numbering::trie::DigitTrie;
use crate::numbering::E164;
use jiff::civil::Weekday;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use rust_decimal::Decimal;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::io::Read;

/// Decimal places a call's cost is rounded to.
pub const COST_DECIMALS: u32 = 4;

/// The largest rate or fee a deck may hold: far above any real tariff, and small enough that a
/// call of any length (up to `u32::MAX` seconds) is priced without overflow.
pub const MAX_AMOUNT: i64 = 1_000_000;

/// One row of a deck.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateRow {
    /// E.164 prefix without `+`.
    pub prefix: String,
    /// Destination name as the deck gives it.
    pub destination: String,
    /// Price per minute.
    pub rate_per_minute: Decimal,
    /// Charged once per answered call.
    pub connection_fee: Decimal,
    /// First billing increment, seconds.
    pub initial_s: u32,
    /// Later billing increments, seconds (at least 1).
    pub subsequent_s: u32,
    /// From when the row applies.
    pub effective_from: Option<Timestamp>,
    /// Index into [`TimeBands`] of the row's band.
    pub band: Option<u8>,
    /// Currency of the amounts.
    pub currency: Currency,
    /// Line in the deck file.
    pub line: u64,
}

impl RateRow {
    /// Seconds billed for `billsec` seconds of talk time.
    pub fn billed_seconds(&self, billsec: u32) -> u64 {
        billed_seconds(billsec, self.initial_s, self.subsequent_s)
    }

    /// The exact cost of a call with `billsec` seconds of talk time.
    pub fn cost(&self, billsec: u32) -> Decimal {
        if billsec == 0 {
            return Decimal::ZERO;
        }
        let billed = self.billed_seconds(billsec);
        self.cost_in_i64(billed).unwrap_or_else(|| self.cost_in_decimals(billed))
    }

    /// `(fee x 60 + rate x billed) / 60` to [`COST_DECIMALS`], rounded half away from zero.
    fn cost_in_decimals(&self, billed: u64) -> Decimal {
        let numerator =
            self.connection_fee * Decimal::from(60) + self.rate_per_minute * Decimal::from(billed);
        div_round(numerator, 60, COST_DECIMALS)
    }

    /// [`Self::cost_in_decimals`] in 64-bit integers, when the numerator fits them (any real
    /// price): fee and rate brought to their common scale, the same rounding. `Decimal` is exact
    /// there too, so both give the same amount (a 128-bit division is a slow library call).
    fn cost_in_i64(&self, billed: u64) -> Option<Decimal> {
        let (fee, rate) = (self.connection_fee, self.rate_per_minute);
        let scale = fee.scale().max(rate.scale());
        if scale > 18 {
            return None;
        }
        let at_scale =
            |d: Decimal| i64::try_from(d.mantissa()).ok()?.checked_mul(10i64.pow(scale - d.scale()));
        let numerator = at_scale(fee)?
            .checked_mul(60)?
            .checked_add(at_scale(rate)?.checked_mul(i64::try_from(billed).ok()?)?)?;
        // In units of 10^-COST_DECIMALS: numerator x 10^COST_DECIMALS / (60 x 10^scale).
        let (num, den) = if scale >= COST_DECIMALS {
            (numerator, 60 * 10i64.pow(scale - COST_DECIMALS))
        } else {
            (numerator.checked_mul(10i64.pow(COST_DECIMALS - scale))?, 60)
        };
        let (mut q, r) = (num / den, num % den);
        // `r < den <= 6 x 10^15`: doubling it cannot overflow.
        if 2 * r.abs() >= den {
            q += num.signum();
        }
        Some(Decimal::new(q, COST_DECIMALS))
    }
}

/// Seconds billed for `billsec` seconds of talk time with the given increments.
pub fn billed_seconds(billsec: u32, initial: u32, subsequent: u32) -> u64 {
    let (b, i, s) = (billsec as u64, initial as u64, subsequent.max(1) as u64);
    if b == 0 {
        0
    } else if b <= i {
        i
    } else {
        i + (b - i).div_ceil(s) * s
    }
}

/// A time band as written in the configuration (`[time_bands.NAME]`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TimeBandSpec {
    /// Days the band covers: `mon`, `tue`, `wed`, `thu`, `fri`, `sat`, `sun`.
    pub days: Vec<String>,
    /// Start, `HH:MM` local time, inclusive.
    pub from: String,
    /// End, `HH:MM` local time, exclusive; `24:00` for midnight. A `to` before `from` runs past
    /// midnight into the next day (still counted as the day it started).
    pub to: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct TimeBand {
    name: String,
    days: u8,
    from_min: u16,
    to_min: u16,
}

/// The configured time bands, validated. At most 32.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TimeBands {
    bands: Vec<TimeBand>,
}

fn parse_hhmm(what: &str, s: &str) -> Result<u16, String> {
    let bad = || format!("{what} must be HH:MM, found {s:?}");
    let (h, m) = s.trim().split_once(':').ok_or_else(bad)?;
    let h: u16 = h.parse().map_err(|_| bad())?;
    let m: u16 = m.parse().map_err(|_| bad())?;
    if m > 59 || h > 24 || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

fn weekday_bit(w: Weekday) -> u8 {
    1 << (w.to_monday_zero_offset() as u8)
}

impl TimeBands {
    /// Validates bands from the configuration.
    pub fn from_specs(specs: &BTreeMap<String, TimeBandSpec>) -> Result<TimeBands, String> {
        if specs.len() > 32 {
            return Err("at most 32 time bands".into());
        }
        let mut bands = Vec::new();
        for (name, s) in specs {
            let mut days = 0u8;
            for d in &s.days {
                days |= match d.to_ascii_lowercase().as_str() {
                    "mon" => 1,
                    "tue" => 2,
                    "wed" => 4,
                    "thu" => 8,
                    "fri" => 16,
                    "sat" => 32,
                    "sun" => 64,
                    other => return Err(format!("time_bands.{name}: unknown day {other:?} (mon..sun)")),
                };
            }
            let from_min = parse_hhmm(&format!("time_bands.{name}.from"), &s.from)?;
            let to_min = parse_hhmm(&format!("time_bands.{name}.to"), &s.to)?;
            bands.push(TimeBand { name: name.clone(), days, from_min, to_min });
        }
        Ok(TimeBands { bands })
    }

    /// Index of a band by name.
    pub fn index(&self, name: &str) -> Option<u8> {
        self.bands.iter().position(|b| b.name == name).map(|i| i as u8)
    }

    /// Name of a band.
    pub fn name(&self, idx: u8) -> &str {
        self.bands.get(idx as usize).map_or("", |b| b.name.as_str())
    }

    /// Bit mask of the bands a moment falls in, in the given zone.
    pub fn active(&self, at: Timestamp, tz: &TimeZone) -> u32 {
        if self.bands.is_empty() {
            return 0;
        }
        let local = tz.to_datetime(at);
        let minute = local.hour() as u16 * 60 + local.minute() as u16;
        let today = weekday_bit(local.weekday());
        let yesterday = weekday_bit(local.weekday().previous());
        let mut mask = 0u32;
        for (i, b) in self.bands.iter().enumerate() {
            let inside = if b.from_min <= b.to_min {
                b.days & today != 0 && minute >= b.from_min && minute < b.to_min
            } else {
                (b.days & today != 0 && minute >= b.from_min)
                    || (b.days & yesterday != 0 && minute < b.to_min)
            };
            if inside {
                mask |= 1 << i;
            }
        }
        mask
    }
}

/// A deck that could not be loaded: every problem found, each naming file and line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", .problems.join("\n"))]
pub struct DeckError {
    /// `file:line: reason`, one per problem (at most 20).
    pub problems: Vec<String>,
}

/// A loaded rate deck.
#[derive(Clone, Debug)]
pub struct RateDeck {
    /// The deck's name (file stem, or as configured).
    pub name: String,
    /// The currency of rows without a `currency` column.
    pub currency: Currency,
    rows: Vec<RateRow>,
    trie: DigitTrie<Vec<u32>>,
    uses_bands: bool,
}

const REQUIRED: [&str; 6] = [
    "prefix",
    "destination",
    "rate_per_minute",
    "connection_fee",
    "initial_increment_s",
    "subsequent_increment_s",
];
const OPTIONAL: [&str; 3] = ["effective_from", "time_band", "currency"];

fn parse_effective(s: &str) -> Result<Timestamp, String> {
    let t = s.trim();
    if let Ok(ts) = t.parse::<Timestamp>() {
        return Ok(ts);
    }
    if let Ok(date) = t.parse::<jiff::civil::Date>() {
        if t.len() == 10 {
            if let Ok(ts) = TimeZone::UTC.to_timestamp(date.to_datetime(jiff::civil::Time::midnight())) {
                return Ok(ts);
            }
        }
    }
    Err(format!("effective_from must be an RFC 3339 date or date-time with offset, found {t:?}"))
}

impl RateDeck {
    /// Loads a deck file.
    pub fn load(
        path: &std::path::Path,
        bands: &TimeBands,
        currency: Currency,
    ) -> Result<RateDeck, DeckError> {
        let name = path.display().to_string();
        let file =
            std::fs::File::open(path).map_err(|e| DeckError { problems: vec![format!("{name}: {e}")] })?;
        let stem = path.file_stem().map_or("deck".into(), |s| s.to_string_lossy().into_owned());
        RateDeck::parse(&name, &stem, file, bands, currency)
    }

    /// Parses a deck from any reader; `file` names it in errors, `deck_name` is its name.
    pub fn parse(
        file: &str,
        deck_name: &str,
        input: impl Read,
        bands: &TimeBands,
        currency: Currency,
    ) -> Result<RateDeck, DeckError> {
        let mut problems = Vec::new();
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(input);
        let headers = match rdr.headers() {
            Ok(h) => h.clone(),
            Err(e) => {
                return Err(DeckError { problems: vec![format!("{file}:1: cannot read the header: {e}")] })
            }
        };
        let mut col: HashMap<&str, usize> = HashMap::new();
        for (i, h) in headers.iter().enumerate() {
            let h = h.trim_start_matches('\u{feff}').trim();
            match REQUIRED.iter().chain(OPTIONAL.iter()).find(|k| **k == h) {
                Some(k) => {
                    col.insert(k, i);
                }
                None => problems.push(format!(
                    "{file}:1: unknown column {h:?}; columns are {} and optionally {}",
                    REQUIRED.join(","),
                    OPTIONAL.join(",")
                )),
            }
        }
        for r in REQUIRED {
            if !col.contains_key(r) {
                problems.push(format!(
                    "{file}:1: missing column {r:?} (the header must name {})",
                    REQUIRED.join(",")
                ));
            }
        }
        if !problems.is_empty() {
            problems.truncate(20);
            return Err(DeckError { problems });
        }
        let mut rows: Vec<RateRow> = Vec::new();
        let mut seen: HashMap<(String, Option<Timestamp>, Option<u8>), u64> = HashMap::new();
        let mut record = csv::StringRecord::new();
        loop {
            match rdr.read_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {}
                Err(e) => {
                    let line = e.position().map_or(0, |p| p.line());
                    problems.push(format!("{file}:{line}: {e}"));
                    if problems.len() >= 20 {
                        break;
                    }
                    continue;
                }
            }
            let line = record.position().map_or(0, |p| p.line());
            if record.iter().all(|f| f.is_empty()) {
                continue;
            }
            let get = |k: &str| col.get(k).and_then(|&i| record.get(i)).unwrap_or("");
            let row = (|| -> Result<RateRow, String> {
                if record.len() != headers.len() {
                    return Err(format!(
                        "expected {} columns as in the header, found {} (a comma as decimal separator?)",
                        headers.len(),
                        record.len()
                    ));
                }
                let prefix = get("prefix").trim_start_matches('+');
                if prefix.is_empty() || prefix.len() > 15 || !prefix.bytes().all(|c| c.is_ascii_digit()) {
                    return Err(format!("prefix must be 1-15 digits, found {:?}", get("prefix")));
                }
                let rate =
                    parse_amount(get("rate_per_minute")).map_err(|e| format!("rate_per_minute: {e}"))?;
                let fee = parse_amount(get("connection_fee")).map_err(|e| format!("connection_fee: {e}"))?;
                if rate.is_sign_negative() || fee.is_sign_negative() {
                    return Err("rate_per_minute and connection_fee must not be negative".into());
                }
                if rate > Decimal::from(MAX_AMOUNT) || fee > Decimal::from(MAX_AMOUNT) {
                    return Err(format!("rate_per_minute and connection_fee must be at most {MAX_AMOUNT}"));
                }
                let secs = |k: &str, min: u32| -> Result<u32, String> {
                    let v: u32 = get(k)
                        .parse()
                        .map_err(|_| format!("{k} must be a whole number of seconds, found {:?}", get(k)))?;
                    if v < min {
                        return Err(format!("{k} must be at least {min}, found {v}"));
                    }
                    Ok(v)
                };
                let initial_s = secs("initial_increment_s", 0)?;
                let subsequent_s = secs("subsequent_increment_s", 1)?;
                let effective_from = match get("effective_from") {
                    "" => None,
                    s => Some(parse_effective(s)?),
                };
                let band =
                    match get("time_band") {
                        "" => None,
                        b => Some(bands.index(b).ok_or_else(|| {
                            format!("time_band {b:?} is not configured ([time_bands.{b}])")
                        })?),
                    };
                let currency = match get("currency") {
                    "" => currency,
                    c => c.parse()?,
                };
                Ok(RateRow {
                    prefix: prefix.to_string(),
                    destination: get("destination").to_string(),
                    rate_per_minute: rate,
                    connection_fee: fee,
                    initial_s,
                    subsequent_s,
                    effective_from,
                    band,
                    currency,
                    line,
                })
            })();
            match row {
                Ok(r) => {
                    let key = (r.prefix.clone(), r.effective_from, r.band);
                    if let Some(first) = seen.insert(key, line) {
                        problems.push(format!(
                            "{file}:{line}: prefix {} has two rows for the same effective_from and time_band (first on line {first})",
                            r.prefix
                        ));
                    } else {
                        rows.push(r);
                    }
                }
                Err(reason) => problems.push(format!("{file}:{line}: {reason}")),
            }
            if problems.len() >= 20 {
                break;
            }
        }
        if !problems.is_empty() {
            return Err(DeckError { problems });
        }
        Ok(RateDeck::from_rows(deck_name, currency, rows))
    }

    /// Builds a deck from rows (already validated).
    pub fn from_rows(name: &str, currency: Currency, rows: Vec<RateRow>) -> RateDeck {
        let mut trie: DigitTrie<Vec<u32>> = DigitTrie::new();
        for (i, r) in rows.iter().enumerate() {
            trie.node_mut(r.prefix.as_bytes()).get_or_insert_with(Vec::new).push(i as u32);
        }
        let mut sorted = DigitTrie::new();
        trie.for_each(|p, ids| {
            let mut ids = ids.clone();
            // newest first; at the same date a banded row first
            ids.sort_by_key(|&i| {
                let r = &rows[i as usize];
                (std::cmp::Reverse(r.effective_from), r.band.is_none(), i)
            });
            sorted.insert(p, ids);
        });
        let uses_bands = rows.iter().any(|r| r.band.is_some());
        RateDeck { name: name.to_string(), currency, rows, trie: sorted, uses_bands }
    }

    /// The rows, in file order.
    pub fn rows(&self) -> &[RateRow] {
        &self.rows
    }

    /// Whether any row has a time band (then callers must pass [`TimeBands::active`]).
    pub fn uses_bands(&self) -> bool {
        self.uses_bands
    }

    /// The row that prices a call to `number` starting at `start` inside the bands of
    /// `band_mask`: longest prefix with an applicable row. `None`: unrated.
    #[inline]
    pub fn find(&self, number: &E164, start: Timestamp, band_mask: u32) -> Option<&RateRow> {
        let mut path = [(0u32, 0u8); 16];
        let n = self.trie.path(number.digits(), &mut path);
        for &(node, _) in path[..n].iter().rev() {
            let Some(ids) = self.trie.value_at(node) else { continue };
            for &i in ids {
                let r = &self.rows[i as usize];
                if r.effective_from.is_some_and(|e| e > start) {
                    continue;
                }
                if let Some(b) = r.band {
                    if band_mask & (1 << b) == 0 {
                        continue;
                    }
                }
                return Some(r);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(s: &str) -> Decimal {
        Decimal::from_str_exact(s).unwrap()
    }

    fn row(rate: &str, fee: &str, initial: u32, subsequent: u32) -> RateRow {
        RateRow {
            prefix: "670".into(),
            destination: "East Timor".into(),
            rate_per_minute: d(rate),
            connection_fee: d(fee),
            initial_s: initial,
            subsequent_s: subsequent,
            effective_from: None,
            band: None,
            currency: Currency::EUR,
            line: 2,
        }
    }

    fn num(s: &str) -> E164 {
        E164::from_digits(s.as_bytes()).unwrap()
    }

    #[test]
    fn the_contract_example() {
        // prefix 670, rate 1.4500, fee 0, increments 60/60, billsec 61 -> billed 120 s -> 2.9000
        let r = row("1.4500", "0", 60, 60);
        assert_eq!(r.billed_seconds(61), 120);
        assert_eq!(r.cost(61).to_string(), "2.9000");
        assert_eq!(r.cost(0), Decimal::ZERO);
        assert_eq!(r.cost(1).to_string(), "1.4500");
    }

    #[test]
    fn increments_fee_and_rounding() {
        let r = row("0.0125", "0.0150", 30, 6);
        assert_eq!(r.billed_seconds(1), 30);
        assert_eq!(r.billed_seconds(31), 36);
        // 0.0150 + 0.0125 * 36 / 60 = 0.0150 + 0.0075 = 0.0225
        assert_eq!(r.cost(31).to_string(), "0.0225");
        // per-second: 0.01 * 1 / 60 = 0.000166.. -> 0.0002 (half away from zero, once)
        assert_eq!(row("0.01", "0", 1, 1).cost(1).to_string(), "0.0002");
        // 0.0003 * 10 / 60 = 0.00005 -> 0.0001
        assert_eq!(row("0.0003", "0", 1, 1).cost(10).to_string(), "0.0001");
    }

    fn deck(text: &str, bands: &TimeBands) -> Result<RateDeck, DeckError> {
        RateDeck::parse("deck.csv", "deck", text.as_bytes(), bands, Currency::EUR)
    }

    const HEADER: &str =
        "prefix,destination,rate_per_minute,connection_fee,initial_increment_s,subsequent_increment_s";

    #[test]
    fn longest_prefix_and_effective_dates() {
        let text = format!(
            "{HEADER},effective_from,currency\n31,Netherlands,0.0200,0,60,60,,\n316,Netherlands mobile,0.0900,0,60,60,,\n316,Netherlands mobile,0.0700,0,60,60,2024-07-01,\n3197,Netherlands M2M,0.5,0,1,1,2030-01-01T00:00:00Z,USD\n"
        );
        let deck = deck(&text, &TimeBands::default()).unwrap();
        let t = |s: &str| s.parse::<Timestamp>().unwrap();
        let before = t("2024-06-30T23:59:59Z");
        let after = t("2024-07-01T00:00:00Z");
        assert_eq!(deck.find(&num("31612345678"), before, 0).unwrap().rate_per_minute, d("0.09"));
        assert_eq!(deck.find(&num("31612345678"), after, 0).unwrap().rate_per_minute, d("0.07"));
        assert_eq!(deck.find(&num("31201234567"), after, 0).unwrap().prefix, "31");
        // a prefix whose only row is in the future falls back to the shorter prefix
        assert_eq!(deck.find(&num("319701234567"), after, 0).unwrap().prefix, "31");
        assert_eq!(
            deck.find(&num("319701234567"), t("2030-01-01T00:00:00Z"), 0).unwrap().currency.as_str(),
            "USD"
        );
        assert!(deck.find(&num("670771234567"), after, 0).is_none());
    }

    #[test]
    fn time_bands_pick_rows_in_the_accounts_zone() {
        let mut specs = BTreeMap::new();
        specs.insert(
            "peak".to_string(),
            TimeBandSpec {
                days: ["mon", "tue", "wed", "thu", "fri"].map(String::from).to_vec(),
                from: "08:00".into(),
                to: "18:00".into(),
            },
        );
        specs.insert(
            "night".to_string(),
            TimeBandSpec {
                days: ["mon", "tue", "wed", "thu", "fri", "sat", "sun"].map(String::from).to_vec(),
                from: "22:00".into(),
                to: "06:00".into(),
            },
        );
        let bands = TimeBands::from_specs(&specs).unwrap();
        let text = format!("{HEADER},time_band\n44,UK,0.03,0,60,60,\n44,UK peak,0.05,0,60,60,peak\n44,UK night,0.01,0,60,60,night\n");
        let deck = deck(&text, &bands).unwrap();
        let ams = TimeZone::get("Europe/Amsterdam").unwrap();
        let price = |utc: &str| {
            let at: Timestamp = utc.parse().unwrap();
            deck.find(&num("442071234567"), at, bands.active(at, &ams)).unwrap().rate_per_minute.to_string()
        };
        assert_eq!(price("2024-07-03T06:30:00Z"), "0.05"); // Wednesday 08:30 CEST
        assert_eq!(price("2024-07-03T16:30:00Z"), "0.03"); // 18:30 CEST: no band
        assert_eq!(price("2024-07-06T21:30:00Z"), "0.01"); // Saturday 23:30 CEST
        assert_eq!(price("2024-07-07T03:00:00Z"), "0.01"); // Sunday 05:00, from Saturday's night band
    }

    #[test]
    fn bad_decks_name_file_line_and_field() {
        let e = deck("prefix,destination,rate,connection_fee\n", &TimeBands::default()).unwrap_err();
        assert!(e.problems[0].starts_with("deck.csv:1: unknown column \"rate\""), "{e}");
        let text = format!("{HEADER}\n31,NL,0.02,0,60,60\n32,BE,0,02,0,60,60\n33,FR,abc,0,60,60\n34,ES,0.02,0,60,0\n31,NL again,0.03,0,60,60\n");
        let e = deck(&text, &TimeBands::default()).unwrap_err();
        assert_eq!(
            e.problems,
            [
                "deck.csv:3: expected 6 columns as in the header, found 7 (a comma as decimal separator?)".to_string(),
                "deck.csv:4: rate_per_minute: not a decimal amount: \"abc\"".to_string(),
                "deck.csv:5: subsequent_increment_s must be at least 1, found 0".to_string(),
                "deck.csv:6: prefix 31 has two rows for the same effective_from and time_band (first on line 2)".to_string(),
            ]
        );
        let e = deck(&format!("{HEADER},time_band\n31,NL,0.02,0,60,60,peak\n"), &TimeBands::default())
            .unwrap_err();
        assert_eq!(e.problems, ["deck.csv:2: time_band \"peak\" is not configured ([time_bands.peak])"]);
    }

    #[test]
    fn fuzz_huge_amounts_are_refused_not_overflowed() {
        // found by fuzzing: a rate this large overflowed when priced
        let e = deck(&format!("{HEADER}\n1,x,79228162514264337593543950335,0,1,1\n"), &TimeBands::default())
            .unwrap_err();
        assert_eq!(e.problems, ["deck.csv:2: rate_per_minute and connection_fee must be at most 1000000"]);
        // the largest amounts price the longest call without overflow:
        // 1,000,000 + 1,000,000 x 4,294,967,295 / 60
        let big = deck(&format!("{HEADER}\n1,x,1000000,1000000,1,1\n"), &TimeBands::default()).unwrap();
        assert_eq!(big.rows()[0].cost(u32::MAX).to_string(), "71582789250000.0000");
        // at most 20 problems, header included
        let many: String = (0..25).map(|i| format!(",x{i}")).collect();
        let e = deck(&format!("{HEADER}{many}\n"), &TimeBands::default()).unwrap_err();
        assert_eq!(e.problems.len(), 20);
    }

    proptest! {
        #[test]
        fn cost_never_falls_as_billsec_grows(
            rate in 0u32..100_000, fee in 0u32..10_000, initial in 0u32..120, subsequent in 1u32..120, b in 0u32..20_000
        ) {
            let r = row(&format!("{}", Decimal::new(rate as i64, 4)), &format!("{}", Decimal::new(fee as i64, 4)), initial, subsequent);
            prop_assert!(r.cost(b + 1) >= r.cost(b));
            prop_assert!(r.billed_seconds(b) >= b as u64);
        }

        /// The integer path gives what the `Decimal` path gives, for every scale a deck can
        /// write (up to 28 decimals: past 18 or past 64 bits, the `Decimal` path itself).
        #[test]
        fn cost_in_integers_is_the_decimal_cost(
            fee in 0i64..1_000_000_000, fee_scale in 0u32..29,
            rate in 0i64..1_000_000_000_000, rate_scale in 0u32..29,
            initial in 0u32..120, subsequent in 1u32..120, b in 1u32..200_000,
        ) {
            let mut r = row("0.01", "0", initial, subsequent);
            r.connection_fee = Decimal::new(fee, fee_scale);
            r.rate_per_minute = Decimal::new(rate, rate_scale);
            let billed = r.billed_seconds(b);
            let want = r.cost_in_decimals(billed);
            let got = r.cost(b);
            prop_assert_eq!(got, want);
            prop_assert_eq!(got.scale(), want.scale());
        }

        #[test]
        fn cost_is_zero_exactly_when_unanswered(rate in 1u32..100_000, fee in 0u32..10_000, initial in 0u32..120, subsequent in 1u32..120, b in 0u32..20_000) {
            let r = row(&format!("{}", Decimal::new(rate as i64, 4)), &format!("{}", Decimal::new(fee as i64, 4)), initial, subsequent);
            prop_assert_eq!(r.cost(b).is_zero(), b == 0);
        }
    }
}
