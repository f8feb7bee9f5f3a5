//! Alerts by e-mail over SMTP (lettre; STARTTLS with rustls and ring): a plain-text and an HTML
//! part saying what happened, what was done, and how to undo it. Sent from the same persisted
//! outbox as webhooks (target `email`), to the carrier's NOC and to the account's own contact.
//! The daily traffic report goes the same way (target `email-daily`, [`crate::daily`]).

use lettre::message::{header::ContentType, Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{Message, SmtpTransport, Transport};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;
use tollguard_engine::Severity;

/// How STARTTLS is used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartTls {
    /// Required: no mail over a connection that did not upgrade.
    Required,
    /// Used when the server offers it.
    Opportunistic,
    /// Never (a local relay on loopback).
    Never,
}

/// Where and to whom alert e-mails go.
#[derive(Clone, Debug)]
pub struct Email {
    /// SMTP server host name (also the name the TLS certificate must carry).
    pub host: String,
    /// Port (587 for submission, 25 for a relay).
    pub port: u16,
    /// STARTTLS use.
    pub starttls: StartTls,
    /// Extra trusted root (PEM), for a relay with its own certificate authority.
    pub ca_pem: Option<Vec<u8>>,
    /// Login, if the server wants one.
    pub credentials: Option<(String, String)>,
    /// The sender.
    pub from: String,
    /// The carrier's NOC: every alert of at least `min_severity`.
    pub noc: Vec<String>,
    /// Each account's own contact.
    pub accounts: BTreeMap<String, Vec<String>>,
    /// The least severe alert mailed.
    pub min_severity: Severity,
    /// A rule that alerted an account is not mailed again at the same or a lower severity for
    /// this long (a critical after a warning always goes).
    pub quiet: Duration,
    /// The address of `tollguard serve` as people reach it, for the links in the mail.
    pub public_url: String,
    /// Tries before a message is dead-lettered.
    pub max_tries: u32,
    /// When each account's daily report is mailed to its contacts, in the account's zone (None:
    /// not mailed). See [`crate::daily`].
    pub daily_report: Option<jiff::civil::Time>,
}

fn text(v: &Value, k: &str) -> String {
    v[k].as_str().unwrap_or("").to_string()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// What was done, and the one command or link that undoes it.
fn done_and_undo(alert: &Value, base: &str) -> (String, String) {
    let account = text(alert, "account");
    match alert["action"].as_str().unwrap_or("alert") {
        "block" => (
            "tollguard blocked the account's calls to the destinations of this rule.".into(),
            format!(
                "If this is legitimate traffic, lift the block:\n  curl -X POST -H 'Authorization: Bearer <token>' {base}/v1/accounts/{account}/unblock"
            ),
        ),
        "cut" => (
            "tollguard ended the calls that were running to these destinations and refuses new ones until the limit's window allows them."
                .into(),
            format!("The account's usage and limits: {base}/v1/accounts/{account}"),
        ),
        "deny" => (
            "tollguard refused the call.".into(),
            format!(
                "If this is legitimate traffic, close the incident as a false positive with an allowance:\n  {base}/v1/incidents?account={account}"
            ),
        ),
        _ => (
            "Nothing was blocked yet: this is a warning.".into(),
            format!("The account's usage and limits: {base}/v1/accounts/{account}"),
        ),
    }
}

/// The message for an alert, to `to`.
pub fn message(cfg: &Email, alert: &Value, to: &[String]) -> Result<Message, String> {
    let severity = text(alert, "severity");
    let account = text(alert, "account");
    let rule = text(alert, "rule");
    let (done, undo) = done_and_undo(alert, cfg.public_url.trim_end_matches('/'));
    let plain = format!(
        "tollguard {severity} alert on account {account}\n\nWhat happened: {}\nRule: {rule}\nWhen: {}\nExtension: {}\nCall: {}\n\nWhat was done: {done}\n\n{undo}\n",
        text(alert, "message"),
        text(alert, "time"),
        text(alert, "extension"),
        text(alert, "call_id"),
    );
    let html = format!(
        "<!doctype html><html><body style=\"font-family: sans-serif\">\
         <h2>tollguard {} alert on account {}</h2>\
         <p><b>What happened:</b> {}</p>\
         <table><tr><td>Rule</td><td><code>{}</code></td></tr><tr><td>When</td><td>{}</td></tr>\
         <tr><td>Extension</td><td>{}</td></tr><tr><td>Call</td><td>{}</td></tr></table>\
         <p><b>What was done:</b> {}</p><pre>{}</pre></body></html>",
        escape(&severity),
        escape(&account),
        escape(&text(alert, "message")),
        escape(&rule),
        escape(&text(alert, "time")),
        escape(&text(alert, "extension")),
        escape(&text(alert, "call_id")),
        escape(&done),
        escape(&undo),
    );
    let from: Mailbox = cfg.from.parse().map_err(|e| format!("from {:?}: {e}", cfg.from))?;
    let mut b = Message::builder()
        .from(from)
        .subject(format!("[tollguard] {severity}: {rule} on {account}"))
        .message_id(None);
    for t in to {
        b = b.to(t.parse().map_err(|e| format!("recipient {t:?}: {e}"))?);
    }
    b.multipart(
        MultiPart::alternative()
            .singlepart(SinglePart::builder().header(ContentType::TEXT_PLAIN).body(plain))
            .singlepart(SinglePart::builder().header(ContentType::TEXT_HTML).body(html)),
    )
    .map_err(|e| e.to_string())
}

/// The recipients of an alert: the NOC and the account's contact.
pub fn recipients(cfg: &Email, account: &str) -> Vec<String> {
    let mut to = cfg.noc.clone();
    to.extend(cfg.accounts.get(account).into_iter().flatten().cloned());
    to.sort();
    to.dedup();
    to
}

/// Sends one alert (blocking).
pub fn send(cfg: &Email, alert: &Value) -> Result<(), String> {
    let to = recipients(cfg, &text(alert, "account"));
    if to.is_empty() {
        return Ok(());
    }
    deliver(cfg, &message(cfg, alert, &to)?)
}

/// The daily report's mail to `to`: a plain-text summary, the report as HTML, and its CSV
/// attached.
pub fn daily_message(
    cfg: &Email,
    r: &crate::report::DailyReport,
    html: String,
    csv: String,
    to: &[String],
) -> Result<Message, String> {
    let base = cfg.public_url.trim_end_matches('/');
    let above: Vec<String> = r
        .hours
        .iter()
        .filter(|h| h.above_usual)
        .map(|h| format!("{:02}:00 ({} {})", h.hour, r.currency, h.spend))
        .collect();
    let mut plain = format!(
        "tollguard daily report: account {} on {} ({})\n\nCalls: {} ({} answered, {} denied), {} billed seconds\nSpend: {} {}\n",
        r.account, r.date, r.zone, r.calls, r.answered, r.denied, r.billsec, r.currency, r.spend
    );
    plain.push_str(&match (above.is_empty(), r.history_days) {
        (_, 0) => "Usual band: not enough history yet.\n".to_string(),
        (true, _) => "Every hour within its usual band.\n".to_string(),
        (false, _) => format!("Hours above their usual band: {}\n", above.join(", ")),
    });
    if !r.new_countries.is_empty() {
        plain.push_str(&format!("Countries new to the account: {}\n", r.new_countries.join(", ")));
    }
    plain.push_str(&format!("Alerts: {}; actions: {}\n", r.alerts.len(), r.actions.len()));
    for l in &r.limits {
        plain
            .push_str(&format!("  {}: {} alert(s), first at {}: {}\n", l.rule, l.alerts, l.first, l.figures));
    }
    plain.push_str(&format!(
        "\nThe full report (charts, destinations, every alert): {base}/ui/accounts/{}/daily?date={}\n\
         The figures as CSV are attached.\n",
        r.account, r.date
    ));
    let from: Mailbox = cfg.from.parse().map_err(|e| format!("from {:?}: {e}", cfg.from))?;
    let alerts = match r.alerts.len() {
        0 => String::new(),
        n => format!(", {n} alert{}", if n == 1 { "" } else { "s" }),
    };
    let mut b = Message::builder()
        .from(from)
        .subject(format!(
            "[tollguard] daily report {} {}: {} {}, {} calls{alerts}",
            r.account, r.date, r.currency, r.spend, r.calls
        ))
        .message_id(None);
    for t in to {
        b = b.to(t.parse().map_err(|e| format!("recipient {t:?}: {e}"))?);
    }
    let csv_type = ContentType::parse("text/csv; charset=utf-8").map_err(|e| e.to_string())?;
    b.multipart(
        MultiPart::mixed()
            .multipart(
                MultiPart::alternative()
                    .singlepart(SinglePart::builder().header(ContentType::TEXT_PLAIN).body(plain))
                    .singlepart(SinglePart::builder().header(ContentType::TEXT_HTML).body(html)),
            )
            .singlepart(
                Attachment::new(format!("tollguard-{}-{}.csv", r.account, r.date)).body(csv, csv_type),
            ),
    )
    .map_err(|e| e.to_string())
}

/// Sends a message over SMTP as configured (blocking).
pub fn deliver(cfg: &Email, msg: &Message) -> Result<(), String> {
    let mut params = TlsParameters::builder(cfg.host.clone());
    if let Some(pem) = &cfg.ca_pem {
        params = params.add_root_certificate(Certificate::from_pem(pem).map_err(|e| format!("ca: {e}"))?);
    }
    let params = params.build_rustls().map_err(|e| format!("TLS: {e}"))?;
    let tls = match cfg.starttls {
        StartTls::Required => Tls::Required(params),
        StartTls::Opportunistic => Tls::Opportunistic(params),
        StartTls::Never => Tls::None,
    };
    let mut t = SmtpTransport::builder_dangerous(&cfg.host)
        .port(cfg.port)
        .tls(tls)
        .timeout(Some(Duration::from_secs(10)));
    if let Some((u, p)) = &cfg.credentials {
        t = t.credentials(lettre::transport::smtp::authentication::Credentials::new(u.clone(), p.clone()));
    }
    t.build().send(msg).map(|_| ()).map_err(|e| e.to_string())
}
