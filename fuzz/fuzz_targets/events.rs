//! An engagement events body, as `POST /v1/events` receives it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sra_milter::pipeline::engagement::parse_batch;

fuzz_target!(|data: &[u8]| {
    if let Ok(body) = std::str::from_utf8(data) {
        let _ = parse_batch(body);
    }
});
