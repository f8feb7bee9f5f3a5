//! `RiskList::parse`: arbitrary bytes (as UTF-8, lossily) as a risk list file.
//!
//! Checks: no panic; an error names the file and a line from 1 to the number of lines; an
//! accepted list's entries have 1-15 digit prefixes, no prefix twice, a category, and their
//! number matches the number of data rows that are not comments.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::HashSet;
use tollguard_core::numbering::RiskList;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let lines = text.lines().count().max(1) as u64;
    match RiskList::parse("fuzz.csv", &text) {
        Err(e) => {
            assert_eq!(e.file, "fuzz.csv");
            assert!(e.line >= 1 && e.line <= lines, "error names line {} of {lines}: {e}", e.line);
            assert!(!e.reason.is_empty());
        }
        Ok(list) => {
            let mut seen = HashSet::new();
            for entry in &list.entries {
                assert!(
                    (1..=15).contains(&entry.prefix.len())
                        && entry.prefix.bytes().all(|c| c.is_ascii_digit()),
                    "prefix {:?}",
                    entry.prefix
                );
                assert!(seen.insert(entry.prefix.as_str()), "prefix {} twice", entry.prefix);
                assert!(!entry.category.is_empty(), "prefix {} without a category", entry.prefix);
            }
            let rows = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).count();
            assert_eq!(list.entries.len() + 1, rows, "entries + header vs rows that are not comments");
        }
    }
});
