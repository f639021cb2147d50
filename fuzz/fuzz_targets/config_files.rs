//! The TOML and JSON loaders on arbitrary text (the first byte picks the
//! format): they never panic, and anything accepted round-trips (see
//! round_trip.rs).

#![no_main]

use libfuzzer_sys::fuzz_target;
use upstream::config::{from_str_with_format, Format};

mod round_trip;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let format = if which % 2 == 0 {
        Format::Toml
    } else {
        Format::Json
    };
    let text = String::from_utf8_lossy(rest);
    if let Ok(cfg) = from_str_with_format(&text, format) {
        round_trip::check(&cfg);
    }
});
