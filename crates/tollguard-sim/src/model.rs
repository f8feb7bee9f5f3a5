//! The simulator's call record and calendar.

use crate::numbers::Num;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use std::io;

/// Which way a call goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dir {
    /// From an extension to the trunk (`from-internal`, `SIP/2xx-` to `SIP/trunk-`).
    Outbound,
    /// From the trunk to an extension (`from-trunk`).
    Inbound,
    /// Extension to extension.
    Internal,
}

/// How a call ended, as Asterisk writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Disp {
    Answered,
    NoAnswer,
    Busy,
    Failed,
}

impl Disp {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Disp::Answered => "ANSWERED",
            Disp::NoAnswer => "NO ANSWER",
            Disp::Busy => "BUSY",
            Disp::Failed => "FAILED",
        }
    }
}

/// One call. Times are UTC epoch seconds; `ring` is start to answer (or to giving up).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Call {
    pub start: i64,
    /// Channel sequence number, assigned in start order before writing.
    pub seq: u32,
    pub ring: u32,
    pub billsec: u32,
    pub account: u32,
    /// Index into the label table (0: baseline).
    pub label: u16,
    /// Our extension: the caller (outbound, internal) or the one called (inbound).
    pub ext: u16,
    /// The extension called, for internal calls.
    pub ext2: u16,
    pub dir: Dir,
    pub disp: Disp,
    /// Dialled number (outbound) or presented caller (inbound); unused for internal calls.
    pub number: Num,
}

impl Call {
    /// When the call ended.
    pub(crate) fn end(&self) -> i64 {
        self.start + self.ring as i64 + self.billsec as i64
    }
}

/// Days simulated past the last one (nights and long calls run over).
pub(crate) const SPILL_DAYS: u32 = 4;

/// Local calendar of the run: the start of every local hour, as epoch seconds.
pub(crate) struct Clock {
    pub start: Date,
    pub days: u32,
    hours: Vec<i64>,
}

impl Clock {
    /// Hours of `days` days (plus [`SPILL_DAYS`]) from local midnight of `start` in `tz`.
    pub(crate) fn new(tz: &TimeZone, start: Date, days: u32) -> io::Result<Clock> {
        let bad = |e: jiff::Error| io::Error::new(io::ErrorKind::InvalidInput, e.to_string());
        let total = days + SPILL_DAYS;
        let mut hours = Vec::with_capacity(total as usize * 24 + 1);
        let mut date = start;
        for _ in 0..=total {
            for h in 0..24 {
                let dt = date.at(h, 0, 0, 0);
                hours.push(tz.to_timestamp(dt).map_err(bad)?.as_second());
            }
            date = date.tomorrow().map_err(bad)?;
        }
        Ok(Clock { start, days, hours })
    }

    /// Epoch seconds of local `h:m:s` on day `day` (`h` may pass 23 into the next days).
    pub(crate) fn at(&self, day: u32, h: u32, m: u32, s: u32) -> i64 {
        let i = (day * 24 + h) as usize;
        self.hours[i.min(self.hours.len() - 1)] + (m * 60 + s) as i64
    }

    /// The local date of day `day`.
    pub(crate) fn date(&self, day: u32) -> Date {
        self.start.checked_add(jiff::Span::new().days(day as i64)).unwrap_or(self.start)
    }

    /// Epoch seconds of the first and past the last simulated moment (spill days included).
    pub(crate) fn span(&self) -> (i64, i64) {
        (self.hours[0], self.hours[self.hours.len() - 1] + 3600)
    }

    /// Day of the week of day `day`: 0 Monday .. 6 Sunday (the run starts on a Monday).
    pub(crate) fn weekday(day: u32) -> u32 {
        day % 7
    }

    /// True for Saturday and Sunday.
    pub(crate) fn is_weekend(day: u32) -> bool {
        Clock::weekday(day) >= 5
    }
}
