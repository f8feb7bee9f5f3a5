//! `tollguard.toml`: the configuration, read once and validated into domain types.
//!
//! Every table and field is documented here; `docs/configuration.md` is the same reference with
//! examples. Unknown fields are refused, so a misspelt key is an error, not a silent default.

use anyhow::{anyhow, bail, Context, Result};
use jiff::tz::TimeZone;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tollguard_core::cgrates::Plan;
use tollguard_core::money::Currency;
use tollguard_core::numbering::{DialPlan, DialPlanSpec, Numbering, RiskList};
use tollguard_core::rater::{AccountSetup, CgratesPricing, DirectionRules, Rater};
use tollguard_core::rating::{RateDeck, TimeBandSpec, TimeBands};
use tollguard_engine::policy::{BusinessHours, Calendars, Holiday, Policy, PolicySpec, WeeklyHours};
use tollguard_ingest::generic::GenericMapping;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Defaults for accounts the file does not list.
    #[serde(default)]
    pub defaults: Defaults,
    /// The classification table.
    #[serde(default)]
    pub numbering: NumberingSection,
    /// Named dialling plans, referred to by accounts: `[dialplans.office]`.
    #[serde(default)]
    pub dialplans: BTreeMap<String, PlanTable>,
    /// Accounts: `[accounts.acme]`.
    #[serde(default)]
    pub accounts: BTreeMap<String, AccountSection>,
    /// Rate decks: `[[decks]]`; the first one is what `cost` means.
    #[serde(default)]
    pub decks: Vec<DeckSection>,
    /// A CGRateS tariff plan that prices calls before any deck (docs/integrations/cgrates.md).
    pub cgrates: Option<CgratesSection>,
    /// Time bands for banded deck rows: `[time_bands.peak]`.
    #[serde(default)]
    pub time_bands: BTreeMap<String, TimeBandSpec>,
    /// How call direction is decided.
    #[serde(default)]
    pub direction: DirectionSection,
    /// Column mapping for `--format generic`.
    pub generic_csv: Option<GenericMapping>,
    /// The policy: limits and the built-in default rules (docs/policy.md).
    #[serde(default)]
    pub policy: PolicySpec,
    /// `tollguard serve` (docs/api.md).
    #[serde(default)]
    pub server: ServerSection,
}

/// `[cgrates]`: price calls on a CGRateS tariff-plan folder.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CgratesSection {
    /// The folder (Rates.csv, DestinationRates.csv, ...), relative to the configuration file.
    pub plan: Option<PathBuf>,
    /// Tenant. Default `cgrates.org`.
    pub tenant: Option<String>,
    /// Category. Default `call`.
    pub category: Option<String>,
    /// `per-increment` (CGRateS, the default) or `total` (exact sum, rounded once).
    pub rounding: Option<String>,
    /// Decimals of each increment's cost in `per-increment` rounding. Default 5.
    pub increment_decimals: Option<u32>,
    /// Zone the plan's timings are read in. Default UTC.
    #[serde(default, deserialize_with = "zone_name")]
    pub timezone: Option<String>,
    /// Account -> CGRateS subject, where they differ (default: the account is the subject).
    #[serde(default)]
    pub subjects: HashMap<String, String>,
}

/// `[server]`: how `tollguard serve` runs.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Address to listen on. Default `127.0.0.1:8090`.
    pub listen: Option<String>,
    /// SQLite database, relative to the configuration file. Default `tollguard.db`.
    pub database: Option<PathBuf>,
    /// Milliseconds between ticks. Default 1000.
    pub tick_ms: Option<u64>,
    /// Largest request body, bytes. Default 1048576.
    pub max_body_bytes: Option<usize>,
    /// A call whose end never arrives is closed this long after its answer (`4h`, `90m`), unless
    /// it had a cap (then at the cap plus a minute). Default `4h`.
    pub lost_call_after: Option<String>,
    /// How long after a call's end its record still corrects the cost. Default `2m`.
    pub record_grace: Option<String>,
    /// How often the state rebuilt from the event log is written to `DATABASE.snapshot`, so that
    /// a start reads only the log after it (`10m`, `1h`); `off`: no snapshots. Also written at a
    /// graceful stop. Default `10m`.
    pub snapshot_every: Option<String>,
    /// What is older than this is deleted from the database, once an hour (`400d`); at least
    /// `91d`, the history the engine's state depends on; `off`: nothing is deleted. Default `off`.
    pub retention: Option<String>,
    /// CDR files to follow: `[[server.tail]]`.
    #[serde(default)]
    pub tail: Vec<TailSection>,
    /// Serve HTTPS: the certificate chain (PEM), relative to the configuration file.
    pub tls_cert: Option<PathBuf>,
    /// The private key of `tls_cert` (PEM: PKCS#8, PKCS#1 or SEC1).
    pub tls_key: Option<PathBuf>,
    /// Kamailio's JSON-RPC over HTTP, e.g. `http://127.0.0.1:5071/RPC`: running calls a limit
    /// cuts are ended there (`dlg.end_dlg`). See docs/integrations/kamailio.md.
    pub kamailio_rpc: Option<String>,
    /// Certificates to trust for an `https://` `kamailio_rpc` besides Mozilla's roots (PEM,
    /// relative to the configuration file): Kamailio's own certificate, or its CA.
    pub kamailio_rpc_ca_file: Option<PathBuf>,
    /// Where alerts are posted: `[[server.webhook]]`.
    #[serde(default)]
    pub webhook: Vec<WebhookSection>,
    /// Alerts by e-mail: `[server.email]`.
    pub email: Option<EmailSection>,
}

/// `[server.email]`: alert e-mails over SMTP.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailSection {
    /// SMTP server (the name its TLS certificate carries).
    pub smtp_host: String,
    /// Port. Default 587.
    pub smtp_port: Option<u16>,
    /// `required` (default), `opportunistic` or `never` (a relay on loopback).
    pub starttls: Option<String>,
    /// A PEM certificate authority to trust besides the public ones (a private relay).
    pub ca_file: Option<PathBuf>,
    /// Login name, if the server wants one.
    pub username: Option<String>,
    /// Password for `username`.
    pub password: Option<String>,
    /// The sender, e.g. `tollguard <tollguard@carrier.example>`.
    pub from: String,
    /// The carrier's NOC: every alert of at least `min_severity`.
    #[serde(default)]
    pub noc: Vec<String>,
    /// Each account's contact: `[server.email.accounts] acme = ["it@acme.example"]`.
    #[serde(default)]
    pub accounts: BTreeMap<String, Vec<String>>,
    /// `info`, `warning` (default) or `critical`.
    pub min_severity: Option<String>,
    /// A rule is mailed again for an account only after this long, unless it got worse. Default `30m`.
    pub quiet: Option<String>,
    /// How people reach `tollguard serve`, for the links in the mail.
    pub public_url: String,
    /// Tries before a mail is dead-lettered. Default 8.
    pub max_tries: Option<u32>,
    /// Mail each account's daily report for yesterday to its contacts at this time (`HH:MM`, the
    /// account's zone), e.g. `"07:00"`. Default: not mailed.
    pub daily_report: Option<String>,
}

/// `HH:MM` (24-hour clock).
fn daily_time(s: &str) -> Result<jiff::civil::Time> {
    let bad = || anyhow!("expected a time of day as HH:MM (e.g. \"07:00\"), found {s:?}");
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let (h, m): (i8, i8) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    jiff::civil::Time::new(h, m, 0, 0).map_err(|_| bad())
}

fn severity(at: &str, s: Option<&str>) -> Result<tollguard_engine::Severity> {
    Ok(match s.unwrap_or("warning") {
        "info" => tollguard_engine::Severity::Info,
        "warning" => tollguard_engine::Severity::Warning,
        "critical" => tollguard_engine::Severity::Critical,
        other => bail!("{at}: min_severity must be info, warning or critical, found {other:?}"),
    })
}

/// `[[server.webhook]]`: alerts posted as signed JSON, from a persisted outbox.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSection {
    /// A name, shown in `GET /v1/deliveries`.
    pub name: String,
    /// `https://host[:port]/path` (or `http://` on a trusted network).
    pub url: String,
    /// A PEM file of certificates to trust besides Mozilla's roots (a private CA, or the
    /// receiver's self-signed certificate), relative to the configuration file.
    pub ca_file: Option<PathBuf>,
    /// The HMAC-SHA256 key the receiver checks the signature with.
    pub secret: String,
    /// `info`, `warning` (default) or `critical`: the least severe alert posted.
    pub min_severity: Option<String>,
    /// Tries before a message is dead-lettered. Default 8 (the last about 4 minutes after the first).
    pub max_tries: Option<u32>,
}

/// `[[server.tail]]`: a CDR file `serve` follows as the PBX appends to it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TailSection {
    /// The file, relative to the configuration file.
    pub path: PathBuf,
    /// `asterisk` or `freeswitch-csv`.
    pub format: String,
}

/// `[server]` validated.
#[derive(Clone, Debug)]
pub struct ServerSettings {
    /// Listen address.
    pub listen: String,
    /// The server's options.
    pub options: tollguard_server::Options,
}

/// `[defaults]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// ISO 3166 alpha-2 country of the dialling plan for accounts without one (`--country`
    /// overrides it).
    #[serde(default, deserialize_with = "country_code")]
    pub country: Option<String>,
    /// IANA zone of local CDR times and of accounts without one (`--tz` overrides it). Default UTC.
    #[serde(default, deserialize_with = "zone_name")]
    pub timezone: Option<String>,
    /// Currency of deck rows without a `currency` column. Default EUR.
    #[serde(default, deserialize_with = "currency_code")]
    pub currency: Option<String>,
    /// Business hours of accounts without their own, e.g. `"Mon-Fri 08:00-18:00"` (rules with
    /// `when`, docs/policy.md). Default: none.
    pub business_hours: Option<WeeklyHours>,
    /// Holidays (`YYYY-MM-DD`, in each account's zone) of accounts without their own list:
    /// outside business hours all day.
    pub holidays: Option<Vec<Holiday>>,
}

/// `[numbering]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumberingSection {
    /// A risk list that replaces the built-in one (same format: `prefix,tier,category,note`).
    pub risk_file: Option<PathBuf>,
}

/// `[accounts.NAME]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountSection {
    /// Name of a `[dialplans.NAME]` table (checked by [`read`], which knows its line).
    pub dialplan: Option<toml::Spanned<String>>,
    /// IANA zone of the account (calendar limits, time bands). Default: `[defaults] timezone`.
    #[serde(default, deserialize_with = "zone_name")]
    pub timezone: Option<String>,
    /// Business hours, e.g. `"Mon-Fri 08:00-12:30, 13:30-18:00; Sat 09:00-12:00"`, in the
    /// account's zone. Default: `[defaults] business_hours`.
    pub business_hours: Option<WeeklyHours>,
    /// Holidays (`YYYY-MM-DD`, in the account's zone): outside business hours all day. Replaces
    /// `[defaults] holidays`.
    pub holidays: Option<Vec<Holiday>>,
}

/// `[[decks]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeckSection {
    /// Name shown in outputs (`cost_NAME` columns for decks after the first). Default: file stem.
    pub name: Option<String>,
    /// Path of the A-Z deck CSV, relative to the configuration file.
    pub path: PathBuf,
    /// Currency of rows without a `currency` column. Default: `[defaults] currency`.
    #[serde(default, deserialize_with = "currency_code")]
    pub currency: Option<String>,
}

/// `[direction]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectionSection {
    /// Channel-name prefixes of trunks, e.g. `["SIP/provider-", "PJSIP/trunk-"]`.
    #[serde(default)]
    pub trunk_channels: Vec<String>,
    /// Contexts of calls coming in from the network (replace the built-in names).
    #[serde(default)]
    pub inbound_contexts: Vec<String>,
    /// Contexts of calls going out to the network.
    #[serde(default)]
    pub outbound_contexts: Vec<String>,
}

/// Reads and parses a configuration file: its shape, and each value that can be checked alone
/// (zones, countries, dialling plans, business hours), are refused with the file and line;
/// so is an account's dialling plan that no `[dialplans.NAME]` table defines.
pub fn read(path: &Path) -> Result<ConfigFile> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let cfg: ConfigFile = toml::from_str(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    for (name, a) in &cfg.accounts {
        if let Some(p) = a.dialplan.as_ref().filter(|p| !cfg.dialplans.contains_key(p.get_ref())) {
            let line = text[..p.span().start].matches('\n').count() + 1;
            bail!("{}:{line}: {}", path.display(), undefined_plan(name, p.get_ref()));
        }
    }
    Ok(cfg)
}

/// An account's `dialplan` that names no table.
fn undefined_plan(account: &str, plan: &str) -> String {
    format!("[accounts.{account}] dialplan {plan:?} is not defined (no [dialplans.{plan}] table)")
}

/// An optional IANA zone name, refused as it is read if unknown.
fn zone_name<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<String>, D::Error> {
    let name = Option::<String>::deserialize(d)?;
    if let Some(n) = &name {
        zone(n).map_err(|e| serde::de::Error::custom(format!("{e:#}")))?;
    }
    Ok(name)
}

/// An optional ISO 3166 alpha-2 country, refused as it is read if unknown.
fn country_code<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<String>, D::Error> {
    let code = Option::<String>::deserialize(d)?;
    if let Some(c) = &code {
        DialPlan::for_country(c).map_err(serde::de::Error::custom)?;
    }
    Ok(code)
}

/// An optional ISO 4217 currency code, refused as it is read if unknown.
fn currency_code<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<String>, D::Error> {
    let code = Option::<String>::deserialize(d)?;
    if let Some(c) = &code {
        c.parse::<Currency>().map_err(serde::de::Error::custom)?;
    }
    Ok(code)
}

/// A `[dialplans.NAME]` table, checked as it is read.
#[derive(Debug)]
pub struct PlanTable(Arc<DialPlan>);

impl<'de> Deserialize<'de> for PlanTable {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<PlanTable, D::Error> {
        let spec = DialPlanSpec::deserialize(d)?;
        DialPlan::from_spec(&spec).map(|p| PlanTable(Arc::new(p))).map_err(serde::de::Error::custom)
    }
}

/// Command-line settings that override or complete the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--country`.
    pub country: Option<String>,
    /// `--tz`.
    pub tz: Option<String>,
    /// `--rates`, in order (they replace the file's decks).
    pub rates: Vec<PathBuf>,
    /// `--cgrates-plan` (replaces `[cgrates] plan`).
    pub cgrates_plan: Option<PathBuf>,
}

/// Parses an IANA zone name.
pub fn zone(name: &str) -> Result<TimeZone> {
    TimeZone::get(name).map_err(|e| anyhow!("unknown time zone {name:?}: {e}"))
}

/// The validated setup: everything the per-call path needs.
pub struct Setup {
    /// The rater.
    pub rater: Rater,
    /// Zone of local times in CDR files.
    pub cdr_tz: TimeZone,
    /// `[generic_csv]`, if any.
    pub generic: Option<GenericMapping>,
    /// The validated policy.
    pub policy: Policy,
    /// `[server]`.
    pub server: ServerSettings,
}

/// Validates a configuration (or none) with command-line overrides.
pub fn build(file: Option<(&Path, ConfigFile)>, over: &Overrides) -> Result<Setup> {
    let (base, cfg) = match file {
        Some((p, c)) => (p.parent().map(Path::to_path_buf).unwrap_or_default(), c),
        None => (PathBuf::new(), ConfigFile::default()),
    };
    let currency: Currency = match &cfg.defaults.currency {
        Some(c) => c.parse().map_err(|e: String| anyhow!("[defaults] currency: {e}"))?,
        None => Currency::EUR,
    };
    // Each is said where it came from: a flag, or the file (where `read` checked it already).
    let cdr_tz = match (&over.tz, &cfg.defaults.timezone) {
        (Some(z), _) => zone(z).context("--tz")?,
        (None, Some(z)) => zone(z).context("[defaults] timezone")?,
        (None, None) => zone("UTC")?,
    };
    let default_plan = Arc::new(match (&over.country, &cfg.defaults.country) {
        (Some(c), _) => DialPlan::for_country(c).map_err(|e| anyhow!("--country: {e}"))?,
        (None, Some(c)) => DialPlan::for_country(c).map_err(|e| anyhow!("[defaults] country: {e}"))?,
        (None, None) => DialPlan::international_only(),
    });
    let mut accounts = HashMap::new();
    for (name, a) in &cfg.accounts {
        let plan = match &a.dialplan {
            // (`read` said it with the line; a configuration made otherwise is checked here.)
            Some(p) => cfg
                .dialplans
                .get(p.get_ref())
                .map(|t| t.0.clone())
                .ok_or_else(|| anyhow!(undefined_plan(name, p.get_ref())))?,
            None => default_plan.clone(),
        };
        let tz = match &a.timezone {
            Some(z) => zone(z).with_context(|| format!("[accounts.{name}] timezone"))?,
            None => cdr_tz.clone(),
        };
        accounts.insert(name.clone(), AccountSetup { plan, tz });
    }
    let bands = TimeBands::from_specs(&cfg.time_bands).map_err(|e| anyhow!("{e}"))?;
    let mut decks = Vec::new();
    if !over.rates.is_empty() {
        for p in &over.rates {
            decks.push(RateDeck::load(p, &bands, currency)?);
        }
    } else {
        for d in &cfg.decks {
            let path = base.join(&d.path);
            let cur = match &d.currency {
                Some(c) => c.parse().map_err(|e: String| anyhow!("[[decks]] currency: {e}"))?,
                None => currency,
            };
            let mut deck = RateDeck::load(&path, &bands, cur)?;
            if let Some(n) = &d.name {
                deck.name = n.clone();
            }
            decks.push(deck);
        }
    }
    let section = cfg.cgrates.unwrap_or_default();
    let plan_dir = over.cgrates_plan.clone().or(section.plan.as_ref().map(|p| base.join(p)));
    if decks.is_empty() && plan_dir.is_none() {
        bail!(
            "no rates: give --rates DECK.csv or --cgrates-plan DIR, or a [[decks]] or [cgrates] table in the \
             configuration"
        );
    }
    let numbering = match &cfg.numbering.risk_file {
        Some(p) => Arc::new(Numbering::with_risk_list(RiskList::load(&base.join(p))?)),
        None => Arc::new(Numbering::builtin().clone()),
    };
    let direction = DirectionRules {
        trunk_channels: cfg.direction.trunk_channels.clone(),
        inbound_contexts: cfg.direction.inbound_contexts.clone(),
        outbound_contexts: cfg.direction.outbound_contexts.clone(),
    };
    let default = AccountSetup { plan: default_plan, tz: cdr_tz.clone() };
    let mut rater =
        Rater::new(numbering, decks, bands, accounts, default, direction).map_err(|e| anyhow!("{e}"))?;
    if let Some(dir) = plan_dir {
        let mut plan = Plan::load(&dir)?;
        plan.rounding = crate::price::parse_rounding(
            section.rounding.as_deref().unwrap_or("per-increment"),
            section.increment_decimals.unwrap_or(5),
        )
        .context("[cgrates]")?;
        if let Some(z) = &section.timezone {
            plan.set_timezone(zone(z).context("[cgrates] timezone")?);
        }
        rater = rater
            .with_cgrates(CgratesPricing {
                plan: Arc::new(plan),
                tenant: section.tenant.unwrap_or_else(|| "cgrates.org".into()),
                category: section.category.unwrap_or_else(|| "call".into()),
                subjects: section.subjects,
                currency,
            })
            .map_err(|e| anyhow!("{e}"))?;
    }
    let policy = Policy::from_spec_with(&cfg.policy, calendars(&cfg.defaults, &cfg.accounts)?)
        .map_err(|e| anyhow!("[policy]: {e}"))?;
    let server = server_settings(&cfg.server, &base, &cdr_tz)?;
    Ok(Setup { rater, cdr_tz, generic: cfg.generic_csv, policy, server })
}

/// Business hours by account (`[accounts.NAME]` and `[defaults]` `business_hours`, `holidays`).
fn calendars(d: &Defaults, accounts: &BTreeMap<String, AccountSection>) -> Result<Calendars> {
    let mut c = Calendars {
        default: d
            .business_hours
            .clone()
            .map(|h| BusinessHours::new(h, d.holidays.as_deref().unwrap_or(&[]))),
        ..Calendars::default()
    };
    for (name, a) in accounts {
        if a.business_hours.is_none() && a.holidays.is_none() {
            continue;
        }
        let Some(hours) = a.business_hours.clone().or(d.business_hours.clone()) else {
            bail!("[accounts.{name}] holidays need business_hours (here or in [defaults])");
        };
        let holidays = a.holidays.as_deref().or(d.holidays.as_deref()).unwrap_or(&[]);
        c.accounts.insert(name.clone(), BusinessHours::new(hours, holidays));
    }
    Ok(c)
}

fn server_settings(s: &ServerSection, base: &Path, tz: &TimeZone) -> Result<ServerSettings> {
    let mut options = tollguard_server::Options::default();
    for (i, t) in s.tail.iter().enumerate() {
        let format: tollguard_ingest::Format =
            t.format.parse().map_err(|e: String| anyhow!("[[server.tail]] {}: format: {e}", i + 1))?;
        if !matches!(format, tollguard_ingest::Format::Asterisk | tollguard_ingest::Format::FreeswitchCsv) {
            bail!("[[server.tail]] {}: only asterisk and freeswitch-csv files can be followed", i + 1);
        }
        options.tails.push(tollguard_server::TailSpec {
            path: base.join(&t.path),
            format,
            options: tollguard_ingest::ReadOptions { tz: tz.clone(), generic: None },
        });
    }
    if let Some(db) = &s.database {
        options.database = base.join(db);
    }
    if let Some(ms) = s.tick_ms {
        if ms == 0 {
            bail!("[server] tick_ms must be at least 1");
        }
        options.tick = std::time::Duration::from_millis(ms);
    }
    match (&s.tls_cert, &s.tls_key) {
        (Some(c), Some(k)) => options.tls = Some((base.join(c), base.join(k))),
        (None, None) => {}
        _ => bail!("[server] tls_cert and tls_key go together"),
    }
    for (i, w) in s.webhook.iter().enumerate() {
        let at = format!("[[server.webhook]] {} ({:?})", i + 1, w.name);
        tollguard_server::check_url(&w.url).map_err(|e| anyhow!("{at}: url: {e}"))?;
        let ca_file = w.ca_file.as_ref().map(|f| base.join(f));
        if ca_file.is_some() && !w.url.starts_with("https://") {
            bail!("{at}: ca_file is for https:// addresses, and url is {:?}", w.url);
        }
        if let Some(f) = &ca_file {
            // Read now, so that a wrong file stops the start instead of every delivery.
            tollguard_server::tls::client_config(Some(f)).map_err(|e| anyhow!("{at}: ca_file: {e:#}"))?;
        }
        if w.secret.len() < 16 {
            bail!("{at}: secret must be at least 16 characters");
        }
        let min_severity = severity(&at, w.min_severity.as_deref())?;
        options.webhooks.push(tollguard_server::Webhook {
            name: w.name.clone(),
            url: w.url.clone(),
            ca_file,
            secret: w.secret.clone(),
            min_severity,
            max_tries: w.max_tries.unwrap_or(8).max(1),
        });
    }
    if let Some(e) = &s.email {
        use tollguard_server::email::StartTls;
        let at = "[server.email]";
        let starttls = match e.starttls.as_deref().unwrap_or("required") {
            "required" => StartTls::Required,
            "opportunistic" => StartTls::Opportunistic,
            "never" => StartTls::Never,
            other => bail!("{at}: starttls must be required, opportunistic or never, found {other:?}"),
        };
        let ca_pem = match &e.ca_file {
            Some(f) => {
                let p = base.join(f);
                Some(
                    std::fs::read(&p)
                        .with_context(|| format!("{at} ca_file: cannot read {}", p.display()))?,
                )
            }
            None => None,
        };
        let quiet = tollguard_engine::policy::parse_duration(e.quiet.as_deref().unwrap_or("30m"))
            .map_err(|err| anyhow!("{at} quiet: {err}"))?;
        let daily_report = match &e.daily_report {
            None => None,
            Some(t) => Some(daily_time(t).map_err(|err| anyhow!("{at} daily_report: {err}"))?),
        };
        options.email = Some(tollguard_server::email::Email {
            host: e.smtp_host.clone(),
            port: e.smtp_port.unwrap_or(587),
            starttls,
            ca_pem,
            credentials: e.username.clone().map(|u| (u, e.password.clone().unwrap_or_default())),
            from: e.from.clone(),
            noc: e.noc.clone(),
            accounts: e.accounts.clone(),
            min_severity: severity(at, e.min_severity.as_deref())?,
            quiet: quiet.unsigned_abs(),
            public_url: e.public_url.clone(),
            max_tries: e.max_tries.unwrap_or(8).max(1),
            daily_report,
        });
    }
    if let Some(url) = &s.kamailio_rpc {
        tollguard_server::check_url(url).map_err(|e| anyhow!("[server] kamailio_rpc: {e}"))?;
        options.kamailio_rpc = Some(url.clone());
    }
    if let Some(f) = &s.kamailio_rpc_ca_file {
        if !s.kamailio_rpc.as_deref().is_some_and(|u| u.starts_with("https://")) {
            bail!("[server] kamailio_rpc_ca_file is for an https:// kamailio_rpc");
        }
        let f = base.join(f);
        tollguard_server::tls::client_config(Some(&f))
            .map_err(|e| anyhow!("[server] kamailio_rpc_ca_file: {e:#}"))?;
        options.kamailio_rpc_ca_file = Some(f);
    }
    if let Some(b) = s.max_body_bytes {
        options.max_body_bytes = b;
    }
    let duration = |field: &str, v: &Option<String>| -> Result<Option<jiff::SignedDuration>> {
        v.as_deref()
            .map(|d| {
                tollguard_engine::policy::parse_duration(d).map_err(|e| anyhow!("[server] {field}: {e}"))
            })
            .transpose()
    };
    if let Some(d) = duration("lost_call_after", &s.lost_call_after)? {
        options.lost_call_after = d;
    }
    if let Some(d) = duration("record_grace", &s.record_grace)? {
        options.record_grace = d;
    }
    match s.snapshot_every.as_deref().map(str::trim) {
        None => {}
        Some("off") => options.snapshot_every = None,
        Some(_) => {
            let d = duration("snapshot_every", &s.snapshot_every)?.expect("given");
            if d < jiff::SignedDuration::from_secs(10) {
                return Err(anyhow!(
                    "[server] snapshot_every: {} is too often (10s at least), or `off`",
                    s.snapshot_every.as_deref().unwrap_or("")
                ));
            }
            options.snapshot_every = Some(d.unsigned_abs());
        }
    }
    match s.retention.as_deref().map(str::trim) {
        None | Some("off") => options.retention = None,
        Some(_) => {
            let d = duration("retention", &s.retention)?.expect("given");
            tollguard_server::retention::check(d)
                .map_err(|e| anyhow!("[server] retention: {e} (e.g. \"400d\"), or `off`"))?;
            options.retention = Some(d);
        }
    }
    Ok(ServerSettings { listen: s.listen.clone().unwrap_or_else(|| "127.0.0.1:8090".into()), options })
}

#[cfg(test)]
mod tests {
    use super::{daily_time, server_settings, ServerSection};

    /// `[server]` settings read from TOML (files relative to `base`), or the error.
    fn server(toml_text: &str, base: &std::path::Path) -> Result<super::ServerSettings, String> {
        let s: ServerSection = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        server_settings(&s, base, &jiff::tz::TimeZone::UTC).map_err(|e| format!("{e:#}"))
    }

    #[test]
    fn webhook_and_kamailio_addresses_and_their_ca_files_are_checked_at_start() {
        let dir = std::env::temp_dir().join(format!("tollguard-config-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("empty.pem"), "no certificate here\n").unwrap();
        let hook = |url: &str, ca: &str| {
            format!("[[webhook]]\nname = \"noc\"\nurl = \"{url}\"\nsecret = \"0123456789abcdef\"\n{ca}")
        };
        let ok = server(&hook("https://hooks.noc.example/t", ""), &dir).unwrap();
        assert_eq!(ok.options.webhooks[0].url, "https://hooks.noc.example/t");
        for (text, says) in [
            (hook("ftp://x/y", ""), "not an http:// or https:// address"),
            (hook("https://x:port/y", ""), "bad port"),
            (hook("http://x/y", "ca_file = \"empty.pem\""), "ca_file is for https:// addresses"),
            (hook("https://x/y", "ca_file = \"empty.pem\""), "empty.pem: no certificate in it"),
            (hook("https://x/y", "ca_file = \"missing.pem\""), "cannot read"),
            ("kamailio_rpc = \"udp://127.0.0.1:5060\"".to_string(), "kamailio_rpc: not an http"),
            (
                "kamailio_rpc = \"http://127.0.0.1:5071/RPC\"\nkamailio_rpc_ca_file = \"empty.pem\""
                    .to_string(),
                "kamailio_rpc_ca_file is for an https:// kamailio_rpc",
            ),
        ] {
            let e = server(&text, &dir).err().unwrap_or_else(|| panic!("accepted: {text}"));
            assert!(e.contains(says), "{text}: {e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn snapshots_every_ten_minutes_and_nothing_deleted_unless_set_otherwise() {
        let dir = std::env::temp_dir();
        let every = |text: &str| server(text, &dir).map(|s| s.options.snapshot_every);
        assert_eq!(every(""), Ok(Some(std::time::Duration::from_secs(600))));
        assert_eq!(every("snapshot_every = \"1h\""), Ok(Some(std::time::Duration::from_secs(3600))));
        assert_eq!(every("snapshot_every = \"off\""), Ok(None));
        let keep = |text: &str| server(text, &dir).map(|s| s.options.retention);
        assert_eq!(keep(""), Ok(None));
        assert_eq!(keep("retention = \"off\""), Ok(None));
        assert_eq!(keep("retention = \"400d\""), Ok(Some(jiff::SignedDuration::from_hours(400 * 24))));
        for (text, says) in [
            ("retention = \"30d\"", "[server] retention: 30 days is shorter than the 91 days"),
            ("retention = \"a year\"", "[server] retention: not a duration"),
        ] {
            let e = keep(text).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
        for (text, says) in
            [("snapshot_every = \"5s\"", "too often"), ("snapshot_every = \"soon\"", "snapshot_every")]
        {
            let e = every(text).err().unwrap_or_else(|| panic!("accepted: {text}"));
            assert!(e.contains(says), "{text}: {e}");
        }
    }

    #[test]
    fn business_hours_come_from_the_account_or_the_defaults() {
        use tollguard_engine::policy::{BusinessHours, Holiday, WeeklyHours};
        let cfg: super::ConfigFile = toml::from_str(
            "[defaults]\nbusiness_hours = \"Mon-Fri 08:00-18:00\"\nholidays = [\"2026-12-25\"]\n\
             [accounts.a]\nholidays = []\n[accounts.b]\nbusiness_hours = \"Sat 10:00-11:00\"\n[accounts.c]\n",
        )
        .unwrap();
        let c = super::calendars(&cfg.defaults, &cfg.accounts).unwrap();
        let (office, sat) = (
            WeeklyHours::parse("Mon-Fri 08:00-18:00").unwrap(),
            WeeklyHours::parse("Sat 10:00-11:00").unwrap(),
        );
        let christmas = [Holiday::parse("2026-12-25").unwrap()];
        assert_eq!(c.of("a"), Some(&BusinessHours::new(office.clone(), &[])));
        assert_eq!(c.of("b"), Some(&BusinessHours::new(sat, &christmas)));
        assert_eq!(c.of("c"), Some(&BusinessHours::new(office.clone(), &christmas)));
        assert_eq!(c.of("unlisted"), Some(&BusinessHours::new(office, &christmas)));
        let cfg: super::ConfigFile = toml::from_str("[accounts.a]\nholidays = [\"2026-12-25\"]\n").unwrap();
        let e = super::calendars(&cfg.defaults, &cfg.accounts).unwrap_err().to_string();
        assert_eq!(e, "[accounts.a] holidays need business_hours (here or in [defaults])");
        let cfg: super::ConfigFile = toml::from_str("[accounts.a]\ntimezone = \"UTC\"\n").unwrap();
        assert_eq!(super::calendars(&cfg.defaults, &cfg.accounts).unwrap(), Default::default());
    }

    #[test]
    fn zones_countries_and_dialling_plans_are_refused_with_the_file_and_line() {
        let dir = tempfile::Builder::new().prefix("tollguard-config-").tempdir().unwrap();
        let path = dir.path().join("tollguard.toml");
        let read = |text: &str| {
            std::fs::write(&path, text).unwrap();
            super::read(&path).map(|_| ()).map_err(|e| format!("{e:#}"))
        };
        let file = path.display().to_string();
        let good = "[defaults]\ncountry = \"NL\"\ntimezone = \"Europe/Amsterdam\"\ncurrency = \"EUR\"\n\
                    [dialplans.office]\ncountry = \"BE\"\n[accounts.acme]\ndialplan = \"office\"\n\
                    timezone = \"Europe/Brussels\"\n";
        assert_eq!(read(good), Ok(()));
        // (the typo, the line it is on, what the message says)
        let cases = [
            (
                "\"Europe/Amsterdam\"\ncurrency",
                "\"Europe/Amsterdm\"\ncurrency",
                3,
                "unknown time zone \"Europe/Amsterdm\"",
            ),
            ("\"NL\"", "\"NX\"", 2, "unknown country \"NX\""),
            ("\"EUR\"", "\"euro\"", 4, "euro"),
            ("\"Europe/Brussels\"", "\"Europe/Brussel\"", 9, "unknown time zone \"Europe/Brussel\""),
            ("\"BE\"", "\"BX\"", 5, "unknown country \"BX\""),
        ];
        for (from, to, line, says) in cases {
            let e = read(&good.replacen(from, to, 1)).unwrap_err();
            assert!(e.starts_with(&format!("{file}: TOML parse error at line {line},")), "{to}: {e}");
            assert!(e.contains(says), "{to}: {e}");
        }
        let e = read(&good.replace("dialplan = \"office\"", "dialplan = \"ofice\"")).unwrap_err();
        assert_eq!(
            e,
            format!(
                "{file}:8: [accounts.acme] dialplan \"ofice\" is not defined (no [dialplans.ofice] table)"
            )
        );
        // A flag is named as the flag, not as the file.
        let over = super::Overrides { tz: Some("Europe/Amsterdm".into()), ..Default::default() };
        let e = super::build(None, &over).err().map(|e| format!("{e:#}")).unwrap();
        assert!(e.starts_with("--tz: unknown time zone \"Europe/Amsterdm\""), "{e}");
        let over = super::Overrides { country: Some("NX".into()), ..Default::default() };
        let e = super::build(None, &over).err().map(|e| format!("{e:#}")).unwrap();
        assert_eq!(e, "--country: unknown country \"NX\" (ISO 3166 alpha-2, e.g. NL)");
    }

    #[test]
    fn a_daily_report_time_is_hh_mm() {
        assert_eq!(daily_time("07:00").unwrap(), jiff::civil::time(7, 0, 0, 0));
        assert_eq!(daily_time("23:59").unwrap(), jiff::civil::time(23, 59, 0, 0));
        for bad in ["7:00", "24:00", "07:60", "0700", "07:00:00", "seven"] {
            let e = daily_time(bad).unwrap_err().to_string();
            assert!(e.contains("HH:MM") && e.contains(bad), "{bad}: {e}");
        }
    }
}
