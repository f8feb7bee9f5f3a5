//! What the server's test files share: a rater, a temporary folder, a test certificate.
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

/// An empty folder of its own for a test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tollguard-{name}-{}", std::process::id()));
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
