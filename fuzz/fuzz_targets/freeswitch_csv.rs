//! FreeSWITCH `mod_cdr_csv` ("example" template): arbitrary bytes as a Master.csv, local times in
//! Europe/Amsterdam. Checks the shared reader invariants (see `common`).
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use tollguard_ingest::Format;

fuzz_target!(|data: &[u8]| {
    common::drain(Format::FreeswitchCsv, data, common::dst_options(), |cdr| {
        // the template has no channel names
        assert!(cdr.channel.is_empty() && cdr.dst_channel.is_empty());
    });
});
