//! Arbitrary watch entries and names through `WatchList::build` and `matches`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| certwatch_testkit::fuzz::matcher(data));
