//! Asterisk `cdr_csv` (`Master.csv`).
//!
//! No header. Columns, in order: `accountcode, src, dst, dcontext, clid, channel, dstchannel,
//! lastapp, lastdata, start, answer, end, duration, billsec, disposition, amaflags` (16), then
//! `uniqueid, userfield` (18, `loguniqueid`/`loguserfield`), then `peeraccount, linkedid,
//! sequence` (21). Strings are quoted with doubled quotes; integers are unquoted; an unanswered
//! call's `answer` is empty and unquoted. Times are local, read in the zone given (see
//! [`tollguard_core::time`] for DST gaps and overlaps).
//!
//! Text fields are decoded as UTF-8 lossily: a stray Latin-1 byte in a caller name becomes U+FFFD
//! and the row is kept.
//!
//! Rows are split by [`crate::fastcsv`] (not the `csv` crate, for speed; the module says why).
//!
//! **Call id.** `uniqueid` where the file has it. A 16-column file has none: the id is derived as
//! `cdr-` followed by the 16 hex digits of the 64-bit FNV-1a hash of the row's 16 raw fields, each
//! followed by a 0x1F byte (quotes as written, doubled; a CRLF file's `\r` is not part of the field). The same row always gives the same id (so re-reading a file does not
//! count a call twice), and rows that differ in any field get different ids.
//!
//! Any other column count (e.g. a `cdr_custom` file with `clid` first) is refused row by row with
//! a message that says so.

use crate::fastcsv::{Next, Splitter};
use crate::util::{local_time, parse_secs, set_lossy, Fnv64};
use crate::{CdrReader, ReadError, RowError};
use jiff::tz::TimeZone;
use std::fmt::Write as _;
use std::io::Read;
use std::sync::Arc;
use tollguard_core::cdr::{Cdr, CdrFacts, CdrStore, Direction, Disposition};
use tollguard_core::time::LocalTimes;

/// Reads Asterisk `cdr_csv` rows.
pub struct AsteriskReader {
    name: Arc<str>,
    rows: Splitter<Box<dyn Read>>,
    times: LocalTimes,
}

impl AsteriskReader {
    /// A reader over `input`, local times in `tz`.
    pub fn new(name: Arc<str>, input: Box<dyn Read>, tz: TimeZone) -> AsteriskReader {
        AsteriskReader { name, rows: Splitter::new(input), times: LocalTimes::new(tz) }
    }

    /// Checks the column count of the row just split.
    fn columns(&self) -> Result<usize, String> {
        let n = self.rows.len();
        if n != 16 && n != 18 && n != 21 {
            let hint = if n == 19 { " (a cdr_custom layout? clid first is not cdr_csv)" } else { "" };
            return Err(format!("expected 16, 18 or 21 columns (Asterisk cdr_csv), found {n}{hint}"));
        }
        Ok(n)
    }

    /// Everything but the text fields, from the row just split at `line` (direction unknown:
    /// cdr_csv does not say it).
    fn facts(&mut self, line: u64) -> Result<CdrFacts, String> {
        let r = &mut self.rows;
        let start = local_time(&mut self.times, "start", r.field(9))?
            .ok_or_else(|| "field start: empty (every call has a start time)".to_string())?;
        let answer = local_time(&mut self.times, "answer", r.field(10))?;
        let end = local_time(&mut self.times, "end", r.field(11))?;
        let duration_s = parse_secs("duration", r.field(12))?;
        let billsec = parse_secs("billsec", r.field(13))?;
        if billsec > duration_s {
            return Err(format!("billsec {billsec} is longer than duration {duration_s}"));
        }
        let disposition = Disposition::from_asterisk_bytes(r.field(14));
        Ok(CdrFacts {
            start,
            answer,
            end,
            duration_s,
            billsec,
            disposition,
            direction: Direction::Unknown,
            line,
        })
    }

    /// The row just split, checked: its column count and everything but its text.
    fn checked(&mut self, line: u64) -> Result<(usize, CdrFacts), ReadError> {
        self.columns()
            .and_then(|n| Ok((n, self.facts(line)?)))
            .map_err(|reason| ReadError::Row(RowError { file: self.name.clone(), line, reason }))
    }

    /// The text fields and call id of the row just split (of `n` columns, checked) into `cdr`.
    fn fill_text(&mut self, n: usize, cdr: &mut Cdr) {
        let r = &mut self.rows;
        // Text checked as UTF-8 once for the whole record; field by field (invalid bytes
        // replaced) only when that fails.
        let has_id = n >= 18 && !r.raw(16).is_empty();
        let text_done = match r.text_fields() {
            Some(f) => {
                f.get(0, &mut cdr.account);
                f.get(1, &mut cdr.source);
                f.get(2, &mut cdr.dialled);
                f.get(3, &mut cdr.context);
                f.get(5, &mut cdr.channel);
                f.get(6, &mut cdr.dst_channel);
                if has_id {
                    f.get(16, &mut cdr.call_id);
                }
                true
            }
            None => false,
        };
        if !text_done {
            set_lossy(&mut cdr.account, r.field(0));
            set_lossy(&mut cdr.source, r.field(1));
            set_lossy(&mut cdr.dialled, r.field(2));
            set_lossy(&mut cdr.context, r.field(3));
            set_lossy(&mut cdr.channel, r.field(5));
            set_lossy(&mut cdr.dst_channel, r.field(6));
        }
        if has_id {
            if !text_done {
                set_lossy(&mut cdr.call_id, r.field(16));
            }
        } else {
            let mut h = Fnv64::new();
            for i in 0..16 {
                h.write(r.raw(i));
                h.write(&[0x1f]);
            }
            cdr.call_id.clear();
            let _ = write!(cdr.call_id, "cdr-{:016x}", h.finish());
        }
    }

    /// The next row's line, or what ended reading.
    fn next_row(&mut self) -> Result<Option<u64>, ReadError> {
        match self.rows.next() {
            Ok(Next::Record(line)) => Ok(Some(line)),
            Ok(Next::End) => Ok(None),
            Ok(Next::Bad(line, why)) => {
                Err(ReadError::Row(RowError { file: self.name.clone(), line, reason: why.to_string() }))
            }
            Err(source) => Err(ReadError::Io { file: self.name.clone(), error: source }),
        }
    }
}

impl CdrReader for AsteriskReader {
    fn read_into(&mut self, cdr: &mut Cdr) -> Result<bool, ReadError> {
        let Some(line) = self.next_row()? else { return Ok(false) };
        let (n, facts) = self.checked(line)?;
        cdr.clear();
        self.fill_text(n, cdr);
        cdr.set_facts(&facts);
        Ok(true)
    }

    /// The usual row (valid UTF-8, a `uniqueid`, no `""` in the text kept) goes into the store
    /// from the read buffer; any other through a [`Cdr`].
    fn read_to_store(&mut self, store: &mut CdrStore, scratch: &mut Cdr) -> Result<bool, ReadError> {
        let Some(line) = self.next_row()? else { return Ok(false) };
        let (n, facts) = self.checked(line)?;
        if let (true, Some(f)) = (n >= 18, self.rows.text_fields()) {
            // call id, account, source, dialled, context, channel, destination channel
            if let Some(text) = f.plain_all([16, 0, 1, 2, 3, 5, 6]) {
                if !text[0].is_empty() {
                    store.push_parts(text, &facts);
                    return Ok(true);
                }
            }
        }
        scratch.clear();
        self.fill_text(n, scratch);
        scratch.set_facts(&facts);
        store.push(scratch);
        Ok(true)
    }

    fn bytes_read(&self) -> u64 {
        self.rows.bytes_read()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn read_all(text: &[u8], tz: &str) -> (Vec<Cdr>, Vec<RowError>) {
        let mut r = AsteriskReader::new(
            Arc::from("test.csv"),
            Box::new(text.to_vec().leak() as &[u8]),
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

    pub(crate) fn fixture(rel: &str) -> Option<PathBuf> {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures").join(rel);
        if p.exists() {
            Some(p)
        } else {
            eprintln!("skipped: {} not found (../shared/fixtures is beside the project in CI)", p.display());
            None
        }
    }

    #[test]
    fn reads_the_public_18_column_samples() {
        let Some(p) = fixture("asterisk/master_csv_lines_from_public_code_comments.csv") else { return };
        let (ok, bad) = read_all(&std::fs::read(p).unwrap(), "Europe/Amsterdam");
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(ok.len(), 5);
        // line 1: IAX2 call read in Amsterdam summer time
        assert_eq!(ok[0].call_id, "asterisk-1240499812.774");
        assert_eq!(ok[0].start.to_string(), "2009-04-23T13:16:52Z");
        assert_eq!((ok[0].duration_s, ok[0].billsec), (45, 45));
        // line 2: BUSY, empty unquoted answer
        assert_eq!(ok[1].disposition, Disposition::Busy);
        assert_eq!(ok[1].answer, None);
        assert_eq!((ok[1].source.as_str(), ok[1].dialled.as_str()), ("8001", "8002"));
        assert_eq!(ok[1].line, 2);
        // line 4: backslash in lastdata, clid with empty name
        assert_eq!(ok[3].call_id, "1598519380.114");
        assert_eq!(ok[3].billsec, 654);
        assert_eq!(ok[3].channel, "SIP/sip0-00000015");
    }

    #[test]
    fn storing_from_the_read_buffer_gives_what_reading_then_storing_gives() {
        // the fixtures (when present), then rows of every kind: plain, `""` in a kept field, no
        // uniqueid (16 columns, or 18 with it empty), Latin-1 text, bad times, wrong column counts
        let (mut text, mut bad_rows) = (Vec::new(), 2);
        for (f, bad) in [
            ("asterisk/master_csv_lines_from_public_code_comments.csv", 0),
            ("asterisk/Master_KelySaina_cdr_custom_variant.csv", 14),
        ] {
            if let Some(p) = fixture(f) {
                text.extend(std::fs::read(p).unwrap());
                bad_rows += bad;
            }
        }
        let row = |acct: &str, ch: &str, start: &str, id: &str| {
            format!("\"{acct}\",\"201\",\"0031201234567\",\"from-internal\",\"\"\"Bob\"\" <201>\",\"{ch}\",\"SIP/trunk-02\",\"Dial\",\"x\",\"{start}\",,\"2024-01-02 10:00:20\",20,0,\"NO ANSWER\",\"DOCUMENTATION\"{id}\n")
        };
        for r in [
            row("acme", "SIP/201-01", "2024-01-02 10:00:00", ",\"id1\",\"\""),
            row("ac\"\"me", "SIP/201-01", "2024-01-02 10:00:01", ",\"id2\",\"\""),
            row("acme", "SIP/\"\"201\"\"", "2024-01-02 10:00:02", ",\"id3\",\"\""),
            row("acme", "SIP/201-01", "2024-01-02 10:00:03", ""),
            row("acme", "SIP/201-01", "2024-01-02 10:00:04", ",\"\",\"\""),
            row("acme", "SIP/201-01", "2024-01-02 10:00:0x", ",\"id4\",\"\""),
            row("acme", "SIP/201-01", "2024-01-02 10:00:05", ",\"id5\""),
            row("acme", "SIP/201-01", "2024-01-02 10:00:06", ",\"id6\",\"\",\"\",\"id6\",7"),
        ] {
            text.extend(r.into_bytes());
        }
        text.extend(b"\"M\xfcller\",\"201\",\"112\",\"c\",\"\",\"ch\",\"dch\",\"Dial\",\"\",\"2024-01-02 10:00:07\",,\"2024-01-02 10:00:20\",13,0,\"NO ANSWER\",\"DOCUMENTATION\",\"id7\",\"\"\n");
        let open = || {
            AsteriskReader::new(
                Arc::from("t.csv"),
                Box::new(text.clone().leak() as &[u8]),
                TimeZone::get("Europe/Amsterdam").unwrap(),
            )
        };
        let (mut by_cdr, mut direct) = (CdrStore::new(), CdrStore::new());
        let (mut errors_a, mut errors_b) = (vec![], vec![]);
        let (mut r, mut cdr) = (open(), Cdr::default());
        loop {
            match r.read_into(&mut cdr) {
                Ok(true) => by_cdr.push(&cdr),
                Ok(false) => break,
                Err(e) => errors_a.push(e.to_string()),
            }
        }
        let mut r = open();
        loop {
            match r.read_to_store(&mut direct, &mut cdr) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => errors_b.push(e.to_string()),
            }
        }
        assert_eq!(errors_a, errors_b);
        assert_eq!(errors_a.len(), bad_rows, "{errors_a:?}");
        assert_eq!(by_cdr.len(), direct.len());
        assert!(by_cdr.len() >= 7);
        let (mut a, mut b) = (Cdr::default(), Cdr::default());
        for i in 0..by_cdr.len() {
            by_cdr.get(i).load_into(&mut a);
            direct.get(i).load_into(&mut b);
            assert_eq!(a, b);
        }
    }

    #[test]
    fn refuses_the_cdr_custom_variant_row_by_row() {
        let Some(p) = fixture("asterisk/Master_KelySaina_cdr_custom_variant.csv") else { return };
        let (ok, bad) = read_all(&std::fs::read(p).unwrap(), "UTC");
        assert!(ok.is_empty());
        assert_eq!(bad.len(), 14);
        assert_eq!(bad[0].line, 1);
        assert!(bad[0].to_string().contains("found 19 (a cdr_custom layout?"), "{}", bad[0]);
    }

    #[test]
    fn sixteen_columns_get_a_stable_derived_id() {
        let row = b"\"acme\",\"201\",\"00670123456\",\"from-internal\",\"\"\"Bob\"\" <201>\",\"SIP/201-0001\",\"SIP/trunk-0002\",\"Dial\",\"SIP/trunk/00670123456\",\"2011-06-11 23:10:00\",\"2011-06-11 23:10:05\",\"2011-06-12 00:10:05\",3605,3600,\"ANSWERED\",\"DOCUMENTATION\"\n";
        let (a, _) = read_all(row, "Europe/Amsterdam");
        let (b, _) = read_all(row, "Europe/Amsterdam");
        assert_eq!(a[0].call_id, b[0].call_id);
        assert!(a[0].call_id.starts_with("cdr-") && a[0].call_id.len() == 20);
        let other = String::from_utf8(row.to_vec()).unwrap().replace("3600", "3599");
        let (c, _) = read_all(other.as_bytes(), "Europe/Amsterdam");
        assert_ne!(a[0].call_id, c[0].call_id);
        assert_eq!(a[0].account, "acme");
        assert_eq!(a[0].billsec, 3600);
    }

    #[test]
    fn twenty_one_columns_and_non_utf8_text_keep_the_row() {
        let mut row = b"\"acme\",\"201\",\"0031201234567\",\"from-internal\",\"\"\"M".to_vec();
        row.push(0xfc); // Latin-1 u-umlaut
        row.extend_from_slice(b"ller\"\" <201>\",\"PJSIP/201-01\",\"PJSIP/trunk-02\",\"Dial\",\"x\",\"2024-01-02 10:00:00\",,\"2024-01-02 10:00:20\",20,0,\"NO ANSWER\",\"DOCUMENTATION\",\"1704189600.1\",\"\",\"\",\"1704189600.1\",7\n");
        let (ok, bad) = read_all(&row, "UTC");
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(ok[0].call_id, "1704189600.1");
        assert_eq!(ok[0].disposition, Disposition::NoAnswer);
    }

    #[test]
    fn bad_rows_name_line_and_field_and_reading_goes_on() {
        let text = b"\"a\",\"1\",\"2\",\"c\",\"\",\"ch\",\"dch\",\"Dial\",\"\",\"2024-01-02 10:00:00\",,\"2024-01-02 10:00:20\",20,0,\"NO ANSWER\",\"DOCUMENTATION\",\"id1\",\"\"\n\
\"a\",\"1\",\"2\",\"c\",\"\",\"ch\",\"dch\",\"Dial\",\"\",\"2024/01/02 10:00\",,\"2024-01-02 10:00:20\",20,0,\"NO ANSWER\",\"DOCUMENTATION\",\"id2\",\"\"\n\
\"a\",\"1\",\"2\",\"c\",\"\",\"ch\",\"dch\",\"Dial\",\"\",\"2024-01-02 10:00:00\",,\"2024-01-02 10:00:20\",20,x,\"NO ANSWER\",\"DOCUMENTATION\",\"id3\",\"\"\n\
\"a\",\"1\",\"2\",\"c\",\"\",\"ch\",\"dch\",\"Dial\",\"\",\"2024-01-02 10:00:00\",,\"2024-01-02 10:00:20\",20,0,\"NO ANSWER\",\"DOCUMENTATION\",\"id4\",\"\"\n";
        let (ok, bad) = read_all(text, "UTC");
        assert_eq!(ok.iter().map(|c| c.call_id.as_str()).collect::<Vec<_>>(), ["id1", "id4"]);
        assert_eq!(
            bad.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
            [
                "test.csv:2: field start: not a date-time YYYY-MM-DD HH:MM:SS: \"2024/01/02 10:00\"",
                "test.csv:3: field billsec: not a whole number of seconds: \"x\"",
            ]
        );
    }
}
