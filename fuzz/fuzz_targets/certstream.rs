//! Arbitrary frames through `peek`, `parse_certificate` and `issuance_key`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| certwatch_testkit::fuzz::certstream(data));
