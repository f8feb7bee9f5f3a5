//! Any CSV file with a header line, its columns named by a [`GenericMapping`] (the
//! `[generic_csv]` table of the configuration).
//!
//! **Layout.** Line 1 names the columns; every later line is one call. The delimiter is
//! configurable (`,` by default); fields may be quoted with `"` (a quote inside a quoted field is
//! doubled) and blanks around fields are ignored. Columns are found by their name in the header
//! (exactly, else ignoring ASCII case), once, before the first row: a mapped column the header
//! lacks stops the reader with an error naming the column and the header found. Columns that are
//! not mapped are ignored; one column may be mapped to several fields (e.g. the caller number as
//! both `account` and `source`).
//!
//! **Mapping to [`Cdr`].** `account`, `source`, `dialled`, `context`, `channel` and `dst_channel`
//! are copied as text. Times are read as [`TimeFormat`] says. Derived values, when their column is
//! not mapped:
//!
//! - `duration_s` = end − start (so a mapping needs `duration` or `end`);
//! - `billsec` = end − answer, 0 when the answer time is empty (so a mapping needs `billsec`, or
//!   `answer` and `end`);
//! - `end` = start + duration;
//! - `answer` = end − billsec when billsec > 0, else none;
//! - `disposition`: from the mapped column when it has a known value: Asterisk's words
//!   (`ANSWERED`, `NO ANSWER`, `BUSY`, `FAILED`, `CONGESTION`), `ANSWER`, `NOANSWER`, `NOROUTE`,
//!   Q.850 names as FreeSWITCH writes them (`NORMAL_CLEARING`, `USER_BUSY`, ...) or Q.850 cause
//!   numbers (`16`, `17`, ...), in any case; otherwise (no column, an empty or unknown value)
//!   answered when billsec > 0 or an answer time is set, else unknown.
//!
//! **Call id.** The mapped `call_id` column. Without one (or where it is empty), the id is
//! derived as in the Asterisk reader: `cdr-` followed by the 16 hex digits of the 64-bit FNV-1a
//! hash of all the row's fields (after trimming blanks), each followed by a 0x1F byte. The same
//! row always gives the same id, and rows that differ in any field get different ids.

use crate::cucm::q850_code_name;
use crate::util::{csv_builder, read_record};
use crate::util::{local_time, parse_secs, set_lossy, trim, Fnv64};
use crate::{CdrReader, ReadError, RowError};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use std::fmt::Write as _;
use std::io::{self, Read};
use std::sync::Arc;
use tollguard_core::cdr::{Cdr, Disposition};
use tollguard_core::time::LocalTimes;

/// How the columns of a generic CSV file map to a call record: the `[generic_csv]` table of the
/// configuration. Every value names a column of the file's header line.
///
/// ```toml
/// [generic_csv]
/// call_id = "callid"
/// account = "accountcode"
/// source = "caller_id_number"
/// dialled = "destination_number"
/// start = "starting_date"
/// duration = "duration"
/// billsec = "billsec"
/// disposition = "hangup_cause_id"
/// time_format = "local"        # read in the zone given with --tz
/// delimiter = ","
/// ```
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenericMapping {
    /// Column holding the call's unique id. Optional: without it each row gets a derived id,
    /// `cdr-` and a 64-bit hash of the row's fields, stable across runs.
    #[serde(default)]
    pub call_id: Option<String>,
    /// Column holding the account the call is charged to (a customer, tenant or account code).
    /// Required; it may name the same column as `source` when the file has no account.
    pub account: String,
    /// Column holding the calling extension or number. Required.
    pub source: String,
    /// Column holding the number as dialled. Required.
    pub dialled: String,
    /// Column holding the time the call started (the attempt), in `time_format`. Required; a row
    /// where it is empty is refused.
    pub start: String,
    /// Column holding the time the call was answered, empty when it was not. Optional.
    #[serde(default)]
    pub answer: Option<String>,
    /// Column holding the time the call ended. Optional: without it the end is start + duration.
    #[serde(default)]
    pub end: Option<String>,
    /// Column holding the whole seconds from start to end. Optional when `end` is mapped (it is
    /// then end − start).
    #[serde(default)]
    pub duration: Option<String>,
    /// Column holding the whole seconds of answered talk time: what is billed. Optional when both
    /// `answer` and `end` are mapped (it is then end − answer, 0 when unanswered).
    #[serde(default)]
    pub billsec: Option<String>,
    /// Column holding how the call ended: Asterisk's words (`ANSWERED`, `NO ANSWER`, `BUSY`,
    /// `FAILED`, `CONGESTION`), `ANSWER`, `NOANSWER`, `NOROUTE`, a Q.850 name (`NORMAL_CLEARING`,
    /// `USER_BUSY`, ...) or a Q.850 cause number (`16`, `17`, ...). Optional: without it (or for
    /// another value) a call is answered when it has billed seconds or an answer time.
    #[serde(default)]
    pub disposition: Option<String>,
    /// Column holding the dialplan context or class of service, used to infer the call's
    /// direction. Optional.
    #[serde(default)]
    pub context: Option<String>,
    /// Column holding the originating channel, device or trunk, used to infer the call's
    /// direction. Optional.
    #[serde(default)]
    pub channel: Option<String>,
    /// Column holding the destination channel, device or trunk, used to infer the call's
    /// direction. Optional.
    #[serde(default)]
    pub dst_channel: Option<String>,
    /// How the time columns are written: `"epoch"` (whole seconds since 1970-01-01 UTC; a
    /// fraction is dropped), `"rfc3339"` (e.g. `2024-01-02T10:00:00+01:00` or `...Z`: an offset is
    /// required) or `"local"` (`YYYY-MM-DD HH:MM:SS`, local time in the zone given with `--tz`).
    /// Default `"local"`.
    #[serde(default)]
    pub time_format: TimeFormat,
    /// The field delimiter: one ASCII character, e.g. `";"` or `"\t"`. Default `","`.
    #[serde(default = "default_delimiter")]
    pub delimiter: char,
}

fn default_delimiter() -> char {
    ','
}

/// How time columns are written in a generic CSV file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeFormat {
    /// Whole seconds since 1970-01-01 UTC (`1336101842`); a fraction (`.123`) is dropped.
    Epoch,
    /// RFC 3339 with an offset: `2024-01-02T10:00:00+01:00`, `2024-01-02T09:00:00Z`.
    Rfc3339,
    /// `YYYY-MM-DD HH:MM:SS` in the zone given (`--tz`), as PBXs write local time.
    #[default]
    Local,
}

/// Column indexes, resolved once from the header.
#[derive(Clone, Copy, Debug)]
struct Columns {
    call_id: Option<usize>,
    account: usize,
    source: usize,
    dialled: usize,
    start: usize,
    answer: Option<usize>,
    end: Option<usize>,
    duration: Option<usize>,
    billsec: Option<usize>,
    disposition: Option<usize>,
    context: Option<usize>,
    channel: Option<usize>,
    dst_channel: Option<usize>,
}

/// Reads a CSV file with a header, mapped by a [`GenericMapping`].
pub struct GenericReader {
    name: Arc<str>,
    csv: csv::Reader<Box<dyn Read>>,
    record: csv::ByteRecord,
    /// `None` for an empty input.
    cols: Option<Columns>,
    /// Column names of the header, for messages.
    header: Vec<String>,
    format: TimeFormat,
    times: LocalTimes,
    scratch: String,
}

impl GenericReader {
    /// A reader over `input`: reads the header line and finds the mapped columns. Fails when the
    /// mapping is incomplete or names a column the header lacks.
    pub fn new(
        name: Arc<str>,
        input: Box<dyn Read>,
        mapping: GenericMapping,
        tz: TimeZone,
    ) -> Result<Self, ReadError> {
        let invalid = |kind: io::ErrorKind, msg: String| ReadError::Io {
            file: name.clone(),
            error: io::Error::new(kind, msg),
        };
        let delimiter = u8::try_from(mapping.delimiter)
            .ok()
            .filter(|d| d.is_ascii() && *d != b'"' && *d != b'\n' && *d != b'\r')
            .ok_or_else(|| {
                invalid(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "generic_csv: delimiter {:?} is not usable: give one ASCII character other than a quote or line break",
                        mapping.delimiter
                    ),
                )
            })?;
        if mapping.duration.is_none() && mapping.end.is_none() {
            return Err(invalid(
                io::ErrorKind::InvalidInput,
                "generic_csv: map a duration column or an end column (duration is then end - start)"
                    .to_string(),
            ));
        }
        if mapping.billsec.is_none() && (mapping.answer.is_none() || mapping.end.is_none()) {
            return Err(invalid(
                io::ErrorKind::InvalidInput,
                "generic_csv: map a billsec column, or both answer and end columns (billsec is then end - answer)"
                    .to_string(),
            ));
        }
        let mut csv = csv_builder().delimiter(delimiter).from_reader(input);
        let mut record = csv::ByteRecord::new();
        let has_header = read_record(&name, &mut csv, &mut record).map_err(|e| match e {
            ReadError::Row(row) => {
                invalid(io::ErrorKind::InvalidData, format!("header line: {}", row.reason))
            }
            io => io,
        })?;
        let header: Vec<String> = record
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let f = if i == 0 { f.strip_prefix(b"\xef\xbb\xbf").unwrap_or(f) } else { f };
                String::from_utf8_lossy(trim(f)).into_owned()
            })
            .collect();
        let cols = if has_header {
            let find = |field: &str, column: &str| -> Result<usize, ReadError> {
                header
                    .iter()
                    .position(|h| h == column)
                    .or_else(|| header.iter().position(|h| h.eq_ignore_ascii_case(column)))
                    .ok_or_else(|| {
                        invalid(
                            io::ErrorKind::InvalidData,
                            format!(
                                "generic_csv: column {column:?} (mapped as {field}) is not in the header line; \
                                 the header has {}",
                                show_header(&header)
                            ),
                        )
                    })
            };
            let opt =
                |field: &str, column: &Option<String>| column.as_deref().map(|c| find(field, c)).transpose();
            Some(Columns {
                call_id: opt("call_id", &mapping.call_id)?,
                account: find("account", &mapping.account)?,
                source: find("source", &mapping.source)?,
                dialled: find("dialled", &mapping.dialled)?,
                start: find("start", &mapping.start)?,
                answer: opt("answer", &mapping.answer)?,
                end: opt("end", &mapping.end)?,
                duration: opt("duration", &mapping.duration)?,
                billsec: opt("billsec", &mapping.billsec)?,
                disposition: opt("disposition", &mapping.disposition)?,
                context: opt("context", &mapping.context)?,
                channel: opt("channel", &mapping.channel)?,
                dst_channel: opt("dst_channel", &mapping.dst_channel)?,
            })
        } else {
            None
        };
        Ok(GenericReader {
            name,
            csv,
            record,
            cols,
            header,
            format: mapping.time_format,
            times: LocalTimes::new(tz),
            scratch: String::new(),
        })
    }

    fn fill(&mut self, c: &Columns, cdr: &mut Cdr) -> Result<(), String> {
        let r = &self.record;
        let header = &self.header;
        let name = |i: usize| header.get(i).map_or("?", String::as_str);
        let get = |i: usize| -> Result<&[u8], String> {
            r.get(i).map(trim).ok_or_else(|| {
                format!(
                    "field {}: missing (the row has {} fields, the header {})",
                    name(i),
                    r.len(),
                    header.len()
                )
            })
        };
        let format = self.format;
        let times = &mut self.times;
        let mut time = |i: usize| -> Result<Option<Timestamp>, String> {
            let bytes = get(i)?;
            match format {
                TimeFormat::Local => local_time(times, name(i), bytes),
                TimeFormat::Epoch => epoch(name(i), bytes),
                TimeFormat::Rfc3339 => rfc3339(name(i), bytes),
            }
        };
        let start = time(c.start)?
            .ok_or_else(|| format!("field {}: empty (every call has a start time)", name(c.start)))?;
        let answer = c.answer.map(&mut time).transpose()?.flatten();
        let mut end = c.end.map(&mut time).transpose()?.flatten();
        let duration = match c.duration {
            Some(i) => parse_secs(name(i), get(i)?)?,
            None => match end {
                Some(e) => {
                    seconds(e, start, || format!("{} is before {}", name(c.end.unwrap_or(0)), name(c.start)))?
                }
                None => {
                    let i = c.end.unwrap_or(c.start);
                    return Err(format!("field {}: empty, and no duration column is mapped", name(i)));
                }
            },
        };
        let billsec = match c.billsec {
            Some(i) => parse_secs(name(i), get(i)?)?,
            None => match (answer, end) {
                (Some(a), Some(e)) => {
                    let (ai, ei) = (c.answer.unwrap_or(0), c.end.unwrap_or(0));
                    seconds(e, a, || format!("{} is before {}", name(ei), name(ai)))?
                }
                _ => 0,
            },
        };
        if billsec > duration {
            return Err(format!("billsec {billsec} is longer than duration {duration}"));
        }
        if end.is_none() {
            end = Some(
                start
                    .checked_add(jiff::SignedDuration::from_secs(duration as i64))
                    .map_err(|_| format!("field {}: start + duration is out of range", name(c.start)))?,
            );
        }
        let answer = match (answer, end) {
            (None, Some(e)) if billsec > 0 && c.answer.is_none() => {
                e.checked_sub(jiff::SignedDuration::from_secs(billsec as i64)).ok()
            }
            (a, _) => a,
        };
        cdr.start = start;
        cdr.answer = answer;
        cdr.end = end;
        cdr.duration_s = duration;
        cdr.billsec = billsec;

        set_lossy(&mut cdr.account, get(c.account)?);
        set_lossy(&mut cdr.source, get(c.source)?);
        set_lossy(&mut cdr.dialled, get(c.dialled)?);
        let opt = |i: Option<usize>| i.and_then(|i| r.get(i)).map(trim).unwrap_or_default();
        set_lossy(&mut cdr.context, opt(c.context));
        set_lossy(&mut cdr.channel, opt(c.channel));
        set_lossy(&mut cdr.dst_channel, opt(c.dst_channel));

        let answered = billsec > 0 || answer.is_some();
        set_lossy(&mut self.scratch, opt(c.disposition));
        cdr.disposition = disposition(&mut self.scratch, answered);

        let id = opt(c.call_id);
        if id.is_empty() {
            let mut h = Fnv64::new();
            for f in r.iter() {
                h.write(trim(f));
                h.write(&[0x1f]);
            }
            cdr.call_id.clear();
            let _ = write!(cdr.call_id, "cdr-{:016x}", h.finish());
        } else {
            set_lossy(&mut cdr.call_id, id);
        }
        Ok(())
    }
}

/// The header's names, shortened for a message.
fn show_header(header: &[String]) -> String {
    if header.is_empty() {
        return "no columns".to_string();
    }
    let shown: Vec<String> = header.iter().take(30).map(|h| format!("{h:?}")).collect();
    format!("{}{}", shown.join(", "), if header.len() > 30 { ", ..." } else { "" })
}

/// Reads a disposition word or code (upper-cased in place).
fn disposition(text: &mut str, answered: bool) -> Disposition {
    text.make_ascii_uppercase();
    let t = text.trim();
    let fallback = if answered { Disposition::Answered } else { Disposition::Unknown };
    if t.is_empty() {
        return fallback;
    }
    if t.bytes().all(|c| c.is_ascii_digit()) {
        let code = t.parse::<i64>().unwrap_or(0);
        return match q850_code_name(code) {
            "" => fallback,
            name => Disposition::from_q850_name(name, answered),
        };
    }
    match Disposition::from_asterisk(t) {
        Disposition::Unknown => {}
        d => return d,
    }
    match t {
        "ANSWER" => Disposition::Answered,
        _ if t.contains('_') && t.bytes().all(|c| c.is_ascii_uppercase() || c == b'_') => {
            Disposition::from_q850_name(t, answered)
        }
        _ => fallback,
    }
}

fn epoch(field: &str, bytes: &[u8]) -> Result<Option<Timestamp>, String> {
    let t = trim(bytes);
    if t.is_empty() {
        return Ok(None);
    }
    let whole = match t.iter().position(|&c| c == b'.') {
        Some(dot) if t[dot + 1..].iter().all(u8::is_ascii_digit) => &t[..dot],
        _ => t,
    };
    let bad = || format!("field {field}: not whole seconds since 1970: {:?}", String::from_utf8_lossy(bytes));
    if whole.is_empty() || whole.len() > 12 || !whole.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    let n = whole.iter().fold(0i64, |n, &c| n * 10 + (c - b'0') as i64);
    Timestamp::from_second(n).map(Some).map_err(|_| bad())
}

fn rfc3339(field: &str, bytes: &[u8]) -> Result<Option<Timestamp>, String> {
    let t = trim(bytes);
    if t.is_empty() {
        return Ok(None);
    }
    std::str::from_utf8(t).ok().and_then(|s| s.parse::<Timestamp>().ok()).map(Some).ok_or_else(|| {
        format!("field {field}: not an RFC 3339 date-time with offset: {:?}", String::from_utf8_lossy(bytes))
    })
}

fn seconds(later: Timestamp, earlier: Timestamp, why: impl FnOnce() -> String) -> Result<u32, String> {
    u32::try_from(later.as_second() - earlier.as_second()).map_err(|_| why())
}

impl CdrReader for GenericReader {
    fn read_into(&mut self, cdr: &mut Cdr) -> Result<bool, ReadError> {
        let Some(cols) = self.cols else { return Ok(false) };
        if !read_record(&self.name, &mut self.csv, &mut self.record)? {
            return Ok(false);
        }
        cdr.clear();
        let line = self.record.position().map_or(0, |p| p.line());
        match self.fill(&cols, cdr) {
            Ok(()) => {
                cdr.line = line;
                Ok(true)
            }
            Err(reason) => Err(ReadError::Row(RowError { file: self.name.clone(), line, reason })),
        }
    }

    fn bytes_read(&self) -> u64 {
        self.csv.position().byte()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn mapping(toml_like: &[(&str, &str)]) -> GenericMapping {
        let map: serde_json::Map<String, serde_json::Value> =
            toml_like.iter().map(|(k, v)| (k.to_string(), serde_json::Value::from(*v))).collect();
        serde_json::from_value(serde_json::Value::Object(map)).unwrap()
    }

    fn reader(text: Vec<u8>, m: GenericMapping, tz: &str) -> Result<GenericReader, ReadError> {
        GenericReader::new(
            Arc::from("calls.csv"),
            Box::new(io::Cursor::new(text)),
            m,
            TimeZone::get(tz).unwrap(),
        )
    }

    fn read_all(text: Vec<u8>, m: GenericMapping, tz: &str) -> (Vec<Cdr>, Vec<RowError>) {
        let mut r = reader(text, m, tz).unwrap();
        let (mut ok, mut bad) = (vec![], vec![]);
        let mut cdr = Cdr::default();
        loop {
            match r.read_into(&mut cdr) {
                Ok(true) => ok.push(cdr.clone()),
                Ok(false) => break,
                Err(ReadError::Row(e)) => bad.push(e),
                Err(e) => panic!("{e}"),
            }
        }
        (ok, bad)
    }

    fn io_message(r: Result<GenericReader, ReadError>) -> (io::ErrorKind, String) {
        match r {
            Err(ReadError::Io { error: source, .. }) => (source.kind(), source.to_string()),
            Err(e) => panic!("expected an I/O error, got {e}"),
            Ok(_) => panic!("expected an error"),
        }
    }

    fn fixture(rel: &str) -> Option<PathBuf> {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures").join(rel);
        if p.exists() {
            Some(p)
        } else {
            eprintln!("skipped: {} not found (../shared/fixtures is beside the project in CI)", p.display());
            None
        }
    }

    fn cdr_stats_mapping() -> GenericMapping {
        mapping(&[
            ("call_id", "callid"),
            ("account", "accountcode"),
            ("source", "caller_id_number"),
            ("dialled", "destination_number"),
            ("start", "starting_date"),
            ("duration", "duration"),
            ("billsec", "billsec"),
            ("disposition", "hangup_cause_id"),
            ("channel", "switch"),
        ])
    }

    #[test]
    fn reads_the_cdr_stats_import_file() {
        let Some(p) = fixture("datasets/cdr-stats_CDRImport-2015-10-26.csv") else { return };
        let (ok, bad) = read_all(std::fs::read(p).unwrap(), cdr_stats_mapping(), "Europe/Madrid");
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(ok.len(), 5);
        let c = &ok[0];
        assert_eq!(c.call_id, "96aa82fe-7bd1-11e5-a230-5c514f6a0f72");
        assert_eq!(c.account, "1000");
        assert_eq!(c.source, "904151440");
        assert_eq!(c.dialled, "+34798400122");
        assert_eq!(c.channel, "127.0.0.1");
        // 12:13:10 in Madrid summer time (UTC+2); end and answer derived from the durations
        assert_eq!(c.start.to_string(), "2015-10-21T10:13:10Z");
        assert_eq!(c.end.map(|t| t.to_string()).as_deref(), Some("2015-10-21T10:14:05Z"));
        assert_eq!(c.answer.map(|t| t.to_string()).as_deref(), Some("2015-10-21T10:13:15Z"));
        assert_eq!((c.duration_s, c.billsec), (55, 50));
        // hangup_cause_id 16 with talk time
        assert_eq!(c.disposition, Disposition::Answered);
        assert_eq!(c.line, 2);
        assert_eq!(
            ok.iter().map(|c| (c.dialled.as_str(), c.billsec)).collect::<Vec<_>>(),
            [
                ("+34798400122", 50),
                ("+34798401111", 10),
                ("+34650104877", 34),
                ("+34798401111", 11),
                ("+34650104877", 5)
            ]
        );
    }

    #[test]
    fn reads_the_headerless_voipcall_report_with_a_header_put_in_front() {
        let Some(p) = fixture("datasets/cdr-stats_import_voipcall_report.txt") else { return };
        let mut text = b"callerid,phone_number,disposition,duration,billsec,plan,starting_date\n".to_vec();
        text.extend(std::fs::read(p).unwrap());
        let m = mapping(&[
            ("account", "callerid"),
            ("source", "callerid"),
            ("dialled", "phone_number"),
            ("start", "starting_date"),
            ("duration", "duration"),
            ("billsec", "billsec"),
            ("disposition", "disposition"),
        ]);
        let (ok, bad) = read_all(text, m, "UTC");
        assert_eq!(ok.len(), 9);
        let c = &ok[0];
        assert_eq!(
            (c.account.as_str(), c.source.as_str(), c.dialled.as_str()),
            ("44650355212", "44650355212", "32650781232")
        );
        assert_eq!(c.start.to_string(), "2011-04-04T11:12:11Z");
        assert_eq!((c.duration_s, c.billsec), (25, 12));
        assert!(c.call_id.starts_with("cdr-") && c.call_id.len() == 20, "{}", c.call_id);
        assert_eq!(
            ok.iter().map(|c| c.disposition).collect::<Vec<_>>(),
            [
                Disposition::Answered,
                Disposition::Busy,
                Disposition::NoAnswer,
                Disposition::Failed,
                Disposition::Answered,
                Disposition::Busy,
                Disposition::Busy,
                Disposition::Answered,
                Disposition::Busy,
            ]
        );
        let mut ids: Vec<&str> = ok.iter().map(|c| c.call_id.as_str()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 9);
        // the last row has no date
        assert_eq!(
            bad.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
            ["calls.csv:11: field starting_date: missing (the row has 6 fields, the header 7)"]
        );
    }

    #[test]
    fn epoch_and_rfc3339_times_with_derived_billsec() {
        let m = |fmt: &str| {
            mapping(&[
                ("account", "acct"),
                ("source", "from"),
                ("dialled", "to"),
                ("start", "t0"),
                ("answer", "t1"),
                ("end", "t2"),
                ("disposition", "status"),
                ("time_format", fmt),
                ("delimiter", ";"),
            ])
        };
        let epoch =
            b"acct;from;to;t0;t1;t2;status\nacme;201;00670123;1700000000.250;1700000010;1700000070;\n\
acme;201;00670124;1700000100;;1700000130;user_busy\n"
                .to_vec();
        let (ok, bad) = read_all(epoch, m("epoch"), "UTC");
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!((ok[0].duration_s, ok[0].billsec), (70, 60));
        assert_eq!(ok[0].disposition, Disposition::Answered);
        assert_eq!((ok[1].duration_s, ok[1].billsec, ok[1].answer), (30, 0, None));
        assert_eq!(ok[1].disposition, Disposition::Busy);
        let rfc = b"acct;from;to;t0;t1;t2;status\n\"acme\";\"201\";\"00670123\";2024-01-02T10:00:00+01:00;\
2024-01-02T09:00:05Z;2024-01-02T09:01:05Z;ANSWERED\nacme;201;x;2024-01-02 10:00:00;;;\n"
            .to_vec();
        let (ok, bad) = read_all(rfc, m("rfc3339"), "UTC");
        assert_eq!(ok[0].start.to_string(), "2024-01-02T09:00:00Z");
        assert_eq!((ok[0].duration_s, ok[0].billsec), (65, 60));
        assert_eq!(
            bad.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
            ["calls.csv:3: field t0: not an RFC 3339 date-time with offset: \"2024-01-02 10:00:00\""]
        );
    }

    #[test]
    fn bad_rows_name_line_and_field_and_reading_goes_on() {
        let m = mapping(&[
            ("call_id", "id"),
            ("account", "acct"),
            ("source", "src"),
            ("dialled", "dst"),
            ("start", "start"),
            ("duration", "dur"),
            ("billsec", "bill"),
        ]);
        let text = b"id,acct,src,dst,start,dur,bill\n\
a,x,1,2,2024-01-02 10:00:00,5,3\n\
b,x,1,2,2024/1/2 10:00,5,3\n\
c,x,1,2,2024-01-02 10:00:00,5,six\n\
d,x,1,2,2024-01-02 10:00:00,5,9\n\
e,x,1,2,,5,3\n\
,x,1,2,2024-01-02 10:00:00,5,3\n"
            .to_vec();
        let (ok, bad) = read_all(text, m, "Europe/Amsterdam");
        assert_eq!(ok.iter().map(|c| c.line).collect::<Vec<_>>(), [2, 7]);
        assert_eq!(ok[0].call_id, "a");
        // an empty id column: derived
        assert!(ok[1].call_id.starts_with("cdr-"));
        assert_eq!(ok[0].start.to_string(), "2024-01-02T09:00:00Z");
        assert_eq!(
            bad.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
            [
                "calls.csv:3: field start: not a date-time YYYY-MM-DD HH:MM:SS: \"2024/1/2 10:00\"",
                "calls.csv:4: field bill: not a whole number of seconds: \"six\"",
                "calls.csv:5: billsec 9 is longer than duration 5",
                "calls.csv:6: field start: empty (every call has a start time)",
            ]
        );
    }

    #[test]
    fn mapping_errors_stop_the_reader_and_name_the_column() {
        let Some(p) = fixture("datasets/cdr-stats_CDRImport-2015-10-26.csv") else { return };
        let mut m = cdr_stats_mapping();
        m.dialled = "dst".to_string();
        let (kind, msg) = io_message(reader(std::fs::read(&p).unwrap(), m, "UTC"));
        assert_eq!(kind, io::ErrorKind::InvalidData);
        assert!(
            msg.starts_with(
                "generic_csv: column \"dst\" (mapped as dialled) is not in the header line; the header has \
                 \"switch\", \"cdr_source_type\", \"callid\","
            ),
            "{msg}"
        );
        let mut m = cdr_stats_mapping();
        m.billsec = None;
        let (kind, msg) = io_message(reader(std::fs::read(&p).unwrap(), m, "UTC"));
        assert_eq!(kind, io::ErrorKind::InvalidInput);
        assert!(msg.contains("map a billsec column"), "{msg}");
        let mut m = cdr_stats_mapping();
        m.delimiter = 'é';
        assert_eq!(io_message(reader(vec![], m, "UTC")).0, io::ErrorKind::InvalidInput);
        // case-insensitive header match, and an empty file has no records
        let mut m = cdr_stats_mapping();
        m.call_id = Some("CALLID".to_string());
        assert!(reader(std::fs::read(&p).unwrap(), m, "UTC").is_ok());
        assert!(read_all(vec![], cdr_stats_mapping(), "UTC").0.is_empty());
    }

    #[test]
    fn the_mapping_deserializes_with_defaults_and_refuses_unknown_keys() {
        let m =
            mapping(&[("account", "a"), ("source", "s"), ("dialled", "d"), ("start", "t"), ("billsec", "b")]);
        assert_eq!(m.time_format, TimeFormat::Local);
        assert_eq!(m.delimiter, ',');
        assert_eq!(m.call_id, None);
        let e = serde_json::from_str::<GenericMapping>(
            r#"{"account":"a","source":"s","dialled":"d","start":"t","destination":"x"}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown field `destination`"), "{e}");
        let e = serde_json::from_str::<GenericMapping>(
            r#"{"account":"a","source":"s","dialled":"d","start":"t","time_format":"unix"}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown variant `unix`"), "{e}");
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let junk: &[&[u8]] = &[
            b"",
            b"callid\n",
            b"\xef\xbb\xbfcallid,accountcode,caller_id_number,destination_number,starting_date,duration,billsec,hangup_cause_id,switch\n\"\n",
            b"callid,accountcode,caller_id_number,destination_number,starting_date,duration,billsec,hangup_cause_id,switch\n,,,,,,,,\n\xff,\xff,\xff,\xff,2024-01-02 10:00:00,99999999999,1,\xff,\xff\n1,1,1,1,9999-12-31 23:59:59,999999999,0,,\n",
        ];
        for j in junk {
            if let Ok(mut r) = reader(j.to_vec(), cdr_stats_mapping(), "UTC") {
                let mut cdr = Cdr::default();
                while !matches!(r.read_into(&mut cdr), Ok(false) | Err(ReadError::Io { .. })) {}
            }
        }
    }
}
