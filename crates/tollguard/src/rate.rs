//! `tollguard rate`: streaming rating of CDR files.

use crate::config::{self, Overrides, Setup};
use crate::InputArgs;
use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;
use tollguard_core::cdr::{Cdr, Direction};
use tollguard_core::money::Currency;
use tollguard_core::numbering::Dialled;
use tollguard_ingest::{ReadError, ReadOptions};

/// Arguments of `tollguard rate`.
#[derive(clap::Args, Debug)]
pub struct RateArgs {
    #[command(flatten)]
    input: InputArgs,
    /// Write the rated CSV here instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Malformed rows printed before the rest are only counted.
const MAX_REPORTED: u64 = 1000;

/// Loads configuration and overrides into a validated setup.
pub fn setup(input: &InputArgs) -> Result<Setup> {
    let file = match &input.config {
        Some(p) => Some((p.as_path(), config::read(p)?)),
        None => None,
    };
    let over = Overrides { country: input.country.clone(), tz: input.tz.clone(), rates: input.rates.clone() };
    config::build(file, &over)
}

#[derive(Default)]
struct Summary {
    rows: u64,
    malformed: u64,
    priced: u64,
    unrated: u64,
    inbound: u64,
    internal: u64,
    emergency: u64,
    service: u64,
    invalid: u64,
    cost: BTreeMap<Currency, Decimal>,
    by_country: HashMap<&'static str, (u64, Decimal)>,
    by_type: BTreeMap<&'static str, u64>,
}

pub fn run(args: RateArgs) -> Result<ExitCode> {
    let setup = setup(&args.input)?;
    let rater = &setup.rater;
    let options = ReadOptions { tz: setup.cdr_tz.clone(), generic: setup.generic.clone() };
    let out: Box<dyn Write> = match &args.out {
        Some(p) => {
            Box::new(std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?)
        }
        None => Box::new(io::stdout().lock()),
    };
    let mut w = csv::WriterBuilder::new().from_writer(BufWriter::with_capacity(256 * 1024, out));
    let mut header: Vec<String> =
        "call_id,account,source,dialled,e164,country,number_type,risk,prefix,billsec,cost"
            .split(',')
            .map(String::from)
            .collect();
    for d in rater.decks().iter().skip(1) {
        header.push(format!("cost_{}", d.name));
    }
    w.write_record(&header)?;

    let total_bytes: u64 =
        args.input.cdr.iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len()).sum();
    let bar = ProgressBar::with_draw_target(Some(total_bytes), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} rating [{bar:30}] {bytes}/{total_bytes} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let mut s = Summary::default();
    let mut cdr = Cdr::default();
    let (mut e164, mut cost, mut billsec) = (String::new(), String::new(), String::new());
    let mut extra: Vec<String> = vec![String::new(); rater.decks().len()];
    let mut done_bytes = 0u64;
    for path in &args.input.cdr {
        let mut reader = tollguard_ingest::open(args.input.format, path, &options)?;
        loop {
            match reader.read_into(&mut cdr) {
                Ok(true) => {}
                Ok(false) => break,
                Err(ReadError::Row(bad)) => {
                    s.malformed += 1;
                    if s.malformed <= MAX_REPORTED {
                        bar.suspend(|| eprintln!("warning: skipped malformed row: {bad}"));
                    }
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
            s.rows += 1;
            if s.rows % 65_536 == 0 {
                bar.set_position(done_bytes + reader.bytes_read());
            }
            let r = rater.rate(&cdr);
            e164.clear();
            cost.clear();
            billsec.clear();
            let _ = write!(billsec, "{}", cdr.billsec);
            let (number_type, risk) = match (&r.dialled, &r.class) {
                (Dialled::E164(n), Some(c)) => {
                    let _ = write!(e164, "{n}");
                    (c.number_type.as_str(), c.risk.as_str())
                }
                (d, _) => (d.kind(), ""),
            };
            match r.dialled {
                Dialled::Emergency => s.emergency += 1,
                Dialled::Service => s.service += 1,
                Dialled::Invalid(_) => s.invalid += 1,
                _ => {}
            }
            match r.direction {
                Direction::Inbound => s.inbound += 1,
                Direction::Internal => s.internal += 1,
                _ => {}
            }
            let mut prefix = "";
            if r.is_priceable() {
                *s.by_type.entry(number_type).or_default() += 1;
                match (r.rows[0], r.costs[0]) {
                    (Some(row), Some(c)) => {
                        s.priced += 1;
                        prefix = &row.prefix;
                        let _ = write!(cost, "{c:.4}");
                        *s.cost.entry(row.currency).or_default() += c;
                        let e = s.by_country.entry(r.country).or_default();
                        e.0 += 1;
                        e.1 += c;
                    }
                    _ => s.unrated += 1,
                }
            }
            for (i, x) in extra.iter_mut().enumerate().skip(1) {
                x.clear();
                if let Some(c) = r.costs[i] {
                    let _ = write!(x, "{c:.4}");
                }
            }
            w.write_field(&cdr.call_id)?;
            w.write_field(&cdr.account)?;
            w.write_field(&cdr.source)?;
            w.write_field(&cdr.dialled)?;
            w.write_field(&e164)?;
            w.write_field(r.country)?;
            w.write_field(number_type)?;
            w.write_field(risk)?;
            w.write_field(prefix)?;
            w.write_field(&billsec)?;
            w.write_field(&cost)?;
            for x in extra.iter().skip(1) {
                w.write_field(x)?;
            }
            w.write_record(None::<&[u8]>)?;
        }
        done_bytes += reader.bytes_read();
    }
    w.flush()?;
    bar.finish_and_clear();
    print_summary(&s, args.input.cdr.len(), started.elapsed().as_secs_f64());
    Ok(ExitCode::SUCCESS)
}

fn print_summary(s: &Summary, files: usize, secs: f64) {
    let mut e = io::stderr().lock();
    let rate = if secs > 0.0 { s.rows as f64 / secs } else { 0.0 };
    let _ = writeln!(e, "rated {} calls from {files} file(s) in {secs:.2} s ({rate:.0} calls/s)", s.rows);
    let costs: Vec<String> = s.cost.iter().map(|(c, v)| format!("{c} {v:.4}")).collect();
    let _ = writeln!(
        e,
        "  priced {}  cost {}  unrated {}  inbound {}  internal {}  emergency {}  service {}  invalid {}  malformed {}",
        s.priced,
        if costs.is_empty() { "0".into() } else { costs.join(", ") },
        s.unrated,
        s.inbound,
        s.internal,
        s.emergency,
        s.service,
        s.invalid,
        s.malformed
    );
    if s.malformed > MAX_REPORTED {
        let _ = writeln!(e, "  ({} malformed rows not listed above)", s.malformed - MAX_REPORTED);
    }
    let mut countries: Vec<_> = s.by_country.iter().collect();
    countries.sort_by(|a, b| b.1 .1.cmp(&a.1 .1).then(a.0.cmp(b.0)));
    if !countries.is_empty() {
        let top: Vec<String> = countries
            .iter()
            .take(10)
            .map(|(c, (n, v))| format!("{} {n} calls {v:.4}", if c.is_empty() { "?" } else { c }))
            .collect();
        let _ = writeln!(e, "  by country (cost, first deck): {}", top.join("; "));
    }
    if !s.by_type.is_empty() {
        let types: Vec<String> = s.by_type.iter().map(|(t, n)| format!("{t} {n}")).collect();
        let _ = writeln!(e, "  outbound by number type: {}", types.join(", "));
    }
}
