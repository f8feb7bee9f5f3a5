//! Alerts posted to webhooks: JSON body, HMAC-SHA256 signature with a timestamp, a persisted
//! outbox (queued in the same transaction as the alert, so a restart loses none), retries with
//! exponential backoff, dead-letter after a number of tries, visible at `GET /v1/deliveries`.
//!
//! Signature: `X-Tollguard-Timestamp: <Unix seconds>` and
//! `X-Tollguard-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`. A receiver
//! recomputes it and refuses a timestamp far from its clock (replays).

use crate::{auth, flush, ns, ApiError, ApiResult, AppState, Write};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::Json;
use hmac::{Hmac, Mac};
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::json;
use sha2::Sha256;
use std::sync::Arc;
use std::time::Duration;
use tollguard_engine::Severity;

/// A webhook alerts are posted to.
#[derive(Clone, Debug)]
pub struct Webhook {
    /// Its name (shown in deliveries).
    pub name: String,
    /// `https://host[:port]/path` (the certificate checked against Mozilla's roots and
    /// `ca_file`), or `http://host[:port]/path` on a trusted network.
    pub url: String,
    /// A PEM file of further certificates to trust for this receiver (a private CA, or its own
    /// self-signed certificate).
    pub ca_file: Option<std::path::PathBuf>,
    /// The HMAC key.
    pub secret: String,
    /// Alerts of at least this severity.
    pub min_severity: Severity,
    /// Tries before a message is dead-lettered.
    pub max_tries: u32,
}

/// The signature header's value for a body sent at `timestamp`.
pub fn signature(secret: &str, timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(format!("{timestamp}.{body}").as_bytes());
    let bytes = mac.finalize().into_bytes();
    format!("sha256={}", crate::auth::hex(&bytes))
}

/// The wait before try `n + 1` after `n` failed tries: 2^n seconds, at most an hour.
pub fn backoff(tries: u32) -> Duration {
    Duration::from_secs(1u64 << tries.min(12)).min(Duration::from_secs(3600))
}

fn post(hook: &Webhook, body: &str, now: i64) -> Result<(), String> {
    let headers = format!(
        "User-Agent: tollguard\r\nX-Tollguard-Timestamp: {now}\r\nX-Tollguard-Signature: {}\r\n",
        signature(&hook.secret, now, body)
    );
    let tls = match &hook.ca_file {
        Some(f) => Some(crate::tls::client_config(Some(f)).map_err(|e| format!("{e:#}"))?),
        None => None,
    };
    let (status, _) = crate::http_post(&hook.url, &headers, body, Duration::from_secs(5), tls.as_ref())?;
    let code: u16 = status.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    if (200..300).contains(&code) {
        Ok(())
    } else {
        Err(format!("answered {}", if status.is_empty() { "nothing" } else { &status }))
    }
}

/// One delivery round: every due message tried once, outcomes stored before the next round.
pub(crate) async fn deliver(state: &Arc<AppState>, now: Timestamp) -> usize {
    if state.opts.webhooks.is_empty() && state.opts.email.is_none() {
        return 0;
    }
    let _round = state.delivering.lock().await;
    let now_ns = ns(now);
    let Ok(due) = state.read(move |r| r.outbox_due(now_ns, 100)).await else { return 0 };
    let n = due.len();
    for item in due {
        if item.target == "email-daily" {
            let (st, body) = (state.clone(), item.body.clone());
            let result = tokio::task::spawn_blocking(move || crate::daily::send(&st, &body, now))
                .await
                .unwrap_or_else(|e| Err(e.to_string()));
            let max = state.opts.email.as_ref().map_or(1, |c| c.max_tries);
            record_try(state, &item, result, now, max);
            continue;
        }
        if item.target == "email" {
            if let Some(cfg) = state.opts.email.clone() {
                let alert: serde_json::Value = serde_json::from_str(&item.body).unwrap_or_default();
                let result = tokio::task::spawn_blocking(move || crate::email::send(&cfg, &alert))
                    .await
                    .unwrap_or_else(|e| Err(e.to_string()));
                let max = state.opts.email.as_ref().map_or(1, |c| c.max_tries);
                record_try(state, &item, result, now, max);
                continue;
            }
        }
        let Some(hook) = state.opts.webhooks.iter().find(|w| w.name == item.target).cloned() else {
            state.send(Write::Tried {
                id: item.id,
                ok: false,
                error: format!("no webhook named {:?} in the configuration", item.target),
                next_ns: ns(now),
                dead: true,
            });
            continue;
        };
        let (body, max_tries) = (item.body.clone(), hook.max_tries);
        let result = tokio::task::spawn_blocking(move || post(&hook, &body, now.as_second()))
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
        record_try(state, &item, result, now, max_tries);
    }
    flush(state).await;
    n
}

/// Stores the outcome of a try: delivered, retried after the backoff, or dead.
fn record_try(
    state: &AppState,
    item: &tollguard_store::OutboxItem,
    result: Result<(), String>,
    now: Timestamp,
    max_tries: u32,
) {
    let tries = item.attempts as u32 + 1;
    let dead = result.is_err() && tries >= max_tries;
    let next = now + jiff::SignedDuration::try_from(backoff(tries)).unwrap_or_default();
    if let Err(e) = &result {
        eprintln!("warning: delivery to {} (alert outbox {}), try {tries}: {e}", item.target, item.id);
    }
    state.send(Write::Tried {
        id: item.id,
        ok: result.is_ok(),
        error: result.err().unwrap_or_default(),
        next_ns: ns(next),
        dead,
    });
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeliveriesQuery {
    state: Option<String>,
    limit: Option<u32>,
}

/// `GET /v1/deliveries?state=dead|pending|delivered`: the outbox, newest first (operator).
pub(crate) async fn deliveries(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<DeliveriesQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    auth::require(&s, &headers, auth::Need::Operator)?;
    let which = q.state.unwrap_or_else(|| "dead".into());
    if !matches!(which.as_str(), "dead" | "pending" | "delivered") {
        return Err(ApiError::bad(format!("state must be dead, pending or delivered, found {which:?}")));
    }
    flush(&s).await;
    let limit = q.limit.unwrap_or(100).min(1000);
    let rows = s.read(move |r| r.outbox_in(&which, limit)).await?;
    let items: Vec<serde_json::Value> = rows
        .into_iter()
        .map(|r| {
            json!({ "id": r.id, "webhook": r.target, "state": r.state, "tries": r.attempts,
                    "last_error": r.last_error,
                    "alert": serde_json::from_str::<serde_json::Value>(&r.body).unwrap_or_default() })
        })
        .collect();
    Ok(Json(json!({ "deliveries": items })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_and_backoff() {
        // HMAC-SHA256 of "1700000000.{}" with key "k", checked with Python's hmac module.
        assert_eq!(
            signature("k", 1_700_000_000, "{}"),
            "sha256=c6ef4734033cee2367414a0939385eca0397754aa7a59716da7463a9298b5146"
        );
        assert_eq!(backoff(1), Duration::from_secs(2));
        assert_eq!(backoff(20), Duration::from_secs(3600));
    }
}
