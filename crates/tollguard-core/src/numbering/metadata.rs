//! The classification table: libphonenumber's metadata plus our own ranges and the risk list,
//! compiled into one digit trie.
//!
//! ## How libphonenumber metadata becomes prefixes
//!
//! Each region's number-type descriptors (fixed line, mobile, premium rate, ...) are regular
//! expressions over the national number. Each pattern is parsed (`regex-syntax`) and reduced to
//! the set of digit prefixes it can start with, as far as the pattern spells digits out
//! (`(?:6[1-58]|970\d)\d{7}` gives `61`..`65`, `68`, `970`). The country code is put in front
//! and every prefix is marked with its type. That reduction is done once, not at each start:
//! its result is `data/numbering-prefixes.txt`, made and checked against the `phonenumber`
//! crate's metadata by `tests/numbering_data.rs`. A lookup takes the longest marked prefix of a
//! number. Where two types claim the same prefix, fixed + mobile becomes `fixed_or_mobile` (as
//! libphonenumber says for NANP); otherwise the more specific type wins (premium, personal, shared
//! cost, UAN, VoIP, toll-free, pager, mobile, fixed). Number length is not checked: the type is a
//! property of the range.
//!
//! ## Our own ranges
//!
//! libphonenumber calls +870 and +881x mobile or VoIP; they are satellite networks, billed as
//! such, and a favourite of IRSF. These override the metadata for their whole range:
//!
//! | prefix | type |
//! |---|---|
//! | +870 | satellite (Inmarsat) |
//! | +881 | satellite (GMSS: Iridium +8816/7, Globalstar +8818/9, ...) |
//! | +88216 | satellite (Thuraya) |
//! | +882, +883 | international network |
//! | +888 | international network (OCHA) |
//! | +979 | premium (international premium rate) |
//! | +800 | toll-free (universal international freephone) |
//! | +808 | shared cost |
//!
//! The table takes a few milliseconds to build from that file and is built once per process
//! ([`Numbering::builtin`]) or when the risk list is replaced.

use super::risk::{RiskEntry, RiskList};
use super::trie::DigitTrie;
use super::{Class, NumberType, RiskTier, E164};
use std::sync::OnceLock;

/// A numbering region (a country, or `001` for non-geographic codes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Region {
    /// ISO 3166 alpha-2 code, or `001` for non-geographic ranges (+800, +870, +882, ...).
    pub iso2: String,
    /// Country calling code.
    pub calling_code: u16,
    /// Whether this region is the main one for its calling code (US for +1, GB for +44).
    pub main: bool,
    /// Shortest and longest national number (without trunk prefix).
    pub national_lengths: (u8, u8),
    /// International (IDD) prefixes, longest first (`00`; `011` in NANP; `810` in Russia).
    pub international_prefixes: Vec<String>,
    /// Trunk (national) prefix, if the country has one (`0`; `1` in NANP; `8` in Russia).
    pub trunk_prefix: Option<String>,
}

#[derive(Clone, Copy, Debug)]
enum Claim {
    Region(u16),
    Type(NumberType),
}

struct MetaTables {
    regions: Vec<Region>,
    /// Prefixes (in the file's text) and what each says.
    claims: Vec<(&'static [u8], Claim)>,
    calling_codes: [u64; 16],
}

const OWN_RANGES: [(&str, NumberType); 9] = [
    ("870", NumberType::Satellite),
    ("881", NumberType::Satellite),
    ("88216", NumberType::Satellite),
    ("882", NumberType::InternationalNetwork),
    ("883", NumberType::InternationalNetwork),
    ("888", NumberType::InternationalNetwork),
    ("979", NumberType::Premium),
    ("800", NumberType::TollFree),
    ("808", NumberType::SharedCost),
];

impl MetaTables {
    fn get() -> &'static MetaTables {
        static TABLES: OnceLock<MetaTables> = OnceLock::new();
        TABLES.get_or_init(MetaTables::build)
    }

    /// The tables from `data/numbering-prefixes.txt` (made from the metadata by
    /// `tests/numbering_data.rs`, which also checks that it is current).
    fn build() -> MetaTables {
        const FILE: &str = include_str!("../../data/numbering-prefixes.txt");
        let mut regions = Vec::new();
        let mut claims = Vec::new();
        let mut calling_codes = [0u64; 16];
        for (n, line) in FILE.lines().enumerate() {
            let bad = || -> ! { panic!("data/numbering-prefixes.txt:{}: cannot read {line:?}", n + 1) };
            let mut f = line.split(' ');
            match f.next() {
                Some("R") => {
                    let mut next = || f.next().unwrap_or_else(|| bad());
                    let iso2 = next().to_string();
                    let calling_code: u16 = next().parse().unwrap_or_else(|_| bad());
                    let main = next() == "1";
                    let shortest: u8 = next().parse().unwrap_or_else(|_| bad());
                    let longest: u8 = next().parse().unwrap_or_else(|_| bad());
                    let idd = next();
                    let trunk = next();
                    calling_codes[(calling_code / 64) as usize % 16] |= 1 << (calling_code % 64);
                    regions.push(Region {
                        iso2,
                        calling_code,
                        main,
                        national_lengths: (shortest, longest),
                        international_prefixes: match idd {
                            "-" => vec![],
                            list => list.split(',').map(str::to_string).collect(),
                        },
                        trunk_prefix: (trunk != "-").then(|| trunk.to_string()),
                    });
                }
                Some("C") => {
                    let what = f.next().unwrap_or_else(|| bad());
                    let claim = match what.strip_prefix('r') {
                        Some(i) => Claim::Region(i.parse().unwrap_or_else(|_| bad())),
                        None => Claim::Type(NumberType::parse(what).unwrap_or_else(|| bad())),
                    };
                    // The rest of the line: prefixes, borrowed from the file (tens of thousands,
                    // split as bytes: `str::split` on a char pattern cost three times as much).
                    let rest = &line.as_bytes()["C ".len() + what.len()..];
                    claims.extend(rest.split(|&b| b == b' ').skip(1).map(|digits| (digits, claim)));
                }
                _ => {}
            }
        }
        MetaTables { regions, claims, calling_codes }
    }
}

/// Whether `cc` is an assigned country calling code.
pub fn is_calling_code(cc: u16) -> bool {
    cc < 1024 && MetaTables::get().calling_codes[(cc / 64) as usize] & (1 << (cc % 64)) != 0
}

/// The main region for an ISO 3166 alpha-2 code (case-insensitive).
pub fn region_by_iso(iso2: &str) -> Option<&'static Region> {
    let up = iso2.trim().to_ascii_uppercase();
    MetaTables::get().regions.iter().find(|r| r.iso2 == up)
}

/// The index (as in [`Class::region`]) of the region with this ISO 3166 alpha-2 code (or
/// `001`) and calling code: a region named in text that outlives a build.
pub fn region_index(iso2: &str, calling_code: u16) -> Option<u16> {
    MetaTables::get()
        .regions
        .iter()
        .position(|r| r.iso2 == iso2 && r.calling_code == calling_code)
        .and_then(|i| u16::try_from(i).ok())
}

#[derive(Clone, Copy, Default)]
struct Acc {
    region: Option<u16>,
    types: u16,
    resolved: Option<NumberType>,
    forced: Option<NumberType>,
    risk: Option<u32>,
}

fn type_from_bits(bits: u16) -> Option<NumberType> {
    let has = |t: NumberType| bits & (1 << t as u16) != 0;
    for t in [
        NumberType::Premium,
        NumberType::Personal,
        NumberType::SharedCost,
        NumberType::Uan,
        NumberType::Voip,
        NumberType::TollFree,
        NumberType::Pager,
    ] {
        if has(t) {
            return Some(t);
        }
    }
    match (has(NumberType::Fixed), has(NumberType::Mobile)) {
        (true, true) => Some(NumberType::FixedOrMobile),
        (false, true) => Some(NumberType::Mobile),
        (true, false) => Some(NumberType::Fixed),
        (false, false) => None,
    }
}

/// The classification table: country, number type and risk tier by longest prefix.
#[derive(Clone, Debug)]
pub struct Numbering {
    trie: DigitTrie<Class>,
    risk: RiskList,
}

impl Numbering {
    /// The table with the built-in risk list, built once per process.
    pub fn builtin() -> &'static Numbering {
        static BUILTIN: OnceLock<Numbering> = OnceLock::new();
        BUILTIN.get_or_init(|| Numbering::with_risk_list(RiskList::builtin()))
    }

    /// The table with another risk list.
    pub fn with_risk_list(risk: RiskList) -> Numbering {
        let meta = MetaTables::get();
        let mut acc: DigitTrie<Acc> = DigitTrie::new();
        for (prefix, claim) in &meta.claims {
            let a = acc.node_mut(prefix).get_or_insert_with(Acc::default);
            match *claim {
                Claim::Region(r) => {
                    if a.region.is_none() {
                        a.region = Some(r);
                    }
                }
                Claim::Type(t) => a.types |= 1 << t as u16,
            }
        }
        for (prefix, t) in OWN_RANGES {
            acc.node_mut(prefix.as_bytes()).get_or_insert_with(Acc::default).forced = Some(t);
        }
        for (i, e) in risk.entries.iter().enumerate() {
            acc.node_mut(e.prefix.as_bytes()).get_or_insert_with(Acc::default).risk = Some(i as u32);
        }
        // From the root down, carrying what the nearest ancestor that says something said; a
        // resolved class goes wherever a node says something itself (other nodes inherit through
        // the longest-prefix lookup).
        let trie = acc.map_down(Acc::default(), |parent, a| {
            let forced = a.forced.or(parent.forced);
            let own_type = forced.or_else(|| type_from_bits(a.types));
            let resolved = Acc {
                region: a.region.or(parent.region),
                types: 0,
                resolved: own_type.or(parent.resolved),
                forced,
                risk: a.risk.or(parent.risk),
            };
            let number_type = resolved.resolved.unwrap_or_default();
            let entry = resolved.risk.map(|i| &risk.entries[i as usize]);
            let listed = entry.map_or(RiskTier::Low, |e| e.tier);
            // A `carve_out` entry sets the tier of its range exactly, below the type's own risk if
            // it says so (NL 0900 helplines are premium-rate numbers, but honest).
            let carve_out = entry.is_some_and(|e| e.category == "carve_out");
            let class = Class {
                region: resolved.region.unwrap_or(Class::NO_REGION),
                number_type,
                risk: if carve_out { listed } else { listed.max(number_type.inherent_risk()) },
                risk_entry: resolved.risk.unwrap_or(u32::MAX),
            };
            (class, resolved)
        });
        Numbering { trie, risk }
    }

    /// Country, type and risk of a number: one walk down the trie.
    #[inline]
    pub fn classify(&self, number: &E164) -> Class {
        match self.trie.longest(number.digits()) {
            Some((c, _)) => *c,
            None => Class { region: Class::NO_REGION, ..Class::default() },
        }
    }

    /// A region by the index in [`Class::region`].
    pub fn region(&self, idx: u16) -> Option<&'static Region> {
        MetaTables::get().regions.get(idx as usize)
    }

    /// The risk-list entry that set a class's tier, if any.
    pub fn risk_entry(&self, class: &Class) -> Option<&RiskEntry> {
        self.risk.entries.get(class.risk_entry as usize)
    }

    /// The risk list in use.
    pub fn risk_list(&self) -> &RiskList {
        &self.risk
    }

    /// Nodes in the classification trie (for memory figures).
    pub fn node_count(&self) -> usize {
        self.trie.node_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(n: &str) -> (String, NumberType, RiskTier) {
        let num = Numbering::builtin();
        let c = num.classify(&E164::from_digits(n.as_bytes()).unwrap());
        let iso = num.region(c.region).map(|r| r.iso2.clone()).unwrap_or_default();
        (iso, c.number_type, c.risk)
    }

    #[test]
    fn countries_and_types_from_metadata() {
        assert_eq!(class("31201234567"), ("NL".into(), NumberType::Fixed, RiskTier::Low));
        assert_eq!(class("31612345678"), ("NL".into(), NumberType::Mobile, RiskTier::Low));
        assert_eq!(class("319001234567").1, NumberType::Premium);
        assert_eq!(class("318001234"), ("NL".into(), NumberType::TollFree, RiskTier::Low));
        assert_eq!(class("12125551234"), ("US".into(), NumberType::FixedOrMobile, RiskTier::Low));
        assert_eq!(class("14165551234").0, "CA");
        assert_eq!(class("447400123456"), ("GB".into(), NumberType::Mobile, RiskTier::Low));
        assert_eq!(class("77012345678").0, "KZ");
        assert_eq!(class("74951234567").0, "RU");
        assert_eq!(class("2348031234567").0, "NG");
        assert_eq!(class("919876543210").0, "IN");
        assert_eq!(class("212522123456").0, "MA");
    }

    #[test]
    fn high_risk_ranges() {
        assert_eq!(class("67077123456"), ("TL".into(), NumberType::Mobile, RiskTier::Critical));
        assert_eq!(class("5351234567").2, RiskTier::Critical);
        assert_eq!(class("252612345678").2, RiskTier::Critical);
        // UK personal numbering 070 and premium 09
        assert_eq!(class("447012345678"), ("GB".into(), NumberType::Personal, RiskTier::High));
        assert_eq!(class("449012345678").2, RiskTier::High);
        // NANP look-alike: Jamaica dialled as +1 876
        assert_eq!(class("18765551234"), ("JM".into(), NumberType::Mobile, RiskTier::High));
        // satellite and international networks, whatever libphonenumber calls them
        assert_eq!(class("881612345678"), ("001".into(), NumberType::Satellite, RiskTier::Critical));
        assert_eq!(class("870772123456").1, NumberType::Satellite);
        assert_eq!(class("882161234567").1, NumberType::Satellite);
        assert_eq!(class("88234123456").1, NumberType::InternationalNetwork);
        // honest destinations stay low
        assert_eq!(class("2348031234567").2, RiskTier::Low);
        assert_eq!(class("212612345678").2, RiskTier::Low);
        assert_eq!(class("919876543210").2, RiskTier::Low);
        // NL 0900 helplines are carved out of premium's high risk; 0906 and 0909 are not
        assert_eq!(class("319001234567"), ("NL".into(), NumberType::Premium, RiskTier::Medium));
        assert_eq!(class("319061234567").2, RiskTier::High);
        assert_eq!(class("319091234567").2, RiskTier::High);
    }

    #[test]
    fn a_replaced_list_changes_tiers() {
        let list = RiskList::parse("mine.csv", "prefix,tier,category,note\n3120,high,test,x\n").unwrap();
        let n = Numbering::with_risk_list(list);
        let c = n.classify(&E164::from_digits(b"31201234567").unwrap());
        assert_eq!(c.risk, RiskTier::High);
        assert_eq!(n.risk_entry(&c).unwrap().category, "test");
        assert_eq!(n.classify(&E164::from_digits(b"670771234567").unwrap()).risk, RiskTier::Low);
    }

    #[test]
    fn unknown_codes_have_no_region() {
        let c = Numbering::builtin().classify(&E164::from_digits(b"2891234567").unwrap());
        assert_eq!(c.region, Class::NO_REGION);
        assert!(is_calling_code(31) && is_calling_code(1) && is_calling_code(670) && !is_calling_code(289));
    }

    #[test]
    fn dial_prefixes_come_from_metadata() {
        let nl = region_by_iso("nl").unwrap();
        assert_eq!((nl.calling_code, nl.trunk_prefix.as_deref()), (31, Some("0")));
        assert_eq!(nl.international_prefixes, ["00"]);
        let es = region_by_iso("ES").unwrap();
        assert_eq!((es.national_lengths, es.trunk_prefix.as_deref()), ((9, 9), None), "{es:?}");
        let us = region_by_iso("US").unwrap();
        assert_eq!(us.international_prefixes, ["011"]);
        assert_eq!(us.trunk_prefix.as_deref(), Some("1"));
    }

    #[test]
    fn a_region_is_found_again_by_its_code_and_calling_code() {
        let regions = &MetaTables::get().regions;
        for (i, r) in regions.iter().enumerate() {
            let found = region_index(&r.iso2, r.calling_code).unwrap();
            // The first of any that share both (none should).
            assert_eq!(regions[found as usize].iso2, r.iso2);
            assert_eq!(found as usize, i, "{} +{}", r.iso2, r.calling_code);
        }
        assert_eq!(region_index("NL", 32), None);
    }
}
