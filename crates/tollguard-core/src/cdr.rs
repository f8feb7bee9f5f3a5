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
        match s.trim() {
            "ANSWERED" => Disposition::Answered,
            "NO ANSWER" | "NOANSWER" => Disposition::NoAnswer,
            "BUSY" => Disposition::Busy,
            "FAILED" | "CONGESTION" | "NOROUTE" => Disposition::Failed,
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

    /// True when the call was answered with talk time.
    pub fn is_answered(&self) -> bool {
        self.billsec > 0
    }
}
