//! Numbers: from what a user dialled to an E.164 number, and from an E.164 number to its
//! country, number type and risk tier.
//!
//! - [`DialPlan::normalise`] turns a dialled string into a [`Dialled`]: an [`E164`] number, an
//!   emergency call, an internal extension, a short service number, or invalid (with the reason).
//! - [`Numbering::classify`] answers country, [`NumberType`] and [`RiskTier`] with one
//!   longest-prefix lookup in a [`trie::DigitTrie`]; no regex and no allocation per call.
//!
//! Number types come from libphonenumber's metadata (through the `phonenumber` crate), read once
//! when the table is built: each type's national-number pattern is reduced to the digit prefixes
//! it starts with. Satellite and international-network ranges (+870, +881x, +882, +883), which
//! libphonenumber reports as mobile or VoIP, come from our own table ([`metadata`]). Risk tiers
//! come from a data file ([`risk`]) that can be replaced without a release.

use std::fmt;

pub mod metadata;
mod plan;
pub mod risk;
pub mod trie;

pub use metadata::{Numbering, Region};
pub use plan::{DialPlan, DialPlanSpec};
pub use risk::{RiskEntry, RiskList};

/// What kind of number an E.164 number is.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default, serde::Serialize, serde::Deserialize,
)]
#[repr(u8)]
pub enum NumberType {
    /// Valid country code, but no type matched.
    #[default]
    Unknown,
    /// Geographic fixed line.
    Fixed,
    /// Mobile.
    Mobile,
    /// Fixed or mobile, the ranges cannot be told apart (e.g. NANP).
    FixedOrMobile,
    /// Free to the caller.
    TollFree,
    /// Premium rate: the classic revenue-share destination.
    Premium,
    /// Shared cost.
    SharedCost,
    /// Personal numbering (e.g. UK 070): forwards anywhere, often abused.
    Personal,
    /// VoIP ranges.
    Voip,
    /// Universal access numbers.
    Uan,
    /// Pagers.
    Pager,
    /// Satellite networks (+870, +881x, +88216).
    Satellite,
    /// International networks (+882, +883, +888): shared codes of carriers, often IRSF.
    InternationalNetwork,
}

impl NumberType {
    /// Every type, in declaration order.
    pub const ALL: [NumberType; 13] = [
        NumberType::Unknown,
        NumberType::Fixed,
        NumberType::Mobile,
        NumberType::FixedOrMobile,
        NumberType::TollFree,
        NumberType::Premium,
        NumberType::SharedCost,
        NumberType::Personal,
        NumberType::Voip,
        NumberType::Uan,
        NumberType::Pager,
        NumberType::Satellite,
        NumberType::InternationalNetwork,
    ];

    /// The name used in outputs and configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            NumberType::Unknown => "unknown",
            NumberType::Fixed => "fixed",
            NumberType::Mobile => "mobile",
            NumberType::FixedOrMobile => "fixed_or_mobile",
            NumberType::TollFree => "toll_free",
            NumberType::Premium => "premium",
            NumberType::SharedCost => "shared_cost",
            NumberType::Personal => "personal",
            NumberType::Voip => "voip",
            NumberType::Uan => "uan",
            NumberType::Pager => "pager",
            NumberType::Satellite => "satellite",
            NumberType::InternationalNetwork => "international_network",
        }
    }

    /// Parses [`NumberType::as_str`] names.
    pub fn parse(s: &str) -> Option<NumberType> {
        NumberType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The least risk a number of this type carries, whatever the lists say.
    pub fn inherent_risk(self) -> RiskTier {
        match self {
            NumberType::Premium | NumberType::Satellite | NumberType::InternationalNetwork => RiskTier::High,
            NumberType::Personal | NumberType::SharedCost | NumberType::Uan => RiskTier::Medium,
            _ => RiskTier::Low,
        }
    }
}

impl fmt::Display for NumberType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How likely calls to a destination are to be fraud, from the risk list and the number type.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default, serde::Serialize, serde::Deserialize,
)]
#[repr(u8)]
pub enum RiskTier {
    /// Ordinary destinations.
    #[default]
    Low,
    /// Countries and ranges that appear on fraud lists, but carry much honest traffic.
    Medium,
    /// Ranges abused for revenue share: premium, personal numbering, look-alike area codes.
    High,
    /// The classic IRSF destinations: where a hacked PBX calls first.
    Critical,
}

impl RiskTier {
    /// Every tier, lowest first.
    pub const ALL: [RiskTier; 4] = [RiskTier::Low, RiskTier::Medium, RiskTier::High, RiskTier::Critical];

    /// The name used in outputs and the risk file.
    pub fn as_str(self) -> &'static str {
        match self {
            RiskTier::Low => "low",
            RiskTier::Medium => "medium",
            RiskTier::High => "high",
            RiskTier::Critical => "critical",
        }
    }

    /// Parses [`RiskTier::as_str`] names.
    pub fn parse(s: &str) -> Option<RiskTier> {
        RiskTier::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl fmt::Display for RiskTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An E.164 number: country code and national number, at most 15 digits, kept inline.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct E164 {
    digits: [u8; 15],
    len: u8,
}

impl E164 {
    /// Builds a number from its digits (no `+`). `None` unless 1-15 ASCII digits.
    pub fn from_digits(digits: &[u8]) -> Option<E164> {
        if digits.is_empty() || digits.len() > 15 || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let mut d = [0u8; 15];
        d[..digits.len()].copy_from_slice(digits);
        Some(E164 { digits: d, len: digits.len() as u8 })
    }

    /// The first `len` (1-15) of `digits`, which the caller has checked are ASCII digits (the
    /// rest zero, as [`E164::from_digits`] leaves them).
    pub(crate) fn from_ascii_digits(digits: [u8; 15], len: usize) -> E164 {
        debug_assert!((1..=15).contains(&len) && digits[..len].iter().all(u8::is_ascii_digit));
        debug_assert!(digits[len..].iter().all(|&d| d == 0));
        E164 { digits, len: len as u8 }
    }

    /// The digits, without `+`.
    #[inline]
    pub fn digits(&self) -> &[u8] {
        &self.digits[..self.len as usize]
    }

    /// The digits as text, without `+`.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits are ever stored.
        std::str::from_utf8(self.digits()).unwrap_or("")
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "+{}", self.as_str())
    }
}

impl fmt::Debug for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "+{}", self.as_str())
    }
}

/// What a dialled string turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialled {
    /// A number on the public network.
    E164(E164),
    /// An emergency number (112, 911, 999 or the plan's own): always allowed, never priced as fraud.
    Emergency,
    /// An internal extension (its length is one of the plan's extension lengths).
    Internal,
    /// A short service number or feature code (`*97`, `118 118`), not an E.164 number.
    Service,
    /// Not a number we can place; the reason says why.
    Invalid(&'static str),
}

impl Dialled {
    /// Name of the kind, used as `number_type` in outputs for numbers that are not E.164.
    pub fn kind(&self) -> &'static str {
        match self {
            Dialled::E164(_) => "e164",
            Dialled::Emergency => "emergency",
            Dialled::Internal => "internal",
            Dialled::Service => "service",
            Dialled::Invalid(_) => "invalid",
        }
    }
}

/// Country, type and risk of one number: the answer of [`Numbering::classify`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Class {
    /// Index into [`Numbering::region`]; [`Class::NO_REGION`] when the country code is unknown.
    pub region: u16,
    /// The number type.
    pub number_type: NumberType,
    /// The risk tier: the longest matching risk-list entry, raised to the type's inherent risk.
    pub risk: RiskTier,
    /// Index into [`RiskList::entries`] of the entry that set the tier, or `u32::MAX`.
    pub risk_entry: u32,
}

impl Class {
    /// The region index of numbers whose country code is not known.
    pub const NO_REGION: u16 = u16::MAX;
}
