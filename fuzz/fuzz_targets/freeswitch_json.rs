//! FreeSWITCH `mod_json_cdr`: arbitrary bytes as one or more JSON documents. Checks the shared
//! reader invariants (see `common`): in particular that the brace-counting framer always moves
//! on, whatever the nesting, strings and escapes.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use tollguard_ingest::Format;

fuzz_target!(|data: &[u8]| {
    common::drain(Format::FreeswitchJson, data, common::dst_options(), |_| {});
});
