//! One call, from what was dialled to what it costs: normalise, classify, find the rate.
//!
//! [`Rater`] holds everything read-mostly (dialling plans and zones per account, the
//! classification table, the decks, time bands, direction rules); [`Rater::rate`] is the
//! per-call path used by `tollguard rate`, replay and the live server alike.

use crate::cdr::{CallParts, Cdr, Direction};
use crate::cgrates::{Plan, Tariff};
use crate::money::Currency;
use crate::numbering::{Class, DialPlan, Dialled, Numbering};
use crate::rating::{RateDeck, RateRow, TimeBands};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use rust_decimal::Decimal;
use std::collections::HashMap;
use std::sync::Arc;

/// How direction is decided when a record does not say.
///
/// Without configuration: a destination context named like an inbound one (see
/// [`DirectionRules::DEFAULT_INBOUND_CONTEXTS`]) makes the call inbound; otherwise a dialled
/// number that is an extension, called from a number that is not, is inbound; extension to
/// extension is internal; anything dialled to the public network (or an emergency number) is
/// outbound. Configured trunk channel prefixes decide first: a call *from* a trunk channel is
/// inbound, a call *to* one outbound.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DirectionRules {
    /// Channel name prefixes of trunks (`SIP/provider-`, `PJSIP/trunk`).
    pub trunk_channels: Vec<String>,
    /// Contexts whose calls come in from the network.
    pub inbound_contexts: Vec<String>,
    /// Contexts whose calls go out to the network.
    pub outbound_contexts: Vec<String>,
}

impl DirectionRules {
    /// Context names read as inbound when none are configured.
    pub const DEFAULT_INBOUND_CONTEXTS: [&'static str; 9] = [
        "from-trunk",
        "from-pstn",
        "from-external",
        "from-did",
        "from-did-direct",
        "ext-did",
        "from-provider",
        "incoming",
        "inbound",
    ];

    /// Decides the direction of a record whose format did not.
    pub fn infer(&self, cdr: &CallParts<'_>, dialled: &Dialled, plan: &DialPlan) -> Direction {
        if cdr.direction != Direction::Unknown {
            return cdr.direction;
        }
        if !self.trunk_channels.is_empty() {
            if self.trunk_channels.iter().any(|t| cdr.channel.starts_with(t.as_str())) {
                return Direction::Inbound;
            }
            if self.trunk_channels.iter().any(|t| cdr.dst_channel.starts_with(t.as_str())) {
                return Direction::Outbound;
            }
        }
        if self.inbound_contexts.iter().any(|c| c == cdr.context) {
            return Direction::Inbound;
        }
        if self.outbound_contexts.iter().any(|c| c == cdr.context) {
            return Direction::Outbound;
        }
        if self.inbound_contexts.is_empty() && Self::DEFAULT_INBOUND_CONTEXTS.contains(&cdr.context) {
            return Direction::Inbound;
        }
        match dialled {
            Dialled::Internal => match plan.normalise(cdr.source) {
                Dialled::E164(_) => Direction::Inbound,
                _ => Direction::Internal,
            },
            Dialled::E164(_) | Dialled::Emergency | Dialled::Service => Direction::Outbound,
            Dialled::Invalid(_) => Direction::Unknown,
        }
    }
}

/// Dialling plan and zone of one account.
#[derive(Clone, Debug)]
pub struct AccountSetup {
    /// How the account's users dial.
    pub plan: Arc<DialPlan>,
    /// The account's zone: calendar limits, time bands.
    pub tz: TimeZone,
}

/// A call rated: what was dialled, which way it went, where to, and at what price.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rated<'a> {
    /// The dialled string read through the account's plan.
    pub dialled: Dialled,
    /// Direction of the call.
    pub direction: Direction,
    /// Country, type and risk (for E.164 numbers).
    pub class: Option<Class>,
    /// ISO code of the destination country (`001` for non-geographic), or empty.
    pub country: &'static str,
    /// The row of each deck that priced the call (same order as the decks); `None`: unrated in
    /// that deck, or not priced at all (inbound, internal, emergency).
    pub rows: [Option<&'a RateRow>; MAX_DECKS],
    /// Cost in each deck, for priced calls (with a CGRateS plan: the plan's cost first).
    pub costs: [Option<Decimal>; MAX_DECKS],
    /// With a CGRateS plan: the rates that priced the call.
    pub tariff: Option<Tariff>,
}

impl Rated<'_> {
    /// True for an outbound call to a public number that neither the CGRateS plan nor the first
    /// deck prices.
    pub fn is_unrated(&self) -> bool {
        self.is_priceable() && self.rows[0].is_none() && self.tariff.is_none()
    }

    /// True when the call is one that costs money: outbound to a public number.
    pub fn is_priceable(&self) -> bool {
        matches!(self.dialled, Dialled::E164(_)) && self.direction == Direction::Outbound
    }
}

/// Most decks one rater prices against.
pub const MAX_DECKS: usize = 4;

/// A CGRateS tariff plan as the primary price of calls: the subject is the account (or the
/// subject configured for it).
#[derive(Clone, Debug)]
pub struct CgratesPricing {
    /// The plan.
    pub plan: Arc<Plan>,
    /// CGRateS tenant.
    pub tenant: String,
    /// CGRateS category.
    pub category: String,
    /// Account -> subject, where they differ.
    pub subjects: HashMap<String, String>,
    /// Currency of the plan's amounts.
    pub currency: Currency,
}

/// Everything needed to rate calls, built once from the configuration.
#[derive(Clone, Debug)]
pub struct Rater {
    numbering: Arc<Numbering>,
    decks: Vec<RateDeck>,
    bands: TimeBands,
    accounts: HashMap<String, AccountSetup>,
    default: AccountSetup,
    direction: DirectionRules,
    cgrates: Option<CgratesPricing>,
}

impl Rater {
    /// A rater. At most [`MAX_DECKS`] decks; the first is the one `cost` means.
    pub fn new(
        numbering: Arc<Numbering>,
        decks: Vec<RateDeck>,
        bands: TimeBands,
        accounts: HashMap<String, AccountSetup>,
        default: AccountSetup,
        direction: DirectionRules,
    ) -> Result<Rater, String> {
        if decks.len() > MAX_DECKS {
            return Err(format!("at most {MAX_DECKS} rate decks, found {}", decks.len()));
        }
        Ok(Rater { numbering, decks, bands, accounts, default, direction, cgrates: None })
    }

    /// Prices calls on a CGRateS plan first: `costs[0]` is the plan's, and the decks (if any)
    /// follow from `costs[1]`. At most `MAX_DECKS - 1` decks then.
    pub fn with_cgrates(mut self, pricing: CgratesPricing) -> Result<Rater, String> {
        if self.decks.len() >= MAX_DECKS {
            return Err(format!("at most {} rate decks beside a CGRateS plan", MAX_DECKS - 1));
        }
        self.cgrates = Some(pricing);
        Ok(self)
    }

    /// The CGRateS plan, when calls are priced on one.
    pub fn cgrates(&self) -> Option<&CgratesPricing> {
        self.cgrates.as_ref()
    }

    /// Writes everything the rater prices and classifies with to `out` (its `Debug` form, maps
    /// in key order), so that two raters built from the same configuration write the same text
    /// and a changed price, zone, plan or risk list writes another. A fingerprint is its hash.
    pub fn describe(&self, out: &mut impl std::fmt::Write) -> std::fmt::Result {
        let sorted = |m: &HashMap<String, String>| {
            let mut v: Vec<_> = m.iter().collect();
            v.sort();
            format!("{v:?}")
        };
        // Every field named: a new one does not compile until it is described here.
        let Rater { numbering, decks, bands, accounts, default, direction, cgrates } = self;
        write!(out, "{numbering:?}|{decks:?}|{bands:?}|{default:?}|{direction:?}|")?;
        let mut accounts: Vec<_> = accounts.iter().collect();
        accounts.sort_by(|a, b| a.0.cmp(b.0));
        write!(out, "{accounts:?}|")?;
        if let Some(c) = cgrates {
            write!(out, "{:?}|{}|{}|{}|{:?}", c.plan, c.tenant, c.category, sorted(&c.subjects), c.currency)?;
        }
        Ok(())
    }

    /// What a rated call costs for `billsec` seconds of talk (the primary price: the CGRateS
    /// plan's, else the first deck's), and in which currency; `None` when it is not priced.
    pub fn cost_of(&self, r: &Rated<'_>, start: Timestamp, billsec: u32) -> Option<(Currency, Decimal)> {
        if let (Some(t), Some(c)) = (&r.tariff, &self.cgrates) {
            return c.plan.cost(t, start, billsec as u64 * 1_000_000_000).ok().map(|d| (c.currency, d));
        }
        r.rows[0].map(|row| (row.currency, row.cost(billsec)))
    }

    /// The matched prefix of a priced call: the deck row's, or the part of the number the
    /// CGRateS plan matched.
    pub fn prefix_of<'r>(&'r self, r: &'r Rated<'_>) -> &'r str {
        if let (Some(t), Dialled::E164(n)) = (&r.tariff, &r.dialled) {
            return &n.as_str()[..(t.prefix_len as usize).min(n.as_str().len())];
        }
        r.rows[0].map_or("", |row| row.prefix.as_str())
    }

    /// The decks, in order.
    pub fn decks(&self) -> &[RateDeck] {
        &self.decks
    }

    /// The classification table.
    pub fn numbering(&self) -> &Numbering {
        &self.numbering
    }

    /// Plan and zone of an account (the default for accounts not configured).
    #[inline]
    pub fn account(&self, account: &str) -> &AccountSetup {
        if self.accounts.is_empty() {
            return &self.default;
        }
        self.accounts.get(account).unwrap_or(&self.default)
    }

    /// Rates one record.
    pub fn rate(&self, cdr: &Cdr) -> Rated<'_> {
        self.rate_parts(&cdr.parts())
    }

    /// Rates one call from its parts (a record's, or a call about to be routed with no talk time).
    pub fn rate_parts(&self, cdr: &CallParts<'_>) -> Rated<'_> {
        let setup = self.account(cdr.account);
        let dialled = setup.plan.normalise(cdr.dialled);
        let direction = self.direction.infer(cdr, &dialled, &setup.plan);
        let mut rated = Rated {
            dialled,
            direction,
            class: None,
            country: "",
            rows: [None; MAX_DECKS],
            costs: [None; MAX_DECKS],
            tariff: None,
        };
        let Dialled::E164(number) = dialled else { return rated };
        let class = self.numbering.classify(&number);
        rated.class = Some(class);
        rated.country = self.numbering.region(class.region).map_or("", |r| r.iso2.as_str());
        if direction != Direction::Outbound {
            return rated;
        }
        let mut first = 0;
        if let Some(c) = &self.cgrates {
            first = 1;
            let subject = c.subjects.get(cdr.account).map_or(cdr.account, String::as_str);
            if let Ok(t) = c.plan.tariff(&c.tenant, &c.category, subject, number.as_str(), cdr.start) {
                rated.tariff = Some(t);
                rated.costs[0] = c.plan.cost(&t, cdr.start, cdr.billsec as u64 * 1_000_000_000).ok();
            }
        }
        let mut bands = None;
        for (i, deck) in self.decks.iter().enumerate() {
            let i = i + first;
            let mask = if deck.uses_bands() {
                *bands.get_or_insert_with(|| self.bands.active(cdr.start, &setup.tz))
            } else {
                0
            };
            if let Some(row) = deck.find(&number, cdr.start, mask) {
                rated.rows[i] = Some(row);
                rated.costs[i] = Some(row.cost(cdr.billsec));
            }
        }
        rated
    }
}
