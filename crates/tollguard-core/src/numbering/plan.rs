//! Dialling plans: how the people behind one PBX or trunk dial, and how to read it as E.164.

use super::metadata::{is_calling_code, region_by_iso};
use super::{Dialled, E164};
use serde::Deserialize;

/// A dialling plan as written in the configuration (`[[dialplan]]` or `[defaults.dialplan]`).
/// Everything but `country` is optional and defaults from libphonenumber's metadata for it.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DialPlanSpec {
    /// ISO 3166 alpha-2 code of the country the PBX or trunk is in, e.g. `"NL"`. Sets the country
    /// calling code, international and trunk prefixes and national number lengths.
    pub country: Option<String>,
    /// International (IDD) prefixes dialled before a country code, e.g. `["00"]`, `["011"]`,
    /// `["810"]`. Default: the country's, or `["00"]` without a country.
    #[serde(default)]
    pub international_prefix: Option<Vec<String>>,
    /// Trunk prefix dialled before a national number, e.g. `"0"` or `"8"`; `""` for none.
    /// Default: the country's.
    #[serde(default)]
    pub trunk_prefix: Option<String>,
    /// A digit dialled first to get an outside line (e.g. `"9"` in North America, `"0"` in many
    /// European PBXs). Stripped from numbers longer than the longest extension.
    #[serde(default)]
    pub outside_line: Option<String>,
    /// Lengths of internal extensions, e.g. `[3, 4]`. Default `[1, 2, 3, 4, 5]`.
    #[serde(default)]
    pub extension_lengths: Option<Vec<u8>>,
    /// Emergency numbers of this plan beyond the universal 112, 911 and 999 and the country's
    /// own (e.g. a site's internal emergency extension). These are never denied.
    #[serde(default)]
    pub emergency: Vec<String>,
    /// Prefixes of short service numbers that are not E.164 (e.g. `"118"` directory enquiries).
    #[serde(default)]
    pub service: Vec<String>,
}

/// Emergency numbers per country, beyond 112, 911 and 999 which are emergency everywhere.
const EMERGENCY: &[(&str, &[&str])] = &[
    ("AT", &["122", "133", "144", "140", "141"]),
    ("AU", &["000", "106"]),
    ("BE", &["100", "101"]),
    ("BR", &["190", "192", "193"]),
    ("CH", &["117", "118", "144", "145"]),
    ("CN", &["110", "119", "120", "122"]),
    ("DE", &["110"]),
    ("ES", &["061", "062", "080", "085", "088", "091", "092"]),
    ("FR", &["15", "17", "18", "114", "115", "119", "191", "196", "197"]),
    ("GB", &["18000"]),
    ("IL", &["100", "101", "102"]),
    ("IN", &["100", "101", "102", "108"]),
    ("IT", &["113", "115", "118"]),
    ("JP", &["110", "118", "119"]),
    ("KR", &["119", "122"]),
    ("MX", &["065", "066", "060"]),
    ("NZ", &["111"]),
    ("RU", &["101", "102", "103", "104"]),
    ("ZA", &["10111", "10177"]),
];

const UNIVERSAL_EMERGENCY: [&str; 3] = ["112", "911", "999"];

/// The fewest digits an E.164 number has here (country code included): the shortest real ones
/// (Niue, Tokelau, Saint Helena) have 7.
const MIN_E164_DIGITS: usize = 7;

/// A validated dialling plan. [`DialPlan::normalise`] allocates nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DialPlan {
    country: Option<(String, u16)>,
    /// The calling code's digits (none without a country), written once.
    cc_digits: CcDigits,
    idd: Vec<Vec<u8>>,
    trunk: Option<Vec<u8>>,
    outside_line: Option<Vec<u8>>,
    extension_mask: u32,
    max_extension: usize,
    national: (usize, usize),
    emergency: Vec<Vec<u8>>,
    service: Vec<Vec<u8>>,
}

fn digits_only(what: &str, s: &str) -> Result<Vec<u8>, String> {
    let t = s.trim();
    if t.is_empty() || !t.bytes().all(|c| c.is_ascii_digit()) {
        return Err(format!("{what} must be digits, found {s:?}"));
    }
    Ok(t.as_bytes().to_vec())
}

impl DialPlan {
    /// The plan of a country with all defaults (`"NL"`, `"US"`, ...).
    pub fn for_country(iso2: &str) -> Result<DialPlan, String> {
        DialPlan::from_spec(&DialPlanSpec { country: Some(iso2.to_string()), ..DialPlanSpec::default() })
    }

    /// A plan with no country: only `+` and `00` forms become E.164; national forms are invalid.
    pub fn international_only() -> DialPlan {
        DialPlan::from_spec(&DialPlanSpec::default()).expect("the empty plan is valid")
    }

    /// Validates a configured plan.
    pub fn from_spec(spec: &DialPlanSpec) -> Result<DialPlan, String> {
        let region = match &spec.country {
            Some(c) => Some(
                region_by_iso(c)
                    .ok_or_else(|| format!("unknown country {c:?} (ISO 3166 alpha-2, e.g. NL)"))?,
            ),
            None => None,
        };
        let idd: Vec<Vec<u8>> = match (&spec.international_prefix, region) {
            (Some(list), _) => {
                list.iter().map(|p| digits_only("international_prefix", p)).collect::<Result<_, _>>()?
            }
            (None, Some(r)) => r.international_prefixes.iter().map(|p| p.as_bytes().to_vec()).collect(),
            (None, None) => vec![b"00".to_vec()],
        };
        let mut idd = idd;
        idd.sort_by_key(|p| std::cmp::Reverse(p.len()));
        let trunk = match (&spec.trunk_prefix, region) {
            (Some(t), _) if t.is_empty() => None,
            (Some(t), _) => Some(digits_only("trunk_prefix", t)?),
            (None, Some(r)) => r.trunk_prefix.as_ref().map(|t| t.as_bytes().to_vec()),
            (None, None) => None,
        };
        let outside_line =
            spec.outside_line.as_deref().map(|o| digits_only("outside_line", o)).transpose()?;
        let lengths = spec.extension_lengths.clone().unwrap_or_else(|| vec![1, 2, 3, 4, 5]);
        let mut extension_mask = 0u32;
        for l in &lengths {
            if !(1..=15).contains(l) {
                return Err(format!("extension_lengths must be between 1 and 15, found {l}"));
            }
            extension_mask |= 1 << l;
        }
        let mut emergency: Vec<Vec<u8>> = UNIVERSAL_EMERGENCY.iter().map(|e| e.as_bytes().to_vec()).collect();
        if let Some(r) = region {
            if let Some((_, own)) = EMERGENCY.iter().find(|(c, _)| *c == r.iso2) {
                emergency.extend(own.iter().map(|e| e.as_bytes().to_vec()));
            }
        }
        for e in &spec.emergency {
            emergency.push(digits_only("emergency", e)?);
        }
        let service = spec.service.iter().map(|s| digits_only("service", s)).collect::<Result<_, _>>()?;
        Ok(DialPlan {
            country: region.map(|r| (r.iso2.clone(), r.calling_code)),
            cc_digits: region.map_or(CcDigits { buf: [0; 3], len: 0 }, |r| itoa_cc(r.calling_code)),
            idd,
            trunk,
            outside_line,
            extension_mask,
            max_extension: lengths.iter().copied().max().unwrap_or(0) as usize,
            national: region
                .map_or((0, 0), |r| (r.national_lengths.0 as usize, r.national_lengths.1 as usize)),
            emergency,
            service,
        })
    }

    /// The plan's country (ISO alpha-2) and calling code.
    pub fn country(&self) -> Option<(&str, u16)> {
        self.country.as_ref().map(|(c, cc)| (c.as_str(), *cc))
    }

    /// Reads a dialled string. Separators (space, `-`, `.`, `(`, `)`, `/`) are ignored; `sip:` and
    /// `tel:` URIs are reduced to their user part.
    pub fn normalise(&self, dialled: &str) -> Dialled {
        // `trim` looks for Unicode spaces at both ends; a number that begins and ends with an
        // ASCII non-space (nearly all) has none to lose.
        let plain_end = |b: Option<&u8>| b.is_some_and(|&b| b.is_ascii() && !b.is_ascii_whitespace());
        let b = dialled.as_bytes();
        let mut s = if plain_end(b.first()) && plain_end(b.last()) { b } else { dialled.trim().as_bytes() };
        // A URI starts with a letter; a number (the usual case) need not be looked at for one.
        let uri = s.first().is_some_and(u8::is_ascii_alphabetic);
        for scheme in [&b"sip:"[..], b"sips:", b"tel:"].into_iter().filter(|_| uri) {
            if s.len() >= scheme.len() && s[..scheme.len()].eq_ignore_ascii_case(scheme) {
                s = &s[scheme.len()..];
                let end = s.iter().position(|&c| c == b'@' || c == b';').unwrap_or(s.len());
                s = &s[..end];
            }
        }
        // A `#` after the last digit ends the dialling on many phones ("send"); it is not part of
        // the number, and a call to `0067077123456#` must not pass as a feature code.
        if let [.., d, b'#'] = s {
            if d.is_ascii_digit() {
                s = &s[..s.len() - 1];
            }
        }
        let mut buf = [0u8; 24];
        let mut plus = false;
        // Digits alone (as switches write numbers) are the digits; anything else is read a
        // byte at a time.
        let digits = if s.len() <= buf.len() && all_digits(s) {
            s
        } else {
            let mut n = 0;
            for (i, &c) in s.iter().enumerate() {
                match c {
                    b'0'..=b'9' => {
                        if n == buf.len() {
                            return Dialled::Invalid("too many digits");
                        }
                        buf[n] = c;
                        n += 1;
                    }
                    b'+' if i == 0 => plus = true,
                    b' ' | b'-' | b'.' | b'(' | b')' | b'/' => {}
                    b'*' | b'#' => return Dialled::Service,
                    _ => return Dialled::Invalid("not a dialled number"),
                }
            }
            &buf[..n]
        };
        if digits.is_empty() {
            return Dialled::Invalid("no digits");
        }
        if plus {
            return international(digits);
        }
        if self.is_emergency(digits) {
            return Dialled::Emergency;
        }
        let mut d = digits;
        if let Some(ol) = &self.outside_line {
            if has_prefix(d, ol) {
                let rest = &d[ol.len()..];
                // Safety first: outside line + emergency is emergency even if it looks like an
                // extension.
                if self.is_emergency(rest) {
                    return Dialled::Emergency;
                }
                if d.len() > self.max_extension.max(ol.len()) {
                    d = rest;
                }
            }
        }
        if self.extension_mask & (1 << d.len().min(31)) != 0 {
            return Dialled::Internal;
        }
        if self.service.iter().any(|p| has_prefix(d, p)) {
            return Dialled::Service;
        }
        for p in &self.idd {
            if d.len() > p.len() && has_prefix(d, p) {
                return international(&d[p.len()..]);
            }
        }
        if self.country.is_none() {
            return Dialled::Invalid("national number without a dialling plan country");
        }
        let ccd = self.cc_digits.digits();
        let (nmin, nmax) = self.national;
        if let Some(t) = &self.trunk {
            if has_prefix(d, t) {
                let rest = &d[t.len()..];
                return if rest.len() < nmin {
                    Dialled::Service
                } else if rest.len() > nmax {
                    Dialled::Invalid("too long for a national number")
                } else {
                    national(ccd, rest)
                };
            }
        }
        if has_prefix(d, ccd)
            && (nmin..=nmax).contains(&(d.len() - ccd.len()))
            && (d.len() > nmax || self.trunk.is_some())
        {
            // Already international, without `+` (as many carriers write it).
            return international(d);
        }
        if (nmin..=nmax).contains(&d.len()) {
            return national(ccd, d);
        }
        if d.len() < nmin {
            return Dialled::Service;
        }
        // Longer than any national number: international without a prefix.
        international(d)
    }

    fn is_emergency(&self, d: &[u8]) -> bool {
        self.emergency.iter().any(|e| e.len() == d.len() && has_prefix(d, e))
    }
}

/// Every byte of `s` is an ASCII digit; eight at a time: a byte is one when its high nibble is 3
/// and adding 6 leaves it 3 (the low nibble is at most 9). A carry out of a byte that is not a
/// digit can only spoil the bytes above it, and that byte's own test fails already.
fn all_digits(s: &[u8]) -> bool {
    const HIGH: u64 = 0xf0f0_f0f0_f0f0_f0f0;
    let mut chunks = s.chunks_exact(8);
    for c in &mut chunks {
        let x = u64::from_le_bytes(c.try_into().expect("eight bytes"));
        if (x & HIGH) | ((x.wrapping_add(0x0606_0606_0606_0606) & HIGH) >> 4) != 0x3333_3333_3333_3333 {
            return false;
        }
    }
    chunks.remainder().iter().all(u8::is_ascii_digit)
}

/// `d` starts with `p`: prefixes here are one to four digits, compared in place (the library's
/// `starts_with` calls `memcmp`, several times for each number dialled).
#[inline]
fn has_prefix(d: &[u8], p: &[u8]) -> bool {
    p.len() <= d.len() && p.iter().zip(d).all(|(a, b)| a == b)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct CcDigits {
    buf: [u8; 3],
    len: usize,
}

impl CcDigits {
    fn digits(&self) -> &[u8] {
        &self.buf[3 - self.len..]
    }
}

fn itoa_cc(mut cc: u16) -> CcDigits {
    let mut buf = [0u8; 3];
    let mut len = 0;
    while len < 3 {
        buf[2 - len] = b'0' + (cc % 10) as u8;
        cc /= 10;
        len += 1;
        if cc == 0 {
            break;
        }
    }
    CcDigits { buf, len }
}

/// The number of calling code `ccd` (its digits) and national number `rest`.
fn national(ccd: &[u8], rest: &[u8]) -> Dialled {
    let len = ccd.len() + rest.len();
    if len < MIN_E164_DIGITS {
        // As short as this, it is a short code, not a number on the public network (and reading
        // its `+` form back must agree: see `international`).
        return Dialled::Service;
    }
    if len > 15 {
        return Dialled::Invalid("longer than 15 digits");
    }
    // Byte by byte: a dozen digits, where a library copy would cost more than the copying.
    let mut digits = [0u8; 15];
    let (head, tail) = digits.split_at_mut(ccd.len());
    for (d, &b) in head.iter_mut().zip(ccd) {
        *d = b;
    }
    for (d, &b) in tail.iter_mut().zip(rest) {
        *d = b;
    }
    Dialled::E164(E164::from_ascii_digits(digits, len))
}

fn international(d: &[u8]) -> Dialled {
    if d.len() > 15 {
        return Dialled::Invalid("longer than 15 digits");
    }
    if d.len() < MIN_E164_DIGITS {
        return Dialled::Invalid("too short for an international number");
    }
    let code = |n: usize| d[..n].iter().fold(0u16, |a, &c| a * 10 + (c - b'0') as u16);
    if d[0] == b'0' || !(1..=3).any(|n| is_calling_code(code(n))) {
        return Dialled::Invalid("unknown country code");
    }
    match E164::from_digits(d) {
        Some(e) => Dialled::E164(e),
        None => Dialled::Invalid("not a number"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn e164(plan: &DialPlan, s: &str) -> String {
        match plan.normalise(s) {
            Dialled::E164(e) => e.to_string(),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn dutch_pbx() {
        let nl = DialPlan::for_country("NL").unwrap();
        assert_eq!(e164(&nl, "0201234567"), "+31201234567");
        assert_eq!(e164(&nl, "00670 77 123 456"), "+67077123456");
        assert_eq!(e164(&nl, "+31 (0)20"), "Invalid(\"too short for an international number\")");
        assert_eq!(e164(&nl, "+31 20 123 4567"), "+31201234567");
        assert_eq!(e164(&nl, "31201234567"), "+31201234567");
        assert_eq!(e164(&nl, "sip:+31201234567@pbx.example;user=phone"), "+31201234567");
        assert_eq!(e164(&nl, "SIP:+31201234567@pbx.example"), "+31201234567");
        assert_eq!(e164(&nl, " sips:0201234567;user=phone"), "+31201234567");
        assert_eq!(e164(&nl, "tel:+31-20-123-4567"), "+31201234567");
        assert_eq!(e164(&nl, "<sip:0201234567@pbx>"), "Invalid(\"not a dialled number\")");
        assert_eq!(e164(&nl, "0201234567@sip:"), "Invalid(\"not a dialled number\")");
        assert_eq!(nl.normalise("112"), Dialled::Emergency);
        assert_eq!(nl.normalise("911"), Dialled::Emergency);
        assert_eq!(nl.normalise("201"), Dialled::Internal);
        assert_eq!(nl.normalise("*97"), Dialled::Service);
        // A `#` that ends the dialling is not part of the number; other star and hash codes stay
        // feature codes.
        assert_eq!(e164(&nl, "0067077123456#"), "+67077123456");
        assert_eq!(e164(&nl, "sip:+67077123456#@pbx"), "+67077123456");
        assert_eq!(nl.normalise("112#"), Dialled::Emergency);
        assert_eq!(nl.normalise("201#"), Dialled::Internal);
        assert_eq!(nl.normalise("*97#"), Dialled::Service);
        assert_eq!(nl.normalise("#31#0612345678"), Dialled::Service);
        assert_eq!(nl.normalise("#"), Dialled::Service);
        assert_eq!(nl.normalise("0067077123456##"), Dialled::Service);
        assert_eq!(nl.normalise("&"), Dialled::Invalid("not a dialled number"));
        assert_eq!(nl.normalise("lcr/439"), Dialled::Invalid("not a dialled number"));
        assert_eq!(nl.normalise("000034688886392"), Dialled::Invalid("unknown country code"));
    }

    #[test]
    fn outside_line_and_nanp() {
        let us = DialPlan::from_spec(&DialPlanSpec {
            country: Some("US".into()),
            outside_line: Some("9".into()),
            extension_lengths: Some(vec![3, 4]),
            ..DialPlanSpec::default()
        })
        .unwrap();
        assert_eq!(us.normalise("9911"), Dialled::Emergency);
        assert_eq!(us.normalise("911"), Dialled::Emergency);
        assert_eq!(e164(&us, "912125551234"), "+12125551234");
        assert_eq!(e164(&us, "92125551234"), "+12125551234");
        assert_eq!(e164(&us, "9011670771234567"), "+670771234567");
        assert_eq!(e164(&us, "2125551234"), "+12125551234");
        assert_eq!(us.normalise("2001"), Dialled::Internal);
    }

    #[test]
    fn countries_without_trunk_prefix_and_carrier_forms() {
        let es = DialPlan::for_country("ES").unwrap();
        assert_eq!(e164(&es, "34688886392"), "+34688886392");
        assert_eq!(e164(&es, "0034688886392"), "+34688886392");
        assert_eq!(e164(&es, "688886392"), "+34688886392");
        let ru = DialPlan::for_country("RU").unwrap();
        assert_eq!(e164(&ru, "84951234567"), "+74951234567");
        assert_eq!(e164(&ru, "810670771234567"), "+670771234567");
        assert_eq!(ru.normalise("102"), Dialled::Emergency);
    }

    #[test]
    fn without_a_country_only_international_forms() {
        let p = DialPlan::international_only();
        assert_eq!(e164(&p, "+670 771 234 567"), "+670771234567");
        assert_eq!(e164(&p, "0031201234567"), "+31201234567");
        assert!(matches!(p.normalise("0201234567"), Dialled::Invalid(_)));
        assert_eq!(p.normalise("112"), Dialled::Emergency);
    }

    #[test]
    fn fuzz_short_national_numbers_read_back_the_same() {
        // found by fuzzing: with a German plan, 9911 became +499911, which reads back as invalid
        let de = DialPlan::from_spec(&DialPlanSpec {
            country: Some("DE".into()),
            outside_line: Some("0".into()),
            extension_lengths: Some(vec![2, 3]),
            ..DialPlanSpec::default()
        })
        .unwrap();
        for s in ["9911", "1095", "001018", "07808"] {
            match de.normalise(s) {
                Dialled::E164(e) => assert_eq!(de.normalise(&e.to_string()), Dialled::E164(e), "{s}"),
                other => assert!(matches!(other, Dialled::Service | Dialled::Invalid(_)), "{s}: {other:?}"),
            }
        }
        assert_eq!(de.normalise("9911"), Dialled::Service);
    }

    #[test]
    fn bad_specs_are_refused() {
        assert!(DialPlan::for_country("XQ").unwrap_err().contains("unknown country"));
        let e = DialPlan::from_spec(&DialPlanSpec { outside_line: Some("9a".into()), ..Default::default() })
            .unwrap_err();
        assert_eq!(e, "outside_line must be digits, found \"9a\"");
    }

    proptest! {
        /// A national number is the country code followed by its digits, as
        /// [`E164::from_digits`] reads them, or too short (a service code) or too long.
        #[test]
        fn national_is_the_code_then_the_digits(cc in 1u16..1000, rest in "[0-9]{0,16}") {
            let mut all = cc.to_string().into_bytes();
            all.extend_from_slice(rest.as_bytes());
            let want = if all.len() < MIN_E164_DIGITS {
                Dialled::Service
            } else {
                E164::from_digits(&all).map_or(Dialled::Invalid("longer than 15 digits"), Dialled::E164)
            };
            prop_assert_eq!(national(itoa_cc(cc).digits(), rest.as_bytes()), want);
        }

        /// Spaces around a number, Unicode ones too, change nothing; the same number written
        /// without them skips the trimming.
        #[test]
        fn spaces_around_a_number_change_nothing(
            left in "[ \t\u{a0}\u{2003}\u{3000}]{0,2}",
            number in "[+0-9*#a-z:@ ]{0,14}",
            right in "[ \t\u{a0}\u{2003}\u{3000}]{0,2}",
        ) {
            let nl = DialPlan::for_country("NL").unwrap();
            let spaced = format!("{left}{number}{right}");
            prop_assert_eq!(nl.normalise(&spaced), nl.normalise(spaced.trim()));
            prop_assert_eq!(nl.normalise(&spaced), nl.normalise(number.trim()));
        }

        /// A `#` after a number's last digit (the phone's "send") changes nothing, in every
        /// form a number is written in.
        #[test]
        fn a_hash_that_ends_the_dialling_changes_nothing(
            number in "(\\+|00|0|9|sip:)?[0-9][0-9 -]{0,14}[0-9]",
        ) {
            let nl = DialPlan::for_country("NL").unwrap();
            prop_assert_eq!(nl.normalise(&format!("{number}#")), nl.normalise(&number));
        }

        /// Eight bytes at a time, the digit test is the byte-wise one.
        #[test]
        fn all_digits_is_the_bytewise_test(s in proptest::collection::vec(proptest::num::u8::ANY, 0..40), digits in "[0-9]{0,40}") {
            prop_assert_eq!(all_digits(&s), s.iter().all(u8::is_ascii_digit));
            prop_assert!(all_digits(digits.as_bytes()));
        }

        /// A number of digits alone (read at once) normalises as it does with a separator in it
        /// (read a byte at a time).
        #[test]
        fn digits_alone_read_as_digits_with_separators(number in "[0-9]{1,26}", at in 0usize..26) {
            let nl = DialPlan::for_country("NL").unwrap();
            let at = at.min(number.len());
            let separated = format!("{}-{}", &number[..at], &number[at..]);
            prop_assert_eq!(nl.normalise(&number), nl.normalise(&separated));
        }

        /// A number written in any usual format normalises back to itself.
        #[test]
        fn formatted_numbers_come_back(national in "[1-9][0-9]{8}", sep in "[ .-]?", style in 0usize..4) {
            let nl = DialPlan::for_country("NL").unwrap();
            let want = format!("+31{national}");
            let (a, b) = national.split_at(2);
            let written = match style {
                0 => format!("0{a}{sep}{b}"),
                1 => format!("+31{sep}{a}{sep}{b}"),
                2 => format!("0031{sep}({a}){sep}{b}"),
                _ => format!("tel:+31{a}{b}"),
            };
            prop_assert_eq!(e164(&nl, &written), want);
        }
    }
}
