//! Snapshots: an engine's state as bytes, and back ([`crate::Engine::snapshot`],
//! [`crate::Engine::restore`]).
//!
//! An engine is a function of its rater, its policy and the events it handled. A server rebuilds
//! it at every start by handling its whole event log again, which takes minutes to hours after
//! months of traffic. A snapshot is the state a rebuild had reached at some point of the log: an
//! engine restored from it and handed the rest of the log decides as one rebuilt from the start.
//! The caller must restore with the same rater and policy, from a snapshot the same build of
//! tollguard wrote (the server checks both with a fingerprint); what the engine can check itself,
//! it does (the format, the number of policy limits, a CGRateS plan where calls need one).
//!
//! What a snapshot leaves out, the restore takes from the rater: each account's time zone, and
//! the CGRateS plan of calls priced on one. Caches (the zone offset of each account, the shared
//! price of each deck row) start empty and fill again.

use crate::DestClass;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::cell::RefCell;
use std::sync::Arc;
use tollguard_core::cgrates::Plan;
use tollguard_core::numbering::{NumberType, RiskTier};

/// The layout of [`crate::Engine::snapshot`]'s bytes. A snapshot of another format is refused.
pub(crate) const FORMAT: u32 = 1;

thread_local! {
    /// The rater's CGRateS plan while a snapshot is read on this thread.
    static PLAN: RefCell<Option<Arc<Plan>>> = const { RefCell::new(None) };
    /// Why the last snapshot read on this thread was refused, when a reader of ours said so
    /// (postcard keeps no message of its own errors).
    static REFUSED: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// A reader's error, with its message kept for [`refused`].
fn refuse<E: serde::de::Error>(why: String) -> E {
    REFUSED.with(|r| *r.borrow_mut() = Some(why.clone()));
    E::custom(why)
}

/// Why the last snapshot read on this thread was refused, if a reader of ours said (taken).
pub(crate) fn refused() -> Option<String> {
    REFUSED.with(|r| r.borrow_mut().take())
}

/// Makes `plan` the one calls read from a snapshot on this thread are priced on, until dropped.
pub(crate) struct PlanScope;

impl PlanScope {
    pub(crate) fn set(plan: Option<Arc<Plan>>) -> PlanScope {
        PLAN.with(|p| *p.borrow_mut() = plan);
        REFUSED.with(|r| *r.borrow_mut() = None);
        PlanScope
    }
}

impl Drop for PlanScope {
    fn drop(&mut self) {
        PLAN.with(|p| *p.borrow_mut() = None);
    }
}

/// A call's CGRateS plan is not written: it is the rater's.
pub(crate) fn no_plan<S: Serializer>(_: &Arc<Plan>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_unit()
}

/// The rater's plan, for a call priced on a plan.
pub(crate) fn rater_plan<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<Plan>, D::Error> {
    <()>::deserialize(d)?;
    PLAN.with(|p| p.borrow().clone())
        .ok_or_else(|| refuse("a call is priced on a CGRateS plan, and the rater has none".into()))
}

/// A call's destination as written: its country as text, read back as the numbering table's
/// own `&'static str`.
#[derive(Serialize, Deserialize)]
pub(crate) struct DestClassText {
    country: String,
    number_type: Option<NumberType>,
    risk: Option<RiskTier>,
    new: bool,
}

impl From<DestClass> for DestClassText {
    fn from(c: DestClass) -> DestClassText {
        DestClassText { country: c.country.to_string(), number_type: c.number_type, risk: c.risk, new: c.new }
    }
}

impl TryFrom<DestClassText> for DestClass {
    type Error = String;

    fn try_from(t: DestClassText) -> Result<DestClass, String> {
        let country = match t.country.as_str() {
            "" => "",
            c => tollguard_core::numbering::metadata::region_by_iso(c)
                .map(|r| r.iso2.as_str())
                .filter(|iso| *iso == c)
                .ok_or_else(|| format!("unknown destination country {c:?}"))?,
        };
        Ok(DestClass { country, number_type: t.number_type, risk: t.risk, new: t.new })
    }
}

impl Serialize for DestClass {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        DestClassText::from(*self).serialize(s)
    }
}

impl<'de> Deserialize<'de> for DestClass {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<DestClass, D::Error> {
        DestClassText::deserialize(d)?.try_into().map_err(refuse)
    }
}

/// An exact decimal as its mantissa and scale.
pub(crate) mod decimal {
    use super::*;
    use rust_decimal::Decimal;

    pub(crate) fn serialize<S: Serializer>(d: &Decimal, s: S) -> Result<S::Ok, S::Error> {
        (d.mantissa(), d.scale()).serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
        let (m, scale) = <(i128, u32)>::deserialize(d)?;
        Decimal::try_from_i128_with_scale(m, scale).map_err(|e| refuse(e.to_string()))
    }
}

/// A baseline's weeks of hourly spend, as one sequence (serde's arrays stop at 32).
pub(crate) mod weeks {
    use super::*;
    use crate::baseline::{SLOTS, WEEKS};

    type Rows = [[u16; SLOTS]; WEEKS + 1];

    pub(crate) fn serialize<S: Serializer>(rows: &Rows, s: S) -> Result<S::Ok, S::Error> {
        rows.as_flattened().serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Rows, D::Error> {
        let flat = Vec::<u16>::deserialize(d)?;
        let mut rows = [[0u16; SLOTS]; WEEKS + 1];
        if flat.len() != SLOTS * (WEEKS + 1) {
            return Err(refuse(format!("a baseline of {} hours", flat.len())));
        }
        rows.as_flattened_mut().copy_from_slice(&flat);
        Ok(rows)
    }
}

/// A limit's specification as JSON text (it leaves empty fields out, which a format without
/// field names cannot read back).
pub(crate) mod json_text {
    use super::*;
    use crate::policy::LimitSpec;

    pub(crate) fn serialize<S: Serializer>(spec: &LimitSpec, s: S) -> Result<S::Ok, S::Error> {
        let text = serde_json::to_string(spec).map_err(serde::ser::Error::custom)?;
        s.serialize_str(&text)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<LimitSpec, D::Error> {
        let text = <&str>::deserialize(d)?;
        serde_json::from_str(text).map_err(|e| refuse(format!("a limit set at run time: {e}")))
    }
}
