//! `tollguard rate`: streaming rating of CDR files.

use crate::config::{self, Overrides, Setup};
use crate::InputArgs;
use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Instant;
use tollguard_core::cdr::{Cdr, Direction};
use tollguard_core::money::{push_fixed, push_u128, Currency};
use tollguard_core::numbering::{Class, Dialled, NumberType, Numbering};
use tollguard_core::rating::COST_DECIMALS;
use tollguard_ingest::{Format, ReadError, ReadOptions, RowError};

/// Arguments of `tollguard rate`.
#[derive(clap::Args, Debug)]
pub struct RateArgs {
    #[command(flatten)]
    input: InputArgs,
    /// Write the rated CSV here instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Records per batch handed from the reading thread to the rating one.
pub(crate) const BATCH: usize = 1024;

/// What the reading thread sends.
pub(crate) enum Msg {
    /// A batch of records; the first `n` are filled.
    Batch(Vec<Cdr>, usize),
    /// A malformed row, skipped.
    Malformed(RowError),
    /// Bytes read so far, all inputs together.
    Progress(u64),
    /// An input cannot be read: the run fails.
    Failed(ReadError),
}

/// Reads every input in turn, sending filled batches; stops when the receiver is gone.
pub(crate) fn read_batches(
    paths: &[PathBuf],
    format: Format,
    options: &ReadOptions,
    tx: mpsc::SyncSender<Msg>,
    free: mpsc::Receiver<Vec<Cdr>>,
) {
    let mut done = 0u64;
    for path in paths {
        let mut reader = match tollguard_ingest::open(format, path, options) {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.send(Msg::Failed(e));
                return;
            }
        };
        let mut batch = free.try_recv().unwrap_or_else(|_| vec![Cdr::default(); BATCH]);
        let mut n = 0;
        loop {
            if n == batch.len() {
                let full = std::mem::replace(
                    &mut batch,
                    free.try_recv().unwrap_or_else(|_| vec![Cdr::default(); BATCH]),
                );
                if tx.send(Msg::Batch(full, n)).is_err()
                    || tx.send(Msg::Progress(done + reader.bytes_read())).is_err()
                {
                    return;
                }
                n = 0;
            }
            match reader.read_into(&mut batch[n]) {
                Ok(true) => n += 1,
                Ok(false) => break,
                Err(ReadError::Row(bad)) => {
                    if tx.send(Msg::Malformed(bad)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Msg::Batch(batch, n));
                    let _ = tx.send(Msg::Failed(e));
                    return;
                }
            }
        }
        if n > 0 && tx.send(Msg::Batch(batch, n)).is_err() {
            return;
        }
        done += reader.bytes_read();
        if tx.send(Msg::Progress(done)).is_err() {
            return;
        }
    }
}

/// Malformed rows printed before the rest are only counted.
pub(crate) const MAX_REPORTED: u64 = 1000;

/// Loads configuration and overrides into a validated setup.
pub fn setup(input: &InputArgs) -> Result<Setup> {
    let file = match &input.config {
        Some(p) => Some((p.as_path(), config::read(p)?)),
        None => None,
    };
    let over = Overrides {
        country: input.country.clone(),
        tz: input.tz.clone(),
        rates: input.rates.clone(),
        cgrates_plan: input.cgrates_plan.clone(),
    };
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
    /// Calls and cost by destination region index (the last slot: no region).
    by_country: Vec<(u64, Decimal)>,
    /// Outbound calls by number type.
    by_type: [u64; NumberType::ALL.len()],
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
    let mut w = CsvOut::new(out);
    let mut header: Vec<String> =
        "call_id,account,source,dialled,e164,country,number_type,risk,prefix,billsec,cost"
            .split(',')
            .map(String::from)
            .collect();
    // With a CGRateS plan, `cost` is the plan's and every deck is a `cost_NAME` column.
    let first_extra = usize::from(rater.cgrates().is_none());
    for d in rater.decks().iter().skip(first_extra) {
        header.push(format!("cost_{}", d.name));
    }
    for h in &header {
        w.field(h);
    }
    w.end_record()?;

    let total_bytes: u64 =
        args.input.cdr.iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len()).sum();
    let bar = ProgressBar::with_draw_target(Some(total_bytes), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} rating [{bar:30}] {bytes}/{total_bytes} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let regions = (0..=u16::MAX).take_while(|i| rater.numbering().region(*i).is_some()).count();
    let mut s = Summary { by_country: vec![(0, Decimal::ZERO); regions + 1], ..Summary::default() };
    let (mut e164, mut cost, mut billsec) = (String::new(), String::new(), String::new());
    let mut extra: Vec<String> = vec![String::new(); rater.decks().len() + 1 - first_extra];
    // Reading and parsing run on a second thread, in batches of records whose buffers go back
    // to it for reuse; rating and writing stay here, in file order.
    let (tx, rx) = mpsc::sync_channel::<Msg>(4);
    let (free_tx, free_rx) = mpsc::channel::<Vec<Cdr>>();
    let (paths, format) = (&args.input.cdr, args.input.format);
    std::thread::scope(|scope| -> Result<()> {
        scope.spawn(move || read_batches(paths, format, &options, tx, free_rx));
        for msg in rx {
            let (batch, n) = match msg {
                Msg::Batch(batch, n) => (batch, n),
                Msg::Malformed(bad) => {
                    s.malformed += 1;
                    if s.malformed <= MAX_REPORTED {
                        bar.suspend(|| eprintln!("warning: skipped malformed row: {bad}"));
                    }
                    continue;
                }
                Msg::Progress(bytes) => {
                    bar.set_position(bytes);
                    continue;
                }
                Msg::Failed(e) => return Err(e.into()),
            };
            for cdr in &batch[..n] {
                s.rows += 1;
                let r = rater.rate(cdr);
                e164.clear();
                cost.clear();
                billsec.clear();
                push_u128(&mut billsec, cdr.billsec as u128);
                let (number_type, risk) = match (&r.dialled, &r.class) {
                    (Dialled::E164(n), Some(c)) => {
                        e164.push('+');
                        e164.push_str(n.as_str());
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
                    if let Some(c) = &r.class {
                        s.by_type[c.number_type as usize] += 1;
                    }
                    let currency = match (r.rows[0], rater.cgrates()) {
                        (_, Some(c)) => Some(c.currency),
                        (Some(row), None) => Some(row.currency),
                        (None, None) => None,
                    };
                    match (currency, r.costs[0]) {
                        (Some(currency), Some(c)) => {
                            s.priced += 1;
                            prefix = rater.prefix_of(&r);
                            push_fixed(&mut cost, c, COST_DECIMALS.max(c.scale()));
                            *s.cost.entry(currency).or_default() += c;
                            let region = r.class.map_or(Class::NO_REGION, |c| c.region);
                            let slot = (region as usize).min(s.by_country.len() - 1);
                            let e = &mut s.by_country[slot];
                            e.0 += 1;
                            e.1 += c;
                        }
                        _ => s.unrated += 1,
                    }
                }
                for (i, x) in extra.iter_mut().enumerate().skip(1) {
                    x.clear();
                    if let Some(c) = r.costs[i] {
                        push_fixed(x, c, COST_DECIMALS);
                    }
                }
                for field in [cdr.call_id.as_str(), &cdr.account, &cdr.source, &cdr.dialled] {
                    w.field(field);
                }
                // Ours: digits, codes and names that never need quoting.
                for field in [e164.as_str(), r.country, number_type, risk, prefix, &billsec, &cost] {
                    w.plain(field);
                }
                for x in extra.iter().skip(1) {
                    w.plain(x);
                }
                w.end_record()?;
            }
            let _ = free_tx.send(batch);
        }
        Ok(())
    })?;
    w.flush()?;
    bar.finish_and_clear();
    print_summary(&s, rater.numbering(), args.input.cdr.len(), started.elapsed().as_secs_f64());
    Ok(ExitCode::SUCCESS)
}

/// CSV output as RFC 4180 and the `csv` crate write it (a field is quoted only when it holds a
/// comma, a quote or a line break; quotes are doubled), buffered, without per-field calls through
/// a general writer: this is the per-call path of `tollguard rate`.
struct CsvOut {
    out: Box<dyn Write>,
    buf: Vec<u8>,
    first: bool,
}

impl CsvOut {
    fn new(out: Box<dyn Write>) -> CsvOut {
        CsvOut { out, buf: Vec::with_capacity(256 * 1024), first: true }
    }

    fn field(&mut self, s: &str) {
        if !self.first {
            self.buf.push(b',');
        }
        self.first = false;
        let b = s.as_bytes();
        if b.iter().any(|&c| matches!(c, b',' | b'"' | b'\n' | b'\r')) {
            self.buf.push(b'"');
            for &c in b {
                if c == b'"' {
                    self.buf.push(b'"');
                }
                self.buf.push(c);
            }
            self.buf.push(b'"');
        } else {
            self.buf.extend_from_slice(b);
        }
    }

    /// A field known to hold no comma, quote or line break.
    fn plain(&mut self, s: &str) {
        debug_assert!(!s.bytes().any(|c| matches!(c, b',' | b'"' | b'\n' | b'\r')));
        if !self.first {
            self.buf.push(b',');
        }
        self.first = false;
        self.buf.extend_from_slice(s.as_bytes());
    }

    fn end_record(&mut self) -> io::Result<()> {
        self.buf.push(b'\n');
        self.first = true;
        if self.buf.len() >= 240 * 1024 {
            self.out.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.write_all(&self.buf)?;
        self.buf.clear();
        self.out.flush()
    }
}

fn print_summary(s: &Summary, numbering: &Numbering, files: usize, secs: f64) {
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
    // A country by its ISO code; a non-geographic range (ISO "001": satellite, +800, +882 ...)
    // by its calling code, or all of them would read "001".
    let mut countries: Vec<(String, &(u64, Decimal))> = s
        .by_country
        .iter()
        .enumerate()
        .filter(|(_, (n, _))| *n > 0)
        .map(|(i, v)| {
            let label = match numbering.region(i as u16) {
                Some(r) if r.iso2 == "001" => format!("+{}", r.calling_code),
                Some(r) => r.iso2.clone(),
                None => "?".into(),
            };
            (label, v)
        })
        .collect();
    countries.sort_by(|a, b| b.1 .1.cmp(&a.1 .1).then(a.0.cmp(&b.0)));
    if !countries.is_empty() {
        let top: Vec<String> =
            countries.iter().take(10).map(|(c, (n, v))| format!("{c} {n} calls {v:.4}")).collect();
        let _ = writeln!(e, "  by country (cost, first deck): {}", top.join("; "));
    }
    let mut by_type: Vec<(&str, u64)> = NumberType::ALL
        .iter()
        .map(|t| (t.as_str(), s.by_type[*t as usize]))
        .filter(|(_, n)| *n > 0)
        .collect();
    by_type.sort();
    if !by_type.is_empty() {
        let types: Vec<String> = by_type.iter().map(|(t, n)| format!("{t} {n}")).collect();
        let _ = writeln!(e, "  outbound by number type: {}", types.join(", "));
    }
}
