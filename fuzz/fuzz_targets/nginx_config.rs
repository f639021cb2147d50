//! The nginx `upstream` parser on arbitrary text: it never panics, and
//! anything it accepts round-trips (see round_trip.rs).

#![no_main]

use libfuzzer_sys::fuzz_target;
use upstream::config::parse_nginx;

mod round_trip;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(cfg) = parse_nginx(&text) {
        round_trip::check(&cfg);
    }
});
