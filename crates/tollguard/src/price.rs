//! `tollguard price`: the cost of one call, for checks and support.

use anyhow::{anyhow, bail, Result};
use jiff::Timestamp;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tollguard_core::cgrates::{self, Plan, Rounding};
use tollguard_core::money::Currency;
use tollguard_core::numbering::{DialPlan, Dialled};
use tollguard_core::rating::{RateDeck, TimeBands};

/// Arguments of `tollguard price`.
#[derive(clap::Args, Debug)]
pub struct PriceArgs {
    /// A-Z rate deck CSV.
    #[arg(long, required_unless_present = "cgrates_plan", conflicts_with = "cgrates_plan", requires = "to")]
    rates: Option<PathBuf>,
    /// A CGRateS tariff-plan folder (Rates.csv, DestinationRates.csv, ...).
    #[arg(long, requires = "destination")]
    cgrates_plan: Option<PathBuf>,
    /// CGRateS tenant.
    #[arg(long, default_value = "cgrates.org")]
    tenant: String,
    /// CGRateS category.
    #[arg(long, default_value = "call")]
    category: String,
    /// CGRateS subject (the account).
    #[arg(long, required_unless_present_any = ["rates", "rating_plans"])]
    subject: Option<String>,
    /// CGRateS destination as the switch sends it (`1002`, `+4986517174963`).
    #[arg(long)]
    destination: Option<String>,
    /// Price on these rating plans instead of a subject's profile, the first that rates the
    /// destination (`RP_1001;RP_1002`, as CGRateS's GetRatingPlansCost).
    #[arg(long)]
    rating_plans: Option<String>,
    /// CGRateS rounding: `per-increment` (as CGRateS) or `total` (exact sum, rounded once).
    #[arg(long, default_value = "per-increment")]
    rounding: String,
    /// Decimals each increment is rounded to in `per-increment` rounding (CGRateS's
    /// general.rounding_decimals).
    #[arg(long, default_value_t = 5)]
    increment_decimals: u32,
    /// Country of the dialling plan for national numbers.
    #[arg(long)]
    country: Option<String>,
    /// The number called (`+670...`, `00670...`, or national with --country).
    #[arg(long)]
    to: Option<String>,
    /// When the call starts (RFC 3339), to pick effective-dated rows.
    #[arg(long)]
    time: String,
    /// Talk time: `85s`, `2m`, `1h2m3s` or plain seconds.
    #[arg(long)]
    usage: String,
}

/// Parses `85s`, `2m`, `1h2m3s` or plain seconds.
pub fn parse_usage(s: &str) -> Result<u32> {
    let t = s.trim();
    if let Ok(n) = t.parse::<u32>() {
        return Ok(n);
    }
    let mut total: u64 = 0;
    let mut num = String::new();
    for c in t.chars() {
        match c {
            '0'..='9' => num.push(c),
            'h' | 'm' | 's' if !num.is_empty() => {
                let v: u64 = num.parse()?;
                total += v * match c {
                    'h' => 3600,
                    'm' => 60,
                    _ => 1,
                };
                num.clear();
            }
            _ => bail!("usage must be like 85s, 2m or 1h2m3s, found {s:?}"),
        }
    }
    if !num.is_empty() || total > u32::MAX as u64 {
        bail!("usage must be like 85s, 2m or 1h2m3s, found {s:?}");
    }
    Ok(total as u32)
}

/// The rounding mode named on the command line or in the configuration.
pub fn parse_rounding(name: &str, decimals: u32) -> Result<Rounding> {
    match name {
        "per-increment" => {
            if decimals > 12 {
                bail!("increment decimals must be 0 to 12, found {decimals}");
            }
            Ok(Rounding::PerIncrement { decimals })
        }
        "total" => Ok(Rounding::Total),
        o => bail!("rounding must be per-increment or total, found {o:?}"),
    }
}

/// Usage for a CGRateS price: a plain number is seconds (as everywhere in tollguard), anything
/// else a Go duration (`85s`, `1m30s`, `500ms`).
fn usage_ns(s: &str) -> Result<u64> {
    if let Ok(n) = s.trim().parse::<u64>() {
        return n.checked_mul(1_000_000_000).ok_or_else(|| anyhow!("usage {s:?} is too long"));
    }
    cgrates::parse_duration(s).map_err(|e| anyhow!("--usage: {e}"))
}

fn run_cgrates(a: &PriceArgs, dir: &Path, time: Timestamp) -> Result<ExitCode> {
    let mut plan = Plan::load(dir)?;
    plan.rounding = parse_rounding(&a.rounding, a.increment_decimals)?;
    let usage = usage_ns(&a.usage)?;
    let destination = a.destination.as_deref().unwrap_or_default();
    let tariff = match (&a.rating_plans, &a.subject) {
        (Some(list), _) => {
            let names: Vec<&str> = list.split(';').map(str::trim).filter(|s| !s.is_empty()).collect();
            plan.tariff_in_plans(&names, destination, time)
        }
        (None, Some(subject)) => plan.tariff(&a.tenant, &a.category, subject, destination, time),
        (None, None) => bail!("give --subject or --rating-plans"),
    };
    match tariff.and_then(|t| plan.cost(&t, time, usage)) {
        Ok(cost) => {
            println!("{cost}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {}", e.code());
            Ok(ExitCode::from(3))
        }
    }
}

pub fn run(a: PriceArgs) -> Result<ExitCode> {
    let time: Timestamp = a.time.parse().map_err(|e| anyhow!("--time must be RFC 3339 with offset: {e}"))?;
    if let Some(dir) = &a.cgrates_plan {
        return run_cgrates(&a, dir, time);
    }
    let (Some(rates), Some(to)) = (&a.rates, &a.to) else {
        bail!("give --rates and --to, or --cgrates-plan")
    };
    let usage = parse_usage(&a.usage)?;
    let plan = match &a.country {
        Some(c) => DialPlan::for_country(c).map_err(|e| anyhow!("--country: {e}"))?,
        None => DialPlan::international_only(),
    };
    let deck = RateDeck::load(rates, &TimeBands::default(), Currency::EUR)?;
    if deck.uses_bands() {
        bail!(
            "{}: the deck has time_band rows; price it with a configuration (tollguard rate --config)",
            rates.display()
        );
    }
    let Dialled::E164(number) = plan.normalise(to) else {
        // The code alone on the first line (docs: `error: CODE`), then why, for a person.
        eprintln!("error: NOT_A_NUMBER");
        match &a.country {
            Some(c) => eprintln!("  {to:?} is not a telephone number dialled in {c}"),
            None => eprintln!(
                "  {to:?} is not an international number (+ or 00 and a country code); a national one needs --country"
            ),
        }
        return Ok(ExitCode::from(3));
    };
    match deck.find(&number, time, 0) {
        Some(row) => {
            println!("{:.4}", row.cost(usage));
            Ok(ExitCode::SUCCESS)
        }
        None => {
            eprintln!("error: UNRATED_DESTINATION");
            Ok(ExitCode::from(3))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_usage;

    #[test]
    fn usages() {
        assert_eq!(parse_usage("85s").unwrap(), 85);
        assert_eq!(parse_usage("85").unwrap(), 85);
        assert_eq!(parse_usage("1h2m3s").unwrap(), 3723);
        assert!(parse_usage("85x").is_err());
        assert!(parse_usage("1h2").is_err());
    }
}
