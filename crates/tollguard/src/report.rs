//! `tollguard report incident ID`: the evidence pack of an incident, and `tollguard report daily`:
//! an account's day against its usual band; both from the live service's store.

use crate::rate::setup;
use crate::reconcile::read_side;
use crate::InputArgs;
use anyhow::{anyhow, bail, Context, Result};
use rust_decimal::Decimal;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use tollguard_server::report::{
    daily_csv, daily_html, daily_report, incident_csv, incident_html, incident_report, ReconcileWith,
};

/// `tollguard report ...`.
#[derive(clap::Subcommand, Debug)]
pub enum ReportCommand {
    /// The evidence pack of an incident: timeline, rules with their figures, every call with its
    /// rate and cost, totals excluding and including VAT, and how each total was computed.
    Incident(IncidentArgs),
    /// An account's day: spend and calls by hour against its usual band, destinations by cost
    /// with the new ones, limits approached, alerts and actions.
    Daily(DailyArgs),
}

/// Where the service's store and rates are (shared by the reports).
#[derive(clap::Args, Debug)]
pub struct StoreArgs {
    /// The service's configuration (rates, accounts, `[server] database`).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The SQLite store (overrides `[server] database`).
    #[arg(long)]
    database: Option<PathBuf>,
    /// A-Z rate deck (replaces the configuration's decks).
    #[arg(long = "rates")]
    rates: Vec<PathBuf>,
    /// A CGRateS tariff plan (replaces `[cgrates] plan`).
    #[arg(long)]
    cgrates_plan: Option<PathBuf>,
    /// Zone of accounts the configuration does not place. Default UTC.
    #[arg(long)]
    tz: Option<String>,
    /// Dialling plan country of accounts the configuration does not place.
    #[arg(long)]
    country: Option<String>,
}

/// Arguments of `tollguard report daily`.
#[derive(clap::Args, Debug)]
pub struct DailyArgs {
    /// The account.
    #[arg(long)]
    account: String,
    /// The day (YYYY-MM-DD, in the account's zone). Default: yesterday.
    #[arg(long)]
    date: Option<String>,
    /// `html` or `csv`.
    #[arg(long, default_value = "html")]
    format: String,
    /// Write here (default: standard output).
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    store: StoreArgs,
}

/// Arguments of `tollguard report incident`.
#[derive(clap::Args, Debug)]
pub struct IncidentArgs {
    /// The incident's id (`GET /v1/incidents`).
    id: i64,
    /// `html`, `csv` or `pdf` (printed from the HTML by headless Chromium).
    #[arg(long, default_value = "html")]
    format: String,
    /// Write here (default: standard output; a PDF needs `--out`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// VAT rate in percent (e.g. 21).
    #[arg(long, default_value = "0")]
    vat_percent: Decimal,
    /// Another party's records of the same traffic (e.g. the carrier's CDRs), set beside the
    /// service's calls in a reconciliation section; repeat for several files.
    #[arg(long)]
    reconcile_with: Vec<PathBuf>,
    /// Format of the `--reconcile-with` files.
    #[arg(long, requires = "reconcile_with")]
    reconcile_format: Option<tollguard_ingest::Format>,
    /// Zone of local times in the `--reconcile-with` files (default: the configuration's).
    #[arg(long, requires = "reconcile_with")]
    reconcile_tz: Option<String>,
    /// The account as the `--reconcile-with` records name it (default: the incident's). Records
    /// naming no account are kept.
    #[arg(long, requires = "reconcile_with")]
    reconcile_account: Option<String>,
    /// Most seconds two start times of one call may differ.
    #[arg(long, default_value = "5")]
    time_tolerance: u32,
    /// Most seconds two billed durations of one call may differ and still agree.
    #[arg(long, default_value = "2")]
    duration_tolerance: u32,
    #[command(flatten)]
    store: StoreArgs,
}

pub fn run(c: ReportCommand) -> Result<ExitCode> {
    match c {
        ReportCommand::Incident(a) => incident(a),
        ReportCommand::Daily(a) => daily(a),
    }
}

fn daily(a: DailyArgs) -> Result<ExitCode> {
    if !matches!(a.format.as_str(), "html" | "csv") {
        bail!("--format must be html or csv, found {:?}", a.format);
    }
    let (setup, store) = open_store(&a.store)?;
    let now = jiff::Timestamp::now();
    let date = match &a.date {
        Some(d) => d
            .parse::<jiff::civil::Date>()
            .map_err(|e| anyhow!("--date: expected YYYY-MM-DD, found {d:?} ({e})"))?,
        None => setup.rater.account(&a.account).tz.to_datetime(now).date().yesterday()?,
    };
    let r = daily_report(&store, &setup.rater, &a.account, date, now)?;
    let body = if a.format == "csv" { daily_csv(&r)? } else { daily_html(&r)? };
    write(a.out.as_deref(), body.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// The rates and the store a report reads.
fn open_store(a: &StoreArgs) -> Result<(crate::config::Setup, tollguard_store::Store)> {
    let input = InputArgs {
        cdr: vec![],
        format: tollguard_ingest::Format::Asterisk,
        rates: a.rates.clone(),
        cgrates_plan: a.cgrates_plan.clone(),
        config: a.config.clone(),
        tz: a.tz.clone(),
        country: a.country.clone(),
    };
    let setup = setup(&input)?;
    let db = a.database.clone().unwrap_or_else(|| setup.server.options.database.clone());
    if !db.exists() {
        bail!("{}: no such store (give --database or the service's --config)", db.display());
    }
    let store = tollguard_store::Store::open(&db)?;
    Ok((setup, store))
}

fn incident(a: IncidentArgs) -> Result<ExitCode> {
    if a.vat_percent.is_sign_negative() || a.vat_percent > Decimal::from(100) {
        bail!("--vat-percent must be from 0 to 100");
    }
    let (setup, store) = open_store(&a.store)?;
    let with = match (a.reconcile_with.is_empty(), a.reconcile_format) {
        (true, _) => None,
        (false, None) => bail!("--reconcile-with needs --reconcile-format (asterisk, freeswitch, ...)"),
        (false, Some(format)) => {
            if a.time_tolerance > 3600 {
                bail!("--time-tolerance is at most 3600 s");
            }
            let tz = match &a.reconcile_tz {
                Some(z) => crate::config::zone(z)?,
                None => setup.cdr_tz.clone(),
            };
            let options = tollguard_ingest::ReadOptions { tz, generic: setup.generic.clone() };
            let mut malformed = 0;
            let records = read_side(&a.reconcile_with, format, &options, &setup.rater, &mut malformed)?;
            let names: Vec<String> = a.reconcile_with.iter().map(|p| p.display().to_string()).collect();
            Some(ReconcileWith {
                source: format!("{} ({format})", names.join(", ")),
                records,
                account: a.reconcile_account.clone(),
                time_tolerance_s: a.time_tolerance,
                duration_tolerance_s: a.duration_tolerance,
            })
        }
    };
    let r =
        incident_report(&store, &setup.rater, a.id, jiff::Timestamp::now(), a.vat_percent, with.as_ref())?;
    let out = a.out.as_deref();
    match a.format.as_str() {
        "csv" => write(out, incident_csv(&r)?.as_bytes())?,
        "html" => write(out, incident_html(&r)?.as_bytes())?,
        "pdf" => {
            let Some(out) = out else { bail!("--format pdf needs --out FILE.pdf") };
            print_pdf(&incident_html(&r)?, out)?;
        }
        f => bail!("--format must be html, csv or pdf, found {f:?}"),
    }
    Ok(ExitCode::SUCCESS)
}

fn write(out: Option<&Path>, bytes: &[u8]) -> Result<()> {
    match out {
        Some(p) => std::fs::write(p, bytes).with_context(|| format!("cannot write {}", p.display())),
        None => {
            use std::io::Write;
            std::io::stdout().write_all(bytes)?;
            Ok(())
        }
    }
}

/// The Chromium to print with: `TOLLGUARD_CHROMIUM`, else `chromium` or `chromium-browser` on the
/// path.
fn chromium() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("TOLLGUARD_CHROMIUM") {
        return Ok(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser", "google-chrome"] {
            let p = dir.join(name);
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    Err(anyhow!(
        "a PDF is printed by headless Chromium, and none was found: install it (apt-get install -y chromium) or set \
         TOLLGUARD_CHROMIUM"
    ))
}

/// Prints `html` to `out` as PDF with headless Chromium (A4, the page's print styles).
pub fn print_pdf(html: &str, out: &Path) -> Result<()> {
    let browser = chromium()?;
    let dir = std::env::temp_dir().join(format!("tollguard-pdf-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let page = dir.join("report.html");
    std::fs::write(&page, html)?;
    let out_abs = if out.is_absolute() { out.to_path_buf() } else { std::env::current_dir()?.join(out) };
    let result = Command::new(&browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        .args(["--disable-component-update", "--disable-sync", "--no-pdf-header-footer"])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .arg(format!("--print-to-pdf={}", out_abs.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .with_context(|| format!("cannot run {}", browser.display()));
    let _ = std::fs::remove_dir_all(&dir);
    let output = result?;
    if !output.status.success() || !out_abs.is_file() {
        bail!(
            "{} could not print the PDF ({}): {}",
            browser.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).lines().last().unwrap_or("")
        );
    }
    Ok(())
}
