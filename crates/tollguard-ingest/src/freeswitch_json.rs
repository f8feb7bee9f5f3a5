//! FreeSWITCH `mod_json_cdr` bodies.
//!
//! **Layout.** A file holds one JSON document (as `mod_json_cdr` writes one per call into
//! `log-dir`, possibly pretty-printed), or many documents one after another: one per line, or
//! simply concatenated. Commas and square brackets between documents are skipped, so a JSON array
//! of CDR documents reads the same. Only one document is held in memory at a time (at most
//! 16 MiB; a longer one is refused and reading resumes at the next line that starts with `{`).
//!
//! Each document has `variables` (channel variables, all strings), `callflow` (caller profiles)
//! and other sections that are not used here. With `encode-values=true`, the module's default,
//! every value in `variables` is URL-encoded by `switch_url_encode` (`%XX`, a space is `%20`, a
//! `+` is `%2B`); a value is percent-decoded when it contains `%` followed by two hex digits, and
//! `+` is never read as a space. Values outside `variables` are not encoded and are read as they
//! are.
//!
//! `callflow` is an array with the channel's **current** caller profile first and the profiles it
//! was transferred from after it (older FreeSWITCH versions write a single object). The first
//! profile is used: it is what `${destination_number}` and `${caller_id_number}` give in
//! `mod_cdr_csv`, so both FreeSWITCH readers see the same call the same way, and its `times` are
//! complete while a transferred-from profile's `hangup_time` is 0.
//!
//! **Mapping to [`Cdr`]**, first non-empty source wins:
//!
//! | `Cdr` | from |
//! |---|---|
//! | `call_id` | `variables.uuid`, `variables.call_uuid`, `callflow` `caller_profile.uuid` |
//! | `account` | `variables.accountcode`; else the caller's domain: `variables.domain_name`, `variables.sip_from_host`; else the `caller_profile.context` |
//! | `source` | `variables.caller_id_number`, `variables.sip_from_user`, `caller_profile.caller_id_number` |
//! | `dialled` | `variables.destination_number`, `caller_profile.destination_number` |
//! | `context` | `caller_profile.context`, `variables.context` |
//! | `channel`, `dst_channel` | `variables.channel_name`, `variables.bridge_channel` |
//! | `start` | `variables.start_epoch` (UTC seconds), `variables.start_uepoch` (µs), `callflow` `times.created_time` (µs) |
//! | `answer` | `variables.answer_epoch`, `variables.answer_uepoch`, `times.answered_time`; 0 means unanswered |
//! | `end` | `variables.end_epoch`, `variables.end_uepoch`, `times.hangup_time`; 0 means not known |
//! | `duration_s` | `variables.duration`; else end − start |
//! | `billsec` | `variables.billsec`; else end − answer when answered, else 0 |
//! | `disposition` | `variables.hangup_cause` as a Q.850 name; answered when `billsec > 0` or an answer time is set |
//!
//! The `*_stamp` strings are not used: they are local time in the switch's zone, which the
//! document does not name. `core-uuid` is not a call id: it names the FreeSWITCH process and is
//! the same in every document it writes.
//!
//! **B-legs.** With `log-b-leg=true` (the module's default) a bridged call is written twice: the
//! A-leg, and the B-leg with its own `uuid` and `variables.originating_leg_uuid` naming the A-leg.
//! Reading both would count the call and its cost twice, so a B-leg document is refused as a row
//! error that says so; the A-leg's document is the call. A channel originated without an A-leg
//! (e.g. by the `originate` API command) has no `originating_leg_uuid` and is read as a call.
//!
//! **Errors.** A document that is not valid JSON, or lacks a call id or start time, is a row error
//! at the line where the document starts (the reason gives the line of the syntax error); a
//! document cut short by the end of the input, or by a line that starts a new document, is a row
//! error too. Reading goes on with the next document.

use crate::util::parse_secs;
use crate::{CdrReader, ReadError, RowError};
use jiff::Timestamp;
use percent_encoding::percent_decode_str;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::io::{self, BufRead, BufReader, Read};
use std::sync::Arc;
use tollguard_core::cdr::{Cdr, Disposition};

/// The longest document kept in memory.
const MAX_DOCUMENT: usize = 16 << 20;

/// Reads FreeSWITCH `mod_json_cdr` documents.
pub struct FreeswitchJsonReader {
    name: Arc<str>,
    input: BufReader<Box<dyn Read>>,
    /// The document being framed.
    doc: Vec<u8>,
    /// One-based line of the next byte.
    line: u64,
    /// Bytes consumed.
    bytes: u64,
    /// The previous byte ended a line (or nothing was read yet).
    at_line_start: bool,
    /// A document started at this line with a `{` that was consumed while reporting the previous
    /// one; framing continues it.
    pending_open: Option<u64>,
    /// After an over-long document: skip to the next line that starts with `{`.
    skipping: bool,
}

/// What framing found.
enum Frame {
    /// A complete document in `doc`, starting at this line.
    Document(u64),
    /// Something that is not a document, starting at this line.
    Bad(u64, String),
    /// End of input.
    End,
}

impl FreeswitchJsonReader {
    /// A reader over `input`. Nothing is read until the first record is asked for.
    pub fn new(name: Arc<str>, input: Box<dyn Read>) -> Result<Self, ReadError> {
        Ok(FreeswitchJsonReader {
            name,
            input: BufReader::with_capacity(256 * 1024, input),
            doc: Vec::new(),
            line: 1,
            bytes: 0,
            at_line_start: true,
            pending_open: None,
            skipping: false,
        })
    }

    /// Finds the next top-level `{...}` by brace counting outside strings, leaving it in `doc`.
    fn frame(&mut self) -> Result<Frame, ReadError> {
        self.doc.clear();
        let mut depth = 0u32;
        let mut start_line = 0;
        if let Some(line) = self.pending_open.take() {
            self.doc.push(b'{');
            depth = 1;
            start_line = line;
        }
        let (mut in_string, mut escaped) = (false, false);
        // Newlines inside the current document so far.
        let mut doc_lines = 0u32;
        // Bytes outside any document that are not separators: (line, first bytes).
        let mut junk: Option<(u64, Vec<u8>)> = None;
        loop {
            let buf = match self.input.fill_buf() {
                Ok(buf) => buf,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(ReadError::Io { file: self.name.clone(), error: source }),
            };
            if buf.is_empty() {
                if let Some((line, sample)) = junk {
                    return Ok(Frame::Bad(line, junk_reason(&sample)));
                }
                if depth > 0 {
                    let reason = format!(
                        "document cut short: the input ends inside it ({} bytes, {} unclosed brackets)",
                        self.doc.len(),
                        depth
                    );
                    self.doc.clear();
                    return Ok(Frame::Bad(start_line, reason));
                }
                return Ok(Frame::End);
            }
            let mut used = 0;
            let mut result = None;
            for &b in buf {
                used += 1;
                let line_start = self.at_line_start;
                self.at_line_start = b == b'\n';
                if self.skipping {
                    if b == b'\n' {
                        self.line += 1;
                    } else if b == b'{' && line_start {
                        self.skipping = false;
                        depth = 1;
                        start_line = self.line;
                        self.doc.push(b);
                    }
                    continue;
                }
                if depth == 0 {
                    if let Some((line, sample)) = &mut junk {
                        if b == b'\n' {
                            self.line += 1;
                            result = Some(Frame::Bad(*line, junk_reason(sample)));
                            break;
                        }
                        if sample.len() < 40 {
                            sample.push(b);
                        }
                        continue;
                    }
                    match b {
                        b'\n' => self.line += 1,
                        b' ' | b'\t' | b'\r' | b',' | b'[' | b']' => {}
                        // a UTF-8 byte order mark at the very start
                        0xef | 0xbb | 0xbf if self.bytes + used as u64 <= 3 => {}
                        b'{' => {
                            depth = 1;
                            start_line = self.line;
                            doc_lines = 0;
                            self.doc.push(b);
                        }
                        _ => junk = Some((self.line, vec![b])),
                    }
                    continue;
                }
                if in_string {
                    if b == b'\n' {
                        // JSON strings cannot hold a raw line break: this document was cut short.
                        self.line += 1;
                        self.doc.clear();
                        result = Some(Frame::Bad(
                            start_line,
                            "document cut short: a line ends inside a string".to_string(),
                        ));
                        break;
                    }
                    self.doc.push(b);
                    if escaped {
                        escaped = false;
                    } else if b == b'\\' {
                        escaped = true;
                    } else if b == b'"' {
                        in_string = false;
                    }
                } else {
                    match b {
                        b'"' => in_string = true,
                        b'{' if line_start && doc_lines == 1 => {
                            // A one-line document followed by a line that starts another: the
                            // first was cut short (one document per line, the writer stopped).
                            self.doc.clear();
                            self.pending_open = Some(self.line);
                            result = Some(Frame::Bad(
                                start_line,
                                "document cut short: the next line starts another document".to_string(),
                            ));
                            break;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => depth -= 1,
                        b'\n' => {
                            self.line += 1;
                            doc_lines += 1;
                        }
                        _ => {}
                    }
                    self.doc.push(b);
                    if depth == 0 {
                        result = Some(Frame::Document(start_line));
                        break;
                    }
                }
                if self.doc.len() > MAX_DOCUMENT {
                    self.doc.clear();
                    self.skipping = true;
                    result = Some(Frame::Bad(
                        start_line,
                        format!(
                            "document longer than {} MiB: skipped to the next line that starts with {{",
                            MAX_DOCUMENT >> 20
                        ),
                    ));
                    break;
                }
            }
            self.input.consume(used);
            self.bytes += used as u64;
            if let Some(frame) = result {
                return Ok(frame);
            }
        }
    }
}

fn junk_reason(sample: &[u8]) -> String {
    format!(
        "not a JSON CDR document (expected {{): {:?}",
        String::from_utf8_lossy(sample).trim_end_matches(['\r', '\n'])
    )
}

impl CdrReader for FreeswitchJsonReader {
    fn read_into(&mut self, cdr: &mut Cdr) -> Result<bool, ReadError> {
        let line = match self.frame()? {
            Frame::End => return Ok(false),
            Frame::Bad(line, reason) => return Err(self.row_error(line, reason)),
            Frame::Document(line) => line,
        };
        cdr.clear();
        let value: Value = match serde_json::from_slice(&self.doc) {
            Ok(v) => v,
            Err(e) => {
                let text = e.to_string();
                let message = text.find(" at line ").map_or(text.as_str(), |i| &text[..i]);
                let at = line + (e.line() as u64).saturating_sub(1);
                let reason = format!("not valid JSON: {message} (line {at}, column {})", e.column());
                return Err(self.row_error(line, reason));
            }
        };
        match fill(cdr, &value) {
            Ok(()) => {
                cdr.line = line;
                Ok(true)
            }
            Err(reason) => Err(self.row_error(line, reason)),
        }
    }

    fn bytes_read(&self) -> u64 {
        self.bytes
    }
}

impl FreeswitchJsonReader {
    fn row_error(&self, line: u64, reason: String) -> ReadError {
        ReadError::Row(RowError { file: self.name.clone(), line, reason })
    }
}

/// One document's fields.
struct Doc<'a> {
    vars: Option<&'a Map<String, Value>>,
    profile: Option<&'a Map<String, Value>>,
    times: Option<&'a Map<String, Value>>,
}

impl<'a> Doc<'a> {
    fn new(root: &'a Value) -> Doc<'a> {
        let vars = root.get("variables").and_then(Value::as_object);
        let flow = match root.get("callflow") {
            Some(Value::Array(profiles)) => profiles.first(),
            other => other,
        };
        let profile = flow.and_then(|f| f.get("caller_profile")).and_then(Value::as_object);
        let times = flow.and_then(|f| f.get("times")).and_then(Value::as_object);
        Doc { vars, profile, times }
    }

    /// A channel variable, percent-decoded when encoded; `None` when absent or empty.
    fn var(&self, key: &str) -> Option<Cow<'a, str>> {
        let v = text(self.vars?.get(key)?)?;
        if has_percent_escape(&v) {
            Some(match v {
                Cow::Borrowed(s) => percent_decode_str(s).decode_utf8_lossy(),
                Cow::Owned(s) => Cow::Owned(percent_decode_str(&s).decode_utf8_lossy().into_owned()),
            })
        } else {
            Some(v)
        }
    }

    /// A caller profile field of the current profile; `None` when absent or empty.
    fn profile(&self, key: &str) -> Option<Cow<'a, str>> {
        text(self.profile?.get(key)?)
    }

    /// A time from `variables.<epoch>` (seconds), `variables.<uepoch>` or `callflow` `times.<key>`
    /// (microseconds); 0 means none.
    fn time(&self, epoch: &str, uepoch: &str, flow: &str) -> Result<Option<Timestamp>, String> {
        if let Some(s) = self.var(epoch) {
            return instant(&format!("variables.{epoch}"), &s, 1);
        }
        if let Some(s) = self.var(uepoch) {
            return instant(&format!("variables.{uepoch}"), &s, 1_000_000);
        }
        if let Some(s) = self.times.and_then(|t| t.get(flow)).and_then(text) {
            return instant(&format!("callflow times.{flow}"), &s, 1_000_000);
        }
        Ok(None)
    }
}

/// A JSON string (or number) as text; `None` when empty or of another type.
fn text(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(Cow::Borrowed(s.as_str())),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        _ => None,
    }
}

/// `%` followed by two hex digits somewhere in `s`.
fn has_percent_escape(s: &str) -> bool {
    s.as_bytes().windows(3).any(|w| w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit())
}

/// A count of seconds (`per_second == 1`) or microseconds since 1970 (UTC); 0 is `None`.
fn instant(field: &str, s: &str, per_second: i64) -> Result<Option<Timestamp>, String> {
    let t = s.trim();
    let bad = || format!("field {field}: not a unix time: {s:?}");
    if t.is_empty() || t.len() > 18 || !t.bytes().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    let n: i64 = t.parse().map_err(|_| bad())?;
    if n == 0 {
        return Ok(None);
    }
    Timestamp::from_second(n / per_second).map(Some).map_err(|_| bad())
}

fn set(out: &mut String, value: Option<Cow<'_, str>>) {
    out.clear();
    if let Some(v) = value {
        out.push_str(&v);
    }
}

fn seconds_between(later: Timestamp, earlier: Timestamp, what: &str) -> Result<u32, String> {
    let s = later.as_second() - earlier.as_second();
    u32::try_from(s).map_err(|_| format!("{what}: {s} seconds"))
}

fn fill(cdr: &mut Cdr, root: &Value) -> Result<(), String> {
    if !root.is_object() {
        return Err("not a JSON CDR document: the top level is not an object".to_string());
    }
    let d = Doc::new(root);
    if d.vars.is_none() && d.profile.is_none() {
        return Err("not a mod_json_cdr document: no \"variables\" and no \"callflow\"".to_string());
    }
    let call_id = d
        .var("uuid")
        .or_else(|| d.var("call_uuid"))
        .or_else(|| d.profile("uuid"))
        .ok_or("field variables.uuid: missing (the call id), and no callflow caller_profile.uuid")?;
    if let Some(a_leg) = d.var("originating_leg_uuid") {
        if a_leg != call_id {
            return Err(format!(
                "b-leg {call_id} of call {a_leg}: skipped, the a-leg's document is the call \
                 (json_cdr log-b-leg=true writes both)"
            ));
        }
    }
    set(&mut cdr.call_id, Some(call_id));
    cdr.start = d.time("start_epoch", "start_uepoch", "created_time")?.ok_or(
        "field variables.start_epoch: missing (every call has a start time; the local *_stamp \
         strings are not read)",
    )?;
    cdr.answer = d.time("answer_epoch", "answer_uepoch", "answered_time")?;
    cdr.end = d.time("end_epoch", "end_uepoch", "hangup_time")?;
    cdr.duration_s = match d.var("duration") {
        Some(s) => parse_secs("variables.duration", s.as_bytes())?,
        None => match cdr.end {
            Some(end) => seconds_between(end, cdr.start, "end before start")?,
            None => 0,
        },
    };
    cdr.billsec = match d.var("billsec") {
        Some(s) => parse_secs("variables.billsec", s.as_bytes())?,
        None => match (cdr.answer, cdr.end) {
            (Some(answer), Some(end)) => seconds_between(end, answer, "end before answer")?,
            _ => 0,
        },
    };
    if cdr.billsec > cdr.duration_s {
        return Err(format!("billsec {} is longer than duration {}", cdr.billsec, cdr.duration_s));
    }
    set(
        &mut cdr.account,
        d.var("accountcode")
            .or_else(|| d.var("domain_name"))
            .or_else(|| d.var("sip_from_host"))
            .or_else(|| d.profile("context")),
    );
    set(
        &mut cdr.source,
        d.var("caller_id_number")
            .or_else(|| d.var("sip_from_user"))
            .or_else(|| d.profile("caller_id_number")),
    );
    set(&mut cdr.dialled, d.var("destination_number").or_else(|| d.profile("destination_number")));
    set(&mut cdr.context, d.profile("context").or_else(|| d.var("context")));
    set(&mut cdr.channel, d.var("channel_name"));
    set(&mut cdr.dst_channel, d.var("bridge_channel"));
    let answered = cdr.billsec > 0 || cdr.answer.is_some();
    cdr.disposition = match d.var("hangup_cause") {
        Some(cause) => Disposition::from_q850_name(&cause, answered),
        None if answered => Disposition::Answered,
        None => Disposition::Unknown,
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn read_all(text: &[u8]) -> (Vec<Cdr>, Vec<RowError>) {
        let mut r =
            FreeswitchJsonReader::new(Arc::from("cdr.json"), Box::new(io::Cursor::new(text.to_vec())))
                .unwrap();
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
        assert_eq!(r.bytes_read(), text.len() as u64);
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
    fn reads_the_cgrates_fscdr_body() {
        let Some(p) = fixture("freeswitch/json_cdr_cgrates_fscdr_test.json") else { return };
        let (ok, bad) = read_all(&std::fs::read(p).unwrap());
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(ok.len(), 1);
        let c = &ok[0];
        assert_eq!(c.call_id, "3da8bf84-c133-4959-9e24-e72875cb33a1");
        // no accountcode and no domain_name: the caller's SIP domain
        assert_eq!(c.account, "10.10.10.204");
        assert_eq!(c.source, "1001");
        // only in the callflow
        assert_eq!(c.dialled, "1002");
        assert_eq!(c.context, "default");
        assert_eq!(c.channel, "sofia/internal/1001@10.10.10.204");
        assert_eq!(c.dst_channel, "sofia/internal/1002@10.10.10.100:5060");
        // start_epoch 1515666344; start_stamp 11:25:44 is the switch's local time (UTC+1)
        assert_eq!(c.start.to_string(), "2018-01-11T10:25:44Z");
        assert_eq!(c.answer.map(|t| t.as_second()), Some(1515666347));
        assert_eq!(c.end.map(|t| t.as_second()), Some(1515666415));
        assert_eq!((c.duration_s, c.billsec), (71, 68));
        assert_eq!(c.disposition, Disposition::Answered);
        assert_eq!(c.line, 1);
    }

    #[test]
    fn reads_the_cgrates_fsevent_pair_body() {
        let Some(p) = fixture("freeswitch/json_cdr_cgrates_fsevent_test_pair.json") else { return };
        let (ok, bad) = read_all(&std::fs::read(p).unwrap());
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(ok.len(), 1);
        let c = &ok[0];
        assert_eq!(c.call_id, "5a3a1d91-90d3-4db4-af5c-cc3ae15d93a4");
        assert_eq!(c.account, "1001");
        assert_eq!(c.source, "1001");
        assert_eq!(c.dialled, "1002");
        assert_eq!(c.start.as_second(), 1521025758);
        assert_eq!(c.start.to_string(), "2018-03-14T11:09:18Z");
        assert_eq!(c.answer.map(|t| t.to_string()).as_deref(), Some("2018-03-14T11:09:27Z"));
        assert_eq!((c.duration_s, c.billsec), (30, 21));
        assert_eq!(c.disposition, Disposition::Answered);
    }

    #[test]
    fn fixtures_concatenated_and_one_per_line_read_alike() {
        let (Some(a), Some(b)) = (
            fixture("freeswitch/json_cdr_cgrates_fscdr_test.json"),
            fixture("freeswitch/json_cdr_cgrates_fsevent_test_pair.json"),
        ) else {
            return;
        };
        let (a, b) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
        let pretty = [a.clone(), b"\n".to_vec(), b.clone()].concat();
        let compact =
            |doc: &[u8]| serde_json::to_vec(&serde_json::from_slice::<Value>(doc).unwrap()).unwrap();
        let lines = [compact(&a), b"\n".to_vec(), compact(&b), b"\n".to_vec()].concat();
        let (p, pbad) = read_all(&pretty);
        let (l, lbad) = read_all(&lines);
        assert!(pbad.is_empty() && lbad.is_empty(), "{pbad:?} {lbad:?}");
        assert_eq!(p.iter().map(|c| c.line).collect::<Vec<_>>(), [1, 381]);
        assert_eq!(l.iter().map(|c| c.line).collect::<Vec<_>>(), [1, 2]);
        let strip = |mut c: Cdr| {
            c.line = 0;
            c
        };
        assert_eq!(
            p.into_iter().map(strip).collect::<Vec<_>>(),
            l.into_iter().map(strip).collect::<Vec<_>>()
        );
    }

    #[test]
    fn url_encoded_values_are_decoded() {
        let body =
            br#"{"variables":{"uuid":"u-1","accountcode":"acme%20ltd","caller_id_number":"%2B31201234567",
"destination_number":"%2B6701234567","start_epoch":"1700000000","answer_epoch":"1700000005",
"end_epoch":"1700000065","duration":"65","billsec":"60","hangup_cause":"NORMAL_CLEARING",
"channel_name":"sofia/external/%2B31201234567%4010.0.0.1","sip_from_host":"pbx.example",
"caller_id_name":"A+B 100%"}}"#;
        let (ok, bad) = read_all(body);
        assert!(bad.is_empty(), "{bad:?}");
        let c = &ok[0];
        assert_eq!(c.source, "+31201234567");
        assert_eq!(c.dialled, "+6701234567");
        assert_eq!(c.account, "acme ltd");
        assert_eq!(c.channel, "sofia/external/+31201234567@10.0.0.1");
        assert_eq!((c.duration_s, c.billsec), (65, 60));
        assert_eq!(c.start.to_string(), "2023-11-14T22:13:20Z");
        // `+` is not a space, and a `%` without two hex digits is kept
        let d = Doc::new(&serde_json::from_slice::<Value>(body).unwrap())
            .var("caller_id_name")
            .unwrap()
            .into_owned();
        assert_eq!(d, "A+B 100%");
    }

    #[test]
    fn caller_and_destination_only_in_the_callflow() {
        // an object callflow (older versions), no accountcode nor domain: the context is the
        // account; durations derived from the epochs
        let body = br#"{"variables":{"uuid":"u-2","start_epoch":"1700000000","answer_epoch":"0",
"end_epoch":"1700000012","hangup_cause":"USER_BUSY"},
"callflow":{"caller_profile":{"caller_id_number":"201","destination_number":"00881612345",
"context":"from-internal","uuid":"u-2"}}}"#;
        let (ok, bad) = read_all(body);
        assert!(bad.is_empty(), "{bad:?}");
        let c = &ok[0];
        assert_eq!((c.source.as_str(), c.dialled.as_str()), ("201", "00881612345"));
        assert_eq!(c.account, "from-internal");
        assert_eq!(c.context, "from-internal");
        assert_eq!(c.answer, None);
        assert_eq!((c.duration_s, c.billsec), (12, 0));
        assert_eq!(c.disposition, Disposition::Busy);
        // the current (first) profile wins over the one it was transferred from
        let body = br#"{"variables":{"uuid":"u-3","start_uepoch":"1700000000123456"},
"callflow":[{"caller_profile":{"caller_id_number":"201","destination_number":"0900123"},
"times":{"created_time":"1","hangup_time":"1700000030000000"}},
{"caller_profile":{"caller_id_number":"201","destination_number":"ivr"}}]}"#;
        let (ok, bad) = read_all(body);
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(ok[0].dialled, "0900123");
        assert_eq!(ok[0].start.as_second(), 1700000000);
        assert_eq!(ok[0].duration_s, 30);
        assert_eq!(ok[0].disposition, Disposition::Unknown);
    }

    #[test]
    fn bad_documents_are_row_errors_and_reading_goes_on() {
        let text = b"{\"variables\":{\"uuid\":\"a\",\"start_epoch\":\"1700000000\"}}\n\
{\"variables\":{\"uuid\":\"b\",\"start_epoch\":\"17000\n\
{\"variables\":{\"uuid\":\"c\",\"start_epoch\":\"1700000000\"}\n\
{\"variables\":{\"uuid\":\"d\",\"start_epoch\":\"1700000000\"}}\n\
{\"variables\":{\"uuid\":\"e\",\"start_epoch\":1700000000,}}\n\
hello\n\
{\"variables\":{\"uuid\":\"f\",\"start_stamp\":\"2023-11-14 22:13:20\"}}\n\
{\"variables\":{\"uuid\":\"g\",\"start_epoch\":\"yesterday\"}}\n\
{\"variables\":{\"uuid\":\"h\",\"start_epoch\":\"1700000000\",\"originating_leg_uuid\":\"a\"}}\n\
{\"variables\":{\"uuid\":\"i\",\"start_epoch\":\"1700000000\",\"billsec\":\"5\",\"duration\":\"4\"}}\n\
{\"switchname\":\"x\"}\n\
{\"variables\":{\"uuid\":\"z\",\"start_epoch\":\"1700000000\"}}\n\
{\"variables\":{\"uuid\":\"trunc";
        let (ok, bad) = read_all(text);
        assert_eq!(
            ok.iter().map(|c| (c.call_id.as_str(), c.line)).collect::<Vec<_>>(),
            [("a", 1), ("d", 4), ("z", 12)]
        );
        assert_eq!(
            bad.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
            [
                "cdr.json:2: document cut short: a line ends inside a string",
                "cdr.json:3: document cut short: the next line starts another document",
                "cdr.json:5: not valid JSON: trailing comma (line 5, column 51)",
                "cdr.json:6: not a JSON CDR document (expected {): \"hello\"",
                "cdr.json:7: field variables.start_epoch: missing (every call has a start time; the local \
                 *_stamp strings are not read)",
                "cdr.json:8: field variables.start_epoch: not a unix time: \"yesterday\"",
                "cdr.json:9: b-leg h of call a: skipped, the a-leg's document is the call (json_cdr \
                 log-b-leg=true writes both)",
                "cdr.json:10: billsec 5 is longer than duration 4",
                "cdr.json:11: not a mod_json_cdr document: no \"variables\" and no \"callflow\"",
                "cdr.json:13: document cut short: the input ends inside it (27 bytes, 2 unclosed brackets)",
            ]
        );
    }

    #[test]
    fn pretty_printed_document_cut_short_at_the_end() {
        let Some(p) = fixture("freeswitch/json_cdr_cgrates_fscdr_test.json") else { return };
        let full = std::fs::read(p).unwrap();
        let (ok, bad) = read_all(&full[..full.len() / 2]);
        assert!(ok.is_empty());
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].line, 1);
        assert!(bad[0].reason.starts_with("document cut short"), "{}", bad[0]);
    }

    #[test]
    fn a_json_array_of_documents_and_a_bom_are_accepted() {
        let text = "\u{feff}[\n{\"variables\":{\"uuid\":\"a\",\"start_epoch\":\"1\"}},\n{\"variables\":{\"uuid\":\"b\",\"start_epoch\":\"2\"}}\n]\n";
        let (ok, bad) = read_all(text.as_bytes());
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(ok.iter().map(|c| (c.call_id.as_str(), c.line)).collect::<Vec<_>>(), [("a", 2), ("b", 3)]);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let junk: &[&[u8]] = &[
            b"",
            b"{",
            b"}}}}",
            b"{\"a\":\"\\",
            b"\xff\xfe{\"variables\":{\"uuid\":\"\xff\"}}",
            b"{\"variables\":[1,2]}",
            b"{\"variables\":{\"uuid\":\"x\",\"start_epoch\":\"99999999999999999\"}}",
            b"{\"variables\":{\"uuid\":\"x\",\"start_epoch\":\"5\",\"end_epoch\":\"1\"}}",
            b"{\"callflow\":[]}",
            b"{\"callflow\":[1]}",
            b"]]]{\"a\":[}]}",
        ];
        for j in junk {
            let _ = read_all(j);
        }
    }
}
