//! `tollguard replay`: the engine driven by CDR files in event time.
//!
//! Each CDR becomes a call attempt at its start, an answer, and an end; time passes between
//! events as ticks, at the deadlines the engine gives ([`Engine::next_deadline`]) rounded up to
//! a multiple of [`TICK_S`] seconds. The attempt carries only what a
//! switch knows before it routes a call (ids, account, extension, dialled number, channels,
//! context): never the call's duration, cost or outcome. A denied call never happens; a capped
//! call ends at its cap; a cut call ends when it is cut.
//!
//! CDR files are written when calls end, not when they start, so attempts come in a different
//! order than records. On one thread the replay reads as it goes ([`stream`]): a record is
//! attempted once every record that can still come starts later, which holds when no record
//! starts more than [`LAG_S`] (a day) before one above it; memory holds about a day of records.
//! An input that breaks that (a call over a day long, files not in time order) is read whole
//! first and its attempts sorted by start time ([`drive`]; about 300 bytes per CDR), and so are
//! inputs that cannot be read twice (pipes), inputs whose decisions go where they cannot be taken
//! back (pipes), several threads and `tollguard evaluate`. Both give the same output, byte for
//! byte.

use crate::config::Setup;
use crate::rate::{setup, MAX_REPORTED};
use crate::InputArgs;
use anyhow::{anyhow, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget};
use jiff::{SignedDuration, Timestamp};
use rust_decimal::Decimal;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tollguard_core::cdr::{CallParts, Cdr, CdrRef, CdrStore, Direction};
use tollguard_core::money::Currency;
use tollguard_core::rater::Rater;
use tollguard_engine::policy::Policy;
use tollguard_engine::{Alert, Attempt, Effect, Engine, Event, Severity};
use tollguard_ingest::{ReadError, ReadOptions};

/// The tick grid, seconds: a tick the engine asks for at `t` happens at the first multiple of
/// this (since 1970) at or after `t`. The live server ticks every second.
pub const TICK_S: i64 = 5;

/// Arguments of `tollguard replay`.
#[derive(clap::Args, Debug)]
pub struct ReplayArgs {
    #[command(flatten)]
    input: InputArgs,
    /// Report-only learning until this time (RFC 3339, or `YYYY-MM-DD[ HH:MM:SS]` in the --tz
    /// zone): earlier calls update state and may raise alerts, but are always allowed uncapped.
    #[arg(long)]
    learn_until: Option<String>,
    /// Write one alert per line here (JSON).
    #[arg(long)]
    alerts_out: Option<PathBuf>,
    /// Write one decision per CDR here (JSON).
    #[arg(long)]
    decisions_out: Option<PathBuf>,
    /// Engines to run side by side, each with its share of the accounts. The output is the same
    /// for every value.
    #[arg(long, default_value = "1")]
    threads: std::num::NonZeroUsize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    // At equal times: ends first (free the channel), then answers, then new attempts.
    End,
    Answer,
    Attempt,
}

/// What became of one CDR in the replayed world (decided at its start). Small and `Copy`: a
/// month holds one per record.
#[derive(Clone, Copy, Debug, Default)]
pub struct Outcome {
    /// Allowed at its start.
    pub allowed: bool,
    /// An outbound call to a public number that nothing prices.
    pub unrated: bool,
    /// Attempted (every record is, by the end of the replay).
    attempted: bool,
    /// Ended in the replayed world (denied calls end at once).
    ended: bool,
    /// The cap given at its start.
    pub cap: Option<u32>,
    /// Rules of the decision: an index into [`Replayed::rules`] (0: none).
    pub rules: u32,
    /// Talk time the call had when it was cut (see [`Replayed::cut_time`] for when).
    pub cut_at: Option<u32>,
    /// Talk time in the replayed world.
    pub talk: u32,
    /// The cost of the call as recorded (its whole talk time), in the price's currency: rated
    /// once, at the attempt, by the rating the engine decided with.
    pub cost: Option<(Currency, Decimal)>,
}

fn parse_learn_until(s: &str, setup: &Setup) -> Result<Timestamp> {
    if let Ok(t) = s.parse::<Timestamp>() {
        return Ok(t);
    }
    let civil: jiff::civil::DateTime = s
        .parse::<jiff::civil::DateTime>()
        .or_else(|_| s.parse::<jiff::civil::Date>().map(|d| d.to_datetime(jiff::civil::Time::midnight())))
        .map_err(|_| anyhow!("--learn-until must be RFC 3339 or YYYY-MM-DD[ HH:MM:SS], found {s:?}"))?;
    setup.cdr_tz.to_timestamp(civil).map_err(|e| anyhow!("--learn-until {s:?}: {e}"))
}

/// Reads every CDR of the inputs into a store; malformed rows are reported and counted.
///
/// On one thread: parsing is nearly all the work, so a second thread would only hand records
/// over (`tollguard rate`, which rates as it reads, parses on a second thread).
pub fn read_cdrs(input: &InputArgs, options: &ReadOptions) -> Result<(CdrStore, u64)> {
    read_cdrs_reporting(input, options, 0)
}

/// [`read_cdrs`], reporting malformed rows after the first `reported` (reported already).
fn read_cdrs_reporting(input: &InputArgs, options: &ReadOptions, reported: u64) -> Result<(CdrStore, u64)> {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_message("reading CDRs");
    // Room from the files' sizes, generous: memory reserved and never written costs nothing (the
    // kernel hands out pages when first touched), while outgrowing a guess copies the whole store
    // into fresh memory twice its size. The text kept is part of each row (a third of an
    // Asterisk row), rows are 64 bytes or more.
    let bytes: u64 = input.cdr.iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len()).sum();
    let guess = |n: u64, most: u64| n.min(most) as usize;
    let mut store = CdrStore::with_capacity(guess(bytes / 64, 8 << 20), guess(bytes, 1 << 30));
    let mut malformed = 0u64;
    let mut scratch = Cdr::default();
    for path in &input.cdr {
        let mut reader = tollguard_ingest::open(input.format, path, options)?;
        while read_record(&mut *reader, &mut store, &mut scratch, (&mut malformed, reported), &bar)? {
            if store.len() % PROGRESS_EVERY == 0 {
                bar.set_position(store.len() as u64);
            }
        }
    }
    bar.finish_and_clear();
    Ok((store, malformed))
}

/// Reads `reader`'s next record onto `store`; false at the end of its input. Malformed rows are
/// skipped and counted in `malformed`, and reported after the first `quiet` of them (reported
/// already), up to [`MAX_REPORTED`].
fn read_record(
    reader: &mut dyn tollguard_ingest::CdrReader,
    store: &mut CdrStore,
    scratch: &mut Cdr,
    (malformed, quiet): (&mut u64, u64),
    bar: &ProgressBar,
) -> Result<bool> {
    loop {
        match reader.read_to_store(store, scratch) {
            Ok(read) => return Ok(read),
            Err(ReadError::Row(bad)) => {
                *malformed += 1;
                if *malformed > quiet && *malformed <= MAX_REPORTED {
                    bar.suspend(|| eprintln!("warning: skipped malformed row: {bad}"));
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Records read between updates of the progress bar.
const PROGRESS_EVERY: usize = 1 << 16;

/// What the replay did: one outcome per CDR (same order) and the alerts raised.
pub struct Replayed {
    /// Per CDR.
    pub outcomes: Vec<Outcome>,
    /// The decisions' lists of rules, each once ([`Outcome::rules`] points here); the first is
    /// empty.
    pub rules: Vec<Vec<String>>,
    /// When cut calls were cut, by CDR (cuts are rare).
    cut_times: HashMap<u32, Timestamp>,
    /// Ordered by the time they were raised, then account, then the order the account raised
    /// them in: the same whatever the number of threads.
    pub alerts: Vec<tollguard_engine::Alert>,
    /// Accounts with state at the end, and the bytes of that state.
    pub state: (usize, usize),
}

impl Replayed {
    /// When the `i`-th CDR's call was cut, if it was.
    pub fn cut_time(&self, i: usize) -> Option<Timestamp> {
        self.cut_times.get(&(i as u32)).copied()
    }
}

/// Lists of rules, each kept once: most decisions have none, and the rest share a few lists.
struct RuleSets {
    lists: Vec<Vec<String>>,
    ids: HashMap<Vec<String>, u32>,
}

impl RuleSets {
    fn new() -> RuleSets {
        RuleSets { lists: vec![vec![]], ids: HashMap::from([(vec![], 0)]) }
    }

    fn id(&mut self, rules: &[String]) -> u32 {
        if rules.is_empty() {
            return 0;
        }
        if let Some(&id) = self.ids.get(rules) {
            return id;
        }
        let id = self.lists.len() as u32;
        self.lists.push(rules.to_vec());
        self.ids.insert(rules.to_vec(), id);
        id
    }
}

/// The first tick at or after `t`: ticks fall on multiples of [`TICK_S`] since 1970.
fn on_grid(t: Timestamp) -> Timestamp {
    let s = t.as_second();
    let g = s.div_euclid(TICK_S) * TICK_S;
    let g = if g < s || t.subsec_nanosecond() > 0 && g == s { g + TICK_S } else { g };
    Timestamp::from_second(g).unwrap_or(t)
}

/// A small fast hash of an account name, to share accounts among threads.
fn shard_of(account: &str, shards: usize) -> usize {
    (tollguard_engine::fnv1a(account) % shards as u64) as usize
}

/// Drives the engine through the CDRs in event time, with the accounts shared among `threads`
/// engines (each account's calls on one of them). Accounts never affect each other in the
/// engine, and ticks fall on a fixed grid, so the result is the same for every `threads`.
pub fn drive(
    rater: Arc<Rater>,
    policy: Policy,
    learn_until: Option<Timestamp>,
    cdrs: &CdrStore,
    threads: usize,
) -> Replayed {
    let threads = threads.max(1);
    let mut shards: Vec<Vec<u32>> = vec![Vec::new(); threads];
    for (i, c) in cdrs.iter().enumerate() {
        shards[if threads == 1 { 0 } else { shard_of(c.account(), threads) }].push(i as u32);
    }
    let mut results: Vec<Shard> = if threads == 1 {
        vec![drive_shard(rater, policy, learn_until, cdrs, std::mem::take(&mut shards[0]))]
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = shards
                .into_iter()
                .map(|idx| {
                    let (rater, policy) = (rater.clone(), policy.clone());
                    scope.spawn(move || drive_shard(rater, policy, learn_until, cdrs, idx))
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("a replay thread panicked")).collect()
        })
    };
    let mut alerts = Vec::new();
    let (mut accounts, mut bytes) = (0, 0);
    let mut cut_times = HashMap::new();
    let (outcomes, rules) = if results.len() == 1 {
        // One engine: its outcomes are in start order; put them in file order where they are.
        let mut r = results.pop().expect("one shard");
        cut_times.extend(r.cut_times.iter().map(|&(pos, t)| (r.idx[pos as usize], t)));
        let (mut idx, mut outcomes) = (r.idx, r.outcomes);
        for pos in 0..idx.len() {
            while idx[pos] as usize != pos {
                let to = idx[pos] as usize;
                outcomes.swap(pos, to);
                idx.swap(pos, to);
            }
        }
        alerts.append(&mut r.alerts);
        (accounts, bytes) = r.state;
        (outcomes, r.rules.lists)
    } else {
        let mut outcomes: Vec<Outcome> = vec![Outcome::default(); cdrs.len()];
        let mut rules = RuleSets::new();
        for mut r in results {
            let ids: Vec<u32> = r.rules.lists.iter().map(|l| rules.id(l)).collect();
            for (&i, o) in r.idx.iter().zip(r.outcomes) {
                outcomes[i as usize] = Outcome { rules: ids[o.rules as usize], ..o };
            }
            cut_times.extend(r.cut_times.into_iter().map(|(pos, t)| (r.idx[pos as usize], t)));
            alerts.append(&mut r.alerts);
            accounts += r.state.0;
            bytes += r.state.1;
        }
        (outcomes, rules.lists)
    };
    World::sorted_alerts(&mut alerts);
    Replayed {
        outcomes,
        rules,
        cut_times,
        alerts: alerts.into_iter().map(|(_, _, a)| a).collect(),
        state: (accounts, bytes),
    }
}

struct Shard {
    /// The shard's CDRs in the order attempted, and what became of each.
    idx: Vec<u32>,
    outcomes: Vec<Outcome>,
    rules: RuleSets,
    /// When calls were cut: (position in the shard, time).
    cut_times: Vec<(u32, Timestamp)>,
    /// (raised at, order raised, alert)
    alerts: Vec<(Timestamp, u64, tollguard_engine::Alert)>,
    state: (usize, usize),
}

/// Answers and ends to come, ordered by (time, kind, position): one 128-bit key each, the
/// seconds since the earliest attempt in the high half, then nanoseconds, kind and position.
struct Queue {
    base: i64,
    heap: Heap,
}

/// The keys of a [`Queue`]: in 64 bits while they fit (whole seconds, as every Asterisk time is,
/// within 544 years of the base, positions below 2^28: half the memory moved and one comparison
/// instead of two), in 128 from the first that does not.
enum Heap {
    Narrow(BinaryHeap<Reverse<u64>>),
    Wide(BinaryHeap<Reverse<u128>>),
}

/// Bits of position in a narrow key (kind takes two more; the seconds the rest).
const NARROW_POS_BITS: u32 = 28;

impl Heap {
    fn new() -> Heap {
        Heap::Narrow(BinaryHeap::new())
    }

    /// The 64-bit form of a key, if it has one: seconds, kind and position, in that order.
    fn narrow(k: u128) -> Option<u64> {
        let (sec, ns, kind_pos) =
            ((k >> 64) as u64, (k >> 34) as u32 & 0x3fff_ffff, k as u64 & 0x3_ffff_ffff);
        let pos = kind_pos & 0xffff_ffff;
        (ns == 0 && pos >> NARROW_POS_BITS == 0 && sec >> (62 - NARROW_POS_BITS) == 0)
            .then_some(sec << (NARROW_POS_BITS + 2) | (kind_pos >> 32) << NARROW_POS_BITS | pos)
    }

    fn wide(n: u64) -> u128 {
        let sec = n >> (NARROW_POS_BITS + 2);
        let kind = (n >> NARROW_POS_BITS) & 3;
        let pos = n & ((1 << NARROW_POS_BITS) - 1);
        (sec as u128) << 64 | (kind as u128) << 32 | pos as u128
    }

    fn push(&mut self, k: u128) {
        match self {
            Heap::Narrow(h) => match Heap::narrow(k) {
                Some(n) => h.push(Reverse(n)),
                None => {
                    let mut wide: BinaryHeap<Reverse<u128>> =
                        h.drain().map(|Reverse(n)| Reverse(Heap::wide(n))).collect();
                    wide.push(Reverse(k));
                    *self = Heap::Wide(wide);
                }
            },
            Heap::Wide(h) => h.push(Reverse(k)),
        }
    }

    fn peek(&self) -> Option<u128> {
        match self {
            Heap::Narrow(h) => h.peek().map(|r| Heap::wide(r.0)),
            Heap::Wide(h) => h.peek().map(|r| r.0),
        }
    }

    fn pop(&mut self) {
        match self {
            Heap::Narrow(h) => _ = h.pop(),
            Heap::Wide(h) => _ = h.pop(),
        }
    }

    /// Every key, in no order.
    fn keys(&self) -> Box<dyn Iterator<Item = u128> + '_> {
        match self {
            Heap::Narrow(h) => Box::new(h.iter().map(|r| Heap::wide(r.0))),
            Heap::Wide(h) => Box::new(h.iter().map(|r| r.0)),
        }
    }
}

impl Queue {
    fn key(&self, t: Timestamp, kind: Kind, pos: u32) -> u128 {
        let (sec, ns) = forward(t);
        let sec = sec.saturating_sub(self.base).max(0) as u64;
        (sec as u128) << 64 | (ns as u128) << 34 | (kind as u128) << 32 | pos as u128
    }

    fn push(&mut self, t: Timestamp, kind: Kind, pos: u32) {
        let k = self.key(t, kind, pos);
        self.heap.push(k);
    }

    fn peek(&self) -> Option<u128> {
        self.heap.peek()
    }

    fn decode(&self, k: u128) -> (Timestamp, Kind, u32) {
        let sec = self.base.saturating_add((k >> 64) as i64);
        let t = Timestamp::new(sec, (k >> 34 & 0x3fff_ffff) as i32).unwrap_or(Timestamp::MAX);
        let kind = match (k >> 32) & 3 {
            0 => Kind::End,
            1 => Kind::Answer,
            _ => Kind::Attempt,
        };
        (t, kind, k as u32)
    }
}

/// Whole seconds and nanoseconds of `t`, both counted forward (jiff gives a negative fraction
/// before 1970: -1.5 s is second -1 and -500,000,000 ns; here second -2 and 500,000,000 ns).
fn forward(t: Timestamp) -> (i64, u32) {
    let (sec, ns) = (t.as_second(), t.subsec_nanosecond());
    if ns < 0 {
        (sec - 1, (ns + 1_000_000_000) as u32)
    } else {
        (sec, ns as u32)
    }
}

/// Where a replay finds its records, by their index in the input (file order, from 0).
trait Records {
    fn record(&self, f: u32) -> CdrRef<'_>;
}

impl Records for CdrStore {
    #[inline]
    fn record(&self, f: u32) -> CdrRef<'_> {
        self.get(f as usize)
    }
}

/// Items numbered from `first` on: those before have been let go.
struct Ring<T> {
    first: u32,
    items: VecDeque<T>,
}

impl<T> Ring<T> {
    fn with_capacity(n: usize) -> Ring<T> {
        Ring { first: 0, items: VecDeque::with_capacity(n) }
    }

    /// The number the next item pushed gets.
    fn end(&self) -> u32 {
        self.first + self.items.len() as u32
    }

    fn push(&mut self, x: T) {
        self.items.push_back(x);
    }

    #[inline]
    fn get(&self, n: u32) -> &T {
        &self.items[(n - self.first) as usize]
    }

    #[inline]
    fn get_mut(&mut self, n: u32) -> &mut T {
        &mut self.items[(n - self.first) as usize]
    }

    /// Item `n`, unless it was let go.
    #[inline]
    fn try_get_mut(&mut self, n: u32) -> Option<&mut T> {
        self.items.get_mut(n.checked_sub(self.first)? as usize)
    }

    /// Lets go of the items before `n` (without reading them).
    fn release_to(&mut self, n: u32) {
        if n > self.first {
            self.items.drain(..(n - self.first) as usize);
            self.first = n;
        }
    }

    /// Every item still held, numbered from 0 when none was let go.
    fn into_vec(self) -> Vec<T> {
        self.items.into()
    }
}

/// What [`World::step`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// Nothing is left before the time it was given.
    Done,
    /// The attempt it was offered.
    Attempted,
    /// A tick, an answer or an end.
    Other,
}

/// Where the replay stands: the engine, and what it decided for each call attempted so far.
/// Calls are numbered by position: the order attempted, which is start order (file order among
/// equal starts).
struct World {
    engine: Engine,
    rater: Arc<Rater>,
    /// The record (index in the input) of each position.
    idx: Ring<u32>,
    /// Outcome of each position.
    outcomes: Ring<Outcome>,
    queue: Queue,
    rules: RuleSets,
    effects: Vec<Effect>,
    /// Attempts the engine decided (each is attempted once).
    decided: usize,
    cut_times: Vec<(u32, Timestamp)>,
    alerts: Vec<(Timestamp, u64, tollguard_engine::Alert)>,
}

impl World {
    /// A new replay where no attempt starts before `first` (the event queue counts time from
    /// there: an earlier start would be taken for it), with room for `calls` calls.
    fn new(
        rater: Arc<Rater>,
        policy: Policy,
        learn_until: Option<Timestamp>,
        first: Option<Timestamp>,
        calls: usize,
    ) -> World {
        let mut engine = Engine::new(rater.clone(), policy);
        engine.set_learn_until(learn_until);
        World {
            engine,
            rater,
            idx: Ring::with_capacity(calls),
            // One pushed per attempt, in position order (memory written once, not filled first).
            outcomes: Ring::with_capacity(calls),
            queue: Queue { base: first.map_or(0, |t| t.as_second() - 1), heap: Heap::new() },
            rules: RuleSets::new(),
            effects: Vec::new(),
            decided: 0,
            cut_times: Vec::new(),
            alerts: Vec::new(),
        }
    }

    /// Does what comes next, if it comes before `until`: a tick the engine asked for, an answer,
    /// an end, or `next` (a record's start and index), the next call to attempt. Every attempt
    /// earlier than `next` must have been offered before.
    fn step<R: Records>(
        &mut self,
        records: &R,
        next: Option<(Timestamp, u32)>,
        until: Option<Timestamp>,
    ) -> Step {
        let attempt = next.map(|(t, _)| self.queue.key(t, Kind::Attempt, self.outcomes.end()));
        let key = match (self.queue.peek(), attempt) {
            (Some(q), Some(a)) => q.min(a),
            (Some(q), None) => q,
            (None, Some(a)) => a,
            (None, None) => return Step::Done,
        };
        let (t, kind, pos) = self.queue.decode(key);
        if until.is_some_and(|u| t >= u) {
            return Step::Done;
        }
        // Time passes: ticks at the deadlines the engine asks for, on the grid, before the event.
        if let Some(d) = self.engine.next_deadline() {
            let g = on_grid(d);
            if g < t {
                self.engine.handle(Event::Tick, g, &mut self.effects);
                self.apply(records, g);
                return Step::Other;
            }
        }
        match kind {
            Kind::Attempt => {
                // The start itself (the key keeps time from the earliest start only).
                let (t, f) = next.expect("an attempt is next");
                self.idx.push(f);
                self.attempt(records.record(f), pos, t);
                self.apply(records, t);
                return Step::Attempted;
            }
            // A call let go (streamed) has ended: its stale keys (its first end, and its answer
            // when it was cut before it, after a cut) find no outcome.
            Kind::Answer => {
                self.queue.heap.pop();
                if self.outcomes.try_get_mut(pos).is_some_and(|o| !o.ended) {
                    let c = records.record(*self.idx.get(pos));
                    self.engine.handle(Event::Answer { call_id: c.call_id() }, t, &mut self.effects);
                    self.apply(records, t);
                }
            }
            Kind::End => {
                self.queue.heap.pop();
                let Some(o) = self.outcomes.try_get_mut(pos) else { return Step::Other };
                if o.attempted && !o.ended {
                    o.ended = true;
                    let billsec = o.talk;
                    let c = records.record(*self.idx.get(pos));
                    self.engine.handle(
                        Event::End { call_id: c.call_id(), billsec: Some(billsec) },
                        t,
                        &mut self.effects,
                    );
                    self.apply(records, t);
                }
            }
        }
        Step::Other
    }

    /// The attempt of record `c` at `t`, as position `pos`: the engine decides, and the call's
    /// answer and end are queued as the decision allows.
    fn attempt(&mut self, c: CdrRef<'_>, pos: u32, t: Timestamp) {
        // Rated once, as the switch would know it before routing (no talk time); the record's
        // own cost comes from the same rating.
        // The record's fields found once, for the rating and the engine both.
        let parts = CallParts {
            account: c.account(),
            source: c.source(),
            dialled: c.dialled(),
            context: c.context(),
            channel: c.channel(),
            dst_channel: c.dst_channel(),
            start: t,
            billsec: 0,
            // As the live service rates an attempt: direction from the rules.
            direction: Direction::Unknown,
        };
        let rated = self.rater.rate_parts(&parts);
        let cost = self.rater.cost_of(&rated, t, c.billsec());
        let unrated = rated.is_unrated();
        let a = Attempt {
            call_id: c.call_id(),
            account: parts.account,
            extension: parts.source,
            dialled: parts.dialled,
            channel: parts.channel,
            dst_channel: parts.dst_channel,
            context: parts.context,
            rated: Some(&rated),
        };
        self.engine.handle(Event::Attempt(a), t, &mut self.effects);
        debug_assert_eq!(self.outcomes.end(), pos);
        // The decision decides what of the CDR happens.
        let mut outcome = Outcome::default();
        if let Some(d) = self.effects.iter().rev().find_map(|e| match e {
            Effect::Decision(d) => Some(d),
            _ => None,
        }) {
            let talk = match d.max_duration_s {
                Some(cap) => c.billsec().min(cap),
                None => c.billsec(),
            };
            // A call the engine does not follow (inbound, internal) ends as recorded: its answer
            // and end would change nothing there.
            let followed = d.allowed && self.engine.follows_last_attempt();
            if followed {
                match c.answer() {
                    Some(ans) if c.billsec() > 0 => {
                        self.queue.push(ans.max(t), Kind::Answer, pos);
                        let end = tollguard_engine::later(ans.max(t), SignedDuration::from_secs(talk.into()));
                        self.queue.push(end, Kind::End, pos);
                    }
                    _ => {
                        let end = c.end().unwrap_or(t).max(t);
                        self.queue.push(end, Kind::End, pos);
                    }
                }
            }
            self.decided += 1;
            outcome = Outcome {
                allowed: d.allowed,
                unrated,
                attempted: true,
                ended: !followed,
                cap: d.max_duration_s,
                rules: self.rules.id(&d.rules),
                cut_at: None,
                talk: if d.allowed { talk } else { 0 },
                cost,
            };
        }
        self.outcomes.push(outcome);
    }

    /// The alerts raised, ordered by time raised, then account, then the order raised.
    fn sorted_alerts(alerts: &mut [(Timestamp, u64, tollguard_engine::Alert)]) {
        alerts.sort_by(|a, b| (a.0, &a.2.account, a.1).cmp(&(b.0, &b.2.account, b.1)));
    }
}

fn drive_shard(
    rater: Arc<Rater>,
    policy: Policy,
    learn_until: Option<Timestamp>,
    cdrs: &CdrStore,
    mut order: Vec<u32>,
) -> Shard {
    // Attempts in start order (file order among equal starts).
    sort_by_start(&mut order, cdrs);
    let start_of = |n: usize| order.get(n).map(|&f| (cdrs.get(f as usize).start(), f));
    let mut w = World::new(rater, policy, learn_until, start_of(0).map(|n| n.0), order.len());
    let mut next_attempt = 0;
    let mut next = start_of(0);
    loop {
        match w.step(cdrs, next, None) {
            Step::Done => break,
            Step::Attempted => {
                // Records come in start order, not stored order: fetched ahead, row then text.
                if let Some(&i) = order.get(next_attempt + PREFETCH_ROWS) {
                    cdrs.prefetch(i as usize, false);
                }
                if let Some(&i) = order.get(next_attempt + PREFETCH_ROWS / 2) {
                    cdrs.prefetch(i as usize, true);
                }
                next_attempt += 1;
                next = start_of(next_attempt);
            }
            Step::Other => {}
        }
    }
    assert_eq!(w.decided, order.len(), "every CDR was attempted and decided");
    Shard {
        state: w.engine.account_state_bytes(),
        idx: w.idx.into_vec(),
        outcomes: w.outcomes.into_vec(),
        rules: w.rules,
        cut_times: w.cut_times,
        alerts: w.alerts,
    }
}

/// How many attempts ahead the driver asks for a record to be fetched into the cache.
const PREFETCH_ROWS: usize = 16;

/// Sorts record positions (given in file order) by start time, file order among equal starts:
/// a least-significant-digit radix sort on the start's offset from the earliest second (and on
/// its nanoseconds, when any record has them), 16 bits a pass. A month of records is two passes
/// over a flat array, against about twenty comparisons a record for a comparison sort.
fn sort_by_start(idx: &mut [u32], cdrs: &CdrStore) {
    let start = |i: u32| cdrs.get(i as usize).start();
    // One pass over the records (they are most of the memory read here): their seconds, and
    // whether they are all whole seconds within 136 years.
    let (mut min, mut max, mut whole) = (i64::MAX, i64::MIN, true);
    let secs: Vec<i64> = idx
        .iter()
        .map(|&i| {
            let t = start(i);
            whole &= t.subsec_nanosecond() == 0;
            let s = t.as_second();
            (min, max) = (min.min(s), max.max(s));
            s
        })
        .collect();
    if whole && min <= max && max - min <= u32::MAX as i64 {
        return sort_whole_seconds(idx, secs, min, max);
    }
    drop(secs);
    let split = |t: Timestamp| {
        let (sec, ns) = forward(t);
        (sec, ns as u64)
    };
    let Some(min) = idx.iter().map(|&i| split(start(i)).0).min() else { return };
    let max = idx.iter().map(|&i| split(start(i)).0).max().unwrap_or(min);
    if max - min > u32::MAX as i64 {
        // Over 136 years apart: not worth a special case.
        idx.sort_by_key(|&i| start(i));
        return;
    }
    // (key, position): seconds from the earliest in the high half, nanoseconds in the low.
    let mut items: Vec<(u64, u32)> = idx
        .iter()
        .map(|&i| {
            let (sec, ns) = split(start(i));
            (((sec - min) as u64) << 32 | ns, i)
        })
        .collect();
    let with_nanos = items.iter().any(|(k, _)| k & 0xffff_ffff != 0);
    let mut other = items.clone();
    let mut count = vec![0usize; 1 << 16];
    let mut passes: Vec<u32> = if with_nanos { vec![0, 16] } else { vec![] };
    passes.extend(
        [32, 48].into_iter().filter(|&shift| ((max - min) as u64) << 32 >> shift != 0 || shift == 32),
    );
    for shift in passes {
        count.iter_mut().for_each(|c| *c = 0);
        for (k, _) in &items {
            count[(k >> shift & 0xffff) as usize] += 1;
        }
        let mut sum = 0;
        for c in count.iter_mut() {
            let n = *c;
            *c = sum;
            sum += n;
        }
        for &(k, i) in &items {
            let d = (k >> shift & 0xffff) as usize;
            other[count[d]] = (k, i);
            count[d] += 1;
        }
        std::mem::swap(&mut items, &mut other);
    }
    for (slot, (_, i)) in idx.iter_mut().zip(items) {
        *slot = i;
    }
}

/// [`sort_by_start`] when every start is a whole second (as in every Asterisk file; `secs` are
/// the starts of `idx`, in its order): the seconds from the earliest and the position packed into
/// one 64-bit key, half the memory.
fn sort_whole_seconds(idx: &mut [u32], secs: Vec<i64>, min: i64, max: i64) {
    // in the same memory as `secs` (same size and alignment: collected in place)
    let mut items: Vec<u64> = secs.into_iter().map(|s| (s - min) as u64).collect();
    for (k, &i) in items.iter_mut().zip(idx.iter()) {
        *k = *k << 32 | i as u64;
    }
    let mut other = vec![0u64; items.len()];
    let mut count = vec![0usize; 1 << 16];
    for shift in [32, 48].into_iter().filter(|&shift| shift == 32 || ((max - min) as u64) >> 16 != 0) {
        count.iter_mut().for_each(|c| *c = 0);
        for k in &items {
            count[(k >> shift & 0xffff) as usize] += 1;
        }
        let mut sum = 0;
        for c in count.iter_mut() {
            let n = *c;
            *c = sum;
            sum += n;
        }
        for &k in &items {
            let d = (k >> shift & 0xffff) as usize;
            other[count[d]] = k;
            count[d] += 1;
        }
        std::mem::swap(&mut items, &mut other);
    }
    drop(other);
    for (slot, k) in idx.iter_mut().zip(items) {
        *slot = k as u32;
    }
}

pub fn run(args: ReplayArgs) -> Result<ExitCode> {
    let setup = setup(&args.input)?;
    let learn_until = args.learn_until.as_deref().map(|s| parse_learn_until(s, &setup)).transpose()?;
    let options = ReadOptions { tz: setup.cdr_tz.clone(), generic: setup.generic.clone() };
    let rater = Arc::new(setup.rater.clone());
    let mut decisions = None;
    let mut summary = Summary::default();
    let mut reported = 0;
    // On one thread, read as the replay goes, when the inputs can be read again (regular files)
    // and what is written can be taken back.
    let files = args.input.cdr.iter().all(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file()));
    if args.threads.get() == 1 && files {
        // An input that cannot be opened fails the run before an output is created; the replay
        // opens each again when it comes to it.
        for p in &args.input.cdr {
            tollguard_ingest::open(args.input.format, p, &options)?;
        }
        decisions = args.decisions_out.as_deref().map(Output::create).transpose()?;
    }
    if args.threads.get() == 1 && files && decisions.as_ref().is_none_or(|d| d.rewindable) {
        let ctx = (&*rater, &setup.policy, learn_until);
        let inputs =
            args.input.cdr.iter().map(|p| {
                Ok((p.display().to_string(), tollguard_ingest::open(args.input.format, p, &options)?))
            });
        let out = decisions.as_mut().map(|d| &mut d.w as &mut dyn Write);
        match stream(inputs, ctx, LAG_S, out, &mut summary)? {
            Streamed::Done(alerts) => return finish(&args, decisions, summary, alerts),
            Streamed::OutOfOrder { line, reported: r } => {
                eprintln!(
                    "note: {line} starts more than {} hours before a record above it: the input is read whole \
                     first, then replayed",
                    LAG_S / 3600
                );
                reported = r;
                summary = Summary::default();
                if let Some(d) = decisions.as_mut() {
                    d.rewind()?;
                }
            }
        }
    }
    let (cdrs, malformed) = read_cdrs_reporting(&args.input, &options, reported)?;
    if decisions.is_none() {
        decisions = args.decisions_out.as_deref().map(Output::create).transpose()?;
    }
    let Replayed { outcomes, rules, alerts, .. } =
        drive(rater.clone(), setup.policy.clone(), learn_until, &cdrs, args.threads.get());
    summary.calls = cdrs.len() as u64;
    summary.malformed = malformed;
    let mut line = Vec::with_capacity(256);
    for (c, o) in cdrs.iter().zip(&outcomes) {
        summary.add(&rater, c, o);
        if let Some(d) = decisions.as_mut() {
            line.clear();
            decision_line(&mut line, c.call_id(), o, &rules[o.rules as usize]);
            d.w.write_all(&line)?;
        }
    }
    finish(&args, decisions, summary, alerts)
}

/// Writes the alerts and the summary.
fn finish(
    args: &ReplayArgs,
    decisions: Option<Output>,
    mut summary: Summary,
    alerts: Vec<tollguard_engine::Alert>,
) -> Result<ExitCode> {
    let mut outputs: Vec<Output> = decisions.into_iter().collect();
    if let Some(p) = &args.alerts_out {
        let mut out = Output::create(p)?;
        for a in &alerts {
            writeln!(out.w, "{}", serde_json::to_string(a)?)
                .with_context(|| format!("cannot write {}", p.display()))?;
        }
        outputs.push(out);
    }
    // Both complete on disk before either takes its place: never new alerts beside old decisions.
    for o in &mut outputs {
        o.complete()?;
    }
    for o in outputs {
        o.commit()?;
    }
    for a in &alerts {
        match a.severity {
            Severity::Critical => summary.critical += 1,
            Severity::Warning => summary.warning += 1,
            Severity::Info => {}
        }
    }
    summary.print();
    Ok(ExitCode::SUCCESS)
}

/// An output file (decisions.jsonl, alerts.jsonl) as it is written. A regular file, or one that
/// does not exist yet, is written whole or not at all: into a temporary file beside it (hidden:
/// `.NAME.XXXXXX.partial`), renamed over it by [`Output::commit`], so a replay that fails half way
/// (an input that cannot be read any further, a full disk) leaves the old file as it was, and
/// never a file that looks complete. A symbolic link's target is replaced the same way; the
/// file keeps its permissions. Written in place, as before: a pipe, a FIFO, /dev/stdout,
/// /dev/null, a file with other names (hard links would keep the old contents), and a file in
/// a folder where no new file can be created.
struct Output {
    path: PathBuf,
    w: BufWriter<std::fs::File>,
    /// The temporary file and where it goes, removed if the output is dropped before it is
    /// committed.
    temp: Option<(tempfile::TempPath, PathBuf)>,
    /// What was written can be taken back: a regular file (emptied), or /dev/null.
    rewindable: bool,
}

impl Output {
    fn create(p: &std::path::Path) -> Result<Output> {
        let ctx = || format!("cannot create {}", p.display());
        let (f, temp) = match Output::beside(p).with_context(ctx)? {
            Some((f, temp)) => (f, Some(temp)),
            None => (std::fs::File::create(p).with_context(ctx)?, None),
        };
        let meta = f.metadata().with_context(|| format!("cannot read {}", p.display()))?;
        let rewindable = meta.is_file() || is_dev_null(&meta);
        Ok(Output { path: p.to_path_buf(), w: BufWriter::new(f), temp, rewindable })
    }

    /// A temporary file beside the file `p` names, and that file's path; `None` when `p` is to
    /// be written in place.
    fn beside(
        p: &std::path::Path,
    ) -> std::io::Result<Option<(std::fs::File, (tempfile::TempPath, PathBuf))>> {
        let target = match std::fs::symlink_metadata(p) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => p.to_path_buf(),
            Err(e) => return Err(e),
            Ok(m) if m.is_file() => p.to_path_buf(),
            Ok(m) if m.file_type().is_symlink() => match std::fs::canonicalize(p) {
                Ok(t) if std::fs::metadata(&t).is_ok_and(|m| m.is_file()) => t,
                _ => return Ok(None),
            },
            Ok(_) => return Ok(None),
        };
        let existing = match std::fs::metadata(&target) {
            Ok(m) => {
                // One that may not be written is refused, as writing it in place would be.
                std::fs::OpenOptions::new().write(true).open(&target)?;
                #[cfg(unix)]
                if std::os::unix::fs::MetadataExt::nlink(&m) > 1 {
                    return Ok(None);
                }
                Some(m.permissions())
            }
            Err(_) => None,
        };
        let Some(name) = target.file_name() else { return Ok(None) };
        let dir = target.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
        let mut prefix = std::ffi::OsString::from(".");
        prefix.push(name);
        prefix.push(".");
        let mut b = tempfile::Builder::new();
        b.prefix(&prefix).suffix(".partial");
        #[cfg(unix)]
        b.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
        let (f, path) = match b.tempfile_in(dir) {
            Ok(t) => t.into_parts(),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return Ok(None),
            Err(e) => return Err(e),
        };
        if let Some(permissions) = existing {
            f.set_permissions(permissions)?;
        }
        Ok(Some((f, (path, target))))
    }

    /// Takes back what was written: the file is empty again.
    fn rewind(&mut self) -> Result<()> {
        use std::io::Seek;
        let ctx = || format!("cannot empty {}", self.path.display());
        self.w.flush().with_context(ctx)?;
        let f = self.w.get_mut();
        if f.metadata().with_context(ctx)?.is_file() {
            f.set_len(0).with_context(ctx)?;
            f.rewind().with_context(ctx)?;
        }
        Ok(())
    }

    /// Everything is written: on disk, to the last byte.
    fn complete(&mut self) -> Result<()> {
        let ctx = || format!("cannot write {}", self.path.display());
        self.w.flush().with_context(ctx)?;
        if self.temp.is_some() {
            self.w.get_ref().sync_all().with_context(ctx)?;
        }
        Ok(())
    }

    /// The file takes its place (after [`Output::complete`]).
    fn commit(mut self) -> Result<()> {
        if let Some((temp, target)) = self.temp.take() {
            temp.persist(&target).with_context(|| format!("cannot write {}", self.path.display()))?;
        }
        Ok(())
    }
}

#[cfg(unix)]
fn is_dev_null(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/dev/null").is_ok_and(|n| (n.dev(), n.ino()) == (meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn is_dev_null(_: &std::fs::Metadata) -> bool {
    false
}

/// How late a record may come in the input: its start at most this many seconds before the
/// latest start above it. CDR files are written as calls end, so a record comes after those of
/// calls that started up to its own duration later; a call longer than this makes the replay
/// read the input whole first (the same result, with memory for all of it).
const LAG_S: i64 = 24 * 3600;

/// Records kept together, read and let go together, in a streamed replay.
const CHUNK: u32 = 4096;

/// The records a streamed replay holds: those read and not yet written out, in chunks of
/// [`CHUNK`] in input order (chunks let go are kept for reuse: no fresh memory once the replay
/// runs).
struct Window {
    /// Index in the input of the first chunk's first record.
    first: u32,
    chunks: VecDeque<CdrStore>,
    spare: Vec<CdrStore>,
}

impl Records for Window {
    #[inline]
    fn record(&self, f: u32) -> CdrRef<'_> {
        let i = f - self.first;
        self.chunks[(i / CHUNK) as usize].get((i % CHUNK) as usize)
    }
}

impl Window {
    /// Asks for record `f` to be fetched into the cache (a hint).
    fn prefetch(&self, f: u32, text: bool) {
        let i = f - self.first;
        if let Some(c) = self.chunks.get((i / CHUNK) as usize) {
            c.prefetch((i % CHUNK) as usize, text);
        }
    }

    /// The chunk to read the next record into.
    fn tail(&mut self) -> &mut CdrStore {
        if self.chunks.back().is_none_or(|c| c.len() as u32 == CHUNK) {
            let c = self
                .spare
                .pop()
                .unwrap_or_else(|| CdrStore::with_capacity(CHUNK as usize, CHUNK as usize * 96));
            self.chunks.push_back(c);
        }
        self.chunks.back_mut().expect("a chunk")
    }

    /// Lets go of the whole chunks before record `f`.
    fn release(&mut self, f: u32) {
        while self.chunks.len() > 1 && self.first + CHUNK <= f {
            let mut c = self.chunks.pop_front().expect("a chunk");
            c.clear();
            self.spare.push(c);
            self.first += CHUNK;
        }
    }
}

/// How a streamed replay ended.
enum Streamed {
    /// Every record replayed and written; the alerts.
    Done(Vec<tollguard_engine::Alert>),
    /// A record came more than [`LAG_S`] late (`line`: where); nothing of the replay stands.
    /// `reported`: malformed rows reported so far.
    OutOfOrder { line: String, reported: u64 },
}

/// Attempts to take, by (start, index in the input): one 128-bit key each, the start's seconds
/// (shifted to order as unsigned) in the high half, then its nanoseconds, then the index.
fn pending_key(t: Timestamp, f: u32) -> u128 {
    let (sec, ns) = forward(t);
    ((sec as u64 ^ 1 << 63) as u128) << 64 | (ns as u128) << 32 | f as u128
}

/// The start a [`pending_key`] was made of (the record itself need not be read for it).
fn pending_start(k: u128) -> Timestamp {
    let sec = ((k >> 64) as u64 ^ 1 << 63) as i64;
    Timestamp::new(sec, (k >> 32) as u32 as i32).expect("made of a timestamp")
}

/// Records read and not yet attempted, by [`pending_key`]: the keys of each chunk read, sorted
/// (records come nearly in start order, which the sort is quick on), and the runs merged by a
/// small heap of their first keys (a few runs at a time, against a heap of every record).
struct Pending {
    /// Keys of the records read since the last [`Pending::seal`].
    batch: Vec<u128>,
    /// Room for sorting them.
    scratch: Vec<u128>,
    runs: Vec<Run>,
    /// Slots of `runs` free for reuse.
    free: Vec<u32>,
    /// (first key, slot) of each run.
    heads: BinaryHeap<Reverse<(u128, u32)>>,
}

struct Run {
    keys: Vec<u128>,
    next: usize,
}

impl Pending {
    fn new() -> Pending {
        Pending {
            batch: Vec::with_capacity(CHUNK as usize),
            scratch: Vec::new(),
            runs: Vec::new(),
            free: Vec::new(),
            heads: BinaryHeap::new(),
        }
    }

    fn push(&mut self, key: u128) {
        self.batch.push(key);
    }

    /// Makes the keys pushed since the last call visible to [`Pending::peek`].
    fn seal(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        sort_keys(&mut self.batch, &mut self.scratch);
        let spare = match self.free.last() {
            Some(&slot) => std::mem::take(&mut self.runs[slot as usize].keys),
            None => Vec::with_capacity(CHUNK as usize),
        };
        let keys = std::mem::replace(&mut self.batch, spare);
        let head = keys[0];
        let run = Run { keys, next: 0 };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.runs[slot as usize] = run;
                slot
            }
            None => {
                self.runs.push(run);
                (self.runs.len() - 1) as u32
            }
        };
        self.batch.clear();
        self.heads.push(Reverse((head, slot)));
    }

    /// The least key sealed.
    #[inline]
    fn peek(&self) -> Option<u128> {
        self.heads.peek().map(|r| r.0 .0)
    }

    /// Takes the least key sealed away; returns the keys [`PREFETCH_ROWS`] and half that many
    /// places after it in its run, if any (to fetch their records ahead of use).
    fn pop(&mut self) -> (Option<u128>, Option<u128>) {
        let Some(mut top) = self.heads.peek_mut() else { return (None, None) };
        let slot = top.0 .1;
        let run = &mut self.runs[slot as usize];
        run.next += 1;
        let later = (
            run.keys.get(run.next + PREFETCH_ROWS).copied(),
            run.keys.get(run.next + PREFETCH_ROWS / 2).copied(),
        );
        match run.keys.get(run.next) {
            Some(&k) => top.0 .0 = k,
            None => {
                std::collections::binary_heap::PeekMut::pop(top);
                run.keys.clear();
                run.next = 0;
                self.free.push(slot);
            }
        }
        later
    }
}

/// Sorts [`pending_key`]s (all different, in input order): when every start is a whole second
/// and they lie within 136 years, a least-significant-digit radix sort on the seconds from the
/// earliest, 8 bits a pass (a chunk's starts span hours: two passes, against a dozen comparisons a
/// key), which keeps input order among equal starts; else a comparison sort.
fn sort_keys(keys: &mut Vec<u128>, scratch: &mut Vec<u128>) {
    let (mut min, mut max, mut whole) = (u64::MAX, 0u64, true);
    for &k in keys.iter() {
        let sec = (k >> 64) as u64;
        (min, max) = (min.min(sec), max.max(sec));
        whole &= (k >> 32) as u32 == 0;
    }
    let range = max.wrapping_sub(min);
    if !whole || min > max || range > u32::MAX as u64 {
        keys.sort_unstable();
        return;
    }
    scratch.clear();
    scratch.resize(keys.len(), 0);
    let mut shift = 0;
    while shift == 0 || shift < 64 && range >> shift != 0 {
        let mut count = [0usize; 256];
        let digit = |k: u128| (((k >> 64) as u64 - min) >> shift & 0xff) as usize;
        for &k in keys.iter() {
            count[digit(k)] += 1;
        }
        let mut sum = 0;
        for c in count.iter_mut() {
            (*c, sum) = (sum, sum + *c);
        }
        for &k in keys.iter() {
            let d = digit(k);
            scratch[count[d]] = k;
            count[d] += 1;
        }
        std::mem::swap(keys, scratch);
        shift += 8;
    }
}

/// The replay on one engine, reading as it goes: records are read in input order, attempted in
/// start order once no record still to come can start earlier (within [`LAG_S`]), and written
/// out in input order once their calls have ended in the replayed world. It holds a day or so of
/// records instead of the whole input, and gives the same events in the same order as
/// [`drive`] on one thread, hence the same output byte for byte.
/// `inputs`: each input's name and reader, in order; `lag_s`: [`LAG_S`] (smaller in tests).
fn stream(
    inputs: impl Iterator<Item = Result<(String, Box<dyn tollguard_ingest::CdrReader>)>>,
    (rater, policy, learn_until): (&Rater, &Policy, Option<Timestamp>),
    lag_s: i64,
    mut out: Option<&mut dyn Write>,
    summary: &mut Summary,
) -> Result<Streamed> {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_message("replaying CDRs");
    let rater = Arc::new(rater.clone());
    let mut window = Window { first: 0, chunks: VecDeque::new(), spare: Vec::new() };
    let mut world: Option<World> = None;
    // Records read and not yet attempted.
    let mut pending = Pending::new();
    // The position of each record not yet written out (NONE: not attempted yet).
    const NONE: u32 = u32::MAX;
    let mut pos_of: Ring<u32> = Ring::with_capacity(4 * CHUNK as usize);
    // Every event before `until` has been carried out.
    let mut until: Option<Timestamp> = None;
    let mut latest = i64::MIN;
    let mut scratch = Cdr::default();
    let mut lines = Vec::with_capacity(64 * CHUNK as usize);
    let mut read = 0u32;
    let mut malformed = 0u64;

    // Attempts, answers, ends and ticks before `until` (all, at the end of the input).
    let replay_to = |world: &mut Option<World>,
                     window: &Window,
                     pending: &mut Pending,
                     pos_of: &mut Ring<u32>,
                     until: Option<Timestamp>| {
        pending.seal();
        let next_of = |pending: &Pending| pending.peek().map(|k| (pending_start(k), k as u32));
        let mut next = next_of(pending);
        // No record attempted from here on starts before the earliest read or `until`.
        let first = match (next.map(|n| n.0), until) {
            (Some(a), Some(u)) => Some(a.min(u)),
            (a, u) => a.or(u),
        };
        let w = world.get_or_insert_with(|| {
            World::new(rater.clone(), policy.clone(), learn_until, first, 4 * CHUNK as usize)
        });
        loop {
            match w.step(window, next, until) {
                Step::Done => break,
                Step::Attempted => {
                    let (_, f) = next.expect("attempted");
                    *pos_of.get_mut(f) = w.outcomes.end() - 1;
                    // Records come in start order, not read order: fetched ahead, row then text.
                    let (row, text) = pending.pop();
                    if let Some(k) = row {
                        window.prefetch(k as u32, false);
                    }
                    if let Some(k) = text {
                        window.prefetch(k as u32, true);
                    }
                    next = next_of(pending);
                }
                Step::Other => {}
            }
        }
    };
    // Records whose calls have ended, in input order, written out and let go.
    let mut write_out = |w: &mut World, window: &mut Window, pos_of: &mut Ring<u32>| -> Result<()> {
        // The lines of the records let go here, written at once (a write a line cost more than
        // the line).
        lines.clear();
        let mut f = pos_of.first;
        while f < pos_of.end() {
            let pos = *pos_of.get(f);
            if pos == NONE || !w.outcomes.get(pos).ended {
                break;
            }
            // Outcomes are in start order, written in input order: fetched ahead.
            if let Some(&ahead) = pos_of.items.get((f - pos_of.first) as usize + PREFETCH_ROWS) {
                if let Some(o) = w.outcomes.items.get(ahead.wrapping_sub(w.outcomes.first) as usize) {
                    tollguard_core::cdr::prefetch_ref(o);
                }
            }
            let (c, o) = (window.record(f), w.outcomes.get(pos));
            summary.add(&w.rater, c, o);
            if out.is_some() {
                decision_line(&mut lines, c.call_id(), o, &w.rules.lists[o.rules as usize]);
            }
            f += 1;
        }
        if let Some(out) = out.as_mut() {
            out.write_all(&lines)?;
        }
        pos_of.release_to(f);
        let written = w.idx.items.iter().take_while(|&&i| i < f).count() as u32;
        let to = w.idx.first + written;
        w.idx.release_to(to);
        w.outcomes.release_to(to);
        window.release(f);
        Ok(())
    };

    for input in inputs {
        let (name, mut reader) = input?;
        while read_record(&mut *reader, window.tail(), &mut scratch, (&mut malformed, 0), &bar)? {
            let f = read;
            read = read.checked_add(1).context("more than 4,294,967,295 CDRs")?;
            let t = window.record(f).start();
            if until.is_some_and(|u| t < u) {
                bar.finish_and_clear();
                let line = format!("{name}:{}", window.record(f).line());
                return Ok(Streamed::OutOfOrder { line, reported: malformed.min(MAX_REPORTED) });
            }
            latest = latest.max(t.as_second());
            pending.push(pending_key(t, f));
            pos_of.push(NONE);
            if read % CHUNK == 0 {
                // Every record still to come starts at `until` or later (or the input is out of
                // order, which the check above finds).
                until = Timestamp::from_second(latest.saturating_sub(lag_s)).ok().max(until);
                replay_to(&mut world, &window, &mut pending, &mut pos_of, until);
                if let Some(w) = world.as_mut() {
                    write_out(w, &mut window, &mut pos_of)?;
                }
                if read % (PROGRESS_EVERY as u32) == 0 {
                    bar.set_position(read as u64);
                }
            }
        }
    }
    replay_to(&mut world, &window, &mut pending, &mut pos_of, None);
    bar.finish_and_clear();
    let mut w = world.expect("a replay");
    write_out(&mut w, &mut window, &mut pos_of)?;
    assert_eq!(w.decided, read as usize, "every CDR was attempted and decided");
    assert_eq!(pos_of.first, read, "every CDR was written out");
    summary.calls = read as u64;
    summary.malformed = malformed;
    World::sorted_alerts(&mut w.alerts);
    Ok(Streamed::Done(w.alerts.into_iter().map(|(_, _, a)| a).collect()))
}

impl World {
    /// Carries out effects in the replayed world: cuts end calls now; alerts are kept.
    #[inline(always)]
    fn apply<R: Records>(&mut self, records: &R, now: Timestamp) {
        match self.effects[..] {
            [] => {}
            // An attempt's decision or an end's charge alone (the usual cases): nothing to carry
            // out (the decision was read already).
            [Effect::Decision(_) | Effect::Charged { .. }] => self.effects.clear(),
            _ => self.apply_all(records, now),
        }
    }

    fn apply_all<R: Records>(&mut self, records: &R, now: Timestamp) {
        // Looked at in place and dropped there: an effect is large, and a decision comes with
        // every attempt (moving each out cost a copy of it).
        let mut effects = std::mem::take(&mut self.effects);
        for e in effects.iter_mut() {
            match e {
                Effect::Alert(a) => {
                    let n = self.alerts.len() as u64;
                    let a = Alert {
                        time: std::mem::take(&mut a.time),
                        account: std::mem::take(&mut a.account),
                        extension: std::mem::take(&mut a.extension),
                        rule: std::mem::take(&mut a.rule),
                        call_id: std::mem::take(&mut a.call_id),
                        message: std::mem::take(&mut a.message),
                        ..*a
                    };
                    self.alerts.push((now, n, a));
                }
                Effect::Cut { call_id, .. } => {
                    let call_id = call_id.as_str();
                    // A running call has its end queued: find it there (cuts are rare). Of two
                    // running calls with the same id, the engine knows the later one only. (Not
                    // among the calls let go: those have ended.)
                    let (idx, outcomes) = (&self.idx, &self.outcomes);
                    let Some(pos) = self
                        .queue
                        .heap
                        .keys()
                        .filter_map(|k| {
                            let pos = k as u32;
                            ((k >> 32) & 3 == Kind::End as u128
                                && pos >= outcomes.first
                                && !outcomes.get(pos).ended
                                && records.record(*idx.get(pos)).call_id() == call_id)
                                .then_some(pos)
                        })
                        .max()
                    else {
                        continue;
                    };
                    let c = records.record(*self.idx.get(pos));
                    let o = self.outcomes.get_mut(pos);
                    let talk = match c.answer() {
                        Some(ans) if now > ans => {
                            (now.duration_since(ans).as_secs().max(0) as u32).min(o.talk)
                        }
                        _ => 0,
                    };
                    o.talk = talk;
                    o.cut_at = Some(talk);
                    self.cut_times.push((pos, now));
                    self.queue.push(now, Kind::End, pos);
                }
                _ => {}
            }
        }
        effects.clear();
        self.effects = effects;
    }
}

/// A line of decisions.jsonl (../shared/CONTRACTS.md), with its newline:
/// `{"call_id":"...","allowed":true,"max_duration_s":null,"rules":[]}`. A call a limit ended
/// while it ran also has `"cut":true` (after `max_duration_s`, which is then its talk time when
/// cut): without it a cut could not be told from a cap given at the start.
fn decision_line(out: &mut Vec<u8>, call_id: &str, o: &Outcome, rules: &[String]) {
    out.extend_from_slice(b"{\"call_id\":");
    json_str(out, call_id);
    out.extend_from_slice(if o.allowed { b",\"allowed\":true" } else { b",\"allowed\":false" });
    out.extend_from_slice(b",\"max_duration_s\":");
    match o.cut_at.or(o.cap) {
        Some(n) => out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
    if o.cut_at.is_some() {
        out.extend_from_slice(b",\"cut\":true");
    }
    out.extend_from_slice(b",\"rules\":[");
    for (i, r) in rules.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json_str(out, r);
    }
    out.extend_from_slice(b"]}\n");
}

/// A JSON string: as is when nothing in it needs escaping (the usual case), else by serde_json.
fn json_str(out: &mut Vec<u8>, s: &str) {
    if plain_json(s.as_bytes()) {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        serde_json::to_writer(&mut *out, s).expect("a string always serializes");
    }
}

/// Whether JSON takes `s` as it is: no control character, quote or backslash. Eight bytes at a
/// time: a byte below 0x20, or equal to `"` or `\`, sets the high bit of its lane in one of the
/// three tests (exact as a whole-word test: a borrow only ever starts at such a byte).
fn plain_json(s: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_lane = |x: u64| x.wrapping_sub(ONES) & !x;
    let mut chunks = s.chunks_exact(8);
    for c in &mut chunks {
        let x = u64::from_le_bytes(c.try_into().expect("eight bytes"));
        let found = (x.wrapping_sub(ONES * 0x20) & !x)
            | zero_lane(x ^ (ONES * b'"' as u64))
            | zero_lane(x ^ (ONES * b'\\' as u64));
        if found & HIGH != 0 {
            return false;
        }
    }
    chunks.remainder().iter().all(|&b| b >= 0x20 && b != b'"' && b != b'\\')
}

#[derive(Default)]
struct Summary {
    calls: u64,
    malformed: u64,
    unrated: u64,
    denied: u64,
    capped: u64,
    cut: u64,
    critical: u64,
    warning: u64,
    exposure: Sums,
    cost: Sums,
}

/// Money summed by currency: a record or two of them, looked through (a map's search cost more
/// than the sums, a call at a time).
#[derive(Default)]
struct Sums(Vec<(Currency, Decimal)>);

impl Sums {
    fn add(&mut self, currency: Currency, x: Decimal) {
        match self.0.iter_mut().find(|(c, _)| *c == currency) {
            Some((_, sum)) => *sum += x,
            None => self.0.push((currency, x)),
        }
    }

    /// `EUR 1.0000, USD 2.0000` by currency, or `0`.
    fn text(&self) -> String {
        if self.0.is_empty() {
            return "0".to_string();
        }
        let mut v = self.0.clone();
        v.sort_by_key(|(c, _)| *c);
        v.iter().map(|(c, x)| format!("{c} {x:.4}")).collect::<Vec<_>>().join(", ")
    }
}

impl Summary {
    /// Counts record `c` and what became of it.
    fn add(&mut self, rater: &Rater, c: CdrRef<'_>, o: &Outcome) {
        if o.unrated {
            self.unrated += 1;
        }
        if let Some((currency, full)) = o.cost {
            self.exposure.add(currency, full);
            if o.allowed {
                let paid = if o.talk == c.billsec() {
                    full
                } else {
                    // Capped or cut: the same rating again, for the talk time it had.
                    let r = rater.rate_parts(&CallParts {
                        billsec: 0,
                        direction: Direction::Unknown,
                        ..c.parts()
                    });
                    rater.cost_of(&r, c.start(), o.talk).map_or(full, |x| x.1)
                };
                self.cost.add(currency, paid);
            }
        }
        if !o.allowed {
            self.denied += 1;
        }
        if o.cut_at.is_some() {
            self.cut += 1;
        } else if o.cap.is_some_and(|cap| c.billsec() > cap) && o.allowed {
            self.capped += 1;
        }
    }

    fn print(&self) {
        eprintln!("replayed {} calls", self.calls);
        eprintln!("  cost as recorded {}  cost with tollguard {}", self.exposure.text(), self.cost.text());
        eprintln!(
            "  denied {}  capped {}  cut {}  alerts {} critical, {} warning  unrated {}  malformed {}",
            self.denied, self.capped, self.cut, self.critical, self.warning, self.unrated, self.malformed
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollguard_core::cdr::Cdr;

    /// A small deterministic generator of test data.
    fn xorshift(mut x: u64) -> impl FnMut() -> u64 {
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    proptest::proptest! {
        /// Eight bytes at a time, the same answer as byte by byte, for bytes of every kind (the
        /// ones that need escaping made common) in every position.
        #[test]
        fn plain_json_is_the_bytewise_test(
            bytes in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::prelude::any::<u8>(),
                    proptest::sample::select(vec![0u8, 0x1f, 0x20, b'"', b'\\', 0x21, 0x5b, 0x5d, 0x7f, 0x80, 0xff]),
                ],
                0..40,
            )
        ) {
            let bytewise = bytes.iter().all(|&b| b >= 0x20 && b != b'"' && b != b'\\');
            proptest::prop_assert_eq!(plain_json(&bytes), bytewise);
        }
    }

    #[test]
    fn queue_keys_order_as_time_kind_position_and_give_the_time_back() {
        let mut next = xorshift(0x2545_f491_4f6c_dd1d);
        // Around 1970 (jiff's negative fractions) and in 2026, with and without nanoseconds.
        for base in [-30i64, 1_767_225_600] {
            let q = Queue { base: base - 1, heap: Heap::new() };
            let events: Vec<(Timestamp, Kind, u32)> = (0..2_000)
                .map(|_| {
                    let ns = if next() % 2 == 0 { (next() % 1_000_000_000) as i128 } else { 0 };
                    let t = Timestamp::from_nanosecond(
                        (base + (next() % 60) as i64) as i128 * 1_000_000_000 + ns,
                    )
                    .unwrap();
                    let kind = [Kind::End, Kind::Answer, Kind::Attempt][(next() % 3) as usize];
                    (t, kind, (next() % 8) as u32)
                })
                .collect();
            for &(t, kind, pos) in &events {
                assert_eq!(q.decode(q.key(t, kind, pos)), (t, kind, pos));
            }
            let mut by_key = events.clone();
            by_key.sort_by_key(|&(t, kind, pos)| q.key(t, kind, pos));
            let mut by_tuple = events;
            by_tuple.sort();
            assert_eq!(by_key, by_tuple, "around {base}");
        }
    }

    /// Keys come out of the queue in order, in 64 bits while every key fits and after the
    /// first that does not (a fraction of a second, a position past 2^28, seconds past 2^34).
    #[test]
    fn the_queue_gives_keys_in_order_narrow_or_wide() {
        let mut next = xorshift(0x1234_5678_9abc_def1);
        for odd_after in [usize::MAX, 0, 700, 1_999] {
            let q = Queue { base: 1_767_225_600, heap: Heap::new() };
            let mut heap = Heap::new();
            let mut keys = vec![];
            for i in 0..2_000 {
                let t = 1_767_225_600 + (next() % 100_000) as i64;
                let kind = [Kind::End, Kind::Answer, Kind::Attempt][(next() % 3) as usize];
                let mut k = q.key(Timestamp::from_second(t).unwrap(), kind, (next() % 1_000) as u32);
                if i == odd_after {
                    k = match next() % 3 {
                        0 => k | 5 << 34,
                        1 => k | (1 << NARROW_POS_BITS),
                        _ => k | 1 << (64 + 40),
                    };
                }
                keys.push(k);
                heap.push(k);
                assert_eq!(matches!(heap, Heap::Narrow(_)), i < odd_after, "key {i}");
            }
            let mut all: Vec<u128> = heap.keys().collect();
            all.sort_unstable();
            keys.sort_unstable();
            assert_eq!(all, keys);
            for &k in &keys {
                assert_eq!(heap.peek(), Some(k));
                heap.pop();
            }
            assert_eq!(heap.peek(), None);
        }
    }

    /// A replay whose event queue turns to 128-bit keys in the middle (a call answered half a
    /// second into a second) still finds a running call's end there when a limit cuts it.
    /// A Dutch deck and a policy that cuts every call at 60 s of talk, with an alert.
    fn cutting_setup() -> (Rater, Policy) {
        use tollguard_core::numbering::{DialPlan, Numbering};
        use tollguard_core::rater::{AccountSetup, DirectionRules};
        use tollguard_core::rating::{RateDeck, TimeBands};
        let deck = RateDeck::parse(
            "deck.csv",
            "deck",
            "prefix,destination,rate_per_minute,connection_fee,initial_increment_s,subsequent_increment_s\n\
             31,Netherlands,0.0120,0,60,60\n"
                .as_bytes(),
            &TimeBands::default(),
            Currency::EUR,
        )
        .unwrap();
        let default = AccountSetup {
            plan: Arc::new(DialPlan::for_country("NL").unwrap()),
            tz: jiff::tz::TimeZone::UTC,
        };
        let rater = Rater::new(
            Arc::new(Numbering::builtin().clone()),
            vec![deck],
            TimeBands::default(),
            HashMap::new(),
            default,
            DirectionRules::default(),
        )
        .unwrap();
        let spec: tollguard_engine::policy::PolicySpec = toml::from_str(
            "defaults = false\n[[limit]]\nname = \"long\"\nmetric = \"call_duration\"\nmax = \"60\"\n\
             on_critical = [\"alert\", \"cut\"]\n",
        )
        .unwrap();
        (rater, Policy::from_spec(&spec).unwrap())
    }

    #[test]
    fn a_call_is_cut_after_the_queue_widens() {
        use jiff::SignedDuration;
        use tollguard_core::cdr::Disposition;
        let (rater, policy) = cutting_setup();
        let t0: Timestamp = "2026-01-05T10:00:00Z".parse().unwrap();
        let mut cdrs = CdrStore::new();
        // a: answered on a whole second, 30 s of talk; b: answered at 12.5 s, 300 s of talk.
        for (id, start_s, answer_ms, billsec) in [("a", 0, 5_000, 30u32), ("b", 10, 12_500, 300)] {
            let answer = t0 + SignedDuration::from_millis(answer_ms);
            cdrs.push(&Cdr {
                call_id: id.into(),
                account: "acme".into(),
                source: "201".into(),
                dialled: "0201234567".into(),
                start: t0 + SignedDuration::from_secs(start_s),
                answer: Some(answer),
                end: Some(answer + SignedDuration::from_secs(billsec as i64)),
                billsec,
                disposition: Disposition::Answered,
                ..Cdr::default()
            });
        }
        let r = drive(Arc::new(rater), policy, None, &cdrs, 1);
        assert!(r.outcomes.iter().all(|o| o.allowed), "both allowed at their start");
        assert_eq!((r.outcomes[0].cut_at, r.outcomes[0].talk), (None, 30));
        // 60 s after 12.5 s is 72.5 s; the tick grid's next is 75 s: 62 whole seconds of talk.
        assert_eq!((r.outcomes[1].cut_at, r.outcomes[1].talk), (Some(62), 62));
        assert_eq!(r.cut_time(1), Some(t0 + SignedDuration::from_secs(75)));
    }

    #[test]
    fn a_cut_of_a_repeated_call_id_ends_the_later_call() {
        use jiff::SignedDuration;
        use tollguard_core::cdr::Disposition;
        // The engine forgets a call when another comes with its id: the cut is the second's.
        let (rater, policy) = cutting_setup();
        let t0: Timestamp = "2026-01-05T10:00:00Z".parse().unwrap();
        let mut cdrs = CdrStore::new();
        for (start_s, line) in [(0, 1), (30, 2)] {
            let start = t0 + SignedDuration::from_secs(start_s);
            cdrs.push(&Cdr {
                call_id: "dup".into(),
                account: "acme".into(),
                source: "201".into(),
                dialled: "0201234567".into(),
                start,
                answer: Some(start + SignedDuration::from_secs(5)),
                end: Some(start + SignedDuration::from_secs(305)),
                billsec: 300,
                disposition: Disposition::Answered,
                line,
                ..Cdr::default()
            });
        }
        let r = drive(Arc::new(rater), policy, None, &cdrs, 1);
        assert_eq!((r.outcomes[0].cut_at, r.outcomes[0].talk), (None, 300));
        // answered at 35 s, 60 s reached at 95 s, the tick at 95 s
        assert_eq!((r.outcomes[1].cut_at, r.outcomes[1].talk), (Some(60), 60));
    }

    #[test]
    fn an_internal_leg_under_an_outbound_calls_id_leaves_the_outbound_call_to_be_cut() {
        use jiff::SignedDuration;
        use tollguard_core::cdr::Disposition;
        // Asterisk can write an internal leg (a ring group, a transfer) under the uniqueid of an
        // outbound call. The engine does not follow the internal one: its answer and end must not
        // touch the outbound call, and a cut must land on the outbound call.
        let t0: Timestamp = "2026-01-05T10:00:00Z".parse().unwrap();
        let leg = |dialled: &str, start_s: i64, talk: u32, line: u64| Cdr {
            call_id: "dup".into(),
            account: "acme".into(),
            source: "201".into(),
            dialled: dialled.into(),
            start: t0 + SignedDuration::from_secs(start_s),
            answer: Some(t0 + SignedDuration::from_secs(start_s + 2)),
            end: Some(t0 + SignedDuration::from_secs(start_s + 2 + talk as i64)),
            billsec: talk,
            disposition: Disposition::Answered,
            line,
            ..Cdr::default()
        };
        let replay = |legs: [Cdr; 2]| {
            let (rater, policy) = cutting_setup();
            let mut cdrs = CdrStore::new();
            for c in &legs {
                cdrs.push(c);
            }
            let r = drive(Arc::new(rater), policy, None, &cdrs, 1);
            r.outcomes.iter().map(|o| (o.cut_at, o.talk)).collect::<Vec<_>>()
        };
        // The internal leg ends first, at 32 s: before, its end ended the outbound call in the
        // engine, which then talked its 300 s uncut.
        let a = replay([leg("0201234567", 0, 300, 1), leg("202", 10, 20, 2)]);
        // answered at 2 s, 60 s of talk at 62 s, the tick grid's next at 65 s: 63 s of talk
        assert_eq!(a, [(Some(63), 63), (None, 20)]);
        // Both run past the limit: before, the cut went to the later position with the id (the
        // internal leg, at 53 s of its talk) and the outbound call talked on.
        let b = replay([leg("0201234567", 0, 300, 1), leg("202", 10, 300, 2)]);
        assert_eq!(b, [(Some(63), 63), (None, 300)]);
    }

    proptest::proptest! {
        /// The radix sort of pending keys gives what a comparison sort gives: whole seconds
        /// within a span from seconds to years (one to four passes), before and after 1970, and
        /// with a fraction now and then (the comparison sort's way).
        #[test]
        fn pending_keys_sort_as_compared(
            seed in 0u64..u64::MAX,
            n in 0usize..600,
            span_bits in 0u32..36,
            fractions in proptest::bool::ANY,
        ) {
            let mut rnd = xorshift(seed | 1);
            let base = (rnd() % 4_000_000_000) as i64 - 2_000_000_000;
            let keys: Vec<u128> = (0..n as u32)
                .map(|f| {
                    let sec = base + (rnd() % (1u64 << span_bits)) as i64;
                    let ns = if fractions && rnd() % 50 == 0 { (rnd() % 1_000_000_000) as i32 } else { 0 };
                    pending_key(Timestamp::new(sec, ns).unwrap(), f)
                })
                .collect();
            let mut want = keys.clone();
            want.sort();
            let (mut got, mut scratch) = (keys, Vec::new());
            sort_keys(&mut got, &mut scratch);
            proptest::prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn sums_by_currency_are_the_decimal_sums() {
        let eur: Currency = "EUR".parse().unwrap();
        let usd: Currency = "USD".parse().unwrap();
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        let mut sums = Sums::default();
        let mut want = Decimal::ZERO;
        for x in ["0.0870", "12.5", "3", "0.123456", "-0.0001", "79228162514264337593543.9"] {
            sums.add(eur, d(x));
            want += d(x);
        }
        sums.add(usd, d("1.25"));
        assert_eq!(sums.text(), format!("EUR {want:.4}, USD 1.2500"));
        assert_eq!(Sums::default().text(), "0");
    }

    proptest::proptest! {
        /// A record's pending key gives back its start, to the nanosecond, before 1970 too.
        #[test]
        fn a_pending_key_gives_its_start_back(
            sec in Timestamp::MIN.as_second()..=Timestamp::MAX.as_second(),
            ns in -999_999_999i32..=999_999_999,
            f in proptest::num::u32::ANY,
        ) {
            if let Ok(t) = Timestamp::new(sec, ns) {
                proptest::prop_assert_eq!(pending_start(pending_key(t, f)), t);
            }
        }
    }

    /// A reader of records held in memory.
    struct Records(Vec<Cdr>, usize);

    impl tollguard_ingest::CdrReader for Records {
        fn read_into(&mut self, cdr: &mut Cdr) -> Result<bool, ReadError> {
            let Some(c) = self.0.get(self.1) else { return Ok(false) };
            cdr.clone_from(c);
            self.1 += 1;
            Ok(true)
        }
    }

    /// `n` calls from one account, about one a second, most of them short; in the first quarter
    /// one in a hundred is up to three hours long. In the order they end (as a switch writes
    /// them).
    /// With `talk`, every call is answered and talks that long.
    fn traffic(seed: u64, n: usize, talk: Option<u32>) -> Vec<Cdr> {
        use jiff::SignedDuration;
        use tollguard_core::cdr::Disposition;
        let mut rnd = xorshift(seed);
        let t0: Timestamp = "2026-01-05T08:00:00Z".parse().unwrap();
        let mut calls: Vec<Cdr> = (0..n)
            .map(|i| {
                let start = t0 + SignedDuration::from_secs(i as i64 + (rnd() % 3) as i64);
                let answered = talk.is_some() || rnd() % 5 != 0;
                let billsec = match (answered, rnd() % 100) {
                    _ if talk.is_some() => talk.unwrap_or(0),
                    (false, _) => 0,
                    (true, 0) if i < n / 4 => 3600 + (rnd() % 7200) as u32,
                    _ => (rnd() % 240) as u32,
                };
                let answer = answered.then(|| start + SignedDuration::from_secs(3 + (rnd() % 8) as i64));
                let end = answer.map_or(start + SignedDuration::from_secs(20), |a| {
                    a + SignedDuration::from_secs(billsec as i64)
                });
                Cdr {
                    call_id: format!("c{i}"),
                    account: "acme".into(),
                    source: format!("{}", 200 + rnd() % 20),
                    dialled: format!("020{:07}", rnd() % 10_000_000),
                    start,
                    answer,
                    end: Some(end),
                    billsec,
                    disposition: if answered { Disposition::Answered } else { Disposition::NoAnswer },
                    ..Cdr::default()
                }
            })
            .collect();
        calls.sort_by_key(|c| c.end);
        for (i, c) in calls.iter_mut().enumerate() {
            c.line = i as u64 + 1;
        }
        calls
    }

    /// Decisions and alerts of the whole-input replay, as `tollguard replay` writes them.
    fn replayed_whole(rater: &Rater, policy: &Policy, calls: &[Cdr]) -> (Vec<u8>, Vec<String>) {
        let mut store = CdrStore::new();
        calls.iter().for_each(|c| store.push(c));
        let r = drive(Arc::new(rater.clone()), policy.clone(), None, &store, 1);
        let mut out = Vec::new();
        for (c, o) in store.iter().zip(&r.outcomes) {
            decision_line(&mut out, c.call_id(), o, &r.rules[o.rules as usize]);
        }
        (out, r.alerts.iter().map(|a| serde_json::to_string(a).unwrap()).collect())
    }

    fn streamed(rater: &Rater, policy: &Policy, calls: &[Cdr], lag_s: i64) -> (Streamed, Vec<u8>) {
        let inputs = std::iter::once(Ok((
            "calls.csv".to_string(),
            Box::new(Records(calls.to_vec(), 0)) as Box<dyn tollguard_ingest::CdrReader>,
        )));
        let mut out = Vec::new();
        let mut summary = Summary::default();
        let r = stream(inputs, (rater, policy, None), lag_s, Some(&mut out), &mut summary).unwrap();
        (r, out)
    }

    /// Asserts that the streamed replay with `lag_s` goes to the end and gives `want`'s decisions
    /// and alerts.
    fn assert_streamed_gives(
        rater: &Rater,
        policy: &Policy,
        calls: &[Cdr],
        lag_s: i64,
        want: (&[u8], &[String]),
    ) {
        let (r, got) = streamed(rater, policy, calls, lag_s);
        let Streamed::Done(alerts) = r else { panic!("the calls are in order within {lag_s} s") };
        assert!(got == want.0, "decisions differ");
        let got_alerts: Vec<String> = alerts.iter().map(|a| serde_json::to_string(a).unwrap()).collect();
        assert_eq!(got_alerts, want.1);
    }

    #[test]
    fn streamed_replay_is_the_whole_input_replay() {
        // Four chunks and more, calls cut at 60 s (their first ends stay queued after they are let
        // go, once no long call holds them), calls up to 3 h 10 min from start to end.
        let (rater, policy) = cutting_setup();
        let calls = traffic(7, 3 * CHUNK as usize + 1500, None);
        let (want, want_alerts) = replayed_whole(&rater, &policy, &calls);
        assert!(want_alerts.len() > 1000, "calls are cut: {}", want_alerts.len());
        assert_streamed_gives(&rater, &policy, &calls, 4 * 3600, (&want, &want_alerts));
    }

    #[test]
    fn a_cut_call_let_go_before_its_first_end_came() {
        // Every call talks 200 s and is cut at 60: written out, and let go, as soon as the calls
        // before it have ended, before the end it was first given.
        let (rater, policy) = cutting_setup();
        let calls = traffic(3, 2 * CHUNK as usize + 100, Some(200));
        let (want, want_alerts) = replayed_whole(&rater, &policy, &calls);
        assert_streamed_gives(&rater, &policy, &calls, 3600, (&want, &want_alerts));
    }

    #[test]
    fn a_call_older_than_the_first_chunk_keeps_its_times() {
        use jiff::SignedDuration;
        // A chunk of short calls from 10:00, then a call that started at 09:58:20 and talked
        // 300 s: cut at the 09:59:25 tick, 60 s after its answer, as when read whole.
        let (rater, policy) = cutting_setup();
        let t0: Timestamp = "2026-01-05T10:00:00Z".parse().unwrap();
        let mut calls = traffic(5, CHUNK as usize, Some(10));
        let shift = t0.duration_since(calls.iter().map(|c| c.start).min().unwrap());
        for c in calls.iter_mut() {
            c.start += shift;
            c.answer = c.answer.map(|a| a + shift);
            c.end = c.end.map(|e| e + shift);
        }
        let early = t0 - SignedDuration::from_secs(100);
        calls.push(Cdr {
            call_id: "early".into(),
            account: "acme".into(),
            source: "201".into(),
            dialled: "0201234567".into(),
            start: early,
            answer: Some(early + SignedDuration::from_secs(5)),
            end: Some(early + SignedDuration::from_secs(305)),
            billsec: 300,
            disposition: tollguard_core::cdr::Disposition::Answered,
            line: CHUNK as u64 + 1,
            ..Cdr::default()
        });
        let (want, want_alerts) = replayed_whole(&rater, &policy, &calls);
        let last = String::from_utf8(want.clone()).unwrap().lines().last().unwrap().to_string();
        assert!(last.contains("\"call_id\":\"early\",\"allowed\":true,\"max_duration_s\":60,"), "{last}");
        assert_streamed_gives(&rater, &policy, &calls, LAG_S, (&want, &want_alerts));
    }

    #[test]
    fn a_record_later_than_the_lag_stops_the_streamed_replay() {
        let (rater, policy) = cutting_setup();
        let calls = traffic(11, CHUNK as usize + 2000, None);
        // Calls of over an hour come more than 30 minutes after calls that started after them.
        let (r, _) = streamed(&rater, &policy, &calls, 1800);
        let Streamed::OutOfOrder { line, .. } = r else { panic!("a record an hour late") };
        let n: usize = line.strip_prefix("calls.csv:").unwrap().parse().unwrap();
        let late = &calls[n - 1];
        let before = calls[..n - 1].iter().map(|c| c.start).max().unwrap();
        assert!(before.duration_since(late.start).as_secs() > 1800, "{line}");
    }

    fn store(starts: &[(i64, i32)]) -> CdrStore {
        let mut s = CdrStore::new();
        for &(sec, ns) in starts {
            let t = Timestamp::from_nanosecond(sec as i128 * 1_000_000_000 + ns as i128).unwrap();
            s.push(&Cdr { start: t, ..Cdr::default() });
        }
        s
    }

    /// The radix sort gives what a stable comparison sort gives: start order, file order among
    /// equal starts; with and without nanoseconds, across the 16-bit digit boundaries.
    #[test]
    fn records_sort_by_start_in_file_order_among_equals() {
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
        for (base, span, nanos) in [
            (1_767_225_600i64, 50i64, false),
            (1_767_225_600, 40_000, false),
            (1_767_225_600, 3_000_000, false),
            (1_767_225_600, 90_000, true),
            (1_767_225_600, 3, true),
            // Around 1970, where jiff gives a second's fraction as negative.
            (-5, 10, true),
        ] {
            let starts: Vec<(i64, i32)> = (0..5_000)
                .map(|_| {
                    let ns = if nanos && next() % 3 == 0 { (next() % 1_000_000_000) as i32 } else { 0 };
                    (base + (next() % span as u64) as i64, ns)
                })
                .collect();
            let cdrs = store(&starts);
            let mut got: Vec<u32> = (0..starts.len() as u32).collect();
            sort_by_start(&mut got, &cdrs);
            let mut want: Vec<u32> = (0..starts.len() as u32).collect();
            want.sort_by_key(|&i| cdrs.get(i as usize).start());
            assert_eq!(got, want, "span {span} s, nanoseconds {nanos}");
            // A thread's share of the records: some positions, in file order.
            let mut part: Vec<u32> = (0..starts.len() as u32).filter(|i| i % 3 != 1).collect();
            let mut want = part.clone();
            want.sort_by_key(|&i| cdrs.get(i as usize).start());
            sort_by_start(&mut part, &cdrs);
            assert_eq!(part, want, "a share: span {span} s, nanoseconds {nanos}");
        }
        // Centuries apart: the comparison sort.
        let cdrs = store(&[(5_000_000_000, 0), (-100, 0), (5, 0), (-100, 0)]);
        let mut got = vec![0, 1, 2, 3];
        sort_by_start(&mut got, &cdrs);
        assert_eq!(got, [1, 3, 2, 0]);
    }
}
