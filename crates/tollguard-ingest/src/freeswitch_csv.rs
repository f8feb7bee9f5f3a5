//! FreeSWITCH `mod_cdr_csv`, default template `example` (`Master.csv`).
//!
//! No header. One row per call leg (the module's default `legs` is `a`), 15 quoted columns, in
//! order: `caller_id_name, caller_id_number, destination_number, context, start_stamp,
//! answer_stamp, end_stamp, duration, billsec, hangup_cause, uuid, bleg_uuid, accountcode,
//! read_codec, write_codec`. Times are local `YYYY-MM-DD HH:MM:SS`, read in the zone given (see
//! [`tollguard_core::time`] for DST gaps and overlaps); an unanswered call's `answer_stamp` is
//! `""`.
//!
//! **Mapping to [`Cdr`].**
//!
//! | `Cdr` | column |
//! |---|---|
//! | `call_id` | `uuid` (required) |
//! | `account` | `accountcode`; when that is empty, the `context` (so calls from a context with no account codes still group together) |
//! | `source` | `caller_id_number` |
//! | `dialled` | `destination_number` |
//! | `context` | `context` |
//! | `start`, `answer`, `end` | `start_stamp` (required), `answer_stamp`, `end_stamp` |
//! | `duration_s`, `billsec` | `duration`, `billsec` |
//! | `disposition` | `hangup_cause` as a Q.850 name; answered when `billsec > 0` or `answer_stamp` is set |
//!
//! `channel` and `dst_channel` stay empty: the template has no channel names.
//!
//! **Call id.** The `uuid` column, as written. A row without one is refused.
//!
//! **Dirty input.** Any other column count (another template, or a row cut short) is refused row
//! by row. A file re-saved by a spreadsheet loses its quotes and gets dates like `2020/2/10 22:41`:
//! such a row is refused with a message naming the field, the value, and the likely cause. Text is
//! decoded as UTF-8 lossily, so a stray Latin-1 byte never loses a row.

use crate::util::{csv_builder, local_time, parse_secs, read_record, set_lossy, trim};
use crate::{CdrReader, ReadError, RowError};
use jiff::tz::TimeZone;
use std::io::Read;
use std::sync::Arc;
use tollguard_core::cdr::{Cdr, Disposition};
use tollguard_core::time::LocalTimes;

/// Columns of the `example` template.
const COLUMNS: usize = 15;
const CALLER_ID_NUMBER: usize = 1;
const DESTINATION_NUMBER: usize = 2;
const CONTEXT: usize = 3;
const START_STAMP: usize = 4;
const ANSWER_STAMP: usize = 5;
const END_STAMP: usize = 6;
const DURATION: usize = 7;
const BILLSEC: usize = 8;
const HANGUP_CAUSE: usize = 9;
const UUID: usize = 10;
const ACCOUNTCODE: usize = 12;

/// Reads FreeSWITCH `mod_cdr_csv` rows written with the default `example` template.
pub struct FreeswitchCsvReader {
    name: Arc<str>,
    csv: csv::Reader<Box<dyn Read>>,
    record: csv::ByteRecord,
    times: LocalTimes,
}

impl FreeswitchCsvReader {
    /// A reader over `input`, local times in `tz`.
    pub fn new(name: Arc<str>, input: Box<dyn Read>, tz: TimeZone) -> Self {
        let csv = csv_builder().from_reader(input);
        FreeswitchCsvReader { name, csv, record: csv::ByteRecord::new(), times: LocalTimes::new(tz) }
    }

    fn fill(&mut self, cdr: &mut Cdr) -> Result<(), String> {
        let r = &self.record;
        let n = r.len();
        if n != COLUMNS {
            return Err(format!(
                "expected {COLUMNS} columns (FreeSWITCH mod_cdr_csv template \"example\"), found {n}"
            ));
        }
        let field = |i: usize| trim(r.get(i).unwrap_or_default());
        let times = &mut self.times;
        cdr.start = time(times, "start_stamp", field(START_STAMP))?
            .ok_or_else(|| "field start_stamp: empty (every call has a start time)".to_string())?;
        cdr.answer = time(times, "answer_stamp", field(ANSWER_STAMP))?;
        cdr.end = time(times, "end_stamp", field(END_STAMP))?;
        cdr.duration_s = parse_secs("duration", field(DURATION))?;
        cdr.billsec = parse_secs("billsec", field(BILLSEC))?;
        if cdr.billsec > cdr.duration_s {
            return Err(format!("billsec {} is longer than duration {}", cdr.billsec, cdr.duration_s));
        }
        let uuid = field(UUID);
        if uuid.is_empty() {
            return Err("field uuid: empty (the call id)".to_string());
        }
        set_lossy(&mut cdr.call_id, uuid);
        set_lossy(&mut cdr.source, field(CALLER_ID_NUMBER));
        set_lossy(&mut cdr.dialled, field(DESTINATION_NUMBER));
        set_lossy(&mut cdr.context, field(CONTEXT));
        if field(ACCOUNTCODE).is_empty() {
            set_lossy(&mut cdr.account, field(CONTEXT));
        } else {
            set_lossy(&mut cdr.account, field(ACCOUNTCODE));
        }
        let answered = cdr.billsec > 0 || cdr.answer.is_some();
        cdr.disposition = match std::str::from_utf8(field(HANGUP_CAUSE)) {
            Ok(cause) => Disposition::from_q850_name(cause, answered),
            Err(_) if answered => Disposition::Answered,
            Err(_) => Disposition::Unknown,
        };
        Ok(())
    }
}

/// A local time field, with a hint when the value looks like a spreadsheet's re-formatting.
fn time(times: &mut LocalTimes, field: &str, bytes: &[u8]) -> Result<Option<jiff::Timestamp>, String> {
    local_time(times, field, bytes).map_err(|mut reason| {
        if looks_spreadsheet_formatted(bytes) {
            reason.push_str(" (re-saved by a spreadsheet?)");
        }
        reason
    })
}

/// `2020/2/10 22:41`, `10/02/2020 22:41:05` or `2020-02-10 22:41`: what spreadsheets make of
/// `2020-02-10 22:41:05` when a CSV file is opened and saved again.
pub(crate) fn looks_spreadsheet_formatted(bytes: &[u8]) -> bool {
    let t = trim(bytes);
    let colons = t.iter().filter(|&&c| c == b':').count();
    t.iter().any(u8::is_ascii_digit) && (t.contains(&b'/') || colons == 1)
}

impl CdrReader for FreeswitchCsvReader {
    fn read_into(&mut self, cdr: &mut Cdr) -> Result<bool, ReadError> {
        if !read_record(&self.name, &mut self.csv, &mut self.record)? {
            return Ok(false);
        }
        cdr.clear();
        let line = self.record.position().map_or(0, |p| p.line());
        match self.fill(cdr) {
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

    fn read_all(text: &[u8], tz: &str) -> (Vec<Cdr>, Vec<RowError>) {
        let mut r = FreeswitchCsvReader::new(
            Arc::from("Master.csv"),
            Box::new(std::io::Cursor::new(text.to_vec())),
            TimeZone::get(tz).unwrap(),
        );
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

    fn fixture(rel: &str) -> Option<PathBuf> {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures").join(rel);
        if p.exists() {
            Some(p)
        } else {
            eprintln!("skipped: {} not found (../shared/fixtures is beside the project in CI)", p.display());
            None
        }
    }

    #[test]
    fn reads_the_documented_example_template_rows() {
        let Some(p) = fixture("freeswitch/Master_csv_example_template_from_docs.csv") else { return };
        let (ok, bad) = read_all(&std::fs::read(p).unwrap(), "Europe/Madrid");
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(ok.len(), 5);
        let first = &ok[0];
        assert_eq!(first.call_id, "a5c9f6c0-e752-11e3-8bfb-65b6c3cdac7d");
        assert_eq!(first.source, "9007");
        assert_eq!(first.dialled, "0034688886392");
        assert_eq!(first.context, "public");
        // no accountcode: the context stands in
        assert_eq!(first.account, "public");
        // 16:59:50 in Madrid summer time (UTC+2)
        assert_eq!(first.start.to_string(), "2014-05-29T14:59:50Z");
        assert_eq!(first.answer, None);
        assert_eq!(first.end.map(|t| t.to_string()).as_deref(), Some("2014-05-29T14:59:50Z"));
        assert_eq!((first.duration_s, first.billsec), (0, 0));
        assert_eq!(first.disposition, Disposition::NoAnswer);
        assert_eq!(first.line, 1);
        assert_eq!(
            ok.iter().map(|c| c.dialled.as_str()).collect::<Vec<_>>(),
            ["0034688886392", "+34688886392", "34688886392", "0034688886392", "00034688886392"]
        );
        assert_eq!(ok[4].call_id, "e38cb5b0-e752-11e3-8c0b-65b6c3cdac7d");
        assert_eq!(ok[4].line, 5);
    }

    #[test]
    fn crlf_line_ends_and_blank_lines_keep_line_numbers() {
        let Some(p) = fixture("freeswitch/Master_csv_example_template_from_docs.csv") else { return };
        let lf = std::fs::read_to_string(p).unwrap();
        let crlf = lf.replace('\n', "\r\n").replacen("\r\n", "\r\n\r\n", 1);
        let (a, bad_a) = read_all(lf.as_bytes(), "UTC");
        let (b, bad_b) = read_all(crlf.as_bytes(), "UTC");
        assert!(bad_a.is_empty() && bad_b.is_empty(), "{bad_a:?} {bad_b:?}");
        assert_eq!(b.iter().map(|c| c.line).collect::<Vec<_>>(), [1, 3, 4, 5, 6]);
        let strip = |mut c: Cdr| {
            c.line = 0;
            c
        };
        assert_eq!(
            a.into_iter().map(strip).collect::<Vec<_>>(),
            b.into_iter().map(strip).collect::<Vec<_>>()
        );
    }

    #[test]
    fn refuses_every_spreadsheet_mangled_row_with_a_clear_reason() {
        let Some(p) = fixture("freeswitch/Master_Kxingyunliushui_excel_mangled.csv") else { return };
        let (ok, bad) = read_all(&std::fs::read(p).unwrap(), "Asia/Shanghai");
        assert!(ok.is_empty(), "{ok:?}");
        assert_eq!(bad.len(), 10);
        assert_eq!(bad.iter().map(|e| e.line).collect::<Vec<_>>(), (1..=10).collect::<Vec<u64>>());
        assert_eq!(
            bad[0].to_string(),
            "Master.csv:1: field start_stamp: not a date-time YYYY-MM-DD HH:MM:SS: \"2020/2/10 22:41\" \
             (re-saved by a spreadsheet?)"
        );
        // the row with an empty caller name and no answer fails the same way
        assert_eq!(
            bad[2].reason,
            "field start_stamp: not a date-time YYYY-MM-DD HH:MM:SS: \"2020/2/10 22:41\" (re-saved by a spreadsheet?)"
        );
        assert!(bad.iter().all(|e| e.reason.starts_with("field start_stamp: ")), "{bad:?}");
    }

    #[test]
    fn answered_call_with_account_and_local_times() {
        let row = b"\"Alice\",\"1001\",\"00670123456\",\"default\",\"2024-03-31 01:59:00\",\
\"2024-03-31 03:00:05\",\"2024-03-31 03:10:05\",\"665\",\"600\",\"NORMAL_CLEARING\",\
\"0b6f7c3e-1111-2222-3333-444455556666\",\"0b6f7c3e-7777\",\"acme\",\"PCMA\",\"PCMA\"\n";
        let (ok, bad) = read_all(row, "Europe/Amsterdam");
        assert!(bad.is_empty(), "{bad:?}");
        let c = &ok[0];
        assert_eq!(c.account, "acme");
        assert_eq!(c.start.to_string(), "2024-03-31T00:59:00Z");
        // 03:00:05 is after the spring-forward gap: CEST, UTC+2
        assert_eq!(c.answer.map(|t| t.to_string()).as_deref(), Some("2024-03-31T01:00:05Z"));
        assert_eq!((c.duration_s, c.billsec), (665, 600));
        assert_eq!(c.disposition, Disposition::Answered);
        assert!(c.is_answered());
    }

    #[test]
    fn busy_and_failed_causes_map_when_unanswered() {
        let row = |cause: &str| {
            format!(
                "\"\",\"1001\",\"1002\",\"default\",\"2024-01-02 10:00:00\",\"\",\"2024-01-02 10:00:03\",\
\"3\",\"0\",\"{cause}\",\"u-{cause}\",\"\",\"\",\"\",\"\"\n"
            )
        };
        let text = [row("USER_BUSY"), row("NO_ROUTE_DESTINATION"), row("ORIGINATOR_CANCEL")].concat();
        let (ok, bad) = read_all(text.as_bytes(), "UTC");
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(
            ok.iter().map(|c| c.disposition).collect::<Vec<_>>(),
            [Disposition::Busy, Disposition::Failed, Disposition::NoAnswer]
        );
        assert_eq!(ok[1].call_id, "u-NO_ROUTE_DESTINATION");
    }

    #[test]
    fn bad_rows_name_line_and_field_and_reading_goes_on() {
        let good = "\"\",\"1001\",\"1002\",\"default\",\"2024-01-02 10:00:00\",\"\",\"2024-01-02 10:00:03\",\
\"3\",\"0\",\"NO_ANSWER\",\"id1\",\"\",\"\",\"\",\"\"\n";
        let text = [
            good.to_string(),
            // the snom template: 20 columns
            good.replace("\"\"\n", "\"\",\"ua\",\"\",\"\",\"\",\"\"\n"),
            good.replace("\"3\",\"0\"", "\"3\",\"x\""),
            good.replace("\"3\",\"0\"", "\"3\",\"9\""),
            good.replace("\"id1\"", "\"\""),
            good.replace("\"2024-01-02 10:00:00\"", "\"\""),
            good.replace("id1", "id7"),
        ]
        .concat();
        let (ok, bad) = read_all(text.as_bytes(), "UTC");
        assert_eq!(
            ok.iter().map(|c| (c.call_id.as_str(), c.line)).collect::<Vec<_>>(),
            [("id1", 1), ("id7", 7)]
        );
        assert_eq!(
            bad.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
            [
                "Master.csv:2: expected 15 columns (FreeSWITCH mod_cdr_csv template \"example\"), found 20",
                "Master.csv:3: field billsec: not a whole number of seconds: \"x\"",
                "Master.csv:4: billsec 9 is longer than duration 3",
                "Master.csv:5: field uuid: empty (the call id)",
                "Master.csv:6: field start_stamp: empty (every call has a start time)",
            ]
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let junk: &[&[u8]] =
            &[b"", b"\n\n", b"\"", b"\xff\xfe,\"\x00", b"a,b\r\nc", b"\"\"\"\"\"\"\"\n,,,,,,,,,,,,,,\n"];
        for j in junk {
            let _ = read_all(j, "UTC");
        }
    }
}
