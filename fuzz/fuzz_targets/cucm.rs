//! Cisco CUCM CDR flat files: arbitrary bytes as a `cdr_...` file (header of names, optional
//! line of types, records). Checks the shared reader invariants (see `common`), and that a
//! record's times are in order (start <= answer <= end when present).
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use tollguard_ingest::Format;

fuzz_target!(|data: &[u8]| {
    common::drain(Format::Cucm, data, common::dst_options(), |cdr| {
        if let Some(answer) = cdr.answer {
            assert!(cdr.start <= answer, "line {}: answered before it started", cdr.line);
            if let Some(end) = cdr.end {
                assert!(answer <= end, "line {}: ended before it was answered", cdr.line);
            }
        }
        if let Some(end) = cdr.end {
            assert!(cdr.start <= end, "line {}: ended before it started", cdr.line);
        }
    });
});
