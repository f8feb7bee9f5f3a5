//! A record splitter for machine-written CSV such as Asterisk's `cdr_csv`, several times faster
//! than a general CSV parser because it jumps between delimiters with `memchr` instead of stepping
//! a state machine per byte.
//!
//! Why not the `csv` crate here: it is the right tool for CSV written by people (and the other
//! readers use it), but at 15 instructions a byte it was 60% of `tollguard rate`'s time on Asterisk
//! files, whose dialect is narrow and strict: fields separated by `,`, records by `\n` (a `\r`
//! before it is dropped), strings in `"` with `""` for a quote inside, numbers bare. A newline
//! inside a quoted field is part of the field. Anything outside that dialect (text after a closing
//! quote, a quote that never closes) is a malformed row: reported with its line, skipped up to the
//! next line end, and reading goes on.
//!
//! A record on one line whose quotes all open a field, close one, or pair up as `""` inside one
//! (nearly every record) is split 64 bytes at a time ([`split_plain`]): bit masks of quotes and
//! commas (SSE2 on x86-64), a prefix XOR of the quote mask for "inside quotes", and the commas
//! outside quotes are the field ends. The bytes next to each quote prove the record is of that
//! kind, or it goes to the byte-by-byte scan, which handles the rest of the dialect. The same pass
//! notes whether the record is ASCII, so its text needs no UTF-8 check.

use memchr::memchr;
use std::io::{self, Read};

/// Where one field lies in the record buffer.
#[derive(Clone, Copy, Debug)]
struct Span {
    start: usize,
    end: usize,
    /// The field had `""` inside quotes and must be unescaped before use.
    escaped: bool,
}

/// Splits records from a byte stream; fields are borrowed from an internal buffer.
pub(crate) struct Splitter<R> {
    input: R,
    buf: Vec<u8>,
    /// Start of unread data in `buf`.
    pos: usize,
    /// End of valid data in `buf`.
    len: usize,
    eof: bool,
    spans: Vec<Span>,
    /// Unescaped copies of fields that had `""`.
    scratch: Vec<u8>,
    /// The last record's bytes are all ASCII (known from the plain split, else false).
    ascii: bool,
    /// Line number of the next record's first line (1-based).
    line: u64,
    /// Bytes consumed before `buf[0]`.
    base: u64,
}

/// The outcome of reading one record.
pub(crate) enum Next {
    /// A record was read; it starts on this line.
    Record(u64),
    /// A malformed record was skipped: its line and why.
    Bad(u64, &'static str),
    /// End of input.
    End,
}

enum Scan {
    /// A whole record ends at this offset (just past its `\n`, or at end of data).
    Done(usize, u64),
    /// Need more bytes.
    More,
    /// Malformed: skip to this offset.
    Bad(usize, u64, &'static str),
}

impl<R: Read> Splitter<R> {
    pub(crate) fn new(input: R) -> Splitter<R> {
        Splitter {
            input,
            buf: vec![0; 256 * 1024],
            pos: 0,
            len: 0,
            eof: false,
            spans: Vec::with_capacity(32),
            scratch: Vec::new(),
            ascii: false,
            line: 1,
            base: 0,
        }
    }

    /// Bytes consumed so far.
    pub(crate) fn bytes_read(&self) -> u64 {
        self.base + self.pos as u64
    }

    fn fill(&mut self) -> io::Result<()> {
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.len, 0);
            self.base += self.pos as u64;
            self.len -= self.pos;
            self.pos = 0;
        }
        if self.len == self.buf.len() {
            let n = self.buf.len() * 2;
            self.buf.resize(n, 0);
        }
        let n = self.input.read(&mut self.buf[self.len..])?;
        if n == 0 {
            self.eof = true;
        }
        self.len += n;
        Ok(())
    }

    /// Reads the next record. Blank lines are skipped.
    pub(crate) fn next(&mut self) -> io::Result<Next> {
        loop {
            if self.pos == self.len {
                if self.eof {
                    return Ok(Next::End);
                }
                self.fill()?;
                continue;
            }
            let start = self.pos;
            match self.scan() {
                Scan::Done(end, newlines) => {
                    let line = self.line;
                    self.line += newlines;
                    self.pos = end;
                    let s = self.spans[0];
                    if self.spans.len() == 1 && s.start == s.end && self.buf[start] != b'"' {
                        continue; // a blank line (`""` alone is a record of one empty field)
                    }
                    return Ok(Next::Record(line));
                }
                Scan::Bad(end, newlines, why) => {
                    let line = self.line;
                    self.line += newlines;
                    self.pos = end;
                    return Ok(Next::Bad(line, why));
                }
                Scan::More => {
                    if self.eof {
                        // unreachable in practice: scan treats the end of data at EOF as a record end
                        return Ok(Next::End);
                    }
                    self.fill()?;
                }
            }
        }
    }

    /// Splits one record starting at `pos` into `spans`: find the line end with one `memchr`;
    /// a plain line is split by [`split_plain`], any other by [`Self::scan_bytes`].
    fn scan(&mut self) -> Scan {
        // Until a record is split: what `spans` still points at may be other bytes by now.
        self.ascii = false;
        self.scratch.clear();
        let data = &self.buf[..self.len];
        let line_end = match memchr(b'\n', &data[self.pos..]) {
            Some(k) => self.pos + k,
            None if self.eof => data.len(),
            None => return Scan::More,
        };
        if let Some(ascii) = split_plain(data, self.pos, line_end, &mut self.spans) {
            self.ascii = ascii;
            return if line_end < data.len() { Scan::Done(line_end + 1, 1) } else { Scan::Done(line_end, 0) };
        }
        self.scan_bytes()
    }

    /// [`Self::scan`] for any record: walk the line's bytes once; a quote still open at the line
    /// end takes the next line in.
    fn scan_bytes(&mut self) -> Scan {
        self.spans.clear();
        let data = &self.buf[..self.len];
        let mut newlines = 0u64;
        let mut i = self.pos;
        let mut field_start = i;
        let mut escaped = false;
        // Inside quotes (`in_quotes`), or just after the closing quote (`closed`).
        let mut in_quotes = false;
        let mut closed = false;
        loop {
            let line_end = match memchr(b'\n', &data[i..]) {
                Some(k) => i + k,
                None if self.eof => data.len(),
                None => return Scan::More,
            };
            while i < line_end {
                if in_quotes {
                    let q = find_byte(data, i, line_end, b'"');
                    if q == line_end {
                        break;
                    }
                    if q + 1 < line_end && data[q + 1] == b'"' {
                        escaped = true;
                        i = q + 2;
                        continue;
                    }
                    in_quotes = false;
                    closed = true;
                    self.spans.push(Span { start: field_start, end: q, escaped });
                    i = q + 1;
                    continue;
                }
                if closed {
                    match data[i] {
                        b',' => {
                            closed = false;
                            escaped = false;
                            i += 1;
                            field_start = i;
                            continue;
                        }
                        b'\r' if i + 1 == line_end => {
                            i += 1;
                            continue;
                        }
                        _ => {
                            let skip_to = if line_end < data.len() { line_end + 1 } else { line_end };
                            let nl = u64::from(line_end < data.len());
                            return Scan::Bad(skip_to, newlines + nl, "text after a closing quote");
                        }
                    }
                }
                if i == field_start && data[i] == b'"' {
                    in_quotes = true;
                    i += 1;
                    field_start = i;
                    continue;
                }
                // a bare field runs to the next comma
                let k = find_byte(data, i, line_end, b',');
                if k == line_end {
                    break;
                }
                self.spans.push(Span { start: field_start, end: k, escaped: false });
                i = k + 1;
                field_start = i;
            }
            if in_quotes {
                if line_end == data.len() {
                    return Scan::Bad(data.len(), newlines, "unterminated quoted field");
                }
                // a newline inside quotes belongs to the field
                newlines += 1;
                i = line_end + 1;
                continue;
            }
            if !closed {
                let mut end = line_end;
                if end > field_start && data[end - 1] == b'\r' {
                    end -= 1;
                }
                self.spans.push(Span { start: field_start, end, escaped: false });
            }
            return if line_end < data.len() {
                Scan::Done(line_end + 1, newlines + 1)
            } else {
                Scan::Done(line_end, newlines)
            };
        }
    }

    /// Number of fields of the last record.
    pub(crate) fn len(&self) -> usize {
        self.spans.len()
    }

    /// Field `i` of the last record (unescaped).
    #[inline]
    pub(crate) fn field(&mut self, i: usize) -> &[u8] {
        let s = self.spans[i];
        if !s.escaped {
            return &self.buf[s.start..s.end];
        }
        self.unescaped(s)
    }

    /// A field with `""` inside, unescaped into `scratch` (rare: kept out of line).
    #[inline(never)]
    fn unescaped(&mut self, s: Span) -> &[u8] {
        let from = self.scratch.len();
        let raw = &self.buf[s.start..s.end];
        let mut k = 0;
        while k < raw.len() {
            self.scratch.push(raw[k]);
            k += if raw[k] == b'"' { 2 } else { 1 };
        }
        &self.scratch[from..]
    }

    /// The last record as text, when it is valid UTF-8 (the usual case, checked once for the
    /// whole record), and a way to its fields ([`Fields::get`]).
    pub(crate) fn text_fields(&self) -> Option<Fields<'_>> {
        let (first, last) = (self.spans.first()?, self.spans.last()?);
        let bytes = &self.buf[first.start..last.end];
        let text = if self.ascii {
            // SAFETY: `split_plain` found no byte >= 0x80 on the record's line, which holds these
            // bytes; ASCII is valid UTF-8.
            unsafe { std::str::from_utf8_unchecked(bytes) }
        } else {
            std::str::from_utf8(bytes).ok()?
        };
        Some(Fields { text, base: first.start, spans: &self.spans })
    }

    /// Field `i` as raw bytes, quotes still doubled (for hashing).
    pub(crate) fn raw(&self, i: usize) -> &[u8] {
        let s = self.spans[i];
        &self.buf[s.start..s.end]
    }
}

/// The fields of a record that is valid UTF-8: slices of one validated text (a field's ends are
/// next to an ASCII comma or quote, so they are character boundaries).
pub(crate) struct Fields<'a> {
    text: &'a str,
    base: usize,
    spans: &'a [Span],
}

impl<'a> Fields<'a> {
    fn field(&self, s: Span) -> &'a str {
        let bytes = &self.text.as_bytes()[s.start - self.base..s.end - self.base];
        debug_assert!(std::str::from_utf8(bytes).is_ok());
        // SAFETY: the text is valid UTF-8 and a field's ends are character boundaries (next to
        // an ASCII comma or quote, or the record's ends), so the bytes between are valid UTF-8.
        // Slicing the `str` instead checks both ends again, for each of 7 fields a record.
        unsafe { std::str::from_utf8_unchecked(bytes) }
    }

    /// Fields `idx` as they stand, when none of them has `""` to unescape.
    pub(crate) fn plain_all<const N: usize>(&self, idx: [usize; N]) -> Option<[&'a str; N]> {
        let mut out = [""; N];
        for (o, i) in out.iter_mut().zip(idx) {
            let s = self.spans[i];
            if s.escaped {
                return None;
            }
            *o = self.field(s);
        }
        Some(out)
    }

    /// Field `i` (unescaped), into `out`.
    pub(crate) fn get(&self, i: usize, out: &mut String) {
        out.clear();
        let s = self.spans[i];
        let field = self.field(s);
        if s.escaped {
            out.push_str(&field.replace("\"\"", "\""));
        } else {
            out.push_str(field);
        }
    }
}

/// Splits the one-line record `data[from..to]` (no `\n` inside; a `\r` at its end is dropped)
/// into `spans`, as [`Splitter::scan_bytes`] would, and returns whether the line is all ASCII.
/// `None` leaves the record to the byte scan: a quote still open at the line end (a field goes on
/// on the next line), a quote inside a bare field, text after a closing quote.
///
/// Why the spans are the byte scan's: a byte is inside quotes when an odd number of quotes come
/// before it on the line (counting it if it is one). The commas outside quotes are the byte scan's
/// field ends as long as every quote is either a field's opening quote, its closing quote, or one
/// of a `""` pair inside it: so each quote that opens must follow a field end, the line start or
/// a quote (the pair), and each quote that closes must be followed by a field end, a quote or the
/// line end. Anything else is rejected here.
fn split_plain(data: &[u8], from: usize, to: usize, spans: &mut Vec<Span>) -> Option<bool> {
    spans.clear();
    let mut end = to;
    if end > from && data[end - 1] == b'\r' {
        end -= 1;
    }
    let mut high = 0u64;
    // Carried from the previous block: inside quotes at its last byte (all ones or zero), and
    // whether its last byte was a closing quote, a field end (the line start counts) or a quote.
    let (mut carry, mut closing_before, mut end_before, mut quote_before) = (0u64, 0u64, 1u64, 0u64);
    // The field being split has a `""` in the blocks before this one.
    let mut escaped_before = false;
    let mut field_start = from;
    let mut at = from;
    while at < end {
        let n = end - at;
        let valid = if n >= 64 { u64::MAX } else { (1u64 << n) - 1 };
        // The last block of a line usually has the next line's bytes after it in the buffer:
        // read in place, the bytes past the line masked off; at the buffer's end, a copy.
        let (q, c, h) = match data.get(at..at + 64) {
            Some(block) => {
                let (q, c, h) = classify(block.try_into().expect("64 bytes"));
                (q & valid, c & valid, h & valid)
            }
            None => {
                let mut block = [0u8; 64];
                block[..n].copy_from_slice(&data[at..end]);
                classify(&block)
            }
        };
        let inside = prefix_xor(q) ^ carry;
        let ends = c & !inside;
        let (opening, closing) = (q & inside, q & !inside);
        let after_closing = (closing << 1) | closing_before;
        let quote_or_end_before = (ends << 1) | end_before | (q << 1) | quote_before;
        if after_closing & !(ends | q) & valid != 0 || opening & !quote_or_end_before != 0 {
            return None;
        }
        // the second quote of each `""`
        let mut pairs = opening & ((q << 1) | quote_before);
        carry = ((inside as i64) >> 63) as u64;
        (closing_before, end_before, quote_before) = (closing >> 63, ends >> 63, q >> 63);
        high |= h;
        let mut rest = ends;
        while rest != 0 {
            let bit = rest.trailing_zeros();
            let k = at + bit as usize;
            let mut escaped = escaped_before;
            if pairs != 0 {
                let upto = u64::MAX >> (63 - bit);
                escaped |= pairs & upto != 0;
                pairs &= !upto;
            }
            // A quoted field's last byte is its closing quote: after a closing quote only a quote
            // or a field end may come, and a quote would open again.
            let quoted = usize::from(data[field_start] == b'"');
            spans.push(Span { start: field_start + quoted, end: k - quoted, escaped });
            escaped_before = false;
            field_start = k + 1;
            rest &= rest - 1;
        }
        escaped_before |= pairs != 0;
        at += 64;
    }
    if carry != 0 {
        return None;
    }
    let quoted = usize::from(field_start < end && data[field_start] == b'"');
    spans.push(Span { start: field_start + quoted, end: end - quoted, escaped: escaped_before });
    Some(high == 0)
}

/// Bit i of each mask: `block[i]` is `"`; is `,`; is not ASCII.
#[inline]
fn classify(block: &[u8; 64]) -> (u64, u64, u64) {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{_mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8};
        let bits = |m: i32| (m as u32 & 0xffff) as u64;
        let (mut q, mut c, mut h) = (0u64, 0u64, 0u64);
        // SAFETY: SSE2 is part of every x86-64 target, so these instructions exist; the 16 bytes
        // read at a time are block[16k..16k + 16], inside the array.
        unsafe {
            let quote = _mm_set1_epi8(b'"' as i8);
            let comma = _mm_set1_epi8(b',' as i8);
            for k in 0..4 {
                let v = _mm_loadu_si128(block.as_ptr().add(16 * k).cast());
                q |= bits(_mm_movemask_epi8(_mm_cmpeq_epi8(v, quote))) << (16 * k);
                c |= bits(_mm_movemask_epi8(_mm_cmpeq_epi8(v, comma))) << (16 * k);
                h |= bits(_mm_movemask_epi8(v)) << (16 * k);
            }
        }
        (q, c, h)
    }
    #[cfg(not(target_arch = "x86_64"))]
    classify_bytes(block)
}

/// [`classify`] a byte at a time (other targets, and the reference in tests).
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn classify_bytes(block: &[u8; 64]) -> (u64, u64, u64) {
    let (mut q, mut c, mut h) = (0u64, 0u64, 0u64);
    for (i, &b) in block.iter().enumerate() {
        q |= u64::from(b == b'"') << i;
        c |= u64::from(b == b',') << i;
        h |= u64::from(b >= 0x80) << i;
    }
    (q, c, h)
}

/// Bit i of the result is the XOR of bits 0..=i of `x`.
#[inline]
fn prefix_xor(mut x: u64) -> u64 {
    x ^= x << 1;
    x ^= x << 2;
    x ^= x << 4;
    x ^= x << 8;
    x ^= x << 16;
    x ^= x << 32;
    x
}

/// First position of `b` in `hay[from..to]`, or `to`; eight bytes at a time (SWAR): the lowest
/// byte flagged by the zero-byte test is always a true match.
#[inline]
fn find_byte(hay: &[u8], from: usize, to: usize, b: u8) -> usize {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let pattern = LO * b as u64;
    let mut i = from;
    while i + 8 <= to {
        let mut word = [0u8; 8];
        word.copy_from_slice(&hay[i..i + 8]);
        let x = u64::from_le_bytes(word) ^ pattern;
        let found = x.wrapping_sub(LO) & !x & HI;
        if found != 0 {
            return i + (found.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < to {
        if hay[i] == b {
            return i;
        }
        i += 1;
    }
    to
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads everything, feeding the input a few bytes at a time to cross every buffer edge.
    /// A record (line, fields) or a skipped one (line, why).
    type Split = Result<(u64, Vec<String>), (u64, &'static str)>;

    fn split(input: &[u8], chunk: usize) -> Vec<Split> {
        struct Trickle<'a>(&'a [u8], usize);
        impl Read for Trickle<'_> {
            fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(self.1).min(out.len());
                out[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut s = Splitter::new(Trickle(input, chunk));
        s.buf = vec![0; 8];
        let mut out = vec![];
        loop {
            match s.next().unwrap() {
                Next::End => break,
                Next::Bad(l, why) => out.push(Err((l, why))),
                Next::Record(l) => {
                    let f: Vec<String> =
                        (0..s.len()).map(|i| String::from_utf8_lossy(s.field(i)).into_owned()).collect();
                    // The record's text, checked once, gives the same fields.
                    if let Some(t) = s.text_fields() {
                        let mut g = vec![String::new(); f.len()];
                        for (i, out) in g.iter_mut().enumerate() {
                            t.get(i, out);
                        }
                        assert_eq!(g, f, "text_fields against field");
                    }
                    out.push(Ok((l, f)));
                }
            }
        }
        out
    }

    #[test]
    fn agrees_with_the_csv_crate_on_the_dialect() {
        let text = b"\"a\",\"b \"\"q\"\" c\",,12,\"\"\r\n\n\"multi\nline\",x\n\"last\",\"no newline\"";
        for chunk in [1, 2, 3, 7, 64] {
            let got = split(text, chunk);
            // fields as the csv crate reads them; lines where the records start (the csv crate
            // gives a record after a CRLF line the previous line's number)
            let mut want = vec![];
            let mut rdr = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(&text[..]);
            for (r, line) in rdr.records().zip([1, 3, 5]) {
                want.push(Ok((line, r.unwrap().iter().map(String::from).collect::<Vec<_>>())));
            }
            assert_eq!(got, want, "chunk {chunk}");
        }
    }

    /// The fields `split_plain` finds, or `None` when it leaves the record to the byte scan.
    fn plain(line: &[u8]) -> Option<(Vec<String>, bool)> {
        let mut spans = vec![];
        let ascii = split_plain(line, 0, line.len(), &mut spans)?;
        Some((
            spans.iter().map(|s| String::from_utf8_lossy(&line[s.start..s.end]).into_owned()).collect(),
            ascii,
        ))
    }

    #[test]
    fn plain_records_are_split_by_masks_and_the_rest_left_to_the_byte_scan() {
        let row = "\"acme\",\"201\",\"0067077123456\",\"from-internal\",\"Bob, Jr <201>\",\"SIP/201-0001\",\"SIP/trunk-0002\",\"Dial\",\"SIP/trunk/0067077123456,60\",\"2011-06-11 23:10:00\",,\"2011-06-11 23:11:05\",65,0,\"NO ANSWER\",\"DOCUMENTATION\",\"1307833800.12\",\"\"";
        assert!(row.len() > 128, "crosses two 64-byte blocks");
        let (fields, ascii) = plain(row.as_bytes()).expect("plain");
        assert!(ascii);
        assert_eq!(fields.len(), 18);
        assert_eq!((fields[4].as_str(), fields[8].as_str()), ("Bob, Jr <201>", "SIP/trunk/0067077123456,60"));
        assert_eq!((fields[10].as_str(), fields[12].as_str(), fields[17].as_str()), ("", "65", ""));
        // a CR before the line end is not part of the last field; non-ASCII is noted
        assert_eq!(plain(b"a,\"b\"\r"), Some((vec!["a".into(), "b".into()], true)));
        assert_eq!(
            plain("\"M\u{fc}ller\",1".as_bytes()),
            Some((vec!["M\u{fc}ller".into(), "1".into()], false))
        );
        assert_eq!(plain(b""), Some((vec!["".into()], true)));
        // a field end at a block's last byte: the field after it starts the next block
        let long = "a".repeat(63);
        let quoted_next = format!("{long},\"q,r\",x");
        assert_eq!(plain(quoted_next.as_bytes()), Some((vec![long.clone(), "q,r".into(), "x".into()], true)));
        let empty_next = format!("{long},");
        assert_eq!(plain(empty_next.as_bytes()), Some((vec![long.clone(), "".into()], true)));
        let quote_at_end = format!("\"{}\",\"b\"", "a".repeat(61));
        assert_eq!(plain(quote_at_end.as_bytes()), Some((vec!["a".repeat(61), "b".into()], true)));
        // `""` inside quotes: the field is marked for unescaping, its neighbours are not
        let mut spans = vec![];
        let line = b"\"x\",\"\"\"Bob\"\" <201>\",\"y\"";
        split_plain(line, 0, line.len(), &mut spans).expect("plain");
        assert_eq!(spans.iter().map(|s| s.escaped).collect::<Vec<_>>(), [false, true, false]);
        assert_eq!(&line[spans[1].start..spans[1].end], b"\"\"Bob\"\" <201>");
        // quotes anywhere else: the byte scan decides
        for odd in [&b"ab\"c,1"[..], b"\"a\"x,1", b"\"open,1", b"\",1", b"\"a\" ,2", b"1,\"a\"\"\"b\""] {
            assert_eq!(plain(odd), None, "{}", String::from_utf8_lossy(odd));
        }
    }

    #[test]
    fn masks_agree_with_a_byte_loop_and_prefix_xor_with_its_definition() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..200 {
            let mut block = [0u8; 64];
            for b in block.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = [b'"', b',', b'a', 0xc3, 0x80, b'\n'][(x % 6) as usize];
            }
            assert_eq!(classify(&block), classify_bytes(&block));
            let q = classify_bytes(&block).0;
            let want = (0..64)
                .fold(0u64, |acc, i| acc | (((q & (u64::MAX >> (63 - i))).count_ones() as u64 & 1) << i));
            assert_eq!(prefix_xor(q), want);
        }
    }

    #[test]
    fn after_a_read_error_the_last_record_is_not_taken_for_ascii() {
        // "a\n", then a byte that is not UTF-8 moved to where "a" was, then the input fails
        struct Failing(u8);
        impl Read for Failing {
            fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                self.0 += 1;
                match self.0 {
                    1 => {
                        out[..2].copy_from_slice(b"a\n");
                        Ok(2)
                    }
                    2 => {
                        out[0] = 0xff;
                        Ok(1)
                    }
                    _ => Err(io::Error::other("gone")),
                }
            }
        }
        let mut s = Splitter::new(Failing(0));
        assert!(matches!(s.next().unwrap(), Next::Record(1)));
        assert!(s.next().is_err());
        assert!(s.text_fields().is_none(), "the old spans point at other bytes now");
    }

    #[test]
    fn find_byte_agrees_with_a_scan() {
        let hay = b"\"acme\",\"210\",\"0067077123456\",x,,\"\"\"q\"\"\"";
        for from in 0..hay.len() {
            for to in from..=hay.len() {
                for b in [b',', b'"', b'q', b'z'] {
                    let want = hay[from..to].iter().position(|&c| c == b).map_or(to, |k| from + k);
                    assert_eq!(find_byte(hay, from, to, b), want);
                }
            }
        }
    }

    proptest::proptest! {
        /// Random records in the dialect split exactly as the csv crate splits them.
        #[test]
        fn agrees_with_the_csv_crate_on_random_records(
            rows in proptest::collection::vec(proptest::collection::vec(("[a-z0-9é€ ,\"\n]{0,12}", proptest::bool::ANY), 1..20), 1..8),
            chunk in 1usize..40,
        ) {
            let mut text = Vec::new();
            for row in &rows {
                let fields: Vec<String> = row.iter().map(|(f, quote)| {
                    if *quote || f.contains([',', '"', '\n']) {
                        format!("\"{}\"", f.replace('"', "\"\""))
                    } else {
                        f.clone()
                    }
                }).collect();
                text.extend_from_slice(fields.join(",").as_bytes());
                text.push(b'\n');
            }
            let got: Vec<Vec<String>> = split(&text, chunk).into_iter().map(|r| r.unwrap().1).collect();
            let mut rdr = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(&text[..]);
            let want: Vec<Vec<String>> = rdr.records().map(|r| r.unwrap().iter().map(String::from).collect()).collect();
            proptest::prop_assert_eq!(got, want);
        }
    }

    proptest::proptest! {
        /// On any line of quotes, commas and text, the mask split either steps aside or finds
        /// the byte scan's fields, `""` marks included.
        #[test]
        fn the_mask_split_agrees_with_the_byte_scan(
            fields in proptest::collection::vec(("[a,é\"]{0,10}", proptest::bool::ANY), 1..30),
            typo in proptest::option::of((proptest::num::usize::ANY, proptest::sample::select(vec![b'"', b',', b'a', b'\r']))),
            after in "[\n\r,\"aé]{0,70}",
        ) {
            // a record in the dialect, maybe with one byte changed
            let mut bytes = fields
                .iter()
                .map(|(f, quote)| if *quote { format!("\"{}\"", f.replace('"', "\"\"")) } else { f.replace('"', "") })
                .collect::<Vec<_>>()
                .join(",")
                .into_bytes();
            if let Some((at, b)) = typo {
                let at = at % bytes.len().max(1);
                if at < bytes.len() && bytes[at].is_ascii() {
                    bytes[at] = b;
                }
            }
            let (bytes, line) = (&bytes[..], String::from_utf8_lossy(&bytes));
            let mut spans = vec![];
            let plain = split_plain(bytes, 0, bytes.len(), &mut spans);
            // The same line with the buffer going on after it (the next lines): the same split.
            let mut buffer = bytes.to_vec();
            buffer.extend_from_slice(after.as_bytes());
            let mut in_buffer = vec![];
            proptest::prop_assert_eq!(split_plain(&buffer, 0, bytes.len(), &mut in_buffer), plain);
            if plain.is_some() {
                let key = |v: &[Span]| v.iter().map(|s| (s.start, s.end, s.escaped)).collect::<Vec<_>>();
                proptest::prop_assert_eq!(key(&in_buffer), key(&spans));
            }
            if let Some(ascii) = plain {
                let mut s = Splitter::new(bytes);
                while !s.eof {
                    s.fill().unwrap();
                }
                let scanned = matches!(s.scan_bytes(), Scan::Done(..));
                proptest::prop_assert!(scanned, "the byte scan refused what the mask split took");
                let key = |v: &[Span]| v.iter().map(|s| (s.start, s.end, s.escaped)).collect::<Vec<_>>();
                proptest::prop_assert_eq!(key(&spans), key(&s.spans));
                proptest::prop_assert_eq!(ascii, line.is_ascii());
            }
        }
    }

    #[test]
    fn malformed_rows_are_skipped_with_their_line() {
        let text = b"\"a\"x,1\n\"ok\",2\n\"open,3\n";
        let got = split(text, 4);
        assert_eq!(got[0], Err((1, "text after a closing quote")));
        assert_eq!(got[1], Ok((2, vec!["ok".to_string(), "2".to_string()])));
        assert_eq!(got[2], Err((3, "unterminated quoted field")));
        assert_eq!(got.len(), 3);
    }
}
