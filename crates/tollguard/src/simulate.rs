//! `tollguard simulate`: a seeded month of PBX traffic with labelled fraud, ready for `rate` and
//! `replay` (docs/simulator.md).

use anyhow::{anyhow, Context, Result};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tollguard_sim::{Scenario, SimConfig};

/// Arguments of `tollguard simulate`.
#[derive(clap::Args, Debug)]
pub struct SimulateArgs {
    /// Seed: the same seed and arguments give byte-identical files.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Number of accounts (acct001, ...).
    #[arg(long, default_value_t = 150)]
    accounts: usize,
    /// Number of days; scenarios start after the first 7 (the learning week).
    #[arg(long, default_value_t = 30)]
    days: u32,
    /// First day, a Monday (YYYY-MM-DD).
    #[arg(long, default_value = "2026-01-05")]
    start: jiff::civil::Date,
    /// Directory to write Master.csv, labels.csv, rates.csv and tollguard.toml into (created if
    /// missing; those files are replaced).
    #[arg(long)]
    out_dir: PathBuf,
    /// `all`, `none`, or scenario names separated by commas (see docs/simulator.md).
    #[arg(long, default_value = "all")]
    scenarios: String,
}

fn create(dir: &Path, name: &str) -> Result<std::io::BufWriter<File>> {
    let p = dir.join(name);
    let f = File::create(&p).with_context(|| format!("cannot create {}", p.display()))?;
    Ok(std::io::BufWriter::new(f))
}

pub fn run(a: SimulateArgs) -> Result<ExitCode> {
    let scenarios = Scenario::parse_list(&a.scenarios).map_err(|e| anyhow!("--scenarios: {e}"))?;
    let cfg = SimConfig { seed: a.seed, accounts: a.accounts, days: a.days, start: a.start, scenarios };
    cfg.check().map_err(|e| anyhow!("{e}"))?;
    std::fs::create_dir_all(&a.out_dir).with_context(|| format!("cannot create {}", a.out_dir.display()))?;
    let started = std::time::Instant::now();
    let summary =
        tollguard_sim::simulate(&cfg, create(&a.out_dir, "Master.csv")?, create(&a.out_dir, "labels.csv")?)
            .with_context(|| format!("writing to {}", a.out_dir.display()))?;
    for (name, text) in
        [("rates.csv", tollguard_sim::DECK_CSV), ("tollguard.toml", tollguard_sim::CONFIG_TOML)]
    {
        let mut w = create(&a.out_dir, name)?;
        w.write_all(text.as_bytes())?;
        w.flush().with_context(|| format!("writing {}", a.out_dir.join(name).display()))?;
    }
    let mut out = std::io::stdout().lock();
    write!(out, "{summary}")?;
    writeln!(
        out,
        "wrote {}/{{Master.csv,labels.csv,rates.csv,tollguard.toml}} in {:.1} s",
        a.out_dir.display(),
        started.elapsed().as_secs_f64()
    )?;
    writeln!(
        out,
        "next: tollguard rate --cdr {0}/Master.csv --format asterisk --config {0}/tollguard.toml",
        a.out_dir.display()
    )?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;

    #[test]
    fn writes_the_four_files_and_a_configuration_the_binary_accepts() {
        let dir = std::env::temp_dir().join(format!("tollguard-simulate-{}", std::process::id()));
        let args = SimulateArgs {
            seed: 3,
            accounts: 6,
            days: 8,
            start: jiff::civil::date(2026, 1, 5),
            out_dir: dir.clone(),
            scenarios: "pbx_hack_night,campaign_day".into(),
        };
        // pbx_hack_night needs 11 days: refused with the reason.
        let e = run(args).unwrap_err().to_string();
        assert!(e.contains("pbx_hack_night needs at least 11 days"), "{e}");
        let args = SimulateArgs {
            seed: 3,
            accounts: 6,
            days: 11,
            start: jiff::civil::date(2026, 1, 5),
            out_dir: dir.clone(),
            scenarios: "pbx_hack_night,campaign_day".into(),
        };
        assert_eq!(run(args).unwrap(), ExitCode::SUCCESS);
        for f in ["Master.csv", "labels.csv", "rates.csv", "tollguard.toml"] {
            assert!(dir.join(f).metadata().unwrap().len() > 0, "{f}");
        }
        let labels = std::fs::read_to_string(dir.join("labels.csv")).unwrap();
        assert!(labels.contains(",pbx_hack_night,fraud,pbx_hack_night-acct"));
        let path = dir.join("tollguard.toml");
        let file = config::read(&path).unwrap();
        let setup = config::build(Some((&path, file)), &config::Overrides::default()).unwrap();
        assert_eq!(setup.rater.decks().len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unknown_scenarios_and_other_days_are_refused() {
        let base = |scenarios: &str, start| SimulateArgs {
            seed: 1,
            accounts: 5,
            days: 30,
            start,
            out_dir: std::env::temp_dir().join("tollguard-simulate-never-written"),
            scenarios: scenarios.into(),
        };
        let e = run(base("pbx", jiff::civil::date(2026, 1, 5))).unwrap_err().to_string();
        assert!(e.starts_with("--scenarios: unknown scenario \"pbx\""), "{e}");
        let e = run(base("none", jiff::civil::date(2026, 1, 6))).unwrap_err().to_string();
        assert!(e.contains("must be a Monday"), "{e}");
        // Every scenario that needs more days is named at once, not one per try.
        let e = run(SimulateArgs { days: 8, ..base("all", jiff::civil::date(2026, 1, 5)) })
            .unwrap_err()
            .to_string();
        for says in [
            "--days is 8: scenario ",
            "pbx_hack_night needs at least 11 days",
            "satellite_weekend needs at least 14 days",
            "slow_drip needs at least 19 days",
        ] {
            assert!(e.contains(says), "{says}: {e}");
        }
        assert!(!e.contains("wangiri_callback"), "{e}");
    }
}
