//! `data/numbering-prefixes.txt` is libphonenumber's metadata (as bundled by the `phonenumber`
//! crate) reduced to digit prefixes, so that tollguard does not parse some 10,000 regular
//! expressions each time it starts (about a billion instructions, 0.1-0.3 s). This test makes the
//! file again from the metadata and fails when the checked-in one differs;
//! `TOLLGUARD_REGENERATE=1 cargo test -p tollguard-core --test numbering_data` writes it.
//!
//! How a pattern becomes prefixes: each region's number-type descriptors (fixed line, mobile,
//! premium rate, ...) are regular expressions over the national number. Each is parsed
//! (`regex-syntax`) and reduced to the set of digit prefixes it can start with, as far as the
//! pattern spells digits out (`(?:6[1-58]|970\d)\d{7}` gives `61`..`65`, `68`, `970`); the
//! country code goes in front.

use phonenumber::metadata::{Descriptor, Metadata, DATABASE};
use regex_syntax::hir::literal::{ExtractKind, Extractor};
use std::collections::{HashMap, HashSet};
use std::fmt::Write;
use tollguard_core::numbering::NumberType;

fn pattern_prefixes(pattern: &str) -> Vec<Vec<u8>> {
    let compact: String = pattern.chars().filter(|c| !c.is_whitespace()).collect();
    let Ok(hir) = regex_syntax::Parser::new().parse(&compact) else {
        return Vec::new();
    };
    let seq = Extractor::new()
        .kind(ExtractKind::Prefix)
        .limit_total(20_000)
        .limit_literal_len(8)
        .limit_repeat(8)
        .extract(&hir);
    match seq.literals() {
        Some(lits) => {
            lits.iter().map(|l| l.as_bytes().to_vec()).filter(|b| b.iter().all(u8::is_ascii_digit)).collect()
        }
        // Nothing spelled out: the pattern says nothing beyond the country code.
        None => vec![Vec::new()],
    }
}

fn descriptors(md: &Metadata) -> [(NumberType, Option<&Descriptor>); 9] {
    let d = md.descriptors();
    [
        (NumberType::Fixed, d.fixed_line()),
        (NumberType::Mobile, d.mobile()),
        (NumberType::TollFree, d.toll_free()),
        (NumberType::Premium, d.premium_rate()),
        (NumberType::SharedCost, d.shared_cost()),
        (NumberType::Personal, d.personal_number()),
        (NumberType::Voip, d.voip()),
        (NumberType::Uan, d.uan()),
        (NumberType::Pager, d.pager()),
    ]
}

/// The file's text, made from the metadata.
fn make() -> String {
    let mut out = String::from(
        "# tollguard's numbering prefixes: libphonenumber's metadata (Copyright Google, Apache License 2.0,\n\
         # as bundled by the phonenumber crate 0.3.10+9.0.33) reduced to digit prefixes.\n\
         # Made by crates/tollguard-core/tests/numbering_data.rs; do not edit by hand:\n\
         #   TOLLGUARD_REGENERATE=1 cargo test -p tollguard-core --test numbering_data\n\
         # R iso2 calling_code main(0/1) shortest longest idd,idd|- trunk|-   (a region; index = order)\n\
         # C r<region index>|<number type> digits digits ...                (claims, in order)\n",
    );
    // By code, not `DATABASE.iter()`: that is keyed by region id and so holds only one of the
    // non-geographic `001` entries.
    let mut all: Vec<&Metadata> = (1u16..1000).filter_map(|cc| DATABASE.by_code(&cc)).flatten().collect();
    // Deterministic order: main regions first, then by code and id.
    all.sort_by(|a, b| {
        (!a.is_main_country_for_code(), a.country_code(), a.id()).cmp(&(
            !b.is_main_country_for_code(),
            b.country_code(),
            b.id(),
        ))
    });
    let mut per_code: HashMap<u16, usize> = HashMap::new();
    for md in &all {
        *per_code.entry(md.country_code()).or_default() += 1;
    }
    // (what, digits) in order; written as runs of the same `what`.
    let mut claims: Vec<(String, Vec<u8>)> = Vec::new();
    let mut main_literals: HashSet<Vec<u8>> = HashSet::new();
    let claim = |claims: &mut Vec<(String, Vec<u8>)>, digits: &[u8], what: &str| {
        claims.push((what.to_string(), digits.to_vec()));
    };
    for (idx, md) in all.into_iter().enumerate() {
        // libphonenumber marks a main country only where a code is shared.
        let main = md.is_main_country_for_code() || per_code[&md.country_code()] == 1;
        let cc = md.country_code();
        // The general descriptor's lengths are the union of the types' (often left empty).
        let mut lengths: Vec<u16> = md.descriptors().general().possible_length().to_vec();
        for (_, desc) in descriptors(md) {
            lengths.extend(desc.map(|d| d.possible_length()).unwrap_or_default());
        }
        let shortest = lengths.iter().copied().min().unwrap_or(4).min(15);
        let longest = lengths.iter().copied().max().unwrap_or(15).min(15);
        let mut idd: Vec<String> = Vec::new();
        if let Some(p) = md.international_prefix() {
            for lit in pattern_prefixes(p.as_str()) {
                if !lit.is_empty() {
                    idd.push(String::from_utf8(lit).unwrap_or_default());
                }
            }
        }
        if let Some(p) = md.preferred_international_prefix() {
            if p.bytes().all(|c| c.is_ascii_digit()) && !idd.iter().any(|x| x == p) {
                idd.push(p.to_string());
            }
        }
        idd.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        idd.dedup();
        let trunk = md.national_prefix().filter(|p| !p.is_empty()).unwrap_or("-");
        let idd = if idd.is_empty() { "-".to_string() } else { idd.join(",") };
        writeln!(out, "R {} {cc} {} {shortest} {longest} {idd} {trunk}", md.id(), u8::from(main)).unwrap();
        let region = format!("r{idx}");
        let cc_digits = cc.to_string().into_bytes();
        if main {
            claim(&mut claims, &cc_digits, &region);
        }
        // A region that shares its code (CA, JM, GG, KZ, ...) is placed by the ranges its number
        // types spell out; its general pattern is often much looser (JM: `[58]\d\d`).
        let mut typed = false;
        for (t, desc) in descriptors(md) {
            let Some(desc) = desc else { continue };
            for lit in pattern_prefixes(desc.national_number().as_str()) {
                typed = true;
                let mut p = cc_digits.clone();
                p.extend_from_slice(&lit);
                if main {
                    main_literals.insert(p.clone());
                } else if !main_literals.contains(&p) {
                    // (GG and JE repeat GB's personal and pager ranges: those stay GB.)
                    claim(&mut claims, &p, &region);
                }
                claim(&mut claims, &p, t.as_str());
            }
        }
        // Only a region whose metadata has no typed ranges at all is placed by its general
        // pattern (EH repeats MA's ranges: placing it by its loose general pattern would take
        // Casablanca).
        if !main && !typed {
            for lit in pattern_prefixes(md.descriptors().general().national_number().as_str()) {
                let mut p = cc_digits.clone();
                p.extend_from_slice(&lit);
                claim(&mut claims, &p, &region);
            }
        }
    }
    for run in claims.chunk_by(|a, b| a.0 == b.0) {
        write!(out, "C {}", run[0].0).unwrap();
        for (_, digits) in run {
            write!(out, " {}", std::str::from_utf8(digits).unwrap()).unwrap();
        }
        out.push('\n');
    }
    out
}

#[test]
fn the_checked_in_prefixes_are_those_of_the_metadata() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/numbering-prefixes.txt");
    let made = make();
    if std::env::var_os("TOLLGUARD_REGENERATE").is_some() {
        std::fs::write(&path, &made).unwrap();
        return;
    }
    let stored = std::fs::read_to_string(&path).unwrap_or_default();
    if stored != made {
        let line = stored.lines().zip(made.lines()).position(|(a, b)| a != b).map_or(0, |i| i + 1);
        panic!(
            "{} differs from what the metadata gives (first at line {line}); regenerate it with \
             TOLLGUARD_REGENERATE=1 cargo test -p tollguard-core --test numbering_data",
            path.display()
        );
    }
}
