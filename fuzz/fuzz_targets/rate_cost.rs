//! Beyond the parser: every row `RateDeck::parse` accepts must be priceable. Parses arbitrary
//! bytes as a deck (no time bands, EUR) and prices each accepted row for a few talk times, from
//! 1 s up to `u32::MAX` (a CUCM record's billsec is a difference of two unix times, so it can be
//! that large; the CSV readers allow up to 999,999,999).
//!
//! Checks: no panic (e.g. no decimal overflow); `billed_seconds` is `initial` when billsec fits in
//! it, else billsec rounded up to less than one subsequent increment more; a cost has 4 decimals,
//! is never negative, is 0 for 0 s, and never falls when billsec grows.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollguard_core::money::Currency;
use tollguard_core::rating::{RateDeck, TimeBands};

const TALK: [u32; 7] = [0, 1, 59, 61, 86_400, 999_999_999, u32::MAX];

fuzz_target!(|data: &[u8]| {
    let Ok(deck) = RateDeck::parse("fuzz.csv", "fuzz", data, &TimeBands::default(), Currency::EUR) else {
        return;
    };
    for r in deck.rows() {
        let mut last = None;
        for billsec in TALK {
            let billed = r.billed_seconds(billsec);
            if billsec == 0 {
                assert_eq!(billed, 0);
            } else if billsec <= r.initial_s {
                assert_eq!(billed, u64::from(r.initial_s), "line {}", r.line);
            } else {
                assert!(billed >= u64::from(billsec), "line {}: billed {billed} < {billsec}", r.line);
                assert!(billed - u64::from(billsec) < u64::from(r.subsequent_s), "line {}", r.line);
            }
            let cost = r.cost(billsec);
            assert!(!cost.is_sign_negative() || cost.is_zero(), "line {}: cost {cost}", r.line);
            if billsec == 0 {
                assert!(cost.is_zero());
            } else {
                assert_eq!(cost.scale(), 4, "line {}: cost {cost}", r.line);
            }
            if let Some(prev) = last {
                assert!(cost >= prev, "line {}: cost fell from {prev} to {cost} at {billsec} s", r.line);
            }
            last = Some(cost);
        }
    }
});
