//! What every CDR reader target checks: read the input to its end with `read_into`, and check
//! the invariants the `tollguard-ingest` documentation promises for every reader.
//!
//! - no panic, whatever the bytes;
//! - reading ends: `Ok(false)` or `Err(ReadError::Io)` within [`MAX_READS`] calls (a reader
//!   that never advances is a failure, not a hang);
//! - after `Ok(false)`, reading again still gives `Ok(false)`;
//! - every `RowError` names a line from 1 to the number of lines of the input, and a reason;
//! - every `Cdr` returned names such a line too, has a call id, and `billsec <= duration_s`;
//! - `bytes_read()` never goes back and never passes the input's length.

#![allow(dead_code)]

use std::io::{self, Read};
use std::sync::Arc;
use tollguard_core::cdr::Cdr;
use tollguard_ingest::{from_reader, Format, ReadError, ReadOptions};

/// Calls of `read_into` after which a reader that has not ended is reported as stuck. Every call
/// consumes at least one line, and inputs are at most a few kB (libFuzzer's `-max_len`), so a
/// sound reader ends long before this.
pub const MAX_READS: usize = 100_000;

/// Lines of the input as the readers count them (one-based, `\n` ends a line).
fn lines(data: &[u8]) -> u64 {
    data.iter().filter(|&&b| b == b'\n').count() as u64 + 1
}

/// Reads all of `data` in `format`, checking the shared invariants, and `check` on every record.
/// Returns (records, row errors).
pub fn drain(format: Format, data: &[u8], options: &ReadOptions, mut check: impl FnMut(&Cdr)) -> (u64, u64) {
    let max_line = lines(data);
    let name: Arc<str> = Arc::from("fuzz-input");
    let input: Box<dyn Read> = Box::new(io::Cursor::new(data.to_vec()));
    let mut reader = match from_reader(format, name, input, options) {
        Ok(r) => r,
        // Refused when the reader is made (a header without the needed columns, a CMR file...).
        Err(ReadError::Io { .. }) => return (0, 0),
        Err(ReadError::Row(e)) => {
            assert!(e.line >= 1 && e.line <= max_line, "row error at open names line {}: {e}", e.line);
            return (0, 0);
        }
    };
    let mut cdr = Cdr::default();
    let (mut ok, mut bad) = (0u64, 0u64);
    let mut last_bytes = 0u64;
    for _ in 0..MAX_READS {
        let result = reader.read_into(&mut cdr);
        let bytes = reader.bytes_read();
        assert!(bytes >= last_bytes, "bytes_read went back from {last_bytes} to {bytes}");
        assert!(bytes <= data.len() as u64, "bytes_read {bytes} is past the input's {} bytes", data.len());
        last_bytes = bytes;
        match result {
            Ok(true) => {
                ok += 1;
                assert!(
                    cdr.line >= 1 && cdr.line <= max_line,
                    "record names line {} of a {max_line}-line input",
                    cdr.line
                );
                assert!(!cdr.call_id.is_empty(), "record on line {} has no call id", cdr.line);
                assert!(
                    cdr.billsec <= cdr.duration_s,
                    "record on line {}: billsec {} > duration {}",
                    cdr.line,
                    cdr.billsec,
                    cdr.duration_s
                );
                check(&cdr);
            }
            Ok(false) => {
                assert!(
                    matches!(reader.read_into(&mut cdr), Ok(false)),
                    "reading again after the end did not give Ok(false)"
                );
                return (ok, bad);
            }
            Err(ReadError::Row(e)) => {
                bad += 1;
                assert!(e.line >= 1, "row error with line 0: {e}");
                assert!(
                    e.line <= max_line,
                    "row error names line {} of a {max_line}-line input: {e}",
                    e.line
                );
                assert!(!e.reason.is_empty(), "row error without a reason on line {}", e.line);
            }
            Err(ReadError::Io { .. }) => return (ok, bad),
        }
    }
    panic!(
        "reader did not end after {MAX_READS} reads ({ok} records, {bad} row errors) of {} bytes",
        data.len()
    );
}

/// Options with a zone that has daylight saving time (Europe/Amsterdam), so local times meet
/// gaps and overlaps. Built once.
pub fn dst_options() -> &'static ReadOptions {
    static OPTIONS: std::sync::LazyLock<ReadOptions> = std::sync::LazyLock::new(|| ReadOptions {
        tz: jiff::tz::TimeZone::get("Europe/Amsterdam").expect("the bundled tzdb has Europe/Amsterdam"),
        generic: None,
    });
    &OPTIONS
}
