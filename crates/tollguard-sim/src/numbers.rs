//! Numbers as a Dutch PBX user dials them: `0` + national number, `00` + country code +
//! number, and as the trunk presents callers.
//!
//! Every range here is priced by the shipped deck (`examples/sim/rates.csv`); a test checks
//! every number the simulator writes against it.

use crate::rng::Rng64;
use std::fmt;

/// A dialled or presented number, kept inline (at most 20 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Num {
    buf: [u8; 20],
    len: u8,
}

impl Num {
    /// A number from text (at most 20 bytes).
    pub(crate) fn new(s: &str) -> Num {
        let mut n = Num { buf: [0; 20], len: 0 };
        n.push(s.as_bytes());
        n
    }

    fn push(&mut self, b: &[u8]) {
        let end = self.len as usize + b.len();
        assert!(end <= self.buf.len(), "number too long");
        self.buf[self.len as usize..end].copy_from_slice(b);
        self.len = end as u8;
    }

    fn push_digit(&mut self, d: u8) {
        self.push(&[b'0' + d]);
    }

    /// The text.
    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII is ever stored.
        std::str::from_utf8(&self.buf[..self.len as usize]).unwrap_or("")
    }

    /// True when the text starts with `p`.
    pub(crate) fn starts_with(&self, p: &str) -> bool {
        self.as_str().starts_with(p)
    }
}

impl fmt::Debug for Num {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A block of numbers: the digits after the country code start with `prefix` and `tail` more
/// digits follow (the first of them 2-9, as subscriber numbers rarely start with 0 or 1).
pub(crate) type Block = (&'static str, u8);

/// A country's ordinary fixed and mobile blocks.
#[derive(Debug)]
pub(crate) struct Country {
    pub iso: &'static str,
    pub cc: &'static str,
    pub fixed: &'static [Block],
    pub mobile: &'static [Block],
}

fn tail(rng: &mut Rng64, n: &mut Num, len: u8) {
    for i in 0..len {
        let d = if i == 0 { 2 + rng.below(8) as u8 } else { rng.below(10) as u8 };
        n.push_digit(d);
    }
}

/// `00` + country code + a number of one of `blocks`.
pub(crate) fn intl(rng: &mut Rng64, cc: &str, blocks: &[Block]) -> Num {
    let (prefix, len) = blocks[rng.below(blocks.len() as u64) as usize];
    let mut n = Num::new("00");
    n.push(cc.as_bytes());
    n.push(prefix.as_bytes());
    tail(rng, &mut n, len);
    n
}

/// `0` + a Dutch national number of one of `blocks`.
pub(crate) fn national(rng: &mut Rng64, blocks: &[Block]) -> Num {
    let (prefix, len) = blocks[rng.below(blocks.len() as u64) as usize];
    let mut n = Num::new("0");
    n.push(prefix.as_bytes());
    tail(rng, &mut n, len);
    n
}

/// A number of `country`, fixed or mobile.
pub(crate) fn in_country(rng: &mut Rng64, c: &Country, mobile_share: f64) -> Num {
    if rng.chance(mobile_share) {
        intl(rng, c.cc, c.mobile)
    } else {
        intl(rng, c.cc, c.fixed)
    }
}

/// `00` + `cc` + `prefix` + `middle` random digits + a 3-digit counter: a block a scanner walks.
pub(crate) fn sequential(cc: &str, prefix: &str, middle: &str, counter: u32) -> Num {
    let mut n = Num::new("00");
    n.push(cc.as_bytes());
    n.push(prefix.as_bytes());
    n.push(middle.as_bytes());
    n.push(format!("{:03}", counter % 1000).as_bytes());
    n
}

/// Random middle digits for [`sequential`].
pub(crate) fn digits(rng: &mut Rng64, len: u8) -> String {
    let mut n = Num::new("");
    tail(rng, &mut n, len);
    n.as_str().to_string()
}

// ---- The Netherlands, dialled nationally -------------------------------------------------------

/// Geographic numbers (9 national digits): Amsterdam, Rotterdam, Utrecht, The Hague, Eindhoven,
/// Groningen, Tilburg, Nijmegen, Arnhem, Haarlem, and a few 3-digit areas.
pub(crate) const NL_FIXED: &[Block] = &[
    ("20", 7),
    ("20", 7),
    ("10", 7),
    ("30", 7),
    ("70", 7),
    ("40", 7),
    ("50", 7),
    ("13", 7),
    ("24", 7),
    ("26", 7),
    ("23", 7),
    ("172", 6),
    ("251", 6),
    ("318", 6),
    ("485", 6),
];
/// Company (088) and VoIP (085) numbers.
pub(crate) const NL_BUSINESS: &[Block] = &[("88", 7), ("85", 7)];
/// Mobile: 06 + 8 digits.
pub(crate) const NL_MOBILE: &[Block] = &[("61", 7), ("62", 7), ("63", 7), ("64", 7), ("65", 7), ("68", 7)];
/// Toll-free 0800.
pub(crate) const NL_TOLL_FREE: &[Block] = &[("800", 4), ("800", 7)];
/// Premium 0900 (customer lines honest offices do call now and then).
pub(crate) const NL_0900: &[Block] = &[("900", 4), ("900", 7)];
/// Premium 0906 / 0909 (entertainment; revenue share).
pub(crate) const NL_0906_0909: &[Block] = &[("906", 7), ("909", 7)];

// ---- Ordinary foreign destinations ---------------------------------------------------------------

pub(crate) const DE: Country = Country {
    iso: "DE",
    cc: "49",
    fixed: &[("30", 7), ("89", 7), ("40", 7), ("69", 7), ("221", 7), ("211", 7)],
    mobile: &[("151", 8), ("160", 7), ("170", 7), ("171", 7), ("176", 8)],
};
pub(crate) const BE: Country = Country {
    iso: "BE",
    cc: "32",
    fixed: &[("2", 7), ("3", 7), ("92", 6), ("93", 6)],
    mobile: &[("47", 7), ("48", 7), ("49", 7)],
};
pub(crate) const FR: Country = Country {
    iso: "FR",
    cc: "33",
    fixed: &[("1", 8), ("4", 8)],
    mobile: &[("61", 7), ("62", 7), ("64", 7), ("66", 7), ("68", 7), ("75", 7), ("77", 7), ("78", 7)],
};
/// UK blocks avoid the ranges the risk list names (020 33/34, 0121 2, 07822, ...).
pub(crate) const GB: Country = Country {
    iso: "GB",
    cc: "44",
    fixed: &[
        ("207", 7),
        ("208", 7),
        ("161", 7),
        ("1214", 6),
        ("1312", 6),
        ("1314", 6),
        ("1132", 6),
        ("1134", 6),
    ],
    mobile: &[("77", 8), ("79", 8)],
};
pub(crate) const ES: Country = Country {
    iso: "ES",
    cc: "34",
    fixed: &[("91", 7), ("93", 7)],
    mobile: &[("6", 8), ("71", 7), ("72", 7)],
};
pub(crate) const IT: Country = Country {
    iso: "IT",
    cc: "39",
    fixed: &[("02", 8), ("06", 8)],
    mobile: &[("33", 8), ("34", 8), ("32", 8)],
};
pub(crate) const US: Country = Country {
    iso: "US",
    cc: "1",
    fixed: &[("212", 7), ("646", 7), ("415", 7), ("312", 7), ("617", 7), ("713", 7)],
    mobile: &[("917", 7), ("347", 7), ("510", 7)],
};
pub(crate) const PL: Country = Country {
    iso: "PL",
    cc: "48",
    fixed: &[("22", 7), ("12", 7), ("61", 7), ("71", 7)],
    mobile: &[("50", 7), ("60", 7), ("69", 7)],
};
pub(crate) const BR: Country = Country {
    iso: "BR",
    cc: "55",
    fixed: &[("113", 7), ("114", 7), ("213", 7)],
    mobile: &[("1198", 7), ("2199", 7)],
};
pub(crate) const CN: Country = Country {
    iso: "CN",
    cc: "86",
    fixed: &[("10", 8), ("21", 8), ("755", 8)],
    mobile: &[("138", 8), ("139", 8), ("186", 8)],
};
pub(crate) const NG: Country = Country {
    iso: "NG",
    cc: "234",
    fixed: &[("201", 7)],
    mobile: &[("803", 7), ("806", 7), ("813", 7), ("703", 7), ("905", 7)],
};
pub(crate) const IN: Country = Country {
    iso: "IN",
    cc: "91",
    fixed: &[("22", 8), ("11", 8), ("80", 8)],
    mobile: &[("98", 8), ("99", 8), ("70", 8)],
};
pub(crate) const MA: Country = Country {
    iso: "MA",
    cc: "212",
    fixed: &[("522", 6), ("537", 6)],
    mobile: &[("61", 7), ("66", 7), ("70", 7)],
};

/// Countries ordinary offices call (a few each).
pub(crate) const EUROPE_US: &[&Country] = &[&DE, &BE, &FR, &GB, &ES, &IT, &US];
/// What traders call: the diaspora and trading partners.
pub(crate) const TRADER: &[&Country] = &[&NG, &IN, &MA, &CN, &US];
/// Diaspora countries (Nigeria, India, Morocco): ordinary rates, much honest traffic.
pub(crate) const DIASPORA: &[&Country] = &[&NG, &IN, &MA];
/// New ordinary-rate countries an account may start calling.
pub(crate) const NEW_PARTNERS: &[&Country] = &[&PL, &BR];

// ---- Fraud destinations --------------------------------------------------------------------------

/// A high-cost destination: country code and blocks.
pub(crate) struct Dest {
    pub cc: &'static str,
    pub blocks: &'static [Block],
}

/// East Timor mobile (+670 77 / 78): the 2011 case.
pub(crate) const TIMOR: Dest = Dest { cc: "670", blocks: &[("77", 6), ("78", 6)] };
pub(crate) const CUBA: Dest = Dest { cc: "53", blocks: &[("5", 7)] };
pub(crate) const SOMALIA: Dest = Dest { cc: "252", blocks: &[("61", 7)] };
pub(crate) const GUINEA: Dest = Dest { cc: "224", blocks: &[("62", 7), ("66", 7)] };
pub(crate) const SIERRA_LEONE: Dest = Dest { cc: "232", blocks: &[("76", 6), ("77", 6)] };
pub(crate) const LIBERIA: Dest = Dest { cc: "231", blocks: &[("77", 7)] };

/// Satellite and international networks.
pub(crate) const SATELLITE: &[Dest] = &[
    Dest { cc: "870", blocks: &[("77", 7)] },
    Dest { cc: "881", blocks: &[("6", 8), ("7", 8)] },
    Dest { cc: "882", blocks: &[("16", 8)] },
    Dest { cc: "883", blocks: &[("510", 8), ("140", 7)] },
];

/// Pacific islands of the IRSF lists.
pub(crate) const PACIFIC: &[Dest] = &[
    Dest { cc: "674", blocks: &[("555", 4)] },
    Dest { cc: "676", blocks: &[("77", 5), ("87", 5)] },
    Dest { cc: "677", blocks: &[("74", 5), ("75", 5)] },
    Dest { cc: "678", blocks: &[("77", 5), ("54", 5)] },
    Dest { cc: "682", blocks: &[("7", 4)] },
    Dest { cc: "683", blocks: &[("4", 3)] },
    Dest { cc: "686", blocks: &[("73", 6)] },
    Dest { cc: "688", blocks: &[("90", 4)] },
];

/// Where one-ring (wangiri) calls come from: Pacific islands and West Africa.
pub(crate) const WANGIRI: &[Dest] = &[
    Dest { cc: "676", blocks: &[("77", 5)] },
    Dest { cc: "677", blocks: &[("74", 5)] },
    Dest { cc: "682", blocks: &[("7", 4)] },
    Dest { cc: "674", blocks: &[("555", 4)] },
    SIERRA_LEONE,
    LIBERIA,
    GUINEA,
];

/// Night IRSF destinations for several extensions at once.
pub(crate) const NIGHT_IRSF: &[Dest] = &[CUBA, SOMALIA, GUINEA];

/// Scanned ranges: (country code, block prefix, digits between prefix and the 3-digit counter).
pub(crate) const SCAN_RANGES: &[(&str, &str, u8)] = &[
    ("670", "77", 3),
    ("252", "61", 4),
    ("224", "62", 4),
    ("53", "5", 4),
    ("232", "76", 3),
    ("677", "74", 2),
];

/// A premium family in a country an ordinary account never calls.
pub(crate) struct PremiumFamily {
    pub name: &'static str,
    pub cc: &'static str,
    pub blocks: &'static [Block],
}

/// Premium families for `office_premium_new_country`.
pub(crate) const FOREIGN_PREMIUM: &[PremiumFamily] = &[
    PremiumFamily { name: "Latvia premium", cc: "371", blocks: &[("90", 6)] },
    PremiumFamily { name: "Lithuania premium", cc: "370", blocks: &[("90", 6)] },
    PremiumFamily { name: "UK premium", cc: "44", blocks: &[("909", 7), ("982", 7)] },
];

/// UK personal numbering (070): revenue share behind an ordinary-looking UK number.
pub(crate) const UK_PERSONAL: Dest = Dest { cc: "44", blocks: &[("70", 8)] };

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_have_the_expected_shape() {
        let mut rng = Rng64::new(1, 0, 0);
        let n = national(&mut rng, NL_MOBILE);
        assert_eq!(n.as_str().len(), 10);
        assert!(n.starts_with("06"));
        let n = intl(&mut rng, TIMOR.cc, TIMOR.blocks);
        assert!(n.starts_with("0067077") || n.starts_with("0067078"), "{n:?}");
        assert_eq!(n.as_str().len(), 2 + 3 + 8);
        assert_eq!(sequential("670", "77", "123", 7).as_str(), "0067077123007");
    }
}
