//! Asterisk `cdr_csv`: arbitrary bytes as a Master.csv, local times in Europe/Amsterdam.
//! Checks the shared reader invariants (see `common`): no panic, reading ends, row errors and
//! records name a real line (>= 1), every record has a call id and `billsec <= duration_s`.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use tollguard_ingest::Format;

fuzz_target!(|data: &[u8]| {
    common::drain(Format::Asterisk, data, common::dst_options(), |_| {});
});
