//! Cisco Unified Communications Manager CDR flat files (`cdr_<cluster>_<node>_<time>_<seq>`).
//!
//! **Layout.** Line 1 holds the quoted field names, line 2 their types (`INTEGER`,
//! `VARCHAR(50)`, `UNIQUEIDENTIFIER`, ...), then one record per line: integers unquoted, strings
//! quoted. The number of fields grows with CUCM versions (129, 133, ...), so fields are found by
//! their name in line 1, never by position; names are matched exactly, then ignoring ASCII case.
//! A second line that does not start with a type name is read as data. Times are UTC seconds
//! since 1970; 0 means "did not happen".
//!
//! Only `cdrRecordType` 1 (end-of-call CDR) is a call. A row of type 0 (start record) or 2 (CMR,
//! call management record: voice quality) is refused as a row error. A CMR *file*
//! (`cmr_...`, with `varVQMetrics` and no `dateTimeOrigination`) is refused when the reader is
//! made, as is any file whose header lacks a field this reader needs: the error names it.
//!
//! **Mapping to [`Cdr`].**
//!
//! | `Cdr` | field |
//! |---|---|
//! | `call_id` | `{globalCallID_callManagerId}-{globalCallID_callId}`, see below |
//! | `account` | `origDeviceName` (the phone, `SEP<MAC>`, or the trunk or gateway the call came in on); if empty, `callingPartyNumberPartition`; if that is empty too, `callingPartyNumber` |
//! | `source` | `callingPartyNumber` |
//! | `dialled` | `finalCalledPartyNumber` (after forwarding: the number the call really went to), else `originalCalledPartyNumber` |
//! | `context` | `finalCalledPartyNumberPartition` (e.g. an on-net or a PSTN partition) |
//! | `channel`, `dst_channel` | `origDeviceName`, `destDeviceName` |
//! | `start` | `dateTimeOrigination` (required, non-zero) |
//! | `answer` | `dateTimeConnect`; 0: not answered |
//! | `end` | `dateTimeDisconnect` |
//! | `duration_s` | `dateTimeDisconnect − dateTimeOrigination` |
//! | `billsec` | `dateTimeDisconnect − dateTimeConnect` when connected, else 0 (CUCM's own `duration` field) |
//! | `disposition` | answered when connected; else from the Q.850 cause in `destCause_value` (or, when that is 0 or a Cisco-specific code, `origCause_value`): 17 busy; 16, 18, 19, 21 no answer; other Q.850 codes failed; 0 and Cisco-specific codes unknown |
//!
//! The account is the originating device because CUCM names no account: a device is the stable
//! identity a call is placed from (an extension can be shared by several phones or logged into
//! any phone with extension mobility), and for calls from the network it names the trunk, which
//! keeps them apart from the phones.
//!
//! **Call id and legs.** One call can leave several records with the same global call id:
//! transfers, conferences and forwards write one record per leg segment, and recording or
//! monitoring forks (built-in bridge calls, whose `callingPartyNumber` is `b` followed by digits)
//! get records of their own. Every record is kept as a call. The first record of a global call id
//! gets `{callManagerId}-{callId}`; a later record with the same id gets
//! `-{origLegCallIdentifier}` appended, then also `-{destLegIdentifier}`, then `-{pkid}` instead,
//! whichever is first not yet given (only a file without `pkid` can then repeat an id). Ids are
//! remembered for the last 65,536 records (about 1 MB), which keeps memory constant and covers
//! the legs of one call; the ids depend only on the file, so reading it again gives the same
//! ids.

use crate::util::{csv_builder, read_record, set_lossy, trim, Fnv64};
use crate::{CdrReader, ReadError, RowError};
use jiff::Timestamp;
use std::collections::{HashSet, VecDeque};
use std::fmt::Write as _;
use std::io::{self, Read};
use std::sync::Arc;
use tollguard_core::cdr::{Cdr, Disposition};

/// How many recent call ids are remembered to keep ids unique.
const RECENT_IDS: usize = 1 << 16;

/// Column indexes of the fields used, resolved once from the header.
#[derive(Clone, Copy, Debug)]
struct Columns {
    record_type: usize,
    cm_id: usize,
    call_id: usize,
    orig_leg: usize,
    dest_leg: Option<usize>,
    pkid: Option<usize>,
    origination: usize,
    connect: usize,
    disconnect: usize,
    calling: usize,
    calling_partition: Option<usize>,
    original_called: usize,
    final_called: usize,
    final_called_partition: Option<usize>,
    orig_device: usize,
    dest_device: Option<usize>,
    orig_cause: Option<usize>,
    dest_cause: Option<usize>,
}

/// Reads Cisco CUCM CDR flat files.
pub struct CucmReader {
    name: Arc<str>,
    csv: csv::Reader<Box<dyn Read>>,
    record: csv::ByteRecord,
    /// `None` for an empty input.
    cols: Option<Columns>,
    /// The second line, when it was data rather than types: read first.
    first_data: Option<csv::ByteRecord>,
    recent: RecentIds,
}

impl CucmReader {
    /// A reader over `input`: reads the header line (and the line of types). Fails when the input
    /// is not a CUCM CDR file.
    pub fn new(name: Arc<str>, input: Box<dyn Read>) -> Result<Self, ReadError> {
        let mut csv = csv_builder().from_reader(input);
        let mut header = csv::ByteRecord::new();
        let mut cols = None;
        let mut first_data = None;
        if read_record(&name, &mut csv, &mut header).map_err(|e| fatal(&name, e))? {
            let names: Vec<String> = header
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    let f = if i == 0 { f.strip_prefix(b"\xef\xbb\xbf").unwrap_or(f) } else { f };
                    String::from_utf8_lossy(trim(f)).into_owned()
                })
                .collect();
            cols = Some(resolve(&names).map_err(|msg| ReadError::Io {
                file: name.clone(),
                error: io::Error::new(io::ErrorKind::InvalidData, msg),
            })?);
            let mut types = csv::ByteRecord::new();
            if read_record(&name, &mut csv, &mut types).map_err(|e| fatal(&name, e))? {
                let first = trim(types.get(0).unwrap_or_default());
                let is_types = [&b"INTEGER"[..], b"VARCHAR", b"UNIQUEIDENTIFIER", b"CHAR", b"BIGINT"]
                    .iter()
                    .any(|t| first.len() >= t.len() && first[..t.len()].eq_ignore_ascii_case(t));
                if !is_types {
                    first_data = Some(types);
                }
            }
        }
        Ok(CucmReader {
            name,
            csv,
            record: csv::ByteRecord::new(),
            cols,
            first_data,
            recent: RecentIds::new(RECENT_IDS),
        })
    }

    fn fill(&mut self, cols: &Columns, cdr: &mut Cdr) -> Result<(), String> {
        let r = &self.record;
        let get = |i: usize, field: &str| -> Result<&[u8], String> {
            r.get(i).map(trim).ok_or_else(|| {
                format!("field {field}: missing (the row has {} fields, fewer than the header)", r.len())
            })
        };
        let opt = |i: Option<usize>| i.and_then(|i| r.get(i)).map(trim).unwrap_or_default();
        let record_type = get(cols.record_type, "cdrRecordType")?;
        match record_type {
            b"1" => {}
            b"0" => return Err("cdrRecordType 0: a start record, not a finished call".to_string()),
            b"2" => return Err("cdrRecordType 2: a CMR (call quality record), not a call".to_string()),
            other => {
                return Err(format!(
                    "field cdrRecordType: not a known record type: {:?}",
                    String::from_utf8_lossy(other)
                ))
            }
        }
        let origination = epoch("dateTimeOrigination", get(cols.origination, "dateTimeOrigination")?)?
            .ok_or_else(|| "field dateTimeOrigination: 0 (every call has a start time)".to_string())?;
        let connect = epoch("dateTimeConnect", get(cols.connect, "dateTimeConnect")?)?;
        let disconnect = epoch("dateTimeDisconnect", get(cols.disconnect, "dateTimeDisconnect")?)?;
        cdr.start = origination;
        cdr.answer = connect;
        cdr.end = disconnect;
        if let Some(end) = disconnect {
            cdr.duration_s = seconds(end, origination, "dateTimeDisconnect", "dateTimeOrigination")?;
            if let Some(connect) = connect {
                cdr.billsec = seconds(end, connect, "dateTimeDisconnect", "dateTimeConnect")?;
            }
        }
        if connect.is_some_and(|c| c < origination) {
            return Err("dateTimeConnect is before dateTimeOrigination".to_string());
        }

        let calling = get(cols.calling, "callingPartyNumber")?;
        set_lossy(&mut cdr.source, calling);
        let final_called = get(cols.final_called, "finalCalledPartyNumber")?;
        if final_called.is_empty() {
            set_lossy(&mut cdr.dialled, get(cols.original_called, "originalCalledPartyNumber")?);
        } else {
            set_lossy(&mut cdr.dialled, final_called);
        }
        let orig_device = get(cols.orig_device, "origDeviceName")?;
        set_lossy(&mut cdr.channel, orig_device);
        set_lossy(&mut cdr.dst_channel, opt(cols.dest_device));
        set_lossy(&mut cdr.context, opt(cols.final_called_partition));
        let account = [orig_device, opt(cols.calling_partition), calling]
            .into_iter()
            .find(|a| !a.is_empty())
            .unwrap_or_default();
        set_lossy(&mut cdr.account, account);

        cdr.disposition = if cdr.answer.is_some() {
            Disposition::Answered
        } else {
            let cause = |i: Option<usize>| {
                std::str::from_utf8(opt(i)).ok().and_then(|s| s.parse::<i64>().ok()).unwrap_or(0)
            };
            let dest = cause(cols.dest_cause);
            let code = if (1..=127).contains(&dest) { dest } else { cause(cols.orig_cause) };
            Disposition::from_q850_name(q850_code_name(code), false)
        };
        // The id last, once the row is known to be good, so a refused row takes no id.
        let cm = whole("globalCallID_callManagerId", get(cols.cm_id, "globalCallID_callManagerId")?)?;
        let id = whole("globalCallID_callId", get(cols.call_id, "globalCallID_callId")?)?;
        let orig_leg = get(cols.orig_leg, "origLegCallIdentifier")?;
        cdr.call_id.clear();
        cdr.call_id.push_str(cm);
        cdr.call_id.push('-');
        cdr.call_id.push_str(id);
        if !self.recent.insert(&cdr.call_id) {
            // A later record of the same global call: make the id unique.
            let _ = write!(cdr.call_id, "-{}", String::from_utf8_lossy(orig_leg));
            if !self.recent.insert(&cdr.call_id) {
                let _ = write!(cdr.call_id, "-{}", String::from_utf8_lossy(opt(cols.dest_leg)));
                let pkid = opt(cols.pkid);
                if !self.recent.insert(&cdr.call_id) && !pkid.is_empty() {
                    cdr.call_id.clear();
                    let _ = write!(cdr.call_id, "{cm}-{id}-{}", String::from_utf8_lossy(pkid));
                    self.recent.insert(&cdr.call_id);
                }
            }
        }
        Ok(())
    }
}

/// The FreeSWITCH-style name of a Q.850 cause code, as far as [`Disposition::from_q850_name`]
/// tells them apart: the no-answer and busy codes by name, any other Q.850 code (1-127) as a
/// failure, and 0 or anything outside Q.850 (Cisco's own codes) as `""`, which is unknown.
pub(crate) fn q850_code_name(code: i64) -> &'static str {
    match code {
        16 => "NORMAL_CLEARING",
        17 => "USER_BUSY",
        18 => "NO_USER_RESPONSE",
        19 => "NO_ANSWER",
        21 => "CALL_REJECTED",
        1..=127 => "FAILURE",
        _ => "",
    }
}

fn resolve(names: &[String]) -> Result<Columns, String> {
    let find = |name: &str| -> Option<usize> {
        names
            .iter()
            .position(|n| n == name)
            .or_else(|| names.iter().position(|n| n.eq_ignore_ascii_case(name)))
    };
    let has = |name: &str| find(name).is_some();
    if has("varVQMetrics") || (has("numberPacketsSent") && !has("dateTimeOrigination")) {
        return Err("a CUCM CMR file (call management records: voice quality, fields like varVQMetrics), \
                    not a CDR file: read the cdr_* files, not the cmr_* files"
            .to_string());
    }
    let need = |name: &str| -> Result<usize, String> {
        find(name).ok_or_else(|| {
            let shown: Vec<&str> = names.iter().take(8).map(String::as_str).collect();
            format!(
                "not a CUCM CDR file: field {name:?} is missing from the header line ({} fields: {}{})",
                names.len(),
                shown.join(", "),
                if names.len() > shown.len() { ", ..." } else { "" }
            )
        })
    };
    Ok(Columns {
        record_type: need("cdrRecordType")?,
        cm_id: need("globalCallID_callManagerId")?,
        call_id: need("globalCallID_callId")?,
        orig_leg: need("origLegCallIdentifier")?,
        dest_leg: find("destLegIdentifier"),
        pkid: find("pkid"),
        origination: need("dateTimeOrigination")?,
        connect: need("dateTimeConnect")?,
        disconnect: need("dateTimeDisconnect")?,
        calling: need("callingPartyNumber")?,
        calling_partition: find("callingPartyNumberPartition"),
        original_called: need("originalCalledPartyNumber")?,
        final_called: need("finalCalledPartyNumber")?,
        final_called_partition: find("finalCalledPartyNumberPartition"),
        orig_device: need("origDeviceName")?,
        dest_device: find("destDeviceName"),
        orig_cause: find("origCause_value"),
        dest_cause: find("destCause_value"),
    })
}

/// A UTC time in seconds; 0 is `None`.
fn epoch(field: &str, bytes: &[u8]) -> Result<Option<Timestamp>, String> {
    let t = trim(bytes);
    let bad = || format!("field {field}: not a unix time: {:?}", String::from_utf8_lossy(bytes));
    if t.is_empty() || t.len() > 12 || !t.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    let n = t.iter().fold(0i64, |n, &c| n * 10 + (c - b'0') as i64);
    if n == 0 {
        return Ok(None);
    }
    Timestamp::from_second(n).map(Some).map_err(|_| bad())
}

fn seconds(
    later: Timestamp,
    earlier: Timestamp,
    later_name: &str,
    earlier_name: &str,
) -> Result<u32, String> {
    u32::try_from(later.as_second() - earlier.as_second())
        .map_err(|_| format!("{later_name} is before {earlier_name}"))
}

/// A whole number field, as text.
fn whole<'a>(field: &str, bytes: &'a [u8]) -> Result<&'a str, String> {
    let t = trim(bytes);
    if t.is_empty() || t.len() > 20 || !t.iter().all(u8::is_ascii_digit) {
        return Err(format!("field {field}: not a whole number: {:?}", String::from_utf8_lossy(bytes)));
    }
    // all ASCII digits
    Ok(std::str::from_utf8(t).unwrap_or_default())
}

/// A header problem or I/O error while the reader is made: the file cannot be read at all.
fn fatal(name: &Arc<str>, e: ReadError) -> ReadError {
    match e {
        ReadError::Row(row) => ReadError::Io {
            file: name.clone(),
            error: io::Error::new(io::ErrorKind::InvalidData, format!("line {}: {}", row.line, row.reason)),
        },
        io => io,
    }
}

/// The ids given to the last `cap` records, as 64-bit hashes.
struct RecentIds {
    set: HashSet<u64>,
    order: VecDeque<u64>,
    cap: usize,
}

impl RecentIds {
    fn new(cap: usize) -> RecentIds {
        RecentIds { set: HashSet::new(), order: VecDeque::new(), cap }
    }

    /// Remembers `id`; false when it was already given.
    fn insert(&mut self, id: &str) -> bool {
        let mut h = Fnv64::new();
        h.write(id.as_bytes());
        let key = h.finish();
        if !self.set.insert(key) {
            return false;
        }
        self.order.push_back(key);
        if self.order.len() > self.cap {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }
}

impl CdrReader for CucmReader {
    fn read_into(&mut self, cdr: &mut Cdr) -> Result<bool, ReadError> {
        let Some(cols) = self.cols else { return Ok(false) };
        if let Some(first) = self.first_data.take() {
            self.record = first;
        } else {
            if !read_record(&self.name, &mut self.csv, &mut self.record)? {
                return Ok(false);
            }
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

    fn reader(text: &[u8]) -> Result<CucmReader, ReadError> {
        CucmReader::new(Arc::from("cdr_test"), Box::new(io::Cursor::new(text.to_vec())))
    }

    fn read_all(text: &[u8]) -> (Vec<Cdr>, Vec<RowError>) {
        let mut r = reader(text).unwrap();
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

    fn io_message(r: Result<CucmReader, ReadError>) -> String {
        match r {
            Err(ReadError::Io { error: source, .. }) => {
                assert_eq!(source.kind(), io::ErrorKind::InvalidData);
                source.to_string()
            }
            Err(e) => panic!("expected an I/O error, got {e}"),
            Ok(_) => panic!("expected an error"),
        }
    }

    fn check_sample(ok: &[Cdr], bad: &[RowError]) {
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(ok.len(), 3);
        // two built-in-bridge recording forks, never connected
        for (c, id, src, dev, line) in [
            (&ok[0], "2-25449", "b002179144511001", "SEPCC7F750586B7", 3),
            (&ok[1], "2-25448", "b002179144411001", "SEPCC8E7148AD29", 4),
        ] {
            assert_eq!(c.call_id, id);
            assert_eq!(c.source, src);
            assert_eq!(c.dialled, "5030079981");
            assert_eq!(c.context, "InformLabRecording");
            assert_eq!(c.account, dev);
            assert_eq!(c.start.as_second(), 1744993930);
            assert_eq!(c.answer, None);
            assert_eq!((c.duration_s, c.billsec), (0, 0));
            // orig cause 0, dest cause 1459617833 is not Q.850
            assert_eq!(c.disposition, Disposition::Unknown);
            assert_eq!(c.line, line);
        }
        // the answered 11 s call from 5033466594 to 5033466593
        let c = &ok[2];
        assert_eq!(c.call_id, "2-25447");
        assert_eq!(c.source, "5033466594");
        assert_eq!(c.dialled, "5033466593");
        assert_eq!(c.account, "SEPCC7F750586B7");
        assert_eq!(c.channel, "SEPCC7F750586B7");
        assert_eq!(c.dst_channel, "SEPCC8E7148AD29");
        assert_eq!(c.context, "OnNet");
        assert_eq!(c.start.to_string(), "2025-04-18T16:32:08Z");
        assert_eq!(c.answer.map(|t| t.as_second()), Some(1744993930));
        assert_eq!(c.end.map(|t| t.as_second()), Some(1744993941));
        assert_eq!((c.duration_s, c.billsec), (13, 11));
        assert_eq!(c.disposition, Disposition::Answered);
        assert_eq!(c.line, 5);
    }

    #[test]
    fn reads_the_133_field_sample() {
        let Some(p) = fixture("cucm/cdr_sieteunoseis_cdr-examples.txt") else { return };
        let (ok, bad) = read_all(&std::fs::read(p).unwrap());
        check_sample(&ok, &bad);
    }

    #[test]
    fn reads_a_129_field_version_by_name() {
        let Some(p) = fixture("cucm/cdr_sieteunoseis_cdr-examples.txt") else { return };
        let text = std::fs::read_to_string(p).unwrap();
        let mut out = String::new();
        for line in text.lines() {
            let fields: Vec<&str> = line.split(',').collect();
            assert_eq!(fields.len(), 133, "the sample has no commas inside fields");
            out.push_str(&fields[..129].join(","));
            out.push('\n');
        }
        let (ok, bad) = read_all(out.as_bytes());
        check_sample(&ok, &bad);
        // and with the columns in another order
        let mut shuffled = String::new();
        for line in out.lines() {
            let mut fields: Vec<&str> = line.split(',').collect();
            fields.reverse();
            shuffled.push_str(&fields.join(","));
            shuffled.push('\n');
        }
        let (ok, bad) = read_all(shuffled.as_bytes());
        check_sample(&ok, &bad);
    }

    #[test]
    fn refuses_the_cmr_file() {
        let Some(p) = fixture("cucm/cmr_sieteunoseis_cdr-examples.txt") else { return };
        let msg = io_message(reader(&std::fs::read(p).unwrap()));
        assert!(msg.starts_with("a CUCM CMR file (call management records"), "{msg}");
        assert!(msg.contains("read the cdr_* files"), "{msg}");
    }

    #[test]
    fn a_missing_field_is_named() {
        let text = b"\"cdrRecordType\",\"globalCallID_callManagerId\",\"globalCallID_callId\"\nINTEGER,INTEGER,INTEGER\n";
        let msg = io_message(reader(text));
        assert_eq!(
            msg,
            "not a CUCM CDR file: field \"origLegCallIdentifier\" is missing from the header line (3 fields: \
             cdrRecordType, globalCallID_callManagerId, globalCallID_callId)"
        );
        // an Asterisk file is not mistaken for one
        let msg = io_message(reader(b"\"acme\",\"201\",\"00670123456\"\n"));
        assert!(msg.contains("\"cdrRecordType\" is missing"), "{msg}");
    }

    const HEADER: &str = "\"cdrRecordType\",\"globalCallID_callManagerId\",\"globalCallID_callId\",\
\"origLegCallIdentifier\",\"destLegIdentifier\",\"dateTimeOrigination\",\"dateTimeConnect\",\
\"dateTimeDisconnect\",\"callingPartyNumber\",\"originalCalledPartyNumber\",\"finalCalledPartyNumber\",\
\"origDeviceName\",\"origCause_value\",\"destCause_value\",\"pkid\"\n";

    #[test]
    fn legs_of_one_call_get_unique_ids_and_causes_map() {
        let rows = "\
1,1,100,11,12,1700000000,1700000005,1700000065,\"1001\",\"1002\",\"1002\",\"SEP1\",16,0,\"p1\"\n\
1,1,100,11,14,1700000000,1700000070,1700000130,\"1001\",\"1002\",\"00670123\",\"SEP1\",0,16,\"p2\"\n\
1,1,100,11,14,1700000000,1700000070,1700000130,\"1001\",\"1002\",\"00670123\",\"SEP1\",0,16,\"p3\"\n\
1,1,100,11,14,1700000000,1700000070,1700000130,\"1001\",\"1002\",\"00670123\",\"SEP1\",0,16,\"p4\"\n\
1,1,101,21,22,1700000200,0,1700000210,\"1001\",\"1003\",\"\",\"\",0,17,\"p5\"\n\
1,1,102,31,32,1700000300,0,1700000330,\"1001\",\"1004\",\"1004\",\"SEP1\",16,0,\"p6\"\n\
1,1,103,41,42,1700000400,0,1700000401,\"1001\",\"1005\",\"1005\",\"SEP1\",0,34,\"p7\"\n";
        // no header types line this time: the second line is data
        let (ok, bad) = read_all(format!("{HEADER}{rows}").as_bytes());
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(
            ok.iter().map(|c| c.call_id.as_str()).collect::<Vec<_>>(),
            ["1-100", "1-100-11", "1-100-11-14", "1-100-p4", "1-101", "1-102", "1-103"]
        );
        assert_eq!(ok[0].line, 2);
        assert_eq!(ok[1].dialled, "00670123");
        assert_eq!(ok[1].billsec, 60);
        // empty final called number and device: the original number, the calling number as account
        assert_eq!((ok[4].dialled.as_str(), ok[4].account.as_str()), ("1003", "1001"));
        assert_eq!(
            ok[4..].iter().map(|c| c.disposition).collect::<Vec<_>>(),
            [Disposition::Busy, Disposition::NoAnswer, Disposition::Failed]
        );
    }

    #[test]
    fn bad_rows_name_line_and_field_and_reading_goes_on() {
        let rows = "\
INTEGER,INTEGER\n\
1,1,100,11,12,1700000000,1700000005,1700000065,\"1001\",\"1002\",\"1002\",\"SEP1\",16,0,\"p1\"\n\
2,1,100,11,12,1700000000,1700000005,1700000065,\"1001\",\"1002\",\"1002\",\"SEP1\",16,0,\"p1\"\n\
1,1,101,11,12,0,0,1700000065,\"1001\",\"1002\",\"1002\",\"SEP1\",16,0,\"p1\"\n\
1,1,102,11,12,1700000000,1700000005,1699999999,\"1001\",\"1002\",\"1002\",\"SEP1\",16,0,\"p1\"\n\
1,1,103,11,12,2025/4/18,1700000005,1700000065,\"1001\",\"1002\",\"1002\",\"SEP1\",16,0,\"p1\"\n\
1,1,104,11,12,1700000000\n\
1,x,105,11,12,1700000000,1700000005,1700000065,\"1001\",\"1002\",\"1002\",\"SEP1\",16,0,\"p1\"\n\
0,1,106,11,12,1700000000,1700000005,1700000065,\"1001\",\"1002\",\"1002\",\"SEP1\",16,0,\"p1\"\n\
1,1,107,11,12,1700000000,1700000005,1700000065,\"1001\",\"1002\",\"1002\",\"SEP1\",16,0,\"p1\"\n";
        let (ok, bad) = read_all(format!("{HEADER}{rows}").as_bytes());
        assert_eq!(
            ok.iter().map(|c| (c.call_id.as_str(), c.line)).collect::<Vec<_>>(),
            [("1-100", 3), ("1-107", 11)]
        );
        assert_eq!(
            bad.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
            [
                "cdr_test:4: cdrRecordType 2: a CMR (call quality record), not a call",
                "cdr_test:5: field dateTimeOrigination: 0 (every call has a start time)",
                "cdr_test:6: dateTimeDisconnect is before dateTimeOrigination",
                "cdr_test:7: field dateTimeOrigination: not a unix time: \"2025/4/18\"",
                "cdr_test:8: field dateTimeConnect: missing (the row has 6 fields, fewer than the header)",
                "cdr_test:9: field globalCallID_callManagerId: not a whole number: \"x\"",
                "cdr_test:10: cdrRecordType 0: a start record, not a finished call",
            ]
        );
    }

    #[test]
    fn empty_input_has_no_records_and_junk_never_panics() {
        assert!(read_all(b"").0.is_empty());
        let junk: &[&[u8]] = &[b"\"", b"\xff\xfe", b"\n\n\n", b"\"cdrRecordType\"\n\"\n"];
        for j in junk {
            if let Ok(mut r) = reader(j) {
                let mut cdr = Cdr::default();
                while !matches!(r.read_into(&mut cdr), Ok(false) | Err(ReadError::Io { .. })) {}
            }
        }
        let mut full = HEADER.to_string();
        full.push_str("1,1,1,1,1,99999999999,0,0,\"\",\"\",\"\",\"\",\"\",\"\",\"\"\n,,,,\n\"\n");
        let _ = read_all(full.as_bytes());
    }
}
