//! A configuration file: parsed, then validated.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sra_milter::config::Config;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(mut cfg) = Config::from_toml(text, Path::new("fuzz.toml")) {
            let _ = cfg.validate();
        }
    }
});
