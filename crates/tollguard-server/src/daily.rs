//! The daily traffic report by e-mail: each morning, at `[server.email] daily_report` in the
//! account's own zone, yesterday's report goes to the account's contacts
//! (`[server.email.accounts]`).
//!
//! A report is queued in the persisted outbox (target `email-daily`) in the same transaction as
//! the checkpoint `daily-mail:<account>` that says which day was queued last, so a restart neither
//! sends a day twice nor loses one that was queued. The report is made when it is sent (the day is
//! over by then), and retried with the alert mails' backoff. A service that was down over a
//! morning sends the latest day when it is back, not every day it missed.

use crate::{AppState, Write};
use jiff::civil::Date;
use jiff::Timestamp;
use std::sync::Arc;

/// The checkpoint naming the last day queued for `account`.
pub(crate) fn checkpoint(account: &str) -> String {
    format!("daily-mail:{account}")
}

/// The day whose report is due for an account at local time `local`, sent at `at` each morning:
/// yesterday, once the morning's time has come.
pub(crate) fn due_day(local: jiff::civil::DateTime, at: jiff::civil::Time) -> Option<Date> {
    if local.time() < at {
        return None;
    }
    local.date().yesterday().ok()
}

/// Queues the daily reports due at `now`; returns how many.
pub(crate) async fn queue_due(state: &Arc<AppState>, now: Timestamp) -> usize {
    let Some(cfg) = &state.opts.email else { return 0 };
    let Some(at) = cfg.daily_report else { return 0 };
    let rater = state.core.lock().expect("engine lock").engine.rater().clone();
    let mut queued = 0;
    for (account, to) in &cfg.accounts {
        if to.is_empty() {
            continue;
        }
        let Some(day) = due_day(rater.account(account).tz.to_datetime(now), at) else { continue };
        let last = state.daily_queued.lock().expect("daily lock").get(account).copied();
        let last = match last {
            Some(d) => Some(d),
            None => {
                let key = checkpoint(account);
                let stored = state.read(move |r| r.checkpoint(&key)).await.ok().flatten();
                stored.and_then(|s| s.parse::<Date>().ok())
            }
        };
        if last.is_some_and(|d| d >= day) {
            state.daily_queued.lock().expect("daily lock").insert(account.clone(), last.unwrap_or(day));
            continue;
        }
        state.send(Write::DailyMail { account: account.clone(), date: day.to_string() });
        state.daily_queued.lock().expect("daily lock").insert(account.clone(), day);
        queued += 1;
    }
    queued
}

/// Makes and sends one queued report (blocking: reads the store, talks SMTP).
pub(crate) fn send(state: &AppState, body: &str, now: Timestamp) -> Result<(), String> {
    let Some(cfg) = &state.opts.email else { return Err("no [server.email] in the configuration".into()) };
    let v: serde_json::Value = serde_json::from_str(body).map_err(|e| format!("queued report: {e}"))?;
    let account = v["account"].as_str().unwrap_or("");
    let date: Date =
        v["date"].as_str().unwrap_or("").parse().map_err(|e| format!("queued report date: {e}"))?;
    let to = cfg.accounts.get(account).cloned().unwrap_or_default();
    if to.is_empty() {
        // The contact was removed from the configuration since: nobody to send to.
        return Ok(());
    }
    let rater = state.core.lock().expect("engine lock").engine.rater().clone();
    let (report, html, csv) = {
        let store = state.reader.lock().expect("reader lock");
        let r =
            crate::report::daily_report(&store, &rater, account, date, now).map_err(|e| format!("{e:#}"))?;
        let html = crate::report::daily_html(&r).map_err(|e| format!("{e:#}"))?;
        let csv = crate::report::daily_csv(&r).map_err(|e| format!("{e:#}"))?;
        (r, html, csv)
    };
    let msg = crate::email::daily_message(cfg, &report, html, csv, &to)?;
    crate::email::deliver(cfg, &msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yesterday_is_due_from_the_morning_time_on() {
        let at = jiff::civil::time(7, 0, 0, 0);
        let d = |s: &str| s.parse::<jiff::civil::DateTime>().unwrap();
        assert_eq!(due_day(d("2011-06-14T06:59:59"), at), None);
        assert_eq!(due_day(d("2011-06-14T07:00:00"), at), Some(jiff::civil::date(2011, 6, 13)));
        assert_eq!(due_day(d("2011-06-14T23:59:00"), at), Some(jiff::civil::date(2011, 6, 13)));
        // Over the year's end.
        assert_eq!(due_day(d("2012-01-01T08:00:00"), at), Some(jiff::civil::date(2011, 12, 31)));
    }
}
