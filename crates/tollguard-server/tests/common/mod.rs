//! What the server's test files share: a rater, a temporary folder, a test certificate, a
//! request through the router.
#![allow(dead_code)] // each test file uses its own part

use jiff::tz::TimeZone;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use tollguard_core::money::Currency;
use tollguard_core::numbering::{DialPlan, Numbering};
use tollguard_core::rater::{AccountSetup, DirectionRules, Rater};
use tollguard_core::rating::{RateDeck, TimeBands};

const DECK: &str =
    "prefix,destination,rate_per_minute,connection_fee,initial_increment_s,subsequent_increment_s
31,Netherlands,0.0120,0,60,60
670,East Timor,1.4500,0,60,60
";

/// Dutch dialling, Amsterdam time, a deck with the Netherlands and East Timor.
pub fn rater() -> Arc<Rater> {
    let deck =
        RateDeck::parse("deck.csv", "deck", DECK.as_bytes(), &TimeBands::default(), Currency::EUR).unwrap();
    let default = AccountSetup {
        plan: Arc::new(DialPlan::for_country("NL").unwrap()),
        tz: TimeZone::get("Europe/Amsterdam").unwrap(),
    };
    Arc::new(
        Rater::new(
            Arc::new(Numbering::builtin().clone()),
            vec![deck],
            TimeBands::default(),
            HashMap::new(),
            default,
            DirectionRules::default(),
        )
        .unwrap(),
    )
}

/// An empty folder of its own for a test. Integration tests have a folder from Cargo for their
/// files (`target/tmp`): each run replaces the last one's, and nothing is left behind in the
/// system's temporary folder. The crate's unit tests, which share this module, have none: theirs
/// is in the system's, and they remove it.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = match option_env!("CARGO_TARGET_TMPDIR") {
        Some(tmp) => Path::new(tmp).join(env!("CARGO_PKG_NAME")).join(name),
        None => std::env::temp_dir().join(format!("tollguard-{name}-{}", std::process::id())),
    };
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A self-signed certificate for `localhost` and its key, made by openssl in `dir`; `None` (the
/// test says it is skipped) when openssl cannot make one.
pub fn test_cert(dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
        ])
        .args(["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output();
    if made.as_ref().is_ok_and(|o| o.status.success()) {
        Some((cert, key))
    } else {
        eprintln!("skipped: openssl could not make a test certificate ({made:?})");
        None
    }
}

/// A request through `app` with a bearer token (and a JSON body): the status and the JSON answer
/// (`null` when it is not JSON).
pub async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    token: &str,
    body: Option<serde_json::Value>,
) -> (axum::http::StatusCode, serde_json::Value) {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let mut req = axum::http::Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {token}"));
    let body = match body {
        Some(v) => {
            req = req.header("content-type", "application/json");
            axum::body::Body::from(v.to_string())
        }
        None => axum::body::Body::empty(),
    };
    let resp = app.clone().oneshot(req.body(body).unwrap()).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
}
