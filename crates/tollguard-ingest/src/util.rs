//! Small helpers shared by the readers.

use crate::{ReadError, RowError};
use jiff::Timestamp;
use std::io::Read;
use std::sync::Arc;
use tollguard_core::time::LocalTimes;

/// Replaces `out` with `bytes` decoded as UTF-8, invalid sequences replaced by U+FFFD, so a
/// stray Latin-1 byte in a caller name never loses the row.
pub(crate) fn set_lossy(out: &mut String, bytes: &[u8]) {
    out.clear();
    match std::str::from_utf8(bytes) {
        Ok(s) => out.push_str(s),
        Err(_) => out.push_str(&String::from_utf8_lossy(bytes)),
    }
}

/// Parses an unsigned count of seconds (surrounding blanks allowed).
pub(crate) fn parse_secs(field: &str, bytes: &[u8]) -> Result<u32, String> {
    let whole = |b: &[u8]| Some(b).filter(|b| (1..=9).contains(&b.len())).and_then(digits_value);
    // The usual field is digits only, with nothing to trim.
    whole(bytes).or_else(|| whole(trim(bytes))).ok_or_else(|| {
        format!("field {field}: not a whole number of seconds: {:?}", String::from_utf8_lossy(bytes))
    })
}

/// The value of a run of ASCII digits (at most 9: no overflow), or `None` if any byte is not one.
fn digits_value(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |n, &c| {
        let d = c.wrapping_sub(b'0');
        (d <= 9).then(|| n * 10 + d as u32)
    })
}

pub(crate) fn trim(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !c.is_ascii_whitespace()).map_or(start, |e| e + 1);
    &b[start..end]
}

/// Reads a local `YYYY-MM-DD HH:MM:SS` in the reader's zone; empty gives `None`.
pub(crate) fn local_time(
    times: &mut LocalTimes,
    field: &str,
    bytes: &[u8],
) -> Result<Option<Timestamp>, String> {
    // Nothing to trim at ASCII non-space ends (the usual field).
    let plain = |b: Option<&u8>| b.is_some_and(|b| !b.is_ascii_whitespace());
    let t = if plain(bytes.first()) && plain(bytes.last()) { bytes } else { trim(bytes) };
    if t.is_empty() {
        return Ok(None);
    }
    let bad = || {
        format!("field {field}: not a date-time YYYY-MM-DD HH:MM:SS: {:?}", String::from_utf8_lossy(bytes))
    };
    times.read(t).map(Some).ok_or_else(bad)
}

/// 64-bit FNV-1a, stable across releases and platforms: used for derived call ids.
pub(crate) struct Fnv64(u64);

impl Fnv64 {
    pub(crate) fn new() -> Fnv64 {
        Fnv64(0xcbf2_9ce4_8422_2325)
    }
    pub(crate) fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= b as u64;
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    pub(crate) fn finish(&self) -> u64 {
        self.0
    }
}

/// The CSV settings of the CSV readers: no header handling, any number of fields, and records
/// that end at `\n` only. With the csv crate's default terminator a record that ends in `\r\n`
/// is given the previous record's line number; here the `\r` stays at the end of the last field
/// and is trimmed with the blanks, and a line holding nothing but blanks is skipped
/// ([`is_blank`]).
pub(crate) fn csv_builder() -> csv::ReaderBuilder {
    let mut b = csv::ReaderBuilder::new();
    b.has_headers(false).flexible(true).terminator(csv::Terminator::Any(b'\n')).buffer_capacity(256 * 1024);
    b
}

/// A line with nothing but blanks (e.g. the `\r` of an empty CRLF line).
pub(crate) fn is_blank(record: &csv::ByteRecord) -> bool {
    record.len() <= 1 && trim(record.get(0).unwrap_or_default()).is_empty()
}

/// Reads the next record that is not a blank line into `record`; false at the end.
pub(crate) fn read_record(
    name: &Arc<str>,
    csv: &mut csv::Reader<Box<dyn Read>>,
    record: &mut csv::ByteRecord,
) -> Result<bool, ReadError> {
    loop {
        if !csv.read_byte_record(record).map_err(|e| csv_error(name, e))? {
            return Ok(false);
        }
        if !is_blank(record) {
            return Ok(true);
        }
    }
}

/// Maps a csv crate error: I/O is fatal, anything else is about one row.
pub(crate) fn csv_error(name: &Arc<str>, e: csv::Error) -> ReadError {
    let line = e.position().map_or(0, |p| p.line());
    match e.into_kind() {
        csv::ErrorKind::Io(source) => ReadError::Io { file: name.clone(), error: source },
        other => ReadError::Row(RowError { file: name.clone(), line, reason: csv_reason(&other) }),
    }
}

fn csv_reason(kind: &csv::ErrorKind) -> String {
    match kind {
        csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
            format!("expected {expected_len} fields, found {len}")
        }
        csv::ErrorKind::Utf8 { err, .. } => format!("invalid UTF-8 in field {}", err.field() + 1),
        other => format!("unreadable csv row: {other:?}").to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Seconds: 1-9 digits, spaces around allowed, anything else refused.
        #[test]
        fn parse_secs_reads_whole_seconds(s in "[ ]{0,2}([0-9]{0,20}|[0-9+a -]{0,11})[ ]{0,2}") {
            let t = s.trim_matches(|c: char| c.is_ascii_whitespace());
            let want = (!t.is_empty() && t.len() <= 9 && t.bytes().all(|b| b.is_ascii_digit()))
                .then(|| t.parse::<u32>().unwrap());
            prop_assert_eq!(parse_secs("billsec", s.as_bytes()).ok(), want);
        }
    }
}
