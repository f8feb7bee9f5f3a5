//! Generic CSV with a header: arbitrary bytes read with three fixed column mappings, all naming
//! columns of the cdr-stats import schema (so that file is a useful seed):
//!
//! 0. the mapping of `crates/tollguard/tests/golden/cdr-stats.toml`: local times, `duration`
//!    and `billsec` columns, Q.850 cause numbers;
//! 1. epoch times, no `duration` or `billsec` column (both derived from start, answer and end),
//!    no `call_id` column (the id is derived from the row's hash);
//! 2. RFC 3339 times with a `duration` column and billsec derived from answer and end, with `;`
//!    as the delimiter.
//!
//! Checks the shared reader invariants (see `common`), plus: a derived id is `cdr-` and 16 hex
//! digits; when there is no end column the end is start + duration.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;
use tollguard_ingest::generic::{GenericMapping, TimeFormat};
use tollguard_ingest::{Format, ReadOptions};

fn base() -> GenericMapping {
    GenericMapping {
        call_id: Some("callid".into()),
        account: "accountcode".into(),
        source: "caller_id_number".into(),
        dialled: "destination_number".into(),
        start: "starting_date".into(),
        answer: None,
        end: None,
        duration: Some("duration".into()),
        billsec: Some("billsec".into()),
        disposition: Some("hangup_cause_id".into()),
        context: None,
        channel: None,
        dst_channel: None,
        time_format: TimeFormat::Local,
        delimiter: ',',
    }
}

static OPTIONS: LazyLock<[ReadOptions; 3]> = LazyLock::new(|| {
    let tz = jiff::tz::TimeZone::get("Europe/Madrid").expect("bundled tzdb");
    let m0 = base();
    let m1 = GenericMapping {
        call_id: None,
        answer: Some("answersec".into()),
        end: Some("progresssec".into()),
        duration: None,
        billsec: None,
        disposition: Some("hangup_cause".into()),
        context: Some("channel".into()),
        channel: Some("switch".into()),
        dst_channel: Some("dialcode".into()),
        time_format: TimeFormat::Epoch,
        ..base()
    };
    let m2 = GenericMapping {
        answer: Some("answersec".into()),
        end: Some("waitsec".into()),
        billsec: None,
        time_format: TimeFormat::Rfc3339,
        delimiter: ';',
        ..base()
    };
    [m0, m1, m2].map(|m| ReadOptions { tz: tz.clone(), generic: Some(m) })
});

fuzz_target!(|data: &[u8]| {
    for (i, options) in OPTIONS.iter().enumerate() {
        let mapping = options.generic.as_ref().unwrap();
        common::drain(Format::Generic, data, options, |cdr| {
            if mapping.call_id.is_none() {
                let hex = cdr.call_id.strip_prefix("cdr-").unwrap_or_else(|| {
                    panic!("mapping {i}: derived id {:?} does not start with cdr-", cdr.call_id)
                });
                assert!(
                    hex.len() == 16 && hex.bytes().all(|c| c.is_ascii_hexdigit()),
                    "mapping {i}: derived id {:?}",
                    cdr.call_id
                );
            }
            if mapping.end.is_none() {
                let end = cdr.end.expect("the end is derived when no end column is mapped");
                assert_eq!(
                    cdr.start.duration_until(end),
                    jiff::SignedDuration::from_secs(i64::from(cdr.duration_s)),
                    "mapping {i}: end is not start + duration"
                );
            }
        });
    }
});
