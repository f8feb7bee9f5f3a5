//! The call detail record as tollguard sees it, whatever wrote it.
//!
//! Readers fill a [`Cdr`] in place (`read_into`) so that a stream of millions of rows reuses the
//! same buffers: the per-row path allocates nothing once the strings have grown to size.

use jiff::Timestamp;
use std::fmt;

/// How the call ended, mapped from each format's own words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub enum Disposition {
    /// Answered (talk time may still be zero).
    Answered,
    /// Rang out or was cancelled by the caller.
    NoAnswer,
    /// Busy.
    Busy,
    /// Failed (congestion, no route, network error).
    Failed,
    /// Not known from the record.
    #[default]
    Unknown,
}

impl Disposition {
    /// Lower-case name used in outputs.
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::Answered => "answered",
            Disposition::NoAnswer => "no_answer",
            Disposition::Busy => "busy",
            Disposition::Failed => "failed",
            Disposition::Unknown => "unknown",
        }
    }

    /// Asterisk's `disposition` column (`ANSWERED`, `NO ANSWER`, `BUSY`, `FAILED`, `CONGESTION`).
    pub fn from_asterisk(s: &str) -> Disposition {
        Disposition::from_asterisk_bytes(s.trim().as_bytes())
    }

    /// [`Disposition::from_asterisk`] of a field's raw bytes, with no UTF-8 check first (bytes
    /// that are not UTF-8 name no disposition: `Unknown`); ASCII whitespace is trimmed, as
    /// Asterisk writes no other.
    pub fn from_asterisk_bytes(b: &[u8]) -> Disposition {
        match b.trim_ascii() {
            b"ANSWERED" => Disposition::Answered,
            b"NO ANSWER" | b"NOANSWER" => Disposition::NoAnswer,
            b"BUSY" => Disposition::Busy,
            b"FAILED" | b"CONGESTION" | b"NOROUTE" => Disposition::Failed,
            _ => Disposition::Unknown,
        }
    }

    /// A Q.850 cause name as FreeSWITCH writes it (`NORMAL_CLEARING`, `USER_BUSY`, ...), together
    /// with whether the call was answered.
    pub fn from_q850_name(cause: &str, answered: bool) -> Disposition {
        if answered {
            return Disposition::Answered;
        }
        match cause.trim() {
            "USER_BUSY" => Disposition::Busy,
            "NO_ANSWER" | "NO_USER_RESPONSE" | "ORIGINATOR_CANCEL" | "NORMAL_CLEARING"
            | "ALLOTTED_TIMEOUT" | "CALL_REJECTED" => Disposition::NoAnswer,
            "" => Disposition::Unknown,
            _ => Disposition::Failed,
        }
    }
}

impl fmt::Display for Disposition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which way a call went, as far as the PBX or switch is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub enum Direction {
    /// From an extension out to the network: this is what costs money.
    Outbound,
    /// From the network in to an extension: kept as evidence, never priced.
    Inbound,
    /// Extension to extension.
    Internal,
    /// Not decided yet (readers leave this; [`DirectionRules`] decides).
    #[default]
    Unknown,
}

impl Direction {
    /// Lower-case name used in outputs.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Outbound => "outbound",
            Direction::Inbound => "inbound",
            Direction::Internal => "internal",
            Direction::Unknown => "unknown",
        }
    }
}

/// One call detail record, whatever format it came from.
///
/// All times are instants (UTC); readers convert local times with the zone they were given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cdr {
    /// The record's own call id (Asterisk `uniqueid`, FreeSWITCH `uuid`, CUCM
    /// `globalCallID_callManagerId-globalCallID_callId`), or the documented derived id.
    pub call_id: String,
    /// The account the call is charged to (Asterisk `accountcode`).
    pub account: String,
    /// The calling extension or number (Asterisk `src`).
    pub source: String,
    /// The number as dialled (Asterisk `dst`).
    pub dialled: String,
    /// Dialplan context of the destination (Asterisk `dcontext`), used to infer direction.
    pub context: String,
    /// The originating channel (Asterisk `channel`), used to infer direction.
    pub channel: String,
    /// The destination channel (Asterisk `dstchannel`), used to infer direction.
    pub dst_channel: String,
    /// When the call started (the attempt).
    pub start: Timestamp,
    /// When it was answered, if it was.
    pub answer: Option<Timestamp>,
    /// When it ended.
    pub end: Option<Timestamp>,
    /// Seconds from start to end.
    pub duration_s: u32,
    /// Seconds of answered talk time: what is billed.
    pub billsec: u32,
    /// How it ended.
    pub disposition: Disposition,
    /// Direction, when the format says it; otherwise [`Direction::Unknown`].
    pub direction: Direction,
    /// One-based line in the input file where the record starts (0 when not from a file).
    pub line: u64,
}

impl Cdr {
    /// Empties every field, keeping the strings' buffers.
    pub fn clear(&mut self) {
        self.call_id.clear();
        self.account.clear();
        self.source.clear();
        self.dialled.clear();
        self.context.clear();
        self.channel.clear();
        self.dst_channel.clear();
        self.start = Timestamp::UNIX_EPOCH;
        self.answer = None;
        self.end = None;
        self.duration_s = 0;
        self.billsec = 0;
        self.disposition = Disposition::Unknown;
        self.direction = Direction::Unknown;
        self.line = 0;
    }

    /// Everything but the text fields.
    pub fn facts(&self) -> CdrFacts {
        CdrFacts {
            start: self.start,
            answer: self.answer,
            end: self.end,
            duration_s: self.duration_s,
            billsec: self.billsec,
            disposition: self.disposition,
            direction: self.direction,
            line: self.line,
        }
    }

    /// Sets everything but the text fields.
    pub fn set_facts(&mut self, f: &CdrFacts) {
        (self.start, self.answer, self.end) = (f.start, f.answer, f.end);
        (self.duration_s, self.billsec, self.line) = (f.duration_s, f.billsec, f.line);
        (self.disposition, self.direction) = (f.disposition, f.direction);
    }

    /// True when the call was answered with talk time.
    pub fn is_answered(&self) -> bool {
        self.billsec > 0
    }
}

/// What rating reads of a call, borrowed from a record or a request: who, what was dialled, the
/// channels and context that tell its direction, when it started, and its talk time (0 when
/// rating a call that has not happened yet).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallParts<'a> {
    /// See [`Cdr::account`].
    pub account: &'a str,
    /// See [`Cdr::source`].
    pub source: &'a str,
    /// See [`Cdr::dialled`].
    pub dialled: &'a str,
    /// See [`Cdr::context`].
    pub context: &'a str,
    /// See [`Cdr::channel`].
    pub channel: &'a str,
    /// See [`Cdr::dst_channel`].
    pub dst_channel: &'a str,
    /// See [`Cdr::start`].
    pub start: Timestamp,
    /// See [`Cdr::billsec`].
    pub billsec: u32,
    /// See [`Cdr::direction`].
    pub direction: Direction,
}

impl Cdr {
    /// What rating reads of it.
    pub fn parts(&self) -> CallParts<'_> {
        CallParts {
            account: &self.account,
            source: &self.source,
            dialled: &self.dialled,
            context: &self.context,
            channel: &self.channel,
            dst_channel: &self.dst_channel,
            start: self.start,
            billsec: self.billsec,
            direction: self.direction,
        }
    }
}

/// The fields of a [`Cdr`] other than its text, for [`CdrStore::push_parts`].
#[derive(Clone, Copy, Debug)]
pub struct CdrFacts {
    /// [`Cdr::start`].
    pub start: Timestamp,
    /// [`Cdr::answer`].
    pub answer: Option<Timestamp>,
    /// [`Cdr::end`].
    pub end: Option<Timestamp>,
    /// [`Cdr::duration_s`].
    pub duration_s: u32,
    /// [`Cdr::billsec`].
    pub billsec: u32,
    /// [`Cdr::disposition`].
    pub disposition: Disposition,
    /// [`Cdr::direction`].
    pub direction: Direction,
    /// [`Cdr::line`].
    pub line: u64,
}

/// Many CDRs kept compactly in memory, for replay: the text fields of every record in one
/// buffer, the rest in a fixed-size row (about a third of the memory of a `Vec<Cdr>`, and no
/// allocation per record).
#[derive(Clone, Debug, Default)]
pub struct CdrStore {
    text: String,
    rows: Vec<StoredRow>,
}

/// 96 bytes (120 with `Option<Timestamp>` fields): a month of records is most of replay's memory.
#[derive(Clone, Copy, Debug)]
struct StoredRow {
    /// Where the record's text starts in the buffer.
    off: usize,
    /// Ends of its seven text fields, from `off`, in [`CdrRef`] field order.
    ends: [u32; 7],
    start: StoredTime,
    answer: StoredTime,
    end: StoredTime,
    duration_s: u32,
    billsec: u32,
    disposition: Disposition,
    direction: Direction,
    line: u64,
}

/// A [`Timestamp`], or none, in 12 bytes: seconds ([`i64::MIN`]: none, outside any timestamp's
/// range) and nanoseconds, as jiff splits them.
#[derive(Clone, Copy, Debug)]
#[repr(C, packed(4))]
struct StoredTime {
    second: i64,
    nanosecond: i32,
}

impl StoredTime {
    fn of(t: Option<Timestamp>) -> StoredTime {
        match t {
            Some(t) => StoredTime { second: t.as_second(), nanosecond: t.subsec_nanosecond() },
            None => StoredTime { second: i64::MIN, nanosecond: 0 },
        }
    }

    fn get(self) -> Option<Timestamp> {
        let (second, nanosecond) = (self.second, self.nanosecond);
        if second == i64::MIN {
            return None;
        }
        Some(Timestamp::new(second, nanosecond).expect("split from a timestamp"))
    }
}

impl CdrStore {
    /// An empty store.
    pub fn new() -> CdrStore {
        CdrStore::default()
    }

    /// An empty store with room for `rows` records holding `text` bytes of text fields (no
    /// reallocation of the whole store while it fills, when the guess is big enough).
    pub fn with_capacity(rows: usize, text: usize) -> CdrStore {
        CdrStore { text: String::with_capacity(text), rows: Vec::with_capacity(rows) }
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when it holds no record.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Removes every record, keeping the memory for the next ones.
    pub fn clear(&mut self) {
        self.text.clear();
        self.rows.clear();
    }

    /// Appends a copy of `cdr`.
    pub fn push(&mut self, cdr: &Cdr) {
        let text = [
            cdr.call_id.as_str(),
            &cdr.account,
            &cdr.source,
            &cdr.dialled,
            &cdr.context,
            &cdr.channel,
            &cdr.dst_channel,
        ];
        self.push_parts(text, &cdr.facts());
    }

    /// Appends a record given as its text fields (call id, account, source, dialled, context,
    /// channel, destination channel: the [`Cdr`] fields of those names) and the rest: a reader
    /// can store a record straight from its input, without filling a [`Cdr`] first.
    pub fn push_parts(&mut self, text: [&str; 7], facts: &CdrFacts) {
        let off = self.text.len();
        let mut ends = [0u32; 7];
        for (end, f) in ends.iter_mut().zip(text) {
            self.text.push_str(f);
            *end = (self.text.len() - off) as u32;
        }
        let f = *facts;
        self.rows.push(StoredRow {
            off,
            ends,
            start: StoredTime::of(Some(f.start)),
            answer: StoredTime::of(f.answer),
            end: StoredTime::of(f.end),
            duration_s: f.duration_s,
            billsec: f.billsec,
            disposition: f.disposition,
            direction: f.direction,
            line: f.line,
        });
    }

    /// The `i`-th record. Panics when `i >= len()`.
    pub fn get(&self, i: usize) -> CdrRef<'_> {
        CdrRef { text: &self.text, row: &self.rows[i] }
    }

    /// Asks the processor to fetch the `i`-th record into its cache ahead of use (a hint: no
    /// effect on results). Replay reads records in start order, not in the order stored, so the
    /// hardware's own prefetching does not see the pattern; a record is fetched in two steps,
    /// its row first (`text: false`), its text once the row is there (`text: true`).
    #[inline]
    pub fn prefetch(&self, i: usize, text: bool) {
        let Some(row) = self.rows.get(i) else { return };
        if text {
            if let Some(b) = self.text.as_bytes().get(row.off) {
                prefetch(b);
            }
        } else {
            // A row spans two cache lines.
            let p: *const u8 = (row as *const StoredRow).cast();
            prefetch(p);
            prefetch(p.wrapping_add(std::mem::size_of::<StoredRow>() - 1));
        }
    }

    /// Every record, in the order pushed.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = CdrRef<'_>> + '_ {
        self.rows.iter().map(|row| CdrRef { text: &self.text, row })
    }
}

/// A hint to the processor to load the cache line where `r` starts into its cache, ahead of use
/// (no effect on results).
#[inline(always)]
pub fn prefetch_ref<T>(r: &T) {
    prefetch((r as *const T).cast());
}

/// A hint to the processor to load the cache line at `p`.
#[inline(always)]
fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint; it never faults and reads nothing the program sees, whatever
    // the address. The address comes from a live reference anyway.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// A record in a [`CdrStore`]: the fields of [`Cdr`], borrowed.
#[derive(Clone, Copy, Debug)]
pub struct CdrRef<'a> {
    text: &'a str,
    row: &'a StoredRow,
}

impl<'a> CdrRef<'a> {
    fn field(&self, k: usize) -> &'a str {
        let from = if k == 0 { 0 } else { self.row.ends[k - 1] as usize };
        let bytes = &self.text.as_bytes()[self.row.off + from..self.row.off + self.row.ends[k] as usize];
        debug_assert!(std::str::from_utf8(bytes).is_ok());
        // SAFETY: the store's text only ever grows by whole `&str`s, and a field's ends are
        // where one of them ended: character boundaries of valid UTF-8, so the bytes between
        // are valid UTF-8 (the check of a `str` slice, both ends looked at, costs more than the
        // rest of reading a field).
        unsafe { std::str::from_utf8_unchecked(bytes) }
    }

    /// See [`Cdr::call_id`].
    pub fn call_id(&self) -> &'a str {
        self.field(0)
    }
    /// See [`Cdr::account`].
    pub fn account(&self) -> &'a str {
        self.field(1)
    }
    /// See [`Cdr::source`].
    pub fn source(&self) -> &'a str {
        self.field(2)
    }
    /// See [`Cdr::dialled`].
    pub fn dialled(&self) -> &'a str {
        self.field(3)
    }
    /// See [`Cdr::context`].
    pub fn context(&self) -> &'a str {
        self.field(4)
    }
    /// See [`Cdr::channel`].
    pub fn channel(&self) -> &'a str {
        self.field(5)
    }
    /// See [`Cdr::dst_channel`].
    pub fn dst_channel(&self) -> &'a str {
        self.field(6)
    }
    /// See [`Cdr::start`].
    pub fn start(&self) -> Timestamp {
        self.row.start.get().expect("a record has a start")
    }
    /// See [`Cdr::answer`].
    pub fn answer(&self) -> Option<Timestamp> {
        self.row.answer.get()
    }
    /// See [`Cdr::end`].
    pub fn end(&self) -> Option<Timestamp> {
        self.row.end.get()
    }
    /// See [`Cdr::billsec`].
    pub fn billsec(&self) -> u32 {
        self.row.billsec
    }
    /// See [`Cdr::line`].
    pub fn line(&self) -> u64 {
        self.row.line
    }

    /// What rating reads of it.
    pub fn parts(&self) -> CallParts<'a> {
        CallParts {
            account: self.account(),
            source: self.source(),
            dialled: self.dialled(),
            context: self.context(),
            channel: self.channel(),
            dst_channel: self.dst_channel(),
            start: self.start(),
            billsec: self.row.billsec,
            direction: self.row.direction,
        }
    }

    /// Copies the record into `out` (reusing its buffers).
    pub fn load_into(&self, out: &mut Cdr) {
        out.clear();
        out.call_id.push_str(self.call_id());
        out.account.push_str(self.account());
        out.source.push_str(self.source());
        out.dialled.push_str(self.dialled());
        out.context.push_str(self.context());
        out.channel.push_str(self.channel());
        out.dst_channel.push_str(self.dst_channel());
        out.start = self.start();
        out.answer = self.answer();
        out.end = self.end();
        out.duration_s = self.row.duration_s;
        out.billsec = self.row.billsec;
        out.disposition = self.row.disposition;
        out.direction = self.row.direction;
        out.line = self.row.line;
    }
}

#[cfg(test)]
mod store_tests {
    use super::*;

    #[test]
    fn times_come_back_exactly_in_a_smaller_row() {
        assert_eq!(std::mem::size_of::<StoredRow>(), 96);
        let times = [
            Timestamp::MIN,
            Timestamp::MAX,
            Timestamp::new(-1, -500_000_000).unwrap(),
            Timestamp::UNIX_EPOCH,
            Timestamp::new(1_767_567_632, 123_456_789).unwrap(),
        ];
        for t in times {
            assert_eq!(StoredTime::of(Some(t)).get(), Some(t));
        }
        assert_eq!(StoredTime::of(None).get(), None);
    }

    #[test]
    fn a_stored_record_comes_back_whole() {
        let mut store = CdrStore::new();
        let a = Cdr {
            call_id: "1767567632.2".into(),
            account: "acct073".into(),
            source: "234".into(),
            dialled: "0857798789".into(),
            context: "from-internal".into(),
            channel: "SIP/234-00000003".into(),
            dst_channel: "".into(),
            start: "2026-01-05T00:00:32Z".parse().unwrap(),
            answer: Some("2026-01-05T00:00:36Z".parse().unwrap()),
            end: None,
            duration_s: 87,
            billsec: 83,
            disposition: Disposition::Answered,
            direction: Direction::Outbound,
            line: 7,
        };
        let b = Cdr { call_id: "x".into(), account: "".into(), billsec: 0, ..a.clone() };
        store.push(&a);
        store.push(&b);
        let mut out = Cdr::default();
        store.get(0).load_into(&mut out);
        assert_eq!(out, a);
        store.get(1).load_into(&mut out);
        assert_eq!(out, b);
        assert_eq!(store.get(0).dst_channel(), "");
        assert_eq!(store.iter().map(|c| c.call_id()).collect::<Vec<_>>(), ["1767567632.2", "x"]);
    }
}

#[cfg(test)]
mod tests {
    use super::Disposition;

    #[test]
    fn an_asterisk_disposition_is_read_from_its_bytes_as_from_its_text() {
        for (text, d) in [
            ("ANSWERED", Disposition::Answered),
            (" NO ANSWER ", Disposition::NoAnswer),
            ("NOANSWER", Disposition::NoAnswer),
            ("BUSY", Disposition::Busy),
            ("CONGESTION", Disposition::Failed),
            ("answered", Disposition::Unknown),
            ("", Disposition::Unknown),
        ] {
            assert_eq!(Disposition::from_asterisk(text), d, "{text:?}");
            assert_eq!(Disposition::from_asterisk_bytes(text.as_bytes()), d, "{text:?}");
        }
        assert_eq!(Disposition::from_asterisk_bytes(b"ANSWERED\xff"), Disposition::Unknown);
    }
}
