//! `RateDeck::parse`: arbitrary bytes as a rate deck CSV, with no time bands configured and EUR
//! as the deck currency.
//!
//! Checks: no panic; an error lists at least one problem, each naming the file; an accepted
//! deck's rows have 1-15 digit prefixes, non-negative amounts, `subsequent_s >= 1`, no band (none
//! is configured) and a line >= 2 (line 1 is the header); and looking up each row's own prefix
//! as a number, at the latest possible time, finds a row with exactly that prefix.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollguard_core::money::Currency;
use tollguard_core::numbering::E164;
use tollguard_core::rating::{RateDeck, TimeBands};

fuzz_target!(|data: &[u8]| {
    let bands = TimeBands::default();
    match RateDeck::parse("fuzz.csv", "fuzz", data, &bands, Currency::EUR) {
        Err(e) => {
            assert!(!e.problems.is_empty(), "an error without problems");
            for p in &e.problems {
                assert!(p.starts_with("fuzz.csv"), "problem does not name the file: {p:?}");
            }
        }
        Ok(deck) => {
            assert!(!deck.uses_bands());
            for r in deck.rows() {
                assert!(
                    (1..=15).contains(&r.prefix.len()) && r.prefix.bytes().all(|c| c.is_ascii_digit()),
                    "line {}: prefix {:?}",
                    r.line,
                    r.prefix
                );
                assert!(!r.rate_per_minute.is_sign_negative() && !r.connection_fee.is_sign_negative());
                assert!(r.subsequent_s >= 1, "line {}: subsequent increment 0", r.line);
                assert!(r.band.is_none());
                assert!(r.line >= 2, "row on line {}", r.line);
                let number = E164::from_digits(r.prefix.as_bytes()).expect("a valid prefix is a number");
                let found = deck
                    .find(&number, jiff::Timestamp::MAX, 0)
                    .unwrap_or_else(|| panic!("line {}: prefix {} does not find itself", r.line, r.prefix));
                assert_eq!(found.prefix, r.prefix, "line {}: longest prefix match", r.line);
            }
        }
    }
});
