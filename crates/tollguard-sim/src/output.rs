//! Writing: Asterisk `cdr_csv` rows (18 columns) and the labels file.

use crate::model::{Call, Dir, Disp};
use jiff::tz::TimeZone;
use jiff::Timestamp;

/// Epoch seconds to local `YYYY-MM-DD HH:MM:SS`, with the zone's offset cached per hour.
pub(crate) struct LocalFmt {
    tz: TimeZone,
    first_hour: i64,
    offsets: Vec<i32>,
}

/// An hour in which the offset changes: asked of the zone each time.
const MIXED: i32 = i32::MIN;

impl LocalFmt {
    /// A formatter fast for times in `from..to` (epoch seconds), correct for any time.
    pub(crate) fn new(tz: TimeZone, from: i64, to: i64) -> LocalFmt {
        let first_hour = from.div_euclid(3600);
        let last_hour = to.div_euclid(3600);
        let offsets = (first_hour..=last_hour)
            .map(|h| {
                let a = zone_offset(&tz, h * 3600);
                let b = zone_offset(&tz, h * 3600 + 3599);
                if a == b {
                    a
                } else {
                    MIXED
                }
            })
            .collect();
        LocalFmt { tz, first_hour, offsets }
    }

    fn offset(&self, ts: i64) -> i32 {
        let i = ts.div_euclid(3600) - self.first_hour;
        match usize::try_from(i).ok().and_then(|i| self.offsets.get(i)) {
            Some(&o) if o != MIXED => o,
            _ => zone_offset(&self.tz, ts),
        }
    }

    /// Appends the local time of `ts`.
    pub(crate) fn push(&self, ts: i64, out: &mut Vec<u8>) {
        let local = ts + self.offset(ts) as i64;
        let days = local.div_euclid(86_400);
        let secs = local.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        push_num(out, y.clamp(0, 9999) as u64, 4);
        out.push(b'-');
        push_num(out, m.into(), 2);
        out.push(b'-');
        push_num(out, d.into(), 2);
        out.push(b' ');
        push_num(out, (secs / 3600) as u64, 2);
        out.push(b':');
        push_num(out, (secs / 60 % 60) as u64, 2);
        out.push(b':');
        push_num(out, (secs % 60) as u64, 2);
    }
}

fn zone_offset(tz: &TimeZone, ts: i64) -> i32 {
    match Timestamp::from_second(ts) {
        Ok(t) => tz.to_offset(t).seconds(),
        Err(_) => 0,
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `v` in decimal, zero-padded to `width` digits (0: no padding).
fn push_num(out: &mut Vec<u8>, v: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut i = buf.len();
    let mut v = v;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let digits = buf.len() - i;
    for _ in digits..width {
        out.push(b'0');
    }
    out.extend_from_slice(&buf[i..]);
}

/// A quoted field from pieces (quotes inside doubled, as Asterisk writes them).
fn quoted(out: &mut Vec<u8>, parts: &[&[u8]]) {
    out.push(b'"');
    for p in parts {
        for &b in *p {
            if b == b'"' {
                out.extend_from_slice(b"\"\"");
            } else {
                out.push(b);
            }
        }
    }
    out.push(b'"');
}

fn channel(out: &mut Vec<u8>, name: &[u8], counter: u32) {
    out.extend_from_slice(b"\"SIP/");
    out.extend_from_slice(name);
    out.push(b'-');
    let hex = format!("{counter:08x}");
    out.extend_from_slice(hex.as_bytes());
    out.push(b'"');
}

/// The call id written in `uniqueid`: `<start epoch>.<sequence>`, as Asterisk numbers channels.
pub(crate) fn push_call_id(out: &mut Vec<u8>, c: &Call) {
    push_num(out, c.start.max(0) as u64, 0);
    out.push(b'.');
    push_num(out, c.seq as u64, 0);
}

/// Appends one 18-column `Master.csv` row (with its newline).
pub(crate) fn push_row(out: &mut Vec<u8>, fmt: &LocalFmt, account: &str, c: &Call) {
    let ext = c.ext.to_string();
    let ext2 = c.ext2.to_string();
    let number = c.number.as_str().as_bytes();
    let (src, dst, context): (&[u8], &[u8], &[u8]) = match c.dir {
        Dir::Outbound => (ext.as_bytes(), number, b"from-internal"),
        Dir::Inbound => (number, ext.as_bytes(), b"from-trunk"),
        Dir::Internal => (ext.as_bytes(), ext2.as_bytes(), b"from-internal"),
    };
    let ch_a = c.seq.wrapping_mul(2).wrapping_sub(1);
    let ch_b = c.seq.wrapping_mul(2);
    quoted(out, &[account.as_bytes()]);
    out.push(b',');
    quoted(out, &[src]);
    out.push(b',');
    quoted(out, &[dst]);
    out.push(b',');
    quoted(out, &[context]);
    out.push(b',');
    quoted(out, &[b"\"", src, b"\" <", src, b">"]);
    out.push(b',');
    match c.dir {
        Dir::Inbound => channel(out, b"trunk", ch_a),
        _ => channel(out, ext.as_bytes(), ch_a),
    }
    out.push(b',');
    match c.dir {
        Dir::Outbound if c.disp == Disp::Failed => out.extend_from_slice(b"\"\""),
        Dir::Outbound => channel(out, b"trunk", ch_b),
        Dir::Inbound => channel(out, ext.as_bytes(), ch_b),
        Dir::Internal => channel(out, ext2.as_bytes(), ch_b),
    }
    out.extend_from_slice(b",\"Dial\",");
    match c.dir {
        Dir::Outbound => quoted(out, &[b"SIP/trunk/", number, b",60"]),
        _ => quoted(out, &[b"SIP/", dst, b",30"]),
    }
    out.extend_from_slice(b",\"");
    fmt.push(c.start, out);
    out.extend_from_slice(b"\",");
    if c.disp == Disp::Answered {
        out.push(b'"');
        fmt.push(c.start + c.ring as i64, out);
        out.push(b'"');
    }
    out.extend_from_slice(b",\"");
    fmt.push(c.end(), out);
    out.extend_from_slice(b"\",");
    push_num(out, (c.ring + c.billsec) as u64, 0);
    out.push(b',');
    push_num(out, c.billsec as u64, 0);
    out.push(b',');
    quoted(out, &[c.disp.as_str().as_bytes()]);
    out.extend_from_slice(b",\"DOCUMENTATION\",\"");
    push_call_id(out, c);
    out.extend_from_slice(b"\",\"\"\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_times_match_jiff_across_dst_changes() {
        let tz = TimeZone::get("Europe/Amsterdam").unwrap();
        // 2026-03-29 (spring forward) and 2026-10-25 (fall back), and a cache-free range.
        let spring = 1_774_746_000; // 2026-03-29T01:00:00Z
        let autumn = 1_792_890_000; // 2026-10-25T01:00:00Z
        let fmt = LocalFmt::new(tz.clone(), spring - 86_400, autumn + 86_400);
        for base in [spring, autumn, 0, 4_102_444_800] {
            for ts in (base - 7300..base + 7300).step_by(97) {
                let mut out = Vec::new();
                fmt.push(ts, &mut out);
                let want = Timestamp::from_second(ts)
                    .unwrap()
                    .to_zoned_datetime(tz.clone())
                    .strftime("%Y-%m-%d %H:%M:%S");
                assert_eq!(String::from_utf8(out).unwrap(), want.to_string(), "{ts}");
            }
        }
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_458), (2026, 1, 5));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
