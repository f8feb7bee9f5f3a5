//! `tollguard price`: the cost of one call, for checks and support.

use anyhow::{anyhow, bail, Result};
use jiff::Timestamp;
use std::path::PathBuf;
use std::process::ExitCode;
use tollguard_core::money::Currency;
use tollguard_core::numbering::{DialPlan, Dialled};
use tollguard_core::rating::{RateDeck, TimeBands};

/// Arguments of `tollguard price`.
#[derive(clap::Args, Debug)]
pub struct PriceArgs {
    /// A-Z rate deck CSV.
    #[arg(long)]
    rates: PathBuf,
    /// Country of the dialling plan for national numbers.
    #[arg(long)]
    country: Option<String>,
    /// The number called (`+670...`, `00670...`, or national with --country).
    #[arg(long)]
    to: String,
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

pub fn run(a: PriceArgs) -> Result<ExitCode> {
    let time: Timestamp = a.time.parse().map_err(|e| anyhow!("--time must be RFC 3339 with offset: {e}"))?;
    let usage = parse_usage(&a.usage)?;
    let plan = match &a.country {
        Some(c) => DialPlan::for_country(c).map_err(|e| anyhow!("--country: {e}"))?,
        None => DialPlan::international_only(),
    };
    let deck = RateDeck::load(&a.rates, &TimeBands::default(), Currency::EUR)?;
    if deck.uses_bands() {
        bail!(
            "{}: the deck has time_band rows; price it with a configuration (tollguard rate --config)",
            a.rates.display()
        );
    }
    let Dialled::E164(number) = plan.normalise(&a.to) else {
        eprintln!("error: NOT_A_NUMBER");
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
