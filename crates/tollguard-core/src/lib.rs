//! # tollguard-core
//!
//! The pure parts of tollguard that everything else stands on:
//!
//! - [`cdr`]: the call detail record model every input format is read into;
//! - [`money`]: currencies and exact decimal amounts;
//! - [`numbering`]: dialled strings to E.164 ([`numbering::DialPlan`]), and one longest-prefix
//!   lookup in a digit trie that gives country, number type and risk tier ([`numbering::Numbering`]);
//! - [`rating`]: A-Z rate decks with effective dates, time bands and currencies, and the exact
//!   cost rule of the contract ([`rating::RateDeck`]);
//! - [`cgrates`]: CGRateS tariff-plan folders, priced as CGRateS prices them ([`cgrates::Plan`]);
//!
//! Nothing here reads a clock, opens a socket or starts a thread. Files are read only by the
//! explicit `load` functions used at start-up.
//!
//! ```
//! use tollguard_core::numbering::{DialPlan, Numbering, Dialled};
//! let numbering = Numbering::builtin();
//! let plan = DialPlan::for_country("NL").unwrap();
//! let Dialled::E164(number) = plan.normalise("0031 20 123 4567") else { panic!() };
//! assert_eq!(number.to_string(), "+31201234567");
//! let class = numbering.classify(&number);
//! assert_eq!(numbering.region(class.region).unwrap().iso2, "NL");
//! ```

pub mod cdr;
pub mod cgrates;
pub mod money;
pub mod numbering;
pub mod rater;
pub mod rating;
pub mod reconcile;
pub mod time;
